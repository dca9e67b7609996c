package ca

import (
	"errors"
	"os"
	"path/filepath"
	"slices"
	"testing"
	"time"

	"github.com/hostcert/hostcert/common/pki"
)

// copyCA copies the first node's ca directory, as an operator does.
func copyCA(t *testing.T, dir string) string {
	t.Helper()
	dst := t.TempDir()
	entries, err := os.ReadDir(filepath.Join(dir, "ca"))
	if err != nil {
		t.Fatal(err)
	}
	for _, e := range entries {
		b, err := os.ReadFile(filepath.Join(dir, "ca", e.Name()))
		if err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(filepath.Join(dst, e.Name()), b, 0o600); err != nil {
			t.Fatal(err)
		}
	}
	return dst
}

// TestJoin: a second node gets the fleet's CA, its own host ID, and its own
// primary-role TLS certificate for the service name and its own name; the
// first node's names stay reserved on it.
func TestJoin(t *testing.T) {
	first, dir := newCA(t, InitOptions{Names: []string{"primary.example.com", "node1.example.com"}})
	from := copyCA(t, dir)
	dir2 := filepath.Join(t.TempDir(), "node2")
	c, err := Join(dir2, from, []string{"primary.example.com", "node2.example.com"}, time.Now())
	if err != nil {
		t.Fatalf("Join: %v", err)
	}
	if c.Fingerprint() != first.Fingerprint() {
		t.Errorf("Join's CA fingerprint = %s, want the first node's %s", c.Fingerprint(), first.Fingerprint())
	}
	if c.PrimaryHostID() == first.PrimaryHostID() || c.PrimaryHostID() == "" {
		t.Errorf("Join's host ID = %q, want its own (first node: %s)", c.PrimaryHostID(), first.PrimaryHostID())
	}
	leaf := c.ServerTLS().Leaf
	if !slices.Equal(leaf.DNSNames, []string{"primary.example.com", "node2.example.com"}) {
		t.Errorf("server certificate names = %v, want the service name and the node's", leaf.DNSNames)
	}
	if err := leaf.CheckSignatureFrom(c.Certificate()); err != nil {
		t.Errorf("server certificate not signed by the fleet's CA: %v", err)
	}
	if err := pki.RequireRole(leaf, pki.RolePrimary); err != nil {
		t.Errorf("server certificate role: %v, want the primary's", err)
	}
	if !c.IsPrimaryName("node1.example.com") {
		t.Error("the first node's name is not reserved on the joined node")
	}
	if fi, err := os.Stat(IssuingKeyPath(dir2, ID(c.Certificate()))); err != nil || fi.Mode().Perm() != 0o600 {
		t.Errorf("issuing key copy: %v, want mode 0600", err)
	}
	// Load sees the same.
	if l, err := Load(dir2); err != nil || l.Fingerprint() != first.Fingerprint() {
		t.Errorf("Load after Join = %v", err)
	}
	if _, err := Join(dir2, from, []string{"node2.example.com"}, time.Now()); !errors.Is(err, ErrExists) {
		t.Errorf("Join over a CA = %v, want ErrExists", err)
	}
}

// TestJoinRefusesMismatch: CA files that do not belong together (another
// CA's root) are refused and nothing is left behind.
func TestJoinRefusesMismatch(t *testing.T) {
	_, dir := newCA(t, InitOptions{Names: []string{"a.example.com"}})
	_, other := newCA(t, InitOptions{Names: []string{"b.example.com"}})
	from := copyCA(t, dir)
	root, err := os.ReadFile(filepath.Join(other, "ca", "root.pem"))
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(from, "root.pem"), root, 0o600); err != nil {
		t.Fatal(err)
	}
	dir2 := filepath.Join(t.TempDir(), "node2")
	if _, err := Join(dir2, from, []string{"node2.example.com"}, time.Now()); err == nil {
		t.Fatal("Join with another CA's key succeeded")
	}
	if _, err := os.Stat(dir2); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("a refused Join left %s behind (%v)", dir2, err)
	}
}
