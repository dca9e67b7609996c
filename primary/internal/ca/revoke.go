package ca

import (
	"crypto"
	"crypto/x509"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"slices"
	"time"

	"github.com/hostcert/hostcert/common/pki"
)

// Errors of RevokeIssuing and SignRootCRL that callers branch on.
var (
	// ErrCurrentIssuing: the issuing CA that signs cannot be revoked until
	// a newer one takes over (ca rotate).
	ErrCurrentIssuing = errors.New("the current issuing CA cannot be revoked: make a new one first (ca rotate), then revoke this one")
	// ErrNoSuchIssuing: no loaded issuing CA has that ID.
	ErrNoSuchIssuing = errors.New("no such issuing CA")
	// ErrAlreadyRevoked: the issuing CA is already on its root's CRL.
	ErrAlreadyRevoked = errors.New("the issuing CA is already revoked")
	// ErrNotRootKey: the key given belongs to no root of this CA.
	ErrNotRootKey = errors.New("the key given is not the private key of a root of this CA")
)

// RevokedCA is an issuing CA that its root's CRL lists.
type RevokedCA struct {
	Cert      *x509.Certificate
	RevokedAt time.Time
	Reason    int
}

// RevokeIssuing revokes the issuing CA whose ID is id (compromise of its
// key, say): the root that signed it signs its CRL again, listing it (and
// every issuing CA it listed before). rootKey is that root's key when it is
// offline (nil: the key in the data directory). The current issuing CA is
// refused (ErrCurrentIssuing): rotate first. From then on no host
// certificate it signed renews (RevokedIssuer) and agents that fetch the
// root's CRL see their certificate as revoked.
func (c *CA) RevokeIssuing(id string, reason int, rootKey crypto.Signer, now time.Time) (RevokedCA, error) {
	if _, ok := reasonNames[reason]; !ok || reason == ReasonRemoveFromCRL {
		return RevokedCA{}, fmt.Errorf("revoke issuing CA %s: %w %d", id, ErrUnknownReason, reason)
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	h := c.h.Load()
	i := slices.IndexFunc(h.issuers, func(is Issuer) bool { return ID(is.Cert) == id })
	switch {
	case i < 0:
		return RevokedCA{}, fmt.Errorf("revoke issuing CA %s: %w", id, ErrNoSuchIssuing)
	case i == 0:
		return RevokedCA{}, fmt.Errorf("revoke issuing CA %s: %w", id, ErrCurrentIssuing)
	}
	target := h.issuers[i].Cert
	root := rootOf(target, h.roots)
	if root == nil {
		// A single CA of older versions is a root: no CRL lists it.
		return RevokedCA{}, fmt.Errorf("revoke issuing CA %s: it is a root, not an issuing CA; retire it instead (ca retire-root)", id)
	}
	for _, r := range c.revokedLocked() {
		if r.Cert.Equal(target) {
			return RevokedCA{}, fmt.Errorf("revoke issuing CA %s: %w (since %s)", id, ErrAlreadyRevoked, r.RevokedAt.UTC().Format(time.RFC3339))
		}
	}
	key, err := c.keyOfRoot(root, rootKey)
	if err != nil {
		return RevokedCA{}, fmt.Errorf("revoke issuing CA %s: %w", id, err)
	}
	rc := RevokedCA{Cert: target, RevokedAt: now.UTC().Truncate(time.Second), Reason: reason}
	if err := signRootCRL(c.dir, root, key, []RevokedEntry{{Serial: target.SerialNumber, RevokedAt: rc.RevokedAt, Reason: reason}}, now); err != nil {
		return RevokedCA{}, fmt.Errorf("revoke issuing CA %s: %w", id, err)
	}
	c.loadRevoked()
	return rc, nil
}

// SignRootCRL signs again the CRL of the root whose private key is rootKey
// (nil: the current root, with its key in the data directory), valid
// RootCRLValidity from now and listing what it listed. This is how a root
// kept offline keeps its CRL current (ca sign-root-crl). It returns the
// root.
func (c *CA) SignRootCRL(rootKey crypto.Signer, now time.Time) (*x509.Certificate, error) {
	if c.Single() {
		return nil, fmt.Errorf("sign root CRL: %w; its CRL is signed with the host certificates'", ErrSingleCA)
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	h := c.h.Load()
	root := h.roots[0]
	if rootKey != nil {
		i := slices.IndexFunc(h.roots, func(r *x509.Certificate) bool { return samePublicKey(r.PublicKey, rootKey.Public()) })
		if i < 0 {
			return nil, fmt.Errorf("sign root CRL: %w", ErrNotRootKey)
		}
		root = h.roots[i]
	}
	key, err := c.keyOfRoot(root, rootKey)
	if err != nil {
		return nil, fmt.Errorf("sign root CRL: %w", err)
	}
	if err := signRootCRL(c.dir, root, key, nil, now); err != nil {
		return nil, err
	}
	c.loadRevoked()
	return root, nil
}

// keyOfRoot is root's private key: given when it is root's, else the one in
// the data directory. The caller holds c.mu.
func (c *CA) keyOfRoot(root *x509.Certificate, given crypto.Signer) (crypto.Signer, error) {
	if given != nil {
		if !samePublicKey(root.PublicKey, given.Public()) {
			return nil, fmt.Errorf("the key given is not the private key of the root %s (%s)", root.Subject.CommonName, pki.Fingerprint(root))
		}
		return given, nil
	}
	if c.rootKey != nil && samePublicKey(root.PublicKey, c.rootKey.Public()) {
		return c.rootKey, nil
	}
	// An older root's key stays in the data directory until it is retired
	// (unless it was kept offline).
	b, err := os.ReadFile(RootKeyPath(c.dir, ID(root)))
	if errors.Is(err, fs.ErrNotExist) {
		return nil, fmt.Errorf("%w (root %s): give it with --root-key FILE", ErrRootKeyOffline, root.Subject.CommonName)
	}
	if err != nil {
		return nil, err
	}
	key, err := pki.ParseKey(b)
	if err != nil {
		return nil, fmt.Errorf("root key %s: %w", RootKeyPath(c.dir, ID(root)), err)
	}
	if !samePublicKey(root.PublicKey, key.Public()) {
		return nil, fmt.Errorf("root key %s does not match the root %s", RootKeyPath(c.dir, ID(root)), root.Subject.CommonName)
	}
	return key, nil
}

// rootOf is the root of roots that signed cert (not cert itself), or nil.
func rootOf(cert *x509.Certificate, roots []*x509.Certificate) *x509.Certificate {
	for _, r := range roots {
		if !r.Equal(cert) && signedBy(cert, r) && cert.CheckSignatureFrom(r) == nil {
			return r
		}
	}
	return nil
}

// RevokedIssuing is every loaded issuing CA that its root's CRL lists.
func (c *CA) RevokedIssuing() []RevokedCA { return slices.Clone(c.revokedCAs()) }

// RevokedIssuer is the revoked issuing CA that signed cert, nil when cert's
// issuer is not revoked. A certificate it signed is revoked with it: it
// renews no more (its host needs a reissue).
func (c *CA) RevokedIssuer(cert *x509.Certificate) *RevokedCA {
	for _, r := range c.revokedCAs() {
		if signedBy(cert, r.Cert) && cert.CheckSignatureFrom(r.Cert) == nil {
			return &r
		}
	}
	return nil
}

// revokedCAs is the revoked issuing CAs, read from the roots' CRLs once
// and again after each change.
func (c *CA) revokedCAs() []RevokedCA {
	if p := c.revoked.Load(); p != nil {
		return *p
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.revokedLocked()
}

// revokedLocked is revokedCAs for a caller that holds c.mu.
func (c *CA) revokedLocked() []RevokedCA {
	if p := c.revoked.Load(); p != nil {
		return *p
	}
	return c.loadRevoked()
}

// loadRevoked reads the roots' CRLs and keeps the issuing CAs they list.
// A root CRL that cannot be read lists nothing here (the CRL publisher
// reports it). The caller holds c.mu: a change to the roots' CRLs and the
// read after it are never overtaken by an older read.
func (c *CA) loadRevoked() []RevokedCA {
	h := c.h.Load()
	var out []RevokedCA
	if !h.single {
		lists, _ := readRootCRLs(c.dir, h.roots)
		for _, s := range lists {
			l, err := x509.ParseRevocationList(s.DER)
			if err != nil {
				continue
			}
			for _, e := range l.RevokedCertificateEntries {
				for _, is := range h.issuers {
					if is.Cert.SerialNumber.Cmp(e.SerialNumber) == 0 && rootOf(is.Cert, []*x509.Certificate{s.Issuer}) != nil {
						out = append(out, RevokedCA{Cert: is.Cert, RevokedAt: e.RevocationTime, Reason: e.ReasonCode})
					}
				}
			}
		}
	}
	c.revoked.Store(&out)
	return out
}
