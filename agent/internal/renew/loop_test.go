package renew

import (
	"bytes"
	"context"
	"crypto"
	"crypto/x509"
	"crypto/x509/pkix"
	"errors"
	"fmt"
	"net/url"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"testing/synctest"
	"time"

	"github.com/cenkalti/backoff/v4"
	"github.com/rs/zerolog"

	"github.com/hostcert/hostcert/agent/internal/certstore"
	"github.com/hostcert/hostcert/common/pki"
	"github.com/hostcert/hostcert/common/protocol"
	"github.com/hostcert/hostcert/internal/pkitest"
)

// The renewal loop under testing/synctest: virtual time, a fake of the
// Primary interface (certificates signed by a test CA), the real certstore
// in a temporary directory. The flows against the real primary are in the
// cli and daemon tests.

const (
	hostID = "0b7d0a4e-8f5c-4d6e-9a51-3c2f1e0d9b8a"
	day    = 24 * time.Hour
)

var errUnreachable = errors.New("POST /v1/renew: dial tcp 127.0.0.1:1556: connect: connection refused")

// fakePrimary implements Primary: it signs the CSR's key for validity from
// the agent's wall clock (back-dated 5 minutes, like the primary), or
// refuses with host_revoked, or cannot be reached.
type fakePrimary struct {
	t        testing.TB
	ca       *pkitest.CA
	now      func() time.Time
	validity time.Duration

	mu      sync.Mutex
	down    bool
	revoked bool
	calls   []call
}

type call struct {
	at      time.Time // fake clock
	granted bool
}

func (p *fakePrimary) Renew(_ context.Context, req protocol.RenewRequest) (protocol.CertResponse, error) {
	p.mu.Lock()
	down, revoked := p.down, p.revoked
	p.calls = append(p.calls, call{at: time.Now(), granted: !down && !revoked})
	spinning := len(p.calls) > 5000
	p.mu.Unlock()
	if spinning {
		// A loop calling without pause would stop the fake clock forever;
		// let it run so that the test fails on the count instead of hanging.
		time.Sleep(time.Minute)
	}
	switch {
	case down:
		return protocol.CertResponse{}, errUnreachable
	case revoked:
		return protocol.CertResponse{}, fmt.Errorf("POST /v1/renew: %w", &protocol.Error{Code: protocol.CodeHostRevoked, Message: "this host is revoked"})
	}
	csr, err := pki.ParseCSR([]byte(req.CSR))
	if err != nil {
		p.t.Errorf("fake primary: %v", err)
		return protocol.CertResponse{}, err
	}
	now := p.now()
	c := p.issue(csr.PublicKey, csr.DNSNames[0], now.Add(-5*time.Minute), now.Add(p.validity))
	return protocol.CertResponse{HostID: hostID, Certificate: string(pki.EncodeCert(c))}, nil
}

func (p *fakePrimary) issue(pub crypto.PublicKey, name string, notBefore, notAfter time.Time) *x509.Certificate {
	return p.ca.Sign(p.t, &x509.Certificate{
		SerialNumber: pkitest.Serial(p.t), Subject: pkix.Name{CommonName: hostID}, DNSNames: []string{name},
		URIs: []*url.URL{pki.HostURI(hostID)}, NotBefore: notBefore, NotAfter: notAfter,
		KeyUsage:    x509.KeyUsageDigitalSignature,
		ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth, x509.ExtKeyUsageServerAuth},
	}, pub)
}

func (p *fakePrimary) set(f func(p *fakePrimary)) { p.mu.Lock(); defer p.mu.Unlock(); f(p) }

func (p *fakePrimary) log() []call {
	p.mu.Lock()
	defer p.mu.Unlock()
	return append([]call(nil), p.calls...)
}

// loopEnv is one renewal loop in a synctest bubble, with the default retry
// policy, sleep cap and blocked-poll interval. Its wall clock is the fake
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

// newLoopEnv stores a first certificate of the given life, issued age ago,
// and renewal settings renew_before 180 days (so short certificates renew
// at mid-life), no jitter, a new key each time.
func newLoopEnv(t *testing.T, life, age, validity time.Duration) *loopEnv {
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
	e.p = &fakePrimary{t: t, ca: ca, now: wall, validity: validity}
	e.write(life, age)
	id, err := store.Identity()
	if err != nil {
		t.Fatal(err)
	}
	ident := new(atomic.Pointer[certstore.Identity])
	ident.Store(id)
	settings := Settings{RenewBefore: 180 * day, KeyAlg: pki.ECDSAP256}
	e.loop = &Loop{
		Renewer: &Renewer{
			Store: store, Client: e.p, Identity: ident, Now: wall,
			Settings: func() Settings { return settings },
		},
		Disk: store, Log: zerolog.New(e.log),
	}
	return e
}

// write stores a new certificate of the given life issued age ago, as
// get-cert does.
func (e *loopEnv) write(life, age time.Duration) *certstore.Identity {
	e.t.Helper()
	key, err := pki.GenerateKey(pki.ECDSAP256)
	if err != nil {
		e.t.Fatal(err)
	}
	nb := e.p.now().Add(-age)
	id, err := certstore.NewIdentity(e.p.issue(key.Public(), "h1.example.com", nb, nb.Add(life)), key)
	if err != nil {
		e.t.Fatal(err)
	}
	if err := e.store.WriteIdentity(id); err != nil {
		e.t.Fatal(err)
	}
	return id
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

func (e *loopEnv) cert() *x509.Certificate {
	e.t.Helper()
	id, err := e.store.Identity()
	if err != nil {
		e.t.Fatal(err)
	}
	return id.Cert
}

func (e *loopEnv) state() certstore.State {
	e.t.Helper()
	st, err := e.store.State()
	if err != nil {
		e.t.Fatal(err)
	}
	return st
}

func count(calls []call, granted bool) int {
	n := 0
	for _, c := range calls {
		if c.granted == granted {
			n++
		}
	}
	return n
}

// backoff/v4's ExponentialBackOff gives up after MaxElapsedTime, 15 minutes
// by default; renewal must not. On the fake clock, the default policy keeps
// answering for a week of failures, never more than 15 minutes apart.
func TestDefaultBackOffNeverGivesUp(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		b := DefaultBackOff()
		if eb, ok := b.(*backoff.ExponentialBackOff); !ok || eb.MaxElapsedTime != 0 {
			t.Fatalf("DefaultBackOff() = %#v, want an ExponentialBackOff with MaxElapsedTime 0", b)
		}
		start := time.Now()
		for time.Since(start) < 7*day {
			d := b.NextBackOff()
			if d == backoff.Stop {
				t.Fatalf("DefaultBackOff gave up after %v", time.Since(start))
			}
			if d > 15*time.Minute {
				t.Fatalf("DefaultBackOff waits %v, want at most 10m+50%%", d)
			}
			time.Sleep(d)
		}
	})
}

// The primary unreachable for three days while renewal is due: the loop
// keeps the current certificate, records the error, retries at least every
// 15 minutes — past backoff/v4's default 15-minute give-up — without a
// burst, and renews once the primary is back.
func TestLoopPrimaryUnreachableForDays(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		e := newLoopEnv(t, 10*day, 6*day, 10*day) // past mid-life: due at once
		e.p.set(func(p *fakePrimary) { p.down = true })
		first := e.cert()
		start := time.Now()
		e.start()
		defer e.stop()
		const outage = 72 * time.Hour
		time.Sleep(outage)
		synctest.Wait()

		calls := e.p.log()
		if len(calls) == 0 || calls[0].at != start {
			t.Fatalf("no renewal attempt at start: %v", calls)
		}
		if n := len(calls); n < 72*4 || n > 72*12+30 {
			t.Errorf("%d attempts in a 72h outage, want between %d and %d (every 5 to 15 minutes)", n, 72*4, 72*12+30)
		}
		for i := 1; i < len(calls); i++ {
			if gap := calls[i].at.Sub(calls[i-1].at); gap > 15*time.Minute {
				t.Errorf("%v between attempt %d and %d (at %v), want at most 15m", gap, i-1, i, calls[i].at.Sub(start))
			}
		}
		if last := calls[len(calls)-1].at; start.Add(outage).Sub(last) > 15*time.Minute {
			t.Errorf("last attempt at %v, more than 15m before the end of the outage: the loop gave up", last.Sub(start))
		}
		if !e.cert().Equal(first) {
			t.Errorf("certificate changed during the outage")
		}
		if st := e.state(); !strings.Contains(st.LastRenewalError, "connection refused") {
			t.Errorf("state.LastRenewalError = %q during the outage, want the last error", st.LastRenewalError)
		}

		e.p.set(func(p *fakePrimary) { p.down = false })
		time.Sleep(15 * time.Minute)
		synctest.Wait()
		c := e.cert()
		if c.Equal(first) {
			t.Fatalf("not renewed 15m after the primary came back")
		}
		if want := e.p.now().Add(10 * day); c.NotAfter.After(want) || c.NotAfter.Before(want.Add(-15*time.Minute)) {
			t.Errorf("renewed certificate valid until %v, want about %v", c.NotAfter, want)
		}
		if st := e.state(); st.LastRenewalError != "" || st.NextRenewal.IsZero() {
			t.Errorf("state after renewal: last error %q, next renewal %v; want no error and the next due time", st.LastRenewalError, st.NextRenewal)
		}
	})
}

// The host revoked while the loop runs, refused by the primary or listed in
// the stored CRL (the CRL loop's doing): the loop stops asking — at most the
// one refused attempt, no retries — logs at error level once an hour, and
// resumes with a reissued certificate that get-cert writes.
func TestLoopHostRevoked(t *testing.T) {
	for _, tc := range []struct {
		name    string
		revoke  func(e *loopEnv)
		refused int // attempts the primary refuses
	}{
		{"refused by the primary", func(e *loopEnv) { e.p.set(func(p *fakePrimary) { p.revoked = true }) }, 1},
		{"listed in the stored CRL", func(e *loopEnv) {
			crl, err := x509.ParseRevocationList(e.p.ca.CRL(e.t, 1, e.p.now(), x509.RevocationListEntry{SerialNumber: e.cert().SerialNumber, RevocationTime: e.p.now()}))
			if err != nil {
				e.t.Fatal(err)
			}
			if err := e.store.WriteCRL(crl); err != nil {
				e.t.Fatal(err)
			}
		}, 0},
	} {
		t.Run(tc.name, func(t *testing.T) {
			synctest.Test(t, func(t *testing.T) {
				e := newLoopEnv(t, 2*time.Hour, 0, 2*time.Hour) // renewed about hourly
				e.start()
				defer e.stop()
				time.Sleep(5 * time.Hour)
				synctest.Wait()
				before := e.p.log()
				if n := count(before, true); n < 4 {
					t.Fatalf("%d renewals in 5h of 2h certificates, want at least 4", n)
				}
				tc.revoke(e)
				time.Sleep(10 * time.Hour) // the certificate also expires meanwhile
				synctest.Wait()
				after := e.p.log()[len(before):]
				if len(after) != tc.refused || count(after, true) != 0 {
					t.Errorf("%d attempts (%d granted) in the 10h after the revocation, want %d refused", len(after), count(after, true), tc.refused)
				}
				log := e.log.String()
				if n := strings.Count(log, `"message":"cannot renew`); n < 10 || n > 11 || !strings.Contains(log, `"level":"error"`) {
					t.Errorf("'cannot renew' logged %d times in 10h, want once an hour at error level:\n%s", n, log)
				}
				if st := e.state(); st.LastRenewalError == "" {
					t.Errorf("state.LastRenewalError is empty while revoked")
				}

				// get-cert with a reissue token writes a new certificate.
				e.p.set(func(p *fakePrimary) { p.revoked = false })
				reissued := e.write(2*time.Hour, 0)
				time.Sleep(2 * time.Hour)
				synctest.Wait()
				if !strings.Contains(e.log.String(), "new certificate found on disk") {
					t.Errorf("the reissued certificate was not picked up")
				}
				if n := count(e.p.log()[len(before)+len(after):], true); n < 1 || e.cert().Equal(reissued.Cert) {
					t.Errorf("%d renewals in the 2h after the reissue, want the loop renewing again", n)
				}
			})
		})
	}
}

// A laptop asleep: timers stopped, the wall clock jumped. The loop compares
// the wall clock at least hourly, so a renewal that fell due during the sleep
// happens within the hour after waking (not when a 15-day timer would fire);
// a sleep past the certificate's end leaves it expired: no attempt, an error.
func TestLoopLaptopSleep(t *testing.T) {
	for _, tc := range []struct {
		name  string
		sleep time.Duration
		renew bool
	}{
		{"woke past the renewal time", 20 * day, true},
		{"woke past the certificate's end", 40 * day, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			synctest.Test(t, func(t *testing.T) {
				e := newLoopEnv(t, 30*day, 0, 30*day) // due at mid-life, in 15 days
				first := e.cert()
				e.start()
				defer e.stop()
				time.Sleep(time.Hour)
				synctest.Wait()
				e.jump.Store(int64(tc.sleep))
				woke := time.Now()
				time.Sleep(time.Hour)
				synctest.Wait()
				calls := e.p.log()
				if !tc.renew {
					if len(calls) != 0 || !strings.Contains(e.log.String(), "certificate expired") {
						t.Errorf("%d attempts with an expired certificate, want none and 'certificate expired' logged:\n%s", len(calls), e.log.String())
					}
					return
				}
				if len(calls) != 1 || !calls[0].granted {
					t.Fatalf("%d attempts in the hour after waking, want 1 granted", len(calls))
				}
				if d := calls[0].at.Sub(woke); d > time.Hour {
					t.Errorf("renewed %v after waking, want within 1h", d)
				}
				if e.cert().Equal(first) {
					t.Errorf("certificate on disk not renewed")
				}
			})
		})
	}
}

// logBuf collects the loop's log lines.
type logBuf struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (l *logBuf) Write(p []byte) (int, error) { l.mu.Lock(); defer l.mu.Unlock(); return l.b.Write(p) }
func (l *logBuf) String() string              { l.mu.Lock(); defer l.mu.Unlock(); return l.b.String() }
