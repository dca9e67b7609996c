//go:build linux

package e2e

import (
	"bytes"
	"context"
	"crypto"
	"crypto/tls"
	"crypto/x509"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"encoding/pem"
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/hostcert/hostcert/common/pki"
	"github.com/hostcert/hostcert/common/protocol"
	"github.com/hostcert/hostcert/internal/pgtest"
)

// What the nodes of one fleet share through the database besides its
// state: their names (reserved on every node), their CA (a rotation on one
// node reaches the others, sealed with the fleet key) and their CRLs (a
// client moving between nodes never sees the CRL number go down).

// TestFleetShared runs the three on one two-node fleet.
func TestFleetShared(t *testing.T) {
	if testing.Short() {
		t.Skip("end-to-end: builds and runs the programs")
	}
	f := newFleet(t, pgtest.Shared(t), "")
	// Order matters: the rotations come last (they change the CA the
	// other parts use).
	t.Run("every node's names reserved on every node", func(t *testing.T) { f.reservedNames(t) })
	t.Run("a node that joins later reserves its name for renewals too", func(t *testing.T) { f.laterNode(t) })
	t.Run("CRL numbers never go down across nodes", func(t *testing.T) { f.crlNumbers(t) })
	t.Run("issuing CA rotation reaches the other node", func(t *testing.T) { f.rotation(t, false) })
	t.Run("root rotation reaches the other node", func(t *testing.T) { f.rotation(t, true) })
	f.checkLedger()
}

// reservedNames: node 1 was serving before node 2 joined; it refuses node
// 2's own name (enrollment, explain, host add), as node 2 refuses node 1's.
func (f *fleet) reservedNames(t *testing.T) {
	for i, name := range []string{nodeNames[1], nodeNames[0]} {
		via := i // node 1 is asked for node 2's name, node 2 for node 1's
		tok := strings.TrimSpace(f.nodes[via].admin("token", "create", "--name", fmt.Sprintf("reserved-%d", i)))
		ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
		a, err := f.clients[via].post(ctx, protocol.EnrollRequest{Name: name, CSR: csrFor(t, name), Token: tok})
		cancel()
		if err != nil || a.cert != nil || a.code != protocol.CodeNameReserved {
			t.Errorf("enroll %s (another node's name) through node %d = %+v, %v, want refused %s", name, via+1, a, err, protocol.CodeNameReserved)
		}
		for _, cmd := range [][]string{{"explain", name, "--from", "127.0.0.1"}, {"host", "add", name}} {
			if r := f.nodes[via].tryAdmin(cmd...); r.code == 0 || !strings.Contains(r.stderr, "reserved") {
				t.Errorf("%s on node %d: %s, want a refusal: reserved", strings.Join(cmd, " "), via+1, r)
			}
		}
	}
	// A copy of the CA files with another fleet key is refused by join:
	// that node would miss every rotation.
	other := filepath.Join(t.TempDir(), "ca-copy")
	if err := os.CopyFS(other, os.DirFS(filepath.Join(f.nodes[0].data, "ca"))); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(other, "fleet-key"), []byte(strings.Repeat("ab", 32)+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	dsnFile := writeDSN(t, filepath.Join(t.TempDir(), "dsn"), f.dsn)
	r := run(t, "", bins.primary, "join", "--data", filepath.Join(t.TempDir(), "node4"), "--ca-from", other,
		"--store-file", dsnFile, "--name", "node4.hostcert.test", "--service-name", primaryName)
	if r.code == 0 || !strings.Contains(r.stderr, "is not the fleet's") {
		t.Errorf("join with another fleet key: %s, want a refusal", r)
	}
	var n int
	f.query("SELECT COUNT(*) FROM primary_names WHERE name = ANY($1)", []any{[]string{nodeNames[0], nodeNames[1], primaryName}}, &n)
	if n != 3 {
		t.Errorf("primary_names holds %d of the 3 names of the fleet's nodes", n)
	}
}

// laterNode: a host holds a certificate for a name; then a third node
// joins with that name as its own. Within a second the running nodes
// reserve it, and refuse the host's renewal (name_reserved).
func (f *fleet) laterNode(t *testing.T) {
	const name = "node3.hostcert.test"
	key, err := pki.GenerateKey(pki.ECDSAP256)
	if err != nil {
		t.Fatal(err)
	}
	csr, err := pki.CreateCSR(key, name)
	if err != nil {
		t.Fatal(err)
	}
	tok := strings.TrimSpace(f.nodes[0].admin("token", "create", "--name", "later"))
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	got, err := f.clients[0].enroll(ctx, protocol.EnrollRequest{Name: name, CSR: string(csr), Token: tok})
	if err != nil {
		t.Fatalf("enroll %s before node 3 exists: %v", name, err)
	}
	pair, err := tls.X509KeyPair([]byte(got.Certificate+got.Chain), mustKeyPEM(t, key))
	if err != nil {
		t.Fatal(err)
	}
	renew := func(i int) (int, []byte) {
		cfg := f.clients[i].http.Transport.(*http.Transport).TLSClientConfig.Clone()
		cfg.Certificates = []tls.Certificate{pair}
		c := newAPIClientTLS(f.nodes[i].listen, cfg.RootCAs, cfg, true)
		csr, err := pki.CreateCSR(key, name)
		if err != nil {
			t.Fatal(err)
		}
		body, _ := json.Marshal(protocol.RenewRequest{CSR: string(csr)})
		resp, err := c.http.Post(c.base+protocol.PathRenew, "application/json", bytes.NewReader(body))
		if err != nil {
			t.Fatalf("renew through node %d: %v", i+1, err)
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(io.LimitReader(resp.Body, 1<<20))
		return resp.StatusCode, b
	}
	if status, b := renew(1); status != http.StatusOK {
		t.Fatalf("renewal through node 2 before node 3 joined = %d %s, want 200", status, b)
	}

	// Node 3 joins (it need not serve: its names are the fleet's from now on).
	dsnFile := writeDSN(t, filepath.Join(t.TempDir(), "dsn"), f.dsn)
	mustRun(t, "", bins.primary, "join", "--data", filepath.Join(t.TempDir(), "node3"), "--ca-from", filepath.Join(f.nodes[0].data, "ca"),
		"--store-file", dsnFile, "--name", name, "--service-name", primaryName)
	for i := range f.nodes {
		took := within(t, fmt.Sprintf("node 3's name reserved on node %d", i+1), time.Second, func() bool {
			r := f.nodes[i].tryAdmin("explain", name, "--from", "127.0.0.1")
			return r.code != 0 && strings.Contains(r.stderr, "reserved")
		})
		t.Logf("node 3's name reserved on node %d after %v", i+1, took)
		status, b := renew(i)
		var pe protocol.Error
		if status == http.StatusOK || json.Unmarshal(b, &pe) != nil || pe.Code != protocol.CodeNameReserved {
			t.Errorf("renewal of %s through node %d after node 3 joined = %d %s, want refused %s", name, i+1, status, b, protocol.CodeNameReserved)
		}
	}
}

func mustKeyPEM(t *testing.T, key any) []byte {
	t.Helper()
	b, err := pki.EncodeKey(key.(crypto.Signer))
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// crlNumbers: after each revocation on node 1, a client fetching the CRL
// alternately from node 1 and node 2 sees numbers that never go down.
func (f *fleet) crlNumbers(t *testing.T) {
	var last int64
	var from int
	fetch := func(i int) *x509.RevocationList {
		l := f.clients[i].crl(t)
		if n := l.Number.Int64(); n < last {
			t.Fatalf("CRL number went down: %d from node %d after %d from node %d", n, i+1, last, from+1)
		} else {
			last, from = n, i
		}
		return l
	}
	for r := range 3 {
		name := fmt.Sprintf("crlnum%d.fleet.test", r)
		tok := strings.TrimSpace(f.nodes[0].admin("token", "create", "--name", name))
		c := f.enrollOK(r%2, name, tok)
		fetch(0)
		fetch(1)
		f.nodes[0].admin("cert", "revoke", name, "--reason", "key-compromise")
		// Node 1 serves the revocation at once, node 2 within seconds; a
		// client alternates between them for 3 s (and until node 2 lists it).
		deadline := time.Now().Add(3 * time.Second)
		listed := false
		for k := 0; k < 400 && (time.Now().Before(deadline) || !listed); k++ {
			if l := fetch(k % 2); k%2 == 1 {
				listed = lists(l, c.Serial)
			}
		}
		if !listed {
			t.Fatalf("node 2 does not list %s", c.Serial)
		}
		if !lists(fetch(0), c.Serial) {
			t.Errorf("node 1 does not list %s", c.Serial)
		}
	}
}

// rotation: a rotation on node 1 (the issuing CA, or the root) reaches
// node 2 within 5 s through the database: node 2 serves the new bundle,
// issues from the new issuing CA and serves its CRL. The sealed row
// holds no key in clear, and a root's key never leaves node 1.
func (f *fleet) rotation(t *testing.T, root bool) {
	args := []string{"ca", "rotate"}
	if root {
		args = append(args, "--root")
	}
	dir1 := filepath.Join(f.nodes[0].data, "ca")
	before, err := os.ReadFile(filepath.Join(dir1, "issuing-current"))
	if err != nil {
		t.Fatal(err)
	}
	oldID := strings.TrimSpace(string(before))
	f.nodes[0].admin(args...)
	cur, err := os.ReadFile(filepath.Join(dir1, "issuing-current"))
	if err != nil {
		t.Fatal(err)
	}
	id := strings.TrimSpace(string(cur))
	issuing := readCert(t, filepath.Join(dir1, "issuing-"+id+".pem"))
	var newRoot *x509.Certificate
	if root {
		b, err := os.ReadFile(filepath.Join(dir1, "root.pem"))
		if err != nil {
			t.Fatal(err)
		}
		roots, err := pki.ParseCerts(b)
		if err != nil {
			t.Fatal(err)
		}
		newRoot = roots[0]
		if issuing.CheckSignatureFrom(newRoot) != nil {
			t.Fatal("the new issuing CA is not under the new root")
		}
	}

	// Node 2 serves the new CA material within 5 s.
	took := within(t, "the new issuing CA in node 2's bundle", 5*time.Second, func() bool {
		status, b, err := f.clients[1].get(protocol.PathCA)
		if err != nil || status != 200 {
			return false
		}
		certs, err := pki.ParseCerts(b)
		if err != nil {
			return false
		}
		has := func(c *x509.Certificate) bool {
			for _, x := range certs {
				if x.Equal(c) {
					return true
				}
			}
			return false
		}
		return has(issuing) && (newRoot == nil || (has(newRoot) && certs[0].Equal(newRoot)))
	})
	t.Logf("node 2 served the new CA after %v", took)

	// Node 2 issues from it, and serves its CRL.
	name := fmt.Sprintf("rotated-%v.fleet.test", root)
	tok := strings.TrimSpace(f.nodes[0].admin("token", "create", "--name", name))
	got := f.enrollOK(1, name, tok)
	block, _ := pem.Decode([]byte(got.Certificate))
	if block == nil {
		t.Fatalf("certificate from node 2 is not PEM: %q", got.Certificate)
	}
	leaf, err := x509.ParseCertificate(block.Bytes)
	if err != nil {
		t.Fatal(err)
	}
	if err := leaf.CheckSignatureFrom(issuing); err != nil {
		t.Errorf("node 2 issued %s with %s, not the new issuing CA %s", name, leaf.Issuer, issuing.Subject)
	}
	status, b, err := f.clients[1].get(protocol.PathCRL + "?" + protocol.CRLIssuerParam + "=" + id)
	if err != nil || status != 200 {
		t.Fatalf("node 2's CRL of the new issuing CA: %d, %v", status, err)
	}
	if blk, _ := pem.Decode(b); blk == nil {
		t.Errorf("node 2's CRL of the new issuing CA is not PEM")
	} else if l, err := x509.ParseRevocationList(blk.Bytes); err != nil || l.CheckSignatureFrom(issuing) != nil {
		t.Errorf("node 2's CRL of the new issuing CA does not verify with it: %v", err)
	}

	// The database holds the material only sealed.
	var sealed []byte
	f.query("SELECT sealed FROM ca_material ORDER BY generation DESC LIMIT 1", nil, &sealed)
	keyPEM, err := os.ReadFile(filepath.Join(dir1, "issuing-"+id+"-key.pem"))
	if err != nil {
		t.Fatal(err)
	}
	kb, _ := pem.Decode(keyPEM)
	derB64 := base64.StdEncoding.EncodeToString(kb.Bytes)
	for what, secret := range map[string][]byte{
		"key PEM": keyPEM, "key PEM (base64)": []byte(base64.StdEncoding.EncodeToString(keyPEM)),
		"key DER": kb.Bytes, "key DER (hex)": []byte(hex.EncodeToString(kb.Bytes)), "key DER (base64)": []byte(derB64[:48]),
	} {
		if bytes.Contains(sealed, secret) {
			t.Errorf("the database row holds the issuing CA's %s in clear", what)
		}
	}
	for _, marker := range []string{"PRIVATE KEY", "BEGIN", "issuing-"} {
		if bytes.Contains(sealed, []byte(marker)) {
			t.Errorf("the database row holds %q in clear", marker)
		}
	}
	// Node 2 has the new issuing CA's key (it signs), never a new root's.
	if _, err := os.Stat(filepath.Join(f.nodes[1].data, "ca", "issuing-"+id+"-key.pem")); err != nil {
		t.Errorf("node 2 has no key of the new issuing CA: %v", err)
	}
	if root {
		p := filepath.Join(f.nodes[1].data, "ca", "root-"+pki.KeyID(newRoot.SubjectKeyId)+"-key.pem")
		if _, err := os.Stat(p); err == nil {
			t.Errorf("the new root's key reached node 2 (%s)", p)
		}
		return
	}

	// Revoking the previous issuing CA on node 1 puts it on the root's
	// CRL that node 2 serves too.
	old := readCert(t, filepath.Join(dir1, "issuing-"+oldID+".pem"))
	f.nodes[0].admin("ca", "revoke-issuing", oldID, "--reason", "superseded")
	rootID := pki.KeyID(old.AuthorityKeyId)
	took = within(t, "the revoked issuing CA on node 2's root CRL", 5*time.Second, func() bool {
		status, b, err := f.clients[1].get(protocol.PathCRL + "?" + protocol.CRLIssuerParam + "=" + rootID)
		if err != nil || status != 200 {
			return false
		}
		blk, _ := pem.Decode(b)
		if blk == nil {
			return false
		}
		l, err := x509.ParseRevocationList(blk.Bytes)
		if err != nil {
			return false
		}
		for _, e := range l.RevokedCertificateEntries {
			if e.SerialNumber.Cmp(old.SerialNumber) == 0 {
				return true
			}
		}
		return false
	})
	t.Logf("node 2's root CRL listed the revoked issuing CA after %v", took)
}

func readCert(t *testing.T, path string) *x509.Certificate {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	certs, err := pki.ParseCerts(b)
	if err != nil {
		t.Fatal(err)
	}
	return certs[0]
}
