package server

import (
	"crypto/tls"
	"fmt"
	"net"

	"github.com/hostcert/hostcert/primary/internal/console"
)

// startConsole binds the web console on addr: TLS with the primary's own
// certificate (the same one as the API, renewed in place), asking for an
// administrator's client certificate, its links naming the primary's first
// name. It refuses the API's own address.
func (s *Server) startConsole(addr string) error {
	if _, port, _ := net.SplitHostPort(addr); addr == s.cfg.Listen && port != "0" {
		return fmt.Errorf("--console %s: the console never shares the enrollment port", addr)
	}
	host := "localhost"
	if len(s.names) > 0 {
		host = s.names[0]
	}
	c, err := console.New(console.Config{
		Commands: s.adminSrv, Audit: s.store, CRLs: s.crls, CA: s.ca, Host: host,
		Trust: s.ca, Admins: s.store,
		Log: s.log.With().Str("part", "console").Logger(),
	})
	if err != nil {
		return err
	}
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return fmt.Errorf("console: listen on %s: %w", addr, err)
	}
	c.SetAddr(ln.Addr())
	s.console = c
	base := &tls.Config{
		MinVersion: tls.VersionTLS12,
		GetCertificate: func(*tls.ClientHelloInfo) (*tls.Certificate, error) {
			return s.cert.Load(), nil
		},
		NextProtos: []string{"http/1.1"},
		// An administrator may log in with a client certificate: asked for,
		// not required (the one-time link works without), verified when
		// given against the fleet's CAs of the moment (a rotation applies
		// to the next handshake). The console checks it again at each
		// request: chain, admin role, expiry and revocation.
		ClientAuth: tls.VerifyClientCertIfGiven,
	}
	s.consLn = tls.NewListener(ln, &tls.Config{
		GetConfigForClient: func(*tls.ClientHelloInfo) (*tls.Config, error) {
			conf := base.Clone()
			conf.ClientCAs = c.ClientCAs()
			return conf, nil
		},
	})
	s.adminSrv.UseLogins(c)
	return nil
}
