package cli

import (
	"crypto"
	"crypto/ecdsa"
	"crypto/x509"
	"os"
	"path/filepath"
	"runtime"
	"strings"
	"testing"

	"github.com/spf13/cobra"

	"github.com/hostcert/hostcert/agent/internal/certstore"
	"github.com/hostcert/hostcert/common/pki"
	"github.com/hostcert/hostcert/primary/primarytest"
)

func TestEnrollRenewRevoke(t *testing.T) {
	srv := newServer(t, primarytest.Options{})
	h := newHarness(t, srv)
	if r := h.run("get-cert", "--name", "web01.example.com"); r.code == 0 || !strings.Contains(r.err, "get-ca-cert") {
		t.Fatalf("get-cert before get-ca-cert: exit %d, %q; want a pointer to get-ca-cert", r.code, r.err)
	}
	h.enroll("web01.example.com")
	id := h.identity()
	hostID := srv.HostID("web01.example.com")
	if hostID == "" || pki.HostIDFromCert(id.Cert) != hostID || id.Cert.Subject.CommonName != hostID {
		t.Fatalf("certificate host ID = %q (CN %q), want the primary's %q", pki.HostIDFromCert(id.Cert), id.Cert.Subject.CommonName, hostID)
	}
	if _, ok := id.Cert.PublicKey.(*ecdsa.PublicKey); !ok {
		t.Errorf("default key type = %T, want ECDSA", id.Cert.PublicKey)
	}
	if runtime.GOOS != "windows" {
		fi, _ := os.Stat(filepath.Join(h.data, certstore.IdentityFile))
		if fi.Mode().Perm() != 0o600 {
			t.Errorf("key file mode = %v, want 0600", fi.Mode().Perm())
		}
	}
	st := h.status()
	if !st.Trusted || !st.Enrolled || st.HostID != hostID || st.State.Level != "high" || !st.Health.CRLPresent {
		t.Errorf("status = %+v, want trusted, enrolled, host %s, level high, CRL known", st, hostID)
	}
	if st.State.Route != "direct" {
		t.Errorf("status route = %q, want direct", st.State.Route)
	}
	human := h.must("status").out
	for _, want := range []string{hostID, "web01.example.com", "route:", "direct", "level:", "high", "next renewal:", "last CRL refresh:"} {
		if !strings.Contains(human, want) {
			t.Errorf("status output lacks %q:\n%s", want, human)
		}
	}

	// renew rotates the key by default; --keep-key keeps it.
	h.must("renew")
	id2 := h.identity()
	if id2.Cert.SerialNumber.Cmp(id.Cert.SerialNumber) == 0 || samePub(id.Cert, id2.Cert) {
		t.Errorf("renew: serial or key unchanged, want a new certificate for a new key")
	}
	if pki.HostIDFromCert(id2.Cert) != hostID {
		t.Errorf("renew changed the host ID to %q, want %q", pki.HostIDFromCert(id2.Cert), hostID)
	}
	h.must("renew", "--keep-key")
	id3 := h.identity()
	if !samePub(id2.Cert, id3.Cert) || id3.Cert.SerialNumber.Cmp(id2.Cert.SerialNumber) == 0 {
		t.Errorf("renew --keep-key: want a new certificate for the same key")
	}
	if r := h.must("self-check"); !strings.Contains(r.out, "revoked=false") {
		t.Errorf("self-check = %q, want revoked=false", r.out)
	}

	// Revoke on the primary: self-check sees it after get-crl; renew is refused.
	srv.Revoke(hostID)
	h.must("get-crl")
	r := h.run("self-check")
	if r.code != 2 || !strings.Contains(r.err, "REVOKED") {
		t.Errorf("self-check after revocation: exit %d, %q; want exit 2 and REVOKED", r.code, r.err)
	}
	r = h.run("renew")
	if r.code == 0 || !strings.Contains(r.err, "host_revoked") || !strings.Contains(r.err, "reissue token") {
		t.Errorf("renew after revocation: exit %d, %q; want host_revoked and a hint", r.code, r.err)
	}
	// Reissue with a reissue token: same host ID, fresh certificate, self-check passes.
	r = h.run("get-cert", "--name", "web01.example.com")
	if r.code == 0 || !strings.Contains(r.err, "refused (reissue_token_required)") {
		t.Errorf("get-cert without a reissue token: exit %d, %q; want reissue_token_required", r.code, r.err)
	}
	reissue := srv.ReissueToken("reissue-web01", hostID)
	h.must("get-cert", "--name", "web01.example.com", "--token", reissue)
	if got := pki.HostIDFromCert(h.identity().Cert); got != hostID {
		t.Errorf("reissue host ID = %q, want %q", got, hostID)
	}
	h.must("self-check")
}

func samePub(a, b *x509.Certificate) bool {
	type eq interface{ Equal(crypto.PublicKey) bool }
	return a.PublicKey.(eq).Equal(b.PublicKey)
}

func TestGetCertTokens(t *testing.T) {
	// The names are not in the host registry: at level high, issue needs a token.
	srv := newServer(t, primarytest.Options{})
	flagTok, fileTok, envTok := srv.Token("flag", 1), srv.Token("file", 1), srv.Token("env", 1)

	h := newHarness(t, srv)
	h.must("get-ca-cert", "--fingerprint", srv.Fingerprint())
	r := h.run("get-cert", "--name", "a.example.com")
	if r.code == 0 || !strings.Contains(r.err, "refused (token_required)") || !strings.Contains(r.err, "--token") {
		t.Fatalf("get-cert without token: exit %d, %q; want one line: refused (token_required) ... --token", r.code, r.err)
	}
	r = h.run("get-cert", "--name", "a.example.com", "--token", "hct_wrong")
	if r.code == 0 || !strings.Contains(r.err, "refused (token_invalid)") {
		t.Fatalf("get-cert with a wrong token: exit %d, %q; want token_invalid", r.code, r.err)
	}
	if strings.Contains(r.err, "hct_wrong") {
		t.Errorf("the token value appears in the output: %q", r.err)
	}
	h.must("get-cert", "--name", "a.example.com", "--token", flagTok)

	h2 := newHarness(t, srv)
	h2.must("get-ca-cert", "--fingerprint", srv.Fingerprint())
	tf := filepath.Join(h2.dir, "token")
	os.WriteFile(tf, []byte(fileTok+"\n"), 0o600)
	h2.must("get-cert", "--name", "b.example.com", "--token-file", tf, "--key-algorithm", "rsa-3072")
	if _, ok := h2.identity().Cert.PublicKey.(interface{ Size() int }); !ok {
		t.Errorf("--key-algorithm rsa-3072 gave a %T key", h2.identity().Cert.PublicKey)
	}

	h3 := newHarness(t, srv)
	h3.must("get-ca-cert", "--fingerprint", srv.Fingerprint())
	t.Setenv("HOSTCERT_TOKEN", envTok)
	h3.must("get-cert", "--name", "c.example.com", "--nat")
}

func TestResolveToken(t *testing.T) {
	dir := t.TempDir()
	f := filepath.Join(dir, "t")
	os.WriteFile(f, []byte("  hct_x\n"), 0o600)
	for _, tc := range []struct {
		flag, file string
		set        bool
		env, want  string
		ok         bool
	}{
		{"hct_a", "", true, "hct_env", "hct_a", true},
		{"", f, false, "hct_env", "hct_x", true},
		{"", "", false, "hct_env", "hct_env", true},
		{"", "", false, "", "", true},
		{"hct_a", f, true, "", "", false},
		{"", filepath.Join(dir, "missing"), false, "", "", false},
	} {
		got, err := resolveToken(tc.flag, tc.file, tc.set, tc.env)
		if got != tc.want || (err == nil) != tc.ok {
			t.Errorf("resolveToken(%q, %q, %t, %q) = %q, %v, want %q ok=%t", tc.flag, tc.file, tc.set, tc.env, got, err, tc.want, tc.ok)
		}
	}
}

// `service install` passes the config flags on to the service's command line.
func TestServiceArguments(t *testing.T) {
	a := &app{io: IO{}}
	root := a.root()
	root.SetArgs([]string{"service", "status", "--config", "rel/agent.yaml", "--data", "d", "--tunnel", "m1:1556", "--tunnel", "m2:1556", "--keep-key"})
	var got []string
	for _, c := range root.Commands() {
		if c.Name() == "service" {
			c.RunE = func(cmd *cobra.Command, _ []string) error {
				cfg := a.svcConfig(cmd, "x")
				got = cfg.Arguments
				if cfg.SystemdUnit == "" {
					t.Errorf("svc.Config.SystemdUnit is empty, want the packaged unit")
				}
				return nil
			}
		}
	}
	if err := root.Execute(); err != nil {
		t.Fatal(err)
	}
	cfgAbs, _ := filepath.Abs("rel/agent.yaml")
	dataAbs, _ := filepath.Abs("d")
	want := []string{"run", "--config", cfgAbs, "--data", dataAbs, "--keep-key=true", "--tunnel", "m1:1556", "--tunnel", "m2:1556"}
	if strings.Join(got, " ") != strings.Join(want, " ") {
		t.Errorf("service arguments = %q, want %q", got, want)
	}
}
