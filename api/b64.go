package api

import (
	"bytes"
	"encoding/base64"
	"fmt"
	"strings"
)

func encode(b []byte) string { return base64.RawURLEncoding.EncodeToString(b) }

func decode(s string) ([]byte, error) {
	s = strings.TrimRight(s, "=")
	if strings.ContainsAny(s, "+/") {
		b, err := base64.RawStdEncoding.DecodeString(s)
		if err != nil {
			return nil, fmt.Errorf("api: bad base64: %w", err)
		}
		return b, nil
	}
	b, err := base64.RawURLEncoding.DecodeString(s)
	if err != nil {
		return nil, fmt.Errorf("api: bad base64url: %w", err)
	}
	return b, nil
}

// decodeBytes is decode on bytes, without decode's string copies: it accepts and returns
// exactly what decode(string(b)) does (Bytes.UnmarshalText runs on every attest request's
// few-kilobyte attestation).
func decodeBytes(b []byte) ([]byte, error) {
	b = bytes.TrimRight(b, "=")
	out := make([]byte, base64.RawURLEncoding.DecodedLen(len(b)))
	n, err := base64.RawURLEncoding.Decode(out, b)
	if err == nil {
		return out[:n], nil
	}
	// Only input with '+' or '/' is standard base64 (decode's choice); such input always
	// fails as base64url, so trying base64url first changes no result and spares a scan.
	if !bytes.ContainsAny(b, "+/") {
		return nil, fmt.Errorf("api: bad base64url: %w", err)
	}
	n, err = base64.RawStdEncoding.Decode(out, b)
	if err != nil {
		return nil, fmt.Errorf("api: bad base64: %w", err)
	}
	return out[:n], nil
}
