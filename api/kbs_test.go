package api

import (
	"errors"
	"strings"
	"testing"
)

func TestParseResourceID(t *testing.T) {
	id, err := ParseResourceID("default/key/disk-1.v2_x")
	if err != nil || id != (ResourceID{"default", "key", "disk-1.v2_x"}) {
		t.Fatalf("%v %v", id, err)
	}
	if id.String() != "default/key/disk-1.v2_x" || id.Path() != "/kbs/v0/resource/default/key/disk-1.v2_x" {
		t.Fatalf("String %q Path %q", id.String(), id.Path())
	}
	if _, err := ParseResourceID("a/b/" + strings.Repeat("c", MaxResourceComponent)); err != nil {
		t.Fatalf("longest component: %v", err)
	}
	for _, bad := range []string{
		"", "a", "a/b", "a/b/c/d", "/a/b", "a/b/", "a//c", "../b/c", "a/../c", "a/b/..", "./b/c", ".a/b/c",
		"-a/b/c", "_a/b/c", "a/b/c%2F", "a%2e%2e/b/c", "a b/c/d", "a/b/c\x00", "a/b/c\n", "a\\b/c/d",
		"a/b/" + strings.Repeat("c", MaxResourceComponent+1), "a/b/é", "a/b/c?x=1", "a/b/c#f",
	} {
		if _, err := ParseResourceID(bad); !errors.Is(err, ErrResourceName) {
			t.Errorf("%q: %v", bad, err)
		}
	}
	if err := (ResourceID{}).Validate(); !errors.Is(err, ErrResourceName) {
		t.Fatalf("zero ResourceID: %v", err)
	}
	if _, err := ParseResourceID("a/b/secret\x7f"); err == nil || strings.Contains(err.Error(), "secret") {
		t.Fatalf("the error must not echo the name: %v", err)
	}
}
