// Package enroll is the primary's issuance path, independent of HTTP: it
// gathers the facts of an enrollment or renewal request (registry, host IDs,
// DNS verification, the presented token), asks the pure deployment decision
// (package policy), and on a grant builds, signs and durably commits the
// certificate, counting the token use in the same transaction. Every
// decision, granted or refused, is audited and counted.
//
// The HTTPS API (package api) and the admin's dry run (explain) both go
// through this package, so they can never disagree.
package enroll

import (
	"bytes"
	"context"
	"crypto"
	"crypto/x509"
	"errors"
	"fmt"
	"net/netip"
	"slices"
	"time"

	"github.com/google/uuid"
	"github.com/rs/zerolog"

	"github.com/hostcert/hostcert/common/hostname"
	"github.com/hostcert/hostcert/common/pki"
	"github.com/hostcert/hostcert/common/protocol"
	"github.com/hostcert/hostcert/primary/internal/ca"
	"github.com/hostcert/hostcert/primary/internal/policy"
	"github.com/hostcert/hostcert/primary/internal/store"
	"github.com/hostcert/hostcert/primary/internal/tokens"
	"github.com/hostcert/hostcert/primary/internal/verify"
)

// Registry answers who a name or host ID is. A Host's Known says whether
// its name is in the registry.
type Registry interface {
	// LookupName is the host name belongs to (ID "" when none) and
	// whether name is in the registry, in one read.
	LookupName(ctx context.Context, name string) (store.Host, error)
	HostByID(ctx context.Context, id string) (store.Host, error)
	// MappingsFor is every mapping of hostID and of names, in one read.
	MappingsFor(ctx context.Context, hostID string, names []string) ([]store.Mapping, error)
	// AutoApprove: names a host asks for are approved at once.
	AutoApprove(ctx context.Context) (bool, error)
}

// Ledger holds tokens and certificates and commits issuances.
type Ledger interface {
	TokenByHash(ctx context.Context, hash []byte) (store.Token, error)
	CertBySerial(ctx context.Context, serial string) (store.Cert, error)
	CurrentCert(ctx context.Context, hostID string) (store.Cert, error)
	MarkUsed(ctx context.Context, serial string, now time.Time) error
	CommitIssuance(ctx context.Context, is store.Issuance) error
}

// Journal holds the level and the audit log.
type Journal interface {
	Level(ctx context.Context) (protocol.Level, error)
	AppendAudit(ctx context.Context, a store.Audit) error
}

// Signer is the CA as the issuance path sees it.
type Signer interface {
	Certificate() *x509.Certificate
	Bundle() []*x509.Certificate // the roots
	Issuing() []*x509.Certificate
	Sign(tmpl *x509.Certificate, pub crypto.PublicKey) (*x509.Certificate, error)
	// RevokedIssuer is the revoked issuing CA that signed cert, or nil.
	RevokedIssuer(cert *x509.Certificate) *ca.RevokedCA
}

// PrimaryNames knows the names the primary has, or ever had (package ca):
// reserved, never carried by a host certificate.
type PrimaryNames interface {
	IsPrimaryName(name string) bool
}

// Counter counts decisions (for metrics). kind is issue/reissue/renew or
// "enroll" when the request never got that far; code is "" when granted.
type Counter interface {
	Decision(kind string, granted bool, code protocol.Code)
}

// Config wires a Service.
type Config struct {
	Registry Registry
	Ledger   Ledger
	Journal  Journal
	CA       Signer
	Primary  PrimaryNames    // the primary's names, reserved; nil = none
	Resolver verify.Resolver // DNS for verification
	Limiter  *tokens.Limiter // wrong tokens per source; nil = tokens.NewLimiter defaults
	Counter  Counter         // optional
	// Validity of host certificates; 0 = the CA's default (365 days).
	Validity time.Duration
	// Revoked is called (non-blocking) after an issuance revoked earlier
	// certificates (a reissue), so the CRL is regenerated within seconds.
	Revoked func()
	Log     zerolog.Logger
	Now     func() time.Time // default time.Now
}

// Service is the issuance path. Safe for concurrent use.
type Service struct {
	cfg     Config
	limiter *tokens.Limiter
	now     func() time.Time
}

// New returns a Service.
func New(cfg Config) *Service {
	s := &Service{cfg: cfg, limiter: cfg.Limiter, now: cfg.Now}
	if s.limiter == nil {
		s.limiter = tokens.NewLimiter(0, 0)
	}
	if s.now == nil {
		s.now = time.Now
	}
	if s.cfg.Revoked == nil {
		s.cfg.Revoked = func() {}
	}
	return s
}

// Request is an issue or reissue request (POST /v1/enroll) with the address
// it came from (TCP peer, or the client address a tunnel relayed).
type Request struct {
	Name   string
	HostID string
	CSR    []byte // PEM
	Token  string
	NAT    bool
	Source netip.Addr
}

// Result is a granted request.
type Result struct {
	HostID   string
	Names    []string // the certificate's names: approved ones only
	Pending  []string // names asked for that wait for an admin's approval
	Cert     *x509.Certificate
	Serial   string // upper-case hex
	Level    protocol.Level
	Decision protocol.Decision
}

// verifyTimeout bounds the DNS verification of one request.
const verifyTimeout = 3 * time.Second

// Enroll decides and, when granted, issues. A refusal is returned as a
// *protocol.Error carrying the decision (when one was made); any other error
// is internal; a store that cannot be reached is store.ErrUnavailable.
// Every outcome is audited (but one the unreachable store cannot take). Its
// steps: checkRequest (what the request carries), presentedToken (the token,
// looked up once), then decideAndIssue — facts, policy.Plan, and issue,
// resend or refuse — once more when a concurrent first issuance of the same
// name won.
func (s *Service) Enroll(ctx context.Context, req Request) (Result, error) {
	now := s.now()
	src := req.Source.Unmap()
	rec := record{action: "enroll", source: src, name: hostname.Display(req.Name)}
	name, asked, csr, err := s.checkRequest(ctx, now, &rec, req)
	if err != nil {
		return Result{}, err
	}
	tf, tok, err := s.presentedToken(ctx, now, &rec, req.Token, name, src)
	if err != nil {
		return Result{}, err
	}
	a := ask{name: name, names: asked, hostID: req.HostID, src: src, nat: req.NAT, token: tf, pub: csr.PublicKey}
	// Two rounds at most: a concurrent first issuance of the same name makes
	// the second one a reissue, decided afresh.
	for round := 0; ; round++ {
		res, again, err := s.decideAndIssue(ctx, now, rec, a, tok, round > 0)
		if !again {
			return res, err
		}
	}
}

// checkRequest checks what the request carries itself — the name, the CSR,
// its key and the names it asks for (asked, the requested name among them)
// — before anything is looked up. A failure is a refusal.
func (s *Service) checkRequest(ctx context.Context, now time.Time, rec *record, req Request) (name string, asked []string, csr *x509.CertificateRequest, err error) {
	if name, err = s.hostName(req.Name); err != nil {
		return "", nil, nil, s.refuse(ctx, now, *rec, nil, nameCode(err), err.Error())
	}
	rec.name = name
	if csr, err = pki.ParseCSR(req.CSR); err != nil {
		return "", nil, nil, s.refuse(ctx, now, *rec, nil, protocol.CodeBadCSR, "the CSR is not a valid PEM certificate request with a good signature")
	}
	if err := CheckKey(csr.PublicKey); err != nil {
		return "", nil, nil, s.refuse(ctx, now, *rec, nil, protocol.CodeBadCSR, err.Error())
	}
	asked, err = CSRNames(csr, s.hostName)
	if err == nil && !slices.Contains(asked, name) {
		err = fmt.Errorf("the CSR does not ask for %q, the name requested", name)
	}
	if err != nil {
		return "", nil, nil, s.refuse(ctx, now, *rec, nil, csrNameCode(err), err.Error())
	}
	return name, asked, csr, nil
}

// presentedToken looks the presented token up, once (its use is counted
// atomically at commit), and says what the decision needs to know of it. A
// source that guessed too many wrong tokens is refused before the lookup.
func (s *Service) presentedToken(ctx context.Context, now time.Time, rec *record, value, name string, src netip.Addr) (policy.TokenFacts, store.Token, error) {
	var tf policy.TokenFacts
	if value == "" {
		return tf, store.Token{}, nil
	}
	tf.Present = true
	if !s.limiter.Allow(src, now) {
		return tf, store.Token{}, s.refuse(ctx, now, *rec, nil, protocol.CodeRateLimited, "too many wrong tokens from this address; wait a minute and try again")
	}
	if !tokens.WellFormed(value) {
		return tf, store.Token{}, nil
	}
	t, err := s.cfg.Ledger.TokenByHash(ctx, tokens.Hash(value))
	switch {
	case errors.Is(err, store.ErrNotFound):
		return tf, store.Token{}, nil
	case err != nil:
		return tf, store.Token{}, s.internal(ctx, now, *rec, fmt.Errorf("look up token: %w", err))
	}
	rec.token = t.Name
	bind, err := tokens.ParseBinding(t.BindNames, t.BindNets, NormalizeName)
	if err != nil {
		return tf, store.Token{}, s.internal(ctx, now, *rec, fmt.Errorf("token %s: stored binding: %w", t.Name, err))
	}
	tf = policy.TokenFound(t.Kind, t.HostID, t.Uses, t.MaxUses, t.ExpiresAt, now)
	tf.Outside = !bind.Allows(name, src)
	return tf, t, nil
}

// decideAndIssue gathers the facts, decides (policy.Plan) and acts: send
// the current certificate again, refuse, or issue. again reports a first
// issuance that lost its name to a concurrent one (nothing was written):
// decide again, now as a reissue — unless last.
func (s *Service) decideAndIssue(ctx context.Context, now time.Time, rec record, a ask, tok store.Token, last bool) (res Result, again bool, err error) {
	g, err := s.facts(ctx, now, a)
	if err != nil {
		var perr *protocol.Error
		if errors.As(err, &perr) {
			return Result{}, false, s.refuse(ctx, now, rec, nil, perr.Code, perr.Message)
		}
		return Result{}, false, s.internal(ctx, now, rec, err)
	}
	rec.action, rec.hostID = string(g.f.Kind), g.host.ID
	dec, act := policy.Plan(g.f)
	switch act {
	case policy.Resend:
		res, err := s.resend(ctx, now, rec, g, dec)
		return res, false, err
	case policy.Refuse:
		if policy.Guess(a.token) {
			s.limiter.Fail(a.src, now)
		}
		return Result{}, false, s.refuse(ctx, now, rec, &dec, dec.Code, policy.Message(dec))
	}
	tokenName, tokenHash := "", []byte(nil)
	if dec.TokenState == protocol.TokenValid {
		tokenName, tokenHash = tok.Name, tok.Hash
	}
	res, err = s.issue(ctx, now, g.f.Kind, g.host, a.name, g.names, a.pub, tokenName, tokenHash, "", rec, dec)
	if errors.Is(err, store.ErrHostExists) && !last {
		return Result{}, true, nil
	}
	return res, false, s.committed(ctx, now, rec, g.f, dec, err)
}

// committed turns a commit's outcome into the answer's error: nil when it
// was written, a refusal explained by policy.Lost when it lost a race
// (nothing written), else an internal error.
func (s *Service) committed(ctx context.Context, now time.Time, rec record, f policy.Facts, dec protocol.Decision, err error) error {
	if err == nil {
		return nil
	}
	if race, ok := raceOf(err); ok {
		dec = policy.Lost(f, dec, race)
		return s.refuse(ctx, now, rec, &dec, dec.Code, policy.Message(dec))
	}
	return s.internal(ctx, now, rec, err)
}

// raceOf names the race a commit lost; nothing was written then and the
// signed certificate is discarded.
func raceOf(err error) (policy.Race, bool) {
	switch {
	case err == nil:
		return 0, false
	case errors.Is(err, store.ErrTokenUsedUp):
		return policy.RaceTokenUsedUp, true
	case errors.Is(err, store.ErrTokenExpired):
		return policy.RaceTokenExpired, true
	case errors.Is(err, store.ErrTokenMissing), errors.Is(err, store.ErrTokenHost):
		return policy.RaceTokenGone, true
	case errors.Is(err, store.ErrHostRevoked):
		return policy.RaceHostRevoked, true
	case errors.Is(err, store.ErrSuperseded):
		return policy.RaceSuperseded, true
	case errors.Is(err, store.ErrNameConflict):
		return policy.RaceNameConflict, true
	case errors.Is(err, store.ErrNameWithdrawn):
		return policy.RaceNameWithdrawn, true
	case errors.Is(err, store.ErrTooManyPending):
		return policy.RaceTooManyPending, true
	}
	return 0, false
}

// ask is what facts needs to know of an issue or reissue request.
type ask struct {
	name, hostID string
	names        []string // every name asked for (the CSR's), name among them
	src          netip.Addr
	nat          bool
	token        policy.TokenFacts
	pub          crypto.PublicKey // the CSR's key; nil for a dry run
	explain      bool             // a dry run: always show what DNS answers
}

// gathered is what the decision and the action need.
type gathered struct {
	f     policy.Facts
	host  store.Host
	cur   store.Cert // the host's current certificate; zero when none
	names namePlan   // what the names asked for come to
}

// facts gathers what the decision needs: level, host, its current
// certificate, and DNS only when it can change the decision (policy.NeedsDNS)
// or for a dry run. A *protocol.Error is a refusal.
func (s *Service) facts(ctx context.Context, now time.Time, a ask) (gathered, error) {
	var g gathered
	level, err := s.cfg.Journal.Level(ctx)
	if err != nil {
		return g, fmt.Errorf("read level: %w", err)
	}
	g.f = policy.Facts{Level: level, NAT: a.nat, Token: a.token}
	if a.hostID != "" {
		g.host, err = s.cfg.Registry.HostByID(ctx, a.hostID)
		switch {
		case errors.Is(err, store.ErrNotFound):
			return g, &protocol.Error{Code: protocol.CodeNotFound, Message: "no host has that host ID"}
		case err != nil:
			return g, fmt.Errorf("look up host %s: %w", a.hostID, err)
		}
	} else if g.host, err = s.cfg.Registry.LookupName(ctx, a.name); err != nil {
		return g, fmt.Errorf("look up host %s: %w", a.name, err)
	}
	if g.names, err = s.planNames(ctx, g.host, a.name, a.names); err != nil {
		return g, err
	}
	g.f.Known = g.host.Known
	g.f.Kind = protocol.KindIssue
	if g.host.ID != "" {
		g.f.Kind = protocol.KindReissue
		g.f.HostID = g.host.ID
		g.f.Window = policy.WindowOpen(g.host.ReissueUntil, now)
		g.f.HostRevoked = g.host.RevokedAt != nil
		if g.cur, g.f.Current, err = s.current(ctx, now, g.host.ID, a.pub); err != nil {
			return g, err
		}
	}
	if need, _ := policy.NeedsDNS(g.f); (need || a.explain) && !a.nat && s.cfg.Resolver != nil {
		vctx, cancel := context.WithTimeout(ctx, verifyTimeout)
		g.f.Verified, g.f.VerifyNote = verify.Verify(vctx, s.cfg.Resolver, a.name, a.src, a.nat)
		cancel()
	} else if !need && !a.explain {
		g.f.DNSSkipped = true
	} else if s.cfg.Resolver == nil {
		g.f.VerifyNote = "no resolver configured"
	}
	return g, nil
}

// planNames reads the mappings of host and of the names asked for, and the
// auto-approve setting, and plans the names (planNames). main is the name
// requested when the host has no ID yet. A name approved for another host
// ID is a *protocol.Error name_conflict; more pending claims than
// MaxPending, too_many_pending_names.
func (s *Service) planNames(ctx context.Context, host store.Host, main string, asked []string) (namePlan, error) {
	if len(asked) == 0 {
		asked = []string{main}
	}
	if host.ID != "" {
		main = host.Name
	}
	held, err := s.cfg.Registry.MappingsFor(ctx, host.ID, asked)
	if err != nil {
		return namePlan{}, fmt.Errorf("name mappings: %w", err)
	}
	auto, err := s.cfg.Registry.AutoApprove(ctx)
	if err != nil {
		return namePlan{}, fmt.Errorf("name mappings: %w", err)
	}
	p := planNames(host.ID, main, asked, held, auto)
	switch {
	case p.Conflict != "":
		return p, &protocol.Error{Code: protocol.CodeNameConflict, Message: conflictWhy(p.Conflict)}
	case p.TooMany > 0:
		return p, &protocol.Error{Code: protocol.CodeTooManyPendingNames, Message: tooManyWhy(p.TooMany)}
	}
	return p, nil
}

func tooManyWhy(n int) string {
	return fmt.Sprintf("this request would leave the host %d names waiting for approval, at most %d: ask the primary's admin to decide them (mapping list --pending), or ask for fewer names", n, MaxPending)
}

func conflictWhy(name string) string {
	return fmt.Sprintf("%s belongs to another host ID (a name belongs to one host only); ask the primary's admin", name)
}

// current is the host's current certificate and what the decision needs to
// know of it; pub is the CSR's key (nil: none).
func (s *Service) current(ctx context.Context, now time.Time, hostID string, pub crypto.PublicKey) (store.Cert, policy.Current, error) {
	c, err := s.cfg.Ledger.CurrentCert(ctx, hostID)
	if errors.Is(err, store.ErrNotFound) {
		return store.Cert{}, policy.Current{}, nil
	}
	if err != nil {
		return store.Cert{}, policy.Current{}, fmt.Errorf("current certificate of %s: %w", hostID, err)
	}
	cur := policy.Current{
		Serial: c.Serial, Valid: c.RevokedAt == nil && now.Before(c.NotAfter),
		RenewedFrom: c.RenewedFrom, Used: c.UsedAt != nil,
	}
	if pub != nil {
		cert, err := x509.ParseCertificate(c.DER)
		if err != nil {
			return store.Cert{}, policy.Current{}, fmt.Errorf("stored certificate %s: %w", c.Serial, err)
		}
		spki, err := x509.MarshalPKIXPublicKey(pub)
		cur.SameKey = err == nil && bytes.Equal(cert.RawSubjectPublicKeyInfo, spki)
	}
	return c, cur, nil
}

// issue builds, signs and commits one certificate.
func (s *Service) issue(ctx context.Context, now time.Time, kind protocol.RequestKind, host store.Host, name string, np namePlan, pub crypto.PublicKey, tokenName string, tokenHash []byte, renewedFrom string, rec record, dec protocol.Decision) (Result, error) {
	if kind == protocol.KindIssue {
		known := dec.Known
		host = store.Host{ID: uuid.NewString(), Name: name, Known: known, CreatedAt: now}
	}
	names := np.Cert
	pending := np.Pending
	if !np.Auto {
		pending = append(slices.Clone(np.Pending), np.Claims...)
	}
	var (
		cert      *x509.Certificate
		hexSerial string
		err       error
	)
	// A serial collision (127 random bits: never, in practice) retries
	// with a new serial; anything else ends the attempt.
	for attempt := 0; ; attempt++ {
		cert, err = s.sign(now, host.ID, names, pub)
		if err != nil {
			return Result{}, err
		}
		hexSerial = ca.SerialHex(cert.SerialNumber)
		rec.hostID, rec.token = host.ID, tokenName
		audit := s.auditRow(now, rec, &dec, "granted", "")
		audit.Action = string(kind)
		audit.Detail["serial"] = hexSerial
		if renewedFrom != "" {
			audit.Detail["renewed_from"] = renewedFrom
		}
		audit.Detail["names"] = names
		if len(np.Claims) > 0 {
			audit.Detail["names_claimed"] = np.Claims
			audit.Detail["names_claimed_state"] = string(claimState(np.Auto))
		}
		err = s.cfg.Ledger.CommitIssuance(ctx, store.Issuance{
			Kind: kind,
			Host: host,
			Cert: store.Cert{
				Serial: hexSerial, HostID: host.ID, Names: names, Kind: kind, TokenName: tokenName,
				IssuedAt: now, NotBefore: cert.NotBefore, NotAfter: cert.NotAfter, DER: cert.Raw,
				Route: routeOf(ctx),
			},
			TokenName:   tokenName,
			TokenHash:   tokenHash,
			RenewedFrom: renewedFrom,
			Claims:      np.Claims,
			ClaimState:  claimState(np.Auto),
			Now:         now,
			Audit:       audit,
		})
		if errors.Is(err, store.ErrSerialExists) && attempt < 3 {
			continue
		}
		if err != nil {
			return Result{}, fmt.Errorf("commit %s of %s for %s: %w", kind, hexSerial, host.ID, err)
		}
		break
	}
	if kind == protocol.KindReissue {
		s.cfg.Revoked()
	}
	s.count(string(kind), true, "")
	s.cfg.Log.Info().Str("kind", string(kind)).Str("host_id", host.ID).Str("name", host.Name).
		Str("serial", hexSerial).Str("source", rec.source.String()).Str("token_name", tokenName).Msg("certificate issued")
	return Result{HostID: host.ID, Names: names, Pending: pending, Cert: cert, Serial: hexSerial, Level: dec.Level, Decision: dec}, nil
}

// sign builds and signs one host certificate with a fresh serial.
func (s *Service) sign(now time.Time, hostID string, names []string, pub crypto.PublicKey) (*x509.Certificate, error) {
	serial, err := ca.NewSerial()
	if err != nil {
		return nil, fmt.Errorf("new serial: %w", err)
	}
	tmpl, err := ca.Template(ca.HostCertRequest{
		HostID: hostID, Names: names, PublicKey: pub, Serial: serial, Validity: s.cfg.Validity,
	}, s.cfg.CA.Certificate(), now)
	if err != nil {
		return nil, fmt.Errorf("certificate template for %s: %w", hostID, err)
	}
	cert, err := s.cfg.CA.Sign(tmpl, pub)
	if err != nil {
		return nil, fmt.Errorf("sign certificate for %s: %w", hostID, err)
	}
	return cert, nil
}

// Renew renews the certificate that authenticated the mutual-TLS connection
// (chain[0]; nil or empty when the client presented none) for the host it
// belongs to, keeping its host ID and names. Only the host's current
// certificate renews; the one it renewed gets the current one again while
// that was never used (a renewal whose answer was lost). Like Enroll it
// reads gather (presented, renewFacts) → decide (policy.Plan) → act.
func (s *Service) Renew(ctx context.Context, chain []*x509.Certificate, csrPEM []byte, source netip.Addr) (Result, error) {
	now := s.now()
	rec := record{action: string(protocol.KindRenew), source: source.Unmap()}
	leaf, stored, err := s.presented(ctx, now, &rec, chain)
	if err != nil {
		return Result{}, err
	}
	g, pub, err := s.renewFacts(ctx, now, leaf, stored, csrPEM)
	if err != nil {
		return Result{}, s.internal(ctx, now, rec, err)
	}
	rec.name = g.host.Name
	if _, err := s.hostName(g.host.Name); err != nil {
		// Issued before the name was reserved (a primary renamed to it).
		return Result{}, s.refuse(ctx, now, rec, nil, nameCode(err), err.Error())
	}
	dec, act := policy.Plan(g.f)
	switch act {
	case policy.Resend:
		return s.resend(ctx, now, rec, g, dec)
	case policy.Refuse:
		msg := policy.Message(dec)
		if dec.Code == g.f.CSR.Code {
			msg = g.f.CSR.Why
		}
		return Result{}, s.refuse(ctx, now, rec, &dec, dec.Code, msg)
	}
	res, err := s.issue(ctx, now, protocol.KindRenew, g.host, g.host.Name, g.names, pub, "", nil, stored.Serial, rec, dec)
	if err := s.committed(ctx, now, rec, g.f, dec, err); err != nil {
		return Result{}, err
	}
	return res, nil
}

// presented checks the client certificate of a renewal — present, issued by
// our CA, a host certificate this primary issued to the host it names — and
// returns it with its store row. A refusal here comes before any decision.
func (s *Service) presented(ctx context.Context, now time.Time, rec *record, chain []*x509.Certificate) (*x509.Certificate, store.Cert, error) {
	if len(chain) == 0 {
		return nil, store.Cert{}, s.refuse(ctx, now, *rec, nil, protocol.CodeClientCertRequired, "renewal needs the host's current certificate as the TLS client certificate")
	}
	leaf := chain[0]
	rec.hostID = pki.HostIDFromCert(leaf)
	if err := s.checkChain(chain, now, now.After(leaf.NotAfter)); err != nil {
		return nil, store.Cert{}, s.refuse(ctx, now, *rec, nil, protocol.CodeClientCertRequired, err.Error())
	}
	if err := pki.RequireRole(leaf, pki.RoleHost); err != nil {
		return nil, store.Cert{}, s.refuse(ctx, now, *rec, nil, protocol.CodeClientCertRequired, "only a host certificate renews: "+err.Error())
	}
	if rec.hostID == "" {
		return nil, store.Cert{}, s.refuse(ctx, now, *rec, nil, protocol.CodeClientCertRequired, "the client certificate is not a host certificate")
	}
	// Its issuing CA's key may be in other hands: whatever it signed proves
	// nothing, so it is revoked with it and needs a reissue.
	if r := s.cfg.CA.RevokedIssuer(leaf); r != nil {
		return nil, store.Cert{}, s.refuse(ctx, now, *rec, nil, protocol.CodeHostRevoked, fmt.Sprintf(
			"the issuing CA that signed this certificate (%s) was revoked on %s (%s), and the certificate with it: it cannot renew and needs a reissue (a reissue token, or host allow-reissue)",
			r.Cert.Subject.CommonName, r.RevokedAt.UTC().Format(time.RFC3339), ca.ReasonName(r.Reason)))
	}
	serial := ca.SerialHex(leaf.SerialNumber)
	stored, err := s.cfg.Ledger.CertBySerial(ctx, serial)
	switch {
	case errors.Is(err, store.ErrNotFound):
		return nil, store.Cert{}, s.refuse(ctx, now, *rec, nil, protocol.CodeClientCertRequired, "the client certificate is not a host certificate this primary issued")
	case err != nil:
		return nil, store.Cert{}, s.internal(ctx, now, *rec, fmt.Errorf("look up certificate %s: %w", serial, err))
	case stored.HostID != rec.hostID:
		return nil, store.Cert{}, s.refuse(ctx, now, *rec, nil, protocol.CodeClientCertRequired, "the client certificate does not match the host it names")
	}
	return leaf, stored, nil
}

// renewFacts gathers the facts of a renewal: level, host, the host's current
// certificate, and what is wrong with the CSR, if anything. pub is the CSR's
// key (nil when the CSR does not parse).
func (s *Service) renewFacts(ctx context.Context, now time.Time, leaf *x509.Certificate, stored store.Cert, csrPEM []byte) (gathered, crypto.PublicKey, error) {
	var g gathered
	var err error
	if g.host, err = s.cfg.Registry.HostByID(ctx, stored.HostID); err != nil {
		return g, nil, fmt.Errorf("look up host %s: %w", stored.HostID, err)
	}
	level, err := s.cfg.Journal.Level(ctx)
	if err != nil {
		return g, nil, fmt.Errorf("read level: %w", err)
	}
	var pub crypto.PublicKey
	csr, err := pki.ParseCSR(csrPEM)
	var problem policy.CSRProblem
	switch {
	case err != nil:
		problem = policy.CSRProblem{Code: protocol.CodeBadCSR, Why: "the CSR is not a valid PEM certificate request with a good signature"}
	case CheckKey(csr.PublicKey) != nil:
		problem = policy.CSRProblem{Code: protocol.CodeBadCSR, Why: CheckKey(csr.PublicKey).Error()}
	default:
		pub = csr.PublicKey
		asked, err := CSRNames(csr, s.hostName)
		if err != nil {
			problem = policy.CSRProblem{Code: csrNameCode(err), Why: err.Error()}
			break
		}
		g.names, err = s.planNames(ctx, g.host, g.host.Name, asked)
		var perr *protocol.Error
		if errors.As(err, &perr) {
			problem = policy.CSRProblem{Code: perr.Code, Why: perr.Message}
		} else if err != nil {
			return g, nil, err
		}
	}
	g.f = policy.Facts{
		Level: level, Kind: protocol.KindRenew, HostID: g.host.ID, Known: g.host.Known, DNSSkipped: true,
		CertExpired: now.After(leaf.NotAfter),
		Presented:   stored.Serial,
		CSR:         problem,
	}
	if g.cur, g.f.Current, err = s.current(ctx, now, g.host.ID, pub); err != nil {
		return g, nil, err
	}
	// A superseded certificate that a reissue revoked is refused as
	// superseded; the current one revoked, or the host, as revoked.
	g.f.HostRevoked = g.host.RevokedAt != nil || (stored.RevokedAt != nil && stored.Serial == g.f.Current.Serial)
	return g, pub, nil
}

// Seen records the first use of a host certificate presented to the
// primary (any request over TLS with a client certificate, e.g. a CRL
// fetch): from then on the certificate it renewed can no longer get it sent
// again (policy.Plan). It also records the host's last contact (the
// inventory's stale hosts; the store writes it at most hourly). A
// certificate that does not chain to our CA, or that this primary did not
// issue to the host it names, is ignored.
func (s *Service) Seen(ctx context.Context, chain []*x509.Certificate) {
	now := s.now()
	leaf := chain[0]
	hostID := pki.HostIDFromCert(leaf)
	if hostID == "" || now.After(leaf.NotAfter) || s.checkChain(chain, now, false) != nil {
		return
	}
	serial := ca.SerialHex(leaf.SerialNumber)
	c, err := s.cfg.Ledger.CertBySerial(ctx, serial)
	if err != nil || c.HostID != hostID {
		return
	}
	if err := s.cfg.Ledger.MarkUsed(ctx, serial, now); err != nil {
		s.cfg.Log.Warn().Err(err).Str("serial", serial).Msg("recording the first use of a certificate")
	}
}

// checkChain verifies that the client certificate chains to one of our CA
// certificates as a client-auth certificate; an expired one is checked as of
// its last valid second, so that it gets cert_expired rather than a generic
// refusal.
func (s *Service) checkChain(chain []*x509.Certificate, now time.Time, expired bool) error {
	roots := x509.NewCertPool()
	for _, c := range s.cfg.CA.Bundle() {
		roots.AddCert(c)
	}
	// The primary's own issuing CAs complete a chain the client sent
	// without its issuing CA.
	inter := x509.NewCertPool()
	for _, c := range s.cfg.CA.Issuing() {
		inter.AddCert(c)
	}
	for _, c := range chain[1:] {
		inter.AddCert(c)
	}
	at := now
	if expired {
		at = chain[0].NotAfter.Add(-time.Second)
	}
	// Any usage here: the role check (Renew) refuses a primary's or an
	// admin's certificate by name, and every host certificate allows
	// client auth.
	_, err := chain[0].Verify(x509.VerifyOptions{
		Roots: roots, Intermediates: inter, CurrentTime: at,
		KeyUsages: []x509.ExtKeyUsage{x509.ExtKeyUsageAny},
	})
	if err != nil {
		return errors.New("the client certificate was not issued by this primary's CA")
	}
	return nil
}

// Explain is the dry run of SPEC §4: the decision an issue or reissue of name
// from the address from (NAT declared or not, no token) would get. Nothing
// is issued, counted or audited here (the admin command audits itself).
func (s *Service) Explain(ctx context.Context, name string, from netip.Addr, nat bool) (protocol.Decision, error) {
	n, err := s.hostName(name)
	if err != nil {
		return protocol.Decision{}, err
	}
	g, err := s.facts(ctx, s.now(), ask{name: n, src: from.Unmap(), nat: nat, explain: true})
	if err != nil {
		return protocol.Decision{}, err
	}
	return policy.Decide(g.f), nil
}

// Reject audits and counts a request refused before it reached the
// decision (malformed JSON, a body too large) and returns the refusal.
func (s *Service) Reject(ctx context.Context, kind protocol.RequestKind, source netip.Addr, code protocol.Code, msg string) error {
	action := "enroll"
	if kind == protocol.KindRenew {
		action = string(kind)
	}
	return s.refuse(ctx, s.now(), record{action: action, source: source.Unmap()}, nil, code, msg)
}

// hostName is the canonical form of a name a host certificate may carry:
// hostname.ForHost, and not a name the primary has or ever had.
func (s *Service) hostName(raw string) (string, error) {
	name, err := NormalizeName(raw)
	if err != nil {
		return "", err
	}
	if s.cfg.Primary != nil && s.cfg.Primary.IsPrimaryName(name) {
		return "", fmt.Errorf("%w: %s is a name of the primary; no host certificate carries it", hostname.ErrReserved, name)
	}
	return name, nil
}

// csrNameCode is the refusal code of a CSR whose names CSRNames refused:
// name_reserved for a reserved name, else name_not_allowed.
func csrNameCode(err error) protocol.Code {
	if errors.Is(err, hostname.ErrReserved) {
		return protocol.CodeNameReserved
	}
	return protocol.CodeNameNotAllowed
}

// nameCode is the refusal code of a name hostName refused.
func nameCode(err error) protocol.Code {
	if errors.Is(err, hostname.ErrReserved) {
		return protocol.CodeNameReserved
	}
	return protocol.CodeBadRequest
}

// resend answers a retried request whose answer was lost (policy.Plan's
// Resend): the host's current certificate is sent again. Nothing is issued
// and no token is used; the resend is audited and counted.
func (s *Service) resend(ctx context.Context, now time.Time, rec record, g gathered, dec protocol.Decision) (Result, error) {
	cert, err := x509.ParseCertificate(g.cur.DER)
	if err != nil {
		return Result{}, s.internal(ctx, now, rec, fmt.Errorf("stored certificate %s: %w", g.cur.Serial, err))
	}
	rec.action = "resend"
	audit := s.auditRow(now, rec, &dec, "granted", "")
	audit.Action = "resend"
	audit.Detail["serial"] = g.cur.Serial
	if g.f.Presented != "" {
		audit.Detail["presented"] = g.f.Presented
	}
	if err := s.cfg.Journal.AppendAudit(ctx, audit); err != nil {
		return Result{}, s.internal(ctx, now, rec, fmt.Errorf("audit resend of %s: %w", g.cur.Serial, err))
	}
	s.count("resend", true, "")
	s.cfg.Log.Info().Str("kind", string(g.f.Kind)).Str("host_id", g.host.ID).Str("name", g.host.Name).Str("serial", g.cur.Serial).
		Str("source", rec.source.String()).Msg("certificate sent again to a retried request")
	return Result{HostID: g.host.ID, Names: g.cur.Names, Cert: cert, Serial: g.cur.Serial, Level: g.f.Level, Decision: dec}, nil
}
