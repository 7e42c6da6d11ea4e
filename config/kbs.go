package config

import (
	"time"

	"github.com/spf13/pflag"
)

// KBS is the configuration of `passport kbs`, the token-gated key broker. Its flags are the
// CLI contract (`passport kbs --addr --issuer --audience --secrets`); the file section is
// SectionKBS and the environment variables PASSPORT_KBS_<FLAG>.
type KBS struct {
	Addr        string        // addr: listener HOST:PORT
	Issuer      string        // issuer: the expected iss of tokens (discovery and JWKS base)
	JWKS        string        // jwks: JWKS file for offline validation; fetched from issuer when empty
	Audience    string        // audience: the aud tokens must carry
	Secrets     string        // secrets: directory of secrets, <repo>/<type>/<tag>
	TLS         TLS           // tls-cert, tls-key
	MetricsAddr string        // metrics-addr
	JWKSTimeout time.Duration // jwks-timeout: timeout of one JWKS request
	Server      Server        // server timeouts and shutdown grace
	Log         Log           // log-level, log-format
}

// DefaultKBS returns the defaults of `passport kbs`.
func DefaultKBS() KBS {
	return KBS{
		Addr:        "127.0.0.1:8444",
		JWKSTimeout: 10 * time.Second,
		Server:      DefaultServer(),
		Log:         Log{Level: "info", Format: "json"},
	}
}

// RegisterFlags adds the kbs command's flags to fs, bound to k, with k's values as defaults.
func (k *KBS) RegisterFlags(fs *pflag.FlagSet) {
	fs.StringVar(&k.Addr, "addr", k.Addr, "listen address HOST:PORT")
	fs.StringVar(&k.Issuer, "issuer", k.Issuer, "issuer URL: the exact iss of accepted tokens")
	fs.StringVar(&k.JWKS, "jwks", k.JWKS, "JWKS file of the issuer's keys (offline); fetched from the issuer when empty")
	fs.StringVar(&k.Audience, "audience", k.Audience, "the audience tokens must be minted for")
	fs.StringVar(&k.Secrets, "secrets", k.Secrets, "directory of secrets laid out as <repo>/<type>/<tag>")
	fs.StringVar(&k.TLS.Cert, "tls-cert", k.TLS.Cert, "PEM certificate chain (HTTPS; reloaded when the file changes)")
	fs.StringVar(&k.TLS.Key, "tls-key", k.TLS.Key, "PEM private key of --tls-cert")
	fs.StringVar(&k.MetricsAddr, "metrics-addr", k.MetricsAddr, "own listener for /metrics, /healthz, /readyz (default: the main listener)")
	fs.DurationVar(&k.JWKSTimeout, "jwks-timeout", k.JWKSTimeout, "timeout of one JWKS request to the issuer")
	k.Server.register(fs)
	k.Log.register(fs)
}

// Validate checks every field and returns all problems at once.
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
	if k.Secrets == "" {
		e.add("secrets", "is required")
	}
	e.dir("secrets", k.Secrets)
	e.file("jwks", k.JWKS)
	e.tls("tls", k.TLS)
	if k.MetricsAddr != "" {
		e.hostPort("metrics-addr", k.MetricsAddr, true)
	}
	e.positive("jwks-timeout", k.JWKSTimeout)
	k.Server.validate(&e)
	k.Log.validate(&e)
	return e.join()
}
