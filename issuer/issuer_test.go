package issuer_test

import (
	"bytes"
	"context"
	"crypto"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/rsa"
	"encoding/hex"
	"encoding/json"
	"errors"
	"net/http"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/go-jose/go-jose/v4"
	pb "github.com/google/go-tpm-tools/proto/attest"
	tpmpb "github.com/google/go-tpm-tools/proto/tpm"
	"google.golang.org/protobuf/proto"

	"github.com/passport-attest/passport/api"
	"github.com/passport-attest/passport/attester"
	"github.com/passport-attest/passport/internal/testenv"
	"github.com/passport-attest/passport/issuer"
	"github.com/passport-attest/passport/store"
	"github.com/passport-attest/passport/store/memory"
	redisstore "github.com/passport-attest/passport/store/redis"
	"github.com/passport-attest/passport/store/storetest"
)

// fresh returns evidence for a new challenge from srv.
func fresh(t *testing.T, c *attester.Client, a *attester.Attester) *api.AttestRequest {
	t.Helper()
	ch, err := c.Challenge(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	req, err := a.Evidence(ch.Nonce)
	if err != nil {
		t.Fatal(err)
	}
	req.Audience = "test"
	return req
}

// code returns the api.Error code of an attester client error, failing when err is nil.
func code(t *testing.T, err error) (int, string) {
	t.Helper()
	if err == nil {
		t.Fatal("attestation accepted, want a refusal")
	}
	var he *attester.HTTPError
	if !errors.As(err, &he) {
		t.Fatalf("error %v is not an HTTP refusal", err)
	}
	return he.Status, he.Err.Code
}

// separatorDigest is SHA-256 of the four zero bytes that EV_SEPARATOR events measure (TCG PC
// Client PFP section 10.4.1): every crypto-agile log with a SHA-256 bank carries it.
var separatorDigest, _ = hex.DecodeString("df3f619804a92fdb4057192dc43dd748ea778adc52bc498ce80524c014b81119")

// tamper flips one bit of the first EV_SEPARATOR's SHA-256 digest in a copy of log: a change to
// a measurement that the replay must catch.
func tamper(t *testing.T, log []byte) []byte {
	t.Helper()
	i := bytes.Index(log, separatorDigest)
	if i < 0 {
		t.Fatal("log has no SHA-256 EV_SEPARATOR digest")
	}
	l := append([]byte(nil), log...)
	l[i+7] ^= 0x04
	return l
}

func mutate(t *testing.T, req *api.AttestRequest, f func(*pb.Attestation)) {
	t.Helper()
	var att pb.Attestation
	if err := proto.Unmarshal(req.Attestation, &att); err != nil {
		t.Fatal(err)
	}
	f(&att)
	b, err := proto.Marshal(&att)
	if err != nil {
		t.Fatal(err)
	}
	req.Attestation = b
}

func TestAttestRefusals(t *testing.T) {
	a := testenv.Attester(t, testenv.DefaultLog)
	clock := storetest.NewFakeClock(time.Now())
	srv := testenv.Issuer(t, testenv.IssuerOptions{TrustAKs: []crypto.PublicKey{a.AKPublic()}, Now: clock.Now})
	c := &attester.Client{IssuerURL: srv.URL}
	ctx := context.Background()

	req := fresh(t, c, a)
	if _, err := c.Submit(ctx, req); err != nil {
		t.Fatalf("valid evidence refused: %v", err)
	}

	cases := []struct {
		name     string
		req      func() *api.AttestRequest
		status   int
		wantCode string
	}{
		{"replayed nonce", func() *api.AttestRequest { return req }, http.StatusConflict, "nonce_reused"},
		{"expired nonce", func() *api.AttestRequest {
			r := fresh(t, c, a)
			clock.Advance(issuer.DefaultNonceTTL + time.Second)
			return r
		}, http.StatusConflict, "nonce_expired"},
		{"nonce bound to another cnf key", func() *api.AttestRequest {
			r := fresh(t, c, a)
			k, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
			r.CNF = &jose.JSONWebKey{Key: &k.PublicKey}
			return r
		}, http.StatusForbidden, "evidence_rejected_binding"},
		{"empty event log", func() *api.AttestRequest {
			r := fresh(t, c, a)
			mutate(t, r, func(att *pb.Attestation) { att.EventLog = nil })
			return r
		}, http.StatusForbidden, "evidence_rejected_event_log"},
		{"tampered event log", func() *api.AttestRequest {
			r := fresh(t, c, a)
			mutate(t, r, func(att *pb.Attestation) { att.EventLog = tamper(t, att.EventLog) })
			return r
		}, http.StatusForbidden, "evidence_rejected_replay"},
		{"flipped bit in the quote signature", func() *api.AttestRequest {
			r := fresh(t, c, a)
			mutate(t, r, func(att *pb.Attestation) {
				for _, q := range att.Quotes {
					s := append([]byte(nil), q.RawSig...)
					s[len(s)-5] ^= 0x10
					q.RawSig = s
				}
			})
			return r
		}, http.StatusForbidden, "evidence_rejected_quote"},
		{"second quote over the SHA-256 bank with a forged clock", func() *api.AttestRequest {
			r := fresh(t, c, a)
			mutate(t, r, func(att *pb.Attestation) {
				for _, q := range att.Quotes {
					if q.GetPcrs().GetHash() == tpmpb.HashAlgo_SHA256 {
						dup := proto.Clone(q).(*tpmpb.Quote)
						att.Quotes = append(att.Quotes, dup)
						break
					}
				}
			})
			return r
		}, http.StatusForbidden, "evidence_rejected_quote_data"},
		{"RSA-1024 cnf key", func() *api.AttestRequest {
			k, _ := rsa.GenerateKey(rand.Reader, 1024)
			r := fresh(t, c, a)
			r.CNF = &jose.JSONWebKey{Key: &k.PublicKey}
			return r
		}, http.StatusBadRequest, "invalid_request"},
		{"oversized eat_nonce", func() *api.AttestRequest {
			r := fresh(t, c, a)
			r.EATNonce = strings.Repeat("n", 100)
			return r
		}, http.StatusBadRequest, "invalid_request"},
		{"nonce of the wrong length", func() *api.AttestRequest {
			r := fresh(t, c, a)
			r.Nonce = append(r.Nonce, 0)
			return r
		}, http.StatusBadRequest, "invalid_request"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			status, got := code(t, func() error { _, err := c.Submit(ctx, tc.req()); return err }())
			if status != tc.status || got != tc.wantCode {
				t.Fatalf("got %d %s, want %d %s", status, got, tc.status, tc.wantCode)
			}
		})
	}
}

func TestAKNotInAllowlist(t *testing.T) {
	a := testenv.Attester(t, testenv.DefaultLog)
	other, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	srv := testenv.Issuer(t, testenv.IssuerOptions{TrustAKs: []crypto.PublicKey{&other.PublicKey}})
	c := &attester.Client{IssuerURL: srv.URL}
	status, got := code(t, func() error { _, err := c.Submit(context.Background(), fresh(t, c, a)); return err }())
	if status != http.StatusForbidden || got != "evidence_rejected_ak_trust" {
		t.Fatalf("got %d %s", status, got)
	}
}

// TestOneNonceOneToken submits the same evidence 100 times at once: exactly one token, on both
// store backends.
func TestOneNonceOneToken(t *testing.T) {
	a := testenv.Attester(t, testenv.DefaultLog)
	backends := map[string]func(t *testing.T) (store.NonceStore, store.ClockStore){
		"memory": func(t *testing.T) (store.NonceStore, store.ClockStore) { m := memory.New(); return m, m },
		"redis": func(t *testing.T) (store.NonceStore, store.ClockStore) {
			s := redisStore(t)
			return s, s
		},
	}
	for name, mk := range backends {
		t.Run(name, func(t *testing.T) {
			n, cl := mk(t)
			srv := testenv.Issuer(t, testenv.IssuerOptions{TrustAKs: []crypto.PublicKey{a.AKPublic()}, Nonces: n, Clocks: cl})
			c := &attester.Client{IssuerURL: srv.URL}
			req := fresh(t, c, a)
			var ok, reused atomic.Int32
			var wg sync.WaitGroup
			for i := 0; i < 100; i++ {
				wg.Add(1)
				go func() {
					defer wg.Done()
					_, err := c.Submit(context.Background(), req)
					var he *attester.HTTPError
					switch {
					case err == nil:
						ok.Add(1)
					case errors.As(err, &he) && he.Err.Code == "nonce_reused":
						reused.Add(1)
					default:
						t.Errorf("unexpected error: %v", err)
					}
				}()
			}
			wg.Wait()
			if ok.Load() != 1 || reused.Load() != 99 {
				t.Fatalf("%d tokens and %d nonce_reused refusals, want 1 and 99", ok.Load(), reused.Load())
			}
		})
	}
}

// redisStore is a Redis-backed store on the shared test Redis under a unique key prefix
// (testenv.Redis); the test fails when Redis does not answer.
func redisStore(t *testing.T) *redisstore.Store { return testenv.Redis(t) }

// TestAttestBodyRefusals posts malformed bodies directly: trailing data after the JSON object,
// unknown fields and an oversized body are refused before any nonce is consumed.
func TestAttestBodyRefusals(t *testing.T) {
	nonces := memory.New()
	srv := testenv.Issuer(t, testenv.IssuerOptions{Nonces: nonces})
	post := func(body string) int {
		res, err := http.Post(srv.URL+api.PathAttest, "application/json", strings.NewReader(body))
		if err != nil {
			t.Fatal(err)
		}
		res.Body.Close()
		return res.StatusCode
	}
	ch, err := srv.Issuer.Challenge(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	nonce, _ := json.Marshal(ch.Nonce)
	for name, tc := range map[string]struct {
		body string
		want int
	}{
		"trailing object": {`{"nonce":` + string(nonce) + `} {"x":1}`, http.StatusBadRequest},
		"unknown field":   {`{"nonce":` + string(nonce) + `,"admin":true}`, http.StatusBadRequest},
		"not JSON":        {`nonce=1`, http.StatusBadRequest},
		"oversized":       {`{"attestation":"` + strings.Repeat("A", issuer.MaxAttestBody) + `"}`, http.StatusRequestEntityTooLarge},
	} {
		if got := post(tc.body); got != tc.want {
			t.Errorf("%s: got %d, want %d", name, got, tc.want)
		}
	}
	// The refused bodies consumed nothing: the nonce is still there, exactly once.
	if _, err := nonces.ConsumeNonce(context.Background(), ch.Nonce); err != nil {
		t.Fatalf("a refused body consumed the nonce: %v", err)
	}
}
