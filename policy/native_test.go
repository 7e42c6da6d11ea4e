package policy

import (
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"cel.dev/cel-go/common/types"

	"github.com/passport-attest/passport/evidence"
)

// TestNativeChecksAgreeWithCEL: the learned rules are evaluated as set lookups (nativeCheck);
// on every pair of real logs (a policy learned from one, evidence from another, so that both
// verdicts occur) the native verdict must be CEL's.
func TestNativeChecksAgreeWithCEL(t *testing.T) {
	out, err := exec.Command("go", "list", "-m", "-f", "{{.Dir}}", "github.com/google/go-tpm-tools").Output()
	if err != nil {
		t.Fatal(err)
	}
	paths, err := filepath.Glob(filepath.Join(strings.TrimSpace(string(out)), "internal/test/eventlogs", "*.bin"))
	if err != nil {
		t.Fatal(err)
	}
	var states []*evidence.State
	for _, p := range paths {
		b, err := os.ReadFile(p)
		if err != nil {
			t.Fatal(err)
		}
		if st, err := evidence.FromEventLog(b); err == nil {
			states = append(states, st)
		}
	}
	if len(states) < 3 {
		t.Fatalf("only %d real logs parsed", len(states))
	}
	var held, failed, undecided int
	for _, learnedFrom := range states {
		f, _, err := Learn(learnedFrom, LearnOptions{})
		if err != nil {
			continue // not a SHA-256 log
		}
		p, err := New(f, nil)
		if err != nil {
			t.Fatal(err)
		}
		for _, r := range p.prog.rules {
			if r.native == nil {
				t.Errorf("learned rule %s (%s) is not evaluated natively", r.Name, r.Expr)
			}
		}
		for _, st := range states {
			in := buildInput(st, p.prog.needs)
			act := p.activation(in)
			for i, r := range p.prog.rules {
				if r.native == nil {
					continue
				}
				v, _, err := r.prg.Eval(act)
				holds, ok := r.native.verdict(in, p.native[i])
				if !ok { // only where CEL fails with an error (a PCR the quote lacks)
					if err == nil {
						t.Errorf("rule %s (%s): no native verdict, CEL %v", r.Name, r.Expr, v)
					}
					undecided++
					continue
				}
				if err != nil || v != types.Bool(holds) {
					t.Errorf("rule %s (%s): native %v, CEL %v (%v)", r.Name, r.Expr, holds, v, err)
				}
				if holds {
					held++
				} else {
					failed++
				}
			}
		}
	}
	if held == 0 || failed == 0 || undecided == 0 {
		t.Fatalf("native checks held %d times, failed %d times and left %d to CEL: all three must be exercised", held, failed, undecided)
	}
}

// TestNativeForOnlyLearnedForms: expressions that only look like the learned forms stay CEL's.
func TestNativeForOnlyLearnedForms(t *testing.T) {
	for _, expr := range []string{
		"boot.efi_apps.all(d, d in refs.efi_apps)",
		"size(boot.firmware) > 0 && boot.firmware.all(d, d in refs.firmware)",
		"boot.kernel in refs.kernels",
		`pcrs.sha256["7"] in refs.pcr7`,
		`ak.trust in ["allowlist", "certificate", "enrolled"]`,
		`boot.confidential_technology in ["", "NONE", "AMD_SEV"]`,
		`tpm.bank == "sha256"`,
		"boot.secure_boot",
		"boot.dbx_count >= 0",
		"boot.dbx_count >= 371",
	} {
		if nativeFor(expr) == nil {
			t.Errorf("%s: not native", expr)
		}
	}
	for _, expr := range []string{
		"boot.efi_apps.all(refs, refs in refs.efi_apps)", // the variable shadows refs
		"boot.efi_apps.all(d, e in refs.efi_apps)",
		"size(boot.firmware) > 0 && boot.bootloaders.all(d, d in refs.firmware)",
		"boot.efi_apps.exists(d, d in refs.efi_apps)",
		"boot.events.all(d, d in refs.efi_apps)",
		"boot.secure_boot in refs.x",
		`!(pcrs.sha256["7"] in refs.pcr7)`,
		`pcrs.sha256["07"] in refs.pcr7`,         // a key pcrMap never writes: CEL's error
		`ak.trust in ["allow\x6cist"]`,           // an escape: the literal is not its text
		`ak.trust in ["a" + "b"]`,                // not a list of literals
		`tpm.logged_pcrs in ["a"]`,               // not a string field
		`tpm.bank == 'sha256'`,                   // another quote: CEL's
		`tpm.bank != "sha256"`,                   // another operator
		`boot.dbx_count >= 0123`,                 // not the canonical number
		`boot.dbx_count >= 99999999999999999999`, // out of range: CEL's error
		"boot.dbx_count > 3",                     // another operator
		"!boot.secure_boot",                      // another form
		`clock.clock in ["a"]`,                   // not a string field
	} {
		if nativeFor(expr) != nil {
			t.Errorf("%s: evaluated natively", expr)
		}
	}
}
