package loadtest

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"strconv"
	"time"

	"github.com/passport-attest/passport/api"
	"github.com/passport-attest/passport/relyingparty"
	"github.com/passport-attest/passport/token"
)

// sampleRevoked is how many issued tokens the redis-restart scenario revokes before the kill;
// as many again stay valid, as the control sample. maxSampled bounds the tokens a live run
// keeps for this.
const (
	sampleRevoked = 50
	maxSampled    = 2 * sampleRevoked
)

// writeAdminCredential writes a random admin credential for the issuers' admin API (loopback
// only) and returns its file.
func (e *env) writeAdminCredential() (string, error) {
	b := make([]byte, 32)
	if _, err := rand.Read(b); err != nil {
		return "", err
	}
	e.admin = hex.EncodeToString(b)
	f := filepath.Join(e.dir, "admin-credential")
	return f, os.WriteFile(f, []byte(e.admin+"\n"), 0o600)
}

// sampled returns the tokens the live run kept so far.
func (l *live) sampled() []string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return append([]string(nil), l.tokens...)
}

// revocationSample is what revokeSample did: the tokens it revoked (the admin API answered
// count 1), those it left valid (the control sample), those whose revocation failed, and when
// the harness received the last revocation's acknowledgement (the admin API's answer).
type revocationSample struct {
	revoked, kept []string
	failed        int
	lastAck       time.Time
}

// revokeSample revokes the first half of tokens (at most sampleRevoked) by jti through
// POST /admin/v1/revoke on the first issuer; the rest (as many, at most) is the control sample.
func (e *env) revokeSample(ctx context.Context, tokens []string) *revocationSample {
	n := min(sampleRevoked, len(tokens)/2)
	s := &revocationSample{kept: tokens[n:min(len(tokens), 2*n)]}
	hc := &http.Client{Timeout: 5 * time.Second}
	u := "http://127.0.0.1:" + strconv.Itoa(e.issuers[0].adminPort) + api.PathAdminRevoke
	for _, tok := range tokens[:n] {
		jti, _ := claimsOf(tok)["jti"].(string)
		if e.revoke(ctx, hc, u, jti) {
			s.revoked = append(s.revoked, tok)
			s.lastAck = time.Now()
		} else {
			s.failed++
		}
	}
	return s
}

// revoke revokes the token jti and reports whether exactly one token was revoked.
func (e *env) revoke(ctx context.Context, hc *http.Client, u, jti string) bool {
	body, _ := json.Marshal(api.RevokeRequest{JTI: jti})
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, u, bytes.NewReader(body))
	if err != nil {
		return false
	}
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("Authorization", "Bearer "+e.admin)
	resp, err := hc.Do(req)
	if err != nil {
		return false
	}
	defer resp.Body.Close()
	var out api.RevokeResponse
	return resp.StatusCode == http.StatusOK && json.NewDecoder(resp.Body).Decode(&out) == nil && out.Count == 1
}

// toIssuer sends every request to one issuer replica: the status list URIs in tokens name
// IssuerURL, the name the replicas share, which does not resolve.
type toIssuer struct {
	base *url.URL
	rt   http.RoundTripper
}

func (t toIssuer) RoundTrip(r *http.Request) (*http.Response, error) {
	r = r.Clone(r.Context())
	r.URL.Scheme, r.URL.Host = t.base.Scheme, t.base.Host
	return t.rt.RoundTrip(r)
}

// checkSample checks every token of s through a fresh relyingparty.StatusChecker fetching the
// issuers' status lists from the last replica, and reports the result in r; killed is when the
// harness sent Redis SIGKILL.
func (e *env) checkSample(ctx context.Context, s *revocationSample, killed time.Time, r *Result) error {
	if s == nil {
		return errors.New("no revocation sample was taken")
	}
	keys := relyingparty.NewStaticKeySet(e.keyring.PublicSet())
	v, err := relyingparty.NewVerifier(relyingparty.Config{Issuer: IssuerURL, Audience: Audience, KeySet: keys})
	if err != nil {
		return err
	}
	base, err := url.Parse(e.issuers[len(e.issuers)-1].url())
	if err != nil {
		return err
	}
	sc, err := relyingparty.NewStatusChecker(relyingparty.StatusConfig{Issuer: IssuerURL, KeySet: keys,
		HTTPClient: &http.Client{Timeout: 5 * time.Second, Transport: toIssuer{base: base, rt: http.DefaultTransport}}})
	if err != nil {
		return err
	}
	claims := func(toks []string) ([]*token.Claims, error) {
		var out []*token.Claims
		for _, t := range toks {
			c, err := v.Verify(ctx, t)
			if err != nil {
				return nil, fmt.Errorf("sampled token no longer verifies: %w", err)
			}
			out = append(out, c)
		}
		return out, nil
	}
	revoked, err := claims(s.revoked)
	if err != nil {
		return err
	}
	kept, err := claims(s.kept)
	if err != nil {
		return err
	}
	a := auditRevocations(ctx, sc.Check, revoked, kept)
	before := "-"
	if !s.lastAck.IsZero() {
		before = us(killed.Sub(s.lastAck))
	}
	r.add("revocations", "%d tokens revoked through the admin API (%d refused), the last acknowledgement received %s before the harness sent Redis SIGKILL; after the restart these and a control sample of %d tokens never revoked were checked through the status list",
		len(s.revoked), s.failed, before, len(s.kept))
	r.add("lost revocations", "%d (goal 0)", a.lost)
	r.add("wrongly revoked", "%d (goal 0)", a.wrong)
	if a.unavailable > 0 {
		r.add("status unavailable", "%d sampled tokens (the status list could not be fetched)", a.unavailable)
	}
	return nil
}

// revocationAudit counts the outcome of checking a revoked and a non-revoked sample: lost
// (revoked, read as valid), wrong (not revoked, read as revoked) and unavailable (no status
// could be established, either sample).
type revocationAudit struct {
	lost, wrong, unavailable int
}

// auditRevocations checks every token of revoked and kept with check (a
// relyingparty.StatusChecker's Check: nil for valid, an error wrapping relyingparty.ErrRevoked
// for revoked, any other error for no status) and counts the outcomes.
func auditRevocations(ctx context.Context, check func(context.Context, *token.Claims) error, revoked, kept []*token.Claims) revocationAudit {
	var a revocationAudit
	for _, c := range revoked {
		switch err := check(ctx, c); {
		case err == nil:
			a.lost++
		case !errors.Is(err, relyingparty.ErrRevoked):
			a.unavailable++
		}
	}
	for _, c := range kept {
		switch err := check(ctx, c); {
		case errors.Is(err, relyingparty.ErrRevoked):
			a.wrong++
		case err != nil:
			a.unavailable++
		}
	}
	return a
}
