package api

import (
	"testing"
	"time"
)

func TestCRLCacheControl(t *testing.T) {
	now := time.Date(2026, 12, 6, 6, 0, 0, 0, time.UTC)
	for _, tc := range []struct {
		next time.Duration
		want string
	}{
		{7 * 24 * time.Hour, "public, max-age=60, must-revalidate"},
		{61 * time.Second, "public, max-age=60, must-revalidate"},
		{30*time.Second + 500*time.Millisecond, "public, max-age=30, must-revalidate"},
		{time.Second, "public, max-age=1, must-revalidate"},
		{999 * time.Millisecond, "no-cache"},
		{0, "no-cache"},
		{-time.Hour, "no-cache"},
	} {
		if got := CRLCacheControl(now.Add(tc.next), now); got != tc.want {
			t.Errorf("CRLCacheControl(now+%v, now) = %q, want %q", tc.next, got, tc.want)
		}
	}
}
