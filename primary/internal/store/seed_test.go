package store

import (
	"context"
	"testing"
	"time"
)

// TestSeed: the benchmarks' synthetic fleet, seeded in bulk, reads back
// through the ordinary operations like a fleet enrolled one host at a time.
func TestSeed(t *testing.T) { forEachBackend(t, testSeed) }

func testSeed(t *testing.T, s *Store) {
	ctx := context.Background()
	f := Fleet{Hosts: 30, Certs: 20, Revoked: 5, DER: []byte("der")}
	if err := s.Seed(ctx, f); err != nil {
		t.Fatalf("Seed: %v", err)
	}
	h, err := s.LookupName(ctx, f.HostName(7))
	if err != nil || h.ID == "" || !h.Known || h.RevokedAt != nil {
		t.Errorf("LookupName(%s) = %+v, %v, want a known host with an ID", f.HostName(7), h, err)
	}
	if h, _ := s.LookupName(ctx, f.HostName(2)); h.RevokedAt == nil {
		t.Errorf("host 2: not revoked, want revoked (one of the first %d)", f.Revoked)
	}
	c, err := s.CurrentCert(ctx, h.ID)
	if err != nil || len(c.Names) != 1 || c.Names[0] != f.HostName(7) || c.RevokedAt != nil || c.KeyAlg == "" {
		t.Errorf("CurrentCert(host 7) = %+v, %v, want its unrevoked certificate", c, err)
	}
	n := 0
	err = s.EachRevoked(ctx, time.Now(), func(r Revocation) error {
		n++
		if r.Reason != 1 || string(r.DER) != "der" {
			t.Errorf("revoked %s: reason %d DER %q, want 1 and the seeded DER", r.Serial, r.Reason, r.DER)
		}
		return nil
	})
	if err != nil || n != f.Revoked {
		t.Errorf("EachRevoked: %d entries, %v, want %d", n, err, f.Revoked)
	}
	hosts, err := s.ListHostsPage(ctx, HostPage{Limit: 100})
	if err != nil || len(hosts) != f.Hosts {
		t.Errorf("ListHostsPage = %d hosts, %v, want %d", len(hosts), err, f.Hosts)
	}
	certs, err := s.ListCertsPage(ctx, CertPage{CertFilter: CertFilter{IncludeRevoked: true}, Limit: 100})
	if err != nil || len(certs) != f.Certs {
		t.Errorf("ListCertsPage = %d certificates, %v, want %d", len(certs), err, f.Certs)
	}
	if err := s.Seed(ctx, Fleet{Hosts: 1, Certs: 2}); err == nil {
		t.Error("Seed with more certificates than hosts succeeded")
	}
}
