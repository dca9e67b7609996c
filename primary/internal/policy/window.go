package policy

import (
	"fmt"
	"strings"
	"time"

	"github.com/hostcert/hostcert/primary/internal/tokens"
)

// Auto-reissue window bounds (SPEC §6).
const (
	DefaultWindow = 48 * time.Hour
	MaxWindow     = 30 * 24 * time.Hour
)

// ParseWindow parses the length of an auto-reissue window
// (`host allow-reissue --for`): a Go duration or days ("2d"); "" means the
// default 48h; at least one second, at most 30 days.
func ParseWindow(s string) (time.Duration, error) {
	if strings.TrimSpace(s) == "" {
		return DefaultWindow, nil
	}
	d, err := tokens.ParseDuration(s)
	if err != nil {
		return 0, fmt.Errorf("auto-reissue window: %w", err)
	}
	return d, CheckWindow(d)
}

// CheckWindow bounds an auto-reissue window already held as a duration.
func CheckWindow(d time.Duration) error {
	switch {
	case d < time.Second:
		return fmt.Errorf("auto-reissue window %v: must be at least 1s", d)
	case d > MaxWindow:
		return fmt.Errorf("auto-reissue window %v: at most 30 days", d)
	}
	return nil
}

// WindowOpen reports whether a window ending at until (nil: none) is open at now.
func WindowOpen(until *time.Time, now time.Time) bool {
	return until != nil && now.Before(*until)
}
