package metrics_test

import (
	"context"
	"fmt"
	"net/http"
	"net/http/httptest"
	"strings"

	"github.com/passport-attest/passport/metrics"
	"github.com/passport-attest/passport/relyingparty"
)

// Example_relyingParty wires a relying party's JWKS fetches and verified-token cache into the
// metrics, through the hooks relyingparty already has (WithFetchObserver, CacheObserver).
func Example_relyingParty() {
	issuer := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
		w.Header().Set("Content-Type", "application/json")
		fmt.Fprint(w, `{"keys":[{"kty":"EC","crv":"P-256","kid":"k1","alg":"ES256","use":"sig",`+
			`"x":"f83OJ3D2xF1Bg8vub9tLe1gHMzV76e8Tus9uPHvRVEU","y":"x_FEzRu9m36HLN_tue659LNpXW6pCyStikYjKIWI5a0"}]}`)
	}))
	defer issuer.Close()

	m := metrics.New()
	keys := relyingparty.NewRemoteKeySet(context.Background(), issuer.URL,
		relyingparty.WithoutBackgroundRefresh(),
		relyingparty.WithFetchObserver(func(r relyingparty.FetchResult) {
			m.JWKSFetch(metrics.JWKSResult(r.Err, r.NotModified), r.Duration)
		}))
	_, _ = relyingparty.NewVerifier(relyingparty.Config{
		Issuer: "https://issuer.example", Audience: "billing", KeySet: keys,
		CacheObserver: m.TokenCache,
	})
	if err := keys.Refresh(context.Background()); err != nil {
		fmt.Println(err)
	}

	w := httptest.NewRecorder()
	m.Handler().ServeHTTP(w, httptest.NewRequest("GET", "/metrics", nil))
	for _, l := range strings.Split(w.Body.String(), "\n") {
		if strings.HasPrefix(l, "passport_rp_jwks_fetches_total") {
			fmt.Println(l)
		}
	}
	// Output:
	// passport_rp_jwks_fetches_total{result="ok"} 1
}
