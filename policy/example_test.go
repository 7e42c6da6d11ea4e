package policy_test

import (
	"crypto/sha256"
	"fmt"

	pb "github.com/google/go-tpm-tools/proto/attest"

	"github.com/passport-attest/passport/evidence"
	"github.com/passport-attest/passport/policy"
)

// A policy file with two rules and one reference-value set, evaluated on a (hand-made)
// verified State: affirmed, then refused when a boot loader changes, with the reason.
func Example() {
	shim := sha256.Sum256([]byte("shim 15.7"))
	grub := sha256.Sum256([]byte("grub 2.06"))
	f, err := policy.Parse(fmt.Appendf(nil, `
version: 1
name: example
reference_values:
  bootloaders: [%x, %x]
rules:
  - name: secure-boot
    claim: configuration
    expr: boot.secure_boot
    on_failure: contraindicated
    on_success: affirming
    message: UEFI Secure Boot must be on
  - name: bootloaders
    claim: executables
    expr: size(boot.bootloaders) > 0 && boot.bootloaders.all(d, d in refs.bootloaders)
    on_failure: contraindicated
    on_success: approved_boot
    message: a boot loader is not a known one
    explain: '"unknown: " + boot.bootloaders.filter(d, !(d in refs.bootloaders)).join(", ")'
`, shim, grub))
	if err != nil {
		fmt.Println(err)
		return
	}
	p, err := policy.New(f, nil) // compiled once; no reference-value store
	if err != nil {
		fmt.Println(err)
		return
	}
	const bsa = 0x80000003 // EV_EFI_BOOT_SERVICES_APPLICATION
	st := &evidence.State{Bank: "sha256", AKTrust: evidence.TrustAllowlist, LoggedPCRs: []uint32{4},
		Machine: &pb.MachineState{
			SecureBoot: &pb.SecureBootState{Enabled: true},
			RawEvents: []*pb.Event{
				{PcrIndex: 4, UntrustedType: bsa, Digest: shim[:]},
				{PcrIndex: 4, UntrustedType: bsa, Digest: grub[:]},
			},
		}}
	a := p.Appraise(st)
	fmt.Println(a.Status, a.Vector["configuration"], a.Vector["executables"], len(a.ReferenceValues))

	evil := make([]byte, 32) // a digest no reference value has
	evil[0], evil[1] = 0xba, 0xd0
	st.Machine.RawEvents[1].Digest = evil
	a = p.Appraise(st)
	fmt.Println(a.Status)
	for _, fl := range a.Failures {
		fmt.Printf("%s (%s=%d): %s\n", fl.Rule, fl.Claim, fl.Value, fl.Reason)
	}
	// Output:
	// affirming 2 3 2
	// contraindicated
	// bootloaders (executables=96): a boot loader is not a known one (seen: unknown: bad0000000000000000000000000000000000000000000000000000000000000; refs.bootloaders has 2 values)
}
