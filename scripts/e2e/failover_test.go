//go:build linux

package e2e

import (
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/hostcert/hostcert/internal/pgtest"
)

// joinPrimary starts a second primary node on first's PostgreSQL database
// as an operator would (README, "High availability"): first's CA files
// copied, `hostcert-primary join`, then serve.
func joinPrimary(t *testing.T, first *primaryProc, dsn string) *primaryProc {
	t.Helper()
	pr := &primaryProc{t: t, data: filepath.Join(t.TempDir(), "primary-b"), listen: freePort(t, "127.0.0.1"),
		fingerprint: first.fingerprint, caPEM: first.caPEM}
	copyDir := filepath.Join(t.TempDir(), "ca-copy")
	if out, err := exec.Command("cp", "-a", filepath.Join(first.data, "ca"), copyDir).CombinedOutput(); err != nil {
		t.Fatalf("copy the CA files: %v: %s", err, out)
	}
	mustRun(t, "", bins.primary, "join", "--data", pr.data, "--ca-from", copyDir, "--store", dsn,
		"--name", "primary-b.hostcert.test", "--service-name", primaryName)
	pr.serveArgs = []string{"serve", "--data", pr.data, "--listen", pr.listen, "--console", "", "--log-format", "json", "--store", dsn}
	pr.start()
	return pr
}

// TestTunnelFailsOverBetweenPrimaries: two primary nodes on one PostgreSQL
// database, a tunnel whose one allowed target has both as upstreams, and a
// DMZ agent that reaches the primary only through the tunnel. The agent
// enrolls through the tunnel (on the first node); the first node is killed;
// `renew` goes through the same tunnel, which fails over to the second
// node, and the renewal completes there. All real processes.
func TestTunnelFailsOverBetweenPrimaries(t *testing.T) {
	if testing.Short() {
		t.Skip("end-to-end: builds and runs the three programs")
	}
	dsn := pgtest.Start(t).CreateDatabase(t, "fleet")
	nodeA := newPrimary(t, primaryOpts{initExtra: []string{"--store", dsn}, extra: []string{"--store", dsn}})
	nodeB := joinPrimary(t, nodeA, dsn)

	target := primaryName + ":1556"
	tunAddr := freePort(t, "127.0.0.1")
	tun := start(t, "tunnel", "", bins.tunnel, "run", "--listen", tunAddr,
		"--allow", target+"="+nodeA.listen+","+nodeB.listen, "--log-format", "json")
	tun.waitFor(t, "listening", 20*time.Second)

	tok := strings.TrimSpace(nodeA.admin("token", "create", "--name", "failover-e2e"))
	// Direct is refused at once (primary_dial to a closed port): the DMZ host
	// reaches the primary only through the tunnel.
	a := newAgentHost(t, "dmz.failover.test", target, "primary_dial: 127.0.0.1:1", "tunnels: ["+tunAddr+"]", "dial_timeout: 3s")
	a.must("get-ca-cert", "--fingerprint", nodeA.fingerprint)
	a.must("get-cert", "--token", tok)
	first := a.status()
	if !first.Enrolled || first.State.Route != "tunnel "+tunAddr {
		t.Fatalf("status after get-cert = %+v, want enrolled through tunnel %s", first, tunAddr)
	}
	if !strings.Contains(nodeA.p.output(), `"certificate issued"`) {
		t.Fatalf("the first node did not issue the certificate:\n%s", nodeA.p.output())
	}

	nodeA.p.kill()
	a.must("renew")
	renewed := a.status()
	if renewed.Serial == first.Serial || renewed.HostID != first.HostID {
		t.Errorf("after renew: serial %s (was %s), host %s (was %s); want a new certificate for the same host", renewed.Serial, first.Serial, renewed.HostID, first.HostID)
	}
	if out := nodeB.p.output(); !strings.Contains(out, `"kind":"renew"`) {
		t.Errorf("the second node did not renew:\n%s", out)
	}
	if out := tun.output(); !strings.Contains(out, "upstream unreachable") || !strings.Contains(out, nodeA.listen) {
		t.Errorf("the tunnel does not report the dead first node:\n%s", out)
	}
}
