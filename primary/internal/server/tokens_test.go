package server

import (
	"bytes"
	"encoding/json"
	"fmt"
	"net"
	"net/http"
	"net/netip"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/hostcert/hostcert/common/protocol"
	"github.com/hostcert/hostcert/primary/internal/admin"
	"github.com/hostcert/hostcert/primary/internal/tokens"
)

// enrollVia is enroll over the client c (a tunnel or another local address).
func (e *env) enrollVia(c *http.Client, h *host, token string) reply {
	e.t.Helper()
	body, _ := json.Marshal(protocol.EnrollRequest{Name: h.name, CSR: h.csr(e.t), Token: token})
	r := e.post(c, protocol.PathEnroll, "application/json", body)
	if r.status == http.StatusOK {
		h.take(e.t, r)
	}
	return r
}

// unknownValue is a well-formed token value this primary never made.
func unknownValue(t *testing.T) string {
	t.Helper()
	v, _, err := tokens.Generate()
	if err != nil {
		t.Fatal(err)
	}
	return v
}

// TestRaceLosersAreNotGuessers: 50 hosts behind ONE address (a NAT, a
// tunnel) race for a max-uses-5 token. Exactly 5 get a certificate; the 45
// losers hold a real token, so they are refused with token_invalid but not
// charged as wrong guesses: none is rate-limited, and right after the race
// a valid token from the same address still enrolls.
func TestRaceLosersAreNotGuessers(t *testing.T) {
	e := newEnv(t, envOpts{})
	five := e.token("five", 5, "")
	const n = 50
	hosts := make([]*host, n)
	for i := range hosts {
		hosts[i] = newHost(t, fmt.Sprintf("nat%d.test", i))
		hosts[i].csr(t)
	}
	replies := make([]reply, n)
	var wg sync.WaitGroup
	start := make(chan struct{})
	for i := range hosts {
		wg.Add(1)
		go func() {
			defer wg.Done()
			<-start
			replies[i] = e.enroll(hosts[i], five, "", false)
		}()
	}
	close(start)
	wg.Wait()
	granted := 0
	for i, r := range replies {
		switch {
		case r.status == http.StatusOK:
			granted++
		case r.status == http.StatusForbidden && r.err.Code == protocol.CodeTokenInvalid:
		default:
			t.Errorf("racer %d = %v, want 200 or 403 token_invalid (never rate_limited)", i, r)
		}
	}
	if granted != 5 {
		t.Errorf("%d certificates issued, want exactly 5", granted)
	}
	var certs []admin.Cert
	e.call(admin.CmdCertList, admin.CertArgs{Token: "five"}, &certs)
	if len(certs) != 5 {
		t.Errorf("store holds %d certificates of token five, want 5", len(certs))
	}

	next := e.token("next", 1, "")
	if r := e.enroll(newHost(t, "late.test"), next, "", false); r.status != http.StatusOK {
		t.Errorf("a valid token from the same address after the race = %v, want 200", r)
	}
}

// TestDeadTokensAnswerLikeUnknown: on an issue AND on a reissue, a used-up
// token, an expired token, a live reissue token made for another host and
// a value that matches no token get byte-identical answers (status, code,
// message, decision). Only the unknown value is charged to the per-source
// limiter. A live standard token on a reissue alone earns
// reissue_token_required.
func TestDeadTokensAnswerLikeUnknown(t *testing.T) {
	e := newEnv(t, envOpts{})
	expired := e.tokenArgs(admin.TokenArgs{Name: "expired", ValidFor: "1s"})
	expiresAt := time.Now().Add(time.Second)

	seed := e.token("seed", 2, "")
	if r := e.enroll(newHost(t, "re.test"), seed, "", false); r.status != http.StatusOK {
		t.Fatalf("first enroll of re.test = %v", r)
	}
	owner := newHost(t, "owner.test")
	if r := e.enroll(owner, seed, "", false); r.status != http.StatusOK {
		t.Fatalf("first enroll of owner.test = %v", r)
	}
	usedUp := e.token("used", 1, "")
	if r := e.enroll(newHost(t, "user.test"), usedUp, "", false); r.status != http.StatusOK {
		t.Fatalf("using up token used = %v", r)
	}
	otherHosts := e.token("for-owner", 1, "owner.test")
	live := e.token("live", 3, "")
	time.Sleep(time.Until(expiresAt) + 50*time.Millisecond)

	unknown := unknownValue(t)
	for _, name := range []string{"fresh.test", "re.test"} {
		ref := e.enroll(newHost(t, name), unknown, "", false)
		if ref.status != http.StatusForbidden || ref.err.Code != protocol.CodeTokenInvalid {
			t.Fatalf("%s with an unknown value = %v, want 403 token_invalid", name, ref)
		}
		for _, tc := range []struct{ desc, value string }{
			{"used-up token", usedUp},
			{"expired token", expired},
			{"reissue token of another host", otherHosts},
		} {
			r := e.enroll(newHost(t, name), tc.value, "", false)
			if r.status != ref.status || !bytes.Equal(r.raw, ref.raw) {
				t.Errorf("%s with a %s = %s\nwant the unknown value's answer %s", name, tc.desc, r, ref)
			}
		}
	}
	if r := e.enroll(newHost(t, "re.test"), live, "", false); r.status != http.StatusForbidden || r.err.Code != protocol.CodeReissueTokenRequired {
		t.Errorf("reissue with a live standard token = %v, want 403 reissue_token_required", r)
	}

	// Two unknown values so far. Real tokens, dead or not, cost nothing:
	// more than a burst of them is never rate-limited.
	for i := 0; i < 2*tokens.DefaultBurst; i++ {
		for _, v := range []string{usedUp, expired, otherHosts} {
			if r := e.enroll(newHost(t, "fresh.test"), v, "", false); r.err.Code != protocol.CodeTokenInvalid {
				t.Fatalf("dead or foreign token, round %d = %v, want token_invalid (not charged as a guess)", i, r)
			}
		}
	}
	// Unknown values are charged: the burst runs out.
	limited := false
	for i := 0; i < tokens.DefaultBurst && !limited; i++ {
		r := e.enroll(newHost(t, "fresh.test"), unknownValue(t), "", false)
		limited = r.status == http.StatusTooManyRequests && r.err.Code == protocol.CodeRateLimited
	}
	if !limited {
		t.Errorf("%d unknown values from one address were never rate-limited", 2+tokens.DefaultBurst)
	}

	// The audit log keeps the real state of each.
	var rows []admin.AuditEntry
	e.call(admin.CmdAudit, admin.AuditArgs{}, &rows)
	states := map[string]bool{}
	for _, a := range rows {
		if s, ok := a.Detail["token_state"].(string); ok {
			states[s] = true
		}
	}
	for _, s := range []protocol.TokenState{protocol.TokenUsedUp, protocol.TokenExpired, protocol.TokenWrongHost, protocol.TokenInvalid, protocol.TokenWrongKind} {
		if !states[string(s)] {
			t.Errorf("audit log has no decision with token state %s (has %v)", s, states)
		}
	}
}

// TestBoundToken: a token bound to *.dmz.test and to the DMZ network
// 198.51.100.0/24 enrolls a DMZ host whose address a tunnel relays, and
// refuses — exactly like an unknown value, without charging the limiter —
// another name, the suffix itself, another relayed network and a direct
// peer outside the network. The binding is settled before the kind: on a
// reissue, a request outside it gets token_invalid, one inside
// reissue_token_required.
func TestBoundToken(t *testing.T) {
	if ln, err := net.Listen("tcp", "127.0.0.2:0"); err != nil {
		t.Skipf("127.0.0.2 is not usable here: %v", err)
	} else {
		ln.Close()
	}
	e := newEnv(t, envOpts{tunnels: []string{"127.0.0.1/32"}})
	bound := e.tokenArgs(admin.TokenArgs{
		Name: "dmz", MaxUses: 20,
		BindNames: []string{"*.DMZ.test."}, BindNets: []string{"198.51.100.0/24"},
	})
	dmz := e.clientVia("127.0.0.1", 2, netip.MustParseAddrPort("198.51.100.7:40000"))
	elsewhere := e.clientVia("127.0.0.1", 2, netip.MustParseAddrPort("203.0.113.9:40000"))
	direct := e.clientVia("127.0.0.2", 0, netip.AddrPort{})

	var toks []admin.Token
	e.call(admin.CmdTokenList, nil, &toks)
	if len(toks) != 1 || !slices.Equal(toks[0].BindNames, []string{"*.dmz.test"}) || !slices.Equal(toks[0].BindNets, []string{"198.51.100.0/24"}) {
		t.Errorf("token list = %+v, want dmz bound to *.dmz.test and 198.51.100.0/24", toks)
	}

	if r := e.enrollVia(dmz, newHost(t, "h1.dmz.test"), bound); r.status != http.StatusOK {
		t.Fatalf("bound token, in name and relayed network = %v, want 200", r)
	}
	for _, tc := range []struct {
		desc string
		c    *http.Client
		name string
	}{
		{"another name", dmz, "h1.lan.test"},
		{"the suffix itself", dmz, "dmz.test"},
		{"two labels below the suffix", dmz, "a.h2.dmz.test"},
		{"another relayed network", elsewhere, "h3.dmz.test"},
		{"a direct peer outside the network", direct, "h4.dmz.test"},
	} {
		r := e.enrollVia(tc.c, newHost(t, tc.name), bound)
		if r.status != http.StatusForbidden || r.err.Code != protocol.CodeTokenInvalid {
			t.Errorf("bound token from %s = %v, want 403 token_invalid", tc.desc, r)
			continue
		}
		ref := e.enrollVia(tc.c, newHost(t, tc.name), unknownValue(t))
		if !bytes.Equal(r.raw, ref.raw) {
			t.Errorf("bound token from %s = %s\nwant the unknown value's answer %s", tc.desc, r, ref)
		}
	}
	// Not charged: many refusals outside the binding from one network are
	// never rate-limited (that network was charged once above).
	for i := 0; i < 2*tokens.DefaultBurst; i++ {
		if r := e.enrollVia(elsewhere, newHost(t, "h5.dmz.test"), bound); r.err.Code != protocol.CodeTokenInvalid {
			t.Fatalf("bound token outside its network, round %d = %v, want token_invalid", i, r)
		}
	}

	if r := e.enrollVia(elsewhere, newHost(t, "h1.dmz.test"), bound); r.err.Code != protocol.CodeTokenInvalid {
		t.Errorf("reissue of h1.dmz.test with the bound token from outside = %v, want token_invalid", r)
	}
	if r := e.enrollVia(dmz, newHost(t, "h1.dmz.test"), bound); r.err.Code != protocol.CodeReissueTokenRequired {
		t.Errorf("reissue of h1.dmz.test with the bound token from inside = %v, want reissue_token_required", r)
	}
	e.call(admin.CmdTokenList, nil, &toks)
	if toks[0].Uses != 1 {
		t.Errorf("bound token uses = %d, want 1", toks[0].Uses)
	}

	// A reissue token is bound to its host already; it may be bound to a
	// network too, not to names.
	err := e.admin.Call(t.Context(), admin.CmdTokenCreate, admin.TokenArgs{
		Name: "re-names", ReissueHost: "h1.dmz.test", BindNames: []string{"h1.dmz.test"}}, nil)
	if err == nil || !strings.Contains(err.Error(), "--bind-name is for standard tokens") {
		t.Errorf("reissue token with --bind-name = %v, want refused", err)
	}
	re := e.tokenArgs(admin.TokenArgs{Name: "re-dmz", ReissueHost: "h1.dmz.test", BindNets: []string{"198.51.100.0/24"}})
	if r := e.enrollVia(elsewhere, newHost(t, "h1.dmz.test"), re); r.err.Code != protocol.CodeTokenInvalid {
		t.Errorf("network-bound reissue token from outside = %v, want token_invalid", r)
	}
	if r := e.enrollVia(dmz, newHost(t, "h1.dmz.test"), re); r.status != http.StatusOK || r.cert.Decision.Kind != protocol.KindReissue {
		t.Errorf("network-bound reissue token from inside = %v, want a granted reissue", r)
	}
}

// tokenArgs creates a token with every argument given.
func (e *env) tokenArgs(args admin.TokenArgs) string {
	e.t.Helper()
	var tok admin.CreatedToken
	e.call(admin.CmdTokenCreate, args, &tok)
	return tok.Value
}
