package config

import (
	"time"

	"github.com/spf13/pflag"
)

// Defaults of Limits.
const (
	// DefaultChallengeRate and DefaultChallengeBurst are each client's token bucket on the
	// routes that store state (challenge, enroll, enroll/activate): one client holds at most
	// burst + rate x TTL entries, 40 + 20 x 60 = 1,240 at the default nonce-ttl.
	DefaultChallengeRate  = 20.0
	DefaultChallengeBurst = 40
	// DefaultRateClients is how many clients' buckets are remembered (LRU).
	DefaultRateClients = 100_000
	// DefaultGlobalRate and DefaultGlobalBurst are the ceiling shared by every client on the
	// same routes: 20,000 requests/s with a burst of one second's worth, four times the
	// throughput goal of 5,000 attestations/s (each one challenge), so it does not cap
	// legitimate load, while bounding what a client with many addresses can park (an IPv6 /48
	// holds 65,536 /64 clients, each with a full bucket): at most burst + rate x TTL entries,
	// 20,000 + 20,000 x 60 = 1.22 million at the default nonce-ttl (docs/DEPLOY.md).
	DefaultGlobalRate  = 20_000.0
	DefaultGlobalBurst = 20_000
	// DefaultRevocationStreams and DefaultRevocationStreamsPerClient cap concurrent GET
	// /v1/revocations event streams in all and per client. A relying party holds one stream;
	// 32 per client leaves room for many behind one address (containers behind a host's NAT).
	// A stream costs the issuer about 35 KB (measured: 4,000 streams, +140 MB RSS), so 2,048
	// cost about 70 MB, within the shipped Kubernetes memory limit (docs/DEPLOY.md).
	DefaultRevocationStreams          = 2048
	DefaultRevocationStreamsPerClient = 32
	// DefaultRevocationStreamLifetime: the issuer ends each stream after this (less up to
	// 10% jitter); the relying party reconnects and resynchronises.
	DefaultRevocationStreamLifetime = 5 * time.Minute
)

// Limits bounds what one client, and all clients together, may ask of the issuer.
//
// The challenge-* limits cover every public route that stores something for a TTL: POST
// /v1/challenge (a nonce), POST /v1/enroll (an enrollment session) and POST
// /v1/enroll/activate (a store round trip, and an AK record when it succeeds), with one
// bucket per client for the three, so a client's own limit bounds all it can park at once;
// the global bucket is shared by every client on the same routes. The revocation-* limits
// cap the long-lived GET /v1/revocations event streams instead.
type Limits struct {
	ChallengeRate              float64       // challenge-rate: requests per second per client (IPv4 address or IPv6 /64; 0: no limit)
	ChallengeBurst             int           // challenge-burst: bucket size per client
	ChallengeClients           int           // challenge-clients: clients remembered (LRU); more are evicted
	GlobalRate                 float64       // challenge-global-rate: requests per second from all clients together (0: no ceiling)
	GlobalBurst                int           // challenge-global-burst: size of the shared bucket
	RevocationStreams          int           // revocation-streams: concurrent GET /v1/revocations streams in all
	RevocationStreamsPerClient int           // revocation-streams-per-client: concurrent streams per client
	RevocationStreamLifetime   time.Duration // revocation-stream-lifetime: the longest one stream lasts
}

// DefaultLimits returns the defaults of Limits.
func DefaultLimits() Limits {
	return Limits{
		ChallengeRate: DefaultChallengeRate, ChallengeBurst: DefaultChallengeBurst, ChallengeClients: DefaultRateClients,
		GlobalRate: DefaultGlobalRate, GlobalBurst: DefaultGlobalBurst,
		RevocationStreams: DefaultRevocationStreams, RevocationStreamsPerClient: DefaultRevocationStreamsPerClient,
		RevocationStreamLifetime: DefaultRevocationStreamLifetime,
	}
}

func (l *Limits) register(fs *pflag.FlagSet) {
	fs.Float64Var(&l.ChallengeRate, "challenge-rate", l.ChallengeRate, "requests per second per client (IPv4 address or IPv6 /64) to the routes that store state: POST /v1/challenge, /v1/enroll, /v1/enroll/activate, one token bucket for the three (0 disables)")
	fs.IntVar(&l.ChallengeBurst, "challenge-burst", l.ChallengeBurst, "bucket size per client of --challenge-rate")
	fs.IntVar(&l.ChallengeClients, "challenge-clients", l.ChallengeClients, "clients whose buckets are remembered (least recently seen evicted)")
	fs.Float64Var(&l.GlobalRate, "challenge-global-rate", l.GlobalRate, "requests per second to the same routes from all clients together: a ceiling over the per-client buckets, answered 429 like them (0 disables)")
	fs.IntVar(&l.GlobalBurst, "challenge-global-burst", l.GlobalBurst, "size of the shared bucket of --challenge-global-rate")
	fs.IntVar(&l.RevocationStreams, "revocation-streams", l.RevocationStreams, "concurrent GET /v1/revocations event streams in all; more get 503 with Retry-After")
	fs.IntVar(&l.RevocationStreamsPerClient, "revocation-streams-per-client", l.RevocationStreamsPerClient, "concurrent revocation event streams per client (IPv4 address or IPv6 /64); a relying party holds one")
	fs.DurationVar(&l.RevocationStreamLifetime, "revocation-stream-lifetime", l.RevocationStreamLifetime, "the issuer ends each revocation event stream after this (less up to 10% jitter); relying parties reconnect and resynchronise")
}

func (l Limits) validate(e *errs) {
	if l.ChallengeRate < 0 {
		e.add("challenge-rate", "must not be negative")
	}
	if l.ChallengeRate > 0 && l.ChallengeBurst < 1 {
		e.add("challenge-burst", "must be at least 1 when challenge-rate is set")
	}
	if l.ChallengeClients < 1 {
		e.add("challenge-clients", "must be at least 1")
	}
	if l.GlobalRate < 0 {
		e.add("challenge-global-rate", "must not be negative")
	}
	if l.GlobalRate > 0 && l.GlobalBurst < 1 {
		e.add("challenge-global-burst", "must be at least 1 when challenge-global-rate is set")
	}
	if l.RevocationStreams < 1 {
		e.add("revocation-streams", "must be at least 1")
	}
	if l.RevocationStreamsPerClient < 1 {
		e.add("revocation-streams-per-client", "must be at least 1")
	}
	e.positive("revocation-stream-lifetime", l.RevocationStreamLifetime)
}
