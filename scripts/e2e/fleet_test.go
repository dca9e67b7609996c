//go:build linux

package e2e

import (
	"bytes"
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"encoding/pem"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/hostcert/hostcert/common/protocol"
	"github.com/hostcert/hostcert/internal/dnstest"
	"github.com/hostcert/hostcert/internal/nettest"
	"github.com/hostcert/hostcert/internal/pgtest"
)

// Several primary nodes on one PostgreSQL database (issue 10, items 4-6):
// node 1 made by `init --store-file`, node 2 by `join` with a copy of node
// 1's CA files; both `serve` without --store (the store recorded in the
// data directory), as real processes.

// nodeNames are the nodes' own names (TLS certificate, audit log).
var nodeNames = [2]string{"node1.hostcert.test", "node2.hostcert.test"}

// fleet is two nodes on one database.
type fleet struct {
	t       testing.TB
	dsn     string
	nodes   [2]*primaryProc
	clients [2]*apiClient
}

var fleetDBs atomic.Int64

// newFleet starts node 1 (init) and node 2 (join) on a new database of c.
// node2Via, when set, rewrites node 2's DSN to reach the database through
// that address (a fault proxy).
func newFleet(t testing.TB, c *pgtest.Cluster, node2Via string) *fleet {
	t.Helper()
	f := &fleet{t: t, dsn: c.CreateDatabase(t, fmt.Sprintf("fleet_%d", fleetDBs.Add(1)))}
	dir := t.TempDir()
	dsnFile := writeDSN(t, filepath.Join(dir, "node1.dsn"), f.dsn)
	dns := dnstest.New(t, nil)
	f.nodes[0] = newPrimary(t, primaryOpts{
		dnsServer: dns.Addr(),
		names:     []string{nodeNames[0]},
		initExtra: []string{"--store-file", dsnFile, "--node-name", nodeNames[0]},
	})

	// The operator copies node 1's CA files to node 2 (scp -p …).
	copyDir := filepath.Join(dir, "ca-copy")
	if err := os.Mkdir(copyDir, 0o700); err != nil {
		t.Fatal(err)
	}
	entries, err := os.ReadDir(filepath.Join(f.nodes[0].data, "ca"))
	if err != nil {
		t.Fatal(err)
	}
	for _, e := range entries {
		name := e.Name()
		b, err := os.ReadFile(filepath.Join(f.nodes[0].data, "ca", name))
		if err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(filepath.Join(copyDir, name), b, 0o600); err != nil {
			t.Fatal(err)
		}
	}
	dsn2 := f.dsn
	if node2Via != "" {
		u, err := url.Parse(f.dsn)
		if err != nil {
			t.Fatal(err)
		}
		u.Host = node2Via
		dsn2 = u.String()
	}
	dsnFile2 := writeDSN(t, filepath.Join(dir, "node2.dsn"), dsn2)
	pr := &primaryProc{t: t, data: filepath.Join(dir, "node2"), listen: freePort(t, "127.0.0.1"),
		fingerprint: f.nodes[0].fingerprint, caPEM: f.nodes[0].caPEM}
	var res struct {
		Node        string `json:"node"`
		Fingerprint string `json:"fingerprint"`
	}
	out := mustRun(t, "", bins.primary, "join", "--data", pr.data, "--ca-from", copyDir, "--store-file", dsnFile2,
		"--name", nodeNames[1], "--service-name", primaryName, "--json")
	if err := json.Unmarshal([]byte(out), &res); err != nil || res.Fingerprint != pr.fingerprint || res.Node != nodeNames[1] {
		t.Fatalf("join --json printed %q (%v), want node %s and fingerprint %s", out, err, nodeNames[1], pr.fingerprint)
	}
	pr.serveArgs = []string{"serve", "--data", pr.data, "--listen", pr.listen, "--console", "", "--log-format", "json", "--dns-server", dns.Addr()}
	pr.start()
	f.nodes[1] = pr
	for i, n := range f.nodes {
		if !strings.Contains(n.p.output(), `"store":"postgres"`) {
			t.Fatalf("node %d does not serve from PostgreSQL:\n%s", i+1, n.p.output())
		}
		f.clients[i] = newAPIClient(t, n.listen, primaryName, n.caPEM, false)
	}
	return f
}

func writeDSN(t testing.TB, path, dsn string) string {
	t.Helper()
	if err := os.WriteFile(path, []byte(dsn+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	return path
}

// query runs one query on the fleet's database.
func (f *fleet) query(sql string, args []any, dest ...any) {
	f.t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	conn, err := pgx.Connect(ctx, f.dsn)
	if err != nil {
		f.t.Fatal(err)
	}
	defer conn.Close(ctx)
	if err := conn.QueryRow(ctx, sql, args...).Scan(dest...); err != nil {
		f.t.Fatalf("%s: %v", sql, err)
	}
}

// dbCerts is every serial in the certs table.
func (f *fleet) dbCerts() map[string]bool {
	f.t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	conn, err := pgx.Connect(ctx, f.dsn)
	if err != nil {
		f.t.Fatal(err)
	}
	defer conn.Close(ctx)
	rows, err := conn.Query(ctx, "SELECT serial FROM certs")
	if err != nil {
		f.t.Fatal(err)
	}
	out := map[string]bool{}
	for rows.Next() {
		var s string
		if err := rows.Scan(&s); err != nil {
			f.t.Fatal(err)
		}
		out[s] = true
	}
	if err := rows.Err(); err != nil {
		f.t.Fatal(err)
	}
	return out
}

// checkTokens: for every token, its use count equals the certificates it
// authorised and stays within its maximum; every certificate has the audit
// row of its decision (nothing half-written).
func (f *fleet) checkLedger() {
	f.t.Helper()
	var bad, orphans int
	f.query(`SELECT COUNT(*) FROM tokens t WHERE t.uses > t.max_uses
		OR t.uses <> (SELECT COUNT(*) FROM certs c WHERE c.token_name = t.name)`, nil, &bad)
	if bad != 0 {
		f.t.Errorf("%d tokens whose use count differs from their certificates or exceeds their maximum", bad)
	}
	f.query(`SELECT COUNT(*) FROM certs c WHERE NOT EXISTS
		(SELECT 1 FROM audit a WHERE a.outcome = 'granted' AND a.detail::jsonb->>'serial' = c.serial)`, nil, &orphans)
	if orphans != 0 {
		f.t.Errorf("%d certificates without the audit row of their decision", orphans)
	}
}

// answer is one API answer as a client sees it.
type answer struct {
	status     int
	retryAfter string
	code       protocol.Code
	cert       *protocol.CertResponse
}

// post enrolls through c and keeps the status and Retry-After.
func (c *apiClient) post(ctx context.Context, req protocol.EnrollRequest) (answer, error) {
	body, _ := json.Marshal(req)
	hreq, err := http.NewRequestWithContext(ctx, http.MethodPost, c.base+protocol.PathEnroll, bytes.NewReader(body))
	if err != nil {
		return answer{}, err
	}
	hreq.Header.Set("Content-Type", "application/json")
	resp, err := c.http.Do(hreq)
	if err != nil {
		return answer{}, err
	}
	defer resp.Body.Close()
	data, err := io.ReadAll(io.LimitReader(resp.Body, 1<<20))
	if err != nil {
		return answer{}, err
	}
	a := answer{status: resp.StatusCode, retryAfter: resp.Header.Get("Retry-After")}
	if resp.StatusCode != http.StatusOK {
		var pe protocol.Error
		if err := json.Unmarshal(data, &pe); err != nil {
			return a, fmt.Errorf("HTTP %d: %s", resp.StatusCode, data)
		}
		a.code = pe.Code
		return a, nil
	}
	a.cert = new(protocol.CertResponse)
	return a, json.Unmarshal(data, a.cert)
}

// get is a GET of path; it returns the status and the body.
func (c *apiClient) get(path string) (int, []byte, error) {
	req, _ := http.NewRequest(http.MethodGet, c.base+path, nil)
	req.Header.Set("Accept", "application/x-pem-file")
	resp, err := c.http.Do(req)
	if err != nil {
		return 0, nil, err
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(io.LimitReader(resp.Body, 8<<20))
	return resp.StatusCode, b, err
}

// crl fetches and parses the node's served CRL.
func (c *apiClient) crl(t testing.TB) *x509.RevocationList {
	t.Helper()
	status, b, err := c.get(protocol.PathCRL)
	if err != nil || status != http.StatusOK {
		t.Fatalf("GET %s = %d, %v", protocol.PathCRL, status, err)
	}
	block, _ := pem.Decode(b)
	if block == nil {
		t.Fatalf("CRL is not PEM: %q", b)
	}
	l, err := x509.ParseRevocationList(block.Bytes)
	if err != nil {
		t.Fatal(err)
	}
	return l
}

func lists(l *x509.RevocationList, serial string) bool {
	for _, e := range l.RevokedCertificateEntries {
		if strings.EqualFold(fmt.Sprintf("%X", e.SerialNumber), serial) {
			return true
		}
	}
	return false
}

// enrollOK enrolls name with tok through node i and fails the test otherwise.
func (f *fleet) enrollOK(i int, name, tok string) *protocol.CertResponse {
	f.t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	a, err := f.clients[i].post(ctx, protocol.EnrollRequest{Name: name, CSR: csrFor(f.t, name), Token: tok})
	if err != nil || a.cert == nil {
		f.t.Fatalf("enroll %s on node %d = %+v, %v, want a certificate", name, i+1, a, err)
	}
	return a.cert
}

// TestFleetOneTruth: two nodes serve one fleet exactly as one would.
func TestFleetOneTruth(t *testing.T) {
	if testing.Short() {
		t.Skip("end-to-end: builds and runs the programs")
	}
	f := newFleet(t, pgtest.Shared(t), "")

	// join gave node 2 its own certificate for the service and its own name.
	conn, err := tls.Dial("tcp", f.nodes[1].listen, f.clients[1].http.Transport.(*http.Transport).TLSClientConfig)
	if err != nil {
		t.Fatalf("TLS to node 2 as %s: %v", primaryName, err)
	}
	leaf := conn.ConnectionState().PeerCertificates[0]
	conn.Close()
	if !slices.Contains(leaf.DNSNames, nodeNames[1]) || !slices.Contains(leaf.DNSNames, primaryName) {
		t.Errorf("node 2's certificate names %v, want %s and %s", leaf.DNSNames, primaryName, nodeNames[1])
	}
	if _, err := os.Stat(filepath.Join(f.nodes[1].data, "primary.db")); err == nil {
		t.Error("node 2 created a SQLite database although its store is PostgreSQL")
	}

	// The database belongs to node 1's CA: a second init on it, or a join
	// with another CA's files, is refused and leaves no CA behind.
	dsnFile := writeDSN(t, filepath.Join(t.TempDir(), "dsn"), f.dsn)
	other := filepath.Join(t.TempDir(), "other")
	r := run(t, "", bins.primary, "init", "--data", other, "--name", "other.hostcert.test", "--store-file", dsnFile)
	if r.code == 0 || !strings.Contains(r.stderr, "already serves the fleet of CA "+f.nodes[0].fingerprint) {
		t.Errorf("a second init on the fleet's database: %s, want a refusal naming the fleet's CA", r)
	}
	if _, err := os.Stat(filepath.Join(other, "ca", "ca.pem")); err == nil {
		t.Error("the refused init left a CA behind")
	}
	foreign := filepath.Join(t.TempDir(), "foreign")
	mustRun(t, "", bins.primary, "init", "--data", foreign, "--name", "foreign.hostcert.test")
	r = run(t, "", bins.primary, "join", "--data", filepath.Join(t.TempDir(), "node3"), "--ca-from", filepath.Join(foreign, "ca"),
		"--store-file", dsnFile, "--name", "node3.hostcert.test", "--service-name", primaryName)
	if r.code == 0 || !strings.Contains(r.stderr, "belongs to another CA") {
		t.Errorf("join with another CA's files: %s, want a refusal", r)
	}

	t.Run("token race over two nodes", func(t *testing.T) { f.race(t, 20, 50, 5) })
	t.Run("changes effective on every node within 1s", func(t *testing.T) { f.changes(t) })
	t.Run("revocations in every node's CRL within 5s", func(t *testing.T) { f.revocations(t) })
	f.checkLedger()
}

// race: rounds times, n concurrent redeemers of a token with maxUses uses,
// split over both nodes, get exactly maxUses certificates; serials are
// unique; the audit log names the node that decided each issuance.
func (f *fleet) race(t *testing.T, rounds, n, maxUses int) {
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	serials := map[string]int{} // serial -> node index that issued it
	for r := range rounds {
		tok := strings.TrimSpace(f.nodes[r%2].admin("token", "create", "--name", fmt.Sprintf("race-%d", r), "--max-uses", fmt.Sprint(maxUses)))
		reqs := make([]protocol.EnrollRequest, n)
		for i := range reqs {
			name := fmt.Sprintf("r%d-%d.race.test", r, i)
			reqs[i] = protocol.EnrollRequest{Name: name, CSR: csrFor(t, name), Token: tok}
		}
		var (
			wg      sync.WaitGroup
			start   = make(chan struct{})
			answers = make([]answer, n)
			errs    = make([]error, n)
		)
		for i := range n {
			wg.Add(1)
			go func() {
				defer wg.Done()
				<-start
				answers[i], errs[i] = f.clients[i%2].post(ctx, reqs[i])
			}()
		}
		close(start)
		wg.Wait()
		granted := 0
		for i, a := range answers {
			switch {
			case errs[i] != nil:
				t.Fatalf("round %d: enroll %s: %v", r, reqs[i].Name, errs[i])
			case a.cert != nil:
				granted++
				if prev, dup := serials[a.cert.Serial]; dup {
					t.Fatalf("round %d: serial %s issued twice (nodes %d and %d)", r, a.cert.Serial, prev+1, i%2+1)
				}
				serials[a.cert.Serial] = i % 2
			case a.code != protocol.CodeTokenInvalid:
				t.Fatalf("round %d: enroll %s = HTTP %d %s, want a certificate or token_invalid", r, reqs[i].Name, a.status, a.code)
			}
		}
		var inDB, uses int
		f.query("SELECT COUNT(*) FROM certs WHERE token_name = $1", []any{fmt.Sprintf("race-%d", r)}, &inDB)
		f.query("SELECT uses FROM tokens WHERE name = $1", []any{fmt.Sprintf("race-%d", r)}, &uses)
		if granted != maxUses || inDB != maxUses || uses != maxUses {
			t.Fatalf("round %d: %d granted, %d certificates in the database, token used %d times; want %d each", r, granted, inDB, uses, maxUses)
		}
	}
	// One audit log: each issuance's row names the node that decided it.
	var entries []struct {
		Action string         `json:"action"`
		Node   string         `json:"node"`
		Detail map[string]any `json:"detail"`
	}
	f.nodes[0].adminJSON(&entries, "audit")
	seen := 0
	for _, e := range entries {
		serial, _ := e.Detail["serial"].(string)
		node, ok := serials[serial]
		if e.Action != "issue" || !ok {
			continue
		}
		seen++
		if e.Node != nodeNames[node] {
			t.Errorf("audit row of %s names node %q, want %q (the node that issued it)", serial, e.Node, nodeNames[node])
		}
	}
	if seen != len(serials) {
		t.Errorf("node 1's audit log shows %d of the %d issuances of both nodes", seen, len(serials))
	}
}

// within polls check every 20 ms until it holds or limit passes, and
// returns how long it took.
func within(t testing.TB, what string, limit time.Duration, check func() bool) time.Duration {
	t.Helper()
	start := time.Now()
	for {
		if check() {
			return time.Since(start)
		}
		if time.Since(start) > limit {
			t.Fatalf("%s: not effective within %v", what, limit)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// changes: a level change, a new token and a registry change made on one
// node are effective on the other within a second.
func (f *fleet) changes(t *testing.T) {
	level := func(i int) string {
		var li struct {
			Level string `json:"level"`
		}
		f.nodes[i].adminJSON(&li, "level", "get")
		return li.Level
	}
	// Node 2 has the level cached; node 1 changes it.
	for _, want := range []string{"medium", "very-high", "high"} {
		if got := level(1); got == want {
			t.Fatalf("level on node 2 is already %s", got)
		}
		f.nodes[0].admin("level", "set", want)
		took := within(t, "level "+want+" on node 2", time.Second, func() bool { return level(1) == want })
		t.Logf("level %s reached node 2 after %v", want, took)
	}

	// A token made on node 1 is good on node 2 at once.
	tok := strings.TrimSpace(f.nodes[0].admin("token", "create", "--name", "fresh"))
	start := time.Now()
	f.enrollOK(1, "fresh.fleet.test", tok)
	if took := time.Since(start); took > time.Second {
		t.Errorf("a token created on node 1 took %v to issue on node 2, want < 1s", took)
	}

	// A name added on node 2 is known on node 1.
	known := func() bool {
		var d protocol.Decision
		f.nodes[0].adminJSON(&d, "explain", "reg.fleet.test", "--from", "127.0.0.1")
		return d.Known
	}
	if known() {
		t.Fatal("reg.fleet.test is known before it was added")
	}
	f.nodes[1].admin("host", "add", "reg.fleet.test")
	within(t, "host add on node 2 seen by node 1", time.Second, known)
}

// revocations: a reissue on node 1 revokes node 2's certificate, and a
// revocation on node 1 of a certificate node 2 issued, and both are in
// both nodes' CRLs within 5 s; CRL numbers only grow.
func (f *fleet) revocations(t *testing.T) {
	seen := map[string][]byte{} // CRL number -> DER: one number, one CRL, fleet-wide
	var last [2]int64
	fetch := func(i int) *x509.RevocationList {
		l := f.clients[i].crl(t)
		num := l.Number.String()
		if prev, ok := seen[num]; ok && !bytes.Equal(prev, l.Raw) {
			t.Fatalf("two different CRLs carry number %s", num)
		}
		seen[num] = l.Raw
		if l.Number.Int64() < last[i] {
			t.Fatalf("node %d's CRL number went down: %d after %d", i+1, l.Number.Int64(), last[i])
		}
		last[i] = l.Number.Int64()
		return l
	}
	inBoth := func(what, serial string) {
		for i := range f.nodes {
			took := within(t, fmt.Sprintf("%s in node %d's CRL", what, i+1), 5*time.Second, func() bool { return lists(fetch(i), serial) })
			t.Logf("%s in node %d's CRL after %v", what, i+1, took)
		}
	}
	before := [2]int64{fetch(0).Number.Int64(), fetch(1).Number.Int64()}

	// Issued by node 2, reissued through node 1: node 2's certificate is superseded everywhere.
	tok := strings.TrimSpace(f.nodes[1].admin("token", "create", "--name", "first"))
	old := f.enrollOK(1, "re.fleet.test", tok)
	retok := strings.TrimSpace(f.nodes[1].admin("token", "create", "--name", "again", "--reissue-host", "re.fleet.test"))
	nu := f.enrollOK(0, "re.fleet.test", retok)
	if nu.HostID != old.HostID || nu.Serial == old.Serial {
		t.Fatalf("reissue on node 1 = host %s serial %s, want host %s and a new serial", nu.HostID, nu.Serial, old.HostID)
	}
	inBoth("the certificate a reissue superseded", old.Serial)

	// Issued by node 2, revoked on node 1.
	tok = strings.TrimSpace(f.nodes[1].admin("token", "create", "--name", "victim"))
	victim := f.enrollOK(1, "victim.fleet.test", tok)
	f.nodes[0].admin("cert", "revoke", "victim.fleet.test", "--reason", "key-compromise")
	inBoth("a revocation made on node 1", victim.Serial)

	for i := range last {
		if last[i] <= before[0] || last[i] <= before[1] {
			t.Errorf("node %d's CRL number %d is not above the numbers served before the revocations %v", i+1, last[i], before)
		}
	}
}

// TestFleetDatabaseRestart: PostgreSQL stops and starts again in the
// middle of an enrollment burst over both nodes. Requests either get a
// certificate, a token refusal, or 503 store_unavailable with Retry-After;
// nothing is half-written; both nodes serve again without a restart.
func TestFleetDatabaseRestart(t *testing.T) {
	if testing.Short() {
		t.Skip("end-to-end: builds and runs the programs")
	}
	c := pgtest.Start(t) // stopped below: its own cluster
	f := newFleet(t, c, "")
	tok := strings.TrimSpace(f.nodes[0].admin("token", "create", "--name", "burst", "--max-uses", "150"))

	var (
		received sync.Map // serial -> name
		unavail  atomic.Int64
		granted  atomic.Int64
		stop     = make(chan struct{})
		wg       sync.WaitGroup
	)
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	for w := range 8 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := 0; ; i++ {
				select {
				case <-stop:
					return
				default:
				}
				name := fmt.Sprintf("w%d-%d.restart.test", w, i)
				a, err := f.clients[(w+i)%2].post(ctx, protocol.EnrollRequest{Name: name, CSR: csrFor(t, name), Token: tok})
				switch {
				case err != nil:
					t.Errorf("enroll %s: %v (a node must answer, not drop the request)", name, err)
					return
				case a.cert != nil:
					granted.Add(1)
					received.Store(a.cert.Serial, name)
				case a.status == http.StatusServiceUnavailable && a.code == protocol.CodeStoreUnavailable:
					unavail.Add(1)
					if a.retryAfter == "" {
						t.Errorf("503 store_unavailable for %s without Retry-After", name)
					}
					time.Sleep(50 * time.Millisecond)
				case a.code == protocol.CodeTokenInvalid:
				default:
					t.Errorf("enroll %s = HTTP %d %s, want a certificate, token_invalid or 503 store_unavailable", name, a.status, a.code)
				}
			}
		}()
	}
	waitFor := func(what string, cond func() bool) {
		t.Helper()
		deadline := time.Now().Add(30 * time.Second)
		for !cond() {
			if time.Now().After(deadline) {
				t.Fatalf("%s: not within 30s", what)
			}
			time.Sleep(20 * time.Millisecond)
		}
	}
	waitFor("first certificates", func() bool { return granted.Load() >= 10 })
	c.Crash(t)
	waitFor("503 store_unavailable while the database is down", func() bool { return unavail.Load() >= 4 })
	for i := range f.clients {
		if status, _, err := f.clients[i].get(protocol.PathReadyz); err != nil || status != http.StatusServiceUnavailable {
			t.Errorf("node %d /readyz with the database down = %d, %v, want 503", i+1, status, err)
		}
	}
	c.Restart(t)
	after := granted.Load()
	waitFor("certificates again after the restart", func() bool { return granted.Load() >= after+10 })
	close(stop)
	wg.Wait()

	for i := range f.clients {
		if status, _, err := f.clients[i].get(protocol.PathReadyz); err != nil || status != http.StatusOK {
			t.Errorf("node %d /readyz after the restart = %d, %v, want 200", i+1, status, err)
		}
		f.enrollOK(i, fmt.Sprintf("after-%d.restart.test", i), strings.TrimSpace(f.nodes[i].admin("token", "create", "--name", fmt.Sprintf("after-%d", i))))
	}
	inDB := f.dbCerts()
	received.Range(func(k, v any) bool {
		if !inDB[k.(string)] {
			t.Errorf("certificate %s of %s was received but is not in the database", k, v)
		}
		return true
	})
	f.checkLedger()
	t.Logf("%d certificates, %d answers 503 store_unavailable", granted.Load(), unavail.Load())
}

// TestFleetNodeKilled: one node is SIGKILLed in the middle of a burst while
// clients fail over to the other: every certificate a client received is
// in the database, no serial repeats, no token is over-used, and the other
// node keeps issuing.
func TestFleetNodeKilled(t *testing.T) {
	if testing.Short() {
		t.Skip("end-to-end: builds and runs the programs")
	}
	f := newFleet(t, pgtest.Shared(t), "")
	const maxUses = 120
	tok := strings.TrimSpace(f.nodes[1].admin("token", "create", "--name", "burst", "--max-uses", fmt.Sprint(maxUses)))
	var (
		mu          sync.Mutex
		received    = map[string]string{}
		afterKill   int
		killed      atomic.Bool
		failedOver  atomic.Int64
		wg          sync.WaitGroup
		next        atomic.Int64
		total       = 200
		ctx, cancel = context.WithTimeout(context.Background(), time.Minute)
	)
	defer cancel()
	for w := range 8 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for {
				i := int(next.Add(1)) - 1
				if i >= total {
					return
				}
				name := fmt.Sprintf("k%d.kill.test", i)
				req := protocol.EnrollRequest{Name: name, CSR: csrFor(t, name), Token: tok}
				// The client tries its node, then fails over to the other.
				var a answer
				var err error
				for try, node := 0, (w+i)%2; try < 2; try, node = try+1, 1-node {
					if a, err = f.clients[node].post(ctx, req); err == nil {
						break
					}
					failedOver.Add(1)
				}
				switch {
				case err != nil:
					t.Errorf("enroll %s on both nodes: %v", name, err)
					return
				case a.cert != nil:
					mu.Lock()
					if other, dup := received[a.cert.Serial]; dup {
						t.Errorf("serial %s issued twice (%s and %s)", a.cert.Serial, other, name)
					}
					received[a.cert.Serial] = name
					if killed.Load() {
						afterKill++
					}
					mu.Unlock()
				case a.code != protocol.CodeTokenInvalid:
					t.Errorf("enroll %s = HTTP %d %s, want a certificate or token_invalid", name, a.status, a.code)
				}
			}
		}()
	}
	for next.Load() < 40 {
		time.Sleep(5 * time.Millisecond)
	}
	f.nodes[0].p.kill()
	killed.Store(true)
	wg.Wait()

	mu.Lock()
	defer mu.Unlock()
	if len(received) > maxUses {
		t.Errorf("%d certificates for a token of %d uses", len(received), maxUses)
	}
	if afterKill == 0 {
		t.Error("no certificate was issued after node 1 was killed: node 2 did not keep serving")
	}
	inDB := f.dbCerts()
	for s, name := range received {
		if !inDB[s] {
			t.Errorf("certificate %s of %s was received but is not in the database", s, name)
		}
	}
	f.checkLedger()
	t.Logf("%d certificates, %d after the kill, %d fail-overs", len(received), afterKill, failedOver.Load())
}

// TestFleetNodeCutOff: node 2 loses its network path to PostgreSQL (a
// proxy that drops every byte). It refuses to issue (503
// store_unavailable, fails closed) and /readyz says 503, while node 1 keeps
// issuing; when the path heals node 2 serves again by itself.
func TestFleetNodeCutOff(t *testing.T) {
	if testing.Short() {
		t.Skip("end-to-end: builds and runs the programs")
	}
	c := pgtest.Shared(t)
	toxi, err := nettest.NewToxi(fmt.Sprintf("127.0.0.1:%d", c.Port))
	if err != nil {
		t.Fatal(err)
	}
	defer toxi.Close()
	f := newFleet(t, c, toxi.Addr())
	tok := strings.TrimSpace(f.nodes[0].admin("token", "create", "--name", "cut", "--max-uses", "10"))
	f.enrollOK(1, "before.cut.test", tok)

	if err := toxi.BlackHole(); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	start := time.Now()
	a, err := f.clients[1].post(ctx, protocol.EnrollRequest{Name: "during.cut.test", CSR: csrFor(t, "during.cut.test"), Token: tok})
	if err != nil || a.status != http.StatusServiceUnavailable || a.code != protocol.CodeStoreUnavailable || a.retryAfter == "" {
		t.Fatalf("enroll on the cut-off node = %+v, %v, want 503 store_unavailable with Retry-After", a, err)
	}
	if took := time.Since(start); took > 10*time.Second {
		t.Errorf("the cut-off node took %v to refuse, want < 10s (its reads are bounded)", took)
	}
	if status, _, err := f.clients[1].get(protocol.PathReadyz); err != nil || status != http.StatusServiceUnavailable {
		t.Errorf("cut-off node /readyz = %d, %v, want 503", status, err)
	}
	if status, _, err := f.clients[0].get(protocol.PathReadyz); err != nil || status != http.StatusOK {
		t.Errorf("node 1 /readyz while node 2 is cut off = %d, %v, want 200", status, err)
	}
	f.enrollOK(0, "other.cut.test", tok)

	if err := toxi.Heal(); err != nil {
		t.Fatal(err)
	}
	within(t, "node 2 ready after the path healed", 30*time.Second, func() bool {
		status, _, err := f.clients[1].get(protocol.PathReadyz)
		return err == nil && status == http.StatusOK
	})
	f.enrollOK(1, "after.cut.test", tok)
	var uses, certs int
	f.query("SELECT uses FROM tokens WHERE name = 'cut'", nil, &uses)
	f.query("SELECT COUNT(*) FROM certs WHERE token_name = 'cut'", nil, &certs)
	if uses != 3 || certs != 3 {
		t.Errorf("token cut: %d uses, %d certificates, want 3 and 3 (nothing issued by the cut-off node)", uses, certs)
	}
	f.checkLedger()
}
