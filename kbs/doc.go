// Package kbs is passport's key broker service (KBS): a relying party (RFC 9334 section 5.1)
// that releases secrets, such as disk encryption keys, only to machines holding a valid passport
// token, and only encrypted to the key the token is bound to.
//
// A client asks for GET /kbs/v0/resource/{repository}/{type}/{tag} (the resource path
// convention of the Confidential Containers KBS protocol, Trustee
// docs/kbs_attestation_protocol.md) with "Authorization: DPoP <token>" and a DPoP proof (RFC 9449)
// signed by the token's cnf key. Broker.Release decides, in this order, and stops at the first
// refusal:
//
//  1. the resource name: three components of [A-Za-z0-9._-] (api.ParseResourceID), checked
//     before anything else is touched (400);
//  2. the token: validated locally by a TokenVerifier (a relyingparty.Verifier: signature,
//     typ, iss, aud, exp, EAR status floor), and it must carry a cnf key (401);
//  3. proof of possession: a DPoP proof over the request by the cnf key, unless the resource's
//     policy rule opts in to bearer tokens (401; a stolen token is useless without the key).
//     Its htu must be Config.PublicURL followed by the request's escaped path, never a URL
//     built from the Host header;
//  4. revocation, through a RevocationChecker (401 when revoked, 503 when it cannot answer);
//  5. the cnf key must be able to receive a JWE (403);
//  6. the resource's policy: a CEL expression over the token's claims (403); the default
//     requires the overall EAR status to be affirming;
//  7. the secret store (404 only now, so that callers who may not have a secret cannot learn
//     which names exist; 503 when the store is down);
//  8. the secret is returned as a compact JWE (RFC 7516) encrypted to the cnf key:
//     ECDH-ES+A256KW with A256GCM for EC keys, RSA-OAEP-256 with A256GCM for RSA keys, never
//     compressed, never to another key, never in plaintext.
//
// Every decision writes one structured audit line (log/slog): resource, sub, jti, decision,
// reason and HTTP status; never the token, the proof or the secret.
//
// Secrets live behind Store: DirStore (files DIR/repository/type/tag) or RedisStore (values
// encrypted with AES-256-GCM under a key-encryption key). AdminHandler serves an authenticated,
// write-only admin API (PUT and DELETE of secrets) for its own listener; AdminClient calls it.
package kbs
