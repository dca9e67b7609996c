package cli

import (
	"bytes"
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/rs/zerolog"

	"github.com/hostcert/hostcert/common/pki"
	"github.com/hostcert/hostcert/common/protocol"
	"github.com/hostcert/hostcert/primary/internal/admin"
	"github.com/hostcert/hostcert/primary/internal/ca"
	"github.com/hostcert/hostcert/primary/internal/server"
	"github.com/hostcert/hostcert/primary/internal/store"
)

// enrollOver enrolls name (asking also for more) with token over the real
// HTTPS API and returns the answer.
func enrollOver(t *testing.T, addr, dir, name, token string, more ...string) protocol.CertResponse {
	t.Helper()
	c, err := ca.Load(dir)
	if err != nil {
		t.Fatal(err)
	}
	roots := x509.NewCertPool()
	roots.AddCert(c.Certificate())
	key, err := pki.GenerateKey(pki.ECDSAP256)
	if err != nil {
		t.Fatal(err)
	}
	csr, err := pki.CreateCSR(key, name, more...)
	if err != nil {
		t.Fatal(err)
	}
	body, _ := json.Marshal(protocol.EnrollRequest{Name: name, CSR: string(csr), Token: token})
	hc := &http.Client{Timeout: 30 * time.Second, Transport: &http.Transport{TLSClientConfig: &tls.Config{RootCAs: roots, ServerName: "localhost"}}}
	resp, err := hc.Post("https://"+addr+protocol.PathEnroll, "application/json", bytes.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var cr protocol.CertResponse
	if resp.StatusCode != http.StatusOK || json.NewDecoder(resp.Body).Decode(&cr) != nil {
		t.Fatalf("enroll %s = %d, want 200", name, resp.StatusCode)
	}
	return cr
}

// TestMappingCommands runs `mapping` against a real server over its
// admin socket: list, approve, reject, add, remove, auto-approve, and the
// refusals (name_conflict, the last name, a name with no pending mapping).
func TestMappingCommands(t *testing.T) {
	dir := tempDir(t)
	mustRun(t, "init", "--data", dir, "--name", "localhost", "--key-alg", "ecdsa-p256")
	ctx, cancel := context.WithCancel(context.Background())
	srv, err := server.New(ctx, server.Config{DataDir: dir, Listen: "127.0.0.1:0", Log: zerolog.Nop()})
	if err != nil {
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() { done <- srv.Run(ctx) }()
	t.Cleanup(func() { cancel(); <-done })
	cmd := func(args ...string) []string { return append(args, "--data", dir) }

	tok := strings.TrimSpace(mustRun(t, cmd("token", "create", "--name", "fleet", "--max-uses", "3")...))
	web := enrollOver(t, srv.Addr().String(), dir, "web.test", tok, "web-alt.test", "web")
	db := enrollOver(t, srv.Addr().String(), dir, "db.test", tok)
	if len(web.Names) != 1 || web.Names[0] != "web.test" || strings.Join(web.PendingNames, " ") != "web-alt.test web" {
		t.Fatalf("enroll web.test asking for two more names = %v pending %v, want web.test, two pending", web.Names, web.PendingNames)
	}

	var ms []admin.Mapping
	decode(t, mustRun(t, cmd("mapping", "list", "--pending", "--json")...), &ms)
	if len(ms) != 2 || ms[0].HostID != web.HostID || ms[0].State != "pending" || ms[0].HostName != "web.test" {
		t.Fatalf("mapping list --pending = %+v, want web's two names", ms)
	}
	if out := mustRun(t, cmd("mapping", "list")...); !strings.Contains(out, "web-alt.test") || !strings.Contains(out, "pending") || !strings.Contains(out, "db.test") {
		t.Errorf("mapping list = %q", out)
	}
	if out := mustRun(t, cmd("mapping", "approve", "web-alt.test")...); !strings.Contains(out, "approved web-alt.test (host web.test") {
		t.Errorf("mapping approve = %q", out)
	}
	mustFail(t, "no pending mapping", cmd("mapping", "approve", "web-alt.test")...)
	mustRun(t, cmd("mapping", "reject", "web")...)
	mustFail(t, "no pending mapping", cmd("mapping", "reject", "web")...)

	// A name belongs to one host ID.
	mustFail(t, "name_conflict", cmd("mapping", "add", "web-alt.test", "db.test")...)
	mustFail(t, "name_conflict", cmd("mapping", "add", "web.test", db.HostID)...)
	var m admin.Mapping
	decode(t, mustRun(t, cmd("mapping", "add", "db-alt.test", db.HostID, "--json")...), &m)
	if m.HostID != db.HostID || m.State != "approved" || m.DecidedAt == nil {
		t.Errorf("mapping add --json = %+v, want approved for %s", m, db.HostID)
	}
	mustFail(t, "already an approved name", cmd("mapping", "add", "db-alt.test", "db.test")...)
	mustFail(t, "invalid host name", cmd("mapping", "add", "bad_name!", "db.test")...)
	// Reserved names are never mapped: the primary's name, loopback names,
	// addresses, token-like values.
	for _, n := range []string{"localhost", "x.localhost", "192.0.2.9", tok} {
		mustFail(t, "reserved host name", cmd("mapping", "add", n, "db.test")...)
	}

	// A rename: the main name removed, the host keeps its ID.
	mustRun(t, cmd("mapping", "remove", "db.test")...)
	var d admin.HostDetail
	decode(t, mustRun(t, cmd("host", "show", "db-alt.test", "--json")...), &d)
	if d.ID != db.HostID || d.Name != "db-alt.test" {
		t.Errorf("host show db-alt.test after the rename = %+v, want %s named db-alt.test", d.Host, db.HostID)
	}
	mustFail(t, "only approved name", cmd("mapping", "remove", "db-alt.test")...)
	mustFail(t, "mapped to no host", cmd("mapping", "remove", "db.test")...)
	decode(t, mustRun(t, cmd("mapping", "list", "--host", web.HostID, "--json")...), &ms)
	if len(ms) != 2 || ms[0].Name != "web-alt.test" || ms[1].Name != "web.test" {
		t.Errorf("mapping list --host web = %+v, want web-alt.test and web.test", ms)
	}

	// Auto-approve: off by default.
	if out := mustRun(t, cmd("mapping", "settings")...); out != "auto-approve off\n" {
		t.Errorf("auto-approve = %q, want off", out)
	}
	if out := mustRun(t, cmd("mapping", "auto-approve", "on")...); out != "auto-approve on\n" {
		t.Errorf("auto-approve on = %q", out)
	}
	mustFail(t, "want on or off", cmd("mapping", "auto-approve", "maybe")...)
	auto := enrollOver(t, srv.Addr().String(), dir, "auto.test", tok, "auto-alt.test")
	if strings.Join(auto.Names, " ") != "auto.test auto-alt.test" || len(auto.PendingNames) != 0 {
		t.Errorf("enroll with auto-approve on = %v pending %v, want both names in the certificate", auto.Names, auto.PendingNames)
	}

	var rows []admin.AuditEntry
	decode(t, mustRun(t, cmd("audit", "--json")...), &rows)
	seen := map[string]bool{}
	for _, r := range rows {
		seen[r.Action] = true
	}
	for _, a := range []string{admin.CmdMappingApprove, admin.CmdMappingReject, admin.CmdMappingAdd, admin.CmdMappingRemove, admin.CmdMappingAutoApprove} {
		if !seen[a] {
			t.Errorf("audit has no %s", a)
		}
	}
}

// TestHostMappingSpelling: the mappings are "host mapping list | approve |
// reject | add | remove" (the documented spelling, in host's help), and
// the top-level "mapping ..." still works as an alias, hidden from the
// root's help.
func TestHostMappingSpelling(t *testing.T) {
	_, cmd := startPrimary(t, func(dir string) {
		withStore(t, dir, func(st *store.Store) {
			is := seedHost(t, st, "seeded.test", time.Now().Add(365*24*time.Hour), time.Now())
			ask := is
			ask.Kind, ask.RenewedFrom, ask.Now = protocol.KindRenew, is.Cert.Serial, time.Now()
			ask.Cert.Serial += "01"
			ask.Claims = []string{"ask1.test", "ask2.test"}
			if err := st.CommitIssuance(context.Background(), ask); err != nil {
				t.Fatal(err)
			}
		})
	})
	var viaHost, viaAlias []admin.Mapping
	decode(t, mustRun(t, cmd("host", "mapping", "list", "--pending", "--json")...), &viaHost)
	decode(t, mustRun(t, cmd("mapping", "list", "--pending", "--json")...), &viaAlias)
	if len(viaHost) != 2 || viaHost[0].Name != "ask1.test" || len(viaAlias) != 2 || viaAlias[1].Name != viaHost[1].Name {
		t.Fatalf("host mapping list --pending = %+v, mapping list --pending = %+v, want ask1.test and ask2.test from both", viaHost, viaAlias)
	}
	mustRun(t, cmd("host", "mapping", "approve", "ask1.test")...)
	mustRun(t, cmd("mapping", "reject", "ask2.test")...)
	mustRun(t, cmd("host", "mapping", "add", "extra.test", "seeded.test")...)
	mustRun(t, cmd("host", "mapping", "remove", "extra.test")...)
	var all []admin.Mapping
	decode(t, mustRun(t, cmd("host", "mapping", "list", "--host", "seeded.test", "--json")...), &all)
	var names []string
	for _, m := range all {
		names = append(names, m.Name+":"+m.State)
	}
	if got := strings.Join(names, " "); got != "ask1.test:approved seeded.test:approved" {
		t.Errorf("host mapping list --host seeded.test = %s, want ask1.test:approved seeded.test:approved", got)
	}
	if out := mustRun(t, "host", "--help"); !strings.Contains(out, "mapping") {
		t.Errorf("host --help does not list mapping:\n%s", out)
	}
	if out := mustRun(t, "--help"); strings.Contains(out, "\n  mapping ") {
		t.Errorf("the root's help lists the mapping alias:\n%s", out)
	}
}
