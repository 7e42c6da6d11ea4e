package relyingparty

import (
	"context"
	"crypto"
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/rsa"
	"encoding/json"
	"errors"
	"fmt"

	"github.com/go-jose/go-jose/v4"
)

// keyIndex is an immutable set of public signing keys indexed by kid. Key sets swap whole
// indexes atomically, so verification never takes a lock.
type keyIndex struct {
	byKID map[string][]indexedKey
	n     int
}

// indexedKey is a held key and its RFC 7638 thumbprint (SHA-256), which names it in the
// verified-token cache: a cached token stays valid only while the key that verified it is held.
type indexedKey struct {
	jwk   jose.JSONWebKey
	thumb keyThumb
}

// keyThumb is the RFC 7638 SHA-256 thumbprint of a verification key.
type keyThumb [32]byte

// keyRef names the key that verified a token: its kid and thumbprint (the same kid may be
// published again over another key, which must not keep the old key's tokens valid).
type keyRef struct {
	kid   string
	thumb keyThumb
}

// keyHolder is implemented by this package's key sets: whether the key ref names is still in the
// set. The Verifier asks it on every cache hit, so that a token verified by a key the issuer
// has since withdrawn from its JWKS is verified again (and refused) instead of being served
// from the cache until its exp.
type keyHolder interface {
	holds(ref keyRef) bool
}

// newKeyIndex keeps the usable keys: public (never a private or symmetric key), for signatures
// (use "sig" or absent), with a kid, of a type an asymmetric JWS algorithm verifies.
func newKeyIndex(keys []jose.JSONWebKey) *keyIndex {
	ix := &keyIndex{byKID: make(map[string][]indexedKey, len(keys))}
	for _, k := range keys {
		if k.KeyID == "" || (k.Use != "" && k.Use != "sig") || !k.Valid() || !k.IsPublic() {
			continue
		}
		switch k.Key.(type) {
		case *ecdsa.PublicKey, *rsa.PublicKey, ed25519.PublicKey:
		default:
			continue
		}
		if k.Algorithm != "" && !isAsymmetric(k.Algorithm) {
			continue
		}
		tp, err := k.Thumbprint(crypto.SHA256)
		if err != nil || len(tp) != len(keyThumb{}) {
			continue
		}
		ix.byKID[k.KeyID] = append(ix.byKID[k.KeyID], indexedKey{jwk: k, thumb: keyThumb(tp)})
		ix.n++
	}
	return ix
}

func (ix *keyIndex) has(kid string) bool {
	if ix == nil {
		return false
	}
	_, ok := ix.byKID[kid]
	return ok
}

// holds reports whether the index holds the key ref names (same kid, same key).
func (ix *keyIndex) holds(ref keyRef) bool {
	if ix == nil {
		return false
	}
	for _, k := range ix.byKID[ref.kid] {
		if k.thumb == ref.thumb {
			return true
		}
	}
	return false
}

// parseJWKS decodes a JWK Set (RFC 7517 section 5) leniently: a member that is not a valid JWK
// (unknown kty, bad encoding) is skipped as RFC 7517 section 5 asks, instead of failing the set.
// A document without a "keys" array is an error.
func parseJWKS(b []byte) ([]jose.JSONWebKey, error) {
	var doc struct {
		Keys []json.RawMessage `json:"keys"`
	}
	if err := json.Unmarshal(b, &doc); err != nil {
		return nil, fmt.Errorf("jwks: %w", err)
	}
	if doc.Keys == nil {
		return nil, errors.New("jwks: no \"keys\" array")
	}
	keys := make([]jose.JSONWebKey, 0, len(doc.Keys))
	for _, raw := range doc.Keys {
		var k jose.JSONWebKey
		if err := json.Unmarshal(raw, &k); err != nil {
			continue
		}
		keys = append(keys, k)
	}
	return keys, nil
}

// verify checks raw (already shape-checked into h) with the key named by h.Kid and returns the
// payload and which key verified it. Keys carried by the token itself are never consulted: the
// verification key is passed to go-jose as a bare public key, never as a set it could select
// from.
func (ix *keyIndex) verify(raw string, h header) ([]byte, keyRef, error) {
	if h.Kid == "" {
		return nil, keyRef{}, fmt.Errorf("%w: token has no kid", ErrUnknownKey)
	}
	cands := ix.byKID[h.Kid]
	if len(cands) == 0 {
		return nil, keyRef{}, fmt.Errorf("%w: kid %q", ErrUnknownKey, h.Kid)
	}
	jws, err := jose.ParseSignedCompact(raw, []jose.SignatureAlgorithm{jose.SignatureAlgorithm(h.Alg)})
	if err != nil {
		return nil, keyRef{}, fmt.Errorf("%w: %w", ErrMalformed, err)
	}
	tried := false
	for _, k := range cands {
		if k.jwk.Algorithm != "" && k.jwk.Algorithm != h.Alg {
			continue
		}
		tried = true
		if payload, err := jws.Verify(k.jwk.Key); err == nil {
			return payload, keyRef{kid: h.Kid, thumb: k.thumb}, nil
		}
	}
	if !tried {
		return nil, keyRef{}, fmt.Errorf("%w: key %q is not published for %s", ErrAlgorithm, h.Kid, h.Alg)
	}
	return nil, keyRef{}, fmt.Errorf("%w: kid %q", ErrBadSignature, h.Kid)
}

// verifyWith is how this package's key sets verify: ix.verify, and, when a Verifier asked (its
// verifyState is in ctx for this very token), the key that verified it recorded there for the
// verified-token cache.
func verifyWith(ctx context.Context, ix *keyIndex, raw string, h header) ([]byte, error) {
	payload, ref, err := ix.verify(raw, h)
	if err != nil {
		return nil, err
	}
	if s := stateFrom(ctx); s != nil && s.raw == raw {
		s.key, s.keyed = ref, true
	}
	return payload, nil
}

// verifyState carries one Verify call's already-checked header to this package's key sets
// through go-oidc (which passes the context on to KeySet.VerifySignature), and brings back the
// key set's typed error and the verified payload, which go-oidc flattens into a string.
type verifyState struct {
	raw     string
	hdr     header
	payload []byte
	err     error
	key     keyRef // the key that verified raw, when keyed (this package's key sets)
	keyed   bool
}

type stateKey struct{}

func stateFrom(ctx context.Context) *verifyState {
	s, _ := ctx.Value(stateKey{}).(*verifyState)
	return s
}

// keyRules are the header rules a key set applies when it is called directly rather than from a
// Verifier: any asymmetric algorithm, no typ requirement.
var keyRules = headerRules{maxSize: DefaultMaxTokenSize, algs: algNames(asymmetricAlgs)}

// headerFor returns the header a Verifier already checked for raw, or checks raw itself.
func headerFor(ctx context.Context, raw string) (header, error) {
	if s := stateFrom(ctx); s != nil && s.raw == raw {
		return s.hdr, nil
	}
	return checkCompact(raw, keyRules)
}

func algNames(algs []jose.SignatureAlgorithm) []string {
	out := make([]string, len(algs))
	for i, a := range algs {
		out[i] = string(a)
	}
	return out
}
