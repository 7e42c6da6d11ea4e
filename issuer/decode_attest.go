package issuer

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"unicode/utf8"

	"github.com/go-jose/go-jose/v4"

	"github.com/passport-attest/passport/api"
)

// decodeAttest reads the body of POST /v1/attest (at most limit bytes) into req. It answers
// what decode does (the same fields, the same refusals and error messages; only a body over
// the limit is always 413, where decode may find a syntax error first and answer 400): a fast
// path takes the canonical shape the attester sends, one JSON object whose keys are spelled
// as api.AttestRequest's tags, each at most once, with plain strings (no escapes) and a cnf
// object, and hands anything else to decode's encoding/json path on the same bytes.
//
// The fast path exists because encoding/json scans a request twice (once to find the end of
// the value, once to decode it) through a per-byte state machine, then unquotes and copies
// the attestation's few kilobytes of base64 before Bytes.UnmarshalText sees them: together
// about a tenth of the issuer's CPU per attestation under the load harness. It decodes the
// base64 fields in place with the same Bytes.UnmarshalText, and gives cnf to go-jose's
// JSONWebKey.UnmarshalJSON after json.Valid, as encoding/json would. FuzzDecodeAttest checks
// that whatever it accepts, encoding/json decodes to the same request.
func decodeAttest(w http.ResponseWriter, r *http.Request, limit int64, req *api.AttestRequest) error {
	r.Body = http.MaxBytesReader(w, r.Body, limit)
	body, err := readBody(r.Body, r.ContentLength, limit)
	if err != nil {
		var mbe *http.MaxBytesError
		if errors.As(err, &mbe) {
			return fmt.Errorf("%w: limit %d bytes", errTooLarge, limit)
		}
		return fmt.Errorf("%w: JSON body: %w", ErrBadRequest, err)
	}
	if fastAttest(body, req) {
		return nil
	}
	*req = api.AttestRequest{}
	return decodeJSON(bytes.NewReader(body), limit, req)
}

// readBody reads all of body, sizing its buffer from the declared length (capped by limit) so
// that a request of the usual few kilobytes is read into one allocation (io.ReadAll starts
// at 512 bytes and bytes.Buffer.ReadFrom always wants 512 bytes to spare: both grow).
func readBody(body io.Reader, declared, limit int64) ([]byte, error) {
	size := int64(512)
	if declared > 0 {
		size = min(declared, limit) + 1 // room to read io.EOF without growing
	}
	buf := make([]byte, 0, size)
	for {
		if len(buf) == cap(buf) {
			buf = append(buf, 0)[:len(buf)]
		}
		n, err := body.Read(buf[len(buf):cap(buf)])
		buf = buf[:len(buf)+n]
		if err == io.EOF {
			return buf, nil
		}
		if err != nil {
			return buf, err
		}
	}
}

// Bits of the fields fastAttest has seen (each may appear once).
const (
	seenNonce = 1 << iota
	seenAttestation
	seenCNF
	seenAudience
	seenEATNonce
)

// fastAttest decodes b into req when b is an attest request in the canonical shape (see
// decodeAttest) and reports whether it did; it never refuses anything itself. When it
// returns false req may be partly filled: the caller resets it.
func fastAttest(b []byte, req *api.AttestRequest) bool {
	i := skipSpace(b, 0)
	if i >= len(b) || b[i] != '{' {
		return false
	}
	i = skipSpace(b, i+1)
	seen := 0
	for {
		key, next, ok := plainString(b, i, false)
		if !ok {
			return false
		}
		i = skipSpace(b, next)
		if i >= len(b) || b[i] != ':' {
			return false
		}
		i = skipSpace(b, i+1)
		var bit int
		switch string(key) {
		case "nonce":
			bit = seenNonce
			var v []byte
			if v, next, ok = plainString(b, i, false); ok {
				ok = req.Nonce.UnmarshalText(v) == nil
			}
		case "attestation":
			bit = seenAttestation
			var v []byte
			if v, next, ok = plainString(b, i, false); ok {
				ok = req.Attestation.UnmarshalText(v) == nil
			}
		case "audience":
			bit = seenAudience
			var v []byte
			if v, next, ok = plainString(b, i, true); ok {
				req.Audience = string(v)
			}
		case "eat_nonce":
			bit = seenEATNonce
			var v []byte
			if v, next, ok = plainString(b, i, true); ok {
				req.EATNonce = string(v)
			}
		case "cnf":
			bit = seenCNF
			next, ok = objectEnd(b, i)
			if ok && json.Valid(b[i:next]) {
				k := new(jose.JSONWebKey)
				ok = k.UnmarshalJSON(b[i:next]) == nil
				req.CNF = k
			} else {
				ok = false
			}
		default:
			return false
		}
		if !ok || seen&bit != 0 {
			return false
		}
		seen |= bit
		i = skipSpace(b, next)
		if i >= len(b) {
			return false
		}
		if b[i] == '}' {
			break
		}
		if b[i] != ',' {
			return false
		}
		i = skipSpace(b, i+1)
	}
	return skipSpace(b, i+1) == len(b)
}

// skipSpace returns the index of the first byte at or after i that is not JSON whitespace
// (RFC 8259 section 2).
func skipSpace(b []byte, i int) int {
	for i < len(b) && (b[i] == ' ' || b[i] == '\t' || b[i] == '\n' || b[i] == '\r') {
		i++
	}
	return i
}

// plainString reads the JSON string starting at b[i] when its contents need no unquoting:
// no escape, no control character, and either only ASCII or (with utf8Ok) valid UTF-8, which
// encoding/json also keeps as it is. It returns the contents (a sub-slice of b) and the index
// after the closing quote; anything else (no string there, an escape, a control character,
// non-ASCII without utf8Ok, invalid UTF-8) is not ok.
func plainString(b []byte, i int, utf8Ok bool) ([]byte, int, bool) {
	if i >= len(b) || b[i] != '"' {
		return nil, 0, false
	}
	ascii := true
	for j := i + 1; j < len(b); j++ {
		c := b[j]
		switch {
		case c == '"':
			v := b[i+1 : j]
			if !ascii && !utf8.Valid(v) {
				return nil, 0, false
			}
			return v, j + 1, true
		case c == '\\' || c < 0x20:
			return nil, 0, false
		case c >= 0x80:
			if !utf8Ok {
				return nil, 0, false
			}
			ascii = false
		}
	}
	return nil, 0, false
}

// objectEnd returns the index just after the JSON object starting at b[i], found by
// balancing braces and brackets outside strings; ok is false when b[i] is not '{' or the
// object does not close. It does not validate: the caller runs json.Valid on the result.
func objectEnd(b []byte, i int) (int, bool) {
	if i >= len(b) || b[i] != '{' {
		return 0, false
	}
	depth := 0
	for j := i; j < len(b); j++ {
		switch b[j] {
		case '{', '[':
			depth++
		case '}', ']':
			depth--
			if depth == 0 {
				return j + 1, true
			}
		case '"':
			for j++; j < len(b) && b[j] != '"'; j++ {
				if b[j] == '\\' {
					j++
				}
			}
		}
	}
	return 0, false
}
