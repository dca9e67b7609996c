//go:build linux

package e2e

import (
	"crypto/tls"
	"io"
	"log"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"
)

// recordingRelay is what an attacker on the path runs: a TLS server that
// presents a certificate the attacker holds and writes down every HTTP
// request it gets (method, path and body). It serves the real CA bundle at
// /v1/ca, so that a fingerprint check alone would pass.
type recordingRelay struct {
	addr string
	mu   sync.Mutex
	reqs []string
}

func newRecordingRelay(t testing.TB, certAndKeyPEM, caPEM []byte) *recordingRelay {
	t.Helper()
	pair, err := tls.X509KeyPair(certAndKeyPEM, certAndKeyPEM)
	if err != nil {
		t.Fatalf("relay certificate: %v", err)
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	r := &recordingRelay{addr: ln.Addr().String()}
	srv := &http.Server{
		Handler: http.HandlerFunc(func(w http.ResponseWriter, req *http.Request) {
			body, _ := io.ReadAll(io.LimitReader(req.Body, 1<<20))
			r.mu.Lock()
			r.reqs = append(r.reqs, req.Method+" "+req.URL.Path+" "+string(body))
			r.mu.Unlock()
			if req.URL.Path == "/v1/ca" {
				w.Write(caPEM)
				return
			}
			http.Error(w, "relay", http.StatusServiceUnavailable)
		}),
		ReadHeaderTimeout: 5 * time.Second,
		ErrorLog:          log.New(io.Discard, "", 0),
	}
	go srv.Serve(tls.NewListener(ln, &tls.Config{Certificates: []tls.Certificate{pair}}))
	t.Cleanup(func() { srv.Close() })
	return r
}

func (r *recordingRelay) requests() []string {
	r.mu.Lock()
	defer r.mu.Unlock()
	return append([]string(nil), r.reqs...)
}

// TestRelayWithHostCertificate: SPEC §2 roles, across real processes. A
// host certificate, obtained legitimately with a token, cannot stand in for
// the primary:
//   - a token holder cannot get a certificate for the primary's name, in any
//     spelling (name_reserved);
//   - a relay presenting a host's certificate is refused by the agent at
//     bootstrap and at enrollment — even when that certificate holds the name
//     the agent dials (a name a host got before the primary was given it) —
//     with an error that says it is a host's certificate, and the relay
//     never sees the token.
func TestRelayWithHostCertificate(t *testing.T) {
	if testing.Short() {
		t.Skip("end-to-end: builds and runs the programs")
	}
	pr := newPrimary(t, primaryOpts{})
	_, port, _ := net.SplitHostPort(pr.listen)
	tok := strings.TrimSpace(pr.admin("token", "create", "--name", "thief", "--max-uses", "5"))

	// The attacker holds a valid token and a host.
	thief := newAgentHost(t, "api.hostcert.test", primaryName+":"+port, "primary_dial: "+pr.listen)
	thief.must("get-ca-cert", "--fingerprint", pr.fingerprint)
	for _, spelling := range []string{primaryName, strings.ToUpper(primaryName) + "."} {
		thief.refused("name_reserved", "get-cert", "--name", spelling, "--token", tok)
	}
	thief.must("get-cert", "--token", tok)

	// The primary is later given the name that host already holds (the
	// reservation starts now; the certificate exists).
	pr.p.stop(10 * time.Second)
	pr.serveArgs = append(pr.serveArgs, "--name", primaryName, "--name", "api.hostcert.test")
	pr.start()

	relay := newRecordingRelay(t, thief.hostPEM(), pr.caPEM)

	// Bootstrap through the relay: the fingerprint matches (the relay
	// serves the real bundle), the chain is good, the name is good; the
	// role is not. Nothing is written.
	boot := newAgentHost(t, "boot.hostcert.test", "api.hostcert.test:"+port, "primary_dial: "+relay.addr)
	r := boot.do("get-ca-cert", "--fingerprint", pr.fingerprint)
	if r.code == 0 || !strings.Contains(r.stderr, "host's certificate") || !strings.Contains(r.stderr, "not a primary certificate") {
		t.Errorf("get-ca-cert through a relay with a host certificate: %s; want a refusal naming a host's certificate", r)
	}
	if _, err := os.Stat(filepath.Join(boot.dir, "data", "ca.pem")); err == nil {
		t.Error("get-ca-cert through the relay wrote a trust store")
	}

	// A host that trusts the CA and is then routed to the relay (DNS or
	// primary_dial): the handshake fails before any request is sent.
	victim := newAgentHost(t, "victim.hostcert.test", "api.hostcert.test:"+port, "primary_dial: "+pr.listen)
	victim.must("get-ca-cert", "--fingerprint", pr.fingerprint)
	cfg, err := os.ReadFile(victim.config)
	if err != nil {
		t.Fatal(err)
	}
	cfg = []byte(strings.Replace(string(cfg), "primary_dial: "+pr.listen, "primary_dial: "+relay.addr, 1))
	if err := os.WriteFile(victim.config, cfg, 0o600); err != nil {
		t.Fatal(err)
	}
	victimTok := strings.TrimSpace(pr.admin("token", "create", "--name", "victim"))
	r = victim.do("get-cert", "--token", victimTok)
	if r.code == 0 || !strings.Contains(r.stderr, "host's certificate") || !strings.Contains(r.stderr, "not a primary certificate") {
		t.Errorf("get-cert through a relay with a host certificate: %s; want a refusal naming a host's certificate", r)
	}
	for _, req := range relay.requests() {
		if strings.Contains(req, victimTok) || strings.Contains(req, tok) || !strings.HasPrefix(req, "GET /v1/ca ") {
			t.Errorf("the relay got %q; want no request but the bootstrap's GET /v1/ca", req)
		}
	}
	// The token is intact: the victim, back on the real primary, enrolls.
	cfg = []byte(strings.Replace(string(cfg), "primary_dial: "+relay.addr, "primary_dial: "+pr.listen, 1))
	if err := os.WriteFile(victim.config, cfg, 0o600); err != nil {
		t.Fatal(err)
	}
	victim.must("get-cert", "--token", victimTok)
}
