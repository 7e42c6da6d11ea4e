package loadtest

import (
	"bytes"
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"runtime"
	"slices"
	"sort"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"github.com/go-jose/go-jose/v4"

	"github.com/passport-attest/passport/api"
	"github.com/passport-attest/passport/relyingparty"
)

func runtimeCPUs() int { return runtime.NumCPU() }

// Config bounds a run.
type Config struct {
	Binary    string        // passport binary that runs the issuers
	Attesters int           // simulated attesters (one software TPM and one goroutine each)
	Issuers   int           // issuer replicas (1 or 2)
	Events    int           // events in each attester's event log
	Count     int           // attestations of the steady scenario
	Duration  time.Duration // length of each fault scenario
	Verifiers int           // relying-party goroutines validating tokens
	// ProfileDir, when set, receives CPU profiles of the steady scenario's measured phase:
	// each issuer's (its first ProfileDuration) and the harness's own (profile.go).
	ProfileDir      string
	ProfileDuration time.Duration
	// CompareBinary and CompareArgs, when either is set (and Issuers is 2), run the second
	// issuer from CompareBinary (default Binary) with CompareArgs added to its serve flags:
	// an A/B comparison under one load, read from the per-replica CPU line of the steady
	// scenario (each replica serves half of the attesters).
	CompareBinary string
	CompareArgs   []string
	// RedisSocket makes every issuer reach Redis through its Unix socket (unix://) instead of
	// TCP loopback. CompareRedisSocket does so for the second issuer only: an A/B comparison
	// of the two transports (with Issuers 2), read like CompareArgs'.
	RedisSocket, CompareRedisSocket bool
}

// comparing reports whether the second issuer is run differently from the first.
func (c Config) comparing() bool {
	return c.CompareBinary != "" || len(c.CompareArgs) > 0 || c.CompareRedisSocket
}

// outcome of one HTTP exchange.
type outcome struct {
	status int    // 0 when no answer
	code   string // api.Error code
	token  string
}

// post sends a JSON body and decodes the answer.
func post(ctx context.Context, c *http.Client, url string, body []byte, out any) outcome {
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, url, bytes.NewReader(body))
	if err != nil {
		return outcome{code: "client_error"}
	}
	req.Header.Set("Content-Type", "application/json")
	resp, err := c.Do(req)
	if err != nil {
		return outcome{code: "connection_error"}
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(io.LimitReader(resp.Body, 1<<20))
	if resp.StatusCode != http.StatusOK {
		var e api.Error
		_ = json.Unmarshal(b, &e)
		if e.Code == "" {
			e.Code = "http_" + strconv.Itoa(resp.StatusCode)
		}
		return outcome{status: resp.StatusCode, code: e.Code}
	}
	if out != nil {
		if err := json.Unmarshal(b, out); err != nil {
			return outcome{status: resp.StatusCode, code: "bad_response"}
		}
	}
	return outcome{status: resp.StatusCode}
}

// attester is one simulated machine: its TPM index, cnf key and client.
type attester struct {
	idx int
	cnf *jose.JSONWebKey
	hc  *http.Client
}

func newAttester(idx int, hc *http.Client) *attester {
	k, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	return &attester{idx: idx, cnf: &jose.JSONWebKey{Key: &k.PublicKey}, hc: hc}
}

// prepared is evidence made for one challenge, ready to submit.
type prepared struct {
	nonce []byte
	body  []byte
}

// challenge asks issuer for a nonce and makes evidence for it with the attester's TPM.
func (e *env) prepare(ctx context.Context, a *attester, issuer string) (*prepared, outcome) {
	var ch api.ChallengeResponse
	o := post(ctx, a.hc, issuer+api.PathChallenge, []byte("{}"), &ch)
	if o.status != http.StatusOK {
		return nil, o
	}
	req, err := e.tpms[a.idx].Evidence(ch.Nonce, a.cnf)
	if err != nil {
		return nil, outcome{code: "evidence_error"}
	}
	req.Audience = Audience
	body, _ := json.Marshal(req)
	return &prepared{nonce: ch.Nonce, body: body}, o
}

// submit posts prepared evidence.
func submit(ctx context.Context, a *attester, issuer string, p *prepared) outcome {
	var res api.AttestResponse
	o := post(ctx, a.hc, issuer+api.PathAttest, p.body, &res)
	o.token = res.Token
	return o
}

// stats collects latencies and outcomes from many goroutines.
type stats struct {
	mu    sync.Mutex
	lat   []time.Duration
	codes map[string]int
	ok    int
}

func newStats() *stats { return &stats{codes: map[string]int{}} }

func (s *stats) add(d time.Duration, o outcome) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if o.status == http.StatusOK {
		s.ok++
		s.lat = append(s.lat, d)
		return
	}
	s.codes[o.code]++
}

// pct returns the p-th percentile (0-100) of the successful requests' latencies.
func (s *stats) pct(p float64) time.Duration {
	if len(s.lat) == 0 {
		return 0
	}
	if !sort.SliceIsSorted(s.lat, func(i, j int) bool { return s.lat[i] < s.lat[j] }) {
		slices.Sort(s.lat)
	}
	i := int(float64(len(s.lat)-1) * p / 100)
	return s.lat[i]
}

func (s *stats) codeList() string {
	if len(s.codes) == 0 {
		return "none"
	}
	keys := make([]string, 0, len(s.codes))
	for k := range s.codes {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	out := ""
	for i, k := range keys {
		if i > 0 {
			out += ", "
		}
		out += fmt.Sprintf("%s %d", k, s.codes[k])
	}
	return out
}

// relyingParties validates tokens received on a channel: each token is presented `repeat`
// times (first a full verification, then cache hits), as relying parties see one attester's
// token on many requests.
type relyingParties struct {
	tokens    chan string
	verified  atomic.Int64
	refused   atomic.Int64
	hits      atomic.Int64
	wg        sync.WaitGroup
	firstSeen *stats
	cached    *stats
}

func (e *env) startRelyingParties(n, repeat int) (*relyingParties, error) {
	rp := &relyingParties{tokens: make(chan string, 4096), firstSeen: newStats(), cached: newStats()}
	v, err := relyingparty.NewVerifier(relyingparty.Config{
		Issuer: IssuerURL, Audience: Audience, KeySet: relyingparty.NewStaticKeySet(e.keyring.PublicSet()),
		CacheObserver: func(hit bool) {
			if hit {
				rp.hits.Add(1)
			}
		},
	})
	if err != nil {
		return nil, err
	}
	for i := 0; i < n; i++ {
		rp.wg.Add(1)
		go func() {
			defer rp.wg.Done()
			ctx := context.Background()
			for tok := range rp.tokens {
				for r := 0; r < repeat; r++ {
					start := time.Now()
					_, err := v.Verify(ctx, tok)
					d := time.Since(start)
					o := outcome{status: http.StatusOK}
					if err != nil {
						rp.refused.Add(1)
						o = outcome{code: errors.Unwrap(err).Error()}
					} else {
						rp.verified.Add(1)
					}
					if r == 0 {
						rp.firstSeen.add(d, o)
					} else {
						rp.cached.add(d, o)
					}
				}
			}
		}()
	}
	return rp, nil
}

// offer hands a token to the relying parties without ever blocking the attesters.
func (rp *relyingParties) offer(tok string) {
	select {
	case rp.tokens <- tok:
	default:
	}
}

func (rp *relyingParties) stop() {
	close(rp.tokens)
	rp.wg.Wait()
}
