package cli

import (
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"sort"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/spf13/cobra"

	"github.com/hostcert/hostcert/common/protocol"
	"github.com/hostcert/hostcert/primary/internal/admin"
	"github.com/hostcert/hostcert/primary/internal/policy"
	"github.com/hostcert/hostcert/primary/internal/tokens"
)

const timeFmt = "2006-01-02 15:04Z07:00"

func fmtTime(t time.Time) string { return t.Local().Format(timeFmt) }

func fmtTimePtr(t *time.Time) string {
	if t == nil {
		return "-"
	}
	return fmtTime(*t)
}

func table(w io.Writer) *tabwriter.Writer { return tabwriter.NewWriter(w, 0, 4, 2, ' ', 0) }

func caCmd() *cobra.Command {
	cmd := &cobra.Command{Use: "ca", Short: "show the CA"}
	show := &cobra.Command{
		Use:   "show",
		Short: "show the CA's fingerprint, validity and current CRL",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			var info admin.CAInfo
			if err := call(cmd, admin.CmdCAShow, nil, &info); err != nil {
				return err
			}
			if wantJSON(cmd) {
				return printJSON(cmd, info)
			}
			if p, _ := cmd.Flags().GetBool("pem"); p {
				_, err := io.WriteString(cmd.OutOrStdout(), info.BundlePEM)
				return err
			}
			w := table(cmd.OutOrStdout())
			fmt.Fprintf(w, "fingerprint:\t%s\n", info.Fingerprint)
			fmt.Fprintf(w, "subject:\t%s\n", info.Subject)
			fmt.Fprintf(w, "valid:\t%s to %s\n", fmtTime(info.NotBefore), fmtTime(info.NotAfter))
			fmt.Fprintf(w, "certificates in bundle:\t%d\n", info.Certificates)
			fmt.Fprintf(w, "primary host ID:\t%s\n", info.PrimaryHostID)
			if info.CRLNumber != "" {
				fmt.Fprintf(w, "crl:\tnumber %s, %d entries, next update %s\n", info.CRLNumber, info.CRLEntries, fmtTime(info.CRLNextUpdate))
			}
			return w.Flush()
		},
	}
	show.Flags().Bool("pem", false, "print the CA bundle as PEM")
	addJSON(show)
	cmd.AddCommand(show)
	return cmd
}

func levelCmd() *cobra.Command {
	cmd := &cobra.Command{
		Use:   "level",
		Short: "get or set the deployment security level (very-high, high, medium)",
	}
	print := func(cmd *cobra.Command, l admin.LevelInfo) error {
		if wantJSON(cmd) {
			return printJSON(cmd, l)
		}
		_, err := fmt.Fprintln(cmd.OutOrStdout(), l.Level)
		return err
	}
	get := &cobra.Command{
		Use: "get", Short: "print the current level", Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			var l admin.LevelInfo
			if err := call(cmd, admin.CmdLevelGet, nil, &l); err != nil {
				return err
			}
			return print(cmd, l)
		},
	}
	set := &cobra.Command{
		Use: "set very-high|high|medium", Short: "change the level at run time", Args: cobra.ExactArgs(1),
		ValidArgs: []string{string(protocol.LevelVeryHigh), string(protocol.LevelHigh), string(protocol.LevelMedium)},
		RunE: func(cmd *cobra.Command, args []string) error {
			l, err := protocol.ParseLevel(args[0])
			if err != nil {
				return err
			}
			var res admin.LevelInfo
			if err := call(cmd, admin.CmdLevelSet, admin.LevelArgs{Level: l}, &res); err != nil {
				return err
			}
			return print(cmd, res)
		},
	}
	addJSON(get)
	addJSON(set)
	cmd.AddCommand(get, set)
	return cmd
}

func hostCmd() *cobra.Command {
	cmd := &cobra.Command{Use: "host", Short: "the host registry (known names) and host IDs"}
	printAdded := func(cmd *cobra.Command, r admin.AddResult) error {
		if wantJSON(cmd) {
			return printJSON(cmd, r)
		}
		_, err := fmt.Fprintf(cmd.OutOrStdout(), "added %d of %d names (the others were already known)\n", r.Added, r.Total)
		return err
	}
	add := &cobra.Command{
		Use: "add NAME...", Short: "add names to the registry of known hosts", Args: cobra.MinimumNArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			var r admin.AddResult
			if err := call(cmd, admin.CmdHostAdd, admin.NamesArgs{Names: args}, &r); err != nil {
				return err
			}
			return printAdded(cmd, r)
		},
	}
	imp := &cobra.Command{
		Use:   "import FILE",
		Short: "add every name of a file (one per line, or separated by spaces or commas; # comments; - for stdin)",
		Args:  cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			r, err := importHosts(cmd, args[0])
			if err != nil {
				return err
			}
			return printAdded(cmd, r)
		},
	}
	remove := &cobra.Command{
		Use: "remove NAME", Short: "remove a name from the registry (its host ID and certificates stay)", Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			if err := call(cmd, admin.CmdHostRemove, admin.HostArgs{Host: args[0]}, nil); err != nil {
				return err
			}
			_, err := fmt.Fprintf(cmd.OutOrStdout(), "removed %s from the registry\n", args[0])
			return err
		},
	}
	list := &cobra.Command{
		Use: "list", Short: "list known names and hosts with host IDs", Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			var hosts []admin.Host
			if err := call(cmd, admin.CmdHostList, nil, &hosts); err != nil {
				return err
			}
			if wantJSON(cmd) {
				return printJSON(cmd, hosts)
			}
			w := table(cmd.OutOrStdout())
			fmt.Fprintln(w, "NAME\tHOST ID\tKNOWN\tREVOKED\tREISSUE UNTIL")
			for _, h := range hosts {
				fmt.Fprintf(w, "%s\t%s\t%s\t%s\t%s\n", h.Name, orDash(h.ID), yesNo(h.Known), fmtTimePtr(h.RevokedAt), fmtTimePtr(h.ReissueUntil))
			}
			return w.Flush()
		},
	}
	show := &cobra.Command{
		Use: "show NAME|HOSTID", Short: "show one host and its certificates", Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			var d admin.HostDetail
			if err := call(cmd, admin.CmdHostShow, admin.HostArgs{Host: args[0]}, &d); err != nil {
				return err
			}
			if wantJSON(cmd) {
				return printJSON(cmd, d)
			}
			w := table(cmd.OutOrStdout())
			fmt.Fprintf(w, "name:\t%s\n", d.Name)
			fmt.Fprintf(w, "host ID:\t%s\n", orDash(d.ID))
			fmt.Fprintf(w, "known:\t%s\n", yesNo(d.Known))
			fmt.Fprintf(w, "created:\t%s\n", fmtTimePtr(d.CreatedAt))
			fmt.Fprintf(w, "revoked:\t%s\n", fmtTimePtr(d.RevokedAt))
			fmt.Fprintf(w, "auto-reissue until:\t%s\n", fmtTimePtr(d.ReissueUntil))
			if err := w.Flush(); err != nil {
				return err
			}
			fmt.Fprintln(cmd.OutOrStdout())
			return printCerts(cmd.OutOrStdout(), d.Certificates)
		},
	}
	allow := &cobra.Command{
		Use:   "allow-reissue NAME|HOSTID [--for 48h]",
		Short: "open an auto-reissue window: the host may reissue without a token until it closes",
		Args:  cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			d, _ := cmd.Flags().GetString("for")
			var r admin.WindowResult
			if err := call(cmd, admin.CmdHostReissue, admin.WindowArgs{Host: args[0], For: d}, &r); err != nil {
				return err
			}
			if wantJSON(cmd) {
				return printJSON(cmd, r)
			}
			_, err := fmt.Fprintf(cmd.OutOrStdout(), "%s (%s) may reissue without a token until %s\n", r.Name, r.HostID, fmtTime(r.Until))
			return err
		},
	}
	allow.Flags().String("for", policy.DefaultWindow.String(), "how long the window stays open (Go duration or days, e.g. 48h, 7d; at most 30d)")
	for _, c := range []*cobra.Command{add, imp, list, show, allow} {
		addJSON(c)
	}
	cmd.AddCommand(add, imp, remove, list, show, allow)
	return cmd
}

func tokenCmd() *cobra.Command {
	cmd := &cobra.Command{Use: "token", Short: "enrollment tokens (values are shown once, stored only as hashes)"}
	var args admin.TokenArgs
	create := &cobra.Command{
		Use:   "create --name N [--max-uses 1] [--valid-for 24h] [--reason R] [--reissue-host NAME|HOSTID] [--bind-name P]... [--bind-net CIDR]...",
		Short: "create a token and print its value (the only time it is shown)",
		Long: `create makes a token and prints its value on standard output, alone on one
line (so T=$(hostcert-primary token create --name n) works); the value is never
shown again. With --reissue-host it makes a single-use reissue token bound to
that host.

--bind-name (repeatable) limits the token to these host names or patterns: a
name, or *. and a name of at least two labels (*.dmz.example.com matches
a.dmz.example.com, not dmz.example.com nor a.b.dmz.example.com). --bind-net
(repeatable) limits it to requests from these networks (192.0.2.0/24,
2001:db8::/48 or one address): the TCP peer, or the client address a tunnel
relays. A bound token refuses every other request with token_invalid.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if args.Name == "" {
				return errors.New("token create: --name is required")
			}
			if err := tokens.CheckMaxUses(args.MaxUses); err != nil {
				return fmt.Errorf("token create: --max-uses: %w", err)
			}
			if _, err := tokens.ParseValidity(args.ValidFor); err != nil {
				return fmt.Errorf("token create: --valid-for: %w", err)
			}
			var t admin.CreatedToken
			if err := call(cmd, admin.CmdTokenCreate, args, &t); err != nil {
				return err
			}
			if wantJSON(cmd) {
				return printJSON(cmd, t)
			}
			fmt.Fprintln(cmd.OutOrStdout(), t.Value)
			host := ""
			if t.HostID != "" {
				host = " for host " + t.HostID
			}
			fmt.Fprintf(cmd.ErrOrStderr(), "token %q created: %s%s, %d use(s), expires %s%s. The value above is shown only once.\n",
				t.Name, t.Kind, host, t.MaxUses, fmtTime(t.ExpiresAt), bindingText(t.Token, ", bound to "))
			return nil
		},
	}
	f := create.Flags()
	f.StringVar(&args.Name, "name", "", "unique token name (A-Z a-z 0-9 . _ -)")
	f.IntVar(&args.MaxUses, "max-uses", tokens.DefaultMaxUses, "how many certificates the token may authorise (reissue tokens: 1)")
	f.StringVar(&args.ValidFor, "valid-for", tokens.DefaultValidity.String(), "validity (Go duration or days, e.g. 24h, 30d; at most 999d)")
	f.StringVar(&args.Reason, "reason", "", "why the token exists (goes to the audit log)")
	f.StringVar(&args.ReissueHost, "reissue-host", "", "make a single-use reissue token for this host (NAME or HOSTID)")
	f.StringArrayVar(&args.BindNames, "bind-name", nil, "only for this host name or pattern (*.dmz.example.com); repeatable")
	f.StringArrayVar(&args.BindNets, "bind-net", nil, "only for requests from this network (CIDR or address); repeatable")

	list := &cobra.Command{
		Use: "list", Short: "list tokens (live, expired and used up)", Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			var ts []admin.Token
			if err := call(cmd, admin.CmdTokenList, nil, &ts); err != nil {
				return err
			}
			if wantJSON(cmd) {
				return printJSON(cmd, ts)
			}
			w := table(cmd.OutOrStdout())
			fmt.Fprintln(w, "NAME\tKIND\tHOST ID\tUSES\tSTATE\tEXPIRES\tBOUND TO\tREASON")
			for _, t := range ts {
				fmt.Fprintf(w, "%s\t%s\t%s\t%d/%d\t%s\t%s\t%s\t%s\n", t.Name, t.Kind, orDash(t.HostID), t.Uses, t.MaxUses, t.State, fmtTime(t.ExpiresAt), orDash(bindingText(t, "")), t.Reason)
			}
			return w.Flush()
		},
	}
	del := &cobra.Command{
		Use: "delete NAME", Short: "delete a token (certificates it issued stay valid)", Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, a []string) error {
			if err := call(cmd, admin.CmdTokenDelete, admin.NameArgs{Name: a[0]}, nil); err != nil {
				return err
			}
			_, err := fmt.Fprintf(cmd.OutOrStdout(), "deleted token %s\n", a[0])
			return err
		},
	}
	cleanup := &cobra.Command{
		Use: "cleanup", Short: "delete every expired or used-up token", Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			var r admin.CountResult
			if err := call(cmd, admin.CmdTokenCleanup, nil, &r); err != nil {
				return err
			}
			if wantJSON(cmd) {
				return printJSON(cmd, r)
			}
			_, err := fmt.Fprintf(cmd.OutOrStdout(), "removed %d dead token(s)\n", r.Count)
			return err
		},
	}
	for _, c := range []*cobra.Command{create, list, cleanup} {
		addJSON(c)
	}
	cmd.AddCommand(create, list, del, cleanup)
	return cmd
}

func certCmd() *cobra.Command {
	cmd := &cobra.Command{Use: "cert", Short: "issued certificates and revocation"}
	var la admin.CertArgs
	list := &cobra.Command{
		Use: "list [--host NAME|HOSTID] [--token N]", Short: "list issued certificates", Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			var certs []admin.Cert
			if err := call(cmd, admin.CmdCertList, la, &certs); err != nil {
				return err
			}
			if wantJSON(cmd) {
				return printJSON(cmd, certs)
			}
			return printCerts(cmd.OutOrStdout(), certs)
		},
	}
	list.Flags().StringVar(&la.Host, "host", "", "only this host (NAME or HOSTID)")
	list.Flags().StringVar(&la.Token, "token", "", "only certificates this token authorised")
	addJSON(list)

	var ra admin.RevokeArgs
	revoke := &cobra.Command{
		Use:   "revoke NAME|HOSTID --reason R | revoke --token N --reason R",
		Short: "revoke a host (all its certificates) or everything a token issued",
		Long: `revoke a host by name or host ID — the host and every certificate of it — or,
with --token, every certificate that token authorised. The reason is an RFC 5280
reason: unspecified, keyCompromise, cACompromise, affiliationChanged, superseded,
cessationOfOperation, certificateHold, removeFromCRL, privilegeWithdrawn,
aACompromise (name in any case, with - or _, or the number). The CRL is
regenerated within seconds.`,
		Args: cobra.MaximumNArgs(1),
		RunE: func(cmd *cobra.Command, a []string) error {
			args := ra
			if len(a) == 1 {
				args.Host = a[0]
			}
			var r admin.CountResult
			if err := call(cmd, admin.CmdCertRevoke, args, &r); err != nil {
				return err
			}
			if wantJSON(cmd) {
				return printJSON(cmd, r)
			}
			_, err := fmt.Fprintf(cmd.OutOrStdout(), "revoked %d certificate(s)\n", r.Count)
			return err
		},
	}
	revoke.Flags().StringVar(&ra.Token, "token", "", "revoke every certificate this token authorised")
	revoke.Flags().StringVar(&ra.Reason, "reason", "", "RFC 5280 revocation reason (required)")
	addJSON(revoke)
	cmd.AddCommand(list, revoke)
	return cmd
}

func printCerts(out io.Writer, certs []admin.Cert) error {
	w := table(out)
	fmt.Fprintln(w, "SERIAL\tHOST ID\tNAMES\tKIND\tTOKEN\tNOT AFTER\tREVOKED")
	for _, c := range certs {
		rev := "-"
		if c.RevokedAt != nil {
			rev = fmtTime(*c.RevokedAt) + " (" + c.RevokeReason + ")"
		}
		fmt.Fprintf(w, "%s\t%s\t%s\t%s\t%s\t%s\t%s\n", c.Serial, c.HostID, strings.Join(c.Names, ","), c.Kind, orDash(c.TokenName), fmtTime(c.NotAfter), rev)
	}
	return w.Flush()
}

func explainCmd() *cobra.Command {
	var args admin.ExplainArgs
	cmd := &cobra.Command{
		Use:   "explain NAME --from ADDR [--nat]",
		Short: "dry run: would this host need a token? (nothing is issued)",
		Long: `explain runs the deployment decision for NAME as if it asked from ADDR without
a token — the same facts (level, registry, host ID, DNS verification, NAT, an
auto-reissue window) and the same decision function as a real request — and
prints the decision and its reason. Nothing is issued or counted.`,
		Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, a []string) error {
			args.Name = a[0]
			if args.From == "" {
				return errors.New("explain: --from ADDR is required")
			}
			var d protocol.Decision
			if err := call(cmd, admin.CmdExplain, args, &d); err != nil {
				return err
			}
			if wantJSON(cmd) {
				return printJSON(cmd, d)
			}
			_, err := io.WriteString(cmd.OutOrStdout(), policy.Explain(d))
			return err
		},
	}
	cmd.Flags().StringVar(&args.From, "from", "", "the address the request would come from")
	cmd.Flags().BoolVar(&args.NAT, "nat", false, "the host declares it is behind NAT")
	addJSON(cmd)
	return cmd
}

func auditCmd() *cobra.Command {
	var since string
	var after int64
	var limit int
	cmd := &cobra.Command{
		Use:   "audit [--since T] [--after ID] [--limit N]",
		Short: "show the audit log (decisions and admin actions)",
		Long: `audit prints the audit log from --since on, oldest first, each row with its
ID. T is a time (RFC 3339, e.g. 2026-01-02T15:04:05Z, or a date 2026-01-02) or
a duration back from now (e.g. 90m, 24h, 7d). Default: the last 24 hours.
--after ID starts after that row (to continue where an earlier listing
stopped); --limit N stops after N rows (0, the default: all of them). The rows
come from the server in pages, so a log of any size can be listed.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			from, err := parseSince(since, time.Now())
			if err != nil {
				return err
			}
			if limit < 0 {
				return fmt.Errorf("--limit %d: want 0 (all rows) or a positive number", limit)
			}
			if after < 0 {
				return fmt.Errorf("--after %d: want a row ID (0 or more)", after)
			}
			out := cmd.OutOrStdout()
			asJSON := wantJSON(cmd)
			n := 0
			if asJSON {
				fmt.Fprint(out, "[")
			}
			for limit == 0 || n < limit {
				page := admin.MaxAuditRows
				if limit > 0 {
					page = min(page, limit-n)
				}
				var rows []admin.AuditEntry
				if err := call(cmd, admin.CmdAudit, admin.AuditArgs{Since: from, After: after, Limit: page}, &rows); err != nil {
					return err
				}
				if len(rows) == 0 {
					break
				}
				if err := printAudit(out, rows, asJSON, n == 0); err != nil {
					return err
				}
				n += len(rows)
				after = rows[len(rows)-1].ID
			}
			if !asJSON && n == 0 {
				return printAudit(out, nil, false, true) // the header alone
			}
			if asJSON {
				if n > 0 {
					fmt.Fprint(out, "\n")
				}
				_, err := fmt.Fprintln(out, "]")
				return err
			}
			return nil
		},
	}
	cmd.Flags().StringVar(&since, "since", "24h", "from this time (RFC 3339 or date) or this long ago (24h, 7d)")
	cmd.Flags().Int64Var(&after, "after", 0, "start after the row with this ID")
	cmd.Flags().IntVar(&limit, "limit", 0, "stop after this many rows (0: all)")
	addJSON(cmd)
	return cmd
}

// printAudit prints one page of audit rows: table lines aligned within the
// page, or the elements of a JSON array (first: no leading comma).
func printAudit(out io.Writer, rows []admin.AuditEntry, asJSON, first bool) error {
	if asJSON {
		for i, r := range rows {
			b, err := json.MarshalIndent(r, "  ", "  ")
			if err != nil {
				return err
			}
			sep := ",\n  "
			if first && i == 0 {
				sep = "\n  "
			}
			if _, err := fmt.Fprint(out, sep, string(b)); err != nil {
				return err
			}
		}
		return nil
	}
	w := table(out)
	if first {
		fmt.Fprintln(w, "ID\tTIME\tACTOR\tSOURCE\tACTION\tOUTCOME\tCODE\tNAME\tHOST ID\tTOKEN\tDETAIL")
	}
	for _, r := range rows {
		fmt.Fprintf(w, "%d\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\n", r.ID, r.At.Local().Format(time.RFC3339), r.Actor, orDash(r.Source),
			r.Action, r.Outcome, orDash(r.Code), orDash(r.Name), orDash(r.HostID), orDash(r.TokenName), detail(r.Detail))
	}
	return w.Flush()
}

// parseSince reads --since: an RFC 3339 time, a date, or a duration ago.
func parseSince(s string, now time.Time) (time.Time, error) {
	s = strings.TrimSpace(s)
	if s == "" {
		return time.Time{}, nil
	}
	if t, err := time.Parse(time.RFC3339, s); err == nil {
		return t, nil
	}
	if t, err := time.ParseInLocation(time.DateOnly, s, time.Local); err == nil {
		return t, nil
	}
	d, err := tokens.ParseDuration(s)
	if err != nil {
		return time.Time{}, fmt.Errorf("--since %q: want an RFC 3339 time, a date (2006-01-02) or a duration ago (24h, 7d)", s)
	}
	return now.Add(-d), nil
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
func bindingText(t admin.Token, prefix string) string {
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
