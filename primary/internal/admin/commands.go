package admin

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/netip"
	"time"

	"github.com/google/uuid"

	"github.com/hostcert/hostcert/common/hostname"
	"github.com/hostcert/hostcert/common/pki"
	"github.com/hostcert/hostcert/common/protocol"
	"github.com/hostcert/hostcert/primary/internal/ca"
	"github.com/hostcert/hostcert/primary/internal/policy"
	"github.com/hostcert/hostcert/primary/internal/store"
	"github.com/hostcert/hostcert/primary/internal/tokens"
)

// MaxAuditRows bounds one page of audit rows; auditPageBytes bounds its
// encoded size, far below MaxMessage (a row's detail can be long).
const (
	MaxAuditRows   = 1000
	auditPageBytes = MaxMessage / 4
)

// dispatch runs one command for actor and returns its result.
func (s *Server) dispatch(ctx context.Context, actor string, req Request) (any, error) {
	now := s.now()
	a := store.Audit{At: now, Actor: actor, Action: req.Command, Outcome: "ok", Detail: map[string]any{}}
	switch req.Command {
	case CmdCAShow:
		return s.caShow(), nil

	case CmdLevelGet:
		l, err := s.levels.Level(ctx)
		if err != nil {
			return nil, fmt.Errorf("read level: %w", err)
		}
		return LevelInfo{Level: l, CRLRefreshSeconds: int64(l.CRLRefresh() / time.Second)}, nil

	case CmdLevelSet:
		var args LevelArgs
		if err := decodeArgs(req, &args); err != nil {
			return nil, err
		}
		l, err := protocol.ParseLevel(string(args.Level))
		if err != nil {
			return nil, err
		}
		old, err := s.levels.Level(ctx)
		if err != nil {
			return nil, fmt.Errorf("read level: %w", err)
		}
		a.Detail["from"], a.Detail["to"] = string(old), string(l)
		if err := s.levels.SetLevel(ctx, l, a); err != nil {
			return nil, fmt.Errorf("set level: %w", err)
		}
		return LevelInfo{Level: l, CRLRefreshSeconds: int64(l.CRLRefresh() / time.Second)}, nil

	case CmdHostAdd:
		var args NamesArgs
		if err := decodeArgs(req, &args); err != nil {
			return nil, err
		}
		names, err := s.hostNames(args.Names)
		if err != nil {
			return nil, err
		}
		a.Detail["count"] = len(names)
		if len(names) <= 20 {
			a.Detail["names"] = names
		}
		added, err := s.store.AddKnown(ctx, names, a)
		if err != nil {
			return nil, fmt.Errorf("add hosts: %w", err)
		}
		return AddResult{Added: added, Total: len(names)}, nil

	case CmdHostRemove:
		var args HostArgs
		if err := decodeArgs(req, &args); err != nil {
			return nil, err
		}
		name, err := hostname.Normalize(args.Host)
		if err != nil {
			return nil, err
		}
		a.Name = name
		if err := s.store.RemoveKnown(ctx, name, a); err != nil {
			if errors.Is(err, store.ErrNotFound) {
				return nil, fmt.Errorf("%s is not in the host registry", name)
			}
			return nil, fmt.Errorf("remove %s: %w", name, err)
		}
		return CountResult{Count: 1}, nil

	case CmdHostList:
		hosts, err := s.store.ListHosts(ctx)
		if err != nil {
			return nil, fmt.Errorf("list hosts: %w", err)
		}
		out := make([]Host, 0, len(hosts))
		for _, h := range hosts {
			out = append(out, hostView(h))
		}
		return out, nil

	case CmdHostShow:
		var args HostArgs
		if err := decodeArgs(req, &args); err != nil {
			return nil, err
		}
		return s.hostShow(ctx, args.Host)

	case CmdHostReissue:
		var args WindowArgs
		if err := decodeArgs(req, &args); err != nil {
			return nil, err
		}
		d, err := policy.ParseWindow(args.For)
		if err != nil {
			return nil, err
		}
		h, err := s.resolveHost(ctx, args.Host)
		if err != nil {
			return nil, err
		}
		until := now.Add(d)
		a.HostID, a.Name = h.ID, h.Name
		a.Detail["until"] = until.UTC().Format(time.RFC3339)
		if err := s.store.SetReissueWindow(ctx, h.ID, until, a); err != nil {
			return nil, fmt.Errorf("open auto-reissue window for %s: %w", h.Name, err)
		}
		return WindowResult{HostID: h.ID, Name: h.Name, Until: until}, nil

	case CmdTokenCreate:
		var args TokenArgs
		if err := decodeArgs(req, &args); err != nil {
			return nil, err
		}
		return s.tokenCreate(ctx, now, args, a)

	case CmdTokenList:
		list, err := s.store.ListTokens(ctx)
		if err != nil {
			return nil, fmt.Errorf("list tokens: %w", err)
		}
		out := make([]Token, 0, len(list))
		for _, t := range list {
			out = append(out, tokenView(t, now))
		}
		return out, nil

	case CmdTokenDelete:
		var args NameArgs
		if err := decodeArgs(req, &args); err != nil {
			return nil, err
		}
		a.TokenName = args.Name
		if err := s.store.DeleteToken(ctx, args.Name, a); err != nil {
			if errors.Is(err, store.ErrNotFound) {
				return nil, fmt.Errorf("no token named %q", args.Name)
			}
			return nil, fmt.Errorf("delete token %s: %w", args.Name, err)
		}
		return CountResult{Count: 1}, nil

	case CmdTokenCleanup:
		n, err := s.store.CleanupTokens(ctx, now, a)
		if err != nil {
			return nil, fmt.Errorf("clean up tokens: %w", err)
		}
		return CountResult{Count: n}, nil

	case CmdCertList:
		var args CertArgs
		if err := decodeArgs(req, &args); err != nil {
			return nil, err
		}
		f := store.CertFilter{TokenName: args.Token, IncludeRevoked: true}
		if args.Host != "" {
			h, err := s.resolveHost(ctx, args.Host)
			if err != nil {
				return nil, err
			}
			f.HostID = h.ID
		}
		certs, err := s.store.ListCerts(ctx, f)
		if err != nil {
			return nil, fmt.Errorf("list certificates: %w", err)
		}
		out := make([]Cert, 0, len(certs))
		for _, c := range certs {
			out = append(out, certView(c))
		}
		return out, nil

	case CmdCertRevoke:
		var args RevokeArgs
		if err := decodeArgs(req, &args); err != nil {
			return nil, err
		}
		return s.revoke(ctx, now, args, a)

	case CmdExplain:
		var args ExplainArgs
		if err := decodeArgs(req, &args); err != nil {
			return nil, err
		}
		from, err := netip.ParseAddr(args.From)
		if err != nil {
			return nil, fmt.Errorf("--from %q is not an IP address", args.From)
		}
		d, err := s.explain.Explain(ctx, args.Name, from, args.NAT)
		if err != nil {
			return nil, fmt.Errorf("explain %s: %w", hostname.Quote(args.Name), err)
		}
		a.Name, a.Source = hostname.Display(args.Name), from.String()
		a.Detail["nat"], a.Detail["need_token"], a.Detail["reason"] = args.NAT, d.NeedToken, d.Reason
		if err := s.store.AppendAudit(ctx, a); err != nil {
			return nil, fmt.Errorf("audit: %w", err)
		}
		return d, nil

	case CmdAudit:
		var args AuditArgs
		if err := decodeArgs(req, &args); err != nil {
			return nil, err
		}
		if args.Limit < 0 || args.After < 0 {
			return nil, fmt.Errorf("audit: limit %d, after %d: want 0 or more", args.Limit, args.After)
		}
		limit := args.Limit
		if limit == 0 || limit > MaxAuditRows {
			limit = MaxAuditRows
		}
		rows, err := s.store.ListAuditPage(ctx, args.Since, args.After, limit)
		if err != nil {
			return nil, fmt.Errorf("read audit log: %w", err)
		}
		return auditPage(rows, auditPageBytes)
	}
	return nil, fmt.Errorf("unknown admin command %q", req.Command)
}

func decodeArgs(req Request, v any) error {
	if len(req.Args) == 0 {
		return nil
	}
	dec := json.NewDecoder(bytes.NewReader(req.Args))
	dec.DisallowUnknownFields()
	if err := dec.Decode(v); err != nil {
		return fmt.Errorf("%s: bad arguments: %w", req.Command, err)
	}
	return nil
}

// hostNames puts names for the registry in canonical form and refuses the
// reserved ones (hostname.ForHost, and the primary's names).
func (s *Server) hostNames(in []string) ([]string, error) {
	if len(in) == 0 {
		return nil, errors.New("no host names given")
	}
	seen := make(map[string]bool, len(in))
	out := make([]string, 0, len(in))
	for _, raw := range in {
		n, err := hostname.ForHost(raw)
		if err != nil {
			return nil, err
		}
		if s.ca != nil && s.ca.IsPrimaryName(n) {
			return nil, fmt.Errorf("%w: %s is a name of the primary; no host certificate carries it", hostname.ErrReserved, n)
		}
		if !seen[n] {
			seen[n] = true
			out = append(out, n)
		}
	}
	return out, nil
}

// resolveHost finds a host with a host ID by its ID or its name.
func (s *Server) resolveHost(ctx context.Context, ref string) (store.Host, error) {
	if ref == "" {
		return store.Host{}, errors.New("no host given (NAME or HOSTID)")
	}
	if _, err := uuid.Parse(ref); err == nil {
		h, err := s.store.HostByID(ctx, ref)
		if errors.Is(err, store.ErrNotFound) {
			return h, fmt.Errorf("no host with host ID %s", ref)
		}
		return h, err
	}
	name, err := hostname.Normalize(ref)
	if err != nil {
		return store.Host{}, err
	}
	h, err := s.store.HostByName(ctx, name)
	if errors.Is(err, store.ErrNotFound) {
		return h, fmt.Errorf("%s has no host ID yet (it never got a certificate)", name)
	}
	return h, err
}

func (s *Server) hostShow(ctx context.Context, ref string) (HostDetail, error) {
	h, err := s.resolveHost(ctx, ref)
	if err != nil {
		// A registry name without a host ID is still worth showing.
		name, nerr := hostname.Normalize(ref)
		if nerr != nil {
			return HostDetail{}, err
		}
		known, kerr := s.store.IsKnown(ctx, name)
		if kerr != nil || !known {
			return HostDetail{}, err
		}
		return HostDetail{Host: Host{Name: name, Known: true}, Certificates: []Cert{}}, nil
	}
	known, err := s.store.IsKnown(ctx, h.Name)
	if err != nil {
		return HostDetail{}, fmt.Errorf("look up registry: %w", err)
	}
	h.Known = known
	certs, err := s.store.ListCerts(ctx, store.CertFilter{HostID: h.ID, IncludeRevoked: true})
	if err != nil {
		return HostDetail{}, fmt.Errorf("list certificates of %s: %w", h.Name, err)
	}
	d := HostDetail{Host: hostView(h), Certificates: make([]Cert, 0, len(certs))}
	for _, c := range certs {
		d.Certificates = append(d.Certificates, certView(c))
	}
	return d, nil
}

func (s *Server) tokenCreate(ctx context.Context, now time.Time, args TokenArgs, a store.Audit) (CreatedToken, error) {
	if err := tokens.ValidName(args.Name); err != nil {
		return CreatedToken{}, err
	}
	kind, hostID := tokens.KindStandard, ""
	if args.ReissueHost != "" {
		h, err := s.resolveHost(ctx, args.ReissueHost)
		if err != nil {
			return CreatedToken{}, err
		}
		kind, hostID = tokens.KindReissue, h.ID
		a.HostID, a.Name = h.ID, h.Name
		if len(args.BindNames) > 0 {
			return CreatedToken{}, errors.New("a reissue token is already bound to its host: --bind-name is for standard tokens (--bind-net works for both)")
		}
	}
	bind, err := tokens.ParseBinding(args.BindNames, args.BindNets, hostname.ForHost)
	if err != nil {
		return CreatedToken{}, err
	}
	bindNames, bindNets := bind.Strings()
	maxUses, err := tokens.MaxUses(kind, args.MaxUses)
	if err != nil {
		return CreatedToken{}, err
	}
	validity, err := tokens.ParseValidity(args.ValidFor)
	if err != nil {
		return CreatedToken{}, err
	}
	value, hash, err := tokens.Generate()
	if err != nil {
		return CreatedToken{}, err
	}
	t := store.Token{
		Name: args.Name, Kind: kind, HostID: hostID, Hash: hash, MaxUses: maxUses,
		CreatedAt: now, ExpiresAt: now.Add(validity), Reason: args.Reason,
		BindNames: bindNames, BindNets: bindNets,
	}
	a.TokenName = t.Name
	a.Detail["kind"], a.Detail["max_uses"], a.Detail["expires_at"] = kind, maxUses, t.ExpiresAt.UTC().Format(time.RFC3339)
	if args.Reason != "" {
		a.Detail["reason"] = args.Reason
	}
	if err := s.store.CreateToken(ctx, t, a); err != nil {
		if errors.Is(err, store.ErrExists) {
			return CreatedToken{}, fmt.Errorf("a token named %q already exists", t.Name)
		}
		return CreatedToken{}, fmt.Errorf("create token %s: %w", t.Name, err)
	}
	return CreatedToken{Token: tokenView(t, now), Value: value}, nil
}

func (s *Server) revoke(ctx context.Context, now time.Time, args RevokeArgs, a store.Audit) (CountResult, error) {
	if (args.Host == "") == (args.Token == "") {
		return CountResult{}, errors.New("revoke: give exactly one of a host (NAME or HOSTID) or --token")
	}
	if args.Reason == "" {
		return CountResult{}, errors.New("revoke: --reason is required (an RFC 5280 reason, e.g. keyCompromise, superseded, cessationOfOperation)")
	}
	reason, err := ca.ParseReason(args.Reason)
	if err != nil {
		return CountResult{}, err
	}
	a.Detail["reason"] = ca.ReasonName(reason)
	var n int
	if args.Token != "" {
		a.TokenName = args.Token
		n, err = s.store.RevokeByToken(ctx, args.Token, reason, now, a)
		if err != nil {
			return CountResult{}, fmt.Errorf("revoke certificates of token %s: %w", args.Token, err)
		}
	} else {
		h, err := s.resolveHost(ctx, args.Host)
		if err != nil {
			return CountResult{}, err
		}
		a.HostID, a.Name = h.ID, h.Name
		n, err = s.store.RevokeHost(ctx, h.ID, reason, now, a)
		if err != nil {
			return CountResult{}, fmt.Errorf("revoke %s: %w", h.Name, err)
		}
	}
	// Return only once the CRL served lists the revocation (SPEC §6).
	if err := s.crls.Refresh(ctx); err != nil {
		s.crls.Trigger()
		return CountResult{}, fmt.Errorf("revoked %d certificate(s), but the CRL listing them is not served yet (it is retried in the background): %w", n, err)
	}
	return CountResult{Count: n}, nil
}

func (s *Server) caShow() CAInfo {
	c := s.ca.Certificate()
	info := CAInfo{
		Fingerprint: pki.Fingerprint(c), Subject: c.Subject.String(),
		NotBefore: c.NotBefore, NotAfter: c.NotAfter, Certificates: len(s.ca.Bundle()),
		BundlePEM: string(s.ca.BundlePEM()), PrimaryHostID: s.ca.PrimaryHostID(),
	}
	if l := s.crls.Current(); l != nil {
		info.CRLNumber, info.CRLEntries, info.CRLNextUpdate = l.Number.String(), l.Entries, l.NextUpdate
	}
	return info
}

func hostView(h store.Host) Host {
	v := Host{ID: h.ID, Name: h.Name, Known: h.Known, RevokedAt: h.RevokedAt, ReissueUntil: h.ReissueUntil}
	if !h.CreatedAt.IsZero() {
		t := h.CreatedAt
		v.CreatedAt = &t
	}
	return v
}

func tokenView(t store.Token, now time.Time) Token {
	state := "live"
	switch {
	case t.Uses >= t.MaxUses:
		state = "used_up"
	case !now.Before(t.ExpiresAt):
		state = "expired"
	}
	return Token{
		Name: t.Name, Kind: t.Kind, HostID: t.HostID, MaxUses: t.MaxUses, Uses: t.Uses,
		CreatedAt: t.CreatedAt, ExpiresAt: t.ExpiresAt, Reason: t.Reason, State: state,
		BindNames: t.BindNames, BindNets: t.BindNets,
	}
}

func certView(c store.Cert) Cert {
	v := Cert{
		Serial: c.Serial, HostID: c.HostID, Names: c.Names, Kind: string(c.Kind), TokenName: c.TokenName,
		IssuedAt: c.IssuedAt, NotBefore: c.NotBefore, NotAfter: c.NotAfter, RevokedAt: c.RevokedAt,
		RenewedFrom: c.RenewedFrom, UsedAt: c.UsedAt,
	}
	if c.RevokedAt != nil {
		v.RevokeReason = ca.ReasonName(c.RevokeReason)
	}
	return v
}

// auditPage turns store rows into the answer, cut short after the row that
// takes it past maxBytes (always at least one row, so paging progresses).
func auditPage(rows []store.Audit, maxBytes int) ([]AuditEntry, error) {
	out := make([]AuditEntry, 0, len(rows))
	size := 0
	for _, r := range rows {
		e := AuditEntry{
			ID: r.ID, At: r.At, Actor: r.Actor, Source: r.Source, Action: r.Action, Outcome: r.Outcome,
			Code: r.Code, HostID: r.HostID, Name: r.Name, TokenName: r.TokenName, Detail: r.Detail,
		}
		b, err := json.Marshal(e)
		if err != nil {
			return nil, fmt.Errorf("encode audit row %d: %w", r.ID, err)
		}
		out = append(out, e)
		if size += len(b) + 1; size > maxBytes {
			break
		}
	}
	return out, nil
}
