package server

import (
	"fmt"
	"net/http"
	"testing"

	"github.com/hostcert/hostcert/common/protocol"
	"github.com/hostcert/hostcert/primary/internal/admin"
	"github.com/hostcert/hostcert/primary/internal/ca"
)

// TestRevokeIsServedAtOnce: every `cert revoke` — by host name, by host ID,
// by token — returns only once GET /v1/crl lists the revoked certificate:
// a fetch right after the command never misses it (SPEC §6).
func TestRevokeIsServedAtOnce(t *testing.T) {
	e := newEnv(t, envOpts{})
	e.setLevel(protocol.LevelMedium)
	const rounds = 21
	for i := 0; i < rounds; i++ {
		h := newHost(t, fmt.Sprintf("rv%d.test", i))
		e.dns.Set(h.name, loopback)
		args := admin.RevokeArgs{Reason: "keyCompromise"}
		var r reply
		switch i % 3 {
		case 0:
			r = e.enroll(h, "", "", false)
			args.Host = h.name
		case 1:
			r = e.enroll(h, "", "", false)
			args.Host = r.cert.HostID
		case 2:
			tok := "rv-tok-" + fmt.Sprint(i)
			r = e.enroll(h, e.token(tok, 1, ""), "", true)
			args.Token = tok
		}
		if r.status != http.StatusOK {
			t.Fatalf("enroll %s = %s, want 200", h.name, r)
		}
		serial := ca.SerialHex(h.leaf.SerialNumber)
		var res admin.CountResult
		e.call(admin.CmdCertRevoke, args, &res)
		if res.Count != 1 {
			t.Fatalf("revoke %+v = %d certificates, want 1", args, res.Count)
		}
		if l := e.crl(); !crlHas(l, serial) {
			t.Errorf("round %d: CRL number %v served right after `cert revoke %+v` does not list %s", i, l.Number, args, serial)
		}
	}
}
