package store

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"math/big"
	"time"
)

// What several primary nodes on one database share beyond the fleet's
// state proper (schema version 7): the names of every node, reserved
// fleet-wide; the latest CRL of each issuing CA, so that no node serves a
// CRL older than one another node served; and the CA material a rotation
// publishes, sealed by the caller (this package never sees a key).

// Topics of the shared records.
const (
	// TopicNames: a node recorded names (RecordPrimaryNames).
	TopicNames Topic = "names"
	// TopicCA: a node published new CA material (PublishCA).
	TopicCA Topic = "ca"
)

// ErrCAConflict is returned by PublishCA when the latest generation is not
// the one the caller built on: another node published meanwhile.
var ErrCAConflict = errors.New("another node published CA material meanwhile")

// RecordPrimaryNames adds names (canonical, as package ca keeps them) to
// the names of the fleet's primary nodes, recorded as node's when new,
// and tells every node.
func (s *Store) RecordPrimaryNames(ctx context.Context, node string, names []string, now time.Time) error {
	if len(names) == 0 {
		return nil
	}
	err := s.write(ctx, func(t *wtx) error {
		added := false
		for _, n := range names {
			k, err := affected(t.exec("INSERT INTO primary_names (name, node, added_at) VALUES (?, ?, ?) ON CONFLICT (name) DO NOTHING",
				n, node, ts(nowOr(now))))
			if err != nil {
				return err
			}
			added = added || k > 0
		}
		if !added {
			return nil
		}
		return t.notify(TopicNames)
	})
	if err != nil {
		return fmt.Errorf("record the primary's names: %w", err)
	}
	return nil
}

// PrimaryNames is every name any primary node recorded, sorted.
func (s *Store) PrimaryNames(ctx context.Context) ([]string, error) {
	rows, err := s.query(ctx, "SELECT name FROM primary_names ORDER BY name")
	if err != nil {
		return nil, fmt.Errorf("list the primary's names: %w", err)
	}
	defer rows.Close()
	var out []string
	for rows.Next() {
		var n string
		if err := rows.Scan(&n); err != nil {
			return nil, fmt.Errorf("list the primary's names: %w", err)
		}
		out = append(out, n)
	}
	if err := classify(rows.Err()); err != nil {
		return nil, fmt.Errorf("list the primary's names: %w", err)
	}
	return out, nil
}

// CRLSnapshot allocates the next CRL number and calls fn with every
// certificate revoked and not expired at now (as EachRevoked), in one
// transaction: the number's row stays locked until the list is read, so of
// two CRLs the one with the higher number lists every revocation the other
// lists (on PostgreSQL, whichever node makes them). start is called before
// each attempt (a retried transaction lists again from the start). SQLite
// serves one node, whose regenerations run one at a time: there the two
// are read one after the other.
func (s *Store) CRLSnapshot(ctx context.Context, now time.Time, start func(), fn func(Revocation) error) (*big.Int, error) {
	if s.d != postgresDialect {
		n, err := s.NextCRLNumber(ctx)
		if err != nil {
			return nil, err
		}
		start()
		if err := s.EachRevoked(ctx, now, fn); err != nil {
			return nil, err
		}
		return n, nil
	}
	var n int64
	floor := time.Now().UnixMilli()
	err := s.write(ctx, func(t *wtx) error {
		start()
		if err := t.queryRow(t.pick(sqlNextCRLNumber), floor).Scan(&n); err != nil {
			return err
		}
		rows, err := t.query("SELECT serial, revoked_at, revoke_reason, der FROM certs WHERE revoked_at IS NOT NULL AND not_after > ?", ts(now))
		if err != nil {
			return err
		}
		defer rows.Close()
		var (
			r       Revocation
			revoked int64
			der     sql.RawBytes
		)
		for rows.Next() {
			if err := rows.Scan(&r.Serial, &revoked, &r.Reason, &der); err != nil {
				return err
			}
			r.RevokedAt, r.DER = fromTS(revoked), der
			if err := fn(r); err != nil {
				return err
			}
		}
		return rows.Err()
	})
	if err != nil {
		return nil, fmt.Errorf("CRL snapshot: %w", err)
	}
	return big.NewInt(n), nil
}

// StoredCRL is the latest CRL of one issuing CA, as a node published it.
type StoredCRL struct {
	Issuer string
	Number int64
	DER    []byte
}

// PublishCRLs keeps each CRL as its issuer's latest, unless the one stored
// already has a higher number (another node published a newer one).
func (s *Store) PublishCRLs(ctx context.Context, crls []StoredCRL) error {
	err := s.write(ctx, func(t *wtx) error {
		for _, c := range crls {
			if _, err := t.exec(`INSERT INTO crls (issuer, number, der) VALUES (?, ?, ?)
				ON CONFLICT (issuer) DO UPDATE SET number = excluded.number, der = excluded.der WHERE crls.number < excluded.number`,
				c.Issuer, c.Number, c.DER); err != nil {
				return err
			}
		}
		return nil
	})
	if err != nil {
		return fmt.Errorf("publish CRLs: %w", err)
	}
	return nil
}

// NewerCRL is the issuer's latest stored CRL when its number is above
// number; ok is false when none is (or none is stored).
func (s *Store) NewerCRL(ctx context.Context, issuer string, number int64) (c StoredCRL, ok bool, err error) {
	c.Issuer = issuer
	err = s.queryRow(ctx, "SELECT number, der FROM crls WHERE issuer = ? AND number > ?", issuer, number).Scan(&c.Number, &c.DER)
	switch {
	case errors.Is(err, sql.ErrNoRows):
		return StoredCRL{}, false, nil
	case err != nil:
		return StoredCRL{}, false, fmt.Errorf("read the latest CRL of %s: %w", issuer, err)
	}
	return c, true, nil
}

// CAMaterial is one generation of the fleet's CA material, sealed.
type CAMaterial struct {
	Generation int64
	Node       string
	CreatedAt  time.Time
	Sealed     []byte
}

// PublishCA records the next generation of the fleet's CA material: prev
// must be the latest generation (0: none yet), else ErrCAConflict. seal
// is given the new generation number (to bind into the sealed bytes) and
// returns the sealed material. Every node is told.
func (s *Store) PublishCA(ctx context.Context, prev int64, node string, now time.Time, seal func(generation int64) ([]byte, error)) (int64, error) {
	gen := prev + 1
	err := s.write(ctx, func(t *wtx) error {
		var latest int64
		if err := t.queryRow("SELECT COALESCE(MAX(generation), 0) FROM ca_material").Scan(&latest); err != nil {
			return err
		}
		if latest != prev {
			return fmt.Errorf("%w (generation %d, this node built on %d)", ErrCAConflict, latest, prev)
		}
		sealed, err := seal(gen)
		if err != nil {
			return err
		}
		if _, err := t.exec("INSERT INTO ca_material (generation, node, created_at, sealed) VALUES (?, ?, ?, ?)",
			gen, node, ts(nowOr(now)), sealed); err != nil {
			if isConstraint(err) {
				return fmt.Errorf("%w (generation %d)", ErrCAConflict, gen)
			}
			return err
		}
		return t.notify(TopicCA)
	})
	if err != nil {
		return 0, fmt.Errorf("publish the CA: %w", err)
	}
	return gen, nil
}

// LatestCA is the latest generation of the fleet's CA material; ok is
// false when none was published.
func (s *Store) LatestCA(ctx context.Context) (m CAMaterial, ok bool, err error) {
	var at int64
	err = s.queryRow(ctx, "SELECT generation, node, created_at, sealed FROM ca_material ORDER BY generation DESC LIMIT 1").
		Scan(&m.Generation, &m.Node, &at, &m.Sealed)
	switch {
	case errors.Is(err, sql.ErrNoRows):
		return CAMaterial{}, false, nil
	case err != nil:
		return CAMaterial{}, false, fmt.Errorf("read the fleet's CA: %w", err)
	}
	m.CreatedAt = fromTS(at)
	return m, true, nil
}

// FleetKeyID is the identifier of the fleet key recorded by the first
// node that had one ("" when none is).
func (s *Store) FleetKeyID(ctx context.Context) (string, error) {
	var id string
	err := s.queryRow(ctx, "SELECT value FROM settings WHERE key = 'fleet_key_id'").Scan(&id)
	if errors.Is(err, sql.ErrNoRows) {
		return "", nil
	}
	if err != nil {
		return "", fmt.Errorf("read the fleet key's id: %w", err)
	}
	return id, nil
}

// ClaimFleetKey records id as the fleet key's when none is recorded and
// returns the one recorded (id, or another node's).
func (s *Store) ClaimFleetKey(ctx context.Context, id string) (string, error) {
	var got string
	err := s.write(ctx, func(t *wtx) error {
		if _, err := t.exec("INSERT INTO settings (key, value) VALUES ('fleet_key_id', ?) ON CONFLICT (key) DO NOTHING", id); err != nil {
			return err
		}
		return t.queryRow("SELECT value FROM settings WHERE key = 'fleet_key_id'").Scan(&got)
	})
	if err != nil {
		return "", fmt.Errorf("record the fleet key's id: %w", err)
	}
	return got, nil
}
