package cli

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"runtime"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/rs/zerolog"
	"github.com/spf13/cobra"

	"github.com/hostcert/hostcert/common/protocol"
	"github.com/hostcert/hostcert/primary/internal/admin"
	"github.com/hostcert/hostcert/primary/internal/ca"
	"github.com/hostcert/hostcert/primary/internal/server"
	"github.com/hostcert/hostcert/primary/internal/tokens"
)

// run executes the command line in-process.
func run(t *testing.T, args ...string) (code int, stdout, stderr string) {
	t.Helper()
	var out, errb bytes.Buffer
	code = Main(context.Background(), args, &out, &errb)
	return code, out.String(), errb.String()
}

func mustRun(t *testing.T, args ...string) string {
	t.Helper()
	code, out, errs := run(t, args...)
	if code != 0 {
		t.Fatalf("%v = exit %d, stderr %q, want 0", args, code, errs)
	}
	return out
}

// mustFail checks exit 1 with a one-line reason containing want.
func mustFail(t *testing.T, want string, args ...string) {
	t.Helper()
	code, _, errs := run(t, args...)
	if code != 1 || !strings.Contains(errs, want) || strings.Count(errs, "\n") != 1 || !strings.HasPrefix(errs, Program+": ") {
		t.Errorf("%v = exit %d, stderr %q, want exit 1 and one line containing %q", args, code, errs, want)
	}
}

func tempDir(t *testing.T) string {
	t.Helper()
	d, err := os.MkdirTemp("", "hcc") // short: the admin socket path must fit
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(d) })
	return filepath.Join(d, "data")
}

// A primary reached by address (a lab, a load test, a fleet without DNS)
// is initialised with --name 127.0.0.1: its TLS certificate carries the
// address as an IP SAN, and the address is one of the primary's names.
func TestInitWithAnAddress(t *testing.T) {
	dir := tempDir(t)
	mustRun(t, "init", "--data", dir, "--name", "127.0.0.1", "--name", "[::1]", "--name", "p.test")
	c, err := ca.Load(dir)
	if err != nil {
		t.Fatalf("ca.Load after init: %v", err)
	}
	leaf := c.ServerTLS().Leaf
	var ips []string
	for _, ip := range leaf.IPAddresses {
		ips = append(ips, ip.String())
	}
	if !slices.Equal(ips, []string{"127.0.0.1", "::1"}) || !slices.Equal(leaf.DNSNames, []string{"p.test"}) {
		t.Errorf("server certificate SANs = IPs %v, DNS %v, want [127.0.0.1 ::1] and [p.test]", ips, leaf.DNSNames)
	}
	if err := leaf.VerifyHostname("127.0.0.1"); err != nil {
		t.Errorf("server certificate VerifyHostname(127.0.0.1) = %v, want nil", err)
	}
	for _, n := range []string{"127.0.0.1", "::1", "[::1]", "P.Test."} {
		if !c.IsPrimaryName(n) {
			t.Errorf("IsPrimaryName(%s) = false, want true", n)
		}
	}
	mustFail(t, "zone", "init", "--data", tempDir(t), "--name", "fe80::1%eth0")
}

func TestVersion(t *testing.T) {
	if out := mustRun(t, "--version"); out != "hostcert-primary dev (commit unknown)\n" {
		t.Errorf("--version = %q, want %q", out, "hostcert-primary dev (commit unknown)\n")
	}
}

func TestInit(t *testing.T) {
	dir := tempDir(t)
	out := mustRun(t, "init", "--data", dir, "--name", "Primary.Test.", "--name", "alt.primary.test", "--json")
	var res InitResult
	if err := json.Unmarshal([]byte(out), &res); err != nil {
		t.Fatalf("init --json = %q: %v", out, err)
	}
	c, err := ca.Load(dir)
	if err != nil {
		t.Fatalf("ca.Load after init: %v", err)
	}
	if !slices.Equal(res.Names, []string{"primary.test", "alt.primary.test"}) {
		t.Errorf("init --json names = %v, want [primary.test alt.primary.test]", res.Names)
	}
	if res.Fingerprint != c.Fingerprint() || res.KeyAlgorithm != "ecdsa-p384" || res.PrimaryHostID != c.PrimaryHostID() {
		t.Errorf("init --json = %+v, want fingerprint %s, ecdsa-p384, host ID %s", res, c.Fingerprint(), c.PrimaryHostID())
	}
	if _, err := os.Stat(filepath.Join(dir, server.DBName)); err != nil {
		t.Errorf("init did not create the database: %v", err)
	}
	if runtime.GOOS != "windows" {
		if fi, err := os.Stat(dir); err != nil || fi.Mode().Perm() != 0o700 {
			t.Errorf("data directory mode = %v (%v), want 0700", fi.Mode().Perm(), err)
		}
	}
	mustFail(t, "already holds a CA", "init", "--data", dir, "--name", "primary.test")
	mustFail(t, "--name", "init", "--data", tempDir(t))
	// A token value, a name with a zone or a numeric last label is
	// refused, and nothing is created.
	for _, bad := range []string{"hct_abcdefghijklmnopqrstuvwxyz234567abcdefghijklmnopqrst", "host.123"} {
		d := tempDir(t)
		mustFail(t, "reserved host name", "init", "--data", d, "--name", "p.test", "--name", bad)
		if _, err := os.Stat(filepath.Join(d, "ca")); err == nil {
			t.Errorf("init --name %s created a CA", bad)
		}
	}
	mustFail(t, "unknown key algorithm", "init", "--data", tempDir(t), "--name", "p.test", "--key-alg", "dsa")

	rsaDir := tempDir(t)
	out = mustRun(t, "init", "--data", rsaDir, "--name", "p.test", "--key-alg", "rsa-3072")
	if !strings.Contains(out, "rsa-3072") || !strings.Contains(out, "fingerprint") {
		t.Errorf("init --key-alg rsa-3072 = %q, want the algorithm and the fingerprint", out)
	}
}

// TestHelpEverywhere: every command answers --help with exit 0.
func TestHelpEverywhere(t *testing.T) {
	var walk func(c *cobra.Command, path []string)
	n := 0
	walk = func(c *cobra.Command, path []string) {
		args := append(append([]string(nil), path...), "--help")
		if code, out, errs := run(t, args...); code != 0 || !strings.Contains(out, "Usage:") {
			t.Errorf("%v = exit %d, stdout %q, stderr %q, want usage", args, code, out, errs)
		}
		n++
		for _, sub := range c.Commands() {
			if sub.Name() == "help" {
				continue
			}
			walk(sub, append(append([]string(nil), path...), sub.Name()))
		}
	}
	walk(NewRoot(), nil)
	if n < 25 {
		t.Errorf("walked %d commands, want at least 25", n)
	}
}

// TestAdminCommands runs every admin command in-process against a real
// server over its real admin socket.
func TestAdminCommands(t *testing.T) {
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
	d := []string{"--data", dir}
	cmd := func(args ...string) []string { return append(args, d...) }

	if runtime.GOOS != "windows" {
		fi, err := os.Stat(filepath.Join(dir, admin.SocketName))
		if err != nil || fi.Mode().Perm() != 0o600 || fi.Mode()&os.ModeSocket == 0 {
			t.Errorf("admin socket: %v (%v), want a socket with mode 0600", fi.Mode(), err)
		}
	}

	if out := mustRun(t, cmd("level", "get")...); out != "high\n" {
		t.Errorf("level get = %q, want high", out)
	}
	var li admin.LevelInfo
	decode(t, mustRun(t, cmd("level", "set", "medium", "--json")...), &li)
	if li.Level != protocol.LevelMedium || li.CRLRefreshSeconds != 8*3600 {
		t.Errorf("level set medium --json = %+v", li)
	}
	mustFail(t, "unknown security level", cmd("level", "set", "low")...)

	if out := mustRun(t, cmd("host", "add", "a.test", "B.test")...); !strings.Contains(out, "added 2 of 2") {
		t.Errorf("host add = %q", out)
	}
	list := filepath.Join(t.TempDir(), "hosts.txt")
	os.WriteFile(list, []byte("# fleet\nc.test\n\nd.test, a.test # known already\n"), 0o600)
	if out := mustRun(t, cmd("host", "import", list)...); !strings.Contains(out, "added 2 of 3") {
		t.Errorf("host import = %q, want added 2 of 3", out)
	}
	mustFail(t, "invalid host name", cmd("host", "add", "bad_name!")...)
	mustRun(t, cmd("host", "remove", "d.test")...)
	mustFail(t, "not in the host registry", cmd("host", "remove", "d.test")...)
	var hosts []admin.Host
	decode(t, mustRun(t, cmd("host", "list", "--json")...), &hosts)
	if len(hosts) != 3 {
		t.Errorf("host list --json = %+v, want a, b, c", hosts)
	}
	if out := mustRun(t, cmd("host", "list")...); !strings.Contains(out, "b.test") || !strings.Contains(out, "NAME") {
		t.Errorf("host list = %q", out)
	}
	if out := mustRun(t, cmd("host", "show", "a.test")...); !strings.Contains(out, "known:") {
		t.Errorf("host show a.test = %q", out)
	}
	mustFail(t, "has no host ID", cmd("host", "allow-reissue", "a.test")...)
	mustFail(t, "at most 30 days", cmd("host", "allow-reissue", "a.test", "--for", "31d")...)

	code, value, errs := run(t, cmd("token", "create", "--name", "t1", "--max-uses", "3", "--valid-for", "2d", "--reason", "rollout")...)
	value = strings.TrimSpace(value)
	if code != 0 || !strings.HasPrefix(value, tokens.Prefix) || len(value) != tokens.ValueLen || !strings.Contains(errs, "shown only once") {
		t.Fatalf("token create = %d %q %q, want the value alone on stdout", code, value, errs)
	}
	mustFail(t, "already exists", cmd("token", "create", "--name", "t1")...)
	mustFail(t, "has no host ID", cmd("token", "create", "--name", "t2", "--reissue-host", "a.test")...)
	mustFail(t, "999 days", cmd("token", "create", "--name", "t3", "--valid-for", "1000d")...)
	var toks []admin.Token
	out := mustRun(t, cmd("token", "list", "--json")...)
	decode(t, out, &toks)
	if len(toks) != 1 || toks[0].Name != "t1" || toks[0].MaxUses != 3 || toks[0].State != "live" || toks[0].Reason != "rollout" ||
		toks[0].ExpiresAt.Sub(toks[0].CreatedAt) != 48*time.Hour {
		t.Errorf("token list --json = %+v", toks)
	}
	if strings.Contains(out, value) || strings.Contains(mustRun(t, cmd("token", "list")...), value) {
		t.Errorf("token list shows the token value")
	}

	var dec protocol.Decision
	decode(t, mustRun(t, cmd("explain", "a.test", "--from", "127.0.0.1", "--nat", "--json")...), &dec)
	if dec.Kind != protocol.KindIssue || !dec.NAT || !dec.NeedToken || dec.Level != protocol.LevelMedium || dec.Verified {
		t.Errorf("explain a.test --nat = %+v, want a NAT issue needing a token at medium", dec)
	}
	if out := mustRun(t, cmd("explain", "a.test", "--from", "127.0.0.1", "--nat")...); !strings.Contains(out, "needs a token:") {
		t.Errorf("explain = %q", out)
	}
	mustFail(t, "not an IP address", cmd("explain", "a.test", "--from", "nowhere")...)

	var certs []admin.Cert
	decode(t, mustRun(t, cmd("cert", "list", "--token", "t1", "--json")...), &certs)
	if len(certs) != 0 {
		t.Errorf("cert list --token t1 = %+v, want none", certs)
	}
	if out := mustRun(t, cmd("cert", "revoke", "--token", "t1", "--reason", "key-compromise")...); out != "revoked 0 certificate(s)\n" {
		t.Errorf("cert revoke --token = %q", out)
	}
	mustFail(t, "--reason is required", cmd("cert", "revoke", "--token", "t1")...)
	mustFail(t, "unknown revocation reason", cmd("cert", "revoke", "--token", "t1", "--reason", "because")...)
	mustRun(t, cmd("token", "delete", "t1")...)
	mustFail(t, "no token named", cmd("token", "delete", "t1")...)
	if out := mustRun(t, cmd("token", "cleanup")...); out != "removed 0 dead token(s)\n" {
		t.Errorf("token cleanup = %q", out)
	}

	var info admin.CAInfo
	decode(t, mustRun(t, cmd("ca", "show", "--json")...), &info)
	c, _ := ca.Load(dir)
	if info.Fingerprint != c.Fingerprint() || info.CRLNumber == "" {
		t.Errorf("ca show --json = %+v, want fingerprint %s and a CRL", info, c.Fingerprint())
	}

	var rows []admin.AuditEntry
	out = mustRun(t, cmd("audit", "--since", "1h", "--json")...)
	decode(t, out, &rows)
	actor := fmt.Sprintf("admin:%d", os.Getuid())
	ok := map[string]bool{}
	for _, r := range rows {
		if r.Actor != actor {
			t.Errorf("audit row %+v: actor %q, want %q", r, r.Actor, actor)
		}
		ok[r.Action] = ok[r.Action] || r.Outcome == "ok"
	}
	for _, a := range []string{admin.CmdLevelSet, admin.CmdHostAdd, admin.CmdHostRemove, admin.CmdTokenCreate, admin.CmdTokenDelete, admin.CmdCertRevoke, admin.CmdExplain} {
		if !ok[a] {
			t.Errorf("audit has no successful %s (have %v)", a, ok)
		}
	}
	if strings.Contains(out, value) {
		t.Errorf("the audit log holds the token value")
	}
	if out := mustRun(t, cmd("audit")...); !strings.Contains(out, "level.set") {
		t.Errorf("audit = %q, want level.set", out)
	}
	mustFail(t, "--since", cmd("audit", "--since", "yesterday")...)
	mustFail(t, "no admin socket", "level", "get", "--data", tempDir(t))
}

func decode(t *testing.T, s string, v any) {
	t.Helper()
	if err := json.Unmarshal([]byte(s), v); err != nil {
		t.Fatalf("decode %q: %v", s, err)
	}
}

func TestParseSince(t *testing.T) {
	now := time.Date(2026, 11, 23, 12, 0, 0, 0, time.UTC)
	for _, c := range []struct {
		in   string
		want time.Time
	}{
		{"", time.Time{}},
		{"24h", now.Add(-24 * time.Hour)},
		{"7d", now.Add(-7 * 24 * time.Hour)},
		{"2026-11-01T10:00:00Z", time.Date(2026, 11, 1, 10, 0, 0, 0, time.UTC)},
		{"2026-11-01", time.Date(2026, 11, 1, 0, 0, 0, 0, time.Local)},
	} {
		got, err := admin.ParseWhen(c.in, now)
		if err != nil || !got.Equal(c.want) {
			t.Errorf("ParseWhen(%q) = %v, %v, want %v", c.in, got, err, c.want)
		}
	}
	for _, bad := range []string{"yesterday", "-5h", "2026-13-01"} {
		if _, err := admin.ParseWhen(bad, now); err == nil {
			t.Errorf("ParseWhen(%q) = nil error, want an error", bad)
		}
	}
}
