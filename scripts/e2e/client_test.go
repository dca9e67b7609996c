//go:build linux

package e2e

import (
	"bytes"
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"testing"
	"time"

	"github.com/hostcert/hostcert/common/pki"
	"github.com/hostcert/hostcert/common/protocol"
)

// apiClient talks to a primary's HTTPS API directly, as a load generator or
// as an attacker would: no agent, no state.
type apiClient struct {
	base  string
	http  *http.Client
	roots *x509.CertPool
}

// newAPIClient trusts the CA bundle in caPEM. With fresh set, every request
// opens a new TLS connection (the enrollment benchmark measures that case).
func newAPIClient(t testing.TB, addr, serverName string, caPEM []byte, fresh bool) *apiClient {
	t.Helper()
	roots := x509.NewCertPool()
	if !roots.AppendCertsFromPEM(caPEM) {
		t.Fatal("no CA certificate in bundle")
	}
	return newAPIClientTLS(addr, roots, &tls.Config{RootCAs: roots, ServerName: serverName, MinVersion: tls.VersionTLS12}, fresh)
}

// newPinnedClient verifies the primary's certificate chain once, then
// accepts on every later connection exactly that leaf certificate (by its
// bytes) instead of verifying the chain again. The enrollment benchmark uses
// it: one load generator stands in for thousands of hosts, each of which
// would verify the chain on its own CPU; the primary's side of every
// handshake (full key exchange and signature) is unchanged.
func newPinnedClient(t testing.TB, addr, serverName string, caPEM []byte) *apiClient {
	t.Helper()
	probe := newAPIClient(t, addr, serverName, caPEM, true)
	conn, err := tls.Dial("tcp", addr, probe.http.Transport.(*http.Transport).TLSClientConfig)
	if err != nil {
		t.Fatalf("verify the primary's certificate: %v", err)
	}
	leaf := conn.ConnectionState().PeerCertificates[0].Raw
	conn.Close()
	cfg := &tls.Config{
		ServerName:         serverName,
		MinVersion:         tls.VersionTLS12,
		InsecureSkipVerify: true, // replaced by the pin below
		VerifyPeerCertificate: func(raw [][]byte, _ [][]*x509.Certificate) error {
			if len(raw) == 0 || !bytes.Equal(raw[0], leaf) {
				return fmt.Errorf("primary presented a certificate other than the verified one")
			}
			return nil
		},
	}
	return newAPIClientTLS(addr, probe.roots, cfg, true)
}

func newAPIClientTLS(addr string, roots *x509.CertPool, cfg *tls.Config, fresh bool) *apiClient {
	tr := &http.Transport{
		TLSClientConfig:     cfg,
		DisableKeepAlives:   fresh,
		MaxIdleConnsPerHost: 256,
		Proxy:               nil,
		DialContext:         (&net.Dialer{Timeout: 5 * time.Second}).DialContext,
	}
	return &apiClient{base: "https://" + addr, http: &http.Client{Transport: tr, Timeout: 30 * time.Second}, roots: roots}
}

// enroll posts an EnrollRequest; a refusal comes back as *protocol.Error.
func (c *apiClient) enroll(ctx context.Context, req protocol.EnrollRequest) (*protocol.CertResponse, error) {
	body, _ := json.Marshal(req)
	hreq, err := http.NewRequestWithContext(ctx, http.MethodPost, c.base+protocol.PathEnroll, bytes.NewReader(body))
	if err != nil {
		return nil, err
	}
	hreq.Header.Set("Content-Type", "application/json")
	resp, err := c.http.Do(hreq)
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	data, err := io.ReadAll(io.LimitReader(resp.Body, 4<<20))
	if err != nil {
		return nil, err
	}
	if resp.StatusCode != http.StatusOK {
		var pe protocol.Error
		if json.Unmarshal(data, &pe) == nil && pe.Code != "" {
			return nil, &pe
		}
		return nil, fmt.Errorf("enroll: HTTP %d: %s", resp.StatusCode, data)
	}
	var cr protocol.CertResponse
	if err := json.Unmarshal(data, &cr); err != nil {
		return nil, fmt.Errorf("enroll: decode response: %w", err)
	}
	return &cr, nil
}

// csrFor makes a fresh P-256 key and a CSR for name.
func csrFor(t testing.TB, name string) string {
	t.Helper()
	key, err := pki.GenerateKey(pki.ECDSAP256)
	if err != nil {
		t.Fatal(err)
	}
	csr, err := pki.CreateCSR(key, name)
	if err != nil {
		t.Fatal(err)
	}
	return string(csr)
}
