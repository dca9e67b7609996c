package store

// pgMigrations are migrations (migrate.go) in PostgreSQL's dialect: the same
// versions, tables, columns and constraints, one for one (a test compares
// the two schemas). Times stay Unix nanoseconds (BIGINT) so that the Go
// code reading them is one; BLOB is BYTEA; audit ids are an identity.
// Never edit a released migration: append a new one to both lists.
var pgMigrations = []string{
	// 1: the initial schema.
	`
CREATE TABLE settings (
	key   TEXT PRIMARY KEY,
	value TEXT NOT NULL
);

CREATE TABLE known_names (
	name     TEXT PRIMARY KEY,
	added_at BIGINT NOT NULL
);

CREATE TABLE hosts (
	id            TEXT PRIMARY KEY,
	name          TEXT NOT NULL UNIQUE,
	created_at    BIGINT NOT NULL,
	revoked_at    BIGINT,
	reissue_until BIGINT
);

CREATE TABLE tokens (
	name       TEXT PRIMARY KEY,
	kind       TEXT NOT NULL CHECK (kind IN ('standard', 'reissue')),
	host_id    TEXT REFERENCES hosts(id),
	hash       BYTEA NOT NULL UNIQUE,
	max_uses   INTEGER NOT NULL CHECK (max_uses >= 1),
	uses       INTEGER NOT NULL DEFAULT 0 CHECK (uses >= 0 AND uses <= max_uses),
	created_at BIGINT NOT NULL,
	expires_at BIGINT NOT NULL,
	reason     TEXT NOT NULL DEFAULT '',
	CHECK ((kind = 'reissue') = (host_id IS NOT NULL))
);

CREATE TABLE certs (
	serial        TEXT PRIMARY KEY,
	host_id       TEXT NOT NULL REFERENCES hosts(id),
	names         TEXT NOT NULL,
	kind          TEXT NOT NULL CHECK (kind IN ('issue', 'reissue', 'renew')),
	token_name    TEXT NOT NULL DEFAULT '',
	issued_at     BIGINT NOT NULL,
	not_before    BIGINT NOT NULL,
	not_after     BIGINT NOT NULL,
	der           BYTEA NOT NULL,
	revoked_at    BIGINT,
	revoke_reason INTEGER NOT NULL DEFAULT 0
);
CREATE INDEX certs_host ON certs(host_id);
CREATE INDEX certs_token ON certs(token_name) WHERE token_name <> '';
CREATE INDEX certs_revoked ON certs(not_after) WHERE revoked_at IS NOT NULL;

CREATE TABLE audit (
	id         BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
	at         BIGINT NOT NULL,
	actor      TEXT NOT NULL,
	source     TEXT NOT NULL,
	action     TEXT NOT NULL,
	outcome    TEXT NOT NULL,
	code       TEXT NOT NULL,
	host_id    TEXT NOT NULL,
	name       TEXT NOT NULL,
	token_name TEXT NOT NULL,
	detail     TEXT
);
CREATE INDEX audit_at ON audit(at);

CREATE TABLE crl_state (
	id     INTEGER PRIMARY KEY CHECK (id = 1),
	number BIGINT NOT NULL
);
INSERT INTO crl_state (id, number) VALUES (1, 0);
`,
	// 2: token bindings.
	`
ALTER TABLE tokens ADD COLUMN bind_names TEXT NOT NULL DEFAULT '[]';
ALTER TABLE tokens ADD COLUMN bind_nets  TEXT NOT NULL DEFAULT '[]';
`,
	// 3: renewal bookkeeping (seq, renewed_from, used_at). Existing rows are
	// numbered per host in issuance order, ties broken by serial.
	`
ALTER TABLE certs ADD COLUMN seq INTEGER NOT NULL DEFAULT 0;
ALTER TABLE certs ADD COLUMN renewed_from TEXT NOT NULL DEFAULT '';
ALTER TABLE certs ADD COLUMN used_at BIGINT;
UPDATE certs SET seq = o.n
	FROM (SELECT serial, ROW_NUMBER() OVER (PARTITION BY host_id ORDER BY issued_at, serial) AS n FROM certs) o
	WHERE certs.serial = o.serial;
CREATE INDEX certs_host_seq ON certs(host_id, seq);
`,
	// 4: inventory (key_alg, route, hosts.seen_at and their indexes).
	`
ALTER TABLE certs ADD COLUMN key_alg TEXT NOT NULL DEFAULT '';
ALTER TABLE certs ADD COLUMN route TEXT NOT NULL DEFAULT '';
ALTER TABLE hosts ADD COLUMN seen_at BIGINT NOT NULL DEFAULT 0;
UPDATE hosts SET seen_at = COALESCE((SELECT MAX(GREATEST(c.issued_at, COALESCE(c.used_at, 0))) FROM certs c WHERE c.host_id = hosts.id), created_at);
CREATE INDEX certs_issued ON certs(issued_at, serial);
CREATE INDEX certs_not_after ON certs(not_after, serial);
CREATE INDEX certs_no_key_alg ON certs(serial) WHERE key_alg = '';
CREATE INDEX hosts_seen ON hosts(seen_at);
`,
	// 5: host name mappings; every existing host's name becomes its first
	// approved mapping.
	`
CREATE TABLE host_names (
	name       TEXT PRIMARY KEY,
	host_id    TEXT NOT NULL REFERENCES hosts(id),
	state      TEXT NOT NULL CHECK (state IN ('pending', 'approved')),
	asked_at   BIGINT NOT NULL,
	decided_at BIGINT
);
CREATE INDEX host_names_host ON host_names(host_id);
INSERT INTO host_names (name, host_id, state, asked_at, decided_at)
	SELECT name, id, 'approved', created_at, created_at FROM hosts;
`,
	// 6: the node that decided each audit row.
	`
ALTER TABLE audit ADD COLUMN node TEXT NOT NULL DEFAULT '';
`,
	// 7: pending claims no longer own a name: the primary key is (name,
	// host_id); at most one approved mapping per name.
	`
ALTER TABLE host_names DROP CONSTRAINT host_names_pkey;
ALTER TABLE host_names ADD PRIMARY KEY (name, host_id);
DROP INDEX host_names_host;
CREATE INDEX host_names_host ON host_names(host_id, state);
CREATE UNIQUE INDEX host_names_approved ON host_names(name) WHERE state = 'approved';
`,
	// 8: administrators' client certificates.
	`
CREATE TABLE admin_certs (
	serial        TEXT PRIMARY KEY,
	name          TEXT NOT NULL,
	issued_at     BIGINT NOT NULL,
	not_before    BIGINT NOT NULL,
	not_after     BIGINT NOT NULL,
	der           BYTEA NOT NULL,
	revoked_at    BIGINT,
	revoke_reason INTEGER NOT NULL DEFAULT 0
);
CREATE INDEX admin_certs_name ON admin_certs(name);
`,
	// 9: each host's current certificate from one index (replaces
	// certs_host_seq).
	`
CREATE INDEX certs_current ON certs(host_id, seq, revoked_at, not_after, route, key_alg);
DROP INDEX certs_host_seq;
`,
	// 10: the primary nodes' names, the latest CRLs, the sealed CA material.
	`
CREATE TABLE primary_names (
	name     TEXT PRIMARY KEY,
	node     TEXT NOT NULL,
	added_at BIGINT NOT NULL
);
CREATE TABLE crls (
	issuer TEXT PRIMARY KEY,
	number BIGINT NOT NULL,
	der    BYTEA NOT NULL
);
CREATE TABLE ca_material (
	generation BIGINT PRIMARY KEY,
	node       TEXT NOT NULL,
	created_at BIGINT NOT NULL,
	sealed     BYTEA NOT NULL
);
`,
}
