// Package verify answers the "verified" question of SPEC §4: does the
// requested host name resolve, by forward DNS (A and AAAA), to the address the
// request came from? A client that declares NAT is never verified, nor is a
// request whose source cannot verify (NotVerifiable). Bounded keeps what
// unauthenticated requests cost small: a bound on lookups in flight and a
// short answer cache.
package verify

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"strings"
	"time"

	"github.com/hostcert/hostcert/common/hostname"
)

// DefaultTimeout bounds one verification (both lookups, retries included).
const DefaultTimeout = 2 * time.Second

// Resolver looks names up; *net.Resolver satisfies it.
type Resolver interface {
	LookupNetIP(ctx context.Context, network, host string) ([]netip.Addr, error)
}

// NewResolver returns the system's resolver for server "", or a resolver that
// asks only the DNS server at server ("10.0.0.53", "10.0.0.53:5353",
// "[2001:db8::53]:53"; port 53 by default) over UDP, then TCP when an answer
// is truncated. Go's resolver still consults the hosts file first.
func NewResolver(server string) *net.Resolver {
	if server == "" {
		return net.DefaultResolver
	}
	addr := ServerAddr(server)
	var d net.Dialer
	return &net.Resolver{
		PreferGo: true,
		Dial: func(ctx context.Context, network, _ string) (net.Conn, error) {
			return d.DialContext(ctx, network, addr)
		},
	}
}

// ServerAddr adds the default port 53 to a DNS server address without one.
func ServerAddr(server string) string {
	if _, _, err := net.SplitHostPort(server); err == nil {
		return server
	}
	return net.JoinHostPort(strings.Trim(server, "[]"), "53")
}

// Verifier verifies names against a resolver with a time bound.
type Verifier struct {
	Resolver Resolver
	Timeout  time.Duration // DefaultTimeout when zero
}

// Verify is Verifier{Resolver: r}.Verify.
func Verify(ctx context.Context, r Resolver, name string, from netip.Addr, nat bool) (ok bool, why string) {
	return Verifier{Resolver: r}.Verify(ctx, name, from, nat)
}

// Verify reports whether name's A and AAAA records contain from. IPv4-mapped
// IPv6 addresses count as IPv4 on both sides; zones are ignored; a name with
// several addresses matches any of them. why is a short lower-case phrase for
// the decision's reason and the audit log ("dns matches 192.0.2.7",
// "name does not resolve (no such host)", "nat declared", ...).
func (v Verifier) Verify(ctx context.Context, name string, from netip.Addr, nat bool) (ok bool, why string) {
	if nat {
		return false, "nat declared"
	}
	if why, ok := notVerifiable(ctx); ok {
		return false, why
	}
	if !from.IsValid() {
		return false, "no source address"
	}
	from = from.Unmap().WithZone("")
	n, err := hostname.Normalize(name)
	switch {
	case strings.TrimSpace(name) == "":
		return false, "no name"
	case err != nil:
		if _, perr := netip.ParseAddr(strings.Trim(strings.TrimSpace(name), "[]")); perr == nil {
			return false, "name is an ip address, not a dns name"
		}
		return false, "not a host name"
	}
	name = n
	if v.Resolver == nil {
		return false, "no resolver configured"
	}
	timeout := v.Timeout
	if timeout <= 0 {
		timeout = DefaultTimeout
	}
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	// The name goes to the resolver as given (relative names get the
	// system's search domains, as `ping name` would).
	addrs, err := v.Resolver.LookupNetIP(ctx, "ip", name)
	if err != nil {
		return false, lookupWhy(err, ctx)
	}
	for _, a := range addrs {
		if a.Unmap().WithZone("") == from {
			return true, "dns matches " + from.String()
		}
	}
	if len(addrs) == 0 {
		return false, "name has no a or aaaa records"
	}
	return false, fmt.Sprintf("dns gives %s, not %s", list(addrs), from)
}

func lookupWhy(err error, ctx context.Context) string {
	var dnsErr *net.DNSError
	switch {
	case errors.Is(err, ErrBusy):
		return "dns busy"
	case errors.As(err, &dnsErr) && dnsErr.IsNotFound:
		return "name does not resolve (no such host)"
	case errors.Is(ctx.Err(), context.Canceled):
		return "dns lookup cancelled"
	case errors.As(err, &dnsErr) && dnsErr.IsTimeout, ctx.Err() != nil, errors.Is(err, context.DeadlineExceeded):
		return "dns lookup timed out"
	case errors.As(err, &dnsErr):
		return "dns lookup failed: " + dnsErr.Err
	}
	return "dns lookup failed: " + err.Error()
}

// list renders at most four addresses.
func list(addrs []netip.Addr) string {
	const max = 4
	var b strings.Builder
	for i, a := range addrs {
		if i == max {
			fmt.Fprintf(&b, " and %d more", len(addrs)-max)
			break
		}
		if i > 0 {
			b.WriteString(", ")
		}
		b.WriteString(a.Unmap().String())
	}
	return b.String()
}
