package attester

import (
	"context"
	"crypto"
	"crypto/ecdsa"
	"crypto/rsa"
	"crypto/subtle"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"time"

	"github.com/go-jose/go-jose/v4"

	"github.com/passport-attest/passport/api"
)

// ErrBadSecret is returned (wrapped) when a key broker's 200 answer is not a JWE this client
// accepts: not compact, an unexpected alg or enc, a zip (compression) or any other header
// parameter outside alg, enc, epk, kid, apu and apv, a kid that is not the cnf key's
// thumbprint, or a ciphertext that does not decrypt with the cnf key.
var ErrBadSecret = errors.New("attester: key broker response refused")

// BrokerError is the error for a non-2xx key broker answer (401 no valid token or proof, 403
// policy, 404 no such resource, 503 unavailable). It unwraps to *HTTPError, and from there to
// the broker's *api.Error.
type BrokerError struct {
	*HTTPError
}

// Error reports the status and the broker's error.
func (e *BrokerError) Error() string {
	return "key broker answered " + strconv.Itoa(e.Status) + ": " + e.Err.Error()
}

// Unwrap returns the *HTTPError.
func (e *BrokerError) Unwrap() error { return e.HTTPError }

// KBSClient fetches secrets from a passport key broker (package kbs): GET URL +
// api.PathKBSResource + "repository/type/tag" with the token as "Authorization: DPoP" and a
// fresh DPoP proof (RFC 9449) signed by the token's cnf key, then decrypts the JWE answer with
// that same key. It does not follow redirects. A KBSClient is safe for concurrent use.
type KBSClient struct {
	// URL is the broker's base URL, e.g. "https://kbs.example"; a trailing slash is ignored.
	URL string
	// HTTP supplies the transport (wrapped in a DPoPTransport) and the timeout. Nil means
	// http.DefaultTransport and DefaultTimeout.
	HTTP *http.Client
	// Now is the clock of the proofs' iat; default time.Now.
	Now func() time.Time
}

// Fetch returns the secret id, released to tok, whose cnf key is key (an *ecdsa.PrivateKey,
// such as Attester.CNFPrivate(), or an *rsa.PrivateKey). A non-2xx answer fails with
// *BrokerError; an answer that is not a JWE for key fails with ErrBadSecret (see OpenSecret).
func (c *KBSClient) Fetch(ctx context.Context, id api.ResourceID, tok string, key crypto.Signer) ([]byte, error) {
	if err := id.Validate(); err != nil {
		return nil, fmt.Errorf("attester: %w", err)
	}
	if tok == "" || key == nil {
		return nil, errors.New("attester: Fetch needs a token and its cnf key")
	}
	base := strings.TrimRight(c.URL, "/")
	if u, err := url.Parse(base); err != nil || (u.Scheme != "https" && u.Scheme != "http") || u.Host == "" {
		return nil, fmt.Errorf("attester: key broker URL %q is not an absolute http(s) URL", c.URL)
	}
	hc := c.HTTP
	if hc == nil {
		hc = defaultHTTP
	}
	client := &http.Client{
		Transport:     &DPoPTransport{Base: hc.Transport, Token: StaticToken(tok), Key: key, Now: c.Now},
		Timeout:       hc.Timeout,
		CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse },
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, base+id.Path(), nil)
	if err != nil {
		return nil, fmt.Errorf("attester: %w", err)
	}
	req.Header.Set("Accept", "application/jose")
	resp, err := client.Do(req)
	if err != nil {
		return nil, fmt.Errorf("attester: GET %s: %w", id, err)
	}
	defer resp.Body.Close()
	data, err := readCapped(resp.Body, MaxResponseSize)
	if err != nil {
		return nil, fmt.Errorf("attester: GET %s: read response (status %d): %w", id, resp.StatusCode, err)
	}
	if resp.StatusCode != http.StatusOK {
		return nil, fmt.Errorf("attester: GET %s: %w", id, &BrokerError{decodeError(resp.StatusCode, data)})
	}
	secret, err := OpenSecret(strings.TrimSpace(string(data)), key)
	if err != nil {
		return nil, fmt.Errorf("attester: GET %s: %w", id, err)
	}
	return secret, nil
}

// jweHeaderAllowed are the only protected header parameters OpenSecret accepts (RFC 7516
// section 4.1, RFC 7518 section 4.6.1). "zip", "p2s"/"p2c" (PBES2), "jku", "jwk", "x5u", "crit"
// and every other one are refused.
var jweHeaderAllowed = map[string]bool{"alg": true, "enc": true, "epk": true, "kid": true, "apu": true, "apv": true}

// OpenSecret decrypts a compact JWE (RFC 7516 section 7.1) released to key. Before decrypting it
// checks the protected header: alg must be ECDH-ES+A256KW for an EC key or RSA-OAEP-256 for
// an RSA key, enc A256GCM, no parameter outside alg, enc, epk, kid, apu and apv (so never zip,
// PBES2 or dir), and kid, when present, the RFC 7638 thumbprint of key's public half. go-jose
// then parses it with exactly that alg and enc allowed and decrypts. Errors wrap ErrBadSecret.
func OpenSecret(jwe string, key crypto.Signer) ([]byte, error) {
	var alg jose.KeyAlgorithm
	var priv any
	switch k := key.(type) {
	case *ecdsa.PrivateKey:
		alg, priv = jose.ECDH_ES_A256KW, k
	case *rsa.PrivateKey:
		alg, priv = jose.RSA_OAEP_256, k
	default:
		return nil, fmt.Errorf("%w: cnf key type %T cannot decrypt", ErrBadSecret, key)
	}
	if len(jwe) > MaxResponseSize || strings.Count(jwe, ".") != 4 {
		return nil, fmt.Errorf("%w: not a compact JWE", ErrBadSecret)
	}
	hb, err := base64.RawURLEncoding.DecodeString(jwe[:strings.IndexByte(jwe, '.')])
	if err != nil {
		return nil, fmt.Errorf("%w: protected header: %w", ErrBadSecret, err)
	}
	var hdr map[string]json.RawMessage
	if err := json.Unmarshal(hb, &hdr); err != nil {
		return nil, fmt.Errorf("%w: protected header: %w", ErrBadSecret, err)
	}
	for name := range hdr {
		if !jweHeaderAllowed[name] {
			return nil, fmt.Errorf("%w: header parameter %q not accepted", ErrBadSecret, name)
		}
	}
	var h struct {
		Alg string `json:"alg"`
		Enc string `json:"enc"`
		Kid string `json:"kid"`
	}
	if err := json.Unmarshal(hb, &h); err != nil {
		return nil, fmt.Errorf("%w: protected header: %w", ErrBadSecret, err)
	}
	if h.Alg != string(alg) || h.Enc != string(jose.A256GCM) {
		return nil, fmt.Errorf("%w: alg %q enc %q, want %s and %s", ErrBadSecret, h.Alg, h.Enc, alg, jose.A256GCM)
	}
	if h.Kid != "" {
		tp, err := (&jose.JSONWebKey{Key: key.Public()}).Thumbprint(crypto.SHA256)
		if err != nil {
			return nil, fmt.Errorf("%w: thumbprint: %w", ErrBadSecret, err)
		}
		if subtle.ConstantTimeCompare([]byte(h.Kid), []byte(base64.RawURLEncoding.EncodeToString(tp))) != 1 {
			return nil, fmt.Errorf("%w: encrypted to another key (kid)", ErrBadSecret)
		}
	}
	obj, err := jose.ParseEncryptedCompact(jwe, []jose.KeyAlgorithm{alg}, []jose.ContentEncryption{jose.A256GCM})
	if err != nil {
		return nil, fmt.Errorf("%w: %w", ErrBadSecret, err)
	}
	secret, err := obj.Decrypt(priv)
	if err != nil {
		return nil, fmt.Errorf("%w: %w", ErrBadSecret, err)
	}
	return secret, nil
}
