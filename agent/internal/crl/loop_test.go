package crl

import (
	"bytes"
	"context"
	"crypto/x509"
	"errors"
	"math/big"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"testing/synctest"
	"time"

	"github.com/rs/zerolog"

	"github.com/hostcert/hostcert/agent/internal/certstore"
	"github.com/hostcert/hostcert/common/protocol"
	"github.com/hostcert/hostcert/internal/pkitest"
)

// The CRL loop under testing/synctest: virtual time, a fake of the Primary
// interface (CRLs signed by a test CA), the real certstore in a temporary
// directory. The flows against the real primary are in crl_test.go and the
// daemon's tests.

// errUnreachable is what a call to a primary that cannot be reached returns.
var errUnreachable = errors.New("GET /v1/crl: dial tcp 127.0.0.1:1556: connect: connection refused")

// fakePrimary implements Primary: numbered CRLs listing the revoked serials,
// dated by the agent's wall clock; down makes every call fail.
type fakePrimary struct {
	t   testing.TB
	ca  *pkitest.CA
	now func() time.Time

	mu      sync.Mutex
	level   protocol.Level
	number  int64
	revoked []*big.Int
	down    bool
	calls   []time.Time // when /v1/crl was asked, on the fake clock
}

func (p *fakePrimary) Info(context.Context) (protocol.Info, error) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.down {
		return protocol.Info{}, errUnreachable
	}
	return protocol.Info{Level: p.level, CRLRefreshSeconds: int64(p.level.CRLRefresh() / time.Second)}, nil
}

func (p *fakePrimary) CABundle(context.Context) ([]*x509.Certificate, error) {
	return []*x509.Certificate{p.ca.Cert}, nil
}

func (p *fakePrimary) CRL(context.Context, string, *x509.RevocationList) ([]byte, bool, error) {
	p.mu.Lock()
	p.calls = append(p.calls, time.Now())
	spinning := len(p.calls) > 5000
	down := p.down
	p.number++
	n := p.number
	var entries []x509.RevocationListEntry
	for _, s := range p.revoked {
		entries = append(entries, x509.RevocationListEntry{SerialNumber: s, RevocationTime: p.now()})
	}
	p.mu.Unlock()
	if spinning {
		// A loop calling without pause would stop the fake clock forever;
		// let it run so that the test fails on the count instead of hanging.
		time.Sleep(time.Minute)
	}
	if down {
		return nil, false, errUnreachable
	}
	return p.ca.CRL(p.t, n, p.now(), entries...), false, nil
}

func (p *fakePrimary) set(f func(p *fakePrimary)) { p.mu.Lock(); defer p.mu.Unlock(); f(p) }

func (p *fakePrimary) fetches() []time.Time {
	p.mu.Lock()
	defer p.mu.Unlock()
	return append([]time.Time(nil), p.calls...)
}

// loopEnv is one CRL loop in a synctest bubble. Its wall clock is the fake
// clock plus jump (a laptop waking up from sleep).
type loopEnv struct {
	t     *testing.T
	p     *fakePrimary
	store *certstore.Store
	loop  *Loop
	log   *logBuf
	jump  atomic.Int64
	stop  func()
}

func newLoopEnv(t *testing.T, level protocol.Level, id *certstore.Identity) *loopEnv {
	t.Helper()
	ca := pkitest.NewCA(t, "ca") // inside the bubble: valid from the fake clock's start
	store, err := certstore.Open(filepath.Join(t.TempDir(), "d"))
	if err != nil {
		t.Fatal(err)
	}
	if err := store.WriteCA([]*x509.Certificate{ca.Cert}); err != nil {
		t.Fatal(err)
	}
	e := &loopEnv{t: t, store: store, log: &logBuf{}}
	wall := func() time.Time { return time.Now().Add(time.Duration(e.jump.Load())) }
	e.p = &fakePrimary{t: t, ca: ca, now: wall, level: level}
	ident := new(atomic.Pointer[certstore.Identity])
	ident.Store(id)
	e.loop = &Loop{
		Refresher: &Refresher{Store: store, State: store, Client: e.p, Now: wall},
		Identity:  ident, Log: zerolog.New(e.log),
	}
	return e
}

// start runs the loop until stop, which checks that it returns nil.
func (e *loopEnv) start() {
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- e.loop.Run(ctx) }()
	e.stop = func() {
		cancel()
		if err := <-done; err != nil {
			e.t.Errorf("Loop.Run = %v after cancel, want nil", err)
		}
	}
}

func (e *loopEnv) stored() *x509.RevocationList {
	e.t.Helper()
	l, err := e.store.CRL()
	if err != nil {
		e.t.Fatalf("stored CRL: %v", err)
	}
	return l
}

func (e *loopEnv) state() certstore.State {
	e.t.Helper()
	st, err := e.store.State()
	if err != nil {
		e.t.Fatal(err)
	}
	return st
}

// Every level's interval (SPEC §6): very-high 1h, high 4h, medium 8h, to the second.
func TestLoopRefreshesAtTheLevelInterval(t *testing.T) {
	for _, level := range []protocol.Level{protocol.LevelVeryHigh, protocol.LevelHigh, protocol.LevelMedium} {
		t.Run(string(level), func(t *testing.T) {
			synctest.Test(t, func(t *testing.T) {
				e := newLoopEnv(t, level, nil)
				start := time.Now()
				e.start()
				defer e.stop()
				time.Sleep(24*time.Hour - time.Second)
				synctest.Wait()
				iv := level.CRLRefresh()
				calls := e.p.fetches()
				if want := int(24 * time.Hour / iv); len(calls) != want {
					t.Fatalf("level %s: %d CRL fetches in 24h, want %d (every %v)", level, len(calls), want, iv)
				}
				for i, c := range calls {
					if got, want := c.Sub(start), time.Duration(i)*iv; got != want {
						t.Errorf("level %s: fetch %d at %v, want %v", level, i, got, want)
					}
				}
				if got := e.stored().Number.Int64(); got != int64(len(calls)) {
					t.Errorf("stored CRL number = %d, want %d (the latest)", got, len(calls))
				}
			})
		})
	}
}

// The primary unreachable for three days: the loop keeps the stored CRL,
// records the error, keeps retrying (backoff capped at 10 minutes ±50%, no
// give-up after 15 minutes, no busy loop), and refreshes once it is back.
func TestLoopPrimaryUnreachableForDays(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		e := newLoopEnv(t, protocol.LevelHigh, nil)
		start := time.Now()
		e.start()
		defer e.stop()
		synctest.Wait()
		e.p.set(func(p *fakePrimary) { p.down = true })
		const outage = 72 * time.Hour
		time.Sleep(outage)
		synctest.Wait()

		calls := e.p.fetches()[1:] // the first one, at start, worked
		if len(calls) == 0 || calls[0].Sub(start) != 4*time.Hour {
			t.Fatalf("first failed fetch at %v, want at 4h (the interval)", calls[0].Sub(start))
		}
		// 68 hours of retries: at least one per 15 minutes, and not a burst
		// (the first steps of the backoff are seconds apart, then 5 to 15 minutes).
		if n := len(calls); n < 68*4 || n > 68*12+30 {
			t.Errorf("%d fetches during a 68h outage, want between %d and %d", n, 68*4, 68*12+30)
		}
		for i := 1; i < len(calls); i++ {
			if gap := calls[i].Sub(calls[i-1]); gap > 15*time.Minute {
				t.Errorf("%v between fetch %d and %d (at %v), want at most 15m", gap, i-1, i, calls[i].Sub(start))
			}
		}
		if last := calls[len(calls)-1]; start.Add(outage).Sub(last) > 15*time.Minute {
			t.Errorf("last fetch at %v, more than 15m before the end of the outage (%v): the loop gave up", last.Sub(start), outage)
		}
		if got := e.stored().Number.Int64(); got != 1 {
			t.Errorf("stored CRL number = %d during the outage, want 1 kept", got)
		}
		if st := e.state(); st.LastCRLError == "" || !st.LastCRLRefresh.Equal(start) {
			t.Errorf("state during the outage: last error %q, last refresh %v; want an error and the refresh at start", st.LastCRLError, st.LastCRLRefresh)
		}
		if !strings.Contains(e.log.String(), "crl refresh failed") {
			t.Errorf("no 'crl refresh failed' in the log:\n%s", e.log.String())
		}

		e.p.set(func(p *fakePrimary) { p.down = false })
		time.Sleep(15 * time.Minute)
		synctest.Wait()
		if got := e.stored().Number.Int64(); got <= 1 {
			t.Errorf("stored CRL number = %d 15m after the primary came back, want a new one", got)
		}
		if st := e.state(); st.LastCRLError != "" {
			t.Errorf("state.LastCRLError = %q after a good refresh, want empty", st.LastCRLError)
		}
	})
}

// A laptop asleep for three days: timers did not run, the wall clock jumped.
// The loop compares the wall clock at least hourly, so the refresh due
// during the sleep happens within the hour after waking, not 8 hours later.
func TestLoopLaptopSleep(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		e := newLoopEnv(t, protocol.LevelMedium, nil) // 8h interval
		e.start()
		defer e.stop()
		synctest.Wait()
		time.Sleep(10 * time.Minute)
		e.jump.Store(int64(72 * time.Hour))
		woke := time.Now()
		time.Sleep(time.Hour)
		synctest.Wait()
		calls := e.p.fetches()
		if len(calls) != 2 {
			t.Fatalf("%d CRL fetches, want 2: at start and within the hour after waking", len(calls))
		}
		if d := calls[1].Sub(woke); d > time.Hour {
			t.Errorf("refresh %v after waking, want within 1h", d)
		}
		if st := e.state(); !st.LastCRLRefresh.After(woke.Add(72 * time.Hour)) {
			t.Errorf("last refresh %v, want after the wall clock's wake-up time", st.LastCRLRefresh)
		}
	})
}

// This host revoked while the loop runs: the next refresh stores a CRL that
// lists it and the loop says so at error level, once per new CRL.
func TestLoopHostRevoked(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		serial := big.NewInt(0x4242)
		id := &certstore.Identity{Cert: &x509.Certificate{SerialNumber: serial, NotAfter: time.Now().Add(365 * 24 * time.Hour)}}
		e := newLoopEnv(t, protocol.LevelVeryHigh, id)
		e.start()
		defer e.stop()
		time.Sleep(90 * time.Minute) // two clean refreshes
		synctest.Wait()
		if strings.Contains(e.log.String(), "revoked") {
			t.Fatalf("revocation logged before it happened:\n%s", e.log.String())
		}
		e.p.set(func(p *fakePrimary) { p.revoked = append(p.revoked, serial) })
		time.Sleep(time.Hour)
		synctest.Wait()
		l := e.stored()
		if len(l.RevokedCertificateEntries) != 1 || l.RevokedCertificateEntries[0].SerialNumber.Cmp(serial) != 0 {
			t.Fatalf("stored CRL lists %v, want serial %X", l.RevokedCertificateEntries, serial)
		}
		log := e.log.String()
		if n := strings.Count(log, "this host's certificate is revoked"); n != 1 || !strings.Contains(log, `"level":"error"`) || !strings.Contains(log, `"serial":"4242"`) {
			t.Errorf("revocation logged %d times, want once at error level with the serial:\n%s", n, log)
		}
	})
}

// logBuf collects the loop's log lines.
type logBuf struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (l *logBuf) Write(p []byte) (int, error) { l.mu.Lock(); defer l.mu.Unlock(); return l.b.Write(p) }
func (l *logBuf) String() string              { l.mu.Lock(); defer l.mu.Unlock(); return l.b.String() }
