package ca

import (
	"bytes"
	"crypto"
	"crypto/ecdsa"
	"crypto/rand"
	"crypto/x509"
	"encoding/pem"
	"errors"
	"fmt"
	"io/fs"
	"math/big"
	"os"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/hostcert/hostcert/common/atomicfile"
	"github.com/hostcert/hostcert/common/pki"
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
	// Issuer is the authority key identifier of the revoked certificate:
	// it is listed only on the CRL of the CA with that subject key
	// identifier (nil: on every CRL).
	Issuer []byte
}

// RootCRLValidity is how long a root's CRL stays valid: the root's key may
// be offline, so its CRL is signed rarely (at init, at each rotation, and
// whenever the key is online and half of it has passed).
const RootCRLValidity = 365 * 24 * time.Hour

// SignedCRL is one CRL and the CA that signed it.
type SignedCRL struct {
	ID     string // ID(Issuer)
	Issuer *x509.Certificate
	DER    []byte
}

// CRL returns the CRL of the current issuing CA (see CRLs).
func (c *CA) CRL(entries []RevokedEntry, number *big.Int, now time.Time, validity time.Duration) ([]byte, error) {
	is := c.h.Load().issuers[0]
	return signCRL(is.Cert, is.key, entries, number, now, validity)
}

// CRLs returns one DER RFC 5280 CRL per issuing CA that has not expired,
// the current one first, each listing the entries it issued: ThisUpdate =
// now, NextUpdate = now+validity (DefaultCRLValidity when zero), with the
// reason code extension on every entry whose reason is not unspecified.
func (c *CA) CRLs(entries []RevokedEntry, number *big.Int, now time.Time, validity time.Duration) ([]SignedCRL, error) {
	var out []SignedCRL
	for i, is := range c.h.Load().issuers {
		if i > 0 && !now.Before(is.Cert.NotAfter) {
			continue // its certificates have all expired
		}
		der, err := signCRL(is.Cert, is.key, entries, number, now, validity)
		if err != nil {
			return nil, err
		}
		out = append(out, SignedCRL{ID: ID(is.Cert), Issuer: is.Cert, DER: der})
	}
	return out, nil
}

func signCRL(issuer *x509.Certificate, key crypto.Signer, entries []RevokedEntry, number *big.Int, now time.Time, validity time.Duration) ([]byte, error) {
	if number == nil || number.Sign() < 0 {
		return nil, errors.New("crl: number must be non-negative")
	}
	if validity == 0 {
		validity = DefaultCRLValidity
	}
	if validity < 0 {
		return nil, fmt.Errorf("crl: negative validity %s", validity)
	}
	kept := make([]RevokedEntry, 0, len(entries))
	for _, e := range entries {
		if e.Serial == nil || e.Serial.Sign() <= 0 {
			return nil, errors.New("crl: entry without a positive serial")
		}
		if _, ok := reasonNames[e.Reason]; !ok {
			return nil, fmt.Errorf("crl: serial %s: %w %d", SerialHex(e.Serial), ErrUnknownReason, e.Reason)
		}
		if e.Issuer != nil && !bytes.Equal(e.Issuer, issuer.SubjectKeyId) {
			continue
		}
		kept = append(kept, e)
	}
	if k, ok := key.(*ecdsa.PrivateKey); ok {
		der, err := signCRLECDSA(issuer, k, kept, number, now, now.Add(validity))
		if err != nil {
			return nil, fmt.Errorf("crl of %s: %w", issuer.Subject.CommonName, err)
		}
		return der, nil
	}
	list := make([]x509.RevocationListEntry, 0, len(kept))
	for _, e := range kept {
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
	der, err := x509.CreateRevocationList(rand.Reader, tmpl, issuer, key)
	if err != nil {
		return nil, fmt.Errorf("crl of %s: %w", issuer.Subject.CommonName, err)
	}
	return der, nil
}

// RootCRLs are the roots' CRLs (DER), as signed when each root's key was
// at hand; a single CA of older versions has none (its CRL is its issuing
// CRL).
func (c *CA) RootCRLs() ([]SignedCRL, error) {
	if c.Single() {
		return nil, nil
	}
	return readRootCRLs(c.dir, c.Bundle())
}

func readRootCRLs(dir string, roots []*x509.Certificate) ([]SignedCRL, error) {
	b, err := os.ReadFile(RootCRLPath(dir))
	if errors.Is(err, fs.ErrNotExist) {
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("root CRLs: %w", err)
	}
	var out []SignedCRL
	for rest := b; ; {
		var blk *pem.Block
		blk, rest = pem.Decode(rest)
		if blk == nil {
			break
		}
		l, err := x509.ParseRevocationList(blk.Bytes)
		if err != nil {
			return nil, fmt.Errorf("root CRLs %s: %w", RootCRLPath(dir), err)
		}
		for _, r := range roots {
			if l.CheckSignatureFrom(r) == nil {
				out = append(out, SignedCRL{ID: ID(r), Issuer: r, DER: blk.Bytes})
				break
			}
		}
	}
	return out, nil
}

// signRootCRL signs root's CRL (listing the revoked issuing CAs: those of
// its earlier CRL, and revoked) and puts it in root-crl.pem in place of
// root's earlier one.
func signRootCRL(dir string, root *x509.Certificate, key crypto.Signer, revoked []RevokedEntry, now time.Time) error {
	// Every root the file holds a CRL of stays, but root's own.
	var others []*x509.Certificate
	if b, err := os.ReadFile(RootPath(dir)); err == nil {
		others, _ = pki.ParseCerts(b)
	}
	others = append(others, root)
	old, err := readRootCRLs(dir, dedupeCerts(others))
	if err != nil {
		return err
	}
	// A revocation is final: every entry of root's earlier CRL stays.
	for _, o := range old {
		if !o.Issuer.Equal(root) {
			continue
		}
		l, err := x509.ParseRevocationList(o.DER)
		if err != nil {
			return fmt.Errorf("root CRL: %w", err)
		}
		for _, e := range l.RevokedCertificateEntries {
			if !slices.ContainsFunc(revoked, func(r RevokedEntry) bool { return r.Serial.Cmp(e.SerialNumber) == 0 }) {
				revoked = append(revoked, RevokedEntry{Serial: e.SerialNumber, RevokedAt: e.RevocationTime, Reason: e.ReasonCode})
			}
		}
	}
	der, err := signCRL(root, key, revoked, big.NewInt(now.UnixMilli()), now, RootCRLValidity)
	if err != nil {
		return fmt.Errorf("root CRL: %w", err)
	}
	var buf bytes.Buffer
	buf.Write(pem.EncodeToMemory(&pem.Block{Type: "X509 CRL", Bytes: der}))
	for _, o := range old {
		if !o.Issuer.Equal(root) {
			buf.Write(pem.EncodeToMemory(&pem.Block{Type: "X509 CRL", Bytes: o.DER}))
		}
	}
	if err := atomicfile.WritePrivate(RootCRLPath(dir), buf.Bytes()); err != nil {
		return fmt.Errorf("root CRL: %w", err)
	}
	return nil
}

// RefreshRootCRL re-signs the current root's CRL when the root's key is
// online and less than half of RootCRLValidity is left (or there is none).
// It reports whether it signed; with the key offline it does nothing.
func (c *CA) RefreshRootCRL(now time.Time) (bool, error) {
	if c.Single() {
		return false, nil
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.rootKey == nil {
		return false, nil
	}
	root := c.Root()
	lists, err := readRootCRLs(c.dir, []*x509.Certificate{root})
	if err != nil {
		return false, err
	}
	for _, l := range lists {
		if p, err := x509.ParseRevocationList(l.DER); err == nil && p.NextUpdate.Sub(now) > RootCRLValidity/2 {
			return false, nil
		}
	}
	if err := signRootCRL(c.dir, root, c.rootKey, nil, now); err != nil {
		return false, err
	}
	return true, nil
}
