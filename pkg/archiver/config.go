package archiver

import (
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"os"
	"path"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	"golang.org/x/crypto/ssh"
)

// Target is the SFTP server to archive to. It comes from a Secret: either
// mounted as a directory (one file per key, the usual Secret volume) or as
// one JSON file with the same keys. Its String method never shows secrets.
type Target struct {
	// Type is "sftp" or empty (an S3 target is an S3Target).
	Type string `json:"type,omitempty"`
	// Host name or IP address of the SFTP server.
	Host string `json:"host"`
	// Port of the SSH server; 22 when zero.
	Port int `json:"port,omitempty"`
	// User to log in as.
	User string `json:"user"`
	// PrivateKey is a PEM/OpenSSH private key; either it or Password is needed.
	PrivateKey string `json:"privateKey,omitempty"`
	// PrivateKeyPassphrase decrypts PrivateKey when it is encrypted.
	PrivateKeyPassphrase string `json:"privateKeyPassphrase,omitempty"`
	// Password for password authentication.
	Password string `json:"password,omitempty"`
	// KnownHosts holds known_hosts lines for the server. Required: there is
	// no mode without host key checking.
	KnownHosts string `json:"knownHosts"`
	// BaseDir is the absolute remote directory archives go under.
	BaseDir string `json:"baseDir"`
}

// String describes the target without credentials.
func (t Target) String() string {
	auth := []string{}
	if t.PrivateKey != "" {
		auth = append(auth, "privateKey")
	}
	if t.Password != "" {
		auth = append(auth, "password")
	}
	return fmt.Sprintf("sftp://%s@%s%s (auth: %s)", t.User, t.Addr(), t.BaseDir, strings.Join(auth, ","))
}

// GoString keeps %#v from printing secrets too.
func (t Target) GoString() string { return "archiver.Target{" + t.String() + "}" }

// Addr is host:port.
func (t Target) Addr() string {
	p := t.Port
	if p == 0 {
		p = 22
	}
	return net.JoinHostPort(t.Host, strconv.Itoa(p))
}

// Validate says what is wrong with which field (all problems at once).
func (t Target) Validate() error {
	var errs []error
	if t.Type != "" && t.Type != "sftp" {
		errs = append(errs, fmt.Errorf("type %q: not sftp", t.Type))
	}
	if t.Host == "" {
		errs = append(errs, errors.New("host: required"))
	} else if strings.ContainsAny(t.Host, " /@\t\n") {
		errs = append(errs, fmt.Errorf("host %q: not a host name or address", t.Host))
	}
	if t.Port < 0 || t.Port > 65535 {
		errs = append(errs, fmt.Errorf("port %d: out of range 1-65535", t.Port))
	}
	if t.User == "" {
		errs = append(errs, errors.New("user: required"))
	}
	if t.PrivateKey == "" && t.Password == "" {
		errs = append(errs, errors.New("privateKey or password: one is required"))
	}
	if t.PrivateKey != "" {
		if _, err := t.signer(); err != nil {
			errs = append(errs, fmt.Errorf("privateKey: %v", err))
		}
	}
	if strings.TrimSpace(t.KnownHosts) == "" {
		errs = append(errs, errors.New("knownHosts: required (host keys are always checked)"))
	} else if _, err := parseKnownHosts(t.KnownHosts); err != nil {
		errs = append(errs, fmt.Errorf("knownHosts: %v", err))
	}
	if t.BaseDir == "" {
		errs = append(errs, errors.New("baseDir: required"))
	} else if !path.IsAbs(t.BaseDir) || path.Clean(t.BaseDir) != t.BaseDir {
		errs = append(errs, fmt.Errorf("baseDir %q: must be an absolute, clean path", t.BaseDir))
	}
	if len(errs) > 0 {
		return fmt.Errorf("sftp target: %w", errors.Join(errs...))
	}
	return nil
}

func (t Target) signer() (ssh.Signer, error) {
	if t.PrivateKeyPassphrase != "" {
		return ssh.ParsePrivateKeyWithPassphrase([]byte(t.PrivateKey), []byte(t.PrivateKeyPassphrase))
	}
	s, err := ssh.ParsePrivateKey([]byte(t.PrivateKey))
	if err != nil {
		var missing *ssh.PassphraseMissingError
		if errors.As(err, &missing) {
			return nil, errors.New("the key is encrypted and privateKeyPassphrase is not set")
		}
		// Never include key material: the parser's messages do not, but
		// keep the message generic anyway.
		return nil, errors.New("cannot parse the private key (expected PEM or OpenSSH format)")
	}
	return s, nil
}

// targetKeys are the file names read from a Secret volume.
var targetKeys = []string{"host", "port", "user", "privateKey", "privateKeyPassphrase", "password", "knownHosts", "baseDir"}

// LoadTarget reads a Target from a Secret volume directory (one file per
// key) or from a JSON file, and validates it.
func LoadTarget(p string) (Target, error) {
	st, err := os.Stat(p)
	if err != nil {
		return Target{}, fmt.Errorf("read sftp target: %w", err)
	}
	var t Target
	if st.IsDir() {
		vals := map[string]string{}
		for _, k := range targetKeys {
			b, err := os.ReadFile(filepath.Join(p, k))
			if errors.Is(err, os.ErrNotExist) {
				continue
			}
			if err != nil {
				return Target{}, fmt.Errorf("read sftp target %s: %w", filepath.Join(p, k), err)
			}
			vals[k] = string(b)
		}
		one := func(k string) string { return strings.TrimSpace(vals[k]) }
		t = Target{Host: one("host"), User: one("user"), BaseDir: one("baseDir"),
			PrivateKey: vals["privateKey"], PrivateKeyPassphrase: strings.TrimRight(vals["privateKeyPassphrase"], "\r\n"),
			Password: strings.TrimRight(vals["password"], "\r\n"), KnownHosts: vals["knownHosts"]}
		if s := one("port"); s != "" {
			if t.Port, err = strconv.Atoi(s); err != nil {
				return Target{}, fmt.Errorf("sftp target %s: port %q is not a number", filepath.Join(p, "port"), s)
			}
		}
	} else {
		b, err := os.ReadFile(p)
		if err != nil {
			return Target{}, fmt.Errorf("read sftp target: %w", err)
		}
		dec := json.NewDecoder(strings.NewReader(string(b)))
		dec.DisallowUnknownFields()
		if err := dec.Decode(&t); err != nil {
			// json errors quote offsets and field names, not values.
			return Target{}, fmt.Errorf("parse sftp target %s: %v", p, err)
		}
	}
	if err := t.Validate(); err != nil {
		return Target{}, fmt.Errorf("%s: %w", p, err)
	}
	return t, nil
}

// Config tunes the archiver. Zero values take the defaults shown.
type Config struct {
	// NodeName is written into manifests (required).
	NodeName string
	// Target is the SFTP server; only BaseDir is used by the archiver itself
	// (the Dialer in Deps connects).
	Target Target
	// QuietPeriod a file's size and mtime must stay the same (and no
	// process have it open for writing) before it counts as finished. 30s.
	QuietPeriod time.Duration
	// PollInterval between checks of files that are settling. QuietPeriod/4,
	// at least 100ms, at most 5s.
	PollInterval time.Duration
	// RescanInterval between full rescans (inotify loses events). 2m.
	RescanInterval time.Duration
	// RecentlyUnpublished: an unpublished pod directory (not watched) is still walked at every rescan for this long
	// after its unpublish. 10m.
	RecentlyUnpublished time.Duration
	// RetainedRescanInterval: after that, and with nothing of it in the archiver's hands, it is walked once in this
	// interval (each directory at its own point of it) (retained.go). 1h.
	RetainedRescanInterval time.Duration
	// WriterScanTimeout bounds one search for processes writing the finished-looking files (/proc). A search that
	// takes longer (a stat of another process's file on a hung network filesystem) leaves the files settling
	// while the archiver goes on; no new search starts until it returns. 10s.
	WriterScanTimeout time.Duration
	// LoopBound is how long the main loop (or the watch drain goroutine) may go without progress before /healthz
	// fails. 5m: a rescan of 20,000 pod directories records progress per directory, a search for writers is
	// bounded by WriterScanTimeout.
	LoopBound time.Duration
	// BytesPerSecond caps this node's total upload rate; 0 = unlimited.
	BytesPerSecond int64
	// MaxConcurrentUploads on this node. 2.
	MaxConcurrentUploads int
	// MinBackoff and MaxBackoff bound the retry delay (exponential, with
	// jitter). 1s and 5m.
	MinBackoff, MaxBackoff time.Duration
	// ConnectTimeout for TCP + SSH handshake. 30s.
	ConnectTimeout time.Duration
	// ConcurrentRequests per file upload (SFTP write requests in flight). 16: with OpenSSH's 255 KiB writes about
	// 4 MiB in flight per file (32 KiB writes with other servers: 512 KiB).
	ConcurrentRequests int
	// ChunkSize is the unit of resume (and of compression: one zstd frame per chunk): the acknowledged prefix is
	// journalled (fsynced) after each chunk, so an interruption sends at most the chunks on the wire twice (two
	// over SFTP, one with a bandwidth limit and to S3: see writeDepth). 8 MiB; at most MaxChunkSize. An upload
	// holds one chunk more than it has on the wire in memory.
	ChunkSize int64
}

// MaxChunkSize bounds Config.ChunkSize: with the chunks on the wire, what an interruption may send twice.
const MaxChunkSize = 64 << 20

func (c *Config) setDefaults() {
	def := func(d *time.Duration, v time.Duration) {
		if *d == 0 {
			*d = v
		}
	}
	def(&c.QuietPeriod, 30*time.Second)
	if c.PollInterval == 0 {
		c.PollInterval = min(max(c.QuietPeriod/4, 100*time.Millisecond), 5*time.Second)
	}
	def(&c.RescanInterval, 2*time.Minute)
	def(&c.RecentlyUnpublished, 10*time.Minute)
	def(&c.RetainedRescanInterval, time.Hour)
	def(&c.WriterScanTimeout, 10*time.Second)
	def(&c.LoopBound, 5*time.Minute)
	def(&c.MinBackoff, time.Second)
	def(&c.MaxBackoff, 5*time.Minute)
	def(&c.ConnectTimeout, 30*time.Second)
	if c.MaxConcurrentUploads == 0 {
		c.MaxConcurrentUploads = 2
	}
	if c.ConcurrentRequests == 0 {
		c.ConcurrentRequests = 16
	}
	if c.ChunkSize == 0 {
		c.ChunkSize = 8 << 20
	}
}

// Validate says what is wrong with which field.
func (c Config) Validate() error {
	var errs []error
	if c.NodeName == "" {
		errs = append(errs, errors.New("nodeName: required"))
	}
	if c.Target.BaseDir == "" || !path.IsAbs(c.Target.BaseDir) {
		errs = append(errs, fmt.Errorf("target.baseDir %q: must be an absolute path", c.Target.BaseDir))
	}
	for name, d := range map[string]time.Duration{"quietPeriod": c.QuietPeriod, "pollInterval": c.PollInterval,
		"rescanInterval": c.RescanInterval, "recentlyUnpublished": c.RecentlyUnpublished,
		"retainedRescanInterval": c.RetainedRescanInterval, "minBackoff": c.MinBackoff, "maxBackoff": c.MaxBackoff, "connectTimeout": c.ConnectTimeout} {
		if d < 0 {
			errs = append(errs, fmt.Errorf("%s %v: must not be negative", name, d))
		}
	}
	if c.MaxBackoff != 0 && c.MinBackoff > c.MaxBackoff {
		errs = append(errs, fmt.Errorf("minBackoff %v: larger than maxBackoff %v", c.MinBackoff, c.MaxBackoff))
	}
	if c.BytesPerSecond < 0 {
		errs = append(errs, fmt.Errorf("bytesPerSecond %d: must not be negative", c.BytesPerSecond))
	}
	if c.MaxConcurrentUploads < 0 {
		errs = append(errs, fmt.Errorf("maxConcurrentUploads %d: must not be negative", c.MaxConcurrentUploads))
	}
	if c.ConcurrentRequests < 0 || c.ConcurrentRequests > 1024 {
		errs = append(errs, fmt.Errorf("concurrentRequests %d: out of range 0-1024", c.ConcurrentRequests))
	}
	if c.ChunkSize < 0 || c.ChunkSize > MaxChunkSize {
		errs = append(errs, fmt.Errorf("chunkSize %d: out of range 1-%d", c.ChunkSize, MaxChunkSize))
	}
	if len(errs) > 0 {
		return fmt.Errorf("archiver config: %w", errors.Join(errs...))
	}
	return nil
}
