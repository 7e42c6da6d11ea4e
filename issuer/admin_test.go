package issuer

import (
	"net/http"
	"net/http/httptest"
	"testing"
)

func TestAdminAuth(t *testing.T) {
	if _, err := NewAdminAuth([]byte("short")); err == nil {
		t.Fatal("short credential accepted")
	}
	auth, err := NewAdminAuth([]byte("0123456789abcdef-admin"))
	if err != nil {
		t.Fatal(err)
	}
	h := (&Issuer{}).AdminHandler(auth)
	for _, tc := range []struct {
		header string
		want   int
	}{
		{"", http.StatusUnauthorized},
		{"Bearer wrong-credential-0000000", http.StatusUnauthorized},
		{"Basic MDEyMzQ1Njc4OWFiY2RlZi1hZG1pbg==", http.StatusUnauthorized},
		{"Bearer 0123456789abcdef-admin", http.StatusOK},
	} {
		r := httptest.NewRequest(http.MethodGet, "/admin/v1/health", nil)
		if tc.header != "" {
			r.Header.Set("Authorization", tc.header)
		}
		w := httptest.NewRecorder()
		h.ServeHTTP(w, r)
		if w.Code != tc.want {
			t.Errorf("%q: got %d, want %d", tc.header, w.Code, tc.want)
		}
	}
}
