package crl

import (
	"bytes"
	"context"
	"crypto/x509"
	"errors"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/hostcert/hostcert/agent/internal/certstore"
	"github.com/hostcert/hostcert/agent/internal/client"
	"github.com/hostcert/hostcert/common/pki"
	"github.com/hostcert/hostcert/common/protocol"
	"github.com/hostcert/hostcert/internal/pkitest"
)

// recorder passes calls to the primary and records whether each CRL
// answer was 304 Not Modified.
type recorder struct {
	Primary
	notModified []bool
}

func (r *recorder) CRL(ctx context.Context, issuer string, held *x509.RevocationList) ([]byte, bool, error) {
	der, nm, err := r.Primary.CRL(ctx, issuer, held)
	if err == nil {
		r.notModified = append(r.notModified, nm)
	}
	return der, nm, err
}

// TestRefreshConditional: against the real primary, a refresh asks for the
// CRLs conditionally with what the host holds; an unchanged CRL comes back
// as 304 (issuing CA's and root's), the stored file is left alone and the
// refresh counts as done; a revocation makes the next refresh fetch the new
// CRL.
func TestRefreshConditional(t *testing.T) {
	srv, store, r := setup(t)
	rec := &recorder{Primary: r.Client}
	r.Client = rec
	ctx := context.Background()

	first, err := r.Refresh(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if len(rec.notModified) == 0 || rec.notModified[0] {
		t.Fatalf("first refresh: 304 answers %v, want the CRL fetched", rec.notModified)
	}
	calls := len(rec.notModified)
	file := store.Path(certstore.CRLFile)
	before, _ := os.ReadFile(file)
	st1, _ := store.State()

	time.Sleep(10 * time.Millisecond)
	again, err := r.Refresh(ctx)
	if err != nil {
		t.Fatalf("refresh of an unchanged CRL: %v", err)
	}
	if got := rec.notModified[calls:]; len(got) != calls || !allTrue(got) {
		t.Errorf("second refresh: 304 answers %v, want %d, all 304", got, calls)
	}
	if again.Number.Cmp(first.Number) != 0 || !bytes.Equal(again.Raw, first.Raw) {
		t.Errorf("refresh answered 304 = CRL number %v, want the held %v", again.Number, first.Number)
	}
	if after, _ := os.ReadFile(file); !bytes.Equal(after, before) {
		t.Error("the stored CRL file changed on a 304")
	}
	if st2, _ := store.State(); !st2.LastCRLRefresh.After(st1.LastCRLRefresh) || st2.LastCRLError != "" {
		t.Errorf("state after a 304 refresh: last refresh %v (was %v), error %q; want a later refresh, no error", st2.LastCRLRefresh, st1.LastCRLRefresh, st2.LastCRLError)
	}

	// A revocation: the next refresh gets the new CRL.
	key, _ := pki.GenerateKey(pki.ECDSAP256)
	csr, _ := pki.CreateCSR(key, "crl-cond.example.com")
	c := rec.Primary.(*client.Client)
	if _, err := c.Enroll(ctx, protocol.EnrollRequest{Name: "crl-cond.example.com", CSR: string(csr), Token: srv.Token("crl-cond", 1)}); err != nil {
		t.Fatal(err)
	}
	srv.Revoke("crl-cond.example.com")
	calls = len(rec.notModified)
	newer, err := r.Refresh(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if rec.notModified[calls] || newer.Number.Cmp(first.Number) <= 0 || len(newer.RevokedCertificateEntries) != 1 {
		t.Errorf("refresh after a revocation: 304 = %v, CRL number %v with %d entries; want a new CRL listing it", rec.notModified[calls], newer.Number, len(newer.RevokedCertificateEntries))
	}
}

func allTrue(bs []bool) bool {
	for _, b := range bs {
		if !b {
			return false
		}
	}
	return true
}

// stalePrimary answers every CRL request with 304: the primary still
// serves the CRL the host holds.
type stalePrimary struct{ *fakePrimary }

func (stalePrimary) CRL(context.Context, string, *x509.RevocationList) ([]byte, bool, error) {
	return nil, true, nil
}

// TestRefreshNotModifiedPastNextUpdate: a 304 for a held CRL past its next
// update does not make it look fresh (SPEC §6): the refresh fails with
// ErrStale, the last refresh time stays, the error is recorded and the
// stored CRL still reads as stale.
func TestRefreshNotModifiedPastNextUpdate(t *testing.T) {
	ca := pkitest.NewCA(t, "ca")
	store, err := certstore.Open(filepath.Join(t.TempDir(), "d"))
	if err != nil {
		t.Fatal(err)
	}
	store.WriteCA([]*x509.Certificate{ca.Cert})
	now := time.Now()
	old, err := certstore.VerifyCRL(ca.CRL(t, 5, now.Add(-8*24*time.Hour)), []*x509.Certificate{ca.Cert})
	if err != nil {
		t.Fatal(err)
	}
	store.WriteCRL(old)
	p := stalePrimary{&fakePrimary{t: t, ca: ca, level: protocol.LevelHigh, now: time.Now}}
	r := &Refresher{Store: store, State: store, Client: p, Now: time.Now}
	if _, err := r.Refresh(context.Background()); !errors.Is(err, ErrStale) {
		t.Errorf("Refresh answered 304 for a CRL past its next update = %v, want ErrStale", err)
	}
	st, _ := store.State()
	if !st.LastCRLRefresh.IsZero() || st.LastCRLError == "" {
		t.Errorf("state = last refresh %v, error %q; want no refresh recorded and the error", st.LastCRLRefresh, st.LastCRLError)
	}
	if got, _ := store.CRL(); !now.After(got.NextUpdate) {
		t.Errorf("stored CRL next update %v, want the stale one kept", got.NextUpdate)
	}

	// The same 304 for a CRL within its validity is a good refresh.
	fresh, _ := certstore.VerifyCRL(ca.CRL(t, 6, now), []*x509.Certificate{ca.Cert})
	store.WriteCRL(fresh)
	if _, err := r.Refresh(context.Background()); err != nil {
		t.Errorf("Refresh answered 304 for a fresh CRL = %v, want nil", err)
	}
	if st, _ := store.State(); st.LastCRLRefresh.IsZero() || st.LastCRLError != "" {
		t.Errorf("state after a good 304 = %+v, want a refresh and no error", st)
	}
}
