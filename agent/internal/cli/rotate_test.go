package cli

import (
	"crypto/x509"
	"testing"

	"github.com/hostcert/hostcert/agent/internal/health"
	"github.com/hostcert/hostcert/common/pki"
	"github.com/hostcert/hostcert/primary/primarytest"
)

// trusted is the agent's trust store.
func (h *harness) trusted() []*x509.Certificate {
	h.t.Helper()
	cas, err := h.store().CA()
	if err != nil {
		h.t.Fatal(err)
	}
	return cas
}

func hasRoot(cas []*x509.Certificate, fp string) bool {
	for _, c := range cas {
		if pki.Fingerprint(c) == fp {
			return true
		}
	}
	return false
}

// TestRootRotationLearntOverVerifiedChannel: after ca rotate --root on a
// real primary, an agent that trusts only the old root learns the new one
// at its next verified contact — its CRL refresh, or its renewal over
// mutual TLS — because the old root vouches for it, renews into the new
// chain and stays healthy. An unverified fetch (get-ca-cert, confirming
// the old root) adds no root.
func TestRootRotationLearntOverVerifiedChannel(t *testing.T) {
	srv := newServer(t, primarytest.Options{})
	viaCRL, viaRenew := newHarness(t, srv), newHarness(t, srv)
	viaCRL.enroll("web01.example.com")
	viaRenew.enroll("web02.example.com")
	oldFP := srv.Fingerprint()
	newFP := srv.RotateCA(true)
	if newFP == oldFP {
		t.Fatal("rotate --root kept the root")
	}

	// The bootstrap fetch is unverified: confirming the old root again
	// trusts exactly that root, however many the bundle holds.
	viaCRL.must("get-ca-cert", "--fingerprint", oldFP)
	if cas := viaCRL.trusted(); len(cas) != 1 || !hasRoot(cas, oldFP) {
		t.Fatalf("get-ca-cert --fingerprint OLD after the rotation: trust store %d roots, want the old one only", len(cas))
	}

	// The CRL refresh is verified (the primary's chain carries the cross
	// certificate to the old root) and brings the new root.
	viaCRL.must("get-crl")
	if cas := viaCRL.trusted(); len(cas) != 2 || !hasRoot(cas, newFP) || !hasRoot(cas, oldFP) {
		t.Fatalf("after get-crl: %d roots, want the new root learnt beside the old", len(cas))
	}
	viaCRL.must("renew")

	// The renewal alone is enough: its answer carries the new root and
	// the cross certificate, and the certificate from the new chain is
	// accepted only because the new root was learnt first.
	viaRenew.must("renew")
	if cas := viaRenew.trusted(); !hasRoot(cas, newFP) {
		t.Fatal("a renewal after rotate --root did not teach the new root")
	}

	for name, h := range map[string]*harness{"via crl": viaCRL, "via renew": viaRenew} {
		id := h.identity()
		if len(id.Chain) != 1 || id.Chain[0].CheckSignatureFrom(rootOf(t, h, newFP)) != nil {
			t.Errorf("%s: the renewed certificate is not from the new root's issuing CA", name)
		}
		h.must("get-crl")
		if st := h.status(); st.Health.Verdict != health.Good {
			t.Errorf("%s: health after the root rotation = %s (%s), want good", name, st.Health.Verdict, st.Health.Reason)
		}
		if r := h.run("self-check"); r.code != 0 {
			t.Errorf("%s: self-check = exit %d, %s", name, r.code, r.err)
		}
	}
	// Every host's current certificate is now under the new root: the
	// old one can be retired.
	srv.RetireRoot(oldFP)

	// The primary no longer lists the old root: each agent drops it at its
	// next verified contact — the CRL refresh, or the renewal's answer.
	viaCRL.must("get-crl")
	viaRenew.must("renew")
	for name, h := range map[string]*harness{"via crl": viaCRL, "via renew": viaRenew} {
		if cas := h.trusted(); len(cas) != 1 || !hasRoot(cas, newFP) {
			t.Errorf("%s: after retire-root the trust store holds %d roots (old root still there: %v), want the new root only", name, len(cas), hasRoot(cas, oldFP))
		}
		h.must("get-crl")
		if r := h.run("self-check"); r.code != 0 {
			t.Errorf("%s: self-check after the old root was dropped = exit %d, %s", name, r.code, r.err)
		}
	}
}

func rootOf(t *testing.T, h *harness, fp string) *x509.Certificate {
	t.Helper()
	for _, c := range h.trusted() {
		if pki.Fingerprint(c) == fp {
			return c
		}
	}
	t.Fatalf("no root %s in the trust store", fp)
	return nil
}
