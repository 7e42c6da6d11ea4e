package issuer

import (
	"bytes"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"encoding/json"
	"net/http/httptest"
	"reflect"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/go-jose/go-jose/v4"

	"github.com/passport-attest/passport/api"
	"github.com/passport-attest/passport/internal/faketpm"
)

// realAttestBody returns the JSON body an attester sends: software-TPM evidence over a
// 40-event log for a fresh nonce, an EC P-256 cnf key and an audience.
func realAttestBody(tb testing.TB) []byte {
	tb.Helper()
	tpm, err := faketpm.New(40)
	if err != nil {
		tb.Fatal(err)
	}
	k, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	nonce := make([]byte, api.NonceSize)
	_, _ = rand.Read(nonce)
	req, err := tpm.Evidence(nonce, &jose.JSONWebKey{Key: &k.PublicKey})
	if err != nil {
		tb.Fatal(err)
	}
	req.Audience = "rp.example"
	b, err := json.Marshal(req)
	if err != nil {
		tb.Fatal(err)
	}
	return b
}

// decodeBoth decodes body with decodeAttest and with the encoding/json path (decode).
func decodeBoth(body []byte) (fast, ref api.AttestRequest, fastErr, refErr error) {
	r := httptest.NewRequest("POST", api.PathAttest, bytes.NewReader(body))
	fastErr = decodeAttest(httptest.NewRecorder(), r, MaxAttestBody, &fast)
	r = httptest.NewRequest("POST", api.PathAttest, bytes.NewReader(body))
	refErr = decode(httptest.NewRecorder(), r, MaxAttestBody, &ref)
	return
}

// sameDecoding fails the test unless both decoders gave the same request or the same error.
func sameDecoding(t *testing.T, body []byte) {
	t.Helper()
	fast, ref, fastErr, refErr := decodeBoth(body)
	switch {
	case (fastErr == nil) != (refErr == nil):
		t.Fatalf("%.200q: decodeAttest error %v, encoding/json error %v", body, fastErr, refErr)
	case fastErr != nil && fastErr.Error() != refErr.Error():
		t.Fatalf("%.200q: errors differ:\n%v\n%v", body, fastErr, refErr)
	case fastErr == nil && !reflect.DeepEqual(fast, ref):
		t.Fatalf("%.200q: requests differ:\n%+v\n%+v", body, fast, ref)
	}
}

// TestDecodeAttestMatchesJSON: on the canonical body and on every shape the fast path hands
// back (escapes, other key spellings, duplicates, nulls, trailing data, bad base64 or JWK),
// decodeAttest gives what encoding/json gives; and the canonical body takes the fast path.
func TestDecodeAttestMatchesJSON(t *testing.T) {
	body := realAttestBody(t)
	var probe api.AttestRequest
	if !fastAttest(body, &probe) {
		t.Fatal("the attester's own body does not take the fast path")
	}
	s := string(body)
	cnf := s[strings.Index(s, `"cnf":`)+len(`"cnf":`) : strings.Index(s, `,"audience"`)]
	nonce := s[strings.Index(s, `"nonce":"`)+len(`"nonce":"`):]
	nonce = nonce[:strings.IndexByte(nonce, '"')]
	cases := []string{
		s,
		" \n\t" + s + " \r\n",
		strings.Replace(s, `"audience":"rp.example"`, `"audience":"rp.example","eat_nonce":"0123456789abcdef"`, 1),
		strings.Replace(s, `"audience":"rp.example"`, `"audience":"r\u00e9p"`, 1),
		strings.Replace(s, `"audience":"rp.example"`, "\"audience\":\"r\xc3\xa9p\"", 1),   // UTF-8 kept as is
		strings.Replace(s, `"audience":"rp.example"`, "\"audience\":\"r\xffp\"", 1),       // invalid UTF-8: replaced by encoding/json
		strings.Replace(s, `"audience":"rp.example"`, "\"audience\":\"r\tp\"", 1),         // control character: refused
		strings.Replace(s, `"audience":"rp.example"`, `"audience":"rp\"x"`, 1),            // escape
		strings.Replace(s, `"audience":"rp.example"`, `"audience":null`, 1),               // null: field untouched
		strings.Replace(s, `"audience":"rp.example"`, `"audience":7`, 1),                  // wrong type
		strings.Replace(s, `"audience"`, `"Audience"`, 1),                                 // encoding/json folds case
		strings.Replace(s, `"audience"`, `"audiencE"`, 1),                                 // idem
		strings.Replace(s, `"audience"`, `"aud"`, 1),                                      // unknown field
		strings.Replace(s, `"audience":"rp.example"`, `"audience":"a","audience":"b"`, 1), // duplicate: last wins
		strings.Replace(s, `"nonce":"`, `"nonce":"`+nonce+`","nonce":"`, 1),               // duplicate nonce
		strings.Replace(s, `"nonce":"`+nonce, `"nonce":"`+nonce+`=`, 1),                   // padding
		strings.Replace(s, `"nonce":"`+nonce, `"nonce":"`+strings.ReplaceAll(strings.ReplaceAll(nonce, "-", "+"), "_", "/"), 1),
		strings.Replace(s, `"nonce":"`+nonce, `"nonce":"!`+nonce[1:], 1),      // bad base64
		strings.Replace(s, `"nonce":"`+nonce, `"nonce":"\u0041`+nonce[1:], 1), // escaped base64
		strings.Replace(s, `"nonce":"`+nonce+`"`, `"nonce":null`, 1),
		strings.Replace(s, cnf, `null`, 1),
		strings.Replace(s, cnf, `{"kty":"EC"}`, 1),  // go-jose refuses
		strings.Replace(s, cnf, `{"kty":"EC",}`, 1), // not JSON
		strings.Replace(s, cnf, `[`+cnf+`]`, 1),
		strings.Replace(s, cnf, strings.Replace(cnf, `{`, `{"kid":"a\"}b",`, 1), 1), // braces in a string
		strings.Replace(s, `"cnf":`, `"cnf":`+cnf+`,"cnf":`, 1),
		s + "x",
		s + "}",
		s + "]",
		s + "{}",
		s[:len(s)-1],
		s[:len(s)/2],
		"\xef\xbb\xbf" + s,
		`{}`,
		`{"nonce":"AA"}`,
		``,
		`null`,
		`[]`,
		`{"nonce" "AA"}`,
		`{"nonce":"AA",}`,
		`{,"nonce":"AA"}`,
	}
	for _, c := range cases {
		sameDecoding(t, []byte(c))
	}
}

// FuzzDecodeAttest: whatever the input, decodeAttest answers what encoding/json answers.
func FuzzDecodeAttest(f *testing.F) {
	body := realAttestBody(f)
	f.Add(body)
	f.Add([]byte(`{"nonce":"AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8","attestation":"CgQBAgME","cnf":{"kty":"EC","crv":"P-256","x":"f83OJ3D2xF1Bg8vub9tLe1gHMzV76e8Tus9uPHvRVEU","y":"x_FEzRu9m36HLN_tue659LNpXW6pCyStikYjKIWI5a0"},"audience":"rp","eat_nonce":"abcdefgh"}`))
	f.Add([]byte(`{"nonce":"","attestation":null,"cnf":null}`))
	f.Add([]byte(`{"nonce":"AA==","attestation":"AA","eat_nonce":"x"} `))
	f.Fuzz(func(t *testing.T, b []byte) {
		sameDecoding(t, b)
	})
}

// BenchmarkDecodeAttest decodes the attester's body with decodeAttest and with the
// encoding/json path it replaces, one of each per iteration, and reports the median cost of
// each (ns/fast, ns/json) and their ratio (fast/json): interleaved medians stay steady on a
// shared machine.
func BenchmarkDecodeAttest(b *testing.B) {
	body := realAttestBody(b)
	fns := []func() error{
		func() error {
			var req api.AttestRequest
			return decodeAttest(nil, httptest.NewRequest("POST", api.PathAttest, bytes.NewReader(body)), MaxAttestBody, &req)
		},
		func() error {
			var req api.AttestRequest
			return decode(nil, httptest.NewRequest("POST", api.PathAttest, bytes.NewReader(body)), MaxAttestBody, &req)
		},
	}
	var times [2][]time.Duration
	b.ReportAllocs()
	for b.Loop() {
		for i, fn := range fns {
			t0 := time.Now()
			if err := fn(); err != nil {
				b.Fatal(err)
			}
			times[i] = append(times[i], time.Since(t0))
		}
	}
	med := func(d []time.Duration) float64 {
		slices.Sort(d)
		return float64(d[len(d)/2])
	}
	b.ReportMetric(med(times[0]), "ns/fast")
	b.ReportMetric(med(times[1]), "ns/json")
	b.ReportMetric(med(times[0])/med(times[1]), "fast/json")
}
