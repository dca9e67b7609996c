// Package certstore keeps the agent's files in its data directory: the trust
// store (ca.pem), the host identity (host.pem: certificate and private key in
// one owner-only file, so a crash can never leave a key that does not match
// its certificate), a public copy of the certificate (cert.pem), the CRL
// (crl.pem), the agent's state (state.json) and, while a get-cert is
// unanswered, the key its CSR was made with (pending-key.pem, owner-only), so
// a retry after a lost answer asks with the same key. Every write is atomic
// (temp file, fsync, rename).
package certstore

import (
	"bytes"
	"crypto"
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"encoding/pem"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"runtime"
	"sync"
	"time"

	"github.com/hostcert/hostcert/common/atomicfile"
	"github.com/hostcert/hostcert/common/pki"
	"github.com/hostcert/hostcert/common/protocol"
)

// File names inside the data directory.
const (
	CAFile       = "ca.pem"
	IdentityFile = "host.pem"
	CertFile     = "cert.pem"
	CRLFile      = "crl.pem"
	RootCRLFile  = "root-crl.pem"
	StateFile    = "state.json"
	PendingFile  = "pending-key.pem"
)

// Sentinel errors for files that do not exist yet.
var (
	ErrNoTrust    = errors.New("no trust store: run get-ca-cert first")
	ErrNoIdentity = errors.New("no certificate: run get-cert first")
	ErrNoCRL      = errors.New("no CRL yet: run get-crl")
)

// Store is one agent's data directory.
type Store struct {
	dir      string
	restored []ModeFix
	mu       sync.Mutex // serialises state read-modify-write within this process
}

// ErrNoDataDir is returned by OpenExisting for a data directory that does not exist.
var ErrNoDataDir = errors.New("no data directory")

// OpenExisting opens dir without creating it: for commands that only look
// (status, self-check), so a mistyped --data creates nothing.
func OpenExisting(dir string) (*Store, error) {
	fi, err := os.Stat(dir)
	switch {
	case errors.Is(err, os.ErrNotExist):
		return nil, fmt.Errorf("%w %s: check --data (or data_dir); get-ca-cert creates it", ErrNoDataDir, dir)
	case err != nil:
		return nil, fmt.Errorf("open data directory: %w", err)
	case !fi.IsDir():
		return nil, fmt.Errorf("open data directory: %s is not a directory", dir)
	}
	return &Store{dir: dir}, nil
}

// ModeFix is a private file or the data directory that Open found open to
// other users and made owner-only again.
type ModeFix struct {
	Path     string
	Was, Now fs.FileMode
}

// privateFiles hold private keys: owner-only (0600) always.
var privateFiles = []string{IdentityFile, PendingFile}

// Open creates dir (owner-only) when needed. An existing data directory,
// host.pem or pending-key.pem that group or others can access is made
// owner-only again (0700, 0600); Restored lists what was changed, for the
// caller to warn about. On Windows, where access is an ACL, only the
// directory's ACL is set (as before).
func Open(dir string) (*Store, error) {
	if dir == "" {
		return nil, errors.New("open data directory: empty path")
	}
	var fixes []ModeFix
	if fi, err := os.Stat(dir); err == nil && fi.IsDir() && tooOpen(fi.Mode()) {
		fixes = append(fixes, ModeFix{Path: dir, Was: fi.Mode().Perm(), Now: 0o700})
	}
	if err := atomicfile.MkdirPrivate(dir); err != nil {
		return nil, err
	}
	if !modesMeaningful {
		return &Store{dir: dir}, nil
	}
	for _, name := range privateFiles {
		p := filepath.Join(dir, name)
		fi, err := os.Lstat(p)
		if errors.Is(err, fs.ErrNotExist) {
			continue
		}
		if err != nil {
			return nil, fmt.Errorf("open data directory: %w", err)
		}
		if !fi.Mode().IsRegular() || !tooOpen(fi.Mode()) {
			continue
		}
		if err := os.Chmod(p, 0o600); err != nil {
			return nil, fmt.Errorf("make %s owner-only: %w", p, err)
		}
		fixes = append(fixes, ModeFix{Path: p, Was: fi.Mode().Perm(), Now: 0o600})
	}
	return &Store{dir: dir, restored: fixes}, nil
}

// Restored lists what Open made owner-only, empty when all was in order.
func (s *Store) Restored() []ModeFix { return s.restored }

// modesMeaningful: Unix modes say who can read a file; Windows uses ACLs.
const modesMeaningful = runtime.GOOS != "windows"

// tooOpen: group or others may read, write or enter.
func tooOpen(m fs.FileMode) bool { return m.Perm()&0o077 != 0 }

// Dir is the data directory.
func (s *Store) Dir() string { return s.dir }

// Path is the full path of one of the files above.
func (s *Store) Path(name string) string { return filepath.Join(s.dir, name) }

// CA returns the trusted CA certificates.
func (s *Store) CA() ([]*x509.Certificate, error) {
	data, err := os.ReadFile(s.Path(CAFile))
	if errors.Is(err, os.ErrNotExist) {
		return nil, ErrNoTrust
	}
	if err != nil {
		return nil, fmt.Errorf("read trust store: %w", err)
	}
	certs, err := pki.ParseCerts(data)
	if err != nil {
		return nil, fmt.Errorf("trust store %s: %w", s.Path(CAFile), err)
	}
	return certs, nil
}

// CAPool is CA as a certificate pool.
func (s *Store) CAPool() (*x509.CertPool, error) {
	certs, err := s.CA()
	if err != nil {
		return nil, err
	}
	return Pool(certs), nil
}

// Pool makes a pool of certs.
func Pool(certs []*x509.Certificate) *x509.CertPool {
	p := x509.NewCertPool()
	for _, c := range certs {
		p.AddCert(c)
	}
	return p
}

// WriteCA replaces the trust store.
func (s *Store) WriteCA(certs []*x509.Certificate) error {
	if len(certs) == 0 {
		return errors.New("write trust store: no certificate")
	}
	return atomicfile.Write(s.Path(CAFile), pki.EncodeCerts(certs), 0o644)
}

// Identity is the host's certificate, the CA certificates between it and a
// root (its issuing CA), and its private key.
type Identity struct {
	Cert  *x509.Certificate
	Chain []*x509.Certificate
	Key   crypto.Signer
	TLS   *tls.Certificate
}

// NewIdentity pairs cert and key, checking that they match; chain is what
// the host presents after its certificate (its issuing CA).
func NewIdentity(cert *x509.Certificate, key crypto.Signer, chain ...*x509.Certificate) (*Identity, error) {
	tc, err := tls.X509KeyPair(pki.EncodeCert(cert), mustKeyPEM(key))
	if err != nil {
		return nil, fmt.Errorf("certificate and key do not match: %w", err)
	}
	tc.Leaf = cert
	for _, c := range chain {
		tc.Certificate = append(tc.Certificate, c.Raw)
	}
	return &Identity{Cert: cert, Chain: chain, Key: key, TLS: &tc}, nil
}

func mustKeyPEM(key crypto.Signer) []byte {
	b, err := pki.EncodeKey(key)
	if err != nil {
		return nil
	}
	return b
}

// Identity reads host.pem.
func (s *Store) Identity() (*Identity, error) {
	data, err := os.ReadFile(s.Path(IdentityFile))
	if errors.Is(err, os.ErrNotExist) {
		return nil, ErrNoIdentity
	}
	if err != nil {
		return nil, fmt.Errorf("read identity: %w", err)
	}
	var certPEM, keyPEM []byte
	for rest := data; ; {
		var b *pem.Block
		b, rest = pem.Decode(rest)
		if b == nil {
			break
		}
		switch b.Type {
		case "CERTIFICATE":
			certPEM = append(certPEM, pem.EncodeToMemory(b)...)
		default:
			keyPEM = pem.EncodeToMemory(b)
		}
	}
	if certPEM == nil || keyPEM == nil {
		return nil, fmt.Errorf("identity %s: want a CERTIFICATE and a PRIVATE KEY block", s.Path(IdentityFile))
	}
	certs, err := pki.ParseCerts(certPEM)
	if err != nil {
		return nil, fmt.Errorf("identity %s: %w", s.Path(IdentityFile), err)
	}
	key, err := pki.ParseKey(keyPEM)
	if err != nil {
		return nil, fmt.Errorf("identity %s: %w", s.Path(IdentityFile), err)
	}
	id, err := NewIdentity(certs[0], key, certs[1:]...)
	if err != nil {
		return nil, fmt.Errorf("identity %s: %w", s.Path(IdentityFile), err)
	}
	return id, nil
}

// WriteIdentity replaces certificate and key in one atomic write, then
// refreshes the public copy cert.pem (informational; host.pem is authoritative).
func (s *Store) WriteIdentity(id *Identity) error {
	keyPEM, err := pki.EncodeKey(id.Key)
	if err != nil {
		return err
	}
	certs := append([]*x509.Certificate{id.Cert}, id.Chain...)
	var b bytes.Buffer
	b.Write(pki.EncodeCerts(certs))
	b.Write(keyPEM)
	if err := atomicfile.WritePrivate(s.Path(IdentityFile), b.Bytes()); err != nil {
		return fmt.Errorf("write identity: %w", err)
	}
	if err := atomicfile.Write(s.Path(CertFile), pki.EncodeCerts(certs), 0o644); err != nil {
		return fmt.Errorf("write certificate copy: %w", err)
	}
	return nil
}

// PendingKey is the key of an enrollment not yet answered, or nil when there is none.
func (s *Store) PendingKey() (crypto.Signer, error) {
	data, err := os.ReadFile(s.Path(PendingFile))
	if errors.Is(err, os.ErrNotExist) {
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("read pending key: %w", err)
	}
	key, err := pki.ParseKey(data)
	if err != nil {
		return nil, fmt.Errorf("pending key %s: %w", s.Path(PendingFile), err)
	}
	return key, nil
}

// WritePendingKey keeps key (owner-only) until the enrollment it was made for succeeds.
func (s *Store) WritePendingKey(key crypto.Signer) error {
	data, err := pki.EncodeKey(key)
	if err != nil {
		return err
	}
	if err := atomicfile.WritePrivate(s.Path(PendingFile), data); err != nil {
		return fmt.Errorf("write pending key: %w", err)
	}
	return nil
}

// RemovePendingKey forgets the pending key once its certificate is installed.
func (s *Store) RemovePendingKey() error {
	if err := os.Remove(s.Path(PendingFile)); err != nil && !errors.Is(err, os.ErrNotExist) {
		return fmt.Errorf("remove pending key: %w", err)
	}
	return nil
}

// CRL reads the stored CRL of this host's issuing CA (not re-verified:
// WriteCRL only stores verified CRLs).
func (s *Store) CRL() (*x509.RevocationList, error) { return s.readCRL(CRLFile) }

// RootCRL reads the stored CRL of the root (it lists revoked issuing CAs).
func (s *Store) RootCRL() (*x509.RevocationList, error) { return s.readCRL(RootCRLFile) }

func (s *Store) readCRL(name string) (*x509.RevocationList, error) {
	data, err := os.ReadFile(s.Path(name))
	if errors.Is(err, os.ErrNotExist) {
		return nil, ErrNoCRL
	}
	if err != nil {
		return nil, fmt.Errorf("read crl: %w", err)
	}
	b, _ := pem.Decode(data)
	if b == nil || b.Type != "X509 CRL" {
		return nil, fmt.Errorf("crl %s: no PEM X509 CRL block", s.Path(name))
	}
	crl, err := x509.ParseRevocationList(b.Bytes)
	if err != nil {
		return nil, fmt.Errorf("crl %s: %w", s.Path(name), err)
	}
	return crl, nil
}

// WriteRootCRL stores a verified root CRL as PEM.
func (s *Store) WriteRootCRL(crl *x509.RevocationList) error {
	data := pem.EncodeToMemory(&pem.Block{Type: "X509 CRL", Bytes: crl.Raw})
	return atomicfile.Write(s.Path(RootCRLFile), data, 0o644)
}

// VerifyCRL parses a DER or PEM CRL and checks it is signed by one of the CAs.
func VerifyCRL(data []byte, cas []*x509.Certificate) (*x509.RevocationList, error) {
	if b, _ := pem.Decode(data); b != nil {
		data = b.Bytes
	}
	crl, err := x509.ParseRevocationList(data)
	if err != nil {
		return nil, fmt.Errorf("parse crl: %w", err)
	}
	var lastErr error = errors.New("no CA")
	for _, ca := range cas {
		if lastErr = crl.CheckSignatureFrom(ca); lastErr == nil {
			return crl, nil
		}
	}
	return nil, fmt.Errorf("crl is not signed by the trusted CA: %w", lastErr)
}

// WriteCRL stores a verified CRL as PEM.
func (s *Store) WriteCRL(crl *x509.RevocationList) error {
	data := pem.EncodeToMemory(&pem.Block{Type: "X509 CRL", Bytes: crl.Raw})
	return atomicfile.Write(s.Path(CRLFile), data, 0o644)
}

// ForgetPrimary drops what belonged to the primary this host trusted before
// its trust store was replaced: the CRL (signed by the old CA) and, in the
// state, the host ID, name, level, route and refresh times. host.pem stays
// (the new primary will not renew it: get-cert with a token from the new
// primary replaces it).
func (s *Store) ForgetPrimary() error {
	for _, f := range []string{CRLFile, RootCRLFile} {
		if err := os.Remove(s.Path(f)); err != nil && !errors.Is(err, os.ErrNotExist) {
			return fmt.Errorf("remove old crl: %w", err)
		}
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if err := atomicfile.WritePrivate(s.Path(StateFile), []byte("{}\n")); err != nil {
		return fmt.Errorf("reset state: %w", err)
	}
	return nil
}

// State is what the agent remembers between runs (state.json).
type State struct {
	HostID            string         `json:"host_id,omitempty"`
	Name              string         `json:"name,omitempty"`
	Level             protocol.Level `json:"level,omitempty"`
	CRLRefreshSeconds int64          `json:"crl_refresh_seconds,omitempty"`
	// Route is the last route that worked: "direct PRIMARY" or "tunnel
	// HOST:PORT to PRIMARY" (without PRIMARY when written by older agents).
	Route      string    `json:"route,omitempty"`
	RouteSince time.Time `json:"route_since,omitzero"`
	// Node is the address that answered last on a direct route (of the
	// addresses the primary's name resolves to).
	Node              string    `json:"node,omitempty"`
	LastDirectFailure time.Time `json:"last_direct_failure,omitzero"`
	LastRenewal       time.Time `json:"last_renewal,omitzero"`
	LastRenewalError  string    `json:"last_renewal_error,omitempty"`
	NextRenewal       time.Time `json:"next_renewal,omitzero"`
	LastCRLRefresh    time.Time `json:"last_crl_refresh,omitzero"`
	LastCRLError      string    `json:"last_crl_error,omitempty"`
	NextCRLRefresh    time.Time `json:"next_crl_refresh,omitzero"`
}

// CRLInterval is the refresh interval the primary's level implies.
func (st State) CRLInterval() time.Duration {
	if st.CRLRefreshSeconds > 0 {
		return time.Duration(st.CRLRefreshSeconds) * time.Second
	}
	return st.Level.CRLRefresh()
}

// ErrStateDamaged marks a state.json that cannot be decoded. State returns
// it together with a usable state rebuilt from host.pem.
var ErrStateDamaged = errors.New("state.json is damaged")

// State reads state.json; a missing file is the zero State. A damaged file
// (truncated, garbage, wrong types) does not stop the agent: State returns
// the state rebuilt from host.pem (host ID and name; level, route and times
// are learnt again at the next contact with the primary) and an error
// wrapping ErrStateDamaged, for the caller to warn about. The next
// UpdateState writes a good file again.
func (s *Store) State() (State, error) {
	var st State
	data, err := os.ReadFile(s.Path(StateFile))
	if errors.Is(err, os.ErrNotExist) {
		return st, nil
	}
	if err != nil {
		return st, fmt.Errorf("read state: %w", err)
	}
	if err := json.Unmarshal(data, &st); err != nil {
		return s.rebuildState(), fmt.Errorf("%w (%s: %w); carrying on with the host ID and name in %s, level and route are learnt again from the primary",
			ErrStateDamaged, s.Path(StateFile), err, IdentityFile)
	}
	return st, nil
}

// rebuildState is what host.pem tells about the state: the host ID and
// name, when the certificate comes from the trusted CA (after a move to
// another primary, the old host ID means nothing to the new one).
func (s *Store) rebuildState() State {
	var st State
	id, err := s.Identity()
	if err != nil {
		return st
	}
	cas, err := s.CA()
	if err != nil {
		return st
	}
	if _, err := id.Cert.Verify(x509.VerifyOptions{
		Roots: Pool(cas), Intermediates: Pool(id.Chain), CurrentTime: id.Cert.NotBefore.Add(time.Second),
		KeyUsages: []x509.ExtKeyUsage{x509.ExtKeyUsageAny},
	}); err == nil {
		st.HostID = pki.HostIDFromCert(id.Cert)
		if len(id.Cert.DNSNames) > 0 {
			st.Name = id.Cert.DNSNames[0]
		}
	}
	return st
}

// UpdateState reads the state, applies f and writes it back atomically. A
// damaged state.json is replaced by the rebuilt state with f applied.
func (s *Store) UpdateState(f func(*State)) (State, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	st, err := s.State()
	if err != nil && !errors.Is(err, ErrStateDamaged) {
		return State{}, err
	}
	f(&st)
	data, err := json.MarshalIndent(st, "", "  ")
	if err != nil {
		return State{}, fmt.Errorf("encode state: %w", err)
	}
	if err := atomicfile.WritePrivate(s.Path(StateFile), append(data, '\n')); err != nil {
		return State{}, fmt.Errorf("write state: %w", err)
	}
	return st, nil
}

// Learn keeps the trust store in step with the primary's CA bundle offered,
// which must come over a channel verified against the trust store (a TLS
// connection to the primary or the renewal's answer): it adds the roots a
// root it holds vouches for (pki.Vouched: a cross certificate in offered
// signed by a trusted root), and drops the roots offered no longer lists
// (retired on the primary), except any root this host's certificate chains
// to and never the last one (pki.Kept). It returns the whole trust store
// when it changed, nil when not.
func (s *Store) Learn(offered []*x509.Certificate, now time.Time) ([]*x509.Certificate, error) {
	trusted, err := s.CA()
	if err != nil {
		return nil, err
	}
	learned := pki.Vouched(trusted, offered, now)
	all := append(learned, trusted...) // the newest root first
	kept := pki.Kept(all, offered, s.anchors(all, now))
	if len(learned) == 0 && len(kept) == len(trusted) {
		return nil, nil
	}
	if err := s.WriteCA(kept); err != nil {
		return nil, fmt.Errorf("learn root: %w", err)
	}
	return kept, nil
}

// anchors are the roots of cas this host's certificate chains to through
// the chain stored with it (an expired certificate as of its last valid
// second); none without a certificate.
func (s *Store) anchors(cas []*x509.Certificate, now time.Time) []*x509.Certificate {
	id, err := s.Identity()
	if err != nil {
		return nil
	}
	at := now
	if !now.Before(id.Cert.NotAfter) {
		at = id.Cert.NotAfter.Add(-time.Second)
	}
	chains, err := id.Cert.Verify(x509.VerifyOptions{
		Roots: Pool(cas), Intermediates: Pool(id.Chain), CurrentTime: at,
		KeyUsages: []x509.ExtKeyUsage{x509.ExtKeyUsageAny},
	})
	if err != nil {
		return nil
	}
	var out []*x509.Certificate
	for _, c := range chains {
		out = append(out, c[len(c)-1])
	}
	return out
}
