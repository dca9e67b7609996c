package admin

import (
	"context"
	"crypto"
	"crypto/x509"
	"errors"
	"fmt"
	"path/filepath"
	"slices"
	"strings"
	"time"

	"github.com/hostcert/hostcert/common/pki"
	"github.com/hostcert/hostcert/primary/internal/ca"
	"github.com/hostcert/hostcert/primary/internal/store"
)

// Command names of the root's CRL.
const (
	CmdCARevokeIssuing = "ca.revoke-issuing"
	CmdCASignRootCRL   = "ca.sign-root-crl"
)

// RootSigner is what the root's CRL commands ask of the CA (package ca).
type RootSigner interface {
	RevokeIssuing(id string, reason int, rootKey crypto.Signer, now time.Time) (ca.RevokedCA, error)
	SignRootCRL(rootKey crypto.Signer, now time.Time) (*x509.Certificate, error)
	RootCRLs() ([]ca.SignedCRL, error)
}

// RevokeIssuingArgs are the arguments of ca.revoke-issuing.
type RevokeIssuingArgs struct {
	Issuing     string `json:"issuing" arg:"ID|FINGERPRINT"`
	Reason      string `json:"reason" flag:"reason" help:"RFC 5280 revocation reason (required; keyCompromise when its key leaked)"`
	RootKeyFile string `json:"root_key_file,omitempty" flag:"root-key" path:"" help:"the private key of the root that signed it, when kept offline (a file the server reads, never stores)"`
}

// Check: an issuing CA, a reason, an absolute key path.
func (a *RevokeIssuingArgs) Check() error {
	if strings.TrimSpace(a.Issuing) == "" {
		return errors.New("revoke-issuing: no issuing CA given (its ID or fingerprint, see ca show)")
	}
	if a.Reason == "" {
		return errors.New("revoke-issuing: --reason is required (an RFC 5280 reason, e.g. keyCompromise, cACompromise, superseded)")
	}
	if r, err := ca.ParseReason(a.Reason); err != nil {
		return err
	} else if r == ca.ReasonRemoveFromCRL {
		return errors.New("revoke-issuing: removeFromCRL undoes nothing: a revocation is final")
	}
	return checkKeyPath(a.RootKeyFile)
}

// SignRootCRLArgs are the arguments of ca.sign-root-crl.
type SignRootCRLArgs struct {
	RootKeyFile string `json:"root_key_file,omitempty" flag:"root-key" path:"" help:"the root's private key when kept offline (a file the server reads, never stores); it names the root whose CRL is signed"`
}

// Check: an absolute key path.
func (a *SignRootCRLArgs) Check() error { return checkKeyPath(a.RootKeyFile) }

func checkKeyPath(p string) error {
	if p != "" && !filepath.IsAbs(p) {
		return fmt.Errorf("%s: give an absolute path (the server reads it)", p)
	}
	return nil
}

// RevokedIssuingInfo answers ca.revoke-issuing.
type RevokedIssuingInfo struct {
	Issuing   CAEntry   `json:"issuing"`
	Reason    string    `json:"reason"`
	RevokedAt time.Time `json:"revoked_at"`
	// Hosts is how many hosts hold a current, valid certificate from it:
	// they renew no more and need a reissue; Sample names some of them.
	Hosts  int      `json:"hosts"`
	Sample []string `json:"sample,omitempty"`
	CA     CAInfo   `json:"ca"`
}

// RootCRLInfo answers ca.sign-root-crl.
type RootCRLInfo struct {
	Root        string    `json:"root"`
	Fingerprint string    `json:"fingerprint"`
	ThisUpdate  time.Time `json:"this_update"`
	NextUpdate  time.Time `json:"next_update"`
	Entries     int       `json:"entries"`
}

// resolveIssuing is the ID of the issuing CA named by its ID or fingerprint.
func (s *Server) resolveIssuing(name string) (string, error) {
	fp, fpErr := pki.NormalizeFingerprint(name)
	for _, c := range s.hier.Issuing() {
		if strings.EqualFold(ca.ID(c), strings.TrimSpace(name)) || (fpErr == nil && pki.Fingerprint(c) == fp) {
			return ca.ID(c), nil
		}
	}
	return "", fmt.Errorf("revoke-issuing %s: %w", name, ca.ErrNoSuchIssuing)
}

// caRevokeIssuing lists an issuing CA on its root's CRL and serves that
// CRL before it returns; hosts whose certificate it signed renew no more.
func (s *Server) caRevokeIssuing(ctx context.Context, c *Call, args *RevokeIssuingArgs) (RevokedIssuingInfo, error) {
	now, a := c.Now, c.Audit
	if s.roots == nil || s.hier == nil {
		return RevokedIssuingInfo{}, errors.New("this server cannot revoke an issuing CA")
	}
	reason, err := ca.ParseReason(args.Reason)
	if err != nil {
		return RevokedIssuingInfo{}, err
	}
	id, err := s.resolveIssuing(args.Issuing)
	if err != nil {
		return RevokedIssuingInfo{}, err
	}
	var key crypto.Signer
	if args.RootKeyFile != "" {
		if key, err = readKey(args.RootKeyFile); err != nil {
			return RevokedIssuingInfo{}, err
		}
	}
	rc, err := s.roots.RevokeIssuing(id, reason, key, now)
	if err != nil {
		return RevokedIssuingInfo{}, err
	}
	out := RevokedIssuingInfo{Reason: ca.ReasonName(reason), RevokedAt: rc.RevokedAt}
	a.Detail["issuing_ca"], a.Detail["fingerprint"], a.Detail["reason"] = rc.Cert.Subject.CommonName, pki.Fingerprint(rc.Cert), out.Reason
	if out.Hosts, out.Sample, err = s.hostsUnder(ctx, rc.Cert, now); err != nil {
		s.log.Error().Err(err).Msg("listing the hosts of a revoked issuing ca")
	}
	a.Detail["hosts"] = out.Hosts
	if err := s.store.AppendAudit(ctx, a); err != nil {
		return RevokedIssuingInfo{}, fmt.Errorf("audit: %w", err)
	}
	// The root's CRL listing it is served before this returns.
	if err := s.crls.Refresh(ctx); err != nil {
		s.crls.Trigger()
		s.log.Error().Err(err).Msg("regenerating crls after revoking an issuing ca")
	}
	s.log.Warn().Str("ca", rc.Cert.Subject.CommonName).Str("reason", out.Reason).Int("hosts", out.Hosts).Msg("issuing ca revoked")
	out.CA = s.caInfo()
	for _, e := range out.CA.CAs {
		if e.Fingerprint == pki.Fingerprint(rc.Cert) {
			out.Issuing = e
		}
	}
	return out, nil
}

// hostsUnder counts the hosts whose current, unexpired, unrevoked
// certificate issuing signed, and names up to 10 of them.
func (s *Server) hostsUnder(ctx context.Context, issuing *x509.Certificate, now time.Time) (int, []string, error) {
	var n int
	var sample []string
	err := s.store.EachLiveCert(ctx, now, func(lc store.LiveCert) error {
		cert, err := x509.ParseCertificate(lc.DER)
		if err != nil || cert.CheckSignatureFrom(issuing) != nil {
			return nil
		}
		n++
		if len(sample) < 10 && len(lc.Names) > 0 {
			sample = append(sample, lc.Names[0])
		}
		return nil
	})
	if err != nil {
		return 0, nil, err
	}
	slices.Sort(sample)
	return n, sample, nil
}

// caSignRootCRL signs a root's CRL again (its key given, or online) and
// serves it before it returns.
func (s *Server) caSignRootCRL(ctx context.Context, c *Call, args *SignRootCRLArgs) (RootCRLInfo, error) {
	now, a := c.Now, c.Audit
	if s.roots == nil {
		return RootCRLInfo{}, errors.New("this server cannot sign a root's CRL")
	}
	var key crypto.Signer
	if args.RootKeyFile != "" {
		var err error
		if key, err = readKey(args.RootKeyFile); err != nil {
			return RootCRLInfo{}, err
		}
	}
	root, err := s.roots.SignRootCRL(key, now)
	if err != nil {
		return RootCRLInfo{}, err
	}
	out := RootCRLInfo{Root: root.Subject.CommonName, Fingerprint: pki.Fingerprint(root)}
	lists, err := s.roots.RootCRLs()
	if err != nil {
		return RootCRLInfo{}, err
	}
	for _, l := range lists {
		if !l.Issuer.Equal(root) {
			continue
		}
		rl, err := x509.ParseRevocationList(l.DER)
		if err != nil {
			return RootCRLInfo{}, fmt.Errorf("sign root CRL: %w", err)
		}
		out.ThisUpdate, out.NextUpdate, out.Entries = rl.ThisUpdate, rl.NextUpdate, len(rl.RevokedCertificateEntries)
	}
	a.Detail["root"], a.Detail["fingerprint"], a.Detail["next_update"] = out.Root, out.Fingerprint, out.NextUpdate.UTC().Format(time.RFC3339)
	if err := s.store.AppendAudit(ctx, a); err != nil {
		return RootCRLInfo{}, fmt.Errorf("audit: %w", err)
	}
	if err := s.crls.Refresh(ctx); err != nil {
		s.crls.Trigger()
		s.log.Error().Err(err).Msg("regenerating crls after signing a root's crl")
	}
	s.log.Info().Str("root", out.Root).Time("next_update", out.NextUpdate).Msg("root crl signed")
	return out, nil
}

func textRevokedIssuing(o Output, a *RevokeIssuingArgs, info RevokedIssuingInfo) error {
	fmt.Fprintf(o.Out, "issuing CA %s revoked (%s); its root's CRL lists it\n", info.Issuing.Subject, info.Reason)
	if info.Hosts > 0 {
		fmt.Fprintf(o.Out, "%d host(s) hold a current certificate from it, e.g. %s: they cannot renew and need a reissue (host allow-reissue, or a reissue token)\n",
			info.Hosts, strings.Join(info.Sample, ", "))
	}
	return printCAs(o.Out, info.CA.CAs)
}

func textRootCRL(o Output, a *SignRootCRLArgs, info RootCRLInfo) error {
	_, err := fmt.Fprintf(o.Out, "CRL of the root %s signed: %d revoked issuing CA(s), valid until %s; sign it again before then\n",
		info.Root, info.Entries, fmtTime(info.NextUpdate))
	return err
}
