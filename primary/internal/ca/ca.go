// Package ca is the primary's certificate authority: it creates and loads the
// CA key and certificate in the data directory, builds and signs host
// certificates, keeps the primary's own TLS server certificate, and signs
// RFC 5280 certificate revocation lists.
package ca

import (
	"crypto"
	"crypto/ecdsa"
	"crypto/rand"
	"crypto/sha1"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/asn1"
	"errors"
	"fmt"
	"io/fs"
	"math/big"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/google/uuid"

	"github.com/hostcert/hostcert/common/atomicfile"
	"github.com/hostcert/hostcert/common/hostname"
	"github.com/hostcert/hostcert/common/pki"
)

// ErrExists is returned by Init when the data directory already holds a CA.
var ErrExists = errors.New("a CA already exists in this data directory")

// Defaults.
const (
	DefaultCAValidity     = 20 * 365 * 24 * time.Hour
	DefaultCAKey          = pki.ECDSAP384
	DefaultServerKey      = pki.ECDSAP256
	DefaultServerValidity = 365 * 24 * time.Hour
	// ServerRenewBefore is how long before its NotAfter EnsureServerCert
	// replaces the primary's TLS certificate.
	ServerRenewBefore = 30 * 24 * time.Hour
	// caBackdate is how far the CA's NotBefore lies before its creation.
	caBackdate = time.Hour
)

// Paths inside the data directory.
const (
	caDir          = "ca"
	tlsDir         = "tls"
	caCertFile     = "ca.pem"
	caKeyFile      = "ca-key.pem"
	previousFile   = "previous.pem" // older CA certificates still trusted during a rotation
	hostIDFile     = "host-id"
	serverCertFile = "server.pem"
	serverKeyFile  = "server-key.pem"
	namesFile      = "primary-names" // every name the primary's TLS certificate ever held
)

// InitOptions configure a new CA.
type InitOptions struct {
	Names    []string         // host names of the primary, for its TLS cert (no IP literals)
	KeyAlg   pki.KeyAlgorithm // default pki.ECDSAP384; RSA selectable
	Validity time.Duration    // default 20 years
}

// CA is a loaded certificate authority. It is safe for concurrent use.
type CA struct {
	dir      string
	cert     *x509.Certificate
	key      crypto.Signer
	previous []*x509.Certificate
	hostID   string

	mu     sync.Mutex // serialises EnsureServerCert
	server atomic.Pointer[tls.Certificate]
	// names is every name the primary ever had (the names file plus the
	// current server certificate's), canonical: reserved for the primary.
	names atomic.Pointer[map[string]bool]

	// bundlePEM is BundlePEM, encoded on first use: every certificate
	// response carries it, and the bundle never changes once loaded.
	bundlePEM atomic.Pointer[[]byte]
}

// CertPath, KeyPath and the like name the files of a data directory.
func CertPath(dir string) string       { return filepath.Join(dir, caDir, caCertFile) }
func KeyPath(dir string) string        { return filepath.Join(dir, caDir, caKeyFile) }
func HostIDPath(dir string) string     { return filepath.Join(dir, caDir, hostIDFile) }
func ServerCertPath(dir string) string { return filepath.Join(dir, tlsDir, serverCertFile) }
func ServerKeyPath(dir string) string  { return filepath.Join(dir, tlsDir, serverKeyFile) }
func previousPath(dir string) string   { return filepath.Join(dir, caDir, previousFile) }
func NamesPath(dir string) string      { return filepath.Join(dir, caDir, namesFile) }

// Init creates a new CA in dir: the data directory (owner-only), the CA key
// and self-signed certificate, the primary's host ID and its TLS server
// certificate for opts.Names. It refuses with ErrExists when dir already has
// a CA certificate. The CA certificate is written last, so an interrupted
// Init leaves no CA and can simply be run again.
func Init(dir string, opts InitOptions, now time.Time) (*CA, error) {
	if _, err := os.Stat(CertPath(dir)); err == nil {
		return nil, fmt.Errorf("init CA in %s: %w", dir, ErrExists)
	} else if !errors.Is(err, fs.ErrNotExist) {
		return nil, fmt.Errorf("init CA in %s: %w", dir, err)
	}
	names, err := normalizeNames(opts.Names, hostname.Normalize)
	if err != nil {
		return nil, fmt.Errorf("init CA: %w", err)
	}
	if len(names) == 0 {
		return nil, errors.New("init CA: at least one name of the primary is needed for its TLS certificate")
	}
	alg := opts.KeyAlg
	if alg == "" {
		alg = DefaultCAKey
	}
	validity := opts.Validity
	if validity == 0 {
		validity = DefaultCAValidity
	}
	if validity < 0 {
		return nil, fmt.Errorf("init CA: negative validity %s", validity)
	}
	for _, d := range []string{dir, filepath.Join(dir, caDir), filepath.Join(dir, tlsDir)} {
		if err := atomicfile.MkdirPrivate(d); err != nil {
			return nil, fmt.Errorf("init CA: %w", err)
		}
	}

	key, err := pki.GenerateKey(alg)
	if err != nil {
		return nil, fmt.Errorf("init CA: %w", err)
	}
	cert, err := selfSign(key, validity, now)
	if err != nil {
		return nil, fmt.Errorf("init CA: %w", err)
	}
	keyPEM, err := pki.EncodeKey(key)
	if err != nil {
		return nil, fmt.Errorf("init CA: %w", err)
	}
	if err := atomicfile.WritePrivate(KeyPath(dir), keyPEM); err != nil {
		return nil, fmt.Errorf("init CA: %w", err)
	}
	hostID, err := ensureHostID(dir)
	if err != nil {
		return nil, fmt.Errorf("init CA: %w", err)
	}
	c := &CA{dir: dir, cert: cert, key: key, hostID: hostID}
	c.names.Store(&map[string]bool{})
	if _, err := c.issueServerCert(names, now); err != nil {
		return nil, fmt.Errorf("init CA: %w", err)
	}
	if err := atomicfile.WritePrivate(CertPath(dir), pki.EncodeCert(cert)); err != nil {
		return nil, fmt.Errorf("init CA: %w", err)
	}
	return c, nil
}

// Load reads the CA of dir. A missing or unusable server certificate is not
// an error (ServerTLS then returns nil until EnsureServerCert makes one).
func Load(dir string) (*CA, error) {
	certPEM, err := os.ReadFile(CertPath(dir))
	if err != nil {
		return nil, fmt.Errorf("load CA: %w", err)
	}
	certs, err := pki.ParseCerts(certPEM)
	if err != nil {
		return nil, fmt.Errorf("load CA %s: %w", CertPath(dir), err)
	}
	keyPEM, err := os.ReadFile(KeyPath(dir))
	if err != nil {
		return nil, fmt.Errorf("load CA: %w", err)
	}
	key, err := pki.ParseKey(keyPEM)
	if err != nil {
		return nil, fmt.Errorf("load CA key %s: %w", KeyPath(dir), err)
	}
	cert := certs[0]
	if !samePublicKey(cert.PublicKey, key.Public()) {
		return nil, fmt.Errorf("load CA: key %s does not match certificate %s", KeyPath(dir), CertPath(dir))
	}
	if !cert.IsCA {
		return nil, fmt.Errorf("load CA: %s is not a CA certificate", CertPath(dir))
	}
	c := &CA{dir: dir, cert: cert, key: key, previous: certs[1:]}
	if prev, err := os.ReadFile(previousPath(dir)); err == nil {
		pc, err := pki.ParseCerts(prev)
		if err != nil {
			return nil, fmt.Errorf("load CA %s: %w", previousPath(dir), err)
		}
		c.previous = append(c.previous, pc...)
	} else if !errors.Is(err, fs.ErrNotExist) {
		return nil, fmt.Errorf("load CA: %w", err)
	}
	id, err := os.ReadFile(HostIDPath(dir))
	if err != nil {
		return nil, fmt.Errorf("load CA: primary host ID: %w", err)
	}
	hostID := strings.TrimSpace(string(id))
	if _, err := uuid.Parse(hostID); err != nil {
		return nil, fmt.Errorf("load CA: primary host ID in %s: %w", HostIDPath(dir), err)
	}
	c.hostID = hostID

	// The server certificate is derived data: when it is missing or unusable
	// (say a crash between writing its key and its certificate left them
	// mismatched), ServerTLS is nil and EnsureServerCert makes a new one.
	if pair, err := tls.LoadX509KeyPair(ServerCertPath(dir), ServerKeyPath(dir)); err == nil && pair.Leaf != nil {
		c.server.Store(&pair)
	}
	past, err := readNames(NamesPath(dir))
	if err != nil {
		return nil, fmt.Errorf("load CA: %w", err)
	}
	// A data directory older than the names file: its current server
	// certificate's names are the primary's too (written at its next
	// issuance).
	if cur := c.server.Load(); cur != nil {
		for _, n := range cur.Leaf.DNSNames {
			if k, err := hostname.Normalize(n); err == nil {
				past[k] = true
			}
		}
	}
	c.names.Store(&past)
	return c, nil
}

// IsPrimaryName reports whether name is, or ever was, a name of the
// primary's TLS certificate, in any spelling that normalises to it. Such a
// name is reserved: no host certificate carries it.
func (c *CA) IsPrimaryName(name string) bool {
	n, err := hostname.Normalize(name)
	if err != nil {
		return false
	}
	m := c.names.Load()
	return m != nil && (*m)[n]
}

// PrimaryNames lists every name the primary has had, sorted.
func (c *CA) PrimaryNames() []string {
	m := c.names.Load()
	if m == nil {
		return nil
	}
	out := make([]string, 0, len(*m))
	for n := range *m {
		out = append(out, n)
	}
	slices.Sort(out)
	return out
}

// recordNames adds names to the names file (owner-only, atomically) before
// a certificate for them exists, so that a name the primary had stays
// reserved after a rename. The caller holds c.mu (or owns c).
func (c *CA) recordNames(names []string) error {
	old := c.names.Load()
	next := make(map[string]bool, len(*old)+len(names))
	for n := range *old {
		next[n] = true
	}
	for _, n := range names {
		next[n] = true
	}
	list := make([]string, 0, len(next))
	for n := range next {
		list = append(list, n)
	}
	slices.Sort(list)
	if err := atomicfile.WritePrivate(NamesPath(c.dir), []byte(strings.Join(list, "\n")+"\n")); err != nil {
		return fmt.Errorf("record the primary's names: %w", err)
	}
	c.names.Store(&next)
	return nil
}

// readNames reads the names file; a missing file is an empty set.
func readNames(path string) (map[string]bool, error) {
	out := map[string]bool{}
	b, err := os.ReadFile(path)
	if errors.Is(err, fs.ErrNotExist) {
		return out, nil
	}
	if err != nil {
		return nil, fmt.Errorf("primary names: %w", err)
	}
	for _, line := range strings.Split(string(b), "\n") {
		if line = strings.TrimSpace(line); line == "" {
			continue
		}
		n, err := hostname.Normalize(line)
		if err != nil {
			return nil, fmt.Errorf("primary names %s: %w", path, err)
		}
		out[n] = true
	}
	return out, nil
}

// Certificate is the current (signing) CA certificate.
func (c *CA) Certificate() *x509.Certificate { return c.cert }

// Bundle is every CA certificate a host should trust: the current one first,
// then older ones still valid during a CA rotation.
func (c *CA) Bundle() []*x509.Certificate {
	out := make([]*x509.Certificate, 0, 1+len(c.previous))
	out = append(out, c.cert)
	for _, p := range c.previous {
		if !p.Equal(c.cert) {
			out = append(out, p)
		}
	}
	return out
}

// BundlePEM is Bundle as PEM (a copy the caller may keep or modify).
func (c *CA) BundlePEM() []byte {
	p := c.bundlePEM.Load()
	if p == nil {
		b := pki.EncodeCerts(c.Bundle())
		p = &b
		c.bundlePEM.Store(p)
	}
	return slices.Clone(*p)
}

// Fingerprint is the SHA-256 fingerprint of the current CA certificate.
func (c *CA) Fingerprint() string { return pki.Fingerprint(c.cert) }

// PrimaryHostID is the primary's own host ID.
func (c *CA) PrimaryHostID() string { return c.hostID }

// ServerTLS is the primary's current TLS server certificate and key, with
// the CA certificate appended to the chain; nil when none exists yet.
func (c *CA) ServerTLS() *tls.Certificate { return c.server.Load() }

// EnsureServerCert issues a new TLS server certificate for names when there
// is none, when its names differ, when it was not signed by the current CA,
// or when less than ServerRenewBefore of its validity is left.
func (c *CA) EnsureServerCert(names []string, now time.Time) (renewed bool, err error) {
	want, err := normalizeNames(names, hostname.Normalize)
	if err != nil {
		return false, fmt.Errorf("server certificate: %w", err)
	}
	if len(want) == 0 {
		return false, errors.New("server certificate: no names")
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	if cur := c.server.Load(); cur != nil && cur.Leaf != nil && !c.serverNeedsRenewal(cur.Leaf, want, now) {
		return false, nil
	}
	if _, err := c.issueServerCert(want, now); err != nil {
		return false, err
	}
	return true, nil
}

func (c *CA) serverNeedsRenewal(leaf *x509.Certificate, names []string, now time.Time) bool {
	if leaf.CheckSignatureFrom(c.cert) != nil {
		return true
	}
	if pki.RequireRole(leaf, pki.RolePrimary) != nil {
		return true // made before certificates had roles
	}
	if !leaf.NotAfter.After(now.Add(ServerRenewBefore)) && leaf.NotAfter.Before(c.cert.NotAfter) {
		return true
	}
	if !leaf.NotAfter.After(now) {
		return true
	}
	return !sameNames(certNames(leaf), names)
}

// issueServerCert makes and stores a new server key and certificate. The
// caller holds c.mu (or owns c exclusively, as Init does).
func (c *CA) issueServerCert(names []string, now time.Time) (*tls.Certificate, error) {
	key, err := pki.GenerateKey(DefaultServerKey)
	if err != nil {
		return nil, fmt.Errorf("server certificate: %w", err)
	}
	serial, err := NewSerial()
	if err != nil {
		return nil, fmt.Errorf("server certificate: %w", err)
	}
	if err := c.recordNames(names); err != nil {
		return nil, fmt.Errorf("server certificate: %w", err)
	}
	tmpl, err := Template(HostCertRequest{
		Role:      pki.RolePrimary,
		HostID:    c.hostID,
		Names:     names,
		PublicKey: key.Public(),
		Serial:    serial,
		Validity:  DefaultServerValidity,
	}, c.cert, now)
	if err != nil {
		return nil, fmt.Errorf("server certificate: %w", err)
	}
	leaf, err := c.Sign(tmpl, key.Public())
	if err != nil {
		return nil, fmt.Errorf("server certificate: %w", err)
	}
	keyPEM, err := pki.EncodeKey(key)
	if err != nil {
		return nil, fmt.Errorf("server certificate: %w", err)
	}
	// Key first: a crash between the two writes leaves a new key with the
	// old certificate, which Load ignores and EnsureServerCert replaces.
	if err := atomicfile.WritePrivate(ServerKeyPath(c.dir), keyPEM); err != nil {
		return nil, fmt.Errorf("server certificate: %w", err)
	}
	chain := append(pki.EncodeCert(leaf), pki.EncodeCert(c.cert)...)
	if err := atomicfile.WritePrivate(ServerCertPath(c.dir), chain); err != nil {
		return nil, fmt.Errorf("server certificate: %w", err)
	}
	pair := &tls.Certificate{
		Certificate: [][]byte{leaf.Raw, c.cert.Raw},
		PrivateKey:  key,
		Leaf:        leaf,
	}
	c.server.Store(pair)
	return pair, nil
}

func ensureHostID(dir string) (string, error) {
	p := HostIDPath(dir)
	if b, err := os.ReadFile(p); err == nil {
		id := strings.TrimSpace(string(b))
		if _, err := uuid.Parse(id); err == nil {
			return id, nil
		}
	}
	id := uuid.NewString()
	if err := atomicfile.WritePrivate(p, []byte(id+"\n")); err != nil {
		return "", fmt.Errorf("primary host ID: %w", err)
	}
	return id, nil
}

func selfSign(key crypto.Signer, validity time.Duration, now time.Time) (*x509.Certificate, error) {
	serial, err := NewSerial()
	if err != nil {
		return nil, err
	}
	ski, err := subjectKeyID(key.Public())
	if err != nil {
		return nil, err
	}
	name := pkix.Name{
		CommonName:   caCommonName(now, ski),
		Organization: []string{"hostcert"},
	}
	tmpl := &x509.Certificate{
		SerialNumber:          serial,
		Subject:               name,
		Issuer:                name,
		NotBefore:             now.Add(-caBackdate),
		NotAfter:              now.Add(validity),
		IsCA:                  true,
		BasicConstraintsValid: true,
		MaxPathLenZero:        true,
		KeyUsage:              x509.KeyUsageCertSign | x509.KeyUsageCRLSign | x509.KeyUsageDigitalSignature,
		SubjectKeyId:          ski,
		AuthorityKeyId:        ski,
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, key.Public(), key)
	if err != nil {
		return nil, fmt.Errorf("self-sign CA: %w", err)
	}
	return x509.ParseCertificate(der)
}

// caCommonName is unique per CA: the creation date, for people, and the
// first 6 bytes of the CA key's identifier in hex, so that two CAs created
// on the same day have different subjects in every tool.
func caCommonName(now time.Time, ski []byte) string {
	return fmt.Sprintf("hostcert CA %s %X", now.UTC().Format("2006-01-02"), ski[:6])
}

// subjectKeyID is RFC 5280 §4.2.1.2 method 1: SHA-1 of the subjectPublicKey bits.
func subjectKeyID(pub crypto.PublicKey) ([]byte, error) {
	spki, err := x509.MarshalPKIXPublicKey(pub)
	if err != nil {
		return nil, fmt.Errorf("subject key ID: %w", err)
	}
	var info struct {
		Algorithm pkix.AlgorithmIdentifier
		PublicKey asn1.BitString
	}
	if _, err := asn1.Unmarshal(spki, &info); err != nil {
		return nil, fmt.Errorf("subject key ID: %w", err)
	}
	sum := sha1.Sum(info.PublicKey.Bytes)
	return sum[:], nil
}

func samePublicKey(a, b crypto.PublicKey) bool {
	k, ok := a.(interface{ Equal(crypto.PublicKey) bool })
	return ok && k.Equal(b)
}

// Sign signs tmpl (normally from Template) for pub with the current CA key.
func (c *CA) Sign(tmpl *x509.Certificate, pub crypto.PublicKey) (*x509.Certificate, error) {
	if tmpl == nil || pub == nil {
		return nil, errors.New("sign: nil template or public key")
	}
	var (
		der []byte
		err error
	)
	if k, ok := c.key.(*ecdsa.PrivateKey); ok {
		der, err = signECDSA(tmpl, c.cert, pub, k) // see sign.go
	} else {
		der, err = x509.CreateCertificate(rand.Reader, tmpl, c.cert, pub, c.key)
	}
	if err != nil {
		return nil, fmt.Errorf("sign certificate for %s: %w", tmpl.Subject.CommonName, err)
	}
	cert, err := x509.ParseCertificate(der)
	if err != nil {
		return nil, fmt.Errorf("sign certificate for %s: %w", tmpl.Subject.CommonName, err)
	}
	return cert, nil
}

// serialLimit is 2^127: serials are 127 random bits, so their DER encoding
// is positive and at most 16 bytes.
var serialLimit = new(big.Int).Lsh(big.NewInt(1), 127)

// NewSerial returns a random, positive, non-zero serial of at most 127 bits.
func NewSerial() (*big.Int, error) {
	for {
		n, err := rand.Int(rand.Reader, serialLimit)
		if err != nil {
			return nil, fmt.Errorf("new serial: %w", err)
		}
		if n.Sign() > 0 {
			return n, nil
		}
	}
}

// SerialHex formats a serial as the store keeps it: upper-case hex, no colons.
func SerialHex(n *big.Int) string { return strings.ToUpper(n.Text(16)) }

// ParseSerialHex is the inverse of SerialHex (any case; colons allowed).
func ParseSerialHex(s string) (*big.Int, error) {
	t := strings.ReplaceAll(strings.TrimSpace(s), ":", "")
	n, ok := new(big.Int).SetString(t, 16)
	if !ok || n.Sign() <= 0 {
		return nil, fmt.Errorf("serial %q is not a positive hex number", s)
	}
	return n, nil
}

func certNames(c *x509.Certificate) []string {
	out := append([]string(nil), c.DNSNames...)
	for _, ip := range c.IPAddresses {
		out = append(out, ip.String())
	}
	return out
}

func sameNames(a, b []string) bool {
	set := make(map[string]bool, len(a))
	for _, n := range a {
		set[strings.ToLower(n)] = true
	}
	seen := make(map[string]bool, len(b))
	for _, n := range b {
		n = strings.ToLower(n)
		if !set[n] {
			return false
		}
		seen[n] = true
	}
	return len(seen) == len(set)
}
