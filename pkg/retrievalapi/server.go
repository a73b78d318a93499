package retrievalapi

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"strings"

	"github.com/go-logr/logr"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apiserver/pkg/authentication/user"
	"k8s.io/apiserver/pkg/authorization/authorizer"
	"k8s.io/apiserver/pkg/endpoints/request"

	"github.com/keeplog/keeplog/pkg/retrieval/wire"
)

// Deps are the server's side effects.
type Deps struct {
	Nodes      NodeLister
	HTTP       *http.Client // towards the nodes (their CA)
	Token      TokenSource
	Authorizer authorizer.Authorizer
	Log        logr.Logger
}

// Server serves the API below /apis; it expects an authenticated user in each request's context.
type Server struct {
	deps Deps
	mux  *http.ServeMux
}

// New returns the server.
func New(deps Deps) (*Server, error) {
	if deps.Nodes == nil || deps.HTTP == nil || deps.Token == nil || deps.Authorizer == nil {
		return nil, errors.New("retrievalapi: nodes, an HTTP client, a token and an authorizer are required")
	}
	s := &Server{deps: deps, mux: http.NewServeMux()}
	ns := BasePath + "/namespaces/{ns}/" + Resource
	s.mux.HandleFunc("GET /apis", func(w http.ResponseWriter, _ *http.Request) {
		writeJSON(w, http.StatusOK, metav1.APIGroupList{TypeMeta: metav1.TypeMeta{Kind: "APIGroupList", APIVersion: "v1"},
			Groups: []metav1.APIGroup{group()}})
	})
	s.mux.HandleFunc("GET /apis/"+Group, func(w http.ResponseWriter, _ *http.Request) { writeJSON(w, http.StatusOK, group()) })
	s.mux.HandleFunc("GET "+BasePath, func(w http.ResponseWriter, _ *http.Request) { writeJSON(w, http.StatusOK, discovery()) })
	s.mux.HandleFunc("GET "+BasePath+"/"+Resource, s.authenticated(s.list))
	s.mux.HandleFunc("GET "+ns, s.authenticated(s.list))
	s.mux.HandleFunc("GET "+ns+"/{name}", s.authenticated(s.get))
	s.mux.HandleFunc("GET "+ns+"/{name}/files", s.authenticated(s.files))
	s.mux.HandleFunc("GET "+ns+"/{name}/file", s.authenticated(s.file))
	return s, nil
}

// ServeHTTP routes the request.
func (s *Server) ServeHTTP(w http.ResponseWriter, r *http.Request) { s.mux.ServeHTTP(w, r) }

// authenticated refuses a request without a user, or the anonymous one.
func (s *Server) authenticated(next func(http.ResponseWriter, *http.Request, user.Info)) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		u, ok := request.UserFrom(r.Context())
		if !ok || u.GetName() == user.Anonymous {
			writeStatus(w, http.StatusUnauthorized, metav1.StatusReasonUnauthorized, "Unauthorized")
			return
		}
		next(w, r, u)
	}
}

// mayReadLogs asks the authorizer whether u may get pods/log in ns (of pod, when named).
func (s *Server) mayReadLogs(ctx context.Context, u user.Info, ns, pod string) (bool, error) {
	d, _, err := s.deps.Authorizer.Authorize(ctx, authorizer.AttributesRecord{User: u, Verb: "get", Namespace: ns,
		APIVersion: "v1", Resource: "pods", Subresource: "log", Name: pod, ResourceRequest: true})
	if d == authorizer.DecisionAllow {
		return true, nil
	}
	return false, err
}

// list answers the retained pods of one namespace (403 unless the user may read pod logs there) or, cluster-wide,
// of every namespace the user may read pod logs in.
func (s *Server) list(w http.ResponseWriter, r *http.Request, u user.Info) {
	ns := r.PathValue("ns")
	if ns != "" && !s.allowed(r.Context(), w, u, ns, "") {
		return
	}
	pods, unreachable, err := s.listAll(r.Context())
	if err != nil {
		writeStatus(w, http.StatusServiceUnavailable, metav1.StatusReasonServiceUnavailable, err.Error())
		return
	}
	out := RetainedPodList{TypeMeta: typeMeta(Kind + "List"), Items: []RetainedPod{}, Unreachable: unreachable}
	decided := map[string]bool{}
	for _, p := range pods {
		if ns != "" && p.Namespace != ns {
			continue
		}
		ok, seen := decided[p.Namespace]
		if !seen {
			var err error
			if ok, err = s.mayReadLogs(r.Context(), u, p.Namespace, ""); err != nil {
				s.deps.Log.Info("Authorization failed", "user", u.GetName(), "namespace", p.Namespace, "err", err)
			}
			decided[p.Namespace] = ok
		}
		if ok {
			out.Items = append(out.Items, fromWire(p))
		}
	}
	writeJSON(w, http.StatusOK, out)
}

// allowed answers 403 (or 503 when the authorizer failed) unless the user may read the pod's logs.
func (s *Server) allowed(ctx context.Context, w http.ResponseWriter, u user.Info, ns, pod string) bool {
	ok, err := s.mayReadLogs(ctx, u, ns, pod)
	if ok {
		return true
	}
	if err != nil {
		writeStatus(w, http.StatusServiceUnavailable, metav1.StatusReasonServiceUnavailable, "cannot check access: "+err.Error())
		return false
	}
	what := "pods/log in namespace " + ns
	if pod != "" {
		what = fmt.Sprintf("pods/log %q in namespace %s", pod, ns)
	}
	writeStatus(w, http.StatusForbidden, metav1.StatusReasonForbidden,
		fmt.Sprintf("user %q cannot get %s: retained pods are readable where their logs are", u.GetName(), what))
	return false
}

// find authorizes the request for the named retained pod and finds it; it has answered when it returns false.
func (s *Server) find(w http.ResponseWriter, r *http.Request, u user.Info) (wire.Pod, Node, bool) {
	ns, name := r.PathValue("ns"), r.PathValue("name")
	i := strings.LastIndexByte(name, '.')
	if i <= 0 {
		writeStatus(w, http.StatusNotFound, metav1.StatusReasonNotFound, fmt.Sprintf("retainedpod %q not found: names are <pod>.<uid>", name))
		return wire.Pod{}, Node{}, false
	}
	if !s.allowed(r.Context(), w, u, ns, name[:i]) {
		return wire.Pod{}, Node{}, false
	}
	pods, _, err := s.listAll(r.Context())
	if err != nil {
		writeStatus(w, http.StatusServiceUnavailable, metav1.StatusReasonServiceUnavailable, err.Error())
		return wire.Pod{}, Node{}, false
	}
	nodes, err := s.deps.Nodes.Nodes(r.Context())
	if err != nil {
		writeStatus(w, http.StatusServiceUnavailable, metav1.StatusReasonServiceUnavailable, err.Error())
		return wire.Pod{}, Node{}, false
	}
	for _, p := range pods {
		if p.Namespace != ns || ObjectName(p.Name, p.UID) != name {
			continue
		}
		for _, n := range nodes {
			if n.Name == p.Node {
				return p, n, true
			}
		}
	}
	writeStatus(w, http.StatusNotFound, metav1.StatusReasonNotFound, fmt.Sprintf("retainedpod %s/%s not found", ns, name))
	return wire.Pod{}, Node{}, false
}

func (s *Server) get(w http.ResponseWriter, r *http.Request, u user.Info) {
	if p, _, ok := s.find(w, r, u); ok {
		writeJSON(w, http.StatusOK, fromWire(p))
	}
}

func writeJSON(w http.ResponseWriter, code int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(code)
	_ = json.NewEncoder(w).Encode(v)
}

// writeStatus answers a metav1.Status, as the API server does, so that kubectl prints its message.
func writeStatus(w http.ResponseWriter, code int, reason metav1.StatusReason, msg string) {
	writeJSON(w, code, metav1.Status{TypeMeta: metav1.TypeMeta{Kind: "Status", APIVersion: "v1"}, Status: metav1.StatusFailure,
		Message: msg, Reason: reason, Code: int32(code)})
}
