package retrievalapi

import (
	"errors"
	"io"
	"net/http"
	"net/url"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apiserver/pkg/authentication/user"

	"github.com/keeplog/keeplog/pkg/retrieval/wire"
)

// files answers the pod directory's listing from its node.
func (s *Server) files(w http.ResponseWriter, r *http.Request, u user.Info) {
	p, n, ok := s.find(w, r, u)
	if !ok {
		return
	}
	var fl wire.FileList
	if err := s.nodeJSON(r.Context(), n, wire.PodsPath+"/"+url.PathEscape(p.Dir)+"/files", &fl); err != nil {
		nodeFailed(w, err)
		return
	}
	writeJSON(w, http.StatusOK, RetainedPodFiles{TypeMeta: typeMeta("RetainedPodFiles"),
		ObjectMeta: metav1.ObjectMeta{Name: ObjectName(p.Name, p.UID), Namespace: p.Namespace},
		Files:      fl.Files, Skipped: fl.Skipped, NotEntered: fl.NotEntered})
}

// passedHeaders are the node's answer headers the client gets (what a resumable download needs).
var passedHeaders = []string{"Content-Type", "Content-Length", "Content-Range", "Accept-Ranges", "ETag", "Last-Modified"}

// file streams one file from the node: ?path=<relative path>, Range and If-Range passed through. The node checks
// the path (pkg/retrieval); this only passes it on as a query value.
func (s *Server) file(w http.ResponseWriter, r *http.Request, u user.Info) {
	p, n, ok := s.find(w, r, u)
	if !ok {
		return
	}
	req, err := s.nodeRequest(r.Context(), n, wire.PodsPath+"/"+url.PathEscape(p.Dir)+"/file",
		url.Values{"path": {r.URL.Query().Get("path")}})
	if err != nil {
		nodeFailed(w, err)
		return
	}
	for _, h := range []string{"Range", "If-Range"} {
		if v := r.Header.Get(h); v != "" {
			req.Header.Set(h, v)
		}
	}
	resp, err := s.deps.HTTP.Do(req)
	if err != nil {
		nodeFailed(w, err)
		return
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK && resp.StatusCode != http.StatusPartialContent {
		b, _ := io.ReadAll(io.LimitReader(resp.Body, 1024))
		nodeFailed(w, &nodeError{status: resp.StatusCode, msg: string(b)})
		return
	}
	for _, h := range passedHeaders {
		if v := resp.Header.Get(h); v != "" {
			w.Header().Set(h, v)
		}
	}
	w.WriteHeader(resp.StatusCode)
	if _, err := io.Copy(w, resp.Body); err != nil {
		s.deps.Log.V(2).Info("A download ended early", "node", n.Name, "pod", p.Dir, "err", err)
	}
}

// nodeFailed passes a node's refusal on with its status (400, 403, 404, 416, 429), anything else as 502.
func nodeFailed(w http.ResponseWriter, err error) {
	var ne *nodeError
	if errors.As(err, &ne) {
		switch ne.status {
		case http.StatusBadRequest:
			writeStatus(w, ne.status, metav1.StatusReasonBadRequest, "the node refused the path: "+ne.msg)
			return
		case http.StatusForbidden:
			writeStatus(w, ne.status, metav1.StatusReasonForbidden, "the node refused to read it (a symlink, a special file or another mount): "+ne.msg)
			return
		case http.StatusNotFound:
			writeStatus(w, ne.status, metav1.StatusReasonNotFound, "not found on the node: "+ne.msg)
			return
		case http.StatusRequestedRangeNotSatisfiable, http.StatusTooManyRequests:
			writeStatus(w, ne.status, metav1.StatusReason(http.StatusText(ne.status)), ne.msg)
			return
		}
	}
	writeStatus(w, http.StatusBadGateway, metav1.StatusReasonServiceUnavailable, "the node plugin: "+err.Error())
}
