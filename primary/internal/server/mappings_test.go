package server

import (
	"fmt"
	"net/http"
	"slices"
	"strings"
	"sync"
	"testing"

	"github.com/hostcert/hostcert/common/protocol"
	"github.com/hostcert/hostcert/primary/internal/admin"
)

// TestMappingFlow: a host renews asking for an extra name → the name is
// pending and not in the certificate → an admin approves it → the next
// renewal carries both names; the host ID never changes. The approved name
// then finds the host: an enrollment by it is a reissue of that host.
func TestMappingFlow(t *testing.T) {
	e := newEnv(t, envOpts{})
	h := enrolled(t, e, "flow.test")
	id := pkiHostID(t, h)

	r, next := e.renewAsking(h, "flow-alt.test")
	if r.status != http.StatusOK || r.cert.HostID != id || fmt.Sprint(r.cert.Names) != "[flow.test]" ||
		fmt.Sprint(r.cert.PendingNames) != "[flow-alt.test]" || fmt.Sprint(next.leaf.DNSNames) != "[flow.test]" {
		t.Fatalf("renewal asking for flow-alt.test = %v, want flow.test only, flow-alt.test pending, host %s", r, id)
	}
	var ms []admin.Mapping
	e.call(admin.CmdMappingList, admin.MappingListArgs{Pending: true}, &ms)
	if len(ms) != 1 || ms[0].Name != "flow-alt.test" || ms[0].HostID != id {
		t.Fatalf("pending mappings = %+v, want flow-alt.test for %s", ms, id)
	}
	// Asked again before the approval: still pending, still not carried.
	r, next = e.renewAsking(next, "flow-alt.test")
	if r.status != http.StatusOK || fmt.Sprint(r.cert.Names) != "[flow.test]" || fmt.Sprint(r.cert.PendingNames) != "[flow-alt.test]" {
		t.Fatalf("second renewal before the approval = %v, want flow.test only", r)
	}

	var m admin.Mapping
	e.call(admin.CmdMappingApprove, admin.MappingArgs{Name: "flow-alt.test"}, &m)
	if m.State != "approved" || m.HostID != id {
		t.Fatalf("approve = %+v", m)
	}
	r, next = e.renewAsking(next, "flow-alt.test")
	if r.status != http.StatusOK || r.cert.HostID != id || len(r.cert.PendingNames) != 0 ||
		!slices.Equal(next.leaf.DNSNames, []string{"flow.test", "flow-alt.test"}) || next.leaf.Subject.CommonName != id {
		t.Fatalf("renewal after the approval = %v, DNS names %v, want flow.test and flow-alt.test for %s", r, next.leaf.DNSNames, id)
	}

	// The approved name is the host's: enrolling by it is a reissue of this
	// host (a reissue token), never a new host.
	imp := newHost(t, "flow-alt.test")
	if r := e.enroll(imp, "", "", false); r.status != http.StatusForbidden || r.err.Code != protocol.CodeReissueTokenRequired ||
		r.err.Decision == nil || r.err.Decision.Kind != protocol.KindReissue {
		t.Errorf("enroll by the approved name flow-alt.test = %v, want reissue_token_required", r)
	}
	var d admin.HostDetail
	e.call(admin.CmdHostShow, admin.HostArgs{Host: "flow-alt.test"}, &d)
	if d.ID != id {
		t.Errorf("host show flow-alt.test = %+v, want host %s", d.Host, id)
	}
	// Another host asking for it is refused with name_conflict, and gets nothing.
	other := enrolled(t, e, "other.test")
	if r, _ := e.renewAsking(other, "flow-alt.test"); r.status != http.StatusConflict || r.err.Code != protocol.CodeNameConflict {
		t.Errorf("other host renewing with flow-alt.test = %v, want 409 name_conflict", r)
	}
	// A reissue asking for a name the host does not hold: pending too.
	re := &host{name: "other.test", key: newKey(t), more: []string{"other-alt.test"}}
	if r := e.enroll(re, e.token("re-other", 1, "other.test"), "", false); r.status != http.StatusOK ||
		r.cert.Decision.Kind != protocol.KindReissue || fmt.Sprint(r.cert.Names) != "[other.test]" || fmt.Sprint(r.cert.PendingNames) != "[other-alt.test]" {
		t.Errorf("reissue asking for other-alt.test = %v, want other.test only, other-alt.test pending", r)
	}
	e.dns.Set("flow-new.test", loopback)
	clash := newHost(t, "flow-new.test")
	clash.more = []string{"flow.test"}
	if r := e.enroll(clash, "", "", false); r.status != http.StatusConflict || r.err.Code != protocol.CodeNameConflict {
		t.Errorf("new host asking for flow.test too = %v, want 409 name_conflict", r)
	}
	// The renewal that claimed the name is audited with it.
	claimed := false
	for _, a := range e.audits("renew", "flow.test") {
		claimed = claimed || strings.Contains(fmt.Sprint(a.Detail["names_claimed"]), "flow-alt.test")
	}
	if !claimed {
		t.Error("no renew audit row names the claimed flow-alt.test")
	}
}

// renewAsking renews with the certificate of from and a new key, the CSR
// asking also for more.
func (e *env) renewAsking(from *host, more ...string) (reply, *host) {
	e.t.Helper()
	next := &host{name: from.name, key: newKey(e.t), more: more}
	r := e.renew(next, from.tls)
	if r.status == http.StatusOK {
		next.take(e.t, r)
	}
	return r, next
}

func pkiHostID(t *testing.T, h *host) string {
	t.Helper()
	if h.leaf == nil || h.leaf.Subject.CommonName == "" {
		t.Fatal("host has no certificate")
	}
	return h.leaf.Subject.CommonName
}

// TestNameConflictRace: hosts getting one free name at the same moment,
// through the real API, while another host's pending claim on it is
// present: two hosts renewing with the name auto-approved and a new host
// enrolling by it. Exactly one gets the name in its certificate and as its
// approved mapping; a loser is refused name_conflict — or, a new host
// that saw the name free and lost at the commit, decided again as a
// reissue of the winner (reissue_token_required) — and nothing of a loser
// is written; the pending claim is dropped. Repeated
// with a new name each round, on SQLite and on PostgreSQL.
func TestNameConflictRace(t *testing.T) { eachStore(t, testNameConflictRace) }

func testNameConflictRace(t *testing.T, e *env) {
	hs := []*host{enrolled(t, e, "race-a.test"), enrolled(t, e, "race-b.test")}
	claimer := enrolled(t, e, "race-claimer.test")
	claimerID := pkiHostID(t, claimer)
	const rounds = 6
	for round := range rounds {
		name := fmt.Sprintf("shared-%d.test", round)
		e.call(admin.CmdMappingAutoApprove, admin.AutoApproveArgs{State: "off"}, nil)
		r, next := e.renewAsking(claimer, name)
		if r.status != http.StatusOK || fmt.Sprint(r.cert.PendingNames) != "["+name+"]" {
			t.Fatalf("round %d: claimer asking for %s = %v, want it pending", round, name, r)
		}
		claimer = next
		e.call(admin.CmdMappingAutoApprove, admin.AutoApproveArgs{State: "on"}, nil)

		e.dns.Set(name, loopback)
		newcomer := newHost(t, name)
		replies := make([]reply, len(hs)+1)
		nexts := make([]*host, len(hs))
		var wg sync.WaitGroup
		start := make(chan struct{})
		for i, h := range hs {
			next := &host{name: h.name, key: newKey(t), more: []string{name}}
			nexts[i] = next
			wg.Go(func() {
				<-start
				replies[i] = e.renew(next, h.tls)
			})
		}
		wg.Go(func() {
			<-start
			replies[len(hs)] = e.enroll(newcomer, "", "", false)
		})
		close(start)
		wg.Wait()
		winner := ""
		for i, r := range replies {
			won := r.status == http.StatusOK && slices.Contains(r.cert.Names, name)
			switch {
			case won && winner == "":
				winner = r.cert.HostID
				if i < len(hs) {
					nexts[i].take(t, r)
					nexts[i].more = nil
					hs[i] = nexts[i]
				}
			case r.status == http.StatusConflict && r.err.Code == protocol.CodeNameConflict:
			case i == len(hs) && r.status == http.StatusForbidden && r.err.Code == protocol.CodeReissueTokenRequired:
			default:
				t.Fatalf("round %d: request %d = %v, want one winner of %s and the others refused", round, i, r, name)
			}
		}
		if winner == "" {
			t.Fatalf("round %d: no winner: %v", round, replies)
		}
		ms := e.mappingsOf(name)
		if len(ms) != 1 || ms[0].HostID != winner || ms[0].State != "approved" || ms[0].HostID == claimerID {
			t.Fatalf("round %d: mappings of %s = %+v, want only %s's, approved (the claim dropped)", round, name, ms, winner)
		}
	}
	// The losers' requests wrote nothing: three enrollments, and per round
	// the claimer's renewal and the winner's certificate.
	var certs []admin.Cert
	e.call(admin.CmdCertList, admin.CertArgs{}, &certs)
	if len(certs) != 3+2*rounds {
		t.Errorf("certificates = %d, want %d", len(certs), 3+2*rounds)
	}
}
