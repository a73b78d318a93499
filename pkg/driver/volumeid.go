package driver

import (
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"regexp"
	"strings"

	"k8s.io/apimachinery/pkg/util/validation"
)

// Volume IDs are versioned and self-describing: "v1:<node>:<name-key>", where <node> is the node the volume lives on
// and <name-key> is the CO's volume name (or, for a long name, its start plus a hash of all of it, so that the ID
// stays within the 128 bytes the CSI spec asks COs to support). Kubelet-generated IDs of CSI inline ephemeral volumes
// ("csi-<hash>") have no ':', so the two kinds cannot be confused. IDs never contain '_' (see store.FallbackDirName).
const (
	idVersion      = "v1"
	idSeparator    = ":"
	maxNameLen     = 128 // CSI: a name of up to 128 bytes
	maxNameKeyLen  = 60
	nameHashLen    = 16
	maxNodeIDLen   = 63
	maxEphemeralID = 128
)

var (
	validName        = regexp.MustCompile(`^[A-Za-z0-9][A-Za-z0-9.-]*$`)
	validEphemeralID = regexp.MustCompile(`^[A-Za-z0-9][A-Za-z0-9.-]*$`)
	validNameKey     = regexp.MustCompile(`^[A-Za-z0-9][A-Za-z0-9.-]*(~[0-9a-f]{16})?$`)
)

// volumeID is a parsed persistent volume ID.
type volumeID struct {
	Node    string
	NameKey string
}

func (v volumeID) String() string { return idVersion + idSeparator + v.Node + idSeparator + v.NameKey }

// ValidateNodeID checks a node ID: a Kubernetes node name (DNS-1123 subdomain) of at most 63 characters, so that
// volume IDs that embed it stay short.
func ValidateNodeID(node string) error {
	if node == "" {
		return fmt.Errorf("node ID is empty")
	}
	if len(node) > maxNodeIDLen || len(validation.IsDNS1123Subdomain(node)) > 0 {
		return fmt.Errorf("node ID %q must be a lower-case DNS-1123 name of at most %d characters", node, maxNodeIDLen)
	}
	return nil
}

// validateName checks a CreateVolume name before it goes into an ID (and so into a path).
func validateName(name string) error {
	if len(name) > maxNameLen {
		return fmt.Errorf("volume name %q is longer than %d bytes", name, maxNameLen)
	}
	if !validName.MatchString(name) || strings.Contains(name, "..") {
		return fmt.Errorf("volume name %q may only hold letters, digits, '.' and '-', must start with a letter or digit and must not contain '..'", name)
	}
	return nil
}

// nameKey is the name itself when short, else its start plus a hash of the whole name ('~' never occurs in names).
func nameKey(name string) string {
	if len(name) <= maxNameKeyLen {
		return name
	}
	sum := sha256.Sum256([]byte(name))
	prefix := strings.TrimRight(name[:maxNameKeyLen-nameHashLen-1], ".-")
	return prefix + "~" + hex.EncodeToString(sum[:])[:nameHashLen]
}

// newVolumeID builds the ID of a persistent volume named name on node. The same inputs always give the same ID,
// which is what makes CreateVolume idempotent.
func newVolumeID(node, name string) (volumeID, error) {
	if err := ValidateNodeID(node); err != nil {
		return volumeID{}, err
	}
	if err := validateName(name); err != nil {
		return volumeID{}, err
	}
	return volumeID{Node: node, NameKey: nameKey(name)}, nil
}

// parseVolumeID parses and validates a persistent volume ID. Anything it returns is safe to use in a path.
func parseVolumeID(id string) (volumeID, error) {
	parts := strings.Split(id, idSeparator)
	if len(parts) != 3 || parts[0] != idVersion {
		return volumeID{}, fmt.Errorf("volume ID %q is not a keeplog %s volume ID (%s:<node>:<name>)", id, idVersion, idVersion)
	}
	v := volumeID{Node: parts[1], NameKey: parts[2]}
	if err := ValidateNodeID(v.Node); err != nil {
		return volumeID{}, fmt.Errorf("volume ID %q: %w", id, err)
	}
	if len(v.NameKey) > maxNameKeyLen || !validNameKey.MatchString(v.NameKey) || strings.Contains(v.NameKey, "..") {
		return volumeID{}, fmt.Errorf("volume ID %q has an invalid name part %q", id, v.NameKey)
	}
	return v, nil
}

// validateEphemeralID checks the ID kubelet made up for a CSI inline ephemeral volume.
func validateEphemeralID(id string) error {
	if len(id) > maxEphemeralID || !validEphemeralID.MatchString(id) || strings.Contains(id, "..") {
		return fmt.Errorf("ephemeral volume ID %q may only hold letters, digits, '.' and '-' (at most %d bytes)", id, maxEphemeralID)
	}
	return nil
}
