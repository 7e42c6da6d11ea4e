package policy

import (
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"os"
	"regexp"
	"slices"
	"strconv"

	"gopkg.in/yaml.v3"

	"github.com/passport-attest/passport/refvalues"
	"github.com/passport-attest/passport/token"
)

// FileVersion is the only policy file version this package reads.
const FileVersion = 1

// MaxFileSize bounds a policy file (4 MiB, reference values included).
const MaxFileSize = 4 << 20

// ErrInvalid is wrapped by every error about a policy's content (YAML shape, rule, CEL, claim,
// value, reference value); *LoadError carries the details.
var ErrInvalid = errors.New("policy: invalid policy")

// LoadError says which part of a policy is wrong. Rule is the rule's name (empty for errors
// outside rules), Field the YAML field, Err the cause (for CEL errors, cel-go's message with line
// and column inside the expression).
type LoadError struct {
	Rule  string
	Field string
	Err   error
}

func (e *LoadError) Error() string {
	switch {
	case e.Rule != "" && e.Field != "":
		return fmt.Sprintf("policy: rule %q: %s: %v", e.Rule, e.Field, e.Err)
	case e.Rule != "":
		return fmt.Sprintf("policy: rule %q: %v", e.Rule, e.Err)
	case e.Field != "":
		return fmt.Sprintf("policy: %s: %v", e.Field, e.Err)
	}
	return fmt.Sprintf("policy: %v", e.Err)
}

// Unwrap returns ErrInvalid and the cause.
func (e *LoadError) Unwrap() []error { return []error{ErrInvalid, e.Err} }

// File is a policy file, version 1 (docs/POLICY.md):
//
//	version: 1
//	name: ubuntu-gce
//	reference_values:             # named sets of accepted digests (lowercase hex)
//	  kernels: ["38c6...", ...]
//	revoked:                      # digests refused wherever they appear in the evidence
//	  - {digest: "...", reason: "CVE-2026-0001"}
//	revocation: {claim: executables, on_match: contraindicated}   # optional, these defaults
//	rules:
//	  - name: kernel
//	    claim: executables        # the AR4SI claim the rule feeds
//	    expr: boot.kernel in refs.kernels
//	    on_failure: contraindicated
//	    on_success: approved_boot # optional
//	    message: the kernel is not one the known-good machine booted
//	    explain: boot.kernel      # optional CEL, evaluated on failure to show what was seen
type File struct {
	Version         int                    `yaml:"version"`
	Name            string                 `yaml:"name,omitempty"`
	Description     string                 `yaml:"description,omitempty"`
	ReferenceValues map[string][]string    `yaml:"reference_values,omitempty"`
	Revoked         []refvalues.Revocation `yaml:"revoked,omitempty"`
	Revocation      *RevocationRule        `yaml:"revocation,omitempty"`
	Rules           []Rule                 `yaml:"rules"`
}

// Rule is one CEL rule. Expr must be a bool expression over the input documented in
// docs/POLICY.md; when it is false (or cannot be evaluated) the rule fails and sets Claim to
// OnFailure; when true and OnSuccess is given it sets Claim to OnSuccess.
type Rule struct {
	Name      string `yaml:"name"`
	Claim     string `yaml:"claim"`
	Expr      string `yaml:"expr"`
	OnFailure Value  `yaml:"on_failure"`
	OnSuccess *Value `yaml:"on_success,omitempty"`
	Message   string `yaml:"message,omitempty"`
	Explain   string `yaml:"explain,omitempty"`
}

// RevocationRule configures the built-in check that refuses revoked reference values: the claim
// it feeds (default executables) and the value it sets when the evidence contains a revoked
// digest (default contraindicated, 96).
type RevocationRule struct {
	Claim   string `yaml:"claim,omitempty"`
	OnMatch *Value `yaml:"on_match,omitempty"`
}

// Value is an AR4SI trustworthiness claim value (draft-ietf-rats-ar4si section 2.3), -128..127.
// In YAML it is a number or one of the names in ValueNames.
type Value int8

// ValueNames maps the names a policy may use to AR4SI claim values (the token package's
// constants).
var ValueNames = map[string]int8{
	"no_claim":              token.ValueNoClaim,
	"unexpected_evidence":   token.ValueUnexpectedEvidence,
	"affirming":             token.ValueAffirming,
	"approved_boot":         token.ValueApprovedBoot,
	"unsafe":                token.ValueUnsafe,
	"unrecognized":          token.ValueUnrecognized,
	"contraindicated":       token.ValueContraindicated,
	"unrecognized_hardware": token.ValueUnrecognizedHW,
	"crypto_failed":         token.ValueCryptoFailed,
}

// UnmarshalYAML reads a number (-128..127) or a name of ValueNames.
func (v *Value) UnmarshalYAML(n *yaml.Node) error {
	if n.Kind != yaml.ScalarNode {
		return errors.New("a claim value is a number or a name")
	}
	if x, ok := ValueNames[n.Value]; ok {
		*v = Value(x)
		return nil
	}
	i, err := strconv.ParseInt(n.Value, 10, 8)
	if err != nil {
		names := make([]string, 0, len(ValueNames))
		for k := range ValueNames {
			names = append(names, k)
		}
		slices.Sort(names)
		return fmt.Errorf("claim value %q is neither -128..127 nor one of %v", n.Value, names)
	}
	*v = Value(i)
	return nil
}

// MarshalYAML writes the value's name when it has one.
func (v Value) MarshalYAML() (any, error) {
	for k, x := range ValueNames {
		if x == int8(v) {
			return k, nil
		}
	}
	return int(v), nil
}

// Claims lists the AR4SI claim names a rule may feed.
var Claims = []string{
	token.ClaimInstanceIdentity, token.ClaimConfiguration, token.ClaimExecutables, token.ClaimFileSystem,
	token.ClaimHardware, token.ClaimRuntimeOpaque, token.ClaimStorageOpaque, token.ClaimSourcedData,
}

var ruleName = regexp.MustCompile(`^[a-z0-9][a-z0-9_.-]{0,63}$`)

// Parse decodes and validates a policy file (YAML, unknown fields refused). It checks
// everything but the CEL expressions, which Compile checks. Errors wrap ErrInvalid.
func Parse(b []byte) (*File, error) {
	if len(b) > MaxFileSize {
		return nil, &LoadError{Err: fmt.Errorf("policy file is %d bytes, at most %d", len(b), MaxFileSize)}
	}
	var f File
	dec := yaml.NewDecoder(bytes.NewReader(b))
	dec.KnownFields(true)
	if err := dec.Decode(&f); err != nil {
		if errors.Is(err, io.EOF) {
			err = errors.New("empty policy file")
		}
		return nil, &LoadError{Err: err}
	}
	if err := f.validate(); err != nil {
		return nil, err
	}
	return &f, nil
}

func (f *File) validate() error {
	if f.Version != FileVersion {
		return &LoadError{Field: "version", Err: fmt.Errorf("is %d, want %d", f.Version, FileVersion)}
	}
	for name, vals := range f.ReferenceValues {
		if err := refvalues.CheckSetName(name); err != nil {
			return &LoadError{Field: "reference_values", Err: err}
		}
		norm, err := refvalues.NormalizeAll(vals)
		if err != nil {
			return &LoadError{Field: "reference_values." + name, Err: err}
		}
		slices.Sort(norm)
		f.ReferenceValues[name] = slices.Compact(norm)
	}
	for i, r := range f.Revoked {
		d, err := refvalues.NormalizeDigest(r.Digest)
		if err != nil {
			return &LoadError{Field: fmt.Sprintf("revoked[%d]", i), Err: err}
		}
		if len(r.Reason) > refvalues.MaxReasonSize {
			return &LoadError{Field: fmt.Sprintf("revoked[%d]", i), Err: refvalues.ErrBadRevocation}
		}
		f.Revoked[i].Digest = d
	}
	if rv := f.Revocation; rv != nil {
		if rv.Claim != "" && !slices.Contains(Claims, rv.Claim) {
			return &LoadError{Field: "revocation.claim", Err: fmt.Errorf("unknown claim %q (want one of %v)", rv.Claim, Claims)}
		}
		if rv.OnMatch != nil {
			if err := checkFailureValue(*rv.OnMatch); err != nil {
				return &LoadError{Field: "revocation.on_match", Err: err}
			}
		}
	}
	seen := map[string]bool{}
	for i, r := range f.Rules {
		if !ruleName.MatchString(r.Name) {
			return &LoadError{Field: fmt.Sprintf("rules[%d].name", i), Err: fmt.Errorf("%q must match %s", r.Name, ruleName)}
		}
		if seen[r.Name] || r.Name == RevokedRule {
			return &LoadError{Rule: r.Name, Err: errors.New("duplicate or reserved rule name")}
		}
		seen[r.Name] = true
		if !slices.Contains(Claims, r.Claim) {
			return &LoadError{Rule: r.Name, Field: "claim", Err: fmt.Errorf("unknown claim %q (want one of %v)", r.Claim, Claims)}
		}
		if r.Expr == "" {
			return &LoadError{Rule: r.Name, Field: "expr", Err: errors.New("missing")}
		}
		if err := checkFailureValue(r.OnFailure); err != nil {
			return &LoadError{Rule: r.Name, Field: "on_failure", Err: err}
		}
		if r.OnSuccess != nil {
			if t := token.TierOf(int8(*r.OnSuccess)); t != token.TierAffirming && t != token.TierNone {
				return &LoadError{Rule: r.Name, Field: "on_success", Err: fmt.Errorf("%d is in the %s tier: a rule that holds can only affirm (2..31) or make no claim (0)", *r.OnSuccess, t)}
			}
		}
	}
	return nil
}

// checkFailureValue refuses affirming values: a failed rule must not vouch for anything.
func checkFailureValue(v Value) error {
	if token.TierOf(int8(v)) == token.TierAffirming {
		return fmt.Errorf("%d is in the affirming tier: a failed rule must warn (32..95), contraindicate (96..127) or make no claim (0)", v)
	}
	return nil
}

// Digest returns the SHA-256 of the policy's canonical YAML encoding (lowercase hex): equal
// for two files that differ only in comments, formatting or order of reference values.
func (f *File) Digest() string {
	b, err := yaml.Marshal(f)
	if err != nil { // a File always encodes
		panic(err)
	}
	sum := sha256.Sum256(b)
	return hex.EncodeToString(sum[:])
}

// Marshal encodes f as YAML.
func (f *File) Marshal() ([]byte, error) { return yaml.Marshal(f) }

// ReadFile reads and parses a policy file. A file in the starter format of issue 2
// (top-level secure_boot and pcrs only, see Reference) is migrated with FromReference.
func ReadFile(path string) (*File, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("policy: %w", err)
	}
	f, err := parseAny(b)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	return f, nil
}

// parseAny parses the current format, or the starter format when the document has neither
// version nor rules.
func parseAny(b []byte) (*File, error) {
	var probe map[string]any
	if err := yaml.Unmarshal(b, &probe); err == nil && probe != nil {
		_, hasVersion := probe["version"]
		_, hasRules := probe["rules"]
		if !hasVersion && !hasRules {
			r, err := parseReference(b)
			if err != nil {
				return nil, &LoadError{Err: fmt.Errorf("neither a version %d policy nor a starter policy: %w", FileVersion, err)}
			}
			return FromReference(r), nil
		}
	}
	return Parse(b)
}
