package api_test

import (
	"bytes"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"encoding/json"
	"testing"

	"github.com/go-jose/go-jose/v4"

	"github.com/passport-attest/passport/api"
)

func TestExtraDataBindsNonceAndKey(t *testing.T) {
	k1, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	k2, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	n1 := bytes.Repeat([]byte{1}, api.NonceSize)
	n2 := bytes.Repeat([]byte{2}, api.NonceSize)
	j1 := &jose.JSONWebKey{Key: &k1.PublicKey}
	a, err := api.ExtraData(n1, j1)
	if err != nil || len(a) != api.ExtraDataSize {
		t.Fatalf("%v %d", err, len(a))
	}
	again, _ := api.ExtraData(n1, &jose.JSONWebKey{Key: &k1.PublicKey, KeyID: "ignored"})
	otherKey, _ := api.ExtraData(n1, &jose.JSONWebKey{Key: &k2.PublicKey})
	otherNonce, _ := api.ExtraData(n2, j1)
	if !bytes.Equal(a, again) || bytes.Equal(a, otherKey) || bytes.Equal(a, otherNonce) {
		t.Fatal("binding is not a function of exactly (nonce, key thumbprint)")
	}
	for name, f := range map[string]func() error{
		"short nonce": func() error { _, err := api.ExtraData(n1[:31], j1); return err },
		"long nonce":  func() error { _, err := api.ExtraData(append(n1, 0), j1); return err },
		"no key":      func() error { _, err := api.ExtraData(n1, nil); return err },
		"private key": func() error { _, err := api.ExtraData(n1, &jose.JSONWebKey{Key: k1}); return err },
	} {
		if f() == nil {
			t.Errorf("%s accepted", name)
		}
	}
}

// TestExtraDataForBindsOrigin: evidence made for one relying party's origin binds it; another
// origin, none, or a non-canonical spelling gives another binding or an error.
func TestExtraDataForBindsOrigin(t *testing.T) {
	k, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	n := bytes.Repeat([]byte{1}, api.NonceSize)
	j := &jose.JSONWebKey{Key: &k.PublicKey}
	plain, _ := api.ExtraData(n, j)
	none, _ := api.ExtraDataFor(n, j, "")
	a, err := api.ExtraDataFor(n, j, "https://rp.example")
	if err != nil || len(a) != api.ExtraDataSize {
		t.Fatalf("%v %d", err, len(a))
	}
	other, _ := api.ExtraDataFor(n, j, "https://evil.example")
	if !bytes.Equal(plain, none) || bytes.Equal(a, plain) || bytes.Equal(a, other) {
		t.Fatal("the origin is not bound, or the empty origin differs from ExtraData")
	}
	for _, bad := range []string{"https://RP.example", "https://rp.example/", "https://rp.example:443", "rp.example", "ftp://rp.example"} {
		if _, err := api.ExtraDataFor(n, j, bad); err == nil {
			t.Errorf("origin %q accepted", bad)
		}
	}
}

func TestOrigin(t *testing.T) {
	for in, want := range map[string]string{
		"https://RP.Example:443/a?b#c":  "https://rp.example",
		"http://rp.example:80":          "http://rp.example",
		"https://rp.example:8443/x":     "https://rp.example:8443",
		"http://127.0.0.1:18080/v1":     "http://127.0.0.1:18080",
		"https://[::1]:9443/":           "https://[::1]:9443",
		"https://user:pw@rp.example/ok": "https://rp.example",
		"https://[0:0:0:0:0:0:0:1]:443": "https://[::1]",
		"https://rp.example:0443/":      "https://rp.example",
		"http://xn--bcher-kva.example":  "http://xn--bcher-kva.example",
	} {
		if got, err := api.Origin(in); err != nil || got != want {
			t.Errorf("Origin(%q) = %q, %v; want %q", in, got, err, want)
		}
	}
	for _, bad := range []string{"", "rp.example", "/path", "ftp://rp.example", "https://", "mailto:a@b", "urn:x:y",
		"http://v\u0130ctim.test", "http://v%C4%B0ctim.test", "https://b\u00fccher.example", "http://\u212aey.example", // non-ASCII hosts
		"https://[fe80::1%25eth0]:8443", "https://rp.example:0", "https://rp.example:65536"} {
		if got, err := api.Origin(bad); err == nil {
			t.Errorf("Origin(%q) = %q, want an error", bad, got)
		}
	}
}

func TestBytesJSON(t *testing.T) {
	in := api.Bytes{0xfb, 0xff, 0x00}
	b, _ := json.Marshal(in)
	if string(b) != `"-_8A"` {
		t.Fatalf("got %s, want unpadded base64url", b)
	}
	for _, s := range []string{`"-_8A"`, `"+/8A"`, `"+/8A"`} {
		var out api.Bytes
		if err := json.Unmarshal([]byte(s), &out); err != nil || !bytes.Equal(out, in) {
			t.Fatalf("%s: %v %x", s, err, out)
		}
	}
	var out api.Bytes
	if err := json.Unmarshal([]byte(`"!!"`), &out); err == nil {
		t.Fatal("garbage accepted")
	}
}

// TestAudienceOfOrigin: evidence bound to an origin is minted only for an audience that is a
// plain URL of that origin: not another host that merely starts or ends like it, not a URL
// hiding the origin in its userinfo, and no audience with a query or fragment.
func TestAudienceOfOrigin(t *testing.T) {
	const origin = "https://rp.example"
	for aud, want := range map[string]bool{
		"https://rp.example":                     true,
		"https://RP.example:443/api":             true,
		"https://rp.example.evil.example":        false,
		"https://evil.example/rp.example":        false,
		"https://rp.example@evil.example":        false,
		"https://evil.example@rp.example":        false, // userinfo: refused even when the host matches
		"https://rp.example/?a=b":                false,
		"https://rp.example/#x":                  false,
		"http://rp.example":                      false,
		"https://rp.example:8443":                false,
		"rp.example":                             false,
		"https://r\u0130.example":                false,
		"https://xn--rp-example-xyz.example/api": false,
	} {
		if got := api.AudienceOfOrigin(aud, origin); got != want {
			t.Errorf("AudienceOfOrigin(%q) = %v, want %v", aud, got, want)
		}
	}
}
