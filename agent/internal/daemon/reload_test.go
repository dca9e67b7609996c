package daemon_test

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"math/big"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/rs/zerolog"

	"github.com/hostcert/hostcert/agent/internal/certstore"
	"github.com/hostcert/hostcert/agent/internal/config"
	"github.com/hostcert/hostcert/agent/internal/daemon"
)

// TestReloadAsStrictAsStartUp: edits saved the way editors save (write a
// temp file, rename it over the config) while `run` watches the file. An
// empty file and one without primary: — both refused at start-up — are
// refused on reload too, naming the file and the key, and the last good
// configuration keeps running; a good edit is then taken.
func TestReloadAsStrictAsStartUp(t *testing.T) {
	dir := t.TempDir()
	data := filepath.Join(dir, "data")
	store, err := certstore.Open(data)
	if err != nil {
		t.Fatal(err)
	}
	if err := store.WriteCA([]*x509.Certificate{testCA(t)}); err != nil {
		t.Fatal(err)
	}
	cfgPath := filepath.Join(dir, "agent.yaml")
	// Nothing listens on port 1: the loops fail fast and retry, which is fine here.
	good := "primary: 127.0.0.1:1\ndata_dir: " + data + "\nlog_format: json\ndial_timeout: 100ms\nrequest_timeout: 300ms\n"
	save := func(body string) {
		t.Helper()
		tmp := cfgPath + ".swp"
		if err := os.WriteFile(tmp, []byte(body), 0o644); err != nil {
			t.Fatal(err)
		}
		if err := os.Rename(tmp, cfgPath); err != nil {
			t.Fatal(err)
		}
	}
	save(good)

	// Start-up refuses the bad files.
	bad := map[string]string{"empty": "", "no primary": "data_dir: " + data + "\n"}
	for name, body := range bad {
		p := filepath.Join(dir, "start-"+strings.ReplaceAll(name, " ", "-")+".yaml")
		os.WriteFile(p, []byte(body), 0o644)
		err := daemon.Run(context.Background(), daemon.Options{ConfigPath: p, Log: zerolog.Nop(), NewBackOff: fastBackOff})
		if err == nil || !strings.Contains(err.Error(), "no primary configured") {
			t.Fatalf("Run with the %s file = %v, want a refusal for the missing primary", name, err)
		}
	}

	log := &syncBuf{}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() {
		done <- daemon.Run(ctx, daemon.Options{ConfigPath: cfgPath, Overrides: config.Overrides{},
			Log: zerolog.New(log), NewBackOff: fastBackOff})
	}()
	defer func() {
		cancel()
		select {
		case err := <-done:
			if err != nil {
				t.Errorf("Run = %v after cancel, want nil", err)
			}
		case <-time.After(10 * time.Second):
			t.Error("Run did not return within 10s of cancel")
		}
	}()
	eventually(t, "agent running", func() bool { return strings.Contains(log.String(), "agent running") })

	rejections := 0
	for _, body := range []string{bad["empty"], bad["no primary"]} {
		save(body)
		rejections++
		eventually(t, "the bad edit to be rejected", func() bool {
			return strings.Count(log.String(), "config change rejected") >= rejections
		})
	}
	out := log.String()
	if strings.Contains(out, "config reloaded") {
		t.Fatalf("a file without primary was reloaded:\n%s", out)
	}
	for _, line := range strings.Split(out, "\n") {
		if strings.Contains(line, "config change rejected") &&
			(!strings.Contains(line, cfgPath) || !strings.Contains(line, "primary")) {
			t.Errorf("rejection %s does not name the file and the key", line)
		}
	}
	save(good + "probe_interval: 1m\n")
	eventually(t, "the good edit to be reloaded", func() bool { return strings.Contains(log.String(), "config reloaded") })
}

// testCA is a self-signed CA certificate for the trust store.
func testCA(t *testing.T) *x509.Certificate {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tpl := &x509.Certificate{
		SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "reload test CA"},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour),
		IsCA: true, BasicConstraintsValid: true, KeyUsage: x509.KeyUsageCertSign | x509.KeyUsageCRLSign,
	}
	der, err := x509.CreateCertificate(rand.Reader, tpl, tpl, key.Public(), key)
	if err != nil {
		t.Fatal(err)
	}
	c, err := x509.ParseCertificate(der)
	if err != nil {
		t.Fatal(err)
	}
	return c
}
