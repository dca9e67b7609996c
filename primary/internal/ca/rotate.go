package ca

import (
	"crypto"
	"crypto/rand"
	"crypto/x509"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"slices"
	"time"

	"github.com/hostcert/hostcert/common/atomicfile"
	"github.com/hostcert/hostcert/common/pki"
)

// RotateOptions configure a rotation.
type RotateOptions struct {
	// RootKey is the current root's private key when it is kept offline
	// (nil: the key in the data directory).
	RootKey crypto.Signer
	// KeyAlg and Validity are the new root's (RotateRoot only; defaults as
	// at init).
	KeyAlg   pki.KeyAlgorithm
	Validity time.Duration
	// IssuingKeyAlg and IssuingValidity are the new issuing CA's.
	IssuingKeyAlg   pki.KeyAlgorithm
	IssuingValidity time.Duration
	// RootKeyOut, when set, is where the new root's key goes instead of the
	// data directory (RotateRoot only).
	RootKeyOut string
}

// rootKeyFor returns the current root's key: the one in the data directory,
// else the one given, which must be the root's. The caller holds c.mu.
func (c *CA) rootKeyFor(given crypto.Signer) (crypto.Signer, error) {
	root := c.Root()
	if given != nil {
		if !samePublicKey(root.PublicKey, given.Public()) {
			return nil, fmt.Errorf("the key given is not the current root's (%s)", pki.Fingerprint(root))
		}
		return given, nil
	}
	if c.rootKey == nil {
		return nil, fmt.Errorf("%w: give it with --root-key FILE", ErrRootKeyOffline)
	}
	return c.rootKey, nil
}

// RotateIssuing makes a new issuing CA under the current root and makes it
// the one that signs; the older issuing CAs stay loaded (their certificates
// stay valid until they expire, and their CRLs are still signed). The
// primary's TLS certificate is reissued by the new CA.
func (c *CA) RotateIssuing(opts RotateOptions, now time.Time) (*x509.Certificate, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	h := c.h.Load()
	if h.single {
		return nil, fmt.Errorf("ca rotate: %w; rotate the root instead (ca rotate --root), which creates the hierarchy", ErrSingleCA)
	}
	key, err := c.rootKeyFor(opts.RootKey)
	if err != nil {
		return nil, fmt.Errorf("ca rotate: %w", err)
	}
	iss, err := newIssuing(c.dir, h.roots[0], key, opts.IssuingKeyAlg, opts.IssuingValidity, now)
	if err != nil {
		return nil, fmt.Errorf("ca rotate: %w", err)
	}
	if err := setCurrent(c.dir, iss.Cert); err != nil {
		return nil, fmt.Errorf("ca rotate: %w", err)
	}
	if err := c.setHierarchy(newHierarchy(h.roots, h.cross, append([]Issuer{iss}, h.issuers...), false)); err != nil {
		return nil, fmt.Errorf("ca rotate: %w", err)
	}
	if err := c.reissueServerCert(now); err != nil {
		return nil, fmt.Errorf("ca rotate: %w", err)
	}
	return iss.Cert, nil
}

// RotateRoot makes a new root, cross-signed by the current one (so that a
// host trusting only the current root can verify that the new one is
// vouched for), and a new issuing CA under it that signs from now on. The
// old root stays trusted and served until RetireRoot. The new root's key
// goes into the data directory, or to opts.RootKeyOut.
func (c *CA) RotateRoot(opts RotateOptions, now time.Time) (*x509.Certificate, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	h := c.h.Load()
	oldRoot := h.roots[0]
	oldKey, err := c.rootKeyFor(opts.RootKey)
	if err != nil {
		return nil, fmt.Errorf("ca rotate --root: %w", err)
	}
	newKey, newRoot, err := newRoot(opts.KeyAlg, opts.Validity, now)
	if err != nil {
		return nil, fmt.Errorf("ca rotate --root: %w", err)
	}
	cross, err := crossSign(newRoot, oldRoot, oldKey, now)
	if err != nil {
		return nil, fmt.Errorf("ca rotate --root: %w", err)
	}
	iss, err := newIssuing(c.dir, newRoot, newKey, opts.IssuingKeyAlg, opts.IssuingValidity, now)
	if err != nil {
		return nil, fmt.Errorf("ca rotate --root: %w", err)
	}
	if err := writeRootKey(c.dir, opts.RootKeyOut, newRoot, newKey); err != nil {
		return nil, fmt.Errorf("ca rotate --root: %w", err)
	}
	crossAll := append(slices.Clone(h.cross), cross)
	if err := atomicfile.WritePrivate(CrossPath(c.dir), pki.EncodeCerts(crossAll)); err != nil {
		return nil, fmt.Errorf("ca rotate --root: %w", err)
	}
	if !h.single {
		if err := signRootCRL(c.dir, oldRoot, oldKey, nil, now); err != nil {
			return nil, fmt.Errorf("ca rotate --root: %w", err)
		}
	}
	if err := signRootCRL(c.dir, newRoot, newKey, nil, now); err != nil {
		return nil, fmt.Errorf("ca rotate --root: %w", err)
	}
	// From a single CA: it becomes an old root and stays an issuer (ca.pem).
	roots := append([]*x509.Certificate{newRoot}, h.roots...)
	if err := setCurrent(c.dir, iss.Cert); err != nil {
		return nil, fmt.Errorf("ca rotate --root: %w", err)
	}
	// root.pem last: until it names the new root, Load sees the old state
	// (the new issuing CA is then refused as not under a known root).
	if err := atomicfile.WritePrivate(RootPath(c.dir), pki.EncodeCerts(roots)); err != nil {
		return nil, fmt.Errorf("ca rotate --root: %w", err)
	}
	if err := c.setHierarchy(newHierarchy(roots, crossAll, append([]Issuer{iss}, h.issuers...), false)); err != nil {
		return nil, fmt.Errorf("ca rotate --root: %w", err)
	}
	c.rootKey = nil
	if opts.RootKeyOut == "" {
		c.rootKey = newKey
	}
	if err := c.reissueServerCert(now); err != nil {
		return nil, fmt.Errorf("ca rotate --root: %w", err)
	}
	return newRoot, nil
}

// crossSign is newRoot's subject and key signed by oldRoot: the voucher
// with which a host that trusts oldRoot accepts newRoot.
func crossSign(newRoot, oldRoot *x509.Certificate, oldKey crypto.Signer, now time.Time) (*x509.Certificate, error) {
	serial, err := NewSerial()
	if err != nil {
		return nil, err
	}
	notAfter := newRoot.NotAfter
	if notAfter.After(oldRoot.NotAfter) {
		notAfter = oldRoot.NotAfter
	}
	tmpl := &x509.Certificate{
		SerialNumber:          serial,
		Subject:               newRoot.Subject,
		NotBefore:             now.Add(-caBackdate),
		NotAfter:              notAfter,
		IsCA:                  true,
		BasicConstraintsValid: true,
		MaxPathLen:            -1,
		KeyUsage:              newRoot.KeyUsage,
		SubjectKeyId:          newRoot.SubjectKeyId,
	}
	if tmpl.NotBefore.Before(oldRoot.NotBefore) {
		tmpl.NotBefore = oldRoot.NotBefore
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, oldRoot, newRoot.PublicKey, oldKey)
	if err != nil {
		return nil, fmt.Errorf("cross-sign the new root: %w", err)
	}
	return x509.ParseCertificate(der)
}

// ErrCurrentRoot is returned by RetireRoot for the current root.
var ErrCurrentRoot = errors.New("the current root cannot be retired")

// UnderRoot reports whether cert (a host certificate, or an issuing CA)
// was issued under root: by root itself, or by an issuing CA that root
// signed.
func (c *CA) UnderRoot(cert, root *x509.Certificate) bool {
	if cert.CheckSignatureFrom(root) == nil {
		return true
	}
	for _, is := range c.h.Load().issuers {
		if cert.CheckSignatureFrom(is.Cert) == nil && (is.Cert.Equal(root) || is.Cert.CheckSignatureFrom(root) == nil) {
			return true
		}
	}
	return false
}

// RetireRoot stops trusting and serving an older root: it leaves root.pem,
// its cross-signatures of newer roots stay (they are harmless), its issuing
// CAs and its key leave the data directory. The caller checks first that no
// host that only trusts it holds a valid certificate.
func (c *CA) RetireRoot(fingerprint string) (*x509.Certificate, error) {
	want, err := pki.NormalizeFingerprint(fingerprint)
	if err != nil {
		return nil, err
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	h := c.h.Load()
	i := slices.IndexFunc(h.roots, func(r *x509.Certificate) bool { return pki.Fingerprint(r) == want })
	switch {
	case i < 0:
		return nil, fmt.Errorf("retire root %s: no such root", want)
	case i == 0:
		return nil, fmt.Errorf("retire root %s: %w", want, ErrCurrentRoot)
	}
	old := h.roots[i]
	roots := slices.Delete(slices.Clone(h.roots), i, i+1)
	var issuers []Issuer
	var gone []Issuer
	for _, is := range h.issuers {
		if is.Cert.Equal(old) || is.Cert.CheckSignatureFrom(old) == nil {
			gone = append(gone, is)
			continue
		}
		issuers = append(issuers, is)
	}
	if err := atomicfile.WritePrivate(RootPath(c.dir), pki.EncodeCerts(roots)); err != nil {
		return nil, fmt.Errorf("retire root: %w", err)
	}
	if err := c.setHierarchy(newHierarchy(roots, h.cross, issuers, false)); err != nil {
		return nil, fmt.Errorf("retire root: %w", err)
	}
	for _, is := range gone {
		for _, p := range []string{IssuingPath(c.dir, ID(is.Cert)), IssuingKeyPath(c.dir, ID(is.Cert))} {
			if err := os.Remove(p); err != nil && !errors.Is(err, fs.ErrNotExist) {
				return nil, fmt.Errorf("retire root: %w", err)
			}
		}
	}
	// A single CA that signed the primary's certificate is gone: the
	// current issuing CA signs it again.
	if cur := c.server.Load(); cur != nil && cur.Leaf != nil && cur.Leaf.CheckSignatureFrom(c.h.Load().serverIssuer().Cert) != nil {
		if err := c.reissueServerCert(time.Now()); err != nil {
			return nil, fmt.Errorf("retire root: %w", err)
		}
	}
	remove := []string{RootKeyPath(c.dir, ID(old))}
	if b, err := os.ReadFile(CertPath(c.dir)); err == nil {
		if certs, err := pki.ParseCerts(b); err == nil && certs[0].Equal(old) {
			// The single CA of an older init: its certificate and key go.
			remove = append(remove, KeyPath(c.dir), CertPath(c.dir))
		}
	}
	for _, p := range remove {
		if err := os.Remove(p); err != nil && !errors.Is(err, fs.ErrNotExist) {
			return nil, fmt.Errorf("retire root: %w", err)
		}
	}
	// The single CA's ca.pem is gone: the bundle takes its place.
	if err := writeBundle(c.dir, c.h.Load()); err != nil {
		return nil, fmt.Errorf("retire root: %w", err)
	}
	return old, nil
}

// reissueServerCert issues the primary's TLS certificate again for its
// names, from the current issuing CA. The caller holds c.mu.
func (c *CA) reissueServerCert(now time.Time) error {
	cur := c.server.Load()
	if cur == nil || cur.Leaf == nil {
		return nil // EnsureServerCert makes one at the next start
	}
	_, err := c.issueServerCert(CertNames(cur.Leaf), now)
	return err
}
