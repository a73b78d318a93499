package retrievaltest

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"testing"

	"k8s.io/apiserver/pkg/authentication/user"
	"k8s.io/apiserver/pkg/authorization/authorizer"

	"github.com/keeplog/keeplog/pkg/store"
)

// Pod is a pod directory to record.
type Pod struct {
	Volume string // the volume record (made if it does not exist)
	Node   string
	Ref    store.PodRef
	// Running leaves the directory published; otherwise it is published and unpublished again (retained).
	Running bool
	// Files are written below the directory (relative path → content), parent directories made.
	Files map[string]string
	// Parameters are the volume's StorageClass parameters (when the volume is made here).
	Parameters map[string]string
}

// Record records p in st and returns the directory's path.
func Record(t testing.TB, st *store.Store, p Pod) string {
	t.Helper()
	_, err := st.CreateVolume(&store.Volume{ID: p.Volume, Kind: store.Persistent, Node: p.Node, Parameters: p.Parameters})
	if err != nil && !errors.Is(err, store.ErrExists) {
		t.Fatal(err)
	}
	dir, err := st.ClaimPodDir(p.Volume, p.Ref.DirName(), &p.Ref)
	if err != nil {
		t.Fatal(err)
	}
	target := "/var/lib/kubelet/pods/" + p.Ref.UID + "/volumes/x/mount"
	if err := st.AddTarget(p.Volume, store.Target{Path: target, PodDir: p.Ref.DirName()}); err != nil {
		t.Fatal(err)
	}
	if !p.Running {
		if err := st.RemoveTarget(p.Volume, target); err != nil {
			t.Fatal(err)
		}
	}
	for rel, data := range p.Files {
		path := filepath.Join(dir, rel)
		if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(path, []byte(data), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	return dir
}

// LogReaders allows `get pods/log` (core group) to each user in its namespace of allowed (user → namespace), and
// everything to system:masters, as the delegating authorizer would after the API server's RBAC.
func LogReaders(allowed map[string]string) authorizer.Authorizer {
	return authorizer.AuthorizerFunc(func(_ context.Context, a authorizer.Attributes) (authorizer.Decision, string, error) {
		for _, g := range a.GetUser().GetGroups() {
			if g == user.SystemPrivilegedGroup {
				return authorizer.DecisionAllow, "", nil
			}
		}
		ns, ok := allowed[a.GetUser().GetName()]
		if ok && a.IsResourceRequest() && a.GetVerb() == "get" && a.GetResource() == "pods" && a.GetSubresource() == "log" &&
			a.GetAPIGroup() == "" && ns == a.GetNamespace() {
			return authorizer.DecisionAllow, "", nil
		}
		return authorizer.DecisionNoOpinion, "", nil
	})
}
