// Package evidence appraises TPM 2.0 evidence: it verifies an attestation (AK trust, quote
// signature, TPMS_ATTEST, PCR digest, nonce binding) with go-tpm-tools' server package, replays
// the TCG event log against the quoted PCRs, adds the checks the library leaves out, and returns a
// verified State only when every check passed. It never signs anything.
package evidence

import (
	_ "github.com/google/go-tpm-tools/client"
	_ "github.com/google/go-tpm-tools/server"
	_ "github.com/google/go-tpm-tools/simulator"
)
