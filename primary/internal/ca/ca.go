// Package ca is the primary's certificate authority: it creates and loads
// the CA hierarchy in the data directory — a root (its key may be kept
// offline) and issuing CAs under it — builds and signs host certificates
// with the current issuing CA, keeps the primary's own TLS server
// certificate, signs RFC 5280 certificate revocation lists (one per issuing
// CA, one per root) and rotates issuing CAs and roots.
package ca

import (
	"bytes"
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

// Errors callers branch on.
var (
	// ErrExists is returned by Init when the data directory already holds a CA.
	ErrExists = errors.New("a CA already exists in this data directory")
	// ErrRootKeyOffline is returned by an operation that needs the root's
	// private key when it is not in the data directory and was not given.
	ErrRootKeyOffline = errors.New("the root CA's private key is offline")
	// ErrSingleCA is returned by RotateIssuing for a data directory made by
	// the single-CA init of older versions: its CA has path length 0 and
	// can sign no issuing CA.
	ErrSingleCA = errors.New("this data directory has a single CA (made by an older init), which cannot sign an issuing CA")
)

// Defaults.
const (
	DefaultRootValidity    = 20 * 365 * 24 * time.Hour
	DefaultRootKey         = pki.ECDSAP384
	DefaultIssuingValidity = 5 * 365 * 24 * time.Hour
	DefaultIssuingKey      = pki.ECDSAP256
	// DefaultCAValidity and DefaultCAKey are the root's.
	DefaultCAValidity     = DefaultRootValidity
	DefaultCAKey          = DefaultRootKey
	DefaultServerKey      = pki.ECDSAP256
	DefaultServerValidity = 365 * 24 * time.Hour
	// ServerRenewBefore is how long before its NotAfter EnsureServerCert
	// replaces the primary's TLS certificate.
	ServerRenewBefore = 30 * 24 * time.Hour
	// caBackdate is how far a CA's NotBefore lies before its creation.
	caBackdate = time.Hour
)

// Paths inside the data directory.
const (
	caDir  = "ca"
	tlsDir = "tls"
	// The single CA of older versions: a self-signed CA with path length 0
	// that signs host certificates itself.
	caCertFile   = "ca.pem"
	caKeyFile    = "ca-key.pem"
	previousFile = "previous.pem" // older CA certificates still trusted (single CA)
	// The hierarchy.
	rootFile       = "root.pem"        // roots hosts trust, the current one first
	rootKeyPrefix  = "root-"           // root-<id>-key.pem: a root's key, unless moved offline
	crossFile      = "cross.pem"       // newer roots cross-signed by older ones
	rootCRLFile    = "root-crl.pem"    // one CRL per root, listing revoked issuing CAs
	issuingPrefix  = "issuing-"        // issuing-<id>.pem and issuing-<id>-key.pem
	issuingCurrent = "issuing-current" // the id of the issuing CA that signs
	hostIDFile     = "host-id"
	serverCertFile = "server.pem"
	serverKeyFile  = "server-key.pem"
	namesFile      = "primary-names" // every name the primary's TLS certificate ever held
)

// InitOptions configure a new CA.
type InitOptions struct {
	Names    []string         // the primary's names for its TLS cert: host names or IP addresses (hostname.ForServer)
	KeyAlg   pki.KeyAlgorithm // the root's; default pki.ECDSAP384; RSA selectable
	Validity time.Duration    // the root's; default 20 years
	// IssuingKeyAlg and IssuingValidity are the issuing CA's (default
	// ECDSA P-256, 5 years, never beyond the root).
	IssuingKeyAlg   pki.KeyAlgorithm
	IssuingValidity time.Duration
	// RootKeyOut, when set, is where the root's private key is written
	// (owner-only) instead of the data directory: the server never holds it.
	RootKeyOut string
}

// Issuer is one issuing CA: its certificate and, while it may sign, its key.
type Issuer struct {
	Cert *x509.Certificate
	key  crypto.Signer
}

// ID names an issuing CA in file names and the API: the hex of the first 8
// bytes of its subject key identifier.
func ID(c *x509.Certificate) string { return pki.KeyID(c.SubjectKeyId) }

// hierarchy is the CA material at one moment; a rotation swaps it whole.
type hierarchy struct {
	roots   []*x509.Certificate // trusted by hosts, the current root first
	cross   []*x509.Certificate // newer roots signed by older ones
	issuers []Issuer            // the current (signing) one first
	single  bool                // the single CA of older versions
	bundle  []byte              // BundlePEM
}

// CA is a loaded certificate authority. It is safe for concurrent use.
type CA struct {
	dir    string
	hostID string
	h      atomic.Pointer[hierarchy]

	mu      sync.Mutex // serialises EnsureServerCert and rotations
	rootKey crypto.Signer
	server  atomic.Pointer[tls.Certificate]
	// revoked is the issuing CAs the roots' CRLs list (revoke.go); nil
	// until first read.
	revoked atomic.Pointer[[]RevokedCA]
	// names is every name the primary ever had (the names file plus the
	// current server certificate's), canonical: reserved for the primary.
	names atomic.Pointer[map[string]bool]
	// fleet is every name of every primary node on a shared store
	// (SetFleetNames): reserved here too.
	fleet atomic.Pointer[map[string]bool]
}

// CertPath, KeyPath and the like name the files of a data directory.
// CertPath and KeyPath are the single CA of older versions.
func CertPath(dir string) string { return filepath.Join(dir, caDir, caCertFile) }
func KeyPath(dir string) string  { return filepath.Join(dir, caDir, caKeyFile) }
func RootPath(dir string) string { return filepath.Join(dir, caDir, rootFile) }
func RootKeyPath(dir, id string) string {
	return filepath.Join(dir, caDir, rootKeyPrefix+id+"-key.pem")
}
func RootCRLPath(dir string) string    { return filepath.Join(dir, caDir, rootCRLFile) }
func CrossPath(dir string) string      { return filepath.Join(dir, caDir, crossFile) }
func HostIDPath(dir string) string     { return filepath.Join(dir, caDir, hostIDFile) }
func ServerCertPath(dir string) string { return filepath.Join(dir, tlsDir, serverCertFile) }
func ServerKeyPath(dir string) string  { return filepath.Join(dir, tlsDir, serverKeyFile) }
func previousPath(dir string) string   { return filepath.Join(dir, caDir, previousFile) }
func NamesPath(dir string) string      { return filepath.Join(dir, caDir, namesFile) }
func IssuingPath(dir, id string) string {
	return filepath.Join(dir, caDir, issuingPrefix+id+".pem")
}
func IssuingKeyPath(dir, id string) string {
	return filepath.Join(dir, caDir, issuingPrefix+id+"-key.pem")
}
func issuingCurrentPath(dir string) string { return filepath.Join(dir, caDir, issuingCurrent) }

// Init creates a new CA in dir: the data directory (owner-only), a
// self-signed root and its key (in dir, or opts.RootKeyOut), an issuing CA
// under it with path length 0 and its key, the root's CRL, the primary's
// host ID and its TLS server certificate for opts.Names. It refuses with
// ErrExists when dir already has a CA. The root certificate is written
// last, so an interrupted Init leaves no CA and can simply be run again.
func Init(dir string, opts InitOptions, now time.Time) (*CA, error) {
	for _, p := range []string{RootPath(dir), CertPath(dir)} {
		if _, err := os.Stat(p); err == nil {
			return nil, fmt.Errorf("init CA in %s: %w", dir, ErrExists)
		} else if !errors.Is(err, fs.ErrNotExist) {
			return nil, fmt.Errorf("init CA in %s: %w", dir, err)
		}
	}
	names, err := normalizeNames(opts.Names, hostname.ForServer)
	if err != nil {
		return nil, fmt.Errorf("init CA: %w", err)
	}
	if len(names) == 0 {
		return nil, errors.New("init CA: at least one name of the primary is needed for its TLS certificate")
	}
	if opts.Validity < 0 || opts.IssuingValidity < 0 {
		return nil, fmt.Errorf("init CA: negative validity")
	}
	for _, d := range []string{dir, filepath.Join(dir, caDir), filepath.Join(dir, tlsDir)} {
		if err := atomicfile.MkdirPrivate(d); err != nil {
			return nil, fmt.Errorf("init CA: %w", err)
		}
	}
	rootKey, root, err := newRoot(opts.KeyAlg, opts.Validity, now)
	if err != nil {
		return nil, fmt.Errorf("init CA: %w", err)
	}
	iss, err := newIssuing(dir, root, rootKey, opts.IssuingKeyAlg, opts.IssuingValidity, now)
	if err != nil {
		return nil, fmt.Errorf("init CA: %w", err)
	}
	if err := setCurrent(dir, iss.Cert); err != nil {
		return nil, fmt.Errorf("init CA: %w", err)
	}
	if err := writeRootKey(dir, opts.RootKeyOut, root, rootKey); err != nil {
		return nil, fmt.Errorf("init CA: %w", err)
	}
	hostID, err := ensureHostID(dir)
	if err != nil {
		return nil, fmt.Errorf("init CA: %w", err)
	}
	c := &CA{dir: dir, hostID: hostID}
	if opts.RootKeyOut == "" {
		c.rootKey = rootKey
	}
	c.names.Store(&map[string]bool{})
	c.h.Store(newHierarchy([]*x509.Certificate{root}, nil, []Issuer{iss}, false))
	if _, err := c.issueServerCert(names, now); err != nil {
		return nil, fmt.Errorf("init CA: %w", err)
	}
	if err := signRootCRL(dir, root, rootKey, nil, now); err != nil {
		return nil, fmt.Errorf("init CA: %w", err)
	}
	if err := atomicfile.WritePrivate(RootPath(dir), pki.EncodeCert(root)); err != nil {
		return nil, fmt.Errorf("init CA: %w", err)
	}
	if err := writeBundle(dir, c.h.Load()); err != nil {
		return nil, fmt.Errorf("init CA: %w", err)
	}
	return c, nil
}

// writeBundle keeps ca/ca.pem equal to what GET /v1/ca serves (the roots
// first, then cross certificates and issuing CAs): the file an operator
// hands to a tool or a host instead of fetching it. A directory made by an
// older init keeps its single CA in ca.pem (beside ca-key.pem); that file is
// left alone.
func writeBundle(dir string, h *hierarchy) error {
	if h.single {
		return nil
	}
	if _, err := os.Stat(KeyPath(dir)); err == nil {
		return nil
	}
	if b, err := os.ReadFile(CertPath(dir)); err == nil && bytes.Equal(b, h.bundle) {
		return nil
	}
	if err := atomicfile.WritePrivate(CertPath(dir), h.bundle); err != nil {
		return fmt.Errorf("CA bundle: %w", err)
	}
	return nil
}

// setHierarchy makes h the CA's hierarchy and writes its bundle.
func (c *CA) setHierarchy(h *hierarchy) error {
	c.h.Store(h)
	return writeBundle(c.dir, h)
}

// setCurrent names the issuing CA that signs from now on.
func setCurrent(dir string, cert *x509.Certificate) error {
	if err := atomicfile.WritePrivate(issuingCurrentPath(dir), []byte(ID(cert)+"\n")); err != nil {
		return fmt.Errorf("current issuing CA: %w", err)
	}
	return nil
}

// writeRootKey writes the root's key to out (offline) or into dir.
func writeRootKey(dir, out string, root *x509.Certificate, key crypto.Signer) error {
	keyPEM, err := pki.EncodeKey(key)
	if err != nil {
		return err
	}
	p := RootKeyPath(dir, ID(root))
	if out != "" {
		p = out
	}
	if err := atomicfile.WritePrivate(p, keyPEM); err != nil {
		return fmt.Errorf("write the root key: %w", err)
	}
	return nil
}

func newHierarchy(roots, cross []*x509.Certificate, issuers []Issuer, single bool) *hierarchy {
	h := &hierarchy{roots: roots, cross: cross, issuers: issuers, single: single}
	var all []*x509.Certificate
	all = append(all, roots...)
	all = append(all, cross...)
	for _, is := range issuers {
		if !slices.ContainsFunc(all, is.Cert.Equal) {
			all = append(all, is.Cert)
		}
	}
	h.bundle = pki.EncodeCerts(all)
	return h
}

// Load reads the CA of dir: the hierarchy (root.pem and the issuing CAs),
// or the single CA that older versions of init made (ca.pem), which then
// is both the root hosts trust and the CA that signs. A missing or
// unusable server certificate is not an error (ServerTLS then returns nil
// until EnsureServerCert makes one).
func Load(dir string) (*CA, error) {
	c := &CA{dir: dir}
	var (
		h   *hierarchy
		err error
	)
	if _, serr := os.Stat(RootPath(dir)); serr == nil {
		h, c.rootKey, err = loadHierarchy(dir)
	} else {
		h, c.rootKey, err = loadSingle(dir)
	}
	if err != nil {
		return nil, err
	}
	if err := c.setHierarchy(h); err != nil {
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
		for _, n := range CertNames(cur.Leaf) {
			if k, err := hostname.ForServer(n); err == nil {
				past[k] = true
			}
		}
	}
	c.names.Store(&past)
	return c, nil
}

// loadSingle reads the single CA of older versions (ca.pem, ca-key.pem,
// previous.pem): it is the root and the one issuer.
func loadSingle(dir string) (*hierarchy, crypto.Signer, error) {
	certs, key, err := readCertAndKey(CertPath(dir), KeyPath(dir))
	if err != nil {
		return nil, nil, fmt.Errorf("load CA: %w", err)
	}
	cert := certs[0]
	roots := certs
	if prev, err := os.ReadFile(previousPath(dir)); err == nil {
		pc, err := pki.ParseCerts(prev)
		if err != nil {
			return nil, nil, fmt.Errorf("load CA %s: %w", previousPath(dir), err)
		}
		roots = append(roots, pc...)
	} else if !errors.Is(err, fs.ErrNotExist) {
		return nil, nil, fmt.Errorf("load CA: %w", err)
	}
	return newHierarchy(dedupeCerts(roots), nil, []Issuer{{Cert: cert, key: key}}, true), key, nil
}

// readCertAndKey reads a CA certificate file (the first certificate is the
// key's) and its key, and checks they belong together.
func readCertAndKey(certPath, keyPath string) ([]*x509.Certificate, crypto.Signer, error) {
	certPEM, err := os.ReadFile(certPath)
	if err != nil {
		return nil, nil, err
	}
	certs, err := pki.ParseCerts(certPEM)
	if err != nil {
		return nil, nil, fmt.Errorf("%s: %w", certPath, err)
	}
	keyPEM, err := os.ReadFile(keyPath)
	if err != nil {
		return nil, nil, err
	}
	key, err := pki.ParseKey(keyPEM)
	if err != nil {
		return nil, nil, fmt.Errorf("key %s: %w", keyPath, err)
	}
	if !samePublicKey(certs[0].PublicKey, key.Public()) {
		return nil, nil, fmt.Errorf("key %s does not match certificate %s", keyPath, certPath)
	}
	if !certs[0].IsCA {
		return nil, nil, fmt.Errorf("%s is not a CA certificate", certPath)
	}
	return certs, key, nil
}

// loadHierarchy reads root.pem, cross.pem, the root key when present, and
// every issuing CA (the current one first, then the newest first). The
// single CA of a directory that rotated its root away from it stays an
// issuer: its host certificates keep their CRL.
func loadHierarchy(dir string) (*hierarchy, crypto.Signer, error) {
	b, err := os.ReadFile(RootPath(dir))
	if err != nil {
		return nil, nil, fmt.Errorf("load CA: %w", err)
	}
	roots, err := pki.ParseCerts(b)
	if err != nil {
		return nil, nil, fmt.Errorf("load CA %s: %w", RootPath(dir), err)
	}
	var rootKey crypto.Signer
	kp := RootKeyPath(dir, ID(roots[0]))
	if kb, err := os.ReadFile(kp); err == nil {
		if rootKey, err = pki.ParseKey(kb); err != nil {
			return nil, nil, fmt.Errorf("load CA root key %s: %w", kp, err)
		}
		if !samePublicKey(roots[0].PublicKey, rootKey.Public()) {
			return nil, nil, fmt.Errorf("load CA: key %s does not match the root %s", kp, RootPath(dir))
		}
	} else if !errors.Is(err, fs.ErrNotExist) {
		return nil, nil, fmt.Errorf("load CA: %w", err)
	}
	var cross []*x509.Certificate
	if cb, err := os.ReadFile(CrossPath(dir)); err == nil {
		if cross, err = pki.ParseCerts(cb); err != nil {
			return nil, nil, fmt.Errorf("load CA %s: %w", CrossPath(dir), err)
		}
	} else if !errors.Is(err, fs.ErrNotExist) {
		return nil, nil, fmt.Errorf("load CA: %w", err)
	}
	cur, err := os.ReadFile(issuingCurrentPath(dir))
	if err != nil {
		return nil, nil, fmt.Errorf("load CA: current issuing CA: %w", err)
	}
	current := strings.TrimSpace(string(cur))
	entries, err := os.ReadDir(filepath.Join(dir, caDir))
	if err != nil {
		return nil, nil, fmt.Errorf("load CA: %w", err)
	}
	var issuers []Issuer
	for _, e := range entries {
		n := e.Name()
		if !strings.HasPrefix(n, issuingPrefix) || !strings.HasSuffix(n, ".pem") || strings.HasSuffix(n, "-key.pem") {
			continue
		}
		id := strings.TrimSuffix(strings.TrimPrefix(n, issuingPrefix), ".pem")
		certs, key, err := readCertAndKey(IssuingPath(dir, id), IssuingKeyPath(dir, id))
		if err != nil {
			return nil, nil, fmt.Errorf("load issuing CA %s: %w", id, err)
		}
		if !chainsToOneOf(certs[0], roots) {
			return nil, nil, fmt.Errorf("load issuing CA %s: not signed by a root in %s", id, RootPath(dir))
		}
		issuers = append(issuers, Issuer{Cert: certs[0], key: key})
	}
	if _, err := os.Stat(KeyPath(dir)); err == nil {
		certs, key, err := readCertAndKey(CertPath(dir), KeyPath(dir))
		if err != nil {
			return nil, nil, fmt.Errorf("load CA: %w", err)
		}
		issuers = append(issuers, Issuer{Cert: certs[0], key: key})
	}
	slices.SortStableFunc(issuers, func(a, b Issuer) int {
		ac, bc := ID(a.Cert) == current, ID(b.Cert) == current
		switch {
		case ac && !bc:
			return -1
		case bc && !ac:
			return 1
		}
		return b.Cert.NotBefore.Compare(a.Cert.NotBefore)
	})
	if len(issuers) == 0 || ID(issuers[0].Cert) != current {
		return nil, nil, fmt.Errorf("load CA: the current issuing CA %q (%s) is missing", current, issuingCurrentPath(dir))
	}
	return newHierarchy(roots, cross, issuers, false), rootKey, nil
}

func chainsToOneOf(c *x509.Certificate, roots []*x509.Certificate) bool {
	for _, r := range roots {
		if c.CheckSignatureFrom(r) == nil {
			return true
		}
	}
	return false
}

func dedupeCerts(in []*x509.Certificate) []*x509.Certificate {
	var out []*x509.Certificate
	for _, c := range in {
		if !slices.ContainsFunc(out, c.Equal) {
			out = append(out, c)
		}
	}
	return out
}

// IsPrimaryName reports whether name is, or ever was, a name of the
// primary's TLS certificate, or is a name of another primary node of the
// fleet (SetFleetNames), in any spelling that normalises to it. Such a
// name is reserved: no host certificate carries it.
func (c *CA) IsPrimaryName(name string) bool {
	n, err := hostname.ForServer(name)
	if err != nil {
		return false
	}
	if m := c.names.Load(); m != nil && (*m)[n] {
		return true
	}
	f := c.fleet.Load()
	return f != nil && (*f)[n]
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
		n, err := hostname.ForServer(line)
		if err != nil {
			return nil, fmt.Errorf("primary names %s: %w", path, err)
		}
		out[n] = true
	}
	return out, nil
}

// Certificate is the current issuing CA's certificate: the one that signs
// (for a single CA of older versions, that CA).
func (c *CA) Certificate() *x509.Certificate { return c.h.Load().issuers[0].Cert }

// Root is the current root: its fingerprint is the one hosts confirm.
func (c *CA) Root() *x509.Certificate { return c.h.Load().roots[0] }

// Bundle is every root a host should trust: the current one first, then
// older ones still trusted after a root rotation.
func (c *CA) Bundle() []*x509.Certificate { return slices.Clone(c.h.Load().roots) }

// Cross is every newer root certificate cross-signed by an older root.
func (c *CA) Cross() []*x509.Certificate { return slices.Clone(c.h.Load().cross) }

// Issuing is every issuing CA, the current one first.
func (c *CA) Issuing() []*x509.Certificate {
	h := c.h.Load()
	out := make([]*x509.Certificate, 0, len(h.issuers))
	for _, is := range h.issuers {
		out = append(out, is.Cert)
	}
	return out
}

// Single reports whether this is the single CA of older versions (the root
// signs host certificates itself).
func (c *CA) Single() bool { return c.h.Load().single }

// RootKeyOnline reports whether the root's private key is in the data
// directory (else it was moved offline).
func (c *CA) RootKeyOnline() bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.rootKey != nil
}

// BundlePEM is what GET /v1/ca serves, as PEM (a copy the caller may keep
// or modify): the roots (current first), the cross-signed roots, then the
// issuing CAs (current first). Hosts trust only roots; the rest lets them
// and tools like openssl build chains.
func (c *CA) BundlePEM() []byte { return slices.Clone(c.h.Load().bundle) }

// Fingerprint is the SHA-256 fingerprint of the current root.
func (c *CA) Fingerprint() string { return pki.Fingerprint(c.Root()) }

// PrimaryHostID is the primary's own host ID.
func (c *CA) PrimaryHostID() string { return c.hostID }

// ServerTLS is the primary's current TLS server certificate and key, with
// its issuing CA appended to the chain; nil when none exists yet.
func (c *CA) ServerTLS() *tls.Certificate { return c.server.Load() }

// EnsureServerCert issues a new TLS server certificate for names when there
// is none, when its names differ, when it was not signed by the current CA,
// or when less than ServerRenewBefore of its validity is left.
func (c *CA) EnsureServerCert(names []string, now time.Time) (renewed bool, err error) {
	want, err := normalizeNames(names, hostname.ForServer)
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
	cur := c.h.Load().serverIssuer().Cert
	if leaf.CheckSignatureFrom(cur) != nil {
		return true
	}
	if pki.RequireRole(leaf, pki.RolePrimary) != nil {
		return true // made before certificates had roles
	}
	if !leaf.NotAfter.After(now.Add(ServerRenewBefore)) && leaf.NotAfter.Before(cur.NotAfter) {
		return true
	}
	if !leaf.NotAfter.After(now) {
		return true
	}
	return !sameNames(CertNames(leaf), names)
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
	iss := c.h.Load().serverIssuer()
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
	}, iss.Cert, now)
	if err != nil {
		return nil, fmt.Errorf("server certificate: %w", err)
	}
	leaf, err := iss.sign(tmpl, key.Public())
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
	// After a root rotation the chain also carries the cross certificates
	// of the issuing CA's root: a host that trusts only an older root
	// verifies the primary through them, and learns the new root.
	certs := append([]*x509.Certificate{leaf, iss.Cert}, c.crossFor(iss.Cert)...)
	if err := atomicfile.WritePrivate(ServerCertPath(c.dir), pki.EncodeCerts(certs)); err != nil {
		return nil, fmt.Errorf("server certificate: %w", err)
	}
	pair := &tls.Certificate{PrivateKey: key, Leaf: leaf}
	for _, x := range certs {
		pair.Certificate = append(pair.Certificate, x.Raw)
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

// newRoot makes a root key and its self-signed certificate (no path length
// limit, so that a later root can be cross-signed by it).
func newRoot(alg pki.KeyAlgorithm, validity time.Duration, now time.Time) (crypto.Signer, *x509.Certificate, error) {
	if alg == "" {
		alg = DefaultRootKey
	}
	if validity == 0 {
		validity = DefaultRootValidity
	}
	key, err := pki.GenerateKey(alg)
	if err != nil {
		return nil, nil, fmt.Errorf("root CA: %w", err)
	}
	tmpl, err := caTemplate("hostcert root CA", key.Public(), now, now.Add(validity), -1)
	if err != nil {
		return nil, nil, fmt.Errorf("root CA: %w", err)
	}
	tmpl.AuthorityKeyId = tmpl.SubjectKeyId
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, key.Public(), key)
	if err != nil {
		return nil, nil, fmt.Errorf("self-sign root CA: %w", err)
	}
	cert, err := x509.ParseCertificate(der)
	if err != nil {
		return nil, nil, fmt.Errorf("root CA: %w", err)
	}
	return key, cert, nil
}

// newIssuing makes an issuing CA under root (path length 0, NotAfter never
// beyond the root's) and writes its key and certificate into dir; the
// caller names it current (setCurrent). It does not change a loaded CA.
func newIssuing(dir string, root *x509.Certificate, rootKey crypto.Signer, alg pki.KeyAlgorithm, validity time.Duration, now time.Time) (Issuer, error) {
	if alg == "" {
		alg = DefaultIssuingKey
	}
	if validity == 0 {
		validity = DefaultIssuingValidity
	}
	key, err := pki.GenerateKey(alg)
	if err != nil {
		return Issuer{}, fmt.Errorf("issuing CA: %w", err)
	}
	notAfter := now.Add(validity)
	if notAfter.After(root.NotAfter) {
		notAfter = root.NotAfter
	}
	if !notAfter.After(now) {
		return Issuer{}, fmt.Errorf("issuing CA: the root expired at %s", root.NotAfter.UTC().Format(time.RFC3339))
	}
	tmpl, err := caTemplate("hostcert issuing CA", key.Public(), now, notAfter, 0)
	if err != nil {
		return Issuer{}, fmt.Errorf("issuing CA: %w", err)
	}
	if tmpl.NotBefore.Before(root.NotBefore) {
		tmpl.NotBefore = root.NotBefore
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, root, key.Public(), rootKey)
	if err != nil {
		return Issuer{}, fmt.Errorf("sign issuing CA: %w", err)
	}
	cert, err := x509.ParseCertificate(der)
	if err != nil {
		return Issuer{}, fmt.Errorf("issuing CA: %w", err)
	}
	keyPEM, err := pki.EncodeKey(key)
	if err != nil {
		return Issuer{}, fmt.Errorf("issuing CA: %w", err)
	}
	id := ID(cert)
	if err := atomicfile.WritePrivate(IssuingKeyPath(dir, id), keyPEM); err != nil {
		return Issuer{}, fmt.Errorf("issuing CA: %w", err)
	}
	if err := atomicfile.WritePrivate(IssuingPath(dir, id), pki.EncodeCert(cert)); err != nil {
		return Issuer{}, fmt.Errorf("issuing CA: %w", err)
	}
	return Issuer{Cert: cert, key: key}, nil
}

// caTemplate is a CA certificate template: a unique subject (kind, date and
// key), CertSign and CRLSign, the subject key identifier; maxPathLen -1 is
// no limit, 0 is path length 0.
func caTemplate(kind string, pub crypto.PublicKey, now, notAfter time.Time, maxPathLen int) (*x509.Certificate, error) {
	serial, err := NewSerial()
	if err != nil {
		return nil, err
	}
	ski, err := subjectKeyID(pub)
	if err != nil {
		return nil, err
	}
	tmpl := &x509.Certificate{
		SerialNumber:          serial,
		Subject:               pkix.Name{CommonName: caCommonName(kind, now, ski), Organization: []string{"hostcert"}},
		NotBefore:             now.Add(-caBackdate),
		NotAfter:              notAfter,
		IsCA:                  true,
		BasicConstraintsValid: true,
		MaxPathLen:            maxPathLen,
		MaxPathLenZero:        maxPathLen == 0,
		KeyUsage:              x509.KeyUsageCertSign | x509.KeyUsageCRLSign | x509.KeyUsageDigitalSignature,
		SubjectKeyId:          ski,
	}
	return tmpl, nil
}

// caCommonName is unique per CA: the creation date, for people, and the
// first 6 bytes of the CA key's identifier in hex, so that two CAs created
// on the same day have different subjects in every tool.
func caCommonName(kind string, now time.Time, ski []byte) string {
	return fmt.Sprintf("%s %s %X", kind, now.UTC().Format("2006-01-02"), ski[:6])
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

// Sign signs tmpl (normally from Template, built against Certificate) for
// pub with the current issuing CA's key.
func (c *CA) Sign(tmpl *x509.Certificate, pub crypto.PublicKey) (*x509.Certificate, error) {
	return c.h.Load().issuers[0].sign(tmpl, pub)
}

func (is Issuer) sign(tmpl *x509.Certificate, pub crypto.PublicKey) (*x509.Certificate, error) {
	if tmpl == nil || pub == nil {
		return nil, errors.New("sign: nil template or public key")
	}
	var (
		der []byte
		err error
	)
	if k, ok := is.key.(*ecdsa.PrivateKey); ok {
		der, err = signECDSA(tmpl, is.Cert, pub, k) // see sign.go
	} else {
		der, err = x509.CreateCertificate(rand.Reader, tmpl, is.Cert, pub, is.key)
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

// CertNames are a certificate's DNS names followed by its IP addresses as
// text: the primary's names as hostname.ForServer gives them.
func CertNames(c *x509.Certificate) []string {
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

// ChainFor is what a certificate this CA signed needs between it and a
// root: its issuing CA, or nothing when a root signed it (a single CA).
func (c *CA) ChainFor(cert *x509.Certificate) []*x509.Certificate {
	h := c.h.Load()
	for _, r := range h.roots {
		if signedBy(cert, r) {
			return nil
		}
	}
	for _, is := range h.issuers {
		if signedBy(cert, is.Cert) {
			return []*x509.Certificate{is.Cert}
		}
	}
	return nil
}

// signedBy: cert names ca as its issuer, by subject and key identifier (a
// certificate this CA made; no signature check).
func signedBy(cert, ca *x509.Certificate) bool {
	return bytes.Equal(cert.RawIssuer, ca.RawSubject) && bytes.Equal(cert.AuthorityKeyId, ca.SubjectKeyId)
}

// crossFor is every cross certificate of the root that signed cert (the
// root's subject and key, signed by an older root).
func (c *CA) crossFor(cert *x509.Certificate) []*x509.Certificate {
	var out []*x509.Certificate
	for _, x := range c.h.Load().cross {
		if bytes.Equal(x.RawSubject, cert.RawIssuer) && bytes.Equal(x.SubjectKeyId, cert.AuthorityKeyId) {
			out = append(out, x)
		}
	}
	return out
}

// serverIssuer signs the primary's TLS certificate: the current issuing CA,
// except while a single CA of older versions is still a trusted root. That
// CA has path length 0, so a host trusting only it cannot verify a chain
// through a cross certificate: the primary's certificate stays under it
// until it is retired, so that those hosts keep reaching the primary (and
// learn the new root over that verified connection).
func (h *hierarchy) serverIssuer() Issuer {
	for _, is := range h.issuers {
		c := is.Cert
		if c.MaxPathLenZero && bytes.Equal(c.RawIssuer, c.RawSubject) && slices.ContainsFunc(h.roots, c.Equal) && time.Now().Before(c.NotAfter) {
			return is
		}
	}
	return h.issuers[0]
}
