package store

import (
	"context"
	"database/sql"
	"database/sql/driver"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"net"
	"net/url"
	"regexp"
	"strconv"
	"strings"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
	"github.com/jackc/pgx/v5/stdlib"
)

// PostgreSQL backend: several primary nodes share one database. Every write
// operation is its own READ COMMITTED transaction; what must be exact across
// nodes is made so by the database, not by the process:
//   - a token's use is counted by one conditional UPDATE … WHERE uses <
//     max_uses (the row lock makes concurrent redeemers queue, and each
//     re-checks the condition on the row as committed), with the CHECK
//     (uses <= max_uses) behind it;
//   - serials are unique by the primary key of certs;
//   - the CRL number is one locked row that only grows (GREATEST);
//   - a renewal or reissue locks its host row (SELECT … FOR UPDATE) first,
//     so revocations and issuances of one host are serialised fleet-wide.
//
// Transactions that fail with a serialisation failure or a deadlock, or lose
// their connection before COMMIT was sent, are retried (the database rolled
// them back); a connection lost during COMMIT is not (the outcome is
// unknown) and reports ErrUnavailable.

// ErrUnavailable means the store could not be reached (refused, lost or
// timed-out connection, server shutting down). Nothing was written; the
// request may be retried later. The API answers 503 store_unavailable.
var ErrUnavailable = errors.New("store unavailable")

// Limits of the PostgreSQL backend.
const (
	pgConnectTimeout = 5 * time.Second  // when the DSN sets none
	pgWriteTimeout   = 15 * time.Second // one write transaction, from BEGIN to COMMIT
	pgWriteAttempts  = 4
	pgMaxConns       = 32
)

// IsPostgres reports whether target names a PostgreSQL database (a
// postgres:// or postgresql:// URL) rather than a SQLite file.
func IsPostgres(target string) bool {
	t := strings.ToLower(strings.TrimSpace(target))
	return strings.HasPrefix(t, "postgres://") || strings.HasPrefix(t, "postgresql://")
}

// OpenTarget opens the store target names: a PostgreSQL database for a
// postgres:// or postgresql:// URL, else the SQLite file at that path.
func OpenTarget(ctx context.Context, target string) (*Store, error) {
	if IsPostgres(target) {
		return OpenPostgres(ctx, target)
	}
	return Open(ctx, target)
}

// OpenPostgres connects to the PostgreSQL database of dsn (a URL; its
// sslmode, sslrootcert, … are pgx's, so sslmode=verify-full checks the
// server's certificate and name), applies pending migrations and returns
// the store. A server it cannot reach is a *ReachError (ErrUnavailable).
// No error or log line carries the DSN's password.
func OpenPostgres(ctx context.Context, dsn string) (*Store, error) {
	cfg, err := pgx.ParseConfig(dsn)
	if err != nil {
		// pgx's message may quote the DSN; only the redacted one is shown.
		return nil, fmt.Errorf("store: cannot parse the PostgreSQL DSN %s (want postgres://USER@HOST:PORT/DB?sslmode=verify-full)", RedactDSN(dsn))
	}
	if cfg.ConnectTimeout == 0 {
		cfg.ConnectTimeout = pgConnectTimeout
	}
	db := stdlib.OpenDB(*cfg)
	db.SetMaxOpenConns(pgMaxConns)
	db.SetMaxIdleConns(pgMaxConns)
	db.SetConnMaxIdleTime(5 * time.Minute)
	db.SetConnMaxLifetime(time.Hour)
	pctx, cancel := context.WithTimeout(ctx, cfg.ConnectTimeout+time.Second)
	defer cancel()
	if err := db.PingContext(pctx); err != nil {
		db.Close()
		return nil, &ReachError{Addr: pgAddr(cfg), Err: err}
	}
	if err := migratePG(ctx, db, pgMigrations); err != nil {
		db.Close()
		return nil, fmt.Errorf("store: postgres at %s: %w", pgAddr(cfg), classify(err))
	}
	s := &Store{
		d:     postgresDialect,
		path:  RedactDSN(dsn),
		rdb:   db,
		done:  make(chan struct{}),
		stats: &stats{},
		node:  new(atomic.Pointer[string]),
		dsn:   dsn,
	}
	if err := s.fillKeyAlgs(ctx); err != nil {
		db.Close()
		return nil, fmt.Errorf("store: postgres at %s: %w", pgAddr(cfg), err)
	}
	return s, nil
}

// ReachError is a PostgreSQL server that did not accept a connection.
type ReachError struct {
	Addr string // host:port
	Err  error
}

// Error is one line: "store: cannot reach postgres at 127.0.0.1:5 (connection refused)".
func (e *ReachError) Error() string {
	return fmt.Sprintf("store: cannot reach postgres at %s (%s)", e.Addr, reason(e.Err))
}

func (e *ReachError) Unwrap() []error { return []error{ErrUnavailable, e.Err} }

// reason is the root cause of a connection failure in a few words.
func reason(err error) string {
	var pe *pgconn.PgError
	if errors.As(err, &pe) {
		return pe.Message
	}
	var errno syscall.Errno
	if errors.As(err, &errno) {
		return errno.Error()
	}
	var dns *net.DNSError
	if errors.As(err, &dns) {
		return dns.Err
	}
	if pgconn.Timeout(err) || errors.Is(err, context.DeadlineExceeded) {
		return "timed out"
	}
	var ne net.Error
	if errors.As(err, &ne) && ne.Timeout() {
		return "timed out"
	}
	// The innermost error says the most and carries no DSN.
	for {
		next := errors.Unwrap(err)
		if next == nil {
			return err.Error()
		}
		err = next
	}
}

func pgAddr(cfg *pgx.ConnConfig) string {
	port := strconv.Itoa(int(cfg.Port))
	if strings.HasPrefix(cfg.Host, "/") {
		return cfg.Host + " port " + port
	}
	return net.JoinHostPort(cfg.Host, port)
}

var (
	kvPasswordQuoted = regexp.MustCompile(`(?i)password\s*=\s*'(?:[^'\\]|\\.)*'`)
	kvPassword       = regexp.MustCompile(`(?i)password\s*=\s*[^\s']\S*`)
)

// RedactDSN returns dsn with its password (in the URL's user info, a
// password= query parameter, or a key=value pair) replaced by "xxxxx", for
// messages and logs. A SQLite path is returned unchanged.
func RedactDSN(dsn string) string {
	if IsPostgres(dsn) {
		u, err := url.Parse(dsn)
		if err != nil {
			// Unparseable: keep only the scheme rather than risk the password.
			return dsn[:strings.Index(dsn, "://")+3] + "…"
		}
		if _, has := u.User.Password(); has {
			u.User = url.UserPassword(u.User.Username(), "xxxxx")
		}
		q := u.Query()
		for k := range q {
			if strings.EqualFold(k, "password") {
				q.Set(k, "xxxxx")
			}
		}
		u.RawQuery = q.Encode()
		return u.String()
	}
	if strings.Contains(strings.ToLower(dsn), "password") {
		dsn = kvPasswordQuoted.ReplaceAllString(dsn, "password=xxxxx")
		dsn = kvPassword.ReplaceAllString(dsn, "password=xxxxx")
	}
	return dsn
}

// writePG runs fn in its own transaction, retrying what the database rolled
// back for a reason that a new attempt can cure. Once begun, the
// transaction runs to its end whatever happens to ctx (bounded by
// pgWriteTimeout), so a nil error means committed.
func (s *Store) writePG(ctx context.Context, fn func(*wtx) error) error {
	s.mu.RLock()
	defer s.mu.RUnlock()
	if s.closed {
		return ErrClosed
	}
	var err error
	for attempt := 0; attempt < pgWriteAttempts; attempt++ {
		if attempt > 0 {
			pause := time.Duration(10<<attempt)*time.Millisecond + rand.N(10*time.Millisecond)
			select {
			case <-ctx.Done():
				return classify(err)
			case <-time.After(pause):
			}
		}
		if cerr := ctx.Err(); cerr != nil {
			if err == nil {
				return cerr
			}
			return classify(err)
		}
		var committing bool
		begun := time.Now()
		committing, err = s.txPG(ctx, fn)
		if err == nil {
			s.stats.committed(1, time.Since(begun))
			return nil
		}
		if !retryable(err, committing) {
			break
		}
	}
	return classify(err)
}

// txPG runs one attempt. committing reports that the error came from COMMIT.
func (s *Store) txPG(ctx context.Context, fn func(*wtx) error) (committing bool, err error) {
	tctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), pgWriteTimeout)
	defer cancel()
	tx, err := s.rdb.BeginTx(tctx, nil)
	if err != nil {
		return false, timedOut(tctx, err)
	}
	if err := runOp(fn, &wtx{d: postgresDialect, tx: tx, ctx: tctx, node: nodeOf(s.node)}); err != nil {
		_ = tx.Rollback()
		return false, timedOut(tctx, err)
	}
	if err := tx.Commit(); err != nil {
		return true, timedOut(tctx, err)
	}
	return false, nil
}

// timedOut marks an error caused by the transaction's own deadline as the
// store's unavailability (a server that stopped answering).
func timedOut(tctx context.Context, err error) error {
	if tctx.Err() != nil && errors.Is(err, context.DeadlineExceeded) {
		return &unavailableError{err}
	}
	return err
}

// retryable: a serialisation failure or deadlock (the database rolled the
// transaction back), or a lost connection before COMMIT was sent.
func retryable(err error, committing bool) bool {
	switch pgCode(err) {
	case "40001", "40P01":
		return true
	}
	return !committing && lostConnection(err)
}

// unavailableError marks err as the store being unreachable.
type unavailableError struct{ err error }

func (e *unavailableError) Error() string   { return "store unavailable: " + e.err.Error() }
func (e *unavailableError) Unwrap() []error { return []error{ErrUnavailable, e.err} }

// classify marks errors that mean "the store cannot be reached" with
// ErrUnavailable; every other error is returned as is.
func classify(err error) error {
	if err == nil || errors.Is(err, ErrUnavailable) || !lostConnection(err) {
		return err
	}
	return &unavailableError{err}
}

// lostConnection reports an error of the connection rather than of the
// statement: refused, reset, closed, timed out, or a server shutting down.
func lostConnection(err error) bool {
	if err == nil {
		return false
	}
	switch code := pgCode(err); {
	case strings.HasPrefix(code, "08"), // connection exception
		code == "57P01", code == "57P02", code == "57P03", // admin/crash shutdown, cannot connect now
		code == "53300": // too many connections
		return true
	case code != "":
		return false
	}
	var ce *pgconn.ConnectError
	var ne net.Error
	return errors.As(err, &ce) || errors.As(err, &ne) || pgconn.Timeout(err) ||
		errors.Is(err, driver.ErrBadConn) || errors.Is(err, io.EOF) || errors.Is(err, io.ErrUnexpectedEOF) ||
		errors.Is(err, syscall.ECONNREFUSED) || errors.Is(err, syscall.ECONNRESET) || errors.Is(err, syscall.EPIPE) ||
		strings.Contains(err.Error(), "conn closed")
}

func pgCode(err error) string {
	var pe *pgconn.PgError
	if errors.As(err, &pe) {
		return pe.Code
	}
	return ""
}

// pgClass is the two-character class of a PostgreSQL error code ("" when
// err is not a PostgreSQL error).
func pgClass(err error) string {
	if c := pgCode(err); len(c) >= 2 {
		return c[:2]
	}
	return ""
}

// pgMigrateLock is the advisory lock key that serialises migrations of
// primary nodes starting at once ("hcmg").
const pgMigrateLock = 0x68636d67

// migratePG is migrate for PostgreSQL: the same versions, each applied in
// its own transaction with its version row, under an advisory lock so that
// nodes starting together migrate once.
func migratePG(ctx context.Context, db *sql.DB, list []string) error {
	conn, err := db.Conn(ctx)
	if err != nil {
		return fmt.Errorf("migrate: %w", err)
	}
	defer conn.Close()
	if _, err := conn.ExecContext(ctx, "SELECT pg_advisory_lock($1)", pgMigrateLock); err != nil {
		return fmt.Errorf("migrate: lock: %w", err)
	}
	defer conn.ExecContext(context.WithoutCancel(ctx), "SELECT pg_advisory_unlock($1)", pgMigrateLock)
	if _, err := conn.ExecContext(ctx, `CREATE TABLE IF NOT EXISTS schema_version (
		version    INTEGER PRIMARY KEY,
		applied_at BIGINT NOT NULL
	)`); err != nil {
		return fmt.Errorf("migrate: %w", err)
	}
	var v sql.NullInt64
	if err := conn.QueryRowContext(ctx, "SELECT MAX(version) FROM schema_version").Scan(&v); err != nil {
		return fmt.Errorf("migrate: read schema version: %w", err)
	}
	cur := int(v.Int64)
	if cur > len(list) {
		return fmt.Errorf("migrate: database schema version %d is newer than this program's %d; upgrade hostcert-primary", cur, len(list))
	}
	for v := cur + 1; v <= len(list); v++ {
		err := func() error {
			tx, err := conn.BeginTx(ctx, nil)
			if err != nil {
				return err
			}
			defer tx.Rollback()
			if _, err := tx.ExecContext(ctx, list[v-1]); err != nil {
				return err
			}
			if _, err := tx.ExecContext(ctx, "INSERT INTO schema_version (version, applied_at) VALUES ($1, $2)", v, time.Now().Unix()); err != nil {
				return err
			}
			return tx.Commit()
		}()
		if err != nil {
			return fmt.Errorf("migrate to version %d: %w", v, err)
		}
	}
	return nil
}
