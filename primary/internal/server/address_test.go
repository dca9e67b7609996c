package server

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"io"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/rs/zerolog"

	"github.com/hostcert/hostcert/common/pki"
	"github.com/hostcert/hostcert/primary/internal/ca"
)

// TestServeUnderAnAddress: a primary initialised with --name 127.0.0.1 and
// served without --name keeps that address as its name: it starts, and a
// client that verifies the server's certificate for 127.0.0.1 connects.
func TestServeUnderAnAddress(t *testing.T) {
	tmp, err := os.MkdirTemp("", "hcp")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(tmp) })
	dir := filepath.Join(tmp, "data")
	c, err := ca.Init(dir, ca.InitOptions{Names: []string{"127.0.0.1"}, KeyAlg: pki.ECDSAP256}, time.Now())
	if err != nil {
		t.Fatalf("ca.Init: %v", err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	srv, err := New(ctx, Config{DataDir: dir, Listen: "127.0.0.1:0", Log: zerolog.New(io.Discard)})
	if err != nil {
		cancel()
		t.Fatalf("server.New with a primary named 127.0.0.1: %v", err)
	}
	done := make(chan error, 1)
	go func() { done <- srv.Run(ctx) }()
	t.Cleanup(func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("Run = %v, want nil after cancel", err)
		}
	})
	roots := x509.NewCertPool()
	roots.AddCert(c.Root())
	conn, err := tls.Dial("tcp", srv.Addr().String(), &tls.Config{RootCAs: roots, ServerName: "127.0.0.1"})
	if err != nil {
		t.Fatalf("TLS to the primary, verified for 127.0.0.1: %v", err)
	}
	conn.Close()
}
