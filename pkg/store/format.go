package store

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"strconv"
)

// RecordFormat is the format of the JSON records keeplog writes under its root — pkg/store's volume, pod-directory
// and target records, the archiver's journal items and firstOnly decisions, the dump manager's state — and the
// newest this binary reads. WriteJSONAtomic stamps it on every record as "format". A record without the field was
// written before formats were numbered and is format 1: the same layout.
//
// Why: after a rollback, an older keeplog reads what a newer one wrote. Go's JSON decoding ignores fields it does
// not know, so a record whose meaning changed would be misread silently (a journal item taken as done, a pod
// directory's retention clock lost). A keeplog that changes a record's meaning raises RecordFormat; the older binary
// then refuses the record with ErrNewerFormat and says which file and which versions, instead of guessing. Adding
// a field whose absence older binaries may ignore does not raise it.
const RecordFormat = 1

// ErrNewerFormat marks a record written in a format newer than RecordFormat.
var ErrNewerFormat = errors.New("written by a newer keeplog")

// formatHeader is the part of a record that says its format.
type formatHeader struct {
	Format *int `json:"format"`
}

// CheckFormat fails with ErrNewerFormat when data (the record at path) carries a format this binary does not read.
func CheckFormat(path string, data []byte) error {
	if currentFormat(data) {
		return nil
	}
	var h formatHeader
	if err := json.Unmarshal(data, &h); err != nil {
		return fmt.Errorf("decode %s: %w", path, err)
	}
	if h.Format == nil || *h.Format == RecordFormat {
		return nil
	}
	if *h.Format > RecordFormat {
		return fmt.Errorf("%s has record format %d, this keeplog reads formats up to %d: %w (run that version, or a newer one, on this node; the record is left as it is)",
			path, *h.Format, RecordFormat, ErrNewerFormat)
	}
	return fmt.Errorf("%s has record format %d, which no keeplog writes", path, *h.Format)
}

// currentFormat reports whether data begins the way stampFormat writes a record of RecordFormat: "{", a newline, two
// spaces, "format": N, then the comma before the next field or the newline before "}". CheckFormat then skips a
// second decode of the whole record (readJSON decodes it anyway): at 20,000 retained directories that decode was 7 %
// of keeplog's CPU at the start. Anything else is decoded. (keeplog never writes a second "format" further down,
// which a full decode would take instead.)
func currentFormat(data []byte) bool {
	rest, ok := bytes.CutPrefix(data, []byte("{\n  \"format\": "))
	if !ok {
		return false
	}
	rest, ok = bytes.CutPrefix(rest, strconv.AppendInt(make([]byte, 0, 4), RecordFormat, 10))
	return ok && len(rest) > 0 && (rest[0] == ',' || rest[0] == '\n')
}

// stampFormat puts "format": RecordFormat first in an encoded JSON object, and indents it.
func stampFormat(data []byte) ([]byte, error) {
	data = bytes.TrimSpace(data)
	if len(data) < 2 || data[0] != '{' {
		return nil, errors.New("a record must be a JSON object")
	}
	var b bytes.Buffer
	fmt.Fprintf(&b, `{"format":%d`, RecordFormat)
	if rest := bytes.TrimSpace(data[1:]); len(rest) > 0 && rest[0] != '}' {
		b.WriteByte(',')
	}
	b.Write(data[1:])
	var out bytes.Buffer
	if err := json.Indent(&out, b.Bytes(), "", "  "); err != nil {
		return nil, err
	}
	return out.Bytes(), nil
}
