//go:build !windows

// Command demo runs hostcert end to end on loopback, the way an operator
// meets it: a primary, a tunnel and two agents — one LAN host that enrolls
// directly and one DMZ host that cannot reach the primary and enrolls
// through the tunnel — then revokes the DMZ host and shows its self-check
// turn to revoked. It prints every step and stops everything it started.
//
// Run it with `make demo` (which builds bin/ first). With -ha (`make
// demo-ha`) it shows high availability instead (ha.go): two primary nodes
// on one throwaway PostgreSQL database and an agent that fails over from
// one to the other.
package main

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"net"
	"net/netip"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/hostcert/hostcert/internal/dnstest"
)

const (
	primaryName = "primary.demo.hostcert.test"
	lanName     = "lan.demo.hostcert.test"
	dmzName     = "dmz.demo.hostcert.test"
	// Each program gets its own loopback address so the primary sees who is who:
	// the LAN agent connects from 127.0.0.2, the DMZ agent from 127.0.0.3 and the
	// tunnel relays from 127.0.0.1.
	lanAddr = "127.0.0.2"
	dmzAddr = "127.0.0.3"
)

func main() {
	bin := flag.String("bin", "bin", "directory holding hostcert-primary, hostcert-agent and hostcert-tunnel")
	keep := flag.Bool("keep", false, "keep the temporary data directories")
	ha := flag.Bool("ha", false, "show two primary nodes on one PostgreSQL database and an agent failing over")
	flag.Parse()
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	d := &demo{bin: *bin}
	run := d.run
	if *ha {
		run = d.runHA
	}
	err := run(ctx)
	d.stopAll()
	for i := len(d.exits) - 1; i >= 0; i-- {
		d.exits[i]()
	}
	if d.dir != "" && !*keep {
		os.RemoveAll(d.dir)
	} else if d.dir != "" {
		fmt.Printf("data kept in %s\n", d.dir)
	}
	if err != nil {
		fmt.Fprintf(os.Stderr, "\ndemo failed: %v\n", err)
		os.Exit(1)
	}
	fmt.Println("\ndemo finished: everything it started is stopped.")
}

type demo struct {
	bin   string
	dir   string
	mu    sync.Mutex
	procs []*exec.Cmd
	logs  map[string]*bytes.Buffer
	exits []func() // run after every program is stopped (atExit)
}

// atExit registers f to run when the demo ends, after every program it
// started is stopped.
func (d *demo) atExit(f func()) { d.exits = append(d.exits, f) }

func (d *demo) run(ctx context.Context) error {
	var err error
	if d.dir, err = os.MkdirTemp("", "hostcert-demo-"); err != nil {
		return err
	}
	d.logs = map[string]*bytes.Buffer{}
	for _, p := range []string{"primary", "agent", "tunnel"} {
		if _, err := os.Stat(d.path(p)); err != nil {
			return fmt.Errorf("%s not built (run `make demo`, which builds bin/ first): %w", d.path(p), err)
		}
	}
	apiPort, err := freePort()
	if err != nil {
		return err
	}
	tunnelPort, err := freePort()
	if err != nil {
		return err
	}
	api := "127.0.0.1:" + apiPort
	tunnel := "127.0.0.1:" + tunnelPort
	primary := primaryName + ":" + apiPort
	pdata := filepath.Join(d.dir, "primary")

	step("DNS", "a DNS server on loopback answers for the hosts (the primary verifies names by forward DNS)")
	dns, err := dnstest.Listen(map[string][]netip.Addr{
		lanName: {netip.MustParseAddr(lanAddr)},
		dmzName: {netip.MustParseAddr(dmzAddr)},
	})
	if err != nil {
		return fmt.Errorf("dns server: %w", err)
	}
	defer dns.Close()
	say("%s -> %s, %s -> %s (server %s)", lanName, lanAddr, dmzName, dmzAddr, dns.Addr())

	step("primary", "init: a root CA (ECDSA P-384, 20 years; its fingerprint is what hosts confirm), an issuing CA under it (ECDSA P-256) and the primary's TLS certificate")
	var initRes struct {
		Fingerprint string `json:"fingerprint"`
		HostID      string `json:"primary_host_id"`
	}
	if err := d.json(ctx, &initRes, "primary", "init", "--data", pdata, "--name", primaryName, "--json"); err != nil {
		return err
	}
	say("root CA fingerprint (SHA-256): %s", initRes.Fingerprint)

	step("primary", "serve on "+api+"; --tunnel-addr 127.0.0.1 declares the media server, whose PROXY v2 headers relay the DMZ hosts' addresses")
	if err := d.start(ctx, "primary", "serving", "primary", "serve", "--data", pdata, "--listen", api,
		"--tunnel-addr", "127.0.0.1", "--dns-server", dns.Addr(), "--log-format", "json"); err != nil {
		return err
	}
	admin := func(args ...string) (string, error) { return d.out(ctx, "primary", append(args, "--data", pdata)...) }
	if _, err := admin("host", "add", lanName); err != nil {
		return err
	}
	lvl, _ := admin("level", "get")
	say("deployment security level: %s; host registry: %s", strings.TrimSpace(lvl), lanName)

	step("tunnel", "CONNECT-only proxy on "+tunnel+" admitting "+primary+" and nothing else; it always relays the client's address (PROXY v2)")
	if err := d.start(ctx, "tunnel", "listening", "tunnel", "run", "--listen", tunnel,
		"--allow", primary+"="+api, "--log-format", "json"); err != nil {
		return err
	}
	if code, body := rawConnect(tunnel, "127.0.0.1:22"); code != "" {
		say("CONNECT 127.0.0.1:22 through the tunnel -> %s %s", code, body)
	}

	lan, err := newAgent(d, lanName, fmt.Sprintf(`primary: %s
primary_dial: %s          # where %s is, for this host (like curl --resolve)
source_address: %s
name: %s
`, primary, api, primaryName, lanAddr, lanName))
	if err != nil {
		return err
	}
	// The DMZ host's direct path to the primary is closed (nothing listens on
	// 127.0.0.1:1): a reachability failure, so it falls back to the tunnel.
	dmz, err := newAgent(d, dmzName, fmt.Sprintf(`primary: %s
primary_dial: 127.0.0.1:1     # the direct path is closed for this DMZ host
tunnels: [%s]
source_address: %s
name: %s
`, primary, tunnel, dmzAddr, dmzName))
	if err != nil {
		return err
	}

	for _, a := range []agent{lan, dmz} {
		step(a.name, "explain (dry run on the primary): would this host need a token?")
		from := lanAddr
		if a.name == dmzName {
			from = dmzAddr
		}
		out, err := admin("explain", a.name, "--from", from)
		if err != nil {
			return err
		}
		indent(out)
	}

	step(lanName, "get-ca-cert: fetch the CA and confirm its fingerprint, then get-cert without a token")
	if err := lan.ok(ctx, "get-ca-cert", "--fingerprint", initRes.Fingerprint); err != nil {
		return err
	}
	if err := lan.ok(ctx, "get-cert"); err != nil {
		return err
	}
	if err := lan.status(ctx); err != nil {
		return err
	}

	step(dmzName, "get-ca-cert and get-cert: the direct path fails, the tunnel carries TLS end to end")
	if err := dmz.ok(ctx, "get-ca-cert", "--fingerprint", initRes.Fingerprint); err != nil {
		return err
	}
	if out, err := dmz.do(ctx, "get-cert"); err == nil {
		return errors.New("the DMZ host enrolled without a token at level high, but it is not in the registry")
	} else {
		indent(out)
	}
	say("an admin makes a one-use token for it (printed once, stored only as a hash)")
	tok, err := admin("token", "create", "--name", "dmz-demo", "--reason", "demo: DMZ host")
	if err != nil {
		return err
	}
	tokFile := filepath.Join(d.dir, "dmz-token")
	if err := os.WriteFile(tokFile, []byte(strings.TrimSpace(tok)+"\n"), 0o600); err != nil {
		return err
	}
	if err := dmz.ok(ctx, "get-cert", "--token-file", tokFile); err != nil {
		return err
	}
	if err := dmz.status(ctx); err != nil {
		return err
	}

	step("primary", "the certificates on record, then revoke the DMZ host (key compromise)")
	if out, err := admin("cert", "list"); err == nil {
		indent(out)
	}
	if out, err := admin("cert", "revoke", dmzName, "--reason", "keyCompromise"); err != nil {
		return err
	} else {
		indent(out)
	}
	time.Sleep(1500 * time.Millisecond) // the CRL is regenerated within seconds of a revocation

	step(dmzName, "get-crl and self-check: the host sees its own revocation")
	if err := dmz.ok(ctx, "get-crl"); err != nil {
		return err
	}
	out, err := dmz.do(ctx, "self-check")
	indent(out)
	if err == nil {
		return errors.New("self-check passed for a revoked host")
	}
	say("self-check exit status: %v (non-zero: revoked)", err)
	step(lanName, "self-check: still good")
	if err := lan.ok(ctx, "self-check"); err != nil {
		return err
	}

	step("primary", "the audit log: every decision with its reason, every admin action")
	if out, err := admin("audit"); err == nil {
		indent(lastLines(out, 12))
	}
	return nil
}

// agent is one host running hostcert-agent with its own config and data directory.
type agent struct {
	d                  *demo
	name, data, config string
}

// newAgent writes the agent's config file (config plus its data_dir) and shows it.
func newAgent(d *demo, name, config string) (agent, error) {
	dir := filepath.Join(d.dir, strings.SplitN(name, ".", 2)[0])
	a := agent{d: d, name: name, data: filepath.Join(dir, "data"), config: filepath.Join(dir, "agent.yaml")}
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return a, err
	}
	config += "data_dir: " + a.data + "\n"
	step(name, "agent config "+a.config)
	indent(config)
	return a, os.WriteFile(a.config, []byte(config), 0o600)
}

func (a agent) do(ctx context.Context, cmd ...string) (string, error) {
	args := append(cmd, "--config", a.config)
	if cmd[0] == "get-ca-cert" || cmd[0] == "get-cert" || cmd[0] == "get-crl" {
		args = append(args, "--log-level", "warn")
	}
	return a.d.combined(ctx, "agent", args...)
}

func (a agent) ok(ctx context.Context, cmd ...string) error {
	out, err := a.do(ctx, cmd...)
	indent(out)
	if err != nil {
		return fmt.Errorf("%s %s: %w", a.name, strings.Join(cmd, " "), err)
	}
	return nil
}

func (a agent) status(ctx context.Context) error {
	out, err := a.do(ctx, "status")
	if err != nil {
		indent(out)
		return fmt.Errorf("%s status: %w", a.name, err)
	}
	for _, l := range strings.Split(out, "\n") {
		for _, k := range []string{"host ID:", "names:", "valid from:", "valid until:", "route:", "level:", "next renewal:"} {
			if strings.HasPrefix(strings.TrimSpace(l), k) {
				fmt.Println("    " + strings.TrimSpace(l))
			}
		}
	}
	return nil
}

func (d *demo) path(program string) string { return filepath.Join(d.bin, "hostcert-"+program) }

// start runs a long-lived program and waits until its log says ready.
func (d *demo) start(ctx context.Context, name, ready, program string, args ...string) error {
	cmd := exec.CommandContext(ctx, d.path(program), args...)
	cmd.Env = cleanEnv()
	pr, pw := io.Pipe()
	cmd.Stdout, cmd.Stderr = pw, pw
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	if err := cmd.Start(); err != nil {
		return fmt.Errorf("start %s: %w", name, err)
	}
	d.mu.Lock()
	d.procs = append(d.procs, cmd)
	buf := &bytes.Buffer{}
	d.logs[name] = buf
	d.mu.Unlock()
	seen := make(chan struct{})
	go func() {
		sc := bufio.NewScanner(pr)
		once := sync.Once{}
		for sc.Scan() {
			d.mu.Lock()
			buf.WriteString(sc.Text() + "\n")
			d.mu.Unlock()
			if strings.Contains(sc.Text(), ready) {
				once.Do(func() { close(seen) })
			}
		}
	}()
	go func() { cmd.Wait(); pw.Close() }()
	select {
	case <-seen:
		say("%s is up (pid %d)", name, cmd.Process.Pid)
		return nil
	case <-time.After(20 * time.Second):
		d.mu.Lock()
		defer d.mu.Unlock()
		return fmt.Errorf("%s did not become ready; its log:\n%s", name, buf.String())
	case <-ctx.Done():
		return ctx.Err()
	}
}

func (d *demo) stopAll() {
	d.mu.Lock()
	procs := d.procs
	d.mu.Unlock()
	for i := len(procs) - 1; i >= 0; i-- {
		p := procs[i]
		syscall.Kill(-p.Process.Pid, syscall.SIGTERM)
		done := make(chan struct{})
		go func() { p.Process.Wait(); close(done) }()
		select {
		case <-done:
		case <-time.After(5 * time.Second):
			syscall.Kill(-p.Process.Pid, syscall.SIGKILL)
		}
	}
}

func (d *demo) out(ctx context.Context, program string, args ...string) (string, error) {
	cmd := exec.CommandContext(ctx, d.path(program), args...)
	cmd.Env = cleanEnv()
	var so, se bytes.Buffer
	cmd.Stdout, cmd.Stderr = &so, &se
	if err := cmd.Run(); err != nil {
		return so.String(), fmt.Errorf("hostcert-%s %s: %v: %s", program, strings.Join(args, " "), err, strings.TrimSpace(se.String()))
	}
	return so.String(), nil
}

func (d *demo) combined(ctx context.Context, program string, args ...string) (string, error) {
	cmd := exec.CommandContext(ctx, d.path(program), args...)
	cmd.Env = cleanEnv()
	out, err := cmd.CombinedOutput()
	return string(out), err
}

func (d *demo) json(ctx context.Context, v any, program string, args ...string) error {
	out, err := d.out(ctx, program, args...)
	if err != nil {
		return err
	}
	return json.Unmarshal([]byte(out), v)
}

// rawConnect asks the tunnel for a destination it must refuse and returns its answer.
func rawConnect(tunnel, target string) (code, body string) {
	c, err := net.DialTimeout("tcp", tunnel, 2*time.Second)
	if err != nil {
		return "", ""
	}
	defer c.Close()
	c.SetDeadline(time.Now().Add(3 * time.Second))
	fmt.Fprintf(c, "CONNECT %s HTTP/1.1\r\nHost: %s\r\n\r\n", target, target)
	line, _ := bufio.NewReader(c).ReadString('\n')
	f := strings.SplitN(strings.TrimSpace(line), " ", 3)
	if len(f) < 3 {
		return strings.TrimSpace(line), ""
	}
	return f[1], f[2]
}

func freePort() (string, error) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return "", err
	}
	defer l.Close()
	_, port, _ := net.SplitHostPort(l.Addr().String())
	return port, nil
}

// cleanEnv drops proxy variables and tokens from the environment.
func cleanEnv() []string {
	var env []string
	for _, kv := range os.Environ() {
		k := strings.ToUpper(strings.SplitN(kv, "=", 2)[0])
		if strings.HasSuffix(k, "_PROXY") || strings.HasPrefix(k, "HOSTCERT_") {
			continue
		}
		env = append(env, kv)
	}
	return env
}

var stepN int

func step(who, what string) {
	stepN++
	fmt.Printf("\n[%d] %s: %s\n", stepN, who, what)
}

func say(format string, a ...any) { fmt.Printf("    "+format+"\n", a...) }

func indent(s string) {
	for _, l := range strings.Split(strings.TrimRight(s, "\n"), "\n") {
		if strings.TrimSpace(l) != "" {
			fmt.Println("    " + l)
		}
	}
}

func lastLines(s string, n int) string {
	lines := strings.Split(strings.TrimRight(s, "\n"), "\n")
	if len(lines) > n+1 {
		lines = append(lines[:1], lines[len(lines)-n:]...)
	}
	return strings.Join(lines, "\n")
}
