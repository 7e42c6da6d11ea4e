package config

import (
	"time"

	"github.com/spf13/pflag"
)

// DefaultKBSAddr is the default listener of `passport kbs`.
const DefaultKBSAddr = "127.0.0.1:8444"

// DefaultStatusMaxAge is the default of kbs --status-max-age: how long after its issue a status
// list may still be used when the issuer cannot be reached (relyingparty.DefaultStatusMaxStaleness).
const DefaultStatusMaxAge = 10 * time.Minute

// KBS is the configuration of `passport kbs`, the token-gated key broker. Its flags are the
// CLI contract (`passport kbs --addr --issuer --audience --secrets`); the file section is
// SectionKBS and the environment variables PASSPORT_KBS_<FLAG>. RegisterFlags is the whole
// flag set of the command: the deploy files are checked against it.
type KBS struct {
	Addr            string        // addr: public listener HOST:PORT
	Issuer          string        // issuer: the expected iss of tokens (discovery and JWKS base)
	Audience        string        // audience: the aud tokens must carry
	Secrets         string        // secrets: directory of secrets, <repo>/<type>/<tag>
	Policy          string        // policy: release policy file (YAML rules)
	JWKS            string        // jwks: JWKS file for offline validation; discovered from issuer when empty
	StatusList      string        // status-list: with jwks, a Status List Token file
	StatusMaxAge    time.Duration // status-max-age: how long a status list may be used without the issuer
	PublicURL       string        // public-url: URL DPoP proofs must name; http(s)://ADDR when empty
	AuditLog        string        // audit-log: file of JSON audit lines; the log output when empty
	Redis           string        // redis: redis:// URL holding the secrets, encrypted under kek
	RedisPrefix     string        // redis-prefix: key prefix of the secrets in Redis
	RedisTimeout    time.Duration // redis-timeout: dial, read and write timeout of each Redis call
	KEK             string        // kek: key-encryption key file for redis
	AdminAddr       string        // admin-addr: admin API listener; off when empty
	AdminCredential string        // admin-credential: file holding the admin bearer credential
	TLS             TLS           // tls-cert, tls-key: the public listener
	AdminTLS        TLS           // admin-tls-cert, admin-tls-key: the admin listener
	MetricsAddr     string        // metrics-addr: own listener for /metrics and probes
	MetricsTLS      TLS           // metrics-tls-cert, metrics-tls-key: the metrics listener
	JWKSTimeout     time.Duration // jwks-timeout: timeout of one request to the issuer (discovery, JWKS)
	Server          Server        // server timeouts and shutdown grace
	Log             Log           // log-level, log-format
}

// DefaultKBS returns the defaults of `passport kbs`.
func DefaultKBS() KBS {
	return KBS{
		Addr:         DefaultKBSAddr,
		StatusMaxAge: DefaultStatusMaxAge,
		RedisPrefix:  "passport-kbs",
		RedisTimeout: DefaultRedisTimeout,
		JWKSTimeout:  10 * time.Second,
		Server:       DefaultServer(),
		Log:          Log{Level: "info", Format: "json"},
	}
}

// RegisterFlags adds the kbs command's flags to fs, bound to k, with k's values as defaults
// (call it on DefaultKBS()). The names are the CLI contract; keep them.
func (k *KBS) RegisterFlags(fs *pflag.FlagSet) {
	fs.StringVar(&k.Addr, "addr", k.Addr, "listen address HOST:PORT")
	fs.StringVar(&k.Issuer, "issuer", k.Issuer, "issuer URL: the iss tokens must carry, and where its keys are discovered (required)")
	fs.StringVar(&k.Audience, "audience", k.Audience, "audience tokens must name (required)")
	fs.StringVar(&k.Secrets, "secrets", k.Secrets, "secrets directory: DIR/repository/type/tag files")
	fs.StringVar(&k.Policy, "policy", k.Policy, "policy file (YAML: rules of resource glob, CEL allow expression, bearer opt-in)")
	fs.StringVar(&k.JWKS, "jwks", k.JWKS, "JWKS file of the issuer's keys (offline); discovered from --issuer when empty")
	fs.StringVar(&k.StatusList, "status-list", k.StatusList, "with --jwks: Status List Token file (GET /v1/status-list/{id}) for revocation checks")
	fs.DurationVar(&k.StatusMaxAge, "status-max-age", k.StatusMaxAge, "how long after its issue a status list may still be used when the issuer cannot be reached")
	fs.StringVar(&k.PublicURL, "public-url", k.PublicURL, "external base URL of the broker, which DPoP proofs must name (default http://ADDR from --addr, https with --tls-cert; required when --addr has no specific host)")
	fs.StringVar(&k.AuditLog, "audit-log", k.AuditLog, "file the JSON audit lines are appended to (the log output, stderr, when empty)")
	fs.StringVar(&k.Redis, "redis", k.Redis, "Redis URL (redis://host:port/db) holding the secrets, encrypted under --kek")
	fs.StringVar(&k.RedisPrefix, "redis-prefix", k.RedisPrefix, "key prefix of the secrets in Redis")
	fs.DurationVar(&k.RedisTimeout, "redis-timeout", k.RedisTimeout, "dial, read and write timeout of each Redis call")
	fs.StringVar(&k.KEK, "kek", k.KEK, "key-encryption key file for --redis (32 raw bytes, 64 hex digits or base64)")
	fs.StringVar(&k.AdminAddr, "admin-addr", k.AdminAddr, "listen address of the authenticated admin API (off when empty; never the public listener)")
	fs.StringVar(&k.AdminCredential, "admin-credential", k.AdminCredential, "file holding the admin bearer credential (at least 16 bytes)")
	fs.StringVar(&k.TLS.Cert, "tls-cert", k.TLS.Cert, "PEM certificate chain of the public listener (HTTPS; reloaded when the file changes)")
	fs.StringVar(&k.TLS.Key, "tls-key", k.TLS.Key, "PEM private key of --tls-cert")
	fs.StringVar(&k.AdminTLS.Cert, "admin-tls-cert", k.AdminTLS.Cert, "PEM certificate chain of the admin listener (reloaded when the file changes)")
	fs.StringVar(&k.AdminTLS.Key, "admin-tls-key", k.AdminTLS.Key, "PEM private key of --admin-tls-cert")
	fs.StringVar(&k.MetricsAddr, "metrics-addr", k.MetricsAddr, "own listener for /metrics, /healthz, /readyz (default: served on the public listener)")
	fs.DurationVar(&k.JWKSTimeout, "jwks-timeout", k.JWKSTimeout, "timeout of one request to the issuer (discovery, JWKS)")
	k.Server.register(fs)
	k.Log.register(fs)
	MarkURL(fs, "redis")
	k.MetricsTLS.registerMetrics(fs)
}

// Validate checks every field and returns all problems at once (errors.Join), each naming the
// flag (which is also the file key). Files named by paths must exist and be readable; their
// contents are checked by the command, which loads each before starting (cmd/passport).
func (k *KBS) Validate() error {
	var e errs
	e.hostPort("addr", k.Addr, true)
	if k.Issuer == "" {
		e.add("issuer", "is required")
	} else {
		e.url("issuer", k.Issuer, "http", "https")
	}
	if k.Audience == "" {
		e.add("audience", "is required")
	}
	switch {
	case k.Secrets == "" && k.Redis == "":
		e.add("secrets", "is required (or redis with kek): the broker needs a secret store")
	case k.Secrets != "" && k.Redis != "":
		e.add("secrets", "is exclusive with redis: one secret store")
	}
	e.dir("secrets", k.Secrets)
	if k.Redis != "" {
		e.redisURL("redis", k.Redis)
		if k.KEK == "" {
			e.add("kek", "redis needs a key-encryption key file")
		}
		if k.RedisPrefix == "" {
			e.add("redis-prefix", "must not be empty")
		}
		e.positive("redis-timeout", k.RedisTimeout)
	} else if k.KEK != "" {
		e.add("kek", "needs redis")
	}
	e.file("kek", k.KEK)
	e.file("policy", k.Policy)
	e.file("jwks", k.JWKS)
	e.file("status-list", k.StatusList)
	if k.JWKS != "" && k.StatusList == "" {
		e.add("status-list", "jwks (offline) needs a status list file: the broker never releases a secret without checking revocation")
	}
	if k.StatusList != "" && k.JWKS == "" {
		e.add("status-list", "needs jwks (online, lists are fetched from the issuer)")
	}
	e.positive("status-max-age", k.StatusMaxAge)
	if k.PublicURL != "" {
		e.url("public-url", k.PublicURL, "http", "https")
	}
	e.tls("tls", k.TLS)
	switch {
	case k.AdminAddr == "" && (k.AdminCredential != "" || k.AdminTLS.Enabled()):
		e.add("admin-addr", "admin-credential and admin-tls-* need an admin listener")
	case k.AdminAddr != "":
		e.hostPort("admin-addr", k.AdminAddr, true)
		if k.AdminCredential == "" {
			e.add("admin-credential", "the admin API needs a credential file: it is never open")
		}
		if fixedPort(k.AdminAddr) && k.AdminAddr == k.Addr {
			e.add("admin-addr", "must differ from addr: the admin API never shares the public listener")
		}
	}
	e.file("admin-credential", k.AdminCredential)
	e.tls("admin-tls", k.AdminTLS)
	e.metrics(k.MetricsAddr, k.MetricsTLS, k.Addr, k.AdminAddr)
	e.positive("jwks-timeout", k.JWKSTimeout)
	k.Server.validate(&e)
	k.Log.validate(&e)
	return e.join()
}
