// Package relyingparty validates passport tokens locally, as a relying party does in the
// passport model of RFC 9334 section 5.1: the issuer's public keys are fetched once and cached
// (RemoteKeySet) or read from a file (LoadJWKSFile), and every request is checked without
// calling the issuer.
//
// A token is a compact JWS (RFC 7515 section 7.1) whose protected header carries alg, kid and
// typ "eat+jwt" (RFC 9711 section 7.2.1), and whose payload is a token.Claims claim set (an EAT
// Attestation Result, draft-ietf-rats-ear). Verifier.Verify checks, in this order:
//
//  1. size: a token longer than Config.MaxTokenSize (16 KiB by default) is refused before any
//     parsing (ErrTooLarge), and so is any byte outside the base64url alphabet and the two dots
//     of the compact serialization (ErrMalformed);
//  2. header: alg in the allowlist (ErrAlgorithm; "none" and HMAC algorithms are never
//     accepted), typ "eat+jwt" (ErrType), and no crit, b64, jwk, jku, x5u or x5c parameter
//     (ErrHeader): tokens carrying their own keys are refused, never trusted;
//  3. signature, through go-oidc's IDTokenVerifier and the configured KeySet (ErrUnknownKey,
//     ErrBadSignature), before any claim is looked at: a forged token is reported as forged even
//     when it is also expired;
//  4. claims: iss, aud, exp, nbf and the EAR status tier through token.Claims.Validate
//     (token.ErrIssuer, token.ErrAudience, token.ErrExpired, token.ErrNotYetValid,
//     token.ErrStatus, token.ErrMalformed);
//  5. the caller's claim requirements: Config.Require and Config.RequireCEL (ErrRequirement).
//
// A token that passed is remembered (found by the SHA-256 of its signature segment, accepted
// only when the whole token equals the stored one, compared in constant time; bounded LRU,
// never past its exp, and only while the key set still holds the key that verified it: a key
// withdrawn from the issuer's JWKS stops its cached tokens at the key set's next refresh), so
// presenting it again costs a hash and the cheap claim checks instead of a signature
// verification. Verifier.Forget drops a revoked token from that cache. Key sets from other
// packages cannot report a withdrawal, so with them the cache is off.
//
// Middleware wraps an http.Handler: it answers 401 with an RFC 6750 WWW-Authenticate challenge
// when the bearer token is missing or invalid, and passes the verified claims and the raw token
// to the handler (ClaimsFromContext, TokenFromContext). Per route it can require proof of
// possession of the token's cnf key (RequirePoP): a DPoP proof (RFC 9449, "Authorization:
// DPoP") or a TLS client certificate for that key; a stolen token is then useless. The token's
// verification stays cached; the proof is checked on every request, against the service's
// configured public URL (WithExternalURL, required for DPoP: the request's Host header is never
// trusted).
//
// Without a token, Middleware can fall back to the background-check model (RFC 9334 section
// 5.2; WithBackgroundCheck, RequireFreshEvidence): it answers with an issuer nonce, and the
// attester's evidence for it is appraised by the issuer (POST /v1/appraise) into a result
// addressed to this relying party (docs/BACKGROUND_CHECK.md).
//
// Nothing in this package logs tokens or claims.
package relyingparty
