// Package keeplogimage builds the csi-provisioner image the chart e2e test installs, without Docker (package
// dockerarchive): the static csi-provisioner binary at /csi-provisioner, the upstream image's entrypoint. keeplog's
// own image is `make image`'s (hack/image), the one users build.
package keeplogimage

import (
	"archive/tar"

	"github.com/keeplog/keeplog/test/e2e/images/dockerarchive"
)

// WriteProvisioner writes the csi-provisioner image as ref to out. bin must be statically linked.
func WriteProvisioner(out, ref, bin string) error {
	data, err := dockerarchive.ReadStatic(bin)
	if err != nil {
		return err
	}
	return dockerarchive.Write(out, ref, []dockerarchive.Entry{
		{Name: "csi-provisioner", Mode: 0o755, Type: tar.TypeReg, Data: data},
		{Name: "tmp", Mode: 0o1777, Type: tar.TypeDir},
	}, map[string]any{"Env": []string{dockerarchive.PathEnv}, "Entrypoint": []string{"/csi-provisioner"}, "WorkingDir": "/"},
		"keeplog chart e2e")
}
