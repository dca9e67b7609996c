package cli

import (
	"bytes"
	"context"
	"crypto/tls"
	"encoding/json"
	"io"
	"log"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/hostcert/hostcert/agent/internal/certstore"
	"github.com/hostcert/hostcert/common/pki"
	"github.com/hostcert/hostcert/internal/pkitest"
	"github.com/hostcert/hostcert/primary/primarytest"
)

// harness is one agent (its own data dir and config) against one real
// primary (primary/primarytest).
type harness struct {
	t      *testing.T
	srv    *primarytest.Primary
	dir    string
	data   string
	config string
	dial   string // what --primary-dial points at (default: the server)
	extra  []string
}

func newServer(t *testing.T, o primarytest.Options) *primarytest.Primary {
	t.Helper()
	return primarytest.Start(t, o)
}

func newHarness(t *testing.T, srv *primarytest.Primary) *harness {
	t.Helper()
	dir := t.TempDir()
	h := &harness{t: t, srv: srv, dir: dir, data: filepath.Join(dir, "data"), config: filepath.Join(dir, "agent.yaml"), dial: srv.Addr()}
	if err := os.WriteFile(h.config, []byte("log_format: json\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	return h
}

func (h *harness) args(args ...string) []string {
	base := []string{"--config", h.config, "--data", h.data, "--primary", "primary.test:" + h.srv.Port(), "--primary-dial", h.dial, "--dial-timeout", "500ms", "--request-timeout", "10s"}
	return append(append(append([]string{}, args...), base...), h.extra...)
}

type result struct {
	out, err string
	code     int
}

func (h *harness) runIO(in string, terminal bool, args ...string) result {
	h.t.Helper()
	var out, errb bytes.Buffer
	code := Main(context.Background(), h.args(args...), IO{
		In: strings.NewReader(in), Out: &out, Err: &errb, Terminal: func() bool { return terminal },
	})
	return result{out.String(), errb.String(), code}
}

func (h *harness) run(args ...string) result { h.t.Helper(); return h.runIO("", false, args...) }

func (h *harness) must(args ...string) result {
	h.t.Helper()
	r := h.run(args...)
	if r.code != 0 {
		h.t.Fatalf("%v: exit %d\nstdout: %s\nstderr: %s", args, r.code, r.out, r.err)
	}
	return r
}

// enroll bootstraps trust and gets a certificate for name, which it first
// makes known and verified on the primary (no token at level high).
func (h *harness) enroll(name string, extra ...string) {
	h.t.Helper()
	h.srv.AddHost(name)
	h.must("get-ca-cert", "--fingerprint", h.srv.Fingerprint())
	h.must(append([]string{"get-cert", "--name", name}, extra...)...)
}

func (h *harness) store() *certstore.Store {
	s, err := certstore.Open(h.data)
	if err != nil {
		h.t.Fatal(err)
	}
	return s
}

func (h *harness) identity() *certstore.Identity {
	h.t.Helper()
	id, err := h.store().Identity()
	if err != nil {
		h.t.Fatal(err)
	}
	return id
}

func (h *harness) status() Status {
	h.t.Helper()
	var s Status
	if err := json.Unmarshal([]byte(h.must("status", "--json").out), &s); err != nil {
		h.t.Fatal(err)
	}
	return s
}

func exists(path string) bool { _, err := os.Stat(path); return err == nil }

// mitm is a TLS server with a certificate from another CA. bundle is what it
// serves at /v1/ca (its own CA, or a copy of the real one).
func mitm(t *testing.T, serveRealCA *primarytest.Primary) (*httptest.Server, string) {
	t.Helper()
	ca := pkitest.NewCA(t, "evil CA")
	cert := ca.ServerCert(t, "localhost", "primary.test", "127.0.0.1")
	bundle := pki.EncodeCert(ca.Cert)
	if serveRealCA != nil {
		bundle = pki.EncodeCerts(serveRealCA.CA())
	}
	srv := httptest.NewUnstartedServer(http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) { w.Write(bundle) }))
	srv.TLS = &tls.Config{Certificates: []tls.Certificate{cert}}
	srv.Config.ErrorLog = log.New(io.Discard, "", 0)
	srv.StartTLS()
	t.Cleanup(srv.Close)
	return srv, pki.Fingerprint(ca.Cert)
}

func addrOf(s *httptest.Server) string { return s.Listener.Addr().(*net.TCPAddr).String() }

// eventually polls f every 20ms until it is true or 30s pass.
func eventually(t *testing.T, what string, f func() bool) {
	t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	for !f() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(20 * time.Millisecond)
	}
}
