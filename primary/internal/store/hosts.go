package store

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"time"

	"github.com/hostcert/hostcert/common/protocol"
)

// Level is the deployment security level; protocol.DefaultLevel until set.
func (s *Store) Level(ctx context.Context) (protocol.Level, error) {
	var v string
	err := s.queryRow(ctx, "SELECT value FROM settings WHERE key = 'level'").Scan(&v)
	if errors.Is(err, sql.ErrNoRows) {
		return protocol.DefaultLevel, nil
	}
	if err != nil {
		return "", fmt.Errorf("read level: %w", err)
	}
	l, err := protocol.ParseLevel(v)
	if err != nil {
		return "", fmt.Errorf("read level: %w", err)
	}
	return l, nil
}

// SetLevel changes the deployment security level and writes a in the same
// transaction.
func (s *Store) SetLevel(ctx context.Context, l protocol.Level, a Audit) error {
	if _, err := protocol.ParseLevel(string(l)); err != nil {
		return fmt.Errorf("set level: %w", err)
	}
	err := s.write(ctx, func(t *wtx) error {
		if _, err := t.exec(`INSERT INTO settings (key, value) VALUES ('level', ?)
			ON CONFLICT (key) DO UPDATE SET value = excluded.value`, string(l)); err != nil {
			return err
		}
		if err := t.notify(TopicLevel); err != nil {
			return err
		}
		a = withDefaults(a, "level.set", "ok")
		a.Detail = withDetail(a.Detail, map[string]any{"level": string(l)})
		return insertAudit(t, a)
	})
	if err != nil {
		return fmt.Errorf("set level %s: %w", l, err)
	}
	return nil
}

// Host is a name that has a host ID, or (with ID "") a registry name that
// has none yet.
type Host struct {
	ID           string
	Name         string
	Known        bool
	CreatedAt    time.Time
	RevokedAt    *time.Time // host-level revocation; cleared by a reissue
	ReissueUntil *time.Time // auto-reissue window end, nil when none
	// SeenAt is the host's last contact: its last issuance or renewal, or
	// the last request made with one of its certificates (written at most
	// every SeenEvery). Zero for a registry name without a host ID.
	SeenAt time.Time
}

// AddKnown adds names to the host registry (lower-cased; idempotent per
// name) and returns how many were new.
func (s *Store) AddKnown(ctx context.Context, names []string, a Audit) (added int, err error) {
	clean := make([]string, 0, len(names))
	for _, n := range names {
		n, err := storeName(n)
		if err != nil {
			return 0, fmt.Errorf("add known names: %w", err)
		}
		clean = append(clean, n)
	}
	now := nowOr(a.At)
	err = s.write(ctx, func(t *wtx) error {
		added = 0
		for _, n := range clean {
			k, err := affected(t.exec("INSERT INTO known_names (name, added_at) VALUES (?, ?) ON CONFLICT DO NOTHING", n, ts(now)))
			if err != nil {
				return err
			}
			added += int(k)
		}
		a = withDefaults(a, "host.add", "ok")
		a.Detail = withDetail(a.Detail, map[string]any{"names": len(clean), "added": added})
		return insertAudit(t, a)
	})
	if err != nil {
		return 0, fmt.Errorf("add known names: %w", err)
	}
	return added, nil
}

// RemoveKnown removes name from the registry (ErrNotFound when absent). A
// host ID the name already has is kept.
func (s *Store) RemoveKnown(ctx context.Context, name string, a Audit) error {
	name = lowerName(name)
	err := s.write(ctx, func(t *wtx) error {
		n, err := affected(t.exec("DELETE FROM known_names WHERE name = ?", name))
		if err != nil {
			return err
		}
		if n == 0 {
			return ErrNotFound
		}
		a = withDefaults(a, "host.remove", "ok")
		if a.Name == "" {
			a.Name = name
		}
		return insertAudit(t, a)
	})
	if err != nil {
		return fmt.Errorf("remove known name %s: %w", name, err)
	}
	return nil
}

// IsKnown reports whether name is in the registry.
func (s *Store) IsKnown(ctx context.Context, name string) (bool, error) {
	var n int
	if err := s.queryRow(ctx, "SELECT COUNT(*) FROM known_names WHERE name = ?", lowerName(name)).Scan(&n); err != nil {
		return false, fmt.Errorf("is known %s: %w", name, err)
	}
	return n > 0, nil
}

// hostColumns reads a host; it is known when one of its approved names is
// in the registry (a name known through a mapping counts as known).
const hostColumns = `h.id, h.name, h.created_at, h.revoked_at, h.reissue_until,
	EXISTS (SELECT 1 FROM host_names m JOIN known_names k ON k.name = m.name
		WHERE m.host_id = h.id AND m.state = 'approved'), h.seen_at`

func scanHost(sc rowScanner) (Host, error) {
	var (
		h               Host
		created, seen   int64
		revoked, window sql.NullInt64
	)
	if err := sc.Scan(&h.ID, &h.Name, &created, &revoked, &window, &h.Known, &seen); err != nil {
		return Host{}, err
	}
	h.CreatedAt = fromTS(created)
	if seen != 0 {
		h.SeenAt = fromTS(seen)
	}
	h.RevokedAt = fromNullTS(revoked)
	h.ReissueUntil = fromNullTS(window)
	return h, nil
}

// HostByName returns the host that name belongs to (its main name or any
// other approved name); ErrNotFound when the name has no host ID yet
// (whether it is known is IsKnown's answer).
func (s *Store) HostByName(ctx context.Context, name string) (Host, error) {
	h, err := scanHost(s.queryRow(ctx, "SELECT "+hostColumns+` FROM host_names m JOIN hosts h ON h.id = m.host_id
		WHERE m.name = ? AND m.state = 'approved'`, lowerName(name)))
	if errors.Is(err, sql.ErrNoRows) {
		return Host{}, fmt.Errorf("host %s: %w", name, ErrNotFound)
	}
	if err != nil {
		return Host{}, fmt.Errorf("host %s: %w", name, err)
	}
	return h, nil
}

// LookupName answers both HostByName and IsKnown in one read: the host that
// name belongs to through an approved mapping (Name is then the host's main
// name; Known when any of its approved names is in the registry), or, when
// the name has no host ID yet, a Host with ID "" and only Name and Known set.
func (s *Store) LookupName(ctx context.Context, name string) (Host, error) {
	h, err := scanHost(s.queryRow(ctx, `SELECT COALESCE(h.id, ''), COALESCE(h.name, q.name), COALESCE(h.created_at, 0), h.revoked_at, h.reissue_until,
			EXISTS (SELECT 1 FROM known_names k WHERE k.name = q.name)
			OR EXISTS (SELECT 1 FROM host_names m2 JOIN known_names k ON k.name = m2.name
				WHERE m2.host_id = h.id AND m2.state = 'approved'),
			COALESCE(h.seen_at, 0)
		FROM (SELECT CAST(? AS TEXT) AS name) q
		LEFT JOIN host_names m ON m.name = q.name AND m.state = 'approved'
		LEFT JOIN hosts h ON h.id = m.host_id`, lowerName(name)))
	if err != nil {
		return Host{}, fmt.Errorf("look up %s: %w", name, err)
	}
	if h.ID == "" {
		h.CreatedAt = time.Time{}
	}
	return h, nil
}

// HostByID returns the host with that ID (ErrNotFound).
func (s *Store) HostByID(ctx context.Context, id string) (Host, error) {
	h, err := scanHost(s.queryRow(ctx, "SELECT "+hostColumns+" FROM hosts h WHERE h.id = ?", id))
	if errors.Is(err, sql.ErrNoRows) {
		return Host{}, fmt.Errorf("host %s: %w", id, ErrNotFound)
	}
	if err != nil {
		return Host{}, fmt.Errorf("host %s: %w", id, err)
	}
	return h, nil
}

// ListHosts lists every host with an ID and every registry name without
// one (ID ""; CreatedAt is when it was added to the registry), by name.
func (s *Store) ListHosts(ctx context.Context) ([]Host, error) {
	return queryAll(ctx, s, "list hosts", scanHost, `
		SELECT `+hostColumns+` FROM hosts h
		UNION ALL
		SELECT '', k.name, k.added_at, NULL, NULL, TRUE, 0 FROM known_names k
			WHERE NOT EXISTS (SELECT 1 FROM host_names m WHERE m.name = k.name AND m.state = 'approved')
		ORDER BY 2`)
}

// SetReissueWindow opens an auto-reissue window for the host until the
// given time; a zero until closes the window. ErrNotFound for an unknown ID.
func (s *Store) SetReissueWindow(ctx context.Context, hostID string, until time.Time, a Audit) error {
	var v any
	if !until.IsZero() {
		v = ts(until)
	}
	err := s.write(ctx, func(t *wtx) error {
		n, err := affected(t.exec("UPDATE hosts SET reissue_until = ? WHERE id = ?", v, hostID))
		if err != nil {
			return err
		}
		if n == 0 {
			return ErrNotFound
		}
		a = withDefaults(a, "host.allow-reissue", "ok")
		if a.HostID == "" {
			a.HostID = hostID
		}
		if until.IsZero() {
			a.Detail = withDetail(a.Detail, map[string]any{"until": nil})
		} else {
			a.Detail = withDetail(a.Detail, map[string]any{"until": until.UTC()})
		}
		return insertAudit(t, a)
	})
	if err != nil {
		return fmt.Errorf("set reissue window of %s: %w", hostID, err)
	}
	return nil
}
