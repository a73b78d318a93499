package lab

import (
	"crypto"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/rsa"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/hex"
	"encoding/pem"
	"fmt"
	"math/big"
	"net"
	"os"
	"path/filepath"
	"strings"
	"time"
)

// pki holds the lab's certificates, keys, tokens and kubeconfigs (all files under dir).
type pki struct {
	dir string

	CACert string // CA certificate (client CA, kubelet CA, root CA for service accounts)

	APIServerCert, APIServerKey string // serving cert for 127.0.0.1 / localhost / kubernetes
	KubeletCert, KubeletKey     string // kubelet serving cert for the node name, localhost, 127.0.0.1
	KubeletClientCert           string // kube-apiserver's client cert towards the kubelet
	KubeletClientKey            string

	SAKey, SAPub string // service-account signing key pair

	// The aggregation layer's front proxy: its own CA (--requestheader-client-ca-file; not the client CA, so that
	// no ordinary client certificate can assert X-Remote-User) and kube-apiserver's client certificate towards
	// aggregated API servers (CN FrontProxyClientName, --requestheader-allowed-names).
	FrontProxyCACert, FrontProxyClientCert, FrontProxyClientKey string

	TokenFile string // --token-auth-file

	// Bearer tokens per identity.
	AdminToken, ControllerManagerToken, SchedulerToken, KubeletToken string
}

type identity struct {
	token, user, uid string
	groups           []string
}

// newPKI writes everything a cluster for nodeName needs into dir.
func newPKI(dir, nodeName string) (*pki, error) {
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return nil, fmt.Errorf("create pki dir %s: %w", dir, err)
	}
	p := &pki{dir: dir}
	path := func(name string) string { return filepath.Join(dir, name) }

	caKey, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return nil, fmt.Errorf("generate CA key: %w", err)
	}
	now := time.Now().Add(-time.Hour)
	caTmpl := &x509.Certificate{
		SerialNumber:          newSerial(),
		Subject:               pkix.Name{CommonName: "keeplog-e2e-lab-ca"},
		NotBefore:             now,
		NotAfter:              now.Add(10 * 24 * time.Hour),
		KeyUsage:              x509.KeyUsageCertSign | x509.KeyUsageCRLSign | x509.KeyUsageDigitalSignature,
		BasicConstraintsValid: true,
		IsCA:                  true,
	}
	caDER, err := x509.CreateCertificate(rand.Reader, caTmpl, caTmpl, caKey.Public(), caKey)
	if err != nil {
		return nil, fmt.Errorf("create CA certificate: %w", err)
	}
	caCert, err := x509.ParseCertificate(caDER)
	if err != nil {
		return nil, fmt.Errorf("parse CA certificate: %w", err)
	}
	p.CACert = path("ca.crt")
	if err := writePEM(p.CACert, "CERTIFICATE", caDER); err != nil {
		return nil, err
	}
	if err := writeKey(path("ca.key"), caKey); err != nil {
		return nil, err
	}

	issue := func(base, cn string, orgs []string, dns []string, ips []net.IP, usage x509.ExtKeyUsage) (string, string, error) {
		key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
		if err != nil {
			return "", "", fmt.Errorf("generate key for %s: %w", base, err)
		}
		tmpl := &x509.Certificate{
			SerialNumber: newSerial(),
			Subject:      pkix.Name{CommonName: cn, Organization: orgs},
			NotBefore:    now,
			NotAfter:     now.Add(10 * 24 * time.Hour),
			KeyUsage:     x509.KeyUsageDigitalSignature | x509.KeyUsageKeyEncipherment,
			ExtKeyUsage:  []x509.ExtKeyUsage{usage},
			DNSNames:     dns,
			IPAddresses:  ips,
		}
		der, err := x509.CreateCertificate(rand.Reader, tmpl, caCert, key.Public(), caKey)
		if err != nil {
			return "", "", fmt.Errorf("create certificate %s (CN %s): %w", base, cn, err)
		}
		certPath, keyPath := path(base+".crt"), path(base+".key")
		if err := writePEM(certPath, "CERTIFICATE", der); err != nil {
			return "", "", err
		}
		if err := writeKey(keyPath, key); err != nil {
			return "", "", err
		}
		return certPath, keyPath, nil
	}

	loopback := []net.IP{net.ParseIP("127.0.0.1"), net.ParseIP(serviceIP)}
	p.APIServerCert, p.APIServerKey, err = issue("apiserver", "kube-apiserver", nil,
		[]string{"localhost", "kubernetes", "kubernetes.default", "kubernetes.default.svc", "kubernetes.default.svc.cluster.local"},
		loopback, x509.ExtKeyUsageServerAuth)
	if err != nil {
		return nil, err
	}
	p.KubeletCert, p.KubeletKey, err = issue("kubelet", "system:node:"+nodeName, []string{"system:nodes"},
		[]string{nodeName, "localhost"}, []net.IP{net.ParseIP("127.0.0.1")}, x509.ExtKeyUsageServerAuth)
	if err != nil {
		return nil, err
	}
	p.KubeletClientCert, p.KubeletClientKey, err = issue("apiserver-kubelet-client", "kube-apiserver-kubelet-client",
		[]string{"system:masters"}, nil, nil, x509.ExtKeyUsageClientAuth)
	if err != nil {
		return nil, err
	}

	if err := p.frontProxy(now); err != nil {
		return nil, err
	}

	saKey, err := rsa.GenerateKey(rand.Reader, 2048)
	if err != nil {
		return nil, fmt.Errorf("generate service-account key: %w", err)
	}
	p.SAKey, p.SAPub = path("sa.key"), path("sa.pub")
	if err := writeKey(p.SAKey, saKey); err != nil {
		return nil, err
	}
	pubDER, err := x509.MarshalPKIXPublicKey(saKey.Public())
	if err != nil {
		return nil, fmt.Errorf("marshal service-account public key: %w", err)
	}
	if err := writePEM(p.SAPub, "PUBLIC KEY", pubDER); err != nil {
		return nil, err
	}

	ids := []identity{
		{token: newToken(), user: "admin", uid: "admin", groups: []string{"system:masters"}},
		{token: newToken(), user: "system:kube-controller-manager", uid: "kube-controller-manager"},
		{token: newToken(), user: "system:kube-scheduler", uid: "kube-scheduler"},
		{token: newToken(), user: "system:node:" + nodeName, uid: "kubelet", groups: []string{"system:nodes"}},
	}
	p.AdminToken, p.ControllerManagerToken, p.SchedulerToken, p.KubeletToken = ids[0].token, ids[1].token, ids[2].token, ids[3].token
	var sb strings.Builder
	for _, id := range ids {
		fmt.Fprintf(&sb, "%s,%s,%s", id.token, id.user, id.uid)
		if len(id.groups) > 0 {
			fmt.Fprintf(&sb, ",\"%s\"", strings.Join(id.groups, ","))
		}
		sb.WriteString("\n")
	}
	p.TokenFile = path("tokens.csv")
	if err := os.WriteFile(p.TokenFile, []byte(sb.String()), 0o600); err != nil {
		return nil, fmt.Errorf("write token file %s: %w", p.TokenFile, err)
	}
	return p, nil
}

// FrontProxyClientName is the CN of kube-apiserver's front-proxy client certificate.
const FrontProxyClientName = "front-proxy-client"

// frontProxy writes the front-proxy CA and kube-apiserver's client certificate signed by it.
func (p *pki) frontProxy(now time.Time) error {
	caKey, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return fmt.Errorf("generate front-proxy CA key: %w", err)
	}
	caTmpl := &x509.Certificate{SerialNumber: newSerial(), Subject: pkix.Name{CommonName: "keeplog-e2e-front-proxy-ca"},
		NotBefore: now, NotAfter: now.Add(10 * 24 * time.Hour), BasicConstraintsValid: true, IsCA: true,
		KeyUsage: x509.KeyUsageCertSign | x509.KeyUsageCRLSign | x509.KeyUsageDigitalSignature}
	caDER, err := x509.CreateCertificate(rand.Reader, caTmpl, caTmpl, caKey.Public(), caKey)
	if err != nil {
		return fmt.Errorf("create front-proxy CA certificate: %w", err)
	}
	ca, err := x509.ParseCertificate(caDER)
	if err != nil {
		return err
	}
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return fmt.Errorf("generate front-proxy client key: %w", err)
	}
	tmpl := &x509.Certificate{SerialNumber: newSerial(), Subject: pkix.Name{CommonName: FrontProxyClientName},
		NotBefore: now, NotAfter: now.Add(10 * 24 * time.Hour), KeyUsage: x509.KeyUsageDigitalSignature,
		ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth}}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, ca, key.Public(), caKey)
	if err != nil {
		return fmt.Errorf("create front-proxy client certificate: %w", err)
	}
	p.FrontProxyCACert = filepath.Join(p.dir, "front-proxy-ca.crt")
	p.FrontProxyClientCert = filepath.Join(p.dir, "front-proxy-client.crt")
	p.FrontProxyClientKey = filepath.Join(p.dir, "front-proxy-client.key")
	if err := writePEM(p.FrontProxyCACert, "CERTIFICATE", caDER); err != nil {
		return err
	}
	if err := writePEM(p.FrontProxyClientCert, "CERTIFICATE", der); err != nil {
		return err
	}
	return writeKey(p.FrontProxyClientKey, key)
}

// writeKubeconfig writes a token kubeconfig for server into path.
func writeKubeconfig(path, server, caFile, user, token string) error {
	content := fmt.Sprintf(`apiVersion: v1
kind: Config
clusters:
- name: lab
  cluster:
    server: %s
    certificate-authority: %s
users:
- name: %s
  user:
    token: %s
contexts:
- name: lab
  context:
    cluster: lab
    user: %s
current-context: lab
`, server, caFile, user, token, user)
	if err := os.WriteFile(path, []byte(content), 0o600); err != nil {
		return fmt.Errorf("write kubeconfig %s: %w", path, err)
	}
	return nil
}

func newSerial() *big.Int {
	n, err := rand.Int(rand.Reader, new(big.Int).Lsh(big.NewInt(1), 62))
	if err != nil {
		return big.NewInt(time.Now().UnixNano())
	}
	return n
}

func newToken() string {
	b := make([]byte, 16)
	_, _ = rand.Read(b) // crypto/rand.Read never returns an error on Linux
	return hex.EncodeToString(b)
}

func writePEM(path, typ string, der []byte) error {
	data := pem.EncodeToMemory(&pem.Block{Type: typ, Bytes: der})
	if err := os.WriteFile(path, data, 0o600); err != nil {
		return fmt.Errorf("write %s: %w", path, err)
	}
	return nil
}

func writeKey(path string, key crypto.Signer) error {
	var (
		der []byte
		typ string
		err error
	)
	switch k := key.(type) {
	case *rsa.PrivateKey:
		der, typ = x509.MarshalPKCS1PrivateKey(k), "RSA PRIVATE KEY"
	case *ecdsa.PrivateKey:
		der, err = x509.MarshalECPrivateKey(k)
		typ = "EC PRIVATE KEY"
	default:
		return fmt.Errorf("write %s: unsupported key type %T", path, key)
	}
	if err != nil {
		return fmt.Errorf("marshal key for %s: %w", path, err)
	}
	return writePEM(path, typ, der)
}
