package admin

import (
	"context"
	"crypto"
	"crypto/x509"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/hostcert/hostcert/common/pki"
	"github.com/hostcert/hostcert/primary/internal/ca"
	"github.com/hostcert/hostcert/primary/internal/store"
	"github.com/hostcert/hostcert/primary/internal/tokens"
)

// Administrators' client certificates: the web console's login by
// certificate (SPEC §11). admin.add signs an admin-role certificate
// (urn:hostcert:admin:<name>) from the current issuing CA for a CSR the
// front end made: the private key stays with the front end (the CLI
// generates it and writes it to the operator's directory); the server
// never sees it. admin.revoke revokes every certificate of a name and
// returns once the CRL lists them.

// Command names of the administrators' certificates.
const (
	CmdAdminAdd    = "admin.add"
	CmdAdminList   = "admin.list"
	CmdAdminRevoke = "admin.revoke"
)

// Admin certificate validity: the default and the bounds of --valid-for.
const (
	DefaultAdminValidity = 90 * 24 * time.Hour
	MaxAdminValidity     = 365 * 24 * time.Hour
)

// Issuer signs administrators' certificates (the CA).
type Issuer interface {
	Certificate() *x509.Certificate
	Sign(tmpl *x509.Certificate, pub crypto.PublicKey) (*x509.Certificate, error)
	ChainFor(cert *x509.Certificate) []*x509.Certificate
}

// Admins records administrators' certificates (the store).
type Admins interface {
	AddAdminCert(ctx context.Context, c store.AdminCert, a store.Audit) error
	ListAdminCerts(ctx context.Context) ([]store.AdminCert, error)
	RevokeAdmin(ctx context.Context, name string, reason int, now time.Time, a store.Audit) (int, error)
}

// UseIssuer makes admin.add sign with i. Without it admin.add fails.
// Call before Serve.
func (s *Server) UseIssuer(i Issuer) { s.issuer = i }

// AdminAddArgs are the arguments of admin.add. Out and P12PasswordFile are
// the CLI's alone: it writes the files.
type AdminAddArgs struct {
	Name            string `json:"name" arg:"NAME"`
	ValidFor        string `json:"valid_for,omitempty" flag:"valid-for" default:"90d" help:"how long the certificate is valid (1h to 365d; never beyond the issuing CA)"`
	CSR             string `json:"csr" internal:"the PEM CSR of the key the front end generated and keeps"`
	Out             string `json:"-" flag:"out" default:"." help:"directory to write NAME.key, NAME.pem (and NAME.p12) to"`
	P12PasswordFile string `json:"-" flag:"p12-password-file" help:"also write NAME.p12 (key, certificate and chain, for a browser) protected by the password in this file (its first line)"`
}

// AdminNameArgs are the arguments of admin.revoke.
type AdminNameArgs struct {
	Name   string `json:"name" arg:"NAME"`
	Reason string `json:"reason,omitempty" flag:"reason" default:"unspecified" help:"RFC 5280 reason (unspecified, keyCompromise, affiliationChanged, superseded, cessationOfOperation, privilegeWithdrawn, ...)"`
}

// Admin is one administrator's certificate, as admin.list shows it.
type Admin struct {
	Name         string     `json:"name"`
	Serial       string     `json:"serial"`
	IssuedAt     time.Time  `json:"issued_at"`
	NotBefore    time.Time  `json:"not_before"`
	NotAfter     time.Time  `json:"not_after"`
	State        string     `json:"state"` // valid, expired or revoked
	RevokedAt    *time.Time `json:"revoked_at,omitempty"`
	RevokeReason string     `json:"revoke_reason,omitempty"`
}

// AdminIssued answers admin.add: the certificate and the chain up to (not
// including) the root. Files are the files the CLI wrote.
type AdminIssued struct {
	Admin
	CertPEM  string   `json:"cert_pem"`
	ChainPEM string   `json:"chain_pem"`
	Files    []string `json:"files,omitempty"`
}

// ValidAdminName reports whether name can name an administrator: 1 to 64
// ASCII letters, digits, '.', '_' or '-', starting with a letter or a
// digit. The name is the id of the certificate's role marker, the file
// name of its key and the actor of the console's audit rows.
func ValidAdminName(name string) error {
	if name == "" {
		return errors.New("no administrator name given")
	}
	if len(name) > 64 {
		return fmt.Errorf("administrator name %q: at most 64 characters", name)
	}
	for i, r := range name {
		ok := r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z' || r >= '0' && r <= '9' || i > 0 && (r == '.' || r == '_' || r == '-')
		if !ok {
			return fmt.Errorf("administrator name %q: letters, digits, '.', '_' and '-' only, starting with a letter or a digit", name)
		}
	}
	return nil
}

func adminValidity(s string) (time.Duration, error) {
	d, err := tokens.ParseDuration(s)
	if err != nil || d < time.Hour || d > MaxAdminValidity {
		return 0, fmt.Errorf("--valid-for %q: want a duration from 1h to 365d (90d)", s)
	}
	return d, nil
}

// Check needs a valid name, a validity and a CSR.
func (a *AdminAddArgs) Check() error {
	if err := ValidAdminName(a.Name); err != nil {
		return err
	}
	if _, err := adminValidity(a.ValidFor); err != nil {
		return err
	}
	if strings.TrimSpace(a.CSR) == "" {
		return errors.New("admin add: no CSR (the command line makes one from the key it generates)")
	}
	return nil
}

// Check needs a valid name and a known reason.
func (a *AdminNameArgs) Check() error {
	if err := ValidAdminName(a.Name); err != nil {
		return err
	}
	_, err := ca.ParseReason(a.Reason)
	return err
}

// adminView is an administrator's certificate as of now.
func adminView(c store.AdminCert, now time.Time) Admin {
	v := Admin{Name: c.Name, Serial: c.Serial, IssuedAt: c.IssuedAt, NotBefore: c.NotBefore, NotAfter: c.NotAfter,
		State: "valid", RevokedAt: c.RevokedAt}
	switch {
	case c.RevokedAt != nil:
		v.State, v.RevokeReason = "revoked", ca.ReasonName(c.RevokeReason)
	case !now.Before(c.NotAfter):
		v.State = "expired"
	}
	return v
}

func (s *Server) adminAdd(ctx context.Context, c *Call, args *AdminAddArgs) (AdminIssued, error) {
	if s.issuer == nil {
		return AdminIssued{}, errors.New("admin add: this server signs no administrator certificates")
	}
	validity, err := adminValidity(args.ValidFor)
	if err != nil {
		return AdminIssued{}, err
	}
	csr, err := pki.ParseCSR([]byte(args.CSR))
	if err != nil {
		return AdminIssued{}, fmt.Errorf("admin add %s: %w", args.Name, err)
	}
	alg := pki.PublicKeyAlgorithm(csr.PublicKey)
	if alg == "" {
		return AdminIssued{}, fmt.Errorf("admin add %s: the CSR's key is of no supported kind (ECDSA P-256/P-384, RSA 2048 or more)", args.Name)
	}
	a := c.Audit
	a.Detail["admin"], a.Detail["key_alg"] = args.Name, string(alg)
	// A serial is random: a collision with an earlier one is retried.
	for range 3 {
		serial, err := ca.NewSerial()
		if err != nil {
			return AdminIssued{}, err
		}
		tmpl, err := ca.Template(ca.HostCertRequest{Role: pki.RoleAdmin, HostID: args.Name, PublicKey: csr.PublicKey,
			Serial: serial, Validity: validity}, s.issuer.Certificate(), c.Now)
		if err != nil {
			return AdminIssued{}, fmt.Errorf("admin add %s: %w", args.Name, err)
		}
		cert, err := s.issuer.Sign(tmpl, csr.PublicKey)
		if err != nil {
			return AdminIssued{}, fmt.Errorf("admin add %s: %w", args.Name, err)
		}
		rec := store.AdminCert{Serial: ca.SerialHex(cert.SerialNumber), Name: args.Name, IssuedAt: c.Now,
			NotBefore: cert.NotBefore, NotAfter: cert.NotAfter, DER: cert.Raw}
		a.Detail["serial"], a.Detail["not_after"] = rec.Serial, cert.NotAfter.UTC().Format(time.RFC3339)
		err = s.admins.AddAdminCert(ctx, rec, a)
		if errors.Is(err, store.ErrSerialExists) {
			continue
		}
		if errors.Is(err, store.ErrAdminLive) {
			return AdminIssued{}, fmt.Errorf("%s already holds a valid administrator certificate: revoke it first (hostcert-primary admin revoke %s)", args.Name, args.Name)
		}
		if err != nil {
			return AdminIssued{}, err
		}
		return AdminIssued{Admin: adminView(rec, c.Now), CertPEM: string(pki.EncodeCert(cert)),
			ChainPEM: string(pki.EncodeCerts(s.issuer.ChainFor(cert)))}, nil
	}
	return AdminIssued{}, fmt.Errorf("admin add %s: %w", args.Name, store.ErrSerialExists)
}

func (s *Server) adminList(ctx context.Context, c *Call, _ *NoArgs) ([]Admin, error) {
	list, err := s.admins.ListAdminCerts(ctx)
	if err != nil {
		return nil, err
	}
	out := make([]Admin, 0, len(list))
	for _, a := range list {
		out = append(out, adminView(a, c.Now))
	}
	c.Audit.Detail["count"] = len(out)
	if err := s.store.AppendAudit(ctx, c.Audit); err != nil {
		return nil, fmt.Errorf("audit: %w", err)
	}
	return out, nil
}

func (s *Server) adminRevoke(ctx context.Context, c *Call, args *AdminNameArgs) (CountResult, error) {
	reason, err := ca.ParseReason(args.Reason)
	if err != nil {
		return CountResult{}, err
	}
	a := c.Audit
	a.Detail["admin"], a.Detail["reason"] = args.Name, ca.ReasonName(reason)
	n, err := s.admins.RevokeAdmin(ctx, args.Name, reason, c.Now, a)
	if errors.Is(err, store.ErrNotFound) {
		return CountResult{}, fmt.Errorf("no administrator named %q ever had a certificate", args.Name)
	}
	if err != nil {
		return CountResult{}, err
	}
	if err := s.crls.Refresh(ctx); err != nil {
		s.crls.Trigger()
		return CountResult{}, fmt.Errorf("revoked %d certificate(s) of %s, but the CRL listing them is not served yet (it is retried in the background): %w", n, args.Name, err)
	}
	return CountResult{Count: n}, nil
}

func textAdminIssued(o Output, a *AdminAddArgs, r AdminIssued) error {
	fmt.Fprintf(o.Out, "issued an administrator certificate for %s (serial %s, valid until %s)\n", r.Name, r.Serial, fmtTime(r.NotAfter))
	for _, f := range r.Files {
		fmt.Fprintf(o.Out, "wrote %s\n", f)
	}
	return nil
}

func textAdmins(o Output, _ *NoArgs, list []Admin) error {
	w := tabw(o.Out)
	fmt.Fprintln(w, "NAME\tSERIAL\tEXPIRES\tSTATE")
	for _, a := range list {
		state := a.State
		if a.RevokedAt != nil {
			state += " " + fmtTime(*a.RevokedAt) + " (" + a.RevokeReason + ")"
		}
		fmt.Fprintf(w, "%s\t%s\t%s\t%s\n", a.Name, a.Serial, fmtTime(a.NotAfter), state)
	}
	return w.Flush()
}

func textAdminRevoked(o Output, a *AdminNameArgs, r CountResult) error {
	_, err := fmt.Fprintf(o.Out, "revoked %d certificate(s) of %s; the CRL lists them\n", r.Count, a.Name)
	return err
}
