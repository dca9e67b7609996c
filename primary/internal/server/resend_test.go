package server

import (
	"net/http"
	"testing"

	"github.com/hostcert/hostcert/common/protocol"
	"github.com/hostcert/hostcert/primary/internal/admin"
)

// TestRetriedEnrollmentGetsItsCertificate: a client whose answer was lost
// asks again with the same key (its CSR proves it holds it) and gets the
// certificate already issued — no reissue token, no new certificate, no
// token use. Another key, or a revoked host, gets the normal reissue path.
func TestRetriedEnrollmentGetsItsCertificate(t *testing.T) {
	e := newEnv(t, envOpts{})
	e.setLevel(protocol.LevelVeryHigh)
	e.dns.Set("retry.test", loopback)
	h := newHost(t, "retry.test")
	tok := e.token("once", 1, "")
	first := e.enroll(h, tok, "", false)
	if first.status != http.StatusOK {
		t.Fatalf("first enroll = %v", first)
	}

	again := e.enroll(h, "", "", false) // the same key and CSR, no token
	if again.status != http.StatusOK {
		t.Fatalf("retried enroll with the same key = %v, want the issued certificate again", again)
	}
	if again.cert.Serial != first.cert.Serial || again.cert.HostID != first.cert.HostID || again.cert.Certificate != first.cert.Certificate {
		t.Errorf("retried enroll = serial %s host %s, want serial %s host %s", again.cert.Serial, again.cert.HostID, first.cert.Serial, first.cert.HostID)
	}
	var certs []admin.Cert
	e.call(admin.CmdCertList, admin.CertArgs{Host: "retry.test"}, &certs)
	if len(certs) != 1 {
		t.Errorf("certificates of retry.test = %d, want 1 (nothing new issued)", len(certs))
	}
	var toks []admin.Token
	e.call(admin.CmdTokenList, nil, &toks)
	for _, tk := range toks {
		if tk.Name == "once" && tk.Uses != 1 {
			t.Errorf("token once: %d uses, want 1", tk.Uses)
		}
	}

	if r := e.enroll(newHost(t, "retry.test"), "", "", false); r.err.Code != protocol.CodeReissueTokenRequired {
		t.Errorf("enroll with another key = %v, want reissue_token_required", r)
	}
	e.call(admin.CmdCertRevoke, admin.RevokeArgs{Host: "retry.test", Reason: "keyCompromise"}, nil)
	if r := e.enroll(h, "", "", false); r.err.Code != protocol.CodeReissueTokenRequired {
		t.Errorf("retried enroll of a revoked host = %v, want reissue_token_required", r)
	}
}
