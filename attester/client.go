package attester

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"time"

	"github.com/passport-attest/passport/api"
)

// MaxResponseSize caps every issuer response body the client reads: 1 MiB. A challenge is
// ~100 bytes and a token a few kilobytes; anything longer is refused with ErrResponseTooLarge.
const MaxResponseSize = 1 << 20

// DefaultTimeout bounds a whole request (connect, headers, body) when Client.HTTP is nil.
const DefaultTimeout = 30 * time.Second

// ErrResponseTooLarge is returned (wrapped) when an issuer response exceeds MaxResponseSize.
var ErrResponseTooLarge = errors.New("attester: response body too large")

// ErrBadResponse is returned (wrapped) when a 2xx response is not what the API promises: not
// JSON, a nonce that is not api.NonceSize bytes, an empty token.
var ErrBadResponse = errors.New("attester: malformed issuer response")

var defaultHTTP = &http.Client{Timeout: DefaultTimeout}

// HTTPError is the error for a non-2xx issuer response. Err is the decoded body
// ({error, error_description}, RFC 6749 section 5.2 style); when the body is not such JSON, Err
// is synthesised with Code "http_<status>". HTTPError unwraps to Err, so both
// errors.As(err, &httpErr) and errors.As(err, &apiErr) work.
type HTTPError struct {
	// Status is the HTTP status code, e.g. 409 for a reused nonce (DESIGN.md section 3).
	Status int
	// Err is the issuer's error body; never nil.
	Err *api.Error

	retryAfter time.Duration // the answer's Retry-After, when it had one
}

// Error reports the status and the issuer's error.
func (e *HTTPError) Error() string {
	return "issuer answered " + strconv.Itoa(e.Status) + ": " + e.Err.Error()
}

// Unwrap returns the issuer's *api.Error.
func (e *HTTPError) Unwrap() error { return e.Err }

// Client talks to a passport issuer's HTTP API (DESIGN.md section 3): POST /v1/challenge, then
// POST /v1/attest. It trusts nothing it receives: bodies are size-capped, nonces length-checked.
// A Client is safe for concurrent use.
type Client struct {
	// IssuerURL is the issuer's base URL, e.g. "https://issuer.example"; a trailing slash is
	// ignored. Paths from the api package are appended.
	IssuerURL string
	// HTTP sends the requests. Nil means a shared client with a DefaultTimeout (30 s) timeout.
	HTTP *http.Client
}

// Challenge asks the issuer for a fresh nonce (POST IssuerURL + api.PathChallenge). It fails
// with *HTTPError on a non-2xx answer and with ErrBadResponse unless the nonce is exactly
// api.NonceSize bytes.
func (c *Client) Challenge(ctx context.Context) (*api.ChallengeResponse, error) {
	var resp api.ChallengeResponse
	if err := c.post(ctx, api.PathChallenge, struct{}{}, &resp); err != nil {
		return nil, err
	}
	if len(resp.Nonce) != api.NonceSize {
		return nil, fmt.Errorf("%w: challenge nonce is %d bytes, want %d", ErrBadResponse, len(resp.Nonce), api.NonceSize)
	}
	return &resp, nil
}

// Submit sends evidence (POST IssuerURL + api.PathAttest, JSON) and returns the issued token.
// It fails with *HTTPError on a non-2xx answer (e.g. 409 nonce reused, 403 evidence refused)
// and with ErrBadResponse when the answer carries no token.
func (c *Client) Submit(ctx context.Context, req *api.AttestRequest) (*api.AttestResponse, error) {
	if req == nil {
		return nil, errors.New("attester: nil AttestRequest")
	}
	var resp api.AttestResponse
	if err := c.post(ctx, api.PathAttest, req, &resp); err != nil {
		return nil, err
	}
	if resp.Token == "" {
		return nil, fmt.Errorf("%w: no token in attest response", ErrBadResponse)
	}
	return &resp, nil
}

// Attest runs the whole passport exchange with a: Challenge, a.Evidence for the nonce, Submit
// with audience (empty means the issuer's default aud). The token is bound to a.CNF().
func (c *Client) Attest(ctx context.Context, a *Attester, audience string) (*api.AttestResponse, error) {
	ch, err := c.Challenge(ctx)
	if err != nil {
		return nil, err
	}
	req, err := a.Evidence(ch.Nonce)
	if err != nil {
		return nil, err
	}
	req.Audience = audience
	return c.Submit(ctx, req)
}

// MaxRetryAfter is the longest Retry-After a Client waits on a 429 Too Many Requests before it
// retries, once; a longer delay (or a second 429) is returned to the caller as the *HTTPError.
const MaxRetryAfter = 5 * time.Second

// post sends body as JSON to path and decodes a 2xx answer into out. On 429 (the issuer's rate
// limits refuse a request before acting on it, so sending it again is safe) it waits the
// answer's Retry-After, when at most MaxRetryAfter, and tries once more; except for
// api.PathEnrollActivate, whose 429 (reenroll_too_soon) may come after the issuer used up the
// enrollment: the caller must start again.
func (c *Client) post(ctx context.Context, path string, body, out any) error {
	u, err := c.endpoint(path)
	if err != nil {
		return err
	}
	b, err := json.Marshal(body)
	if err != nil {
		return fmt.Errorf("attester: encode request for %s: %w", path, err)
	}
	err = c.send(ctx, path, u, b, out)
	var he *HTTPError
	if path == api.PathEnrollActivate || !errors.As(err, &he) || he.Status != http.StatusTooManyRequests || he.retryAfter <= 0 || he.retryAfter > MaxRetryAfter {
		return err
	}
	t := time.NewTimer(he.retryAfter)
	defer t.Stop()
	select {
	case <-ctx.Done():
		return err
	case <-t.C:
	}
	return c.send(ctx, path, u, b, out)
}

// send makes one POST of b to u (path names it in errors) and decodes a 2xx answer into out.
func (c *Client) send(ctx context.Context, path, u string, b []byte, out any) error {
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, u, bytes.NewReader(b))
	if err != nil {
		return fmt.Errorf("attester: build request for %s: %w", path, err)
	}
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("Accept", "application/json")
	hc := c.HTTP
	if hc == nil {
		hc = defaultHTTP
	}
	resp, err := hc.Do(req)
	if err != nil {
		return fmt.Errorf("attester: POST %s: %w", path, err)
	}
	defer resp.Body.Close()
	data, err := readCapped(resp.Body, MaxResponseSize)
	if err != nil {
		return fmt.Errorf("attester: POST %s: read response (status %d): %w", path, resp.StatusCode, err)
	}
	if resp.StatusCode < 200 || resp.StatusCode > 299 {
		he := decodeError(resp.StatusCode, data)
		if secs, err := strconv.Atoi(resp.Header.Get("Retry-After")); err == nil && secs >= 0 {
			he.retryAfter = time.Duration(secs) * time.Second
		}
		return fmt.Errorf("attester: POST %s: %w", path, he)
	}
	if err := json.Unmarshal(data, out); err != nil {
		return fmt.Errorf("attester: POST %s: %w: %w", path, ErrBadResponse, err)
	}
	return nil
}

// endpoint joins IssuerURL and path, refusing URLs that are not absolute http(s).
func (c *Client) endpoint(path string) (string, error) {
	base := strings.TrimRight(c.IssuerURL, "/")
	u, err := url.Parse(base)
	if err != nil {
		return "", fmt.Errorf("attester: issuer URL: %w", err)
	}
	if (u.Scheme != "https" && u.Scheme != "http") || u.Host == "" {
		return "", fmt.Errorf("attester: issuer URL %q is not an absolute http(s) URL", c.IssuerURL)
	}
	return base + path, nil
}

// readCapped reads r to the end, failing with ErrResponseTooLarge past limit bytes.
func readCapped(r io.Reader, limit int64) ([]byte, error) {
	data, err := io.ReadAll(io.LimitReader(r, limit+1))
	if err != nil {
		return nil, err
	}
	if int64(len(data)) > limit {
		return nil, fmt.Errorf("%w: more than %d bytes", ErrResponseTooLarge, limit)
	}
	return data, nil
}

// decodeError turns a non-2xx body into *HTTPError, synthesising the api.Error when the body
// is not the issuer's JSON error shape. The description is cut to keep logs readable.
func decodeError(status int, data []byte) *HTTPError {
	var e api.Error
	if err := json.Unmarshal(data, &e); err != nil || e.Code == "" {
		e = api.Error{Code: "http_" + strconv.Itoa(status), Description: http.StatusText(status)}
	}
	const maxDesc = 512
	if len(e.Description) > maxDesc {
		e.Description = strings.ToValidUTF8(e.Description[:maxDesc], "") + "..."
	}
	if len(e.Code) > 64 {
		e.Code = strings.ToValidUTF8(e.Code[:64], "")
	}
	return &HTTPError{Status: status, Err: &e}
}
