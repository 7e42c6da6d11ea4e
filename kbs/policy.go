package kbs

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"path"
	"strings"

	"cel.dev/cel-go/cel"
	"gopkg.in/yaml.v3"

	"github.com/passport-attest/passport/api"
	"github.com/passport-attest/passport/token"
)

// DefaultAllow is the release condition of every resource no policy rule names: the token's
// overall EAR status (the worst of every submodule status and trustworthiness claim,
// draft-ietf-rats-ear section 3.1.1) is affirming.
const DefaultAllow = `status == "affirming"`

// celCostLimit bounds one evaluation of a rule (cel-go cost units), so that an expression over
// a hostile claim set cannot run away.
const celCostLimit = 1_000_000

// ErrPolicy: a policy file or rule is invalid (bad YAML, unknown field, bad glob, an expression
// that does not compile or does not yield bool).
var ErrPolicy = errors.New("kbs: invalid policy")

// Rule is one entry of a policy file: which resources it covers and the condition to release
// them.
type Rule struct {
	// Resource is a glob over "repository/type/tag" (path.Match syntax: "*" never crosses a
	// "/"), with exactly three components, e.g. "default/key/*".
	Resource string `yaml:"resource" json:"resource"`
	// Allow is a CEL expression (cel.dev/cel-go) that must yield true to release. Its
	// variables:
	//
	//	claims    map(string, dyn)     the verified claim set as JSON (numbers are doubles):
	//	                               claims.sub, claims.aud, claims.submods.tpm.ear_status,
	//	                               claims.submods.tpm.measurements.pcrs["7"], ...
	//	status    string               the overall EAR status: "affirming", "warning", ...
	//	resource  map(string, string)  repository, type, tag and name ("repository/type/tag")
	//
	// Empty means DefaultAllow.
	Allow string `yaml:"allow" json:"allow"`
	// Bearer, when true, also releases to a token presented without a DPoP proof
	// ("Authorization: Bearer"). The secret is still encrypted to the token's cnf key, so a
	// thief without that key learns nothing; but by default a proof is required.
	Bearer bool `yaml:"bearer" json:"bearer"`
}

// PolicyFile is the YAML (or JSON) form of a Policy:
//
//	default: 'status == "affirming"'      # optional; DefaultAllow when absent
//	rules:                                # tried in order; the first match decides
//	  - resource: "default/key/*"
//	    allow: 'status == "affirming" && claims.submods.tpm.measurements.secure_boot == true'
//	  - resource: "public/config/*"
//	    allow: 'status in ["affirming", "warning"]'
//	    bearer: true
type PolicyFile struct {
	Default string `yaml:"default" json:"default"`
	Rules   []Rule `yaml:"rules" json:"rules"`
}

// Policy decides, per resource, whether a verified token may have it. It is immutable and
// safe for concurrent use.
type Policy struct {
	rules []*compiledRule
	def   *compiledRule
}

type compiledRule struct {
	Rule
	prg cel.Program
}

// NewPolicy compiles every rule of f once. Errors wrap ErrPolicy and name the rule.
func NewPolicy(f PolicyFile) (*Policy, error) {
	env, err := celEnv()
	if err != nil {
		return nil, err
	}
	def := f.Default
	if def == "" {
		def = DefaultAllow
	}
	p := &Policy{}
	if p.def, err = compileRule(env, Rule{Resource: "*/*/*", Allow: def}); err != nil {
		return nil, fmt.Errorf("%w: default: %w", ErrPolicy, err)
	}
	for i, r := range f.Rules {
		if err := checkGlob(r.Resource); err != nil {
			return nil, fmt.Errorf("%w: rule %d: %w", ErrPolicy, i+1, err)
		}
		if r.Allow == "" {
			r.Allow = DefaultAllow
		}
		c, err := compileRule(env, r)
		if err != nil {
			return nil, fmt.Errorf("%w: rule %d (%s): %w", ErrPolicy, i+1, r.Resource, err)
		}
		p.rules = append(p.rules, c)
	}
	return p, nil
}

// DefaultPolicy is the policy without rules: every resource requires DefaultAllow and a DPoP
// proof.
func DefaultPolicy() *Policy {
	p, err := NewPolicy(PolicyFile{})
	if err != nil {
		panic(err) // DefaultAllow is a constant that compiles
	}
	return p
}

// ParsePolicy reads a PolicyFile from YAML (JSON is YAML too). Unknown fields are errors, so a
// misspelt "bearer" never silently changes a decision.
func ParsePolicy(b []byte) (*Policy, error) {
	var f PolicyFile
	dec := yaml.NewDecoder(bytes.NewReader(b))
	dec.KnownFields(true)
	if err := dec.Decode(&f); err != nil && !errors.Is(err, io.EOF) {
		return nil, fmt.Errorf("%w: %w", ErrPolicy, err)
	}
	return NewPolicy(f)
}

// LoadPolicyFile reads and compiles a policy file (see PolicyFile).
func LoadPolicyFile(p string) (*Policy, error) {
	b, err := os.ReadFile(p)
	if err != nil {
		return nil, fmt.Errorf("%w: %w", ErrPolicy, err)
	}
	pol, err := ParsePolicy(b)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", p, err)
	}
	return pol, nil
}

func checkGlob(g string) error {
	if strings.Count(g, "/") != 2 {
		return fmt.Errorf("resource %q: want a glob over repository/type/tag (three components)", g)
	}
	if _, err := path.Match(g, ""); err != nil {
		return fmt.Errorf("resource %q: %w", g, err)
	}
	return nil
}

func celEnv() (*cel.Env, error) {
	env, err := cel.NewEnv(
		cel.Variable("claims", cel.MapType(cel.StringType, cel.DynType)),
		cel.Variable("status", cel.StringType),
		cel.Variable("resource", cel.MapType(cel.StringType, cel.StringType)),
	)
	if err != nil {
		return nil, fmt.Errorf("kbs: cel environment: %w", err)
	}
	return env, nil
}

func compileRule(env *cel.Env, r Rule) (*compiledRule, error) {
	ast, iss := env.Compile(r.Allow)
	if iss != nil && iss.Err() != nil {
		return nil, fmt.Errorf("compile %q: %w", r.Allow, iss.Err())
	}
	if !ast.OutputType().IsExactType(cel.BoolType) {
		return nil, fmt.Errorf("%q yields %s, not bool", r.Allow, ast.OutputType())
	}
	prg, err := env.Program(ast, cel.CostLimit(celCostLimit), cel.InterruptCheckFrequency(100))
	if err != nil {
		return nil, fmt.Errorf("program %q: %w", r.Allow, err)
	}
	return &compiledRule{Rule: r, prg: prg}, nil
}

// ruleFor returns the first rule whose glob matches id, else the default rule.
func (p *Policy) ruleFor(id api.ResourceID) *compiledRule {
	name := id.String()
	for _, r := range p.rules {
		if ok, _ := path.Match(r.Resource, name); ok {
			return r
		}
	}
	return p.def
}

// BearerAllowed reports whether the rule governing id opts in to tokens without a DPoP proof.
func (p *Policy) BearerAllowed(id api.ResourceID) bool { return p.ruleFor(id).Bearer }

// RuleFor returns the resource glob of the rule governing id ("*/*/*" for the default).
func (p *Policy) RuleFor(id api.ResourceID) string { return p.ruleFor(id).Resource }

// Allows evaluates the rule governing id over c. It returns nil to release, an error wrapping
// ErrForbidden when the expression is false, and an error wrapping ErrForbidden too when it
// fails to evaluate (a missing claim, a type mismatch): a policy that cannot say yes says no.
func (p *Policy) Allows(ctx context.Context, id api.ResourceID, c *token.Claims) error {
	r := p.ruleFor(id)
	b, err := json.Marshal(c)
	if err != nil {
		return fmt.Errorf("%w: claims as JSON: %w", ErrForbidden, err)
	}
	var m map[string]any
	if err := json.Unmarshal(b, &m); err != nil {
		return fmt.Errorf("%w: claims as JSON: %w", ErrForbidden, err)
	}
	out, _, err := r.prg.ContextEval(ctx, map[string]any{
		"claims": m,
		"status": c.OverallStatus().String(),
		"resource": map[string]string{
			"repository": id.Repository, "type": id.Type, "tag": id.Tag, "name": id.String(),
		},
	})
	if err != nil {
		return fmt.Errorf("%w: rule %s: evaluation failed: %w", ErrForbidden, r.Resource, err)
	}
	if ok, isBool := out.Value().(bool); !isBool || !ok {
		return fmt.Errorf("%w: rule %s is false", ErrForbidden, r.Resource)
	}
	return nil
}
