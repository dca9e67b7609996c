package store

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"time"
)

// Paging: every list that grows with the fleet is read a page at a time,
// after the key of the last row of the previous page (a certificate's
// serial, a host's name), so that a million rows cost a million rows,
// not a million pages of a million rows.

// CertPage selects a page of certificates for ListCertsPage.
type CertPage struct {
	CertFilter
	// ExpiringBefore, when set, selects the current certificate of each
	// host (its latest issued) that is not revoked and whose NotAfter is
	// before it (expired ones included), ordered by NotAfter; otherwise
	// certificates are ordered by issuance.
	ExpiringBefore time.Time
	After          string // serial of the last certificate of the previous page
	Limit          int
}

// currentCond holds for a host's current certificate.
const currentCond = "c.seq = (SELECT MAX(c2.seq) FROM certs c2 WHERE c2.host_id = c.host_id)"

// currentCerts is a table of every host's current certificate (its highest
// seq) for the fleet-wide counts: revoked_at, not_after, route, key_alg.
// Both read the index certs_current once, in order, one row per host —
// not a probe per certificate, and never the table's rows. SQLite takes a
// bare column's value from the row that holds the MAX of the group.
var currentCerts = sq{
	lite: "(SELECT revoked_at, not_after, route, key_alg, MAX(seq) AS seq FROM certs GROUP BY host_id)",
	pg:   "(SELECT DISTINCT ON (host_id) revoked_at, not_after, route, key_alg FROM certs ORDER BY host_id DESC, seq DESC)",
}

// ListCertsPage lists at most p.Limit certificates after p.After.
// ErrNotFound when p.After names no certificate.
func (s *Store) ListCertsPage(ctx context.Context, p CertPage) ([]Cert, error) {
	if p.Limit <= 0 {
		return nil, fmt.Errorf("list certificates: limit %d: %w", p.Limit, errInvalid)
	}
	order := "issued_at"
	var where []string
	var args []any
	if !p.ExpiringBefore.IsZero() {
		order = "not_after"
		where = append(where, "c.revoked_at IS NULL", "c.not_after < ?", currentCond)
		args = append(args, ts(p.ExpiringBefore))
	} else if !p.IncludeRevoked {
		where = append(where, "c.revoked_at IS NULL")
	}
	if p.HostID != "" {
		where = append(where, "c.host_id = ?")
		args = append(args, p.HostID)
	}
	if p.TokenName != "" {
		where = append(where, "c.token_name = ?")
		args = append(args, p.TokenName)
	}
	if p.After != "" {
		key := normSerial(p.After)
		var at int64
		err := s.queryRow(ctx, "SELECT "+order+" FROM certs WHERE serial = ?", key).Scan(&at)
		if errors.Is(err, sql.ErrNoRows) {
			return nil, fmt.Errorf("list certificates after %s: no such certificate: %w", p.After, ErrNotFound)
		}
		if err != nil {
			return nil, fmt.Errorf("list certificates: %w", err)
		}
		// A row value, so that both engines seek the (order, serial) index.
		where = append(where, "(c."+order+", c.serial) > (?, ?)")
		args = append(args, at, key)
	}
	q := "SELECT " + prefixed("c.", certColumns) + " FROM certs c"
	for i, w := range where {
		if i == 0 {
			q += " WHERE " + w
		} else {
			q += " AND " + w
		}
	}
	q += " ORDER BY c." + order + ", c.serial LIMIT ?"
	args = append(args, p.Limit)
	return s.queryCerts(ctx, "list certificates", q, args...)
}

// prefixed qualifies a comma-separated column list with an alias.
func prefixed(alias, cols string) string {
	out := ""
	start := 0
	for i := 0; i <= len(cols); i++ {
		if i == len(cols) || cols[i] == ',' {
			col := cols[start:i]
			for len(col) > 0 && (col[0] == ' ' || col[0] == '\n' || col[0] == '\t') {
				col = col[1:]
			}
			if out != "" {
				out += ", "
			}
			out += alias + col
			start = i + 1
		}
	}
	return out
}

// HostPage selects a page of hosts for ListHostsPage.
type HostPage struct {
	// StaleBefore, when set, selects only hosts with a host ID, not
	// revoked, whose last contact (SeenAt) is before it.
	StaleBefore time.Time
	After       string // name of the last host of the previous page
	Limit       int
}

// ListHostsPage lists, by name, at most p.Limit hosts after p.After: every
// host with an ID and every registry name without one (ID ""), as
// ListHosts.
func (s *Store) ListHostsPage(ctx context.Context, p HostPage) ([]Host, error) {
	if p.Limit <= 0 {
		return nil, fmt.Errorf("list hosts: limit %d: %w", p.Limit, errInvalid)
	}
	after := lowerName(p.After)
	q := "SELECT " + hostColumns + " FROM hosts h WHERE h.name > ?"
	args := []any{after}
	if !p.StaleBefore.IsZero() {
		q += " AND h.revoked_at IS NULL AND h.seen_at < ?"
		args = append(args, ts(p.StaleBefore))
	}
	q += " ORDER BY h.name LIMIT ?"
	args = append(args, p.Limit)
	hosts, err := s.scanHosts(ctx, q, args...)
	if err != nil || !p.StaleBefore.IsZero() {
		return hosts, err
	}
	// Registry names without a host ID: the first Limit known names after
	// the cursor hold every one that can be on this page (each known name
	// before it is on the page too, with or without a host ID).
	names, err := s.scanHosts(ctx, `SELECT COALESCE(h.id, ''), k.name, k.added_at, NULL, NULL, TRUE, 0
		FROM known_names k LEFT JOIN hosts h ON h.name = k.name
		WHERE k.name > ? ORDER BY k.name LIMIT ?`, after, p.Limit)
	if err != nil {
		return nil, err
	}
	out := make([]Host, 0, min(p.Limit, len(hosts)+len(names)))
	i := 0
	for _, n := range names {
		if n.ID != "" {
			continue // listed with its host ID
		}
		for i < len(hosts) && hosts[i].Name < n.Name {
			out = append(out, hosts[i])
			i++
		}
		out = append(out, n)
	}
	out = append(out, hosts[i:]...)
	if len(out) > p.Limit {
		out = out[:p.Limit]
	}
	return out, nil
}

func (s *Store) scanHosts(ctx context.Context, q string, args ...any) ([]Host, error) {
	return queryAll(ctx, s, "list hosts", scanHost, q, args...)
}

// Inventory counts the fleet (see Store.Inventory).
type Inventory struct {
	Hosts        int // hosts with a host ID
	HostsRevoked int // of them, revoked (host-level)
	Stale        int // not revoked, last contact before the stale cutoff
	RegistryOnly int // registry names without a host ID yet
	// The current certificate of each host (its latest issued), by state.
	Valid, Expired, Revoked int
	Expiring                int // valid, NotAfter before the expiry cutoff
	// Valid current certificates by route ("" not recorded) and by key
	// algorithm.
	ByRoute  map[string]int
	ByKeyAlg map[string]int
}

// Inventory counts hosts and their current certificates as of now:
// expiring before expiringBefore, stale when last seen before staleBefore.
func (s *Store) Inventory(ctx context.Context, now, expiringBefore, staleBefore time.Time) (Inventory, error) {
	inv := Inventory{ByRoute: map[string]int{}, ByKeyAlg: map[string]int{}}
	err := s.queryRow(ctx, `SELECT COUNT(*),
			COALESCE(SUM(CASE WHEN revoked_at IS NOT NULL THEN 1 ELSE 0 END), 0),
			COALESCE(SUM(CASE WHEN revoked_at IS NULL AND seen_at < ? THEN 1 ELSE 0 END), 0)
		FROM hosts`, ts(staleBefore)).Scan(&inv.Hosts, &inv.HostsRevoked, &inv.Stale)
	if err != nil {
		return inv, fmt.Errorf("inventory of hosts: %w", err)
	}
	err = s.queryRow(ctx, "SELECT COUNT(*) FROM known_names k WHERE NOT EXISTS (SELECT 1 FROM hosts h WHERE h.name = k.name)").Scan(&inv.RegistryOnly)
	if err != nil {
		return inv, fmt.Errorf("inventory of the registry: %w", err)
	}
	rows, err := s.query(ctx, `SELECT
			CASE WHEN c.revoked_at IS NOT NULL THEN 'revoked' WHEN c.not_after <= ? THEN 'expired' ELSE 'valid' END AS state,
			c.route, c.key_alg, COUNT(*), COALESCE(SUM(CASE WHEN c.not_after < ? THEN 1 ELSE 0 END), 0)
		FROM `+s.d.pick(currentCerts)+` c
		GROUP BY 1, c.route, c.key_alg`, ts(now), ts(expiringBefore))
	if err != nil {
		return inv, fmt.Errorf("inventory of certificates: %w", err)
	}
	defer rows.Close()
	for rows.Next() {
		var state, route, alg string
		var n, expiring int
		if err := rows.Scan(&state, &route, &alg, &n, &expiring); err != nil {
			return inv, fmt.Errorf("inventory of certificates: %w", err)
		}
		switch state {
		case "revoked":
			inv.Revoked += n
		case "expired":
			inv.Expired += n
		default:
			inv.Valid += n
			inv.Expiring += expiring
			inv.ByRoute[route] += n
			inv.ByKeyAlg[alg] += n
		}
	}
	if err := classify(rows.Err()); err != nil {
		return inv, fmt.Errorf("inventory of certificates: %w", err)
	}
	return inv, nil
}

// fillKeyAlgs names the key algorithm of certificates recorded before the
// store kept it, a batch at a time; once done it costs one index probe.
func (s *Store) fillKeyAlgs(ctx context.Context) error {
	for {
		rows, err := s.query(ctx, "SELECT serial, der FROM certs WHERE key_alg = '' LIMIT 500")
		if err != nil {
			return fmt.Errorf("fill key algorithms: %w", err)
		}
		type pending struct{ serial, alg string }
		var batch []pending
		for rows.Next() {
			var serial string
			var der []byte
			if err := rows.Scan(&serial, &der); err != nil {
				rows.Close()
				return fmt.Errorf("fill key algorithms: %w", err)
			}
			batch = append(batch, pending{serial, keyAlgOf(der)})
		}
		rows.Close()
		if err := classify(rows.Err()); err != nil {
			return fmt.Errorf("fill key algorithms: %w", err)
		}
		if len(batch) == 0 {
			return nil
		}
		err = s.write(ctx, func(t *wtx) error {
			for _, p := range batch {
				if _, err := t.exec("UPDATE certs SET key_alg = ? WHERE serial = ?", p.alg, p.serial); err != nil {
					return err
				}
			}
			return nil
		})
		if err != nil {
			return fmt.Errorf("fill key algorithms: %w", err)
		}
	}
}
