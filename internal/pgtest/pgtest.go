// Package pgtest starts throwaway PostgreSQL clusters for tests: initdb and
// pg_ctl from the distribution's postgresql package, in a temporary
// directory, listening only on 127.0.0.1 at a free port, run as an
// unprivileged user when the test runs as root (PostgreSQL refuses to run as
// root). Every test that needs PostgreSQL goes through Start, which stops the
// cluster and removes its files when the test ends.
//
// Where PostgreSQL is not installed, Start skips the test loudly — except
// under CI (CI=true), where a missing PostgreSQL fails it: CI installs the
// package (scripts/deps.sh), so its absence there is a broken set-up, not a
// reason to skip.
package pgtest

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"net"
	"os"
	"os/exec"
	"os/user"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"
)

// Superuser is the cluster's superuser; it logs in without a password over
// loopback (trust authentication: the cluster is a test's own).
const Superuser = "postgres"

// Cluster is one running (or stopped) throwaway cluster.
type Cluster struct {
	Port int
	dir  string // root of the cluster's files: data/, sock/, log
	bin  string // directory of initdb, pg_ctl
	cred *credential

	mu      sync.Mutex
	running bool
	opts    []string // extra server options (EnableTLS)
}

// Start initialises and starts a cluster, and registers its stop and removal
// with tb.Cleanup.
func Start(tb testing.TB) *Cluster {
	tb.Helper()
	c, err := launch()
	if c != nil {
		tb.Cleanup(c.remove)
	}
	if err != nil {
		failOrSkip(tb, err)
	}
	return c
}

// Shared returns the test binary's shared cluster, started on first use and
// stopped by Main when every test has run: one cluster per test package
// (starting one takes seconds), one database per test (CreateDatabase).
// Tests that stop, crash or restart a cluster use their own (Start).
func Shared(tb testing.TB) *Cluster {
	tb.Helper()
	shared.once.Do(func() { shared.c, shared.err = launch() })
	if shared.err != nil {
		failOrSkip(tb, shared.err)
	}
	return shared.c
}

var shared struct {
	once sync.Once
	c    *Cluster
	err  error
}

// Main runs the tests and then stops and removes the shared cluster, if one
// was started. A package that uses Shared calls it from TestMain:
//
//	func TestMain(m *testing.M) { os.Exit(pgtest.Main(m)) }
func Main(m *testing.M) int {
	code := m.Run()
	if shared.c != nil {
		shared.c.remove()
	}
	return code
}

// errNotInstalled marks a missing PostgreSQL installation.
var errNotInstalled = errors.New("PostgreSQL is not installed")

func failOrSkip(tb testing.TB, err error) {
	tb.Helper()
	if !errors.Is(err, errNotInstalled) {
		tb.Fatalf("pgtest: %v", err)
	}
	if os.Getenv("CI") != "" {
		tb.Fatalf("pgtest: PostgreSQL is required under CI and missing (%v); scripts/deps.sh installs the postgresql package", err)
	}
	tb.Skipf("pgtest: SKIPPING, PostgreSQL is not installed (%v); install the distribution's postgresql package (scripts/deps.sh does it as root)", err)
}

// launch initialises and starts a cluster. On an error after the cluster's
// directory exists it returns the cluster too, for removal.
func launch() (*Cluster, error) {
	bin, err := findBin()
	if err != nil {
		return nil, fmt.Errorf("%w: %v", errNotInstalled, err)
	}
	cred, err := runAs()
	if err != nil {
		return nil, err
	}
	dir, err := os.MkdirTemp("", "hostcert-pgtest-")
	if err != nil {
		return nil, err
	}
	c := &Cluster{dir: dir, bin: bin, cred: cred}
	for _, sub := range []string{"data", "sock"} {
		if err := os.Mkdir(filepath.Join(dir, sub), 0o700); err != nil {
			return c, err
		}
	}
	if err := cred.chown(dir, filepath.Join(dir, "data"), filepath.Join(dir, "sock")); err != nil {
		return c, err
	}
	if out, err := c.run(2*time.Minute, "initdb", "-D", c.data(), "-U", Superuser, "-A", "trust", "-E", "UTF8", "--locale=C", "--no-sync"); err != nil {
		return c, fmt.Errorf("initdb: %v\n%s", err, out)
	}
	// A free port can be taken between probing and binding: try a few.
	var lastErr error
	for attempt := 0; attempt < 5; attempt++ {
		port, err := freePort()
		if err != nil {
			return c, err
		}
		c.Port = port
		if lastErr = c.start(); lastErr == nil {
			return c, nil
		}
	}
	return c, fmt.Errorf("start: %v", lastErr)
}

// remove stops the cluster at once and deletes its files.
func (c *Cluster) remove() {
	_ = c.stop("immediate")
	_ = os.RemoveAll(c.dir)
}

// DSN is the connection string for database db ("postgres" when empty) as
// the superuser over loopback TCP.
func (c *Cluster) DSN(db string) string {
	if db == "" {
		db = "postgres"
	}
	return fmt.Sprintf("postgres://%s@127.0.0.1:%d/%s?sslmode=disable&connect_timeout=5", Superuser, c.Port, db)
}

// CreateDatabase creates a new, empty database and returns its DSN. Tests
// that share a cluster use one database each.
func (c *Cluster) CreateDatabase(tb testing.TB, name string) string {
	tb.Helper()
	dsn, err := c.NewDatabase(name)
	if err != nil {
		tb.Fatalf("pgtest: %v", err)
	}
	return dsn
}

// Stop stops the cluster (fast shutdown: open sessions are ended, nothing
// committed is lost).
func (c *Cluster) Stop(tb testing.TB) {
	tb.Helper()
	if err := c.stop("fast"); err != nil {
		tb.Fatalf("pgtest: stop: %v", err)
	}
}

// Crash stops the cluster as a power cut would (immediate shutdown: no
// checkpoint; crash recovery runs at the next start).
func (c *Cluster) Crash(tb testing.TB) {
	tb.Helper()
	if err := c.stop("immediate"); err != nil {
		tb.Fatalf("pgtest: crash: %v", err)
	}
}

// Restart starts a stopped cluster again on the same port.
func (c *Cluster) Restart(tb testing.TB) {
	tb.Helper()
	if err := c.start(); err != nil {
		tb.Fatalf("pgtest: restart: %v", err)
	}
}

// EnableTLS restarts the cluster with TLS on, serving certPEM (the server's
// certificate, then any intermediates) with keyPEM. Clients may then use
// sslmode=require, verify-ca or verify-full; plain connections still work.
func (c *Cluster) EnableTLS(tb testing.TB, certPEM, keyPEM []byte) {
	tb.Helper()
	crt, key := filepath.Join(c.dir, "server.crt"), filepath.Join(c.dir, "server.key")
	for _, f := range []struct {
		path string
		data []byte
	}{{crt, certPEM}, {key, keyPEM}} {
		if err := os.WriteFile(f.path, f.data, 0o600); err != nil {
			tb.Fatalf("pgtest: %v", err)
		}
	}
	// PostgreSQL wants its key owned by the server's user, owner-only.
	if err := c.cred.chown(crt, key); err != nil {
		tb.Fatalf("pgtest: %v", err)
	}
	if err := c.stop("fast"); err != nil {
		tb.Fatalf("pgtest: enable TLS: %v", err)
	}
	c.mu.Lock()
	c.opts = []string{"-c ssl=on", "-c ssl_cert_file=" + crt, "-c ssl_key_file=" + key}
	c.mu.Unlock()
	if err := c.start(); err != nil {
		tb.Fatalf("pgtest: enable TLS: %v", err)
	}
}

// Log returns the server's log so far (for failure messages).
func (c *Cluster) Log() string {
	b, _ := os.ReadFile(filepath.Join(c.dir, "log"))
	return string(b)
}

func (c *Cluster) data() string { return filepath.Join(c.dir, "data") }

func (c *Cluster) start() error {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.running {
		return nil
	}
	opts := strings.Join([]string{
		"-c listen_addresses=127.0.0.1",
		"-p " + strconv.Itoa(c.Port),
		"-k " + filepath.Join(c.dir, "sock"),
		"-c max_connections=200",
		"-c shared_buffers=32MB",
	}, " ")
	if len(c.opts) > 0 {
		opts += " " + strings.Join(c.opts, " ")
	}
	out, err := c.run(time.Minute, "pg_ctl", "-D", c.data(), "-l", filepath.Join(c.dir, "log"), "-w", "-t", "45", "-o", opts, "start")
	if err != nil {
		return fmt.Errorf("pg_ctl start on port %d: %v\n%s\n%s", c.Port, err, out, tail(c.Log(), 2000))
	}
	c.running = true
	return nil
}

func (c *Cluster) stop(mode string) error {
	c.mu.Lock()
	defer c.mu.Unlock()
	if !c.running {
		return nil
	}
	out, err := c.run(time.Minute, "pg_ctl", "-D", c.data(), "-m", mode, "-w", "-t", "45", "stop")
	if err != nil {
		return fmt.Errorf("pg_ctl stop -m %s: %v\n%s", mode, err, out)
	}
	c.running = false
	return nil
}

// run runs one PostgreSQL program as the cluster's user, bounded in time.
// pg_ctl's server writes to the log file, never to our pipes, so waiting for
// the command never waits for the server.
func (c *Cluster) run(timeout time.Duration, prog string, args ...string) ([]byte, error) {
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	defer cancel()
	cmd := exec.CommandContext(ctx, filepath.Join(c.bin, prog), args...)
	cmd.Dir = c.dir
	cmd.Env = append(os.Environ(), "LC_ALL=C", "PGTZ=UTC")
	var out bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &out
	c.cred.apply(cmd)
	err := cmd.Run()
	return out.Bytes(), err
}

// findBin finds initdb and pg_ctl: $PGBIN, the newest
// /usr/lib/postgresql/*/bin (Debian), or PATH.
func findBin() (string, error) {
	var dirs []string
	if d := os.Getenv("PGBIN"); d != "" {
		dirs = append(dirs, d)
	}
	found, _ := filepath.Glob("/usr/lib/postgresql/*/bin")
	sort.Slice(found, func(i, j int) bool { return version(found[i]) > version(found[j]) })
	dirs = append(dirs, found...)
	if p, err := exec.LookPath("initdb"); err == nil {
		dirs = append(dirs, filepath.Dir(p))
	}
	for _, d := range dirs {
		if isExec(filepath.Join(d, "initdb")) && isExec(filepath.Join(d, "pg_ctl")) {
			return d, nil
		}
	}
	return "", errors.New("no initdb and pg_ctl in $PGBIN, /usr/lib/postgresql/*/bin or PATH")
}

func version(binDir string) int {
	n, _ := strconv.Atoi(filepath.Base(filepath.Dir(binDir)))
	return n
}

func isExec(p string) bool {
	fi, err := os.Stat(p)
	return err == nil && !fi.IsDir() && fi.Mode()&0o111 != 0
}

func freePort() (int, error) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return 0, fmt.Errorf("free port: %w", err)
	}
	defer ln.Close()
	return ln.Addr().(*net.TCPAddr).Port, nil
}

// runAs picks the user PostgreSQL runs as: the current one, or, as root,
// the distribution's "postgres" user (else "nobody").
func runAs() (*credential, error) {
	if os.Geteuid() != 0 {
		return nil, nil
	}
	for _, name := range []string{"postgres", "nobody"} {
		u, err := user.Lookup(name)
		if err != nil {
			continue
		}
		uid, err1 := strconv.Atoi(u.Uid)
		gid, err2 := strconv.Atoi(u.Gid)
		if err1 == nil && err2 == nil && uid != 0 {
			return newCredential(uint32(uid), uint32(gid)), nil
		}
	}
	return nil, errors.New("running as root and no unprivileged user (postgres, nobody) to run PostgreSQL as")
}

func tail(s string, n int) string {
	if len(s) > n {
		return s[len(s)-n:]
	}
	return s
}
