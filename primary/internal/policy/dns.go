package policy

import "github.com/hostcert/hostcert/common/protocol"

// NeedsDNS says whether DNS verification can change the outcome of the
// request described by f (whose Verified is ignored); when it cannot, why
// says so in words for the reason. The primary looks a name up only when it
// can: a flood of made-up names at high costs no DNS query.
func NeedsDNS(f Facts) (need bool, why string) {
	switch {
	case f.Kind == protocol.KindReissue:
		return false, "a reissue does not depend on DNS"
	case f.Kind == protocol.KindRenew:
		return false, "a renewal does not depend on DNS"
	case f.Kind != protocol.KindIssue:
		return false, "the request is refused whatever DNS says"
	case f.NAT:
		return false, "NAT declared"
	case f.Token.Present && State(f) == protocol.TokenValid:
		return false, "the valid token authorises the request whatever DNS says"
	case f.Token.Present:
		return false, "a token that is not valid is refused whatever DNS says"
	case !validLevel(f.Level):
		return false, "the request is refused whatever DNS says"
	case f.Level == protocol.LevelVeryHigh:
		return false, "at very-high every issue needs a token whatever DNS says"
	case f.Level == protocol.LevelHigh && !f.Known:
		return false, "at high a name not in the registry needs a token whatever DNS says"
	}
	return true, ""
}
