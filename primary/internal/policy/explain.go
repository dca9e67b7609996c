package policy

import (
	"fmt"
	"strings"

	"github.com/hostcert/hostcert/common/protocol"
)

// Public returns the decision as it may be sent to the requesting client:
// for token_invalid the token state is the generic "invalid" and the reason
// does not say whether the token exists, expired, is used up or belongs to
// another host (SPEC §5). The full decision belongs in the audit log only.
func Public(d protocol.Decision) protocol.Decision {
	if d.Code != protocol.CodeTokenInvalid {
		return d
	}
	d.TokenState = protocol.TokenInvalid
	d.Reason = fmt.Sprintf("refused (%s): %s; %s.", d.Code, facts(d, false, false), invalidMessage)
	return d
}

const invalidMessage = "the token is not valid for this request"

// Message is the one-line public sentence for a refusal (protocol.Error.Message);
// "granted" for a granted decision. Like Public it never tells the kinds of
// token_invalid apart.
func Message(d protocol.Decision) string {
	f := Facts{Level: d.Level, Kind: d.Kind, Known: d.Known, Verified: d.Verified, NAT: d.NAT, Window: d.Window, DNSSkipped: !d.DNSChecked}
	switch d.Code {
	case "":
		return "granted"
	case protocol.CodeTokenRequired:
		return "token required: " + needWhy(f)
	case protocol.CodeReissueTokenRequired:
		if d.TokenState == protocol.TokenWrongKind {
			return "reissue token required: a standard token cannot authorise a reissue"
		}
		return "reissue token required: this host already has a host ID; ask the admin for a reissue token or an auto-reissue window"
	case protocol.CodeTokenInvalid:
		return invalidMessage
	case protocol.CodeHostRevoked:
		return "this host is revoked and cannot renew; it needs a reissue token"
	case protocol.CodeCertExpired:
		return "the certificate has expired and cannot be renewed; the host needs a reissue"
	case protocol.CodeCertSuperseded:
		return "this certificate is superseded: only the host's current (latest issued) certificate renews; the host needs a reissue"
	}
	return d.Reason
}

// VerifiedState is the audit log's "verified": yes, no, or not_checked when
// DNS was not consulted (a reissue, a renewal, or an issue whose outcome DNS
// could not change). A declared NAT is "no": such a request is never verified.
func VerifiedState(d protocol.Decision) string {
	switch {
	case d.Verified:
		return "yes"
	case d.NAT || d.DNSChecked:
		return "no"
	}
	return "not_checked"
}

// Explain renders a decision for an admin (hostcert-primary explain): one
// fact per line, then the answer to "would this host need a token?".
func Explain(d protocol.Decision) string {
	var b strings.Builder
	row := func(k, v string) { fmt.Fprintf(&b, "%-21s %s\n", k+":", v) }
	row("request", kindName(d.Kind))
	row("level", levelName(d.Level))
	row("known", yesNo(d.Known, "yes", "no"))
	row("verified", VerifiedState(d))
	if d.DNS != "" {
		row("dns", d.DNS)
	}
	row("nat declared", yesNo(d.NAT, "yes", "no"))
	if d.Kind == protocol.KindReissue {
		row("auto-reissue window", yesNo(d.Window, "open", "none"))
	}
	row("token presented", tokenName(d.TokenState))
	row("needs a token", yesNo(d.NeedToken, "yes", "no"))
	if d.Granted {
		row("result", "granted")
	} else {
		row("result", "refused ("+string(d.Code)+")")
	}
	row("reason", d.Reason)
	return b.String()
}
