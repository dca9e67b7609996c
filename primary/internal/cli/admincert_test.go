//go:build !windows

package cli

import (
	"bytes"
	"crypto/ecdsa"
	"crypto/tls"
	"crypto/x509"
	"encoding/base64"
	"encoding/hex"
	"encoding/pem"
	"io"
	"math/big"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"runtime"
	"strings"
	"sync"
	"testing"
	"time"

	pkcs12 "software.sslmate.com/src/go-pkcs12"

	"github.com/hostcert/hostcert/common/pki"
	"github.com/hostcert/hostcert/common/protocol"
	"github.com/hostcert/hostcert/primary/internal/admin"
	"github.com/hostcert/hostcert/primary/internal/ca"
)

// recorder relays the admin socket of dir through DIR2/admin.sock and keeps
// every byte that crosses it, both ways.
type recorder struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (r *recorder) Write(p []byte) (int, error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.buf.Write(p)
}

func (r *recorder) bytes() []byte {
	r.mu.Lock()
	defer r.mu.Unlock()
	return bytes.Clone(r.buf.Bytes())
}

// relaySocket serves DIR2/admin.sock, forwarding each connection to
// dir's admin socket and recording the traffic; it returns DIR2.
func relaySocket(t *testing.T, dir string, rec *recorder) string {
	t.Helper()
	relayDir, err := os.MkdirTemp("", "hcr")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(relayDir) })
	ln, err := net.Listen("unix", filepath.Join(relayDir, admin.SocketName))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ln.Close() })
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			go func() {
				defer c.Close()
				up, err := net.Dial("unix", filepath.Join(dir, admin.SocketName))
				if err != nil {
					return
				}
				defer up.Close()
				done := make(chan struct{})
				go func() {
					_, _ = io.Copy(io.MultiWriter(c, rec), up)
					close(done)
				}()
				_, _ = io.Copy(io.MultiWriter(up, rec), c)
				up.(*net.UnixConn).CloseWrite()
				<-done
			}()
		}
	}()
	return relayDir
}

// TestAdminCertCommands: admin add generates the key in the command
// line's process (the socket traffic holds the CSR, never the key) and
// writes NAME.key owner-only, NAME.pem (an admin-role certificate for the
// key, and its chain to the root) and NAME.p12 (readable with the
// password); it refuses to overwrite a key and to give a name a second
// valid certificate. admin list shows it (--json too); admin revoke
// revokes it and the CRL served lists its serial; after that the name can
// be given a new certificate. Each is audited with the operator's uid.
func TestAdminCertCommands(t *testing.T) {
	dir, cmd, srv := startPrimaryServer(t, nil)
	rec := &recorder{}
	relay := relaySocket(t, dir, rec)
	out := t.TempDir()
	pwFile := filepath.Join(t.TempDir(), "pw")
	if err := os.WriteFile(pwFile, []byte("correct horse\n"), 0o600); err != nil {
		t.Fatal(err)
	}

	stdout := mustRun(t, "admin", "add", "alice", "--out", out, "--p12-password-file", pwFile, "--data", relay)
	if !strings.Contains(stdout, "issued an administrator certificate for alice") || !strings.Contains(stdout, "alice.p12") {
		t.Errorf("admin add = %q, want the serial and the files written", stdout)
	}
	keyPath, pemPath, p12Path := filepath.Join(out, "alice.key"), filepath.Join(out, "alice.pem"), filepath.Join(out, "alice.p12")
	for _, p := range []string{keyPath, p12Path} {
		fi, err := os.Stat(p)
		if err != nil {
			t.Fatalf("admin add wrote no %s: %v", p, err)
		}
		if runtime.GOOS != "windows" && fi.Mode().Perm() != 0o600 {
			t.Errorf("%s mode = %v, want 0600", p, fi.Mode().Perm())
		}
	}
	keyPEM, err := os.ReadFile(keyPath)
	if err != nil {
		t.Fatal(err)
	}
	key, err := pki.ParseKey(keyPEM)
	if err != nil {
		t.Fatal(err)
	}
	pemData, err := os.ReadFile(pemPath)
	if err != nil {
		t.Fatal(err)
	}
	certs, err := pki.ParseCerts(pemData)
	if err != nil || len(certs) != 2 {
		t.Fatalf("alice.pem = %d certificates, %v, want the certificate and the issuing CA", len(certs), err)
	}
	leaf := certs[0]
	if role, id := pki.RoleOf(leaf); role != pki.RoleAdmin || id != "alice" {
		t.Errorf("alice.pem role = %q %q, want admin alice", role, id)
	}
	if !leaf.PublicKey.(*ecdsa.PublicKey).Equal(key.Public()) {
		t.Errorf("alice.pem is not for alice.key")
	}
	c, err := ca.Load(dir)
	if err != nil {
		t.Fatal(err)
	}
	roots := x509.NewCertPool()
	for _, r := range c.Bundle() {
		roots.AddCert(r)
	}
	if err := pki.VerifyPeer(certs, pki.PeerCheck{Roots: roots, Role: pki.RoleAdmin, Usage: x509.ExtKeyUsageClientAuth}); err != nil {
		t.Errorf("alice.pem does not verify as an admin client certificate: %v", err)
	}
	p12, err := os.ReadFile(p12Path)
	if err != nil {
		t.Fatal(err)
	}
	pk, pc, chain, err := pkcs12.DecodeChain(p12, "correct horse")
	if err != nil || !pc.Equal(leaf) || len(chain) != 1 || !pk.(*ecdsa.PrivateKey).Equal(key) {
		t.Errorf("alice.p12 = %v, %d CA certificates, want alice's key, certificate and the issuing CA", err, len(chain))
	}
	if _, _, err := pkcs12.Decode(p12, "wrong"); err == nil {
		t.Errorf("alice.p12 opens with a wrong password")
	}

	// The key never crossed the socket; the CSR did.
	traffic := rec.bytes()
	if !bytes.Contains(traffic, []byte("CERTIFICATE REQUEST")) {
		t.Fatalf("relay recorded no CSR (%d bytes): the test does not see the traffic", len(traffic))
	}
	block, _ := pem.Decode(keyPEM)
	d := key.(*ecdsa.PrivateKey).D.FillBytes(make([]byte, 32))
	for name, secret := range map[string][]byte{
		"key DER (base64)":     []byte(base64.StdEncoding.EncodeToString(block.Bytes)[:40]),
		"key PEM's first line": bytes.SplitN(bytes.SplitN(keyPEM, []byte("\n"), 3)[1], []byte("\n"), 2)[0],
		"scalar (hex)":         []byte(hex.EncodeToString(d)),
		"scalar (HEX)":         []byte(strings.ToUpper(hex.EncodeToString(d))),
		"scalar (base64)":      []byte(base64.StdEncoding.EncodeToString(d)[:40]),
		"scalar (raw)":         d,
		"PRIVATE KEY":          []byte("PRIVATE KEY"),
	} {
		if bytes.Contains(traffic, secret) {
			t.Errorf("the admin socket carried the private key (%s)", name)
		}
	}

	// No overwrite, one valid certificate per name, a bad name.
	mustFail(t, "exists", cmd("admin", "add", "alice", "--out", out)...)
	mustFail(t, "already holds a valid administrator certificate", cmd("admin", "add", "alice", "--out", t.TempDir())...)
	mustFail(t, "administrator name", cmd("admin", "add", "../x", "--out", t.TempDir())...)
	// Without a password file: no p12, a hint how to make one. An --out
	// that does not exist yet is made, owner-only.
	out2 := filepath.Join(t.TempDir(), "new", "admins")
	code, _, stderr := run(t, cmd("admin", "add", "bob", "--out", out2)...)
	if code != 0 || !strings.Contains(stderr, "openssl pkcs12 -export") {
		t.Errorf("admin add bob = exit %d, stderr %q, want 0 and the openssl hint", code, stderr)
	}
	if _, err := os.Stat(filepath.Join(out2, "bob.p12")); err == nil {
		t.Errorf("bob.p12 written without a password")
	}
	if fi, err := os.Stat(out2); err != nil || (runtime.GOOS != "windows" && fi.Mode().Perm() != 0o700) {
		t.Errorf("--out made as %v (%v), want a directory with mode 0700", fi, err)
	}
	if f, err := os.CreateTemp(t.TempDir(), "file"); err == nil {
		f.Close()
		mustFail(t, "not a directory", cmd("admin", "add", "carol", "--out", f.Name())...)
	}

	var list []admin.Admin
	decode(t, mustRun(t, cmd("admin", "list", "--json")...), &list)
	serial := ca.SerialHex(leaf.SerialNumber)
	if len(list) != 2 || list[0].Name != "alice" || list[0].Serial != serial || list[0].State != "valid" ||
		!list[0].NotAfter.Equal(leaf.NotAfter) || list[1].Name != "bob" {
		t.Fatalf("admin list --json = %+v, want alice (%s, valid) and bob", list, serial)
	}
	if text := mustRun(t, cmd("admin", "list")...); !strings.Contains(text, "NAME") || !strings.Contains(text, serial) {
		t.Errorf("admin list = %q, want a table with alice's serial", text)
	}

	mustFail(t, "no administrator named", cmd("admin", "revoke", "carol")...)
	if got := mustRun(t, cmd("admin", "revoke", "alice", "--reason", "keyCompromise")...); !strings.Contains(got, "revoked 1 certificate") {
		t.Errorf("admin revoke alice = %q", got)
	}
	decode(t, mustRun(t, cmd("admin", "list", "--json")...), &list)
	if list[0].State != "revoked" || list[0].RevokedAt == nil || list[0].RevokeReason != "keyCompromise" {
		t.Errorf("admin list after revoke = %+v, want alice revoked (keyCompromise)", list[0])
	}
	if !crlLists(t, srv.Addr().String(), c, leaf.SerialNumber) {
		t.Errorf("the CRL served does not list alice's revoked certificate %s", serial)
	}
	// Revoked, alice may have a new certificate.
	mustRun(t, cmd("admin", "add", "alice", "--out", t.TempDir())...)

	var rows []admin.AuditEntry
	decode(t, mustRun(t, cmd("audit", "--json")...), &rows)
	seen := map[string]int{}
	for _, r := range rows {
		if strings.HasPrefix(r.Action, "admin.") && r.Outcome == "ok" && strings.HasPrefix(r.Actor, "admin:") {
			seen[r.Action]++
		}
	}
	if seen[admin.CmdAdminAdd] != 3 || seen[admin.CmdAdminList] != 3 || seen[admin.CmdAdminRevoke] != 1 {
		t.Errorf("audit rows by the operator = %v, want 3 admin.add, 3 admin.list, 1 admin.revoke", seen)
	}
}

// crlLists fetches the CRL of the issuing CA from the primary's API and
// reports whether it lists serial.
func crlLists(t *testing.T, addr string, c *ca.CA, serial *big.Int) bool {
	t.Helper()
	roots := x509.NewCertPool()
	for _, r := range c.Bundle() {
		roots.AddCert(r)
	}
	hc := &http.Client{Timeout: 10 * time.Second, Transport: &http.Transport{TLSClientConfig: &tls.Config{RootCAs: roots, ServerName: "localhost"}}}
	resp, err := hc.Get("https://" + addr + protocol.PathCRL)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	der, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	l, err := x509.ParseRevocationList(der)
	if err != nil {
		t.Fatalf("GET %s: %v", protocol.PathCRL, err)
	}
	if err := l.CheckSignatureFrom(c.Certificate()); err != nil {
		t.Errorf("the CRL is not signed by the current issuing CA: %v", err)
	}
	for _, e := range l.RevokedCertificateEntries {
		if e.SerialNumber.Cmp(serial) == 0 {
			return true
		}
	}
	return false
}
