package relyingparty

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"

	"github.com/coreos/go-oidc/v3/oidc"
	"github.com/go-jose/go-jose/v4"
)

// KeySet is go-oidc's one-method key set (oidc.KeySet): VerifySignature(ctx, jwt) parses a
// compact JWS, verifies its signature and returns the payload. It does not check claims.
//
// The key sets of this package (NewStaticKeySet, LoadJWKSFile, NewRemoteKeySet) select the key
// by kid only, never use a key carried in the token, and return errors that match ErrUnknownKey,
// ErrBadSignature, ErrAlgorithm, ErrHeader, ErrMalformed or ErrTooLarge. Any other KeySet (for
// example go-oidc's own) may be used too; its failures are reported as ErrBadSignature.
type KeySet = oidc.KeySet

// maxJWKSSize bounds a JWKS document read from a file or the network: 1 MiB.
const maxJWKSSize = 1 << 20

// staticKeySet is a fixed set of public keys.
type staticKeySet struct {
	ix *keyIndex
}

// NewStaticKeySet returns a KeySet holding the usable keys of set: public signing keys with a
// kid (private, symmetric and kid-less keys are dropped). It never does I/O. A token whose kid is
// not in set fails with ErrUnknownKey.
func NewStaticKeySet(set jose.JSONWebKeySet) KeySet {
	return &staticKeySet{ix: newKeyIndex(set.Keys)}
}

// VerifySignature implements KeySet.
func (s *staticKeySet) VerifySignature(ctx context.Context, raw string) ([]byte, error) {
	h, err := headerFor(ctx, raw)
	if err != nil {
		return nil, err
	}
	return verifyWith(ctx, s.ix, raw, h)
}

func (s *staticKeySet) holds(ref keyRef) bool { return s.ix.holds(ref) }

// LoadJWKSFile reads a JWK Set (RFC 7517 section 5, at most 1 MiB) from path once and returns a
// static KeySet of its usable keys, for relying parties that run offline. The file is never read
// again and the key set never touches the network. Members that are not valid JWKs are skipped;
// a file with no usable public signing key is an error.
func LoadJWKSFile(path string) (KeySet, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, fmt.Errorf("relyingparty: open JWKS file: %w", err)
	}
	defer f.Close()
	b, err := io.ReadAll(io.LimitReader(f, maxJWKSSize+1))
	if err != nil {
		return nil, fmt.Errorf("relyingparty: read JWKS file: %w", err)
	}
	if len(b) > maxJWKSSize {
		return nil, fmt.Errorf("relyingparty: JWKS file %s exceeds %d bytes", path, maxJWKSSize)
	}
	keys, err := parseJWKS(b)
	if err != nil {
		return nil, fmt.Errorf("relyingparty: %s: %w", path, err)
	}
	ix := newKeyIndex(keys)
	if ix.n == 0 {
		return nil, fmt.Errorf("relyingparty: %s: %w", path, errors.New("no usable public signing key"))
	}
	return &staticKeySet{ix: ix}, nil
}
