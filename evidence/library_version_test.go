package evidence

import (
	"os"
	"strings"
	"testing"
)

// libraryVersions are the go.mod lines naming the go-tpm-tools and go-eventlog (the replaced
// one) whose server.VerifyAttestation verifyAttestation (library.go) reproduces call by call.
var libraryVersions = []string{
	"github.com/google/go-tpm-tools v0.4.11",
	"github.com/google/go-eventlog => github.com/google/go-eventlog v0.0.3-0.20260617163629-883cc5652c69",
}

// TestLibraryVersionReviewed fails when go.mod moves go-tpm-tools or go-eventlog to a version
// other than the one verifyAttestation was written against: an upgrade may add a check to
// server.VerifyAttestation that verifyAttestation would then miss. Re-read the new
// VerifyAttestation, bring verifyAttestation in line, then update libraryVersions.
// TestLibraryEquivalence and the fuzz targets compare behaviour; this catches what they cannot.
// (Test binaries carry no module versions in their build information, so go.mod is read.)
func TestLibraryVersionReviewed(t *testing.T) {
	raw, err := os.ReadFile("../go.mod")
	if err != nil {
		t.Fatal(err)
	}
	lines := map[string]bool{}
	for _, l := range strings.Split(string(raw), "\n") {
		lines[strings.Join(strings.Fields(strings.TrimPrefix(strings.TrimSpace(l), "replace ")), " ")] = true
	}
	for _, want := range libraryVersions {
		if !lines[want] {
			t.Errorf("go.mod has no line %q: verifyAttestation reproduces server.VerifyAttestation of that version; review library.go against the new one, then update libraryVersions", want)
		}
	}
}
