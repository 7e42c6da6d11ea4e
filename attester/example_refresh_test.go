package attester_test

import (
	"context"
	"fmt"
	"time"

	"github.com/passport-attest/passport/api"
	"github.com/passport-attest/passport/attester"
)

// A Refresher hands out the current token and renews it at about 80% of its lifetime. Here
// Fetch stands in for attester.NewRefresher's exchange with an issuer, and the clock is
// injected.
func ExampleRefresher() {
	now := time.Date(2026, 11, 29, 12, 0, 0, 0, time.UTC)
	n := 0
	r := &attester.Refresher{
		Fetch: func(context.Context) (*api.AttestResponse, error) {
			n++
			return &api.AttestResponse{Token: fmt.Sprintf("token-%d", n), ExpiresAt: now.Add(5 * time.Minute)}, nil
		},
		Now:  func() time.Time { return now },
		Rand: func() float64 { return 0.5 }, // no jitter: renew at exactly 80%
		Sleep: func(ctx context.Context, d time.Duration) error {
			fmt.Println("next renewal in", d)
			return context.Canceled // stop the example after one round
		},
	}
	_ = r.Run(context.Background())
	tok, err := r.Token()
	fmt.Println(tok, err)
	// Output:
	// next renewal in 4m0s
	// token-1 <nil>
}
