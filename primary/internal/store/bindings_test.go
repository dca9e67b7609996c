package store

import (
	"context"
	"database/sql"
	"errors"
	"slices"
	"testing"
	"time"
)

// TestTokenBindings: bindings are stored with the token, read back by hash,
// name and list, and an unbound token reads back with none.
func TestTokenBindings(t *testing.T) { forEachBackend(t, testTokenBindings) }

func testTokenBindings(t *testing.T, s *Store) {
	ctx := context.Background()
	bound := Token{
		Name: "dmz", Kind: KindStandard, Hash: hashOf("value-of-dmz"), MaxUses: 10,
		CreatedAt: t0, ExpiresAt: t0.Add(time.Hour),
		BindNames: []string{"*.dmz.example.com", "gw.example.com"}, BindNets: []string{"192.0.2.0/24", "2001:db8::/32"},
	}
	if err := s.CreateToken(ctx, bound, Audit{}); err != nil {
		t.Fatal(err)
	}
	mustToken(t, s, "free", KindStandard, "", 1, t0.Add(time.Hour))

	byHash, err := s.TokenByHash(ctx, hashOf("value-of-dmz"))
	if err != nil || !slices.Equal(byHash.BindNames, bound.BindNames) || !slices.Equal(byHash.BindNets, bound.BindNets) {
		t.Errorf("TokenByHash(dmz) = %+v, %v, want its bindings", byHash, err)
	}
	list, err := s.ListTokens(ctx)
	if err != nil || len(list) != 2 {
		t.Fatalf("ListTokens = %+v, %v", list, err)
	}
	for _, tok := range list {
		switch tok.Name {
		case "dmz":
			if !slices.Equal(tok.BindNames, bound.BindNames) || !slices.Equal(tok.BindNets, bound.BindNets) {
				t.Errorf("ListTokens: dmz bindings = %v %v", tok.BindNames, tok.BindNets)
			}
		case "free":
			if len(tok.BindNames) != 0 || len(tok.BindNets) != 0 {
				t.Errorf("ListTokens: free bindings = %v %v, want none", tok.BindNames, tok.BindNets)
			}
		}
	}
	rows, _ := s.ListAudit(ctx, time.Time{}, 0)
	if len(rows) == 0 || rows[0].TokenName != "dmz" || rows[0].Detail["bind_names"] == nil || rows[0].Detail["bind_nets"] == nil {
		t.Errorf("token.create audit row = %+v, want the bindings in its detail", rows)
	}
}

// TestCommitPinsTokenHash: the use is counted on the row with the presented
// value's hash. A token deleted and re-created under the same name between
// the decision and the commit (with other bindings) is not charged, and
// the issuance is refused with ErrTokenMissing; an issuance without the
// hash is refused as invalid.
func TestCommitPinsTokenHash(t *testing.T) { forEachBackend(t, testCommitPinsTokenHash) }

func testCommitPinsTokenHash(t *testing.T, s *Store) {
	ctx := context.Background()
	mustToken(t, s, "t", KindStandard, "", 5, t0.Add(time.Hour))

	is := issuance("a.example", "t")
	if err := s.DeleteToken(ctx, "t", Audit{}); err != nil {
		t.Fatal(err)
	}
	recreated := Token{
		Name: "t", Kind: KindStandard, Hash: hashOf("another value"), MaxUses: 5,
		CreatedAt: t0, ExpiresAt: t0.Add(time.Hour), BindNets: []string{"198.51.100.0/24"},
	}
	if err := s.CreateToken(ctx, recreated, Audit{}); err != nil {
		t.Fatal(err)
	}
	if err := s.CommitIssuance(ctx, is); !errors.Is(err, ErrTokenMissing) {
		t.Errorf("commit with the old value's hash after a re-creation = %v, want ErrTokenMissing", err)
	}
	if tok, _ := s.TokenByName(ctx, "t"); tok.Uses != 0 {
		t.Errorf("re-created token uses = %d, want 0", tok.Uses)
	}
	if _, err := s.CertBySerial(ctx, is.Cert.Serial); !errors.Is(err, ErrNotFound) {
		t.Errorf("refused commit stored its certificate (%v)", err)
	}

	noHash := issuance("b.example", "t")
	noHash.TokenHash = nil
	if err := s.CommitIssuance(ctx, noHash); err == nil || errors.Is(err, ErrTokenMissing) {
		t.Errorf("commit with a token name and no hash = %v, want an invalid-argument error", err)
	}

	good := issuance("c.example", "t")
	good.TokenHash = hashOf("another value")
	if err := s.CommitIssuance(ctx, good); err != nil {
		t.Errorf("commit with the re-created token's own hash = %v", err)
	}
}

// TestMigrateTokenBindings: a database of schema version 1 with a token in
// it gains the binding columns, and the old token reads back unbound.
func TestMigrateTokenBindings(t *testing.T) {
	ctx := context.Background()
	path := t.TempDir() + "/old.db"
	db, err := sql.Open("sqlite", dsn(path, "busy_timeout(10000)"))
	if err != nil {
		t.Fatal(err)
	}
	if err := migrate(ctx, db, migrations[:1]); err != nil {
		t.Fatal(err)
	}
	if _, err := db.ExecContext(ctx, `INSERT INTO tokens (name, kind, hash, max_uses, created_at, expires_at)
		VALUES ('old', 'standard', ?, 1, ?, ?)`, hashOf("value-of-old"), ts(t0), ts(t0.Add(time.Hour))); err != nil {
		t.Fatal(err)
	}
	db.Close()

	s, err := Open(ctx, path)
	if err != nil {
		t.Fatalf("Open of a version-1 database: %v", err)
	}
	defer s.Close()
	tok, err := s.TokenByName(ctx, "old")
	if err != nil || tok.BindNames != nil || tok.BindNets != nil || tok.MaxUses != 1 {
		t.Errorf("migrated token = %+v, %v, want it unbound", tok, err)
	}
}
