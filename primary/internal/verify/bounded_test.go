package verify

import (
	"context"
	"fmt"
	"net"
	"net/netip"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/miekg/dns"

	"github.com/hostcert/hostcert/internal/dnstest"
)

// TestBoundedCachesAnswers: a second verification of a name, positive or
// negative, asks the DNS server nothing until the answer's TTL is over.
func TestBoundedCachesAnswers(t *testing.T) {
	srv := dnstest.New(t, map[string][]netip.Addr{"known.example.test": {ip("192.0.2.10")}})
	b := NewBounded(NewResolver(srv.Addr()), Limits{TTL: 30 * time.Second})
	now := time.Now()
	b.now = func() time.Time { return now }

	for _, tc := range []struct {
		name string
		ok   bool
		why  string
	}{
		{"known.example.test", true, "dns matches 192.0.2.10"},
		{"made-up.example.test", false, "name does not resolve (no such host)"},
	} {
		ok, why := Verify(context.Background(), b, tc.name, ip("192.0.2.10"), false)
		if ok != tc.ok || why != tc.why {
			t.Fatalf("Verify(%s) = %v, %q, want %v, %q", tc.name, ok, why, tc.ok, tc.why)
		}
		asked := srv.Queries()
		if asked == 0 {
			t.Fatalf("queries after the first Verify(%s) = 0, want > 0", tc.name)
		}
		for _, spelling := range []string{tc.name, strings.ToUpper(tc.name) + "."} {
			ok, why = Verify(context.Background(), b, spelling, ip("192.0.2.10"), false)
			if ok != tc.ok || why != tc.why {
				t.Errorf("Verify(%s) from the cache = %v, %q, want %v, %q", spelling, ok, why, tc.ok, tc.why)
			}
			if n := srv.Queries(); n != asked {
				t.Errorf("queries after a cached Verify(%s) = %d, want %d (no new query)", spelling, n, asked)
			}
		}
	}

	// After the TTL the name is asked again, and a change is seen.
	srv.Set("made-up.example.test", ip("192.0.2.10"))
	before := srv.Queries()
	now = now.Add(31 * time.Second)
	if ok, why := Verify(context.Background(), b, "made-up.example.test", ip("192.0.2.10"), false); !ok {
		t.Errorf("Verify after the TTL = false, %q, want true (the record was added)", why)
	}
	if srv.Queries() == before {
		t.Errorf("queries after the TTL = %d, want more than %d", srv.Queries(), before)
	}
	if got := b.Lookups(); got != 3 {
		t.Errorf("Lookups() = %d, want 3 (two names, one expiry)", got)
	}
}

// TestBoundedFailuresNotCached: a SERVFAIL says nothing about the name and
// is asked again next time.
func TestBoundedFailuresNotCached(t *testing.T) {
	srv := dnstest.New(t, nil)
	srv.Set("broken.example.test", ip("192.0.2.50"))
	srv.ServFail("broken.example.test")
	b := NewBounded(NewResolver(srv.Addr()), Limits{})
	for i := 0; i < 2; i++ {
		if ok, why := Verify(context.Background(), b, "broken.example.test", ip("192.0.2.50"), false); ok || !strings.HasPrefix(why, "dns lookup failed") {
			t.Fatalf("Verify(servfail) = %v, %q, want false, dns lookup failed", ok, why)
		}
	}
	if got := b.Lookups(); got != 2 {
		t.Errorf("Lookups() after two SERVFAILs = %d, want 2 (failures are not cached)", got)
	}
}

// silentDNS is a UDP socket that reads queries, records the names asked and
// never answers.
type silentDNS struct {
	pc    net.PacketConn
	mu    sync.Mutex
	names map[string]bool
}

func newSilentDNS(t *testing.T) *silentDNS {
	pc, err := net.ListenPacket("udp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	s := &silentDNS{pc: pc, names: make(map[string]bool)}
	t.Cleanup(func() { pc.Close() })
	go func() {
		buf := make([]byte, 4096)
		for {
			n, _, err := pc.ReadFrom(buf)
			if err != nil {
				return
			}
			var m dns.Msg
			if m.Unpack(buf[:n]) == nil && len(m.Question) > 0 {
				s.mu.Lock()
				s.names[strings.ToLower(m.Question[0].Name)] = true
				s.mu.Unlock()
			}
		}
	}()
	return s
}

func (s *silentDNS) asked() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return len(s.names)
}

// TestBoundedSilentServer: with a DNS server that never answers, a flood of
// made-up names holds at most MaxLookups lookups; every other request is
// refused at once ("dns busy") instead of queueing behind the silent server.
func TestBoundedSilentServer(t *testing.T) {
	const bound, flood = 4, 40
	silent := newSilentDNS(t)
	b := NewBounded(NewResolver(silent.pc.LocalAddr().String()), Limits{MaxLookups: bound, Timeout: 3 * time.Second})

	// The bound lookups start and block on the silent server.
	results := make(chan string, flood)
	var wg sync.WaitGroup
	verify := func(i int) {
		defer wg.Done()
		_, why := Verify(context.Background(), b, fmt.Sprintf("made-up-%d.example.test", i), ip("192.0.2.1"), false)
		results <- why
	}
	for i := 0; i < bound; i++ {
		wg.Add(1)
		go verify(i)
	}
	deadline := time.Now().Add(10 * time.Second)
	for len(b.sem) < bound {
		if time.Now().After(deadline) {
			t.Fatalf("lookups in flight = %d after 10s, want %d", len(b.sem), bound)
		}
		time.Sleep(5 * time.Millisecond)
	}
	// The flood: every one of these is refused before any blocked lookup
	// ends.
	for i := bound; i < flood; i++ {
		wg.Add(1)
		go verify(i)
	}
	for i := bound; i < flood; i++ {
		if why := <-results; why != "dns busy" {
			t.Fatalf("result %d of the flood = %q, want \"dns busy\" (the %d blocked lookups have not ended)", i-bound, why, bound)
		}
	}
	if got := b.Lookups(); got != bound {
		t.Errorf("lookups passed to the resolver = %d, want %d", got, bound)
	}
	if got := silent.asked(); got > bound {
		t.Errorf("names the DNS server was asked = %d, want at most %d", got, bound)
	}
	wg.Wait()
	close(results)
	for why := range results {
		if why != "dns lookup timed out" {
			t.Errorf("blocked lookup = %q, want \"dns lookup timed out\"", why)
		}
	}
}

// TestBoundedSharesALookup: concurrent verifications of one name while the
// server is silent make one lookup.
func TestBoundedSharesALookup(t *testing.T) {
	silent := newSilentDNS(t)
	b := NewBounded(NewResolver(silent.pc.LocalAddr().String()), Limits{MaxLookups: 1, Timeout: time.Second})
	var wg sync.WaitGroup
	whys := make([]string, 8)
	for i := range whys {
		wg.Add(1)
		go func() {
			defer wg.Done()
			_, whys[i] = Verify(context.Background(), b, "same.example.test", ip("192.0.2.1"), false)
		}()
	}
	wg.Wait()
	// Some callers may come after the first lookup ended and start a second
	// one; never one per caller.
	if got := b.Lookups(); got < 1 || got > 2 {
		t.Errorf("lookups for 8 concurrent callers of one name = %d, want 1 or 2", got)
	}
	for i, why := range whys {
		if why != "dns lookup timed out" && why != "dns busy" {
			t.Errorf("caller %d = %q, want timed out", i, why)
		}
	}
}

func TestNotVerifiableAsksNoDNS(t *testing.T) {
	srv := dnstest.New(t, map[string][]netip.Addr{"media.example.test": {ip("192.0.2.7")}})
	ctx := NotVerifiable(context.Background(), "relayed by undeclared peer 192.0.2.7")
	ok, why := Verify(ctx, NewResolver(srv.Addr()), "media.example.test", ip("192.0.2.7"), false)
	if ok || why != "relayed by undeclared peer 192.0.2.7" {
		t.Errorf("Verify(not verifiable) = %v, %q, want false and the reason", ok, why)
	}
	if n := srv.Queries(); n != 0 {
		t.Errorf("queries = %d, want 0", n)
	}
}
