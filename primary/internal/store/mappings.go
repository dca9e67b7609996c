package store

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"slices"
	"strings"
	"time"
)

// Host name mappings (SPEC §8): a host ID carries one or more approved
// names; a name a known host asks for and does not hold yet is a pending
// claim until an admin approves it (or the auto-approve setting is on). A
// name belongs to at most one host ID — only an approved mapping owns it:
// the partial unique index host_names_approved, so that two hosts getting
// one name at once, on one node or on several, end with exactly one owner.
// A pending claim owns nothing and blocks nobody: several hosts may claim
// one name; when the name is approved for one of them (an issuance, an
// admin's approval or mapping), every other host's claim on it is dropped,
// audited. A host holds at most MaxPendingNames claims at once, so that a
// host cannot bury the admin's queue under names it asks for.

// MaxPendingNames bounds the pending claims of one host ID: an issuance
// that would leave more is refused (ErrTooManyPending). A host asks for at
// most 16 names at one request, its main name among them; 16 lets it wait
// for every other name it may ask for at once, and a little more.
const MaxPendingNames = 16

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
	// ErrNameConflict: the name is approved for another host ID.
	ErrNameConflict = errors.New("name belongs to another host ID")
	ErrLastName     = errors.New("it is the host's only approved name")
	// ErrNameWithdrawn: CommitIssuance found a name of the certificate no
	// longer approved for the host (removed meanwhile).
	ErrNameWithdrawn = errors.New("name is no longer approved for the host")
	// ErrTooManyPending: the issuance would leave the host more than
	// MaxPendingNames pending claims.
	ErrTooManyPending = fmt.Errorf("more than %d names pending for one host", MaxPendingNames)
	// ErrAmbiguous: several hosts claim the name; say which one.
	ErrAmbiguous = errors.New("several hosts claim the name")
)

const mappingColumns = "m.name, m.host_id, h.name, m.state, m.asked_at, m.decided_at"

func scanMapping(sc rowScanner) (Mapping, error) {
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
// and Limit page through them by name, then host ID (Limit 0: no limit):
// After is the last name seen, AfterHost the host ID of that last row
// ("": every row of a name after After).
type MappingFilter struct {
	HostID    string
	State     MappingState
	After     string
	AfterHost string
	Limit     int
}

// ListMappings lists mappings by name, then host ID (one name may be
// claimed by several hosts).
func (s *Store) ListMappings(ctx context.Context, f MappingFilter) ([]Mapping, error) {
	limit := int64(f.Limit)
	if limit <= 0 {
		limit = -1 // SQLite: no limit
		if s.d == postgresDialect {
			limit = 1 << 62
		}
	}
	rows, err := s.query(ctx, `SELECT `+mappingColumns+` FROM host_names m JOIN hosts h ON h.id = m.host_id
		WHERE (? = '' OR m.host_id = ?) AND (? = '' OR m.state = ?)
			AND (m.name > ? OR (m.name = ? AND ? <> '' AND m.host_id > ?))
		ORDER BY m.name, m.host_id LIMIT ?`, f.HostID, f.HostID, string(f.State), string(f.State),
		f.After, f.After, f.AfterHost, f.AfterHost, limit)
	if err != nil {
		return nil, fmt.Errorf("list mappings: %w", err)
	}
	return collectMappings(rows, "list mappings")
}

// MappingsFor returns, in one read, every mapping of hostID and every
// mapping of one of names (whoever holds or claims it). hostID "" selects
// only by name.
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
	rows, err := s.query(ctx, q+` ORDER BY m.name, m.host_id`, args...)
	if err != nil {
		return nil, fmt.Errorf("mappings of %s: %w", hostID, err)
	}
	return collectMappings(rows, "mappings of "+hostID)
}

func collectMappings(rows *rows, what string) ([]Mapping, error) {
	return collect(rows, what, scanMapping)
}

// nameLockClass is the first key of the PostgreSQL advisory locks taken on
// names ("hcnm"); the second is the name's hash.
const nameLockClass = 0x68636e6d

// lockNames serialises, until the transaction ends, every change of the
// mappings of names across PostgreSQL nodes: a claim, an approval and the
// dropping of the other claims it makes are one step for each name, so
// that no host's claim is written beside an approval it did not see.
// Locks are taken in name order (no deadlock between two of them); callers
// take them before any host row lock. SQLite's single writer serialises
// every write already.
func lockNames(t *wtx, names ...string) error {
	if t.tx == nil || len(names) == 0 {
		return nil
	}
	sorted := slices.Clone(names)
	slices.Sort(sorted)
	for _, n := range slices.Compact(sorted) {
		if _, err := t.exec(fmt.Sprintf("SELECT pg_advisory_xact_lock(%d, hashtext(?))", nameLockClass), n); err != nil {
			return fmt.Errorf("lock name %s: %w", n, err)
		}
	}
	return nil
}

// approvedOwner is the host ID name is approved for (sql.ErrNoRows: none).
func approvedOwner(t *wtx, name string) (hostID string, err error) {
	err = t.queryRow("SELECT host_id FROM host_names WHERE name = ? AND state = 'approved'", name).Scan(&hostID)
	return hostID, err
}

// mappingState is the state of hostID's mapping of name (sql.ErrNoRows: none).
func mappingState(t *wtx, name, hostID string) (MappingState, error) {
	var st string
	err := t.queryRow("SELECT state FROM host_names WHERE name = ? AND host_id = ?", name, hostID).Scan(&st)
	return MappingState(st), err
}

// claimName gives name to hostID in state, inside t (the name locked):
// ErrNameConflict when another host holds it approved; nothing to do when
// the host already has a mapping of it (in any state). An approved claim
// drops every other host's pending claim on the name (dropClaims, audited
// as by). The insert does nothing on a conflict rather than failing, so
// that a PostgreSQL transaction goes on to the question below.
func claimName(t *wtx, name, hostID string, state MappingState, now time.Time, by Audit) error {
	owner, err := approvedOwner(t, name)
	switch {
	case err == nil && owner != hostID:
		return fmt.Errorf("%s: %w", name, ErrNameConflict)
	case err != nil && !errors.Is(err, sql.ErrNoRows):
		return err
	}
	var decided any
	if state == MappingApproved {
		decided = ts(now)
	}
	n, err := affected(t.exec(`INSERT INTO host_names (name, host_id, state, asked_at, decided_at) VALUES (?, ?, ?, ?, ?)
		ON CONFLICT DO NOTHING`, name, hostID, string(state), ts(now), decided))
	if err != nil {
		return err
	}
	if n == 0 {
		// The host's own mapping, or (a node that does not lock names)
		// another host's approval committed meanwhile.
		if owner, err := approvedOwner(t, name); err == nil && owner != hostID {
			return fmt.Errorf("%s: %w", name, ErrNameConflict)
		} else if err != nil && !errors.Is(err, sql.ErrNoRows) {
			return err
		}
		return nil
	}
	if state == MappingApproved {
		return dropClaims(t, name, hostID, now, by)
	}
	return nil
}

// dropClaims deletes every pending claim on name but winner's, now that
// the name is approved for winner: a claim on a name another host owns can
// never be approved. Each is audited as a rejection, with the reason, as
// by (the operation that approved the name: its actor and source).
func dropClaims(t *wtx, name, winner string, now time.Time, by Audit) error {
	rows, err := t.query(`SELECT `+mappingColumns+` FROM host_names m JOIN hosts h ON h.id = m.host_id
		WHERE m.name = ? AND m.host_id <> ? AND m.state = 'pending' ORDER BY m.host_id`, name, winner)
	if err != nil {
		return err
	}
	var dropped []Mapping
	for rows.Next() {
		m, err := scanMapping(rows)
		if err != nil {
			rows.Close()
			return err
		}
		dropped = append(dropped, m)
	}
	if err := rows.Close(); err != nil {
		return err
	}
	if err := rows.Err(); err != nil {
		return err
	}
	if len(dropped) == 0 {
		return nil
	}
	if _, err := t.exec("DELETE FROM host_names WHERE name = ? AND host_id <> ? AND state = 'pending'", name, winner); err != nil {
		return err
	}
	for _, m := range dropped {
		a := Audit{Actor: by.Actor, Source: by.Source, Action: "host.mapping.reject", Node: by.Node,
			Detail: map[string]any{"reason": "approved for another host", "approved_for": winner}}
		if err := insertAudit(t, mappingAudit(a, a.Action, m, now)); err != nil {
			return err
		}
	}
	return nil
}

// lockHost reads hostID's main name under the host row lock (PostgreSQL),
// so that mapping changes and issuances of one host are serialised.
func lockHost(t *wtx, hostID string) (main string, err error) {
	var revoked sql.NullInt64
	err = t.queryRow(t.pick(sqlLockHost), hostID).Scan(&main, &revoked)
	if errors.Is(err, sql.ErrNoRows) {
		return "", fmt.Errorf("host %s: %w", hostID, ErrNotFound)
	}
	return main, err
}

// approve turns hostID's pending claim on name into its approved mapping,
// inside t (name and host locked): the name must still be free — approved
// for no other host — at this moment (ErrNameConflict), and every other
// host's claim on it is dropped.
func approve(t *wtx, name, hostID string, now time.Time, by Audit) error {
	if owner, err := approvedOwner(t, name); err == nil && owner != hostID {
		return fmt.Errorf("%s: %w", name, ErrNameConflict)
	} else if err != nil && !errors.Is(err, sql.ErrNoRows) {
		return err
	}
	n, err := affected(t.exec("UPDATE host_names SET state = 'approved', decided_at = ? WHERE name = ? AND host_id = ? AND state = 'pending'",
		ts(now), name, hostID))
	switch {
	case isConstraint(err):
		// Approved for another host by a writer that did not lock the name.
		return fmt.Errorf("%s: %w", name, ErrNameConflict)
	case err != nil:
		return err
	case n == 0:
		return fmt.Errorf("no pending mapping of %s for %s: %w", name, hostID, ErrNotFound)
	}
	return dropClaims(t, name, hostID, now, by)
}

// AddMapping gives name to the host as an approved name (an admin's
// mapping; a pending claim of that host is approved; the other hosts'
// claims on it are dropped). ErrNameConflict when another host holds it
// approved; ErrExists when the host holds it approved already; ErrNotFound
// for an unknown host.
func (s *Store) AddMapping(ctx context.Context, name, hostID string, now time.Time, a Audit) (Mapping, error) {
	name, err := storeName(name)
	if err != nil {
		return Mapping{}, fmt.Errorf("add mapping: %w", err)
	}
	var m Mapping
	err = s.write(ctx, func(t *wtx) error {
		if err := lockNames(t, name); err != nil {
			return err
		}
		main, err := lockHost(t, hostID)
		if err != nil {
			return err
		}
		state, err := mappingState(t, name, hostID)
		switch {
		case errors.Is(err, sql.ErrNoRows):
			if err := claimName(t, name, hostID, MappingApproved, now, a); err != nil {
				return err
			}
		case err != nil:
			return err
		case state == MappingApproved:
			return fmt.Errorf("%s is already a name of %s: %w", name, hostID, ErrExists)
		default:
			if err := approve(t, name, hostID, now, a); err != nil {
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

// pickMapping reads the mapping of name an admin's decision is about:
// hostID's when given; else, with pendingOnly, the one pending claim on
// the name, and without, the name's approved mapping or else its one
// pending claim. ErrNotFound when there is none, ErrAmbiguous when several
// hosts claim the name and hostID does not say which.
func pickMapping(t *wtx, name, hostID string, pendingOnly bool) (Mapping, error) {
	q := `SELECT ` + mappingColumns + ` FROM host_names m JOIN hosts h ON h.id = m.host_id
		WHERE m.name = ? AND (? = '' OR m.host_id = ?)`
	if pendingOnly {
		q += ` AND m.state = 'pending'`
	}
	rows, err := t.query(q+` ORDER BY m.state, m.host_id`, name, hostID, hostID) // 'approved' < 'pending'
	if err != nil {
		return Mapping{}, err
	}
	var ms []Mapping
	for rows.Next() {
		m, err := scanMapping(rows)
		if err != nil {
			rows.Close()
			return Mapping{}, err
		}
		ms = append(ms, m)
	}
	if err := rows.Close(); err != nil {
		return Mapping{}, err
	}
	if err := rows.Err(); err != nil {
		return Mapping{}, err
	}
	switch {
	case len(ms) == 0:
		return Mapping{}, ErrNotFound
	case len(ms) == 1, ms[0].State == MappingApproved:
		return ms[0], nil
	}
	hosts := make([]string, len(ms))
	for i, m := range ms {
		hosts[i] = m.HostID
	}
	return Mapping{}, fmt.Errorf("%s is claimed by %s: %w", name, strings.Join(hosts, ", "), ErrAmbiguous)
}

// DecideMapping approves or rejects (deletes) a pending claim on name:
// hostID's, or when hostID is "" the name's only one (ErrAmbiguous when
// several hosts claim it). An approval checks, atomically, that the name
// is still approved for no other host (ErrNameConflict) and drops the
// other hosts' claims on it. ErrNotFound when there is no such claim.
func (s *Store) DecideMapping(ctx context.Context, name, hostID string, approved bool, now time.Time, a Audit) (Mapping, error) {
	name = lowerName(name)
	action := "host.mapping.reject"
	if approved {
		action = "host.mapping.approve"
	}
	var m Mapping
	err := s.write(ctx, func(t *wtx) error {
		if err := lockNames(t, name); err != nil {
			return err
		}
		var err error
		if m, err = pickMapping(t, name, hostID, true); errors.Is(err, ErrNotFound) {
			return fmt.Errorf("no pending mapping of %s: %w", name, ErrNotFound)
		} else if err != nil {
			return err
		}
		if _, err := lockHost(t, m.HostID); err != nil {
			return err
		}
		if approved {
			if err := approve(t, name, m.HostID, now, a); err != nil {
				return err
			}
			m.State, m.DecidedAt = MappingApproved, &now
		} else if n, err := affected(t.exec("DELETE FROM host_names WHERE name = ? AND host_id = ? AND state = 'pending'", name, m.HostID)); err != nil {
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

// RemoveMapping removes name from a host: hostID's mapping of it, or when
// hostID is "" the name's approved mapping, or else its only pending claim
// (ErrAmbiguous when several hosts claim it). When it is the host's main
// name, the host's oldest other approved name becomes its main name (a
// rename: the host ID stays); ErrLastName when there is none. Certificates
// already issued keep their names until they renew.
func (s *Store) RemoveMapping(ctx context.Context, name, hostID string, now time.Time, a Audit) (Mapping, error) {
	name = lowerName(name)
	var m Mapping
	err := s.write(ctx, func(t *wtx) error {
		if err := lockNames(t, name); err != nil {
			return err
		}
		picked, err := pickMapping(t, name, hostID, false)
		if errors.Is(err, ErrNotFound) {
			return fmt.Errorf("no mapping of %s: %w", name, ErrNotFound)
		}
		if err != nil {
			return err
		}
		// Lock the host (PostgreSQL) so that removals and renewals of one
		// host are serialised, then read the mapping again under the lock.
		main, err := lockHost(t, picked.HostID)
		if err != nil {
			return err
		}
		m, err = scanMapping(t.queryRow(`SELECT `+mappingColumns+` FROM host_names m JOIN hosts h ON h.id = m.host_id
			WHERE m.name = ? AND m.host_id = ?`, name, picked.HostID))
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
		if _, err := t.exec("DELETE FROM host_names WHERE name = ? AND host_id = ?", name, m.HostID); err != nil {
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
// does not hold (claims, in claimState: an approved one drops the other
// hosts' claims on it, audited as by), refuses to leave the host more than
// MaxPendingNames pending claims (ErrTooManyPending), then checks that
// every name of the certificate is approved for the host. The names are
// locked already (lockNames).
func commitNames(t *wtx, hostID string, claims []string, claimState MappingState, certNames []string, now time.Time, by Audit) error {
	for _, n := range claims {
		if err := claimName(t, lowerName(n), hostID, claimState, now, by); err != nil {
			return err
		}
	}
	if claimState == MappingPending && len(claims) > 0 {
		var pending int
		if err := t.queryRow("SELECT COUNT(*) FROM host_names WHERE host_id = ? AND state = 'pending'", hostID).Scan(&pending); err != nil {
			return err
		}
		if pending > MaxPendingNames {
			return fmt.Errorf("host %s would have %d: %w", hostID, pending, ErrTooManyPending)
		}
	}
	for _, n := range certNames {
		state, err := mappingState(t, n, hostID)
		switch {
		case errors.Is(err, sql.ErrNoRows):
			if owner, oerr := approvedOwner(t, n); oerr == nil && owner != hostID {
				return fmt.Errorf("%s: %w", n, ErrNameConflict)
			}
			return fmt.Errorf("%s: %w", n, ErrNameWithdrawn)
		case err != nil:
			return err
		case state != MappingApproved:
			return fmt.Errorf("%s: %w", n, ErrNameWithdrawn)
		}
	}
	return nil
}
