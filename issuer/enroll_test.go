package issuer_test

import (
	"bytes"
	"context"
	"crypto"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/json"
	"io"
	"math/big"
	"net/http"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/google/go-tpm/legacy/tpm2"

	"github.com/passport-attest/passport/api"
	"github.com/passport-attest/passport/attester"
	"github.com/passport-attest/passport/enroll"
	"github.com/passport-attest/passport/evidence"
	"github.com/passport-attest/passport/internal/forge"
	"github.com/passport-attest/passport/internal/testenv"
	"github.com/passport-attest/passport/store"
	"github.com/passport-attest/passport/store/memory"
)

func ekPublic(t *testing.T, a *attester.Attester, ek attester.EK) crypto.PublicKey {
	t.Helper()
	req, err := a.EnrollRequest(ek)
	if err != nil {
		t.Fatal(err)
	}
	pub, err := tpm2.DecodePublic(req.EKPub)
	if err != nil {
		t.Fatal(err)
	}
	k, err := pub.Key()
	if err != nil {
		t.Fatal(err)
	}
	return k
}

// TestEnrollEndToEnd: the simulator's AK is unknown to the issuer; the issuer pins the
// simulator's EK (it has no certificate); after TPM2_MakeCredential / ActivateCredential the
// AK is trusted and attests. Both EK templates, both store backends.
func TestEnrollEndToEnd(t *testing.T) {
	a := testenv.Attester(t, testenv.DefaultLog)
	type backend struct {
		n  store.NonceStore
		ak store.AKStore
	}
	backends := map[string]func(t *testing.T) backend{
		"memory": func(*testing.T) backend { m := memory.New(); return backend{m, m} },
		"redis":  func(t *testing.T) backend { r := testenv.Redis(t); return backend{r, r} },
	}
	for name, mk := range backends {
		for _, ek := range []attester.EK{attester.EKRSA, attester.EKECC} {
			t.Run(name+"/"+string(ek), func(t *testing.T) {
				b := mk(t)
				srv := testenv.Issuer(t, testenv.IssuerOptions{PinnedEKs: []crypto.PublicKey{ekPublic(t, a, ek)}, Nonces: b.n, AKs: b.ak})
				c := &attester.Client{IssuerURL: srv.URL}
				ctx := context.Background()
				_, err := c.Attest(ctx, a, "test")
				if status, got := code(t, err); status != http.StatusForbidden || got != "evidence_rejected_ak_trust" {
					t.Fatalf("before enrollment: %d %s", status, got)
				}
				res, err := c.Enroll(ctx, a, ek)
				if err != nil {
					t.Fatalf("enroll: %v", err)
				}
				if _, err := c.Attest(ctx, a, "test"); err != nil {
					t.Fatalf("attest after enrollment: %v", err)
				}
				if want, _ := evidenceThumbprint(a); res.AKID != want {
					t.Fatalf("enrolled AK id %s, want %s", res.AKID, want)
				}
			})
		}
	}
}

// TestEnrollRefusals: an unpinned EK, an AK that is not in the EK's TPM, a wrong secret, a
// replayed enrollment and a non-restricted AK are each refused, and none leaves an AK trusted.
func TestEnrollRefusals(t *testing.T) {
	a := testenv.Attester(t, testenv.DefaultLog)
	ctx := context.Background()
	ek := ekPublic(t, a, attester.EKRSA)
	srv := testenv.Issuer(t, testenv.IssuerOptions{PinnedEKs: []crypto.PublicKey{ek}})
	c := &attester.Client{IssuerURL: srv.URL}
	post := func(path string, body, out any) error { return postJSON(ctx, srv.URL+path, body, out) }

	t.Run("unpinned EK", func(t *testing.T) {
		other := testenv.Issuer(t, testenv.IssuerOptions{PinnedEKs: []crypto.PublicKey{ekPublic(t, a, attester.EKECC)}})
		_, err := (&attester.Client{IssuerURL: other.URL}).Enroll(ctx, a, attester.EKRSA)
		if status, got := code(t, err); status != http.StatusForbidden || got != "ek_untrusted" {
			t.Fatalf("%d %s", status, got)
		}
	})
	t.Run("AK from another TPM", func(t *testing.T) {
		foreign, err := forge.NewECC()
		if err != nil {
			t.Fatal(err)
		}
		req, err := a.EnrollRequest(attester.EKRSA)
		if err != nil {
			t.Fatal(err)
		}
		if req.AKPub, err = foreign.Public.Encode(); err != nil {
			t.Fatal(err)
		}
		var ch api.EnrollChallenge
		if err := post(api.PathEnroll, req, &ch); err != nil {
			t.Fatal(err) // the issuer cannot tell yet: the TPM will
		}
		if _, err := a.ActivateCredential(attester.EKRSA, &ch); err == nil {
			t.Fatal("the TPM released a credential made for a key it does not hold")
		}
		guess := make([]byte, 32)
		rand.Read(guess)
		err = post(api.PathEnrollActivate, &api.ActivateRequest{ID: ch.ID, Secret: guess}, &api.EnrollResponse{})
		if status, got := code(t, err); status != http.StatusForbidden || got != "activation_failed" {
			t.Fatalf("guessed secret: %d %s", status, got)
		}
		ev, _ := foreign.Attest(testenv.EventLog(t, testenv.DefaultLog), forge.Quote{})
		if _, err := srv.Issuer.Attest(ctx, &api.AttestRequest{Nonce: ev.Nonce, CNF: ev.CNF, Attestation: ev.Bytes(), Audience: "test"}); err == nil {
			t.Fatal("foreign AK trusted")
		}
	})
	t.Run("wrong secret burns the enrollment", func(t *testing.T) {
		req, _ := a.EnrollRequest(attester.EKRSA)
		var ch api.EnrollChallenge
		if err := post(api.PathEnroll, req, &ch); err != nil {
			t.Fatal(err)
		}
		secret, err := a.ActivateCredential(attester.EKRSA, &ch)
		if err != nil {
			t.Fatal(err)
		}
		wrong := append([]byte(nil), secret...)
		wrong[0] ^= 1
		err = post(api.PathEnrollActivate, &api.ActivateRequest{ID: ch.ID, Secret: wrong}, &api.EnrollResponse{})
		if status, got := code(t, err); status != http.StatusForbidden || got != "activation_failed" {
			t.Fatalf("wrong secret: %d %s", status, got)
		}
		err = post(api.PathEnrollActivate, &api.ActivateRequest{ID: ch.ID, Secret: secret}, &api.EnrollResponse{})
		if status, got := code(t, err); status != http.StatusConflict || got != "enrollment_unknown" {
			t.Fatalf("right secret after a wrong one: %d %s", status, got)
		}
		if _, err := c.Attest(ctx, a, "test"); err == nil {
			t.Fatal("AK trusted after a failed activation")
		}
	})
	t.Run("replayed enrollment", func(t *testing.T) {
		req, _ := a.EnrollRequest(attester.EKRSA)
		var ch api.EnrollChallenge
		if err := post(api.PathEnroll, req, &ch); err != nil {
			t.Fatal(err)
		}
		secret, err := a.ActivateCredential(attester.EKRSA, &ch)
		if err != nil {
			t.Fatal(err)
		}
		if err := post(api.PathEnrollActivate, &api.ActivateRequest{ID: ch.ID, Secret: secret}, &api.EnrollResponse{}); err != nil {
			t.Fatal(err)
		}
		err = post(api.PathEnrollActivate, &api.ActivateRequest{ID: ch.ID, Secret: secret}, &api.EnrollResponse{})
		if status, got := code(t, err); status != http.StatusConflict || got != "enrollment_unknown" {
			t.Fatalf("replay: %d %s", status, got)
		}
	})
	t.Run("AK that is not a restricted signing key", func(t *testing.T) {
		loose, _ := forge.NewECC()
		loose.Public.Attributes &^= tpm2.FlagRestricted
		req, _ := a.EnrollRequest(attester.EKRSA)
		req.AKPub, _ = loose.Public.Encode()
		err := post(api.PathEnroll, req, &api.EnrollChallenge{})
		if status, got := code(t, err); status != http.StatusBadRequest || got != "invalid_request" {
			t.Fatalf("%d %s", status, got)
		}
	})
}

// TestEnrollEKCertificate: with no pin, an EK certificate chaining to a configured EK root and
// certifying the TPM's EK enrolls; one for another key, or from another CA, does not.
func TestEnrollEKCertificate(t *testing.T) {
	a := testenv.Attester(t, testenv.DefaultLog)
	ctx := context.Background()
	ek := ekPublic(t, a, attester.EKRSA)
	ca, caKey := testCA(t)
	otherCA, otherKey := testCA(t)
	srv := testenv.Issuer(t, testenv.IssuerOptions{EKRoots: []*x509.Certificate{ca}})
	post := func(body any) error { return postJSON(ctx, srv.URL+api.PathEnroll, body, &api.EnrollChallenge{}) }
	req, _ := a.EnrollRequest(attester.EKRSA)

	req.EKCert = issue(t, ca, caKey, ek)
	if err := post(req); err != nil {
		t.Fatalf("EK certificate from the configured root: %v", err)
	}
	other, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	for name, cert := range map[string][]byte{
		"certificate for another key": issue(t, ca, caKey, &other.PublicKey),
		"certificate from another CA": issue(t, otherCA, otherKey, ek),
		"no certificate, no pin":      nil,
		// The root may issue more than EK certificates: the key of its TLS server certificate
		// could otherwise pose as an EK and activate a software AK's credential.
		"TLS server certificate of the EK key": issue(t, ca, caKey, ek, func(c *x509.Certificate) {
			c.ExtKeyUsage = []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth}
		}),
	} {
		req.EKCert = cert
		if status, got := code(t, post(req)); status != http.StatusForbidden || got != "ek_untrusted" {
			t.Fatalf("%s: %d %s", name, status, got)
		}
	}
	req.EKCert = issue(t, ca, caKey, ek)
	c := &attester.Client{IssuerURL: srv.URL}
	var ch api.EnrollChallenge
	if err := postJSON(ctx, srv.URL+api.PathEnroll, req, &ch); err != nil {
		t.Fatal(err)
	}
	secret, err := a.ActivateCredential(attester.EKRSA, &ch)
	if err != nil {
		t.Fatal(err)
	}
	if err := postJSON(ctx, srv.URL+api.PathEnrollActivate, &api.ActivateRequest{ID: ch.ID, Secret: secret}, &api.EnrollResponse{}); err != nil {
		t.Fatal(err)
	}
	if _, err := c.Attest(ctx, a, "test"); err != nil {
		t.Fatalf("attest after certificate enrollment: %v", err)
	}
}

func testCA(t *testing.T) (*x509.Certificate, *ecdsa.PrivateKey) {
	t.Helper()
	k, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	tmpl := &x509.Certificate{SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "test EK root"},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour), IsCA: true,
		BasicConstraintsValid: true, KeyUsage: x509.KeyUsageCertSign}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &k.PublicKey, k)
	if err != nil {
		t.Fatal(err)
	}
	c, _ := x509.ParseCertificate(der)
	return c, k
}

// issue makes an EK certificate for pub from ca; mod, when given, edits the template first.
func issue(t *testing.T, ca *x509.Certificate, caKey *ecdsa.PrivateKey, pub crypto.PublicKey, mod ...func(*x509.Certificate)) []byte {
	t.Helper()
	tmpl := &x509.Certificate{SerialNumber: big.NewInt(2), NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour),
		KeyUsage: x509.KeyUsageKeyEncipherment}
	for _, m := range mod {
		m(tmpl)
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, ca, pub, caKey)
	if err != nil {
		t.Fatal(err)
	}
	return der
}

// postJSON posts body to url and decodes a 2xx answer into out; a refusal is an
// *attester.HTTPError, like the attester client's.
func postJSON(ctx context.Context, url string, body, out any) error {
	b, err := json.Marshal(body)
	if err != nil {
		return err
	}
	req, _ := http.NewRequestWithContext(ctx, http.MethodPost, url, bytes.NewReader(b))
	req.Header.Set("Content-Type", "application/json")
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	data, _ := io.ReadAll(resp.Body)
	if resp.StatusCode/100 != 2 {
		var e api.Error
		_ = json.Unmarshal(data, &e)
		return &attester.HTTPError{Status: resp.StatusCode, Err: &e}
	}
	return json.Unmarshal(data, out)
}

func evidenceThumbprint(a *attester.Attester) (string, error) {
	return evidence.Thumbprint(a.AKPublic())
}

// TestEnrollmentIDsAreNotNonces: enrollment sessions share the nonce store with challenges,
// keyed apart: an enrollment id submitted as an attestation nonce is unknown (no token, and
// the enrollment survives), and a challenge nonce submitted as an enrollment id is unknown
// (409, not a store failure), the challenge still usable.
func TestEnrollmentIDsAreNotNonces(t *testing.T) {
	a := testenv.Attester(t, testenv.DefaultLog)
	ctx := context.Background()
	srv := testenv.Issuer(t, testenv.IssuerOptions{TrustAKs: []crypto.PublicKey{a.AKPublic()},
		PinnedEKs: []crypto.PublicKey{ekPublic(t, a, attester.EKRSA)}})
	c := &attester.Client{IssuerURL: srv.URL}
	req, err := a.EnrollRequest(attester.EKRSA)
	if err != nil {
		t.Fatal(err)
	}
	var ch api.EnrollChallenge
	if err := postJSON(ctx, srv.URL+api.PathEnroll, req, &ch); err != nil {
		t.Fatal(err)
	}
	ev, err := a.Evidence(ch.ID)
	if err != nil {
		t.Fatal(err)
	}
	ev.Audience = "test"
	if _, err := c.Submit(ctx, ev); err == nil {
		t.Fatal("a token was minted on an enrollment id used as the nonce")
	}
	secret, err := a.ActivateCredential(attester.EKRSA, &ch)
	if err != nil {
		t.Fatal(err)
	}
	if err := postJSON(ctx, srv.URL+api.PathEnrollActivate, &api.ActivateRequest{ID: ch.ID, Secret: secret}, &api.EnrollResponse{}); err != nil {
		t.Fatalf("the enrollment did not survive its id's use as a nonce: %v", err)
	}

	n, err := c.Challenge(ctx)
	if err != nil {
		t.Fatal(err)
	}
	err = postJSON(ctx, srv.URL+api.PathEnrollActivate, &api.ActivateRequest{ID: n.Nonce, Secret: []byte("x")}, &api.EnrollResponse{})
	if status, got := code(t, err); status != http.StatusConflict || got != "enrollment_unknown" {
		t.Fatalf("challenge nonce as enrollment id: %d %s, want 409 enrollment_unknown", status, got)
	}
	ev, err = a.Evidence(n.Nonce)
	if err != nil {
		t.Fatal(err)
	}
	ev.Audience = "test"
	if _, err := c.Submit(ctx, ev); err != nil {
		t.Fatalf("the challenge was burnt by its use as an enrollment id: %v", err)
	}
}

// twoAKs runs on one simulator an enrollment start and activation for its AK, TPM2_Clear
// (new owner seed, same endorsement seed), and the same for the new AK under the same EK,
// against an issuer started with o (pinning that EK). Neither enrollment is finished.
func twoAKs(t *testing.T, o testenv.IssuerOptions) (srv *testenv.Server, a2 *attester.Attester, chs [2]*api.EnrollChallenge, secrets [2][]byte) {
	t.Helper()
	log := testenv.EventLog(t, testenv.DefaultLog)
	rw, err := attester.OpenTPM("simulator")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { rw.Close() })
	if _, err := attester.ReplayEventLog(rw, log); err != nil {
		t.Fatal(err)
	}
	newAttester := func() *attester.Attester {
		a, err := attester.New(attester.Options{TPM: rw, EventLog: log})
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { a.Close() })
		return a
	}
	a1 := newAttester()
	ek := ekPublic(t, a1, attester.EKRSA)
	o.PinnedEKs = []crypto.PublicKey{ek}
	srv = testenv.Issuer(t, o)
	start := func(a *attester.Attester) (*api.EnrollChallenge, []byte) {
		t.Helper()
		req, err := a.EnrollRequest(attester.EKRSA)
		if err != nil {
			t.Fatal(err)
		}
		var ch api.EnrollChallenge
		if err := postJSON(context.Background(), srv.URL+api.PathEnroll, req, &ch); err != nil {
			t.Fatalf("start: %v", err)
		}
		secret, err := a.ActivateCredential(attester.EKRSA, &ch)
		if err != nil {
			t.Fatal(err)
		}
		return &ch, secret
	}
	chs[0], secrets[0] = start(a1)
	if err := tpm2.Clear(rw, tpm2.HandleLockout, tpm2.AuthCommand{Session: tpm2.HandlePasswordSession, Attributes: tpm2.AttrContinueSession}); err != nil {
		t.Fatal(err)
	}
	a2 = newAttester()
	if mustThumbprint(t, a1.AKPublic()) == mustThumbprint(t, a2.AKPublic()) {
		t.Fatal("TPM2_Clear left the same AK")
	}
	if mustThumbprint(t, ekPublic(t, a2, attester.EKRSA)) != mustThumbprint(t, ek) {
		t.Fatal("TPM2_Clear changed the EK")
	}
	chs[1], secrets[1] = start(a2)
	return srv, a2, chs, secrets
}

// TestEnrollReenrollInterval: a second AK of the same TPM (twoAKs) is refused within the
// re-enrollment interval with 429 reenroll_too_soon and a Retry-After, both by activation (its
// enrollment started before the first AK was pinned) and by a new start; after the interval it
// enrolls (and replaces the first AK), and enrolling the same AK again right away works.
func TestEnrollReenrollInterval(t *testing.T) {
	clock := &testClock{}
	srv, a2, chs, secrets := twoAKs(t, testenv.IssuerOptions{Now: clock.Now})
	ctx := context.Background()
	c := &attester.Client{IssuerURL: srv.URL}
	finish := func(i int) error {
		return postJSON(ctx, srv.URL+api.PathEnrollActivate, &api.ActivateRequest{ID: chs[i].ID, Secret: secrets[i]}, &api.EnrollResponse{})
	}
	if err := finish(0); err != nil {
		t.Fatalf("first AK: %v", err)
	}
	err := finish(1)
	if status, got := code(t, err); status != http.StatusTooManyRequests || got != "reenroll_too_soon" {
		t.Fatalf("second AK activated within the interval: %d %s", status, got)
	}
	if _, err := c.Attest(ctx, a2, "test"); err == nil {
		t.Fatal("second AK trusted within the interval")
	}

	// A new start for AK2 is refused too, with how long to wait.
	req, err := a2.EnrollRequest(attester.EKRSA)
	if err != nil {
		t.Fatal(err)
	}
	body, _ := json.Marshal(req)
	resp, err := http.Post(srv.URL+api.PathEnroll, "application/json", bytes.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	wait, _ := strconv.Atoi(resp.Header.Get("Retry-After"))
	if resp.StatusCode != http.StatusTooManyRequests || wait < 1 || wait > int(enroll.DefaultReenrollInterval/time.Second) {
		t.Fatalf("second AK started within the interval: %d, Retry-After %q (want 429, 1..600)", resp.StatusCode, resp.Header.Get("Retry-After"))
	}

	// After the interval AK2 enrolls and replaces AK1; enrolling AK2 again at once works.
	clock.Add(enroll.DefaultReenrollInterval + time.Second)
	for i := range 2 {
		if _, err := c.Enroll(ctx, a2, attester.EKRSA); err != nil {
			t.Fatalf("enrollment %d of the second AK after the interval: %v", i+1, err)
		}
	}
	if _, err := c.Attest(ctx, a2, "test"); err != nil {
		t.Fatalf("second AK after enrollment: %v", err)
	}
}

// gatedAKs, once armed, holds the answer to the first read of an EK index entry ("ek:...")
// until a second read has been answered too or the test opens the gate: two activations that
// check at once both read the index before either pins.
type gatedAKs struct {
	*memory.Store
	mu       sync.Mutex
	armed    bool
	arrivals int
	gate     chan struct{}
	once     sync.Once
}

func (g *gatedAKs) open() { g.once.Do(func() { close(g.gate) }) }

func (g *gatedAKs) GetAK(ctx context.Context, id string) ([]byte, error) {
	g.mu.Lock()
	hold := g.armed && strings.HasPrefix(id, "ek:") && g.arrivals < 2
	if hold {
		g.arrivals++
		if g.arrivals == 2 {
			g.open()
		}
	}
	v, err := g.Store.GetAK(ctx, id)
	g.mu.Unlock()
	if hold {
		<-g.gate
	}
	return v, err
}

// TestEnrollReenrollRace: two activations of different AKs of one EK at once (both started
// before either was pinned) pin at most one AK: the other gets 429 reenroll_too_soon.
func TestEnrollReenrollRace(t *testing.T) {
	aks := &gatedAKs{Store: memory.New(), gate: make(chan struct{})}
	srv, _, chs, secrets := twoAKs(t, testenv.IssuerOptions{AKs: aks})
	aks.mu.Lock()
	aks.armed = true
	aks.mu.Unlock()
	errs := make(chan error, 2)
	for i := range 2 {
		go func() {
			errs <- postJSON(context.Background(), srv.URL+api.PathEnrollActivate, &api.ActivateRequest{ID: chs[i].ID, Secret: secrets[i]}, &api.EnrollResponse{})
		}()
	}
	first := <-errs
	aks.open() // the second activation, if held alone, may go on
	second := <-errs
	var ok, refused int
	for _, err := range []error{first, second} {
		if err == nil {
			ok++
			continue
		}
		if status, got := code(t, err); status != http.StatusTooManyRequests || got != "reenroll_too_soon" {
			t.Fatalf("%d %s", status, got)
		}
		refused++
	}
	if ok != 1 || refused != 1 {
		t.Fatalf("%d activations pinned, %d refused; want 1 and 1", ok, refused)
	}
	al, err := evidence.NewStoredAllowlist(aks.Store)
	if err != nil {
		t.Fatal(err)
	}
	list, err := al.List(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	if len(list) != 1 {
		t.Fatalf("%d AKs pinned: %+v", len(list), list)
	}
}

// testClock is the real clock plus an offset tests move forward (the allowlist stamps
// enrollments with the real clock); safe for the server's goroutines.
type testClock struct {
	mu     sync.Mutex
	offset time.Duration
}

// Now returns the clock's time.
func (c *testClock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return time.Now().Add(c.offset)
}

// Add moves the clock forward by d.
func (c *testClock) Add(d time.Duration) { c.mu.Lock(); c.offset += d; c.mu.Unlock() }

func mustThumbprint(t *testing.T, k crypto.PublicKey) string {
	t.Helper()
	id, err := evidence.Thumbprint(k)
	if err != nil {
		t.Fatal(err)
	}
	return id
}
