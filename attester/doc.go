// Package attester is the attesting side of passport (the Attester role of RFC 9334 section
// 3.1): it opens a TPM 2.0 (the go-tpm-tools simulator, a Linux device node, later swtpm),
// produces evidence for an issuer's challenge and submits it over HTTP to obtain an
// attestation-result token (the passport model, RFC 9334 section 5.1).
//
// The evidence is a go-tpm-tools attest.Attestation: the public area of an ECC attestation key
// (AK), one TPM2_Quote per allocated PCR bank and the TCG PC Client event log. Every quote's
// extraData (TPM 2.0 Part 3, TPM2_Quote qualifyingData) is api.ExtraData(nonce, cnf), so the
// evidence is bound both to the issuer's single-use nonce and to the attester's confirmation
// key (RFC 7800 cnf) that the token will name; evidence answering a relying party's challenge
// (EvidenceTransport, the background check) also binds that relying party's origin
// (api.ExtraDataFor).
//
// The client trusts nothing it receives from the network: it checks the nonce length, caps
// every response body at MaxResponseSize and returns the issuer's refusals as *HTTPError
// wrapping *api.Error.
//
// For tests and demos, ReplayEventLog extends a real machine's event log into the simulator's
// PCRs so that a quote over them verifies against that log (see docs/REPLAY.md for the
// logs this works with).
//
// KBSClient is the key broker client: it presents the token to a passport key broker (package
// kbs) with a DPoP proof by the cnf key and decrypts the released secret with that key
// (OpenSecret refuses any JWE but ECDH-ES+A256KW or RSA-OAEP-256 with A256GCM, uncompressed).
// SaveToken, LoadToken and Reusable let a token be kept and presented again while fresh.
package attester
