package store

import (
	"fmt"
	"regexp"
	"strings"

	"k8s.io/apimachinery/pkg/util/validation"

	"github.com/keeplog/keeplog/pkg/api"
)

// Every name that ends up in a path is checked before it is used: namespaces and pod names with apimachinery's
// validation (the API server's own rules), UIDs and record keys with these.
var (
	podUID = regexp.MustCompile(`^[0-9a-fA-F]{8}-?[0-9a-fA-F]{4}-?[0-9a-fA-F]{4}-?[0-9a-fA-F]{4}-?[0-9a-fA-F]{12}$`)
	// A record key is one path component made only of characters that cannot change its meaning in a path.
	recordKey = regexp.MustCompile(`^[A-Za-z0-9][A-Za-z0-9.:~-]*$`)
)

const (
	maxKeyLen = 128
)

// PodRef names the pod that a directory belongs to.
type PodRef struct {
	Namespace string `json:"namespace"`
	Name      string `json:"name"`
	UID       string `json:"uid"`
}

// Validate checks each field against the Kubernetes rules, so that none of them can leave the root when joined into a path.
func (p PodRef) Validate() error {
	if errs := validation.IsDNS1123Label(p.Namespace); len(errs) > 0 {
		return fmt.Errorf("pod namespace %q is not a valid Kubernetes namespace: %s", p.Namespace, strings.Join(errs, "; "))
	}
	if errs := validation.IsDNS1123Subdomain(p.Name); len(errs) > 0 {
		return fmt.Errorf("pod name %q is not a valid Kubernetes pod name: %s", p.Name, strings.Join(errs, "; "))
	}
	if !podUID.MatchString(p.UID) {
		return fmt.Errorf("pod uid %q is not a UUID", p.UID)
	}
	return nil
}

// DirName is kubelet's own naming for /var/log/pods: <namespace>_<pod>_<uid>.
func (p PodRef) DirName() string {
	return p.Namespace + "_" + p.Name + "_" + p.UID
}

func (p PodRef) String() string { return p.Namespace + "/" + p.Name + " (uid " + p.UID + ")" }

// ParsePodDirName is the inverse of DirName; it refuses anything DirName could not have produced.
func ParsePodDirName(dir string) (PodRef, error) {
	parts := strings.Split(dir, "_")
	if len(parts) != 3 {
		return PodRef{}, fmt.Errorf("directory name %q is not <namespace>_<pod>_<uid>", dir)
	}
	ref := PodRef{Namespace: parts[0], Name: parts[1], UID: parts[2]}
	if err := ref.Validate(); err != nil {
		return PodRef{}, fmt.Errorf("directory name %q: %w", dir, err)
	}
	return ref, nil
}

// FallbackDirName is the directory a volume uses when the CO sent no pod information.
// Volume IDs never contain '_', so the mapping is one to one.
func FallbackDirName(volumeID string) string {
	return api.FallbackDirPrefix + strings.ReplaceAll(volumeID, ":", "_")
}

// ValidateKey checks a volume ID before it is used as a directory name under the state directory.
func ValidateKey(key string) error {
	if len(key) == 0 || len(key) > maxKeyLen || !recordKey.MatchString(key) || strings.Contains(key, "..") {
		return fmt.Errorf("volume ID %q is not a safe record key (letters, digits, '.', ':', '~', '-', at most %d characters, no '..')", key, maxKeyLen)
	}
	return nil
}
