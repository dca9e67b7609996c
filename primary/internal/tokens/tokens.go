// Package tokens makes, checks and rate-limits the secret enrollment tokens of
// SPEC §5: random values printed once and stored only as a SHA-256 hash, the
// rules for token names, kinds, use counts and validity, and the per-source
// limiter that slows down anyone guessing token values.
package tokens

import (
	"crypto/rand"
	"crypto/sha256"
	"crypto/subtle"
	"encoding/base32"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"time"
)

// Prefix starts every token value, so a value is recognisable in a file, an
// environment variable or a secret scanner.
const Prefix = "hct_"

// RandomBytes is the number of random bytes in a token value (256 bits).
const RandomBytes = 32

// encoding is lower-case RFC 4648 base32 without padding: no characters that
// need quoting in a shell, a URL or YAML.
var encoding = base32.NewEncoding("abcdefghijklmnopqrstuvwxyz234567").WithPadding(base32.NoPadding)

// ValueLen is the length of every well-formed token value.
var ValueLen = len(Prefix) + encoding.EncodedLen(RandomBytes)

// Token kinds (SPEC §5).
const (
	KindStandard = "standard"
	KindReissue  = "reissue" // bound to one host ID, single use
)

// Defaults and limits of token attributes (SPEC §5).
const (
	DefaultMaxUses  = 1
	MaxMaxUses      = 1_000_000
	DefaultValidity = 24 * time.Hour
	MaxValidity     = 999 * 24 * time.Hour
	MaxNameLen      = 64
)

// Generate returns a new token value and its hash. The value is shown to the
// admin once; only the hash is stored.
func Generate() (value string, hash []byte, err error) {
	var raw [RandomBytes]byte
	if _, err := rand.Read(raw[:]); err != nil {
		return "", nil, fmt.Errorf("generate token: %w", err)
	}
	value = Prefix + encoding.EncodeToString(raw[:])
	return value, Hash(value), nil
}

// Hash returns the SHA-256 of a token value: the form a token is stored and
// looked up in. The value has 256 bits of entropy, so a fast hash is enough.
func Hash(value string) []byte {
	sum := sha256.Sum256([]byte(value))
	return sum[:]
}

// Equal compares two hashes in constant time.
func Equal(a, b []byte) bool { return subtle.ConstantTimeCompare(a, b) == 1 }

// WellFormed is a cheap syntax check made before any lookup: the prefix, the
// exact length and the base32 alphabet. It does not say the token exists.
func WellFormed(value string) bool {
	if len(value) != ValueLen || !strings.HasPrefix(value, Prefix) {
		return false
	}
	for i := len(Prefix); i < len(value); i++ {
		c := value[i]
		if (c < 'a' || c > 'z') && (c < '2' || c > '7') {
			return false
		}
	}
	// Decode and re-encode: rejects non-zero padding bits in the last
	// character, so each token has exactly one spelling.
	raw, err := encoding.DecodeString(value[len(Prefix):])
	return err == nil && encoding.EncodeToString(raw) == value[len(Prefix):]
}

// ErrBadName is wrapped by ValidName.
var ErrBadName = errors.New("invalid token name")

// ValidName checks a token name: 1 to 64 characters from [A-Za-z0-9._-].
// Names are compared exactly (case-sensitive).
func ValidName(name string) error {
	if name == "" {
		return fmt.Errorf("%w: empty (want 1-%d characters of A-Z a-z 0-9 . _ -)", ErrBadName, MaxNameLen)
	}
	if len(name) > MaxNameLen {
		return fmt.Errorf("%w: %d characters, at most %d", ErrBadName, len(name), MaxNameLen)
	}
	for i := 0; i < len(name); i++ {
		c := name[i]
		switch {
		case c >= 'a' && c <= 'z', c >= 'A' && c <= 'Z', c >= '0' && c <= '9', c == '.', c == '_', c == '-':
		default:
			return fmt.Errorf("%w: %q has character %q at %d (want A-Z a-z 0-9 . _ -)", ErrBadName, name, c, i)
		}
	}
	return nil
}

// ValidKind checks a token kind.
func ValidKind(kind string) error {
	switch kind {
	case KindStandard, KindReissue:
		return nil
	}
	return fmt.Errorf("unknown token kind %q (want %s or %s)", kind, KindStandard, KindReissue)
}

// MaxUses resolves the max-uses attribute of a new token of this kind:
// 0 means the default (1); reissue tokens are single-use.
func MaxUses(kind string, n int) (int, error) {
	if err := ValidKind(kind); err != nil {
		return 0, err
	}
	if n == 0 {
		n = DefaultMaxUses
	}
	switch {
	case n < 0:
		return 0, fmt.Errorf("max uses %d: must be at least 1", n)
	case n > MaxMaxUses:
		return 0, fmt.Errorf("max uses %d: at most %d", n, MaxMaxUses)
	case kind == KindReissue && n != 1:
		return 0, fmt.Errorf("max uses %d: reissue tokens are single-use", n)
	}
	return n, nil
}

// ParseDuration accepts a Go duration ("36h", "90m", "1h30m") or a number of
// days ("30d"), optionally followed by a Go duration ("1d12h"). It rejects
// negative values and overflows; the caller applies its own bounds.
func ParseDuration(s string) (time.Duration, error) {
	s = strings.TrimSpace(s)
	if s == "" {
		return 0, errors.New("empty duration")
	}
	rest := s
	var days time.Duration
	if i := strings.IndexByte(s, 'd'); i >= 0 {
		n, err := strconv.ParseUint(s[:i], 10, 32)
		if err != nil || i == 0 {
			return 0, fmt.Errorf("duration %q: want a Go duration (36h) or days (30d)", s)
		}
		if n > 100_000 {
			return 0, fmt.Errorf("duration %q: too long", s)
		}
		days = time.Duration(n) * 24 * time.Hour
		rest = s[i+1:]
	}
	var d time.Duration
	if rest != "" {
		var err error
		d, err = time.ParseDuration(rest)
		if err != nil {
			return 0, fmt.Errorf("duration %q: want a Go duration (36h) or days (30d)", s)
		}
		if d < 0 {
			return 0, fmt.Errorf("duration %q: negative", s)
		}
	}
	return days + d, nil
}

// ParseValidity parses a token's "valid for" (SPEC §5): "" means the default
// 24h; at least one second, at most 999 days.
func ParseValidity(s string) (time.Duration, error) {
	if strings.TrimSpace(s) == "" {
		return DefaultValidity, nil
	}
	d, err := ParseDuration(s)
	if err != nil {
		return 0, fmt.Errorf("token validity: %w", err)
	}
	return d, CheckValidity(d)
}

// CheckValidity bounds a token validity already held as a duration.
func CheckValidity(d time.Duration) error {
	switch {
	case d < time.Second:
		return fmt.Errorf("token validity %v: must be at least 1s", d)
	case d > MaxValidity:
		return fmt.Errorf("token validity %s: at most 999 days", days(d))
	}
	return nil
}

// days renders a duration in whole days when it is one ("1000d"), else as Go does.
func days(d time.Duration) string {
	if d%(24*time.Hour) == 0 {
		return fmt.Sprintf("%dd", d/(24*time.Hour))
	}
	return d.String()
}

// CheckMaxUses checks a max-uses value an admin typed (token create
// --max-uses): at least 1, at most MaxMaxUses. Unlike MaxUses, 0 is not
// "the default" here: it is a mistake, refused.
func CheckMaxUses(n int) error {
	switch {
	case n < 1:
		return fmt.Errorf("max uses %d: a token must allow at least 1 use", n)
	case n > MaxMaxUses:
		return fmt.Errorf("max uses %d: at most %d", n, MaxMaxUses)
	}
	return nil
}
