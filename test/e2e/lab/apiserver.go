package lab

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"fmt"
	"net/http"
	"os"
	"path/filepath"
	"time"
)

const (
	serviceCIDR = "10.0.0.0/24" // virtual: no interface ever carries it (there is no kube-proxy)
	serviceIP   = "10.0.0.1"    // the `kubernetes` Service's ClusterIP (first address of serviceCIDR)
)

// startAPIServer runs kube-apiserver on 127.0.0.1 and waits for /readyz.
func (l *Lab) startAPIServer(ctx context.Context) error {
	certDir := filepath.Join(l.workDir, "apiserver")
	if err := os.MkdirAll(certDir, 0o700); err != nil {
		return fmt.Errorf("create %s: %w", certDir, err)
	}
	p := l.pki
	argv := []string{filepath.Join(l.cfg.BinDir, "kube-apiserver"),
		"--etcd-servers=" + l.etcdURL,
		"--etcd-prefix=/registry",
		"--bind-address=127.0.0.1",
		"--advertise-address=127.0.0.1",
		fmt.Sprintf("--secure-port=%d", l.ports.apiserver),
		"--cert-dir=" + certDir,
		"--tls-cert-file=" + p.APIServerCert,
		"--tls-private-key-file=" + p.APIServerKey,
		"--client-ca-file=" + p.CACert,
		"--token-auth-file=" + p.TokenFile,
		"--service-account-key-file=" + p.SAPub,
		"--service-account-signing-key-file=" + p.SAKey,
		"--service-account-issuer=https://kubernetes.default.svc.cluster.local",
		"--service-cluster-ip-range=" + serviceCIDR,
		"--authorization-mode=Node,RBAC",
		"--allow-privileged=true",
		"--enable-admission-plugins=NodeRestriction",
		// The endpoint reconciler would publish 127.0.0.1 as the `kubernetes` Service's endpoint,
		// which Endpoints validation rejects (loopback); nothing in the lab needs that Service.
		"--endpoint-reconciler-type=none",
		"--kubelet-preferred-address-types=Hostname,InternalIP",
		"--kubelet-certificate-authority=" + p.CACert,
		"--kubelet-client-certificate=" + p.KubeletClientCert,
		"--kubelet-client-key=" + p.KubeletClientKey,
		// The aggregation layer (keeplog-api's retainedpods.keeplog.csi.io): kube-apiserver proxies to aggregated
		// API servers with the front-proxy client certificate and the user in X-Remote-* headers, which they believe
		// only over that certificate. No --enable-aggregator-routing: an APIService's Service is resolved by its
		// cluster IP or, for an ExternalName Service (what the lab uses: "localhost"), by that name; endpoint
		// routing would need a Pod IP, and the lab's processes listen on loopback, which Endpoints refuse.
		"--requestheader-client-ca-file=" + p.FrontProxyCACert,
		"--requestheader-allowed-names=" + FrontProxyClientName,
		"--requestheader-username-headers=X-Remote-User",
		"--requestheader-group-headers=X-Remote-Group",
		"--requestheader-extra-headers-prefix=X-Remote-Extra-",
		"--proxy-client-cert-file=" + p.FrontProxyClientCert,
		"--proxy-client-key-file=" + p.FrontProxyClientKey,
		"--profiling=false",
		"--v=1",
	}
	proc, err := l.startComponent("kube-apiserver", argv, nil)
	if err != nil {
		return err
	}
	l.apiURL = fmt.Sprintf("https://127.0.0.1:%d", l.ports.apiserver)
	hc, err := l.apiHTTPClient()
	if err != nil {
		return err
	}
	return l.waitFor(ctx, proc, "kube-apiserver /readyz on "+l.apiURL, 2*time.Minute, func(ctx context.Context) error {
		return l.checkReadyz(ctx, hc)
	})
}

// apiHTTPClient is an HTTPS client that trusts the lab CA (requests still need the admin token).
func (l *Lab) apiHTTPClient() (*http.Client, error) {
	caPEM, err := os.ReadFile(l.pki.CACert)
	if err != nil {
		return nil, fmt.Errorf("read CA %s: %w", l.pki.CACert, err)
	}
	pool := x509.NewCertPool()
	if !pool.AppendCertsFromPEM(caPEM) {
		return nil, fmt.Errorf("no certificate in CA file %s", l.pki.CACert)
	}
	return &http.Client{
		Timeout:   5 * time.Second,
		Transport: &http.Transport{TLSClientConfig: &tls.Config{RootCAs: pool, MinVersion: tls.VersionTLS12}},
	}, nil
}

func (l *Lab) checkReadyz(ctx context.Context, hc *http.Client) error {
	_, err := getOK(ctx, hc, l.apiURL+"/readyz", l.pki.AdminToken)
	return err
}

// WaitAPIReady waits until kube-apiserver's /readyz answers 200.
func (l *Lab) WaitAPIReady(ctx context.Context, timeout time.Duration) error {
	hc, err := l.apiHTTPClient()
	if err != nil {
		return err
	}
	return l.waitFor(ctx, nil, "kube-apiserver /readyz", timeout, func(ctx context.Context) error {
		return l.checkReadyz(ctx, hc)
	})
}

// startControllerManager runs kube-controller-manager (per-controller service-account credentials,
// so the ephemeral-volume controller, PV binder and garbage collector work) and waits for /healthz.
func (l *Lab) startControllerManager(ctx context.Context) error {
	dir := filepath.Join(l.workDir, "controller-manager")
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return fmt.Errorf("create %s: %w", dir, err)
	}
	kc := filepath.Join(dir, "kubeconfig")
	if err := writeKubeconfig(kc, l.apiURL, l.pki.CACert, "system:kube-controller-manager", l.pki.ControllerManagerToken); err != nil {
		return err
	}
	// No --authentication/authorization-kubeconfig: /healthz is always allowed, and delegated
	// authn would watch the (empty) requestheader CA bundle and log errors forever.
	argv := []string{filepath.Join(l.cfg.BinDir, "kube-controller-manager"),
		"--kubeconfig=" + kc,
		"--bind-address=127.0.0.1",
		fmt.Sprintf("--secure-port=%d", l.ports.controllerManager),
		"--cert-dir=" + dir,
		"--leader-elect=false",
		"--use-service-account-credentials=true",
		"--service-account-private-key-file=" + l.pki.SAKey,
		"--root-ca-file=" + l.pki.CACert,
		"--cluster-signing-cert-file=" + l.pki.CACert,
		"--cluster-signing-key-file=" + filepath.Join(l.pki.dir, "ca.key"),
		"--service-cluster-ip-range=" + serviceCIDR,
		// It creates this dir when missing: keep it out of /usr/libexec.
		"--flex-volume-plugin-dir=" + filepath.Join(dir, "flexvolume"),
		"--profiling=false",
		"--v=1",
	}
	p, err := l.startComponent("kube-controller-manager", argv, nil)
	if err != nil {
		return err
	}
	return l.waitHealthz(ctx, p, l.ports.controllerManager)
}

// startScheduler runs kube-scheduler and waits for /healthz.
func (l *Lab) startScheduler(ctx context.Context) error {
	dir := filepath.Join(l.workDir, "scheduler")
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return fmt.Errorf("create %s: %w", dir, err)
	}
	kc := filepath.Join(dir, "kubeconfig")
	if err := writeKubeconfig(kc, l.apiURL, l.pki.CACert, "system:kube-scheduler", l.pki.SchedulerToken); err != nil {
		return err
	}
	argv := []string{filepath.Join(l.cfg.BinDir, "kube-scheduler"),
		"--kubeconfig=" + kc,
		"--bind-address=127.0.0.1",
		fmt.Sprintf("--secure-port=%d", l.ports.scheduler),
		"--cert-dir=" + dir,
		"--leader-elect=false",
		"--profiling=false",
		"--v=1",
	}
	p, err := l.startComponent("kube-scheduler", argv, nil)
	if err != nil {
		return err
	}
	return l.waitHealthz(ctx, p, l.ports.scheduler)
}

// waitHealthz waits for a component's self-signed https://127.0.0.1:port/healthz to answer 200.
func (l *Lab) waitHealthz(ctx context.Context, p *Process, port int) error {
	url := fmt.Sprintf("https://127.0.0.1:%d/healthz", port)
	hc := &http.Client{
		Timeout: 5 * time.Second,
		// The component serves a self-signed certificate from its --cert-dir; this probe only
		// checks liveness on loopback and sends no credentials.
		Transport: &http.Transport{TLSClientConfig: &tls.Config{InsecureSkipVerify: true}}, //nolint:gosec // loopback liveness probe
	}
	return l.waitFor(ctx, p, p.Name()+" "+url, 2*time.Minute, func(ctx context.Context) error {
		_, err := getOK(ctx, hc, url, "")
		return err
	})
}
