package console_test

import (
	"context"
	"crypto/sha256"
	"crypto/tls"
	"encoding/base64"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/chromedp/chromedp"

	"github.com/hostcert/hostcert/primary/primarytest"
)

// chromiumPath finds the distribution's Chromium (scripts/deps.sh installs
// it). Outside CI its absence skips, loudly; under CI it fails.
func chromiumPath(t *testing.T) string {
	t.Helper()
	for _, name := range []string{"chromium", "chromium-browser"} {
		if p, err := exec.LookPath(name); err == nil {
			return p
		}
	}
	if os.Getenv("CI") != "" {
		t.Fatal("chromium is not installed: the browser tests of the console cannot run (scripts/deps.sh installs it)")
	}
	t.Skip("SKIPPED: chromium is not installed, the console's browser tests did not run (scripts/deps.sh installs it; under CI this fails)")
	return ""
}

// screenshotDir is where the pages' screenshots go: $CONSOLE_SCREENSHOTS,
// else the test's artifact directory (go test -artifacts keeps it).
func screenshotDir(t *testing.T) string {
	if d := os.Getenv("CONSOLE_SCREENSHOTS"); d != "" {
		if err := os.MkdirAll(d, 0o755); err != nil {
			t.Fatal(err)
		}
		return d
	}
	return t.ArtifactDir()
}

// consoleSPKI is the base64 SHA-256 of the key of the certificate the
// console presents, checked against the primary's CA and name: Chromium
// accepts exactly that key (it does not know the test CA).
func consoleSPKI(t *testing.T, p *primarytest.Primary) string {
	t.Helper()
	conn, err := tls.Dial("tcp", p.ConsoleAddr(), &tls.Config{RootCAs: caPool(p), ServerName: "localhost"})
	if err != nil {
		t.Fatalf("console TLS: %v", err)
	}
	defer conn.Close()
	sum := sha256.Sum256(conn.ConnectionState().PeerCertificates[0].RawSubjectPublicKeyInfo)
	return base64.StdEncoding.EncodeToString(sum[:])
}

// browser starts a headless Chromium with a fresh profile; extra options
// come last and so override the defaults (another profile directory, say).
func browser(t *testing.T, p *primarytest.Primary, extra ...chromedp.ExecAllocatorOption) context.Context {
	t.Helper()
	opts := []chromedp.ExecAllocatorOption{
		chromedp.ExecPath(chromiumPath(t)),
		chromedp.Headless,
		chromedp.NoSandbox,
		chromedp.DisableGPU,
		chromedp.NoFirstRun,
		chromedp.NoDefaultBrowserCheck,
		chromedp.Flag("disable-background-networking", true),
		chromedp.Flag("disable-component-update", true),
		chromedp.Flag("disable-sync", true),
		chromedp.Flag("disable-dev-shm-usage", true),
		chromedp.Flag("ignore-certificate-errors-spki-list", consoleSPKI(t, p)),
		chromedp.UserDataDir(t.TempDir()),
		chromedp.WindowSize(1366, 900),
	}
	opts = append(opts, extra...)
	actx, cancelAlloc := chromedp.NewExecAllocator(context.Background(), opts...)
	ctx, cancelCtx := chromedp.NewContext(actx)
	t.Cleanup(func() { cancelCtx(); cancelAlloc() })
	if err := chromedp.Do(ctx); err != nil {
		t.Fatalf("start chromium: %v", err)
	}
	return ctx
}

// stepTimeout bounds every browser step.
const stepTimeout = 30 * time.Second

func run(t *testing.T, ctx context.Context, what string, steps ...chromedp.Action[chromedp.Void]) {
	t.Helper()
	ctx, cancel := context.WithTimeout(ctx, stepTimeout)
	defer cancel()
	if err := chromedp.Do(ctx, steps...); err != nil {
		t.Fatalf("%s: %v", what, err)
	}
}

// value runs one step that answers a value.
func value[T any](t *testing.T, ctx context.Context, what string, a chromedp.Action[T]) T {
	t.Helper()
	ctx, cancel := context.WithTimeout(ctx, stepTimeout)
	defer cancel()
	v, err := chromedp.Run(ctx, a)
	if err != nil {
		t.Fatalf("%s: %v", what, err)
	}
	return v
}

func heading(t *testing.T, ctx context.Context) string {
	t.Helper()
	return strings.TrimSpace(value(t, ctx, "read the heading", chromedp.Text(css("h1"))))
}

func css(s string) chromedp.CSS { return chromedp.CSS(s) }

func shoot(t *testing.T, ctx context.Context, dir, name string) {
	t.Helper()
	png := value(t, ctx, "screenshot "+name, chromedp.FullScreenshot(100))
	if err := os.WriteFile(filepath.Join(dir, name+".png"), png, 0o644); err != nil {
		t.Fatal(err)
	}
}

// TestConsoleInABrowser drives the console in headless Chromium: a
// request without a session is refused, a one-time link logs in and does
// not work twice, a token's value is shown once (and enrolls a host), a
// revocation confirmed on the page reaches the served CRL, a POST without
// the CSRF token is refused; every page is screenshot.
func TestConsoleInABrowser(t *testing.T) {
	p := start(t)
	shots := screenshotDir(t)
	ctx := browser(t, p)
	p.AddHost("web01.example.com", "db01.example.com")
	link := p.ConsoleLogin("alice", "10m").URL
	origin := base(link)

	// Unauthenticated: refused.
	run(t, ctx, "open the console without a session", chromedp.Navigate(origin+"/tokens"))
	if h := heading(t, ctx); h != "Not logged in" {
		t.Fatalf("GET /tokens without a session shows %q, want the refusal", h)
	}

	// The one-time link logs in.
	run(t, ctx, "follow the login link", chromedp.Navigate(link), chromedp.WaitVisible(css("#level")))
	if h := heading(t, ctx); h != "Dashboard" {
		t.Fatalf("after login the page is %q, want Dashboard", h)
	}
	shoot(t, ctx, shots, "dashboard")

	// ... once.
	run(t, ctx, "follow the login link again", chromedp.Navigate(link))
	if h := heading(t, ctx); h != "This login link does not work" {
		t.Fatalf("the used link shows %q, want the refusal", h)
	}

	// A token: created on the page, its value shown once.
	run(t, ctx, "open the tokens page", chromedp.Navigate(origin+"/tokens"))
	run(t, ctx, "type the token's name", chromedp.SendKeys(css("#token-name"), "web01-token"))
	run(t, ctx, "create the token", chromedp.Click(css("#token-create")))
	run(t, ctx, "see the token's value", chromedp.WaitVisible(css("#token-value")))
	tokenValue := strings.TrimSpace(value(t, ctx, "read the token value", chromedp.Text(css("#token-value"))))
	if len(tokenValue) < 20 {
		t.Fatalf("token value %q: too short to be one", tokenValue)
	}
	shoot(t, ctx, shots, "token-created")
	run(t, ctx, "list the tokens", chromedp.Navigate(origin+"/tokens"))
	list := value(t, ctx, "read the token list", chromedp.OuterHTML(css("html")))
	if !strings.Contains(list, "web01-token") || strings.Contains(list, tokenValue) {
		t.Fatalf("the token list must name web01-token and never show its value")
	}
	shoot(t, ctx, shots, "tokens")

	// By keyboard alone: the skip link is the first stop, and Enter in the
	// form submits it.
	run(t, ctx, "tokens page", chromedp.Navigate(origin+"/tokens"))
	run(t, ctx, "tab to the skip link", chromedp.KeyEvent("\t"))
	if got := value(t, ctx, "focused element", chromedp.Evaluate[string](`document.activeElement.textContent`)); got != "Skip to content" {
		t.Errorf("the first Tab stop is %q, want the skip link", got)
	}
	run(t, ctx, "type a token by keyboard", chromedp.Focus(css("#token-name")), chromedp.KeyEvent("kbd-token\r"),
		chromedp.WaitVisible(css("#token-value")))
	if !hasToken(t, p, "kbd-token") {
		t.Error("the token typed and submitted by keyboard was not created")
	}

	// The value is a real token: it enrolls web01.
	cert := enroll(t, p, "web01.example.com", tokenValue)

	run(t, ctx, "hosts", chromedp.Navigate(origin+"/hosts"), chromedp.WaitVisible(css("table")))
	shoot(t, ctx, shots, "hosts")
	run(t, ctx, "host", chromedp.Navigate(origin+"/hosts/"+cert.HostID), chromedp.WaitVisible(css("table")))
	shoot(t, ctx, shots, "host")

	// Revoke it after the confirmation page; the served CRL lists it.
	run(t, ctx, "certificates", chromedp.Navigate(origin+"/certs"), chromedp.WaitVisible(css("table")))
	shoot(t, ctx, shots, "certificates")
	run(t, ctx, "open the revocation", chromedp.Click(css(fmt.Sprintf(`a[href="/certs/revoke?host=%s"]`, cert.HostID))),
		chromedp.WaitVisible(css("#revoke-confirm")))
	shoot(t, ctx, shots, "revoke-confirm")
	if len(servedCRL(t, p).RevokedCertificateEntries) != 0 {
		t.Fatal("the confirmation page revoked already")
	}
	run(t, ctx, "confirm the revocation",
		chromedp.SetValue(css("#revoke-reason"), "keyCompromise"),
		chromedp.Click(css("#revoke-confirm")),
		chromedp.WaitVisible(css(".notice")))
	waitRevoked(t, p, cert.Serial)
	for _, e := range servedCRL(t, p).RevokedCertificateEntries {
		if e.ReasonCode != 1 {
			t.Errorf("CRL entry reason %d, want 1 (keyCompromise)", e.ReasonCode)
		}
	}

	// A POST without the CSRF token, from the console's own page: refused.
	run(t, ctx, "open the tokens page", chromedp.Navigate(origin+"/tokens"))
	status := value(t, ctx, "post without the CSRF token",
		chromedp.Evaluate[int](`fetch("/tokens/create", {method: "POST", credentials: "same-origin",
			headers: {"Content-Type": "application/x-www-form-urlencoded"},
			body: "name=no-csrf&max_uses=1&valid_for=1h"}).then(r => r.status)`, chromedp.EvalAwaitPromise))
	if status != 403 {
		t.Errorf("POST /tokens/create without the CSRF token = %d, want 403", status)
	}
	if hasToken(t, p, "no-csrf") {
		t.Error("a POST without the CSRF token created a token")
	}

	run(t, ctx, "host names", chromedp.Navigate(origin+"/mappings"), chromedp.WaitVisible(css("table")))
	shoot(t, ctx, shots, "mappings")
	run(t, ctx, "audit", chromedp.Navigate(origin+"/audit"), chromedp.WaitVisible(css("table")))
	shoot(t, ctx, shots, "audit")
	auditHTML := value(t, ctx, "read the audit", chromedp.OuterHTML(css("table")))
	for _, want := range []string{"console:alice", "token.create", "cert.revoke"} {
		if !strings.Contains(auditHTML, want) {
			t.Errorf("the audit page lacks %q", want)
		}
	}
	run(t, ctx, "ca", chromedp.Navigate(origin+"/ca"), chromedp.WaitVisible(css("dl")))
	shoot(t, ctx, shots, "ca")
	caText := value(t, ctx, "read the CA page", chromedp.Text(css("main")))
	if !strings.Contains(caText, p.Fingerprint()) {
		t.Errorf("the CA page does not show the fingerprint %s", p.Fingerprint())
	}
	run(t, ctx, "dashboard again", chromedp.Navigate(origin+"/"), chromedp.WaitVisible(css("#level")))
	shoot(t, ctx, shots, "dashboard-after")
	t.Logf("screenshots in %s", shots)
}
