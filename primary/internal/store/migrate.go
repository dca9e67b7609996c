package store

import (
	"context"
	"database/sql"
	"fmt"
)

// migrations are applied in order; migrations[i] brings the schema to
// version i+1. Never edit a released migration: append a new one.
var migrations = []string{
	// 1: the initial schema. Times are Unix nanoseconds (UTC).
	`
CREATE TABLE settings (
	key   TEXT PRIMARY KEY,
	value TEXT NOT NULL
) STRICT;

CREATE TABLE known_names (
	name     TEXT PRIMARY KEY,           -- lower-case
	added_at INTEGER NOT NULL
) STRICT;

CREATE TABLE hosts (
	id            TEXT PRIMARY KEY,      -- UUID
	name          TEXT NOT NULL UNIQUE,  -- lower-case
	created_at    INTEGER NOT NULL,
	revoked_at    INTEGER,               -- host-level revocation, cleared by a reissue
	reissue_until INTEGER                -- auto-reissue window end
) STRICT;

CREATE TABLE tokens (
	name       TEXT PRIMARY KEY,
	kind       TEXT NOT NULL CHECK (kind IN ('standard', 'reissue')),
	host_id    TEXT REFERENCES hosts(id),
	hash       BLOB NOT NULL UNIQUE,     -- SHA-256 of the value; the value is never stored
	max_uses   INTEGER NOT NULL CHECK (max_uses >= 1),
	uses       INTEGER NOT NULL DEFAULT 0 CHECK (uses >= 0 AND uses <= max_uses),
	created_at INTEGER NOT NULL,
	expires_at INTEGER NOT NULL,
	reason     TEXT NOT NULL DEFAULT '',
	CHECK ((kind = 'reissue') = (host_id IS NOT NULL))
) STRICT;

CREATE TABLE certs (
	serial        TEXT PRIMARY KEY,      -- upper-case hex
	host_id       TEXT NOT NULL REFERENCES hosts(id),
	names         TEXT NOT NULL,         -- JSON array of lower-case names
	kind          TEXT NOT NULL CHECK (kind IN ('issue', 'reissue', 'renew')),
	token_name    TEXT NOT NULL DEFAULT '', -- kept after the token is deleted
	issued_at     INTEGER NOT NULL,
	not_before    INTEGER NOT NULL,
	not_after     INTEGER NOT NULL,
	der           BLOB NOT NULL,
	revoked_at    INTEGER,
	revoke_reason INTEGER NOT NULL DEFAULT 0
) STRICT;
CREATE INDEX certs_host ON certs(host_id);
CREATE INDEX certs_token ON certs(token_name) WHERE token_name <> '';
CREATE INDEX certs_revoked ON certs(not_after) WHERE revoked_at IS NOT NULL;

CREATE TABLE audit (
	id         INTEGER PRIMARY KEY AUTOINCREMENT,
	at         INTEGER NOT NULL,
	actor      TEXT NOT NULL,
	source     TEXT NOT NULL,
	action     TEXT NOT NULL,
	outcome    TEXT NOT NULL,
	code       TEXT NOT NULL,
	host_id    TEXT NOT NULL,
	name       TEXT NOT NULL,
	token_name TEXT NOT NULL,
	detail     TEXT                      -- JSON object
) STRICT;
CREATE INDEX audit_at ON audit(at);

CREATE TABLE crl_state (
	id     INTEGER PRIMARY KEY CHECK (id = 1),
	number INTEGER NOT NULL
) STRICT;
INSERT INTO crl_state (id, number) VALUES (1, 0);
`,
	// 2: token bindings (SPEC §5): JSON arrays of normalised host names or
	// "*." patterns, and of CIDR prefixes. Empty arrays bind nothing. They
	// are written once, at creation, and never updated.
	`
ALTER TABLE tokens ADD COLUMN bind_names TEXT NOT NULL DEFAULT '[]';
ALTER TABLE tokens ADD COLUMN bind_nets  TEXT NOT NULL DEFAULT '[]';
`,
	// 3: renewal bookkeeping. seq numbers each host's certificates in
	// issuance order (its highest seq is its current certificate);
	// renewed_from is the serial of the certificate presented to renew
	// (renewals only); used_at is when the certificate was first presented
	// to the primary.
	`
ALTER TABLE certs ADD COLUMN seq INTEGER NOT NULL DEFAULT 0;
ALTER TABLE certs ADD COLUMN renewed_from TEXT NOT NULL DEFAULT '';
ALTER TABLE certs ADD COLUMN used_at INTEGER;
UPDATE certs SET seq = (SELECT COUNT(*) FROM certs c2 WHERE c2.host_id = certs.host_id
	AND (c2.issued_at < certs.issued_at OR (c2.issued_at = certs.issued_at AND c2.rowid <= certs.rowid)));
CREATE INDEX certs_host_seq ON certs(host_id, seq);
`,
	// 4: inventory. key_alg is the certificate's key algorithm (pki
	// names; filled at Open for older rows, which have ''); route is how the
	// request that got it reached the primary, 'direct' or 'tunnel' (through
	// a declared tunnel, with PROXY protocol), '' before this version;
	// hosts.seen_at is the host's last contact: its last issuance or renewal,
	// or a request made with one of its certificates (recorded at most
	// hourly). Indexes for paging certificates by issuance and by expiry,
	// and hosts by last contact.
	`
ALTER TABLE certs ADD COLUMN key_alg TEXT NOT NULL DEFAULT '';
ALTER TABLE certs ADD COLUMN route TEXT NOT NULL DEFAULT '';
ALTER TABLE hosts ADD COLUMN seen_at INTEGER NOT NULL DEFAULT 0;
UPDATE hosts SET seen_at = COALESCE((SELECT MAX(MAX(c.issued_at, COALESCE(c.used_at, 0))) FROM certs c WHERE c.host_id = hosts.id), created_at);
CREATE INDEX certs_issued ON certs(issued_at, serial);
CREATE INDEX certs_not_after ON certs(not_after, serial);
CREATE INDEX certs_no_key_alg ON certs(serial) WHERE key_alg = '';
CREATE INDEX hosts_seen ON hosts(seen_at);
`,
	// 5: host name mappings (SPEC §8). A host ID carries one or more
	// approved names; a name a known host asked for and does not hold yet
	// is pending until an admin approves it. name is the primary key: a
	// name belongs to at most one host ID, pending or approved. hosts.name
	// stays the host's main name and is always one of its approved names.
	// Every existing host's name becomes its first approved mapping.
	`
CREATE TABLE host_names (
	name       TEXT PRIMARY KEY,          -- canonical host name
	host_id    TEXT NOT NULL REFERENCES hosts(id),
	state      TEXT NOT NULL CHECK (state IN ('pending', 'approved')),
	asked_at   INTEGER NOT NULL,
	decided_at INTEGER                    -- approved or added by an admin; NULL while pending
) STRICT;
CREATE INDEX host_names_host ON host_names(host_id);
INSERT INTO host_names (name, host_id, state, asked_at, decided_at)
	SELECT name, id, 'approved', created_at, created_at FROM hosts;
`,
	// 6: the node that decided each audit row (several primary nodes
	// share one PostgreSQL database; '' = written before version 6, or by
	// a node without a name).
	`
ALTER TABLE audit ADD COLUMN node TEXT NOT NULL DEFAULT '';
`,
	// 7: pending claims no longer own a name. A row is one host's mapping
	// of one name (primary key name, host_id): several hosts may ask for
	// one name, each a pending claim of its own, and only an approved
	// mapping owns the name — at most one per name (the partial unique
	// index), so that two hosts getting one name at once end with exactly
	// one owner. SQLite cannot change a primary key: the table is rebuilt.
	`
CREATE TABLE host_names_v7 (
	name       TEXT NOT NULL,             -- canonical host name
	host_id    TEXT NOT NULL REFERENCES hosts(id),
	state      TEXT NOT NULL CHECK (state IN ('pending', 'approved')),
	asked_at   INTEGER NOT NULL,
	decided_at INTEGER,                   -- approved or added by an admin; NULL while pending
	PRIMARY KEY (name, host_id)
) STRICT;
INSERT INTO host_names_v7 (name, host_id, state, asked_at, decided_at)
	SELECT name, host_id, state, asked_at, decided_at FROM host_names;
DROP TABLE host_names;
ALTER TABLE host_names_v7 RENAME TO host_names;
CREATE INDEX host_names_host ON host_names(host_id, state);
CREATE UNIQUE INDEX host_names_approved ON host_names(name) WHERE state = 'approved';
`,
	// 8: administrators' client certificates (the web console's login,
	// SPEC §11): admin-role certificates the issuing CA signed for an
	// operator's name. A revoked one is listed on its issuing CA's CRL.
	`
CREATE TABLE admin_certs (
	serial        TEXT PRIMARY KEY,      -- upper-case hex
	name          TEXT NOT NULL,         -- the operator's name (the id of its role marker)
	issued_at     INTEGER NOT NULL,
	not_before    INTEGER NOT NULL,
	not_after     INTEGER NOT NULL,
	der           BLOB NOT NULL,
	revoked_at    INTEGER,
	revoke_reason INTEGER NOT NULL DEFAULT 0
) STRICT;
CREATE INDEX admin_certs_name ON admin_certs(name);
`,
	// 9: the fleet-wide counts (metrics, inventory) read each host's
	// current certificate — its highest seq — from one index in order,
	// without touching the table (1,000,000 certificates: the index, not
	// a gigabyte of rows). It starts with (host_id, seq), so it replaces
	// certs_host_seq.
	`
CREATE INDEX certs_current ON certs(host_id, seq, revoked_at, not_after, route, key_alg);
DROP INDEX certs_host_seq;
`,
	// 10: what several primary nodes on one database share (SPEC §8):
	// every name any node has (reserved fleet-wide), the latest CRL of
	// each issuing CA (a node never serves one older than another node
	// served), and the CA material a rotation publishes, sealed with the
	// fleet key (never a key in clear).
	`
CREATE TABLE primary_names (
	name     TEXT PRIMARY KEY,           -- canonical (hostname.ForServer)
	node     TEXT NOT NULL,              -- the node that recorded it first
	added_at INTEGER NOT NULL
) STRICT;
CREATE TABLE crls (
	issuer TEXT PRIMARY KEY,             -- ca.ID of the issuing CA
	number INTEGER NOT NULL,             -- from crl_state
	der    BLOB NOT NULL
) STRICT;
CREATE TABLE ca_material (
	generation INTEGER PRIMARY KEY,      -- 1, 2, …: the latest is the fleet's CA
	node       TEXT NOT NULL,
	created_at INTEGER NOT NULL,
	sealed     BLOB NOT NULL             -- AES-256-GCM under the fleet key
) STRICT;
`,
}

// migrate brings the database to len(list): it creates schema_version when
// missing and applies every migration above the stored version, each in its
// own transaction together with its version row. A database newer than list
// is refused rather than touched.
func migrate(ctx context.Context, db *sql.DB, list []string) error {
	if _, err := db.ExecContext(ctx, `CREATE TABLE IF NOT EXISTS schema_version (
		version    INTEGER PRIMARY KEY,
		applied_at INTEGER NOT NULL
	)`); err != nil {
		return fmt.Errorf("migrate: %w", err)
	}
	cur, err := schemaVersion(ctx, db)
	if err != nil {
		return err
	}
	if cur > len(list) {
		return fmt.Errorf("migrate: database schema version %d is newer than this program's %d; upgrade hostcert-primary", cur, len(list))
	}
	for v := cur + 1; v <= len(list); v++ {
		if err := applyMigration(ctx, db, v, list[v-1]); err != nil {
			return err
		}
	}
	return nil
}

func schemaVersion(ctx context.Context, db *sql.DB) (int, error) {
	var v sql.NullInt64
	if err := db.QueryRowContext(ctx, "SELECT MAX(version) FROM schema_version").Scan(&v); err != nil {
		return 0, fmt.Errorf("migrate: read schema version: %w", err)
	}
	return int(v.Int64), nil
}

func applyMigration(ctx context.Context, db *sql.DB, v int, stmt string) error {
	conn, err := db.Conn(ctx)
	if err != nil {
		return fmt.Errorf("migrate to version %d: %w", v, err)
	}
	defer conn.Close()
	if _, err := conn.ExecContext(ctx, "BEGIN IMMEDIATE"); err != nil {
		return fmt.Errorf("migrate to version %d: %w", v, err)
	}
	fail := func(err error) error {
		_, _ = conn.ExecContext(context.Background(), "ROLLBACK")
		return fmt.Errorf("migrate to version %d: %w", v, err)
	}
	// Another process may have migrated while we waited for the lock.
	var done int
	if err := conn.QueryRowContext(ctx, "SELECT COUNT(*) FROM schema_version WHERE version = ?", v).Scan(&done); err != nil {
		return fail(err)
	}
	if done > 0 {
		_, err := conn.ExecContext(ctx, "COMMIT")
		return err
	}
	if _, err := conn.ExecContext(ctx, stmt); err != nil {
		return fail(err)
	}
	if _, err := conn.ExecContext(ctx, "INSERT INTO schema_version (version, applied_at) VALUES (?, strftime('%s','now'))", v); err != nil {
		return fail(err)
	}
	if _, err := conn.ExecContext(ctx, "COMMIT"); err != nil {
		return fail(err)
	}
	return nil
}
