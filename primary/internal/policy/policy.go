// Package policy is the primary's deployment decision (SPEC §4): given the
// facts of an enrollment request — security level, request kind, whether the
// name is known and verified, NAT, an open auto-reissue window, the presented
// token — it says whether a token is needed and whether the request is
// granted, with a stable refusal code and one sentence naming every fact.
//
// Decide is pure: the caller gathers the facts (registry, DNS, token store)
// and acts on the answer (issue, count the token use, audit).
package policy

import (
	"fmt"
	"strings"
	"time"

	"github.com/hostcert/hostcert/common/protocol"
	"github.com/hostcert/hostcert/primary/internal/tokens"
)

// TokenFacts is what the primary found out about the presented token before deciding.
type TokenFacts struct {
	Present bool   // a token value was sent
	Found   bool   // its hash matched a stored token
	Kind    string // "standard" | "reissue" (when Found)
	HostID  string // reissue tokens: the host it was made for
	Expired bool
	UsedUp  bool
	// Outside: the token is bound (tokens.Binding) to other host names or
	// source networks than this request's.
	Outside bool
}

// Usable reports whether the token matched a stored token that is alive
// (unexpired, uses left) and bound to nothing that excludes this request.
// Kind and host still decide what it may authorise (State).
func (t TokenFacts) Usable() bool {
	return t.Present && t.Found && !t.Expired && !t.UsedUp && !t.Outside
}

// Guess reports whether the presented value counts as a guess against the
// per-source wrong-token limiter (SPEC §5): only a value that matches no
// stored token does. A dead token, a token of the wrong kind, for another
// host or outside its bindings is a real token in a holder's hands — a host
// that lost a max-uses race, a script run once too often — and charging it
// would lock every host behind the same address (a tunnel, a NAT) out. The
// answer does not tell the cases apart (see Decide and Public).
func Guess(t TokenFacts) bool { return t.Present && !t.Found }

// Facts are the inputs of the decision.
type Facts struct {
	Level       protocol.Level
	Kind        protocol.RequestKind // issue | reissue | renew
	HostID      string               // the host ID the request maps to ("" for issue)
	Known       bool                 // name in the registry
	Verified    bool                 // forward DNS of the name matches the (relayed) source address
	NAT         bool                 // client declared NAT (then Verified is false regardless)
	VerifyNote  string               // optional: verify.Verify's phrase ("dns gives 192.0.2.1, not 192.0.2.9"), quoted in the reason
	DNSSkipped  bool                 // DNS was not consulted because it could not change the decision (see NeedsDNS)
	Window      bool                 // an auto-reissue window is open for HostID
	HostRevoked bool                 // renew only: host or presented cert revoked
	CertExpired bool                 // renew only
	Token       TokenFacts

	// Presented is, for a renewal, the serial of the certificate that
	// authenticated it; Current is the host's current certificate (for a
	// renewal and a reissue): together they decide whether the presented
	// certificate is superseded and whether a certificate is sent again.
	Presented string
	Current   Current
	// CSR is what is wrong with the request's CSR (zero: nothing).
	CSR CSRProblem
}

// Current is the host's current (latest issued) certificate as the decision
// sees it; the zero value is "none".
type Current struct {
	Serial      string // "" when the host has no certificate
	Valid       bool   // unrevoked and unexpired
	SameKey     bool   // issued for the public key of this request's CSR
	RenewedFrom string // the serial it renewed ("" unless a renewal)
	Used        bool   // presented to the primary since it was issued
}

// CSRProblem is a CSR the primary cannot sign: Code is bad_csr or
// name_not_allowed, Why says what is wrong. The zero value is a good CSR.
type CSRProblem struct {
	Code protocol.Code
	Why  string
}

// TokenFound is the TokenFacts of a stored token at now.
func TokenFound(kind, hostID string, uses, maxUses int, expiresAt, now time.Time) TokenFacts {
	return TokenFacts{
		Present: true, Found: true, Kind: kind, HostID: hostID,
		Expired: !now.Before(expiresAt), UsedUp: uses >= maxUses,
	}
}

// State classifies the presented token for this request. A token the store
// knows is checked in this order: a dead one (expired, then used up) and one
// outside its bindings are settled first, so that they answer exactly like
// an unknown value whatever the request (SPEC §5); then kind (a live
// standard token on a reissue is wrong_kind, the one case that earns
// "reissue token required"); then host (a reissue token made for another
// host, or presented on a first issue, is wrong_host).
func State(f Facts) protocol.TokenState {
	t := f.Token
	switch {
	case !t.Present:
		return protocol.TokenNone
	case !t.Found:
		return protocol.TokenInvalid
	case t.Kind != tokens.KindStandard && t.Kind != tokens.KindReissue:
		return protocol.TokenInvalid // a store row of unknown kind authorises nothing
	case t.Expired:
		return protocol.TokenExpired
	case t.UsedUp:
		return protocol.TokenUsedUp
	case t.Outside:
		return protocol.TokenOutside
	case f.Kind == protocol.KindReissue && t.Kind != tokens.KindReissue:
		return protocol.TokenWrongKind
	case t.Kind == tokens.KindReissue && (t.HostID == "" || t.HostID != f.HostID):
		return protocol.TokenWrongHost
	}
	return protocol.TokenValid
}

// NeedsToken is the SPEC §4 table: whether this request needs a token.
// A NAT declaration makes a request unverified whatever DNS says.
func NeedsToken(f Facts) bool {
	verified := f.Verified && !f.NAT
	switch f.Kind {
	case protocol.KindRenew:
		return false
	case protocol.KindReissue:
		return !f.Window
	case protocol.KindIssue:
		switch f.Level {
		case protocol.LevelMedium:
			return !verified
		case protocol.LevelHigh:
			return !(verified && f.Known)
		default: // very-high, and any unknown level: the strictest
			return true
		}
	}
	return true // unknown request kind: never grant without a token
}

// Decide is the deployment decision: Plan without the action.
func Decide(f Facts) protocol.Decision {
	d, _ := Plan(f)
	return d
}

// decide is the SPEC §4 decision for a request that is neither a resend nor
// a superseded renewal (Plan handles those). A granted decision with
// TokenState valid means the caller must count one use of the token (also
// when no token was needed: the token authorised the certificate and is
// recorded with it). Code is set exactly when the request is refused.
func decide(f Facts) protocol.Decision {
	d := base(f)
	d.NeedToken = NeedsToken(f)
	d.TokenState = protocol.TokenNone

	var why string
	switch f.Kind {
	case protocol.KindRenew:
		// Renewal is authorised by the current certificate; a token is
		// neither needed nor looked at (the renew request carries none).
		switch {
		case f.HostRevoked:
			d.Code, why = protocol.CodeHostRevoked, "the host or its certificate is revoked, so it cannot renew and needs a reissue token"
		case f.CertExpired:
			d.Code, why = protocol.CodeCertExpired, "the certificate has expired, so it cannot renew and needs a reissue"
		case superseded(f):
			d.Code, why = protocol.CodeCertSuperseded, supersededWhy(f)
		case f.CSR.Code != "":
			d.Code, why = f.CSR.Code, f.CSR.Why
		default:
			why = "a renewal with a valid current certificate needs no token"
		}
		return finish(d, f, why)
	case protocol.KindIssue, protocol.KindReissue:
	default:
		d.Code, why = protocol.CodeBadRequest, fmt.Sprintf("unknown request kind %q", f.Kind)
		return finish(d, f, why)
	}
	if !validLevel(f.Level) {
		d.Code, why = protocol.CodeInternal, fmt.Sprintf("unknown security level %q", f.Level)
		return finish(d, f, why)
	}

	d.TokenState = State(f)
	need := needWhy(f)
	switch d.TokenState {
	case protocol.TokenValid:
		if d.NeedToken {
			why = need + ", and the token is valid"
		} else {
			why = need + "; the token presented is valid and is counted"
		}
	case protocol.TokenNone:
		switch {
		case !d.NeedToken:
			why = need
		case f.Kind == protocol.KindReissue:
			d.Code, why = protocol.CodeReissueTokenRequired, need+", and none was presented"
		default:
			d.Code, why = protocol.CodeTokenRequired, need+", and none was presented"
		}
	case protocol.TokenWrongKind:
		d.Code, why = protocol.CodeReissueTokenRequired, "reissue token required: a standard token cannot authorise a reissue"
	case protocol.TokenWrongHost:
		if f.Kind == protocol.KindIssue {
			why = "the token is a reissue token, which works only for the existing host it was made for"
		} else {
			why = "the reissue token was made for another host"
		}
		d.Code = protocol.CodeTokenInvalid
	case protocol.TokenExpired:
		d.Code, why = protocol.CodeTokenInvalid, "the token has expired"
	case protocol.TokenUsedUp:
		d.Code, why = protocol.CodeTokenInvalid, "the token has no uses left"
	case protocol.TokenOutside:
		d.Code, why = protocol.CodeTokenInvalid, "the token is bound to other host names or source networks"
	default: // invalid
		d.Code, why = protocol.CodeTokenInvalid, "the token matches no token on this primary"
	}
	if d.Code == protocol.CodeTokenInvalid && !d.NeedToken {
		why += " (a bad token is refused even where none is needed)"
	}
	return finish(d, f, why)
}

// base is a decision carrying the facts, before any outcome.
func base(f Facts) protocol.Decision {
	d := protocol.Decision{
		Kind:       f.Kind,
		Level:      f.Level,
		Known:      f.Known,
		Verified:   f.Verified && !f.NAT,
		DNSChecked: !f.NAT && !f.DNSSkipped,
		NAT:        f.NAT,
		Window:     f.Window,
		TokenState: protocol.TokenNone,
	}
	switch {
	case f.NAT:
		d.DNS = "not checked: NAT declared"
	case f.DNSSkipped:
		_, why := NeedsDNS(f)
		d.DNS = "not checked: " + why
	default:
		d.DNS = strings.TrimRight(strings.TrimSpace(f.VerifyNote), ".")
	}
	return d
}

// needWhy says in words why the table needs a token or not.
func needWhy(f Facts) string {
	verified := f.Verified && !f.NAT
	if f.Kind == protocol.KindReissue {
		if f.Window {
			return "an auto-reissue window is open for this host, so no token is needed"
		}
		return "a reissue needs a reissue token for that host"
	}
	switch f.Level {
	case protocol.LevelVeryHigh:
		return "at very-high every issue needs a token"
	case protocol.LevelHigh:
		switch {
		case verified && f.Known:
			return "at high a known and verified host needs no token"
		case !f.Known && (verified || f.DNSSkipped):
			return "at high a host not in the registry needs a token"
		default:
			return "at high an unverified host needs a token"
		}
	default:
		if verified {
			return "at medium a verified host needs no token"
		}
		return "at medium an unverified host needs a token"
	}
}

// finish fills Granted and the Reason sentence.
func finish(d protocol.Decision, f Facts, why string) protocol.Decision {
	d.Granted = d.Code == ""
	outcome := "granted"
	if !d.Granted {
		outcome = "refused (" + string(d.Code) + ")"
	}
	d.Reason = fmt.Sprintf("%s: %s; %s.", outcome, facts(d, f.HostRevoked, f.CertExpired), why)
	return d
}

// facts renders the facts every reason names: level, known, verified (with
// what DNS answered, or why it was not asked), NAT, window and token state.
func facts(d protocol.Decision, revoked, expired bool) string {
	var b strings.Builder
	fmt.Fprintf(&b, "%s at level %s, ", kindName(d.Kind), levelName(d.Level))
	b.WriteString(yesNo(d.Known, "known", "not known"))
	b.WriteString(", ")
	switch {
	case d.NAT:
		b.WriteString("not verified (NAT declared)")
	case !d.DNSChecked:
		b.WriteString("DNS not checked (" + strings.TrimPrefix(d.DNS, "not checked: ") + "), no NAT")
	default:
		b.WriteString(yesNo(d.Verified, "verified", "not verified"))
		if d.DNS != "" {
			b.WriteString(" (" + d.DNS + ")")
		}
		b.WriteString(", no NAT")
	}
	if d.Kind == protocol.KindReissue {
		b.WriteString(yesNo(d.Window, ", auto-reissue window open", ", no auto-reissue window"))
	}
	if d.Kind == protocol.KindRenew {
		b.WriteString(yesNo(revoked, ", revoked", ", not revoked"))
		b.WriteString(yesNo(expired, ", certificate expired", ", certificate unexpired"))
	}
	b.WriteString(", token ")
	b.WriteString(tokenName(d.TokenState))
	return b.String()
}

func kindName(k protocol.RequestKind) string {
	if k == "" {
		return "request"
	}
	return string(k)
}

func levelName(l protocol.Level) string {
	if l == "" {
		return "(unset)"
	}
	return string(l)
}

func tokenName(s protocol.TokenState) string {
	switch s {
	case protocol.TokenNone, "":
		return "none"
	case protocol.TokenUsedUp:
		return "used up"
	case protocol.TokenWrongKind:
		return "standard (wrong kind)"
	case protocol.TokenWrongHost:
		return "for another host"
	case protocol.TokenOutside:
		return "bound to other names or networks"
	}
	return string(s)
}

func yesNo(b bool, yes, no string) string {
	if b {
		return yes
	}
	return no
}

func validLevel(l protocol.Level) bool {
	_, err := protocol.ParseLevel(string(l))
	return err == nil
}
