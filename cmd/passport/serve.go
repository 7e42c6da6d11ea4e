package main

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/http"
	"os"
	"strings"
	"time"

	"github.com/go-jose/go-jose/v4"
	"github.com/redis/go-redis/v9"
	"github.com/spf13/cobra"

	"github.com/passport-attest/passport/config"
	"github.com/passport-attest/passport/evidence"
	"github.com/passport-attest/passport/issuer"
	"github.com/passport-attest/passport/jwks"
	"github.com/passport-attest/passport/policy"
	"github.com/passport-attest/passport/store"
	"github.com/passport-attest/passport/store/memory"
	redisstore "github.com/passport-attest/passport/store/redis"
)

// serveFlags is serve's configuration: config.Serve (one YAML file, PASSPORT_* variables and
// flags; see package config). Fields other features add sit beside it.
type serveFlags struct {
	config.Serve
}

func newServeCmd() *cobra.Command {
	f := serveFlags{Serve: config.DefaultServe()}
	var cfgPath string
	var printCfg bool
	cmd := &cobra.Command{
		Use:   "serve",
		Short: "Run the issuer: challenges, evidence appraisal, tokens, JWKS and discovery",
		Long: "Run the issuer. Every flag is also a key of the serve section of --config FILE and an\n" +
			"environment variable PASSPORT_<FLAG> (upper case, '-' as '_'); flags win over the\n" +
			"environment, which wins over the file.",
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if cfgPath == "" {
				cfgPath = os.Getenv(config.EnvConfig)
			}
			src, err := config.Load(cmd.Flags(), config.SectionServe, cfgPath, os.Getenv)
			err = errors.Join(err, f.Validate())
			if printCfg {
				if perr := config.Print(cmd.OutOrStdout(), cmd.Flags(), config.SectionServe, src); perr != nil {
					return perr
				}
				if err != nil {
					fmt.Fprintf(cmd.ErrOrStderr(), "# serve would refuse this configuration:\n%v\n", err)
				}
				return nil
			}
			if err != nil {
				return fmt.Errorf("invalid configuration:\n%w", err)
			}
			return runServe(cmd.Context(), f)
		},
	}
	fl := cmd.Flags()
	fl.SortFlags = false
	f.RegisterFlags(fl)
	config.RegisterMeta(fl, &cfgPath, &printCfg)
	return cmd
}

func runServe(ctx context.Context, f serveFlags) error {
	log := logger()
	ln, err := net.Listen("tcp", f.Addr)
	if err != nil {
		return err
	}
	url := f.IssuerURL
	if url == "" {
		url = "http://" + ln.Addr().String()
	}
	is, closeStores, err := buildIssuer(ctx, f, strings.TrimRight(url, "/"))
	if err != nil {
		ln.Close()
		return err
	}
	defer closeStores()
	if f.TrustAnyAK {
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
	if f.AdminAddr != "" {
		auth, err := issuer.LoadAdminCredential(f.AdminCredential)
		if err != nil {
			ln.Close()
			return err
		}
		if f.AdminAddr == f.Addr {
			ln.Close()
			return errors.New("--admin-addr must differ from --addr: the admin API never shares the public listener")
		}
		aln, err := net.Listen("tcp", f.AdminAddr)
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
	case f.TrustAnyAK:
		trust = evidence.AnyAK{}
	case f.AKAllowlist != "":
		al, err := evidence.LoadAllowlist(f.AKAllowlist)
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
	var key *jwks.Key
	if f.SigningKey != "" {
		key, err = jwks.LoadKeyFile(f.SigningKey, "")
	} else {
		key, err = jwks.GenerateKey(jose.SignatureAlgorithm(f.Alg))
	}
	if err != nil {
		return nil, nil, err
	}
	pol := &policy.Reference{}
	if f.Policy != "" {
		if pol, err = policy.LoadReference(f.Policy); err != nil {
			return nil, nil, err
		}
	}
	nonces, clocks, closeFn, err := openStores(ctx, f.Redis)
	if err != nil {
		return nil, nil, err
	}
	is, err := issuer.New(issuer.Config{
		URL: url, Keyring: jwks.NewKeyring(key), Nonces: nonces, Clocks: clocks,
		Evidence: ev, Policy: pol, NonceTTL: f.NonceTTL, TokenLifetime: f.TokenLifetime,
		Audiences: f.Audiences, Log: logger(),
	})
	if err != nil {
		closeFn()
		return nil, nil, err
	}
	return is, closeFn, nil
}

// openStores returns the memory backend, or the Redis backend for a redis:// URL after a ping.
func openStores(ctx context.Context, url string) (store.NonceStore, store.ClockStore, func(), error) {
	if url == "" {
		m := memory.New()
		return m, m, func() {}, nil
	}
	opt, err := redis.ParseURL(url)
	if err != nil {
		return nil, nil, nil, fmt.Errorf("--redis: %w", err)
	}
	client := redis.NewClient(opt)
	pctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	if err := client.Ping(pctx).Err(); err != nil {
		client.Close()
		return nil, nil, nil, fmt.Errorf("redis %s: %w", opt.Addr, err)
	}
	s := redisstore.New(client, "passport")
	return s, s, func() { client.Close() }, nil
}
