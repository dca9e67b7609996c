package server

import (
	"bytes"
	"crypto/tls"
	"encoding/json"
	"io"
	"net/http"
	"testing"
	"time"

	"github.com/hostcert/hostcert/common/protocol"
	"github.com/hostcert/hostcert/primary/internal/admin"
)

// resumingClient is an HTTPS client that opens a new connection per request
// and resumes TLS sessions from its session cache, presenting cert when the
// server asks for a client certificate (on a full handshake only: a resumed
// session carries the identity of the handshake that made it).
func (e *env) resumingClient(cert *tls.Certificate) *http.Client {
	conf := &tls.Config{RootCAs: e.roots, ServerName: "localhost", ClientSessionCache: tls.NewLRUClientSessionCache(4)}
	if cert != nil {
		conf.Certificates = []tls.Certificate{*cert}
	}
	return &http.Client{Timeout: 30 * time.Second, Transport: &http.Transport{TLSClientConfig: conf, DisableKeepAlives: true}}
}

// resumedReply is one API answer and the TLS state of its connection.
type resumedReply struct {
	reply
	tls *tls.ConnectionState
}

func (e *env) do(c *http.Client, method, path string, body []byte) resumedReply {
	e.t.Helper()
	req, _ := http.NewRequest(method, "https://"+e.addr+path, bytes.NewReader(body))
	if body != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	resp, err := c.Do(req)
	if err != nil {
		e.t.Fatalf("%s %s: %v", method, path, err)
	}
	defer resp.Body.Close()
	raw, err := io.ReadAll(resp.Body)
	if err != nil {
		e.t.Fatal(err)
	}
	r := resumedReply{reply: reply{status: resp.StatusCode, raw: raw}, tls: resp.TLS}
	if path == protocol.PathRenew {
		if resp.StatusCode == http.StatusOK {
			_ = json.Unmarshal(raw, &r.cert)
		} else {
			_ = json.Unmarshal(raw, &r.err)
		}
	}
	return r
}

// TestRenewOverResumedSession: the primary issues session tickets, a host
// that renews on a new connection resumes its TLS session (TLS 1.3 with the
// hybrid post-quantum key exchange, no certificate signature or client
// CertificateVerify), and the renewal's checks of the client certificate
// still run per request from the identity the session carries: a
// certificate revoked, or superseded, after the session was established
// cannot renew over it.
func TestRenewOverResumedSession(t *testing.T) {
	e := newEnv(t, envOpts{})
	good := enrolled(t, e, "resume-good.test")
	bad := enrolled(t, e, "resume-revoked.test")

	renewBody := func(h *host) []byte {
		b, _ := json.Marshal(protocol.RenewRequest{CSR: h.csr(t)})
		return b
	}
	// A first request with the host's certificate: a full handshake whose
	// session ticket the client keeps.
	cg, cb := e.resumingClient(good.tls), e.resumingClient(bad.tls)
	for _, c := range []*http.Client{cg, cb} {
		if r := e.do(c, http.MethodGet, protocol.PathInfo, nil); r.status != http.StatusOK || r.tls.DidResume {
			t.Fatalf("GET /v1/info = %v (resumed %v), want 200 on a full handshake", r, r.tls.DidResume)
		}
	}

	// The good host renews over a resumed session.
	r := e.do(cg, http.MethodPost, protocol.PathRenew, renewBody(good))
	if !r.tls.DidResume {
		t.Fatalf("renewal after a first connection: DidResume = false, want a resumed session")
	}
	if r.tls.Version != tls.VersionTLS13 || r.tls.CurveID != tls.X25519MLKEM768 {
		t.Errorf("resumed session: version %x, key exchange %v; want TLS 1.3 with X25519MLKEM768", r.tls.Version, r.tls.CurveID)
	}
	if r.status != http.StatusOK || r.cert.Decision.Kind != protocol.KindRenew {
		t.Fatalf("renewal over a resumed session = %v, want 200 renew", r.reply)
	}
	// The renewed-from certificate is superseded now: the session that
	// carries it no longer renews.
	if r := e.do(cg, http.MethodPost, protocol.PathRenew, renewBody(newHost(t, good.name))); !r.tls.DidResume ||
		r.status != http.StatusForbidden || r.err.Code != protocol.CodeCertSuperseded {
		t.Errorf("renewal from the superseded certificate over a resumed session = %v (resumed %v), want 403 cert_superseded", r.reply, r.tls.DidResume)
	}

	// Revoked after its session was established: refused over it.
	var n admin.CountResult
	e.call(admin.CmdCertRevoke, admin.RevokeArgs{Host: bad.name, Reason: "keyCompromise"}, &n)
	if n.Count != 1 {
		t.Fatalf("revoke %s = %d certificates, want 1", bad.name, n.Count)
	}
	r = e.do(cb, http.MethodPost, protocol.PathRenew, renewBody(bad))
	if !r.tls.DidResume {
		t.Fatalf("renewal of the revoked host: DidResume = false, want the session established before the revocation")
	}
	if r.status != http.StatusForbidden || r.err.Code != protocol.CodeHostRevoked {
		t.Errorf("renewal with a certificate revoked after the session began = %v, want 403 host_revoked", r.reply)
	}
}
