package server

import (
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/hostcert/hostcert/common/pki"
	"github.com/hostcert/hostcert/common/protocol"
	"github.com/hostcert/hostcert/primary/internal/admin"
	"github.com/hostcert/hostcert/primary/internal/ca"
)

// TestOpenSSLVerifiesWithCRL: `openssl verify -crl_check` with our CA and the
// served CRL accepts a good certificate and rejects a revoked one.
func TestOpenSSLVerifiesWithCRL(t *testing.T) {
	openssl, err := exec.LookPath("openssl")
	if err != nil {
		t.Skip("openssl not installed")
	}
	e := newEnv(t, envOpts{})
	e.setLevel(protocol.LevelMedium)
	e.dns.Set("good.test", loopback)
	e.dns.Set("bad.test", loopback)
	good, bad := newHost(t, "good.test"), newHost(t, "bad.test")
	for _, h := range []*host{good, bad} {
		if r := e.enroll(h, "", "", false); r.status != http.StatusOK {
			t.Fatalf("enroll %s = %v", h.name, r)
		}
	}
	e.call(admin.CmdCertRevoke, admin.RevokeArgs{Host: "bad.test", Reason: "keyCompromise"}, nil)
	e.waitCRL(ca.SerialHex(bad.leaf.SerialNumber), true)
	_, crlPEM := e.get(protocol.PathCRL+"?format=pem", nil)
	_, rootCRLPEM := e.get(protocol.PathCRL+"?format=pem&issuer="+pki.KeyID(e.caCert.SubjectKeyId), nil)
	crlPEM = append(crlPEM, rootCRLPEM...)

	dir := t.TempDir()
	write := func(name string, data []byte) string {
		p := filepath.Join(dir, name)
		if err := os.WriteFile(p, data, 0o600); err != nil {
			t.Fatal(err)
		}
		return p
	}
	caFile := write("ca.pem", pki.EncodeCert(e.caCert))
	issuingFile := write("issuing.pem", pki.EncodeCert(e.issuing))
	crlFile := write("crl.pem", crlPEM)
	verify := func(h *host) (string, error) {
		out, err := exec.Command(openssl, "verify", "-CAfile", caFile, "-untrusted", issuingFile, "-CRLfile", crlFile, "-crl_check_all",
			write(h.name+".pem", pki.EncodeCert(h.leaf))).CombinedOutput()
		return string(out), err
	}
	if out, err := verify(good); err != nil || !strings.Contains(out, "OK") {
		t.Errorf("openssl verify good.test = %q, %v, want OK", out, err)
	}
	if out, err := verify(bad); err == nil || !strings.Contains(out, "revoked") {
		t.Errorf("openssl verify bad.test = %q, %v, want certificate revoked", out, err)
	}
}
