package store

import (
	"context"
	"errors"
	"fmt"
	"testing"
	"time"

	"github.com/hostcert/hostcert/common/protocol"
)

// TestExpiryCounts: only current, unrevoked certificates are counted, each in
// the one bucket of its remaining life; superseded (renewed-from) and
// revoked ones are not; live tokens are counted by kind, dead ones are not.
func TestExpiryCounts(t *testing.T) { forEachBackend(t, testExpiryCounts) }

func testExpiryCounts(t *testing.T, s *Store) {
	ctx := context.Background()
	day := 24 * time.Hour
	now := t0.Add(time.Hour)
	// Certificates expiring (from now) in: -1d (expired), 3d, 7d (on the
	// bound: within 7d), 20d, 100d, 400d (beyond every bound).
	lives := []time.Duration{-day, 3 * day, 7 * day, 20 * day, 100 * day, 400 * day}
	var hosts []Issuance
	for i, life := range lives {
		is := issuance(fmt.Sprintf("h%d.example", i), "")
		is.Cert.NotAfter = now.Add(life)
		if err := s.CommitIssuance(ctx, is); err != nil {
			t.Fatal(err)
		}
		hosts = append(hosts, is)
	}
	// Host 4 renews: its 100d certificate is superseded by a 300d one (the
	// old one stays unrevoked but is no longer current).
	ren := renewal(hosts[4].Host, hosts[4].Cert.Serial, t0.Add(time.Minute))
	ren.Cert.NotAfter = now.Add(300 * day)
	if err := s.CommitIssuance(ctx, ren); err != nil {
		t.Fatal(err)
	}
	// Host 1 (3d) is revoked: not counted at all.
	if _, err := s.RevokeHost(ctx, hosts[1].Host.ID, 1, t0.Add(time.Minute), Audit{}); err != nil {
		t.Fatal(err)
	}
	mustToken(t, s, "live", "standard", "", 2, now.Add(day))
	mustToken(t, s, "expired", "standard", "", 2, now.Add(-time.Minute))
	mustToken(t, s, "reissue", "reissue", hosts[0].Host.ID, 1, now.Add(day))
	mustToken(t, s, "usedup", "standard", "", 1, now.Add(day))
	use := issuance("viatoken.example", "usedup")
	use.Cert.NotAfter = now.Add(500 * day)
	if err := s.CommitIssuance(ctx, use); err != nil {
		t.Fatal(err)
	}

	inv, err := s.ExpiryCounts(ctx, now, []time.Duration{7 * day, 30 * day, 180 * day})
	if err != nil {
		t.Fatal(err)
	}
	// expired: h0; within 7d: h2; 30d: h3; 180d: none (h4's current is
	// 300d); beyond: h4 (300d), h5 (400d), viatoken (500d).
	if got, want := fmt.Sprint(inv.Expired, inv.Within), "1 [1 1 0 3]"; got != want {
		t.Errorf("ExpiryCounts certificates = %s, want %s", got, want)
	}
	if got, want := fmt.Sprint(inv.LiveTokens), "map[reissue:1 standard:1]"; got != want {
		t.Errorf("ExpiryCounts live tokens = %s, want %s", got, want)
	}
	if _, err := s.ExpiryCounts(ctx, now, []time.Duration{30 * day, 7 * day}); !errors.Is(err, errInvalid) {
		t.Errorf("ExpiryCounts(descending bounds) = %v, want errInvalid", err)
	}
}

// TestObserveCommits: every committed write transaction is reported once
// with its number of writes; a failed write is not.
func TestObserveCommits(t *testing.T) { forEachBackend(t, testObserveCommits) }

func testObserveCommits(t *testing.T, s *Store) {
	ctx := context.Background()
	var ops, commits int
	var took time.Duration
	s.ObserveCommits(func(n int, d time.Duration) { ops, commits, took = ops+n, commits+1, took+d })
	before := s.Stats()
	if err := s.SetLevel(ctx, protocol.LevelMedium, Audit{}); err != nil {
		t.Fatal(err)
	}
	if err := s.CommitIssuance(ctx, issuance("o.example", "no-such-token")); err == nil {
		t.Fatal("CommitIssuance with a missing token = nil, want an error")
	}
	after := s.Stats()
	if commits != int(after.Batches-before.Batches) || ops != int(after.Ops-before.Ops) || commits < 1 || took <= 0 {
		t.Errorf("observed %d commits of %d ops in %v; Stats moved by %d batches, %d ops; want equal, at least 1, time > 0",
			commits, ops, took, after.Batches-before.Batches, after.Ops-before.Ops)
	}
}

// TestEachLiveCert: one call per host whose current certificate is live —
// not a superseded one, not a revoked or expired current one.
func TestEachLiveCert(t *testing.T) { forEachBackend(t, testEachLiveCert) }

func testEachLiveCert(t *testing.T, s *Store) {
	ctx := context.Background()
	day := 24 * time.Hour
	now := t0.Add(time.Hour)
	var hosts []Issuance
	for i, life := range []time.Duration{-day, 3 * day, 20 * day, 100 * day} {
		is := issuance(fmt.Sprintf("live%d.example", i), "")
		is.Cert.NotAfter = now.Add(life)
		if err := s.CommitIssuance(ctx, is); err != nil {
			t.Fatal(err)
		}
		hosts = append(hosts, is)
	}
	// Host 3 renews: only the new certificate is current.
	ren := renewal(hosts[3].Host, hosts[3].Cert.Serial, t0.Add(time.Minute))
	ren.Cert.NotAfter = now.Add(300 * day)
	if err := s.CommitIssuance(ctx, ren); err != nil {
		t.Fatal(err)
	}
	// Host 1 is revoked.
	if _, err := s.RevokeHost(ctx, hosts[1].Host.ID, 1, t0.Add(time.Minute), Audit{}); err != nil {
		t.Fatal(err)
	}
	got := map[string]string{}
	err := s.EachLiveCert(ctx, now, func(c LiveCert) error {
		if len(c.DER) == 0 || len(c.Names) == 0 {
			t.Errorf("live certificate %s of %s without DER or names", c.Serial, c.HostID)
		}
		got[c.HostID] = c.Serial
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	want := map[string]string{hosts[2].Host.ID: normSerial(hosts[2].Cert.Serial), hosts[3].Host.ID: normSerial(ren.Cert.Serial)}
	if fmt.Sprint(got) != fmt.Sprint(want) {
		t.Errorf("EachLiveCert = %v, want %v (the expired, the revoked and the superseded left out)", got, want)
	}
	stop := errors.New("stop")
	calls := 0
	if err := s.EachLiveCert(ctx, now, func(LiveCert) error { calls++; return stop }); !errors.Is(err, stop) || calls != 1 {
		t.Errorf("EachLiveCert with fn failing = %v after %d calls, want fn's error after 1", err, calls)
	}
}
