package crl

import (
	"context"
	"crypto/x509"
	"fmt"
	"math/big"
	"sync"
	"testing"
	"time"

	"github.com/rs/zerolog"

	"github.com/hostcert/hostcert/common/pki"
	"github.com/hostcert/hostcert/primary/internal/ca"
	"github.com/hostcert/hostcert/primary/internal/store"
)

// source is an in-test Source: a list of revoked certificates and a counter.
type source struct {
	mu      sync.Mutex
	revoked []store.Revocation
	number  int64
}

func (s *source) EachRevoked(_ context.Context, _ time.Time, fn func(store.Revocation) error) error {
	s.mu.Lock()
	list := append([]store.Revocation(nil), s.revoked...)
	s.mu.Unlock()
	for _, r := range list {
		if err := fn(r); err != nil {
			return err
		}
	}
	return nil
}

func (s *source) NextCRLNumber(context.Context) (*big.Int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.number++
	return big.NewInt(s.number), nil
}

func (s *source) revoke(serial string, reason int) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.revoked = append(s.revoked, store.Revocation{Serial: serial, RevokedAt: time.Now(), Reason: reason})
}

func TestPublisher(t *testing.T) {
	c, err := ca.Init(t.TempDir(), ca.InitOptions{Names: []string{"p.test"}, KeyAlg: pki.ECDSAP256}, time.Now())
	if err != nil {
		t.Fatal(err)
	}
	src := &source{}
	p := New(src, c, zerolog.Nop(), 0, 0)
	if p.Current() != nil {
		t.Fatal("Current before the first Refresh is not nil")
	}
	if err := p.Refresh(context.Background()); err != nil {
		t.Fatalf("Refresh: %v", err)
	}
	first := p.Current()
	l, err := x509.ParseRevocationList(first.DER)
	if err != nil || l.CheckSignatureFrom(c.Certificate()) != nil || len(l.RevokedCertificateEntries) != 0 || l.Number.Int64() != 1 {
		t.Fatalf("first CRL: %v, want an empty CRL number 1 signed by the CA", err)
	}
	if got := first.NextUpdate.Sub(first.ThisUpdate); got != DefaultValidity {
		t.Errorf("validity %v, want %v", got, DefaultValidity)
	}

	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- p.Run(ctx) }()
	src.revoke("0ABC", ca.ReasonSuperseded)
	src.revoke("DEF1", 1)
	p.Trigger()
	p.Trigger() // coalesced
	deadline := time.Now().Add(10 * time.Second)
	for p.Current() == first {
		if time.Now().After(deadline) {
			t.Fatal("no regeneration within 10s of Trigger")
		}
		time.Sleep(20 * time.Millisecond)
	}
	cancel()
	if err := <-done; err != nil {
		t.Errorf("Run = %v, want nil", err)
	}
	cur := p.Current()
	l, err = x509.ParseRevocationList(cur.DER)
	if err != nil || len(l.RevokedCertificateEntries) != 2 || cur.Entries != 2 || l.Number.Cmp(big.NewInt(1)) <= 0 {
		t.Fatalf("CRL after revocations: %v, %d entries, number %v; want 2 entries and a higher number", err, len(l.RevokedCertificateEntries), l.Number)
	}
	if e := l.RevokedCertificateEntries[0]; e.SerialNumber.Cmp(big.NewInt(0xABC)) != 0 || e.ReasonCode != ca.ReasonSuperseded {
		t.Errorf("first entry = serial %X reason %d, want ABC reason %d", e.SerialNumber, e.ReasonCode, ca.ReasonSuperseded)
	}

	bad := &source{revoked: []store.Revocation{{Serial: "not hex"}}}
	if err := New(bad, c, zerolog.Nop(), 0, 0).Refresh(context.Background()); err == nil {
		t.Error("Refresh with a malformed serial = nil error, want an error")
	}
}

// TestRefreshConcurrent: concurrent revokers each see their revocation in
// the CRL served once their Refresh returns, and never an older CRL replaces
// a newer one.
func TestRefreshConcurrent(t *testing.T) {
	c, err := ca.Init(t.TempDir(), ca.InitOptions{Names: []string{"p.test"}, KeyAlg: pki.ECDSAP256}, time.Now())
	if err != nil {
		t.Fatal(err)
	}
	src := &source{}
	p := New(src, c, zerolog.Nop(), 0, 0)
	const revokers = 16
	var wg sync.WaitGroup
	errs := make(chan error, revokers)
	for i := 0; i < revokers; i++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			serial := big.NewInt(int64(0x1000 + i))
			src.revoke(fmt.Sprintf("%X", serial), 1)
			if err := p.Refresh(context.Background()); err != nil {
				errs <- err
				return
			}
			l, err := x509.ParseRevocationList(p.Current().DER)
			if err != nil {
				errs <- err
				return
			}
			for _, e := range l.RevokedCertificateEntries {
				if e.SerialNumber.Cmp(serial) == 0 {
					return
				}
			}
			errs <- fmt.Errorf("CRL %v served after Refresh does not list %X", l.Number, serial)
		}()
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Error(err)
	}
	if got := p.Current().Entries; got != revokers {
		t.Errorf("final CRL entries = %d, want %d", got, revokers)
	}
}
