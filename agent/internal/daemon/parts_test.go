package daemon_test

import (
	"bytes"
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/json"
	"math/big"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/cenkalti/backoff/v4"

	"github.com/hostcert/hostcert/agent/internal/certstore"
	"github.com/hostcert/hostcert/agent/internal/config"
	"github.com/hostcert/hostcert/agent/internal/daemon"
	"github.com/hostcert/hostcert/agent/internal/renew"
	"github.com/hostcert/hostcert/common/logging"
	"github.com/hostcert/hostcert/common/pki"
)

type lockedBuf struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *lockedBuf) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}
func (s *lockedBuf) lines(t *testing.T) []map[string]any {
	s.mu.Lock()
	defer s.mu.Unlock()
	var out []map[string]any
	for _, l := range strings.Split(strings.TrimSpace(s.b.String()), "\n") {
		var m map[string]any
		if err := json.Unmarshal([]byte(l), &m); err != nil {
			t.Fatalf("log line %q: %v", l, err)
		}
		out = append(out, m)
	}
	return out
}

// trustOnly makes a data directory with a trust store and the primary
// recorded by get-ca-cert (an address nothing listens on), and, when
// enrolled, a certificate from that CA.
func trustOnly(t *testing.T, enrolled bool) (string, *x509.Certificate) {
	t.Helper()
	data := filepath.Join(t.TempDir(), "data")
	store, err := certstore.Open(data)
	if err != nil {
		t.Fatal(err)
	}
	now := time.Now()
	caKey, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	caTmpl := &x509.Certificate{SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "test CA"}, NotBefore: now.Add(-time.Hour),
		NotAfter: now.Add(20 * 365 * 24 * time.Hour), IsCA: true, BasicConstraintsValid: true, KeyUsage: x509.KeyUsageCertSign | x509.KeyUsageCRLSign}
	der, _ := x509.CreateCertificate(rand.Reader, caTmpl, caTmpl, caKey.Public(), caKey)
	ca, _ := x509.ParseCertificate(der)
	if err := store.WriteCA([]*x509.Certificate{ca}); err != nil {
		t.Fatal(err)
	}
	if err := config.WriteRecorded(data, config.Recorded{Primary: config.Addrs{"127.0.0.1:1"}}); err != nil {
		t.Fatal(err)
	}
	if !enrolled {
		return data, nil
	}
	key, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	u, _ := url.Parse("urn:hostcert:host:6f1c1d3e-0000-4000-8000-000000000001")
	tmpl := &x509.Certificate{SerialNumber: big.NewInt(42), Subject: pkix.Name{CommonName: "6f1c1d3e-0000-4000-8000-000000000001"},
		NotBefore: now.Add(-time.Hour), NotAfter: now.Add(365 * 24 * time.Hour), DNSNames: []string{"h1.example.com"}, URIs: []*url.URL{u},
		KeyUsage: x509.KeyUsageDigitalSignature, ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth, x509.ExtKeyUsageServerAuth}}
	der, _ = x509.CreateCertificate(rand.Reader, tmpl, ca, key.Public(), caKey)
	cert, _ := x509.ParseCertificate(der)
	id, err := certstore.NewIdentity(cert, key)
	if err != nil {
		t.Fatal(err)
	}
	if err := store.WriteIdentity(id); err != nil {
		t.Fatal(err)
	}
	return data, cert
}

// runFor runs the agent (no config file: the primary is the recorded one)
// for d and returns its log lines.
func runFor(t *testing.T, data string, d time.Duration) []map[string]any {
	t.Helper()
	buf := &lockedBuf{}
	log, err := logging.New(logging.Options{Format: logging.FormatJSON, Level: "debug", Out: buf})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), d)
	defer cancel()
	err = daemon.Run(ctx, daemon.Options{
		ConfigPath: filepath.Join(t.TempDir(), "none.yaml"), ConfigOptional: true,
		Overrides: config.Overrides{func(c *config.Config) { c.DataDir = data; c.DialTimeout = 200 * time.Millisecond }},
		Log:       log, BlockedPoll: 100 * time.Millisecond,
		NewBackOff: func() backoff.BackOff { return backoff.NewConstantBackOff(100 * time.Millisecond) },
	})
	if err != nil {
		t.Fatalf("run: %v", err)
	}
	return buf.lines(t)
}

// `run` with no config file uses the recorded primary; on a host that never
// enrolled it says to run get-cert; every line names the part that wrote it,
// and durations carry their unit.
func TestRunNeverEnrolled(t *testing.T) {
	data, _ := trustOnly(t, false)
	lines := runFor(t, data, 1500*time.Millisecond)
	var running, told, retried bool
	for _, l := range lines {
		msg, _ := l["message"].(string)
		if l["part"] == nil || l["part"] == "" {
			t.Errorf("log line without a part: %v", l)
		}
		if strings.Contains(msg, "reissued") {
			t.Errorf("a never-enrolled host is told %q, want to run get-cert", msg)
		}
		switch {
		case msg == "agent running":
			running = l["primary"] == "127.0.0.1:1" && l["primary_source"] == string(config.SourceRecorded)
		case strings.Contains(msg, "run get-cert") && l["part"] == "renew":
			told = true
		case l["retry_in_ms"] != nil && l["part"] == "crl":
			retried = true
		}
		for k := range l {
			if strings.Contains(k, "retry") && !strings.HasSuffix(k, logging.DurationSuffix) {
				t.Errorf("duration key %q has no unit", k)
			}
		}
	}
	if !running || !told || !retried {
		t.Errorf("run: started with the recorded primary %t, told to run get-cert %t, crl retry with retry_in_ms %t; want all\n%v", running, told, retried, lines)
	}
}

// The renewal time `run` records is renew.DueFor, the computation status
// and self-check show.
func TestRunRecordsTheSharedDueTime(t *testing.T) {
	data, cert := trustOnly(t, true)
	runFor(t, data, 700*time.Millisecond)
	store, _ := certstore.Open(data)
	st, err := store.State()
	if err != nil {
		t.Fatal(err)
	}
	if want := renew.DueFor(cert, config.DefaultRenewBefore); !st.NextRenewal.Equal(want) {
		t.Errorf("run recorded next renewal %v, want renew.DueFor = %v", st.NextRenewal, want)
	}
}

// A damaged state.json does not stop `run`: it warns, carries on with the
// state rebuilt from host.pem, and the next write repairs the file.
func TestRunDamagedState(t *testing.T) {
	data, cert := trustOnly(t, true)
	if err := os.WriteFile(filepath.Join(data, certstore.StateFile), []byte(`{"host_id": 5, "level": [`), 0o600); err != nil {
		t.Fatal(err)
	}
	warned := false
	for _, l := range runFor(t, data, 700*time.Millisecond) {
		if l["level"] == "warn" && strings.Contains(l["error"].(string), "damaged") {
			warned = true
		}
	}
	store, _ := certstore.Open(data)
	st, err := store.State()
	if !warned || err != nil || st.HostID != pki.HostIDFromCert(cert) {
		t.Errorf("run with a damaged state.json: warned %t; state after: host %q, %v; want a warning and the host ID %q", warned, st.HostID, err, pki.HostIDFromCert(cert))
	}
}
