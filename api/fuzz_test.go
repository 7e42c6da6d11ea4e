package api_test

import (
	"bytes"
	"encoding/json"
	"testing"

	"github.com/passport-attest/passport/api"
)

// FuzzAttestRequestJSON decodes arbitrary JSON as the issuer does (unknown fields refused) and
// requires a decoded request to survive an encode/decode round trip unchanged.
func FuzzAttestRequestJSON(f *testing.F) {
	f.Add([]byte(`{"nonce":"AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8","attestation":"CgQBAgME","cnf":{"kty":"EC","crv":"P-256","x":"f83OJ3D2xF1Bg8vub9tLe1gHMzV76e8Tus9uPHvRVEU","y":"x_FEzRu9m36HLN_tue659LNpXW6pCyStikYjKIWI5a0"},"audience":"rp"}`))
	f.Add([]byte(`{"nonce":"","attestation":null,"cnf":null}`))
	f.Add([]byte(`{"nonce":"AA==","attestation":"AA","eat_nonce":"x"}`))
	f.Fuzz(func(t *testing.T, body []byte) {
		var req api.AttestRequest
		dec := json.NewDecoder(bytes.NewReader(body))
		dec.DisallowUnknownFields()
		if err := dec.Decode(&req); err != nil {
			return
		}
		out, err := json.Marshal(&req)
		if err != nil {
			if req.CNF != nil {
				return // a JWK go-jose decodes but cannot re-encode is not ours to judge
			}
			t.Fatalf("decoded request does not encode: %v", err)
		}
		var again api.AttestRequest
		if err := json.Unmarshal(out, &again); err != nil {
			t.Fatalf("re-encoded request does not decode: %v\n%s", err, out)
		}
		if !bytes.Equal(again.Nonce, req.Nonce) || !bytes.Equal(again.Attestation, req.Attestation) ||
			again.Audience != req.Audience || again.EATNonce != req.EATNonce {
			t.Fatalf("round trip changed the request:\n%s", out)
		}
	})
}
