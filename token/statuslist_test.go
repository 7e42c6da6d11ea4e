package token

import (
	"bytes"
	"compress/zlib"
	"encoding/base64"
	"errors"
	"fmt"
	"io"
	"testing"
)

// TestStatusListDraftExample decodes the one-bit example of draft-ietf-oauth-status-list
// section 4.1 (bytes b9 a3, "eNrbuRgAAhcBXQ") and re-encodes it to the same string.
func TestStatusListDraftExample(t *testing.T) {
	l := StatusList{Bits: 1, Lst: "eNrbuRgAAhcBXQ"}
	s, err := l.Decode()
	if err != nil {
		t.Fatal(err)
	}
	want := []byte{1, 0, 0, 1, 1, 1, 0, 1, 1, 1, 0, 0, 0, 1, 0, 1}
	if s.Len() != 16 {
		t.Fatalf("Len = %d, want 16", s.Len())
	}
	for i, w := range want {
		if got, err := s.Get(uint64(i)); err != nil || got != w {
			t.Fatalf("status[%d] = %d, %v; want %d", i, got, err, w)
		}
	}
	enc, err := EncodeStatusList(1, []byte{0xb9, 0xa3})
	if err != nil {
		t.Fatal(err)
	}
	// DEFLATE encoders differ in their output (Go's ends with an empty final block): compare
	// what the encoding decodes to, with an independent ZLIB reader.
	raw, err := base64.RawURLEncoding.DecodeString(enc.Lst)
	if err != nil {
		t.Fatal(err)
	}
	zr, err := zlib.NewReader(bytes.NewReader(raw))
	if err != nil {
		t.Fatal(err)
	}
	got, err := io.ReadAll(zr)
	if err != nil || !bytes.Equal(got, []byte{0xb9, 0xa3}) {
		t.Fatalf("EncodeStatusList(b9 a3) decodes to % x, %v", got, err)
	}
	if _, err := s.Get(16); !errors.Is(err, ErrStatusList) {
		t.Fatalf("Get beyond the list = %v, want ErrStatusList", err)
	}
}

// TestStatusListTwoBits decodes the two-bit example of the draft (section 4.1): statuses
// 1,2,0,3,0,1,0,1,1,2,3,3 in the bytes c9 44 f9.
func TestStatusListTwoBits(t *testing.T) {
	s, err := NewStatuses(2, []byte{0xc9, 0x44, 0xf9})
	if err != nil {
		t.Fatal(err)
	}
	want := []byte{1, 2, 0, 3, 0, 1, 0, 1, 1, 2, 3, 3}
	for i, w := range want {
		if got, _ := s.Get(uint64(i)); got != w {
			t.Fatalf("status[%d] = %d, want %d", i, got, w)
		}
	}
}

func TestStatusListRefusals(t *testing.T) {
	var bomb bytes.Buffer
	w := zlib.NewWriter(&bomb)
	_, _ = w.Write(make([]byte, MaxStatusListBytes+1))
	_ = w.Close()
	var empty bytes.Buffer
	w = zlib.NewWriter(&empty)
	_ = w.Close()
	for name, l := range map[string]StatusList{
		"bits 3":     {Bits: 3, Lst: "eNrbuRgAAhcBXQ"},
		"not base64": {Bits: 1, Lst: "eNrb+RgAAhcBXQ=="},
		"not zlib":   {Bits: 1, Lst: base64.RawURLEncoding.EncodeToString([]byte{0xb9, 0xa3})},
		"truncated":  {Bits: 1, Lst: "eNrbuRgAAh"},
		"bomb":       {Bits: 1, Lst: base64.RawURLEncoding.EncodeToString(bomb.Bytes())},
		"empty":      {Bits: 1, Lst: base64.RawURLEncoding.EncodeToString(empty.Bytes())},
	} {
		if _, err := l.Decode(); !errors.Is(err, ErrStatusList) {
			t.Errorf("%s: Decode = %v, want ErrStatusList", name, err)
		}
	}
}

func ExampleStatusList_Decode() {
	l := StatusList{Bits: 1, Lst: "eNrbuRgAAhcBXQ"} // draft-ietf-oauth-status-list section 4.1
	s, _ := l.Decode()
	for i := uint64(0); i < s.Len(); i++ {
		v, _ := s.Get(i)
		fmt.Print(v)
	}
	fmt.Println()
	// Output: 1001110111000101
}
