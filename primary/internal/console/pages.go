package console

import (
	"bytes"
	"embed"
	"fmt"
	"html/template"
	"net/http"
	"net/url"
	"sort"
	"strconv"
	"strings"
	"time"

	"github.com/hostcert/hostcert/common/pki"
	"github.com/hostcert/hostcert/primary/internal/admin"
)

//go:embed templates/*.html
var templateFS embed.FS

//go:embed static/style.css
var styleCSS []byte

// pageTemplate is one page: the layout with the page's content.
type pageTemplate = template.Template

// pageNames are the templates/<name>.html files.
var pageNames = []string{"message", "dashboard", "hosts", "host", "tokens", "token_created", "certs", "revoke", "audit", "ca", "mappings"}

var funcs = template.FuncMap{
	"when": func(t any) string {
		switch v := t.(type) {
		case time.Time:
			if v.IsZero() {
				return "—"
			}
			return v.UTC().Format("2006-01-02 15:04 UTC")
		case *time.Time:
			if v == nil || v.IsZero() {
				return "—"
			}
			return v.UTC().Format("2006-01-02 15:04 UTC")
		}
		return fmt.Sprint(t)
	},
	"join":   strings.Join,
	"dur":    humanDuration,
	"detail": detailText,
}

// detailText renders an audit row's detail as "k=v, ..." by key, cut at
// 160 characters.
func detailText(d map[string]any) string {
	keys := make([]string, 0, len(d))
	for k := range d {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	parts := make([]string, 0, len(keys))
	for _, k := range keys {
		parts = append(parts, fmt.Sprintf("%s=%v", k, d[k]))
	}
	out := strings.Join(parts, ", ")
	if len(out) > 160 {
		out = out[:157] + "..."
	}
	return out
}

func parsePages() (map[string]*pageTemplate, error) {
	base, err := template.New("layout.html").Funcs(funcs).ParseFS(templateFS, "templates/layout.html")
	if err != nil {
		return nil, fmt.Errorf("console templates: %w", err)
	}
	out := map[string]*pageTemplate{}
	for _, n := range pageNames {
		t, err := template.Must(base.Clone()).ParseFS(templateFS, "templates/"+n+".html")
		if err != nil {
			return nil, fmt.Errorf("console template %s: %w", n, err)
		}
		out[n] = t
	}
	return out, nil
}

// view is what every page gets.
type view struct {
	Title    string
	Nav      string // the current section, for the navigation bar
	Operator string
	CSRF     string
	Notice   string
	Error    string
	Data     any
}

func (c *Console) render(w http.ResponseWriter, status int, name string, s *session, v view) {
	if s != nil {
		v.Operator, v.CSRF = s.operator, s.csrf
	}
	var buf bytes.Buffer
	if err := c.pages[name].ExecuteTemplate(&buf, "layout.html", v); err != nil {
		c.cfg.Log.Error().Err(err).Str("page", name).Msg("rendering console page")
		http.Error(w, "internal error", http.StatusInternalServerError)
		return
	}
	w.Header().Set("Content-Type", "text/html; charset=utf-8")
	w.WriteHeader(status)
	_, _ = w.Write(buf.Bytes())
}

// refuse shows a message page to someone who may not be logged in.
func (c *Console) refuse(w http.ResponseWriter, _ *http.Request, status int, title, msg string) {
	c.render(w, status, "message", nil, view{Title: title, Data: msg})
}

func (c *Console) style(w http.ResponseWriter, _ *http.Request) {
	w.Header().Set("Content-Type", "text/css; charset=utf-8")
	w.Header().Set("Cache-Control", "max-age=3600")
	_, _ = w.Write(styleCSS)
}

// notices are the messages a redirect after an action may ask for (a fixed
// set: a link cannot make the console say anything else).
var notices = map[string]string{
	"deleted":   "Token deleted.",
	"revoked":   "Revoked. The CRL is regenerated within seconds.",
	"reissue":   "Auto-reissue window opened.",
	"cleanedup": "Expired and used-up tokens deleted.",
	"approved":  "Name approved: the host's next certificate carries it.",
	"rejected":  "Name rejected: it is free again.",
}

func notice(r *http.Request) string { return notices[r.URL.Query().Get("notice")] }

func redirect(w http.ResponseWriter, r *http.Request, path string, q url.Values) {
	if len(q) > 0 {
		path += "?" + q.Encode()
	}
	http.Redirect(w, r, path, http.StatusSeeOther)
}

// Dashboard.

type codeCount struct {
	Code  string
	Count int
}

type dashData struct {
	Inv          admin.InventoryInfo
	Expiring     []admin.Cert
	Refusals     []codeCount
	RefusalTotal int
	Scanned      int
	ScanCapped   bool
	CA           admin.CAInfo
	CAExpiresIn  string
	CRLAge       string
	CRLNumber    string
}

// dashAuditScan bounds how many audit rows the dashboard reads to count
// the last day's refusals.
const dashAuditScan = 5000

func (c *Console) dashboard(w http.ResponseWriter, r *http.Request, s *session) {
	ctx, now := r.Context(), c.cfg.Now()
	var d dashData
	var errs []string
	var err error
	if d.Inv, err = do[admin.InventoryInfo](ctx, c, s, admin.CmdInventory, admin.InventoryArgs{Expiring: "30d", Stale: "7d"}); err != nil {
		errs = append(errs, errorText(err))
	}
	if d.Expiring, err = do[[]admin.Cert](ctx, c, s, admin.CmdCertList, admin.CertArgs{Expiring: "30d", Limit: 20}); err != nil {
		errs = append(errs, errorText(err))
	}
	if d.CA, err = do[admin.CAInfo](ctx, c, s, admin.CmdCAShow, admin.CAArgs{}); err != nil {
		errs = append(errs, errorText(err))
	} else {
		d.CAExpiresIn = humanDuration(d.CA.NotAfter.Sub(now))
	}
	if l := c.cfg.CRLs.Current(); l != nil {
		d.CRLAge, d.CRLNumber = humanDuration(now.Sub(l.ThisUpdate)), l.Number.String()
	}
	counts := map[string]int{}
	args := admin.AuditArgs{Since: admin.When{Time: now.Add(-24 * time.Hour)}, Limit: 1000}
	for d.Scanned < dashAuditScan {
		rows, err := do[[]admin.AuditEntry](ctx, c, s, admin.CmdAudit, args)
		if err != nil {
			errs = append(errs, errorText(err))
			break
		}
		if len(rows) == 0 {
			break
		}
		for _, a := range rows {
			if a.Outcome == "refused" {
				code := a.Code
				if code == "" {
					code = "(no code)"
				}
				counts[code]++
				d.RefusalTotal++
			}
		}
		d.Scanned += len(rows)
		args.After = rows[len(rows)-1].ID
		d.ScanCapped = d.Scanned >= dashAuditScan
	}
	for code, n := range counts {
		d.Refusals = append(d.Refusals, codeCount{code, n})
	}
	sort.Slice(d.Refusals, func(i, j int) bool {
		if d.Refusals[i].Count != d.Refusals[j].Count {
			return d.Refusals[i].Count > d.Refusals[j].Count
		}
		return d.Refusals[i].Code < d.Refusals[j].Code
	})
	c.render(w, http.StatusOK, "dashboard", s, view{Title: "Dashboard", Nav: "dashboard", Error: strings.Join(errs, "; "), Data: d})
}

// Hosts.

type hostsData struct {
	Q     string
	Hosts []admin.Host
	Next  string
}

const (
	pageRows = 50
	scanRows = 5000
)

func (c *Console) hosts(w http.ResponseWriter, r *http.Request, s *session) {
	q := strings.TrimSpace(r.URL.Query().Get("q"))
	d := hostsData{Q: q}
	args := admin.HostListArgs{After: r.URL.Query().Get("after"), Limit: 500}
	var errText string
	scanned := 0
	lq := strings.ToLower(q)
scan:
	for scanned < scanRows {
		rows, err := do[[]admin.Host](r.Context(), c, s, admin.CmdHostList, args)
		if err != nil {
			errText = errorText(err)
			break
		}
		if len(rows) == 0 {
			break
		}
		for _, h := range rows {
			scanned++
			args.After = h.Name
			if lq == "" || strings.Contains(h.Name, lq) || strings.Contains(h.ID, lq) {
				d.Hosts = append(d.Hosts, h)
				if len(d.Hosts) == pageRows {
					d.Next = h.Name
					break scan
				}
			}
		}
	}
	if d.Next == "" && scanned >= scanRows {
		d.Next = args.After
	}
	c.render(w, http.StatusOK, "hosts", s, view{Title: "Hosts", Nav: "hosts", Error: errText, Data: d})
}

type hostData struct {
	Ref    string
	Detail admin.HostDetail
	Found  bool
}

func (c *Console) host(w http.ResponseWriter, r *http.Request, s *session) {
	ref := r.PathValue("ref")
	d := hostData{Ref: ref}
	v := view{Title: "Host " + ref, Nav: "hosts", Notice: notice(r)}
	det, err := do[admin.HostDetail](r.Context(), c, s, admin.CmdHostShow, admin.HostArgs{Host: ref})
	status := http.StatusOK
	if err != nil {
		v.Error, status = errorText(err), http.StatusNotFound
	} else {
		d.Detail, d.Found = det, true
		v.Title = "Host " + det.Name
	}
	v.Data = d
	c.render(w, status, "host", s, v)
}

func (c *Console) allowReissue(w http.ResponseWriter, r *http.Request, s *session) {
	ref := r.PostForm.Get("host")
	_, err := do[admin.WindowResult](r.Context(), c, s, admin.CmdHostReissue, admin.WindowArgs{Host: ref, For: r.PostForm.Get("for")})
	if err != nil {
		c.render(w, http.StatusBadRequest, "message", s, view{Title: "Auto-reissue not opened", Nav: "hosts", Error: errorText(err)})
		return
	}
	redirect(w, r, "/hosts/"+url.PathEscape(ref), url.Values{"notice": {"reissue"}})
}

// Host name mappings.

type mappingsData struct {
	Pending, All []admin.Mapping
	Next         url.Values
}

func (c *Console) mappings(w http.ResponseWriter, r *http.Request, s *session) {
	c.mappingsPage(w, r, s, http.StatusOK, "")
}

func (c *Console) mappingsPage(w http.ResponseWriter, r *http.Request, s *session, status int, errText string) {
	var d mappingsData
	pending, err := do[[]admin.Mapping](r.Context(), c, s, admin.CmdMappingList, admin.MappingListArgs{Pending: true, Limit: pageRows})
	if err == nil {
		d.Pending = pending
		d.All, err = do[[]admin.Mapping](r.Context(), c, s, admin.CmdMappingList, admin.MappingListArgs{After: r.URL.Query().Get("after"), Limit: pageRows})
	}
	if err != nil && errText == "" {
		errText = errorText(err)
	}
	if len(d.All) == pageRows {
		// The key of the last row: several hosts may claim one name.
		last := d.All[len(d.All)-1]
		d.Next = url.Values{"after": {last.Name + " " + last.HostID}}
	}
	c.render(w, status, "mappings", s, view{Title: "Host names", Nav: "mappings", Notice: notice(r), Error: errText, Data: d})
}

func (c *Console) mappingDecide(cmd, notice string) handler {
	return func(w http.ResponseWriter, r *http.Request, s *session) {
		if _, err := do[admin.Mapping](r.Context(), c, s, cmd, admin.MappingArgs{Name: r.PostForm.Get("name"), Host: r.PostForm.Get("host")}); err != nil {
			c.mappingsPage(w, r, s, http.StatusBadRequest, errorText(err))
			return
		}
		redirect(w, r, "/mappings", url.Values{"notice": {notice}})
	}
}

// Tokens.

type tokensData struct {
	Tokens []admin.Token
	Form   admin.TokenArgs
}

func (c *Console) tokens(w http.ResponseWriter, r *http.Request, s *session) {
	c.tokensPage(w, r, s, http.StatusOK, admin.TokenArgs{MaxUses: 1, ValidFor: "24h"}, "")
}

func (c *Console) tokensPage(w http.ResponseWriter, r *http.Request, s *session, status int, form admin.TokenArgs, errText string) {
	list, err := do[[]admin.Token](r.Context(), c, s, admin.CmdTokenList, admin.NoArgs{})
	if err != nil && errText == "" {
		errText = errorText(err)
	}
	c.render(w, status, "tokens", s, view{Title: "Tokens", Nav: "tokens", Notice: notice(r), Error: errText,
		Data: tokensData{Tokens: list, Form: form}})
}

// lines splits a text area or a comma list into its non-empty entries.
func lines(s string) []string {
	var out []string
	for _, f := range strings.FieldsFunc(s, func(r rune) bool { return r == '\n' || r == ',' || r == '\r' || r == ' ' }) {
		out = append(out, f)
	}
	return out
}

func (c *Console) tokenCreate(w http.ResponseWriter, r *http.Request, s *session) {
	f := r.PostForm
	args := admin.TokenArgs{Name: strings.TrimSpace(f.Get("name")), ValidFor: strings.TrimSpace(f.Get("valid_for")),
		Reason: f.Get("reason"), ReissueHost: strings.TrimSpace(f.Get("reissue_host")),
		BindNames: lines(f.Get("bind_names")), BindNets: lines(f.Get("bind_nets"))}
	if n, err := strconv.Atoi(strings.TrimSpace(f.Get("max_uses"))); err == nil {
		args.MaxUses = n
	} else {
		c.tokensPage(w, r, s, http.StatusBadRequest, args, "max uses: a whole number")
		return
	}
	tok, err := do[admin.CreatedToken](r.Context(), c, s, admin.CmdTokenCreate, args)
	if err != nil {
		c.tokensPage(w, r, s, http.StatusBadRequest, args, errorText(err))
		return
	}
	c.render(w, http.StatusOK, "token_created", s, view{Title: "Token created", Nav: "tokens", Data: tok})
}

func (c *Console) tokenDelete(w http.ResponseWriter, r *http.Request, s *session) {
	if _, err := do[admin.CountResult](r.Context(), c, s, admin.CmdTokenDelete, admin.NameArgs{Name: r.PostForm.Get("name")}); err != nil {
		c.tokensPage(w, r, s, http.StatusBadRequest, admin.TokenArgs{MaxUses: 1, ValidFor: "24h"}, errorText(err))
		return
	}
	redirect(w, r, "/tokens", url.Values{"notice": {"deleted"}})
}

// Certificates.

type certsData struct {
	Host, Token, Expiring string
	Certs                 []admin.Cert
	Next                  url.Values
}

func (c *Console) certs(w http.ResponseWriter, r *http.Request, s *session) {
	q := r.URL.Query()
	d := certsData{Host: strings.TrimSpace(q.Get("host")), Token: strings.TrimSpace(q.Get("token")), Expiring: strings.TrimSpace(q.Get("expiring"))}
	args := admin.CertArgs{Host: d.Host, Token: d.Token, Expiring: d.Expiring, After: q.Get("after"), Limit: pageRows}
	v := view{Title: "Certificates", Nav: "certs", Notice: notice(r)}
	list, err := do[[]admin.Cert](r.Context(), c, s, admin.CmdCertList, args)
	if err != nil {
		v.Error = errorText(err)
	}
	d.Certs = list
	if len(list) == pageRows && d.Expiring == "" {
		d.Next = url.Values{"host": {d.Host}, "token": {d.Token}, "after": {list[len(list)-1].Serial}}
	}
	v.Data = d
	c.render(w, http.StatusOK, "certs", s, v)
}

// Reasons offered by the revoke form (RFC 5280 names; the operation takes
// any of them).
var reasons = []string{"keyCompromise", "superseded", "cessationOfOperation", "affiliationChanged", "privilegeWithdrawn", "unspecified"}

type revokeData struct {
	Host    string
	Detail  admin.HostDetail
	Reasons []string
}

func (c *Console) revokeConfirm(w http.ResponseWriter, r *http.Request, s *session) {
	ref := strings.TrimSpace(r.URL.Query().Get("host"))
	det, err := do[admin.HostDetail](r.Context(), c, s, admin.CmdHostShow, admin.HostArgs{Host: ref})
	if err != nil {
		c.render(w, http.StatusNotFound, "message", s, view{Title: "Revoke", Nav: "certs", Error: errorText(err)})
		return
	}
	c.render(w, http.StatusOK, "revoke", s, view{Title: "Revoke " + det.Name, Nav: "certs",
		Data: revokeData{Host: ref, Detail: det, Reasons: reasons}})
}

func (c *Console) revoke(w http.ResponseWriter, r *http.Request, s *session) {
	host := r.PostForm.Get("host")
	res, err := do[admin.CountResult](r.Context(), c, s, admin.CmdCertRevoke, admin.RevokeArgs{Host: host, Reason: r.PostForm.Get("reason")})
	if err != nil {
		c.render(w, http.StatusBadRequest, "message", s, view{Title: "Not revoked", Nav: "certs", Error: errorText(err)})
		return
	}
	c.cfg.Log.Info().Str("operator", s.operator).Str("host", host).Int("certificates", res.Count).Msg("console revoked a host")
	redirect(w, r, "/certs", url.Values{"host": {host}, "notice": {"revoked"}})
}

// Audit.

type auditData struct {
	Since, Host, Code, Action string
	Rows                      []admin.AuditEntry
	Next                      url.Values
}

func (c *Console) audit(w http.ResponseWriter, r *http.Request, s *session) {
	q := r.URL.Query()
	d := auditData{Since: strings.TrimSpace(q.Get("since")), Host: strings.TrimSpace(q.Get("host")),
		Code: strings.TrimSpace(q.Get("code")), Action: strings.TrimSpace(q.Get("action"))}
	if d.Since == "" {
		d.Since = "24h"
	}
	v := view{Title: "Audit log", Nav: "audit"}
	since, err := admin.ParseWhen(d.Since, c.cfg.Now())
	if err != nil {
		v.Error, v.Data = errorText(err), d
		c.render(w, http.StatusBadRequest, "audit", s, v)
		return
	}
	args := admin.AuditArgs{Since: admin.When{Time: since}, Limit: 500}
	if a, err := strconv.ParseInt(q.Get("after"), 10, 64); err == nil && a > 0 {
		args.After = a
	}
	scanned, more := 0, false
scan:
	for scanned < scanRows {
		rows, err := do[[]admin.AuditEntry](r.Context(), c, s, admin.CmdAudit, args)
		if err != nil {
			v.Error = errorText(err)
			break
		}
		if len(rows) == 0 {
			break
		}
		for _, a := range rows {
			scanned++
			args.After = a.ID
			if auditMatch(a, d.Host, d.Code, d.Action) {
				d.Rows = append(d.Rows, a)
				if len(d.Rows) == pageRows {
					more = true
					break scan
				}
			}
		}
		more = scanned >= scanRows
	}
	if more {
		d.Next = url.Values{"since": {d.Since}, "host": {d.Host}, "code": {d.Code}, "action": {d.Action}, "after": {strconv.FormatInt(args.After, 10)}}
	}
	v.Data = d
	c.render(w, http.StatusOK, "audit", s, v)
}

// auditMatch reports whether a row passes the filters: host (a name or a
// host ID, exact, case-insensitive), code and action (exact); "" passes.
func auditMatch(a admin.AuditEntry, host, code, action string) bool {
	if host != "" && !strings.EqualFold(a.Name, host) && !strings.EqualFold(a.HostID, host) {
		return false
	}
	if code != "" && a.Code != code {
		return false
	}
	if action != "" && a.Action != action {
		return false
	}
	return true
}

// CA.

type caCert struct {
	Subject     string
	Fingerprint string
	NotAfter    time.Time
}

type caData struct {
	Info    admin.CAInfo
	Bundle  []caCert
	CRLThis time.Time
}

func (c *Console) caPage(w http.ResponseWriter, r *http.Request, s *session) {
	info, err := do[admin.CAInfo](r.Context(), c, s, admin.CmdCAShow, admin.CAArgs{})
	v := view{Title: "Certificate authority", Nav: "ca"}
	if err != nil {
		v.Error = errorText(err)
	}
	d := caData{Info: info, Bundle: bundleCerts([]byte(info.BundlePEM))}
	if l := c.cfg.CRLs.Current(); l != nil {
		d.CRLThis = l.ThisUpdate
	}
	v.Data = d
	c.render(w, http.StatusOK, "ca", s, v)
}

func bundleCerts(b []byte) []caCert {
	certs, err := pki.ParseCerts(b)
	if err != nil {
		return nil
	}
	out := make([]caCert, 0, len(certs))
	for _, crt := range certs {
		out = append(out, caCert{Subject: crt.Subject.String(), Fingerprint: pki.Fingerprint(crt), NotAfter: crt.NotAfter})
	}
	return out
}

func (c *Console) bundle(w http.ResponseWriter, r *http.Request, s *session) {
	info, err := do[admin.CAInfo](r.Context(), c, s, admin.CmdCAShow, admin.CAArgs{})
	if err != nil {
		http.Error(w, errorText(err), http.StatusInternalServerError)
		return
	}
	w.Header().Set("Content-Type", "application/x-pem-file")
	w.Header().Set("Content-Disposition", `attachment; filename="hostcert-ca.pem"`)
	_, _ = w.Write([]byte(info.BundlePEM))
}

func (c *Console) crlDER(w http.ResponseWriter, _ *http.Request, _ *session) {
	l := c.cfg.CRLs.Current()
	if l == nil {
		http.Error(w, "no CRL yet", http.StatusServiceUnavailable)
		return
	}
	w.Header().Set("Content-Type", "application/pkix-crl")
	w.Header().Set("Content-Disposition", `attachment; filename="hostcert.crl"`)
	_, _ = w.Write(l.DER)
}

// humanDuration says a duration in the largest sensible unit ("3 days",
// "5 hours", "12 minutes"); negative: "… ago".
func humanDuration(d time.Duration) string {
	suffix := ""
	if d < 0 {
		d, suffix = -d, " ago"
	}
	var s string
	switch {
	case d >= 48*time.Hour:
		s = fmt.Sprintf("%d days", int(d/(24*time.Hour)))
	case d >= 2*time.Hour:
		s = fmt.Sprintf("%d hours", int(d/time.Hour))
	case d >= 2*time.Minute:
		s = fmt.Sprintf("%d minutes", int(d/time.Minute))
	default:
		s = fmt.Sprintf("%d seconds", int(d/time.Second))
	}
	return s + suffix
}
