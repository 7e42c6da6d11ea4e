package config

import (
	"errors"
	"fmt"
	"net"
	"net/url"
	"os"
	"slices"
	"time"

	"github.com/spf13/pflag"

	redisstore "github.com/passport-attest/passport/store/redis"
)

// Defaults of Serve (the issuer API's own defaults live in package issuer).
const (
	DefaultAddr          = "127.0.0.1:8443"
	DefaultAlg           = "ES256"
	DefaultNonceTTL      = 60 * time.Second
	DefaultTokenLifetime = 5 * time.Minute
	DefaultRedisTimeout  = 2 * time.Second
	// DefaultEKReenrollInterval is enroll.DefaultReenrollInterval: an EK may enroll another
	// AK 10 minutes after its current one, twice DefaultTokenLifetime.
	DefaultEKReenrollInterval = 10 * time.Minute
	// DefaultGOGC is the issuer's garbage-collection target (runtime/debug.SetGCPercent) when
	// neither the gogc key nor the GOGC environment variable sets one: the heap may grow to 5x
	// the live data (a few MiB) between collections. Evidence verification allocates ~100 KB
	// per attestation, so at Go's default of 100 the collector runs every few dozen
	// attestations; 400 cut the issuer's CPU per attestation by about 20% under the load
	// harness for ~20 MiB more resident memory (docs/PERFORMANCE.md).
	DefaultGOGC = 400
)

// Serve is the configuration of `passport serve`, the issuer. Field comments name the flag;
// the file key is the flag name and the environment variable EnvName(SectionServe, flag).
type Serve struct {
	Addr            string        // addr: public listener HOST:PORT
	IssuerURL       string        // issuer-url: iss of tokens; http(s)://ADDR when empty
	Redis           string        // redis: a URL redisstore.Open takes; in-memory store when empty
	RedisTimeout    time.Duration // redis-timeout: dial, read and write timeout of each Redis call
	AKAllowlist     string        // ak-allowlist: file of trusted AK public keys
	TrustAnyAK      bool          // trust-any-ak: demo mode
	AK              AKTrust       // ak-roots, ak-intermediates, ek-roots, ek-intermediates, ek-allowlist, ek-reenroll-interval
	SigningKey      string        // signing-key: PEM private key file; generated when empty
	Alg             string        // alg: algorithm of a generated key
	Policy          string        // policy: appraisal policy file (docs/POLICY.md)
	ReferenceValues string        // reference-values: YAML file or "redis"; in memory when empty
	PolicyPoll      time.Duration // policy-poll: how often policy and reference values are re-read
	Audiences       []string      // audience: allowed audiences (any when empty)
	NonceTTL        time.Duration // nonce-ttl
	TokenLifetime   time.Duration // token-lifetime
	TLS             TLS           // tls-cert, tls-key: public listener certificate
	AdminAddr       string        // admin-addr: admin listener (off when empty)
	AdminCredential string        // admin-credential: file holding the admin bearer credential
	AdminTLS        TLS           // admin-tls-cert, admin-tls-key
	AdminClientCA   string        // admin-client-ca: PEM CA bundle; admin clients must present a certificate it signed
	MetricsAddr     string        // metrics-addr: own listener for /metrics; on the public listener when empty
	MetricsTLS      TLS           // metrics-tls-cert, metrics-tls-key: the metrics listener
	Pprof           bool          // pprof: net/http/pprof on the metrics-addr listener (off by default)
	GOGC            int           // gogc: garbage-collection target percent (GOGC env var honoured when the key is unset)
	Server          Server        // server timeouts and shutdown grace
	Limits          Limits        // rate limits of the routes that create state, caps of revocation streams
	Log             Log           // log-level, log-format
}

// AKTrust holds the certificate-chain and EK-enrollment ways of trusting attestation keys,
// besides the AK allowlist (package evidence: CertChain; package enroll).
type AKTrust struct {
	Roots           []string // ak-roots: PEM/DER root CAs that AK certificates chain to
	Intermediates   []string // ak-intermediates: intermediate CAs for ak-roots
	EKRoots         []string // ek-roots: EK certificate roots; turns on EK enrollment
	EKIntermediates []string // ek-intermediates: intermediate CAs for ek-roots
	EKAllowlist     string   // ek-allowlist: pinned EK public keys; turns on EK enrollment
	// ek-reenroll-interval: how long after its AK's enrollment an EK may enroll another AK
	// (enroll.Config.ReenrollInterval); 0 turns the wait off.
	EKReenrollInterval time.Duration
}

// EnrollOn reports whether EK enrollment is configured.
func (a AKTrust) EnrollOn() bool { return len(a.EKRoots) > 0 || a.EKAllowlist != "" }

// TLS names a certificate chain and its private key, both PEM files, reloaded when they change.
// Both empty means plain HTTP.
type TLS struct {
	Cert string
	Key  string
}

// Enabled reports whether a certificate is configured.
func (t TLS) Enabled() bool { return t.Cert != "" || t.Key != "" }

// Server holds the timeouts of every HTTP server (net/http.Server fields of the same names)
// and the grace period of a shutdown, during which requests in flight finish.
type Server struct {
	ReadHeaderTimeout time.Duration // read-header-timeout
	ReadTimeout       time.Duration // read-timeout
	WriteTimeout      time.Duration // write-timeout
	IdleTimeout       time.Duration // idle-timeout
	ShutdownTimeout   time.Duration // shutdown-timeout
}

// Log configures log/slog output on stderr.
type Log struct {
	Level  string // log-level: debug, info, warn, error
	Format string // log-format: json or text
}

// DefaultServer returns the default server timeouts: 5 s to read headers, 30 s to read a
// request or write a response, 120 s idle keep-alive, 20 s of shutdown grace.
func DefaultServer() Server {
	return Server{
		ReadHeaderTimeout: 5 * time.Second,
		ReadTimeout:       30 * time.Second,
		WriteTimeout:      30 * time.Second,
		IdleTimeout:       120 * time.Second,
		ShutdownTimeout:   20 * time.Second,
	}
}

// DefaultServe returns the defaults of `passport serve` (the same as the flags' defaults).
func DefaultServe() Serve {
	return Serve{
		Addr:          DefaultAddr,
		RedisTimeout:  DefaultRedisTimeout,
		Alg:           DefaultAlg,
		NonceTTL:      DefaultNonceTTL,
		TokenLifetime: DefaultTokenLifetime,
		AK:            AKTrust{EKReenrollInterval: DefaultEKReenrollInterval},
		PolicyPoll:    5 * time.Second,
		Server:        DefaultServer(),
		Limits:        DefaultLimits(),
		Log:           Log{Level: "info", Format: "json"},
		GOGC:          DefaultGOGC,
	}
}

// RegisterFlags adds serve's flags to fs, bound to s, with s's current values as defaults
// (call it on DefaultServe()). The names are the CLI contract; keep them.
func (s *Serve) RegisterFlags(fs *pflag.FlagSet) {
	fs.StringVar(&s.Addr, "addr", s.Addr, "listen address HOST:PORT")
	fs.StringVar(&s.IssuerURL, "issuer-url", s.IssuerURL, "iss of minted tokens and base of discovery (default http://ADDR, https with --tls-cert; required when --addr has no specific host)")
	fs.StringVar(&s.Redis, "redis", s.Redis, "Redis URL (redis://host:port/db, unix:///path/redis.sock, redis+sentinel://, redis+cluster://) for nonces, status lists and AKs; in-memory when empty")
	fs.StringVar(&s.AKAllowlist, "ak-allowlist", s.AKAllowlist, "file of trusted AK public keys (PEM PUBLIC KEY blocks or JWKS)")
	fs.BoolVar(&s.TrustAnyAK, "trust-any-ak", s.TrustAnyAK, "trust every attestation key (demo only: tokens then prove nothing about the hardware)")
	fs.StringSliceVar(&s.AK.Roots, "ak-roots", s.AK.Roots, "PEM/DER file(s) of root CAs that AK certificates must chain to (repeatable; combinable with --ak-allowlist)")
	fs.StringSliceVar(&s.AK.Intermediates, "ak-intermediates", s.AK.Intermediates, "PEM/DER file(s) of intermediate CAs for --ak-roots (repeatable)")
	fs.StringSliceVar(&s.AK.EKRoots, "ek-roots", s.AK.EKRoots, "PEM/DER file(s) of EK certificate roots: turns on EK enrollment (POST /v1/enroll) (repeatable)")
	fs.StringSliceVar(&s.AK.EKIntermediates, "ek-intermediates", s.AK.EKIntermediates, "PEM/DER file(s) of intermediate CAs for --ek-roots (repeatable)")
	fs.StringVar(&s.AK.EKAllowlist, "ek-allowlist", s.AK.EKAllowlist, "file of pinned EK public keys (PEM or JWKS) for TPMs without an EK certificate: turns on EK enrollment")
	fs.DurationVar(&s.AK.EKReenrollInterval, "ek-reenroll-interval", s.AK.EKReenrollInterval, "how long after an AK's enrollment its EK may enroll another AK (keep it at least --token-lifetime: one TPM then holds at most two token subs at once); 0 disables the wait")
	fs.StringVar(&s.SigningKey, "signing-key", s.SigningKey, "PEM private key (PKCS#8 or SEC 1) to sign tokens; generated at start when empty")
	fs.StringVar(&s.Alg, "alg", s.Alg, "signing algorithm for a generated key: ES256, ES384, EdDSA, PS256, RS256")
	fs.StringVar(&s.Policy, "policy", s.Policy, "appraisal policy file (YAML, docs/POLICY.md; reloaded on change and SIGHUP); without it any verified evidence is affirmed")
	fs.StringVar(&s.ReferenceValues, "reference-values", s.ReferenceValues, `reference values and revocations beside --policy's: a YAML file, or "redis" (the --redis server); in memory when empty`)
	fs.DurationVar(&s.PolicyPoll, "policy-poll", s.PolicyPoll, "how often --policy and --reference-values are checked for changes (0: only on SIGHUP)")
	fs.StringSliceVar(&s.Audiences, "audience", s.Audiences, "audiences tokens may be minted for (repeatable); any when unset")
	fs.DurationVar(&s.NonceTTL, "nonce-ttl", s.NonceTTL, "challenge lifetime")
	fs.DurationVar(&s.TokenLifetime, "token-lifetime", s.TokenLifetime, "token lifetime (exp - iat)")
	fs.StringVar(&s.AdminAddr, "admin-addr", s.AdminAddr, "listen address of the authenticated admin API (off when empty; never the public listener)")
	fs.StringVar(&s.AdminCredential, "admin-credential", s.AdminCredential, "file holding the admin bearer credential (at least 16 bytes)")
	fs.StringVar(&s.TLS.Cert, "tls-cert", s.TLS.Cert, "PEM certificate chain of the public listener (HTTPS; reloaded when the file changes)")
	fs.StringVar(&s.TLS.Key, "tls-key", s.TLS.Key, "PEM private key of --tls-cert")
	fs.StringVar(&s.AdminTLS.Cert, "admin-tls-cert", s.AdminTLS.Cert, "PEM certificate chain of the admin listener")
	fs.StringVar(&s.AdminTLS.Key, "admin-tls-key", s.AdminTLS.Key, "PEM private key of --admin-tls-cert")
	fs.StringVar(&s.AdminClientCA, "admin-client-ca", s.AdminClientCA, "PEM CA bundle: admin clients must also present a certificate it issued (mTLS)")
	fs.StringVar(&s.MetricsAddr, "metrics-addr", s.MetricsAddr, "own listener for /metrics, /healthz, /readyz (default: served on the public listener)")
	fs.DurationVar(&s.RedisTimeout, "redis-timeout", s.RedisTimeout, "dial, read and write timeout of each Redis call")
	s.Server.register(fs)
	s.Limits.register(fs)
	s.Log.register(fs)
	MarkURL(fs, "redis")
	s.MetricsTLS.registerMetrics(fs)
	fs.IntVar(&s.GOGC, "gogc", s.GOGC, "garbage-collection target percent (as Go's GOGC): the heap grows to (1+gogc/100) x live data between collections; when unset, a GOGC environment variable wins over the default")
	fs.BoolVar(&s.Pprof, "pprof", s.Pprof, "serve Go's runtime profiles (net/http/pprof, /debug/pprof/) on the --metrics-addr listener, for profiling under load; never on the public listener")
}

// registerMetrics adds --metrics-tls-cert and --metrics-tls-key, bound to t.
func (t *TLS) registerMetrics(fs *pflag.FlagSet) {
	fs.StringVar(&t.Cert, "metrics-tls-cert", t.Cert, "PEM certificate chain of the --metrics-addr listener (HTTPS; reloaded when the file changes)")
	fs.StringVar(&t.Key, "metrics-tls-key", t.Key, "PEM private key of --metrics-tls-cert")
}

// metrics checks metrics-addr and metrics-tls-*: HOST:PORT distinct from the other listeners,
// and a certificate only with a listener of its own.
func (e *errs) metrics(addr string, t TLS, others ...string) {
	if addr == "" {
		if t.Enabled() {
			e.add("metrics-addr", "metrics-tls-* need a metrics listener (on the public listener, /metrics uses tls-*)")
		}
		return
	}
	e.hostPort("metrics-addr", addr, true)
	if fixedPort(addr) && slices.Contains(others, addr) {
		e.add("metrics-addr", "must differ from addr and admin-addr")
	}
	e.tls("metrics-tls", t)
}

func (v *Server) register(fs *pflag.FlagSet) {
	fs.DurationVar(&v.ReadHeaderTimeout, "read-header-timeout", v.ReadHeaderTimeout, "time to read a request's headers")
	fs.DurationVar(&v.ReadTimeout, "read-timeout", v.ReadTimeout, "time to read a whole request")
	fs.DurationVar(&v.WriteTimeout, "write-timeout", v.WriteTimeout, "time to write a response")
	fs.DurationVar(&v.IdleTimeout, "idle-timeout", v.IdleTimeout, "keep-alive idle time")
	fs.DurationVar(&v.ShutdownTimeout, "shutdown-timeout", v.ShutdownTimeout, "on SIGTERM, time for requests in flight to finish")
}

func (l *Log) register(fs *pflag.FlagSet) {
	fs.StringVar(&l.Level, "log-level", l.Level, "log level: debug, info, warn, error")
	fs.StringVar(&l.Format, "log-format", l.Format, "log format on stderr: json or text")
}

// Algorithms a generated signing key may use (package jwks).
var Algorithms = []string{"ES256", "ES384", "EdDSA", "PS256", "RS256"}

// Validate checks every field and returns all problems at once (errors.Join), each naming the
// flag (which is also the file key). Files named by paths must exist and be readable; their
// contents are checked by the command, which loads each before starting (cmd/passport).
func (s *Serve) Validate() error {
	var e errs
	e.hostPort("addr", s.Addr, true)
	if s.IssuerURL != "" {
		e.url("issuer-url", s.IssuerURL, "http", "https")
	}
	if s.Redis != "" {
		e.redisURL("redis", s.Redis)
	}
	e.positive("redis-timeout", s.RedisTimeout)
	realTrust := s.AKAllowlist != "" || len(s.AK.Roots) > 0 || s.AK.EnrollOn()
	switch {
	case s.TrustAnyAK && realTrust:
		e.add("trust-any-ak", "is exclusive with ak-allowlist, ak-roots, ek-roots and ek-allowlist: trust real AKs or any, not both")
	case !s.TrustAnyAK && !realTrust && s.AdminAddr == "":
		e.add("ak-allowlist", "no AK trust configured: give ak-allowlist, ak-roots, ek-roots or ek-allowlist, or an admin listener to pin AKs (or trust-any-ak for a demo)")
	}
	if len(s.AK.Intermediates) > 0 && len(s.AK.Roots) == 0 {
		e.add("ak-intermediates", "needs ak-roots")
	}
	if len(s.AK.EKIntermediates) > 0 && len(s.AK.EKRoots) == 0 {
		e.add("ek-intermediates", "needs ek-roots")
	}
	if s.AK.EKReenrollInterval < 0 {
		e.add("ek-reenroll-interval", "must not be negative (0 disables the wait)")
	}
	e.file("ak-allowlist", s.AKAllowlist)
	e.file("ek-allowlist", s.AK.EKAllowlist)
	for _, list := range [][]string{s.AK.Roots, s.AK.Intermediates, s.AK.EKRoots, s.AK.EKIntermediates} {
		for _, p := range list {
			e.file("ak-roots", p)
		}
	}
	e.file("signing-key", s.SigningKey)
	if s.SigningKey == "" && !slices.Contains(Algorithms, s.Alg) {
		e.add("alg", fmt.Sprintf("%q is not one of %v", s.Alg, Algorithms))
	}
	e.file("policy", s.Policy)
	if s.ReferenceValues != "" && s.Policy == "" {
		e.add("reference-values", "needs policy")
	}
	if s.ReferenceValues == "redis" && s.Redis == "" {
		e.add("reference-values", `"redis" needs redis`)
	}
	if s.PolicyPoll < 0 {
		e.add("policy-poll", "must not be negative")
	}
	for i, a := range s.Audiences {
		if a == "" {
			e.add("audience", fmt.Sprintf("entry %d is empty", i))
		}
	}
	e.positive("nonce-ttl", s.NonceTTL)
	e.positive("token-lifetime", s.TokenLifetime)
	e.tls("tls", s.TLS)
	switch {
	case s.AdminAddr == "" && (s.AdminCredential != "" || s.AdminTLS.Enabled() || s.AdminClientCA != ""):
		e.add("admin-addr", "admin-credential, admin-tls-* and admin-client-ca need an admin listener")
	case s.AdminAddr != "":
		e.hostPort("admin-addr", s.AdminAddr, true)
		if s.AdminCredential == "" {
			e.add("admin-credential", "the admin API needs a credential file: it is never open")
		}
		if fixedPort(s.AdminAddr) && s.AdminAddr == s.Addr {
			e.add("admin-addr", "must differ from addr: the admin API never shares the public listener")
		}
	}
	e.file("admin-credential", s.AdminCredential)
	e.tls("admin-tls", s.AdminTLS)
	e.file("admin-client-ca", s.AdminClientCA)
	if s.AdminClientCA != "" && !s.AdminTLS.Enabled() {
		e.add("admin-client-ca", "client certificates need TLS on the admin listener (admin-tls-cert, admin-tls-key)")
	}
	e.metrics(s.MetricsAddr, s.MetricsTLS, s.Addr, s.AdminAddr)
	if s.GOGC < 1 {
		e.add("gogc", fmt.Sprintf("%d: must be at least 1 (to turn the collector off, set GOGC=off and GOMEMLIMIT in the environment)", s.GOGC))
	}
	if s.Pprof && s.MetricsAddr == "" {
		e.add("pprof", "needs metrics-addr: profiles are never served on the public listener")
	}
	s.Server.validate(&e)
	s.Limits.validate(&e)
	s.Log.validate(&e)
	return e.join()
}

func (v Server) validate(e *errs) {
	e.positive("read-header-timeout", v.ReadHeaderTimeout)
	e.positive("read-timeout", v.ReadTimeout)
	e.positive("write-timeout", v.WriteTimeout)
	e.positive("idle-timeout", v.IdleTimeout)
	e.positive("shutdown-timeout", v.ShutdownTimeout)
}

func (l Log) validate(e *errs) {
	if !slices.Contains([]string{"debug", "info", "warn", "error"}, l.Level) {
		e.add("log-level", fmt.Sprintf("%q is not debug, info, warn or error", l.Level))
	}
	if l.Format != "json" && l.Format != "text" {
		e.add("log-format", fmt.Sprintf("%q is not json or text", l.Format))
	}
}

// fixedPort reports whether addr names a port other than 0 (0 picks a free port, so two
// listeners on "HOST:0" never collide).
func fixedPort(addr string) bool {
	_, p, err := net.SplitHostPort(addr)
	return err == nil && p != "0"
}

// errs collects validation problems as "field: problem".
type errs []error

func (e *errs) add(field, msg string) { *e = append(*e, fmt.Errorf("%s: %s", field, msg)) }

func (e *errs) join() error { return errors.Join(*e...) }

func (e *errs) hostPort(field, v string, required bool) {
	if v == "" {
		if required {
			e.add(field, "is required (HOST:PORT)")
		}
		return
	}
	if _, _, err := net.SplitHostPort(v); err != nil {
		e.add(field, fmt.Sprintf("%q is not HOST:PORT", v))
	}
}

func (e *errs) url(field, v string, schemes ...string) {
	u, err := url.Parse(v)
	if err != nil {
		e.add(field, "not a URL") // the parse error may echo a password: say no more
		return
	}
	if !slices.Contains(schemes, u.Scheme) {
		e.add(field, fmt.Sprintf("scheme %q is not one of %v", u.Scheme, schemes))
	}
	if u.Scheme != "unix" && u.Host == "" {
		e.add(field, "has no host")
	}
}

// redisURL checks v as the store will open it (redisstore.Open: redis://, rediss://, unix://,
// and the +sentinel and +cluster forms), without connecting. Open's errors never carry the
// URL's password.
func (e *errs) redisURL(field, v string) {
	c, err := redisstore.Open(v)
	if err != nil {
		e.add(field, err.Error())
		return
	}
	_ = c.Close()
}

func (e *errs) positive(field string, d time.Duration) {
	if d <= 0 {
		e.add(field, fmt.Sprintf("%v is not a positive duration", d))
	}
}

func (e *errs) file(field, path string) {
	if path == "" {
		return
	}
	f, err := os.Open(path)
	if err != nil {
		e.add(field, err.Error())
		return
	}
	defer f.Close()
	if st, err := f.Stat(); err == nil && st.IsDir() {
		e.add(field, path+" is a directory")
	}
}

func (e *errs) dir(field, path string) {
	if path == "" {
		return
	}
	st, err := os.Stat(path)
	switch {
	case err != nil:
		e.add(field, err.Error())
	case !st.IsDir():
		e.add(field, path+" is not a directory")
	}
}

func (e *errs) tls(prefix string, t TLS) {
	if t.Enabled() && (t.Cert == "" || t.Key == "") {
		e.add(prefix+"-cert, "+prefix+"-key", "give both or neither")
	}
	e.file(prefix+"-cert", t.Cert)
	e.file(prefix+"-key", t.Key)
}
