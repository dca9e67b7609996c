package store

import (
	"strconv"
	"strings"
	"sync"
)

// dialect is the SQL flavour of a backend. The Go logic of every operation
// exists once; its SQL is written once where both engines accept the same
// text (with ? placeholders, numbered $1, $2, … for PostgreSQL by rebind),
// and as a pair (sq) side by side where they differ.
type dialect int

const (
	sqliteDialect dialect = iota
	postgresDialect
)

func (d dialect) String() string {
	if d == postgresDialect {
		return "postgres"
	}
	return "sqlite"
}

// sq is one statement in both dialects, for the few that differ (a row
// lock, a scalar maximum). Read them as one operation in two spellings.
type sq struct{ lite, pg string }

// pick returns q's text in d.
func (d dialect) pick(q sq) string {
	if d == postgresDialect {
		return q.pg
	}
	return q.lite
}

// rebound caches rebind's results: statements are constants (ListCerts
// builds a handful of variants), so the cache stays small.
var rebound sync.Map // string -> string

// sql returns q ready for d: unchanged for SQLite; with every ? outside a
// quoted string or identifier replaced by $1, $2, … for PostgreSQL.
func (d dialect) sql(q string) string {
	if d != postgresDialect {
		return q
	}
	if r, ok := rebound.Load(q); ok {
		return r.(string)
	}
	r := rebind(q)
	rebound.Store(q, r)
	return r
}

// rebind numbers the ? placeholders of q as $1, $2, …, leaving quoted text
// ('…' and "…") alone.
func rebind(q string) string {
	var b strings.Builder
	b.Grow(len(q) + 8)
	n := 0
	var quote byte
	for i := 0; i < len(q); i++ {
		c := q[i]
		switch {
		case quote != 0:
			if c == quote {
				quote = 0
			}
		case c == '\'' || c == '"':
			quote = c
		case c == '?':
			n++
			b.WriteByte('$')
			b.WriteString(strconv.Itoa(n))
			continue
		}
		b.WriteByte(c)
	}
	return b.String()
}
