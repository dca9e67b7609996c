package store

import (
	"context"
	"database/sql"
	"encoding/json"
	"fmt"
	"maps"
	"slices"
	"time"
)

// Audit is one row of the append-only audit log. It never holds a token
// value or a key: callers put only names, IDs and decision facts in it.
type Audit struct {
	ID        int64 // set when read back; ascending in insertion order
	At        time.Time
	Actor     string // "api" | "admin:<uid>" | "system"
	Source    string // client address
	Action    string // "issue","reissue","renew","refuse","level.set","token.create",...
	Outcome   string // "granted"|"refused"|"ok"|"error"
	Code      string
	HostID    string
	Name      string
	TokenName string
	Detail    map[string]any // decision facts; stored as JSON
	// Node is the primary node that decided and wrote the row; "" takes
	// the Store's own (SetNode).
	Node string
}

// withDefaults fills what the caller left empty: the method's action and
// outcome, actor "system".
func withDefaults(a Audit, action, outcome string) Audit {
	if a.Action == "" {
		a.Action = action
	}
	if a.Outcome == "" {
		a.Outcome = outcome
	}
	if a.Actor == "" {
		a.Actor = "system"
	}
	return a
}

// withDetail returns a copy of d with extra added where d has no such key;
// the caller's map is never modified.
func withDetail(d map[string]any, extra map[string]any) map[string]any {
	out := make(map[string]any, len(d)+len(extra))
	maps.Copy(out, extra)
	maps.Copy(out, d)
	return out
}

func insertAudit(t *wtx, a Audit) error {
	if a.Action == "" {
		return fmt.Errorf("audit row without an action: %w", errInvalid)
	}
	var detail any
	if len(a.Detail) > 0 {
		b, err := json.Marshal(a.Detail)
		if err != nil {
			return fmt.Errorf("audit detail: %w", err)
		}
		detail = string(b)
	}
	if a.Node == "" {
		a.Node = t.node
	}
	_, err := t.exec(`INSERT INTO audit (at, actor, source, action, outcome, code, host_id, name, token_name, detail, node)
		VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)`,
		ts(nowOr(a.At)), a.Actor, a.Source, a.Action, a.Outcome, a.Code, a.HostID, lowerName(a.Name), a.TokenName, detail, a.Node)
	if err != nil {
		return fmt.Errorf("audit: %w", err)
	}
	return nil
}

// AppendAudit writes one audit row, durably (group-committed like every write).
func (s *Store) AppendAudit(ctx context.Context, a Audit) error {
	if a.Action == "" {
		return fmt.Errorf("append audit: empty action: %w", errInvalid)
	}
	if a.Actor == "" {
		a.Actor = "system"
	}
	if err := s.write(ctx, func(t *wtx) error { return insertAudit(t, a) }); err != nil {
		return fmt.Errorf("append audit: %w", err)
	}
	return nil
}

// ListAudit returns the audit rows at or after since, oldest first. With
// limit > 0 it returns only the newest limit of them (still oldest first).
func (s *Store) ListAudit(ctx context.Context, since time.Time, limit int) ([]Audit, error) {
	q := `SELECT id, at, actor, source, action, outcome, code, host_id, name, token_name, detail, node
		FROM audit WHERE at >= ? ORDER BY id DESC`
	args := []any{sinceArg(since)}
	if limit > 0 {
		q += " LIMIT ?"
		args = append(args, limit)
	}
	out, err := s.queryAudit(ctx, q, args...)
	if err != nil {
		return nil, err
	}
	slices.Reverse(out)
	return out, nil
}

// ListAuditPage returns one page of the audit rows at or after since whose
// ID is above after, oldest first, at most limit (> 0) of them. The next
// page starts after the last row's ID; an empty page is the end.
func (s *Store) ListAuditPage(ctx context.Context, since time.Time, after int64, limit int) ([]Audit, error) {
	if limit <= 0 {
		return nil, fmt.Errorf("list audit page: limit %d: %w", limit, errInvalid)
	}
	return s.queryAudit(ctx, `SELECT id, at, actor, source, action, outcome, code, host_id, name, token_name, detail, node
		FROM audit WHERE id > ? AND +at >= ? ORDER BY id LIMIT ?`, after, sinceArg(since), limit)
}

func sinceArg(since time.Time) int64 {
	if since.IsZero() {
		return -1 << 63
	}
	return ts(since)
}

func (s *Store) queryAudit(ctx context.Context, q string, args ...any) ([]Audit, error) {
	rows, err := s.query(ctx, q, args...)
	if err != nil {
		return nil, fmt.Errorf("list audit: %w", err)
	}
	defer rows.Close()
	var out []Audit
	for rows.Next() {
		var (
			a      Audit
			at     int64
			detail sql.NullString
		)
		if err := rows.Scan(&a.ID, &at, &a.Actor, &a.Source, &a.Action, &a.Outcome, &a.Code, &a.HostID, &a.Name, &a.TokenName, &detail, &a.Node); err != nil {
			return nil, fmt.Errorf("list audit: %w", err)
		}
		a.At = fromTS(at)
		if detail.Valid && detail.String != "" {
			if err := json.Unmarshal([]byte(detail.String), &a.Detail); err != nil {
				return nil, fmt.Errorf("list audit: detail: %w", err)
			}
		}
		out = append(out, a)
	}
	if err := classify(rows.Err()); err != nil {
		return nil, fmt.Errorf("list audit: %w", err)
	}
	return out, nil
}
