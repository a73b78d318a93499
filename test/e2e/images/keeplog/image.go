// Package keeplogimage builds the images the chart e2e test installs, without Docker (package dockerarchive).
//
//   - keeplog: the static bin/keeplog at /usr/local/bin/keeplog (the Dockerfile's entrypoint) plus a static busybox
//     with the mount and umount applets k8s.io/mount-utils runs (the Dockerfile installs util-linux's instead) and
//     sh for debugging.
//   - csi-provisioner: the static csi-provisioner binary at /csi-provisioner, the upstream image's entrypoint.
package keeplogimage

import (
	"archive/tar"

	"github.com/keeplog/keeplog/test/e2e/images/dockerarchive"
)

// WriteKeeplog writes the keeplog image as ref to out. keeplogBin and busybox must be statically linked.
func WriteKeeplog(out, ref, keeplogBin, busybox string) error {
	bin, err := dockerarchive.ReadStatic(keeplogBin)
	if err != nil {
		return err
	}
	bb, err := dockerarchive.ReadStatic(busybox)
	if err != nil {
		return err
	}
	entries := []dockerarchive.Entry{
		{Name: "bin", Mode: 0o755, Type: tar.TypeDir},
		{Name: "bin/busybox", Mode: 0o755, Type: tar.TypeReg, Data: bb},
		{Name: "etc", Mode: 0o755, Type: tar.TypeDir},
		{Name: "etc/keeplog", Mode: 0o755, Type: tar.TypeDir},
		{Name: "tmp", Mode: 0o1777, Type: tar.TypeDir},
		{Name: "usr", Mode: 0o755, Type: tar.TypeDir},
		{Name: "usr/local", Mode: 0o755, Type: tar.TypeDir},
		{Name: "usr/local/bin", Mode: 0o755, Type: tar.TypeDir},
		{Name: "usr/local/bin/keeplog", Mode: 0o755, Type: tar.TypeReg, Data: bin},
	}
	for _, applet := range []string{"mount", "umount", "sh"} {
		entries = append(entries, dockerarchive.Entry{Name: "bin/" + applet, Mode: 0o777, Type: tar.TypeSymlink, Linkname: "busybox"})
	}
	return dockerarchive.Write(out, ref, entries, map[string]any{
		"Env": []string{dockerarchive.PathEnv}, "Entrypoint": []string{"/usr/local/bin/keeplog"}, "WorkingDir": "/",
	}, "keeplog chart e2e")
}

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
