package store

import (
	"context"
	"crypto/sha256"
	"database/sql"
	"encoding/json"
	"errors"
	"fmt"
	"time"
)

// Token kinds.
const (
	KindStandard = "standard"
	KindReissue  = "reissue"
)

// Token is a stored token. Its value is never stored: Hash is the SHA-256
// of the value.
type Token struct {
	Name      string
	Kind      string // "standard" | "reissue"
	HostID    string // reissue tokens only
	Hash      []byte
	MaxUses   int
	Uses      int
	CreatedAt time.Time
	ExpiresAt time.Time
	Reason    string
	// BindNames and BindNets restrict the token to these host names or
	// patterns and source networks (package tokens parses and checks
	// them; the store keeps the text). They are set at creation and never
	// change, so a token row matched by name and hash at commit has the
	// bindings the decision checked.
	BindNames []string
	BindNets  []string
}

// Dead reports whether the token can no longer be used at now.
func (t Token) Dead(now time.Time) bool { return t.Uses >= t.MaxUses || !now.Before(t.ExpiresAt) }

// CreateToken stores a new token (ErrExists on a duplicate name; ErrNotFound
// when a reissue token names an unknown host).
func (s *Store) CreateToken(ctx context.Context, tok Token, a Audit) error {
	switch {
	case tok.Name == "":
		return fmt.Errorf("create token: empty name: %w", errInvalid)
	case tok.Kind != KindStandard && tok.Kind != KindReissue:
		return fmt.Errorf("create token %s: kind %q: %w", tok.Name, tok.Kind, errInvalid)
	case tok.Kind == KindReissue && tok.HostID == "":
		return fmt.Errorf("create token %s: a reissue token needs a host ID: %w", tok.Name, errInvalid)
	case tok.Kind == KindStandard && tok.HostID != "":
		return fmt.Errorf("create token %s: a standard token has no host ID: %w", tok.Name, errInvalid)
	case len(tok.Hash) != sha256.Size:
		return fmt.Errorf("create token %s: hash must be %d bytes: %w", tok.Name, sha256.Size, errInvalid)
	case tok.MaxUses < 1:
		return fmt.Errorf("create token %s: max uses %d: %w", tok.Name, tok.MaxUses, errInvalid)
	case tok.Uses != 0:
		return fmt.Errorf("create token %s: a new token has no uses: %w", tok.Name, errInvalid)
	}
	created := nowOr(tok.CreatedAt)
	if !tok.ExpiresAt.After(created) {
		return fmt.Errorf("create token %s: expires before it is created: %w", tok.Name, errInvalid)
	}
	var hostID any
	if tok.HostID != "" {
		hostID = tok.HostID
	}
	bindNames, err := jsonList(tok.BindNames)
	if err != nil {
		return fmt.Errorf("create token %s: %w", tok.Name, err)
	}
	bindNets, err := jsonList(tok.BindNets)
	if err != nil {
		return fmt.Errorf("create token %s: %w", tok.Name, err)
	}
	err = s.write(ctx, func(t *wtx) error {
		if tok.HostID != "" {
			var n int
			if err := t.queryRow("SELECT COUNT(*) FROM hosts WHERE id = ?", tok.HostID).Scan(&n); err != nil {
				return err
			}
			if n == 0 {
				return fmt.Errorf("host %s: %w", tok.HostID, ErrNotFound)
			}
		}
		_, err := t.exec(`INSERT INTO tokens (name, kind, host_id, hash, max_uses, uses, created_at, expires_at, reason, bind_names, bind_nets)
			VALUES (?, ?, ?, ?, ?, 0, ?, ?, ?, ?, ?)`,
			tok.Name, tok.Kind, hostID, tok.Hash, tok.MaxUses, ts(created), ts(tok.ExpiresAt), tok.Reason, bindNames, bindNets)
		if isConstraint(err) {
			return ErrExists
		}
		if err != nil {
			return err
		}
		a = withDefaults(a, "token.create", "ok")
		if a.TokenName == "" {
			a.TokenName = tok.Name
		}
		if a.HostID == "" {
			a.HostID = tok.HostID
		}
		detail := map[string]any{
			"kind": tok.Kind, "max_uses": tok.MaxUses, "expires_at": tok.ExpiresAt.UTC(), "reason": tok.Reason,
		}
		if len(tok.BindNames) > 0 {
			detail["bind_names"] = tok.BindNames
		}
		if len(tok.BindNets) > 0 {
			detail["bind_nets"] = tok.BindNets
		}
		a.Detail = withDetail(a.Detail, detail)
		return insertAudit(t, a)
	})
	if err != nil {
		return fmt.Errorf("create token %s: %w", tok.Name, err)
	}
	return nil
}

const tokenColumns = "name, kind, COALESCE(host_id, ''), hash, max_uses, uses, created_at, expires_at, reason, bind_names, bind_nets"

func scanToken(sc rowScanner) (Token, error) {
	var (
		t                   Token
		created, expires    int64
		bindNames, bindNets string
	)
	if err := sc.Scan(&t.Name, &t.Kind, &t.HostID, &t.Hash, &t.MaxUses, &t.Uses, &created, &expires, &t.Reason, &bindNames, &bindNets); err != nil {
		return Token{}, err
	}
	t.CreatedAt = fromTS(created)
	t.ExpiresAt = fromTS(expires)
	if err := json.Unmarshal([]byte(bindNames), &t.BindNames); err != nil {
		return Token{}, fmt.Errorf("token %s: bind_names: %w", t.Name, err)
	}
	if err := json.Unmarshal([]byte(bindNets), &t.BindNets); err != nil {
		return Token{}, fmt.Errorf("token %s: bind_nets: %w", t.Name, err)
	}
	if len(t.BindNames) == 0 {
		t.BindNames = nil
	}
	if len(t.BindNets) == 0 {
		t.BindNets = nil
	}
	return t, nil
}

// jsonList encodes a list of strings as a JSON array ("[]" for none).
func jsonList(l []string) (string, error) {
	if l == nil {
		l = []string{}
	}
	b, err := json.Marshal(l)
	return string(b), err
}

// TokenByHash finds the token whose value hashes to hash (ErrNotFound).
func (s *Store) TokenByHash(ctx context.Context, hash []byte) (Token, error) {
	t, err := scanToken(s.queryRow(ctx, "SELECT "+tokenColumns+" FROM tokens WHERE hash = ?", hash))
	if errors.Is(err, sql.ErrNoRows) {
		return Token{}, fmt.Errorf("token by hash: %w", ErrNotFound)
	}
	if err != nil {
		return Token{}, fmt.Errorf("token by hash: %w", err)
	}
	return t, nil
}

// TokenByName finds a token by name (ErrNotFound).
func (s *Store) TokenByName(ctx context.Context, name string) (Token, error) {
	t, err := scanToken(s.queryRow(ctx, "SELECT "+tokenColumns+" FROM tokens WHERE name = ?", name))
	if errors.Is(err, sql.ErrNoRows) {
		return Token{}, fmt.Errorf("token %s: %w", name, ErrNotFound)
	}
	if err != nil {
		return Token{}, fmt.Errorf("token %s: %w", name, err)
	}
	return t, nil
}

// ListTokens lists every token, dead ones included, by creation time.
func (s *Store) ListTokens(ctx context.Context) ([]Token, error) {
	return queryAll(ctx, s, "list tokens", scanToken, "SELECT "+tokenColumns+" FROM tokens ORDER BY created_at, name")
}

// DeleteToken deletes a token (ErrNotFound). Certificates it authorised keep
// its name, so they can still be listed and revoked by token.
func (s *Store) DeleteToken(ctx context.Context, name string, a Audit) error {
	err := s.write(ctx, func(t *wtx) error {
		n, err := affected(t.exec("DELETE FROM tokens WHERE name = ?", name))
		if err != nil {
			return err
		}
		if n == 0 {
			return ErrNotFound
		}
		a = withDefaults(a, "token.delete", "ok")
		if a.TokenName == "" {
			a.TokenName = name
		}
		return insertAudit(t, a)
	})
	if err != nil {
		return fmt.Errorf("delete token %s: %w", name, err)
	}
	return nil
}

// CleanupTokens deletes every token that is expired or used up at now and
// returns how many it removed. The audit row records the count and names.
func (s *Store) CleanupTokens(ctx context.Context, now time.Time, a Audit) (removed int, err error) {
	err = s.write(ctx, func(t *wtx) error {
		removed = 0
		rows, err := t.query("DELETE FROM tokens WHERE uses >= max_uses OR expires_at <= ? RETURNING name", ts(now))
		if err != nil {
			return err
		}
		var names []string
		for rows.Next() {
			var n string
			if err := rows.Scan(&n); err != nil {
				rows.Close()
				return err
			}
			names = append(names, n)
		}
		if err := errors.Join(rows.Err(), rows.Close()); err != nil {
			return err
		}
		removed = len(names)
		a = withDefaults(a, "token.cleanup", "ok")
		a.Detail = withDetail(a.Detail, map[string]any{"removed": removed, "tokens": names})
		return insertAudit(t, a)
	})
	if err != nil {
		return 0, fmt.Errorf("clean up tokens: %w", err)
	}
	return removed, nil
}
