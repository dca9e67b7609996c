package server

import (
	"math"
	"os"
	"runtime/debug"
	"testing"
)

// TestTuneGC: serve's collector defaults apply unless the operator set
// GOGC / GOMEMLIMIT, which are left alone.
func TestTuneGC(t *testing.T) {
	origPercent := debug.SetGCPercent(100)
	origLimit := debug.SetMemoryLimit(math.MaxInt64)
	t.Cleanup(func() {
		debug.SetGCPercent(origPercent)
		debug.SetMemoryLimit(origLimit)
	})
	for _, tc := range []struct {
		gogc, memlimit string // "" = unset
		wantPercent    int
		wantLimit      int64
	}{
		{"", "", DefaultGCPercent, DefaultMemoryLimit},
		{"150", "", 100, DefaultMemoryLimit},
		{"", "1GiB", DefaultGCPercent, math.MaxInt64},
		{"off", "1GiB", 100, math.MaxInt64},
	} {
		for k, v := range map[string]string{"GOGC": tc.gogc, "GOMEMLIMIT": tc.memlimit} {
			t.Setenv(k, v) // restored after the test
			if v == "" {
				os.Unsetenv(k)
			}
		}
		debug.SetGCPercent(100)
		debug.SetMemoryLimit(math.MaxInt64)
		tuneGC()
		percent := debug.SetGCPercent(100)
		limit := debug.SetMemoryLimit(math.MaxInt64)
		if percent != tc.wantPercent || limit != tc.wantLimit {
			t.Errorf("tuneGC(GOGC=%q, GOMEMLIMIT=%q) = percent %d, limit %d; want %d, %d",
				tc.gogc, tc.memlimit, percent, limit, tc.wantPercent, tc.wantLimit)
		}
	}
}
