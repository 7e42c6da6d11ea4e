package main

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"os"
	"reflect"
	"strings"

	"github.com/redis/go-redis/v9"
	"github.com/spf13/cobra"

	"github.com/passport-attest/passport/config"
	"github.com/passport-attest/passport/evidence"
	"github.com/passport-attest/passport/health"
	"github.com/passport-attest/passport/httplog"
	"github.com/passport-attest/passport/issuer"
	"github.com/passport-attest/passport/jwks"
	"github.com/passport-attest/passport/metrics"
	"github.com/passport-attest/passport/policy"
	"github.com/passport-attest/passport/serving"
	"github.com/passport-attest/passport/store"
	"github.com/passport-attest/passport/store/memory"
	redisstore "github.com/passport-attest/passport/store/redis"
	"github.com/passport-attest/passport/tlsreload"
)

// serveFlags is serve's configuration: config.Serve (one YAML file, PASSPORT_* variables and
// flags; see package config). Fields other features add sit beside it.
type serveFlags struct {
	config.Serve
	scale scaleFlags // serve_scale.go: revocation, key rotation, Redis scale-out
	// gogcSet: the gogc key was given (flag, environment or file), so it wins over GOGC.
	gogcSet bool
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
			// Validate checks the values, then the files they name are loaded as at start:
			// every problem is reported in one run.
			err = errors.Join(err, f.Validate(), checkServeFiles(cmd.Context(), f))
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
			f.scale.rotationPeriodSet = cmd.Flags().Changed("rotation-period") || src["rotation-period"] != config.FromDefault
			f.gogcSet = cmd.Flags().Changed("gogc") || src["gogc"] != config.FromDefault
			return runServe(cmd.Context(), f)
		},
	}
	fl := cmd.Flags()
	fl.SortFlags = false
	f.RegisterFlags(fl)
	addScaleFlags(fl, &f.scale)
	config.RegisterMeta(fl, &cfgPath, &printCfg)
	return cmd
}

func runServe(ctx context.Context, f serveFlags) error { return serve(ctx, f, os.Stderr, nil) }

// serve runs the issuer until ctx is done, logging to logOut; onReady (may be nil) is given
// the issuer URL and the bound address of each listener once they accept connections.
func serve(ctx context.Context, f serveFlags, logOut io.Writer, onReady func(url string, addrs map[string]string)) (err error) {
	log := httplog.NewLogger(logOut, f.Log.Level, f.Log.Format)
	redis.SetLogger(redisLogger{log})
	applyGC(f, os.LookupEnv, log)
	o := &ops{log: log, metrics: metrics.New(), health: &health.Checker{Log: log}, pprof: f.Pprof}
	var closers []func()
	defer func() {
		if err != nil {
			for _, c := range closers {
				c()
			}
		}
	}()
	ln, err := net.Listen("tcp", f.Addr)
	if err != nil {
		return err
	}
	closers = append(closers, func() { ln.Close() })
	pubTLS, err := serverTLS(f.TLS, "", log)
	if err != nil {
		return err
	}
	url, err := publicURL("issuer-url", f.IssuerURL, f.Addr, ln.Addr(), pubTLS != nil)
	if err != nil {
		return err
	}
	is, closeStores, err := buildIssuer(ctx, f, strings.TrimRight(url, "/"), o)
	if err != nil {
		return err
	}
	defer closeStores()
	o.health.Add("store", is.CheckStore)
	o.health.Add("signing_key", is.CheckSigningKey)
	if f.TrustAnyAK {
		log.Warn("--trust-any-ak: every attestation key is trusted; tokens prove nothing about the hardware. Never use this in production.")
	}
	servers := []*serving.Server{serving.New("public", ln, o.publicHandler(is, f), f.Server, pubTLS, log)}
	servers[0].HTTP.RegisterOnShutdown(is.CloseStreams) // revocation streams end when shutdown starts
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
		adminTLS, err := serverTLS(f.AdminTLS, f.AdminClientCA, log)
		if err != nil {
			return err
		}
		warnPlainAdmin(log, f.AdminAddr, adminTLS != nil)
		aln, err := net.Listen("tcp", f.AdminAddr)
		if err != nil {
			return err
		}
		closers = append(closers, func() { aln.Close() })
		servers = append(servers, serving.New("admin", aln, o.wrap("admin", is.AdminHandler(auth)), f.Server, adminTLS, log))
	}
	log.Info("issuer ready", "issuer", url)
	if onReady != nil {
		addrs := map[string]string{}
		for _, s := range servers {
			addrs[s.Name] = s.Listener.Addr().String()
		}
		onReady(url, addrs)
	}
	return serving.RunDraining(ctx, log, f.Server.ShutdownTimeout, o.health.Drain, servers...)
}

// serverTLS returns the TLS configuration of a listener (certificate reloaded when its files
// change; client certificates required when clientCA is set), or nil for plain HTTP.
func serverTLS(t config.TLS, clientCA string, log *slog.Logger) (*tls.Config, error) {
	if !t.Enabled() {
		return nil, nil
	}
	r, err := tlsreload.New(t.Cert, t.Key, tlsreload.WithLogger(log))
	if err != nil {
		return nil, err
	}
	return tlsreload.ServerConfig(r, clientCA)
}

func buildIssuer(ctx context.Context, f serveFlags, url string, o *ops) (*issuer.Issuer, func(), error) {
	nonces, clocks, blobs, closeFn, err := openStores(ctx, f, o.log)
	if err != nil {
		return nil, nil, err
	}
	ring, keys, err := buildKeys(ctx, f, blobs, o.log)
	if err != nil {
		closeFn()
		return nil, nil, err
	}
	var pol policy.Appraiser = &policy.Reference{}
	closeRefs := func() {}
	if f.Policy != "" {
		eng, closeEng, err := startPolicyEngine(ctx, f)
		if err != nil {
			closeFn()
			return nil, nil, err
		}
		pol, closeRefs = eng, closeEng
	}
	is, err := assembleIssuer(f, url, o, issuerStores{nonces, clocks, ring, keys}, pol)
	if err != nil {
		closeRefs()
		closeFn()
		return nil, nil, err
	}
	return is, func() { closeRefs(); closeFn() }, nil
}

// issuerStores are what assembleIssuer builds on: opened stores and the keyring.
type issuerStores struct {
	nonces store.NonceStore
	clocks store.ClockStore
	ring   *jwks.Keyring
	keys   issuer.KeyAdmin
}

// assembleIssuer builds the issuer on opened stores, keys and policy, adding AK trust
// (allowlist, certificate chains, EK enrollment, or any AK).
func assembleIssuer(f serveFlags, url string, o *ops, st issuerStores, pol policy.Appraiser) (*issuer.Issuer, error) {
	nonces := st.nonces
	aks, _ := nonces.(store.AKStore)
	trust, allow, err := buildAKTrust(f, aks, f.AdminAddr != "" || f.AK.EnrollOn())
	if err != nil {
		return nil, err
	}
	enr, err := buildEnroller(f.AK, nonces, allow)
	if err != nil {
		return nil, err
	}
	ev, err := evidence.NewVerifier(evidence.Options{AKTrust: trust})
	if err != nil {
		return nil, err
	}
	feed, _ := nonces.(store.RevocationFeed) // the metrics wrappers below hide it
	clocks := st.clocks
	var status store.StatusStore
	if s, ok := nonces.(store.StatusStore); ok {
		status = o.metrics.StatusStore(s)
		// The issuer folds the clock check into AllocateStatus when Clocks is Status: keep
		// that when the wrapper stands for the store that is both.
		if c, ok := status.(store.ClockStore); ok && sameStore(st.clocks, s) {
			clocks = c
		}
	}
	return issuer.New(issuer.Config{
		URL: url, Keyring: st.ring, Keys: st.keys, Nonces: o.metrics.NonceStore(nonces), Clocks: clocks,
		Status: status, Revocations: feed,
		StatusTTL: f.scale.statusTTL, StatusListValidity: f.scale.statusListValidity, StreamLifetime: f.Limits.RevocationStreamLifetime,
		Allowlist: allow, Enroll: enr,
		Evidence: ev, Policy: pol, NonceTTL: f.NonceTTL, TokenLifetime: f.TokenLifetime,
		Audiences: f.Audiences, Log: o.log,
		Observe: o.metrics.Step, Outcome: o.metrics.Attestation,
	})
}

// sameStore reports whether a and b are the same pointer (comparing interfaces holding
// values of a type that is not comparable would panic).
func sameStore(a, b any) bool {
	va, vb := reflect.ValueOf(a), reflect.ValueOf(b)
	return va.Kind() == reflect.Pointer && vb.Kind() == reflect.Pointer && va.Type() == vb.Type() && va.Pointer() == vb.Pointer()
}

// openStores returns the memory backend, or the Redis backend (one server, Sentinel or
// Cluster: redisstore.Open) after a ping and the eviction-policy check; with Redis, the store
// also shares the signing keys (blobs).
func openStores(ctx context.Context, f serveFlags, log *slog.Logger) (store.NonceStore, store.ClockStore, jwks.Storage, func(), error) {
	if f.Redis == "" {
		m := memory.New(memory.WithStatusListSize(f.scale.statusListSize))
		return m, m, nil, func() {}, nil
	}
	client, err := openRedis(ctx, f.Redis, f.RedisTimeout, f.scale.allowEvicting, log)
	if err != nil {
		return nil, nil, nil, nil, err
	}
	if err := checkPersistence(ctx, client, f.scale.requirePersistent, log); err != nil {
		client.Close()
		return nil, nil, nil, nil, err
	}
	s := redisstore.New(client, "passport", f.scale.redisOptions()...)
	if err := armEpoch(ctx, s, log); err != nil {
		client.Close()
		return nil, nil, nil, nil, err
	}
	return s, s, s, func() { client.Close() }, nil
}
