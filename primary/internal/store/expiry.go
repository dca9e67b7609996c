package store

import (
	"context"
	"database/sql"
	"encoding/json"
	"fmt"
	"strings"
	"time"
)

// ExpiryCounts is how the fleet's current certificates stand at one
// moment, and how many tokens can still be used: what the primary's metrics
// report.
type ExpiryCounts struct {
	// Expired counts current, unrevoked certificates past their NotAfter.
	Expired int64
	// Within[i] counts current, unrevoked certificates whose remaining
	// life is in (bounds[i-1], bounds[i]] (from 0 for i = 0); the last
	// element, Within[len(bounds)], counts those beyond every bound.
	Within []int64
	// LiveTokens counts tokens neither expired nor used up, by kind.
	LiveTokens map[string]int64
}

// expiryCountsSQL is the certificate count for n bounds: the same text
// for the same n, so the read cache keeps one prepared statement.
func expiryCountsSQL(d dialect, n int) string {
	var b strings.Builder
	b.WriteString("SELECT COUNT(CASE WHEN not_after <= ? THEN 1 END)")
	for range n {
		b.WriteString(", COUNT(CASE WHEN not_after > ? AND not_after <= ? THEN 1 END)")
	}
	b.WriteString(", COUNT(CASE WHEN not_after > ? THEN 1 END)")
	// A host's current certificate is its latest issued one (highest seq);
	// superseded certificates are not counted, revoked ones neither.
	b.WriteString(" FROM " + d.pick(currentCerts) + " c WHERE revoked_at IS NULL")
	return b.String()
}

// ExpiryCounts counts the current, unrevoked certificates by remaining life
// (bounds ascending, each > 0) and the live tokens by kind, as of now. It
// reads every current certificate once (one pass using the host/seq index):
// callers bound it with ctx and call it rarely (the metrics cache it).
func (s *Store) ExpiryCounts(ctx context.Context, now time.Time, bounds []time.Duration) (ExpiryCounts, error) {
	for i, b := range bounds {
		if b <= 0 || (i > 0 && b <= bounds[i-1]) {
			return ExpiryCounts{}, fmt.Errorf("expiry counts: bounds %v: want ascending and positive: %w", bounds, errInvalid)
		}
	}
	at := func(d time.Duration) int64 { return now.Add(d).UnixNano() }
	args := []any{at(0)}
	prev := at(0)
	for _, b := range bounds {
		args = append(args, prev, at(b))
		prev = at(b)
	}
	args = append(args, prev)
	counts := make([]int64, len(bounds)+2)
	dest := make([]any, len(counts))
	for i := range counts {
		dest[i] = &counts[i]
	}
	if err := s.queryRow(ctx, expiryCountsSQL(s.d, len(bounds)), args...).Scan(dest...); err != nil {
		return ExpiryCounts{}, fmt.Errorf("expiry counts: certificates: %w", err)
	}
	inv := ExpiryCounts{Expired: counts[0], Within: counts[1:], LiveTokens: map[string]int64{}}

	rows, err := s.query(ctx, "SELECT kind, COUNT(*) FROM tokens WHERE uses < max_uses AND expires_at > ? GROUP BY kind", now.UnixNano())
	if err != nil {
		return ExpiryCounts{}, fmt.Errorf("expiry counts: tokens: %w", err)
	}
	defer rows.Close()
	for rows.Next() {
		var kind string
		var n int64
		if err := rows.Scan(&kind, &n); err != nil {
			return ExpiryCounts{}, fmt.Errorf("expiry counts: tokens: %w", classify(err))
		}
		inv.LiveTokens[kind] = n
	}
	if err := classify(rows.Err()); err != nil {
		return ExpiryCounts{}, fmt.Errorf("expiry counts: tokens: %w", err)
	}
	return inv, nil
}

// LiveCert is a host's current certificate that is neither expired nor
// revoked, as EachLiveCert hands it over: DER is valid only during the call.
type LiveCert struct {
	HostID string
	Serial string
	Names  []string
	DER    []byte
}

// liveCertsSQL selects every host's current (highest seq) certificate that
// is unrevoked and unexpired at ?: one pass over certs_current for the
// current seq per host, then one row each.
var liveCertsSQL = sq{
	lite: `SELECT c.host_id, c.serial, c.names, c.der
		FROM (SELECT host_id, MAX(seq) AS seq FROM certs GROUP BY host_id) m
		JOIN certs c ON c.host_id = m.host_id AND c.seq = m.seq
		WHERE c.revoked_at IS NULL AND c.not_after > ?`,
	pg: `SELECT c.host_id, c.serial, c.names, c.der
		FROM (SELECT DISTINCT ON (host_id) host_id, serial, names, der, revoked_at, not_after
			FROM certs ORDER BY host_id, seq DESC) c
		WHERE c.revoked_at IS NULL AND c.not_after > ?`,
}

// EachLiveCert calls fn with every host's current certificate that is
// unrevoked and unexpired at now, one row at a time (never the whole fleet
// in memory: a million hosts is a few gigabytes of DER). The order is
// unspecified; an error from fn stops the walk and is returned.
func (s *Store) EachLiveCert(ctx context.Context, now time.Time, fn func(LiveCert) error) error {
	rows, err := s.query(ctx, s.d.pick(liveCertsSQL), ts(now))
	if err != nil {
		return fmt.Errorf("live certificates: %w", err)
	}
	defer rows.Close()
	var (
		c     LiveCert
		names string
		der   sql.RawBytes
	)
	for rows.Next() {
		if err := rows.Scan(&c.HostID, &c.Serial, &names, &der); err != nil {
			return fmt.Errorf("live certificates: %w", classify(err))
		}
		c.Names = nil
		if err := json.Unmarshal([]byte(names), &c.Names); err != nil {
			return fmt.Errorf("live certificates: names of %s: %w", c.Serial, err)
		}
		c.DER = der
		if err := fn(c); err != nil {
			return err
		}
	}
	if err := classify(rows.Err()); err != nil {
		return fmt.Errorf("live certificates: %w", err)
	}
	return nil
}
