//go:build !windows

package main

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"syscall"
	"time"

	"github.com/hostcert/hostcert/internal/dnstest"
	"github.com/hostcert/hostcert/internal/pgtest"
)

// The high-availability demo (`make demo-ha`): two primary nodes on one
// PostgreSQL database, each on its own loopback address, and an agent that
// lists both. The agent enrolls through node 1; node 1 is stopped; the
// agent's renewal fails over to node 2, which knows the host (one database).
const (
	serviceName = "primary.demo.hostcert.test" // the fleet's shared name (a load balancer's, in production)
	node1Addr   = "127.0.0.11"
	node2Addr   = "127.0.0.12"
	haHostName  = "ha.demo.hostcert.test"
)

func (d *demo) runHA(ctx context.Context) error {
	if err := d.setUp(); err != nil {
		return err
	}
	port, err := freePortOn(node1Addr, node2Addr)
	if err != nil {
		return err
	}
	api1, api2 := net.JoinHostPort(node1Addr, port), net.JoinHostPort(node2Addr, port)

	step("PostgreSQL", "a throwaway cluster: initdb and pg_ctl in a temporary directory, listening on 127.0.0.1 only")
	if os.Geteuid() == 0 {
		say("running as root: the cluster runs as the unprivileged user postgres (or nobody), as PostgreSQL requires")
	}
	cluster, err := pgtest.Launch()
	if err != nil {
		return fmt.Errorf("start PostgreSQL (the distribution's postgresql package; scripts/deps.sh installs it as root): %w", err)
	}
	d.atExit(cluster.Remove)
	dsn, err := cluster.NewDatabase("hostcert")
	if err != nil {
		return err
	}
	say("database hostcert at 127.0.0.1:%d", cluster.Port)
	// Each node reads the DSN from an owner-only file (no password in the process list).
	dsnFile := filepath.Join(d.dir, "store.dsn")
	if err := os.WriteFile(dsnFile, []byte(dsn+"\n"), 0o600); err != nil {
		return err
	}
	say("the DSN is in %s (owner-only): %s", dsnFile, dsn)

	dns, err := dnstest.Listen(nil)
	if err != nil {
		return fmt.Errorf("dns server: %w", err)
	}
	defer dns.Close()

	data1, data2 := filepath.Join(d.dir, "node1"), filepath.Join(d.dir, "node2")
	step("node1", "init: a new CA, its TLS certificate for the service name and its own address, the store recorded in its data directory")
	var initRes struct {
		Fingerprint string `json:"fingerprint"`
	}
	if err := d.json(ctx, &initRes, "primary", "init", "--data", data1, "--store-file", dsnFile,
		"--name", serviceName, "--name", node1Addr, "--node-name", node1Addr, "--json"); err != nil {
		return err
	}
	say("CA fingerprint (SHA-256): %s", initRes.Fingerprint)
	step("node1", "serve on "+api1)
	if err := d.start(ctx, "node1", "serving", "primary", "serve", "--data", data1, "--listen", api1,
		"--console", "", "--dns-server", dns.Addr(), "--log-format", "json"); err != nil {
		return err
	}
	node1 := d.last()

	step("node2", "join: a copy of node1's CA files (copied by the operator over ssh; the CA key never goes into the database), the same database")
	caCopy := filepath.Join(d.dir, "ca-copy")
	if err := copyDir(filepath.Join(data1, "ca"), caCopy); err != nil {
		return err
	}
	out, err := d.out(ctx, "primary", "join", "--data", data2, "--ca-from", caCopy, "--store-file", dsnFile,
		"--name", node2Addr, "--service-name", serviceName)
	if err != nil {
		return err
	}
	indent(out)
	if err := os.RemoveAll(caCopy); err != nil {
		return err
	}
	say("the copy of the CA key is removed")
	step("node2", "serve on "+api2)
	if err := d.start(ctx, "node2", "serving", "primary", "serve", "--data", data2, "--listen", api2,
		"--console", "", "--dns-server", dns.Addr(), "--log-format", "json"); err != nil {
		return err
	}
	admin1 := func(args ...string) (string, error) { return d.out(ctx, "primary", append(args, "--data", data1)...) }
	admin2 := func(args ...string) (string, error) { return d.out(ctx, "primary", append(args, "--data", data2)...) }

	step("node2", "an admin makes a token on node2 (admin commands work on any node: one database)")
	tok, err := admin2("token", "create", "--name", "ha-demo", "--reason", "demo: HA host")
	if err != nil {
		return err
	}
	tokFile := filepath.Join(d.dir, "ha-token")
	if err := os.WriteFile(tokFile, []byte(strings.TrimSpace(tok)+"\n"), 0o600); err != nil {
		return err
	}
	if out, err := admin1("token", "list"); err == nil {
		say("node1 lists it:")
		indent(out)
	}

	host, err := newAgent(d, haHostName, fmt.Sprintf(`primary: [%s, %s]   # both nodes, tried in this order
name: %s
dial_timeout: 2s
`, api1, api2, haHostName))
	if err != nil {
		return err
	}
	step(haHostName, "get-ca-cert (fingerprint confirmed at whichever node answers), then get-cert with node2's token")
	if err := host.ok(ctx, "get-ca-cert", "--fingerprint", initRes.Fingerprint); err != nil {
		return err
	}
	if err := host.ok(ctx, "get-cert", "--token-file", tokFile); err != nil {
		return err
	}
	if err := host.status(ctx); err != nil {
		return err
	}
	serial1, err := host.serial(ctx)
	if err != nil {
		return err
	}
	if !strings.Contains(d.log("node1"), `"certificate issued"`) {
		return errors.New("node1 did not issue the certificate")
	}
	say("node1 issued serial %s", serial1)

	step("node1", "stopped (SIGTERM): from now on nothing answers at "+api1)
	if err := stopProc(node1, 10*time.Second); err != nil {
		return err
	}
	if c, err := net.DialTimeout("tcp", api1, time.Second); err == nil {
		c.Close()
		return fmt.Errorf("%s still accepts connections after node1 stopped", api1)
	} else {
		say("connect %s: %v", api1, errors.Unwrap(err))
	}

	step(haHostName, "renew: node1 refuses the connection, the agent fails over to node2, which knows the host and its certificate")
	if err := host.ok(ctx, "renew"); err != nil {
		return err
	}
	if err := host.status(ctx); err != nil {
		return err
	}
	serial2, err := host.serial(ctx)
	if err != nil {
		return err
	}
	if serial2 == serial1 {
		return errors.New("the renewal did not change the certificate")
	}
	if !strings.Contains(d.log("node2"), `"kind":"renew"`) {
		return errors.New("node2 did not renew the certificate")
	}
	say("node2 renewed it: serial %s -> %s, same host ID", serial1, serial2)

	step("node2", "the certificates on record and the audit log: one log, each entry with the node that decided it")
	if out, err := admin2("cert", "list", "--host", haHostName); err == nil {
		indent(out)
	}
	if out, err := admin2("audit"); err == nil {
		indent(lastLines(out, 6))
	}
	return nil
}

// setUp makes the demo's temporary directory and checks the binaries.
func (d *demo) setUp() error {
	var err error
	if d.dir, err = os.MkdirTemp("", "hostcert-demo-"); err != nil {
		return err
	}
	d.logs = map[string]*bytes.Buffer{}
	for _, p := range []string{"primary", "agent"} {
		if _, err := os.Stat(d.path(p)); err != nil {
			return fmt.Errorf("%s not built (run `make demo-ha`, which builds bin/ first): %w", d.path(p), err)
		}
	}
	return nil
}

var serialLine = regexp.MustCompile(`(?m)^\s*serial:\s*(\S+)`)

// serial is the serial number of the agent's certificate, from status.
func (a agent) serial(ctx context.Context) (string, error) {
	out, err := a.do(ctx, "status")
	if err != nil {
		return "", fmt.Errorf("%s status: %w", a.name, err)
	}
	m := serialLine.FindStringSubmatch(out)
	if m == nil {
		return "", fmt.Errorf("%s status shows no serial:\n%s", a.name, out)
	}
	return m[1], nil
}

// last is the program started last.
func (d *demo) last() *exec.Cmd {
	d.mu.Lock()
	defer d.mu.Unlock()
	return d.procs[len(d.procs)-1]
}

// log is what the program started under name has printed so far.
func (d *demo) log(name string) string {
	d.mu.Lock()
	defer d.mu.Unlock()
	return d.logs[name].String()
}

// stopProc stops one program the demo started (SIGTERM to its process
// group, SIGKILL after grace) and waits until it is gone (start's
// goroutine reaps it).
func stopProc(cmd *exec.Cmd, grace time.Duration) error {
	pid := cmd.Process.Pid
	gone := func(within time.Duration) bool {
		for deadline := time.Now().Add(within); time.Now().Before(deadline); time.Sleep(20 * time.Millisecond) {
			if syscall.Kill(pid, 0) == syscall.ESRCH {
				return true
			}
		}
		return false
	}
	syscall.Kill(-pid, syscall.SIGTERM)
	if gone(grace) {
		return nil
	}
	syscall.Kill(-pid, syscall.SIGKILL)
	if gone(grace) {
		return nil
	}
	return fmt.Errorf("pid %d did not exit", pid)
}

// freePortOn returns a TCP port free on every one of the addresses.
func freePortOn(addrs ...string) (string, error) {
	for attempt := 0; attempt < 20; attempt++ {
		l, err := net.Listen("tcp", net.JoinHostPort(addrs[0], "0"))
		if err != nil {
			return "", err
		}
		_, port, _ := net.SplitHostPort(l.Addr().String())
		ok := true
		for _, a := range addrs[1:] {
			m, err := net.Listen("tcp", net.JoinHostPort(a, port))
			if err != nil {
				ok = false
				break
			}
			m.Close()
		}
		l.Close()
		if ok {
			return port, nil
		}
	}
	return "", fmt.Errorf("no port free on all of %v", addrs)
}

// copyDir copies the files of src into a new owner-only directory dst.
func copyDir(src, dst string) error {
	if err := os.Mkdir(dst, 0o700); err != nil {
		return err
	}
	entries, err := os.ReadDir(src)
	if err != nil {
		return err
	}
	for _, e := range entries {
		if !e.Type().IsRegular() {
			continue
		}
		b, err := os.ReadFile(filepath.Join(src, e.Name()))
		if err != nil {
			return err
		}
		if err := os.WriteFile(filepath.Join(dst, e.Name()), b, 0o600); err != nil {
			return err
		}
	}
	return nil
}
