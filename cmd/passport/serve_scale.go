package main

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"time"

	"github.com/go-jose/go-jose/v4"
	"github.com/redis/go-redis/v9"
	"github.com/spf13/pflag"

	"github.com/passport-attest/passport/issuer"
	"github.com/passport-attest/passport/jwks"
	"github.com/passport-attest/passport/relyingparty"
	dirstore "github.com/passport-attest/passport/store/dir"
	redisstore "github.com/passport-attest/passport/store/redis"
)

// keySyncInterval is how often each replica reloads the shared key set (and performs a due
// rotation).
const keySyncInterval = 30 * time.Second

// scaleFlags are serve's flags for revocation, key rotation and Redis scale-out.
type scaleFlags struct {
	allowEvicting                 bool
	requirePersistent             bool
	statusListSize, statusShards  int
	statusTTL, statusListValidity time.Duration
	kek, keyDir                   string
	rotationPeriod                time.Duration
	rotationPeriodSet             bool
}

func addScaleFlags(fl *pflag.FlagSet, f *scaleFlags) {
	fl.BoolVar(&f.allowEvicting, "allow-evicting-redis", false, "run even if Redis's maxmemory-policy may evict keys (evicted revocations silently un-revoke tokens)")
	fl.BoolVar(&f.requirePersistent, "require-persistent-redis", false, "refuse to start on a Redis without an append-only file (appendonly yes is required; RDB save points alone are refused), instead of warning: a restart empties a Redis without persistence and a crash rolls a snapshot-only one back, un-revoking tokens and reviving spent nonces")
	fl.IntVar(&f.statusListSize, "status-list-size", 0, "entries per status list (default 131072); all replicas must agree")
	fl.IntVar(&f.statusShards, "status-shards", 1, "status list shards in Redis (spread over a Cluster's masters); all replicas must agree")
	fl.DurationVar(&f.statusTTL, "status-ttl", issuer.DefaultStatusTTL, "ttl of status list tokens: how often relying parties refetch them")
	fl.DurationVar(&f.statusListValidity, "status-list-validity", issuer.DefaultStatusListValidity, "exp - iat of status list tokens (offline relying parties use a list at most this long)")
	fl.StringVar(&f.kek, "kek", "", "key-encryption key file (32 bytes, raw, hex or base64): share signing keys through --key-dir or --redis")
	fl.StringVar(&f.keyDir, "key-dir", "", "directory holding the shared signing keys (sealed with --kek)")
	fl.DurationVar(&f.rotationPeriod, "rotation-period", 24*time.Hour, "scheduled signing-key rotation interval (0: only on passport keys rotate)")
}

// openRedis opens the --redis URL (one server, redis+sentinel:// or redis+cluster://), checks
// that it answers and that its maxmemory-policy cannot evict keys.
func openRedis(ctx context.Context, url string, timeout time.Duration, allowEvicting bool, log *slog.Logger) (redis.UniversalClient, error) {
	client, err := dialRedis(ctx, "redis", url, timeout)
	if err != nil {
		return nil, err
	}
	pctx, cancel := context.WithTimeout(ctx, redisPingTimeout)
	defer cancel()
	if err := checkEviction(pctx, client, allowEvicting, log); err != nil {
		client.Close()
		return nil, err
	}
	return client, nil
}

// checkEviction refuses a Redis whose maxmemory-policy may evict keys, or whose policy cannot
// be read, unless allow is set (then it warns).
func checkEviction(ctx context.Context, client redis.UniversalClient, allow bool, log *slog.Logger) error {
	policy, err := redisstore.CheckEvictionPolicy(ctx, client)
	switch {
	case err == nil:
		return nil
	case allow && (errors.Is(err, redisstore.ErrEvictingPolicy) || errors.Is(err, redisstore.ErrPolicyUnknown)):
		log.Warn("--allow-evicting-redis: Redis may evict nonces, clock records and revocations; an evicted revocation silently un-revokes tokens",
			"maxmemory-policy", policy)
		return nil
	case errors.Is(err, redisstore.ErrEvictingPolicy):
		return fmt.Errorf("%w: evicted revocations would silently un-revoke tokens; set `maxmemory-policy noeviction` or pass --allow-evicting-redis", err)
	case errors.Is(err, redisstore.ErrPolicyUnknown):
		return fmt.Errorf("%w: cannot tell whether Redis evicts keys; pass --allow-evicting-redis if its policy is noeviction", err)
	}
	return err
}

// redisOptions turns the status flags into store options.
func (f scaleFlags) redisOptions() []redisstore.Option {
	return []redisstore.Option{redisstore.WithStatusListSize(f.statusListSize), redisstore.WithStatusShards(f.statusShards)}
}

// buildKeys returns the keyring and, unless a fixed --signing-key is used, the rotator that
// keeps it (shared through --key-dir or Redis when --kek is given; else in this process),
// running its sync loop until ctx is done.
func buildKeys(ctx context.Context, f serveFlags, redisBlobs jwks.Storage, log *slog.Logger) (*jwks.Keyring, issuer.KeyAdmin, error) {
	s := f.scale
	if f.SigningKey != "" {
		if s.kek != "" || s.keyDir != "" || s.rotationPeriodSet {
			return nil, nil, errors.New("--signing-key is a fixed key: it excludes --kek, --key-dir and --rotation-period")
		}
		key, err := jwks.LoadKeyFile(f.SigningKey, "")
		if err != nil {
			return nil, nil, err
		}
		return jwks.NewKeyring(key), nil, nil
	}
	cfg := jwks.RotatorConfig{
		Keyring:   jwks.NewKeyring(nil),
		Algorithm: jose.SignatureAlgorithm(f.Alg),
		Period:    s.rotationPeriod,
		// A retired key stays published while any JWT it signed may still be accepted: the
		// longest lifetime, the relying parties' largest leeway, and one sync interval during
		// which another replica may still sign with it.
		Retention: max(f.TokenLifetime, s.statusListValidity) + relyingparty.MaxLeeway + keySyncInterval,
		Log:       log,
	}
	switch {
	case s.keyDir != "" && s.kek == "":
		return nil, nil, errors.New("--key-dir needs --kek: shared private keys are stored sealed")
	case s.kek != "":
		kek, err := jwks.LoadKEK(s.kek)
		if err != nil {
			return nil, nil, err
		}
		cfg.KEK = kek
		switch {
		case s.keyDir != "":
			d, err := dirstore.New(s.keyDir)
			if err != nil {
				return nil, nil, err
			}
			cfg.Storage = d
		case redisBlobs != nil:
			cfg.Storage = redisBlobs
		default:
			return nil, nil, errors.New("--kek needs --key-dir or --redis to share the keys")
		}
	case redisBlobs != nil:
		log.Warn("--redis without --kek: this replica signs with keys of its own; pass --kek FILE so replicas share one key set")
	}
	rot, err := jwks.NewRotator(ctx, cfg)
	if err != nil {
		return nil, nil, err
	}
	go rot.Run(ctx, keySyncInterval)
	return cfg.Keyring, rot, nil
}
