package api_test

import (
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
