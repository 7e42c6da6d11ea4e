package policy

import (
	"os"
	"os/exec"
	"path/filepath"
	"reflect"
	"strings"
	"testing"

	"github.com/passport-attest/passport/evidence"
)

// realState reads one of go-tpm-tools' real logs (this internal test cannot use testenv, which
// imports this package).
func realState(t *testing.T, name string) *evidence.State {
	t.Helper()
	out, err := exec.Command("go", "list", "-m", "-f", "{{.Dir}}", "github.com/google/go-tpm-tools").Output()
	if err != nil {
		t.Fatal(err)
	}
	b, err := os.ReadFile(filepath.Join(strings.TrimSpace(string(out)), "internal/test/eventlogs", name))
	if err != nil {
		t.Fatal(err)
	}
	st, err := evidence.FromEventLog(b)
	if err != nil {
		t.Fatal(err)
	}
	return st
}

// TestPartialInputSameVerdicts: building only the input parts the rules read (needs) gives
// exactly the appraisal that building everything gives, on accepted and refused machines.
func TestPartialInputSameVerdicts(t *testing.T) {
	base := realState(t, "ubuntu-2104-no-dbx.bin")
	f, _, err := Learn(base, LearnOptions{})
	if err != nil {
		t.Fatal(err)
	}
	f.Rules = append(f.Rules,
		Rule{Name: "seps", Claim: "configuration", Expr: `size(boot.events["EV_SEPARATOR"]) >= 7`, OnFailure: 96},
		Rule{Name: "pcr14-set", Claim: "configuration", Expr: `pcrs[tpm.bank]["14"] != ""`, OnFailure: 32},
		Rule{Name: "grub", Claim: "configuration", Expr: `boot.grub_commands.exists(c, c.contains("linux"))`, OnFailure: 32},
		Rule{Name: "files", Claim: "executables", Expr: `boot.kernel in boot.grub_files`, OnFailure: 32},
		Rule{Name: "firmware-known", Claim: "executables", Expr: `boot.firmware.all(d, d in refs.firmware)`, OnFailure: 32})
	p, err := New(f, nil)
	if err != nil {
		t.Fatal(err)
	}
	if n := p.prog.needs; n.pcrs || n.events || !n.grubCommands || !n.grubFiles || !n.kernel || !n.lists ||
		n.pcrMask != 0x3ff|1<<14 || !reflect.DeepEqual(n.eventTypes, []uint32{4}) {
		t.Fatalf("needs %+v", n)
	}
	full := *p
	prog := *p.prog
	prog.needs = allNeeds
	full.prog = &prog
	for _, name := range []string{"ubuntu-2104-no-dbx.bin", "rhel8-uefi.bin", "cos-101-amd-sev.bin", "ubuntu-2104-no-secure-boot.bin"} {
		st := realState(t, name)
		got, want := p.Appraise(st), full.Appraise(st)
		if !reflect.DeepEqual(got, want) {
			t.Errorf("%s: partial input %+v, full input %+v", name, got, want)
		}
	}
}

// TestNeedsAnalysis pins what the static analysis of a few expressions asks for.
func TestNeedsAnalysis(t *testing.T) {
	for _, tc := range []struct {
		expr string
		want needs
	}{
		{`pcrs.sha256["7"] == ""`, needs{pcrMask: 1 << 7}},
		{`"7" in pcrs.sha256`, needs{pcrs: true}},
		{`boot.kernel == ""`, needs{kernel: true}},
		{`boot.secure_boot`, needs{}},
		{`size(boot.events["EV_IPL"]) > 0`, needs{eventTypes: []uint32{0xd}}},
		{`size(boot.events) > 0`, needs{events: true}},
		{`boot.grub_files.size() > 0`, needs{grubFiles: true}},
		{`boot.firmware.all(d, d.size() == 64)`, needs{lists: true}},
		{`boot.bootloaders.size() > 0 && boot.efi_apps.size() > 0`, needs{lists: true}},
		{`[boot].size() == 1`, allNeeds},
	} {
		f := &File{Version: 1, Rules: []Rule{{Name: "r", Claim: "configuration", Expr: tc.expr, OnFailure: 96}}}
		p, err := Compile(f)
		if err != nil {
			t.Fatalf("%s: %v", tc.expr, err)
		}
		if !reflect.DeepEqual(p.needs, tc.want) {
			t.Errorf("%s: needs %+v, want %+v", tc.expr, p.needs, tc.want)
		}
	}
}
