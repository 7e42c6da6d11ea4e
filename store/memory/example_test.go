package memory_test

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/passport-attest/passport/store"
	"github.com/passport-attest/passport/store/memory"
)

// A nonce is issued once and consumed once: the second consume, like a consume after the TTL,
// fails with store.ErrNonceUnknown.
func Example() {
	ctx := context.Background()
	s := memory.New()

	nonce := []byte("32 random bytes from crypto/rand")
	if err := s.PutNonce(ctx, nonce, []byte("binding data"), 5*time.Minute); err != nil {
		fmt.Println("put:", err)
		return
	}

	value, err := s.ConsumeNonce(ctx, nonce)
	fmt.Printf("first consume: %q, %v\n", value, err)

	_, err = s.ConsumeNonce(ctx, nonce)
	fmt.Println("second consume unknown:", errors.Is(err, store.ErrNonceUnknown))

	// Output:
	// first consume: "binding data", <nil>
	// second consume unknown: true
}
