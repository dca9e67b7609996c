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
	"time"

	"github.com/google/uuid"
	"github.com/rs/zerolog"

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
}

// Ledger holds tokens and certificates and commits issuances.
type Ledger interface {
	TokenByHash(ctx context.Context, hash []byte) (store.Token, error)
	CertBySerial(ctx context.Context, serial string) (store.Cert, error)
	ListCerts(ctx context.Context, f store.CertFilter) ([]store.Cert, error)
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
	Bundle() []*x509.Certificate
	Sign(tmpl *x509.Certificate, pub crypto.PublicKey) (*x509.Certificate, error)
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
	Names    []string
	Cert     *x509.Certificate
	Serial   string // upper-case hex
	Level    protocol.Level
	Decision protocol.Decision
}

// verifyTimeout bounds the DNS verification of one request.
const verifyTimeout = 3 * time.Second

// Enroll decides and, when granted, issues. A refusal is returned as a
// *protocol.Error carrying the decision (when one was made); any other error
// is internal. Every outcome is audited.
func (s *Service) Enroll(ctx context.Context, req Request) (Result, error) {
	now := s.now()
	src := req.Source.Unmap()
	rec := record{action: "enroll", source: src, name: clip(req.Name)}

	name, err := NormalizeName(req.Name)
	if err != nil {
		return Result{}, s.refuse(ctx, now, rec, nil, protocol.CodeBadRequest, err.Error())
	}
	rec.name = name
	csr, err := pki.ParseCSR(req.CSR)
	if err != nil {
		return Result{}, s.refuse(ctx, now, rec, nil, protocol.CodeBadCSR, "the CSR is not a valid PEM certificate request with a good signature")
	}
	if err := CheckKey(csr.PublicKey); err != nil {
		return Result{}, s.refuse(ctx, now, rec, nil, protocol.CodeBadCSR, err.Error())
	}
	if err := CSRNamesMatch(csr, name); err != nil {
		return Result{}, s.refuse(ctx, now, rec, nil, protocol.CodeNameNotAllowed, err.Error())
	}

	// The token, looked up once: its use is counted atomically at commit.
	var (
		tf  policy.TokenFacts
		tok store.Token
	)
	if req.Token != "" {
		tf.Present = true
		if !s.limiter.Allow(src, now) {
			return Result{}, s.refuse(ctx, now, rec, nil, protocol.CodeRateLimited, "too many wrong tokens from this address; wait a minute and try again")
		}
		if tokens.WellFormed(req.Token) {
			t, err := s.cfg.Ledger.TokenByHash(ctx, tokens.Hash(req.Token))
			switch {
			case err == nil:
				tok, rec.token = t, t.Name
				bind, err := tokens.ParseBinding(t.BindNames, t.BindNets, NormalizeName)
				if err != nil {
					return Result{}, s.internal(ctx, now, rec, fmt.Errorf("token %s: stored binding: %w", t.Name, err))
				}
				tf = policy.TokenFacts{
					Present: true, Found: true, Kind: t.Kind, HostID: t.HostID,
					Expired: !now.Before(t.ExpiresAt), UsedUp: t.Uses >= t.MaxUses,
					Outside: !bind.Allows(name, src),
				}
			case errors.Is(err, store.ErrNotFound):
			default:
				return Result{}, s.internal(ctx, now, rec, fmt.Errorf("look up token: %w", err))
			}
		}
	}

	// Two rounds at most: a concurrent first issuance of the same name makes
	// the second one a reissue, decided afresh.
	for round := 0; ; round++ {
		f, host, err := s.facts(ctx, now, name, req.HostID, src, req.NAT, tf)
		if err != nil {
			var perr *protocol.Error
			if errors.As(err, &perr) {
				return Result{}, s.refuse(ctx, now, rec, nil, perr.Code, perr.Message)
			}
			return Result{}, s.internal(ctx, now, rec, err)
		}
		rec.action, rec.hostID = string(f.Kind), host.ID
		if f.Kind == protocol.KindReissue {
			res, ok, err := s.resend(ctx, now, f, host, csr.PublicKey, rec)
			if err != nil {
				return Result{}, s.internal(ctx, now, rec, err)
			}
			if ok {
				return res, nil
			}
		}
		dec := policy.Decide(f)
		if f.Kind == protocol.KindIssue && !f.Verified && f.Token.Present && dec.TokenState == protocol.TokenValid && !f.NAT {
			dec.Reason += " DNS was not checked: the valid token authorises the request."
		}
		if !dec.Granted {
			if policy.Guess(tf) {
				s.limiter.Fail(src, now)
			}
			return Result{}, s.refuse(ctx, now, rec, &dec, dec.Code, policy.Message(dec))
		}
		tokenName, tokenHash := "", []byte(nil)
		if dec.TokenState == protocol.TokenValid {
			tokenName, tokenHash = tok.Name, tok.Hash
		}
		res, err := s.issue(ctx, now, f.Kind, host, name, csr.PublicKey, tokenName, tokenHash, rec, dec)
		switch {
		case err == nil:
			return res, nil
		case errors.Is(err, store.ErrHostExists) && round == 0:
			continue
		case errors.Is(err, store.ErrTokenUsedUp), errors.Is(err, store.ErrTokenExpired),
			errors.Is(err, store.ErrTokenMissing), errors.Is(err, store.ErrTokenHost):
			// Lost the race for the token's last use (or it expired
			// meanwhile): nothing was written, the signed certificate is
			// discarded.
			dec.Granted, dec.Code = false, protocol.CodeTokenInvalid
			switch {
			case errors.Is(err, store.ErrTokenUsedUp):
				dec.TokenState = protocol.TokenUsedUp
				dec.Reason = "refused (token_invalid): the token's last use went to a concurrent request; this certificate was discarded."
			case errors.Is(err, store.ErrTokenExpired):
				dec.TokenState = protocol.TokenExpired
				dec.Reason = "refused (token_invalid): the token expired before the certificate was committed; it was discarded."
			default:
				dec.TokenState = protocol.TokenInvalid
				dec.Reason = "refused (token_invalid): the token was deleted or changed before the certificate was committed; it was discarded."
			}
			return Result{}, s.refuse(ctx, now, rec, &dec, dec.Code, policy.Message(dec))
		default:
			return Result{}, s.internal(ctx, now, rec, err)
		}
	}
}

// facts gathers what the decision needs. A *protocol.Error is a refusal.
func (s *Service) facts(ctx context.Context, now time.Time, name, hostID string, src netip.Addr, nat bool, tf policy.TokenFacts) (policy.Facts, store.Host, error) {
	level, err := s.cfg.Journal.Level(ctx)
	if err != nil {
		return policy.Facts{}, store.Host{}, fmt.Errorf("read level: %w", err)
	}
	f := policy.Facts{Level: level, NAT: nat, Token: tf}
	var host store.Host
	if hostID != "" {
		host, err = s.cfg.Registry.HostByID(ctx, hostID)
		switch {
		case errors.Is(err, store.ErrNotFound):
			return f, host, &protocol.Error{Code: protocol.CodeNotFound, Message: "no host has that host ID"}
		case err != nil:
			return f, host, fmt.Errorf("look up host %s: %w", hostID, err)
		case host.Name != name:
			return f, host, &protocol.Error{Code: protocol.CodeNameNotAllowed, Message: fmt.Sprintf("host ID %s belongs to another name", hostID)}
		}
		f.Known = host.Known
	} else {
		host, err = s.cfg.Registry.LookupName(ctx, name)
		if err != nil {
			return f, host, fmt.Errorf("look up host %s: %w", name, err)
		}
		f.Known = host.Known
	}
	if host.ID == "" {
		f.Kind = protocol.KindIssue
		// A valid standard token authorises an issue at every level, so DNS
		// would change nothing: skip the lookup.
		validToken := tf.Usable() && tf.Kind == tokens.KindStandard
		if !nat && !validToken && s.cfg.Resolver != nil {
			vctx, cancel := context.WithTimeout(ctx, verifyTimeout)
			f.Verified, _ = verify.Verify(vctx, s.cfg.Resolver, name, src, nat)
			cancel()
		}
	} else {
		f.Kind = protocol.KindReissue
		f.HostID = host.ID
		f.Window = host.ReissueUntil != nil && now.Before(*host.ReissueUntil)
	}
	return f, host, nil
}

// issue builds, signs and commits one certificate.
func (s *Service) issue(ctx context.Context, now time.Time, kind protocol.RequestKind, host store.Host, name string, pub crypto.PublicKey, tokenName string, tokenHash []byte, rec record, dec protocol.Decision) (Result, error) {
	if kind == protocol.KindIssue {
		known := dec.Known
		host = store.Host{ID: uuid.NewString(), Name: name, Known: known, CreatedAt: now}
	}
	names := []string{host.Name}
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
		err = s.cfg.Ledger.CommitIssuance(ctx, store.Issuance{
			Kind: kind,
			Host: host,
			Cert: store.Cert{
				Serial: hexSerial, HostID: host.ID, Names: names, Kind: kind, TokenName: tokenName,
				IssuedAt: now, NotBefore: cert.NotBefore, NotAfter: cert.NotAfter, DER: cert.Raw,
			},
			TokenName: tokenName,
			TokenHash: tokenHash,
			Now:       now,
			Audit:     audit,
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
	return Result{HostID: host.ID, Names: names, Cert: cert, Serial: hexSerial, Level: dec.Level, Decision: dec}, nil
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
// belongs to, keeping its host ID and names.
func (s *Service) Renew(ctx context.Context, chain []*x509.Certificate, csrPEM []byte, source netip.Addr) (Result, error) {
	now := s.now()
	src := source.Unmap()
	rec := record{action: string(protocol.KindRenew), source: src}
	if len(chain) == 0 {
		return Result{}, s.refuse(ctx, now, rec, nil, protocol.CodeClientCertRequired, "renewal needs the host's current certificate as the TLS client certificate")
	}
	leaf := chain[0]
	rec.hostID = pki.HostIDFromCert(leaf)
	expired := now.After(leaf.NotAfter)
	if err := s.checkChain(chain, now, expired); err != nil {
		return Result{}, s.refuse(ctx, now, rec, nil, protocol.CodeClientCertRequired, err.Error())
	}
	if rec.hostID == "" {
		return Result{}, s.refuse(ctx, now, rec, nil, protocol.CodeClientCertRequired, "the client certificate is not a host certificate")
	}
	serial := ca.SerialHex(leaf.SerialNumber)
	stored, err := s.cfg.Ledger.CertBySerial(ctx, serial)
	switch {
	case errors.Is(err, store.ErrNotFound):
		return Result{}, s.refuse(ctx, now, rec, nil, protocol.CodeClientCertRequired, "the client certificate is not a host certificate this primary issued")
	case err != nil:
		return Result{}, s.internal(ctx, now, rec, fmt.Errorf("look up certificate %s: %w", serial, err))
	case stored.HostID != rec.hostID:
		return Result{}, s.refuse(ctx, now, rec, nil, protocol.CodeClientCertRequired, "the client certificate does not match the host it names")
	}
	host, err := s.cfg.Registry.HostByID(ctx, rec.hostID)
	if err != nil {
		return Result{}, s.internal(ctx, now, rec, fmt.Errorf("look up host %s: %w", rec.hostID, err))
	}
	rec.name = host.Name
	level, err := s.cfg.Journal.Level(ctx)
	if err != nil {
		return Result{}, s.internal(ctx, now, rec, fmt.Errorf("read level: %w", err))
	}
	dec := policy.Decide(policy.Facts{
		Level: level, Kind: protocol.KindRenew, HostID: host.ID, Known: host.Known,
		HostRevoked: stored.RevokedAt != nil || host.RevokedAt != nil,
		CertExpired: expired,
	})
	if !dec.Granted {
		return Result{}, s.refuse(ctx, now, rec, &dec, dec.Code, policy.Message(dec))
	}
	csr, err := pki.ParseCSR(csrPEM)
	if err != nil {
		return Result{}, s.refuse(ctx, now, rec, &dec, protocol.CodeBadCSR, "the CSR is not a valid PEM certificate request with a good signature")
	}
	if err := CheckKey(csr.PublicKey); err != nil {
		return Result{}, s.refuse(ctx, now, rec, &dec, protocol.CodeBadCSR, err.Error())
	}
	if err := CSRNamesMatch(csr, host.Name); err != nil {
		return Result{}, s.refuse(ctx, now, rec, &dec, protocol.CodeNameNotAllowed, err.Error())
	}
	res, err := s.issue(ctx, now, protocol.KindRenew, host, host.Name, csr.PublicKey, "", nil, rec, dec)
	if errors.Is(err, store.ErrHostRevoked) {
		dec.Granted, dec.Code = false, protocol.CodeHostRevoked
		dec.Reason = "refused (host_revoked): the host was revoked while this renewal was decided; the certificate was discarded."
		return Result{}, s.refuse(ctx, now, rec, &dec, dec.Code, policy.Message(dec))
	}
	if err != nil {
		return Result{}, s.internal(ctx, now, rec, err)
	}
	return res, nil
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
	inter := x509.NewCertPool()
	for _, c := range chain[1:] {
		inter.AddCert(c)
	}
	at := now
	if expired {
		at = chain[0].NotAfter.Add(-time.Second)
	}
	_, err := chain[0].Verify(x509.VerifyOptions{
		Roots: roots, Intermediates: inter, CurrentTime: at,
		KeyUsages: []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth},
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
	n, err := NormalizeName(name)
	if err != nil {
		return protocol.Decision{}, err
	}
	f, _, err := s.facts(ctx, s.now(), n, "", from.Unmap(), nat, policy.TokenFacts{})
	if err != nil {
		return protocol.Decision{}, err
	}
	return policy.Decide(f), nil
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

// clip bounds attacker-controlled strings before they reach the audit log.
func clip(s string) string {
	if len(s) > 255 {
		return s[:255]
	}
	return s
}

// resend answers a retried enrollment. When the host's current certificate
// (its newest unrevoked, unexpired one, of a host that is not revoked) was
// issued for the very key of this CSR — whose signature proves that the
// requester holds that key — the certificate is sent again: a client whose
// answer was lost on the way gets it without a reissue token. Nothing is
// issued and no token is used; the resend is audited.
func (s *Service) resend(ctx context.Context, now time.Time, f policy.Facts, host store.Host, pub crypto.PublicKey, rec record) (Result, bool, error) {
	if host.RevokedAt != nil {
		return Result{}, false, nil
	}
	certs, err := s.cfg.Ledger.ListCerts(ctx, store.CertFilter{HostID: host.ID})
	if err != nil {
		return Result{}, false, fmt.Errorf("certificates of %s: %w", host.ID, err)
	}
	if len(certs) == 0 {
		return Result{}, false, nil
	}
	cur := certs[len(certs)-1] // oldest first
	if cur.RevokedAt != nil || !now.Before(cur.NotAfter) {
		return Result{}, false, nil
	}
	spki, err := x509.MarshalPKIXPublicKey(pub)
	if err != nil {
		return Result{}, false, nil
	}
	cert, err := x509.ParseCertificate(cur.DER)
	if err != nil {
		return Result{}, false, fmt.Errorf("stored certificate %s: %w", cur.Serial, err)
	}
	if !bytes.Equal(cert.RawSubjectPublicKeyInfo, spki) {
		return Result{}, false, nil
	}
	dec := protocol.Decision{
		Kind: cur.Kind, Level: f.Level, Known: f.Known, NAT: f.NAT, Granted: true, TokenState: protocol.TokenNone,
		Reason: "granted: the host's current certificate was issued for this very key (a retried request), so it is sent again; nothing new is issued.",
	}
	rec.action = "resend"
	audit := s.auditRow(now, rec, &dec, "granted", "")
	audit.Action = "resend"
	audit.Detail["serial"] = cur.Serial
	if err := s.cfg.Journal.AppendAudit(ctx, audit); err != nil {
		return Result{}, false, fmt.Errorf("audit resend of %s: %w", cur.Serial, err)
	}
	s.count("resend", true, "")
	s.cfg.Log.Info().Str("host_id", host.ID).Str("name", host.Name).Str("serial", cur.Serial).
		Str("source", rec.source.String()).Msg("certificate sent again to a retried enrollment")
	return Result{HostID: host.ID, Names: cur.Names, Cert: cert, Serial: cur.Serial, Level: f.Level, Decision: dec}, true, nil
}
