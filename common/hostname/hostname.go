// Package hostname is hostcert's one host-name normaliser. Every edge that
// takes a host name — the enrollment API, the store, DNS verification, the
// CA's certificate template, the admin commands (init, serve --name, host
// add/import/remove/show, allow-reissue, explain) — goes through Normalize,
// so that a reservation, the one-host-per-name rule and every lookup see one
// spelling of a name and cannot be bypassed by another.
//
// The canonical form is ASCII, lower case, without surrounding space and
// without the trailing dot of a fully qualified name. Non-ASCII names are
// refused rather than converted: the operator gives the A-label
// ("xn--...") form, which is what DNS and certificates carry anyway, so two
// Unicode spellings (full-width letters, a different normalisation form) can
// never map to one name behind the operator's back. A-labels must be valid
// IDNA (they decode and encode back to themselves).
//
// Reserved names are refused with an error matching ErrReserved: IP literals
// (and names whose last label is numeric, which resolvers read as an
// address), strings that look like token values (their text is never
// repeated), and — for host certificates only, see ForHost — "localhost"
// and names under ".localhost". The primary's own names are reserved by the
// primary, which knows them.
package hostname

import (
	"errors"
	"fmt"
	"net/netip"
	"strings"
	"unicode/utf8"

	"golang.org/x/net/idna"
)

// Errors; every error of this package matches one of them with errors.Is.
var (
	ErrInvalid  = errors.New("invalid host name")
	ErrReserved = errors.New("reserved host name")
)

// TokenPlaceholder stands in the audit log, logs and answers for a name that
// looks like a token value.
const TokenPlaceholder = "(looks like a token: not recorded)"

// MaxLen is the longest host name (RFC 1035 §2.3.4, without the final dot).
const MaxLen = 253

// Normalize returns s in canonical form, or an error that says why s is not
// a host name (matching ErrInvalid) or is a reserved one (ErrReserved).
// Normalize(out) == out for every out it returns.
func Normalize(s string) (string, error) {
	if LooksLikeToken(s) {
		return "", fmt.Errorf("%w: the name looks like a token value, not a host name; it was not recorded", ErrReserved)
	}
	n := strings.TrimSuffix(strings.TrimSpace(s), ".")
	if n == "" {
		return "", fmt.Errorf("%w: empty", ErrInvalid)
	}
	for i := 0; i < len(n); i++ {
		if n[i] >= utf8.RuneSelf {
			return "", fmt.Errorf("%w: %s has non-ASCII characters; give the A-label (xn--) form", ErrInvalid, Quote(s))
		}
	}
	n = strings.ToLower(n)
	if ip, err := netip.ParseAddr(strings.Trim(n, "[]")); err == nil {
		return "", fmt.Errorf("%w: %s is an IP address; only host names are accepted", ErrReserved, ip)
	}
	if len(n) > MaxLen {
		return "", fmt.Errorf("%w: %d characters, at most %d", ErrInvalid, len(n), MaxLen)
	}
	labels := strings.Split(n, ".")
	for _, l := range labels {
		if err := checkLabel(l); err != nil {
			return "", fmt.Errorf("%w: %s: %v", ErrInvalid, Quote(s), err)
		}
	}
	if numeric(labels[len(labels)-1]) {
		return "", fmt.Errorf("%w: %s ends in a numeric label and would be read as an IP address", ErrReserved, Quote(n))
	}
	return n, nil
}

// ForHost is Normalize plus the names a host certificate may never carry
// whoever asks: "localhost" and the names under ".localhost" (RFC 6761).
func ForHost(s string) (string, error) {
	n, err := Normalize(s)
	if err != nil {
		return "", err
	}
	if n == "localhost" || strings.HasSuffix(n, ".localhost") {
		return "", fmt.Errorf("%w: %s is a loopback name (RFC 6761); no host certificate carries it", ErrReserved, n)
	}
	return n, nil
}

// ForServer is Normalize for the names of the primary's own TLS
// certificate, which may also be IP addresses: a primary reached as
// 127.0.0.1 or 2001:db8::1 carries that address as an IP SAN. An IP literal
// (bracketed or not) comes back in net/netip's canonical form; anything else
// goes through Normalize. Hosts never get IP names (ForHost refuses them).
func ForServer(s string) (string, error) {
	if LooksLikeToken(s) {
		return Normalize(s)
	}
	t := strings.Trim(strings.TrimSpace(s), "[]")
	if ip, err := netip.ParseAddr(t); err == nil {
		if ip.Zone() != "" {
			return "", fmt.Errorf("%w: %s has a zone; a certificate cannot carry it", ErrInvalid, Quote(s))
		}
		return ip.Unmap().String(), nil
	}
	return Normalize(s)
}

// Key is the form under which a name is stored and looked up: Normalize's
// answer, or s itself when s is not a host name (it then matches no stored
// name).
func Key(s string) string {
	if n, err := Normalize(s); err == nil {
		return n
	}
	return s
}

// Equal reports whether a and b are host names that normalise to the same name.
func Equal(a, b string) bool {
	na, err := Normalize(a)
	if err != nil {
		return false
	}
	nb, err := Normalize(b)
	return err == nil && na == nb
}

// Display is s as it may be written to an audit row, a log line or an
// answer: TokenPlaceholder when s looks like a token value, else s clipped to
// 255 bytes.
func Display(s string) string {
	if LooksLikeToken(s) {
		return TokenPlaceholder
	}
	if len(s) > 255 {
		return s[:255]
	}
	return s
}

// Quote is Display, quoted and clipped to 80 bytes, for error messages.
func Quote(s string) string {
	d := Display(s)
	if d == TokenPlaceholder {
		return d
	}
	if len(d) > 80 {
		d = d[:80] + "..."
	}
	return fmt.Sprintf("%q", d)
}

// The shapes of secret values: hostcert tokens are TokenPrefix followed by
// 52 lower-case base32 characters (primary/internal/tokens); a token's body
// alone, a hex key or a base64 blob are long runs of letters and digits.
const (
	TokenPrefix = "hct_"
	// secretRun is the shortest run of consecutive ASCII letters and digits
	// taken for a secret: longer than any hash-like label a fleet uses for
	// names (a SHA-1 in hex is 40) and shorter than a token's body (52).
	secretRun = 48
)

// LooksLikeToken reports whether s could be a token value (or another
// secret) given by mistake where a host name belongs: it contains the token
// prefix "hct_" in any case, or a run of at least 48 consecutive ASCII letters
// and digits with both letters and digits in it (random text, not a
// repeated character).
func LooksLikeToken(s string) bool {
	if strings.Contains(strings.ToLower(s), TokenPrefix) {
		return true
	}
	run, letters, digits := 0, 0, 0
	for i := 0; i <= len(s); i++ {
		if i < len(s) {
			c := s[i]
			switch {
			case c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z':
				run, letters = run+1, letters+1
				continue
			case c >= '0' && c <= '9':
				run, digits = run+1, digits+1
				continue
			}
		}
		if run >= secretRun && letters > 0 && digits > 0 {
			return true
		}
		run, letters, digits = 0, 0, 0
	}
	return false
}

// checkLabel accepts an RFC 1123 label (letters, digits, hyphens; not at
// either end; 1 to 63 characters) and, for an A-label, valid IDNA.
func checkLabel(l string) error {
	switch {
	case l == "":
		return errors.New("empty label")
	case len(l) > 63:
		return fmt.Errorf("label %q longer than 63 characters", l)
	case l[0] == '-' || l[len(l)-1] == '-':
		return fmt.Errorf("label %q starts or ends with a hyphen", l)
	}
	for i := 0; i < len(l); i++ {
		c := l[i]
		if !(c >= 'a' && c <= 'z' || c >= '0' && c <= '9' || c == '-') {
			return fmt.Errorf("label %q has character %q", l, c)
		}
	}
	if strings.HasPrefix(l, "xn--") {
		u, err := idna.Lookup.ToUnicode(l)
		if err != nil {
			return fmt.Errorf("label %q is not a valid IDNA A-label: %v", l, err)
		}
		if a, err := idna.Lookup.ToASCII(u); err != nil || a != l {
			return fmt.Errorf("label %q is not a canonical IDNA A-label", l)
		}
	}
	return nil
}

// numeric reports a label resolvers would read as part of an address: all
// decimal digits, or 0x followed by hex digits (inet_aton).
func numeric(l string) bool {
	digits := l
	hex := false
	if len(l) > 2 && l[:2] == "0x" {
		digits, hex = l[2:], true
	}
	for i := 0; i < len(digits); i++ {
		c := digits[i]
		if !(c >= '0' && c <= '9' || hex && c >= 'a' && c <= 'f') {
			return false
		}
	}
	return true
}
