// Package redisstore is the Redis backend of store.NonceStore, store.ClockStore,
// store.StatusStore, store.RevocationFeed and store.BlobStore (DESIGN.md section 5), on a go-redis v9 UniversalClient: one server, Sentinel or Cluster. It passes the
// same conformance suite (storetest) as the memory backend.
//
// Keys, where <prefix> is the string given to New and <hex> is lowercase hexadecimal:
//
//	<prefix>:nonce:{<hex(SHA-256(nonce))>}  string: the opaque value; TTL = the nonce's ttl
//	<prefix>:clock:{<hex(SHA-256(ak))>}     hash r, s, h, l: resetCount, restartCount, and the
//	                                        high and low 32 bits of clock (decimal strings);
//	                                        TTL = the ttl of the last accepted AdvanceClock
//
// Status lists (status.go) live in shards (WithStatusShards, default 1); every key of shard N
// carries the hash tag {<prefix>/N}:
//
//	<prefix>:status:{<prefix>/N}:next           counter: entries allocated in the shard (INCR)
//	<prefix>:status:{<prefix>/N}:lexp           hash: shard-local list number -> latest expiry (ms)
//	<prefix>:status:{<prefix>/N}:list:<n>       bitmap of list n*shards+N, in the status list's bit
//	                                            order; TTL = its last entry's expiry
//	<prefix>:status:{<prefix>/N}:id:<hex>       string "<n>:<index>" for SHA-256(jti); TTL = expiry
//	<prefix>:status:{<prefix>/N}:sub:<hex>      zset of "<n>:<index>" scored by expiry, per subject
//	<prefix>:status:{<prefix>/N}:lbl:<hex>      zset likewise, per label (reference value)
//	<prefix>:status:{<prefix>/N}:rlbls          hash: <hex> of each revoked label -> "1" (no TTL; until ReinstateLabel)
//	<prefix>:status:{<prefix>/N}:clock:<hex>    clock record checked with an allocation
//	<prefix>:status:revocations                 pub/sub channel: "<list> <index>..."
//	<prefix>:status:{<prefix>/N}:epoch          string: the epoch marker of shard N (epoch.go)
//	<prefix>:epoch:{<prefix>:aks}               string: the epoch marker of the AK records' slot
//	<prefix>:status:{<prefix>/N}:probe:<id>     string "1", TTL 10 s: readiness write probe of
//	<prefix>:probe:{<prefix>:aks}:<id>          the Store with random id <id> (Ping)
//	<prefix>:blob:{<name>}                      hash v (version), d (data): BlobStore
//
// A subject's entries all go to shard SHA-256(subject) mod shards, so one allocation touches
// one slot and runs as one Lua script (one round trip).
//
// The digest part is wrapped in braces, a Cluster hash tag, so any future operation touching
// both records of one nonce or AK stays in one slot; every operation here touches one key.
// (If prefix itself contains a "{...}" pair, that pair becomes the hash tag instead, putting
// all keys in one slot: avoid braces in prefix on Cluster.)
//
// Single use is enforced by Redis: PutNonce is SET NX with PX, ConsumeNonce is GETDEL (Redis
// 6.2 or later), so among concurrent consumers exactly one receives the value. AdvanceClock is
// one Lua script that compares and sets atomically. Every Redis or network failure is returned
// wrapping store.ErrUnavailable (fail closed: the issuer answers 503). Because an evicted nonce
// or clock record silently weakens these guarantees, servers must run with maxmemory-policy
// noeviction; CheckEvictionPolicy checks that at startup.
package redisstore

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/passport-attest/passport/store"
)

var (
	// ErrEvictingPolicy means the server's maxmemory-policy is not "noeviction": under memory
	// pressure Redis may drop nonces (turning valid challenges into ErrNonceUnknown) or clock
	// records (forgetting rollback history). Returned, wrapped, by CheckEvictionPolicy.
	ErrEvictingPolicy = errors.New("redisstore: maxmemory-policy is not noeviction")
	// ErrPolicyUnknown means CheckEvictionPolicy could not read maxmemory-policy although the
	// server answered: CONFIG is not permitted for this user (NOPERM), renamed or disabled (as
	// on some managed services), or returned nothing. It wraps the server's error, if any.
	ErrPolicyUnknown = errors.New("redisstore: cannot read maxmemory-policy")
)

// errBadTTL is returned (wrapped) when a caller passes a non-positive time to live.
var errBadTTL = errors.New("ttl must be positive")

// Store is a Redis-backed store.NonceStore and store.ClockStore. Build one with New. It holds
// no state besides the client and prefix and is safe for concurrent use; any number of issuer
// replicas may share one Redis deployment and prefix.
type Store struct {
	client redis.UniversalClient
	prefix string
	status statusConfig // status lists, status.go
	epoch  epochState   // data-loss detection, epoch.go
	// replica is this Store's random id, naming its readiness probe keys (Ping).
	replica string
}

var (
	_ store.NonceStore = (*Store)(nil)
	_ store.ClockStore = (*Store)(nil)
)

// New returns a Store that keeps its keys under prefix (see the package documentation for the
// key layout; an empty prefix leaves keys unprefixed, e.g. "nonce:{...}"), configured by opts. The client is used
// as is: its timeouts and retries bound every operation, and closing it is the caller's job.
func New(client redis.UniversalClient, prefix string, opts ...Option) *Store {
	if prefix != "" {
		prefix += ":"
	}
	s := &Store{client: client, prefix: prefix, status: defaultStatusConfig()}
	for _, o := range opts {
		o(s)
	}
	s.epoch.high = make([]atomic.Int64, s.status.shards)
	s.replica = newReplicaID()
	return s
}

// NonceNamespace implements store.NonceNamespacer: a Store on the same client whose keys are
// under <prefix>:ns:<name>: instead of <prefix>:, so none of s's operations reaches them. It
// shares no epoch or status state with s.
func (s *Store) NonceNamespace(name string) store.NonceStore {
	return New(s.client, s.prefix+"ns:"+name)
}

// key returns prefix + kind + ":{" + hex(SHA-256(id)) + "}".
func (s *Store) key(kind string, id []byte) string {
	sum := sha256.Sum256(id)
	return s.prefix + kind + ":{" + hex.EncodeToString(sum[:]) + "}"
}

// unavailable wraps a Redis or network error as store.ErrUnavailable, keeping err in the chain.
func unavailable(op string, err error) error {
	return fmt.Errorf("redisstore: %s: %w: %w", op, store.ErrUnavailable, err)
}

// PutNonce implements store.NonceStore with SET key value NX PX ttl (millisecond precision;
// go-redis sends EX for whole seconds). It returns an error wrapping store.ErrNonceExists if
// the key exists (the stored value is kept), a plain error if ttl <= 0, and an error wrapping
// store.ErrUnavailable for any Redis or network failure, including ctx being done.
func (s *Store) PutNonce(ctx context.Context, nonce, value []byte, ttl time.Duration) error {
	if ttl <= 0 {
		return fmt.Errorf("redisstore: put nonce: %w, got %v", errBadTTL, ttl)
	}
	if err := s.guard("put nonce"); err != nil {
		return err
	}
	if value == nil {
		value = []byte{}
	}
	err := s.client.SetArgs(ctx, s.key("nonce", nonce), value, redis.SetArgs{Mode: "NX", TTL: ttl}).Err()
	switch {
	case err == nil:
		return nil
	case errors.Is(err, redis.Nil): // NX found the key: go-redis v9 reports the nil reply as redis.Nil
		return fmt.Errorf("redisstore: put nonce: %w", store.ErrNonceExists)
	default:
		return unavailable("put nonce", err)
	}
}

// ConsumeNonce implements store.NonceStore with GETDEL (Redis 6.2 or later), so exactly one of
// any number of concurrent callers receives the value (non-nil, possibly empty). It returns an
// error wrapping store.ErrNonceUnknown if the key is absent (never stored, expired or already
// consumed) and an error wrapping store.ErrUnavailable for any Redis or network failure,
// including ctx being done and a key of the wrong type.
func (s *Store) ConsumeNonce(ctx context.Context, nonce []byte) ([]byte, error) {
	if err := s.guard("consume nonce"); err != nil {
		return nil, err
	}
	v, err := s.client.GetDel(ctx, s.key("nonce", nonce)).Bytes()
	switch {
	case err == nil:
		if v == nil {
			v = []byte{}
		}
		return v, nil
	case errors.Is(err, redis.Nil):
		return nil, fmt.Errorf("redisstore: consume nonce: %w", store.ErrNonceUnknown)
	default:
		return nil, unavailable("consume nonce", err)
	}
}

// advanceClockScript compares the stored (resetCount, restartCount, clockHigh, clockLow) with
// ARGV[1..4] lexicographically and, unless the new value is smaller, stores it with a TTL of
// ARGV[5] milliseconds. Each component fits in 32 bits, so Lua's float64 numbers compare them
// exactly (a 64-bit clock would not: 2^53+1 and 2^53 are the same float64). Returns 1 when
// stored, 0 on rollback (record untouched), and an error reply on a malformed record.
var advanceClockScript = redis.NewScript(`
local cur = redis.call('HMGET', KEYS[1], 'r', 's', 'h', 'l')
if cur[1] or cur[2] or cur[3] or cur[4] then
  local old = {}
  for i = 1, 4 do
    old[i] = tonumber(cur[i])
    if old[i] == nil then
      return redis.error_reply('ERR passport: malformed clock record')
    end
  end
  for i = 1, 4 do
    local new = tonumber(ARGV[i])
    if new < old[i] then return 0 end
    if new > old[i] then break end
  end
end
redis.call('HSET', KEYS[1], 'r', ARGV[1], 's', ARGV[2], 'h', ARGV[3], 'l', ARGV[4])
redis.call('PEXPIRE', KEYS[1], ARGV[5])
return 1
`)

// AdvanceClock implements store.ClockStore with one Lua script (EVALSHA, falling back to EVAL)
// on the key for SHA-256(ak): compare and set, atomically, refreshing the TTL (ttl rounded up
// to whole milliseconds) only when the value is accepted. It returns an error wrapping
// store.ErrClockRollback if c is Before the recorded value (record and TTL unchanged), a plain
// error if ttl <= 0, and an error wrapping store.ErrUnavailable for any Redis or network
// failure, including ctx being done and a malformed record.
func (s *Store) AdvanceClock(ctx context.Context, ak string, c store.ClockInfo, ttl time.Duration) error {
	if ttl <= 0 {
		return fmt.Errorf("redisstore: advance clock: %w, got %v", errBadTTL, ttl)
	}
	if err := s.guard("advance clock"); err != nil {
		return err
	}
	ms := (ttl + time.Millisecond - 1) / time.Millisecond
	res, err := advanceClockScript.Run(ctx, s.client, []string{s.key("clock", []byte(ak))},
		strconv.FormatUint(uint64(c.ResetCount), 10),
		strconv.FormatUint(uint64(c.RestartCount), 10),
		strconv.FormatUint(c.Clock>>32, 10),
		strconv.FormatUint(c.Clock&0xffffffff, 10),
		strconv.FormatInt(int64(ms), 10),
	).Int64()
	if err != nil {
		return unavailable("advance clock", err)
	}
	switch res {
	case 1:
		return nil
	case 0:
		return fmt.Errorf("redisstore: advance clock: reset %d restart %d clock %d ms is before the recorded value: %w",
			c.ResetCount, c.RestartCount, c.Clock, store.ErrClockRollback)
	default:
		return unavailable("advance clock", fmt.Errorf("unexpected script result %d", res))
	}
}

// CheckEvictionPolicy reads CONFIG GET maxmemory-policy and returns the policy. On a Cluster
// client it asks every master and returns the first policy that is not "noeviction" (or
// "noeviction" if all agree). The error is nil only when the policy is "noeviction"; it wraps
// ErrEvictingPolicy for any other policy, ErrPolicyUnknown (and the server's error) when the
// server refuses or does not know CONFIG GET, and store.ErrUnavailable for network failures.
// DESIGN.md section 5: call it at startup and warn loudly on any error.
func CheckEvictionPolicy(ctx context.Context, client redis.UniversalClient) (policy string, err error) {
	if cc, ok := client.(*redis.ClusterClient); ok {
		var (
			mu     sync.Mutex
			worst  string
			result error
		)
		err := cc.ForEachMaster(ctx, func(ctx context.Context, c *redis.Client) error {
			p, err := readPolicy(ctx, c)
			mu.Lock()
			defer mu.Unlock()
			if err != nil {
				if result == nil {
					result = fmt.Errorf("redisstore: master %s: %w", c.Options().Addr, err)
				}
				return nil
			}
			if worst == "" || (worst == "noeviction" && p != worst) {
				worst = p
			}
			return nil
		})
		if err != nil {
			return "", unavailable("check eviction policy", err)
		}
		if result != nil {
			return worst, result
		}
		return worst, policyError(worst)
	}
	p, err := readPolicy(ctx, client)
	if err != nil {
		return "", err
	}
	return p, policyError(p)
}

// readPolicy sends CONFIG GET maxmemory-policy to c.
func readPolicy(ctx context.Context, c redis.Cmdable) (string, error) {
	m, err := c.ConfigGet(ctx, "maxmemory-policy").Result()
	if err != nil {
		var rerr redis.Error
		if errors.As(err, &rerr) {
			return "", fmt.Errorf("redisstore: CONFIG GET maxmemory-policy refused (CONFIG not permitted or renamed?): %w: %w",
				ErrPolicyUnknown, err)
		}
		return "", unavailable("CONFIG GET maxmemory-policy", err)
	}
	p, ok := m["maxmemory-policy"]
	if !ok || p == "" {
		return "", fmt.Errorf("redisstore: CONFIG GET maxmemory-policy returned no value: %w", ErrPolicyUnknown)
	}
	return p, nil
}

// policyError returns nil for "noeviction" and an error wrapping ErrEvictingPolicy otherwise.
func policyError(p string) error {
	if p == "noeviction" {
		return nil
	}
	return fmt.Errorf("redisstore: maxmemory-policy is %q, want \"noeviction\": %w", p, ErrEvictingPolicy)
}
