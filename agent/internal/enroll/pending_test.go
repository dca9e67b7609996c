package enroll

import (
	"crypto"
	"testing"

	"github.com/hostcert/hostcert/agent/internal/certstore"
	"github.com/hostcert/hostcert/common/pki"
)

// TestPendingKeyReused: an enrollment whose answer never arrived is retried
// with the same key (so the primary can hand back what it issued); a change
// of key algorithm makes a new key.
func TestPendingKeyReused(t *testing.T) {
	store, err := certstore.Open(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	first, err := PendingKey(store, pki.ECDSAP256)
	if err != nil {
		t.Fatal(err)
	}
	again, err := PendingKey(store, pki.ECDSAP256)
	if err != nil {
		t.Fatal(err)
	}
	if !samePublic(first, again) {
		t.Error("second PendingKey(p256) made a new key, want the pending one")
	}
	other, err := PendingKey(store, pki.ECDSAP384)
	if err != nil {
		t.Fatal(err)
	}
	if samePublic(first, other) || pki.AlgorithmOf(other) != pki.ECDSAP384 {
		t.Error("PendingKey(p384) with a pending P-256 key did not make a new P-384 key")
	}
	if err := store.RemovePendingKey(); err != nil {
		t.Fatal(err)
	}
	if k, err := store.PendingKey(); k != nil || err != nil {
		t.Errorf("PendingKey after RemovePendingKey = %v, %v, want nil, nil", k, err)
	}
}

func samePublic(a, b crypto.Signer) bool {
	return a.Public().(interface{ Equal(crypto.PublicKey) bool }).Equal(b.Public())
}
