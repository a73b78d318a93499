// Command image writes keeplog's node plugin image without a Docker daemon, with go-containerregistry, and checks
// what it wrote. It is a build tool (`make image`), never linked into bin/keeplog.
//
//	image write  -ref ghcr.io/keeplog/keeplog:v1 -out bin/image -platform linux/amd64=BIN,ROOTFS,APIBIN ...
//	image verify -out bin/image -platform linux/amd64 ...
//
// write makes, for each platform, an image of two layers, as the Dockerfile's stages do: the base (ROOTFS: Debian
// bookworm's util-linux mount and its libraries, from hack/image-rootfs.sh, plus /etc/passwd, /etc/group, /tmp) and
// the static binaries: /usr/local/bin/keeplog, the entrypoint, and /usr/local/bin/keeplog-api (APIBIN), the chart's
// keeplog-api Deployment's command. One image for both: keeplog-api adds one file to the binary layer, where a second
// image would add a second configuration, manifest and base to every registry and mirror. It writes them as
//
//	OUT/oci/                         an OCI image layout whose index.json names one multi-platform image index
//	                                 (crane push OUT/oci REF, skopeo copy --all oci:OUT/oci:TAG)
//	OUT/keeplog-linux-ARCH.tar       a docker-archive per platform, tagged REF (ctr images import, docker load,
//	                                 podman load, crane push)
//
// verify reads both back and fails unless every platform's image has the entrypoint, the keeplog and keeplog-api
// binaries and a mount(8) that are ELF files of that platform's machine, the binaries static (no program interpreter).
package main

import (
	"errors"
	"flag"
	"fmt"
	"os"
	"strings"
)

func main() {
	if err := run(os.Args[1:]); err != nil {
		fmt.Fprintln(os.Stderr, "image:", err)
		os.Exit(1)
	}
}

// platformFlags collects repeated -platform values.
type platformFlags []string

func (p *platformFlags) String() string     { return strings.Join(*p, ",") }
func (p *platformFlags) Set(v string) error { *p = append(*p, v); return nil }

func run(args []string) error {
	if len(args) == 0 {
		return errors.New("usage: image write|verify [flags]")
	}
	fs := flag.NewFlagSet(args[0], flag.ContinueOnError)
	out := fs.String("out", "bin/image", "output directory")
	ref := fs.String("ref", "ghcr.io/keeplog/keeplog:dev", "image reference the docker-archives are tagged with")
	version := fs.String("version", "dev", "keeplog's version (the image's org.opencontainers.image.version label)")
	epoch := fs.Int64("source-date-epoch", 0, "modification time of every file and the image's creation time (reproducible output)")
	var platforms platformFlags
	fs.Var(&platforms, "platform", "write: OS/ARCH=BINARY,ROOTFS,APIBINARY; verify: OS/ARCH (repeatable)")
	if err := fs.Parse(args[1:]); err != nil {
		return err
	}
	if len(platforms) == 0 {
		return errors.New("no -platform")
	}
	switch args[0] {
	case "write":
		specs, err := parseSpecs(platforms)
		if err != nil {
			return err
		}
		return write(writeConfig{Out: *out, Ref: *ref, Version: *version, Epoch: *epoch, Platforms: specs})
	case "verify":
		return verify(*out, *ref, platforms)
	default:
		return fmt.Errorf("unknown command %q (write or verify)", args[0])
	}
}

// spec is one platform to write: its binaries and its base root filesystem.
type spec struct {
	OS, Arch, Binary, Rootfs, APIBinary string
}

func parseSpecs(values []string) ([]spec, error) {
	var specs []spec
	for _, v := range values {
		plat, files, ok := strings.Cut(v, "=")
		osName, arch, ok2 := strings.Cut(plat, "/")
		f := strings.Split(files, ",")
		if !ok || !ok2 || len(f) != 3 || osName == "" || arch == "" || f[0] == "" || f[1] == "" || f[2] == "" {
			return nil, fmt.Errorf("-platform %q: want OS/ARCH=BINARY,ROOTFS,APIBINARY", v)
		}
		specs = append(specs, spec{OS: osName, Arch: arch, Binary: f[0], Rootfs: f[1], APIBinary: f[2]})
	}
	return specs, nil
}
