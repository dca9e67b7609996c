package crl

import (
	"context"
	"crypto/x509"
	"errors"
	"path/filepath"
	"sync/atomic"
	"testing"
	"time"

	"github.com/rs/zerolog"

	"github.com/hostcert/hostcert/agent/internal/certstore"
	"github.com/hostcert/hostcert/agent/internal/client"
	"github.com/hostcert/hostcert/agent/internal/route"
	"github.com/hostcert/hostcert/common/protocol"
	"github.com/hostcert/hostcert/internal/pkitest"
	"github.com/hostcert/hostcert/primary/primarytest"
)

// setup is a real primary at level very-high and a Refresher for an agent
// that trusts its CA.
func setup(t *testing.T) (*primarytest.Primary, *certstore.Store, *Refresher) {
	t.Helper()
	srv := primarytest.Start(t, primarytest.Options{Level: protocol.LevelVeryHigh})
	store, err := certstore.Open(filepath.Join(t.TempDir(), "d"))
	if err != nil {
		t.Fatal(err)
	}
	if err := store.WriteCA(srv.CA()); err != nil {
		t.Fatal(err)
	}
	sel := route.NewSelector(route.Config{Primaries: []string{"primary.test:" + srv.Port()}, PrimaryDial: srv.Addr(), DialTimeout: time.Second}, route.Outcomes{}, zerolog.Nop(), nil)
	c := client.New(sel, certstore.Pool(srv.CA()), new(atomic.Pointer[certstore.Identity]), 5*time.Second)
	return srv, store, &Refresher{Store: store, State: store, Client: c, Now: time.Now}
}

func TestRefresh(t *testing.T) {
	_, store, r := setup(t)
	list, err := r.Refresh(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	st, _ := store.State()
	if st.Level != protocol.LevelVeryHigh || st.CRLInterval() != time.Hour || st.LastCRLRefresh.IsZero() {
		t.Errorf("state after Refresh = %+v, want level very-high, interval 1h", st)
	}
	if got, err := store.CRL(); err != nil || got.Number.Cmp(list.Number) != 0 {
		t.Errorf("stored CRL = %v, %v; want number %v", got, err, list.Number)
	}
}

// A CRL signed by anything but the trusted CA is refused.
func TestVerifyCRLOtherCA(t *testing.T) {
	srv, _, r := setup(t)
	der, _, err := r.Client.CRL(context.Background(), "", nil)
	if err != nil {
		t.Fatal(err)
	}
	other := pkitest.NewCA(t, "other")
	if _, err := certstore.VerifyCRL(der, []*x509.Certificate{other.Cert}); err == nil {
		t.Errorf("VerifyCRL(signed by another CA) = nil error, want refusal")
	}
	if _, err := certstore.VerifyCRL(der, srv.CA()); err != nil {
		t.Errorf("VerifyCRL(right CA) = %v", err)
	}
}

// A primary serving a CRL older than the stored one (a rollback, or a
// restored backup): refused, the stored one kept, the error recorded.
func TestRefreshRefusesRollback(t *testing.T) {
	ca := pkitest.NewCA(t, "ca")
	store, err := certstore.Open(filepath.Join(t.TempDir(), "d"))
	if err != nil {
		t.Fatal(err)
	}
	store.WriteCA([]*x509.Certificate{ca.Cert})
	p := &fakePrimary{t: t, ca: ca, level: protocol.LevelHigh, now: time.Now}
	r := &Refresher{Store: store, State: store, Client: p, Now: time.Now}
	high, err := certstore.VerifyCRL(ca.CRL(t, 1000, time.Now()), []*x509.Certificate{ca.Cert})
	if err != nil {
		t.Fatal(err)
	}
	store.WriteCRL(high)
	p.number = 7
	if _, err := r.Refresh(context.Background()); !errors.Is(err, ErrOlder) {
		t.Errorf("Refresh with CRL number 7 over stored 1000 = %v, want ErrOlder", err)
	}
	if got, _ := store.CRL(); got.Number.Int64() != 1000 {
		t.Errorf("stored CRL number = %v, want 1000 kept", got.Number)
	}
	if st, _ := store.State(); st.LastCRLError == "" {
		t.Errorf("state.LastCRLError is empty after a refused rollback")
	}
}
