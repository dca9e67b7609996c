package policy

import (
	"strings"
	"testing"
	"time"

	"github.com/hostcert/hostcert/common/protocol"
)

func TestPlan(t *testing.T) {
	const p, c, other = "0A", "0B", "0C"
	cur := Current{Serial: c, Valid: true, SameKey: true, RenewedFrom: p}
	renewOf := func(presented string, cur Current) Facts {
		return Facts{Level: hi, Kind: renew, HostID: hostA, DNSSkipped: true, Presented: presented, Current: cur}
	}
	with := func(f Facts, edit func(*Facts)) Facts { edit(&f); return f }
	for _, tc := range []struct {
		name string
		f    Facts
		act  Action
		code protocol.Code
		word string // in the reason
	}{
		// Renewal: only the current certificate renews.
		{"renew current", renewOf(c, Current{Serial: c, Valid: true}), Issue, "", "needs no token"},
		{"renew superseded", renewOf(other, cur), Refuse, protocol.CodeCertSuperseded, "current certificate is 0B"},
		{"renew, host has no current", renewOf(p, Current{}), Refuse, protocol.CodeCertSuperseded, "no current certificate"},
		// The lost answer: the current one renewed the presented one.
		{"lost renewal answer", renewOf(p, cur), Resend, "", "sent again"},
		{"lost renewal, current used", renewOf(p, with(renewOf(p, cur), func(f *Facts) { f.Current.Used = true }).Current),
			Refuse, protocol.CodeCertSuperseded, "used since"},
		{"lost renewal, other key", renewOf(p, Current{Serial: c, Valid: true, RenewedFrom: p}),
			Refuse, protocol.CodeCertSuperseded, "another key"},
		{"lost renewal, current revoked", renewOf(p, Current{Serial: c, SameKey: true, RenewedFrom: p}),
			Refuse, protocol.CodeCertSuperseded, "revoked or expired"},
		{"lost renewal, host revoked", with(renewOf(p, cur), func(f *Facts) { f.HostRevoked = true }), Refuse, protocol.CodeHostRevoked, "revoked"},
		{"lost renewal, presented expired", with(renewOf(p, cur), func(f *Facts) { f.CertExpired = true }), Refuse, protocol.CodeCertExpired, "expired"},
		// A renewal's CSR problems are refusals naming their cause.
		{"renew bad csr", with(renewOf(c, Current{Serial: c, Valid: true}), func(f *Facts) {
			f.CSR = CSRProblem{Code: protocol.CodeBadCSR, Why: "the CSR's key is too small"}
		}), Refuse, protocol.CodeBadCSR, "the CSR's key is too small"},
		{"renew name not allowed", with(renewOf(c, Current{Serial: c, Valid: true}), func(f *Facts) {
			f.CSR = CSRProblem{Code: protocol.CodeNameNotAllowed, Why: "the CSR asks for other.test"}
		}), Refuse, protocol.CodeNameNotAllowed, "asks for other.test"},
		{"renew revoked before csr", with(renewOf(c, Current{Serial: c}), func(f *Facts) {
			f.HostRevoked, f.CSR = true, CSRProblem{Code: protocol.CodeBadCSR, Why: "bad"}
		}), Refuse, protocol.CodeHostRevoked, "revoked"},

		// Reissue: the same-key resend of a lost enrollment answer.
		{"reissue same key", Facts{Level: hi, Kind: reissue, HostID: hostA, Current: Current{Serial: c, Valid: true, SameKey: true}},
			Resend, "", "this very key"},
		{"reissue same key, bad token ignored", Facts{Level: hi, Kind: reissue, HostID: hostA, Token: unknownToken,
			Current: Current{Serial: c, Valid: true, SameKey: true}}, Resend, "", "sent again"},
		{"reissue other key", Facts{Level: hi, Kind: reissue, HostID: hostA, Current: Current{Serial: c, Valid: true}},
			Refuse, protocol.CodeReissueTokenRequired, "reissue token"},
		{"reissue same key, current revoked", Facts{Level: hi, Kind: reissue, HostID: hostA, Current: Current{Serial: c, SameKey: true}},
			Refuse, protocol.CodeReissueTokenRequired, "reissue token"},
		{"reissue same key, host revoked", Facts{Level: hi, Kind: reissue, HostID: hostA, HostRevoked: true,
			Current: Current{Serial: c, Valid: true, SameKey: true}}, Refuse, protocol.CodeReissueTokenRequired, "reissue token"},
		{"reissue in window", Facts{Level: hi, Kind: reissue, HostID: hostA, Window: true, Current: Current{Serial: c, Valid: true}},
			Issue, "", "window"},

		// Issue: Plan is Decide.
		{"issue verified known", Facts{Level: hi, Kind: issue, Known: true, Verified: true}, Issue, "", "verified"},
		{"issue unknown at high", Facts{Level: hi, Kind: issue, DNSSkipped: true}, Refuse, protocol.CodeTokenRequired, "DNS not checked"},
		{"issue unknown at high, why", Facts{Level: hi, Kind: issue, DNSSkipped: true}, Refuse, protocol.CodeTokenRequired,
			"at high a host not in the registry needs a token, and none was presented"},
		// An issue never resends (there is no current certificate).
		{"issue with a current", Facts{Level: med, Kind: issue, Verified: true, Current: Current{Serial: c, Valid: true, SameKey: true}},
			Issue, "", "verified"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			d, act := Plan(tc.f)
			if act != tc.act || d.Code != tc.code || d.Granted != (tc.act != Refuse) || !strings.Contains(d.Reason, tc.word) {
				t.Errorf("Plan(%+v) = %s %q granted=%v %q, want %s %q containing %q", tc.f, act, d.Code, d.Granted, d.Reason, tc.act, tc.code, tc.word)
			}
			if got := Decide(tc.f); got != d {
				t.Errorf("Decide(%+v) = %+v, want Plan's decision %+v", tc.f, got, d)
			}
			checkReason(t, d)
		})
	}
}

func TestLost(t *testing.T) {
	for _, tc := range []struct {
		f     Facts
		race  Race
		code  protocol.Code
		state protocol.TokenState
		word  string
	}{
		{Facts{Level: hi, Kind: issue, Token: stdToken, DNSSkipped: true}, RaceTokenUsedUp, protocol.CodeTokenInvalid, protocol.TokenUsedUp, "last use"},
		{Facts{Level: hi, Kind: issue, Token: stdToken, DNSSkipped: true}, RaceTokenExpired, protocol.CodeTokenInvalid, protocol.TokenExpired, "expired"},
		{Facts{Level: hi, Kind: reissue, HostID: hostA, Token: reissueTokenA, DNSSkipped: true}, RaceTokenGone, protocol.CodeTokenInvalid, protocol.TokenInvalid, "deleted"},
		{Facts{Level: hi, Kind: renew, HostID: hostA, DNSSkipped: true}, RaceHostRevoked, protocol.CodeHostRevoked, protocol.TokenNone, "revoked while"},
		{Facts{Level: hi, Kind: renew, HostID: hostA, DNSSkipped: true}, RaceSuperseded, protocol.CodeCertSuperseded, protocol.TokenNone, "committed first"},
		{Facts{Level: hi, Kind: renew, HostID: hostA, DNSSkipped: true}, RaceNameConflict, protocol.CodeNameConflict, protocol.TokenNone, "another host claimed"},
		{Facts{Level: hi, Kind: renew, HostID: hostA, DNSSkipped: true}, RaceNameWithdrawn, protocol.CodeNameNotAllowed, protocol.TokenNone, "removed from the host"},
		{Facts{Level: hi, Kind: renew, HostID: hostA, DNSSkipped: true}, RaceTooManyPending, protocol.CodeTooManyPendingNames, protocol.TokenNone, "waiting for approval"},
		{Facts{Level: hi, Kind: renew, HostID: hostA, DNSSkipped: true}, Race(99), protocol.CodeInternal, protocol.TokenNone, "unknown"},
	} {
		granted := Decide(tc.f)
		if !granted.Granted {
			t.Fatalf("Decide(%+v) refused: %s", tc.f, granted.Reason)
		}
		d := Lost(tc.f, granted, tc.race)
		if d.Granted || d.Code != tc.code || d.TokenState != tc.state || !strings.Contains(d.Reason, tc.word) {
			t.Errorf("Lost(%+v, %d) = %v %q %s %q, want refused %q %s containing %q", tc.f, tc.race, d.Granted, d.Code, d.TokenState, d.Reason, tc.code, tc.state, tc.word)
		}
		checkReason(t, d)
	}
}

func TestTokenFound(t *testing.T) {
	now := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	for _, tc := range []struct {
		uses, max int
		expires   time.Time
		want      TokenFacts
	}{
		{0, 1, now.Add(time.Second), TokenFacts{Present: true, Found: true, Kind: "standard"}},
		{1, 1, now.Add(time.Hour), TokenFacts{Present: true, Found: true, Kind: "standard", UsedUp: true}},
		{0, 5, now, TokenFacts{Present: true, Found: true, Kind: "standard", Expired: true}},
		{7, 5, now.Add(-time.Hour), TokenFacts{Present: true, Found: true, Kind: "standard", Expired: true, UsedUp: true}},
	} {
		if got := TokenFound("standard", "", tc.uses, tc.max, tc.expires, now); got != tc.want {
			t.Errorf("TokenFound(uses %d/%d, expires %v) = %+v, want %+v", tc.uses, tc.max, tc.expires, got, tc.want)
		}
	}
	if got := TokenFound("reissue", hostA, 0, 1, now.Add(time.Hour), now); got.HostID != hostA || got.Kind != "reissue" {
		t.Errorf("TokenFound(reissue for %s) = %+v", hostA, got)
	}
}

func TestNeedsDNS(t *testing.T) {
	for _, tc := range []struct {
		f    Facts
		need bool
		why  string
	}{
		{Facts{Level: med, Kind: issue}, true, ""},
		{Facts{Level: med, Kind: issue, Known: true}, true, ""},
		{Facts{Level: hi, Kind: issue, Known: true}, true, ""},
		{Facts{Level: hi, Kind: issue}, false, "not in the registry"},
		{Facts{Level: vh, Kind: issue, Known: true}, false, "very-high"},
		{Facts{Level: med, Kind: issue, NAT: true}, false, "NAT"},
		{Facts{Level: med, Kind: issue, Token: stdToken}, false, "valid token"},
		{Facts{Level: hi, Kind: issue, Known: true, Token: stdToken}, false, "valid token"},
		{Facts{Level: hi, Kind: issue, Known: true, Token: unknownToken}, false, "not valid"},
		{Facts{Level: med, Kind: issue, Token: expiredToken}, false, "not valid"},
		{Facts{Level: med, Kind: issue, Token: reissueTokenA}, false, "not valid"},
		{Facts{Level: med, Kind: reissue, HostID: hostA}, false, "reissue"},
		{Facts{Level: med, Kind: renew, HostID: hostA}, false, "renewal"},
		{Facts{Level: "low", Kind: issue}, false, "whatever DNS says"},
		{Facts{Level: med, Kind: "steal"}, false, "whatever DNS says"},
	} {
		need, why := NeedsDNS(tc.f)
		if need != tc.need || !strings.Contains(why, tc.why) || (need && why != "") {
			t.Errorf("NeedsDNS(%+v) = %v %q, want %v %q", tc.f, need, why, tc.need, tc.why)
		}
	}
}

// NeedsDNS is exact: wherever it says DNS cannot change the outcome,
// Decide gives the same outcome verified or not; wherever it says it can,
// the outcomes differ.
func TestNeedsDNSAgreesWithDecide(t *testing.T) {
	toks := []TokenFacts{noToken, stdToken, reissueTokenA, unknownToken, expiredToken, usedUpToken}
	n := 0
	for _, l := range []protocol.Level{vh, hi, med, "low"} {
		for _, k := range []protocol.RequestKind{issue, reissue, renew} {
			for _, tok := range toks {
				for _, known := range []bool{false, true} {
					for _, nat := range []bool{false, true} {
						for _, win := range []bool{false, true} {
							f := Facts{Level: l, Kind: k, Known: known, NAT: nat, Window: win, Token: tok}
							if k != issue {
								f.HostID = hostA
							}
							yes, no := f, f
							yes.Verified, no.Verified = true, false
							dy, dn := Decide(yes), Decide(no)
							differ := dy.Granted != dn.Granted || dy.Code != dn.Code || dy.TokenState != dn.TokenState
							if need, why := NeedsDNS(f); need != differ {
								t.Errorf("NeedsDNS(%+v) = %v (%s), but verified → %s %q, unverified → %s %q", f, need, why, dy.Code, dy.TokenState, dn.Code, dn.TokenState)
							}
							n++
						}
					}
				}
			}
		}
	}
	if n == 0 {
		t.Fatal("no combination checked")
	}
}

// A request whose DNS was not consulted says so, and why, and never claims
// to be unverified by DNS.
func TestDNSInReason(t *testing.T) {
	for _, tc := range []struct {
		f       Facts
		checked bool
		state   string
		want    string
	}{
		{Facts{Level: hi, Kind: issue, DNSSkipped: true}, false, "not_checked",
			"not known, DNS not checked (at high a name not in the registry needs a token whatever DNS says), no NAT"},
		{Facts{Level: vh, Kind: issue, Known: true, DNSSkipped: true}, false, "not_checked", "DNS not checked (at very-high every issue needs a token whatever DNS says)"},
		{Facts{Level: med, Kind: issue, Token: stdToken, DNSSkipped: true}, false, "not_checked", "DNS not checked (the valid token authorises the request whatever DNS says)"},
		{Facts{Level: hi, Kind: renew, HostID: hostA, DNSSkipped: true}, false, "not_checked", "DNS not checked (a renewal does not depend on DNS)"},
		{Facts{Level: med, Kind: issue, NAT: true, DNSSkipped: true}, false, "no", "not verified (NAT declared)"},
		{Facts{Level: med, Kind: issue, VerifyNote: "name does not resolve (no such host)"}, true, "no", "not verified (name does not resolve (no such host))"},
		{Facts{Level: med, Kind: issue, Verified: true, VerifyNote: "dns matches 192.0.2.7"}, true, "yes", "verified (dns matches 192.0.2.7)"},
		{Facts{Level: hi, Kind: reissue, HostID: hostA, VerifyNote: "dns gives 192.0.2.1, not 192.0.2.9"}, true, "no",
			"not verified (dns gives 192.0.2.1, not 192.0.2.9)"},
	} {
		d := Decide(tc.f)
		if d.DNSChecked != tc.checked || VerifiedState(d) != tc.state || !strings.Contains(d.Reason, tc.want) {
			t.Errorf("Decide(%+v) = checked %v, verified %q, reason %q; want %v, %q, containing %q", tc.f, d.DNSChecked, VerifiedState(d), d.Reason, tc.checked, tc.state, tc.want)
		}
		if p := Public(d); !strings.Contains(p.Reason, strings.SplitN(tc.want, " (", 2)[0]) {
			t.Errorf("Public(%+v).Reason = %q, want the DNS fact", d, p.Reason)
		}
	}
}

func TestMessageUnchecked(t *testing.T) {
	d := Decide(Facts{Level: hi, Kind: issue, DNSSkipped: true})
	if got, want := Message(d), "token required: at high a host not in the registry needs a token"; got != want {
		t.Errorf("Message(%+v) = %q, want %q", d, got, want)
	}
	if got := Message(Decide(Facts{Level: hi, Kind: renew, HostID: hostA, Presented: "0A", Current: Current{Serial: "0B"}})); !strings.Contains(got, "superseded") {
		t.Errorf("Message(superseded renewal) = %q, want it to say superseded", got)
	}
}
