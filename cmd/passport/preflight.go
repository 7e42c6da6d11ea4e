package main

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"strings"

	"github.com/passport-attest/passport/config"
	"github.com/passport-attest/passport/evidence"
	"github.com/passport-attest/passport/issuer"
	"github.com/passport-attest/passport/jwks"
	"github.com/passport-attest/passport/kbs"
	"github.com/passport-attest/passport/policy"
	"github.com/passport-attest/passport/refvalues"
	"github.com/passport-attest/passport/relyingparty"
	"github.com/passport-attest/passport/tlsreload"
)

// The pre-flight checks load every file a configuration names with the loader the command
// uses at start, before anything starts, so that serve and kbs report all the problems in
// their files at once (errors.Join), each as "FLAG: error" like config's Validate. The
// loaders' errors name files, never their contents (keys, credentials). The command loads the
// files again when it starts; the checks keep nothing.

// fileChecks collects the problems found in configured files.
type fileChecks []error

// check runs load on path when path names a readable file, adding its error under flag. An
// empty path (not configured) or one Validate refuses (missing, unreadable, a directory) is
// skipped, so that each problem is reported once.
func (c *fileChecks) check(flag, path string, load func(path string) error) {
	if path == "" || !readableFile(path) {
		return
	}
	if err := load(path); err != nil {
		*c = append(*c, fmt.Errorf("%s: %w", flag, err))
	}
}

// tlsPair loads a listener's certificate and key (tlsreload.New) when both are readable
// files; an error is reported under "PREFIX-cert, PREFIX-key" (a pair given the wrong way
// round fails as a pair).
func (c *fileChecks) tlsPair(prefix string, t config.TLS) {
	if t.Cert == "" || t.Key == "" || !readableFile(t.Cert) || !readableFile(t.Key) {
		return
	}
	if _, err := tlsreload.New(t.Cert, t.Key); err != nil {
		*c = append(*c, fmt.Errorf("%s-cert, %s-key: %w", prefix, prefix, err))
	}
}

// certificates loads each certificate file of a repeatable flag on its own, so that every bad
// file is reported.
func (c *fileChecks) certificates(flag string, paths []string) {
	for _, p := range paths {
		c.check(flag, p, func(p string) error {
			_, err := evidence.LoadCertificates(p)
			return err
		})
	}
}

// readableFile reports whether path opens and is not a directory (config's Validate check).
func readableFile(path string) bool {
	f, err := os.Open(path)
	if err != nil {
		return false
	}
	defer f.Close()
	st, err := f.Stat()
	return err == nil && !st.IsDir()
}

// checkPublicKeys loads a pinned-key file (--ak-allowlist, --ek-allowlist) as serve does and
// checks that each key can be pinned (evidence.Thumbprint).
func checkPublicKeys(path string) error {
	keys, err := readPublicKeys(path)
	if err != nil {
		return err
	}
	_, err = evidence.NewAllowlist(keys...)
	return err
}

// checkAdminCredential loads an admin credential file (issuer.LoadAdminCredential: at least
// issuer.MinCredentialSize bytes); its error gives the length, never the credential.
func checkAdminCredential(path string) error {
	_, err := issuer.LoadAdminCredential(path)
	return err
}

// checkServeFiles loads every file serve's configuration names: signing key, KEK, AK and EK
// allowlists, AK and EK roots and intermediates, policy, reference values file, admin
// credential, admin client CA and the certificate pairs of the public, admin and metrics
// listeners. It returns nil or every problem joined. --key-dir is not checked: serve creates it.
func checkServeFiles(ctx context.Context, f serveFlags) error {
	var c fileChecks
	c.check("signing-key", f.SigningKey, func(p string) error {
		_, err := jwks.LoadKeyFile(p, "")
		return err
	})
	c.check("kek", f.scale.kek, func(p string) error {
		_, err := jwks.LoadKEK(p)
		return err
	})
	c.check("ak-allowlist", f.AKAllowlist, checkPublicKeys)
	c.check("ek-allowlist", f.AK.EKAllowlist, checkPublicKeys)
	c.certificates("ak-roots", f.AK.Roots)
	c.certificates("ak-intermediates", f.AK.Intermediates)
	c.certificates("ek-roots", f.AK.EKRoots)
	c.certificates("ek-intermediates", f.AK.EKIntermediates)
	// The policy alone (on an empty store): the reference values are checked on their own, so
	// that a problem is named by its flag. Binding the two cannot fail when both load.
	c.check("policy", f.Policy, func(p string) error {
		_, err := policy.NewEngine(ctx, p, policy.EngineOptions{Log: slog.New(slog.DiscardHandler)})
		return err
	})
	if f.ReferenceValues != "redis" { // a missing file is an empty store, as at start
		c.check("reference-values", f.ReferenceValues, func(p string) error {
			_, err := refvalues.NewFile(p).Snapshot(ctx)
			return err
		})
	}
	c.check("admin-credential", f.AdminCredential, checkAdminCredential)
	c.check("admin-client-ca", f.AdminClientCA, func(p string) error {
		_, err := tlsreload.LoadClientCAs(p)
		return err
	})
	c.tlsPair("tls", f.TLS)
	c.tlsPair("admin-tls", f.AdminTLS)
	c.tlsPair("metrics-tls", f.MetricsTLS)
	return errors.Join(c...)
}

// checkKBSFiles loads every file kbs's configuration names: JWKS, status list (verified with
// that JWKS, so only when the JWKS loads), release policy, KEK, admin credential and the
// certificate pairs of the public, admin and metrics listeners. It returns nil or every
// problem joined. The secrets directory is checked by Validate; the audit log is created at
// start.
func checkKBSFiles(ctx context.Context, f kbsFlags) error {
	var c fileChecks
	var ks relyingparty.KeySet
	c.check("jwks", f.JWKS, func(p string) (err error) {
		ks, err = relyingparty.LoadJWKSFile(p)
		return err
	})
	if ks != nil && f.Issuer != "" {
		c.check("status-list", f.StatusList, func(p string) error {
			sc, err := relyingparty.NewStatusChecker(relyingparty.StatusConfig{
				Issuer: strings.TrimRight(f.Issuer, "/"), KeySet: ks, Offline: true, MaxStaleness: f.StatusMaxAge})
			if err != nil {
				return err
			}
			return sc.LoadFile(ctx, p)
		})
	}
	c.check("policy", f.Policy, func(p string) error {
		_, err := kbs.LoadPolicyFile(p)
		return err
	})
	c.check("kek", f.KEK, func(p string) error {
		k, err := kbs.LoadKEK(p)
		clear(k)
		return err
	})
	c.check("admin-credential", f.AdminCredential, checkAdminCredential)
	c.tlsPair("tls", f.TLS)
	c.tlsPair("admin-tls", f.AdminTLS)
	c.tlsPair("metrics-tls", f.MetricsTLS)
	return errors.Join(c...)
}
