package issuer

import "testing"

// TestOfOrigin: evidence bound to an origin is minted only for an audience that is a plain URL
// of that origin: not another host that merely starts or ends like it, not a URL hiding the
// origin in its userinfo, and no audience with a query or fragment.
func TestOfOrigin(t *testing.T) {
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
		if got := ofOrigin(aud, origin); got != want {
			t.Errorf("ofOrigin(%q) = %v, want %v", aud, got, want)
		}
	}
}
