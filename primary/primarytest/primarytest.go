// Package primarytest runs the real hostcert primary in-process for the
// tests of other programs (the agent's above all, which cannot import
// primary/internal): `hostcert-primary init` in a temporary directory, the
// real server — CA, SQLite store, policy, enrollment, CRL publisher, admin
// socket — on 127.0.0.1:0, a test DNS server for host-name verification, and
// the admin commands a test needs, sent over the real admin socket. It wires
// the real pieces; it reimplements none of them.
//
// Only tests may import it: a test in agent/ checks that no non-test agent
// code depends on the primary.
package primarytest

import (
	"bytes"
	"context"
	"crypto/x509"
	"errors"
	"net"
	"net/netip"
	"os"
	"path/filepath"
	"sync"
	"testing"
	"time"

	"github.com/rs/zerolog"

	"github.com/hostcert/hostcert/common/pki"
	"github.com/hostcert/hostcert/common/protocol"
	"github.com/hostcert/hostcert/internal/dnstest"
	"github.com/hostcert/hostcert/primary/internal/admin"
	"github.com/hostcert/hostcert/primary/internal/cli"
	"github.com/hostcert/hostcert/primary/internal/server"
)

// DefaultNames are the names of the primary's TLS certificate unless
// Options.Names says otherwise.
var DefaultNames = []string{"localhost", "primary.test"}

// Options configure Start. The zero value is a primary at the default level
// issuing 365-day certificates.
type Options struct {
	// Names of the primary's own TLS certificate (default DefaultNames).
	Names []string
	// CertValidity of host certificates (0: the primary's default).
	CertValidity time.Duration
	// Level, when set, is set through the admin socket once serving.
	Level protocol.Level
	// Listen is the API address (default 127.0.0.1:0).
	Listen string
	// Store, when set, is the database (a postgres:// URL, see internal/pgtest)
	// instead of SQLite in the data directory.
	Store string
	// Join, when set, makes this primary a second node of Join's fleet:
	// `hostcert-primary join` with a copy of Join's CA files, its own host
	// ID and TLS certificate for Names (the first is the node's own name).
	// Store must be Join's PostgreSQL database.
	Join *Primary
	// Console serves the web console on 127.0.0.1:0 (ConsoleAddr).
	Console bool
	// OfflineRoot keeps the root's key out of the data directory
	// (`init --root-key-out`, RootKeyFile).
	OfflineRoot bool
	// BeforeServe, when set, is called with the data directory after init
	// and before the server starts.
	BeforeServe func(dir string)
}

// AuditEntry is one row of the primary's audit log.
type AuditEntry = admin.AuditEntry

// Primary is a running primary. Its methods fail the test on error.
type Primary struct {
	t       testing.TB
	dir     string
	addr    string
	cons    string
	bundle  []*x509.Certificate
	fp      string
	rootKey string // the offline root key's file (Options.OfflineRoot)
	dns     *dnstest.Server
	admin   admin.Client
	log     *syncBuffer

	stopOnce sync.Once
	stop     func() error
}

// Start initialises a data directory with the real `init` command and
// serves it until Stop or the end of the test.
func Start(t testing.TB, o Options) *Primary {
	t.Helper()
	if len(o.Names) == 0 {
		o.Names = DefaultNames
	}
	if o.Listen == "" {
		o.Listen = "127.0.0.1:0"
	}
	// A short path: the admin socket's path must fit in ~100 bytes, which
	// t.TempDir() under a long test name does not.
	base, err := os.MkdirTemp("", "hcp")
	if err != nil {
		t.Fatalf("primarytest: %v", err)
	}
	t.Cleanup(func() { os.RemoveAll(base) })
	dir := filepath.Join(base, "data")

	args := []string{"init", "--data", dir, "--key-alg", string(pki.ECDSAP256)}
	for _, n := range o.Names {
		args = append(args, "--name", n)
	}
	if o.Join != nil {
		// A second node of o.Join's fleet, set up as an operator would:
		// `join` with a copy of the first node's CA files.
		args = []string{"join", "--data", dir, "--ca-from", filepath.Join(o.Join.dir, "ca"), "--name", o.Names[0]}
		for _, n := range o.Names[1:] {
			args = append(args, "--service-name", n)
		}
	}
	if o.Store != "" {
		args = append(args, "--store", o.Store)
	}
	rootKey := ""
	if o.OfflineRoot {
		rootKey = filepath.Join(base, "offline-root-key.pem")
		args = append(args, "--root-key-out", rootKey)
	}
	var out, errb bytes.Buffer
	if code := cli.Main(context.Background(), args, &out, &errb); code != 0 {
		t.Fatalf("primarytest: hostcert-primary %s: exit %d: %s", args[0], code, errb.String())
	}

	if o.BeforeServe != nil {
		o.BeforeServe(dir)
	}
	p := &Primary{t: t, dir: dir, rootKey: rootKey, dns: dnstest.New(t, nil), admin: admin.Client{Dir: dir}, log: &syncBuffer{}}
	ctx, cancel := context.WithCancel(context.Background())
	srv, err := server.New(ctx, server.Config{
		DataDir: dir, Listen: o.Listen, Console: consoleAddr(o.Console), DNSServer: p.dns.Addr(), CertValidity: o.CertValidity, Store: o.Store,
		Log: zerolog.New(p.log).Level(zerolog.DebugLevel),
	})
	if err != nil {
		cancel()
		t.Fatalf("primarytest: server.New: %v", err)
	}
	p.addr = srv.Addr().String()
	if a := srv.ConsoleAddr(); a != nil {
		p.cons = a.String()
	}
	done := make(chan error, 1)
	go func() { done <- srv.Run(ctx) }()
	p.stop = func() error {
		cancel()
		select {
		case err := <-done:
			return err
		case <-time.After(30 * time.Second):
			return errors.New("server did not stop within 30s")
		}
	}
	t.Cleanup(func() {
		p.Stop()
		if t.Failed() {
			t.Logf("primary log:\n%s", p.log.String())
		}
	})

	var info admin.CAInfo
	p.call(admin.CmdCAShow, nil, &info)
	if p.bundle, err = pki.ParseCerts([]byte(info.BundlePEM)); err != nil {
		t.Fatalf("primarytest: CA bundle: %v", err)
	}
	p.fp = info.Fingerprint
	if o.Level != "" {
		p.SetLevel(o.Level)
	}
	return p
}

func consoleAddr(on bool) string {
	if on {
		return "127.0.0.1:0"
	}
	return ""
}

// ConsoleAddr is the web console's address, 127.0.0.1:PORT ("" when off).
func (p *Primary) ConsoleAddr() string { return p.cons }

// ConsoleLogin makes a one-time console login link for operator, valid for
// validFor (e.g. "10m"), through the real admin socket.
func (p *Primary) ConsoleLogin(operator, validFor string) admin.LoginLink {
	var l admin.LoginLink
	p.call(admin.CmdConsoleLogin, admin.LoginArgs{Operator: operator, ValidFor: validFor}, &l)
	return l
}

// Addr is the API's address, 127.0.0.1:PORT.
func (p *Primary) Addr() string { return p.addr }

// Port is the API's port.
func (p *Primary) Port() string { _, port, _ := net.SplitHostPort(p.addr); return port }

// Dir is the primary's data directory.
func (p *Primary) Dir() string { return p.dir }

// CA is the CA bundle the primary serves at /v1/ca.
func (p *Primary) CA() []*x509.Certificate { return p.bundle }

// Fingerprint is the CA's SHA-256 fingerprint, as `ca show` prints it.
func (p *Primary) Fingerprint() string { return p.fp }

// Log is what the primary logged so far (JSON lines).
func (p *Primary) Log() string { return p.log.String() }

// Stop stops serving (the address then refuses connections). Safe to call
// more than once; the test's cleanup calls it too.
func (p *Primary) Stop() {
	p.stopOnce.Do(func() {
		if err := p.stop(); err != nil {
			p.t.Errorf("primarytest: Run = %v, want nil after stop", err)
		}
	})
}

// AddHost puts names in the host registry (`host add`) and makes them
// resolve to 127.0.0.1 in the primary's DNS: a request for one of them from
// loopback is then "known and verified" (no token at level high).
func (p *Primary) AddHost(names ...string) {
	p.t.Helper()
	for _, n := range names {
		p.dns.Set(n, netip.MustParseAddr("127.0.0.1"))
	}
	p.call(admin.CmdHostAdd, admin.NamesArgs{Names: names}, nil)
}

// Resolve makes name resolve to addrs in the primary's DNS (no address:
// the name exists but has no address of that type).
func (p *Primary) Resolve(name string, addrs ...netip.Addr) { p.dns.Set(name, addrs...) }

// Token creates a standard token (`token create`) and returns its value.
func (p *Primary) Token(name string, maxUses int) string {
	p.t.Helper()
	var tok admin.CreatedToken
	p.call(admin.CmdTokenCreate, admin.TokenArgs{Name: name, MaxUses: maxUses}, &tok)
	return tok.Value
}

// ReissueToken creates a reissue token for host (a name or host ID) and
// returns its value.
func (p *Primary) ReissueToken(name, host string) string {
	p.t.Helper()
	var tok admin.CreatedToken
	p.call(admin.CmdTokenCreate, admin.TokenArgs{Name: name, ReissueHost: host}, &tok)
	return tok.Value
}

// SetLevel sets the deployment security level (`level set`).
func (p *Primary) SetLevel(l protocol.Level) {
	p.t.Helper()
	p.call(admin.CmdLevelSet, admin.LevelArgs{Level: l}, nil)
}

// HostID is the host ID of host (a name), "" while it has none.
func (p *Primary) HostID(name string) string {
	p.t.Helper()
	var h admin.HostDetail
	if err := p.admin.Call(context.Background(), admin.CmdHostShow, admin.HostArgs{Host: name}, &h); err != nil {
		var ce *admin.CommandError
		if errors.As(err, &ce) {
			return ""
		}
		p.t.Fatalf("primarytest: host show %s: %v", name, err)
	}
	return h.ID
}

// Revoke revokes every certificate of host (a name or host ID) with reason
// keyCompromise (`cert revoke`) and returns once the CRL the primary serves
// is a newer one, listing them.
func (p *Primary) Revoke(host string) {
	p.t.Helper()
	before := p.crlNumber()
	p.call(admin.CmdCertRevoke, admin.RevokeArgs{Host: host, Reason: "keyCompromise"}, nil)
	deadline := time.Now().Add(10 * time.Second)
	for p.crlNumber() == before {
		if time.Now().After(deadline) {
			p.t.Fatalf("primarytest: the served CRL is still number %s 10s after revoking %s", before, host)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

func (p *Primary) crlNumber() string {
	p.t.Helper()
	var info admin.CAInfo
	p.call(admin.CmdCAShow, nil, &info)
	return info.CRLNumber
}

// Audit is the whole audit log, oldest first (fetched page by page).
func (p *Primary) Audit() []AuditEntry {
	p.t.Helper()
	var all []AuditEntry
	for {
		var rows []AuditEntry
		args := admin.AuditArgs{}
		if len(all) > 0 {
			args.After = all[len(all)-1].ID
		}
		p.call(admin.CmdAudit, args, &rows)
		if len(rows) == 0 {
			return all
		}
		all = append(all, rows...)
	}
}

// Count is how many audit rows have the action (issue, reissue, renew, ...).
func (p *Primary) Count(action string) int {
	p.t.Helper()
	n := 0
	for _, r := range p.Audit() {
		if r.Action == action {
			n++
		}
	}
	return n
}

func (p *Primary) call(cmd string, args, out any) {
	p.t.Helper()
	if err := p.admin.Call(context.Background(), cmd, args, out); err != nil {
		p.t.Fatalf("primarytest: admin %s: %v", cmd, err)
	}
}

// syncBuffer collects the primary's log lines from its goroutines.
type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(b []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(b)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

// RotateCA runs `ca rotate` (with root, `ca rotate --root`; with the
// offline root key when there is one) and returns the current root's
// fingerprint afterwards.
func (p *Primary) RotateCA(root bool) string {
	p.t.Helper()
	var info admin.CAInfo
	p.call(admin.CmdCARotate, admin.RotateArgs{Root: root, RootKeyFile: p.rootKey}, &info)
	return info.Fingerprint
}

// RetireRoot runs `ca retire-root FINGERPRINT`.
func (p *Primary) RetireRoot(fingerprint string) {
	p.t.Helper()
	p.call(admin.CmdCARetireRoot, admin.RetireArgs{Fingerprint: fingerprint}, nil)
}

// RootKeyFile is where init wrote the root's key (Options.OfflineRoot).
func (p *Primary) RootKeyFile() string { return p.rootKey }

// RevokeIssuing runs `ca revoke-issuing ISSUING --reason REASON` with the
// offline root key when there is one.
func (p *Primary) RevokeIssuing(issuing, reason string) admin.RevokedIssuingInfo {
	p.t.Helper()
	var info admin.RevokedIssuingInfo
	p.call(admin.CmdCARevokeIssuing, admin.RevokeIssuingArgs{Issuing: issuing, Reason: reason, RootKeyFile: p.rootKey}, &info)
	return info
}

// SignRootCRL runs `ca sign-root-crl` with the offline root key when there
// is one.
func (p *Primary) SignRootCRL() admin.RootCRLInfo {
	p.t.Helper()
	var info admin.RootCRLInfo
	p.call(admin.CmdCASignRootCRL, admin.SignRootCRLArgs{RootKeyFile: p.rootKey}, &info)
	return info
}

// TryRevokeIssuing runs `ca revoke-issuing ISSUING --reason REASON`, with
// the offline root key when withKey, and returns its refusal.
func (p *Primary) TryRevokeIssuing(issuing, reason string, withKey bool) error {
	args := admin.RevokeIssuingArgs{Issuing: issuing, Reason: reason}
	if withKey {
		args.RootKeyFile = p.rootKey
	}
	return p.admin.Call(context.Background(), admin.CmdCARevokeIssuing, args, nil)
}
