package console_test

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"io"
	"net"
	"net/http"
	"net/http/cookiejar"
	"net/url"
	"strings"
	"testing"
	"time"

	"github.com/hostcert/hostcert/common/pki"
	"github.com/hostcert/hostcert/common/protocol"
	"github.com/hostcert/hostcert/primary/primarytest"
)

// start runs a real primary with its console on loopback.
func start(t *testing.T) *primarytest.Primary {
	t.Helper()
	p := primarytest.Start(t, primarytest.Options{Console: true})
	if p.ConsoleAddr() == "" {
		t.Fatal("the console is not serving")
	}
	return p
}

func caPool(p *primarytest.Primary) *x509.CertPool {
	pool := x509.NewCertPool()
	for _, c := range p.CA() {
		pool.AddCert(c)
	}
	return pool
}

// browserish is an HTTP client that trusts the primary's CA, keeps cookies,
// reaches the console's host name on its loopback address and does not
// follow redirects.
func browserish(t *testing.T, p *primarytest.Primary) *http.Client {
	t.Helper()
	jar, err := cookiejar.New(nil)
	if err != nil {
		t.Fatal(err)
	}
	d := &net.Dialer{Timeout: 5 * time.Second}
	return &http.Client{
		Jar:     jar,
		Timeout: 20 * time.Second,
		Transport: &http.Transport{
			TLSClientConfig: &tls.Config{RootCAs: caPool(p)},
			DialContext: func(ctx context.Context, network, _ string) (net.Conn, error) {
				return d.DialContext(ctx, "tcp", p.ConsoleAddr())
			},
		},
		CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse },
	}
}

type answer struct {
	status int
	header http.Header
	body   string
}

func get(t *testing.T, c *http.Client, u string) answer {
	t.Helper()
	resp, err := c.Get(u)
	if err != nil {
		t.Fatalf("GET %s: %v", u, err)
	}
	return read(t, resp)
}

func post(t *testing.T, c *http.Client, u string, form url.Values, header http.Header) answer {
	t.Helper()
	req, err := http.NewRequest(http.MethodPost, u, strings.NewReader(form.Encode()))
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	for k, v := range header {
		req.Header[k] = v
	}
	resp, err := c.Do(req)
	if err != nil {
		t.Fatalf("POST %s: %v", u, err)
	}
	return read(t, resp)
}

func read(t *testing.T, resp *http.Response) answer {
	t.Helper()
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	return answer{resp.StatusCode, resp.Header, string(b)}
}

// base is the console's origin as the links name it.
func base(l string) string {
	u, err := url.Parse(l)
	if err != nil {
		panic(err)
	}
	return u.Scheme + "://" + u.Host
}

// csrfOf finds the CSRF token in a page's forms.
func csrfOf(t *testing.T, page string) string {
	t.Helper()
	const marker = `name="csrf" value="`
	i := strings.Index(page, marker)
	if i < 0 {
		t.Fatalf("no CSRF token in the page:\n%s", page)
	}
	rest := page[i+len(marker):]
	return rest[:strings.IndexByte(rest, '"')]
}

// tokenNames lists the primary's tokens through the admin socket.
func hasToken(t *testing.T, p *primarytest.Primary, name string) bool {
	t.Helper()
	for _, e := range p.Audit() {
		if e.Action == "token.create" && e.TokenName == name && e.Outcome == "ok" {
			return true
		}
	}
	return false
}

// enroll gets a certificate for name from the primary's API with a token.
func enroll(t *testing.T, p *primarytest.Primary, name, token string) protocol.CertResponse {
	t.Helper()
	key, err := pki.GenerateKey(pki.ECDSAP256)
	if err != nil {
		t.Fatal(err)
	}
	csr, err := pki.CreateCSR(key, name)
	if err != nil {
		t.Fatal(err)
	}
	body, _ := json.Marshal(protocol.EnrollRequest{Name: name, CSR: string(csr), Token: token})
	c := &http.Client{Timeout: 20 * time.Second, Transport: &http.Transport{TLSClientConfig: &tls.Config{RootCAs: caPool(p), ServerName: "localhost"}}}
	resp, err := c.Post("https://"+p.Addr()+protocol.PathEnroll, "application/json", strings.NewReader(string(body)))
	if err != nil {
		t.Fatalf("enroll %s: %v", name, err)
	}
	a := read(t, resp)
	if a.status != http.StatusOK {
		t.Fatalf("enroll %s: %d %s", name, a.status, a.body)
	}
	var cr protocol.CertResponse
	if err := json.Unmarshal([]byte(a.body), &cr); err != nil {
		t.Fatal(err)
	}
	return cr
}

// servedCRL fetches the CRL the primary's API serves.
func servedCRL(t *testing.T, p *primarytest.Primary) *x509.RevocationList {
	t.Helper()
	c := &http.Client{Timeout: 20 * time.Second, Transport: &http.Transport{TLSClientConfig: &tls.Config{RootCAs: caPool(p), ServerName: "localhost"}}}
	resp, err := c.Get("https://" + p.Addr() + protocol.PathCRL)
	if err != nil {
		t.Fatal(err)
	}
	a := read(t, resp)
	l, err := x509.ParseRevocationList([]byte(a.body))
	if err != nil {
		t.Fatalf("parse served CRL: %v", err)
	}
	return l
}

// waitRevoked waits until the served CRL lists serial (upper-case hex).
func waitRevoked(t *testing.T, p *primarytest.Primary, serial string) {
	t.Helper()
	deadline := time.Now().Add(15 * time.Second)
	for {
		for _, e := range servedCRL(t, p).RevokedCertificateEntries {
			if strings.EqualFold(e.SerialNumber.Text(16), strings.TrimLeft(serial, "0")) {
				return
			}
		}
		if time.Now().After(deadline) {
			t.Fatalf("serial %s not in the served CRL after 15s", serial)
		}
		time.Sleep(100 * time.Millisecond)
	}
}
