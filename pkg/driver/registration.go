package driver

import (
	"context"
	"path/filepath"
	"time"

	"github.com/go-logr/logr"
	"google.golang.org/grpc"
	registerapi "k8s.io/kubelet/pkg/apis/pluginregistration/v1"
)

// registration serves kubelet's plugin-registration API, which node-driver-registrar would serve otherwise: kubelet
// watches its plugins_registry directory, finds our socket, asks GetInfo, and then talks CSI to Endpoint.
type registration struct {
	registerapi.UnimplementedRegistrationServer
	name     string
	endpoint string
	log      logr.Logger
}

func (r *registration) GetInfo(context.Context, *registerapi.InfoRequest) (*registerapi.PluginInfo, error) {
	return &registerapi.PluginInfo{Type: registerapi.CSIPlugin, Name: r.name, Endpoint: r.endpoint, SupportedVersions: []string{"1.0.0"}}, nil
}

func (r *registration) NotifyRegistrationStatus(_ context.Context, s *registerapi.RegistrationStatus) (*registerapi.RegistrationStatusResponse, error) {
	if s.PluginRegistered {
		r.log.Info("Registered with kubelet", "driver", r.name, "endpoint", r.endpoint)
	} else {
		r.log.Error(nil, "Kubelet refused the registration", "driver", r.name, "error", s.Error)
	}
	return &registerapi.RegistrationStatusResponse{}, nil
}

// RegistrationSocket is where kubelet looks for this driver's registration socket inside registryDir.
func (d *Driver) RegistrationSocket(registryDir string) string {
	return filepath.Join(registryDir, d.cfg.Name+"-reg.sock")
}

// ServeRegistration registers the driver with kubelet until ctx ends. kubeletEndpoint is the CSI socket path as the
// kubelet sees it on the host. The socket is removed at the end so that kubelet deregisters the plugin.
func (d *Driver) ServeRegistration(ctx context.Context, registryDir, kubeletEndpoint string) error {
	path := d.RegistrationSocket(registryDir)
	l, err := Listen(path)
	if err != nil {
		return err
	}
	srv := grpc.NewServer()
	registerapi.RegisterRegistrationServer(srv, &registration{name: d.cfg.Name, endpoint: kubeletEndpoint, log: d.log})
	d.log.Info("Serving kubelet plugin registration", "socket", path, "csiEndpoint", kubeletEndpoint)
	return serveUntilDone(ctx, srv, l, 5*time.Second)
}
