package console_test

import (
	"crypto/tls"
	"encoding/json"
	"net/http"
	"net/url"
	"strings"
	"testing"
	"time"

	"github.com/hostcert/hostcert/common/pki"
	"github.com/hostcert/hostcert/common/protocol"
	"github.com/hostcert/hostcert/primary/primarytest"
)

// enrollAsking enrolls name with token, its CSR asking also for more.
func enrollAsking(t *testing.T, p *primarytest.Primary, name, token string, more ...string) protocol.CertResponse {
	t.Helper()
	key, err := pki.GenerateKey(pki.ECDSAP256)
	if err != nil {
		t.Fatal(err)
	}
	csr, err := pki.CreateCSR(key, name, more...)
	if err != nil {
		t.Fatal(err)
	}
	body, _ := json.Marshal(protocol.EnrollRequest{Name: name, CSR: string(csr), Token: token})
	c := &http.Client{Timeout: 20 * time.Second, Transport: &http.Transport{TLSClientConfig: &tls.Config{RootCAs: caPool(p), ServerName: "localhost"}}}
	resp, err := c.Post("https://"+p.Addr()+protocol.PathEnroll, "application/json", strings.NewReader(string(body)))
	if err != nil {
		t.Fatal(err)
	}
	a := read(t, resp)
	var cr protocol.CertResponse
	if a.status != http.StatusOK || json.Unmarshal([]byte(a.body), &cr) != nil {
		t.Fatalf("enroll %s = %d %s", name, a.status, a.body)
	}
	return cr
}

// TestPendingMappingsPage: the names hosts asked for are listed; an
// operator approves one and rejects another (each a POST with the CSRF
// token, audited with the operator's name); without the token nothing
// changes.
func TestPendingMappingsPage(t *testing.T) {
	p := start(t)
	cr := enrollAsking(t, p, "web.test", p.Token("t-web", 1), "web-alt.test", "web-other.test")
	if strings.Join(cr.PendingNames, " ") != "web-alt.test web-other.test" {
		t.Fatalf("enroll pending names = %v", cr.PendingNames)
	}
	c := browserish(t, p)
	link := p.ConsoleLogin("alice", "10m").URL
	tok := csrfOf(t, login(t, p, c, link).body)

	page := get(t, c, base(link)+"/mappings")
	if page.status != http.StatusOK || !strings.Contains(page.body, "web-alt.test") || !strings.Contains(page.body, "Approve web-alt.test for web.test") {
		t.Fatalf("GET /mappings = %d, want the pending names with their buttons: %s", page.status, page.body)
	}
	if a := post(t, c, base(link)+"/mappings/approve", url.Values{"name": {"web-alt.test"}}, nil); a.status != http.StatusForbidden {
		t.Errorf("approve without the CSRF token = %d, want 403", a.status)
	}
	if a := post(t, c, base(link)+"/mappings/approve", url.Values{"csrf": {tok}, "name": {"web-alt.test"}}, nil); a.status != http.StatusSeeOther {
		t.Fatalf("approve = %d: %s", a.status, a.body)
	}
	if a := post(t, c, base(link)+"/mappings/reject", url.Values{"csrf": {tok}, "name": {"web-other.test"}}, nil); a.status != http.StatusSeeOther {
		t.Fatalf("reject = %d: %s", a.status, a.body)
	}
	if a := post(t, c, base(link)+"/mappings/approve", url.Values{"csrf": {tok}, "name": {"web-other.test"}}, nil); a.status != http.StatusBadRequest || !strings.Contains(a.body, "no pending mapping") {
		t.Errorf("approve a rejected name = %d, want 400 no pending mapping", a.status)
	}
	page = get(t, c, base(link)+"/mappings?notice=approved")
	if !strings.Contains(page.body, "No names waiting.") || !strings.Contains(page.body, "approved") || strings.Contains(page.body, "web-other.test") {
		t.Errorf("GET /mappings after the decisions: %s", page.body)
	}
	want := map[string]bool{"mapping.approve": false, "mapping.reject": false}
	for _, e := range p.Audit() {
		if _, ok := want[e.Action]; ok && e.Outcome == "ok" {
			if e.Actor != "console:alice" {
				t.Errorf("audit %s actor = %q, want console:alice", e.Action, e.Actor)
			}
			want[e.Action] = true
		}
	}
	for a, seen := range want {
		if !seen {
			t.Errorf("no audit row %s", a)
		}
	}
}

// TestMappingClaimedByTwoHosts: when two hosts claim one name, each
// pending row's buttons name its host, so the operator approves the name
// for the host of the row (the other claim is dropped); without the host
// the decision would be ambiguous and refused.
func TestMappingClaimedByTwoHosts(t *testing.T) {
	p := start(t)
	one := enrollAsking(t, p, "web1.test", p.Token("t-1", 1), "shared.test")
	two := enrollAsking(t, p, "web2.test", p.Token("t-2", 1), "shared.test")
	c := browserish(t, p)
	link := p.ConsoleLogin("alice", "10m").URL
	tok := csrfOf(t, login(t, p, c, link).body)
	page := get(t, c, base(link)+"/mappings")
	for _, cr := range []protocol.CertResponse{one, two} {
		if !strings.Contains(page.body, `name="host" value="`+cr.HostID+`"`) {
			t.Fatalf("GET /mappings has no button for the claim of host %s: %s", cr.HostID, page.body)
		}
	}
	if a := post(t, c, base(link)+"/mappings/approve", url.Values{"csrf": {tok}, "name": {"shared.test"}, "host": {two.HostID}}, nil); a.status != http.StatusSeeOther {
		t.Fatalf("approve shared.test for web2 = %d: %s", a.status, a.body)
	}
	page = get(t, c, base(link)+"/mappings")
	if !strings.Contains(page.body, "No names waiting.") {
		t.Errorf("GET /mappings after approving: web1's claim is still pending: %s", page.body)
	}
	held := false
	for _, e := range p.Audit() {
		if e.Action == "mapping.approve" && e.Outcome == "ok" && e.HostID == two.HostID {
			held = true
		}
	}
	if !held {
		t.Errorf("no audit row approving shared.test for %s", two.HostID)
	}
}
