// Package tlsreload serves a TLS certificate from PEM files and picks up new files without a
// restart (certificate rotation by cert-manager, ACME clients or a Kubernetes Secret update).
//
// A Reloader is a tls.Config.GetCertificate source: during a handshake it checks, at most once
// per interval, whether the certificate or key file changed (modification time, size or inode)
// and reloads both. A pair that does not load (half-written files, a key that does not match)
// is refused and the previous certificate keeps being served, so a bad rotation never takes a
// listener down. No goroutine and no file watcher are needed.
package tlsreload

import (
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"sync"
	"sync/atomic"
	"syscall"
	"time"
)

// DefaultInterval is how often, at most, handshakes look at the files: 1 s.
const DefaultInterval = time.Second

// Option configures New.
type Option func(*Reloader)

// WithInterval sets the minimum time between two checks of the files (default DefaultInterval).
func WithInterval(d time.Duration) Option { return func(r *Reloader) { r.interval = d } }

// WithClock injects the clock that paces the checks (default time.Now).
func WithClock(now func() time.Time) Option { return func(r *Reloader) { r.now = now } }

// WithLogger receives one line per reload and per refused reload (default slog.Default()).
func WithLogger(l *slog.Logger) Option { return func(r *Reloader) { r.log = l } }

// Reloader holds the current certificate of one listener. It is safe for concurrent use.
type Reloader struct {
	certFile, keyFile string
	interval          time.Duration
	now               func() time.Time
	log               *slog.Logger

	cert    atomic.Pointer[tls.Certificate]
	mu      sync.Mutex // serialises checks and reloads
	stamp   [2]stamp
	refused [2]stamp // files whose reload failed: not retried (nor logged) until they change
	checked time.Time
}

// stamp identifies one version of a file.
type stamp struct {
	mod   time.Time
	size  int64
	inode uint64
}

// New loads the certificate chain and private key (PEM files) and returns a Reloader serving
// them. It fails when the pair does not load: a listener never starts without a certificate.
func New(certFile, keyFile string, opts ...Option) (*Reloader, error) {
	r := &Reloader{certFile: certFile, keyFile: keyFile, interval: DefaultInterval, now: time.Now, log: slog.Default()}
	for _, o := range opts {
		o(r)
	}
	if err := r.Reload(); err != nil {
		return nil, err
	}
	r.checked = r.now()
	return r, nil
}

// Reload loads the files now. On error the previous certificate stays in use.
func (r *Reloader) Reload() error {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.reloadLocked()
}

func (r *Reloader) reloadLocked() error {
	st, err := r.stamps()
	if err != nil {
		return err
	}
	c, err := tls.LoadX509KeyPair(r.certFile, r.keyFile)
	if err != nil {
		return fmt.Errorf("tlsreload: %s, %s: %w", r.certFile, r.keyFile, err)
	}
	if c.Leaf == nil && len(c.Certificate) > 0 {
		if c.Leaf, err = x509.ParseCertificate(c.Certificate[0]); err != nil {
			return fmt.Errorf("tlsreload: %s: %w", r.certFile, err)
		}
	}
	r.cert.Store(&c)
	r.stamp = st
	return nil
}

func (r *Reloader) stamps() ([2]stamp, error) {
	var out [2]stamp
	for i, p := range []string{r.certFile, r.keyFile} {
		fi, err := os.Stat(p)
		if err != nil {
			return out, fmt.Errorf("tlsreload: %w", err)
		}
		out[i] = stamp{mod: fi.ModTime(), size: fi.Size()}
		if sys, ok := fi.Sys().(*syscall.Stat_t); ok {
			out[i].inode = uint64(sys.Ino)
		}
	}
	return out, nil
}

// Certificate returns the certificate being served.
func (r *Reloader) Certificate() *tls.Certificate { return r.cert.Load() }

// GetCertificate implements tls.Config.GetCertificate: it returns the current certificate after
// reloading the files if they changed since the last check (at most one check per interval).
func (r *Reloader) GetCertificate(*tls.ClientHelloInfo) (*tls.Certificate, error) {
	r.maybeReload()
	return r.cert.Load(), nil
}

func (r *Reloader) maybeReload() {
	now := r.now()
	r.mu.Lock()
	defer r.mu.Unlock()
	if now.Sub(r.checked) < r.interval {
		return
	}
	r.checked = now
	st, err := r.stamps()
	if err != nil {
		r.log.Warn("TLS certificate files unreadable; serving the previous certificate", "cert", r.certFile, "err", err)
		return
	}
	if st == r.stamp || st == r.refused {
		return
	}
	if err := r.reloadLocked(); err != nil {
		r.refused = st
		r.log.Warn("TLS certificate reload refused; serving the previous certificate", "cert", r.certFile, "err", err)
		return
	}
	leaf := r.cert.Load().Leaf
	r.log.Info("TLS certificate reloaded", "cert", r.certFile, "subject", leaf.Subject.String(), "not_after", leaf.NotAfter)
}

// ServerConfig returns a server tls.Config (TLS 1.2 or later) that serves r's certificate.
// With a non-empty clientCAFile (PEM bundle) every client must present a certificate that
// chains to one of its CAs (mutual TLS, RFC 8446 section 4.3.2).
func ServerConfig(r *Reloader, clientCAFile string) (*tls.Config, error) {
	cfg := &tls.Config{MinVersion: tls.VersionTLS12, GetCertificate: r.GetCertificate}
	if clientCAFile == "" {
		return cfg, nil
	}
	pool, err := LoadClientCAs(clientCAFile)
	if err != nil {
		return nil, err
	}
	cfg.ClientCAs = pool
	cfg.ClientAuth = tls.RequireAndVerifyClientCert
	return cfg, nil
}

// LoadClientCAs reads the PEM bundle of client CAs ServerConfig requires client certificates
// to chain to. An unreadable file, or one holding no PEM certificate, is an error naming the
// file (never its content).
func LoadClientCAs(path string) (*x509.CertPool, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("tlsreload: client CA: %w", err)
	}
	pool := x509.NewCertPool()
	if !pool.AppendCertsFromPEM(b) {
		return nil, errors.New("tlsreload: client CA " + path + ": no PEM certificate")
	}
	return pool, nil
}
