//go:build linux

package console_test

import (
	"bytes"
	"context"
	"encoding/json"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/chromedp/chromedp"

	"github.com/hostcert/hostcert/primary/internal/cli"
	"github.com/hostcert/hostcert/primary/primarytest"
)

// nssTool finds certutil or pk12util (libnss3-tools, which scripts/deps.sh
// installs); its absence skips loudly outside CI and fails under CI.
func nssTool(t *testing.T, name string) string {
	t.Helper()
	p, err := exec.LookPath(name)
	if err == nil {
		return p
	}
	if os.Getenv("CI") != "" {
		t.Fatalf("%s is not installed: the console's certificate login cannot be tested in a browser (scripts/deps.sh installs libnss3-tools)", name)
	}
	t.Skipf("SKIPPED: %s is not installed, the console's certificate login was not tested in a browser (scripts/deps.sh installs libnss3-tools)", name)
	return ""
}

// certBrowser starts a headless Chromium whose HOME holds an NSS database
// with the PKCS#12 file p12 imported, and whose profile selects a client
// certificate for the console's origin without asking (the
// auto-select-certificate content setting, as the AutoSelectCertificateForUrls
// policy sets it).
func certBrowser(t *testing.T, p *primarytest.Primary, p12, password string) context.Context {
	t.Helper()
	home := t.TempDir()
	nssdb := "sql:" + filepath.Join(home, ".pki", "nssdb")
	if err := os.MkdirAll(filepath.Join(home, ".pki", "nssdb"), 0o700); err != nil {
		t.Fatal(err)
	}
	for _, cmd := range [][]string{
		{nssTool(t, "certutil"), "-N", "-d", nssdb, "--empty-password"},
		{nssTool(t, "pk12util"), "-d", nssdb, "-i", p12, "-W", password},
	} {
		if out, err := exec.Command(cmd[0], cmd[1:]...).CombinedOutput(); err != nil {
			t.Fatalf("%s: %v\n%s", strings.Join(cmd, " "), err, out)
		}
	}
	profile := t.TempDir()
	_, port, _ := net.SplitHostPort(p.ConsoleAddr())
	prefs := map[string]any{"profile": map[string]any{"content_settings": map[string]any{"exceptions": map[string]any{
		"auto_select_certificate": map[string]any{
			"https://localhost:" + port + ",*": map[string]any{"setting": map[string]any{"filters": []any{map[string]any{}}}},
		},
	}}}}
	b, err := json.Marshal(prefs)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.MkdirAll(filepath.Join(profile, "Default"), 0o700); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(profile, "Default", "Preferences"), b, 0o600); err != nil {
		t.Fatal(err)
	}
	return browser(t, p,
		chromedp.Flag("host-resolver-rules", "MAP localhost 127.0.0.1"),
		chromedp.UserDataDir(profile),
		chromedp.Env("HOME="+home))
}

// TestConsoleCertificateLoginInABrowser: headless Chromium with the
// NAME.p12 that "hostcert-primary admin add --p12-password-file" wrote,
// imported into its NSS database, opens the console and is logged in as
// that administrator without a link; a POST without the CSRF token is
// still refused; after "admin revoke" the same browser is refused.
func TestConsoleCertificateLoginInABrowser(t *testing.T) {
	chromiumPath(t)
	p := start(t)
	shots := screenshotDir(t)
	out := t.TempDir()
	pw := filepath.Join(t.TempDir(), "pw")
	if err := os.WriteFile(pw, []byte("s3cret-p12\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	adminCLI(t, "admin", "add", "carol", "--out", out, "--p12-password-file", pw, "--data", p.Dir())
	ctx := certBrowser(t, p, filepath.Join(out, "carol.p12"), "s3cret-p12")
	_, port, _ := net.SplitHostPort(p.ConsoleAddr())
	origin := "https://localhost:" + port

	run(t, ctx, "open the console with the certificate", chromedp.Navigate(origin+"/"))
	if h := heading(t, ctx); h != "Dashboard" {
		t.Fatalf("the console with carol's certificate shows %q, want the Dashboard", h)
	}
	page := value(t, ctx, "read the page", chromedp.OuterHTML(css("html")))
	if !strings.Contains(page, "carol") {
		t.Errorf("the dashboard does not name carol")
	}
	shoot(t, ctx, shots, "dashboard-certificate")
	status := value(t, ctx, "post without the CSRF token",
		chromedp.Evaluate[int](`fetch("/tokens/create", {method: "POST", credentials: "same-origin",
			headers: {"Content-Type": "application/x-www-form-urlencoded"},
			body: "name=no-csrf&max_uses=1&valid_for=1h"}).then(r => r.status)`, chromedp.EvalAwaitPromise))
	if status != 403 || hasToken(t, p, "no-csrf") {
		t.Errorf("POST /tokens/create without the CSRF token, certificate login = %d, want 403 and no token", status)
	}

	adminCLI(t, "admin", "revoke", "carol", "--data", p.Dir())
	run(t, ctx, "open the console after the revocation", chromedp.Navigate(origin+"/tokens"))
	if h := heading(t, ctx); h != "Certificate refused" {
		t.Errorf("the console with carol's revoked certificate shows %q, want the refusal", h)
	}
	shoot(t, ctx, shots, "certificate-refused")
}

// adminCLI runs hostcert-primary in-process and fails the test on an error.
func adminCLI(t *testing.T, args ...string) string {
	t.Helper()
	var stdout, stderr bytes.Buffer
	if code := cli.Main(context.Background(), args, &stdout, &stderr); code != 0 {
		t.Fatalf("hostcert-primary %s = exit %d: %s", strings.Join(args, " "), code, stderr.String())
	}
	return stdout.String()
}
