// Package console is the primary's web console: a server-rendered HTML
// front end over the admin command table (package admin), on its own
// listener (serve --console, loopback by default), never on the
// enrollment port.
//
// An operator logs in with a one-time link (hostcert-primary console
// login): it works once, for minutes, and only its hash is kept; or with
// an administrator's client certificate (hostcert-primary admin add),
// checked at every request (certlogin.go). The
// session it opens is an HttpOnly, Secure, SameSite=Strict cookie; every
// state-changing request is a POST carrying the session's CSRF token; every
// page is sent with a strict Content-Security-Policy and no-store; all
// assets are embedded (there is no script at all). Every action runs an
// operation of the admin command table as "console:<operator>", so it is
// audited like the same command on the CLI.
package console

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	stdlog "log"
	"net"
	"net/http"
	"net/url"
	"strings"
	"sync"
	"time"

	"github.com/rs/zerolog"

	"github.com/hostcert/hostcert/primary/internal/admin"
	"github.com/hostcert/hostcert/primary/internal/crl"
	"github.com/hostcert/hostcert/primary/internal/store"
)

// Commands runs an operation of the admin command table (admin.Server).
type Commands interface {
	Do(ctx context.Context, actor, name string, raw json.RawMessage) (any, error)
}

// AuditLog records logins, which are not operations of the table.
type AuditLog interface {
	AppendAudit(ctx context.Context, a store.Audit) error
}

// CRLs gives the current CRL (for its download and its age).
type CRLs interface {
	Current() *crl.List
}

// Authority is what the console serves of the CA besides ca.show.
type Authority interface {
	BundlePEM() []byte
}

// Config is what a Console needs.
type Config struct {
	Commands Commands
	Audit    AuditLog
	CRLs     CRLs
	CA       Authority
	// Trust and Admins, when both set, let an administrator log in with
	// a client certificate (certlogin.go).
	Trust  Trust
	Admins AdminCerts
	// Host is the host name links point at (one of the names of the
	// certificate the console presents).
	Host string
	Log  zerolog.Logger
	Now  func() time.Time // default time.Now
}

// Console is the web console's HTTP handler.
type Console struct {
	mu          sync.Mutex
	lastRefusal time.Time // of the last refused login audited

	cfg   Config
	auth  *auth
	mux   *http.ServeMux
	pages map[string]*pageTemplate
	port  string
}

// CookieName is the session cookie; the __Host- prefix makes the browser
// keep it only when Secure, host-only and for Path=/.
const CookieName = "__Host-hostcert-console"

// CSP is the Content-Security-Policy of every answer: only this origin's
// stylesheet and images, no script at all, no framing, forms post only here.
const CSP = "default-src 'self'; script-src 'none'; object-src 'none'; base-uri 'none'; form-action 'self'; frame-ancestors 'none'"

// ActionSession is the audit action of a login through a link;
// CodeLinkInvalid the code of a refused one.
const (
	ActionSession   = "console.session"
	CodeLinkInvalid = "login_link_invalid"
)

// New returns a console. SetAddr gives it the listener's address before the
// first login link is made.
func New(cfg Config) (*Console, error) {
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	pages, err := parsePages()
	if err != nil {
		return nil, err
	}
	c := &Console{cfg: cfg, auth: newAuth(), pages: pages}
	c.routes()
	return c, nil
}

// SetAddr records the bound address (its port goes into login links).
func (c *Console) SetAddr(a net.Addr) {
	if _, port, err := net.SplitHostPort(a.String()); err == nil {
		c.port = port
	}
}

// NewLogin makes a one-time login link (admin.Logins).
func (c *Console) NewLogin(operator string, validFor time.Duration, now time.Time) (admin.LoginLink, error) {
	exp := now.Add(validFor)
	s, err := c.auth.newLink(operator, exp, now)
	if err != nil {
		return admin.LoginLink{}, err
	}
	u := url.URL{Scheme: "https", Host: net.JoinHostPort(c.cfg.Host, c.port), Path: "/login", RawQuery: url.Values{"t": {s}}.Encode()}
	return admin.LoginLink{URL: u.String(), Operator: operator, ExpiresAt: exp}, nil
}

// ServeHTTP sets the security headers of every answer and routes.
func (c *Console) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	h := w.Header()
	h.Set("Content-Security-Policy", CSP)
	h.Set("X-Content-Type-Options", "nosniff")
	h.Set("X-Frame-Options", "DENY")
	h.Set("Referrer-Policy", "same-origin")
	h.Set("Cache-Control", "no-store")
	c.mux.ServeHTTP(w, r)
}

// handler is a page or action of a logged-in operator.
type handler func(w http.ResponseWriter, r *http.Request, s *session)

func (c *Console) routes() {
	m := http.NewServeMux()
	m.HandleFunc("GET /static/style.css", c.style)
	m.HandleFunc("GET /login", c.login)
	m.HandleFunc("GET /{$}", c.page(c.dashboard))
	m.HandleFunc("GET /hosts", c.page(c.hosts))
	m.HandleFunc("GET /hosts/{ref}", c.page(c.host))
	m.HandleFunc("POST /hosts/allow-reissue", c.action(c.allowReissue))
	m.HandleFunc("GET /mappings", c.page(c.mappings))
	m.HandleFunc("POST /mappings/approve", c.action(c.mappingDecide(admin.CmdMappingApprove, "approved")))
	m.HandleFunc("POST /mappings/reject", c.action(c.mappingDecide(admin.CmdMappingReject, "rejected")))
	m.HandleFunc("GET /tokens", c.page(c.tokens))
	m.HandleFunc("POST /tokens/create", c.action(c.tokenCreate))
	m.HandleFunc("POST /tokens/delete", c.action(c.tokenDelete))
	m.HandleFunc("GET /certs", c.page(c.certs))
	m.HandleFunc("GET /certs/revoke", c.page(c.revokeConfirm))
	m.HandleFunc("POST /certs/revoke", c.action(c.revoke))
	m.HandleFunc("GET /audit", c.page(c.audit))
	m.HandleFunc("GET /ca", c.page(c.caPage))
	m.HandleFunc("GET /ca/bundle.pem", c.page(c.bundle))
	m.HandleFunc("GET /ca/crl.der", c.page(c.crlDER))
	m.HandleFunc("POST /logout", c.action(c.logout))
	c.mux = m
}

// authenticate finds the request's session. A request presenting a client
// certificate is logged in by that certificate alone (certSession: err
// says why it is refused; id is the cookie of a session it just opened);
// otherwise by its session cookie, which must be a link's: a session
// opened by a certificate works only on a connection presenting it.
func (c *Console) authenticate(r *http.Request) (s *session, id string, err error) {
	if presentsCert(r) {
		return c.certSession(r)
	}
	ck, cerr := r.Cookie(CookieName)
	if cerr != nil {
		return nil, "", nil
	}
	s = c.auth.session(ck.Value, c.cfg.Now())
	if s != nil && s.via != viaLink {
		return nil, "", nil
	}
	return s, "", nil
}

// notLoggedIn is the refusal of a request without a session (or with a
// refused certificate: err).
func (c *Console) notLoggedIn(w http.ResponseWriter, r *http.Request, err error) {
	if err != nil {
		c.refuse(w, r, http.StatusForbidden, "Certificate refused", "The client certificate this browser presented does not log in: "+errorText(err)+
			". Use a valid administrator certificate (hostcert-primary admin add), or a browser that presents none and a link from “hostcert-primary console login”.")
		return
	}
	c.refuse(w, r, http.StatusUnauthorized, "Not logged in", "Log in with an administrator certificate (hostcert-primary admin add) or a link from “hostcert-primary console login” on the primary.")
}

// setSession sets the cookie of a session just opened.
func setSession(w http.ResponseWriter, id string, s *session) {
	http.SetCookie(w, &http.Cookie{Name: CookieName, Value: id, Path: "/", Expires: s.expires,
		HttpOnly: true, Secure: true, SameSite: http.SameSiteStrictMode})
}

// page wraps a GET handler: only for a logged-in operator.
func (c *Console) page(h handler) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		s, id, err := c.authenticate(r)
		if s == nil {
			c.notLoggedIn(w, r, err)
			return
		}
		if id != "" {
			setSession(w, id, s)
		}
		h(w, r, s)
	}
}

// maxForm bounds a form body.
const maxForm = 64 << 10

// action wraps a POST handler: a logged-in operator, a request from this
// origin, and the session's CSRF token in the form.
func (c *Console) action(h handler) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		s, id, err := c.authenticate(r)
		if s == nil {
			c.notLoggedIn(w, r, err)
			return
		}
		if id != "" {
			// A session opened by this very request has a CSRF token no
			// form could carry yet: refused below, with its cookie set.
			setSession(w, id, s)
		}
		if !sameOrigin(r) {
			c.refuse(w, r, http.StatusForbidden, "Refused", "This request did not come from a page of the console.")
			return
		}
		r.Body = http.MaxBytesReader(w, r.Body, maxForm)
		if err := r.ParseForm(); err != nil || !csrfOK(s, r.PostForm.Get("csrf")) {
			c.cfg.Log.Warn().Str("operator", s.operator).Str("path", r.URL.Path).Msg("console post without a valid csrf token refused")
			c.refuse(w, r, http.StatusForbidden, "Refused", "The form's CSRF token is missing or wrong: reload the page and try again.")
			return
		}
		h(w, r, s)
	}
}

// sameOrigin refuses what the browser says comes from another site. A
// request without these headers (not a browser) still needs the CSRF token.
func sameOrigin(r *http.Request) bool {
	if site := r.Header.Get("Sec-Fetch-Site"); site != "" && site != "same-origin" && site != "none" {
		return false
	}
	if o := r.Header.Get("Origin"); o != "" && o != "https://"+r.Host {
		return false
	}
	return true
}

// login consumes a one-time link and opens a session.
func (c *Console) login(w http.ResponseWriter, r *http.Request) {
	now := c.cfg.Now()
	src := sourceOf(r)
	op, err := c.auth.useLink(r.URL.Query().Get("t"), now)
	if err != nil {
		c.cfg.Log.Warn().Str("source", src).Msg("console login with an unknown, used or expired link refused")
		if c.auditRefusal(now) {
			c.auditLogin(r.Context(), store.Audit{At: now, Actor: "console", Source: src, Action: ActionSession,
				Outcome: "refused", Code: CodeLinkInvalid, Detail: map[string]any{"via": viaLink}})
		}
		c.refuse(w, r, http.StatusUnauthorized, "This login link does not work", "It was used already, has expired, or was never issued. Ask for a new one with “hostcert-primary console login”.")
		return
	}
	id, s, err := c.auth.newSession(op, viaLink, "", now)
	if err != nil {
		c.refuse(w, r, http.StatusServiceUnavailable, "Cannot log in", err.Error())
		return
	}
	c.auditLogin(r.Context(), store.Audit{At: now, Actor: "console:" + op, Source: src, Action: ActionSession,
		Outcome: "ok", Detail: map[string]any{"via": viaLink, "expires_at": s.expires.UTC().Format(time.RFC3339)}})
	c.cfg.Log.Info().Str("operator", op).Str("source", src).Msg("console login")
	setSession(w, id, s)
	http.Redirect(w, r, "/", http.StatusSeeOther)
}

func (c *Console) logout(w http.ResponseWriter, r *http.Request, _ *session) {
	if ck, err := r.Cookie(CookieName); err == nil {
		c.auth.endSession(ck.Value)
	}
	http.SetCookie(w, &http.Cookie{Name: CookieName, Value: "", Path: "/", MaxAge: -1,
		HttpOnly: true, Secure: true, SameSite: http.SameSiteStrictMode})
	c.refuse(w, r, http.StatusOK, "Logged out", "Log in again with a new link from “hostcert-primary console login”.")
}

// auditRefusal reports whether a refused login is audited: at most one a
// second, so that a flood of made-up links cannot flood the audit log (the
// log line is written for each).
func (c *Console) auditRefusal(now time.Time) bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	if now.Sub(c.lastRefusal) < time.Second {
		return false
	}
	c.lastRefusal = now
	return true
}

func (c *Console) auditLogin(ctx context.Context, a store.Audit) {
	if err := c.cfg.Audit.AppendAudit(context.WithoutCancel(ctx), a); err != nil {
		c.cfg.Log.Error().Err(err).Msg("writing audit row of a console login")
	}
}

func sourceOf(r *http.Request) string {
	host, _, err := net.SplitHostPort(r.RemoteAddr)
	if err != nil {
		return r.RemoteAddr
	}
	return host
}

// actor is the audit actor of an operator's actions.
func actor(s *session) string { return "console:" + s.operator }

// do runs an operation of the command table for the session's operator.
func do[R any](ctx context.Context, c *Console, s *session, name string, args any) (R, error) {
	var zero R
	raw, err := json.Marshal(args)
	if err != nil {
		return zero, fmt.Errorf("%s: encode arguments: %w", name, err)
	}
	res, err := c.cfg.Commands.Do(ctx, actor(s), name, raw)
	if err != nil {
		return zero, err
	}
	r, ok := res.(R)
	if !ok {
		return zero, fmt.Errorf("%s: unexpected answer %T", name, res)
	}
	return r, nil
}

// Serve answers on ln (already TLS) until ctx ends.
func (c *Console) Serve(ctx context.Context, ln net.Listener) error {
	srv := &http.Server{
		Handler:           c,
		ReadHeaderTimeout: 10 * time.Second,
		ReadTimeout:       30 * time.Second,
		WriteTimeout:      60 * time.Second,
		IdleTimeout:       120 * time.Second,
		MaxHeaderBytes:    64 << 10,
		BaseContext:       func(net.Listener) context.Context { return context.WithoutCancel(ctx) },
		ErrorLog:          stdlog.New(c.cfg.Log.With().Str("part", "console-http").Logger(), "", 0),
	}
	go func() {
		<-ctx.Done()
		sctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 5*time.Second)
		defer cancel()
		_ = srv.Shutdown(sctx)
	}()
	if err := srv.Serve(ln); err != nil && !errors.Is(err, http.ErrServerClosed) {
		return fmt.Errorf("console: %w", err)
	}
	return nil
}

// errorText is what a failed operation shows: its first line.
func errorText(err error) string {
	s := err.Error()
	if i := strings.IndexByte(s, '\n'); i >= 0 {
		s = s[:i]
	}
	return s
}

var _ admin.Logins = (*Console)(nil)
