package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
	"strings"

	"github.com/spf13/cobra"

	"github.com/passport-attest/passport/api"
	"github.com/passport-attest/passport/config"
	"github.com/passport-attest/passport/kbs"
	"github.com/passport-attest/passport/relyingparty"
)

// kbsFlags is kbs's configuration: config.KBS (one YAML file, PASSPORT_KBS_* variables and
// flags; see package config).
type kbsFlags struct {
	config.KBS
}

func newKBSCmd() *cobra.Command {
	f := kbsFlags{KBS: config.DefaultKBS()}
	var cfgPath string
	var printCfg bool
	cmd := &cobra.Command{
		Use:   "kbs",
		Short: "Run the key broker: secrets released to attested machines, encrypted to their key",
		Long: `kbs serves GET /kbs/v0/resource/{repository}/{type}/{tag}. A request must carry a
passport token of --issuer for --audience ("Authorization: DPoP <token>" and a DPoP proof by the
token's cnf key, unless the resource's policy rule opts in to bearer tokens), and the resource's
policy (--policy; by default: EAR status affirming) must allow it. The secret is answered as a
compact JWE encrypted to the token's cnf key. One JSON audit line per decision goes to
--audit-log (the log output, stderr, by default).

A DPoP proof must name the broker's public URL: --public-url, by default http://ADDR from
--addr (https with --tls-cert; never the request's Host header). Behind a proxy or TLS
terminator, or with --addr on every interface, set --public-url to the URL clients use.

Secrets come from --secrets DIR (files DIR/repository/type/tag) or from --redis, encrypted
there under the key-encryption key in --kek. With --admin-addr, an authenticated admin API
(PUT/DELETE /admin/v1/resource/...) listens there; "passport kbs put" calls it.

Operations: /healthz, /readyz (issuer keys, revocation status and secret store usable) and
/metrics on the public listener or --metrics-addr; JSON logs with request ids; TLS on every
listener (--tls-cert/--tls-key, --admin-tls-cert/--admin-tls-key, reloaded on change).
Every flag is also a key of the kbs section of --config FILE and an environment variable
PASSPORT_KBS_<FLAG> (upper case, '-' as '_'); flags win over the environment, which wins
over the file.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if cfgPath == "" {
				cfgPath = os.Getenv(config.EnvConfig)
			}
			src, err := config.Load(cmd.Flags(), config.SectionKBS, cfgPath, os.Getenv)
			// Validate checks the values, then the files they name are loaded as at start:
			// every problem is reported in one run.
			err = errors.Join(err, f.Validate(), checkKBSFiles(cmd.Context(), f))
			if printCfg {
				if perr := config.Print(cmd.OutOrStdout(), cmd.Flags(), config.SectionKBS, src); perr != nil {
					return perr
				}
				if err != nil {
					fmt.Fprintf(cmd.ErrOrStderr(), "# kbs would refuse this configuration:\n%v\n", err)
				}
				return nil
			}
			if err != nil {
				return fmt.Errorf("invalid configuration:\n%w", err)
			}
			return runKBS(cmd.Context(), f)
		},
	}
	fl := cmd.Flags()
	fl.SortFlags = false
	f.RegisterFlags(fl)
	config.RegisterMeta(fl, &cfgPath, &printCfg)
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

func runKBS(ctx context.Context, f kbsFlags) error { return kbsServe(ctx, f, os.Stderr, nil) }

// openSecretStore returns the directory store, or the Redis store after a ping.
func openSecretStore(ctx context.Context, f kbsFlags) (kbs.Store, func(), error) {
	if f.Secrets != "" {
		s, err := kbs.NewDirStore(f.Secrets)
		if err != nil {
			return nil, nil, err
		}
		return s, func() { s.Close() }, nil
	}
	kek, err := kbs.LoadKEK(f.KEK)
	if err != nil {
		return nil, nil, err
	}
	client, err := dialRedis(ctx, "redis", f.Redis, f.RedisTimeout)
	if err != nil {
		return nil, nil, err
	}
	s, err := kbs.NewRedisStore(client, f.RedisPrefix, kek)
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
// than --status-max-age. It returns the checker too, for the readiness probe.
func kbsRevocation(ctx context.Context, f kbsFlags, iss string, ks relyingparty.KeySet, v *relyingparty.Verifier, hc *http.Client) (kbs.RevocationChecker, *relyingparty.StatusChecker, error) {
	offline := f.JWKS != ""
	if offline && f.StatusList == "" {
		return nil, nil, errors.New("--jwks (offline) needs --status-list FILE: the broker never releases a secret without checking revocation")
	}
	sc, err := relyingparty.NewStatusChecker(relyingparty.StatusConfig{Issuer: iss, KeySet: ks, Offline: offline, MaxStaleness: f.StatusMaxAge, HTTPClient: hc})
	if err != nil {
		return nil, nil, err
	}
	if offline {
		if err := sc.LoadFile(ctx, f.StatusList); err != nil {
			return nil, nil, err
		}
		return kbs.StatusRevocation{Checker: sc}, sc, nil
	}
	d, err := relyingparty.Discover(ctx, iss, hc)
	switch {
	case err != nil:
		logger().Warn("kbs: cannot discover the issuer's revocation stream; revocations reach the broker through status lists (per their ttl) only", "error", err.Error())
	case d.RevocationEventsEndpoint == "":
		logger().Warn("kbs: the issuer publishes no revocation stream; revocations reach the broker through status lists (per their ttl) only")
	default:
		go func() { _ = sc.Follow(ctx, d.RevocationEventsEndpoint, v) }()
	}
	return kbs.StatusRevocation{Checker: sc}, sc, nil
}
