package ca

import (
	"bytes"
	"errors"
	"os"
	"path/filepath"
	"runtime"
	"testing"
	"time"

	"github.com/hostcert/hostcert/common/pki"
)

// TestFleetKey: a fleet key seals for one generation; the sealed bytes
// open only with the same key, for the same generation, unchanged.
func TestFleetKey(t *testing.T) {
	dir := t.TempDir()
	if err := os.Mkdir(filepath.Join(dir, "ca"), 0o700); err != nil {
		t.Fatal(err)
	}
	if _, err := LoadFleetKey(dir); !errors.Is(err, ErrNoFleetKey) {
		t.Fatalf("LoadFleetKey of a directory without one = %v, want ErrNoFleetKey", err)
	}
	k, err := CreateFleetKey(dir)
	if err != nil {
		t.Fatal(err)
	}
	if runtime.GOOS != "windows" {
		if fi, err := os.Stat(FleetKeyPath(dir)); err != nil || fi.Mode().Perm() != 0o600 {
			t.Errorf("fleet key file: %v, want mode 0600", err)
		}
	}
	again, err := CreateFleetKey(dir) // keeps the one there
	if err != nil || again.ID() != k.ID() {
		t.Fatalf("CreateFleetKey over an existing key = %v (id %s), want the same key %s", err, again.ID(), k.ID())
	}
	other, err := CreateFleetKey(t.TempDir() + "/x")
	if err == nil || other != nil {
		// The parent ca/ directory does not exist: nothing written.
		t.Fatalf("CreateFleetKey without a ca directory = %v", err)
	}
	od := t.TempDir()
	os.Mkdir(filepath.Join(od, "ca"), 0o700)
	other, err = CreateFleetKey(od)
	if err != nil {
		t.Fatal(err)
	}
	if other.ID() == k.ID() {
		t.Fatal("two fleet keys have the same id")
	}

	secret := []byte("-----BEGIN PRIVATE KEY----- material")
	sealed, err := k.Seal(secret, 7)
	if err != nil {
		t.Fatal(err)
	}
	if bytes.Contains(sealed, secret[:20]) {
		t.Fatal("sealed material holds the plaintext")
	}
	if got, err := k.Open(sealed, 7); err != nil || !bytes.Equal(got, secret) {
		t.Fatalf("Open(Seal(m, 7), 7) = %q, %v, want m", got, err)
	}
	tampered := bytes.Clone(sealed)
	tampered[len(tampered)-1] ^= 1
	for name, try := range map[string]func() ([]byte, error){
		"another generation": func() ([]byte, error) { return k.Open(sealed, 8) },
		"another key":        func() ([]byte, error) { return other.Open(sealed, 7) },
		"changed bytes":      func() ([]byte, error) { return k.Open(tampered, 7) },
		"too short":          func() ([]byte, error) { return k.Open(sealed[:10], 7) },
	} {
		if got, err := try(); !errors.Is(err, ErrSealed) || got != nil {
			t.Errorf("Open with %s = %q, %v, want ErrSealed", name, got, err)
		}
	}
}

// TestAdopt: a node adopts another node's rotations from their material:
// an issuing-CA rotation, a root rotation (without the new root's key) and
// a root's retirement, each leaving it with the same CA as the rotating
// node and a TLS certificate from the new issuing CA.
func TestAdopt(t *testing.T) {
	first, dir := newCA(t, InitOptions{Names: []string{"primary.example.com", "node1.example.com"}})
	dir2 := filepath.Join(t.TempDir(), "node2")
	second, err := Join(dir2, copyCA(t, dir), []string{"primary.example.com", "node2.example.com"}, time.Now())
	if err != nil {
		t.Fatal(err)
	}
	oldRoot := first.Root()
	oldIssuing := first.Certificate()
	same := func(step string) {
		t.Helper()
		if !second.Certificate().Equal(first.Certificate()) {
			t.Errorf("%s: node 2 signs with %s, node 1 with %s", step, second.Certificate().Subject, first.Certificate().Subject)
		}
		if !bytes.Equal(second.BundlePEM(), first.BundlePEM()) {
			t.Errorf("%s: node 2's bundle differs from node 1's", step)
		}
		if err := second.ServerTLS().Leaf.CheckSignatureFrom(second.Certificate()); err != nil {
			t.Errorf("%s: node 2's TLS certificate is not from the new issuing CA: %v", step, err)
		}
		if l, err := Load(dir2); err != nil || !l.Certificate().Equal(first.Certificate()) {
			t.Errorf("%s: Load of node 2 after Adopt = %v", step, err)
		}
	}
	adopt := func() {
		t.Helper()
		m, err := first.Material()
		if err != nil {
			t.Fatal(err)
		}
		if err := second.Adopt(m, time.Now()); err != nil {
			t.Fatalf("Adopt: %v", err)
		}
	}

	if _, err := first.RotateIssuing(RotateOptions{}, time.Now()); err != nil {
		t.Fatal(err)
	}
	adopt()
	same("issuing CA rotation")

	newRoot, err := first.RotateRoot(RotateOptions{}, time.Now())
	if err != nil {
		t.Fatal(err)
	}
	adopt()
	same("root rotation")
	if second.Fingerprint() != first.Fingerprint() {
		t.Errorf("node 2's root %s, want node 1's new root %s", second.Fingerprint(), first.Fingerprint())
	}
	if _, err := os.Stat(RootKeyPath(dir2, ID(newRoot))); err == nil || second.RootKeyOnline() {
		t.Error("the new root's key reached node 2")
	}

	if _, err := first.RetireRoot(pki.Fingerprint(oldRoot)); err != nil {
		t.Fatal(err)
	}
	adopt()
	same("root retirement")
	for _, p := range []string{IssuingKeyPath(dir2, ID(oldIssuing)), IssuingPath(dir2, ID(oldIssuing)), RootKeyPath(dir2, ID(oldRoot))} {
		if _, err := os.Stat(p); err == nil {
			t.Errorf("%s is still on node 2 after its root was retired", p)
		}
	}
}

// TestAdoptRefusesUntrustedRoot: material whose root no trusted root
// vouches for (another CA) is refused and changes nothing.
func TestAdoptRefusesUntrustedRoot(t *testing.T) {
	c, dir := newCA(t, InitOptions{Names: []string{"primary.example.com"}})
	foreign, _ := newCA(t, InitOptions{Names: []string{"evil.example.com"}})
	m, err := foreign.Material()
	if err != nil {
		t.Fatal(err)
	}
	before := c.BundlePEM()
	if err := c.Adopt(m, time.Now()); !errors.Is(err, ErrUntrustedRoot) {
		t.Fatalf("Adopt(another CA's material) = %v, want ErrUntrustedRoot", err)
	}
	if !bytes.Equal(c.BundlePEM(), before) {
		t.Error("a refused Adopt changed the CA")
	}
	if l, err := Load(dir); err != nil || !bytes.Equal(l.BundlePEM(), before) {
		t.Errorf("a refused Adopt changed the data directory: %v", err)
	}
	if err := c.Adopt([]byte(`{"files":{"../host-id":"AA=="}}`), time.Now()); err == nil {
		t.Error("Adopt of a file outside the shared set succeeded")
	}
}
