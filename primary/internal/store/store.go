// Package store keeps the primary's durable state — settings, the host
// registry, host IDs, tokens, certificates, revocations and the audit log —
// in an embedded SQLite database (pure Go, modernc.org/sqlite; the default)
// or in PostgreSQL (pgx/v5, a pool shared by every primary node; see
// postgres.go). One Store type serves both: every operation's Go logic
// exists once, and its SQL is the same text for both engines or a pair of
// spellings side by side (dialect.go). No other package knows SQL.
//
// SQLite writes are group-committed: every write method queues an operation for one
// writer goroutine, which takes everything queued, runs each operation in its
// own SAVEPOINT inside one BEGIN IMMEDIATE transaction, commits once (one
// fsync of the WAL for the whole batch, synchronous=FULL) and only then
// answers each caller. A failing operation rolls back its own savepoint and
// gets its own error; the others in the batch are unaffected. Reads use a
// separate pool of query-only connections and see every acknowledged write.
package store

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"net/url"
	"os"
	"path/filepath"
	"runtime"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"modernc.org/sqlite"
	sqlite3 "modernc.org/sqlite/lib"

	"github.com/hostcert/hostcert/common/atomicfile"
	"github.com/hostcert/hostcert/common/hostname"
)

// Sentinel errors callers branch on with errors.Is.
var (
	ErrNotFound     = errors.New("not found")
	ErrExists       = errors.New("already exists")
	ErrTokenUsedUp  = errors.New("token used up")                     // CommitIssuance lost the race for the last use
	ErrTokenExpired = errors.New("token expired")                     // CommitIssuance: the token expired meanwhile
	ErrHostExists   = errors.New("name already has a host ID")        // concurrent first issuance of one name
	ErrTokenHost    = errors.New("reissue token is for another host") // CommitIssuance with a reissue token of another host
	ErrHostRevoked  = errors.New("host is revoked")                   // CommitIssuance renew of a host revoked meanwhile
	ErrClosed       = errors.New("store closed")                      // a write after Close
	ErrSerialExists = fmt.Errorf("certificate serial %w", ErrExists)  // serial collision: retry with a new serial
	ErrTokenMissing = fmt.Errorf("token %w", ErrNotFound)             // CommitIssuance: the token was deleted meanwhile
	errInvalid      = errors.New("invalid argument")
)

// maxBatch bounds how many queued writes share one transaction.
const maxBatch = 512

// Store is the primary's database. It is safe for concurrent use.
type Store struct {
	d    dialect
	path string  // SQLite file, or the PostgreSQL DSN with its password redacted
	wdb  *sql.DB // SQLite: one connection, owned by the writer goroutine; PostgreSQL: nil
	rdb  *sql.DB // SQLite: query-only pool; PostgreSQL: the pool for reads and writes
	// reads caches the prepared statements of the hot reads (keyed by their
	// SQL): preparing is a large part of a short read's cost.
	reads sync.Map // string -> *sql.Stmt

	mu     sync.RWMutex // guards closed against concurrent submit/Close
	closed bool
	ops    chan *op
	done   chan struct{} // closed when the writer goroutine has exited
	stats  *stats
	node   *atomic.Pointer[string] // SetNode; shared with the SQLite writer
	dsn    string                  // PostgreSQL: the DSN as given, for Listen's own connection
}

// SetNode names the primary node this Store writes for: every audit row
// written without a Node gets it, so that one log shared by several nodes
// says which node decided each entry.
func (s *Store) SetNode(name string) { s.node.Store(&name) }

func nodeOf(p *atomic.Pointer[string]) string {
	if n := p.Load(); n != nil {
		return *n
	}
	return ""
}

// Stats counts the writer's work since Open.
type Stats struct {
	Batches int64 // transactions committed (one fsync each)
	Ops     int64 // write operations answered in them
}

type stats struct {
	batches, ops atomic.Int64
	observe      atomic.Pointer[func(ops int, took time.Duration)]
}

// committed counts one committed transaction of ops writes that took took
// (from BEGIN to the end of COMMIT) and reports it to the observer.
func (st *stats) committed(ops int, took time.Duration) {
	st.batches.Add(1)
	st.ops.Add(int64(ops))
	if f := st.observe.Load(); f != nil {
		(*f)(ops, took)
	}
}

// ObserveCommits makes every committed write transaction call f with its
// number of write operations (the group-commit batch size on SQLite; 1 on
// PostgreSQL, where each write is its own transaction) and its duration,
// from BEGIN to the end of COMMIT. f runs on the writer's path: keep it
// quick (a histogram observation). Call it once, before serving.
func (s *Store) ObserveCommits(f func(ops int, took time.Duration)) {
	s.stats.observe.Store(&f)
}

// Stats returns the writer's counters, e.g. for metrics: Ops/Batches is the
// mean group-commit batch size.
func (s *Store) Stats() Stats {
	return Stats{Batches: s.stats.batches.Load(), Ops: s.stats.ops.Load()}
}

// op is one queued write.
type op struct {
	ctx  context.Context
	fn   func(*wtx) error
	done chan error
}

// Open opens (creating if needed) the database at path, applies pending
// migrations and starts the writer. The file's directory is created
// owner-only when missing.
func Open(ctx context.Context, path string) (*Store, error) {
	if strings.ContainsAny(path, "?#") {
		return nil, fmt.Errorf("open store %s: path must not contain '?' or '#'", path)
	}
	if dir := filepath.Dir(path); dir != "" {
		if _, err := os.Stat(dir); errors.Is(err, os.ErrNotExist) {
			if err := atomicfile.MkdirPrivate(dir); err != nil {
				return nil, fmt.Errorf("open store: %w", err)
			}
		}
	}
	// Create the file owner-only before SQLite does (SQLite would use 0644).
	if f, err := os.OpenFile(path, os.O_RDWR|os.O_CREATE, 0o600); err != nil {
		return nil, fmt.Errorf("open store %s: %w", path, err)
	} else {
		f.Close()
	}

	wdb, err := sql.Open("sqlite", dsn(path,
		"busy_timeout(10000)", "journal_mode(WAL)", "synchronous(FULL)", "foreign_keys(1)",
		// Savepoint sub-journals in memory: they only matter while the batch runs.
		"temp_store(MEMORY)",
		// Truncate the WAL back to 64 MiB after a checkpoint that followed a burst.
		"journal_size_limit(67108864)"))
	if err != nil {
		return nil, fmt.Errorf("open store %s: %w", path, err)
	}
	wdb.SetMaxOpenConns(1)
	wdb.SetMaxIdleConns(1)
	wdb.SetConnMaxLifetime(0)
	wdb.SetConnMaxIdleTime(0)
	if err := checkWAL(ctx, wdb); err != nil {
		wdb.Close()
		return nil, fmt.Errorf("open store %s: %w", path, err)
	}
	if err := migrate(ctx, wdb, migrations); err != nil {
		wdb.Close()
		return nil, fmt.Errorf("open store %s: %w", path, err)
	}

	rdb, err := sql.Open("sqlite", dsn(path, "busy_timeout(10000)", "query_only(1)", "foreign_keys(1)"))
	if err != nil {
		wdb.Close()
		return nil, fmt.Errorf("open store %s: %w", path, err)
	}
	readers := max(4, runtime.GOMAXPROCS(0))
	rdb.SetMaxOpenConns(readers)
	rdb.SetMaxIdleConns(readers)
	if err := rdb.PingContext(ctx); err != nil {
		wdb.Close()
		rdb.Close()
		return nil, fmt.Errorf("open store %s: %w", path, err)
	}

	s := &Store{
		d:     sqliteDialect,
		path:  path,
		wdb:   wdb,
		rdb:   rdb,
		ops:   make(chan *op, 4*maxBatch),
		done:  make(chan struct{}),
		stats: &stats{},
		node:  new(atomic.Pointer[string]),
	}
	w, err := newWriter(wdb, s.stats, s.node)
	if err != nil {
		wdb.Close()
		rdb.Close()
		return nil, fmt.Errorf("open store %s: %w", path, err)
	}
	go func() {
		defer close(s.done)
		w.run(s.ops)
	}()
	if err := s.fillKeyAlgs(ctx); err != nil {
		s.Close()
		return nil, fmt.Errorf("open store %s: %w", path, err)
	}
	return s, nil
}

func dsn(path string, pragmas ...string) string {
	q := url.Values{}
	for _, p := range pragmas {
		q.Add("_pragma", p)
	}
	return "file:" + path + "?" + q.Encode()
}

func checkWAL(ctx context.Context, db *sql.DB) error {
	var mode string
	if err := db.QueryRowContext(ctx, "PRAGMA journal_mode").Scan(&mode); err != nil {
		return fmt.Errorf("journal mode: %w", err)
	}
	if !strings.EqualFold(mode, "wal") {
		return fmt.Errorf("journal mode is %q, want wal", mode)
	}
	var sync int
	if err := db.QueryRowContext(ctx, "PRAGMA synchronous").Scan(&sync); err != nil {
		return fmt.Errorf("synchronous: %w", err)
	}
	if sync < 2 {
		return fmt.Errorf("synchronous is %d, want 2 (FULL)", sync)
	}
	return nil
}

// Path is the database file, or for PostgreSQL the DSN without its password.
func (s *Store) Path() string { return s.path }

// Backend names the engine: "sqlite" or "postgres".
func (s *Store) Backend() string { return s.d.String() }

// Ping checks that the store answers a query within ctx (readiness).
func (s *Store) Ping(ctx context.Context) error {
	s.mu.RLock()
	closed := s.closed
	s.mu.RUnlock()
	if closed {
		return ErrClosed
	}
	var one int
	if err := classify(s.rdb.QueryRowContext(ctx, "SELECT 1").Scan(&one)); err != nil {
		return fmt.Errorf("ping %s store: %w", s.d, err)
	}
	return nil
}

// Close stops accepting writes, lets the writer finish everything already
// queued, and closes the database.
func (s *Store) Close() error {
	s.mu.Lock()
	if s.closed {
		s.mu.Unlock()
		return nil
	}
	s.closed = true
	if s.d == postgresDialect {
		s.mu.Unlock()
		return s.rdb.Close()
	}
	close(s.ops)
	s.mu.Unlock()
	<-s.done
	s.reads.Range(func(_, st any) bool {
		st.(*sql.Stmt).Close()
		return true
	})
	return errors.Join(s.rdb.Close(), s.wdb.Close())
}

// row is a single-row read whose Scan error says (ErrUnavailable) when the
// store could not be reached.
type row struct {
	r     *sql.Row
	rctx  context.Context // the read's own deadline (PostgreSQL)
	close context.CancelFunc
}

func (r row) Scan(dest ...any) error {
	defer r.close()
	return readErr(r.rctx, r.r.Scan(dest...))
}

// pgReadTimeout bounds one read on PostgreSQL: a node cut off from its
// database (a network that drops packets rather than refusing them) answers
// store_unavailable within it instead of hanging its clients.
const pgReadTimeout = 5 * time.Second

// readCtx is ctx bounded by pgReadTimeout on PostgreSQL.
func (s *Store) readCtx(ctx context.Context) (context.Context, context.CancelFunc) {
	if s.d != postgresDialect {
		return ctx, func() {}
	}
	return context.WithTimeoutCause(ctx, pgReadTimeout, errReadTimeout)
}

var errReadTimeout = errors.New("the database did not answer a read in time")

// readErr classifies a read's error; running out of the read's own time
// (not the caller's) means the database stopped answering.
func readErr(rctx context.Context, err error) error {
	if err != nil && context.Cause(rctx) == errReadTimeout {
		if errors.Is(err, context.DeadlineExceeded) || lostConnection(err) {
			return &unavailableError{err}
		}
	}
	return classify(err)
}

// queryRow runs the single-row read q on the read pool. On SQLite it goes
// through a prepared statement, prepared on first use and cached
// (database/sql prepares it once per pooled connection; q must be a
// constant: the cache is keyed by it); pgx caches PostgreSQL's itself.
func (s *Store) queryRow(ctx context.Context, q string, args ...any) row {
	rctx, cancel := s.readCtx(ctx)
	return row{r: s.queryRowRaw(rctx, q, args...), rctx: rctx, close: cancel}
}

// rows is a multi-row read; Close ends its deadline.
type rows struct {
	*sql.Rows
	rctx  context.Context
	close context.CancelFunc
}

func (r *rows) Close() error {
	defer r.close()
	return r.Rows.Close()
}

// Err is the iteration's error, classified like a single read's.
func (r *rows) Err() error { return readErr(r.rctx, r.Rows.Err()) }

// query runs the read q on the read pool.
func (s *Store) query(ctx context.Context, q string, args ...any) (*rows, error) {
	rctx, cancel := s.readCtx(ctx)
	var (
		rs  *sql.Rows
		err error
	)
	if st := s.readStmt(rctx, q); st != nil {
		rs, err = st.QueryContext(rctx, args...)
	} else {
		rs, err = s.rdb.QueryContext(rctx, s.d.sql(q), args...)
	}
	if err != nil {
		cancel()
		return nil, readErr(rctx, err)
	}
	return &rows{Rows: rs, rctx: rctx, close: cancel}, nil
}

// rowScanner is what the scan functions (scanCert, scanHost, …) read a
// row from: a *sql.Row or the current row of a *sql.Rows.
type rowScanner = interface{ Scan(...any) error }

// queryAll runs the read q and scans every row with scan; what names the
// read in errors.
func queryAll[T any](ctx context.Context, s *Store, what string, scan func(rowScanner) (T, error), q string, args ...any) ([]T, error) {
	rows, err := s.query(ctx, q, args...)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", what, err)
	}
	return collect(rows, what, scan)
}

// collect scans every row of rows with scan and closes rows.
func collect[T any](rows *rows, what string, scan func(rowScanner) (T, error)) ([]T, error) {
	defer rows.Close()
	var out []T
	for rows.Next() {
		v, err := scan(rows)
		if err != nil {
			return nil, fmt.Errorf("%s: %w", what, err)
		}
		out = append(out, v)
	}
	if err := classify(rows.Err()); err != nil {
		return nil, fmt.Errorf("%s: %w", what, err)
	}
	return out, nil
}

func (s *Store) queryRowRaw(ctx context.Context, q string, args ...any) *sql.Row {
	if st := s.readStmt(ctx, q); st != nil {
		return st.QueryRowContext(ctx, args...)
	}
	// PostgreSQL, or a statement that does not prepare: its error surfaces
	// through Row.Scan.
	return s.rdb.QueryRowContext(ctx, s.d.sql(q), args...)
}

// readStmt is q prepared once on the SQLite read pool and kept: parsing
// and planning a statement costs more than running it (nil on PostgreSQL,
// where pgx caches prepared statements per connection itself, or when q
// does not prepare).
func (s *Store) readStmt(ctx context.Context, q string) *sql.Stmt {
	if s.d == postgresDialect {
		return nil
	}
	if st, ok := s.reads.Load(q); ok {
		return st.(*sql.Stmt)
	}
	st, err := s.rdb.PrepareContext(ctx, q)
	if err != nil {
		return nil
	}
	if prev, loaded := s.reads.LoadOrStore(q, st); loaded {
		st.Close()
		return prev.(*sql.Stmt)
	}
	return st
}

// write queues fn for the writer and waits until its transaction is
// committed (or fn failed). Once the writer has taken the operation it is
// carried out whatever happens to ctx, so a nil error always means durable
// and a non-nil error means nothing of fn was written.
func (s *Store) write(ctx context.Context, fn func(*wtx) error) error {
	if s.d == postgresDialect {
		return s.writePG(ctx, fn)
	}
	o := &op{ctx: ctx, fn: fn, done: make(chan error, 1)}
	s.mu.RLock()
	if s.closed {
		s.mu.RUnlock()
		return ErrClosed
	}
	select {
	case s.ops <- o:
	case <-ctx.Done():
		s.mu.RUnlock()
		return ctx.Err()
	}
	s.mu.RUnlock()
	return <-o.done
}

// writer owns the write connection and its prepared statements.
type writer struct {
	conn  *sql.Conn
	stmts map[string]*sql.Stmt
	stats *stats
	node  *atomic.Pointer[string]
}

func newWriter(db *sql.DB, st *stats, node *atomic.Pointer[string]) (*writer, error) {
	conn, err := db.Conn(context.Background())
	if err != nil {
		return nil, fmt.Errorf("writer connection: %w", err)
	}
	return &writer{conn: conn, stmts: map[string]*sql.Stmt{}, stats: st, node: node}, nil
}

func (w *writer) run(ops <-chan *op) {
	defer func() {
		for _, st := range w.stmts {
			st.Close()
		}
		w.conn.Close()
	}()
	batch := make([]*op, 0, maxBatch)
	for {
		first, ok := <-ops
		if !ok {
			return
		}
		batch = append(batch[:0], first)
	drain:
		for len(batch) < maxBatch {
			select {
			case o, ok := <-ops:
				if !ok {
					break drain
				}
				batch = append(batch, o)
			default:
				break drain
			}
		}
		w.commit(batch)
	}
}

// commit runs one batch as one transaction and answers every op.
func (w *writer) commit(batch []*op) {
	live := batch[:0:0]
	for _, o := range batch {
		if err := o.ctx.Err(); err != nil {
			o.done <- err
			continue
		}
		live = append(live, o)
	}
	if len(live) == 0 {
		return
	}
	fail := func(err error) {
		for _, o := range live {
			o.done <- err
		}
	}
	t := &wtx{w: w, node: nodeOf(w.node)}
	begun := time.Now()
	if _, err := t.exec("BEGIN IMMEDIATE"); err != nil {
		fail(fmt.Errorf("begin: %w", err))
		return
	}
	results := make([]error, len(live))
	for i, o := range live {
		if _, err := t.exec("SAVEPOINT op"); err != nil {
			w.rollback()
			fail(fmt.Errorf("savepoint: %w", err))
			return
		}
		results[i] = runOp(o.fn, t)
		if results[i] != nil {
			if _, err := t.exec("ROLLBACK TO op"); err != nil {
				w.rollback()
				fail(fmt.Errorf("rollback to savepoint: %w", err))
				return
			}
		}
		if _, err := t.exec("RELEASE op"); err != nil {
			w.rollback()
			fail(fmt.Errorf("release savepoint: %w", err))
			return
		}
	}
	if _, err := t.exec("COMMIT"); err != nil {
		w.rollback()
		fail(fmt.Errorf("commit: %w", err))
		return
	}
	w.stats.committed(len(live), time.Since(begun))
	for i, o := range live {
		o.done <- results[i]
	}
}

func runOp(fn func(*wtx) error, t *wtx) (err error) {
	defer func() {
		if r := recover(); r != nil {
			err = fmt.Errorf("store operation panicked: %v", r)
		}
	}()
	return fn(t)
}

func (w *writer) rollback() {
	// Best effort: after a failed COMMIT SQLite may already have rolled back.
	_, _ = w.conn.ExecContext(context.Background(), "ROLLBACK")
}

func (w *writer) stmt(q string) (*sql.Stmt, error) {
	if st, ok := w.stmts[q]; ok {
		return st, nil
	}
	st, err := w.conn.PrepareContext(context.Background(), q)
	if err != nil {
		return nil, err
	}
	w.stmts[q] = st
	return st, nil
}

// wtx is what a write operation sees: on SQLite, statements run inside the
// batch's transaction, within the operation's savepoint; on PostgreSQL,
// inside the operation's own transaction.
type wtx struct {
	d   dialect
	w   *writer         // SQLite
	tx  *sql.Tx         // PostgreSQL
	ctx context.Context // PostgreSQL: the transaction's deadline
	// node names the primary node for the audit rows it writes (SetNode).
	node string
}

// notify tells every node listening on the database (Store.Listen) that
// topic changed, once the transaction commits (PostgreSQL's NOTIFY is
// transactional: a rolled-back operation notifies nobody). On SQLite there
// is one node and nobody else to tell.
func (t *wtx) notify(topic Topic) error {
	if t.tx == nil {
		return nil
	}
	_, err := t.exec("SELECT pg_notify(?, ?)", notifyChannel, string(topic))
	return err
}

func (t *wtx) exec(q string, args ...any) (sql.Result, error) {
	if t.tx != nil {
		return t.tx.ExecContext(t.ctx, t.d.sql(q), args...)
	}
	st, err := t.w.stmt(q)
	if err != nil {
		return nil, err
	}
	return st.ExecContext(context.Background(), args...)
}

// pick returns q's text in the transaction's dialect.
func (t *wtx) pick(q sq) string { return t.d.pick(q) }

// query runs a statement that returns rows (e.g. DELETE … RETURNING).
func (t *wtx) query(q string, args ...any) (*sql.Rows, error) {
	if t.tx != nil {
		return t.tx.QueryContext(t.ctx, t.d.sql(q), args...)
	}
	st, err := t.w.stmt(q)
	if err != nil {
		return nil, err
	}
	return st.QueryContext(context.Background(), args...)
}

func (t *wtx) queryRow(q string, args ...any) *sql.Row {
	if t.tx != nil {
		return t.tx.QueryRowContext(t.ctx, t.d.sql(q), args...)
	}
	st, err := t.w.stmt(q)
	if err != nil {
		// Surface the prepare error through Row.Scan.
		return t.w.conn.QueryRowContext(context.Background(), q, args...)
	}
	return st.QueryRowContext(context.Background(), args...)
}

// affected is RowsAffected of an exec result, or its error.
func affected(res sql.Result, err error) (int64, error) {
	if err != nil {
		return 0, err
	}
	return res.RowsAffected()
}

// isConstraint reports a violated constraint (unique, check, foreign key)
// in either engine.
func isConstraint(err error) bool {
	var e *sqlite.Error
	if errors.As(err, &e) {
		return e.Code()&0xff == sqlite3.SQLITE_CONSTRAINT
	}
	return pgClass(err) == "23"
}

// Time is stored as Unix nanoseconds (UTC).
func ts(t time.Time) int64 { return t.UnixNano() }

func fromTS(n int64) time.Time { return time.Unix(0, n).UTC() }

func nullTS(t *time.Time) any {
	if t == nil {
		return nil
	}
	return t.UnixNano()
}

func fromNullTS(n sql.NullInt64) *time.Time {
	if !n.Valid {
		return nil
	}
	t := fromTS(n.Int64)
	return &t
}

func nowOr(t time.Time) time.Time {
	if t.IsZero() {
		return time.Now()
	}
	return t
}

// lowerName is a host name as the store keeps and looks it up: the one
// normaliser's canonical form (hostname.Key; a string that is no host name
// is kept as it is and matches no stored name).
func lowerName(n string) string { return hostname.Key(n) }

// storeName is the canonical form of a name about to be written, refusing
// what is no host name.
func storeName(n string) (string, error) {
	c, err := hostname.Normalize(n)
	if err != nil {
		return "", fmt.Errorf("%w: %w", errInvalid, err)
	}
	return c, nil
}
