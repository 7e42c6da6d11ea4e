package redisstore

import (
	"context"
	"crypto/sha256"
	"encoding/binary"
	"encoding/hex"
	"errors"
	"fmt"
	"net"
	"strconv"
	"strings"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/passport-attest/passport/store"
)

// Option configures a Store built by New.
type Option func(*Store)

// WithStatusListSize sets the number of entries per status list (default
// store.DefaultStatusListSize), rounded up to a multiple of 8; n <= 0 keeps the default. Every
// replica sharing a prefix must use the same size.
func WithStatusListSize(n int) Option {
	return func(s *Store) {
		if n > 0 {
			s.status.size = (n + 7) &^ 7
		}
	}
}

// WithStatusShards spreads status lists over n independent shards (default 1), each in its
// own Cluster hash slot: a subject's entries always go to the shard chosen by the SHA-256 of
// the subject, so that on a Redis Cluster allocation load spreads over the masters while every
// key one allocation touches stays in one slot. Each shard fills its own lists; list ids
// interleave (list id = n*shards + shard). Every replica sharing a prefix must use the same
// count, and it must not change while tokens are live or any label is revoked (revoked
// labels are recorded per shard: a new shard would not know them). n <= 0 keeps the default.
func WithStatusShards(n int) Option {
	return func(s *Store) {
		if n > 0 {
			s.status.shards = uint64(n)
		}
	}
}

// WithClock sets the time source used to turn StatusEntry.Expires into Redis TTLs (default
// time.Now). Redis itself expires keys on its own clock.
func WithClock(now func() time.Time) Option {
	return func(s *Store) {
		if now != nil {
			s.status.now = now
		}
	}
}

type statusConfig struct {
	size   int
	shards uint64
	now    func() time.Time
}

func defaultStatusConfig() statusConfig {
	return statusConfig{size: store.DefaultStatusListSize, shards: 1, now: time.Now}
}

var (
	_ store.StatusStore    = (*Store)(nil)
	_ store.RevocationFeed = (*Store)(nil)
)

// StatusListSize implements store.StatusStore.
func (s *Store) StatusListSize() int { return s.status.size }

// shardOf returns the shard that holds subject's entries.
func (s *Store) shardOf(subject string) uint64 {
	sum := sha256.Sum256([]byte(subject))
	return uint64(binary.BigEndian.Uint32(sum[:4])) % s.status.shards
}

// shardBase returns the key prefix of one shard: <prefix>status:{<prefix>/<shard>}: where the
// braces hold the Cluster hash tag shared by all of the shard's keys.
func (s *Store) shardBase(shard uint64) string {
	return s.prefix + "status:{" + strings.TrimSuffix(s.prefix, ":") + "/" + strconv.FormatUint(shard, 10) + "}:"
}

// channel is the pub/sub channel revocations are published on.
func (s *Store) channel() string { return s.prefix + "status:revocations" }

// digestKey returns base + kind + ":" + hex(SHA-256(v)).
func digestKey(base, kind, v string) string {
	return base + kind + ":" + labelField(v)
}

// labelField is the hex SHA-256 of v: the last segment of v's digestKey, and v's field in a
// shard's revoked-labels hash (the scripts take it from the label set's key, after its last
// ':').
func labelField(v string) string {
	sum := sha256.Sum256([]byte(v))
	return hex.EncodeToString(sum[:])
}

// allocateScript reserves the next index of a shard and records it, atomically; it also runs
// the clock check of advanceClockScript first when ARGV[5] is "1". All keys share the shard's
// hash tag. The list bitmap name depends on the index INCR returns, so the script builds it
// from ARGV[1] (the shard base): it is in the same slot as every declared key. When ARGV[11]
// is not empty it is the shard's epoch id (epoch.go), and a marker (KEYS[6]) that is missing
// or different stops the script before it writes anything.
//
// KEYS: next, lexp, id record, subject set, clock record, epoch marker, revoked-labels hash
// (revokeScript sets a field per revoked label: labelField, the segment of its label set's
// key after the last ':'), label sets...
// ARGV: base, list size, now ms, expires ms, clock flag, reset, restart, clock high, clock
// low, clock ttl ms, epoch id.
// Returns {n, index} (n is the shard-local list number), {-1} when the id is live, {-2} on a
// clock rollback, {-3} when the epoch marker shows a data loss, {-4} when a label is revoked.
var allocateScript = redis.NewScript(`
if ARGV[11] ~= '' and redis.call('GET', KEYS[6]) ~= ARGV[11] then return {-3} end
local base, size = ARGV[1], tonumber(ARGV[2])
local now, exp = tonumber(ARGV[3]), tonumber(ARGV[4])
local ttl = exp - now
if redis.call('EXISTS', KEYS[3]) == 1 then return {-1} end
if #KEYS > 7 then
  local fields = {}
  for i = 8, #KEYS do fields[#fields + 1] = string.match(KEYS[i], '[^:]+$') end
  for _, v in ipairs(redis.call('HMGET', KEYS[7], unpack(fields))) do
    if v then return {-4} end
  end
end
if ARGV[5] == '1' then
  local cur = redis.call('HMGET', KEYS[5], 'r', 's', 'h', 'l')
  if cur[1] or cur[2] or cur[3] or cur[4] then
    for i = 1, 4 do
      local old, new = tonumber(cur[i]), tonumber(ARGV[5 + i])
      if old == nil then return redis.error_reply('ERR passport: malformed clock record') end
      if new < old then return {-2} end
      if new > old then break end
    end
  end
end
local c = redis.call('INCR', KEYS[1]) - 1
local n = math.floor(c / size)
local idx = c - n * size
local nf = string.format('%d', n)
local member = nf .. ':' .. string.format('%d', idx)
local old = tonumber(redis.call('HGET', KEYS[2], nf) or '0')
if exp > old then redis.call('HSET', KEYS[2], nf, string.format('%d', exp)) end
if idx == 0 then
  local all = redis.call('HGETALL', KEYS[2])
  for i = 1, #all, 2 do
    if tonumber(all[i + 1]) <= now then redis.call('HDEL', KEYS[2], all[i]) end
  end
end
local bk = base .. 'list:' .. nf
local pt = redis.call('PTTL', bk)
if pt ~= -2 and pt < ttl then redis.call('PEXPIRE', bk, ttl) end
redis.call('SET', KEYS[3], member, 'PX', ttl)
local function track(k)
  redis.call('ZREMRANGEBYSCORE', k, '-inf', now)
  redis.call('ZADD', k, exp, member)
  if redis.call('PTTL', k) < ttl then redis.call('PEXPIRE', k, ttl) end
end
track(KEYS[4])
for i = 8, #KEYS do track(KEYS[i]) end
if ARGV[5] == '1' then
  redis.call('HSET', KEYS[5], 'r', ARGV[6], 's', ARGV[7], 'h', ARGV[8], 'l', ARGV[9])
  redis.call('PEXPIRE', KEYS[5], ARGV[10])
end
return {n, idx}
`)

// AllocateStatus implements store.StatusStore with one Lua script (EVALSHA, falling back to
// EVAL) in the shard of e.Subject: one round trip, the clock check of e.Clock included. Keys
// expire with the entry (TTL = e.Expires - now, by WithClock), subject and label sets hold
// each entry until its own expiry and live as long as their longest entry. With ArmEpoch the
// script compares the shard's epoch marker, and the index it returns must be above every one
// this store saw before (else Redis went back in time): either failing latches ErrDataLoss.
func (s *Store) AllocateStatus(ctx context.Context, e store.StatusEntry) (store.StatusRef, error) {
	now := s.status.now()
	if err := e.Check(now); err != nil {
		return store.StatusRef{}, fmt.Errorf("redisstore: allocate status: %w", err)
	}
	if err := s.guard("allocate status"); err != nil {
		return store.StatusRef{}, err
	}
	shard := s.shardOf(e.Subject)
	base := s.shardBase(shard)
	keys := make([]string, 7, 7+len(e.Labels))
	keys[0], keys[1] = s.counterKey(shard), base+"lexp"
	keys[2] = digestKey(base, "id", e.ID)
	keys[3] = digestKey(base, "sub", e.Subject)
	keys[5] = s.epochKey(shard)
	keys[6] = base + "rlbls"
	args := []any{base, s.status.size, now.UnixMilli(), e.Expires.UnixMilli(), "0", 0, 0, 0, 0, 0, s.expected(keys[5])}
	if e.Clock != nil {
		keys[4] = digestKey(base, "clock", e.Clock.AK)
		c := e.Clock.Info
		args[4] = "1"
		args[5], args[6] = strconv.FormatUint(uint64(c.ResetCount), 10), strconv.FormatUint(uint64(c.RestartCount), 10)
		args[7], args[8] = strconv.FormatUint(c.Clock>>32, 10), strconv.FormatUint(c.Clock&0xffffffff, 10)
		args[9] = int64((e.Clock.TTL + time.Millisecond - 1) / time.Millisecond)
	} else {
		keys[4] = base + "noclock"
	}
	for _, l := range e.Labels {
		keys = append(keys, digestKey(base, "lbl", l))
	}
	before := s.mark(shard)
	res, err := allocateScript.Run(ctx, s.client, keys, args...).Int64Slice()
	if err != nil {
		return store.StatusRef{}, unavailable("allocate status", err)
	}
	switch {
	case len(res) == 1 && res[0] == -3:
		return store.StatusRef{}, s.markerLost("allocate status", keys[5])
	case len(res) == 1 && res[0] == -1:
		return store.StatusRef{}, fmt.Errorf("redisstore: allocate status: %w", store.ErrEntryExists)
	case len(res) == 1 && res[0] == -4:
		return store.StatusRef{}, fmt.Errorf("redisstore: allocate status: %w", store.ErrLabelRevoked)
	case len(res) == 1 && res[0] == -2:
		c := e.Clock.Info
		return store.StatusRef{}, fmt.Errorf("redisstore: allocate status: reset %d restart %d clock %d ms is before the recorded value: %w",
			c.ResetCount, c.RestartCount, c.Clock, store.ErrClockRollback)
	case len(res) != 2 || res[0] < 0 || res[1] < 0:
		return store.StatusRef{}, unavailable("allocate status", fmt.Errorf("unexpected script result %v", res))
	}
	// The counter's value INCR returned: the entry's shard-local position plus one. Not above
	// what this store had seen before sending means Redis went back in time: the index may
	// already be in a live token, so no token gets it.
	if err := s.counterSeen("allocate status", shard, before, res[0]*int64(s.status.size)+res[1]+1, true); err != nil {
		return store.StatusRef{}, err
	}
	return store.StatusRef{List: uint64(res[0])*s.status.shards + shard, Index: uint64(res[1])}, nil
}

// revokeScript sets the bits of the live entries recorded under KEYS[1] (an id record when
// ARGV[2] is "id", else a subject or label set), keeps each touched bitmap until the last
// entry of its list expires (KEYS[2], the lexp hash), and publishes one message per list on
// ARGV[4]: "<list id> <index> <index>...". Bit i of the status list (least significant bit
// first) is Redis bit offset i - i%8 + 7 - i%8 (Redis counts from the most significant bit),
// so that GET returns the status list's bytes as they are.
//
// When ARGV[7] is not empty it is the shard's epoch id and a missing or different marker
// (KEYS[3]) stops the script before it writes anything. When ARGV[8] is "1" (a label) it
// first records the label as revoked in the shard's revoked-labels hash KEYS[4] (field:
// labelField, the segment of KEYS[1] after its last ':'), which allocateScript checks: an entry is either allocated before this
// script, and found by it, or refused.
//
// ARGV: base, kind, now ms, channel, shard, shards, epoch id, label flag. Returns {n, index,
// n, index, ...}, or {-3} when the epoch marker shows a data loss.
var revokeScript = redis.NewScript(`
if ARGV[7] ~= '' and redis.call('GET', KEYS[3]) ~= ARGV[7] then return {-3} end
if ARGV[8] == '1' then redis.call('HSET', KEYS[4], string.match(KEYS[1], '[^:]+$'), '1') end
local base, now = ARGV[1], tonumber(ARGV[3])
local shard, shards = tonumber(ARGV[5]), tonumber(ARGV[6])
local members
if ARGV[2] == 'id' then
  local v = redis.call('GET', KEYS[1])
  if not v then return {} end
  members = {v}
else
  members = redis.call('ZRANGEBYSCORE', KEYS[1], '(' .. ARGV[3], '+inf')
end
local out, msgs, order = {}, {}, {}
for _, m in ipairs(members) do
  local sep = string.find(m, ':', 1, true)
  local nf, idx = string.sub(m, 1, sep - 1), tonumber(string.sub(m, sep + 1))
  local bk = base .. 'list:' .. nf
  redis.call('SETBIT', bk, idx - idx % 8 + 7 - idx % 8, 1)
  local ttl = tonumber(redis.call('HGET', KEYS[2], nf) or '0') - now
  if ttl < 1000 then ttl = 1000 end
  if redis.call('PTTL', bk) < ttl then redis.call('PEXPIRE', bk, ttl) end
  table.insert(out, tonumber(nf))
  table.insert(out, idx)
  if not msgs[nf] then
    msgs[nf] = string.format('%d', tonumber(nf) * shards + shard)
    table.insert(order, nf)
  end
  msgs[nf] = msgs[nf] .. ' ' .. string.format('%d', idx)
end
for _, nf in ipairs(order) do redis.call('PUBLISH', ARGV[4], msgs[nf]) end
return out
`)

// RevokeStatus implements store.StatusStore. A subject lives in one shard (one script); an ID
// or a label may be in any shard, so it runs one script per shard. Each script sets its bits
// and publishes them atomically, and revokes a label in its shard. The scripts run to the end
// even if ctx is canceled; a Redis error midway leaves the revocation partial, and retrying
// it is harmless.
func (s *Store) RevokeStatus(ctx context.Context, sel store.Selector) ([]store.Revocation, error) {
	if err := sel.Check(); err != nil {
		return nil, fmt.Errorf("redisstore: revoke status: %w", err)
	}
	if err := s.guard("revoke status"); err != nil {
		return nil, err
	}
	// Once begun, a revocation runs through every shard even if the caller goes away: a label
	// revoked in some shards only would let entries of the others through.
	if err := ctx.Err(); err != nil {
		return nil, unavailable("revoke status", err)
	}
	ctx = context.WithoutCancel(ctx)
	shards := make([]uint64, 0, s.status.shards)
	if sel.Subject != "" {
		shards = append(shards, s.shardOf(sel.Subject))
	} else {
		for i := uint64(0); i < s.status.shards; i++ {
			shards = append(shards, i)
		}
	}
	now := s.status.now().UnixMilli()
	var out []store.Revocation
	for _, shard := range shards {
		base := s.shardBase(shard)
		kind, key, isLabel := "set", "", "0"
		switch {
		case sel.ID != "":
			kind, key = "id", digestKey(base, "id", sel.ID)
		case sel.Subject != "":
			key = digestKey(base, "sub", sel.Subject)
		default:
			key, isLabel = digestKey(base, "lbl", sel.Label), "1"
		}
		ek := s.epochKey(shard)
		res, err := revokeScript.Run(ctx, s.client, []string{key, base + "lexp", ek, base + "rlbls"},
			base, kind, now, s.channel(), shard, s.status.shards, s.expected(ek), isLabel).Int64Slice()
		if err != nil {
			return out, unavailable("revoke status", err)
		}
		if len(res) == 1 && res[0] == -3 {
			return out, s.markerLost("revoke status", ek)
		}
		byList := map[uint64]int{}
		for i := 0; i+1 < len(res); i += 2 {
			list := uint64(res[i])*s.status.shards + shard
			j, ok := byList[list]
			if !ok {
				j = len(out)
				byList[list] = j
				out = append(out, store.Revocation{List: list})
			}
			out[j].Indexes = append(out[j].Indexes, uint64(res[i+1]))
		}
	}
	return out, nil
}

// ReinstateLabel implements store.StatusStore: it deletes the label's field from every
// shard's revoked-labels hash. It runs to the end even if ctx is canceled midway (a partly
// lifted label would be refused in some shards only); an error may leave some shards lifted,
// and retrying is harmless.
func (s *Store) ReinstateLabel(ctx context.Context, label string) error {
	if err := s.guard("reinstate label"); err != nil {
		return err
	}
	if err := ctx.Err(); err != nil {
		return unavailable("reinstate label", err)
	}
	ctx = context.WithoutCancel(ctx)
	for shard := uint64(0); shard < s.status.shards; shard++ {
		base := s.shardBase(shard)
		if err := s.client.HDel(ctx, base+"rlbls", labelField(label)).Err(); err != nil {
			return unavailable("reinstate label", err)
		}
	}
	return nil
}

// ReadStatusList implements store.StatusStore with one pipelined round trip (GET of the
// shard's counter, of the list's bitmap and of its epoch marker, one slot); with ArmEpoch the
// marker and the counter are checked for a data loss (ErrDataLoss). The bitmap is stored in the status
// list's own bit order (see revokeScript) and padded with zero bytes to the list size.
func (s *Store) ReadStatusList(ctx context.Context, list uint64) ([]byte, error) {
	if err := s.guard("read status list"); err != nil {
		return nil, err
	}
	shard, n := list%s.status.shards, list/s.status.shards
	base := s.shardBase(shard)
	before := s.mark(shard)
	pipe := s.client.Pipeline()
	next := pipe.Get(ctx, s.counterKey(shard))
	bits := pipe.Get(ctx, base+"list:"+strconv.FormatUint(n, 10))
	ek := s.epochKey(shard)
	epoch := pipe.Get(ctx, ek)
	if _, err := pipe.Exec(ctx); err != nil && !errors.Is(err, redis.Nil) {
		return nil, unavailable("read status list", err)
	}
	if want := s.expected(ek); want != "" && epoch.Val() != want {
		return nil, s.markerLost("read status list", ek)
	}
	c, err := next.Uint64()
	if err != nil && !errors.Is(err, redis.Nil) {
		return nil, unavailable("read status list", err)
	}
	if err := s.counterSeen("read status list", shard, before, int64(c), false); err != nil {
		return nil, err
	}
	size := uint64(s.status.size)
	if n >= (c+size-1)/size {
		return nil, fmt.Errorf("redisstore: read status list %d: %w", list, store.ErrStatusListUnknown)
	}
	b, err := bits.Bytes()
	if err != nil && !errors.Is(err, redis.Nil) {
		return nil, unavailable("read status list", err)
	}
	if len(b) > s.status.size/8 {
		return nil, unavailable("read status list", fmt.Errorf("bitmap of %d bytes exceeds the list size", len(b)))
	}
	out := make([]byte, s.status.size/8)
	copy(out, b)
	return out, nil
}

// watchTimeout is how long WatchRevocations waits for a message before it pings the server
// to find out whether the connection is still alive.
const watchTimeout = 30 * time.Second

// WatchRevocations implements store.RevocationFeed with Redis pub/sub (SUBSCRIBE on
// <prefix>status:revocations): every replica's revocations reach every watcher. After each
// (re)subscription, the first one included, fn receives a Resync event: messages published
// while the connection was down are lost, so consumers re-read their lists. Connection errors
// are retried with a backoff of up to 5 s; the call returns only when ctx is done.
func (s *Store) WatchRevocations(ctx context.Context, fn func(store.RevocationEvent)) error {
	ps := s.client.Subscribe(ctx, s.channel())
	stop := context.AfterFunc(ctx, func() { _ = ps.Close() })
	defer stop()
	defer ps.Close()
	backoff := 100 * time.Millisecond
	for {
		msg, err := ps.ReceiveTimeout(ctx, watchTimeout)
		if ctx.Err() != nil {
			return ctx.Err()
		}
		if err != nil {
			var ne net.Error
			if errors.As(err, &ne) && ne.Timeout() {
				_ = ps.Ping(ctx) // a dead connection fails here and is replaced on the next Receive
				continue
			}
			select {
			case <-ctx.Done():
				return ctx.Err()
			case <-time.After(backoff):
			}
			backoff = min(2*backoff, 5*time.Second)
			continue
		}
		backoff = 100 * time.Millisecond
		switch m := msg.(type) {
		case *redis.Subscription:
			if m.Kind == "subscribe" {
				fn(store.RevocationEvent{Resync: true})
			}
		case *redis.Message:
			rev, err := parseRevocation(m.Payload)
			if err != nil {
				fn(store.RevocationEvent{Resync: true})
				continue
			}
			fn(store.RevocationEvent{Revocation: rev})
		}
	}
}

// parseRevocation reads "<list id> <index> <index>...".
func parseRevocation(p string) (store.Revocation, error) {
	f := strings.Fields(p)
	if len(f) < 2 {
		return store.Revocation{}, fmt.Errorf("redisstore: malformed revocation message %q", p)
	}
	list, err := strconv.ParseUint(f[0], 10, 64)
	if err != nil {
		return store.Revocation{}, fmt.Errorf("redisstore: malformed revocation message: %w", err)
	}
	rev := store.Revocation{List: list, Indexes: make([]uint64, 0, len(f)-1)}
	for _, x := range f[1:] {
		i, err := strconv.ParseUint(x, 10, 64)
		if err != nil {
			return store.Revocation{}, fmt.Errorf("redisstore: malformed revocation message: %w", err)
		}
		rev.Indexes = append(rev.Indexes, i)
	}
	return rev, nil
}
