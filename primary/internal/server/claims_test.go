package server

import (
	"context"
	"fmt"
	"net/http"
	"strings"
	"testing"

	"github.com/hostcert/hostcert/common/protocol"
	"github.com/hostcert/hostcert/internal/pgtest"
	"github.com/hostcert/hostcert/primary/internal/admin"
)

// eachStore runs test against a real server on each store: SQLite in its
// data directory, and a database of a throwaway PostgreSQL cluster.
func eachStore(t *testing.T, test func(t *testing.T, e *env)) {
	t.Helper()
	t.Run("sqlite", func(t *testing.T) { test(t, newEnv(t, envOpts{})) })
	t.Run("postgres", func(t *testing.T) {
		dsn := pgtest.Start(t).CreateDatabase(t, "primary")
		test(t, newEnv(t, envOpts{store: dsn}))
	})
}

// mappingsOf lists the mappings of name, whoever holds or claims it.
func (e *env) mappingsOf(name string) []admin.Mapping {
	e.t.Helper()
	var ms, out []admin.Mapping
	e.call(admin.CmdMappingList, admin.MappingListArgs{}, &ms)
	for _, m := range ms {
		if m.Name == name {
			out = append(out, m)
		}
	}
	return out
}

// TestPendingClaimSquatting: a host cannot keep a name from the host it
// belongs to by claiming it first. Host a, renewing over mutual TLS with
// its certificate, asks for b.test (a host not enrolled yet): the claim is
// pending. b.test's own request is then a first issuance decided by the
// usual table — without a token at high, token_required for an issue, not
// reissue_token_required as if b.test were a's — and with a token it gets
// b.test as a new host ID. a's claim (and that of c, which claims it too:
// the admin must then say whose claim to approve) is gone, audited; the admin cannot
// approve it any more, and a asking again is name_conflict.
func TestPendingClaimSquatting(t *testing.T) { eachStore(t, testPendingClaimSquatting) }

func testPendingClaimSquatting(t *testing.T, e *env) {
	a := enrolled(t, e, "a.test")
	aID := pkiHostID(t, a)
	r, a2 := e.renewAsking(a, "b.test")
	if r.status != http.StatusOK || fmt.Sprint(r.cert.PendingNames) != "[b.test]" {
		t.Fatalf("a renewing asking for b.test = %v, want b.test pending", r)
	}

	// A second host claims it too: an admin must say whose claim is meant.
	c := enrolled(t, e, "c.test")
	if r, _ := e.renewAsking(c, "b.test"); r.status != http.StatusOK || fmt.Sprint(r.cert.PendingNames) != "[b.test]" {
		t.Fatalf("c renewing asking for b.test = %v, want b.test pending for c too", r)
	}
	err := e.admin.Call(context.Background(), admin.CmdMappingApprove, admin.MappingArgs{Name: "b.test"}, nil)
	if err == nil || !strings.Contains(err.Error(), "--host") {
		t.Errorf("approve b.test, claimed by two hosts, without --host: %v, want a refusal asking for --host", err)
	}

	e.setLevel(protocol.LevelHigh)
	e.dns.Set("b.test", loopback)
	b := newHost(t, "b.test")
	if r := e.enroll(b, "", "", false); r.status != http.StatusForbidden || r.err.Code != protocol.CodeTokenRequired ||
		r.err.Decision == nil || r.err.Decision.Kind != protocol.KindIssue {
		t.Errorf("b.test without a token at high = %v, want token_required for an issue (a's claim is not a's name)", r)
	}
	r = e.enroll(b, e.token("for-b", 1, ""), "", false)
	if r.status != http.StatusOK || r.cert.Decision.Kind != protocol.KindIssue || r.cert.HostID == aID ||
		fmt.Sprint(r.cert.Names) != "[b.test]" {
		t.Fatalf("b.test with a token = %v, want a first issuance of b.test for a new host ID", r)
	}
	bID := r.cert.HostID
	if ms := e.mappingsOf("b.test"); len(ms) != 1 || ms[0].HostID != bID || ms[0].State != "approved" {
		t.Errorf("mappings of b.test = %+v, want only b's, approved", ms)
	}
	dropped := map[string]bool{}
	var rows []admin.AuditEntry
	e.call(admin.CmdAudit, admin.AuditArgs{}, &rows)
	for _, row := range rows {
		if row.Action == "host.mapping.reject" && row.Name == "b.test" &&
			row.Detail["reason"] == "approved for another host" && row.Detail["approved_for"] == bID {
			dropped[row.HostID] = true
		}
	}
	if !dropped[aID] || !dropped[pkiHostID(t, c)] || len(dropped) != 2 {
		t.Errorf("audit rows dropping claims on b.test for %s = %v, want a's and c's", bID, dropped)
	}

	err = e.admin.Call(context.Background(), admin.CmdMappingApprove, admin.MappingArgs{Name: "b.test", Host: aID}, nil)
	if err == nil || !strings.Contains(err.Error(), "no pending mapping") {
		t.Errorf("approve a's claim on b.test after b's issuance: %v, want no pending mapping", err)
	}
	if r, _ := e.renewAsking(a2, "b.test"); r.status != http.StatusConflict || r.err.Code != protocol.CodeNameConflict {
		t.Errorf("a asking for b.test again = %v, want 409 name_conflict", r)
	}
	if ms := e.mappingsOf("b.test"); len(ms) != 1 || ms[0].HostID != bID {
		t.Errorf("mappings of b.test at the end = %+v, want only b's", ms)
	}
}

// TestPendingClaimCap: a host holds at most 16 pending claims. Renewing
// over mutual TLS, it claims 15 names (one request); a request that would
// leave it 17 is refused too_many_pending_names (409), audited, and
// writes nothing; one that leaves it 16 is granted.
func TestPendingClaimCap(t *testing.T) { eachStore(t, testPendingClaimCap) }

func testPendingClaimCap(t *testing.T, e *env) {
	h := enrolled(t, e, "greedy.test")
	var first []string
	for i := range 15 {
		first = append(first, fmt.Sprintf("sq%02d.test", i))
	}
	r, next := e.renewAsking(h, first...)
	if r.status != http.StatusOK || len(r.cert.PendingNames) != 15 {
		t.Fatalf("claiming 15 names = %v, want 15 pending", r)
	}
	r, _ = e.renewAsking(next, "sq15.test", "sq16.test")
	if r.status != http.StatusConflict || r.err.Code != protocol.CodeTooManyPendingNames || r.err.Decision == nil || r.err.Decision.Granted {
		t.Fatalf("claiming 2 more = %v, want 409 too_many_pending_names", r)
	}
	rows := e.audits("renew", "greedy.test")
	if last := rows[len(rows)-1]; last.Outcome != "refused" || last.Code != string(protocol.CodeTooManyPendingNames) {
		t.Errorf("audit of the refused renewal = %+v, want refused too_many_pending_names", last)
	}
	var ms []admin.Mapping
	e.call(admin.CmdMappingList, admin.MappingListArgs{Host: "greedy.test", Pending: true}, &ms)
	if len(ms) != 15 {
		t.Errorf("pending claims after the refusal = %d, want 15", len(ms))
	}
	if r, _ := e.renewAsking(next, "sq15.test"); r.status != http.StatusOK || len(r.cert.PendingNames) != 1 {
		t.Errorf("claiming a 16th name = %v, want granted, sq15.test pending", r)
	}
}
