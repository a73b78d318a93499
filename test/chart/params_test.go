package chart

import (
	"encoding/json"
	"os"
	"path/filepath"
	"slices"
	"sort"
	"testing"

	"github.com/keeplog/keeplog/pkg/api"
	"github.com/keeplog/keeplog/pkg/policy"
)

// The schema's StorageClass parameters are exactly the ones keeplog understands (pkg/policy), except size, which only
// a CSI inline volume needs (a claim has its request); and the all-values classes pass the driver's own validation,
// so what the chart lets through, CreateVolume accepts.
func TestStorageClassParametersMatchPolicy(t *testing.T) {
	data, err := os.ReadFile(filepath.Join(repo, "charts", "keeplog", "values.schema.json"))
	if err != nil {
		t.Fatal(err)
	}
	var schema struct {
		Properties struct {
			StorageClasses struct {
				Items struct {
					Properties struct {
						Parameters struct {
							Properties           map[string]any `json:"properties"`
							AdditionalProperties *bool          `json:"additionalProperties"`
						} `json:"parameters"`
					} `json:"properties"`
				} `json:"items"`
			} `json:"storageClasses"`
		} `json:"properties"`
	}
	if err := json.Unmarshal(data, &schema); err != nil {
		t.Fatal(err)
	}
	params := schema.Properties.StorageClasses.Items.Properties.Parameters
	var inSchema []string
	for k := range params.Properties {
		inSchema = append(inSchema, k)
	}
	sort.Strings(inSchema)
	want := slices.DeleteFunc(policy.ParameterNames(), func(p string) bool { return p == api.ParamSize })
	if !slices.Equal(inSchema, want) {
		t.Errorf("values.schema.json StorageClass parameters %v, pkg/policy knows %v (size aside)", inSchema, want)
	}
	if params.AdditionalProperties == nil || *params.AdditionalProperties {
		t.Error("the schema lets unknown StorageClass parameters through; keeplog would refuse them at CreateVolume")
	}
	r := render(t, Options{ValuesFiles: []string{allValues()}})
	for _, sc := range r.classes {
		if err := policy.ValidateParameters(sc.Parameters); err != nil {
			t.Errorf("StorageClass %s: keeplog refuses its parameters: %v", sc.Name, err)
		}
	}
}
