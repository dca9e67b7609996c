package admin

import (
	"encoding/json"
	"fmt"
	"io"
	"sort"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/hostcert/hostcert/common/protocol"
	"github.com/hostcert/hostcert/primary/internal/policy"
)

// The text renderings of the operations' results, for a terminal (the
// command line's output without --json). Tables are aligned per page.

const timeFmt = "2006-01-02 15:04Z07:00"

func fmtTime(t time.Time) string { return t.Local().Format(timeFmt) }

func fmtTimePtr(t *time.Time) string {
	if t == nil {
		return "-"
	}
	return fmtTime(*t)
}

func tabw(w io.Writer) *tabwriter.Writer { return tabwriter.NewWriter(w, 0, 4, 2, ' ', 0) }

func textCA(o Output, a *CAArgs, info CAInfo) error {
	if a.PEM {
		_, err := io.WriteString(o.Out, info.BundlePEM)
		return err
	}
	w := tabw(o.Out)
	fmt.Fprintf(w, "fingerprint:\t%s\n", info.Fingerprint)
	fmt.Fprintf(w, "subject:\t%s\n", info.Subject)
	fmt.Fprintf(w, "valid:\t%s to %s\n", fmtTime(info.NotBefore), fmtTime(info.NotAfter))
	fmt.Fprintf(w, "certificates in bundle:\t%d\n", info.Certificates)
	fmt.Fprintf(w, "primary host ID:\t%s\n", info.PrimaryHostID)
	if info.CRLNumber != "" {
		fmt.Fprintf(w, "crl:\tnumber %s, %d entries, next update %s\n", info.CRLNumber, info.CRLEntries, fmtTime(info.CRLNextUpdate))
	}
	if err := w.Flush(); err != nil {
		return err
	}
	return printCAs(o.Out, info.CAs)
}

func textLevel[A any](o Output, _ *A, l LevelInfo) error {
	_, err := fmt.Fprintln(o.Out, l.Level)
	return err
}

func textAdded(o Output, _ *NamesArgs, r AddResult) error {
	_, err := fmt.Fprintf(o.Out, "added %d of %d names (the others were already known)\n", r.Added, r.Total)
	return err
}

func textRemoved(o Output, a *HostArgs, _ CountResult) error {
	_, err := fmt.Fprintf(o.Out, "removed %s from the registry\n", a.Host)
	return err
}

func textHosts(o Output, _ *HostListArgs, hosts []Host) error {
	w := tabw(o.Out)
	if o.First {
		fmt.Fprintln(w, "NAME\tHOST ID\tKNOWN\tSEEN\tREVOKED\tREISSUE UNTIL")
	}
	for _, h := range hosts {
		fmt.Fprintf(w, "%s\t%s\t%s\t%s\t%s\t%s\n", h.Name, orDash(h.ID), yesNo(h.Known), fmtTimePtr(h.SeenAt), fmtTimePtr(h.RevokedAt), fmtTimePtr(h.ReissueUntil))
	}
	return w.Flush()
}

func textHostDetail(o Output, _ *HostArgs, d HostDetail) error {
	w := tabw(o.Out)
	fmt.Fprintf(w, "name:\t%s\n", d.Name)
	fmt.Fprintf(w, "host ID:\t%s\n", orDash(d.ID))
	fmt.Fprintf(w, "known:\t%s\n", yesNo(d.Known))
	fmt.Fprintf(w, "created:\t%s\n", fmtTimePtr(d.CreatedAt))
	fmt.Fprintf(w, "last seen:\t%s\n", fmtTimePtr(d.SeenAt))
	fmt.Fprintf(w, "revoked:\t%s\n", fmtTimePtr(d.RevokedAt))
	fmt.Fprintf(w, "auto-reissue until:\t%s\n", fmtTimePtr(d.ReissueUntil))
	if err := w.Flush(); err != nil {
		return err
	}
	fmt.Fprintln(o.Out)
	return printCerts(o.Out, d.Certificates, true)
}

func textWindow(o Output, _ *WindowArgs, r WindowResult) error {
	_, err := fmt.Fprintf(o.Out, "%s (%s) may reissue without a token until %s\n", r.Name, r.HostID, fmtTime(r.Until))
	return err
}

// textToken prints the value alone on standard output and the rest on
// standard error, so that T=$(hostcert-primary token create ...) works.
func textToken(o Output, _ *TokenArgs, t CreatedToken) error {
	fmt.Fprintln(o.Out, t.Value)
	host := ""
	if t.HostID != "" {
		host = " for host " + t.HostID
	}
	_, err := fmt.Fprintf(o.Err, "token %q created: %s%s, %d use(s), expires %s%s. The value above is shown only once.\n",
		t.Name, t.Kind, host, t.MaxUses, fmtTime(t.ExpiresAt), bindingText(t.Token, ", bound to "))
	return err
}

func textTokens(o Output, _ *NoArgs, ts []Token) error {
	w := tabw(o.Out)
	fmt.Fprintln(w, "NAME\tKIND\tHOST ID\tUSES\tSTATE\tEXPIRES\tBOUND TO\tREASON")
	for _, t := range ts {
		fmt.Fprintf(w, "%s\t%s\t%s\t%d/%d\t%s\t%s\t%s\t%s\n", t.Name, t.Kind, orDash(t.HostID), t.Uses, t.MaxUses, t.State, fmtTime(t.ExpiresAt), orDash(bindingText(t, "")), t.Reason)
	}
	return w.Flush()
}

func textDeleted(o Output, a *NameArgs, _ CountResult) error {
	_, err := fmt.Fprintf(o.Out, "deleted token %s\n", a.Name)
	return err
}

func textCleanup(o Output, _ *NoArgs, r CountResult) error {
	_, err := fmt.Fprintf(o.Out, "removed %d dead token(s)\n", r.Count)
	return err
}

func textCerts(o Output, _ *CertArgs, certs []Cert) error { return printCerts(o.Out, certs, o.First) }

func printCerts(out io.Writer, certs []Cert, header bool) error {
	w := tabw(out)
	if header {
		fmt.Fprintln(w, "SERIAL\tHOST ID\tNAMES\tKIND\tTOKEN\tKEY\tROUTE\tNOT AFTER\tREVOKED")
	}
	for _, c := range certs {
		rev := "-"
		if c.RevokedAt != nil {
			rev = fmtTime(*c.RevokedAt) + " (" + c.RevokeReason + ")"
		}
		fmt.Fprintf(w, "%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\n", c.Serial, c.HostID, strings.Join(c.Names, ","), c.Kind, orDash(c.TokenName),
			orDash(c.KeyAlg), orDash(c.Route), fmtTime(c.NotAfter), rev)
	}
	return w.Flush()
}

func textRevoked(o Output, _ *RevokeArgs, r CountResult) error {
	_, err := fmt.Fprintf(o.Out, "revoked %d certificate(s)\n", r.Count)
	return err
}

func textExplain(o Output, _ *ExplainArgs, d protocol.Decision) error {
	_, err := io.WriteString(o.Out, policy.Explain(d))
	return err
}

func textAudit(o Output, _ *AuditArgs, rows []AuditEntry) error {
	w := tabw(o.Out)
	if o.First {
		fmt.Fprintln(w, "ID\tTIME\tACTOR\tSOURCE\tACTION\tOUTCOME\tCODE\tNAME\tHOST ID\tTOKEN\tNODE\tDETAIL")
	}
	for _, r := range rows {
		fmt.Fprintf(w, "%d\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\n", r.ID, r.At.Local().Format(time.RFC3339), r.Actor, orDash(r.Source),
			r.Action, r.Outcome, orDash(r.Code), orDash(r.Name), orDash(r.HostID), orDash(r.TokenName), orDash(r.Node), detail(r.Detail))
	}
	return w.Flush()
}

func textInventory(o Output, _ *InventoryArgs, inv InventoryInfo) error {
	w := tabw(o.Out)
	fmt.Fprintf(w, "level:\t%s\n", inv.Level)
	fmt.Fprintf(w, "hosts with a host ID:\t%d\n", inv.Hosts.WithID)
	fmt.Fprintf(w, "  revoked:\t%d\n", inv.Hosts.Revoked)
	fmt.Fprintf(w, "  stale (not seen for %s):\t%d\n", inv.Stale, inv.Hosts.Stale)
	fmt.Fprintf(w, "registry names without a host ID:\t%d\n", inv.Hosts.RegistryOnly)
	fmt.Fprintf(w, "current certificates valid:\t%d\n", inv.Certificates.Valid)
	fmt.Fprintf(w, "  expiring within %s:\t%d\n", inv.Expiring, inv.Certificates.Expiring)
	fmt.Fprintf(w, "current certificates expired:\t%d\n", inv.Certificates.Expired)
	fmt.Fprintf(w, "current certificates revoked:\t%d\n", inv.Certificates.Revoked)
	for _, k := range sortedKeys(inv.ByRoute) {
		fmt.Fprintf(w, "valid by route %s:\t%d\n", k, inv.ByRoute[k])
	}
	for _, k := range sortedKeys(inv.ByKeyAlg) {
		fmt.Fprintf(w, "valid by key %s:\t%d\n", k, inv.ByKeyAlg[k])
	}
	return w.Flush()
}

func sortedKeys(m map[string]int) []string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	return keys
}

// detail renders audit facts as key=value, sorted, reason last.
func detail(m map[string]any) string {
	keys := make([]string, 0, len(m))
	for k := range m {
		if k != "reason" {
			keys = append(keys, k)
		}
	}
	sort.Strings(keys)
	parts := make([]string, 0, len(m))
	for _, k := range keys {
		parts = append(parts, fmt.Sprintf("%s=%v", k, m[k]))
	}
	if r, ok := m["reason"]; ok {
		parts = append(parts, fmt.Sprintf("reason=%q", r))
	}
	return strings.Join(parts, " ")
}

func orDash(s string) string {
	if s == "" {
		return "-"
	}
	return s
}

func yesNo(b bool) string {
	if b {
		return "yes"
	}
	return "no"
}

// bindingText renders a token's bindings on one line ("" when unbound):
// "names *.dmz.example.com; nets 192.0.2.0/24", after prefix.
func bindingText(t Token, prefix string) string {
	var parts []string
	if len(t.BindNames) > 0 {
		parts = append(parts, "names "+strings.Join(t.BindNames, ","))
	}
	if len(t.BindNets) > 0 {
		parts = append(parts, "nets "+strings.Join(t.BindNets, ","))
	}
	if len(parts) == 0 {
		return ""
	}
	return prefix + strings.Join(parts, "; ")
}

// JSON renders v as indented JSON (the command line's --json).
func JSON(w io.Writer, v any) error {
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	return enc.Encode(v)
}
