package issuer

import (
	"crypto/sha256"
	"crypto/subtle"
	"errors"
	"fmt"
	"net/http"
	"os"
	"strings"

	"github.com/passport-attest/passport/api"
)

// MinCredentialSize is the shortest admin credential accepted (16 bytes: 128 bits when random).
const MinCredentialSize = 16

// AdminAuth authenticates the admin API with a bearer credential (RFC 6750) read from a file:
// there is no default credential. Comparison is over SHA-256 digests in constant time.
type AdminAuth struct {
	digest [sha256.Size]byte
}

// LoadAdminCredential reads the credential from path (surrounding white space trimmed). A
// missing, unreadable or short (< MinCredentialSize bytes) credential is an error.
func LoadAdminCredential(path string) (*AdminAuth, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("issuer: admin credential: %w", err)
	}
	return NewAdminAuth([]byte(strings.TrimSpace(string(b))))
}

// NewAdminAuth returns an authenticator for credential.
func NewAdminAuth(credential []byte) (*AdminAuth, error) {
	if len(credential) < MinCredentialSize {
		return nil, fmt.Errorf("issuer: admin credential is %d bytes, want at least %d", len(credential), MinCredentialSize)
	}
	return &AdminAuth{digest: sha256.Sum256(credential)}, nil
}

// ErrAdminAuth is returned for a missing or wrong admin credential.
var ErrAdminAuth = errors.New("issuer: admin credential missing or wrong")

// Check authenticates r: "Authorization: Bearer <credential>".
func (a *AdminAuth) Check(r *http.Request) error {
	h := r.Header.Get("Authorization")
	const prefix = "Bearer "
	if len(h) <= len(prefix) || !strings.EqualFold(h[:len(prefix)], prefix) {
		return ErrAdminAuth
	}
	got := sha256.Sum256([]byte(strings.TrimSpace(h[len(prefix):])))
	if subtle.ConstantTimeCompare(got[:], a.digest[:]) != 1 {
		return ErrAdminAuth
	}
	return nil
}

// Wrap refuses requests that fail Check with 401 and passes the others to next.
func (a *AdminAuth) Wrap(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if err := a.Check(r); err != nil {
			w.Header().Set("WWW-Authenticate", `Bearer realm="passport-admin"`)
			writeJSON(w, http.StatusUnauthorized, &api.Error{Code: "unauthorized", Description: "admin credential missing or wrong"})
			return
		}
		next.ServeHTTP(w, r)
	})
}

// AdminHandler returns the admin API, authenticated by auth, for its own listener (never the
// public one). Each admin feature registers its routes here.
func (is *Issuer) AdminHandler(auth *AdminAuth) http.Handler {
	mux := http.NewServeMux()
	mux.HandleFunc("GET /admin/v1/health", func(w http.ResponseWriter, _ *http.Request) {
		writeJSON(w, http.StatusOK, map[string]string{"status": "ok"})
	})
	for _, register := range is.adminRoutes() {
		register(mux)
	}
	return auth.Wrap(mux)
}

// adminRoutes lists the registration functions of the admin features (revocation, AK
// allowlist, key rotation, ...). Add one line per feature.
func (is *Issuer) adminRoutes() []func(*http.ServeMux) {
	return []func(*http.ServeMux){
		is.adminAKRoutes,
		is.refValueRoutes,
		is.revokeRoutes, // admin_revoke.go
		is.keyRoutes,    // admin_keys.go
	}
}
