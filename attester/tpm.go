package attester

import (
	"errors"
	"fmt"
	"io"
	"strings"

	"github.com/google/go-tpm-tools/simulator"
)

// Spec values understood by OpenTPM.
const (
	// SpecSimulator selects the in-process Microsoft reference TPM 2.0 simulator of
	// go-tpm-tools. The empty spec means the same.
	SpecSimulator = "simulator"
)

// ErrUnknownTPMSpec is returned (wrapped) by OpenTPM for a spec it does not understand.
var ErrUnknownTPMSpec = errors.New("attester: unknown TPM spec")

// OpenTPM opens the TPM 2.0 named by spec and returns a byte stream of TPM commands and
// responses (TPM 2.0 Part 1 section 18). The caller must Close it.
//
// spec is one of:
//   - "" or "simulator": the go-tpm-tools simulator (cgo). It is a process-wide singleton: a
//     second OpenTPM("simulator") blocks until the first one is closed. Each open starts from a
//     manufacture reset, so PCRs are at their reset values and no keys or NV indices survive.
//   - an absolute device path such as "/dev/tpmrm0" (the kernel resource manager, preferred) or
//     "/dev/tpm0": a Linux character device, opened with go-tpm's legacy tpm2.OpenTPM, which
//     also checks that the device answers as a TPM 2.0. Unsupported on other systems.
//   - "swtpm:HOST:PORT": an external swtpm's TCP command channel (see SpecSWTPMPrefix). There
//     is no resource manager in between: the caller must flush what it loads (Attester does).
//
// Any other spec yields an error wrapping ErrUnknownTPMSpec.
func OpenTPM(spec string) (io.ReadWriteCloser, error) {
	switch {
	case spec == "" || spec == SpecSimulator:
		sim, err := simulator.Get()
		if err != nil {
			return nil, fmt.Errorf("attester: start TPM simulator: %w", err)
		}
		return sim, nil
	case strings.HasPrefix(spec, "/"):
		rwc, err := openDevice(spec)
		if err != nil {
			return nil, fmt.Errorf("attester: open TPM device %s: %w", spec, err)
		}
		return rwc, nil
	case strings.HasPrefix(spec, SpecSWTPMPrefix):
		rwc, err := openSWTPM(strings.TrimPrefix(spec, SpecSWTPMPrefix))
		if err != nil {
			return nil, fmt.Errorf("attester: open swtpm %s: %w", spec, err)
		}
		return rwc, nil
	default:
		return nil, fmt.Errorf("%w %q: want %q, swtpm:HOST:PORT or a device path such as /dev/tpmrm0", ErrUnknownTPMSpec, spec, SpecSimulator)
	}
}
