package otelcoltest

import (
	"bufio"
	"encoding/json"
	"os"
)

// Record is one exported log record: its body, its resource's attributes and its own.
type Record struct {
	Body     string
	Resource map[string]string
	Attrs    map[string]string
}

type otlpKV struct {
	Key   string `json:"key"`
	Value struct {
		StringValue string `json:"stringValue"`
	} `json:"value"`
}

type otlpLogs struct {
	ResourceLogs []struct {
		Resource struct {
			Attributes []otlpKV `json:"attributes"`
		} `json:"resource"`
		ScopeLogs []struct {
			LogRecords []struct {
				Body struct {
					StringValue string `json:"stringValue"`
				} `json:"body"`
				Attributes []otlpKV `json:"attributes"`
			} `json:"logRecords"`
		} `json:"scopeLogs"`
	} `json:"resourceLogs"`
}

func kvMap(kvs []otlpKV) map[string]string {
	m := make(map[string]string, len(kvs))
	for _, kv := range kvs {
		m[kv.Key] = kv.Value.StringValue
	}
	return m
}

// ReadRecords reads every record in the file exporter's output at path (OTLP JSON, one object per line); a missing
// file is no records, and a line still being written is left for the next read.
func ReadRecords(path string) ([]Record, error) {
	f, err := os.Open(path)
	if os.IsNotExist(err) {
		return nil, nil
	}
	if err != nil {
		return nil, err
	}
	defer f.Close()
	var out []Record
	sc := bufio.NewScanner(f)
	sc.Buffer(make([]byte, 1<<20), 1<<30)
	for sc.Scan() {
		var l otlpLogs
		if err := json.Unmarshal(sc.Bytes(), &l); err != nil {
			continue // a line being written
		}
		for _, rl := range l.ResourceLogs {
			res := kvMap(rl.Resource.Attributes)
			for _, sl := range rl.ScopeLogs {
				for _, r := range sl.LogRecords {
					out = append(out, Record{Body: r.Body.StringValue, Resource: res, Attrs: kvMap(r.Attributes)})
				}
			}
		}
	}
	return out, sc.Err()
}
