package token

import (
	"bytes"
	"compress/zlib"
	"encoding/base64"
	"errors"
	"fmt"
	"io"
)

// StatusListType is the JOSE typ header of a Status List Token (draft-ietf-oauth-status-list
// section 5.1) and, with "application/", its media type.
const StatusListType = "statuslist+jwt"

// Status values of a Token Status List entry (draft-ietf-oauth-status-list section 7.1).
const (
	StatusValid     byte = 0x00
	StatusInvalid   byte = 0x01
	StatusSuspended byte = 0x02
)

// MaxStatusListBytes bounds the decompressed size of a status list: 16 MiB (134 million
// one-bit entries), far above any list passport issues, so that a compressed "bomb" is refused
// instead of inflated.
const MaxStatusListBytes = 16 << 20

// ErrStatusList is wrapped by every error of status list decoding and lookup.
var ErrStatusList = errors.New("token: invalid status list")

// StatusListClaims is the claim set of a Status List Token (draft-ietf-oauth-status-list
// section 5.1): the issuer, the list's own URI as sub, iat, exp, the ttl (seconds) after which
// a relying party should fetch it again, and the list.
type StatusListClaims struct {
	Issuer     string     `json:"iss"`
	Subject    string     `json:"sub"`
	IssuedAt   int64      `json:"iat"`
	Expiry     int64      `json:"exp,omitempty"`
	TTL        int64      `json:"ttl,omitempty"`
	StatusList StatusList `json:"status_list"`
}

// StatusList is the status_list claim (draft-ietf-oauth-status-list section 4.2): Bits per
// entry (1, 2, 4 or 8) and Lst, the byte array compressed with DEFLATE in the ZLIB format
// (RFC 1950, RFC 1951) and encoded as base64url without padding.
type StatusList struct {
	Bits int    `json:"bits"`
	Lst  string `json:"lst"`
}

// Statuses is a decoded status list: entry i occupies Bits bits of byte i*Bits/8, counted
// from the least significant bit (draft-ietf-oauth-status-list section 4.1).
type Statuses struct {
	bits int
	data []byte
}

// EncodeStatusList compresses data (the byte array in the draft's order) with ZLIB at the best
// compression level and returns the status_list claim.
func EncodeStatusList(bits int, data []byte) (StatusList, error) {
	if !validBits(bits) {
		return StatusList{}, fmt.Errorf("%w: bits %d is not 1, 2, 4 or 8", ErrStatusList, bits)
	}
	var buf bytes.Buffer
	w, err := zlib.NewWriterLevel(&buf, zlib.BestCompression)
	if err != nil {
		return StatusList{}, fmt.Errorf("token: status list: %w", err)
	}
	if _, err := w.Write(data); err != nil {
		return StatusList{}, fmt.Errorf("token: status list: %w", err)
	}
	if err := w.Close(); err != nil {
		return StatusList{}, fmt.Errorf("token: status list: %w", err)
	}
	return StatusList{Bits: bits, Lst: base64.RawURLEncoding.EncodeToString(buf.Bytes())}, nil
}

// Decode inflates the list. Errors (bad bits, bad base64url, a corrupt ZLIB stream, more than
// MaxStatusListBytes, an empty list) wrap ErrStatusList.
func (l StatusList) Decode() (*Statuses, error) {
	if !validBits(l.Bits) {
		return nil, fmt.Errorf("%w: bits %d is not 1, 2, 4 or 8", ErrStatusList, l.Bits)
	}
	raw, err := base64.RawURLEncoding.DecodeString(l.Lst)
	if err != nil {
		return nil, fmt.Errorf("%w: lst is not base64url: %w", ErrStatusList, err)
	}
	r, err := zlib.NewReader(bytes.NewReader(raw))
	if err != nil {
		return nil, fmt.Errorf("%w: lst is not ZLIB: %w", ErrStatusList, err)
	}
	defer r.Close()
	data, err := io.ReadAll(io.LimitReader(r, MaxStatusListBytes+1))
	if err != nil {
		return nil, fmt.Errorf("%w: lst: %w", ErrStatusList, err)
	}
	if len(data) > MaxStatusListBytes {
		return nil, fmt.Errorf("%w: more than %d bytes decompressed", ErrStatusList, MaxStatusListBytes)
	}
	if len(data) == 0 {
		return nil, fmt.Errorf("%w: empty list", ErrStatusList)
	}
	return &Statuses{bits: l.Bits, data: data}, nil
}

// NewStatuses wraps an uncompressed byte array (kept, not copied).
func NewStatuses(bits int, data []byte) (*Statuses, error) {
	if !validBits(bits) {
		return nil, fmt.Errorf("%w: bits %d is not 1, 2, 4 or 8", ErrStatusList, bits)
	}
	return &Statuses{bits: bits, data: data}, nil
}

// Len returns the number of entries.
func (s *Statuses) Len() uint64 { return uint64(len(s.data)) * 8 / uint64(s.bits) }

// Bits returns the bits per entry.
func (s *Statuses) Bits() int { return s.bits }

// Get returns the status of entry idx; an index beyond the list is an error wrapping
// ErrStatusList (the draft says to reject the token then).
func (s *Statuses) Get(idx uint64) (byte, error) {
	if idx >= s.Len() {
		return 0, fmt.Errorf("%w: index %d beyond the list's %d entries", ErrStatusList, idx, s.Len())
	}
	bit := idx * uint64(s.bits)
	return s.data[bit/8] >> (bit % 8) & (1<<s.bits - 1), nil
}

func validBits(b int) bool { return b == 1 || b == 2 || b == 4 || b == 8 }
