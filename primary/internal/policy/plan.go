package policy

import (
	"fmt"

	"github.com/hostcert/hostcert/common/protocol"
)

// Action is what the caller does with a decision.
type Action int

// The actions of Plan.
const (
	Refuse Action = iota // refuse with the decision's code
	Issue                // sign and commit a new certificate
	Resend               // send the host's current certificate again; nothing is issued
)

func (a Action) String() string {
	switch a {
	case Issue:
		return "issue"
	case Resend:
		return "resend"
	}
	return "refuse"
}

// Plan is the decision and what to do with it. On top of the SPEC §4 table
// (decide) it answers the two retried requests whose answer was lost:
//
//   - a reissue whose CSR is for the key of the host's current, valid
//     certificate gets that certificate again (the CSR's signature proves
//     the requester holds the key);
//   - a renewal presenting the certificate that the host's current one
//     renewed, when the current one was never used, is valid and is for the
//     CSR's key, gets the current one again.
//
// Any other renewal presenting a certificate that is not the host's current
// one is refused with cert_superseded. Plan is pure.
func Plan(f Facts) (protocol.Decision, Action) {
	switch {
	case f.Kind == protocol.KindReissue && f.Current.Serial != "" && f.Current.Valid && f.Current.SameKey && !f.HostRevoked:
		return resent(f, "the host's current certificate was issued for this very key (a retried request), so it is sent again; nothing new is issued"), Resend
	case f.Kind == protocol.KindRenew && !f.HostRevoked && !f.CertExpired && superseded(f) && lostRenewal(f):
		return resent(f, fmt.Sprintf("the host's current certificate %s renewed this one, was never used and is for this very key (a renewal whose answer was lost), so it is sent again; nothing new is issued", f.Current.Serial)), Resend
	}
	d := decide(f)
	if !d.Granted {
		return d, Refuse
	}
	return d, Issue
}

// superseded: a renewal presenting a certificate that is not the host's current one.
func superseded(f Facts) bool {
	return f.Kind == protocol.KindRenew && f.Presented != f.Current.Serial
}

// lostRenewal: the current certificate renewed the presented one and its
// answer may never have arrived.
func lostRenewal(f Facts) bool {
	c := f.Current
	return c.Serial != "" && c.RenewedFrom == f.Presented && !c.Used && c.Valid && c.SameKey
}

func supersededWhy(f Facts) string {
	c := f.Current
	switch {
	case c.Serial == "":
		return "the host has no current certificate, so this one cannot renew"
	case c.RenewedFrom != f.Presented:
		return fmt.Sprintf("the host's current certificate is %s, so this older one cannot renew and the host needs a reissue", c.Serial)
	case c.Used:
		return fmt.Sprintf("this certificate was already renewed into %s, which has been used since, so it cannot renew again", c.Serial)
	case !c.Valid:
		return fmt.Sprintf("this certificate was already renewed into %s, which is revoked or expired, so it cannot renew again", c.Serial)
	default:
		return fmt.Sprintf("this certificate was already renewed into %s for another key, so it cannot renew again (a retry must use the key of that renewal)", c.Serial)
	}
}

// resent is the granted decision of a Resend.
func resent(f Facts, why string) protocol.Decision {
	d := base(f)
	d.Code = ""
	return finish(d, f, why)
}

// Race is what a commit found changed since the decision.
type Race int

// The races of a commit.
const (
	RaceTokenUsedUp    Race = iota + 1 // another request took the token's last use
	RaceTokenExpired                   // the token expired meanwhile
	RaceTokenGone                      // the token was deleted or changed meanwhile
	RaceHostRevoked                    // renew: the host was revoked meanwhile
	RaceSuperseded                     // renew: a concurrent renewal or a reissue committed first
	RaceNameConflict                   // another host claimed a name of this request first
	RaceNameWithdrawn                  // a name of the certificate was removed from the host meanwhile
	RaceTooManyPending                 // concurrent requests of the host left it too many pending names
)

// Lost turns a granted decision whose commit lost a race into the refusal
// that names it. The signed certificate was discarded; nothing was written.
func Lost(f Facts, d protocol.Decision, r Race) protocol.Decision {
	d.Granted, d.Code = false, protocol.CodeTokenInvalid
	var why string
	switch r {
	case RaceTokenUsedUp:
		d.TokenState, why = protocol.TokenUsedUp, "the token's last use went to a concurrent request; this certificate was discarded"
	case RaceTokenExpired:
		d.TokenState, why = protocol.TokenExpired, "the token expired before the certificate was committed; it was discarded"
	case RaceTokenGone:
		d.TokenState, why = protocol.TokenInvalid, "the token was deleted or changed before the certificate was committed; it was discarded"
	case RaceHostRevoked:
		d.Code, why = protocol.CodeHostRevoked, "the host was revoked while this renewal was decided; the certificate was discarded"
	case RaceSuperseded:
		d.Code, why = protocol.CodeCertSuperseded, "another renewal or a reissue of this host was committed first, so this certificate is no longer the current one; the new certificate was discarded"
	case RaceNameConflict:
		d.Code, why = protocol.CodeNameConflict, "another host claimed a name this request asks for first; a name belongs to one host ID only; the certificate was discarded"
	case RaceTooManyPending:
		d.Code, why = protocol.CodeTooManyPendingNames, "the host's other requests left it too many names waiting for approval; the certificate was discarded: ask the primary's admin to decide them"
	case RaceNameWithdrawn:
		d.Code, why = protocol.CodeNameNotAllowed, "a name of this certificate was removed from the host while the request was decided; the certificate was discarded, retry"
	default:
		d.Code, why = protocol.CodeInternal, fmt.Sprintf("unknown commit race %d", r)
	}
	return finish(d, f, why)
}
