package policy

import (
	"strings"
	"testing"

	"github.com/hostcert/hostcert/common/protocol"
)

const (
	vh  = protocol.LevelVeryHigh
	hi  = protocol.LevelHigh
	med = protocol.LevelMedium

	issue   = protocol.KindIssue
	reissue = protocol.KindReissue
	renew   = protocol.KindRenew

	hostA = "6f1c3f6e-0000-4000-8000-00000000000a"
	hostB = "6f1c3f6e-0000-4000-8000-00000000000b"
)

var (
	noToken       = TokenFacts{}
	stdToken      = TokenFacts{Present: true, Found: true, Kind: "standard"}
	reissueTokenA = TokenFacts{Present: true, Found: true, Kind: "reissue", HostID: hostA}
	reissueTokenB = TokenFacts{Present: true, Found: true, Kind: "reissue", HostID: hostB}
	unknownToken  = TokenFacts{Present: true}
	expiredToken  = TokenFacts{Present: true, Found: true, Kind: "standard", Expired: true}
	usedUpToken   = TokenFacts{Present: true, Found: true, Kind: "standard", UsedUp: true}
)

type want struct {
	granted bool
	need    bool
	state   protocol.TokenState
	code    protocol.Code
}

var (
	grantedNoToken = want{granted: true, need: false, state: protocol.TokenNone}
	needsToken     = want{granted: false, need: true, state: protocol.TokenNone, code: protocol.CodeTokenRequired}
	grantedToken   = want{granted: true, need: true, state: protocol.TokenValid}
	needsReissue   = want{granted: false, need: true, state: protocol.TokenNone, code: protocol.CodeReissueTokenRequired}
)

func TestDecide(t *testing.T) {
	for _, tc := range []struct {
		name string
		f    Facts
		want want
	}{
		// SPEC §4 row 1: issue, known and verified — token / no token / no token.
		{"issue known verified very-high", Facts{Level: vh, Kind: issue, Known: true, Verified: true}, needsToken},
		{"issue known verified very-high with token", Facts{Level: vh, Kind: issue, Known: true, Verified: true, Token: stdToken}, grantedToken},
		{"issue known verified high", Facts{Level: hi, Kind: issue, Known: true, Verified: true}, grantedNoToken},
		{"issue known verified medium", Facts{Level: med, Kind: issue, Known: true, Verified: true}, grantedNoToken},

		// Row 2: issue, verified, not known — token / token / no token.
		{"issue verified unknown very-high", Facts{Level: vh, Kind: issue, Verified: true}, needsToken},
		{"issue verified unknown very-high with token", Facts{Level: vh, Kind: issue, Verified: true, Token: stdToken}, grantedToken},
		{"issue verified unknown high", Facts{Level: hi, Kind: issue, Verified: true}, needsToken},
		{"issue verified unknown high with token", Facts{Level: hi, Kind: issue, Verified: true, Token: stdToken}, grantedToken},
		{"issue verified unknown medium", Facts{Level: med, Kind: issue, Verified: true}, grantedNoToken},

		// Row 3: issue, not verified (DNS mismatch or no relayed address) — token at every level.
		{"issue unverified known very-high", Facts{Level: vh, Kind: issue, Known: true}, needsToken},
		{"issue unverified known high", Facts{Level: hi, Kind: issue, Known: true}, needsToken},
		{"issue unverified known medium", Facts{Level: med, Kind: issue, Known: true}, needsToken},
		{"issue unverified unknown medium", Facts{Level: med, Kind: issue}, needsToken},
		{"issue unverified known very-high with token", Facts{Level: vh, Kind: issue, Known: true, Token: stdToken}, grantedToken},
		{"issue unverified known high with token", Facts{Level: hi, Kind: issue, Known: true, Token: stdToken}, grantedToken},
		{"issue unverified known medium with token", Facts{Level: med, Kind: issue, Known: true, Token: stdToken}, grantedToken},
		// Row 3 with NAT declared: never verified, even when DNS would match.
		{"issue NAT known very-high", Facts{Level: vh, Kind: issue, Known: true, Verified: true, NAT: true}, needsToken},
		{"issue NAT known high", Facts{Level: hi, Kind: issue, Known: true, Verified: true, NAT: true}, needsToken},
		{"issue NAT known medium", Facts{Level: med, Kind: issue, Known: true, Verified: true, NAT: true}, needsToken},
		{"issue NAT medium with token", Facts{Level: med, Kind: issue, NAT: true, Token: stdToken}, grantedToken},

		// Row 4: reissue — reissue token for that host at every level.
		{"reissue very-high", Facts{Level: vh, Kind: reissue, HostID: hostA, Known: true, Verified: true}, needsReissue},
		{"reissue high", Facts{Level: hi, Kind: reissue, HostID: hostA, Known: true, Verified: true}, needsReissue},
		{"reissue medium", Facts{Level: med, Kind: reissue, HostID: hostA, Known: true, Verified: true}, needsReissue},
		{"reissue very-high reissue token", Facts{Level: vh, Kind: reissue, HostID: hostA, Token: reissueTokenA}, grantedToken},
		{"reissue high reissue token", Facts{Level: hi, Kind: reissue, HostID: hostA, Token: reissueTokenA}, grantedToken},
		{"reissue medium reissue token", Facts{Level: med, Kind: reissue, HostID: hostA, NAT: true, Token: reissueTokenA}, grantedToken},

		// Row 5: reissue inside an auto-reissue window — no token at every level.
		{"reissue window very-high", Facts{Level: vh, Kind: reissue, HostID: hostA, Window: true}, grantedNoToken},
		{"reissue window high", Facts{Level: hi, Kind: reissue, HostID: hostA, Window: true}, grantedNoToken},
		{"reissue window medium", Facts{Level: med, Kind: reissue, HostID: hostA, Window: true, NAT: true}, grantedNoToken},

		// Row 6: renew with a valid current certificate — no token at every level.
		{"renew very-high", Facts{Level: vh, Kind: renew, HostID: hostA}, grantedNoToken},
		{"renew high", Facts{Level: hi, Kind: renew, HostID: hostA, NAT: true}, grantedNoToken},
		{"renew medium", Facts{Level: med, Kind: renew, HostID: hostA}, grantedNoToken},
		{"renew revoked", Facts{Level: hi, Kind: renew, HostID: hostA, HostRevoked: true},
			want{need: false, state: protocol.TokenNone, code: protocol.CodeHostRevoked}},
		{"renew expired", Facts{Level: med, Kind: renew, HostID: hostA, CertExpired: true},
			want{need: false, state: protocol.TokenNone, code: protocol.CodeCertExpired}},
		{"renew revoked and expired", Facts{Level: vh, Kind: renew, HostID: hostA, HostRevoked: true, CertExpired: true},
			want{need: false, state: protocol.TokenNone, code: protocol.CodeHostRevoked}},

		// Tokens of the wrong kind or for the wrong host.
		{"reissue with standard token", Facts{Level: hi, Kind: reissue, HostID: hostA, Token: stdToken},
			want{need: true, state: protocol.TokenWrongKind, code: protocol.CodeReissueTokenRequired}},
		{"reissue with standard token at medium", Facts{Level: med, Kind: reissue, HostID: hostA, Known: true, Verified: true, Token: stdToken},
			want{need: true, state: protocol.TokenWrongKind, code: protocol.CodeReissueTokenRequired}},
		{"reissue with standard token in window", Facts{Level: hi, Kind: reissue, HostID: hostA, Window: true, Token: stdToken},
			want{need: false, state: protocol.TokenWrongKind, code: protocol.CodeReissueTokenRequired}},
		{"reissue with token for another host", Facts{Level: hi, Kind: reissue, HostID: hostA, Token: reissueTokenB},
			want{need: true, state: protocol.TokenWrongHost, code: protocol.CodeTokenInvalid}},
		{"reissue with token for another host in window", Facts{Level: med, Kind: reissue, HostID: hostA, Window: true, Token: reissueTokenB},
			want{need: false, state: protocol.TokenWrongHost, code: protocol.CodeTokenInvalid}},
		{"reissue with reissue token lacking a host", Facts{Level: hi, Kind: reissue, HostID: "", Token: TokenFacts{Present: true, Found: true, Kind: "reissue"}},
			want{need: true, state: protocol.TokenWrongHost, code: protocol.CodeTokenInvalid}},
		{"issue with reissue token", Facts{Level: vh, Kind: issue, Known: true, Verified: true, Token: reissueTokenA},
			want{need: true, state: protocol.TokenWrongHost, code: protocol.CodeTokenInvalid}},

		// Dead and unknown tokens.
		{"issue expired token", Facts{Level: vh, Kind: issue, Token: expiredToken},
			want{need: true, state: protocol.TokenExpired, code: protocol.CodeTokenInvalid}},
		{"issue used-up token", Facts{Level: hi, Kind: issue, Token: usedUpToken},
			want{need: true, state: protocol.TokenUsedUp, code: protocol.CodeTokenInvalid}},
		{"issue unknown token", Facts{Level: hi, Kind: issue, Token: unknownToken},
			want{need: true, state: protocol.TokenInvalid, code: protocol.CodeTokenInvalid}},
		{"reissue expired reissue token", Facts{Level: hi, Kind: reissue, HostID: hostA,
			Token: TokenFacts{Present: true, Found: true, Kind: "reissue", HostID: hostA, Expired: true}},
			want{need: true, state: protocol.TokenExpired, code: protocol.CodeTokenInvalid}},
		{"reissue used-up reissue token", Facts{Level: med, Kind: reissue, HostID: hostA,
			Token: TokenFacts{Present: true, Found: true, Kind: "reissue", HostID: hostA, UsedUp: true}},
			want{need: true, state: protocol.TokenUsedUp, code: protocol.CodeTokenInvalid}},
		{"reissue unknown token", Facts{Level: med, Kind: reissue, HostID: hostA, Token: unknownToken},
			want{need: true, state: protocol.TokenInvalid, code: protocol.CodeTokenInvalid}},
		{"issue token of unknown kind", Facts{Level: hi, Kind: issue, Token: TokenFacts{Present: true, Found: true, Kind: "admin"}},
			want{need: true, state: protocol.TokenInvalid, code: protocol.CodeTokenInvalid}},

		// NAT declared makes a token necessary even at medium.
		{"issue NAT medium no token", Facts{Level: med, Kind: issue, NAT: true}, needsToken},

		// A token presented where none is needed.
		{"valid token where none needed", Facts{Level: med, Kind: issue, Verified: true, Token: stdToken},
			want{granted: true, need: false, state: protocol.TokenValid}},
		{"valid reissue token in window", Facts{Level: hi, Kind: reissue, HostID: hostA, Window: true, Token: reissueTokenA},
			want{granted: true, need: false, state: protocol.TokenValid}},
		{"unknown token where none needed", Facts{Level: hi, Kind: issue, Known: true, Verified: true, Token: unknownToken},
			want{need: false, state: protocol.TokenInvalid, code: protocol.CodeTokenInvalid}},
		{"expired token where none needed", Facts{Level: med, Kind: issue, Verified: true, Token: expiredToken},
			want{need: false, state: protocol.TokenExpired, code: protocol.CodeTokenInvalid}},
		{"used-up token where none needed", Facts{Level: med, Kind: issue, Verified: true, Token: usedUpToken},
			want{need: false, state: protocol.TokenUsedUp, code: protocol.CodeTokenInvalid}},
		{"renew ignores a token", Facts{Level: hi, Kind: renew, HostID: hostA, Token: unknownToken}, grantedNoToken},

		// Malformed facts never grant.
		{"unknown level", Facts{Level: "low", Kind: issue, Known: true, Verified: true},
			want{need: true, state: protocol.TokenNone, code: protocol.CodeInternal}},
		{"unset level", Facts{Kind: issue, Known: true, Verified: true},
			want{need: true, state: protocol.TokenNone, code: protocol.CodeInternal}},
		{"unknown kind", Facts{Level: med, Kind: "steal", Known: true, Verified: true, Token: stdToken},
			want{need: true, state: protocol.TokenNone, code: protocol.CodeBadRequest}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			d := Decide(tc.f)
			got := want{granted: d.Granted, need: d.NeedToken, state: d.TokenState, code: d.Code}
			if got != tc.want {
				t.Errorf("Decide(%+v) = %+v, want %+v\nreason: %s", tc.f, got, tc.want, d.Reason)
			}
			if (d.Code == "") != d.Granted {
				t.Errorf("Decide(%+v): Granted = %v with Code %q, want Code set exactly when refused", tc.f, d.Granted, d.Code)
			}
			if d.Kind != tc.f.Kind || d.Level != tc.f.Level || d.Known != tc.f.Known || d.NAT != tc.f.NAT || d.Window != tc.f.Window {
				t.Errorf("Decide(%+v) facts = %+v, want them copied", tc.f, d)
			}
			if d.Verified != (tc.f.Verified && !tc.f.NAT) {
				t.Errorf("Decide(%+v).Verified = %v, want %v (NAT is never verified)", tc.f, d.Verified, tc.f.Verified && !tc.f.NAT)
			}
			checkReason(t, d)
		})
	}
}

// checkReason: one sentence naming outcome, level, known, verified, NAT and token state.
func checkReason(t *testing.T, d protocol.Decision) {
	t.Helper()
	r := d.Reason
	prefix := "granted: "
	if !d.Granted {
		prefix = "refused (" + string(d.Code) + "): "
	}
	mustHave := []string{prefix, "level " + string(d.Level), " token " + tokenName(d.TokenState)}
	if d.Level == "" {
		mustHave[1] = "level (unset)"
	}
	if d.Known {
		mustHave = append(mustHave, ", known,")
	} else {
		mustHave = append(mustHave, "not known")
	}
	switch {
	case d.NAT:
		mustHave = append(mustHave, "not verified (NAT declared)")
	case !d.DNSChecked:
		mustHave = append(mustHave, "DNS not checked (", ", no NAT")
	case d.Verified:
		mustHave = append(mustHave, ", verified", ", no NAT")
	default:
		mustHave = append(mustHave, "not verified", ", no NAT")
	}
	for _, s := range mustHave {
		if !strings.Contains(r, s) {
			t.Errorf("Decide reason = %q, want it to contain %q", r, s)
		}
	}
	if !strings.HasPrefix(r, prefix) || !strings.HasSuffix(r, ".") || strings.Count(r, ". ") > 0 || strings.Contains(r, "\n") {
		t.Errorf("Decide reason = %q, want one sentence starting %q", r, prefix)
	}
}

func TestDecideReasonWords(t *testing.T) {
	for _, tc := range []struct {
		f    Facts
		want string
	}{
		{Facts{Level: hi, Kind: reissue, HostID: hostA, Token: stdToken}, "reissue token required"},
		{Facts{Level: hi, Kind: reissue, HostID: hostA, Token: reissueTokenB}, "another host"},
		{Facts{Level: hi, Kind: issue, Token: expiredToken}, "expired"},
		{Facts{Level: hi, Kind: issue, Token: usedUpToken}, "no uses left"},
		{Facts{Level: hi, Kind: issue, Verified: true}, "not in the registry"},
		{Facts{Level: hi, Kind: issue, Known: true}, "unverified"},
		{Facts{Level: vh, Kind: issue, Known: true, Verified: true}, "every issue needs a token"},
		{Facts{Level: med, Kind: issue, Verified: true, Token: stdToken}, "counted"},
		{Facts{Level: hi, Kind: reissue, HostID: hostA, Window: true}, "auto-reissue window open"},
		{Facts{Level: hi, Kind: renew, HostID: hostA, HostRevoked: true}, "revoked"},
		{Facts{Level: hi, Kind: renew, HostID: hostA, CertExpired: true}, "certificate expired"},
		{Facts{Level: hi, Kind: issue, Known: true, Verified: true, Token: unknownToken}, "even where none is needed"},
		{Facts{Level: hi, Kind: issue, Known: true, VerifyNote: "dns gives 192.0.2.1, not 192.0.2.9"},
			"known, not verified (dns gives 192.0.2.1, not 192.0.2.9), no NAT, token none"},
		{Facts{Level: med, Kind: issue, Verified: true, VerifyNote: "dns matches 2001:db8::1."},
			"not known, verified (dns matches 2001:db8::1), no NAT, token none; at medium"},
		{Facts{Level: med, Kind: issue, Verified: true, NAT: true, VerifyNote: "nat declared"},
			"not known, not verified (NAT declared), token none"},
	} {
		if got := Decide(tc.f).Reason; !strings.Contains(got, tc.want) {
			t.Errorf("Decide(%+v).Reason = %q, want it to contain %q", tc.f, got, tc.want)
		}
	}
}

// Exhaustive: over every combination of facts, the decision keeps its
// invariants, and nothing is granted without a valid token where one is needed.
func TestDecideInvariants(t *testing.T) {
	levels := []protocol.Level{vh, hi, med}
	kinds := []protocol.RequestKind{issue, reissue, renew}
	toks := []TokenFacts{noToken, stdToken, reissueTokenA, reissueTokenB, unknownToken, expiredToken, usedUpToken,
		{Present: true, Found: true, Kind: "reissue", HostID: hostA, Expired: true, UsedUp: true}}
	bools := []bool{false, true}
	n := 0
	for _, l := range levels {
		for _, k := range kinds {
			for _, tok := range toks {
				for _, known := range bools {
					for _, ver := range bools {
						for _, nat := range bools {
							for _, win := range bools {
								for _, rev := range bools {
									f := Facts{Level: l, Kind: k, HostID: hostA, Known: known, Verified: ver, NAT: nat,
										Window: win, HostRevoked: rev, Token: tok}
									if k == issue {
										f.HostID = ""
									}
									d := Decide(f)
									n++
									if (d.Code == "") != d.Granted {
										t.Fatalf("Decide(%+v): Granted %v, Code %q", f, d.Granted, d.Code)
									}
									if d.Granted && d.NeedToken && d.TokenState != protocol.TokenValid {
										t.Fatalf("Decide(%+v) granted with token %s though a token is needed", f, d.TokenState)
									}
									if d.Granted && d.TokenState != protocol.TokenValid && d.TokenState != protocol.TokenNone {
										t.Fatalf("Decide(%+v) granted with token state %s", f, d.TokenState)
									}
									if k == renew && d.Granted == rev {
										t.Fatalf("Decide(%+v): renew granted=%v with revoked=%v", f, d.Granted, rev)
									}
									if nat && d.Verified {
										t.Fatalf("Decide(%+v).Verified = true with NAT", f)
									}
									if d.Granted && k == reissue && d.TokenState == protocol.TokenValid && tok.HostID != hostA {
										t.Fatalf("Decide(%+v) granted a reissue with a token for %q", f, tok.HostID)
									}
									checkReason(t, d)
								}
							}
						}
					}
				}
			}
		}
	}
	if n != 3*3*8*32 {
		t.Errorf("checked %d combinations, want %d", n, 3*3*8*32)
	}
}

func BenchmarkDecide(b *testing.B) {
	f := Facts{Level: hi, Kind: issue, Known: true, Verified: true, Token: stdToken}
	for b.Loop() {
		Decide(f)
	}
}
