package enroll

import (
	"context"
	"errors"
	"net/netip"
	"time"

	"github.com/hostcert/hostcert/common/protocol"
	"github.com/hostcert/hostcert/primary/internal/policy"
	"github.com/hostcert/hostcert/primary/internal/store"
)

// ActorAPI is the audit actor of every decision made for an API request.
const ActorAPI = "api"

// record is what the audit row of one request says about it so far.
type record struct {
	action string // issue, reissue, renew, or "enroll" before the kind is known
	source netip.Addr
	name   string
	hostID string
	token  string // token NAME (never its value)
}

// auditRow builds the audit row of a decision. dec may be nil (refused
// before deciding).
func (s *Service) auditRow(now time.Time, rec record, dec *protocol.Decision, outcome string, code protocol.Code) store.Audit {
	src := ""
	if rec.source.IsValid() {
		src = rec.source.String()
	}
	a := store.Audit{
		At: now, Actor: ActorAPI, Source: src, Action: rec.action, Outcome: outcome, Code: string(code),
		HostID: rec.hostID, Name: rec.name, TokenName: rec.token,
		Detail: map[string]any{},
	}
	if dec != nil {
		a.Detail["kind"] = string(dec.Kind)
		a.Detail["level"] = string(dec.Level)
		a.Detail["known"] = dec.Known
		a.Detail["verified"] = policy.VerifiedState(*dec)
		if dec.DNS != "" {
			a.Detail["dns"] = dec.DNS
		}
		a.Detail["nat"] = dec.NAT
		a.Detail["window"] = dec.Window
		a.Detail["need_token"] = dec.NeedToken
		a.Detail["token_state"] = string(dec.TokenState)
		a.Detail["reason"] = dec.Reason
	}
	return a
}

// refuse audits and counts a refusal and returns it as a *protocol.Error.
func (s *Service) refuse(ctx context.Context, now time.Time, rec record, dec *protocol.Decision, code protocol.Code, msg string) error {
	a := s.auditRow(now, rec, dec, "refused", code)
	if dec == nil {
		a.Detail["reason"] = msg
	}
	if err := s.cfg.Journal.AppendAudit(context.WithoutCancel(ctx), a); err != nil {
		s.cfg.Log.Error().Err(err).Str("code", string(code)).Msg("writing audit row of a refusal")
	}
	s.count(rec.action, false, code)
	perr := &protocol.Error{Code: code, Message: msg}
	if dec != nil {
		d := *dec
		d.Granted, d.Code = false, code
		// The audit row names the token state (expired, used up, unknown);
		// the client only learns that the token is not valid.
		d = policy.Public(d)
		perr.Decision = &d
	}
	return perr
}

// internal audits an internal failure (outcome "error") and returns err.
// A store that cannot be reached cannot take the audit row either: trying
// would only hold the answer (503 store_unavailable) back by the store's
// timeout, so the failure is logged instead; nothing was decided.
func (s *Service) internal(ctx context.Context, now time.Time, rec record, err error) error {
	if errors.Is(err, store.ErrUnavailable) {
		s.cfg.Log.Warn().Err(err).Str("action", rec.action).Str("name", rec.name).Str("source", rec.source.String()).
			Msg("store unavailable: request refused, not audited")
		s.count(rec.action, false, protocol.CodeStoreUnavailable)
		return err
	}
	a := s.auditRow(now, rec, nil, "error", protocol.CodeInternal)
	a.Detail["error"] = err.Error()
	if aerr := s.cfg.Journal.AppendAudit(context.WithoutCancel(ctx), a); aerr != nil {
		s.cfg.Log.Error().Err(aerr).Msg("writing audit row of an internal error")
	}
	s.count(rec.action, false, protocol.CodeInternal)
	return err
}

func (s *Service) count(kind string, granted bool, code protocol.Code) {
	if s.cfg.Counter != nil {
		s.cfg.Counter.Decision(kind, granted, code)
	}
}
