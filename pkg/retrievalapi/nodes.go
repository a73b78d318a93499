package retrievalapi

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"sort"
	"sync"
	"time"

	"golang.org/x/sync/errgroup"

	"github.com/keeplog/keeplog/pkg/retrieval/wire"
)

// Node is one node plugin's read endpoint: its node name and base URL (https://<host>:<port>).
type Node struct {
	Name string
	URL  string
}

// NodeLister finds the node plugins to ask (cmd/keeplog-api: the DaemonSet's pods, or a fixed list).
type NodeLister interface {
	Nodes(ctx context.Context) ([]Node, error)
}

// TokenSource is keeplog-api's own bearer token towards the nodes, read at each call (a projected token rotates).
type TokenSource func() (string, error)

// nodeLimit bounds the nodes asked at once; nodeTimeout one node's answer to a listing.
const (
	nodeLimit   = 8
	nodeTimeout = 10 * time.Second
)

// listAll asks every node for its pod directories; a node that does not answer is reported in unreachable.
func (s *Server) listAll(ctx context.Context) ([]wire.Pod, []string, error) {
	nodes, err := s.deps.Nodes.Nodes(ctx)
	if err != nil {
		return nil, nil, fmt.Errorf("find the node plugins: %w", err)
	}
	var (
		mu          sync.Mutex
		pods        []wire.Pod
		unreachable []string
	)
	g, gctx := errgroup.WithContext(ctx)
	g.SetLimit(nodeLimit)
	for _, n := range nodes {
		g.Go(func() error {
			var list wire.PodList
			err := s.nodeJSON(gctx, n, wire.PodsPath, &list)
			mu.Lock()
			defer mu.Unlock()
			if err != nil {
				s.deps.Log.Info("A node plugin did not list its pods", "node", n.Name, "err", err)
				unreachable = append(unreachable, n.Name)
				return nil
			}
			for _, p := range list.Pods {
				p.Node = n.Name // the node we asked, whatever its records say
				pods = append(pods, p)
			}
			return nil
		})
	}
	_ = g.Wait()
	sort.Slice(pods, func(i, j int) bool {
		if pods[i].Namespace != pods[j].Namespace {
			return pods[i].Namespace < pods[j].Namespace
		}
		return pods[i].Dir < pods[j].Dir
	})
	sort.Strings(unreachable)
	return pods, unreachable, nil
}

// nodeRequest is a GET of path on the node with keeplog-api's token.
func (s *Server) nodeRequest(ctx context.Context, n Node, path string, query url.Values) (*http.Request, error) {
	u, err := url.Parse(n.URL)
	if err != nil {
		return nil, fmt.Errorf("node %s: URL %q: %w", n.Name, n.URL, err)
	}
	u.Path, u.RawQuery = path, query.Encode()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, u.String(), nil)
	if err != nil {
		return nil, err
	}
	token, err := s.deps.Token()
	if err != nil {
		return nil, fmt.Errorf("keeplog-api's token: %w", err)
	}
	req.Header.Set("Authorization", "Bearer "+token)
	return req, nil
}

// nodeJSON GETs path on the node and decodes its JSON answer (at most 64 MiB).
func (s *Server) nodeJSON(ctx context.Context, n Node, path string, v any) error {
	ctx, cancel := context.WithTimeout(ctx, nodeTimeout)
	defer cancel()
	req, err := s.nodeRequest(ctx, n, path, nil)
	if err != nil {
		return err
	}
	resp, err := s.deps.HTTP.Do(req)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		b, _ := io.ReadAll(io.LimitReader(resp.Body, 1024))
		return &nodeError{status: resp.StatusCode, msg: string(b)}
	}
	return json.NewDecoder(io.LimitReader(resp.Body, 64<<20)).Decode(v)
}

// nodeError is a node's refusal, passed on with its status.
type nodeError struct {
	status int
	msg    string
}

func (e *nodeError) Error() string { return fmt.Sprintf("node answered %d: %s", e.status, e.msg) }
