package issuer_test

import (
	"context"
	"crypto"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/go-jose/go-jose/v4"

	pb "github.com/google/go-tpm-tools/proto/attest"
	"github.com/google/go-tpm-tools/server"
	"github.com/google/go-tpm/legacy/tpm2"
	"google.golang.org/protobuf/proto"

	"github.com/passport-attest/passport/api"
	"github.com/passport-attest/passport/attester"
	"github.com/passport-attest/passport/evidence"
	"github.com/passport-attest/passport/internal/forge"
	"github.com/passport-attest/passport/internal/testenv"
	"github.com/passport-attest/passport/issuer"
	"github.com/passport-attest/passport/store"
	"github.com/passport-attest/passport/store/memory"
)

// TestSameNonceTwice: a second, freshly made quote for an already used nonce is refused, not
// only a replay of the same bytes.
func TestSameNonceTwice(t *testing.T) {
	a := testenv.Attester(t, testenv.DefaultLog)
	srv := testenv.Issuer(t, testenv.IssuerOptions{TrustAKs: []crypto.PublicKey{a.AKPublic()}})
	c := &attester.Client{IssuerURL: srv.URL}
	ctx := context.Background()
	ch, err := c.Challenge(ctx)
	if err != nil {
		t.Fatal(err)
	}
	for i, want := range []string{"", "nonce_reused"} {
		req, err := a.Evidence(ch.Nonce)
		if err != nil {
			t.Fatal(err)
		}
		req.Audience = "test"
		_, err = c.Submit(ctx, req)
		if want == "" {
			if err != nil {
				t.Fatalf("first use: %v", err)
			}
			continue
		}
		if status, got := code(t, err); status != http.StatusConflict || got != want {
			t.Fatalf("attempt %d: %d %s, want 409 %s", i, status, got, want)
		}
	}
}

// TestAKCertificateForAnotherKeyEndToEnd: the simulator's evidence presented with a real GCE AK
// certificate (which chains to the configured roots but certifies Google's AK, not ours) is
// refused by an issuer trusting AK certificate chains.
func TestAKCertificateForAnotherKeyEndToEnd(t *testing.T) {
	a := testenv.Attester(t, testenv.DefaultLog)
	raw, err := os.ReadFile(filepath.Join(testenv.ModuleDir(t, "github.com/google/go-tpm-tools"), "internal/test/attestations/gce-cos-85-nonce9009.pb"))
	if err != nil {
		t.Fatal(err)
	}
	var gce pb.Attestation
	if err := proto.Unmarshal(raw, &gce); err != nil {
		t.Fatal(err)
	}
	chain := &evidence.CertChain{Roots: server.GceEKRoots, Intermediates: server.GceEKIntermediates}
	srv := testenv.Issuer(t, testenv.IssuerOptions{AKTrust: chain})
	c := &attester.Client{IssuerURL: srv.URL}
	req := fresh(t, c, a)
	mutate(t, req, func(att *pb.Attestation) { att.AkCert, att.IntermediateCerts = gce.AkCert, gce.IntermediateCerts })
	_, err = c.Submit(context.Background(), req)
	status, got := code(t, err)
	if status != http.StatusForbidden || got != "evidence_rejected_ak_trust" {
		t.Fatalf("got %d %s", status, got)
	}
	if !strings.Contains(err.Error(), evidence.ErrAKCertKey.Error()) {
		t.Fatalf("refusal %v does not name the key mismatch", err)
	}
}

// clockBackends are the ClockStore backends the rollback tests run on.
func clockBackends() map[string]func(t *testing.T) (store.NonceStore, store.ClockStore) {
	return map[string]func(t *testing.T) (store.NonceStore, store.ClockStore){
		"memory": func(t *testing.T) (store.NonceStore, store.ClockStore) { m := memory.New(); return m, m },
		"redis":  func(t *testing.T) (store.NonceStore, store.ClockStore) { s := redisStore(t); return s, s },
	}
}

// TestClockRollbackSimulator: the simulator's TPM attests (its clock info is recorded per AK);
// the store is then told it has seen this AK one TPM reset later (what a rolled-back or
// replayed TPM would look like next to it); the next genuine attestation is refused, and the
// record is left as it was.
func TestClockRollbackSimulator(t *testing.T) {
	a := testenv.Attester(t, testenv.DefaultLog)
	for name, mk := range clockBackends() {
		t.Run(name, func(t *testing.T) {
			n, cl := mk(t)
			var last store.ClockInfo
			rec := &recordingClocks{ClockStore: cl, last: &last}
			srv := testenv.Issuer(t, testenv.IssuerOptions{TrustAKs: []crypto.PublicKey{a.AKPublic()}, Nonces: n, Clocks: rec})
			c := &attester.Client{IssuerURL: srv.URL}
			ctx := context.Background()
			if _, err := c.Attest(ctx, a, "test"); err != nil {
				t.Fatal(err)
			}
			if _, err := c.Attest(ctx, a, "test"); err != nil {
				t.Fatalf("a later attestation of the same TPM refused: %v", err)
			}
			akid, _ := evidence.Thumbprint(a.AKPublic())
			ahead := store.ClockInfo{ResetCount: last.ResetCount + 1}
			if err := cl.AdvanceClock(ctx, akid, ahead, time.Hour); err != nil {
				t.Fatal(err)
			}
			_, err := c.Attest(ctx, a, "test")
			if status, got := code(t, err); status != http.StatusForbidden || got != "evidence_rejected_clock" {
				t.Fatalf("rolled-back clock: %d %s", status, got)
			}
			if err := cl.AdvanceClock(ctx, akid, last, time.Hour); err == nil {
				t.Fatal("the refused attestation changed the record")
			}
		})
	}
}

// recordingClocks remembers the last clock info the issuer recorded.
type recordingClocks struct {
	store.ClockStore
	last *store.ClockInfo
}

func (r *recordingClocks) AdvanceClock(ctx context.Context, ak string, c store.ClockInfo, ttl time.Duration) error {
	err := r.ClockStore.AdvanceClock(ctx, ak, c, ttl)
	if err == nil {
		*r.last = c
	}
	return err
}

// TestClockRollbackForged: two attestations by one AK whose quotes carry (resetCount,
// restartCount, clock) going backwards in each component are refused; forward ones pass.
func TestClockRollbackForged(t *testing.T) {
	ak, err := forge.NewECC()
	if err != nil {
		t.Fatal(err)
	}
	log := testenv.EventLog(t, testenv.DefaultLog)
	for name, mk := range clockBackends() {
		t.Run(name, func(t *testing.T) {
			n, cl := mk(t)
			srv := testenv.Issuer(t, testenv.IssuerOptions{TrustAKs: []crypto.PublicKey{ak.PublicKey()}, Nonces: n, Clocks: cl})
			c := &attester.Client{IssuerURL: srv.URL}
			submit := func(ci tpm2.ClockInfo) error {
				ch, err := c.Challenge(context.Background())
				if err != nil {
					t.Fatal(err)
				}
				cnf := testCNF(t)
				ev, err := ak.AttestFor(ch.Nonce, cnf, log, forge.Quote{Clock: ci})
				if err != nil {
					t.Fatal(err)
				}
				_, err = c.Submit(context.Background(), &api.AttestRequest{Nonce: ch.Nonce, CNF: cnf, Attestation: ev.Bytes(), Audience: "test"})
				return err
			}
			steps := []struct {
				ci tpm2.ClockInfo
				ok bool
			}{
				{tpm2.ClockInfo{ResetCount: 3, RestartCount: 2, Clock: 5000, Safe: 1}, true},
				{tpm2.ClockInfo{ResetCount: 3, RestartCount: 2, Clock: 4999, Safe: 1}, false}, // clock back
				{tpm2.ClockInfo{ResetCount: 3, RestartCount: 1, Clock: 9000, Safe: 1}, false}, // restart back
				{tpm2.ClockInfo{ResetCount: 2, RestartCount: 9, Clock: 9000, Safe: 1}, false}, // reset back
				{tpm2.ClockInfo{ResetCount: 3, RestartCount: 2, Clock: 6000, Safe: 1}, true},
				{tpm2.ClockInfo{ResetCount: 4, RestartCount: 0, Clock: 10, Safe: 1}, true}, // a TPM reset
			}
			for i, s := range steps {
				err := submit(s.ci)
				if s.ok && err != nil {
					t.Fatalf("step %d %+v refused: %v", i, s.ci, err)
				}
				if !s.ok {
					if status, got := code(t, err); status != http.StatusForbidden || got != "evidence_rejected_clock" {
						t.Fatalf("step %d %+v: %d %s", i, s.ci, status, got)
					}
				}
			}
		})
	}
}

func testCNF(t *testing.T) *jose.JSONWebKey {
	t.Helper()
	k, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	return &jose.JSONWebKey{Key: &k.PublicKey}
}

// TestOutcomeCountsRefusedBodies: attest and appraise requests refused before Attest (a body
// that does not decode, an unknown field, a body over the cap, an appraisal without evidence)
// are reported to Config.Outcome once each, with their api.Error code, as Attest reports every
// other outcome.
func TestOutcomeCountsRefusedBodies(t *testing.T) {
	var mu sync.Mutex
	var got []string
	srv := issuerWith(t, testenv.IssuerOptions{}, func(c *issuer.Config) {
		c.Outcome = func(code string) { mu.Lock(); got = append(got, code); mu.Unlock() }
	})
	big := `{"nonce":"` + strings.Repeat("A", int(issuer.MaxAttestBody)) + `"}`
	for _, tc := range []struct{ path, body, want string }{
		{"/v1/attest", `{"nonce":`, "invalid_request"},
		{"/v1/attest", `{"bogus":1}`, "invalid_request"},
		{"/v1/attest", big, "request_too_large"},
		{"/v1/appraise", `[`, "invalid_request"},
		{"/v1/appraise", big, "request_too_large"},
		{"/v1/appraise", `{"audience":"https://rp.example"}`, "invalid_request"},
	} {
		mu.Lock()
		got = got[:0]
		mu.Unlock()
		res, err := http.Post(srv.URL+tc.path, "application/json", strings.NewReader(tc.body))
		if err != nil {
			t.Fatal(err)
		}
		res.Body.Close()
		mu.Lock()
		if len(got) != 1 || got[0] != tc.want {
			t.Errorf("%s %.40q: Outcome told %q, want [%s] once (HTTP %d)", tc.path, tc.body, got, tc.want, res.StatusCode)
		}
		mu.Unlock()
	}
}
