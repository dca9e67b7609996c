package policy

import (
	"testing"

	"github.com/hostcert/hostcert/common/protocol"
)

var (
	outsideToken     = TokenFacts{Present: true, Found: true, Kind: "standard", Outside: true}
	usedUpOutside    = TokenFacts{Present: true, Found: true, Kind: "standard", UsedUp: true, Outside: true}
	expiredReissueA  = TokenFacts{Present: true, Found: true, Kind: "reissue", HostID: hostA, Expired: true}
	usedUpReissueB   = TokenFacts{Present: true, Found: true, Kind: "reissue", HostID: hostB, UsedUp: true}
	outsideReissueA  = TokenFacts{Present: true, Found: true, Kind: "reissue", HostID: hostA, Outside: true}
	unknownKindToken = TokenFacts{Present: true, Found: true, Kind: "admin"}
)

// TestStateDeadBeforeKind: a dead token or one outside its bindings is
// settled before its kind and host are looked at, so that on a reissue only
// a live standard token earns wrong_kind (reissue_token_required) and every
// other real token answers like an unknown value (SPEC §5).
func TestStateDeadBeforeKind(t *testing.T) {
	for _, tc := range []struct {
		desc string
		f    Facts
		want protocol.TokenState
		code protocol.Code
	}{
		{"reissue, live standard", Facts{Level: hi, Kind: reissue, HostID: hostA, Token: stdToken}, protocol.TokenWrongKind, protocol.CodeReissueTokenRequired},
		{"reissue, used-up standard", Facts{Level: hi, Kind: reissue, HostID: hostA, Token: usedUpToken}, protocol.TokenUsedUp, protocol.CodeTokenInvalid},
		{"reissue, expired standard", Facts{Level: vh, Kind: reissue, HostID: hostA, Token: expiredToken}, protocol.TokenExpired, protocol.CodeTokenInvalid},
		{"reissue, expired standard in a window", Facts{Level: med, Kind: reissue, HostID: hostA, Window: true, Token: expiredToken}, protocol.TokenExpired, protocol.CodeTokenInvalid},
		{"reissue, unknown", Facts{Level: hi, Kind: reissue, HostID: hostA, Token: unknownToken}, protocol.TokenInvalid, protocol.CodeTokenInvalid},
		{"reissue, live standard outside its bindings", Facts{Level: hi, Kind: reissue, HostID: hostA, Token: outsideToken}, protocol.TokenOutside, protocol.CodeTokenInvalid},
		{"reissue, used-up and outside", Facts{Level: hi, Kind: reissue, HostID: hostA, Token: usedUpOutside}, protocol.TokenUsedUp, protocol.CodeTokenInvalid},
		{"reissue, live reissue token for another host", Facts{Level: hi, Kind: reissue, HostID: hostA, Token: reissueTokenB}, protocol.TokenWrongHost, protocol.CodeTokenInvalid},
		{"reissue, used-up reissue token for another host", Facts{Level: hi, Kind: reissue, HostID: hostA, Token: usedUpReissueB}, protocol.TokenUsedUp, protocol.CodeTokenInvalid},
		{"reissue, expired reissue token for this host", Facts{Level: hi, Kind: reissue, HostID: hostA, Token: expiredReissueA}, protocol.TokenExpired, protocol.CodeTokenInvalid},
		{"reissue, own reissue token outside its bindings", Facts{Level: hi, Kind: reissue, HostID: hostA, Token: outsideReissueA}, protocol.TokenOutside, protocol.CodeTokenInvalid},
		{"reissue, own reissue token", Facts{Level: hi, Kind: reissue, HostID: hostA, Token: reissueTokenA}, protocol.TokenValid, ""},
		{"reissue, token row of unknown kind", Facts{Level: hi, Kind: reissue, HostID: hostA, Token: unknownKindToken}, protocol.TokenInvalid, protocol.CodeTokenInvalid},

		{"issue, live standard outside its bindings", Facts{Level: vh, Kind: issue, Token: outsideToken}, protocol.TokenOutside, protocol.CodeTokenInvalid},
		{"issue, outside its bindings where none is needed", Facts{Level: med, Kind: issue, Verified: true, Token: outsideToken}, protocol.TokenOutside, protocol.CodeTokenInvalid},
		{"issue, expired reissue token", Facts{Level: hi, Kind: issue, Token: expiredReissueA}, protocol.TokenExpired, protocol.CodeTokenInvalid},
		{"issue, live reissue token", Facts{Level: hi, Kind: issue, Token: reissueTokenA}, protocol.TokenWrongHost, protocol.CodeTokenInvalid},
	} {
		d := Decide(tc.f)
		if d.TokenState != tc.want || d.Code != tc.code || d.Granted != (tc.code == "") {
			t.Errorf("%s: Decide = state %s code %q granted %v, want %s %q", tc.desc, d.TokenState, d.Code, d.Granted, tc.want, tc.code)
		}
		if got := State(tc.f); got != tc.want {
			t.Errorf("%s: State = %s, want %s", tc.desc, got, tc.want)
		}
	}
}

// TestPublicAnswerSameForEveryBadToken: on an issue and on a reissue, an
// unknown value, a used-up or expired token (of either kind), a reissue
// token for another host and a token outside its bindings give the same
// public answer — code, message and decision — as each other.
func TestPublicAnswerSameForEveryBadToken(t *testing.T) {
	bad := []struct {
		desc string
		tok  TokenFacts
	}{
		{"unknown", unknownToken},
		{"used-up standard", usedUpToken},
		{"expired standard", expiredToken},
		{"outside its bindings", outsideToken},
		{"used-up and outside", usedUpOutside},
		{"live reissue token for another host", reissueTokenB},
		{"used-up reissue token for another host", usedUpReissueB},
		{"expired reissue token for this host", expiredReissueA},
	}
	for _, base := range []Facts{
		{Level: hi, Kind: issue, Known: true},
		{Level: med, Kind: issue, Verified: true},
		{Level: vh, Kind: reissue, HostID: hostA, Known: true},
		{Level: med, Kind: reissue, HostID: hostA, Window: true},
	} {
		f := base
		f.Token = unknownToken
		ref := Decide(f)
		refPublic, refMsg := Public(ref), Message(ref)
		for _, b := range bad {
			f.Token = b.tok
			d := Decide(f)
			if p, m := Public(d), Message(d); p != refPublic || m != refMsg || d.Code != protocol.CodeTokenInvalid {
				t.Errorf("%s %s with a %s token: public %+v %q, want the unknown value's %+v %q",
					base.Level, base.Kind, b.desc, p, m, refPublic, refMsg)
			}
		}
	}
}

func TestGuess(t *testing.T) {
	for _, tc := range []struct {
		desc string
		tok  TokenFacts
		want bool
	}{
		{"no token", noToken, false},
		{"unknown value", unknownToken, true},
		{"live standard", stdToken, false},
		{"used up", usedUpToken, false},
		{"expired", expiredToken, false},
		{"outside its bindings", outsideToken, false},
		{"reissue token for another host", reissueTokenB, false},
		{"row of unknown kind", unknownKindToken, false},
	} {
		if got := Guess(tc.tok); got != tc.want {
			t.Errorf("Guess(%s) = %v, want %v", tc.desc, got, tc.want)
		}
	}
}

func TestUsable(t *testing.T) {
	for _, tc := range []struct {
		desc string
		tok  TokenFacts
		want bool
	}{
		{"no token", noToken, false},
		{"unknown value", unknownToken, false},
		{"live standard", stdToken, true},
		{"live reissue", reissueTokenA, true},
		{"used up", usedUpToken, false},
		{"expired", expiredToken, false},
		{"outside its bindings", outsideToken, false},
	} {
		if got := tc.tok.Usable(); got != tc.want {
			t.Errorf("%s: Usable() = %v, want %v", tc.desc, got, tc.want)
		}
	}
}
