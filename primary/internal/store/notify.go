package store

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"slices"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
)

// Several primary nodes on one PostgreSQL database keep what they cache in
// memory (the level, the CRL) in step through PostgreSQL's LISTEN/NOTIFY:
// the write that changes it notifies, in its own transaction (so only a
// committed change is announced), and every node's Listen hears it.

// Topic names what changed.
type Topic string

const (
	// TopicLevel: the deployment security level changed.
	TopicLevel Topic = "level"
	// TopicRevoked: certificates were revoked (a revocation or a reissue).
	TopicRevoked Topic = "revoked"
	// TopicResync: the listener (re)connected; notifications sent while it
	// was away are lost, so anything may have changed.
	TopicResync Topic = "resync"
)

// notifyChannel is the one PostgreSQL channel the nodes talk on; the
// payload is the Topic.
const notifyChannel = "hostcert"

// Timing of Listen.
const (
	listenIdle    = 10 * time.Second // ping the listening connection after this much silence
	listenPing    = 5 * time.Second
	listenBackoff = time.Second // first pause before reconnecting, doubled up to listenMaxWait
	listenMaxWait = 10 * time.Second
)

// Listen calls on with every Topic any node (this one included) commits,
// until ctx ends; then it returns nil. It calls on(TopicResync) each time
// its connection is (re)established, since notifications sent while it was
// away are lost. A broken connection (found by a ping after listenIdle of
// silence) is reported to lost and re-established with backoff. On SQLite
// (one node) there is nobody else: Listen waits for ctx.
func (s *Store) Listen(ctx context.Context, on func(Topic), lost func(error)) error {
	if s.d != postgresDialect {
		<-ctx.Done()
		return nil
	}
	cfg, err := pgx.ParseConfig(s.dsn)
	if err != nil {
		return fmt.Errorf("listen: cannot parse the PostgreSQL DSN %s", RedactDSN(s.dsn))
	}
	if cfg.ConnectTimeout == 0 {
		cfg.ConnectTimeout = pgConnectTimeout
	}
	wait := listenBackoff
	for {
		err := listenOnce(ctx, cfg, on, func() { wait = listenBackoff })
		if ctx.Err() != nil {
			return nil
		}
		lost(classify(err))
		select {
		case <-ctx.Done():
			return nil
		case <-time.After(wait):
		}
		wait = min(2*wait, listenMaxWait)
	}
}

// listenOnce connects, listens and delivers until the connection fails.
func listenOnce(ctx context.Context, cfg *pgx.ConnConfig, on func(Topic), connected func()) error {
	conn, err := pgx.ConnectConfig(ctx, cfg)
	if err != nil {
		return fmt.Errorf("listen: connect: %w", err)
	}
	defer conn.Close(context.WithoutCancel(ctx))
	if _, err := conn.Exec(ctx, "LISTEN "+notifyChannel); err != nil {
		return fmt.Errorf("listen: %w", err)
	}
	connected()
	on(TopicResync)
	for {
		wctx, cancel := context.WithTimeout(ctx, listenIdle)
		n, err := conn.WaitForNotification(wctx)
		cancel()
		switch {
		case err == nil:
			on(Topic(n.Payload))
			continue
		case ctx.Err() != nil:
			return ctx.Err()
		case !errors.Is(err, context.DeadlineExceeded) && !pgconn.Timeout(err):
			return fmt.Errorf("listen: %w", err)
		}
		// Silence: make sure the connection is still there.
		pctx, cancel := context.WithTimeout(ctx, listenPing)
		err = conn.Ping(pctx)
		cancel()
		if err != nil {
			return fmt.Errorf("listen: ping: %w", err)
		}
	}
}

// Fleet identity: the SHA-256 fingerprint of the CA that signs for the
// database, recorded by the first node's init. A node with another CA (a
// second init against the same database, a join with the wrong files) is
// refused rather than allowed to sign for a fleet that does not trust it.

// ErrOtherCA means the database belongs to a fleet with another CA.
var ErrOtherCA = errors.New("the database belongs to another CA")

// FleetCA is the fingerprint of the fleet's CA, "" when none is recorded.
func (s *Store) FleetCA(ctx context.Context) (string, error) {
	var fp string
	err := s.queryRow(ctx, "SELECT value FROM settings WHERE key = 'ca_fingerprint'").Scan(&fp)
	if errors.Is(err, sql.ErrNoRows) {
		return "", nil
	}
	if err != nil {
		return "", fmt.Errorf("read the fleet's CA: %w", err)
	}
	return fp, nil
}

// ClaimCA records fingerprint as the fleet's CA when none is recorded.
// When another one is, it answers ErrOtherCA, unless that one is among
// trusted (the older roots this CA still trusts: a root rotation), which
// fingerprint then replaces.
func (s *Store) ClaimCA(ctx context.Context, fingerprint string, trusted []string) error {
	var got string
	err := s.write(ctx, func(t *wtx) error {
		if _, err := t.exec("INSERT INTO settings (key, value) VALUES ('ca_fingerprint', ?) ON CONFLICT (key) DO NOTHING", fingerprint); err != nil {
			return err
		}
		if err := t.queryRow("SELECT value FROM settings WHERE key = 'ca_fingerprint'").Scan(&got); err != nil {
			return err
		}
		if got == fingerprint || !slices.Contains(trusted, got) {
			return nil
		}
		got = fingerprint
		_, err := t.exec("UPDATE settings SET value = ? WHERE key = 'ca_fingerprint'", fingerprint)
		return err
	})
	if err != nil {
		return fmt.Errorf("record the fleet's CA: %w", err)
	}
	if got != fingerprint {
		return fmt.Errorf("%w (%s), not to this one (%s)", ErrOtherCA, got, fingerprint)
	}
	return nil
}
