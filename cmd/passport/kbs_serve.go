package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"os"
	"strings"

	"github.com/redis/go-redis/v9"

	"github.com/passport-attest/passport/api"
	"github.com/passport-attest/passport/health"
	"github.com/passport-attest/passport/httplog"
	"github.com/passport-attest/passport/issuer"
	"github.com/passport-attest/passport/kbs"
	"github.com/passport-attest/passport/metrics"
	"github.com/passport-attest/passport/relyingparty"
	"github.com/passport-attest/passport/serving"
	"github.com/passport-attest/passport/token"
)

// kbsProbe is the resource the readiness probe asks the secret store for: any answer but
// "unavailable" (normally not found) shows the store answers.
var kbsProbe = api.ResourceID{Repository: "passport-readyz", Type: "probe", Tag: "probe"}

// kbsServe runs the key broker until ctx is done, logging to logOut; onReady (may be nil) is
// given the broker's public URL and the bound address of each listener once they accept
// connections. Like serve: TLS per listener, /healthz, /readyz and /metrics, JSON logs with
// request ids, every decision counted by metrics.KBSRelease, graceful shutdown.
func kbsServe(ctx context.Context, f kbsFlags, logOut io.Writer, onReady func(url string, addrs map[string]string)) (err error) {
	log := httplog.NewLogger(logOut, f.Log.Level, f.Log.Format)
	redis.SetLogger(redisLogger{log})
	o := &ops{log: log, metrics: metrics.New(), health: &health.Checker{Log: log}}
	var closers []func()
	defer func() {
		for _, c := range closers {
			c()
		}
	}()
	ctx, cancel := context.WithCancel(ctx) // stops the key set refresh and the revocation stream
	defer cancel()
	hc := &http.Client{Timeout: f.JWKSTimeout}
	iss := strings.TrimRight(f.Issuer, "/")
	var ks relyingparty.KeySet
	var remote *relyingparty.RemoteKeySet
	if f.JWKS != "" {
		if ks, err = relyingparty.LoadJWKSFile(f.JWKS); err != nil {
			return err
		}
	} else {
		d, err := relyingparty.Discover(ctx, iss, hc)
		if err != nil {
			return err
		}
		remote = relyingparty.NewRemoteKeySet(ctx, d.JWKSURI, relyingparty.WithHTTPClient(hc),
			relyingparty.WithFetchObserver(func(r relyingparty.FetchResult) { o.metrics.JWKSFetch(fetchResult(r), r.Duration) }))
		ks = remote
	}
	// The verifier's floor is warning: the per-resource policy decides above it (default:
	// affirming only).
	v, err := relyingparty.NewVerifier(relyingparty.Config{Issuer: iss, Audience: f.Audience, KeySet: ks, MinStatus: token.TierWarning,
		CacheObserver: o.metrics.TokenCache})
	if err != nil {
		return err
	}
	pol := kbs.DefaultPolicy()
	if f.Policy != "" {
		if pol, err = kbs.LoadPolicyFile(f.Policy); err != nil {
			return err
		}
	}
	store, closeStore, err := openSecretStore(ctx, f)
	if err != nil {
		return err
	}
	closers = append(closers, closeStore)
	auditOut := logOut
	if f.AuditLog != "" {
		af, err := os.OpenFile(f.AuditLog, os.O_WRONLY|os.O_CREATE|os.O_APPEND, 0o600)
		if err != nil {
			return fmt.Errorf("--audit-log: %w", err)
		}
		closers = append(closers, func() { af.Close() })
		auditOut = af
	}
	audit := slog.New(httplog.NewHandler(slog.NewJSONHandler(auditOut, nil)))
	// Revocation: every release checks the token's status list entry at the issuer (cached
	// per the list's ttl, revocations pushed through the issuer's event stream); offline
	// (--jwks), from --status-list FILE. No status, no secret.
	revocation, sc, err := kbsRevocation(ctx, f, iss, ks, v, hc)
	if err != nil {
		return err
	}
	o.health.Add("issuer_keys", func(ctx context.Context) error { return kbsKeysReady(ctx, remote) })
	o.health.Add("revocation_status", func(ctx context.Context) error { return kbsStatusReady(ctx, sc, f.JWKS != "", iss, hc) })
	o.health.Add("secret_store", func(ctx context.Context) error { return kbsStoreReady(ctx, store) })

	ln, err := net.Listen("tcp", f.Addr)
	if err != nil {
		return err
	}
	closers = append(closers, func() { ln.Close() })
	pubTLS, err := serverTLS(f.TLS, "", log)
	if err != nil {
		return err
	}
	public, err := publicURL("public-url", f.PublicURL, f.Addr, ln.Addr(), pubTLS != nil)
	if err != nil {
		return err
	}
	b, err := kbs.New(kbs.Config{Verifier: v, Store: store, Policy: pol, Audit: audit, PublicURL: public, Revocation: revocation,
		Observe: o.metrics.KBSRelease})
	if err != nil {
		return err
	}
	mux := http.NewServeMux()
	mux.Handle("/", b.Handler())
	o.health.Routes(mux)
	if f.MetricsAddr == "" {
		mux.Handle("GET /metrics", o.metrics.Handler())
	}
	servers := []*serving.Server{serving.New("public", ln, o.wrap("public", mux), f.Server, pubTLS, log)}
	if f.MetricsAddr != "" {
		ms, err := o.metricsServer(f.MetricsAddr, f.MetricsTLS, f.Server, log)
		if err != nil {
			return err
		}
		closers = append(closers, func() { ms.Listener.Close() })
		servers = append(servers, ms)
	}
	if f.AdminAddr != "" {
		auth, err := issuer.LoadAdminCredential(f.AdminCredential)
		if err != nil {
			return err
		}
		adminTLS, err := serverTLS(f.AdminTLS, "", log)
		if err != nil {
			return err
		}
		warnPlainAdmin(log, f.AdminAddr, adminTLS != nil)
		aln, err := net.Listen("tcp", f.AdminAddr)
		if err != nil {
			return err
		}
		closers = append(closers, func() { aln.Close() })
		amux := http.NewServeMux()
		amux.Handle("/", kbs.AdminHandler(store, auth, audit))
		servers = append(servers, serving.New("admin", aln, o.wrap("admin", amux), f.Server, adminTLS, log))
	}
	log.Info("kbs ready", "public_url", public, "issuer", iss, "audience", f.Audience)
	if onReady != nil {
		addrs := map[string]string{}
		for _, s := range servers {
			addrs[s.Name] = s.Listener.Addr().String()
		}
		onReady(public, addrs)
	}
	return serving.RunDraining(ctx, log, f.Server.ShutdownTimeout, o.health.Drain, servers...)
}

// fetchResult is the metrics label of a JWKS request.
func fetchResult(r relyingparty.FetchResult) string {
	switch {
	case r.Err != nil:
		return metrics.ResultError
	case r.NotModified:
		return metrics.ResultNotModified
	}
	return metrics.ResultOK
}

// kbsKeysReady: the issuer's key set holds keys (fetching them once when it holds none). A
// JWKS file (remote nil) was checked to hold keys at start.
func kbsKeysReady(ctx context.Context, remote *relyingparty.RemoteKeySet) error {
	if remote == nil || remote.Stats().Keys > 0 {
		return nil
	}
	if err := remote.Refresh(ctx); err != nil {
		return err
	}
	if remote.Stats().Keys == 0 {
		return errors.New("the issuer's JWKS holds no usable key")
	}
	return nil
}

// kbsStatusReady: offline, a status list within --status-max-age is held; online, the issuer
// (where the lists are fetched) answers its discovery document.
func kbsStatusReady(ctx context.Context, sc *relyingparty.StatusChecker, offline bool, iss string, hc *http.Client) error {
	if offline {
		return sc.Usable()
	}
	_, err := relyingparty.Discover(ctx, iss, hc)
	return err
}

// kbsStoreReady: the secret store answers a lookup (of a resource that normally does not exist).
func kbsStoreReady(ctx context.Context, s kbs.Store) error {
	b, err := s.Get(ctx, kbsProbe)
	clear(b)
	if err != nil && !errors.Is(err, kbs.ErrNotFound) {
		return err
	}
	return nil
}

// warnPlainAdmin logs a warning when an admin listener serves plain HTTP on an address other
// than loopback: the admin bearer credential then crosses the network in clear. It reports
// whether it warned.
func warnPlainAdmin(log *slog.Logger, addr string, tlsOn bool) bool {
	if tlsOn {
		return false
	}
	if host, _, err := net.SplitHostPort(addr); err == nil {
		if ip := net.ParseIP(host); host == "localhost" || (ip != nil && ip.IsLoopback()) {
			return false
		}
	}
	log.Warn("the admin listener serves plain HTTP on a non-loopback address: the admin credential crosses the network in clear; set --admin-tls-cert and --admin-tls-key",
		"addr", addr)
	return true
}
