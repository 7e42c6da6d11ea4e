package relyingparty

import (
	"errors"
	"fmt"
)

// ErrNoUsableList is returned by StatusChecker.Usable when an offline checker holds no list it
// may still use.
var ErrNoUsableList = errors.New("relyingparty: no usable status list")

// Usable reports whether the checker can establish token status now without the network: for
// an offline checker (StatusConfig.Offline), at least one held list is within MaxStaleness
// of its issue and before its exp, else an error wrapping ErrNoUsableList; an online checker
// fetches lists on demand, so it is usable whenever the issuer answers, which this method does
// not probe (it returns nil). Readiness probes call it.
func (c *StatusChecker) Usable() error {
	if !c.cfg.Offline {
		return nil
	}
	now := c.cfg.Now()
	c.mu.RLock()
	defer c.mu.RUnlock()
	for _, e := range c.lists {
		if c.usable(e, now) {
			return nil
		}
	}
	return fmt.Errorf("%w: %d held, none within %v of its issue", ErrNoUsableList, len(c.lists), c.cfg.MaxStaleness)
}
