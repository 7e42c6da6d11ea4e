package relyingparty

import "errors"

// Errors returned by Verifier.Verify and by the key sets of this package. Callers branch on
// them with errors.Is. Claim errors (token.ErrExpired, token.ErrNotYetValid, token.ErrIssuer,
// token.ErrAudience, token.ErrStatus, token.ErrMalformed) come wrapped from
// token.Claims.Validate.
var (
	// ErrTooLarge: the token is longer than the configured maximum (Config.MaxTokenSize). It is
	// refused before any parsing.
	ErrTooLarge = errors.New("relyingparty: token too large")
	// ErrMalformed: the token is not a compact JWS (RFC 7515 section 7.1) with a JSON protected
	// header and a JSON claim set.
	ErrMalformed = errors.New("relyingparty: malformed token")
	// ErrAlgorithm: the header alg is not in the allowlist (Config.Algorithms), or the key named
	// by kid is published for another algorithm.
	ErrAlgorithm = errors.New("relyingparty: signature algorithm not accepted")
	// ErrType: the header typ is missing or is not "eat+jwt" (RFC 9711 section 7.2.1).
	ErrType = errors.New("relyingparty: token typ is not eat+jwt")
	// ErrHeader: the protected header carries a parameter passport tokens never use and that
	// would change how the token is verified: crit (RFC 7515 section 4.1.11), b64 (RFC 7797), or
	// a key or key reference (jwk, jku, x5u, x5c; RFC 7515 sections 4.1.2 to 4.1.6). Keys carried
	// by a token are never used; such a token is refused outright.
	ErrHeader = errors.New("relyingparty: forbidden JOSE header parameter")
	// ErrUnknownKey: no key of the key set has the token's kid (or the token has no kid).
	ErrUnknownKey = errors.New("relyingparty: unknown signing key")
	// ErrBadSignature: the key named by kid does not verify the signature.
	ErrBadSignature = errors.New("relyingparty: invalid signature")
	// ErrKeySetUnavailable: the key set holds no keys at all because it could never be fetched.
	// It is returned together with ErrUnknownKey (both match errors.Is); Middleware answers 503.
	ErrKeySetUnavailable = errors.New("relyingparty: key set unavailable")
	// ErrRequirement: the token is valid but Config.Require or Config.RequireCEL refused it.
	ErrRequirement = errors.New("relyingparty: claim requirement not met")
	// ErrConfig: NewVerifier was given an incomplete or unsafe Config.
	ErrConfig = errors.New("relyingparty: invalid configuration")
	// ErrDiscovery: the issuer's discovery document could not be fetched or does not match.
	ErrDiscovery = errors.New("relyingparty: discovery failed")
)
