package tokens

import (
	"fmt"
	"net/netip"
	"sync"
	"testing"
	"time"
)

var t0 = time.Date(2026, 11, 23, 12, 0, 0, 0, time.UTC)

func TestLimiterDefaults(t *testing.T) {
	l := NewLimiter(0, 0)
	src := netip.MustParseAddr("192.0.2.7")
	for i := 0; i < DefaultBurst; i++ {
		if !l.Allow(src, t0) {
			t.Fatalf("Allow after %d failures = false, want true (burst %d)", i, DefaultBurst)
		}
		l.Fail(src, t0)
	}
	if l.Allow(src, t0) {
		t.Fatalf("Allow after %d failures = true, want false", DefaultBurst)
	}
	if l.Allow(src, t0.Add(DefaultPer-time.Millisecond)) {
		t.Errorf("Allow %v later = true, want false", DefaultPer-time.Millisecond)
	}
	if !l.Allow(src, t0.Add(DefaultPer)) {
		t.Errorf("Allow %v later = false, want true (one credit back)", DefaultPer)
	}
	// One credit back means exactly one more attempt.
	l.Fail(src, t0.Add(DefaultPer))
	if l.Allow(src, t0.Add(DefaultPer)) {
		t.Errorf("Allow after using the refilled credit = true, want false")
	}
	// Other sources are not affected.
	if !l.Allow(netip.MustParseAddr("192.0.2.8"), t0) {
		t.Errorf("Allow(other source) = false, want true")
	}
}

func TestLimiterRefillCapsAtBurst(t *testing.T) {
	l := NewLimiter(3, time.Second)
	src := netip.MustParseAddr("198.51.100.1")
	l.Fail(src, t0)
	// A day later the bucket is full (3), not 86400 credits.
	now := t0.Add(24 * time.Hour)
	for i := 0; i < 3; i++ {
		if !l.Allow(src, now) {
			t.Fatalf("Allow after %d failures a day later = false, want true", i)
		}
		l.Fail(src, now)
	}
	if l.Allow(src, now) {
		t.Errorf("Allow after 3 failures = true, want false (burst 3 after a long idle)")
	}
}

// Guesses that passed Allow together (concurrent requests) are all paid for.
func TestLimiterDebt(t *testing.T) {
	l := NewLimiter(5, 12*time.Second)
	src := netip.MustParseAddr("192.0.2.77")
	for i := 0; i < 20; i++ { // 20 requests were allowed at once, all wrong
		l.Fail(src, t0)
	}
	// 5 credits, 20 spent: 15 in debt, 16 refills until the next attempt.
	if l.Allow(src, t0.Add(15*12*time.Second)) {
		t.Errorf("Allow after 15 refills = true, want false (still paying the debt)")
	}
	if !l.Allow(src, t0.Add(16*12*time.Second)) {
		t.Errorf("Allow after 16 refills = false, want true")
	}

	// The debt is at most one hour of refill.
	other := netip.MustParseAddr("192.0.2.78")
	for i := 0; i < 10000; i++ {
		l.Fail(other, t0)
	}
	if l.Allow(other, t0.Add(time.Hour)) {
		t.Errorf("Allow an hour after 10000 failures = true, want false (debt floor is -300, one more refill needed)")
	}
	if !l.Allow(other, t0.Add(time.Hour+12*time.Second)) {
		t.Errorf("Allow an hour and one refill after 10000 failures = false, want true")
	}
}

func TestLimiterClockBackwards(t *testing.T) {
	l := NewLimiter(1, time.Minute)
	src := netip.MustParseAddr("203.0.113.5")
	l.Fail(src, t0)
	if l.Allow(src, t0.Add(-time.Hour)) {
		t.Errorf("Allow with the clock an hour back = true, want false")
	}
	if !l.Allow(src, t0.Add(time.Minute)) {
		t.Errorf("Allow a minute after the failure = false, want true")
	}
}

func TestSourceKey(t *testing.T) {
	for _, tc := range []struct{ in, want string }{
		{"192.0.2.1", "192.0.2.1/32"},
		{"::ffff:192.0.2.1", "192.0.2.1/32"},
		{"2001:db8:1:2:3:4:5:6", "2001:db8:1:2::/64"},
		{"2001:db8:1:2::ffff", "2001:db8:1:2::/64"},
		{"fe80::1%eth0", "fe80::/64"},
		{"::1", "::/64"},
	} {
		if got := SourceKey(netip.MustParseAddr(tc.in)); got.String() != tc.want {
			t.Errorf("SourceKey(%s) = %s, want %s", tc.in, got, tc.want)
		}
	}
	if got := SourceKey(netip.Addr{}); got != (netip.Prefix{}) {
		t.Errorf("SourceKey(invalid) = %v, want zero Prefix", got)
	}
}

func TestLimiterGroupsIPv6By64(t *testing.T) {
	l := NewLimiter(2, time.Minute)
	a := netip.MustParseAddr("2001:db8:aa:bb::1")
	b := netip.MustParseAddr("2001:db8:aa:bb:ffff:ffff:ffff:ffff")
	c := netip.MustParseAddr("2001:db8:aa:bc::1")
	l.Fail(a, t0)
	l.Fail(b, t0)
	if l.Allow(a, t0) || l.Allow(b, t0) {
		t.Errorf("Allow in a /64 after 2 failures from it = true, want false")
	}
	if !l.Allow(c, t0) {
		t.Errorf("Allow(%s) (another /64) = false, want true", c)
	}
	// IPv4 and its IPv4-mapped form are one source.
	v4 := netip.MustParseAddr("192.0.2.9")
	l.Fail(v4, t0)
	l.Fail(netip.MustParseAddr("::ffff:192.0.2.9"), t0)
	if l.Allow(v4, t0) {
		t.Errorf("Allow(%s) after failures as IPv4 and IPv4-mapped = true, want false", v4)
	}
	// IPv4 neighbours are separate sources.
	if !l.Allow(netip.MustParseAddr("192.0.2.10"), t0) {
		t.Errorf("Allow(192.0.2.10) = false, want true")
	}
}

func TestLimiterBoundedMemory(t *testing.T) {
	const max = 100
	l := NewLimiterSize(2, time.Minute, max)
	first := netip.MustParseAddr("10.0.0.1")
	l.Fail(first, t0)
	l.Fail(first, t0)
	for i := 0; i < 10*max; i++ {
		l.Fail(netip.AddrFrom4([4]byte{10, 1, byte(i >> 8), byte(i)}), t0)
		if n := l.Len(); n > max {
			t.Fatalf("Len() = %d after %d sources, want at most %d", n, i+2, max)
		}
	}
	if n := l.Len(); n != max {
		t.Errorf("Len() = %d, want %d", n, max)
	}
	// The oldest entry was evicted: it starts again with a full bucket.
	if !l.Allow(first, t0) {
		t.Errorf("Allow(evicted source) = false, want true")
	}
	// The newest entries are still limited.
	n := 10*max - 1
	last := netip.AddrFrom4([4]byte{10, 1, byte(n >> 8), byte(n)})
	l.Fail(last, t0)
	if l.Allow(last, t0) {
		t.Errorf("Allow(recent source after 2 failures) = true, want false")
	}
}

func TestLimiterPrunesRefilledEntries(t *testing.T) {
	l := NewLimiter(2, time.Second)
	for i := 0; i < 3; i++ {
		l.Fail(netip.AddrFrom4([4]byte{10, 0, 0, byte(i)}), t0)
	}
	if n := l.Len(); n != 3 {
		t.Fatalf("Len() = %d, want 3", n)
	}
	// Long after, each new failure drops refilled entries from the old end.
	l.Fail(netip.MustParseAddr("10.9.9.9"), t0.Add(time.Hour))
	if n := l.Len(); n != 1 {
		t.Errorf("Len() after an hour = %d, want 1 (refilled entries pruned)", n)
	}

	// An entry still in debt is not pruned, though burst*per has passed.
	l = NewLimiter(2, time.Second)
	debtor := netip.MustParseAddr("10.0.0.99")
	for i := 0; i < 10; i++ {
		l.Fail(debtor, t0)
	}
	l.Fail(netip.MustParseAddr("10.9.9.9"), t0.Add(5*time.Second))
	if l.Len() != 2 || l.Allow(debtor, t0.Add(5*time.Second)) {
		t.Errorf("after 10 failures and 5s: Len() = %d, Allow(debtor) = %v, want 2, false", l.Len(), l.Allow(debtor, t0.Add(5*time.Second)))
	}
}

func TestLimiterConcurrent(t *testing.T) {
	l := NewLimiter(5, time.Minute)
	src := netip.MustParseAddr("192.0.2.50")
	var wg sync.WaitGroup
	for g := 0; g < 8; g++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := 0; i < 100; i++ {
				l.Allow(src, t0)
				l.Fail(src, t0)
				l.Fail(netip.AddrFrom4([4]byte{10, byte(g), 0, byte(i)}), t0)
			}
		}()
	}
	wg.Wait()
	if l.Allow(src, t0) {
		t.Errorf("Allow after 800 concurrent failures = true, want false")
	}
	if n := l.Len(); n != 1+8*100 {
		t.Errorf("Len() = %d, want %d", n, 1+8*100)
	}
}

func BenchmarkLimiter(b *testing.B) {
	l := NewLimiter(0, 0)
	addrs := make([]netip.Addr, 4096)
	for i := range addrs {
		addrs[i] = netip.MustParseAddr(fmt.Sprintf("2001:db8:%x::1", i))
	}
	i := 0
	for b.Loop() {
		a := addrs[i%len(addrs)]
		now := t0.Add(time.Duration(i) * time.Millisecond)
		if l.Allow(a, now) {
			l.Fail(a, now)
		}
		i++
	}
}
