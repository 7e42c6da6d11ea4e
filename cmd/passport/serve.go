package main

import (
	"context"
	"errors"
	"net"
	"net/http"
	"strings"
	"time"

	"github.com/spf13/cobra"

	"github.com/passport-attest/passport/evidence"
	"github.com/passport-attest/passport/issuer"
	"github.com/passport-attest/passport/jwks"
	"github.com/passport-attest/passport/policy"
	"github.com/passport-attest/passport/store"
	"github.com/passport-attest/passport/store/memory"
	redisstore "github.com/passport-attest/passport/store/redis"
)

type serveFlags struct {
	addr, issuerURL, redisURL, allowlist, signingKey, alg, policyFile string
	adminAddr, adminCredential                                        string
	trustAny                                                          bool
	audiences                                                         []string
	nonceTTL, tokenLifetime                                           time.Duration
	scale                                                             scaleFlags // serve_scale.go
}

func newServeCmd() *cobra.Command {
	var f serveFlags
	cmd := &cobra.Command{
		Use:   "serve",
		Short: "Run the issuer: challenges, evidence appraisal, tokens, JWKS and discovery",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			f.scale.rotationPeriodSet = cmd.Flags().Changed("rotation-period")
			return runServe(cmd.Context(), f)
		},
	}
	fl := cmd.Flags()
	fl.StringVar(&f.addr, "addr", "127.0.0.1:8443", "listen address HOST:PORT")
	fl.StringVar(&f.issuerURL, "issuer-url", "", "iss of minted tokens and base of discovery (default http://ADDR)")
	fl.StringVar(&f.redisURL, "redis", "", "Redis URL (redis://host:port/db) for nonces; in-memory when empty")
	fl.StringVar(&f.allowlist, "ak-allowlist", "", "file of trusted AK public keys (PEM PUBLIC KEY blocks or JWKS)")
	fl.BoolVar(&f.trustAny, "trust-any-ak", false, "trust every attestation key (demo only: tokens then prove nothing about the hardware)")
	fl.StringVar(&f.signingKey, "signing-key", "", "PEM private key (PKCS#8 or SEC 1) to sign tokens; generated at start when empty")
	fl.StringVar(&f.alg, "alg", "ES256", "signing algorithm for a generated key: ES256, ES384, EdDSA, PS256, RS256")
	fl.StringVar(&f.policyFile, "policy", "", "reference-value policy file (YAML); without it any verified evidence is affirmed")
	fl.StringSliceVar(&f.audiences, "audience", nil, "audiences tokens may be minted for (repeatable); any when unset")
	fl.DurationVar(&f.nonceTTL, "nonce-ttl", issuer.DefaultNonceTTL, "challenge lifetime")
	fl.DurationVar(&f.tokenLifetime, "token-lifetime", issuer.DefaultTokenLifetime, "token lifetime (exp - iat)")
	fl.StringVar(&f.adminAddr, "admin-addr", "", "listen address of the authenticated admin API (off when empty; never the public listener)")
	fl.StringVar(&f.adminCredential, "admin-credential", "", "file holding the admin bearer credential (at least 16 bytes)")
	addScaleFlags(fl, &f.scale)
	cmd.MarkFlagsMutuallyExclusive("ak-allowlist", "trust-any-ak")
	cmd.MarkFlagsRequiredTogether("admin-addr", "admin-credential")
	return cmd
}

func runServe(ctx context.Context, f serveFlags) error {
	log := logger()
	ln, err := net.Listen("tcp", f.addr)
	if err != nil {
		return err
	}
	url := f.issuerURL
	if url == "" {
		url = "http://" + ln.Addr().String()
	}
	is, closeStores, err := buildIssuer(ctx, f, strings.TrimRight(url, "/"))
	if err != nil {
		ln.Close()
		return err
	}
	defer closeStores()
	if f.trustAny {
		log.Warn("--trust-any-ak: every attestation key is trusted; tokens prove nothing about the hardware. Never use this in production.")
	}
	srv := &http.Server{
		Handler:           is.Handler(),
		ReadHeaderTimeout: 5 * time.Second,
		ReadTimeout:       30 * time.Second,
		WriteTimeout:      30 * time.Second,
		IdleTimeout:       120 * time.Second,
	}
	servers := []*http.Server{srv}
	errc := make(chan error, 2)
	if f.adminAddr != "" {
		auth, err := issuer.LoadAdminCredential(f.adminCredential)
		if err != nil {
			ln.Close()
			return err
		}
		if f.adminAddr == f.addr {
			ln.Close()
			return errors.New("--admin-addr must differ from --addr: the admin API never shares the public listener")
		}
		aln, err := net.Listen("tcp", f.adminAddr)
		if err != nil {
			ln.Close()
			return err
		}
		asrv := &http.Server{Handler: is.AdminHandler(auth), ReadHeaderTimeout: 5 * time.Second, ReadTimeout: 30 * time.Second, WriteTimeout: 30 * time.Second}
		servers = append(servers, asrv)
		log.Info("admin API listening", "addr", aln.Addr().String())
		go func() { errc <- asrv.Serve(aln) }()
	}
	log.Info("issuer listening", "addr", ln.Addr().String(), "issuer", url)
	go func() { errc <- srv.Serve(ln) }()
	err = nil
	select {
	case err = <-errc:
	case <-ctx.Done():
	}
	shutdown, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	for _, s := range servers {
		if e := s.Shutdown(shutdown); e != nil && !errors.Is(e, http.ErrServerClosed) && err == nil {
			err = e
		}
	}
	if errors.Is(err, http.ErrServerClosed) {
		err = nil
	}
	return err
}

func buildIssuer(ctx context.Context, f serveFlags, url string) (*issuer.Issuer, func(), error) {
	var trust evidence.AKTrust
	switch {
	case f.trustAny:
		trust = evidence.AnyAK{}
	case f.allowlist != "":
		al, err := evidence.LoadAllowlist(f.allowlist)
		if err != nil {
			return nil, nil, err
		}
		trust = al
	default:
		return nil, nil, errors.New("no AK trust configured: pass --ak-allowlist FILE (or --trust-any-ak for a demo)")
	}
	ev, err := evidence.NewVerifier(evidence.Options{AKTrust: trust})
	if err != nil {
		return nil, nil, err
	}
	pol := &policy.Reference{}
	if f.policyFile != "" {
		if pol, err = policy.LoadReference(f.policyFile); err != nil {
			return nil, nil, err
		}
	}
	nonces, clocks, blobs, closeFn, err := openStores(ctx, f)
	if err != nil {
		return nil, nil, err
	}
	ring, keys, err := buildKeys(ctx, f, blobs, logger())
	if err != nil {
		closeFn()
		return nil, nil, err
	}
	is, err := issuer.New(issuer.Config{
		URL: url, Keyring: ring, Nonces: nonces, Clocks: clocks,
		Evidence: ev, Policy: pol, NonceTTL: f.nonceTTL, TokenLifetime: f.tokenLifetime,
		Audiences: f.audiences, Log: logger(), Keys: keys,
		StatusTTL: f.scale.statusTTL, StatusListValidity: f.scale.statusListValidity,
	})
	if err != nil {
		closeFn()
		return nil, nil, err
	}
	return is, closeFn, nil
}

// openStores returns the memory backend, or the Redis backend (one server, Sentinel or
// Cluster: redisstore.Open) after a ping and the eviction-policy check; with Redis, the
// store also shares the signing keys (blobs).
func openStores(ctx context.Context, f serveFlags) (store.NonceStore, store.ClockStore, jwks.Storage, func(), error) {
	if f.redisURL == "" {
		m := memory.New(memory.WithStatusListSize(f.scale.statusListSize))
		return m, m, nil, func() {}, nil
	}
	client, err := openRedis(ctx, f.redisURL, f.scale.allowEvicting, logger())
	if err != nil {
		return nil, nil, nil, nil, err
	}
	s := redisstore.New(client, "passport", f.scale.redisOptions()...)
	return s, s, s, func() { client.Close() }, nil
}
