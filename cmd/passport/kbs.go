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
	"time"

	"github.com/redis/go-redis/v9"
	"github.com/spf13/cobra"

	"github.com/passport-attest/passport/api"
	"github.com/passport-attest/passport/issuer"
	"github.com/passport-attest/passport/kbs"
	"github.com/passport-attest/passport/relyingparty"
	"github.com/passport-attest/passport/token"
)

type kbsFlags struct {
	addr, issuer, audience, secrets, policy, jwksFile, publicURL, auditLog string
	redisURL, redisPrefix, kek                                             string
	adminAddr, adminCredential                                             string
	statusList                                                             string
	statusMaxAge                                                           time.Duration
}

func newKBSCmd() *cobra.Command {
	var f kbsFlags
	cmd := &cobra.Command{
		Use:   "kbs",
		Short: "Run the key broker: secrets released to attested machines, encrypted to their key",
		Long: `kbs serves GET /kbs/v0/resource/{repository}/{type}/{tag}. A request must carry a
passport token of --issuer for --audience ("Authorization: DPoP <token>" and a DPoP proof by the
token's cnf key, unless the resource's policy rule opts in to bearer tokens), and the resource's
policy (--policy; by default: EAR status affirming) must allow it. The secret is answered as a
compact JWE encrypted to the token's cnf key. One JSON audit line per decision goes to
--audit-log (stderr by default).

A DPoP proof must name the broker's public URL: --public-url, by default http://ADDR from
--addr (never the request's Host header). Behind a proxy or TLS terminator, or with --addr on
every interface, set --public-url to the URL clients use.

Secrets come from --secrets DIR (files DIR/repository/type/tag) or from --redis, encrypted
there under the key-encryption key in --kek. With --admin-addr, an authenticated admin API
(PUT/DELETE /admin/v1/resource/...) listens there; "passport kbs put" calls it.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			return runKBS(cmd.Context(), f)
		},
	}
	fl := cmd.Flags()
	fl.StringVar(&f.addr, "addr", "127.0.0.1:8444", "listen address HOST:PORT")
	fl.StringVar(&f.issuer, "issuer", "", "issuer URL: the iss tokens must carry, and where its keys are discovered (required)")
	fl.StringVar(&f.audience, "audience", "", "audience tokens must name (required)")
	fl.StringVar(&f.secrets, "secrets", "", "secrets directory: DIR/repository/type/tag files")
	fl.StringVar(&f.policy, "policy", "", "policy file (YAML: rules of resource glob, CEL allow expression, bearer opt-in)")
	fl.StringVar(&f.jwksFile, "jwks", "", "JWKS file of the issuer's keys (offline); discovered from --issuer when empty")
	fl.StringVar(&f.statusList, "status-list", "", "with --jwks: Status List Token file (GET /v1/status-list/{id}) for revocation checks")
	fl.DurationVar(&f.statusMaxAge, "status-max-age", relyingparty.DefaultStatusMaxStaleness, "how long after its issue a status list may still be used when the issuer cannot be reached")
	fl.StringVar(&f.publicURL, "public-url", "", "external base URL of the broker, which DPoP proofs must name (default http://ADDR from --addr; required when --addr has no specific host)")
	fl.StringVar(&f.auditLog, "audit-log", "", "file the JSON audit lines are appended to (stderr when empty)")
	fl.StringVar(&f.redisURL, "redis", "", "Redis URL (redis://host:port/db) holding the secrets, encrypted under --kek")
	fl.StringVar(&f.redisPrefix, "redis-prefix", "passport-kbs", "key prefix of the secrets in Redis")
	fl.StringVar(&f.kek, "kek", "", "key-encryption key file for --redis (32 raw bytes, 64 hex digits or base64)")
	fl.StringVar(&f.adminAddr, "admin-addr", "", "listen address of the authenticated admin API (off when empty; never the public listener)")
	fl.StringVar(&f.adminCredential, "admin-credential", "", "file holding the admin bearer credential (at least 16 bytes)")
	_ = cmd.MarkFlagRequired("issuer")
	_ = cmd.MarkFlagRequired("audience")
	cmd.MarkFlagsOneRequired("secrets", "redis")
	cmd.MarkFlagsMutuallyExclusive("secrets", "redis")
	cmd.MarkFlagsRequiredTogether("redis", "kek")
	cmd.MarkFlagsRequiredTogether("admin-addr", "admin-credential")
	cmd.AddCommand(newKBSPutCmd())
	return cmd
}

func newKBSPutCmd() *cobra.Command {
	var adminURL, credFile string
	cmd := &cobra.Command{
		Use:   "put repository/type/tag FILE",
		Short: "Store a secret in a key broker through its admin API (FILE - reads stdin)",
		Args:  cobra.ExactArgs(2),
		RunE: func(cmd *cobra.Command, args []string) error {
			id, err := api.ParseResourceID(args[0])
			if err != nil {
				return err
			}
			cred, err := os.ReadFile(credFile)
			if err != nil {
				return fmt.Errorf("--credential: %w", err)
			}
			var secret []byte
			if args[1] == "-" {
				secret, err = io.ReadAll(io.LimitReader(cmd.InOrStdin(), kbs.MaxSecretSize+1))
			} else {
				secret, err = os.ReadFile(args[1])
			}
			if err != nil {
				return err
			}
			defer clear(secret)
			c := &kbs.AdminClient{URL: adminURL, Credential: strings.TrimSpace(string(cred))}
			if err := c.Put(cmd.Context(), id, secret); err != nil {
				return err
			}
			fmt.Fprintf(cmd.ErrOrStderr(), "stored %s (%d bytes)\n", id, len(secret))
			return nil
		},
	}
	cmd.Flags().StringVar(&adminURL, "admin", "", "admin API base URL, e.g. http://127.0.0.1:8445 (required)")
	cmd.Flags().StringVar(&credFile, "credential", "", "file holding the admin bearer credential (required)")
	_ = cmd.MarkFlagRequired("admin")
	_ = cmd.MarkFlagRequired("credential")
	return cmd
}

func runKBS(ctx context.Context, f kbsFlags) error {
	log := logger()
	iss := strings.TrimRight(f.issuer, "/")
	var ks relyingparty.KeySet
	if f.jwksFile != "" {
		var err error
		if ks, err = relyingparty.LoadJWKSFile(f.jwksFile); err != nil {
			return err
		}
	} else {
		d, err := relyingparty.Discover(ctx, iss, &http.Client{Timeout: 10 * time.Second})
		if err != nil {
			return err
		}
		ks = relyingparty.NewRemoteKeySet(ctx, d.JWKSURI)
	}
	// The verifier's floor is warning: the per-resource policy decides above it (default:
	// affirming only).
	v, err := relyingparty.NewVerifier(relyingparty.Config{Issuer: iss, Audience: f.audience, KeySet: ks, MinStatus: token.TierWarning})
	if err != nil {
		return err
	}
	pol := kbs.DefaultPolicy()
	if f.policy != "" {
		if pol, err = kbs.LoadPolicyFile(f.policy); err != nil {
			return err
		}
	}
	store, closeStore, err := openSecretStore(ctx, f)
	if err != nil {
		return err
	}
	defer closeStore()
	auditOut := io.Writer(os.Stderr)
	if f.auditLog != "" {
		af, err := os.OpenFile(f.auditLog, os.O_WRONLY|os.O_CREATE|os.O_APPEND, 0o600)
		if err != nil {
			return fmt.Errorf("--audit-log: %w", err)
		}
		defer af.Close()
		auditOut = af
	}
	audit := slog.New(slog.NewJSONHandler(auditOut, nil))
	// Revocation: every release checks the token's status list entry at the issuer (cached
	// per the list's ttl, revocations pushed through the issuer's event stream); offline
	// (--jwks), from --status-list FILE. No status, no secret.
	revocation, err := kbsRevocation(ctx, f, iss, ks, v)
	if err != nil {
		return err
	}
	ln, err := net.Listen("tcp", f.addr)
	if err != nil {
		return err
	}
	// kbs serves plain HTTP (a TLS terminator in front sets --public-url https://...).
	public, err := kbsPublicURL(f.publicURL, f.addr, ln.Addr(), false)
	if err != nil {
		ln.Close()
		return err
	}
	b, err := kbs.New(kbs.Config{Verifier: v, Store: store, Policy: pol, Audit: audit, PublicURL: public, Revocation: revocation})
	if err != nil {
		ln.Close()
		return err
	}
	servers := []*http.Server{{Handler: b.Handler(), ReadHeaderTimeout: 5 * time.Second, ReadTimeout: 30 * time.Second, WriteTimeout: 30 * time.Second, IdleTimeout: 120 * time.Second}}
	lns := []net.Listener{ln}
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
		servers = append(servers, &http.Server{Handler: kbs.AdminHandler(store, auth, audit), ReadHeaderTimeout: 5 * time.Second, ReadTimeout: 30 * time.Second, WriteTimeout: 30 * time.Second})
		lns = append(lns, aln)
		log.Info("kbs admin API listening", "addr", aln.Addr().String())
	}
	log.Info("kbs listening", "addr", ln.Addr().String(), "public_url", public, "issuer", iss, "audience", f.audience)
	errc := make(chan error, len(servers))
	for i, s := range servers {
		go func() { errc <- s.Serve(lns[i]) }()
	}
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

// kbsPublicURL is the broker's public base URL, the one DPoP proofs must name: flag
// (--public-url) when set, else derived from addr (--addr): http://HOST:PORT, https when the
// listener serves TLS, with the port the listener bound (so HOST:0 works). It is never taken
// from requests. An --addr without a specific host (":8444", "0.0.0.0:8444", "[::]:8444")
// names no URL clients could use: --public-url is required then.
func kbsPublicURL(flag, addr string, bound net.Addr, tlsOn bool) (string, error) {
	if flag != "" {
		return flag, nil
	}
	host, _, err := net.SplitHostPort(addr)
	if err != nil {
		return "", fmt.Errorf("--addr %q: %w", addr, err)
	}
	if ip := net.ParseIP(host); host == "" || (ip != nil && ip.IsUnspecified()) {
		return "", fmt.Errorf("--addr %q listens on every address: set --public-url to the URL clients address the broker by", addr)
	}
	_, port, err := net.SplitHostPort(bound.String())
	if err != nil {
		return "", fmt.Errorf("listener address %q: %w", bound, err)
	}
	scheme := "http"
	if tlsOn {
		scheme = "https"
	}
	return scheme + "://" + net.JoinHostPort(host, port), nil
}

// openSecretStore returns the directory store, or the Redis store after a ping.
func openSecretStore(ctx context.Context, f kbsFlags) (kbs.Store, func(), error) {
	if f.secrets != "" {
		s, err := kbs.NewDirStore(f.secrets)
		if err != nil {
			return nil, nil, err
		}
		return s, func() { s.Close() }, nil
	}
	kek, err := kbs.LoadKEK(f.kek)
	if err != nil {
		return nil, nil, err
	}
	opt, err := redis.ParseURL(f.redisURL)
	if err != nil {
		return nil, nil, fmt.Errorf("--redis: %w", err)
	}
	client := redis.NewClient(opt)
	pctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	if err := client.Ping(pctx).Err(); err != nil {
		client.Close()
		return nil, nil, fmt.Errorf("redis %s: %w", opt.Addr, err)
	}
	s, err := kbs.NewRedisStore(client, f.redisPrefix, kek)
	clear(kek)
	if err != nil {
		client.Close()
		return nil, nil, err
	}
	return s, func() { client.Close() }, nil
}

// kbsRevocation builds the broker's status-list revocation check: online it fetches the
// issuer's lists and follows its revocation stream; with --jwks it is offline and needs
// --status-list FILE (a Status List Token), refusing every release once that list is older
// than --status-max-age.
func kbsRevocation(ctx context.Context, f kbsFlags, iss string, ks relyingparty.KeySet, v *relyingparty.Verifier) (kbs.RevocationChecker, error) {
	offline := f.jwksFile != ""
	if offline && f.statusList == "" {
		return nil, errors.New("--jwks (offline) needs --status-list FILE: the broker never releases a secret without checking revocation")
	}
	sc, err := relyingparty.NewStatusChecker(relyingparty.StatusConfig{Issuer: iss, KeySet: ks, Offline: offline, MaxStaleness: f.statusMaxAge})
	if err != nil {
		return nil, err
	}
	if offline {
		if err := sc.LoadFile(ctx, f.statusList); err != nil {
			return nil, err
		}
		return kbs.StatusRevocation{Checker: sc}, nil
	}
	d, err := relyingparty.Discover(ctx, iss, &http.Client{Timeout: 10 * time.Second})
	switch {
	case err != nil:
		logger().Warn("kbs: cannot discover the issuer's revocation stream; revocations reach the broker through status lists (per their ttl) only", "error", err.Error())
	case d.RevocationEventsEndpoint == "":
		logger().Warn("kbs: the issuer publishes no revocation stream; revocations reach the broker through status lists (per their ttl) only")
	default:
		go func() { _ = sc.Follow(ctx, d.RevocationEventsEndpoint, v) }()
	}
	return kbs.StatusRevocation{Checker: sc}, nil
}
