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
	"github.com/hostcert/hostcert/agent/internal/primarytest"
	"github.com/hostcert/hostcert/agent/internal/route"
	"github.com/hostcert/hostcert/common/protocol"
)

func setup(t *testing.T) (*primarytest.Server, *certstore.Store, *Refresher) {
	t.Helper()
	srv, err := primarytest.New(primarytest.Options{Level: protocol.LevelVeryHigh})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { srv.Close() })
	store, err := certstore.Open(filepath.Join(t.TempDir(), "d"))
	if err != nil {
		t.Fatal(err)
	}
	store.WriteCA([]*x509.Certificate{srv.CA})
	sel := route.NewSelector(route.Config{Primary: "primary.test:" + srv.Port(), PrimaryDial: srv.Addr(), DialTimeout: time.Second}, route.Outcomes{}, zerolog.Nop(), nil)
	c := client.New(sel, certstore.Pool([]*x509.Certificate{srv.CA}), new(atomic.Pointer[certstore.Identity]), 5*time.Second)
	return srv, store, &Refresher{Store: store, Client: c, Now: time.Now}
}

func TestRefresh(t *testing.T) {
	srv, store, r := setup(t)
	if _, err := r.Refresh(context.Background()); err != nil {
		t.Fatal(err)
	}
	st, _ := store.State()
	if st.Level != protocol.LevelVeryHigh || st.CRLInterval() != time.Hour || st.LastCRLRefresh.IsZero() {
		t.Errorf("state after Refresh = %+v, want level very-high, interval 1h", st)
	}
	if _, err := store.CRL(); err != nil {
		t.Errorf("stored CRL: %v", err)
	}
	// A stored CRL with a higher number than the primary serves: rollback refused, stored one kept.
	der, _ := srv.CRLNumbered(1000)
	high, err := certstore.VerifyCRL(der, []*x509.Certificate{srv.CA})
	if err != nil {
		t.Fatal(err)
	}
	store.WriteCRL(high)
	if _, err := r.Refresh(context.Background()); !errors.Is(err, ErrOlder) {
		t.Errorf("Refresh with an older CRL = %v, want ErrOlder", err)
	}
	if got, _ := store.CRL(); got.Number.Int64() != 1000 {
		t.Errorf("stored CRL number = %v, want 1000 kept", got.Number)
	}
}

func TestVerifyCRLOtherCA(t *testing.T) {
	srv, _, _ := setup(t)
	other, _, err := primarytest.NewCA("other")
	if err != nil {
		t.Fatal(err)
	}
	der, _ := srv.CRL()
	if _, err := certstore.VerifyCRL(der, []*x509.Certificate{other}); err == nil {
		t.Errorf("VerifyCRL(signed by another CA) = nil error, want refusal")
	}
	if _, err := certstore.VerifyCRL(der, []*x509.Certificate{srv.CA}); err != nil {
		t.Errorf("VerifyCRL(right CA) = %v", err)
	}
}
