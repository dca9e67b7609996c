package server

import (
	"context"
	"crypto/tls"
	"fmt"
	"math/big"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/hostcert/hostcert/common/hostname"
	"github.com/hostcert/hostcert/common/pki"
	"github.com/hostcert/hostcert/common/protocol"
	"github.com/hostcert/hostcert/primary/internal/admin"
	"github.com/hostcert/hostcert/primary/internal/ca"
)

// TestPrimaryNamesReserved: a holder of a valid standard token cannot get a
// host certificate for any name of the primary — its current names and a
// name it had before a rename — in any spelling, nor for localhost, an IP
// literal or a token value. Every refusal is name_reserved, uses no token
// and is audited; a token-like name is never stored or echoed. The same
// token still buys an ordinary name.
func TestPrimaryNamesReserved(t *testing.T) {
	// init named the primary old-primary.test and alias.primary.test;
	// serve renamed it to localhost and primary.test.
	e := newEnv(t, envOpts{initNames: []string{"old-primary.test", "alias.primary.test"}, serveNames: []string{"primary.test"}})
	tok := e.token("rollout", 50, "")
	for _, name := range []string{
		"localhost", "LocalHost.", " localhost ",
		"primary.test", "PRIMARY.Test.", " primary.test",
		"old-primary.test", "OLD-PRIMARY.test.", "\told-Primary.Test\n",
		"alias.primary.test", "Alias.Primary.Test.",
		"db.localhost",
		"127.0.0.1", "[::1]", "127.1",
		tok, "web." + tok[len(hostname.TokenPrefix):] + ".test",
	} {
		r := e.enroll(newHost(t, name), tok, "", false)
		if r.status != http.StatusForbidden || r.err.Code != protocol.CodeNameReserved {
			t.Errorf("enroll %q with a valid token = %v, want 403 name_reserved", name, r)
		}
		if strings.Contains(string(r.raw), tok[len(hostname.TokenPrefix):len(hostname.TokenPrefix)+20]) {
			t.Errorf("the refusal of a token-like name repeats the token: %s", r.raw)
		}
	}

	// The admin commands that take a name neither store nor repeat a
	// token value given by mistake.
	for _, call := range []struct {
		cmd  string
		args any
	}{
		{admin.CmdExplain, admin.ExplainArgs{Name: tok, From: "192.0.2.1"}},
		{admin.CmdHostAdd, admin.NamesArgs{Names: []string{tok}}},
		{admin.CmdHostRemove, admin.HostArgs{Host: tok}},
		{admin.CmdHostShow, admin.HostArgs{Host: tok}},
	} {
		err := e.admin.Call(context.Background(), call.cmd, call.args, nil)
		if err == nil || strings.Contains(err.Error(), tok[len(hostname.TokenPrefix):len(hostname.TokenPrefix)+20]) {
			t.Errorf("admin %s with a token value as the name = %v, want a refusal that does not repeat it", call.cmd, err)
		}
	}

	var toks []admin.Token
	e.call(admin.CmdTokenList, nil, &toks)
	if len(toks) != 1 || toks[0].Uses != 0 {
		t.Fatalf("tokens after the refusals = %+v, want rollout with 0 uses", toks)
	}
	rows, err := e.store().ListAudit(context.Background(), time.Time{}, 0)
	if err != nil {
		t.Fatal(err)
	}
	reserved, placeholders := 0, 0
	for _, a := range rows {
		if a.Code == string(protocol.CodeNameReserved) && a.Outcome == "refused" {
			reserved++
		}
		if a.Name == hostname.TokenPlaceholder {
			placeholders++
		}
		row := fmt.Sprint(a)
		if strings.Contains(row, "hct_") || strings.Contains(row, tok[len(hostname.TokenPrefix):len(hostname.TokenPrefix)+20]) {
			t.Errorf("audit row %+v stores a token-like name", a)
		}
	}
	if reserved != 17 || placeholders != 2 {
		t.Errorf("audit: %d name_reserved refusals (want 17), %d placeholders (want 2)", reserved, placeholders)
	}
	if strings.Contains(e.log.String(), tok[len(hostname.TokenPrefix):]) {
		t.Error("the server log contains the token value")
	}

	// Not a blanket refusal: the same token issues an ordinary name, and
	// the registry refuses the primary's names too.
	if r := e.enroll(newHost(t, "web1.test"), tok, "", false); r.status != http.StatusOK {
		t.Errorf("enroll web1.test with the token = %v, want 200", r)
	}
	if err := e.admin.Call(context.Background(), admin.CmdHostAdd, admin.NamesArgs{Names: []string{"OLD-primary.test."}}, nil); err == nil || !strings.Contains(err.Error(), "name of the primary") {
		t.Errorf("host add of a past name of the primary = %v, want a refusal naming it", err)
	}
}

// TestRenewOnlyWithHostRole: the renewal path accepts only host-role client
// certificates. The primary's own TLS certificate and an administrator's
// certificate, both issued by this CA, are refused as such and audited.
func TestRenewOnlyWithHostRole(t *testing.T) {
	e := newEnv(t, envOpts{})
	c, err := ca.Load(e.dir)
	if err != nil {
		t.Fatal(err)
	}
	adminKey, _ := pki.GenerateKey(pki.ECDSAP256)
	tmpl, err := ca.Template(ca.HostCertRequest{Role: pki.RoleAdmin, HostID: "alice", PublicKey: adminKey.Public(), Serial: big.NewInt(77)}, c.Certificate(), time.Now())
	if err != nil {
		t.Fatal(err)
	}
	adminCert, err := c.Sign(tmpl, adminKey.Public())
	if err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		what string
		cert *tlsCert
		role string
	}{
		{"the primary's TLS certificate", &tlsCert{c.ServerTLS().Certificate, c.ServerTLS().PrivateKey}, "the primary's certificate"},
		{"an administrator's certificate", &tlsCert{[][]byte{adminCert.Raw}, adminKey}, "an administrator's certificate"},
	} {
		h := newHost(t, "localhost")
		r := e.renew(h, tc.cert.tls())
		if r.status != http.StatusUnauthorized || r.err.Code != protocol.CodeClientCertRequired ||
			!strings.Contains(r.err.Message, "only a host certificate renews") || !strings.Contains(r.err.Message, tc.role) {
			t.Errorf("renew with %s = %v, want 401 client_cert_required naming %q", tc.what, r, tc.role)
		}
	}
}

type tlsCert struct {
	chain [][]byte
	key   any
}

func (c *tlsCert) tls() *tls.Certificate {
	return &tls.Certificate{Certificate: c.chain, PrivateKey: c.key}
}
