package store

import (
	"context"
	"errors"
	"testing"
	"time"
)

// TestAdminCerts: administrator certificates are recorded with their
// audit row, one live certificate per name, found by serial in any case,
// listed, revoked by name (every live one, audited, once), and a revoked
// one that has not expired is in EachRevoked (the CRL's source).
func TestAdminCerts(t *testing.T) { forEachBackend(t, testAdminCerts) }

func testAdminCerts(t *testing.T, s *Store) {
	ctx := context.Background()
	now := time.Now().UTC().Truncate(time.Second)
	cert := func(serial, name string) AdminCert {
		return AdminCert{Serial: serial, Name: name, IssuedAt: now, NotBefore: now.Add(-time.Minute),
			NotAfter: now.Add(90 * 24 * time.Hour), DER: []byte("der-" + serial)}
	}
	if err := s.AddAdminCert(ctx, cert("a1", "alice"), Audit{Actor: "admin:0"}); err != nil {
		t.Fatalf("AddAdminCert(alice) = %v, want nil", err)
	}
	if err := s.AddAdminCert(ctx, cert("A2", "alice"), Audit{}); !errors.Is(err, ErrAdminLive) {
		t.Errorf("AddAdminCert(alice again) = %v, want ErrAdminLive", err)
	}
	if err := s.AddAdminCert(ctx, cert("a1", "bob"), Audit{}); !errors.Is(err, ErrSerialExists) {
		t.Errorf("AddAdminCert(bob, alice's serial) = %v, want ErrSerialExists", err)
	}
	if err := s.AddAdminCert(ctx, cert("B1", "bob"), Audit{}); err != nil {
		t.Fatal(err)
	}
	got, err := s.AdminCertBySerial(ctx, "a:1")
	if err != nil || got.Name != "alice" || got.Serial != "A1" || string(got.DER) != "der-a1" || got.RevokedAt != nil || !got.NotAfter.Equal(now.Add(90*24*time.Hour)) {
		t.Errorf("AdminCertBySerial(a:1) = %+v, %v, want alice's, not revoked", got, err)
	}
	if _, err := s.AdminCertBySerial(ctx, "FF"); !errors.Is(err, ErrNotFound) {
		t.Errorf("AdminCertBySerial(FF) = %v, want ErrNotFound", err)
	}
	if n, err := s.RevokeAdmin(ctx, "carol", 0, now, Audit{}); n != 0 || !errors.Is(err, ErrNotFound) {
		t.Errorf("RevokeAdmin(carol) = %d, %v, want ErrNotFound", n, err)
	}
	if _, err := s.RevokeAdmin(ctx, "alice", 7, now, Audit{}); err == nil {
		t.Errorf("RevokeAdmin(reason 7) = nil, want an error")
	}
	revokedAt := now.Add(time.Minute)
	if n, err := s.RevokeAdmin(ctx, "alice", 1, revokedAt, Audit{Actor: "admin:0"}); n != 1 || err != nil {
		t.Fatalf("RevokeAdmin(alice) = %d, %v, want 1", n, err)
	}
	if n, err := s.RevokeAdmin(ctx, "alice", 1, revokedAt, Audit{}); n != 0 || err != nil {
		t.Errorf("RevokeAdmin(alice) again = %d, %v, want 0", n, err)
	}
	// Revoked, the name may hold a new certificate.
	if err := s.AddAdminCert(ctx, cert("A3", "alice"), Audit{}); err != nil {
		t.Errorf("AddAdminCert(alice after revoke) = %v, want nil", err)
	}
	list, err := s.ListAdminCerts(ctx)
	if err != nil || len(list) != 3 || list[0].Serial != "A1" || list[0].RevokedAt == nil || !list[0].RevokedAt.Equal(revokedAt) ||
		list[0].RevokeReason != 1 || list[1].Serial != "A3" || list[2].Name != "bob" {
		t.Fatalf("ListAdminCerts = %+v, %v, want A1 (revoked, keyCompromise), A3, B1", list, err)
	}
	var revoked []Revocation
	err = s.EachRevoked(ctx, time.Now(), func(r Revocation) error {
		r.DER = append([]byte(nil), r.DER...)
		revoked = append(revoked, r)
		return nil
	})
	if err != nil || len(revoked) != 1 || revoked[0].Serial != "A1" || revoked[0].Reason != 1 || string(revoked[0].DER) != "der-a1" ||
		!revoked[0].RevokedAt.Equal(revokedAt) {
		t.Errorf("EachRevoked = %+v, %v, want alice's A1", revoked, err)
	}
	rows, err := s.ListAuditPage(ctx, time.Time{}, 0, 100)
	if err != nil {
		t.Fatal(err)
	}
	var adds, revokes int
	for _, r := range rows {
		switch r.Action {
		case "admin.add":
			adds++
		case "admin.revoke":
			revokes++
			if r.Actor != "admin:0" && r.Actor != "system" {
				t.Errorf("admin.revoke audit actor = %q", r.Actor)
			}
		}
	}
	if adds != 3 || revokes != 2 {
		t.Errorf("audit rows: %d admin.add, %d admin.revoke, want 3 and 2 (the refused adds write none)", adds, revokes)
	}
}
