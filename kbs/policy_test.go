package kbs_test

import (
	"context"
	"crypto/elliptic"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/passport-attest/passport/api"
	"github.com/passport-attest/passport/kbs"
	"github.com/passport-attest/passport/token"
)

func rid(s string) api.ResourceID {
	id, err := api.ParseResourceID(s)
	if err != nil {
		panic(err)
	}
	return id
}

// TestPolicyRules: first match wins, globs never cross "/", the default applies elsewhere, and
// every variable (claims, status, resource) is usable.
func TestPolicyRules(t *testing.T) {
	f := &fixture{now: t0}
	f.cnf = ecKey(t, elliptic.P256())
	p, err := kbs.ParsePolicy([]byte(`
default: 'status == "affirming" && resource.repository != "locked"'
rules:
  - resource: "default/key/disk"
    allow: 'claims.submods.tpm.measurements.pcrs["7"] == "` + pcr7(f) + `" && claims.aud == "kbs"'
  - resource: "default/key/*"
    allow: 'false'
  - resource: "public/*/*"
    allow: 'status in ["affirming", "warning"] && resource.name == "public/" + resource.type + "/" + resource.tag'
    bearer: true
  - resource: "*/cert/*"
    allow: 'claims.sub == "ak-thumbprint-1" && claims.submods.tpm.ear_status == "affirming"'
`))
	if err != nil {
		t.Fatal(err)
	}
	affirming := f.claims()
	warning := f.claims()
	warning.Submods[token.SubmodTPM].Status = token.TierWarning
	otherSub := f.claims()
	otherSub.Subject = "ak-thumbprint-2"
	ctx := context.Background()
	for _, tc := range []struct {
		id     string
		c      token.Claims
		allow  bool
		bearer bool
		rule   string
	}{
		{"default/key/disk", affirming, true, false, "default/key/disk"},
		{"default/key/other", affirming, false, false, "default/key/*"},
		{"public/config/motd", warning, true, true, "public/*/*"},
		{"public/config/motd", affirming, true, true, "public/*/*"},
		{"any/cert/web", affirming, true, false, "*/cert/*"},
		{"any/cert/web", otherSub, false, false, "*/cert/*"},
		{"any/thing/else", affirming, true, false, "*/*/*"},
		{"any/thing/else", warning, false, false, "*/*/*"},
		{"locked/thing/else", affirming, false, false, "*/*/*"},
	} {
		c := tc.c
		err := p.Allows(ctx, rid(tc.id), &c)
		if (err == nil) != tc.allow {
			t.Errorf("%s for %s: %v, want allow=%v", tc.id, c.Subject, err, tc.allow)
		}
		if err != nil && !errors.Is(err, kbs.ErrForbidden) {
			t.Errorf("%s: refusal %v does not match ErrForbidden", tc.id, err)
		}
		if p.BearerAllowed(rid(tc.id)) != tc.bearer {
			t.Errorf("%s: bearer %v", tc.id, !tc.bearer)
		}
		if got := p.RuleFor(rid(tc.id)); got != tc.rule {
			t.Errorf("%s: rule %s, want %s", tc.id, got, tc.rule)
		}
	}
}

// TestDefaultPolicy: affirming only, DPoP required.
func TestDefaultPolicy(t *testing.T) {
	f := &fixture{now: t0}
	f.cnf = ecKey(t, elliptic.P256())
	p := kbs.DefaultPolicy()
	c := f.claims()
	if err := p.Allows(context.Background(), rid(diskKey), &c); err != nil {
		t.Fatal(err)
	}
	c.Submods[token.SubmodTPM].Vector[token.ClaimHardware] = token.ValueUnrecognizedHW
	if err := p.Allows(context.Background(), rid(diskKey), &c); !errors.Is(err, kbs.ErrForbidden) {
		t.Fatalf("contraindicated hardware claim: %v", err)
	}
	if p.BearerAllowed(rid(diskKey)) {
		t.Fatal("the default policy allows bearer tokens")
	}
}

// TestPolicyEvaluationErrorsRefuse: an expression that fails at run time (a missing claim)
// refuses instead of releasing.
func TestPolicyEvaluationErrorsRefuse(t *testing.T) {
	f := &fixture{now: t0}
	f.cnf = ecKey(t, elliptic.P256())
	p, err := kbs.ParsePolicy([]byte(`rules: [{resource: "*/*/*", allow: 'claims.no_such_claim == "x" || true'}]`))
	if err != nil {
		t.Fatal(err)
	}
	c := f.claims()
	// CEL's || absorbs errors when one side is true: this one releases.
	if err := p.Allows(context.Background(), rid(diskKey), &c); err != nil {
		t.Fatalf("absorbed error: %v", err)
	}
	p, _ = kbs.ParsePolicy([]byte(`rules: [{resource: "*/*/*", allow: 'claims.no_such_claim == "x"'}]`))
	if err := p.Allows(context.Background(), rid(diskKey), &c); !errors.Is(err, kbs.ErrForbidden) {
		t.Fatalf("missing claim: %v", err)
	}
}

// TestPolicyFileErrors: every mistake is caught at load time.
func TestPolicyFileErrors(t *testing.T) {
	for name, doc := range map[string]string{
		"unknown field":      `rules: [{resource: "a/b/c", allow: "true", bearr: true}]`,
		"unknown top field":  `rule: []`,
		"two components":     `rules: [{resource: "a/*", allow: "true"}]`,
		"bad glob":           `rules: [{resource: "a/b/[", allow: "true"}]`,
		"not bool":           `rules: [{resource: "a/b/c", allow: "1 + 1"}]`,
		"syntax":             `rules: [{resource: "a/b/c", allow: "status ==="}]`,
		"unknown variable":   `rules: [{resource: "a/b/c", allow: "tier == 2"}]`,
		"default not bool":   `default: '"affirming"'`,
		"not YAML":           "rules: [",
		"status not string":  `rules: [{resource: "a/b/c", allow: "status == 2"}]`,
		"bearer not boolean": `rules: [{resource: "a/b/c", bearer: "sometimes"}]`,
	} {
		if _, err := kbs.ParsePolicy([]byte(doc)); !errors.Is(err, kbs.ErrPolicy) {
			t.Errorf("%s: %v, want ErrPolicy", name, err)
		}
	}
	// Empty documents mean the default policy.
	for _, doc := range []string{"", "# nothing\n", "rules: []"} {
		if _, err := kbs.ParsePolicy([]byte(doc)); err != nil {
			t.Errorf("%q: %v", doc, err)
		}
	}
	dir := t.TempDir()
	path := filepath.Join(dir, "policy.yaml")
	if err := os.WriteFile(path, []byte(`rules: [{resource: "a/b/c", allow: "status =="}]`), 0o600); err != nil {
		t.Fatal(err)
	}
	if _, err := kbs.LoadPolicyFile(path); err == nil || !strings.Contains(err.Error(), path) {
		t.Fatalf("LoadPolicyFile: %v", err)
	}
	if _, err := kbs.LoadPolicyFile(filepath.Join(dir, "missing")); !errors.Is(err, kbs.ErrPolicy) {
		t.Fatalf("missing file: %v", err)
	}
}

func pcr7(f *fixture) string {
	return f.claims().Submods[token.SubmodTPM].Measurements.PCRs["7"]
}
