package api_test

import (
	"bytes"
	"encoding/json"
	"testing"

	"github.com/passport-attest/passport/api"
)

func TestBytesTextMarshaling(t *testing.T) {
	in := api.Bytes{0xfb, 0xff, 0x00, 0x01}
	b, err := json.Marshal(struct {
		N api.Bytes `json:"n"`
	}{in})
	if err != nil || string(b) != `{"n":"-_8AAQ"}` {
		t.Fatalf("marshal: %s %v", b, err)
	}
	for _, enc := range []string{`"-_8AAQ"`, `"+/8AAQ=="`, `"-_8AAQ=="`, `"+/8AAQ"`} {
		var got api.Bytes
		if err := json.Unmarshal([]byte(enc), &got); err != nil || string(got) != string(in) {
			t.Errorf("%s: %x %v", enc, got, err)
		}
	}
	for _, bad := range []string{`12`, `"*"`, `{}`, `["AA"]`} {
		var got api.Bytes
		if err := json.Unmarshal([]byte(bad), &got); err == nil {
			t.Errorf("%s accepted", bad)
		}
	}
}

// FuzzDecodeBytes: Bytes.UnmarshalText (decodeBytes) accepts and returns exactly what the
// string decoder behind DecodeNonce does.
func FuzzDecodeBytes(f *testing.F) {
	for _, s := range []string{"", "-_8A", "+/8A", "+/8A==", "AA==", "A", "!!", "AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8", "a+b_", "====", "QQ=A"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		want, werr := api.DecodeNonce(s)
		var got api.Bytes
		gerr := got.UnmarshalText([]byte(s))
		if (werr == nil) != (gerr == nil) {
			t.Fatalf("%q: string decoder %v, bytes decoder %v", s, werr, gerr)
		}
		if werr != nil {
			if werr.Error() != gerr.Error() {
				t.Fatalf("%q: errors differ: %v / %v", s, werr, gerr)
			}
			return
		}
		if !bytes.Equal(want, got) || (want == nil) != (got == nil) {
			t.Fatalf("%q: %x / %x", s, want, got)
		}
	})
}
