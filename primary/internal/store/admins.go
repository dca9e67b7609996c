package store

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"strings"
	"time"
)

// AdminCert is an administrator's client certificate: an admin-role
// certificate the issuing CA signed for an operator's name, the web
// console's login (SPEC §11).
type AdminCert struct {
	Serial       string // upper-case hex, no colons
	Name         string // the operator's name, the id of its role marker
	IssuedAt     time.Time
	NotBefore    time.Time
	NotAfter     time.Time
	DER          []byte
	RevokedAt    *time.Time
	RevokeReason int
}

// ErrAdminLive is AddAdminCert's answer when the name already holds a
// certificate that is neither revoked nor expired.
var ErrAdminLive = errors.New("the name holds a live administrator certificate")

const adminColumns = "serial, name, issued_at, not_before, not_after, der, revoked_at, revoke_reason"

func scanAdmin(sc rowScanner) (AdminCert, error) {
	var (
		c                           AdminCert
		issued, notBefore, notAfter int64
		revoked                     sql.NullInt64
	)
	if err := sc.Scan(&c.Serial, &c.Name, &issued, &notBefore, &notAfter, &c.DER, &revoked, &c.RevokeReason); err != nil {
		return AdminCert{}, err
	}
	c.IssuedAt, c.NotBefore, c.NotAfter, c.RevokedAt = fromTS(issued), fromTS(notBefore), fromTS(notAfter), fromNullTS(revoked)
	return c, nil
}

// AddAdminCert records a newly signed administrator certificate and its
// audit row in one transaction. ErrAdminLive when the name already holds a
// certificate that is neither revoked nor expired at c.IssuedAt (revoke it
// first); ErrSerialExists on a serial any certificate already has.
func (s *Store) AddAdminCert(ctx context.Context, c AdminCert, a Audit) error {
	if c.Name == "" || c.Serial == "" || len(c.DER) == 0 {
		return fmt.Errorf("add administrator certificate: name, serial and certificate required: %w", errInvalid)
	}
	c.Serial = strings.ToUpper(c.Serial)
	err := s.write(ctx, func(t *wtx) error {
		var live, taken int
		if err := t.queryRow("SELECT COUNT(*) FROM admin_certs WHERE name = ? AND revoked_at IS NULL AND not_after > ?",
			c.Name, ts(c.IssuedAt)).Scan(&live); err != nil {
			return err
		}
		if live > 0 {
			return ErrAdminLive
		}
		if err := t.queryRow("SELECT (SELECT COUNT(*) FROM certs WHERE serial = ?) + (SELECT COUNT(*) FROM admin_certs WHERE serial = ?)",
			c.Serial, c.Serial).Scan(&taken); err != nil {
			return err
		}
		if taken > 0 {
			return ErrSerialExists
		}
		if _, err := t.exec("INSERT INTO admin_certs ("+adminColumns+") VALUES (?, ?, ?, ?, ?, ?, NULL, 0)",
			c.Serial, c.Name, ts(c.IssuedAt), ts(c.NotBefore), ts(c.NotAfter), c.DER); err != nil {
			if isConstraint(err) {
				return ErrSerialExists
			}
			return err
		}
		a = withDefaults(a, "admin.add", "ok")
		a.Detail = withDetail(a.Detail, map[string]any{"admin": c.Name, "serial": c.Serial})
		return insertAudit(t, a)
	})
	if err != nil {
		return fmt.Errorf("add administrator certificate for %s: %w", c.Name, err)
	}
	return nil
}

// ListAdminCerts lists every administrator certificate, revoked and
// expired ones included, by name then issuance.
func (s *Store) ListAdminCerts(ctx context.Context) ([]AdminCert, error) {
	return s.queryAdmins(ctx, "list administrator certificates",
		"SELECT "+adminColumns+" FROM admin_certs ORDER BY name, issued_at, serial")
}

// AdminCertBySerial finds an administrator certificate by serial (hex, any
// case, colons allowed); ErrNotFound when there is none.
func (s *Store) AdminCertBySerial(ctx context.Context, serial string) (AdminCert, error) {
	key := strings.ToUpper(strings.ReplaceAll(serial, ":", ""))
	c, err := scanAdmin(s.queryRow(ctx, "SELECT "+adminColumns+" FROM admin_certs WHERE serial = ?", key))
	if errors.Is(err, sql.ErrNoRows) {
		return AdminCert{}, fmt.Errorf("administrator certificate %s: %w", serial, ErrNotFound)
	}
	if err != nil {
		return AdminCert{}, fmt.Errorf("administrator certificate %s: %w", serial, err)
	}
	return c, nil
}

// RevokeAdmin revokes every unrevoked certificate of the administrator
// name with reason and returns how many, writing a in the same
// transaction. ErrNotFound when the name never had a certificate.
func (s *Store) RevokeAdmin(ctx context.Context, name string, reason int, now time.Time, a Audit) (revoked int, err error) {
	if !validReason(reason) {
		return 0, fmt.Errorf("revoke administrator %s: reason %d is not an RFC 5280 reason: %w", name, reason, errInvalid)
	}
	err = s.write(ctx, func(t *wtx) error {
		revoked = 0
		var seen int
		if err := t.queryRow("SELECT COUNT(*) FROM admin_certs WHERE name = ?", name).Scan(&seen); err != nil {
			return err
		}
		if seen == 0 {
			return ErrNotFound
		}
		var err error
		if revoked, err = revokeRows(t, "UPDATE admin_certs SET revoked_at = ?, revoke_reason = ? WHERE name = ? AND revoked_at IS NULL",
			ts(now), reason, name); err != nil {
			return err
		}
		a = withDefaults(a, "admin.revoke", "ok")
		a.Detail = withDetail(a.Detail, map[string]any{"admin": name, "reason": reason, "revoked": revoked})
		return insertAudit(t, a)
	})
	if err != nil {
		return 0, fmt.Errorf("revoke administrator %s: %w", name, err)
	}
	return revoked, nil
}

func (s *Store) queryAdmins(ctx context.Context, what, q string, args ...any) ([]AdminCert, error) {
	return queryAll(ctx, s, what, scanAdmin, q, args...)
}
