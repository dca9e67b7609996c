package server

import (
	"crypto/tls"
	"testing"
)

// TestServeUnderAnAddress: a primary initialised with --name 127.0.0.1 and
// served without --name keeps that address as its name: it starts, and a
// client that verifies the server's certificate for 127.0.0.1 connects.
func TestServeUnderAnAddress(t *testing.T) {
	e := newEnv(t, envOpts{initNames: []string{"127.0.0.1"}, keepNames: true})
	conn, err := tls.Dial("tcp", e.addr, &tls.Config{RootCAs: e.roots, ServerName: "127.0.0.1"})
	if err != nil {
		t.Fatalf("TLS to the primary, verified for 127.0.0.1: %v", err)
	}
	conn.Close()
}
