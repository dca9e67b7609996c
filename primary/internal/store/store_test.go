package store

import (
	"context"
	"crypto/rand"
	"crypto/sha256"
	"database/sql"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"runtime"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/google/uuid"

	"github.com/hostcert/hostcert/common/protocol"
)

var t0 = time.Date(2026, 11, 23, 12, 0, 0, 0, time.UTC)

// TestLookupName: one read answers HostByName and IsKnown alike, for every
// combination of "has a host ID" and "is in the registry".
func TestLookupName(t *testing.T) { forEachBackend(t, testLookupName) }

func testLookupName(t *testing.T, s *Store) {
	ctx := context.Background()
	if _, err := s.AddKnown(ctx, []string{"known.example", "known-id.example"}, Audit{}); err != nil {
		t.Fatal(err)
	}
	ids := map[string]string{}
	for _, n := range []string{"known-id.example", "id-only.example"} {
		is := issuance(n, "")
		if err := s.CommitIssuance(ctx, is); err != nil {
			t.Fatal(err)
		}
		ids[n] = is.Host.ID
	}
	for _, name := range []string{"known.example", "KNOWN-ID.example.", "id-only.example", "nobody.example"} {
		got, err := s.LookupName(ctx, name)
		if err != nil {
			t.Fatalf("LookupName(%s): %v", name, err)
		}
		want := Host{Name: lowerName(name)}
		if h, err := s.HostByName(ctx, name); err == nil {
			want = h
		} else if !errors.Is(err, ErrNotFound) {
			t.Fatal(err)
		}
		if want.Known, err = s.IsKnown(ctx, name); err != nil {
			t.Fatal(err)
		}
		if got.ID != want.ID || got.Name != want.Name || got.Known != want.Known || !got.CreatedAt.Equal(want.CreatedAt) {
			t.Errorf("LookupName(%s) = %+v, want %+v", name, got, want)
		}
		if got.ID != ids[lowerName(name)] {
			t.Errorf("LookupName(%s).ID = %q, want %q", name, got.ID, ids[lowerName(name)])
		}
	}
}

func openTemp(t testing.TB) (*Store, string) {
	t.Helper()
	path := filepath.Join(t.TempDir(), "primary.db")
	s, err := Open(context.Background(), path)
	if err != nil {
		t.Fatalf("Open(%s): %v", path, err)
	}
	t.Cleanup(func() { s.Close() })
	return s, path
}

func randomSerial() string {
	b := make([]byte, 16)
	rand.Read(b)
	b[0] &= 0x7f
	b[0] |= 0x01
	return fmt.Sprintf("%X", b)
}

func hashOf(v string) []byte { h := sha256.Sum256([]byte(v)); return h[:] }

// tokenHash is the hash mustToken gives token name ("" for no token).
func tokenHash(name string) []byte {
	if name == "" {
		return nil
	}
	return hashOf("value-of-" + name)
}

// issuance builds a first issuance of name.
func issuance(name, token string) Issuance {
	id := uuid.NewString()
	return Issuance{
		Kind: protocol.KindIssue,
		Host: Host{ID: id, Name: name},
		Cert: Cert{
			Serial: randomSerial(), HostID: id, Names: []string{name},
			NotBefore: t0.Add(-5 * time.Minute), NotAfter: t0.Add(365 * 24 * time.Hour),
			DER: []byte("der of " + name),
		},
		TokenName: token,
		TokenHash: tokenHash(token),
		Now:       t0,
		Audit:     Audit{Actor: "api", Source: "192.0.2.1", Outcome: "granted"},
	}
}

func reissuance(h Host, token string, now time.Time) Issuance {
	return Issuance{
		Kind: protocol.KindReissue,
		Host: h,
		Cert: Cert{
			Serial: randomSerial(), HostID: h.ID, Names: []string{h.Name},
			NotBefore: now, NotAfter: now.Add(365 * 24 * time.Hour), DER: []byte("reissued"),
		},
		TokenName: token,
		TokenHash: tokenHash(token),
		Now:       now,
		Audit:     Audit{Actor: "api", Source: "192.0.2.1"},
	}
}

func mustToken(t testing.TB, s *Store, name, kind, hostID string, maxUses int, expires time.Time) {
	t.Helper()
	err := s.CreateToken(context.Background(), Token{
		Name: name, Kind: kind, HostID: hostID, Hash: hashOf("value-of-" + name),
		MaxUses: maxUses, CreatedAt: t0, ExpiresAt: expires, Reason: "test",
	}, Audit{Actor: "admin:0"})
	if err != nil {
		t.Fatalf("CreateToken(%s): %v", name, err)
	}
}

func auditCount(t testing.TB, s *Store) int {
	t.Helper()
	rows, err := s.ListAudit(context.Background(), time.Time{}, 0)
	if err != nil {
		t.Fatal(err)
	}
	return len(rows)
}

func TestOpenFreshAndExisting(t *testing.T) {
	ctx := context.Background()
	s, path := openTemp(t)
	if runtime.GOOS != "windows" {
		if fi, err := os.Stat(path); err != nil || fi.Mode().Perm() != 0o600 {
			t.Errorf("mode of %s = %v (%v), want 0600", path, fi.Mode().Perm(), err)
		}
	}
	v, err := schemaVersion(ctx, s.rdb)
	if err != nil || v != len(migrations) {
		t.Fatalf("fresh schema version = %d, %v, want %d", v, err, len(migrations))
	}
	var mode string
	if err := s.rdb.QueryRowContext(ctx, "PRAGMA journal_mode").Scan(&mode); err != nil || mode != "wal" {
		t.Errorf("journal_mode = %q, %v, want wal", mode, err)
	}
	var fk int
	if err := s.rdb.QueryRowContext(ctx, "PRAGMA foreign_keys").Scan(&fk); err != nil || fk != 1 {
		t.Errorf("foreign_keys = %d, %v, want 1", fk, err)
	}
	if err := s.CommitIssuance(ctx, issuance("a.example", "")); err != nil {
		t.Fatal(err)
	}
	// Readers are query-only.
	if _, err := s.rdb.ExecContext(ctx, "DELETE FROM certs"); err == nil {
		t.Error("write through the read pool succeeded, want an error")
	}
	s.Close()

	// Reopening an existing file applies nothing and keeps the data.
	s2, err := Open(ctx, path)
	if err != nil {
		t.Fatal(err)
	}
	if v, _ := schemaVersion(ctx, s2.rdb); v != len(migrations) {
		t.Errorf("reopened schema version = %d, want %d", v, len(migrations))
	}
	if _, err := s2.HostByName(ctx, "a.example"); err != nil {
		t.Errorf("HostByName after reopen: %v", err)
	}
	s2.Close()
}

func TestMigrateExistingToNewer(t *testing.T) {
	ctx := context.Background()
	s, path := openTemp(t)
	if err := s.CommitIssuance(ctx, issuance("keep.example", "")); err != nil {
		t.Fatal(err)
	}
	s.Close()

	db, err := sql.Open("sqlite", dsn(path, "busy_timeout(10000)"))
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	next := append(slices.Clone(migrations), "CREATE TABLE extra (x INTEGER); INSERT INTO extra VALUES (42);")
	if err := migrate(ctx, db, next); err != nil {
		t.Fatalf("migrate to %d: %v", len(next), err)
	}
	var x, hosts int
	if err := db.QueryRowContext(ctx, "SELECT x FROM extra").Scan(&x); err != nil || x != 42 {
		t.Errorf("new migration not applied: x = %d, %v", x, err)
	}
	if err := db.QueryRowContext(ctx, "SELECT COUNT(*) FROM hosts").Scan(&hosts); err != nil || hosts != 1 {
		t.Errorf("hosts after migration = %d, %v, want 1", hosts, err)
	}
	// Running it again is a no-op (the INSERT would double the row).
	if err := migrate(ctx, db, next); err != nil {
		t.Fatal(err)
	}
	var n int
	db.QueryRowContext(ctx, "SELECT COUNT(*) FROM extra").Scan(&n)
	if n != 1 {
		t.Errorf("second migrate re-applied the migration: %d rows, want 1", n)
	}
	// A failing migration leaves the version where it was.
	bad := append(slices.Clone(next), "CREATE TABLE broken (;")
	if err := migrate(ctx, db, bad); err == nil {
		t.Error("broken migration succeeded, want an error")
	}
	if v, _ := schemaVersion(ctx, db); v != len(next) {
		t.Errorf("version after a failed migration = %d, want %d", v, len(next))
	}
	db.Close()

	// This program's Open refuses a database newer than itself.
	if s, err := Open(ctx, path); err == nil {
		s.Close()
		t.Error("Open of a newer schema succeeded, want an error")
	}
}

func TestLevel(t *testing.T) { forEachBackend(t, testLevel) }

func testLevel(t *testing.T, s *Store) {
	ctx := context.Background()
	if l, err := s.Level(ctx); err != nil || l != protocol.DefaultLevel {
		t.Errorf("Level() = %q, %v, want %q", l, err, protocol.DefaultLevel)
	}
	if err := s.SetLevel(ctx, protocol.LevelVeryHigh, Audit{Actor: "admin:0"}); err != nil {
		t.Fatal(err)
	}
	if l, _ := s.Level(ctx); l != protocol.LevelVeryHigh {
		t.Errorf("Level() after set = %q, want very-high", l)
	}
	if err := s.SetLevel(ctx, "paranoid", Audit{}); err == nil {
		t.Error("SetLevel(paranoid) succeeded, want an error")
	}
	rows, _ := s.ListAudit(ctx, time.Time{}, 0)
	if len(rows) != 1 || rows[0].Action != "level.set" || rows[0].Actor != "admin:0" {
		t.Errorf("audit after SetLevel = %+v, want one level.set row by admin:0", rows)
	}
}

func TestRegistry(t *testing.T) { forEachBackend(t, testRegistry) }

func testRegistry(t *testing.T, s *Store) {
	ctx := context.Background()
	added, err := s.AddKnown(ctx, []string{"Web1.Example.com", "web2.example.com", "WEB1.example.com."}, Audit{Actor: "admin:0"})
	if err != nil || added != 2 {
		t.Fatalf("AddKnown = %d, %v, want 2", added, err)
	}
	added, err = s.AddKnown(ctx, []string{"web2.example.com", "web3.example.com"}, Audit{})
	if err != nil || added != 1 {
		t.Errorf("AddKnown again = %d, %v, want 1", added, err)
	}
	if _, err := s.AddKnown(ctx, []string{"ok", " "}, Audit{}); err == nil {
		t.Error("AddKnown with a blank name succeeded, want an error")
	}
	for name, want := range map[string]bool{"WEB1.EXAMPLE.COM": true, "web3.example.com": true, "web4.example.com": false} {
		if got, err := s.IsKnown(ctx, name); err != nil || got != want {
			t.Errorf("IsKnown(%s) = %v, %v, want %v", name, got, err, want)
		}
	}
	if _, err := s.HostByName(ctx, "web1.example.com"); !errors.Is(err, ErrNotFound) {
		t.Errorf("HostByName(known, no ID) error = %v, want ErrNotFound", err)
	}
	is := issuance("Web1.Example.com", "")
	if err := s.CommitIssuance(ctx, is); err != nil {
		t.Fatal(err)
	}
	h, err := s.HostByName(ctx, "web1.EXAMPLE.com")
	if err != nil || h.ID != is.Host.ID || h.Name != "web1.example.com" || !h.Known {
		t.Errorf("HostByName = %+v, %v, want ID %s, lower-case name, known", h, err, is.Host.ID)
	}
	if _, err := s.HostByID(ctx, "nope"); !errors.Is(err, ErrNotFound) {
		t.Errorf("HostByID(nope) error = %v, want ErrNotFound", err)
	}
	other := issuance("unknown.example.com", "")
	if err := s.CommitIssuance(ctx, other); err != nil {
		t.Fatal(err)
	}
	hosts, err := s.ListHosts(ctx)
	if err != nil {
		t.Fatal(err)
	}
	var got []string
	for _, h := range hosts {
		got = append(got, fmt.Sprintf("%s id=%v known=%v", h.Name, h.ID != "", h.Known))
	}
	want := []string{
		"unknown.example.com id=true known=false",
		"web1.example.com id=true known=true",
		"web2.example.com id=false known=true",
		"web3.example.com id=false known=true",
	}
	if !slices.Equal(got, want) {
		t.Errorf("ListHosts = %q, want %q", got, want)
	}
	if err := s.RemoveKnown(ctx, "WEB1.example.com", Audit{}); err != nil {
		t.Fatal(err)
	}
	if err := s.RemoveKnown(ctx, "web1.example.com", Audit{}); !errors.Is(err, ErrNotFound) {
		t.Errorf("RemoveKnown twice error = %v, want ErrNotFound", err)
	}
	if h, err := s.HostByName(ctx, "web1.example.com"); err != nil || h.Known || h.ID != is.Host.ID {
		t.Errorf("after RemoveKnown HostByName = %+v, %v, want same ID, not known", h, err)
	}

	until := t0.Add(48 * time.Hour)
	if err := s.SetReissueWindow(ctx, is.Host.ID, until, Audit{}); err != nil {
		t.Fatal(err)
	}
	if h, _ := s.HostByID(ctx, is.Host.ID); h.ReissueUntil == nil || !h.ReissueUntil.Equal(until) {
		t.Errorf("ReissueUntil = %v, want %s", h.ReissueUntil, until)
	}
	if err := s.SetReissueWindow(ctx, "nope", until, Audit{}); !errors.Is(err, ErrNotFound) {
		t.Errorf("SetReissueWindow(nope) error = %v, want ErrNotFound", err)
	}
	if err := s.SetReissueWindow(ctx, is.Host.ID, time.Time{}, Audit{}); err != nil {
		t.Fatal(err)
	}
	if h, _ := s.HostByID(ctx, is.Host.ID); h.ReissueUntil != nil {
		t.Errorf("ReissueUntil after closing = %v, want nil", h.ReissueUntil)
	}
}

func TestIssueAndReissue(t *testing.T) { forEachBackend(t, testIssueAndReissue) }

func testIssueAndReissue(t *testing.T, s *Store) {
	ctx := context.Background()
	first := issuance("host.example", "")
	if err := s.CommitIssuance(ctx, first); err != nil {
		t.Fatal(err)
	}
	c, err := s.CertBySerial(ctx, first.Cert.Serial)
	if err != nil {
		t.Fatal(err)
	}
	if c.HostID != first.Host.ID || c.Kind != protocol.KindIssue || string(c.DER) != "der of host.example" ||
		!c.NotAfter.Equal(first.Cert.NotAfter) || c.RevokedAt != nil || !slices.Equal(c.Names, []string{"host.example"}) {
		t.Errorf("CertBySerial = %+v", c)
	}

	// A second first-issuance of the same name loses and writes nothing.
	dup := issuance("HOST.example", "")
	before := auditCount(t, s)
	if err := s.CommitIssuance(ctx, dup); !errors.Is(err, ErrHostExists) {
		t.Fatalf("second issue of a name error = %v, want ErrHostExists", err)
	}
	if _, err := s.CertBySerial(ctx, dup.Cert.Serial); !errors.Is(err, ErrNotFound) {
		t.Errorf("loser's certificate stored: %v", err)
	}
	if got := auditCount(t, s); got != before {
		t.Errorf("audit rows after a failed issue = %d, want %d", got, before)
	}

	// A renewal adds a certificate and keeps the first.
	host, _ := s.HostByID(ctx, first.Host.ID)
	renew := reissuance(host, "", t0.Add(time.Hour))
	renew.Kind, renew.RenewedFrom = protocol.KindRenew, first.Cert.Serial
	if err := s.CommitIssuance(ctx, renew); err != nil {
		t.Fatal(err)
	}
	if certs, _ := s.ListCerts(ctx, CertFilter{HostID: host.ID}); len(certs) != 2 {
		t.Errorf("unrevoked certs after renew = %d, want 2", len(certs))
	}

	// A reissue revokes both (superseded), keeps the host ID, clears the
	// host's revocation and its reissue window.
	if _, err := s.RevokeHost(ctx, host.ID, 1, t0.Add(2*time.Hour), Audit{}); err != nil {
		t.Fatal(err)
	}
	if err := s.SetReissueWindow(ctx, host.ID, t0.Add(48*time.Hour), Audit{}); err != nil {
		t.Fatal(err)
	}
	// Renew of a revoked host is refused atomically.
	renew2 := reissuance(host, "", t0.Add(3*time.Hour))
	renew2.Kind, renew2.RenewedFrom = protocol.KindRenew, renew.Cert.Serial
	if err := s.CommitIssuance(ctx, renew2); !errors.Is(err, ErrHostRevoked) {
		t.Errorf("renew of a revoked host error = %v, want ErrHostRevoked", err)
	}
	mustToken(t, s, "re1", KindReissue, host.ID, 1, t0.Add(24*time.Hour))
	host, _ = s.HostByID(ctx, host.ID)
	re := reissuance(host, "re1", t0.Add(4*time.Hour))
	if err := s.CommitIssuance(ctx, re); err != nil {
		t.Fatal(err)
	}
	h, _ := s.HostByID(ctx, host.ID)
	if h.RevokedAt != nil || h.ReissueUntil != nil || h.ID != first.Host.ID {
		t.Errorf("host after reissue = %+v, want same ID, not revoked, no window", h)
	}
	all, _ := s.ListCerts(ctx, CertFilter{HostID: host.ID, IncludeRevoked: true})
	if len(all) != 3 {
		t.Fatalf("certs of host = %d, want 3", len(all))
	}
	for _, c := range all {
		switch c.Serial {
		case re.Cert.Serial:
			if c.RevokedAt != nil || c.Kind != protocol.KindReissue || c.TokenName != "re1" {
				t.Errorf("reissued cert = %+v, want unrevoked reissue by re1", c)
			}
		default:
			// Revoked by RevokeHost (keyCompromise) before the reissue.
			if c.RevokedAt == nil || c.RevokeReason != 1 {
				t.Errorf("earlier cert %s revoked at %v reason %d, want revoked reason 1", c.Serial, c.RevokedAt, c.RevokeReason)
			}
		}
	}
	// A further reissue supersedes the reissued one.
	host, _ = s.HostByID(ctx, host.ID)
	re2 := reissuance(host, "", t0.Add(5*time.Hour))
	if err := s.CommitIssuance(ctx, re2); err != nil {
		t.Fatal(err)
	}
	c, _ = s.CertBySerial(ctx, re.Cert.Serial)
	if c.RevokedAt == nil || c.RevokeReason != reasonSuperseded || !c.RevokedAt.Equal(t0.Add(5*time.Hour)) {
		t.Errorf("earlier reissued cert revoked at %v reason %d, want superseded at reissue time", c.RevokedAt, c.RevokeReason)
	}
	if live, _ := s.ListCerts(ctx, CertFilter{HostID: host.ID}); len(live) != 1 || live[0].Serial != re2.Cert.Serial {
		t.Errorf("unrevoked certs after second reissue = %v, want only the newest", live)
	}
	// A rename goes through the mappings: the new name added, the old one
	// removed; the ID stays.
	host, _ = s.HostByID(ctx, host.ID)
	if _, err := s.AddMapping(ctx, "Renamed.example", host.ID, t0, Audit{}); err != nil {
		t.Fatal(err)
	}
	if _, err := s.RemoveMapping(ctx, host.Name, "", t0, Audit{}); err != nil {
		t.Fatal(err)
	}
	if h, err := s.HostByName(ctx, "renamed.example"); err != nil || h.ID != first.Host.ID || h.Name != "renamed.example" {
		t.Errorf("HostByName(renamed) = %+v, %v, want ID %s named renamed.example", h, err, first.Host.ID)
	}
	host.Name = "renamed.example"
	if err := s.CommitIssuance(ctx, reissuance(host, "", t0.Add(6*time.Hour))); err != nil {
		t.Fatal(err)
	}
	// Reissue of an unknown host.
	if err := s.CommitIssuance(ctx, reissuance(Host{ID: "nope", Name: "n"}, "", t0)); !errors.Is(err, ErrNotFound) {
		t.Errorf("reissue of unknown host error = %v, want ErrNotFound", err)
	}
	// A serial collision is an ErrExists the caller can retry.
	col := issuance("col.example", "")
	col.Cert.Serial = re2.Cert.Serial
	if err := s.CommitIssuance(ctx, col); !errors.Is(err, ErrSerialExists) || !errors.Is(err, ErrExists) {
		t.Errorf("serial collision error = %v, want ErrSerialExists (ErrExists)", err)
	}
	if _, err := s.HostByName(ctx, "col.example"); !errors.Is(err, ErrNotFound) {
		t.Errorf("host of a failed issuance stored: %v", err)
	}
}

// TestTokenRace: 50 goroutines race CommitIssuance on one token with max
// uses 5; exactly 5 succeed, the others get ErrTokenUsedUp and write nothing.
func TestTokenRace(t *testing.T) { forEachBackend(t, testTokenRace) }

func testTokenRace(t *testing.T, s *Store) {
	ctx := context.Background()
	mustToken(t, s, "five", KindStandard, "", 5, t0.Add(24*time.Hour))
	auditBefore := auditCount(t, s)

	const n = 50
	var (
		wg    sync.WaitGroup
		start = make(chan struct{})
		errs  = make([]error, n)
		iss   = make([]Issuance, n)
	)
	for i := range n {
		iss[i] = issuance(fmt.Sprintf("race%02d.example", i), "five")
		wg.Add(1)
		go func() {
			defer wg.Done()
			<-start
			errs[i] = s.CommitIssuance(ctx, iss[i])
		}()
	}
	close(start)
	wg.Wait()

	ok := 0
	for i, err := range errs {
		switch {
		case err == nil:
			ok++
			if _, err := s.CertBySerial(ctx, iss[i].Cert.Serial); err != nil {
				t.Errorf("winner %d: certificate missing: %v", i, err)
			}
		case errors.Is(err, ErrTokenUsedUp):
			if _, err := s.CertBySerial(ctx, iss[i].Cert.Serial); !errors.Is(err, ErrNotFound) {
				t.Errorf("loser %d: certificate stored (%v)", i, err)
			}
			if _, err := s.HostByName(ctx, iss[i].Host.Name); !errors.Is(err, ErrNotFound) {
				t.Errorf("loser %d: host stored (%v)", i, err)
			}
		default:
			t.Errorf("CommitIssuance %d error = %v, want nil or ErrTokenUsedUp", i, err)
		}
	}
	if ok != 5 {
		t.Errorf("successful issuances = %d, want exactly 5", ok)
	}
	tok, err := s.TokenByName(ctx, "five")
	if err != nil || tok.Uses != 5 {
		t.Errorf("token uses = %d, %v, want 5", tok.Uses, err)
	}
	certs, _ := s.ListCerts(ctx, CertFilter{TokenName: "five"})
	if len(certs) != 5 {
		t.Errorf("certs by token = %d, want 5", len(certs))
	}
	if got := auditCount(t, s) - auditBefore; got != 5 {
		t.Errorf("audit rows written = %d, want 5 (losers write nothing)", got)
	}
}

func TestTokenRefusals(t *testing.T) { forEachBackend(t, testTokenRefusals) }

func testTokenRefusals(t *testing.T, s *Store) {
	ctx := context.Background()
	owner := issuance("owner.example", "")
	if err := s.CommitIssuance(ctx, owner); err != nil {
		t.Fatal(err)
	}
	mustToken(t, s, "old", KindStandard, "", 3, t0.Add(time.Hour))
	mustToken(t, s, "bound", KindReissue, owner.Host.ID, 1, t0.Add(time.Hour))
	mustToken(t, s, "gone", KindStandard, "", 3, t0.Add(time.Hour))
	if err := s.DeleteToken(ctx, "gone", Audit{}); err != nil {
		t.Fatal(err)
	}
	other := issuance("other.example", "")
	if err := s.CommitIssuance(ctx, other); err != nil {
		t.Fatal(err)
	}
	otherHost, _ := s.HostByID(ctx, other.Host.ID)

	expired := issuance("late.example", "old")
	expired.Now = t0.Add(time.Hour)
	tests := []struct {
		name string
		is   Issuance
		want error
	}{
		{"expired token", expired, ErrTokenExpired},
		{"reissue token of another host", reissuance(otherHost, "bound", t0), ErrTokenHost},
		{"reissue token on a new host", issuance("new.example", "bound"), ErrTokenHost},
		{"deleted token", issuance("del.example", "gone"), ErrTokenMissing},
	}
	for _, tt := range tests {
		if err := s.CommitIssuance(ctx, tt.is); !errors.Is(err, tt.want) {
			t.Errorf("CommitIssuance(%s) error = %v, want %v", tt.name, err, tt.want)
		}
		if _, err := s.CertBySerial(ctx, tt.is.Cert.Serial); !errors.Is(err, ErrNotFound) {
			t.Errorf("CommitIssuance(%s) stored a certificate", tt.name)
		}
	}
	if !errors.Is(ErrTokenMissing, ErrNotFound) {
		t.Error("ErrTokenMissing is not an ErrNotFound")
	}
	if tok, _ := s.TokenByName(ctx, "old"); tok.Uses != 0 {
		t.Errorf("expired token uses = %d, want 0", tok.Uses)
	}
	// The bound token works for its host, once.
	ownerHost, _ := s.HostByID(ctx, owner.Host.ID)
	if err := s.CommitIssuance(ctx, reissuance(ownerHost, "bound", t0)); err != nil {
		t.Errorf("reissue with its own token: %v", err)
	}
	if err := s.CommitIssuance(ctx, reissuance(ownerHost, "bound", t0)); !errors.Is(err, ErrTokenUsedUp) {
		t.Errorf("second use of a single-use token error = %v, want ErrTokenUsedUp", err)
	}
}

func TestTokens(t *testing.T) { forEachBackend(t, testTokens) }

func testTokens(t *testing.T, s *Store) {
	ctx := context.Background()
	mustToken(t, s, "std", KindStandard, "", 2, t0.Add(24*time.Hour))
	tok, err := s.TokenByHash(ctx, hashOf("value-of-std"))
	if err != nil || tok.Name != "std" || tok.MaxUses != 2 || tok.Uses != 0 || !tok.ExpiresAt.Equal(t0.Add(24*time.Hour)) || tok.Reason != "test" {
		t.Errorf("TokenByHash = %+v, %v", tok, err)
	}
	if _, err := s.TokenByHash(ctx, hashOf("wrong")); !errors.Is(err, ErrNotFound) {
		t.Errorf("TokenByHash(wrong) error = %v, want ErrNotFound", err)
	}
	dup := Token{Name: "std", Kind: KindStandard, Hash: hashOf("other"), MaxUses: 1, CreatedAt: t0, ExpiresAt: t0.Add(time.Hour)}
	if err := s.CreateToken(ctx, dup, Audit{}); !errors.Is(err, ErrExists) {
		t.Errorf("CreateToken(duplicate name) error = %v, want ErrExists", err)
	}
	bad := []Token{
		{Name: "", Kind: KindStandard, Hash: hashOf("a"), MaxUses: 1, ExpiresAt: t0.Add(time.Hour)},
		{Name: "k", Kind: "weird", Hash: hashOf("a"), MaxUses: 1, ExpiresAt: t0.Add(time.Hour)},
		{Name: "k", Kind: KindReissue, Hash: hashOf("a"), MaxUses: 1, ExpiresAt: t0.Add(time.Hour)},
		{Name: "k", Kind: KindStandard, Hash: []byte("short"), MaxUses: 1, ExpiresAt: t0.Add(time.Hour)},
		{Name: "k", Kind: KindStandard, Hash: hashOf("a"), MaxUses: 0, ExpiresAt: t0.Add(time.Hour)},
		{Name: "k", Kind: KindStandard, Hash: hashOf("a"), MaxUses: 1, CreatedAt: t0, ExpiresAt: t0},
	}
	for i, b := range bad {
		if err := s.CreateToken(ctx, b, Audit{}); err == nil {
			t.Errorf("CreateToken(bad %d) succeeded, want an error", i)
		}
	}
	if err := s.CreateToken(ctx, Token{Name: "r", Kind: KindReissue, HostID: "no-such-host", Hash: hashOf("r"), MaxUses: 1, CreatedAt: t0, ExpiresAt: t0.Add(time.Hour)}, Audit{}); !errors.Is(err, ErrNotFound) {
		t.Errorf("CreateToken(reissue for unknown host) error = %v, want ErrNotFound", err)
	}
	if err := s.DeleteToken(ctx, "nope", Audit{}); !errors.Is(err, ErrNotFound) {
		t.Errorf("DeleteToken(nope) error = %v, want ErrNotFound", err)
	}
	rows, _ := s.ListAudit(ctx, time.Time{}, 0)
	if len(rows) != 1 || rows[0].Action != "token.create" || rows[0].TokenName != "std" {
		t.Errorf("audit = %+v, want one token.create row for std", rows)
	}
	for _, r := range rows {
		for k, v := range r.Detail {
			if fmt.Sprint(v) == "value-of-std" {
				t.Errorf("audit detail %s holds the token value", k)
			}
		}
	}
}

func TestCleanupTokens(t *testing.T) { forEachBackend(t, testCleanupTokens) }

func testCleanupTokens(t *testing.T, s *Store) {
	ctx := context.Background()
	mustToken(t, s, "live", KindStandard, "", 2, t0.Add(24*time.Hour))
	mustToken(t, s, "expired", KindStandard, "", 2, t0.Add(time.Hour))
	mustToken(t, s, "usedup", KindStandard, "", 1, t0.Add(24*time.Hour))
	mustToken(t, s, "half", KindStandard, "", 2, t0.Add(24*time.Hour))
	if err := s.CommitIssuance(ctx, issuance("u.example", "usedup")); err != nil {
		t.Fatal(err)
	}
	if err := s.CommitIssuance(ctx, issuance("h.example", "half")); err != nil {
		t.Fatal(err)
	}
	now := t0.Add(2 * time.Hour)
	list, _ := s.ListTokens(ctx)
	var dead []string
	for _, tok := range list {
		if tok.Dead(now) {
			dead = append(dead, tok.Name)
		}
	}
	if !slices.Equal(dead, []string{"expired", "usedup"}) {
		t.Errorf("dead tokens before cleanup = %v, want [expired usedup] (still listed)", dead)
	}
	removed, err := s.CleanupTokens(ctx, now, Audit{Actor: "admin:0"})
	if err != nil || removed != 2 {
		t.Fatalf("CleanupTokens = %d, %v, want 2", removed, err)
	}
	list, _ = s.ListTokens(ctx)
	var names []string
	for _, tok := range list {
		names = append(names, tok.Name)
	}
	if !slices.Equal(names, []string{"half", "live"}) {
		t.Errorf("tokens after cleanup = %v, want [half live]", names)
	}
	// Certificates keep the name of a deleted token.
	if certs, _ := s.ListCerts(ctx, CertFilter{TokenName: "usedup"}); len(certs) != 1 {
		t.Errorf("certs of the cleaned-up token = %d, want 1", len(certs))
	}
	rows, _ := s.ListAudit(ctx, time.Time{}, 1)
	if len(rows) != 1 || rows[0].Action != "token.cleanup" || fmt.Sprint(rows[0].Detail["removed"]) != "2" {
		t.Errorf("last audit row = %+v, want token.cleanup removed 2", rows)
	}
}

func TestRevoke(t *testing.T) { forEachBackend(t, testRevoke) }

func testRevoke(t *testing.T, s *Store) {
	ctx := context.Background()
	mustToken(t, s, "leaked", KindStandard, "", 10, t0.Add(24*time.Hour))
	a := issuance("a.example", "leaked")
	b := issuance("b.example", "leaked")
	c := issuance("c.example", "")
	hostOf := map[string]string{a.Cert.Serial: "a.example", b.Cert.Serial: "b.example", c.Cert.Serial: "c.example"}
	for _, is := range []Issuance{a, b, c} {
		if err := s.CommitIssuance(ctx, is); err != nil {
			t.Fatal(err)
		}
	}
	// An expired revoked cert stays out of the CRL list.
	old := issuance("old.example", "")
	old.Cert.NotAfter = time.Now().Add(-time.Hour)
	if err := s.CommitIssuance(ctx, old); err != nil {
		t.Fatal(err)
	}
	if _, err := s.RevokeHost(ctx, old.Host.ID, 5, t0, Audit{}); err != nil {
		t.Fatal(err)
	}

	n, err := s.RevokeByToken(ctx, "leaked", 1, t0.Add(time.Hour), Audit{Actor: "admin:0"})
	if err != nil || n != 2 {
		t.Fatalf("RevokeByToken = %d, %v, want 2", n, err)
	}
	if n, err := s.RevokeByToken(ctx, "leaked", 1, t0.Add(time.Hour), Audit{}); err != nil || n != 0 {
		t.Errorf("RevokeByToken again = %d, %v, want 0, nil", n, err)
	}
	if _, err := s.RevokeByToken(ctx, "never", 1, t0, Audit{}); !errors.Is(err, ErrNotFound) {
		t.Errorf("RevokeByToken(never) error = %v, want ErrNotFound", err)
	}
	if h, _ := s.HostByID(ctx, a.Host.ID); h.RevokedAt != nil {
		t.Error("RevokeByToken marked the host revoked, want only its certificates")
	}

	n, err = s.RevokeHost(ctx, c.Host.ID, 9, t0.Add(2*time.Hour), Audit{})
	if err != nil || n != 1 {
		t.Fatalf("RevokeHost = %d, %v, want 1", n, err)
	}
	if h, _ := s.HostByID(ctx, c.Host.ID); h.RevokedAt == nil || !h.RevokedAt.Equal(t0.Add(2*time.Hour)) {
		t.Errorf("host RevokedAt = %v, want %s", h.RevokedAt, t0.Add(2*time.Hour))
	}
	for _, bad := range []int{-1, 7, 11} {
		if _, err := s.RevokeHost(ctx, c.Host.ID, bad, t0, Audit{}); err == nil {
			t.Errorf("RevokeHost(reason %d) succeeded, want an error", bad)
		}
		if _, err := s.RevokeByToken(ctx, "leaked", bad, t0, Audit{}); err == nil {
			t.Errorf("RevokeByToken(reason %d) succeeded, want an error", bad)
		}
	}
	if _, err := s.RevokeHost(ctx, "nope", 1, t0, Audit{}); !errors.Is(err, ErrNotFound) {
		t.Errorf("RevokeHost(nope) error = %v, want ErrNotFound", err)
	}

	got := map[string]int{}
	err = s.EachRevoked(ctx, time.Now(), func(r Revocation) error {
		if string(r.DER) != "der of "+hostOf[r.Serial] {
			t.Errorf("EachRevoked: %s DER %q, want the DER of %s", r.Serial, r.DER, hostOf[r.Serial])
		}
		got[r.Serial] = r.Reason
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	want := map[string]int{a.Cert.Serial: 1, b.Cert.Serial: 1, c.Cert.Serial: 9}
	if fmt.Sprint(got) != fmt.Sprint(want) {
		t.Errorf("EachRevoked = %v, want %v", got, want)
	}
	if live, _ := s.ListCerts(ctx, CertFilter{}); len(live) != 0 {
		t.Errorf("unrevoked certs = %d, want 0", len(live))
	}
	if all, _ := s.ListCerts(ctx, CertFilter{TokenName: "leaked", IncludeRevoked: true}); len(all) != 2 {
		t.Errorf("certs of token leaked = %d, want 2", len(all))
	}
}

func TestAuditInSameTransaction(t *testing.T) { forEachBackend(t, testAuditInSameTransaction) }

func testAuditInSameTransaction(t *testing.T, s *Store) {
	ctx := context.Background()
	is := issuance("aud.example", "")
	is.Audit = Audit{Actor: "api", Source: "198.51.100.7", Code: "", Detail: map[string]any{"level": "high", "verified": true}}
	if err := s.CommitIssuance(ctx, is); err != nil {
		t.Fatal(err)
	}
	rows, err := s.ListAudit(ctx, time.Time{}, 0)
	if err != nil || len(rows) != 1 {
		t.Fatalf("ListAudit = %d rows, %v, want 1", len(rows), err)
	}
	r := rows[0]
	if r.Action != "issue" || r.Outcome != "granted" || r.HostID != is.Host.ID || r.Name != "aud.example" ||
		r.Source != "198.51.100.7" || r.Detail["verified"] != true || r.Detail["serial"] != is.Cert.Serial || !r.At.Equal(t0) {
		t.Errorf("audit row = %+v", r)
	}
	if _, ok := is.Audit.Detail["serial"]; ok {
		t.Error("CommitIssuance modified the caller's Detail map")
	}
	// An operation that fails after writing its audit row leaves none: the
	// row and the change share one savepoint.
	before := auditCount(t, s)
	err = s.write(ctx, func(tx *wtx) error {
		if err := insertAudit(tx, Audit{Action: "doomed"}); err != nil {
			return err
		}
		return errors.New("fail after audit")
	})
	if err == nil {
		t.Fatal("failing op returned nil")
	}
	if got := auditCount(t, s); got != before {
		t.Errorf("audit rows after a failed op = %d, want %d", got, before)
	}
	if err := s.AppendAudit(ctx, Audit{Action: "refuse", Outcome: "refused", Code: "token_required", At: t0.Add(time.Minute)}); err != nil {
		t.Fatal(err)
	}
	if err := s.AppendAudit(ctx, Audit{}); err == nil {
		t.Error("AppendAudit without action succeeded, want an error")
	}
	since, _ := s.ListAudit(ctx, t0.Add(time.Second), 0)
	if len(since) != 1 || since[0].Code != "token_required" {
		t.Errorf("ListAudit(since) = %+v, want the refuse row", since)
	}
}

// TestBatchIsolation: operations that share one group-commit transaction
// succeed or fail independently.
func TestBatchIsolation(t *testing.T) {
	ctx := context.Background()
	s, _ := openTemp(t)
	release := make(chan struct{})
	blocked := make(chan struct{})
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		// Holds the writer so that the following writes queue into one batch.
		s.write(ctx, func(*wtx) error { close(blocked); <-release; return nil })
	}()
	<-blocked
	const n = 20
	errs := make([]error, n)
	iss := make([]Issuance, n)
	for i := range n {
		iss[i] = issuance(fmt.Sprintf("b%02d.example", i), "")
		if i%2 == 1 {
			iss[i].Host.Name = iss[i-1].Host.Name // loses to its predecessor
			iss[i].Cert.Names = iss[i-1].Cert.Names
		}
		wg.Add(1)
		go func() { defer wg.Done(); errs[i] = s.CommitIssuance(ctx, iss[i]) }()
	}
	// Wait until all are queued, then let the writer go.
	for deadline := time.Now().Add(10 * time.Second); len(s.ops) < n && time.Now().Before(deadline); {
		time.Sleep(time.Millisecond)
	}
	if len(s.ops) != n {
		t.Fatalf("queued ops = %d, want %d", len(s.ops), n)
	}
	batchesBefore := s.Stats().Batches
	close(release)
	wg.Wait()
	if got := s.Stats().Batches - batchesBefore; got != 2 {
		t.Errorf("transactions = %d, want 2 (the blocker's and one batch)", got)
	}
	// Of each pair sharing a name exactly one wins; the other gets ErrHostExists.
	for i := 0; i < n; i += 2 {
		a, b := errs[i], errs[i+1]
		if (a == nil) == (b == nil) || !errors.Is(a, ErrHostExists) && !errors.Is(b, ErrHostExists) {
			t.Errorf("pair %d errors = %v, %v, want one nil and one ErrHostExists", i/2, a, b)
		}
	}
	if certs, _ := s.ListCerts(ctx, CertFilter{}); len(certs) != n/2 {
		t.Errorf("certificates = %d, want %d", len(certs), n/2)
	}
}

func TestNextCRLNumber(t *testing.T) { forEachBackend(t, testNextCRLNumber) }

func testNextCRLNumber(t *testing.T, s *Store) {
	ctx := context.Background()
	var last int64
	for i := range 5 {
		n, err := s.NextCRLNumber(ctx)
		if err != nil {
			t.Fatal(err)
		}
		if n.Int64() <= last {
			t.Fatalf("NextCRLNumber #%d = %s, want > %d", i, n, last)
		}
		last = n.Int64()
	}
	s.Close()
	s2, err := OpenTarget(ctx, s.Path())
	if err != nil {
		t.Fatal(err)
	}
	defer s2.Close()
	n, err := s2.NextCRLNumber(ctx)
	if err != nil || n.Int64() <= last {
		t.Errorf("NextCRLNumber after reopen = %v, %v, want > %d", n, err, last)
	}
	// A restored old backup (a lower stored number) still moves forward.
	if _, err := s2.wdbExecForTest(ctx, "UPDATE crl_state SET number = 1"); err != nil {
		t.Fatal(err)
	}
	floor := time.Now().UnixMilli()
	if again, err := s2.NextCRLNumber(ctx); err != nil || again.Int64() < floor {
		t.Errorf("NextCRLNumber after a restore = %v, %v, want >= the current Unix time in ms %d", again, err, floor)
	}
}

// wdbExecForTest runs a statement through the writer, as a test backdoor.
func (s *Store) wdbExecForTest(ctx context.Context, q string) (int64, error) {
	var n int64
	err := s.write(ctx, func(t *wtx) error {
		var err error
		n, err = affected(t.exec(q))
		return err
	})
	return n, err
}

func TestClosedAndCanceled(t *testing.T) { forEachBackend(t, testClosedAndCanceled) }

func testClosedAndCanceled(t *testing.T, s *Store) {
	ctx := context.Background()
	canceled, cancel := context.WithCancel(ctx)
	cancel()
	if err := s.AppendAudit(canceled, Audit{Action: "x"}); !errors.Is(err, context.Canceled) {
		t.Errorf("write with a canceled context error = %v, want context.Canceled", err)
	}
	if got := auditCount(t, s); got != 0 {
		t.Errorf("audit rows after a canceled write = %d, want 0", got)
	}
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	if err := s.AppendAudit(ctx, Audit{Action: "x"}); !errors.Is(err, ErrClosed) {
		t.Errorf("write after Close error = %v, want ErrClosed", err)
	}
	if err := s.Close(); err != nil {
		t.Errorf("second Close = %v, want nil", err)
	}
}

func TestBackup(t *testing.T) {
	ctx := context.Background()
	s, path := openTemp(t)
	is := issuance("backed-up.example", "")
	if err := s.CommitIssuance(ctx, is); err != nil {
		t.Fatal(err)
	}
	dst := filepath.Join(filepath.Dir(path), "backup.db")
	if err := s.Backup(ctx, dst); err != nil {
		t.Fatal(err)
	}
	if err := s.Backup(ctx, dst); !errors.Is(err, ErrExists) {
		t.Errorf("Backup over an existing file error = %v, want ErrExists", err)
	}
	if runtime.GOOS != "windows" {
		if fi, err := os.Stat(dst); err != nil || fi.Mode().Perm() != 0o600 {
			t.Errorf("backup mode = %v (%v), want 0600", fi.Mode().Perm(), err)
		}
		if fi, err := os.Stat(path + "-wal"); err != nil || fi.Mode().Perm() != 0o600 {
			t.Errorf("WAL mode = %v (%v), want 0600", fi.Mode().Perm(), err)
		}
	}
	b, err := Open(ctx, dst)
	if err != nil {
		t.Fatal(err)
	}
	defer b.Close()
	if c, err := b.CertBySerial(ctx, is.Cert.Serial); err != nil || c.HostID != is.Host.ID {
		t.Errorf("backup CertBySerial = %+v, %v", c, err)
	}
}
