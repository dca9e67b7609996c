package ca

import (
	"crypto/rand"
	"crypto/x509"
	"errors"
	"fmt"
	"math/big"
	"strconv"
	"strings"
	"time"
)

// DefaultCRLValidity is how long a CRL stays valid (SPEC §6).
const DefaultCRLValidity = 7 * 24 * time.Hour

// RFC 5280 §5.3.1 CRL reason codes (7 is not used).
const (
	ReasonUnspecified          = 0
	ReasonKeyCompromise        = 1
	ReasonCACompromise         = 2
	ReasonAffiliationChanged   = 3
	ReasonSuperseded           = 4
	ReasonCessationOfOperation = 5
	ReasonCertificateHold      = 6
	ReasonRemoveFromCRL        = 8
	ReasonPrivilegeWithdrawn   = 9
	ReasonAACompromise         = 10
)

// reasonNames are the RFC 5280 spellings.
var reasonNames = map[int]string{
	ReasonUnspecified:          "unspecified",
	ReasonKeyCompromise:        "keyCompromise",
	ReasonCACompromise:         "cACompromise",
	ReasonAffiliationChanged:   "affiliationChanged",
	ReasonSuperseded:           "superseded",
	ReasonCessationOfOperation: "cessationOfOperation",
	ReasonCertificateHold:      "certificateHold",
	ReasonRemoveFromCRL:        "removeFromCRL",
	ReasonPrivilegeWithdrawn:   "privilegeWithdrawn",
	ReasonAACompromise:         "aACompromise",
}

// reasonByKey maps a name squeezed of case, '-', '_' and spaces to its code.
var reasonByKey = func() map[string]int {
	m := make(map[string]int, len(reasonNames))
	for code, name := range reasonNames {
		m[reasonKey(name)] = code
	}
	return m
}()

func reasonKey(s string) string {
	return strings.NewReplacer("-", "", "_", "", " ", "").Replace(strings.ToLower(strings.TrimSpace(s)))
}

// ErrUnknownReason is returned by ParseReason for anything but an RFC 5280 reason.
var ErrUnknownReason = errors.New("unknown revocation reason")

// ParseReason accepts an RFC 5280 reason by name ("keyCompromise",
// "key-compromise", "key_compromise", any case) or by number (0-10 but 7).
func ParseReason(s string) (int, error) {
	if n, err := strconv.Atoi(strings.TrimSpace(s)); err == nil {
		if _, ok := reasonNames[n]; ok {
			return n, nil
		}
		return 0, fmt.Errorf("revocation reason %q: %w", s, ErrUnknownReason)
	}
	if code, ok := reasonByKey[reasonKey(s)]; ok {
		return code, nil
	}
	return 0, fmt.Errorf("revocation reason %q: %w (want one of unspecified, key-compromise, ca-compromise, affiliation-changed, superseded, cessation-of-operation, certificate-hold, remove-from-crl, privilege-withdrawn, aa-compromise)", s, ErrUnknownReason)
}

// ReasonName is the RFC 5280 name of a reason code ("keyCompromise"), or
// "unknown(N)" for a code RFC 5280 does not define.
func ReasonName(code int) string {
	if n, ok := reasonNames[code]; ok {
		return n
	}
	return fmt.Sprintf("unknown(%d)", code)
}

// RevokedEntry is one revoked certificate for the CRL.
type RevokedEntry struct {
	Serial    *big.Int
	RevokedAt time.Time
	Reason    int
}

// CRL returns a DER RFC 5280 CRL signed by the current CA: ThisUpdate = now,
// NextUpdate = now+validity (DefaultCRLValidity when zero), with the reason
// code extension on every entry whose reason is not unspecified.
func (c *CA) CRL(entries []RevokedEntry, number *big.Int, now time.Time, validity time.Duration) ([]byte, error) {
	if number == nil || number.Sign() < 0 {
		return nil, errors.New("crl: number must be non-negative")
	}
	if validity == 0 {
		validity = DefaultCRLValidity
	}
	if validity < 0 {
		return nil, fmt.Errorf("crl: negative validity %s", validity)
	}
	list := make([]x509.RevocationListEntry, 0, len(entries))
	for _, e := range entries {
		if e.Serial == nil || e.Serial.Sign() <= 0 {
			return nil, errors.New("crl: entry without a positive serial")
		}
		if _, ok := reasonNames[e.Reason]; !ok {
			return nil, fmt.Errorf("crl: serial %s: %w %d", SerialHex(e.Serial), ErrUnknownReason, e.Reason)
		}
		list = append(list, x509.RevocationListEntry{
			SerialNumber:   e.Serial,
			RevocationTime: e.RevokedAt.UTC(),
			ReasonCode:     e.Reason,
		})
	}
	tmpl := &x509.RevocationList{
		Number:                    number,
		ThisUpdate:                now.UTC(),
		NextUpdate:                now.Add(validity).UTC(),
		RevokedCertificateEntries: list,
	}
	der, err := x509.CreateRevocationList(rand.Reader, tmpl, c.cert, c.key)
	if err != nil {
		return nil, fmt.Errorf("crl: %w", err)
	}
	return der, nil
}
