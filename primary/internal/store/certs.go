package store

import (
	"context"
	"crypto/x509"
	"database/sql"
	"encoding/json"
	"errors"
	"fmt"
	"math/big"
	"strings"
	"time"

	"github.com/hostcert/hostcert/common/pki"
	"github.com/hostcert/hostcert/common/protocol"
)

// reasonSuperseded is RFC 5280's superseded (4), for reissues.
const reasonSuperseded = 4

// ErrSuperseded is CommitIssuance's answer to a renewal from a certificate
// that is no longer the host's current one (a concurrent renewal or a
// reissue committed first).
var ErrSuperseded = errors.New("certificate is not the host's current one")

// validReason reports whether code is an RFC 5280 CRL reason (0-10 but 7).
func validReason(code int) bool { return code >= 0 && code <= 10 && code != 7 }

// Cert is an issued certificate.
type Cert struct {
	Serial       string // upper-case hex, no colons
	HostID       string
	Names        []string
	Kind         protocol.RequestKind
	TokenName    string
	IssuedAt     time.Time
	NotBefore    time.Time
	NotAfter     time.Time
	DER          []byte
	RevokedAt    *time.Time
	RevokeReason int
	RenewedFrom  string     // renewals: the serial of the certificate presented to renew
	UsedAt       *time.Time // when it was first presented to the primary; nil: never
	// KeyAlg names the certificate's key algorithm (pki names, e.g.
	// "ecdsa-p256"); CommitIssuance fills it from DER when empty.
	KeyAlg string
	// Route is how the request that got the certificate reached the
	// primary: RouteDirect, RouteTunnel, or "" when not recorded (issued
	// before the primary recorded it).
	Route string
}

// Routes a certificate's request took (Cert.Route).
const (
	RouteDirect = "direct"
	RouteTunnel = "tunnel"
)

// SeenEvery is how often at most a host's last contact (Host.SeenAt) is
// written: a host that fetches its CRL every hour costs one write an hour.
const SeenEvery = time.Hour

// keyAlgOf names the key algorithm of a DER certificate, "other" for one
// that parses but has a key of no supported kind or size, "unknown" for
// one that does not parse.
func keyAlgOf(der []byte) string {
	c, err := x509.ParseCertificate(der)
	if err != nil {
		return "unknown"
	}
	if a := pki.PublicKeyAlgorithm(c.PublicKey); a != "" {
		return string(a)
	}
	return "other"
}

// Issuance is everything CommitIssuance writes in one transaction.
type Issuance struct {
	Kind      protocol.RequestKind
	Host      Host   // for KindIssue: new host (fresh UUID, Name); else the existing host
	Cert      Cert   // the signed certificate (DER, serial, validity)
	TokenName string // "" when no token authorised it
	// TokenHash is the hash of the value presented (required with
	// TokenName): the use is counted only on the token row with that name
	// AND that hash, so a token deleted and re-created under the same name
	// (with other bindings or limits) between the decision and the commit
	// is never charged for, or recorded with, a value it does not have.
	TokenHash []byte
	// RenewedFrom is, for KindRenew, the serial of the certificate presented
	// to renew: it must still be the host's current certificate.
	RenewedFrom string
	// Claims are names the host asked for and does not hold yet: they
	// become its mappings in ClaimState (pending when ""). Every name of
	// Cert must be approved for the host once they are written.
	Claims     []string
	ClaimState MappingState
	Now        time.Time
	Audit      Audit // decision audit row, written in the same transaction
}

// CommitIssuance records an issuance atomically and durably:
//   - KindIssue inserts the host and its name as its first approved mapping
//     (ErrHostExists when the name got an ID meanwhile; another host's
//     pending claim on it is no obstacle);
//   - KindReissue revokes every earlier unrevoked certificate of the host
//     (superseded, at Now), clears the host's revocation and closes its
//     reissue window (a rename goes through the mappings: the host ID stays);
//   - KindRenew refuses a host revoked meanwhile (ErrHostRevoked) and a
//     RenewedFrom that is no longer the host's current (latest issued)
//     certificate (ErrSuperseded), and marks RenewedFrom used;
//   - with a TokenName, counts one use of the token row with that name and
//     TokenHash only while uses < max uses and the token is unexpired (else
//     ErrTokenUsedUp / ErrTokenExpired / ErrTokenMissing / ErrTokenHost, and
//     nothing at all is written);
//   - writes the Claims (ErrNameConflict when another host holds one
//     approved; ErrTooManyPending when the host would have more than
//     MaxPendingNames pending claims) and checks that every name of the
//     certificate is approved for the host (ErrNameConflict,
//     ErrNameWithdrawn); a name approved here (the first issuance's name,
//     an auto-approved claim) drops every other host's pending claim on it,
//     each audited;
//   - inserts the certificate (ErrSerialExists on a serial collision: retry
//     with a new serial) and the audit row.
func (s *Store) CommitIssuance(ctx context.Context, is Issuance) error {
	r, err := prepareIssuance(is)
	if err != nil {
		return err
	}
	err = s.write(ctx, func(t *wtx) error {
		// The token's use comes last: on PostgreSQL its row stays locked
		// from that UPDATE until COMMIT has flushed, and every other
		// issuance with the same token (on any node) waits for it.
		for _, step := range []func(*wtx) error{r.lockNames, r.claimHost, r.mapNames, r.supersede, r.insertCert, r.insertAudit, r.useToken} {
			if err := step(t); err != nil {
				return err
			}
		}
		return nil
	})
	if err != nil {
		return fmt.Errorf("commit %s for %s: %w", is.Kind, is.Host.ID, err)
	}
	return nil
}

// issuanceRow is an Issuance checked and normalised as the store keeps it;
// its methods are CommitIssuance's steps, in order, in one transaction.
type issuanceRow struct {
	Issuance
	now       time.Time
	name      string   // the host's name, canonical
	serial    string   // upper-case hex
	names     []string // the certificate's names, lower-case
	namesJSON string
	issued    time.Time
	keyAlg    string
}

// prepareIssuance refuses an Issuance that is not whole and normalises it.
func prepareIssuance(is Issuance) (issuanceRow, error) {
	switch is.Kind {
	case protocol.KindIssue, protocol.KindReissue, protocol.KindRenew:
	default:
		return issuanceRow{}, fmt.Errorf("commit issuance: kind %q: %w", is.Kind, errInvalid)
	}
	c := is.Cert
	if c.HostID == "" {
		c.HostID = is.Host.ID
	}
	switch {
	case is.Host.ID == "":
		return issuanceRow{}, fmt.Errorf("commit issuance: empty host ID: %w", errInvalid)
	case c.HostID != is.Host.ID:
		return issuanceRow{}, fmt.Errorf("commit issuance: certificate host %s != host %s: %w", c.HostID, is.Host.ID, errInvalid)
	case c.Serial == "" || len(c.DER) == 0:
		return issuanceRow{}, fmt.Errorf("commit issuance for %s: certificate without serial or DER: %w", is.Host.ID, errInvalid)
	case is.Kind == protocol.KindIssue && strings.TrimSpace(is.Host.Name) == "":
		return issuanceRow{}, fmt.Errorf("commit issuance: new host without a name: %w", errInvalid)
	case is.TokenName != "" && len(is.TokenHash) == 0:
		return issuanceRow{}, fmt.Errorf("commit issuance for %s: token %s without its hash: %w", is.Host.ID, is.TokenName, errInvalid)
	}
	r := issuanceRow{Issuance: is, now: nowOr(is.Now), name: lowerName(is.Host.Name), serial: normSerial(c.Serial), issued: c.IssuedAt, keyAlg: c.KeyAlg}
	r.Cert = c
	if is.Kind == protocol.KindIssue {
		var err error
		if r.name, err = storeName(is.Host.Name); err != nil {
			return issuanceRow{}, fmt.Errorf("commit issuance: %w", err)
		}
	}
	if r.ClaimState == "" {
		r.ClaimState = MappingPending
	}
	r.names = make([]string, len(c.Names))
	for i, n := range c.Names {
		r.names[i] = lowerName(n)
	}
	namesJSON, err := json.Marshal(r.names)
	if err != nil {
		return issuanceRow{}, fmt.Errorf("commit issuance: %w", err)
	}
	r.namesJSON = string(namesJSON)
	if r.issued.IsZero() {
		r.issued = r.now
	}
	if r.keyAlg == "" {
		r.keyAlg = keyAlgOf(c.DER)
	}
	return r, nil
}

// claimHost: a first issuance inserts the host and its name's approved
// mapping (ErrHostExists when another request or node gave the name an ID
// first); a renewal or reissue locks the host row, and a renewal checks the
// host and the certificate it renews (ErrHostRevoked, ErrSuperseded); the
// host's last contact is now.
func (r issuanceRow) claimHost(t *wtx) error {
	if r.Kind == protocol.KindIssue {
		// DO NOTHING rather than a constraint error: a failed statement
		// would abort a PostgreSQL transaction before the question below.
		n, err := affected(t.exec("INSERT INTO hosts (id, name, created_at, seen_at) VALUES (?, ?, ?, ?) ON CONFLICT DO NOTHING", r.Host.ID, r.name, ts(r.now), ts(r.now)))
		if err != nil {
			return err
		}
		if n == 0 {
			var taken int
			if err := t.queryRow("SELECT COUNT(*) FROM hosts WHERE name = ?", r.name).Scan(&taken); err != nil {
				return err
			}
			if taken > 0 {
				return fmt.Errorf("%s: %w", r.name, ErrHostExists)
			}
			return fmt.Errorf("host ID %s: %w", r.Host.ID, ErrExists)
		}
		// Approved for another host (as an other name of it): the name has
		// an ID. Other hosts' pending claims on it own nothing: dropped.
		if err := claimName(t, r.name, r.Host.ID, MappingApproved, r.now, r.audit()); errors.Is(err, ErrNameConflict) {
			return fmt.Errorf("%s: %w", r.name, ErrHostExists)
		} else if err != nil {
			return err
		}
		return nil
	}
	var (
		cur     string
		revoked sql.NullInt64
	)
	err := t.queryRow(t.pick(sqlLockHost), r.Host.ID).Scan(&cur, &revoked)
	if errors.Is(err, sql.ErrNoRows) {
		return fmt.Errorf("host %s: %w", r.Host.ID, ErrNotFound)
	}
	if err != nil {
		return err
	}
	if r.Kind == protocol.KindRenew {
		if revoked.Valid {
			return fmt.Errorf("host %s: %w", r.Host.ID, ErrHostRevoked)
		}
		if err := renewFromCurrent(t, r.Host.ID, r.RenewedFrom, r.now); err != nil {
			return err
		}
	}
	_, err = t.exec("UPDATE hosts SET seen_at = ? WHERE id = ? AND seen_at < ?", ts(r.now), r.Host.ID, ts(r.now))
	return err
}

// lockNames locks the names the issuance may give the host (a first
// issuance's name and the claims), before the host row (lockNames).
func (r issuanceRow) lockNames(t *wtx) error {
	names := make([]string, 0, len(r.Claims)+1)
	if r.Kind == protocol.KindIssue {
		names = append(names, r.name)
	}
	for _, n := range r.Claims {
		names = append(names, lowerName(n))
	}
	return lockNames(t, names...)
}

// mapNames records the names the request claimed for the host (commitNames).
func (r issuanceRow) mapNames(t *wtx) error {
	return commitNames(t, r.Host.ID, r.Claims, r.ClaimState, r.names, r.now, r.audit())
}

// useToken counts one use of the token row with the presented name and
// hash, only while it has uses left, is unexpired and (a reissue token)
// names this host; else it says why not, and nothing is written.
func (r issuanceRow) useToken(t *wtx) error {
	if r.TokenName == "" {
		return nil
	}
	n, err := affected(t.exec(`UPDATE tokens SET uses = uses + 1
		WHERE name = ? AND hash = ? AND uses < max_uses AND expires_at > ? AND (host_id IS NULL OR host_id = ?)`,
		r.TokenName, r.TokenHash, ts(r.now), r.Host.ID))
	if err != nil {
		return err
	}
	if n == 0 {
		return tokenRefusal(t, r.TokenName, r.TokenHash, r.Host.ID, r.now)
	}
	return nil
}

// supersede: a reissue revokes every earlier certificate of the host
// (superseded), clears the host's revocation, closes its reissue window, and
// tells every node that the CRL changed.
func (r issuanceRow) supersede(t *wtx) error {
	if r.Kind != protocol.KindReissue {
		return nil
	}
	if _, err := revokeRows(t, "UPDATE certs SET revoked_at = ?, revoke_reason = ? WHERE host_id = ? AND revoked_at IS NULL",
		ts(r.now), reasonSuperseded, r.Host.ID); err != nil {
		return err
	}
	_, err := t.exec("UPDATE hosts SET revoked_at = NULL, reissue_until = NULL WHERE id = ?", r.Host.ID)
	return err
}

// insertCert inserts the certificate as the host's next (current) one;
// ErrSerialExists on a serial collision.
func (r issuanceRow) insertCert(t *wtx) error {
	_, err := t.exec(`INSERT INTO certs (serial, host_id, names, kind, token_name, issued_at, not_before, not_after, der, renewed_from, key_alg, route, seq)
		VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, (SELECT COALESCE(MAX(seq), 0) + 1 FROM certs WHERE host_id = ?))`,
		r.serial, r.Host.ID, r.namesJSON, string(r.Kind), r.TokenName, ts(r.issued), ts(r.Cert.NotBefore), ts(r.Cert.NotAfter), r.Cert.DER,
		normSerial(r.RenewedFrom), r.keyAlg, r.Cert.Route, r.Host.ID)
	if isConstraint(err) {
		return fmt.Errorf("%s: %w", r.serial, ErrSerialExists)
	}
	return err
}

// insertAudit writes the decision's audit row.
func (r issuanceRow) insertAudit(t *wtx) error { return insertAudit(t, r.audit()) }

// audit is the decision's audit row, completed with what was issued.
func (r issuanceRow) audit() Audit {
	a := withDefaults(r.Audit, string(r.Kind), "granted")
	if a.At.IsZero() {
		a.At = r.now
	}
	if a.HostID == "" {
		a.HostID = r.Host.ID
	}
	if a.Name == "" {
		a.Name = r.name
	}
	if a.TokenName == "" {
		a.TokenName = r.TokenName
	}
	a.Detail = withDetail(a.Detail, map[string]any{"serial": r.serial})
	return a
}

// currentSerialSQL selects the serial of a host's current certificate: the
// one with the highest seq, i.e. the latest issued.
const currentSerialSQL = "SELECT serial FROM certs WHERE host_id = ? ORDER BY seq DESC LIMIT 1"

// renewFromCurrent checks, inside the renewal's transaction, that from is
// still the host's current certificate, and marks it used.
func renewFromCurrent(t *wtx, hostID, from string, now time.Time) error {
	from = normSerial(from)
	if from == "" {
		return fmt.Errorf("renewal of %s without the presented serial: %w", hostID, errInvalid)
	}
	var cur string
	err := t.queryRow(currentSerialSQL, hostID).Scan(&cur)
	if err != nil && !errors.Is(err, sql.ErrNoRows) {
		return err
	}
	if cur != from {
		return fmt.Errorf("certificate %s of %s: %w", from, hostID, ErrSuperseded)
	}
	_, err = t.exec("UPDATE certs SET used_at = COALESCE(used_at, ?) WHERE serial = ?", ts(now), from)
	return err
}

func normSerial(serial string) string { return strings.ToUpper(strings.ReplaceAll(serial, ":", "")) }

// sqlLockHost reads a host for a renewal or reissue. PostgreSQL locks the
// row until the commit, so that issuances and revocations of one host are
// serialised across nodes; SQLite's single writer serialises them already.
var sqlLockHost = sq{
	lite: "SELECT name, revoked_at FROM hosts WHERE id = ?",
	pg:   "SELECT name, revoked_at FROM hosts WHERE id = ? FOR UPDATE",
}

// tokenRefusal explains why the conditional use count matched no row.
func tokenRefusal(t *wtx, name string, hash []byte, hostID string, now time.Time) error {
	var (
		tokHost       sql.NullString
		uses, maxUses int
		expires       int64
	)
	err := t.queryRow("SELECT host_id, uses, max_uses, expires_at FROM tokens WHERE name = ? AND hash = ?", name, hash).Scan(&tokHost, &uses, &maxUses, &expires)
	switch {
	case errors.Is(err, sql.ErrNoRows):
		return ErrTokenMissing
	case err != nil:
		return err
	case tokHost.Valid && tokHost.String != hostID:
		return ErrTokenHost
	case expires <= ts(now):
		return ErrTokenExpired
	case uses >= maxUses:
		return ErrTokenUsedUp
	}
	return fmt.Errorf("token %s: use not counted for an unknown reason", name)
}

const certColumns = "serial, host_id, names, kind, token_name, issued_at, not_before, not_after, der, revoked_at, revoke_reason, renewed_from, used_at, key_alg, route"

func scanCert(sc rowScanner) (Cert, error) {
	var (
		c                           Cert
		names, kind                 string
		issued, notBefore, notAfter int64
		revoked, used               sql.NullInt64
	)
	if err := sc.Scan(&c.Serial, &c.HostID, &names, &kind, &c.TokenName, &issued, &notBefore, &notAfter, &c.DER, &revoked, &c.RevokeReason,
		&c.RenewedFrom, &used, &c.KeyAlg, &c.Route); err != nil {
		return Cert{}, err
	}
	if err := json.Unmarshal([]byte(names), &c.Names); err != nil {
		return Cert{}, fmt.Errorf("certificate %s names: %w", c.Serial, err)
	}
	c.Kind = protocol.RequestKind(kind)
	c.IssuedAt = fromTS(issued)
	c.NotBefore = fromTS(notBefore)
	c.NotAfter = fromTS(notAfter)
	c.RevokedAt = fromNullTS(revoked)
	c.UsedAt = fromNullTS(used)
	return c, nil
}

func (s *Store) queryCerts(ctx context.Context, what, q string, args ...any) ([]Cert, error) {
	return queryAll(ctx, s, what, scanCert, q, args...)
}

// CertBySerial finds a certificate by serial (hex, any case, colons allowed).
func (s *Store) CertBySerial(ctx context.Context, serial string) (Cert, error) {
	key := strings.ToUpper(strings.ReplaceAll(serial, ":", ""))
	c, err := scanCert(s.queryRow(ctx, "SELECT "+certColumns+" FROM certs WHERE serial = ?", key))
	if errors.Is(err, sql.ErrNoRows) {
		return Cert{}, fmt.Errorf("certificate %s: %w", serial, ErrNotFound)
	}
	if err != nil {
		return Cert{}, fmt.Errorf("certificate %s: %w", serial, err)
	}
	return c, nil
}

// CurrentCert is the host's current certificate: the latest one issued to
// it (revoked or not). ErrNotFound when the host has none.
func (s *Store) CurrentCert(ctx context.Context, hostID string) (Cert, error) {
	c, err := scanCert(s.queryRow(ctx, "SELECT "+certColumns+" FROM certs WHERE serial = ("+currentSerialSQL+")", hostID))
	if errors.Is(err, sql.ErrNoRows) {
		return Cert{}, fmt.Errorf("current certificate of %s: %w", hostID, ErrNotFound)
	}
	if err != nil {
		return Cert{}, fmt.Errorf("current certificate of %s: %w", hostID, err)
	}
	return c, nil
}

// MarkUsed records that the certificate was presented to the primary: its
// first use (the first time only) and its host's last contact (at most
// every SeenEvery). It is a no-op for an unknown serial, and writes nothing
// when both are recorded already.
func (s *Store) MarkUsed(ctx context.Context, serial string, now time.Time) error {
	key := normSerial(serial)
	var (
		used   sql.NullInt64
		seen   int64
		hostID string
	)
	err := s.queryRow(ctx, "SELECT c.used_at, h.seen_at, h.id FROM certs c JOIN hosts h ON h.id = c.host_id WHERE c.serial = ?", key).Scan(&used, &seen, &hostID)
	if errors.Is(err, sql.ErrNoRows) {
		return nil
	}
	if err != nil {
		return fmt.Errorf("mark certificate %s used: %w", serial, err)
	}
	if used.Valid && seen > ts(now.Add(-SeenEvery)) {
		return nil
	}
	err = s.write(ctx, func(t *wtx) error {
		if _, err := t.exec("UPDATE certs SET used_at = ? WHERE serial = ? AND used_at IS NULL", ts(now), key); err != nil {
			return err
		}
		_, err := t.exec("UPDATE hosts SET seen_at = ? WHERE id = ? AND seen_at < ?", ts(now), hostID, ts(now))
		return err
	})
	if err != nil {
		return fmt.Errorf("mark certificate %s used: %w", serial, err)
	}
	return nil
}

// CertFilter selects certificates for ListCerts; zero fields match all.
type CertFilter struct {
	HostID         string
	TokenName      string
	IncludeRevoked bool
}

// ListCerts lists certificates matching f, oldest first.
func (s *Store) ListCerts(ctx context.Context, f CertFilter) ([]Cert, error) {
	q := "SELECT " + certColumns + " FROM certs WHERE 1=1"
	var args []any
	if f.HostID != "" {
		q += " AND host_id = ?"
		args = append(args, f.HostID)
	}
	if f.TokenName != "" {
		q += " AND token_name = ?"
		args = append(args, f.TokenName)
	}
	if !f.IncludeRevoked {
		q += " AND revoked_at IS NULL"
	}
	q += " ORDER BY issued_at, serial"
	return s.queryCerts(ctx, "list certificates", q, args...)
}

// RevokeHost marks the host revoked (keeping the first revocation time) and
// revokes all its unrevoked certificates with reason; it returns how many
// certificates it revoked. ErrNotFound for an unknown host.
func (s *Store) RevokeHost(ctx context.Context, hostID string, reason int, now time.Time, a Audit) (revoked int, err error) {
	if !validReason(reason) {
		return 0, fmt.Errorf("revoke host %s: reason %d is not an RFC 5280 reason: %w", hostID, reason, errInvalid)
	}
	err = s.write(ctx, func(t *wtx) error {
		revoked = 0
		n, err := affected(t.exec("UPDATE hosts SET revoked_at = COALESCE(revoked_at, ?) WHERE id = ?", ts(now), hostID))
		if err != nil {
			return err
		}
		if n == 0 {
			return ErrNotFound
		}
		if revoked, err = revokeRows(t, "UPDATE certs SET revoked_at = ?, revoke_reason = ? WHERE host_id = ? AND revoked_at IS NULL",
			ts(now), reason, hostID); err != nil {
			return err
		}
		a = withDefaults(a, "cert.revoke", "ok")
		if a.HostID == "" {
			a.HostID = hostID
		}
		a.Detail = withDetail(a.Detail, map[string]any{"reason": reason, "revoked": revoked})
		return insertAudit(t, a)
	})
	if err != nil {
		return 0, fmt.Errorf("revoke host %s: %w", hostID, err)
	}
	return revoked, nil
}

// revokeRows runs update, an UPDATE that sets revoked_at and revoke_reason
// on the rows it selects, announces the revocation to every node (their
// CRLs must list it) and returns how many rows it revoked.
func revokeRows(t *wtx, update string, args ...any) (int, error) {
	n, err := affected(t.exec(update, args...))
	if err != nil {
		return 0, err
	}
	if err := t.notify(TopicRevoked); err != nil {
		return 0, err
	}
	return int(n), nil
}

// RevokeByToken revokes every unrevoked certificate the token authorised
// and returns how many. ErrNotFound when no such token exists and no
// certificate ever named it.
func (s *Store) RevokeByToken(ctx context.Context, tokenName string, reason int, now time.Time, a Audit) (revoked int, err error) {
	if tokenName == "" {
		return 0, fmt.Errorf("revoke by token: empty token name: %w", errInvalid)
	}
	if !validReason(reason) {
		return 0, fmt.Errorf("revoke certificates of token %s: reason %d is not an RFC 5280 reason: %w", tokenName, reason, errInvalid)
	}
	err = s.write(ctx, func(t *wtx) error {
		revoked = 0
		var seen int
		if err := t.queryRow(`SELECT (SELECT COUNT(*) FROM tokens WHERE name = ?) + (SELECT COUNT(*) FROM certs WHERE token_name = ?)`,
			tokenName, tokenName).Scan(&seen); err != nil {
			return err
		}
		if seen == 0 {
			return ErrNotFound
		}
		var err error
		if revoked, err = revokeRows(t, "UPDATE certs SET revoked_at = ?, revoke_reason = ? WHERE token_name = ? AND revoked_at IS NULL",
			ts(now), reason, tokenName); err != nil {
			return err
		}
		a = withDefaults(a, "cert.revoke", "ok")
		if a.TokenName == "" {
			a.TokenName = tokenName
		}
		a.Detail = withDetail(a.Detail, map[string]any{"reason": reason, "revoked": revoked})
		return insertAudit(t, a)
	})
	if err != nil {
		return 0, fmt.Errorf("revoke certificates of token %s: %w", tokenName, err)
	}
	return revoked, nil
}

// Revocation is one entry of the CRL: a revoked certificate that has not
// expired.
type Revocation struct {
	Serial    string // upper-case hex
	RevokedAt time.Time
	Reason    int
	// DER is the certificate, valid only until the callback returns (it
	// is the database's buffer, not a copy).
	DER []byte
}

// EachRevoked calls fn with every certificate revoked and not expired at
// now, hosts' and administrators' (admin_certs), for the CRL, in no particular order (sorting would copy every
// certificate through the database's sorter). It streams: one row at a
// time, never the whole list as Go values, so that a CRL of 100,000
// entries costs no more memory than its entries. An error from fn stops it and is
// returned.
func (s *Store) EachRevoked(ctx context.Context, now time.Time, fn func(Revocation) error) error {
	rows, err := s.query(ctx, "SELECT serial, revoked_at, revoke_reason, der FROM certs WHERE revoked_at IS NOT NULL AND not_after > ?"+
		" UNION ALL SELECT serial, revoked_at, revoke_reason, der FROM admin_certs WHERE revoked_at IS NOT NULL AND not_after > ?", ts(now), ts(now))
	if err != nil {
		return fmt.Errorf("revoked certificates: %w", err)
	}
	defer rows.Close()
	var (
		r       Revocation
		revoked int64
		der     sql.RawBytes
	)
	for rows.Next() {
		if err := rows.Scan(&r.Serial, &revoked, &r.Reason, &der); err != nil {
			return fmt.Errorf("revoked certificates: %w", err)
		}
		r.RevokedAt, r.DER = fromTS(revoked), der
		if err := fn(r); err != nil {
			return err
		}
	}
	if err := rows.Err(); err != nil {
		return fmt.Errorf("revoked certificates: %w", err)
	}
	return nil
}

// sqlNextCRLNumber takes the next CRL number from the one locked row that
// only grows: fleet-wide on PostgreSQL.
var sqlNextCRLNumber = sq{
	lite: "UPDATE crl_state SET number = MAX(number + 1, ?) WHERE id = 1 RETURNING number",
	pg:   "UPDATE crl_state SET number = GREATEST(number + 1, ?) WHERE id = 1 RETURNING number",
}

// NextCRLNumber allocates the next CRL number: durable and strictly
// increasing, across restarts too. It is max(last+1, current Unix milliseconds),
// so numbers keep increasing even after an older backup is restored.
func (s *Store) NextCRLNumber(ctx context.Context) (*big.Int, error) {
	var n int64
	floor := time.Now().UnixMilli()
	err := s.write(ctx, func(t *wtx) error {
		return t.queryRow(t.pick(sqlNextCRLNumber), floor).Scan(&n)
	})
	if err != nil {
		return nil, fmt.Errorf("next CRL number: %w", err)
	}
	return big.NewInt(n), nil
}
