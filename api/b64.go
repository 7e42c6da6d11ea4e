package api

import (
	"bytes"
	"encoding/base64"
	"fmt"
)

func encode(b []byte) string { return base64.RawURLEncoding.EncodeToString(b) }

func decode(s string) ([]byte, error) { return decodeBytes([]byte(s)) }

// decodeBytes decodes base64url, or standard base64 when b holds '+' or '/', padded or not.
// It works on bytes so that Bytes.UnmarshalText (every attest request's few-kilobyte
// attestation) decodes without string copies.
func decodeBytes(b []byte) ([]byte, error) {
	b = bytes.TrimRight(b, "=")
	enc, name := base64.RawURLEncoding, "base64url"
	if bytes.ContainsAny(b, "+/") {
		enc, name = base64.RawStdEncoding, "base64"
	}
	out := make([]byte, enc.DecodedLen(len(b)))
	n, err := enc.Decode(out, b)
	if err != nil {
		return nil, fmt.Errorf("api: bad %s: %w", name, err)
	}
	return out[:n], nil
}
