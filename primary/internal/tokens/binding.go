package tokens

import (
	"errors"
	"fmt"
	"net/netip"
	"strings"
)

// Limits of a token's bindings: enough for any real deployment, small enough
// that checking a request costs nothing.
const (
	MaxBindNames = 32
	MaxBindNets  = 32
)

// ErrBadBinding is wrapped by every error of ParseBinding.
var ErrBadBinding = errors.New("invalid token binding")

// Binding restricts what a token may authorise (SPEC §5): the host names it
// may be used for and the networks a request using it may come from. An
// empty list does not restrict; a token with both lists set must match both.
//
// The name language is small on purpose:
//   - a host name ("web1.example.com") matches itself only;
//   - "*." followed by a host name of at least two labels
//     ("*.dmz.example.com") matches any name with exactly one more label on
//     the left ("a.dmz.example.com"), not the suffix itself
//     ("dmz.example.com") and not deeper names ("a.b.dmz.example.com").
//
// The wildcard is a whole label and only the leftmost one: "a*.example.com",
// "*.*.example.com", "web.*.example.com" and a bare "*" are refused. Patterns
// are normalised like host names (lower case, no trailing dot), so they
// compare with the names the primary already normalised.
//
// A network is a CIDR prefix ("192.0.2.0/24", "2001:db8:1::/48") or a single
// address (taken as /32 or /128). The source a network is checked against is
// the address the request came from: the TCP peer, or the client address a
// tunnel relays (the same address DNS verification uses).
type Binding struct {
	Names []string       // normalised host names and "*." patterns
	Nets  []netip.Prefix // masked, IPv4 in its 4-byte form
}

// Bound reports whether the binding restricts anything.
func (b Binding) Bound() bool { return len(b.Names) > 0 || len(b.Nets) > 0 }

// Allows reports whether a request for name from src is inside the binding.
// name is compared case-insensitively and without a trailing dot. A source
// that is not a valid address is inside no network.
func (b Binding) Allows(name string, src netip.Addr) bool {
	return b.AllowsName(name) && b.AllowsSource(src)
}

// AllowsName reports whether name matches one of the name patterns (any name
// when there are none).
func (b Binding) AllowsName(name string) bool {
	if len(b.Names) == 0 {
		return true
	}
	for _, p := range b.Names {
		if MatchName(p, name) {
			return true
		}
	}
	return false
}

// AllowsSource reports whether src lies in one of the networks (any source
// when there are none).
func (b Binding) AllowsSource(src netip.Addr) bool {
	if len(b.Nets) == 0 {
		return true
	}
	if !src.IsValid() {
		return false
	}
	src = src.Unmap().WithZone("")
	for _, n := range b.Nets {
		if n.Contains(src) {
			return true
		}
	}
	return false
}

// MatchName reports whether name matches one normalised pattern (see
// Binding). Both sides are compared in lower case without a trailing dot.
func MatchName(pattern, name string) bool {
	pattern, name = fold(pattern), fold(name)
	if name == "" || pattern == "" {
		return false
	}
	suffix, wild := strings.CutPrefix(pattern, "*.")
	if !wild {
		return name == pattern
	}
	label, ok := strings.CutSuffix(name, "."+suffix)
	return ok && label != "" && !strings.Contains(label, ".") && label != "*"
}

// fold lower-cases ASCII and drops one trailing dot.
func fold(s string) string { return strings.ToLower(strings.TrimSuffix(s, ".")) }

// ParseBinding checks and normalises the bindings an admin gave at token
// creation (and re-reads stored ones). normalize is the primary's host-name
// normaliser, so that a pattern means exactly what a host name means.
// Duplicates are dropped; the order is kept.
func ParseBinding(names, nets []string, normalize func(string) (string, error)) (Binding, error) {
	var b Binding
	if len(names) > MaxBindNames {
		return Binding{}, fmt.Errorf("%w: %d host names, at most %d", ErrBadBinding, len(names), MaxBindNames)
	}
	if len(nets) > MaxBindNets {
		return Binding{}, fmt.Errorf("%w: %d networks, at most %d", ErrBadBinding, len(nets), MaxBindNets)
	}
	seen := map[string]bool{}
	for _, s := range names {
		p, err := ParseNamePattern(s, normalize)
		if err != nil {
			return Binding{}, err
		}
		if !seen[p] {
			seen[p] = true
			b.Names = append(b.Names, p)
		}
	}
	seenNet := map[netip.Prefix]bool{}
	for _, s := range nets {
		n, err := ParseNet(s)
		if err != nil {
			return Binding{}, err
		}
		if !seenNet[n] {
			seenNet[n] = true
			b.Nets = append(b.Nets, n)
		}
	}
	return b, nil
}

// ParseNamePattern normalises one host name or "*." pattern (see Binding).
func ParseNamePattern(s string, normalize func(string) (string, error)) (string, error) {
	t := strings.TrimSpace(s)
	rest, wild := strings.CutPrefix(t, "*.")
	if strings.Contains(rest, "*") || t == "*" {
		return "", fmt.Errorf("%w: host name pattern %q: only a whole leftmost label may be *, as in *.dmz.example.com", ErrBadBinding, s)
	}
	n, err := normalize(rest)
	if err != nil {
		return "", fmt.Errorf("%w: host name pattern %q: %v", ErrBadBinding, s, err)
	}
	if !wild {
		return n, nil
	}
	if !strings.Contains(n, ".") {
		return "", fmt.Errorf("%w: host name pattern %q: a wildcard needs at least two labels after it (*.dmz.example.com, not *.com)", ErrBadBinding, s)
	}
	return "*." + n, nil
}

// ParseNet parses one network: a CIDR prefix with no host bits set, or a
// single address. IPv4-mapped IPv6 forms and zones are refused: write IPv4
// networks in IPv4 form.
func ParseNet(s string) (netip.Prefix, error) {
	t := strings.TrimSpace(s)
	var p netip.Prefix
	if strings.Contains(t, "/") {
		var err error
		p, err = netip.ParsePrefix(t)
		if err != nil {
			return netip.Prefix{}, fmt.Errorf("%w: network %q: want a CIDR prefix such as 192.0.2.0/24 or 2001:db8::/48", ErrBadBinding, s)
		}
	} else {
		a, err := netip.ParseAddr(t)
		if err != nil || a.Zone() != "" {
			return netip.Prefix{}, fmt.Errorf("%w: network %q: want a CIDR prefix such as 192.0.2.0/24 or an address", ErrBadBinding, s)
		}
		p = netip.PrefixFrom(a, a.BitLen())
	}
	if p.Addr().Is4In6() {
		return netip.Prefix{}, fmt.Errorf("%w: network %q: write IPv4 networks in IPv4 form", ErrBadBinding, s)
	}
	if m := p.Masked(); m != p {
		return netip.Prefix{}, fmt.Errorf("%w: network %q has host bits set; did you mean %s?", ErrBadBinding, s, m)
	}
	return p, nil
}

// Strings renders the binding for storage and display: the name patterns and
// the networks in their canonical text form.
func (b Binding) Strings() (names, nets []string) {
	names = append([]string(nil), b.Names...)
	for _, n := range b.Nets {
		nets = append(nets, n.String())
	}
	return names, nets
}
