// Package chart renders charts/keeplog with the Helm the project builds from the Go module proxy (hack/helm.sh) and
// decodes the result into typed Kubernetes objects. The template tests in this package and the chart e2e test
// (test/e2e/chart_e2e_test.go) share it.
package chart

import (
	"bytes"
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"

	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/runtime/serializer/json"
	"k8s.io/client-go/kubernetes/scheme"
	sigsyaml "sigs.k8s.io/yaml"

	"github.com/keeplog/keeplog/test/e2e/lab"
)

// RepoRoot finds the checkout from the working directory (go test runs in the package directory).
func RepoRoot() (string, error) {
	dir, err := os.Getwd()
	if err != nil {
		return "", err
	}
	for d := dir; d != "/"; d = filepath.Dir(d) {
		if _, err := os.Stat(filepath.Join(d, "go.mod")); err == nil {
			return d, nil
		}
	}
	return "", fmt.Errorf("no go.mod above %s", dir)
}

// Helm returns the helm binary: $HELM when set, else the one hack/helm.sh builds (once) into the cache.
func Helm(ctx context.Context, repo string) (string, error) {
	if h := os.Getenv("HELM"); h != "" {
		return h, nil
	}
	cmd := exec.CommandContext(ctx, filepath.Join(repo, "hack", "helm.sh"))
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		return "", fmt.Errorf("hack/helm.sh: %w: %s", err, stderr.String())
	}
	return strings.TrimSpace(string(out)), nil
}

// Options say how to render the chart.
type Options struct {
	Release     string   // default "keeplog"
	Namespace   string   // default "keeplog"
	ValuesFiles []string // -f, in order
	Set         []string // --set key=value, after the files
}

// Render runs `helm template` on the chart in repo/charts/keeplog and returns the YAML.
func Render(ctx context.Context, helm, repo string, o Options) (string, error) {
	if o.Release == "" {
		o.Release = "keeplog"
	}
	if o.Namespace == "" {
		o.Namespace = "keeplog"
	}
	// The Kubernetes version the lab runs: Chart.yaml's kubeVersion claims only that minor, and without a cluster
	// Helm would assume its own client-go's.
	args := []string{"template", o.Release, filepath.Join(repo, "charts", "keeplog"), "--namespace", o.Namespace,
		"--kube-version", lab.KubernetesVersion}
	for _, f := range o.ValuesFiles {
		args = append(args, "--values", f)
	}
	for _, s := range o.Set {
		args = append(args, "--set", s)
	}
	cmd := exec.CommandContext(ctx, helm, args...)
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		return "", fmt.Errorf("helm %s: %w: %s", strings.Join(args, " "), err, strings.TrimSpace(stderr.String()))
	}
	return string(out), nil
}

// Documents splits a multi-document YAML stream into its non-empty documents.
func Documents(yaml string) []string {
	var docs []string
	for _, d := range strings.Split("\n"+yaml, "\n---") {
		if !isEmptyDoc(d) {
			docs = append(docs, strings.TrimLeft(d, "\n"))
		}
	}
	return docs
}

func isEmptyDoc(d string) bool {
	for _, l := range strings.Split(d, "\n") {
		l = strings.TrimSpace(l)
		if l != "" && !strings.HasPrefix(l, "#") {
			return false
		}
	}
	return true
}

// strict decodes YAML into typed objects and fails on unknown or duplicate fields, so a misspelt field in a template
// (mountPropogation) is an error here and not silently dropped.
var strict = json.NewSerializerWithOptions(json.DefaultMetaFactory, scheme.Scheme, scheme.Scheme,
	json.SerializerOptions{Yaml: true, Strict: true})

// crdGroups are the API groups the chart can render that client-go's scheme does not know (the Prometheus
// Operator's and OpenShift's custom resources, the aggregator's APIService): they decode as unstructured objects;
// the e2e's server-side dry run checks them against the real API (the CRDs from test/e2e/testdata/crds).
var crdGroups = []string{"monitoring.coreos.com/", "security.openshift.io/", "apiregistration.k8s.io/"}

// Decode turns each document into a typed object (client-go's scheme knows every built-in kind the chart renders)
// or, for a custom resource, an *unstructured.Unstructured.
func Decode(yaml string) ([]runtime.Object, error) {
	var objs []runtime.Object
	for i, d := range Documents(yaml) {
		if u, ok, err := decodeCustom([]byte(d)); ok || err != nil {
			if err != nil {
				return nil, fmt.Errorf("document %d: %w\n%s", i, err, d)
			}
			objs = append(objs, u)
			continue
		}
		obj, _, err := strict.Decode([]byte(d), nil, nil)
		if err != nil {
			return nil, fmt.Errorf("document %d: %w\n%s", i, err, d)
		}
		objs = append(objs, obj)
	}
	return objs, nil
}

// decodeCustom decodes a document of one of crdGroups; ok is false for any other.
func decodeCustom(doc []byte) (*unstructured.Unstructured, bool, error) {
	var head struct {
		APIVersion string `json:"apiVersion"`
	}
	if err := sigsyaml.Unmarshal(doc, &head); err != nil {
		return nil, false, err
	}
	custom := false
	for _, g := range crdGroups {
		custom = custom || strings.HasPrefix(head.APIVersion, g)
	}
	if !custom {
		return nil, false, nil
	}
	u := &unstructured.Unstructured{}
	if err := sigsyaml.Unmarshal(doc, &u.Object); err != nil {
		return nil, true, err
	}
	return u, true, nil
}
