package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"slices"
	"strings"

	"github.com/spf13/cobra"

	"github.com/passport-attest/passport/evidence"
	"github.com/passport-attest/passport/policy"
	"github.com/passport-attest/passport/refvalues"
	"github.com/passport-attest/passport/token"
)

// newPolicyCmd groups the policy tools: learn, eval and check work offline on files;
// revoke-value, reinstate-value and list-revoked talk to a running issuer's admin API.
func newPolicyCmd() *cobra.Command {
	cmd := &cobra.Command{
		Use:   "policy",
		Short: "Appraisal policies: learn one from a known-good machine, evaluate evidence, revoke configurations",
		Long: `Policies are YAML files of CEL rules over the verified evidence, with named sets of
reference values (docs/POLICY.md). learn writes one from a known-good machine; eval says whether
a machine's evidence is affirmed and, if not, which rules failed and why; check compiles one.
revoke-value, reinstate-value and list-revoked manage revoked reference values on a running
issuer (serve --admin-addr).`,
	}
	cmd.AddCommand(newPolicyLearnCmd(), newPolicyEvalCmd(), newPolicyCheckCmd(),
		newPolicyRevokeCmd(), newPolicyReinstateCmd(), newPolicyListRevokedCmd())
	return cmd
}

// evidenceFlags choose the evidence of learn and eval: a bare event log or an attestation.
type evidenceFlags struct {
	eventLog, attestation string
}

func (e *evidenceFlags) register(cmd *cobra.Command) {
	cmd.Flags().StringVar(&e.eventLog, "event-log", "", "TCG event log (binary_bios_measurements): PCRs are derived by replaying it")
	cmd.Flags().StringVar(&e.attestation, "attestation", "", "go-tpm-tools Attestation protobuf file (quote checked against its own AK and log)")
	cmd.MarkFlagsMutuallyExclusive("event-log", "attestation")
	cmd.MarkFlagsOneRequired("event-log", "attestation")
}

// state builds the evidence state and says what it is.
func (e *evidenceFlags) state() (*evidence.State, string, error) {
	path := e.eventLog
	if path == "" {
		path = e.attestation
	}
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, "", err
	}
	if e.eventLog != "" {
		st, err := evidence.FromEventLog(b)
		if err != nil {
			return nil, "", fmt.Errorf("%s: %w", path, err)
		}
		return st, filepath.Base(path) + ": bare event log (PCRs replayed from the log; no quote, so the AK is not appraised)", nil
	}
	st, err := evidence.FromAttestation(b)
	if err != nil {
		return nil, "", fmt.Errorf("%s: %w", path, err)
	}
	return st, filepath.Base(path) + ": attestation (quote verified against its own AK, which is not trusted here)", nil
}

func newPolicyLearnCmd() *cobra.Command {
	var ev evidenceFlags
	var out, name string
	cmd := &cobra.Command{
		Use:   "learn (--event-log FILE | --attestation FILE) --out POLICY",
		Short: "Write a policy whose reference values are a known-good machine's",
		Long: `learn reads a known-good machine's event log (or attestation) and writes a policy that
affirms it and refuses machines whose firmware, boot loaders, kernel, kernel command line,
Secure Boot state or PCRs 0, 2, 4 and 7 differ. Add other good machines' digests to its
reference-value sets (or to a --reference-values store) to accept them too. The file is usable
as is by serve --policy and policy eval.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			return runPolicyLearn(ev, out, name, cmd.OutOrStdout(), cmd.ErrOrStderr())
		},
	}
	ev.register(cmd)
	cmd.Flags().StringVar(&out, "out", "", "policy file to write (YAML)")
	cmd.Flags().StringVar(&name, "name", "", "policy name (default: the evidence file's name)")
	_ = cmd.MarkFlagRequired("out")
	return cmd
}

func runPolicyLearn(ev evidenceFlags, out, name string, stdout, stderr io.Writer) error {
	st, what, err := ev.state()
	if err != nil {
		return err
	}
	src := ev.eventLog + ev.attestation
	if name == "" {
		name = strings.TrimSuffix(filepath.Base(src), filepath.Ext(src))
	}
	f, warnings, err := policy.Learn(st, policy.LearnOptions{Name: name, Description: "learned by passport policy learn from " + filepath.Base(src)})
	if err != nil {
		return err
	}
	p, err := policy.New(f, nil)
	if err != nil {
		return err
	}
	y, err := f.Marshal()
	if err != nil {
		return err
	}
	head := "# passport policy (docs/POLICY.md), learned from " + what + ".\n" +
		"# Its reference values are that known-good machine's: add other good machines' digests to\n" +
		"# the sets to accept them. Check it with `passport policy eval`, serve it with `passport serve --policy`.\n"
	if err := writeFileAtomic(out, append([]byte(head), y...), 0o644); err != nil {
		return err
	}
	for _, w := range warnings {
		fmt.Fprintln(stderr, "warning:", w)
	}
	var sets []string
	for n, vals := range f.ReferenceValues {
		sets = append(sets, fmt.Sprintf("%s %d", n, len(vals)))
	}
	slices.Sort(sets)
	fmt.Fprintf(stdout, "wrote %s: %d rules; reference values: %s; policy id %s\n", out, len(f.Rules), strings.Join(sets, ", "), p.ID())
	return nil
}

// writeFileAtomic writes b to a temporary file beside path and renames it over path, so a
// running issuer polling the file never reads half of it.
func writeFileAtomic(path string, b []byte, mode os.FileMode) error {
	tmp, err := os.CreateTemp(filepath.Dir(path), "."+filepath.Base(path)+".*")
	if err != nil {
		return err
	}
	defer os.Remove(tmp.Name())
	if _, err := tmp.Write(b); err != nil {
		tmp.Close()
		return err
	}
	if err := tmp.Chmod(mode); err != nil {
		tmp.Close()
		return err
	}
	if err := tmp.Close(); err != nil {
		return err
	}
	return os.Rename(tmp.Name(), path)
}

// loadPolicy reads and compiles a policy file, bound to a reference-values file when given.
func loadPolicy(path, refsFile string) (*policy.Policy, error) {
	f, err := policy.ReadFile(path)
	if err != nil {
		return nil, err
	}
	var snap *refvalues.Snapshot
	if refsFile != "" {
		if _, err := os.Stat(refsFile); err != nil {
			return nil, fmt.Errorf("--reference-values: %w", err)
		}
		if snap, err = refvalues.NewFile(refsFile).Snapshot(context.Background()); err != nil {
			return nil, err
		}
	}
	p, err := policy.New(f, snap)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	return p, nil
}

func newPolicyEvalCmd() *cobra.Command {
	var ev evidenceFlags
	var pol, refs string
	var asJSON bool
	cmd := &cobra.Command{
		Use:   "eval --policy FILE (--event-log FILE | --attestation FILE)",
		Short: "Evaluate evidence against a policy: exit 0 when affirmed, non-zero with the failed rules otherwise",
		Long: `eval appraises a machine's evidence as the issuer would and prints the EAR status, the
trustworthiness claims and, for every rule that failed, what it expects and what was seen.
It exits 0 when the evidence is affirmed and 1 otherwise (warning, contraindicated, or an
error). With a bare event log there is no quote: PCR values come from replaying the log and
rules about the attestation key make no claim.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			return runPolicyEval(ev, pol, refs, asJSON, cmd.OutOrStdout())
		},
	}
	ev.register(cmd)
	cmd.Flags().StringVar(&pol, "policy", "", "policy file (YAML)")
	cmd.Flags().StringVar(&refs, "reference-values", "", "reference-values file (as serve --reference-values FILE) bound beside the policy's")
	cmd.Flags().BoolVar(&asJSON, "json", false, "print the appraisal as JSON")
	_ = cmd.MarkFlagRequired("policy")
	return cmd
}

// errNotAffirmed is returned by eval when the evidence is not affirmed (exit status 1).
var errNotAffirmed = errors.New("evidence not affirmed")

// appraisalJSON is eval's --json output.
type appraisalJSON struct {
	PolicyID        string                      `json:"policy_id"`
	Status          token.Tier                  `json:"ear_status"`
	Vector          token.TrustworthinessVector `json:"ear_trustworthiness_vector"`
	Failures        []policy.Failure            `json:"failures"`
	ReferenceValues []string                    `json:"reference_values"`
}

func runPolicyEval(ev evidenceFlags, polFile, refs string, asJSON bool, stdout io.Writer) error {
	p, err := loadPolicy(polFile, refs)
	if err != nil {
		return err
	}
	st, what, err := ev.state()
	if err != nil {
		return err
	}
	a := p.Appraise(st)
	if asJSON {
		enc := json.NewEncoder(stdout)
		enc.SetIndent("", "  ")
		if err := enc.Encode(appraisalJSON{a.PolicyID, a.Status, a.Vector, a.Failures, a.ReferenceValues}); err != nil {
			return err
		}
	} else {
		printAppraisal(stdout, p, what, a)
	}
	if a.Status != token.TierAffirming {
		return fmt.Errorf("%w: status %s", errNotAffirmed, a.Status)
	}
	return nil
}

func printAppraisal(w io.Writer, p *policy.Policy, what string, a *policy.Appraisal) {
	name := p.Program().File().Name
	fmt.Fprintf(w, "policy    %s %s (%d rules)\n", name, p.ID(), len(p.Program().Rules()))
	fmt.Fprintf(w, "evidence  %s\n", what)
	fmt.Fprintf(w, "status    %s\n", a.Status)
	var claims []string
	for _, c := range policy.Claims {
		if v, ok := a.Vector[c]; ok {
			claims = append(claims, fmt.Sprintf("%s=%d", c, v))
		}
	}
	fmt.Fprintf(w, "claims    %s\n", strings.Join(claims, " "))
	groups := []struct {
		title string
		tier  token.Tier
	}{{"refused by", token.TierContraindicated}, {"warned by", token.TierWarning}, {"no claim made by", token.TierNone}}
	for _, g := range groups {
		var lines []string
		for _, f := range a.Failures {
			if token.TierOf(f.Value) == g.tier {
				lines = append(lines, fmt.Sprintf("  - %s [%s=%d]: %s", f.Rule, f.Claim, f.Value, f.Reason))
			}
		}
		if len(lines) > 0 {
			fmt.Fprintf(w, "%s %d rule%s:\n%s\n", g.title, len(lines), map[bool]string{true: "", false: "s"}[len(lines) == 1], strings.Join(lines, "\n"))
		}
	}
	fmt.Fprintf(w, "matched   %d reference values\n", len(a.ReferenceValues))
	if a.Status == token.TierAffirming {
		fmt.Fprintln(w, "affirmed: the evidence satisfies the policy")
	}
}

func newPolicyCheckCmd() *cobra.Command {
	var pol, refs string
	cmd := &cobra.Command{
		Use:   "check --policy FILE",
		Short: "Compile a policy (as serve would at load) and print its ID, rules and reference-value sets",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			p, err := loadPolicy(pol, refs)
			if err != nil {
				return err
			}
			sizes := p.SetSizes()
			var sets []string
			for n, c := range sizes {
				sets = append(sets, fmt.Sprintf("%s %d", n, c))
			}
			slices.Sort(sets)
			fmt.Fprintf(cmd.OutOrStdout(), "ok: %s\npolicy id %s\nrules %s\nreference values %s\nrevoked %d\n",
				pol, p.ID(), strings.Join(p.Program().Rules(), ", "), strings.Join(sets, ", "), len(p.Revoked()))
			return nil
		},
	}
	cmd.Flags().StringVar(&pol, "policy", "", "policy file (YAML)")
	cmd.Flags().StringVar(&refs, "reference-values", "", "reference-values file bound beside the policy's")
	_ = cmd.MarkFlagRequired("policy")
	return cmd
}
