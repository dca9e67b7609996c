package client_test

import (
	"context"
	"errors"
	"net"
	"path/filepath"
	"sync/atomic"
	"testing"
	"time"

	"github.com/rs/zerolog"

	"github.com/hostcert/hostcert/agent/internal/certstore"
	"github.com/hostcert/hostcert/agent/internal/client"
	"github.com/hostcert/hostcert/agent/internal/enroll"
	"github.com/hostcert/hostcert/agent/internal/renew"
	"github.com/hostcert/hostcert/agent/internal/route"
	"github.com/hostcert/hostcert/common/pki"
	"github.com/hostcert/hostcert/common/protocol"
	"github.com/hostcert/hostcert/internal/nettest"
	"github.com/hostcert/hostcert/primary/primarytest"
)

// closedAddr is a loopback address nothing listens on.
func closedAddr(t *testing.T) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := ln.Addr().String()
	ln.Close()
	return addr
}

// TestRenewalResumesTLSSession: one agent process (one client) renews over
// mutual TLS on a new connection each time, directly and through a tunnel,
// against the real primary. A renewal resumes the TLS session an earlier
// connection with the same certificate made, and succeeds; a session is
// never resumed with another certificate (after a renewal the next
// connection is a full handshake presenting the new one); and a host
// revoked after its session was established cannot renew over it.
func TestRenewalResumesTLSSession(t *testing.T) {
	for _, via := range []string{"direct", "tunnel"} {
		t.Run(via, func(t *testing.T) {
			srv := primarytest.Start(t, primarytest.Options{})
			primary := "primary.test:" + srv.Port()
			cfg := route.Config{Primaries: []string{primary}, PrimaryDial: srv.Addr(), DialTimeout: 2 * time.Second}
			var relay *nettest.Relay
			if via == "tunnel" {
				var err error
				if relay, err = nettest.NewRelay(primary, srv.Addr()); err != nil {
					t.Fatal(err)
				}
				t.Cleanup(func() { relay.Close() })
				cfg.PrimaryDial, cfg.Tunnels = closedAddr(t), []string{relay.Addr()}
			}
			store, err := certstore.Open(filepath.Join(t.TempDir(), "d"))
			if err != nil {
				t.Fatal(err)
			}
			if err := store.WriteCA(srv.CA()); err != nil {
				t.Fatal(err)
			}
			ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
			defer cancel()
			ids := new(atomic.Pointer[certstore.Identity])
			c := client.New(route.NewSelector(cfg, route.Outcomes{}, zerolog.Nop(), nil), certstore.Pool(srv.CA()), ids, 5*time.Second)

			key, err := pki.GenerateKey(pki.ECDSAP256)
			if err != nil {
				t.Fatal(err)
			}
			csr, err := pki.CreateCSR(key, "resume.example.com")
			if err != nil {
				t.Fatal(err)
			}
			resp, err := c.Enroll(ctx, protocol.EnrollRequest{Name: "resume.example.com", CSR: string(csr), Token: srv.Token("resume", 1)})
			if err != nil {
				t.Fatalf("enroll: %v", err)
			}
			id, err := enroll.Accept(resp, key, srv.CA())
			if err != nil {
				t.Fatal(err)
			}
			if err := enroll.Save(store, id, resp, time.Now()); err != nil {
				t.Fatal(err)
			}
			ids.Store(id)
			renewer := &renew.Renewer{
				Store: store, Client: c, Identity: ids, Now: time.Now,
				Settings: func() renew.Settings { return renew.Settings{KeyAlg: pki.ECDSAP256} },
			}

			// step runs one call and checks whether its connection resumed.
			step := func(what string, wantResumed bool, call func() error) error {
				t.Helper()
				full0, res0 := c.Handshakes()
				err := call()
				full1, res1 := c.Handshakes()
				if got := res1 - res0; full1-full0+got != 1 || (got == 1) != wantResumed {
					t.Errorf("%s: %d full handshakes and %d resumed, want resumed = %v", what, full1-full0, got, wantResumed)
				}
				return err
			}
			info := func() error { _, err := c.Info(ctx); return err }
			renewal := func() error { _, err := renewer.Renew(ctx); return err }

			// A connection with the enrolled certificate (the CRL refresh
			// does one every few hours) leaves a session to resume.
			if err := step("info with the enrolled certificate", false, info); err != nil {
				t.Fatal(err)
			}
			first := ids.Load()
			if err := step("first renewal", true, renewal); err != nil {
				t.Fatalf("first renewal over a resumed session: %v", err)
			}
			second := ids.Load()
			if second.Cert.Equal(first.Cert) {
				t.Fatal("the first renewal did not replace the certificate")
			}
			// The session carried the old certificate: the next connection
			// presents the renewed one in a full handshake.
			if err := step("info with the renewed certificate", false, info); err != nil {
				t.Fatal(err)
			}
			if err := step("second renewal", true, renewal); err != nil {
				t.Fatalf("second renewal by the same process over a resumed session: %v", err)
			}
			if ids.Load().Cert.Equal(second.Cert) {
				t.Fatal("the second renewal did not replace the certificate")
			}

			// Revoked after the session was established: refused over it.
			if err := step("info with the twice-renewed certificate", false, info); err != nil {
				t.Fatal(err)
			}
			srv.Revoke("resume.example.com")
			if err := step("renewal after revocation", true, renewal); !errors.Is(err, renew.ErrRevoked) {
				t.Errorf("renewal over a resumed session after revocation = %v, want ErrRevoked", err)
			}
			if relay != nil && relay.Connections() < 6 {
				t.Errorf("the tunnel carried %d connections, want every call's", relay.Connections())
			}
		})
	}
}
