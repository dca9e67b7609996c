package route

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"reflect"
	"syscall"
	"testing"
	"time"
)

func TestPlan(t *testing.T) {
	now := time.Date(2026, 1, 1, 12, 0, 0, 0, time.UTC)
	cfg := Config{Primaries: []string{"p:1556"}, Tunnels: []string{"t1:1556", "t2:1556"}, ProbeInterval: 10 * time.Minute}
	d, t1, t2 := Route{Primary: "p:1556"}, Route{Primary: "p:1556", Tunnel: "t1:1556"}, Route{Primary: "p:1556", Tunnel: "t2:1556"}
	two := Config{Primaries: []string{"a:1556", "b:1556"}, Tunnels: []string{"t1:1556", "t2:1556"}, ProbeInterval: 10 * time.Minute}
	da, db := Route{Primary: "a:1556"}, Route{Primary: "b:1556"}
	t1a, t1b := Route{Primary: "a:1556", Tunnel: "t1:1556"}, Route{Primary: "b:1556", Tunnel: "t1:1556"}
	t2a, t2b := Route{Primary: "a:1556", Tunnel: "t2:1556"}, Route{Primary: "b:1556", Tunnel: "t2:1556"}
	for _, tc := range []struct {
		name string
		cfg  Config
		out  Outcomes
		want []Route
	}{
		{"fresh", cfg, Outcomes{}, []Route{d, t1, t2}},
		{"no tunnels", Config{Primaries: []string{"p:1556"}}, Outcomes{}, []Route{d}},
		{"direct worked", cfg, Outcomes{Current: d, LastDirectFailure: now.Add(-time.Minute)}, []Route{d, t1, t2}},
		{"on t2, probe not due", cfg, Outcomes{Current: t2, LastDirectFailure: now.Add(-time.Minute)}, []Route{t2, t1, d}},
		{"on t1, probe not due", cfg, Outcomes{Current: t1, LastDirectFailure: now.Add(-9 * time.Minute)}, []Route{t1, t2, d}},
		{"on t2, probe due", cfg, Outcomes{Current: t2, LastDirectFailure: now.Add(-10 * time.Minute)}, []Route{d, t1, t2}},
		{"on a tunnel no longer configured", cfg, Outcomes{Current: Route{Primary: "p:1556", Tunnel: "old:1"}, LastDirectFailure: now}, []Route{d, t1, t2}},
		// State written before several primaries names none: the first.
		{"old state direct", cfg, Outcomes{Current: Route{}}, []Route{d, t1, t2}},
		{"old state on t2", cfg, Outcomes{Current: Route{Tunnel: "t2:1556"}, LastDirectFailure: now}, []Route{t2, t1, d}},
		// Several primaries: each directly, then each tunnel with each primary.
		{"two primaries fresh", two, Outcomes{}, []Route{da, db, t1a, t1b, t2a, t2b}},
		{"two primaries, b answered last", two, Outcomes{Current: db}, []Route{db, da, t1b, t1a, t2b, t2a}},
		{"two primaries, a no longer configured", Config{Primaries: []string{"b:1556", "c:1556"}}, Outcomes{Current: da}, []Route{db, {Primary: "c:1556"}}},
		{"two primaries, on t2 to b, probe not due", two, Outcomes{Current: t2b, LastDirectFailure: now}, []Route{t2b, t1b, t1a, t2a, db, da}},
		{"two primaries, on t1 to b, probe due", two, Outcomes{Current: t1b, LastDirectFailure: now.Add(-time.Hour)}, []Route{db, da, t1b, t1a, t2b, t2a}},
		{"no primary", Config{Tunnels: []string{"t1:1556"}}, Outcomes{}, nil},
	} {
		if got := Plan(tc.cfg, tc.out, now); !reflect.DeepEqual(got, tc.want) {
			t.Errorf("Plan(%s) = %v, want %v", tc.name, got, tc.want)
		}
	}
}

func TestParseString(t *testing.T) {
	for _, r := range []Route{Direct, {Tunnel: "m:1556"}, {Primary: "a:1556"}, {Primary: "[::1]:1556", Tunnel: "m:1556"}} {
		if got := Parse(r.String()); got != r {
			t.Errorf("Parse(%q) = %v, want %v", r.String(), got, r)
		}
	}
	if got := Parse(""); got != Direct {
		t.Errorf("Parse(\"\") = %v, want direct", got)
	}
}

type timeoutErr struct{}

func (timeoutErr) Error() string   { return "i/o timeout" }
func (timeoutErr) Timeout() bool   { return true }
func (timeoutErr) Temporary() bool { return true }

func TestReachability(t *testing.T) {
	op := func(op string, err error) error { return &net.OpError{Op: op, Net: "tcp", Err: err} }
	for _, tc := range []struct {
		name string
		err  error
		want bool
	}{
		{"nil", nil, false},
		{"refused", op("dial", &os.SyscallError{Syscall: "connect", Err: syscall.ECONNREFUSED}), true},
		{"unreachable", fmt.Errorf("x: %w", syscall.EHOSTUNREACH), true},
		{"net unreachable", syscall.ENETUNREACH, true},
		{"reset during handshake", op("read", syscall.ECONNRESET), true},
		{"timeout", op("read", timeoutErr{}), true},
		{"deadline", fmt.Errorf("handshake: %w", context.DeadlineExceeded), true},
		{"no such host", &net.DNSError{Err: "no such host", Name: "p", IsNotFound: true}, true},
		{"unknown authority", &tls.CertificateVerificationError{Err: x509.UnknownAuthorityError{}}, false},
		{"bad hostname", x509.HostnameError{Certificate: &x509.Certificate{}, Host: "p"}, false},
		{"tls alert", tls.AlertError(42), false},
		{"not tls", tls.RecordHeaderError{Msg: "first record does not look like a TLS handshake"}, false},
		{"eof", io.EOF, false},
		{"other", errors.New("boom"), false},
	} {
		if got := Reachability(tc.err); got != tc.want {
			t.Errorf("Reachability(%s: %v) = %t, want %t", tc.name, tc.err, got, tc.want)
		}
	}
}

// A selector on a tunnel probes direct only when due and logs/persists the change.
func TestSelectorRemembers(t *testing.T) {
	cfg := Config{Primaries: []string{"p:1"}, Tunnels: []string{"t1:1"}, ProbeInterval: time.Minute}
	var saved []Outcomes
	s := NewSelector(cfg, Outcomes{}, discard(), func(o Outcomes) { saved = append(saved, o) })
	clock := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	s.now = func() time.Time { return clock }
	directDown := true
	var tried []Route
	attempt := func(_ context.Context, r Route) error {
		tried = append(tried, r)
		if r.IsDirect() && directDown {
			return &UnreachableError{Route: r, Err: syscall.ECONNREFUSED}
		}
		return nil
	}
	if r, err := s.Do(context.Background(), attempt); err != nil || r != (Route{Primary: "p:1", Tunnel: "t1:1"}) {
		t.Fatalf("Do() = %v, %v, want tunnel t1:1", r, err)
	}
	tried = nil
	clock = clock.Add(30 * time.Second)
	s.Do(context.Background(), attempt)
	if want := []Route{{Primary: "p:1", Tunnel: "t1:1"}}; !reflect.DeepEqual(tried, want) {
		t.Errorf("second Do tried %v, want %v (probe not due)", tried, want)
	}
	if s.ProbeDue() {
		t.Errorf("ProbeDue() = true 30s after a direct failure, want false")
	}
	clock = clock.Add(time.Minute)
	directDown = false
	if !s.ProbeDue() {
		t.Fatalf("ProbeDue() = false after the interval, want true")
	}
	if err := s.ProbeDirect(context.Background(), attempt); err != nil {
		t.Fatal(err)
	}
	if got := s.Outcomes().Current; got != (Route{Primary: "p:1"}) {
		t.Errorf("after a good probe, Current = %v, want direct", got)
	}
	if last := saved[len(saved)-1]; last.Current != (Route{Primary: "p:1"}) {
		t.Errorf("persisted %v, want direct", last)
	}
}

// A non-reachability error stops the search: no fallback.
func TestSelectorNoFallbackOnTLSError(t *testing.T) {
	s := NewSelector(Config{Primaries: []string{"p:1", "p:2"}, Tunnels: []string{"t1:1"}}, Outcomes{}, discard(), nil)
	var tried []Route
	tlsErr := &tls.CertificateVerificationError{Err: x509.UnknownAuthorityError{}}
	_, err := s.Do(context.Background(), func(_ context.Context, r Route) error {
		tried = append(tried, r)
		return tlsErr
	})
	if !errors.Is(err, tlsErr) || len(tried) != 1 {
		t.Errorf("Do() = %v after trying %v, want the TLS error after trying the first primary directly only", err, tried)
	}
}

func TestLabel(t *testing.T) {
	one := Config{Primaries: []string{"p:1556"}}
	two := Config{Primaries: []string{"a:1556", "b:1556"}}
	for _, tc := range []struct {
		c    Config
		r    Route
		want string
	}{
		{one, Route{Primary: "p:1556"}, "direct"},
		{one, Route{Primary: "p:1556", Tunnel: "m:1556"}, "tunnel m:1556"},
		{two, Route{Primary: "b:1556"}, "direct b:1556"},
		{two, Route{Primary: "b:1556", Tunnel: "m:1556"}, "tunnel m:1556 to b:1556"},
	} {
		if got := tc.c.Label(tc.r); got != tc.want {
			t.Errorf("Label(%v with %d primaries) = %q, want %q", tc.r, len(tc.c.Primaries), got, tc.want)
		}
	}
}
