// Package pause is the agent loops' one way to wait: a timer that a
// cancelled context cuts short. Loops cap the duration themselves (they wake
// at least hourly and compare the wall clock, since timers stop while a
// machine sleeps).
package pause

import (
	"context"
	"time"
)

// For waits d or until ctx ends; it reports whether the full time passed.
func For(ctx context.Context, d time.Duration) bool {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
		return false
	case <-t.C:
		return true
	}
}
