package relyingparty

import (
	"context"
	"crypto"
	"crypto/hmac"
	"crypto/sha256"
	"crypto/x509"
	"encoding/json"
	"errors"
	"runtime"
	"strings"
	"testing"
	"time"

	"github.com/coreos/go-oidc/v3/oidc"

	"github.com/passport-attest/passport/token"
)

func TestVerify(t *testing.T) {
	clk := newClock()
	now := clk.Now()
	iss := newSigner(t)
	attacker := newSigner(t)

	with := func(f func(*token.Claims)) token.Claims {
		c := claimsAt(t, now)
		f(&c)
		return c
	}
	hdr := func(f func(map[string]any)) map[string]any {
		h := iss.header()
		f(h)
		return h
	}
	pubDER, err := x509.MarshalPKIXPublicKey(&iss.priv.PublicKey)
	if err != nil {
		t.Fatal(err)
	}
	attackerJWK, err := json.Marshal(attacker.key.Public())
	if err != nil {
		t.Fatal(err)
	}

	tests := []struct {
		name  string
		tok   func() string
		mod   func(*Config)
		want  error // nil: accepted
		check func(*testing.T, *token.Claims)
	}{
		{name: "valid", tok: func() string { return iss.sign(t, claimsAt(t, now)) },
			check: func(t *testing.T, c *token.Claims) {
				if c.Issuer != testIssuer || c.Submods[token.SubmodTPM].Measurements.Bank != "sha256" {
					t.Errorf("claims not decoded: %+v", c)
				}
			}},
		{name: "another audience", want: token.ErrAudience,
			tok: func() string {
				return iss.sign(t, with(func(c *token.Claims) { c.Audience = token.Audience{"https://other.example"} }))
			}},
		{name: "wrong issuer", want: token.ErrIssuer,
			tok: func() string { return iss.sign(t, with(func(c *token.Claims) { c.Issuer = "https://evil.example" })) }},
		{name: "expired", want: token.ErrExpired,
			tok: func() string {
				return iss.sign(t, with(func(c *token.Claims) { c.Expiry = now.Add(-time.Minute).Unix() }))
			}},
		{name: "expired within leeway", tok: func() string {
			return iss.sign(t, with(func(c *token.Claims) { c.Expiry = now.Add(-20 * time.Second).Unix() }))
		}},
		{name: "expired within leeway, leeway disabled", want: token.ErrExpired, mod: func(c *Config) { c.Leeway = -1 },
			tok: func() string {
				return iss.sign(t, with(func(c *token.Claims) { c.Expiry = now.Add(-20 * time.Second).Unix() }))
			}},
		{name: "nbf in the future", want: token.ErrNotYetValid,
			tok: func() string {
				return iss.sign(t, with(func(c *token.Claims) { c.NotBefore = now.Add(5 * time.Minute).Unix() }))
			}},
		{name: "nbf within leeway", tok: func() string {
			return iss.sign(t, with(func(c *token.Claims) { c.NotBefore = now.Add(10 * time.Second).Unix() }))
		}},
		// go-oidc allows nbf 5 minutes ahead of the clock we shift back by the leeway: at the
		// largest leeway, nbf up to the leeway must still pass both checks.
		{name: "nbf at the largest leeway", mod: func(c *Config) { c.Leeway = MaxLeeway }, tok: func() string {
			return iss.sign(t, with(func(c *token.Claims) { c.NotBefore = now.Add(MaxLeeway).Unix() }))
		}},
		{name: "nbf past the largest leeway", want: token.ErrNotYetValid, mod: func(c *Config) { c.Leeway = MaxLeeway },
			tok: func() string {
				return iss.sign(t, with(func(c *token.Claims) { c.NotBefore = now.Add(MaxLeeway + time.Second).Unix() }))
			}},
		{name: "alg none", want: ErrAlgorithm, tok: func() string {
			h, _ := json.Marshal(map[string]any{"alg": "none", "kid": iss.kid(), "typ": "eat+jwt"})
			p, _ := json.Marshal(claimsAt(t, now))
			return b64(h) + "." + b64(p) + "."
		}},
		{name: "HS256 keyed with the public key (alg confusion)", want: ErrAlgorithm, tok: func() string {
			h, _ := json.Marshal(map[string]any{"alg": "HS256", "kid": iss.kid(), "typ": "eat+jwt"})
			p, _ := json.Marshal(claimsAt(t, now))
			in := b64(h) + "." + b64(p)
			m := hmac.New(sha256.New, pubDER)
			m.Write([]byte(in))
			return in + "." + b64(m.Sum(nil))
		}},
		{name: "ES384 not in the allowlist", want: ErrAlgorithm,
			tok: func() string {
				return iss.forge(t, hdr(func(h map[string]any) { h["alg"] = "ES384" }), claimsAt(t, now))
			}},
		{name: "unknown key", want: ErrUnknownKey, tok: func() string { return attacker.sign(t, claimsAt(t, now)) }},
		{name: "no kid", want: ErrUnknownKey,
			tok: func() string { return iss.forge(t, hdr(func(h map[string]any) { delete(h, "kid") }), claimsAt(t, now)) }},
		{name: "bad signature and expired", want: ErrBadSignature, tok: func() string {
			h := iss.header() // the issuer's kid, the attacker's signature
			return attacker.forge(t, h, with(func(c *token.Claims) { c.Expiry = now.Add(-time.Hour).Unix() }))
		}},
		{name: "tampered payload", want: ErrBadSignature, tok: func() string {
			good := strings.Split(iss.sign(t, claimsAt(t, now)), ".")
			p, _ := json.Marshal(with(func(c *token.Claims) { c.Audience = token.Audience{testAudience, "x"} }))
			return good[0] + "." + b64(p) + "." + good[2]
		}},
		{name: "typ missing", want: ErrType,
			tok: func() string { return iss.forge(t, hdr(func(h map[string]any) { delete(h, "typ") }), claimsAt(t, now)) }},
		{name: "typ JWT", want: ErrType,
			tok: func() string { return iss.forge(t, hdr(func(h map[string]any) { h["typ"] = "JWT" }), claimsAt(t, now)) }},
		{name: "typ application/EAT+JWT", tok: func() string {
			return iss.forge(t, hdr(func(h map[string]any) { h["typ"] = "application/EAT+JWT" }), claimsAt(t, now))
		}},
		{name: "typ not a string", want: ErrMalformed,
			tok: func() string { return iss.forge(t, hdr(func(h map[string]any) { h["typ"] = 7 }), claimsAt(t, now)) }},
		{name: "crit header", want: ErrHeader, tok: func() string {
			return iss.forge(t, hdr(func(h map[string]any) { h["crit"] = []string{"exp"}; h["exp"] = 1 }), claimsAt(t, now))
		}},
		{name: "b64 header", want: ErrHeader,
			tok: func() string { return iss.forge(t, hdr(func(h map[string]any) { h["b64"] = false }), claimsAt(t, now)) }},
		{name: "jwk header with the attacker's key", want: ErrHeader, tok: func() string {
			h := attacker.header()
			h["jwk"] = json.RawMessage(attackerJWK)
			return attacker.forge(t, h, claimsAt(t, now))
		}},
		{name: "jku header", want: ErrHeader, tok: func() string {
			return attacker.forge(t, map[string]any{"alg": "ES256", "kid": iss.kid(), "typ": "eat+jwt", "jku": "https://evil.example/jwks"}, claimsAt(t, now))
		}},
		{name: "x5u header", want: ErrHeader, tok: func() string {
			return iss.forge(t, hdr(func(h map[string]any) { h["x5u"] = "https://evil.example/cert" }), claimsAt(t, now))
		}},
		{name: "1 MB of dots", want: ErrTooLarge, tok: func() string { return strings.Repeat(".", 1<<20) }},
		{name: "just over the limit", want: ErrTooLarge, tok: func() string { return strings.Repeat("A", DefaultMaxTokenSize+1) }},
		{name: "two segments", want: ErrMalformed, tok: func() string { return "eyJhbGciOiJFUzI1NiJ9.e30" }},
		{name: "four segments", want: ErrMalformed, tok: func() string { return iss.sign(t, claimsAt(t, now)) + ".AA" }},
		{name: "newline inside", want: ErrMalformed, tok: func() string {
			s := iss.sign(t, claimsAt(t, now))
			return s[:10] + "\n" + s[10:]
		}},
		{name: "JSON serialization", want: ErrMalformed, tok: func() string { return `{"payload":"e30","signatures":[]}` }},
		{name: "empty", want: ErrMalformed, tok: func() string { return "" }},
		{name: "payload not JSON", want: token.ErrMalformed, tok: func() string { return iss.sign(t, "just a string") }},
		{name: "empty aud array", want: token.ErrAudience,
			tok: func() string { return iss.sign(t, with(func(c *token.Claims) { c.Audience = token.Audience{} })) }},
		{name: "aud array of empty strings", want: token.ErrAudience,
			tok: func() string { return iss.sign(t, with(func(c *token.Claims) { c.Audience = token.Audience{"", ""} })) }},
		{name: "aud array containing the audience", tok: func() string {
			return iss.sign(t, with(func(c *token.Claims) { c.Audience = token.Audience{"https://other.example", testAudience} }))
		}},
		{name: "warning tier at default MinStatus", want: token.ErrStatus,
			tok: func() string {
				return iss.sign(t, with(func(c *token.Claims) { c.Submods[token.SubmodTPM].Status = token.TierWarning }))
			}},
		{name: "warning vector claim at default MinStatus", want: token.ErrStatus, tok: func() string {
			return iss.sign(t, with(func(c *token.Claims) {
				c.Submods[token.SubmodTPM].Vector[token.ClaimExecutables] = token.ValueUnrecognized
			}))
		}},
		{name: "warning tier with MinStatus warning", mod: func(c *Config) { c.MinStatus = token.TierWarning },
			tok: func() string {
				return iss.sign(t, with(func(c *token.Claims) { c.Submods[token.SubmodTPM].Status = token.TierWarning }))
			}},
		{name: "contraindicated with MinStatus warning", want: token.ErrStatus, mod: func(c *Config) { c.MinStatus = token.TierWarning },
			tok: func() string {
				return iss.sign(t, with(func(c *token.Claims) { c.Submods[token.SubmodTPM].Status = token.TierContraindicated }))
			}},
		{name: "dotted ear.status", tok: func() string {
			c := claimsAt(t, now)
			b, _ := json.Marshal(c)
			var m map[string]any
			_ = json.Unmarshal(b, &m)
			m["submods"] = map[string]any{"tpm": map[string]any{"ear.status": "affirming", "ear.appraisal-policy-id": "p"}}
			return iss.sign(t, m)
		}, check: func(t *testing.T, c *token.Claims) {
			if s := c.Submods[token.SubmodTPM]; s.Status != token.TierAffirming || s.PolicyID != "p" {
				t.Errorf("dotted submodule decoded as %+v", s)
			}
		}},
		{name: "dotted ear.status warning", want: token.ErrStatus, tok: func() string {
			c := claimsAt(t, now)
			b, _ := json.Marshal(c)
			var m map[string]any
			_ = json.Unmarshal(b, &m)
			m["submods"] = map[string]any{"tpm": map[string]any{"ear.status": "warning"}}
			return iss.sign(t, m)
		}},
		{name: "no jti", want: token.ErrMalformed,
			tok: func() string { return iss.sign(t, with(func(c *token.Claims) { c.ID = "" })) }},
		{name: "no exp", want: token.ErrMalformed,
			tok: func() string { return iss.sign(t, with(func(c *token.Claims) { c.Expiry = 0 })) }},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			v := newTestVerifier(t, iss, clk, tc.mod)
			c, err := v.Verify(context.Background(), tc.tok())
			if tc.want == nil {
				if err != nil {
					t.Fatalf("Verify: %v", err)
				}
				if tc.check != nil {
					tc.check(t, c)
				}
				return
			}
			if !errors.Is(err, tc.want) {
				t.Fatalf("Verify error = %v, want %v", err, tc.want)
			}
			if c != nil {
				t.Fatalf("claims returned with an error")
			}
		})
	}
}

// TestOversizedConstantMemory: a huge token is refused before the key set is asked, with the
// same few allocations whatever its size.
func TestOversizedConstantMemory(t *testing.T) {
	iss := newSigner(t)
	ks := &countingKeySet{inner: NewStaticKeySet(iss.ring.PublicSet())}
	v := newTestVerifier(t, iss, newClock(), func(c *Config) { c.KeySet = ks })
	huge := strings.Repeat(".", 1<<20)
	ctx := context.Background()
	if allocs := testing.AllocsPerRun(50, func() { _, _ = v.Verify(ctx, huge) }); allocs > 8 {
		t.Errorf("%v allocations per refusal of a 1 MiB token", allocs)
	}
	var before, after runtime.MemStats
	runtime.ReadMemStats(&before)
	for range 100 {
		_, _ = v.Verify(ctx, huge)
	}
	runtime.ReadMemStats(&after)
	if perOp := (after.TotalAlloc - before.TotalAlloc) / 100; perOp > 1024 {
		t.Errorf("%d bytes allocated per refusal of a 1 MiB token", perOp)
	}
	if ks.n.Load() != 0 {
		t.Errorf("key set called %d times for oversized tokens", ks.n.Load())
	}
}

// TestSignatureBeforeClaims: a forged token is reported as forged, whatever else is wrong.
func TestSignatureBeforeClaims(t *testing.T) {
	clk := newClock()
	iss, attacker := newSigner(t), newSigner(t)
	v := newTestVerifier(t, iss, clk, nil)
	c := claimsAt(t, clk.Now())
	c.Issuer, c.Audience, c.Expiry = "https://evil.example", token.Audience{"x"}, 1
	_, err := v.Verify(context.Background(), attacker.forge(t, iss.header(), c))
	if !errors.Is(err, ErrBadSignature) {
		t.Fatalf("err = %v, want ErrBadSignature", err)
	}
	for _, e := range []error{token.ErrExpired, token.ErrIssuer, token.ErrAudience} {
		if errors.Is(err, e) {
			t.Errorf("bad signature also reported as %v", e)
		}
	}
}

func TestNewVerifierConfig(t *testing.T) {
	iss := newSigner(t)
	ks := NewStaticKeySet(iss.ring.PublicSet())
	base := Config{Issuer: testIssuer, Audience: testAudience, KeySet: ks}
	bad := map[string]func(*Config){
		"no issuer":         func(c *Config) { c.Issuer = "" },
		"no audience":       func(c *Config) { c.Audience = "" },
		"no key set":        func(c *Config) { c.KeySet = nil },
		"alg none":          func(c *Config) { c.Algorithms = []string{"none"} },
		"alg HS256":         func(c *Config) { c.Algorithms = []string{"ES256", "HS256"} },
		"alg unknown":       func(c *Config) { c.Algorithms = []string{"ES257"} },
		"huge leeway":       func(c *Config) { c.Leeway = time.Hour },
		"negative max size": func(c *Config) { c.MaxTokenSize = -1 },
		"CEL syntax":        func(c *Config) { c.RequireCEL = "status ==" },
		"CEL not bool":      func(c *Config) { c.RequireCEL = "status" },
		"CEL unknown var":   func(c *Config) { c.RequireCEL = "nope == 1" },
		// An unknown tier ranked worst and so accepted every token, contraindicated too.
		"unknown MinStatus":         func(c *Config) { c.MinStatus = token.Tier(3) },
		"contraindicated MinStatus": func(c *Config) { c.MinStatus = token.TierContraindicated },
	}
	for name, mod := range bad {
		t.Run(name, func(t *testing.T) {
			cfg := base
			mod(&cfg)
			if v, err := NewVerifier(cfg); !errors.Is(err, ErrConfig) || v != nil {
				t.Fatalf("NewVerifier = %v, %v; want ErrConfig", v, err)
			}
		})
	}
	if _, err := NewVerifier(base); err != nil {
		t.Fatalf("minimal config: %v", err)
	}
}

func TestRequire(t *testing.T) {
	clk := newClock()
	iss := newSigner(t)
	ctx := context.Background()
	errDenied := errors.New("denied")

	t.Run("func refuses", func(t *testing.T) {
		v := newTestVerifier(t, iss, clk, func(c *Config) {
			c.Require = func(c *token.Claims) error {
				if c.Subject == "" {
					return nil
				}
				return errDenied
			}
		})
		_, err := v.Verify(ctx, iss.sign(t, claimsAt(t, clk.Now())))
		if !errors.Is(err, ErrRequirement) || !errors.Is(err, errDenied) {
			t.Fatalf("err = %v, want ErrRequirement wrapping the callback's error", err)
		}
	})
	t.Run("func runs on cache hits", func(t *testing.T) {
		calls := 0
		v := newTestVerifier(t, iss, clk, func(c *Config) {
			c.Require = func(*token.Claims) error { calls++; return nil }
		})
		tok := iss.sign(t, claimsAt(t, clk.Now()))
		for range 3 {
			if _, err := v.Verify(ctx, tok); err != nil {
				t.Fatal(err)
			}
		}
		if calls != 3 {
			t.Fatalf("Require called %d times for 3 presentations", calls)
		}
	})
	for _, tc := range []struct {
		expr string
		ok   bool
	}{
		{`status == "affirming" && claims.submods.tpm.measurements.secure_boot == true`, true},
		{`claims.submods.tpm.ear_trustworthiness_vector["executables"] == 3.0`, true},
		{`claims.eat_profile == "something else"`, false},
		{`claims.missing_claim == 1`, false}, // evaluation error: refused, not accepted
	} {
		t.Run("CEL "+tc.expr, func(t *testing.T) {
			v := newTestVerifier(t, iss, clk, func(c *Config) { c.RequireCEL = tc.expr })
			_, err := v.Verify(ctx, iss.sign(t, claimsAt(t, clk.Now())))
			if tc.ok && err != nil {
				t.Fatalf("refused: %v", err)
			}
			if !tc.ok && !errors.Is(err, ErrRequirement) {
				t.Fatalf("err = %v, want ErrRequirement", err)
			}
		})
	}
}

// TestForeignKeySet: a KeySet that is not ours (go-oidc's StaticKeySet) works, and its untyped
// failures are reported as ErrBadSignature.
func TestForeignKeySet(t *testing.T) {
	clk := newClock()
	iss, attacker := newSigner(t), newSigner(t)
	ks := &oidc.StaticKeySet{PublicKeys: []crypto.PublicKey{&iss.priv.PublicKey}}
	v := newTestVerifier(t, iss, clk, func(c *Config) { c.KeySet = ks })
	if _, err := v.Verify(context.Background(), iss.sign(t, claimsAt(t, clk.Now()))); err != nil {
		t.Fatalf("valid token: %v", err)
	}
	_, err := v.Verify(context.Background(), attacker.sign(t, claimsAt(t, clk.Now())))
	if !errors.Is(err, ErrBadSignature) {
		t.Fatalf("err = %v, want ErrBadSignature", err)
	}
}

// TestReturnedClaimsAreCopies: a caller editing the returned claims does not change what the
// next presentation of the token yields.
func TestReturnedClaimsAreCopies(t *testing.T) {
	clk := newClock()
	iss := newSigner(t)
	v := newTestVerifier(t, iss, clk, nil)
	tok := iss.sign(t, claimsAt(t, clk.Now()))
	c1, err := v.Verify(context.Background(), tok)
	if err != nil {
		t.Fatal(err)
	}
	c1.Issuer, c1.Audience = "tampered", nil
	c2, err := v.Verify(context.Background(), tok)
	if err != nil || c2.Issuer != testIssuer {
		t.Fatalf("second presentation: %v, %+v", err, c2)
	}
}
