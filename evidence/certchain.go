package evidence

import (
	"context"
	"crypto"
	"crypto/sha256"
	"crypto/x509"
	"encoding/pem"
	"errors"
	"fmt"
	"os"
	"sync"
	"time"

	pb "github.com/google/go-tpm-tools/proto/attest"
	"github.com/google/go-tpm-tools/server"
)

// ErrAKCertKey is the cause of a refusal when the AK certificate certifies another key than the
// AK that signed the quotes.
var ErrAKCertKey = errors.New("AK certificate's public key differs from the AK")

// CertChain trusts an AK whose certificate (Attestation.ak_cert) chains to one of Roots, through
// Intermediates and the intermediates the attestation carries (TCG EK Credential Profile;
// go-tpm-tools server.VerifyAKCert). The certificate's key must be the AK itself, and a GCE
// instance-information extension, when present, must parse (server.GetGCEInstanceInfo), as
// server.VerifyAttestation requires with TrustedRootCerts. A verified (AK, certificate) pair
// is cached until the certificate's NotAfter or CacheTTL, whichever comes
// first, so the ~0.45 ms chain check is paid once per AK, not per attestation; a cache hit costs
// a SHA-256 of the certificate and a map read under a read lock, with no allocation.
type CertChain struct {
	Roots         []*x509.Certificate
	Intermediates []*x509.Certificate
	// CacheTTL bounds how long a verified chain is trusted without re-checking (default 1 h).
	CacheTTL time.Duration
	// MaxCache bounds the cache's entries (default 100000); a full cache is cleared.
	MaxCache int
	// Now is the clock (default time.Now).
	Now func() time.Time

	mu    sync.RWMutex
	cache map[[32]byte]chainEntry // SHA-256(cert DER) -> the AK it was verified for, until when
}

// chainEntry is a verified (AK, certificate) pair: the AK's thumbprint and how long the pair
// is trusted without re-checking.
type chainEntry struct {
	id    string
	until time.Time
}

// TrustAK checks att's AK certificate as described on CertChain.
func (c *CertChain) TrustAK(ctx context.Context, ak crypto.PublicKey, att *pb.Attestation) (TrustMethod, error) {
	id, err := Thumbprint(ak)
	if err != nil {
		return "", err
	}
	return c.trustKnown(ctx, ak, id, att)
}

// trustKnown is TrustAK for an AK whose thumbprint id is already known.
func (c *CertChain) trustKnown(_ context.Context, ak crypto.PublicKey, id string, att *pb.Attestation) (TrustMethod, error) {
	der := att.GetAkCert()
	if len(der) == 0 {
		return "", fmt.Errorf("%w: the attestation carries no AK certificate", ErrUntrustedAK)
	}
	if len(c.Roots) == 0 {
		return "", fmt.Errorf("%w: no trusted roots configured", ErrUntrustedAK)
	}
	k := sha256.Sum256(der)
	now := c.now()
	c.mu.RLock()
	e, ok := c.cache[k]
	c.mu.RUnlock()
	if ok && e.id == id && now.Before(e.until) {
		return TrustCertificate, nil
	}
	cert, err := x509.ParseCertificate(der)
	if err != nil {
		return "", fmt.Errorf("%w: AK certificate: %w", ErrUntrustedAK, err)
	}
	cid, err := Thumbprint(cert.PublicKey)
	if err != nil || cid != id {
		return "", fmt.Errorf("%w: %w", ErrUntrustedAK, ErrAKCertKey)
	}
	inter := append([]*x509.Certificate(nil), c.Intermediates...)
	for i, b := range att.GetIntermediateCerts() {
		ic, err := x509.ParseCertificate(b)
		if err != nil {
			return "", fmt.Errorf("%w: intermediate certificate %d: %w", ErrUntrustedAK, i, err)
		}
		inter = append(inter, ic)
	}
	if err := server.VerifyAKCert(cert, c.Roots, inter); err != nil {
		return "", fmt.Errorf("%w: %w", ErrUntrustedAK, err)
	}
	// server.VerifyAttestation (TrustedRootCerts) also refuses a chained AK certificate whose
	// GCE instance-information extension does not parse or holds negative numbers.
	if _, err := server.GetGCEInstanceInfo(cert); err != nil {
		return "", fmt.Errorf("%w: AK certificate: %w", ErrUntrustedAK, err)
	}
	ttl := c.CacheTTL
	if ttl <= 0 {
		ttl = time.Hour
	}
	until := now.Add(ttl)
	if cert.NotAfter.Before(until) {
		until = cert.NotAfter
	}
	max := c.MaxCache
	if max <= 0 {
		max = 100000
	}
	c.mu.Lock()
	if c.cache == nil || len(c.cache) >= max {
		c.cache = map[[32]byte]chainEntry{}
	}
	c.cache[k] = chainEntry{id: id, until: until}
	c.mu.Unlock()
	return TrustCertificate, nil
}

func (c *CertChain) now() time.Time {
	if c.Now != nil {
		return c.Now()
	}
	return time.Now()
}

// LoadCertificates reads every PEM CERTIFICATE block (or a single DER certificate) from each path.
func LoadCertificates(paths ...string) ([]*x509.Certificate, error) {
	var out []*x509.Certificate
	for _, p := range paths {
		b, err := os.ReadFile(p)
		if err != nil {
			return nil, fmt.Errorf("evidence: %w", err)
		}
		n := len(out)
		for rest := b; ; {
			var block *pem.Block
			block, rest = pem.Decode(rest)
			if block == nil {
				break
			}
			if block.Type != "CERTIFICATE" {
				continue
			}
			c, err := x509.ParseCertificate(block.Bytes)
			if err != nil {
				return nil, fmt.Errorf("evidence: %s: %w", p, err)
			}
			out = append(out, c)
		}
		if len(out) == n { // no PEM: try DER
			c, err := x509.ParseCertificate(b)
			if err != nil {
				return nil, fmt.Errorf("evidence: %s: neither PEM certificates nor a DER certificate: %w", p, err)
			}
			out = append(out, c)
		}
	}
	return out, nil
}
