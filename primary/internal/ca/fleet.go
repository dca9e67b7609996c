package ca

import (
	"bytes"
	"crypto/aes"
	"crypto/cipher"
	"crypto/rand"
	"crypto/sha256"
	"crypto/x509"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/hostcert/hostcert/common/atomicfile"
	"github.com/hostcert/hostcert/common/hostname"
	"github.com/hostcert/hostcert/common/pki"
)

// Several primary nodes on one PostgreSQL database share one CA. A
// rotation on one node reaches the others through the database without a
// key ever being stored there in clear: every node holds the same fleet
// key (ca/fleet-key, 256 random bits made by init and copied by join with
// the rest of ca/), the rotating node seals its CA material (Material)
// with it (AES-256-GCM) and the other nodes open it and adopt it (Adopt).
// Root keys are never part of the material: they stay where the operator
// keeps them.

const (
	fleetKeyFile = "fleet-key"        // the fleet key, hex
	fleetGenFile = "fleet-generation" // the generation of the material this node last adopted or published
)

// Errors of the fleet key and material.
var (
	// ErrNoFleetKey: the data directory has no fleet key.
	ErrNoFleetKey = errors.New("this node has no fleet key (ca/fleet-key)")
	// ErrSealed: sealed material did not open with this fleet key (another
	// key, or bytes changed).
	ErrSealed = errors.New("the CA material does not open with this node's fleet key")
	// ErrUntrustedRoot: material names a root that no root this node trusts
	// vouches for.
	ErrUntrustedRoot = errors.New("the CA material has a root no trusted root vouches for")
)

// FleetKeyPath is the fleet key's file.
func FleetKeyPath(dir string) string { return filepath.Join(dir, caDir, fleetKeyFile) }

// FleetKey seals and opens the CA material nodes share.
type FleetKey struct {
	aead cipher.AEAD
	id   string
}

// CreateFleetKey writes a new random fleet key into dir (owner-only) unless
// one is there; it returns the key dir holds.
func CreateFleetKey(dir string) (*FleetKey, error) {
	if k, err := LoadFleetKey(dir); err == nil || !errors.Is(err, ErrNoFleetKey) {
		return k, err
	}
	raw := make([]byte, 32)
	if _, err := rand.Read(raw); err != nil {
		return nil, fmt.Errorf("fleet key: %w", err)
	}
	if err := atomicfile.WritePrivate(FleetKeyPath(dir), []byte(hex.EncodeToString(raw)+"\n")); err != nil {
		return nil, fmt.Errorf("fleet key: %w", err)
	}
	return newFleetKey(raw)
}

// LoadFleetKey reads dir's fleet key; ErrNoFleetKey when there is none.
func LoadFleetKey(dir string) (*FleetKey, error) { return ReadFleetKey(FleetKeyPath(dir)) }

// ReadFleetKey reads a fleet key file; ErrNoFleetKey when there is none.
func ReadFleetKey(path string) (*FleetKey, error) {
	b, err := os.ReadFile(path)
	if errors.Is(err, fs.ErrNotExist) {
		return nil, ErrNoFleetKey
	}
	if err != nil {
		return nil, fmt.Errorf("fleet key: %w", err)
	}
	raw, err := hex.DecodeString(strings.TrimSpace(string(b)))
	if err != nil || len(raw) != 32 {
		return nil, fmt.Errorf("fleet key %s: want 64 hex digits (256 bits)", path)
	}
	return newFleetKey(raw)
}

func newFleetKey(raw []byte) (*FleetKey, error) {
	blk, err := aes.NewCipher(raw)
	if err != nil {
		return nil, fmt.Errorf("fleet key: %w", err)
	}
	aead, err := cipher.NewGCM(blk)
	if err != nil {
		return nil, fmt.Errorf("fleet key: %w", err)
	}
	// The identifier is a MAC of a constant, not of the key itself.
	id := sha256.Sum256(aead.Seal(nil, make([]byte, aead.NonceSize()), nil, []byte("hostcert fleet key id")))
	return &FleetKey{aead: aead, id: hex.EncodeToString(id[:16])}, nil
}

// ID identifies the key (the store records it, so a node with another key
// is noticed before it misses a rotation); it reveals nothing of the key.
func (k *FleetKey) ID() string { return k.id }

// materialAAD binds sealed material to its generation: a row copied to
// another generation does not open.
func materialAAD(generation int64) []byte {
	return []byte("hostcert fleet CA material, generation " + strconv.FormatInt(generation, 10))
}

// Seal encrypts material for generation: a random 96-bit nonce followed by
// the AES-256-GCM ciphertext.
func (k *FleetKey) Seal(material []byte, generation int64) ([]byte, error) {
	nonce := make([]byte, k.aead.NonceSize())
	if _, err := rand.Read(nonce); err != nil {
		return nil, fmt.Errorf("seal the CA material: %w", err)
	}
	return k.aead.Seal(nonce, nonce, material, materialAAD(generation)), nil
}

// Open decrypts what Seal made for generation; ErrSealed when it does not
// open.
func (k *FleetKey) Open(sealed []byte, generation int64) ([]byte, error) {
	n := k.aead.NonceSize()
	if len(sealed) < n+k.aead.Overhead() {
		return nil, ErrSealed
	}
	out, err := k.aead.Open(nil, sealed[:n], sealed[n:], materialAAD(generation))
	if err != nil {
		return nil, ErrSealed
	}
	return out, nil
}

// material is what one generation carries: the files of ca/ that a
// rotation writes, by name. Root keys, the single CA's key, the host ID,
// the names and the fleet key are never in it.
type material struct {
	Files map[string][]byte `json:"files"`
}

// shared reports whether a file of ca/ is part of the material.
func shared(name string) bool {
	switch name {
	case rootFile, crossFile, rootCRLFile, issuingCurrent:
		return true
	}
	return strings.HasPrefix(name, issuingPrefix) && strings.HasSuffix(name, ".pem")
}

// Material is the CA material of this node to publish after a rotation:
// the roots, cross certificates, the roots' CRLs and every issuing CA with
// its key.
func (c *CA) Material() ([]byte, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	entries, err := os.ReadDir(filepath.Join(c.dir, caDir))
	if err != nil {
		return nil, fmt.Errorf("CA material: %w", err)
	}
	m := material{Files: map[string][]byte{}}
	for _, e := range entries {
		if !e.Type().IsRegular() || !shared(e.Name()) {
			continue
		}
		b, err := os.ReadFile(filepath.Join(c.dir, caDir, e.Name()))
		if err != nil {
			return nil, fmt.Errorf("CA material: %w", err)
		}
		m.Files[e.Name()] = b
	}
	if m.Files[rootFile] == nil || m.Files[issuingCurrent] == nil {
		return nil, errors.New("CA material: this data directory has no CA hierarchy (a single CA of an older init: rotate its root first)")
	}
	return json.Marshal(m)
}

// Adopt makes material (another node's, from Material) this node's CA: it
// checks that every root in it is trusted here already or vouched for by a
// cross certificate of a trusted root, writes its files (the roots before
// the issuing CA that names the new current one), removes the issuing CAs
// and root keys of roots it no longer has, reloads the hierarchy and
// reissues the primary's TLS certificate when the signing CA changed.
// This node's own root key stays (it is not in the material).
func (c *CA) Adopt(raw []byte, now time.Time) error {
	var m material
	if err := json.Unmarshal(raw, &m); err != nil {
		return fmt.Errorf("adopt the CA: %w", err)
	}
	for name := range m.Files {
		if !shared(name) || filepath.Base(name) != name {
			return fmt.Errorf("adopt the CA: unexpected file %q", name)
		}
	}
	roots, err := pki.ParseCerts(m.Files[rootFile])
	if err != nil {
		return fmt.Errorf("adopt the CA: %s: %w", rootFile, err)
	}
	var cross []*x509.Certificate
	if b := m.Files[crossFile]; b != nil {
		if cross, err = pki.ParseCerts(b); err != nil {
			return fmt.Errorf("adopt the CA: %s: %w", crossFile, err)
		}
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	if err := vouched(c.h.Load().roots, roots, cross); err != nil {
		return fmt.Errorf("adopt the CA: %w", err)
	}
	dir := filepath.Join(c.dir, caDir)
	write := func(name string) error {
		if err := atomicfile.WritePrivate(filepath.Join(dir, name), m.Files[name]); err != nil {
			return fmt.Errorf("adopt the CA: %w", err)
		}
		return nil
	}
	// Issuing CAs, cross certificates and CRLs first, then the roots, then
	// the name of the current issuing CA: a crash in between leaves a
	// directory that loads (the old current CA), and the next start adopts
	// the material again.
	names := make([]string, 0, len(m.Files))
	for name := range m.Files {
		if name != rootFile && name != issuingCurrent {
			names = append(names, name)
		}
	}
	slices.Sort(names)
	for _, name := range append(names, rootFile, issuingCurrent) {
		if m.Files[name] == nil {
			continue
		}
		if err := write(name); err != nil {
			return err
		}
	}
	entries, err := os.ReadDir(dir)
	if err != nil {
		return fmt.Errorf("adopt the CA: %w", err)
	}
	keep := map[string]bool{}
	for _, r := range roots {
		keep[RootKeyPath(c.dir, ID(r))] = true
	}
	for _, e := range entries {
		n := e.Name()
		p := filepath.Join(dir, n)
		stale := (shared(n) && n != rootFile && n != issuingCurrent && m.Files[n] == nil) ||
			(strings.HasPrefix(n, rootKeyPrefix) && strings.HasSuffix(n, "-key.pem") && !keep[p])
		if stale {
			if err := os.Remove(p); err != nil && !errors.Is(err, fs.ErrNotExist) {
				return fmt.Errorf("adopt the CA: %w", err)
			}
		}
	}
	// A single CA of an older init that the fleet retired.
	if b, err := os.ReadFile(CertPath(c.dir)); err == nil {
		if _, kerr := os.Stat(KeyPath(c.dir)); kerr == nil {
			if certs, err := pki.ParseCerts(b); err == nil && !slices.ContainsFunc(roots, certs[0].Equal) {
				for _, p := range []string{KeyPath(c.dir), CertPath(c.dir)} {
					if err := os.Remove(p); err != nil && !errors.Is(err, fs.ErrNotExist) {
						return fmt.Errorf("adopt the CA: %w", err)
					}
				}
			}
		}
	}
	h, rootKey, err := loadHierarchy(c.dir)
	if err != nil {
		return fmt.Errorf("adopt the CA: %w", err)
	}
	if err := c.setHierarchy(h); err != nil {
		return fmt.Errorf("adopt the CA: %w", err)
	}
	c.rootKey = rootKey
	c.loadRevoked() // the roots' CRLs may list issuing CAs revoked on the other node
	if cur := c.server.Load(); cur != nil && cur.Leaf != nil && c.serverNeedsRenewal(cur.Leaf, CertNames(cur.Leaf), now) {
		if _, err := c.issueServerCert(CertNames(cur.Leaf), now); err != nil {
			return fmt.Errorf("adopt the CA: %w", err)
		}
	}
	return nil
}

// vouched checks that every root of next is one of trusted, or is vouched
// for by a cross certificate (its subject and key, signed by a root
// already accepted).
func vouched(trusted, next, cross []*x509.Certificate) error {
	ok := slices.Clone(trusted)
	for changed := true; changed; {
		changed = false
		for _, r := range next {
			if slices.ContainsFunc(ok, r.Equal) {
				continue
			}
			for _, x := range cross {
				if !bytes.Equal(x.RawSubject, r.RawSubject) || !samePublicKey(x.PublicKey, r.PublicKey) {
					continue
				}
				if slices.ContainsFunc(ok, func(a *x509.Certificate) bool { return x.CheckSignatureFrom(a) == nil }) {
					ok = append(ok, r)
					changed = true
					break
				}
			}
		}
	}
	for _, r := range next {
		if !slices.ContainsFunc(ok, r.Equal) {
			return fmt.Errorf("%w: %s (%s)", ErrUntrustedRoot, r.Subject.CommonName, pki.Fingerprint(r))
		}
	}
	return nil
}

// FleetGeneration is the generation of the fleet's CA material this node
// last adopted or published (0: none).
func FleetGeneration(dir string) (int64, error) {
	b, err := os.ReadFile(filepath.Join(dir, caDir, fleetGenFile))
	if errors.Is(err, fs.ErrNotExist) {
		return 0, nil
	}
	if err != nil {
		return 0, fmt.Errorf("fleet generation: %w", err)
	}
	n, err := strconv.ParseInt(strings.TrimSpace(string(b)), 10, 64)
	if err != nil {
		return 0, fmt.Errorf("fleet generation %s: %w", filepath.Join(dir, caDir, fleetGenFile), err)
	}
	return n, nil
}

// SetFleetGeneration records the generation this node now holds.
func SetFleetGeneration(dir string, generation int64) error {
	if err := atomicfile.WritePrivate(filepath.Join(dir, caDir, fleetGenFile), []byte(strconv.FormatInt(generation, 10)+"\n")); err != nil {
		return fmt.Errorf("fleet generation: %w", err)
	}
	return nil
}

// SetFleetNames makes names (every name any node of the fleet has, from
// the shared store) reserved here too, besides this node's own.
func (c *CA) SetFleetNames(names []string) {
	m := make(map[string]bool, len(names))
	for _, n := range names {
		if k, err := hostname.ForServer(n); err == nil {
			m[k] = true
		}
	}
	c.fleet.Store(&m)
}
