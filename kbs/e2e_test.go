package kbs_test

import (
	"bytes"
	"context"
	"crypto"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"encoding/base64"
	"errors"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"testing"

	"github.com/go-jose/go-jose/v4"

	"github.com/passport-attest/passport/api"
	"github.com/passport-attest/passport/attester"
	"github.com/passport-attest/passport/dpop"
	"github.com/passport-attest/passport/evidence"
	"github.com/passport-attest/passport/internal/testenv"
	"github.com/passport-attest/passport/kbs"
	"github.com/passport-attest/passport/policy"
	"github.com/passport-attest/passport/relyingparty"
	"github.com/passport-attest/passport/token"
)

// liveKBS is a broker in front of a real issuer: keys discovered over HTTP, a directory store
// holding diskKey, the revocation test double.
type liveKBS struct {
	url    string
	secret []byte
	revs   *revocations
	audit  *syncBuffer
}

func startKBS(t *testing.T, issuerURL, policyYAML string) *liveKBS {
	t.Helper()
	ctx := context.Background()
	d, err := relyingparty.Discover(ctx, issuerURL, nil)
	if err != nil {
		t.Fatal(err)
	}
	v, err := relyingparty.NewVerifier(relyingparty.Config{
		Issuer: issuerURL, Audience: testAudience, KeySet: relyingparty.NewRemoteKeySet(ctx, d.JWKSURI, relyingparty.WithoutBackgroundRefresh()),
		MinStatus: token.TierWarning,
	})
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	k := &liveKBS{secret: make([]byte, 32), revs: &revocations{}, audit: &syncBuffer{}}
	_, _ = rand.Read(k.secret)
	if err := os.MkdirAll(filepath.Join(dir, "default", "key"), 0o700); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, "default", "key", "disk"), k.secret, 0o600); err != nil {
		t.Fatal(err)
	}
	st, err := kbs.NewDirStore(dir)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { st.Close() })
	pol := kbs.DefaultPolicy()
	if policyYAML != "" {
		if pol, err = kbs.ParsePolicy([]byte(policyYAML)); err != nil {
			t.Fatal(err)
		}
	}
	srv := httptest.NewUnstartedServer(nil)
	t.Cleanup(srv.Close)
	k.url = "http://" + srv.Listener.Addr().String()
	b, err := kbs.New(kbs.Config{Verifier: v, Store: st, Policy: pol, Revocation: k.revs, Audit: slog.New(slog.NewJSONHandler(k.audit, nil)), PublicURL: k.url})
	if err != nil {
		t.Fatal(err)
	}
	srv.Config.Handler = b.Handler()
	srv.Start()
	return k
}

// TestEndToEnd: a simulated TPM replaying a real Ubuntu event log attests to a real issuer; the
// broker releases the disk key to it and refuses it in every other situation the issue lists.
// The simulator is process-wide: no t.Parallel here.
func TestEndToEnd(t *testing.T) {
	ctx := context.Background()
	a := testenv.Attester(t, testenv.DefaultLog)
	akJWK := jose.JSONWebKey{Key: a.AKPublic()}
	tp, err := akJWK.Thumbprint(crypto.SHA256)
	if err != nil {
		t.Fatal(err)
	}
	sub := base64.RawURLEncoding.EncodeToString(tp)
	iss := testenv.Issuer(t, testenv.IssuerOptions{TrustAKs: []crypto.PublicKey{a.AKPublic()}})
	k := startKBS(t, iss.URL, `
rules:
  - resource: "default/key/disk"
    allow: 'status == "affirming" && claims.sub == "`+sub+`" && claims.submods.tpm.measurements.bank == "sha256" && "7" in claims.submods.tpm.measurements.pcrs'
  - resource: "default/key/other-machine"
    allow: 'status == "affirming" && claims.sub == "not-this-machine"'
`)
	client := &attester.Client{IssuerURL: iss.URL}
	res, err := client.Attest(ctx, a, testAudience)
	if err != nil {
		t.Fatal(err)
	}
	kc := &attester.KBSClient{URL: k.url}
	disk := api.ResourceID{Repository: "default", Type: "key", Tag: "disk"}

	t.Run("released to the affirming machine", func(t *testing.T) {
		got, err := kc.Fetch(ctx, disk, res.Token, a.CNFPrivate())
		if err != nil {
			t.Fatal(err)
		}
		if !bytes.Equal(got, k.secret) {
			t.Fatal("released bytes differ from the stored secret")
		}
		l := k.audit.lines(t)
		if last := l[len(l)-1]; last["decision"] != "release" || last["sub"] != sub {
			t.Fatalf("audit %v", last)
		}
	})
	t.Run("policy mismatch", func(t *testing.T) {
		other := api.ResourceID{Repository: "default", Type: "key", Tag: "other-machine"}
		_, err := kc.Fetch(ctx, other, res.Token, a.CNFPrivate())
		expectStatus(t, err, 403, "insufficient_scope")
	})
	t.Run("stolen token without the cnf key", func(t *testing.T) {
		thief, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
		_, err := kc.Fetch(ctx, disk, res.Token, thief)
		expectStatus(t, err, 401, "invalid_dpop_proof")
		// Presented as a plain bearer token.
		hr, _ := http.NewRequest(http.MethodGet, k.url+disk.Path(), nil)
		hr.Header.Set("Authorization", "Bearer "+res.Token)
		r, err := http.DefaultClient.Do(hr)
		if err != nil {
			t.Fatal(err)
		}
		r.Body.Close()
		if r.StatusCode != 401 {
			t.Fatalf("bearer presentation: %d", r.StatusCode)
		}
	})
	t.Run("another audience", func(t *testing.T) {
		other, err := client.Attest(ctx, a, "another-service")
		if err != nil {
			t.Fatal(err)
		}
		_, err = kc.Fetch(ctx, disk, other.Token, a.CNFPrivate())
		expectStatus(t, err, 401, "invalid_token")
	})
	t.Run("revoked token", func(t *testing.T) {
		fresh, err := client.Attest(ctx, a, testAudience)
		if err != nil {
			t.Fatal(err)
		}
		if _, err := kc.Fetch(ctx, disk, fresh.Token, a.CNFPrivate()); err != nil {
			t.Fatalf("before revocation: %v", err)
		}
		jws, _ := jose.ParseSignedCompact(fresh.Token, []jose.SignatureAlgorithm{jose.ES256})
		var c token.Claims
		if err := jsonUnmarshal(jws.UnsafePayloadWithoutVerification(), &c); err != nil {
			t.Fatal(err)
		}
		k.revs.revoke(c.ID)
		_, err = kc.Fetch(ctx, disk, fresh.Token, a.CNFPrivate())
		expectStatus(t, err, 401, "invalid_token")
		if _, err := kc.Fetch(ctx, disk, res.Token, a.CNFPrivate()); err != nil {
			t.Fatalf("another token of the same machine: %v", err)
		}
	})
	t.Run("warning-tier machine", func(t *testing.T) {
		// An issuer whose policy finds this machine's configuration unsafe (AR4SI 32): its
		// tokens are warning-tier, minted and signed by a real issuer.
		warnIss := testenv.Issuer(t, testenv.IssuerOptions{
			TrustAKs: []crypto.PublicKey{a.AKPublic()},
			Policy:   warningPolicy{},
		})
		wk := startKBS(t, warnIss.URL, "")
		wres, err := (&attester.Client{IssuerURL: warnIss.URL}).Attest(ctx, a, testAudience)
		if err != nil {
			t.Fatal(err)
		}
		_, err = (&attester.KBSClient{URL: wk.url}).Fetch(ctx, disk, wres.Token, a.CNFPrivate())
		expectStatus(t, err, 403, "insufficient_scope")
		l := wk.audit.lines(t)
		if last := l[len(l)-1]; last["reason"] != "policy" {
			t.Fatalf("audit %v", last)
		}
	})
	t.Run("proof replayed by a network observer", func(t *testing.T) {
		hr, _ := http.NewRequest(http.MethodGet, k.url+disk.Path(), nil)
		proof, err := dpop.NewProof(a.CNFPrivate(), hr.Method, hr.URL, res.Token, testNow())
		if err != nil {
			t.Fatal(err)
		}
		for i, want := range []int{200, 401} {
			r2 := hr.Clone(ctx)
			r2.Header.Set("Authorization", "DPoP "+res.Token)
			r2.Header.Set("DPoP", proof)
			r, err := http.DefaultClient.Do(r2)
			if err != nil {
				t.Fatal(err)
			}
			r.Body.Close()
			if r.StatusCode != want {
				t.Fatalf("use %d: %d, want %d", i+1, r.StatusCode, want)
			}
		}
	})
}

func expectStatus(t *testing.T, err error, status int, code string) {
	t.Helper()
	var be *attester.BrokerError
	if !errors.As(err, &be) {
		t.Fatalf("err %v, want *attester.BrokerError", err)
	}
	var ae *api.Error
	if be.Status != status || !errors.As(err, &ae) || ae.Code != code {
		t.Fatalf("err %v, want %d %s", err, status, code)
	}
}

// warningPolicy appraises every machine as having a known-vulnerable configuration (AR4SI
// configuration claim 32, warning tier).
type warningPolicy struct{}

func (warningPolicy) Appraise(*evidence.State) *policy.Appraisal {
	a := &policy.Appraisal{PolicyID: "test:warning"}
	a.Set(token.ClaimConfiguration, token.ValueUnsafe)
	return a.Finish()
}
