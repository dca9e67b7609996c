package admin

import (
	"context"
	"crypto"
	"crypto/x509"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"slices"
	"time"

	"github.com/hostcert/hostcert/common/pki"
	"github.com/hostcert/hostcert/primary/internal/ca"
	"github.com/hostcert/hostcert/primary/internal/store"
)

// Command names of the CA rotation.
const (
	CmdCARotate     = "ca.rotate"
	CmdCARetireRoot = "ca.retire-root"
)

// RotateArgs are the arguments of ca.rotate.
type RotateArgs struct {
	Root bool `json:"root,omitempty" flag:"root" help:"rotate the root (cross-signed by the current one), not only the issuing CA"`
	// RootKeyFile is the current root's key when it is kept offline: a
	// path the server reads (the key itself never travels in a message).
	RootKeyFile string `json:"root_key_file,omitempty" flag:"root-key" path:"" help:"the current root's private key when it is kept offline (a file the server reads)"`
	// RootKeyOut (with Root) is where the server writes the new root's key
	// instead of its data directory.
	RootKeyOut string `json:"root_key_out,omitempty" flag:"root-key-out" path:"" help:"with --root: write the new root's key to this file instead of the data directory"`
}

// Check: the paths are the server's, so they must be absolute.
func (a *RotateArgs) Check() error {
	for _, p := range []string{a.RootKeyFile, a.RootKeyOut} {
		if p != "" && !filepath.IsAbs(p) {
			return fmt.Errorf("%s: give an absolute path (the server reads and writes it)", p)
		}
	}
	if a.RootKeyOut != "" && !a.Root {
		return errors.New("--root-key-out goes with --root")
	}
	return nil
}

// RetireArgs are the arguments of ca.retire-root.
type RetireArgs struct {
	Fingerprint string `json:"fingerprint" arg:"FINGERPRINT"`
}

// Check: a SHA-256 fingerprint.
func (a *RetireArgs) Check() error {
	_, err := pki.NormalizeFingerprint(a.Fingerprint)
	return err
}

// CAEntry is one CA certificate in ca show.
type CAEntry struct {
	Kind        string    `json:"kind"`  // root, cross, issuing
	State       string    `json:"state"` // current, trusted, previous, expired
	Fingerprint string    `json:"fingerprint"`
	Subject     string    `json:"subject"`
	Issuer      string    `json:"issuer"`
	NotBefore   time.Time `json:"not_before"`
	NotAfter    time.Time `json:"not_after"`
	KeyOnline   bool      `json:"key_online,omitempty"` // roots: the key is in the data directory
}

// Rotator rotates and retires the CAs (package ca).
type Rotator interface {
	RotateIssuing(opts ca.RotateOptions, now time.Time) (*x509.Certificate, error)
	RotateRoot(opts ca.RotateOptions, now time.Time) (*x509.Certificate, error)
	RetireRoot(fingerprint string) (*x509.Certificate, error)
}

// Hierarchy is what ca show lists and what retiring a root checks.
type Hierarchy interface {
	Root() *x509.Certificate
	Cross() []*x509.Certificate
	Issuing() []*x509.Certificate
	RootKeyOnline() bool
	UnderRoot(cert, root *x509.Certificate) bool
	RevokedIssuing() []ca.RevokedCA
}

// UseRotator enables ca rotate and ca retire-root (the server's CA).
func (s *Server) UseRotator(r Rotator, h Hierarchy) { s.rot, s.hier = r, h }

// UseRootSigner enables ca revoke-issuing and ca sign-root-crl.
func (s *Server) UseRootSigner(r RootSigner) { s.roots = r }

// ErrRootStillNeeded is returned by ca retire-root while hosts whose
// current certificate comes from that root may trust only it.
var ErrRootStillNeeded = errors.New("hosts that may trust only this root still hold valid certificates from it")

func (s *Server) caRotate(ctx context.Context, c *Call, args *RotateArgs) (CAInfo, error) {
	now, a := c.Now, c.Audit
	if s.rot == nil {
		return CAInfo{}, errors.New("this server cannot rotate its CA")
	}
	var opts ca.RotateOptions
	if args.RootKeyFile != "" {
		key, err := readKey(args.RootKeyFile)
		if err != nil {
			return CAInfo{}, err
		}
		opts.RootKey = key
	}
	opts.RootKeyOut = args.RootKeyOut
	var (
		cert *x509.Certificate
		err  error
	)
	if args.Root {
		cert, err = s.rot.RotateRoot(opts, now)
	} else {
		cert, err = s.rot.RotateIssuing(opts, now)
	}
	if err != nil {
		return CAInfo{}, err
	}
	a.Detail["root"], a.Detail["new_ca"], a.Detail["fingerprint"] = args.Root, cert.Subject.CommonName, pki.Fingerprint(cert)
	if err := s.store.AppendAudit(ctx, a); err != nil {
		return CAInfo{}, fmt.Errorf("audit: %w", err)
	}
	// The new issuing CA's CRL is served before this returns.
	if err := s.crls.Refresh(ctx); err != nil {
		s.crls.Trigger()
		s.log.Error().Err(err).Msg("regenerating crls after a rotation")
	}
	s.log.Info().Bool("root", args.Root).Str("ca", cert.Subject.CommonName).Msg("ca rotated")
	return s.caInfo(), nil
}

func readKey(path string) (crypto.Signer, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("root key: %w", err)
	}
	key, err := pki.ParseKey(b)
	if err != nil {
		return nil, fmt.Errorf("root key %s: %w", path, err)
	}
	return key, nil
}

// retireRoot refuses while a host's current, unexpired, unrevoked
// certificate comes from the root: that host may know no other root (it
// learns the new one at its next renewal or CRL refresh, and its renewal
// moves it to the new chain).
func (s *Server) caRetireRoot(ctx context.Context, c *Call, args *RetireArgs) (CAInfo, error) {
	now, a := c.Now, c.Audit
	if s.rot == nil || s.hier == nil {
		return CAInfo{}, errors.New("this server cannot retire a root")
	}
	want, err := pki.NormalizeFingerprint(args.Fingerprint)
	if err != nil {
		return CAInfo{}, err
	}
	var root *x509.Certificate
	for _, r := range s.ca.Bundle() {
		if pki.Fingerprint(r) == want {
			root = r
		}
	}
	if root == nil {
		return CAInfo{}, fmt.Errorf("retire root %s: no such root", want)
	}
	var holders []string
	err = s.store.EachLiveCert(ctx, now, func(lc store.LiveCert) error {
		cert, err := x509.ParseCertificate(lc.DER)
		if err != nil || s.hier.UnderRoot(cert, root) {
			holders = append(holders, lc.HostID)
		}
		return nil
	})
	if err != nil {
		return CAInfo{}, fmt.Errorf("retire root: %w", err)
	}
	slices.Sort(holders)
	if len(holders) > 0 {
		shown := holders
		if len(shown) > 5 {
			shown = shown[:5]
		}
		return CAInfo{}, fmt.Errorf("retire root %s: %w: %d host(s), e.g. %v; they move to the new root at their next renewal (or revoke them)", want, ErrRootStillNeeded, len(holders), shown)
	}
	if _, err := s.rot.RetireRoot(want); err != nil {
		return CAInfo{}, err
	}
	a.Detail["fingerprint"] = want
	if err := s.store.AppendAudit(ctx, a); err != nil {
		return CAInfo{}, fmt.Errorf("audit: %w", err)
	}
	if err := s.crls.Refresh(ctx); err != nil {
		s.crls.Trigger()
	}
	s.log.Info().Str("fingerprint", want).Msg("root retired")
	return s.caInfo(), nil
}

// caEntries lists the roots, cross certificates and issuing CAs with their state.
func (s *Server) caEntries(now time.Time) []CAEntry {
	if s.hier == nil {
		return nil
	}
	entry := func(kind string, c *x509.Certificate, current bool) CAEntry {
		e := CAEntry{Kind: kind, Fingerprint: pki.Fingerprint(c), Subject: c.Subject.String(), Issuer: c.Issuer.String(), NotBefore: c.NotBefore, NotAfter: c.NotAfter}
		switch {
		case !now.Before(c.NotAfter):
			e.State = "expired"
		case current:
			e.State = "current"
		case kind == "issuing" && slices.ContainsFunc(s.hier.RevokedIssuing(), func(r ca.RevokedCA) bool { return r.Cert.Equal(c) }):
			e.State = "revoked"
		case kind == "root" || kind == "cross":
			e.State = "trusted"
		default:
			e.State = "previous (its certificates stay valid until they expire)"
		}
		return e
	}
	var out []CAEntry
	for i, r := range s.ca.Bundle() {
		e := entry("root", r, i == 0)
		e.KeyOnline = i == 0 && s.hier.RootKeyOnline()
		out = append(out, e)
	}
	for _, c := range s.hier.Cross() {
		out = append(out, entry("cross", c, false))
	}
	for i, c := range s.hier.Issuing() {
		out = append(out, entry("issuing", c, i == 0)) // a single CA of older versions is root and issuer
	}
	return out
}

func textRotated(o Output, a *RotateArgs, info CAInfo) error {
	what := "issuing CA"
	if a.Root {
		what = "root"
	}
	fmt.Fprintf(o.Out, "%s rotated; root CA fingerprint (SHA-256): %s\n", what, info.Fingerprint)
	return printCAs(o.Out, info.CAs)
}

func textRetired(o Output, a *RetireArgs, info CAInfo) error {
	fmt.Fprintf(o.Out, "root %s retired\n", a.Fingerprint)
	return printCAs(o.Out, info.CAs)
}

// printCAs is the table of every CA and its state.
func printCAs(out io.Writer, cas []CAEntry) error {
	if len(cas) == 0 {
		return nil
	}
	w := tabw(out)
	fmt.Fprintln(w, "\nKIND\tSTATE\tVALID UNTIL\tSUBJECT\tFINGERPRINT")
	for _, c := range cas {
		state := c.State
		if c.Kind == "root" && c.State == "current" && !c.KeyOnline {
			state += " (key offline)"
		}
		fmt.Fprintf(w, "%s\t%s\t%s\t%s\t%s\n", c.Kind, state, fmtTime(c.NotAfter), c.Subject, c.Fingerprint)
	}
	return w.Flush()
}
