package main

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"sort"
	"strings"

	"github.com/spf13/pflag"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/rest"
	"k8s.io/client-go/tools/clientcmd"

	"github.com/keeplog/keeplog/pkg/retrievalapi"
)

// globalFlags are kubectl's own: the kubeconfig, its context and the namespace.
type globalFlags struct {
	kubeconfig, context, namespace string
}

func (g *globalFlags) add(fs *pflag.FlagSet) {
	fs.StringVar(&g.kubeconfig, "kubeconfig", "", "path to the kubeconfig file")
	fs.StringVar(&g.context, "context", "", "the kubeconfig context to use")
	fs.StringVarP(&g.namespace, "namespace", "n", "", "the namespace (default: the context's)")
}

// client talks to the aggregated API with the kubeconfig's credentials.
type client struct {
	base      string
	hc        *http.Client
	namespace string // the flag's, else the context's, else "default"
}

func (g *globalFlags) client() (*client, error) {
	rules := clientcmd.NewDefaultClientConfigLoadingRules()
	rules.ExplicitPath = g.kubeconfig
	cc := clientcmd.NewNonInteractiveDeferredLoadingClientConfig(rules, &clientcmd.ConfigOverrides{
		CurrentContext: g.context, Context: clientcmdContext(g.namespace)})
	cfg, err := cc.ClientConfig()
	if err != nil {
		return nil, err
	}
	ns, _, err := cc.Namespace()
	if err != nil {
		return nil, err
	}
	cfg.UserAgent = "kubectl-keeplog"
	hc, err := rest.HTTPClientFor(cfg)
	if err != nil {
		return nil, err
	}
	return &client{base: strings.TrimRight(cfg.Host, "/"), hc: hc, namespace: ns}, nil
}

// get is one GET below the API server; a non-2xx answer is an error with the server's message.
func (c *client) get(ctx context.Context, path string, query url.Values, header http.Header) (*http.Response, error) {
	u := c.base + path
	if len(query) > 0 {
		u += "?" + query.Encode()
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, u, nil)
	if err != nil {
		return nil, err
	}
	for k, v := range header {
		req.Header[k] = v
	}
	resp, err := c.hc.Do(req)
	if err != nil {
		return nil, err
	}
	if resp.StatusCode/100 != 2 {
		defer resp.Body.Close()
		b, _ := io.ReadAll(io.LimitReader(resp.Body, 64<<10))
		var st metav1.Status
		if json.Unmarshal(b, &st) == nil && st.Message != "" {
			return nil, &apiError{code: resp.StatusCode, msg: st.Message}
		}
		return nil, &apiError{code: resp.StatusCode, msg: strings.TrimSpace(string(b))}
	}
	return resp, nil
}

// apiError is the server's refusal.
type apiError struct {
	code int
	msg  string
}

func (e *apiError) Error() string {
	return fmt.Sprintf("%s (%d %s)", e.msg, e.code, http.StatusText(e.code))
}

func (c *client) getJSON(ctx context.Context, path string, v any) error {
	resp, err := c.get(ctx, path, nil, nil)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	return json.NewDecoder(resp.Body).Decode(v)
}

func nsPath(ns string) string {
	return retrievalapi.BasePath + "/namespaces/" + url.PathEscape(ns) + "/" + retrievalapi.Resource
}

// list is the retained pods of ns, or of every namespace the user may read pod logs in (all).
func (c *client) list(ctx context.Context, ns string, all bool) (*retrievalapi.RetainedPodList, error) {
	path := nsPath(ns)
	if all {
		path = retrievalapi.BasePath + "/" + retrievalapi.Resource
	}
	var l retrievalapi.RetainedPodList
	return &l, c.getJSON(ctx, path, &l)
}

// resolve finds the retained pod: <pod>.<uid> exactly, or the newest retained pod named <pod>.
func (c *client) resolve(ctx context.Context, ns, name string) (*retrievalapi.RetainedPod, error) {
	l, err := c.list(ctx, ns, false)
	if err != nil {
		return nil, err
	}
	var match []retrievalapi.RetainedPod
	for _, p := range l.Items {
		if p.Name == name || p.Status.PodName == name {
			match = append(match, p)
		}
	}
	if len(match) == 0 {
		return nil, fmt.Errorf("no retained pod %q in namespace %s", name, ns)
	}
	sort.Slice(match, func(i, j int) bool { return match[i].Status.FirstPublished.After(match[j].Status.FirstPublished.Time) })
	return &match[0], nil
}

func (c *client) files(ctx context.Context, p *retrievalapi.RetainedPod) (*retrievalapi.RetainedPodFiles, error) {
	var f retrievalapi.RetainedPodFiles
	return &f, c.getJSON(ctx, nsPath(p.Namespace)+"/"+url.PathEscape(p.Name)+"/files", &f)
}

// open streams one file of the pod directory, from a Range when header has one.
func (c *client) open(ctx context.Context, p *retrievalapi.RetainedPod, rel string, header http.Header) (*http.Response, error) {
	return c.get(ctx, nsPath(p.Namespace)+"/"+url.PathEscape(p.Name)+"/file", url.Values{"path": {rel}}, header)
}

// readSmall reads a small file whole (metadata); a missing one is "".
func (c *client) readSmall(ctx context.Context, p *retrievalapi.RetainedPod, rel string) (string, error) {
	resp, err := c.open(ctx, p, rel, nil)
	if ae, ok := err.(*apiError); ok && ae.code == http.StatusNotFound {
		return "", nil
	}
	if err != nil {
		return "", err
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(io.LimitReader(resp.Body, 4<<20))
	return string(b), err
}

// onePod is the preamble of the verbs that take one pod (describe, logs): the flags parsed, exactly one argument,
// the client, and the pod resolved in the namespace (a bare name: its newest retained pod).
func onePod(ctx context.Context, verb string, fs *pflag.FlagSet, g *globalFlags, args []string) (*client, *retrievalapi.RetainedPod, error) {
	if err := parse(fs, args); err != nil {
		return nil, nil, err
	}
	if fs.NArg() != 1 {
		return nil, nil, usageError(verb + " takes one pod")
	}
	c, err := g.client()
	if err != nil {
		return nil, nil, err
	}
	p, err := c.resolve(ctx, c.namespace, fs.Arg(0))
	return c, p, err
}
