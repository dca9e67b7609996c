package store

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"strings"
	"time"
)

// Host name mappings (SPEC §8): a host ID carries one or more approved
// names; a name a known host asks for and does not hold yet is pending
// until an admin approves it (or the auto-approve setting is on); a name
// belongs to at most one host ID, pending or approved. The last rule is the
// primary key of host_names, so that two hosts claiming one name at once —
// on one node or on several — end with exactly one owner.

// MappingState is pending or approved.
type MappingState string

// The states of a mapping.
const (
	MappingPending  MappingState = "pending"
	MappingApproved MappingState = "approved"
)

// Mapping is one name of a host ID.
type Mapping struct {
	Name      string
	HostID    string
	HostName  string // the host's main name (hosts.name), for display
	State     MappingState
	AskedAt   time.Time  // when the host asked for it, or an admin added it
	DecidedAt *time.Time // when it was approved; nil while pending
}

// Errors of the mapping operations, for errors.Is.
var (
	ErrNameConflict = errors.New("name belongs to another host ID")
	ErrLastName     = errors.New("it is the host's only approved name")
	// ErrNameWithdrawn: CommitIssuance found a name of the certificate no
	// longer approved for the host (removed meanwhile).
	ErrNameWithdrawn = errors.New("name is no longer approved for the host")
)

const mappingColumns = "m.name, m.host_id, h.name, m.state, m.asked_at, m.decided_at"

func scanMapping(sc interface{ Scan(...any) error }) (Mapping, error) {
	var (
		m       Mapping
		state   string
		asked   int64
		decided sql.NullInt64
	)
	if err := sc.Scan(&m.Name, &m.HostID, &m.HostName, &state, &asked, &decided); err != nil {
		return Mapping{}, err
	}
	m.State, m.AskedAt, m.DecidedAt = MappingState(state), fromTS(asked), fromNullTS(decided)
	return m, nil
}

// MappingFilter selects mappings; zero fields select everything. After
// and Limit page through them by name (Limit 0: no limit).
type MappingFilter struct {
	HostID string
	State  MappingState
	After  string
	Limit  int
}

// ListMappings lists mappings by name.
func (s *Store) ListMappings(ctx context.Context, f MappingFilter) ([]Mapping, error) {
	limit := int64(f.Limit)
	if limit <= 0 {
		limit = -1 // SQLite: no limit
		if s.d == postgresDialect {
			limit = 1 << 62
		}
	}
	rows, err := s.query(ctx, `SELECT `+mappingColumns+` FROM host_names m JOIN hosts h ON h.id = m.host_id
		WHERE (? = '' OR m.host_id = ?) AND (? = '' OR m.state = ?) AND m.name > ?
		ORDER BY m.name LIMIT ?`, f.HostID, f.HostID, string(f.State), string(f.State), f.After, limit)
	if err != nil {
		return nil, fmt.Errorf("list mappings: %w", err)
	}
	return collectMappings(rows, "list mappings")
}

// MappingsFor returns, in one read, every mapping of hostID and every
// mapping of one of names (whoever holds it). hostID "" selects only by name.
func (s *Store) MappingsFor(ctx context.Context, hostID string, names []string) ([]Mapping, error) {
	args := make([]any, 0, len(names)+1)
	args = append(args, hostID)
	marks := make([]string, len(names))
	for i, n := range names {
		marks[i] = "?"
		args = append(args, lowerName(n))
	}
	q := `SELECT ` + mappingColumns + ` FROM host_names m JOIN hosts h ON h.id = m.host_id WHERE m.host_id = ?`
	if len(names) > 0 {
		q += ` OR m.name IN (` + strings.Join(marks, ", ") + `)`
	}
	rows, err := s.query(ctx, q+` ORDER BY m.name`, args...)
	if err != nil {
		return nil, fmt.Errorf("mappings of %s: %w", hostID, err)
	}
	return collectMappings(rows, "mappings of "+hostID)
}

func collectMappings(rows *rows, what string) ([]Mapping, error) {
	defer rows.Close()
	var out []Mapping
	for rows.Next() {
		m, err := scanMapping(rows)
		if err != nil {
			return nil, fmt.Errorf("%s: %w", what, err)
		}
		out = append(out, m)
	}
	if err := classify(rows.Err()); err != nil {
		return nil, fmt.Errorf("%s: %w", what, err)
	}
	return out, nil
}

// mappingOwner is the host ID and state of name's mapping (sql.ErrNoRows: none).
func mappingOwner(t *wtx, name string) (hostID string, state MappingState, err error) {
	var st string
	err = t.queryRow("SELECT host_id, state FROM host_names WHERE name = ?", name).Scan(&hostID, &st)
	return hostID, MappingState(st), err
}

// claimName gives name to hostID in state, inside t: nothing to do when the
// host already holds it (in any state); ErrNameConflict when another host
// does. The insert does nothing on a conflict rather than failing, so that
// a PostgreSQL transaction goes on to the question below.
func claimName(t *wtx, name, hostID string, state MappingState, now time.Time) error {
	var decided any
	if state == MappingApproved {
		decided = ts(now)
	}
	n, err := affected(t.exec(`INSERT INTO host_names (name, host_id, state, asked_at, decided_at) VALUES (?, ?, ?, ?, ?)
		ON CONFLICT DO NOTHING`, name, hostID, string(state), ts(now), decided))
	if err != nil || n > 0 {
		return err
	}
	owner, _, err := mappingOwner(t, name)
	if err != nil {
		return err
	}
	if owner != hostID {
		return fmt.Errorf("%s: %w", name, ErrNameConflict)
	}
	return nil
}

// AddMapping gives name to the host as an approved name (an admin's
// mapping; a pending one of that host is approved). ErrNameConflict when
// another host holds it, pending or approved; ErrExists when the host holds
// it approved already; ErrNotFound for an unknown host.
func (s *Store) AddMapping(ctx context.Context, name, hostID string, now time.Time, a Audit) (Mapping, error) {
	name, err := storeName(name)
	if err != nil {
		return Mapping{}, fmt.Errorf("add mapping: %w", err)
	}
	var m Mapping
	err = s.write(ctx, func(t *wtx) error {
		var main string
		var revoked sql.NullInt64
		if err := t.queryRow(t.pick(sqlLockHost), hostID).Scan(&main, &revoked); errors.Is(err, sql.ErrNoRows) {
			return fmt.Errorf("host %s: %w", hostID, ErrNotFound)
		} else if err != nil {
			return err
		}
		owner, state, err := mappingOwner(t, name)
		switch {
		case errors.Is(err, sql.ErrNoRows):
			if err := claimName(t, name, hostID, MappingApproved, now); err != nil {
				return err
			}
		case err != nil:
			return err
		case owner != hostID:
			return fmt.Errorf("%s: %w", name, ErrNameConflict)
		case state == MappingApproved:
			return fmt.Errorf("%s is already a name of %s: %w", name, hostID, ErrExists)
		default:
			if _, err := t.exec("UPDATE host_names SET state = 'approved', decided_at = ? WHERE name = ?", ts(now), name); err != nil {
				return err
			}
		}
		m = Mapping{Name: name, HostID: hostID, HostName: main, State: MappingApproved, AskedAt: now, DecidedAt: &now}
		return insertAudit(t, mappingAudit(a, "host.mapping.add", m, now))
	})
	if err != nil {
		return Mapping{}, fmt.Errorf("add mapping %s to %s: %w", name, hostID, err)
	}
	return m, nil
}

// DecideMapping approves or rejects (deletes) name's pending mapping.
// ErrNotFound when name has no pending mapping.
func (s *Store) DecideMapping(ctx context.Context, name string, approve bool, now time.Time, a Audit) (Mapping, error) {
	name = lowerName(name)
	action := "host.mapping.reject"
	if approve {
		action = "host.mapping.approve"
	}
	var m Mapping
	err := s.write(ctx, func(t *wtx) error {
		err := func() error {
			var err error
			m, err = scanMapping(t.queryRow(`SELECT `+mappingColumns+` FROM host_names m JOIN hosts h ON h.id = m.host_id
				WHERE m.name = ? AND m.state = 'pending'`, name))
			return err
		}()
		if errors.Is(err, sql.ErrNoRows) {
			return fmt.Errorf("no pending mapping of %s: %w", name, ErrNotFound)
		}
		if err != nil {
			return err
		}
		q := "DELETE FROM host_names WHERE name = ? AND state = 'pending'"
		args := []any{name}
		if approve {
			q, args = "UPDATE host_names SET state = 'approved', decided_at = ? WHERE name = ? AND state = 'pending'", []any{ts(now), name}
			m.State, m.DecidedAt = MappingApproved, &now
		}
		if n, err := affected(t.exec(q, args...)); err != nil {
			return err
		} else if n == 0 {
			return fmt.Errorf("no pending mapping of %s: %w", name, ErrNotFound)
		}
		return insertAudit(t, mappingAudit(a, action, m, now))
	})
	if err != nil {
		return Mapping{}, fmt.Errorf("%s %s: %w", strings.TrimPrefix(action, "host.mapping."), name, err)
	}
	return m, nil
}

// RemoveMapping removes name from its host, pending or approved. When it
// is the host's main name, the host's oldest other approved name becomes
// its main name (a rename: the host ID stays); ErrLastName when there is
// none. Certificates already issued keep their names until they renew.
func (s *Store) RemoveMapping(ctx context.Context, name string, now time.Time, a Audit) (Mapping, error) {
	name = lowerName(name)
	var m Mapping
	err := s.write(ctx, func(t *wtx) error {
		owner, _, err := mappingOwner(t, name)
		if errors.Is(err, sql.ErrNoRows) {
			return fmt.Errorf("no mapping of %s: %w", name, ErrNotFound)
		}
		if err != nil {
			return err
		}
		// Lock the host (PostgreSQL) so that removals and renewals of one
		// host are serialised, then read the mapping again under the lock.
		var main string
		var revoked sql.NullInt64
		if err := t.queryRow(t.pick(sqlLockHost), owner).Scan(&main, &revoked); err != nil {
			return err
		}
		m, err = scanMapping(t.queryRow(`SELECT `+mappingColumns+` FROM host_names m JOIN hosts h ON h.id = m.host_id WHERE m.name = ?`, name))
		if errors.Is(err, sql.ErrNoRows) {
			return fmt.Errorf("no mapping of %s: %w", name, ErrNotFound)
		}
		if err != nil {
			return err
		}
		if name == main {
			var next string
			err := t.queryRow(`SELECT name FROM host_names WHERE host_id = ? AND state = 'approved' AND name <> ?
				ORDER BY decided_at, name LIMIT 1`, m.HostID, name).Scan(&next)
			if errors.Is(err, sql.ErrNoRows) {
				return fmt.Errorf("%s: %w", name, ErrLastName)
			}
			if err != nil {
				return err
			}
			if _, err := t.exec("UPDATE hosts SET name = ? WHERE id = ?", next, m.HostID); err != nil {
				return err
			}
			a.Detail = withDetail(a.Detail, map[string]any{"main_name": next})
		}
		if _, err := t.exec("DELETE FROM host_names WHERE name = ?", name); err != nil {
			return err
		}
		return insertAudit(t, mappingAudit(a, "host.mapping.remove", m, now))
	})
	if err != nil {
		return Mapping{}, fmt.Errorf("remove mapping %s: %w", name, err)
	}
	return m, nil
}

func mappingAudit(a Audit, action string, m Mapping, now time.Time) Audit {
	a = withDefaults(a, action, "ok")
	if a.At.IsZero() {
		a.At = now
	}
	if a.HostID == "" {
		a.HostID = m.HostID
	}
	if a.Name == "" {
		a.Name = m.Name
	}
	a.Detail = withDetail(a.Detail, map[string]any{"state": string(m.State)})
	return a
}

const settingAutoApprove = "mapping_auto_approve"

// AutoApprove reports whether names hosts ask for are approved at once
// (off until set).
func (s *Store) AutoApprove(ctx context.Context) (bool, error) {
	var v string
	err := s.queryRow(ctx, "SELECT value FROM settings WHERE key = '"+settingAutoApprove+"'").Scan(&v)
	if errors.Is(err, sql.ErrNoRows) {
		return false, nil
	}
	if err != nil {
		return false, fmt.Errorf("read mapping auto-approve: %w", err)
	}
	return v == "on", nil
}

// SetAutoApprove turns auto-approval of asked names on or off, audited.
func (s *Store) SetAutoApprove(ctx context.Context, on bool, a Audit) error {
	v := "off"
	if on {
		v = "on"
	}
	err := s.write(ctx, func(t *wtx) error {
		if _, err := t.exec(`INSERT INTO settings (key, value) VALUES ('`+settingAutoApprove+`', ?)
			ON CONFLICT (key) DO UPDATE SET value = excluded.value`, v); err != nil {
			return err
		}
		a = withDefaults(a, "host.mapping.auto-approve", "ok")
		a.Detail = withDetail(a.Detail, map[string]any{"auto_approve": v})
		return insertAudit(t, a)
	})
	if err != nil {
		return fmt.Errorf("set mapping auto-approve %s: %w", v, err)
	}
	return nil
}

// commitNames writes, inside an issuance, the names the host asked for and
// does not hold (claims, in claimState), then checks that every name of the
// certificate is approved for the host.
func commitNames(t *wtx, hostID string, claims []string, claimState MappingState, certNames []string, now time.Time) error {
	for _, n := range claims {
		if err := claimName(t, lowerName(n), hostID, claimState, now); err != nil {
			return err
		}
	}
	for _, n := range certNames {
		owner, state, err := mappingOwner(t, n)
		switch {
		case errors.Is(err, sql.ErrNoRows):
			return fmt.Errorf("%s: %w", n, ErrNameWithdrawn)
		case err != nil:
			return err
		case owner != hostID:
			return fmt.Errorf("%s: %w", n, ErrNameConflict)
		case state != MappingApproved:
			return fmt.Errorf("%s: %w", n, ErrNameWithdrawn)
		}
	}
	return nil
}
