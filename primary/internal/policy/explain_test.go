package policy

import (
	"strings"
	"testing"
	"time"

	"github.com/hostcert/hostcert/common/protocol"
)

func TestPublicHidesTokenDetail(t *testing.T) {
	var reasons []string
	for _, tok := range []TokenFacts{unknownToken, expiredToken, usedUpToken, reissueTokenB} {
		f := Facts{Level: hi, Kind: reissue, HostID: hostA, Token: tok}
		if tok == expiredToken || tok == usedUpToken || tok == unknownToken {
			f.Kind, f.HostID = issue, ""
		}
		full := Decide(f)
		p := Public(full)
		if p.Code != protocol.CodeTokenInvalid || p.Granted {
			t.Fatalf("Public(Decide(%+v)) = code %q granted %v, want token_invalid refused", f, p.Code, p.Granted)
		}
		if p.TokenState != protocol.TokenInvalid {
			t.Errorf("Public(%s).TokenState = %s, want invalid", full.TokenState, p.TokenState)
		}
		for _, leak := range []string{"expired", "used up", "no uses", "another host", "matches no token", "reissue token"} {
			if strings.Contains(p.Reason, leak) {
				t.Errorf("Public(%s).Reason = %q, must not contain %q", full.TokenState, p.Reason, leak)
			}
		}
		if m := Message(full); m != "the token is not valid for this request" {
			t.Errorf("Message(%s) = %q, want the generic sentence", full.TokenState, m)
		}
		reasons = append(reasons, strings.Replace(p.Reason, "reissue at", "issue at", 1))
	}
	// Apart from the request kind, every kind of bad token reads the same.
	for _, r := range reasons[1:] {
		if strings.ReplaceAll(r, ", no auto-reissue window", "") != strings.ReplaceAll(reasons[0], ", no auto-reissue window", "") {
			t.Errorf("Public reasons differ: %q vs %q", r, reasons[0])
		}
	}
	// Other decisions pass through unchanged.
	d := Decide(Facts{Level: hi, Kind: reissue, HostID: hostA, Token: stdToken})
	if p := Public(d); p != d {
		t.Errorf("Public(%+v) = %+v, want unchanged", d, p)
	}
}

func TestMessage(t *testing.T) {
	for _, tc := range []struct {
		f    Facts
		want string
	}{
		{Facts{Level: hi, Kind: issue, Known: true, Verified: true}, "granted"},
		{Facts{Level: hi, Kind: issue, Verified: true}, "token required: at high a host not in the registry needs a token"},
		{Facts{Level: med, Kind: issue, NAT: true}, "token required: at medium an unverified host needs a token"},
		{Facts{Level: vh, Kind: issue, Known: true, Verified: true}, "token required: at very-high every issue needs a token"},
		{Facts{Level: hi, Kind: reissue, HostID: hostA, Token: stdToken}, "reissue token required: a standard token cannot authorise a reissue"},
		{Facts{Level: hi, Kind: reissue, HostID: hostA}, "reissue token required: this host already has a host ID; ask the admin for a reissue token or an auto-reissue window"},
		{Facts{Level: hi, Kind: renew, HostRevoked: true}, "this host is revoked and cannot renew; it needs a reissue token"},
		{Facts{Level: hi, Kind: renew, CertExpired: true}, "the certificate has expired and cannot be renewed; the host needs a reissue"},
	} {
		if got := Message(Decide(tc.f)); got != tc.want {
			t.Errorf("Message(Decide(%+v)) = %q, want %q", tc.f, got, tc.want)
		}
	}
}

func TestExplain(t *testing.T) {
	d := Decide(Facts{Level: hi, Kind: issue, Verified: true, NAT: true})
	got := Explain(d)
	for _, want := range []string{
		"request:              issue\n",
		"level:                high\n",
		"known:                no\n",
		"verified:             no\n",
		"nat declared:         yes\n",
		"token presented:      none\n",
		"needs a token:        yes\n",
		"result:               refused (token_required)\n",
		"reason:               refused (token_required): issue at level high",
	} {
		if !strings.Contains(got, want) {
			t.Errorf("Explain(%+v) = %q, want it to contain %q", d, got, want)
		}
	}
	if strings.Contains(got, "auto-reissue window:") {
		t.Errorf("Explain(issue) = %q, want no window line", got)
	}
	d = Decide(Facts{Level: med, Kind: reissue, HostID: hostA, Window: true, VerifyNote: "dns gives 192.0.2.1, not 192.0.2.9"})
	got = Explain(d)
	for _, want := range []string{"auto-reissue window:  open\n", "needs a token:        no\n", "result:               granted\n",
		"dns:                  dns gives 192.0.2.1, not 192.0.2.9\n", "verified:             no\n"} {
		if !strings.Contains(got, want) {
			t.Errorf("Explain(%+v) = %q, want it to contain %q", d, got, want)
		}
	}
}

func TestParseWindow(t *testing.T) {
	for _, tc := range []struct {
		in   string
		want time.Duration
		ok   bool
	}{
		{"", 48 * time.Hour, true},
		{"48h", 48 * time.Hour, true},
		{"2d", 48 * time.Hour, true},
		{"30m", 30 * time.Minute, true},
		{"30d", 30 * 24 * time.Hour, true},
		{"720h", 720 * time.Hour, true},
		{"30d1s", 0, false},
		{"31d", 0, false},
		{"0", 0, false},
		{"-2h", 0, false},
		{"soon", 0, false},
	} {
		got, err := ParseWindow(tc.in)
		if (err == nil) != tc.ok || (tc.ok && got != tc.want) {
			t.Errorf("ParseWindow(%q) = %v, %v, want %v, ok=%v", tc.in, got, err, tc.want, tc.ok)
		}
	}
}

func TestWindowOpen(t *testing.T) {
	now := time.Date(2026, 11, 23, 12, 0, 0, 0, time.UTC)
	later, earlier := now.Add(time.Minute), now.Add(-time.Minute)
	for _, tc := range []struct {
		until *time.Time
		want  bool
	}{
		{nil, false},
		{&later, true},
		{&earlier, false},
		{&now, false},
	} {
		if got := WindowOpen(tc.until, now); got != tc.want {
			t.Errorf("WindowOpen(%v, %v) = %v, want %v", tc.until, now, got, tc.want)
		}
	}
}
