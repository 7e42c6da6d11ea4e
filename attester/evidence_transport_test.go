package attester_test

import (
	"encoding/base64"
	"encoding/json"
	"io"
	"net/http"
	"strings"
	"testing"

	"github.com/passport-attest/passport/api"
	"github.com/passport-attest/passport/attester"
)

// challenger answers every request without evidence 401 with a nonce, and records the
// requests (the evidence they carry, if any).
type challenger struct{ reqs []*http.Request }

func (c *challenger) RoundTrip(r *http.Request) (*http.Response, error) {
	c.reqs = append(c.reqs, r)
	h := http.Header{}
	status := http.StatusNoContent
	if r.Header.Get(api.HeaderEvidence) == "" {
		status = http.StatusUnauthorized
		h.Set(api.HeaderNonce, api.EncodeNonce(make([]byte, api.NonceSize)))
	}
	return &http.Response{StatusCode: status, Header: h, Body: io.NopCloser(strings.NewReader("")), Request: r}, nil
}

// TestEvidenceTransportBindsOrigin: the evidence answering a challenge binds the origin of the
// URL the transport called (in its Origin and in the quote's extraData); a URL whose host is
// not ASCII gets no evidence at all, since its origin cannot be told apart from an ASCII
// look-alike ("vİctim" lower-cases to "victim" while an HTTP client dials its xn-- form).
func TestEvidenceTransportBindsOrigin(t *testing.T) {
	a, _ := newSimAttester(t, nil)
	for url, want := range map[string]string{
		"https://RP.example:443/resource": "https://rp.example",
		"http://127.0.0.1:8080/x":         "http://127.0.0.1:8080",
		"https://v\u0130ctim.example/r":   "",
		"https://v%C4%B0ctim.example/r":   "",
	} {
		c := &challenger{}
		cl := &http.Client{Transport: &attester.EvidenceTransport{Attester: a, Base: c}}
		resp, err := cl.Get(url)
		if err != nil {
			t.Fatalf("%s: %v", url, err)
		}
		resp.Body.Close()
		if want == "" {
			if resp.StatusCode != http.StatusUnauthorized || len(c.reqs) != 1 {
				t.Errorf("%s: %d after %d requests, want the 401 returned and no evidence sent", url, resp.StatusCode, len(c.reqs))
			}
			continue
		}
		if len(c.reqs) != 2 {
			t.Fatalf("%s: %d requests, want 2", url, len(c.reqs))
		}
		b, err := base64.RawURLEncoding.DecodeString(c.reqs[1].Header.Get(api.HeaderEvidence))
		if err != nil {
			t.Fatal(err)
		}
		var ev api.AttestRequest
		if err := json.Unmarshal(b, &ev); err != nil {
			t.Fatal(err)
		}
		if ev.Origin != want {
			t.Errorf("%s: evidence origin %q, want %q", url, ev.Origin, want)
		}
	}
}

// TestEvidenceTransportHostOverride: a request whose Host header names another host than its
// URL (a forward proxy or a Host-routed front end sends it there) gets no evidence; the same
// host spelled differently still does.
func TestEvidenceTransportHostOverride(t *testing.T) {
	a, _ := newSimAttester(t, nil)
	for host, answered := range map[string]bool{"a.example": false, "VICTIM.example:80": true, "victim.example:8080": false} {
		c := &challenger{}
		cl := &http.Client{Transport: &attester.EvidenceTransport{Attester: a, Base: c}}
		req, _ := http.NewRequest(http.MethodGet, "http://victim.example/resource", nil)
		req.Host = host
		resp, err := cl.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if got := len(c.reqs) == 2; got != answered {
			t.Errorf("Host %q: evidence sent %v, want %v", host, got, answered)
		}
	}
}
