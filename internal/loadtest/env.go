// Package loadtest is passport's load and fault harness (`passport loadtest`): simulated
// attesters with software TPMs (internal/faketpm) against one or two `passport serve` processes
// sharing a private redis-server, with relying parties validating the tokens concurrently. It
// runs on loopback only and every scenario is bounded in count and time.
package loadtest

import (
	"bufio"
	"crypto/x509"
	"encoding/pem"
	"errors"
	"fmt"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/go-jose/go-jose/v4"

	"github.com/passport-attest/passport/internal/faketpm"
	"github.com/passport-attest/passport/internal/redisproc"
	"github.com/passport-attest/passport/jwks"
)

// IssuerURL is the iss shared by the issuer replicas (they sit behind one name in production).
const IssuerURL = "https://passport.loadtest.invalid"

// Audience of every token the harness asks for.
const Audience = "loadtest"

// env is one scenario's world: Redis, issuers, the attesters' TPMs and the shared signing key.
type env struct {
	cfg     Config
	dir     string
	redis   *redisproc.Server
	issuers []*issuerProc
	tpms    []*faketpm.TPM
	keyring *jwks.Keyring // the issuers' signing key (public part used by relying parties)
	keyFile string
	akFile  string
	admin   string // the issuers' admin credential (revocations.go)
}

// issuerProc is one `passport serve` child process on a fixed loopback port.
type issuerProc struct {
	bin  string
	args []string
	port int
	cmd  *exec.Cmd
	done chan struct{}
	log  *os.File

	// adminPort is the loopback port of its admin API (POST /admin/v1/revoke).
	adminPort int
	// metricsPort is the loopback port of its metrics listener (with --pprof), when
	// Config.ProfileDir is set; 0 otherwise.
	metricsPort int
	// compare marks the issuer that runs Config.CompareBinary / CompareArgs.
	compare bool
}

func (p *issuerProc) url() string { return "http://127.0.0.1:" + strconv.Itoa(p.port) }

func newEnv(cfg Config, issuerArgs []string, redisArgs []string) (*env, error) {
	dir, err := os.MkdirTemp("", "passport-loadtest-")
	if err != nil {
		return nil, err
	}
	e := &env{cfg: cfg, dir: dir}
	ok := false
	defer func() {
		if !ok {
			e.close()
		}
	}()
	// Attesters' TPMs and the allowlist of their AKs.
	var pemAKs []byte
	for i := 0; i < cfg.Attesters; i++ {
		t, err := faketpm.New(cfg.Events)
		if err != nil {
			return nil, err
		}
		der, err := x509.MarshalPKIXPublicKey(t.AKPublic())
		if err != nil {
			return nil, err
		}
		pemAKs = append(pemAKs, pem.EncodeToMemory(&pem.Block{Type: "PUBLIC KEY", Bytes: der})...)
		e.tpms = append(e.tpms, t)
	}
	e.akFile = filepath.Join(dir, "aks.pem")
	if err := os.WriteFile(e.akFile, pemAKs, 0o600); err != nil {
		return nil, err
	}
	key, err := jwks.GenerateKey(jose.ES256)
	if err != nil {
		return nil, err
	}
	kb, err := key.MarshalPrivateKeyPEM()
	if err != nil {
		return nil, err
	}
	e.keyFile = filepath.Join(dir, "signing.pem")
	if err := os.WriteFile(e.keyFile, kb, 0o600); err != nil {
		return nil, err
	}
	e.keyring = jwks.NewKeyring(key)
	credFile, err := e.writeAdminCredential()
	if err != nil {
		return nil, err
	}

	e.redis = &redisproc.Server{Dir: filepath.Join(dir, "redis"), Args: redisArgs}
	if err := os.MkdirAll(e.redis.Dir, 0o700); err != nil {
		return nil, err
	}
	socketURL := ""
	if cfg.RedisSocket || cfg.CompareRedisSocket {
		sock := filepath.Join(e.redis.Dir, "redis.sock")
		e.redis.Args = append(slices.Clone(redisArgs), "--unixsocket", sock, "--unixsocketperm", "700")
		socketURL = "unix://" + sock
	}
	comparing := cfg.Issuers > 1 && cfg.comparing()
	if err := e.redis.Start(); err != nil {
		return nil, err
	}
	for i := 0; i < cfg.Issuers; i++ {
		port, err := redisproc.FreePort()
		if err != nil {
			return nil, err
		}
		adminPort, err := redisproc.FreePort()
		if err != nil {
			return nil, err
		}
		args := append([]string{"serve", "--addr", "127.0.0.1:" + strconv.Itoa(port), "--issuer-url", IssuerURL,
			"--redis", e.redis.URL(), "--ak-allowlist", e.akFile, "--signing-key", e.keyFile,
			"--nonce-ttl", "5m", "--log-level", "warn", "--shutdown-timeout", "10s",
			"--admin-addr", "127.0.0.1:" + strconv.Itoa(adminPort), "--admin-credential", credFile}, issuerArgs...)
		metricsPort := 0
		if cfg.ProfileDir != "" {
			if metricsPort, err = redisproc.FreePort(); err != nil {
				return nil, err
			}
			args = append(args, "--metrics-addr", "127.0.0.1:"+strconv.Itoa(metricsPort), "--pprof")
		}
		// Scenarios that never restart Redis run it without persistence: serve warns.
		p := &issuerProc{bin: cfg.Binary, args: args, port: port, adminPort: adminPort, metricsPort: metricsPort}
		if i == cfg.Issuers-1 && comparing {
			p.compare = true
			if cfg.CompareBinary != "" {
				p.bin = cfg.CompareBinary
			}
			p.args = append(p.args, cfg.CompareArgs...)
		}
		if cfg.RedisSocket || (cfg.CompareRedisSocket && p.compare) {
			p.args = append(p.args, "--redis", socketURL) // the last --redis wins
		}
		p.log, err = os.Create(filepath.Join(dir, fmt.Sprintf("issuer%d.log", i)))
		if err != nil {
			return nil, err
		}
		e.issuers = append(e.issuers, p)
		if err := p.start(); err != nil {
			return nil, err
		}
	}
	ok = true
	return e, nil
}

// start launches the process and waits (10 s at most) until /readyz answers 200.
func (p *issuerProc) start() error {
	cmd := exec.Command(p.bin, p.args...)
	cmd.Stdout, cmd.Stderr = p.log, p.log
	cmd.Env = append(os.Environ(), "GOMAXPROCS="+strconv.Itoa(max(1, runtimeCPUs())))
	if err := cmd.Start(); err != nil {
		return fmt.Errorf("loadtest: start issuer: %w", err)
	}
	p.cmd, p.done = cmd, make(chan struct{})
	go func(done chan struct{}) { _ = cmd.Wait(); close(done) }(p.done)
	return waitReady(p.url(), 10*time.Second)
}

func waitReady(url string, limit time.Duration) error {
	deadline := time.Now().Add(limit)
	c := &http.Client{Timeout: 500 * time.Millisecond}
	for {
		resp, err := c.Get(url + "/readyz")
		if err == nil {
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				return nil
			}
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("loadtest: %s not ready after %s (%v)", url, limit, err)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// stop sends SIGTERM (graceful shutdown) and waits for the process to exit.
func (p *issuerProc) stop() {
	if p.cmd == nil {
		return
	}
	_ = p.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-p.done:
	case <-time.After(15 * time.Second):
		_ = p.cmd.Process.Kill()
		<-p.done
	}
	p.cmd = nil
}

// cpu returns the process's user+system CPU time so far, from /proc/PID/stat.
func cpuOf(pid int) (time.Duration, error) {
	b, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/stat")
	if err != nil {
		return 0, err
	}
	s := string(b)
	i := strings.LastIndexByte(s, ')')
	if i < 0 {
		return 0, errors.New("bad /proc stat")
	}
	f := strings.Fields(s[i+2:])
	if len(f) < 13 {
		return 0, errors.New("short /proc stat")
	}
	ut, _ := strconv.ParseInt(f[11], 10, 64)
	st, _ := strconv.ParseInt(f[12], 10, 64)
	return time.Duration(ut+st) * time.Second / 100, nil // USER_HZ = 100 on Linux
}

// rssOf returns VmRSS of a process in bytes.
func rssOf(pid int) int64 {
	f, err := os.Open("/proc/" + strconv.Itoa(pid) + "/status")
	if err != nil {
		return 0
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		if v, ok := strings.CutPrefix(sc.Text(), "VmRSS:"); ok {
			kb, _ := strconv.ParseInt(strings.TrimSuffix(strings.TrimSpace(v), " kB"), 10, 64)
			return kb << 10
		}
	}
	return 0
}

func (e *env) issuerPids() []int {
	var out []int
	for _, p := range e.issuers {
		if p.cmd != nil {
			out = append(out, p.cmd.Process.Pid)
		}
	}
	return out
}

func (e *env) close() {
	for _, p := range e.issuers {
		p.stop()
		if p.log != nil {
			p.log.Close()
		}
	}
	if e.redis != nil {
		e.redis.Close()
	}
	_ = os.RemoveAll(e.dir)
}

// client returns an HTTP client whose connections leave from loopback address ip (so that the
// issuer's per-client limits see distinct clients), with bounded timeouts.
func client(ip string, conns int) *http.Client {
	d := &net.Dialer{Timeout: 2 * time.Second, LocalAddr: &net.TCPAddr{IP: net.ParseIP(ip)}}
	return &http.Client{
		Timeout: 10 * time.Second,
		Transport: &http.Transport{
			DialContext:         d.DialContext,
			MaxIdleConns:        conns,
			MaxIdleConnsPerHost: conns,
			IdleConnTimeout:     30 * time.Second,
			// An attest request (~5 KB of evidence) leaves in one write instead of two
			// through the default 4 KB buffer.
			WriteBufferSize: 16 << 10,
		},
	}
}
