package protocol

import (
	"errors"
	"fmt"
	"testing"
	"time"
)

func TestParseLevel(t *testing.T) {
	for _, tc := range []struct {
		in      string
		want    Level
		refresh time.Duration
	}{
		{"very-high", LevelVeryHigh, time.Hour},
		{"high", LevelHigh, 4 * time.Hour},
		{"medium", LevelMedium, 8 * time.Hour},
	} {
		got, err := ParseLevel(tc.in)
		if err != nil || got != tc.want {
			t.Errorf("ParseLevel(%q) = %q, %v, want %q", tc.in, got, err, tc.want)
		}
		if r := got.CRLRefresh(); r != tc.refresh {
			t.Errorf("%s.CRLRefresh() = %v, want %v", got, r, tc.refresh)
		}
	}
	for _, bad := range []string{"", "High", "low", "very high"} {
		if _, err := ParseLevel(bad); err == nil {
			t.Errorf("ParseLevel(%q) = nil error, want an error", bad)
		}
	}
}

func TestErrorIs(t *testing.T) {
	err := fmt.Errorf("enroll: %w", &Error{Code: CodeTokenRequired, Message: "a token is required"})
	if !errors.Is(err, &Error{Code: CodeTokenRequired}) {
		t.Errorf("errors.Is(%v, token_required) = false, want true", err)
	}
	if errors.Is(err, &Error{Code: CodeTokenInvalid}) {
		t.Errorf("errors.Is(%v, token_invalid) = true, want false", err)
	}
}
