package store

import (
	"context"
	"errors"
	"fmt"
	"math/big"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/hostcert/hostcert/common/protocol"
	"github.com/hostcert/hostcert/internal/pgtest"
)

// TestAuditNode: every audit row carries the node that wrote it (SetNode),
// unless the row names one itself; rows of two nodes on one database are
// one log.
func TestAuditNode(t *testing.T) { forEachBackend(t, testAuditNode) }

func testAuditNode(t *testing.T, s *Store) {
	ctx := context.Background()
	if err := s.AppendAudit(ctx, Audit{Action: "before"}); err != nil {
		t.Fatal(err)
	}
	s.SetNode("node1.example")
	if err := s.SetLevel(ctx, protocol.LevelMedium, Audit{}); err != nil {
		t.Fatal(err)
	}
	if err := s.AppendAudit(ctx, Audit{Action: "named", Node: "other.example"}); err != nil {
		t.Fatal(err)
	}
	rows, err := s.ListAudit(ctx, time.Time{}, 0)
	if err != nil || len(rows) != 3 {
		t.Fatalf("ListAudit = %d rows, %v, want 3", len(rows), err)
	}
	for i, want := range []string{"", "node1.example", "other.example"} {
		if rows[i].Node != want {
			t.Errorf("audit row %d (%s) node = %q, want %q", i, rows[i].Action, rows[i].Node, want)
		}
	}
}

// TestClaimCA: the first CA to claim a database is its fleet's; the same CA
// claims again, another one is refused with ErrOtherCA unless it trusts the
// recorded one (a root rotation), which it then replaces.
func TestClaimCA(t *testing.T) { forEachBackend(t, testClaimCA) }

func testClaimCA(t *testing.T, s *Store) {
	ctx := context.Background()
	if fp, err := s.FleetCA(ctx); err != nil || fp != "" {
		t.Fatalf("FleetCA of an empty store = %q, %v, want \"\"", fp, err)
	}
	if err := s.ClaimCA(ctx, "AA:BB", nil); err != nil {
		t.Fatalf("ClaimCA(AA:BB) = %v", err)
	}
	if err := s.ClaimCA(ctx, "AA:BB", nil); err != nil {
		t.Fatalf("ClaimCA(AA:BB) again = %v", err)
	}
	if err := s.ClaimCA(ctx, "CC:DD", []string{"EE:FF"}); !errors.Is(err, ErrOtherCA) {
		t.Fatalf("ClaimCA(CC:DD) = %v, want ErrOtherCA", err)
	}
	if fp, err := s.FleetCA(ctx); err != nil || fp != "AA:BB" {
		t.Fatalf("FleetCA = %q, %v, want AA:BB", fp, err)
	}
	// A root rotation: the new root still trusts the recorded one.
	if err := s.ClaimCA(ctx, "CC:DD", []string{"AA:BB"}); err != nil {
		t.Fatalf("ClaimCA(CC:DD) trusting AA:BB = %v", err)
	}
	if fp, err := s.FleetCA(ctx); err != nil || fp != "CC:DD" {
		t.Fatalf("FleetCA after a rotation = %q, %v, want CC:DD", fp, err)
	}
}

// topics collects what Listen delivers.
type topics struct {
	mu  sync.Mutex
	got []Topic
	ch  chan Topic
}

func (tp *topics) on(t Topic) {
	tp.mu.Lock()
	tp.got = append(tp.got, t)
	tp.mu.Unlock()
	tp.ch <- t
}

func (tp *topics) next(tb testing.TB, want Topic, within time.Duration) {
	tb.Helper()
	deadline := time.After(within)
	for {
		select {
		case got := <-tp.ch:
			if got == want {
				return
			}
			if got != TopicResync {
				tb.Fatalf("heard %q, want %q", got, want)
			}
		case <-deadline:
			tb.Fatalf("did not hear %q within %v", want, within)
		}
	}
}

// TestListenAcrossNodes: a level change, a revocation and a reissue
// committed by one node are heard by another node's Listen; a write that
// rolls back is not. After the database restarts, Listen reconnects by
// itself and says so (TopicResync).
func TestListenAcrossNodes(t *testing.T) {
	c := pgtest.Start(t) // restarted below: its own cluster
	dsn := c.CreateDatabase(t, "listen")
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	var nodes [2]*Store
	for i := range nodes {
		s, err := OpenPostgres(ctx, dsn)
		if err != nil {
			t.Fatal(err)
		}
		defer s.Close()
		nodes[i] = s
	}
	tp := &topics{ch: make(chan Topic, 64)}
	lost := make(chan error, 16)
	done := make(chan error, 1)
	go func() { done <- nodes[1].Listen(ctx, tp.on, func(err error) { lost <- err }) }()
	tp.next(t, TopicResync, 10*time.Second)

	a := nodes[0]
	if err := a.SetLevel(ctx, protocol.LevelMedium, Audit{}); err != nil {
		t.Fatal(err)
	}
	tp.next(t, TopicLevel, 2*time.Second)

	mustToken(t, a, "tok", KindStandard, "", 5, t0.Add(24*time.Hour))
	is := issuance("listen.example", "tok")
	if err := a.CommitIssuance(ctx, is); err != nil {
		t.Fatal(err)
	}
	if _, err := a.RevokeHost(ctx, is.Host.ID, 1, t0, Audit{}); err != nil {
		t.Fatal(err)
	}
	tp.next(t, TopicRevoked, 2*time.Second)

	// A reissue supersedes: the CRL changes.
	if err := a.CommitIssuance(ctx, reissuance(is.Host, "", t0)); err != nil {
		t.Fatal(err)
	}
	tp.next(t, TopicRevoked, 2*time.Second)

	// A reissue that fails (used-up token) notifies nobody.
	mustToken(t, a, "one", KindStandard, "", 1, t0.Add(24*time.Hour))
	if err := a.CommitIssuance(ctx, issuance("one-a.example", "one")); err != nil {
		t.Fatal(err)
	}
	if err := a.CommitIssuance(ctx, reissuance(is.Host, "one", t0)); !errors.Is(err, ErrTokenUsedUp) {
		t.Fatalf("reissue with a used-up token = %v, want ErrTokenUsedUp", err)
	}
	select {
	case got := <-tp.ch:
		t.Fatalf("a rolled-back reissue was heard: %q", got)
	case <-time.After(500 * time.Millisecond):
	}

	c.Stop(t)
	select {
	case <-lost:
	case <-time.After(20 * time.Second):
		t.Fatal("Listen did not report its lost connection within 20s")
	}
	c.Restart(t)
	tp.next(t, TopicResync, 30*time.Second)
	if err := a.SetLevel(ctx, protocol.LevelHigh, Audit{}); err != nil {
		t.Fatal(err)
	}
	tp.next(t, TopicLevel, 2*time.Second)
	cancel()
	if err := <-done; err != nil {
		t.Fatalf("Listen after cancel = %v, want nil", err)
	}
}

// TestPrimaryNames: names recorded by any node are every node's; a name
// recorded twice keeps the node that recorded it first.
func TestPrimaryNames(t *testing.T) { forEachBackend(t, testPrimaryNames) }

func testPrimaryNames(t *testing.T, s *Store) {
	ctx := context.Background()
	if got, err := s.PrimaryNames(ctx); err != nil || len(got) != 0 {
		t.Fatalf("PrimaryNames of an empty store = %v, %v, want none", got, err)
	}
	if err := s.RecordPrimaryNames(ctx, "node1", []string{"primary.example", "node1.example"}, t0); err != nil {
		t.Fatal(err)
	}
	if err := s.RecordPrimaryNames(ctx, "node2", []string{"primary.example", "node2.example", "192.0.2.7"}, t0); err != nil {
		t.Fatal(err)
	}
	got, err := s.PrimaryNames(ctx)
	want := []string{"192.0.2.7", "node1.example", "node2.example", "primary.example"}
	if err != nil || !slices.Equal(got, want) {
		t.Fatalf("PrimaryNames = %v, %v, want %v", got, err, want)
	}
	var node string
	if err := s.queryRow(ctx, "SELECT node FROM primary_names WHERE name = 'primary.example'").Scan(&node); err != nil || node != "node1" {
		t.Errorf("primary.example recorded by %q, %v, want node1 (the first)", node, err)
	}
}

// TestSharedCRLs: a CRL is kept as its issuer's latest only when its
// number is higher than the one stored; NewerCRL finds it above a number.
func TestSharedCRLs(t *testing.T) { forEachBackend(t, testSharedCRLs) }

func testSharedCRLs(t *testing.T, s *Store) {
	ctx := context.Background()
	if _, ok, err := s.NewerCRL(ctx, "aa", 0); err != nil || ok {
		t.Fatalf("NewerCRL of an empty store = %v, %v, want none", ok, err)
	}
	if err := s.PublishCRLs(ctx, []StoredCRL{{Issuer: "aa", Number: 10, DER: []byte("ten")}, {Issuer: "bb", Number: 10, DER: []byte("b10")}}); err != nil {
		t.Fatal(err)
	}
	if err := s.PublishCRLs(ctx, []StoredCRL{{Issuer: "aa", Number: 9, DER: []byte("nine")}, {Issuer: "bb", Number: 11, DER: []byte("b11")}}); err != nil {
		t.Fatal(err)
	}
	for _, c := range []struct {
		issuer  string
		above   int64
		ok      bool
		number  int64
		content string
	}{
		{"aa", 0, true, 10, "ten"},
		{"aa", 9, true, 10, "ten"},
		{"aa", 10, false, 0, ""},
		{"bb", 10, true, 11, "b11"},
		{"cc", 0, false, 0, ""},
	} {
		got, ok, err := s.NewerCRL(ctx, c.issuer, c.above)
		if err != nil || ok != c.ok || got.Number != c.number || string(got.DER) != c.content {
			t.Errorf("NewerCRL(%s, %d) = %d %q, %v, %v, want %d %q, %v", c.issuer, c.above, got.Number, got.DER, ok, err, c.number, c.content, c.ok)
		}
	}
}

// TestCRLSnapshot: each snapshot has a higher number than the one before
// and lists every revoked, unexpired certificate.
func TestCRLSnapshot(t *testing.T) { forEachBackend(t, testCRLSnapshot) }

func testCRLSnapshot(t *testing.T, s *Store) {
	ctx := context.Background()
	var listed, starts int
	snap := func() *big.Int {
		t.Helper()
		listed = 0
		n, err := s.CRLSnapshot(ctx, time.Now(), func() { starts++; listed = 0 }, func(Revocation) error { listed++; return nil })
		if err != nil {
			t.Fatalf("CRLSnapshot: %v", err)
		}
		return n
	}
	n1 := snap()
	if listed != 0 || starts == 0 {
		t.Fatalf("CRLSnapshot of an empty store listed %d, started %d times", listed, starts)
	}
	n2 := snap()
	if n2.Cmp(n1) <= 0 {
		t.Fatalf("second CRLSnapshot number %v, want above %v", n2, n1)
	}
}

// TestPublishCA: generations follow one another; a node that built on an
// older generation gets ErrCAConflict and nothing is written; the seal
// function is given the generation it seals for.
func TestPublishCA(t *testing.T) { forEachBackend(t, testPublishCA) }

func testPublishCA(t *testing.T, s *Store) {
	ctx := context.Background()
	if _, ok, err := s.LatestCA(ctx); err != nil || ok {
		t.Fatalf("LatestCA of an empty store = %v, %v, want none", ok, err)
	}
	seal := func(g int64) ([]byte, error) { return []byte(fmt.Sprintf("sealed %d", g)), nil }
	for want := int64(1); want <= 2; want++ {
		gen, err := s.PublishCA(ctx, want-1, "node1", t0, seal)
		if err != nil || gen != want {
			t.Fatalf("PublishCA(prev %d) = %d, %v, want %d", want-1, gen, err, want)
		}
	}
	if _, err := s.PublishCA(ctx, 1, "node2", t0, seal); !errors.Is(err, ErrCAConflict) {
		t.Fatalf("PublishCA on generation 1 when 2 is the latest = %v, want ErrCAConflict", err)
	}
	m, ok, err := s.LatestCA(ctx)
	if err != nil || !ok || m.Generation != 2 || m.Node != "node1" || string(m.Sealed) != "sealed 2" {
		t.Fatalf("LatestCA = %+v, %v, %v, want generation 2 of node1", m, ok, err)
	}
}

// TestFleetKeyID: the first key id recorded is the fleet's.
func TestFleetKeyID(t *testing.T) { forEachBackend(t, testFleetKeyID) }

func testFleetKeyID(t *testing.T, s *Store) {
	ctx := context.Background()
	if id, err := s.FleetKeyID(ctx); err != nil || id != "" {
		t.Fatalf("FleetKeyID of an empty store = %q, %v", id, err)
	}
	for _, try := range []string{"k1", "k2"} {
		if got, err := s.ClaimFleetKey(ctx, try); err != nil || got != "k1" {
			t.Errorf("ClaimFleetKey(%s) = %q, %v, want k1", try, got, err)
		}
	}
}
