package console_test

import (
	"context"
	"crypto/tls"
	"net/http"
	"net/url"
	"strings"
	"testing"
	"time"

	"github.com/hostcert/hostcert/primary/internal/admin"
	"github.com/hostcert/hostcert/primary/internal/console"
	"github.com/hostcert/hostcert/primary/primarytest"
)

// login opens a session with a fresh link and returns the client and the
// dashboard page.
func login(t *testing.T, p interface {
	ConsoleAddr() string
}, c *http.Client, link string) answer {
	t.Helper()
	a := get(t, c, link)
	if a.status != http.StatusSeeOther || a.header.Get("Location") != "/" {
		t.Fatalf("GET login link = %d (Location %q), want 303 to /: %s", a.status, a.header.Get("Location"), a.body)
	}
	return get(t, c, base(link)+"/")
}

func TestLoginLinkWorksOnceAndSetsAStrictCookie(t *testing.T) {
	p := start(t)
	c := browserish(t, p)
	link := p.ConsoleLogin("alice", "10m").URL

	a := get(t, c, link)
	if a.status != http.StatusSeeOther {
		t.Fatalf("GET link = %d, want 303: %s", a.status, a.body)
	}
	cookies := (&http.Response{Header: a.header}).Cookies()
	if len(cookies) != 1 {
		t.Fatalf("login set %d cookies, want 1: %v", len(cookies), a.header["Set-Cookie"])
	}
	ck := cookies[0]
	if ck.Name != console.CookieName || !ck.HttpOnly || !ck.Secure || ck.SameSite != http.SameSiteStrictMode || ck.Path != "/" || ck.Domain != "" {
		t.Errorf("session cookie = %+v, want %s, HttpOnly, Secure, SameSite=Strict, Path=/, host-only", ck, console.CookieName)
	}
	if d := get(t, c, base(link)+"/"); d.status != http.StatusOK || !strings.Contains(d.body, "alice") {
		t.Fatalf("dashboard after login = %d, want 200 naming alice: %s", d.status, d.body)
	}

	// The same link again, from a browser without the session: refused.
	again := get(t, browserish(t, p), link)
	if again.status != http.StatusUnauthorized || len((&http.Response{Header: again.header}).Cookies()) != 0 {
		t.Fatalf("GET used link = %d with cookies %v, want 401 and none", again.status, again.header["Set-Cookie"])
	}
	var ok, refused int
	for _, e := range p.Audit() {
		if e.Action == console.ActionSession {
			switch e.Outcome {
			case "ok":
				ok++
			case "refused":
				refused++
			}
		}
	}
	if ok != 1 || refused != 1 {
		t.Errorf("audit: %d logins, %d refused, want 1 and 1", ok, refused)
	}
	if strings.Contains(p.Log(), strings.SplitN(link, "t=", 2)[1]) {
		t.Error("the primary's log holds the login link's secret")
	}
}

func TestLoginLinkExpires(t *testing.T) {
	p := start(t)
	link := p.ConsoleLogin("alice", "1s").URL
	time.Sleep(1200 * time.Millisecond)
	if a := get(t, browserish(t, p), link); a.status != http.StatusUnauthorized {
		t.Fatalf("GET expired link = %d, want 401: %s", a.status, a.body)
	}
}

func TestUnauthenticatedRefused(t *testing.T) {
	p := start(t)
	c := browserish(t, p)
	origin := "https://localhost"
	for _, path := range []string{"/", "/hosts", "/tokens", "/certs", "/audit", "/ca", "/ca/bundle.pem", "/ca/crl.der"} {
		if a := get(t, c, origin+path); a.status != http.StatusUnauthorized {
			t.Errorf("GET %s without a session = %d, want 401", path, a.status)
		}
	}
	a := post(t, c, origin+"/tokens/create", url.Values{"name": {"sneaky"}, "max_uses": {"1"}, "valid_for": {"1h"}}, nil)
	if a.status != http.StatusUnauthorized {
		t.Errorf("POST /tokens/create without a session = %d, want 401", a.status)
	}
	// A made-up session cookie is no session.
	u, _ := url.Parse(origin)
	c.Jar.SetCookies(u, []*http.Cookie{{Name: console.CookieName, Value: "AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA"}})
	if a := get(t, c, origin+"/"); a.status != http.StatusUnauthorized {
		t.Errorf("GET / with a made-up cookie = %d, want 401", a.status)
	}
	if hasToken(t, p, "sneaky") {
		t.Error("a token was created without a session")
	}
}

func TestPostNeedsTheSessionsCSRFToken(t *testing.T) {
	p := start(t)
	c := browserish(t, p)
	link := p.ConsoleLogin("alice", "10m").URL
	origin := base(link)
	page := login(t, p, c, link)
	tok := csrfOf(t, page.body)
	form := func(name, csrf string) url.Values {
		v := url.Values{"name": {name}, "max_uses": {"1"}, "valid_for": {"1h"}}
		if csrf != "" {
			v.Set("csrf", csrf)
		}
		return v
	}
	cases := []struct {
		name   string
		form   url.Values
		header http.Header
		want   int
	}{
		{"no-csrf", form("no-csrf", ""), nil, http.StatusForbidden},
		{"wrong-csrf", form("wrong-csrf", strings.Repeat("A", len(tok))), nil, http.StatusForbidden},
		{"cross-origin", form("cross-origin", tok), http.Header{"Origin": {"https://evil.example"}}, http.StatusForbidden},
		{"cross-site", form("cross-site", tok), http.Header{"Sec-Fetch-Site": {"cross-site"}}, http.StatusForbidden},
		{"good", form("good", tok), http.Header{"Origin": {origin}, "Sec-Fetch-Site": {"same-origin"}}, http.StatusOK},
	}
	for _, tc := range cases {
		a := post(t, c, origin+"/tokens/create", tc.form, tc.header)
		if a.status != tc.want {
			t.Errorf("POST /tokens/create %s = %d, want %d", tc.name, a.status, tc.want)
		}
		if got := hasToken(t, p, tc.name); got != (tc.want == http.StatusOK) {
			t.Errorf("POST %s: token created = %v, want %v", tc.name, got, tc.want == http.StatusOK)
		}
	}
	// Another session's token does not do either.
	c2 := browserish(t, p)
	login(t, p, c2, p.ConsoleLogin("bob", "10m").URL)
	if a := post(t, c2, origin+"/tokens/create", form("bobs", tok), nil); a.status != http.StatusForbidden {
		t.Errorf("POST with alice's CSRF token in bob's session = %d, want 403", a.status)
	}
}

func TestSecurityHeadersOnEveryAnswer(t *testing.T) {
	p := start(t)
	c := browserish(t, p)
	link := p.ConsoleLogin("alice", "10m").URL
	origin := base(link)
	var answers []answer
	answers = append(answers, get(t, c, origin+"/"), get(t, c, link))
	for _, path := range []string{"/", "/hosts", "/tokens", "/certs", "/audit", "/ca", "/static/style.css", "/nope"} {
		answers = append(answers, get(t, c, origin+path))
	}
	for i, a := range answers {
		if got := a.header.Get("Content-Security-Policy"); got != console.CSP {
			t.Errorf("answer %d (%d): Content-Security-Policy = %q, want %q", i, a.status, got, console.CSP)
		}
		if a.header.Get("X-Content-Type-Options") != "nosniff" || a.header.Get("Referrer-Policy") != "same-origin" || a.header.Get("X-Frame-Options") != "DENY" {
			t.Errorf("answer %d: headers %v lack nosniff, same-origin referrers or DENY", i, a.header)
		}
		if strings.Contains(strings.ToLower(a.body), "<script") || strings.Contains(a.body, "http://") || strings.Contains(a.body, "//cdn") {
			t.Errorf("answer %d has a script or an outside reference", i)
		}
	}
	for _, d := range []string{"default-src 'self'", "script-src 'none'", "frame-ancestors 'none'", "form-action 'self'"} {
		if !strings.Contains(console.CSP, d) {
			t.Errorf("CSP %q lacks %q", console.CSP, d)
		}
	}
}

func TestConsoleActionsAreAuditedWithTheOperator(t *testing.T) {
	p := start(t)
	c := browserish(t, p)
	link := p.ConsoleLogin("alice", "10m").URL
	tok := csrfOf(t, login(t, p, c, link).body)
	a := post(t, c, base(link)+"/tokens/create", url.Values{"csrf": {tok}, "name": {"t1"}, "max_uses": {"1"}, "valid_for": {"1h"}}, nil)
	if a.status != http.StatusOK {
		t.Fatalf("create token = %d: %s", a.status, a.body)
	}
	a = post(t, c, base(link)+"/tokens/delete", url.Values{"csrf": {tok}, "name": {"t1"}}, nil)
	if a.status != http.StatusSeeOther {
		t.Fatalf("delete token = %d: %s", a.status, a.body)
	}
	want := map[string]bool{"token.create": false, "token.delete": false}
	for _, e := range p.Audit() {
		if _, ok := want[e.Action]; ok && e.TokenName == "t1" {
			if e.Actor != "console:alice" {
				t.Errorf("audit %s actor = %q, want console:alice", e.Action, e.Actor)
			}
			want[e.Action] = true
		}
	}
	for action, seen := range want {
		if !seen {
			t.Errorf("no audit row %s for t1", action)
		}
	}
}

// TestNeverOnTheAPIPort: the enrollment port serves no console page and
// does not take a login link; a primary without --console makes no links.
func TestNeverOnTheAPIPort(t *testing.T) {
	p := start(t)
	link := p.ConsoleLogin("alice", "10m").URL
	u, _ := url.Parse(link)
	api := &http.Client{Timeout: 20 * time.Second, Transport: &http.Transport{TLSClientConfig: &tls.Config{RootCAs: caPool(p), ServerName: "localhost"}},
		CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}
	for _, path := range []string{u.RequestURI(), "/", "/tokens", "/static/style.css"} {
		resp, err := api.Get("https://" + p.Addr() + path)
		if err != nil {
			t.Fatalf("GET API %s: %v", path, err)
		}
		a := read(t, resp)
		if a.status == http.StatusOK || a.status == http.StatusSeeOther || len(resp.Cookies()) != 0 {
			t.Errorf("GET %s on the API port = %d with cookies %v, want no console there", path, a.status, resp.Cookies())
		}
	}
	if a := get(t, browserish(t, p), link); a.status != http.StatusSeeOther {
		t.Errorf("the link, after it was tried on the API port, = %d on the console, want 303", a.status)
	}

	off := primarytest.Start(t, primarytest.Options{})
	var l admin.LoginLink
	ac := &admin.Client{Dir: off.Dir()}
	err := ac.Call(context.Background(), admin.CmdConsoleLogin, admin.LoginArgs{ValidFor: "5m"}, &l)
	if err == nil || !strings.Contains(err.Error(), "console is off") {
		t.Errorf("console login on a primary without --console = %v, want the console is off", err)
	}
}
