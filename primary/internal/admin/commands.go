package admin

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/netip"
	"strconv"
	"time"

	"github.com/google/uuid"

	"github.com/hostcert/hostcert/common/hostname"
	"github.com/hostcert/hostcert/common/pki"
	"github.com/hostcert/hostcert/common/protocol"
	"github.com/hostcert/hostcert/primary/internal/ca"
	"github.com/hostcert/hostcert/primary/internal/policy"
	"github.com/hostcert/hostcert/primary/internal/store"
	"github.com/hostcert/hostcert/primary/internal/tokens"
)

// MaxAuditRows bounds one page of audit rows, MaxPageRows one page of
// hosts or certificates; pageBytes bounds a page's encoded size, far below
// MaxMessage (a row can be long): a page stops after the row that passes it.
const (
	MaxAuditRows = 1000
	MaxPageRows  = 1000
	pageBytes    = MaxMessage / 4
)

// Groups are the first words of the operations' names, with their help.
var Groups = map[string]string{
	"ca":      "show, rotate and retire the CAs",
	"level":   "get or set the deployment security level (very-high, high, medium)",
	"host":    "the host registry (known names) and host IDs",
	"token":   "enrollment tokens (values are shown once, stored only as hashes)",
	"cert":    "issued certificates and revocation",
	"console": "the web console",
	"admin":   "administrators' client certificates: the web console's login by certificate",
	"mapping": "host name mappings: the names each host ID carries, and the names hosts asked for",
}

// table is the command table: every admin operation, declared once.
var table = []*Op{
	define(Op{Name: CmdCAShow, Short: "show the root's fingerprint, validity and current CRL, and every CA with its state"},
		(*Server).caShow, textCA),
	define(Op{Name: CmdCARotate, Use: "[--root] [--root-key FILE] [--root-key-out FILE]",
		Short: "make a new issuing CA under the root (or, with --root, a new root cross-signed by the current one)",
		Long: `rotate makes a new issuing CA under the current root; it signs every
certificate from now on, and certificates of the previous one stay valid
until they expire (both are listed by "ca show", and both CRLs are served).

With --root it makes a new root, cross-signed by the current root, and a new
issuing CA under it. Agents learn the new root over their verified
connection to the primary because the root they trust vouches for it; no
host needs an operator. Retire the old root later with "ca retire-root".

The current root's key is needed: when it is offline, give it with
--root-key FILE (an absolute path the server reads). --root-key-out FILE
writes the new root's key there instead of the data directory.`,
		Mutates: true, Audited: true, Audits: "whether the root rotated, the new CA's name and fingerprint"},
		(*Server).caRotate, textRotated),
	define(Op{Name: CmdCARevokeIssuing, Use: "ID|FINGERPRINT --reason R [--root-key FILE]",
		Short: "revoke an issuing CA that no longer signs (its key leaked): its root's CRL lists it",
		Long: `revoke-issuing lists an issuing CA on the CRL of the root that signed it, which
needs that root's key (--root-key FILE, an absolute path the server reads and
never stores, when the root is offline). The current issuing CA is refused:
run "ca rotate" first, so that a new one signs, then revoke the old one.

Every host certificate it signed is revoked with it: agents that fetch the
root's CRL report their certificate as bad (self-check exit 2), and the
primary refuses to renew it (host_revoked). Those hosts need a reissue:
"host allow-reissue" (then get-cert on the host) or a reissue token. The
answer counts them and names some.`,
		Mutates: true, Audited: true, Audits: "the issuing CA's name and fingerprint, the reason, how many hosts hold a certificate from it"},
		(*Server).caRevokeIssuing, textRevokedIssuing),
	define(Op{Name: CmdCASignRootCRL, Use: "[--root-key FILE]",
		Short: "sign a root's CRL again (an offline root's, before it expires)",
		Long: `sign-root-crl signs the CRL of a root again, valid 365 days, listing the issuing
CAs it listed. With the root's key in the data directory the primary does
this on its own; a root kept offline needs it once a year: give its key with
--root-key FILE (an absolute path the server reads and never stores), which
also names the root (an older, still trusted root's key signs that root's
CRL). Agents that hold a certificate from an issuing CA can tell nothing
(self-check exit 1) once the root's CRL is past its next update; the metric
hostcert_primary_root_crl_next_update_timestamp_seconds and the alert
HostcertRootCRLExpiringSoon warn 30 days ahead.`,
		Mutates: true, Audited: true, Audits: "the root's name and fingerprint, the CRL's next update"},
		(*Server).caSignRootCRL, textRootCRL),
	define(Op{Name: CmdCARetireRoot, Use: "FINGERPRINT",
		Short: "stop trusting and serving an old root (refused while hosts still depend on it)",
		Long: `retire-root removes an older root from the bundle the primary serves, with
its issuing CAs and its key. It refuses while any host's current, valid
certificate comes from that root: such a host may trust only that root.
Those hosts move to the new root at their next renewal.`,
		Mutates: true, Audited: true, Audits: "the retired root's fingerprint"},
		(*Server).caRetireRoot, textRetired),
	define(Op{Name: CmdLevelGet, Short: "print the current level"},
		(*Server).levelGet, textLevel[NoArgs]),
	define(Op{Name: CmdLevelSet, Short: "change the level at run time", Mutates: true, Audited: true,
		Audits: "the old and the new level"},
		(*Server).levelSet, textLevel[LevelArgs]),
	define(Op{Name: CmdHostAdd, Use: "NAME...", Short: "add names to the registry of known hosts", Mutates: true, Audited: true,
		Audits: "how many names, how many were new, and the names when at most 20"},
		(*Server).hostAdd, textAdded),
	define(Op{Name: CmdHostRemove, Use: "NAME", Short: "remove a name from the registry (its host ID and certificates stay)", Mutates: true, Audited: true,
		Audits: "the name"},
		(*Server).hostRemove, textRemoved),
	paged(define(Op{Name: CmdHostList, Use: "[--stale 7d] [--after NAME] [--limit N]", Short: "list known names and hosts with host IDs (--stale: hosts gone quiet)",
		Long: `list prints the registry's names and the hosts with a host ID, by name,
with each host's last contact (SEEN): its last issuance or renewal, or the last
request it made with one of its certificates (e.g. its CRL refresh), recorded
at most hourly.

--stale 7d lists only hosts with a host ID, not revoked, whose last contact is
older than that: hosts that have neither renewed nor talked to the primary in
that time. The rows come from the server in pages (--after NAME starts after
that name; --limit N stops after N rows), so a fleet of any size can be listed.`},
		(*Server).hostList, textHosts), func(r []Host) (int, string) {
		if len(r) == 0 {
			return 0, ""
		}
		return len(r), r[len(r)-1].Name
	}),
	define(Op{Name: CmdHostShow, Short: "show one host and its certificates"},
		(*Server).hostShow, textHostDetail),
	define(Op{Name: CmdHostReissue, Use: "NAME|HOSTID [--for 48h]", Short: "open an auto-reissue window: the host may reissue without a token until it closes",
		Mutates: true, Audited: true, Audits: "the host and when the window closes"},
		(*Server).hostAllowReissue, textWindow),
	paged(define(Op{Name: CmdMappingList, Use: "[--host NAME|HOSTID] [--pending] [--after NAME] [--limit N]",
		Short: "list the host name mappings by name (--pending: the names waiting for approval)", Long: mappingLong},
		(*Server).mappingList, textMappings), func(r []Mapping) (int, string) {
		if len(r) == 0 {
			return 0, ""
		}
		return len(r), r[len(r)-1].Name + " " + r[len(r)-1].HostID
	}),
	define(Op{Name: CmdMappingApprove, Short: "approve a pending name, if it is still approved for no other host: the host's next certificate carries it; the other hosts' claims on it are dropped",
		Mutates: true, Audited: true, Audits: "the name, its host and its new state; each dropped claim of another host, with the reason"},
		(*Server).mappingApprove, textMapping[MappingArgs]("approved")),
	define(Op{Name: CmdMappingReject, Short: "reject a pending name (it is deleted and free again)", Mutates: true, Audited: true,
		Audits: "the name and the host that asked for it"},
		(*Server).mappingReject, textMapping[MappingArgs]("rejected")),
	define(Op{Name: CmdMappingAdd, Use: "NAME NAME|HOSTID", Short: "give a name to a host as an approved name", Mutates: true, Audited: true,
		Audits: "the name and its host"},
		(*Server).mappingAdd, textMapping[MappingAddArgs]("added")),
	define(Op{Name: CmdMappingRemove, Short: "remove a name from its host (certificates already issued keep it until they renew)",
		Mutates: true, Audited: true, Audits: "the name, its host, and the host's new main name when it was the main one"},
		(*Server).mappingRemove, textMapping[MappingArgs]("removed")),
	define(Op{Name: CmdMappingAutoApprove, Short: "approve at once (on) or leave pending (off, the default) every name a host asks for",
		Mutates: true, Audited: true, Audits: "the new setting"},
		(*Server).mappingAutoApprove, textMappingSettings[AutoApproveArgs]),
	define(Op{Name: CmdMappingSettings, Short: "show the mapping settings (auto-approve on or off)"},
		(*Server).mappingSettings, textMappingSettings[NoArgs]),
	define(Op{Name: CmdTokenCreate, Use: "--name N [--max-uses 1] [--valid-for 24h] [--reason R] [--reissue-host NAME|HOSTID] [--bind-name P]... [--bind-net CIDR]...",
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
		Mutates: true, Audited: true, Audits: "the token's name, kind, host, max uses, expiry and reason (never its value)"},
		(*Server).tokenCreate, textToken),
	define(Op{Name: CmdTokenList, Short: "list tokens (live, expired and used up)"},
		(*Server).tokenList, textTokens),
	define(Op{Name: CmdTokenDelete, Short: "delete a token (certificates it issued stay valid)", Mutates: true, Audited: true,
		Audits: "the token's name"},
		(*Server).tokenDelete, textDeleted),
	define(Op{Name: CmdTokenCleanup, Short: "delete every expired or used-up token", Mutates: true, Audited: true,
		Audits: "how many tokens it removed"},
		(*Server).tokenCleanup, textCleanup),
	paged(define(Op{Name: CmdCertList, Use: "[--host NAME|HOSTID] [--token N] [--expiring 30d] [--after SERIAL] [--limit N]",
		Short: "list issued certificates (--expiring: current ones about to expire)",
		Long: `list prints issued certificates in issuance order, revoked ones included,
with their key algorithm and the route their request took (direct, or tunnel:
through a declared tunnel; "-" for certificates issued before routes were
recorded).

--expiring 30d lists instead the current certificate of each host (its latest
issued) that is not revoked and expires within that time, soonest first;
certificates already expired are included: those hosts have fallen out of
trust and need a reissue. The rows come from the server in pages (--after
SERIAL starts after that certificate; --limit N stops after N rows).`},
		(*Server).certList, textCerts), func(r []Cert) (int, string) {
		if len(r) == 0 {
			return 0, ""
		}
		return len(r), r[len(r)-1].Serial
	}),
	define(Op{Name: CmdCertRevoke, Use: "NAME|HOSTID --reason R | revoke --token N --reason R",
		Short: "revoke a host (all its certificates) or everything a token issued",
		Long: `revoke a host by name or host ID — the host and every certificate of it — or,
with --token, every certificate that token authorised. The reason is an RFC 5280
reason: unspecified, keyCompromise, cACompromise, affiliationChanged, superseded,
cessationOfOperation, certificateHold, removeFromCRL, privilegeWithdrawn,
aACompromise (name in any case, with - or _, or the number). The CRL is
regenerated within seconds.`,
		Mutates: true, Audited: true, Audits: "the host or the token, the reason and how many certificates were revoked"},
		(*Server).certRevoke, textRevoked),
	define(Op{Name: CmdExplain, Use: "NAME --from ADDR [--nat]", Short: "dry run: would this host need a token? (nothing is issued)",
		Long: `explain runs the deployment decision for NAME as if it asked from ADDR without
a token — the same facts (level, registry, host ID, DNS verification, NAT, an
auto-reissue window) and the same decision function as a real request — and
prints the decision and its reason. Nothing is issued or counted.`,
		Audited: true, Audits: "the name, the address, NAT and the decision with its reason"},
		(*Server).explainName, textExplain),
	paged(define(Op{Name: CmdAudit, Use: "[--since T] [--after ID] [--limit N]", Short: "show the audit log (decisions and admin actions)",
		Long: `audit prints the audit log from --since on, oldest first, each row with its
ID. T is a time (RFC 3339, e.g. 2026-01-02T15:04:05Z, or a date 2026-01-02) or
a duration back from now (e.g. 90m, 24h, 7d). Default: the last 24 hours.
--after ID starts after that row (to continue where an earlier listing
stopped); --limit N stops after N rows (0, the default: all of them). The rows
come from the server in pages, so a log of any size can be listed.`},
		(*Server).auditPage, textAudit), func(r []AuditEntry) (int, string) {
		if len(r) == 0 {
			return 0, ""
		}
		return len(r), strconv.FormatInt(r[len(r)-1].ID, 10)
	}),
	define(Op{Name: CmdInventory, Use: "[--expiring 30d] [--stale 7d]", Short: "the fleet in numbers: hosts, stale hosts, certificates by state, route and key algorithm",
		Long: `inventory counts, as of now: hosts with a host ID (revoked; stale: not
revoked and not seen for --stale), registry names without a host ID yet, and
the current certificate of each host (its latest issued) by state — valid,
expiring within --expiring, expired, revoked — and, for the valid ones, by the
route their request took (direct, or through a declared tunnel; "unrecorded"
for certificates issued before routes were recorded) and by key algorithm.
The deployment level is one for the whole primary and is shown with them.
"hostcert-primary cert list --expiring" and "host list --stale" list the rows
behind the numbers.`},
		(*Server).inventory, textInventory),
	define(Op{Name: CmdConsoleLogin, Use: "[--operator NAME] [--valid-for 10m]", Short: "print a one-time login link for the web console",
		Long: `login prints a link that logs one browser into the web console (serve
--console) once: it works a single time, within --valid-for, and only its hash
is kept. The session it opens carries the operator's name into the audit row
of every console action.`,
		Mutates: true, Audited: true, Audits: "the operator and when the link expires (never the link)"},
		(*Server).consoleLogin, textLogin),
	define(Op{Name: CmdAdminAdd, Use: "NAME [--out DIR] [--p12-password-file FILE] [--valid-for 90d]",
		Short: "issue an administrator's client certificate (the console's login) to files in --out",
		Long: `add makes an administrator's client certificate for NAME: the command line
generates the private key (it never leaves this process: the server gets a
CSR and signs an admin-role certificate, urn:hostcert:admin:NAME, from the
current issuing CA) and writes NAME.key (owner-only), NAME.pem (certificate
and chain) and, with --p12-password-file, NAME.p12 for a browser's
certificate store. The web console (serve --console) logs in a browser that
presents it as NAME, until it expires or "admin revoke NAME". A name holds
one valid certificate at a time: revoke it before adding a new one.`,
		Mutates: true, Audited: true, Audits: "the administrator's name, the serial, the key algorithm and the expiry (never the key)"},
		(*Server).adminAdd, textAdminIssued),
	define(Op{Name: CmdAdminList, Short: "list administrators' certificates: name, serial, expiry, revoked or not",
		Audited: true, Audits: "how many certificates were listed"},
		(*Server).adminList, textAdmins),
	define(Op{Name: CmdAdminRevoke, Use: "NAME [--reason R]",
		Short:   "revoke every certificate of an administrator (the console refuses it at once; the CRL lists it)",
		Mutates: true, Audited: true, Audits: "the administrator's name, the reason and how many certificates were revoked"},
		(*Server).adminRevoke, textAdminRevoked),
}

// Ops is the command table, in the order of --help.
func Ops() []*Op { return table }

// Lookup finds an operation by its wire name.
func Lookup(name string) *Op {
	for _, o := range table {
		if o.Name == name {
			return o
		}
	}
	return nil
}

// Do runs one operation for actor: it decodes and checks the arguments,
// runs the handler, and audits a failure of an operation that changes
// state. Every front end calls it.
func (s *Server) Do(ctx context.Context, actor, name string, raw json.RawMessage) (any, error) {
	op := Lookup(name)
	if op == nil {
		return nil, fmt.Errorf("unknown admin command %q", name)
	}
	now := s.now()
	c := &Call{Actor: actor, Now: now,
		Audit: store.Audit{At: now, Actor: actor, Action: op.Name, Outcome: "ok", Detail: map[string]any{}}}
	args, err := op.decode(raw)
	var res any
	if err == nil {
		res, err = op.run(s, ctx, c, args)
	}
	if err != nil && op.Mutates {
		a := store.Audit{At: now, Actor: actor, Action: op.Name, Outcome: "error",
			Detail: map[string]any{"error": oneLine(err.Error())}}
		if aerr := s.store.AppendAudit(context.WithoutCancel(ctx), a); aerr != nil {
			s.log.Error().Err(aerr).Msg("writing audit row of a failed admin command")
		}
	}
	return res, err
}

// Checks of the arguments: run by the front end before sending and by the
// server before the handler.

// Check normalises the level.
func (a *LevelArgs) Check() error {
	l, err := protocol.ParseLevel(string(a.Level))
	a.Level = l
	return err
}

// Check puts the names in canonical form (refusing reserved ones; the
// server refuses the primary's own names too) and drops repeats.
func (a *NamesArgs) Check() error {
	names, err := normalizeNames(a.Names)
	a.Names = names
	return err
}

// Check needs a host.
func (a *HostArgs) Check() error {
	if a.Host == "" {
		return errNoHost
	}
	return nil
}

// Check reads the duration and the limit.
func (a *HostListArgs) Check() error {
	if a.Stale != "" {
		if _, err := window("--stale", a.Stale); err != nil {
			return err
		}
	}
	return checkLimit(a.Limit)
}

// Check reads the window.
func (a *WindowArgs) Check() error {
	if a.Host == "" {
		return errNoHost
	}
	_, err := policy.ParseWindow(a.For)
	return err
}

// Check refuses what the server would refuse anyway, with the flag's name.
func (a *TokenArgs) Check() error {
	if a.Name == "" {
		return errors.New("token create: --name is required")
	}
	if err := tokens.ValidName(a.Name); err != nil {
		return err
	}
	if err := tokens.CheckMaxUses(a.MaxUses); err != nil {
		return fmt.Errorf("token create: --max-uses: %w", err)
	}
	if _, err := tokens.ParseValidity(a.ValidFor); err != nil {
		return fmt.Errorf("token create: --valid-for: %w", err)
	}
	if a.ReissueHost != "" && len(a.BindNames) > 0 {
		return errors.New("a reissue token is already bound to its host: --bind-name is for standard tokens (--bind-net works for both)")
	}
	_, err := tokens.ParseBinding(a.BindNames, a.BindNets, hostname.ForHost)
	return err
}

// Check needs a name.
func (a *NameArgs) Check() error {
	if a.Name == "" {
		return errors.New("no token name given")
	}
	return nil
}

// Check reads the duration.
func (a *CertArgs) Check() error {
	if a.Expiring != "" {
		if _, err := window("--expiring", a.Expiring); err != nil {
			return err
		}
	}
	return checkLimit(a.Limit)
}

// Check needs a host or a token, not both, and a known reason.
func (a *RevokeArgs) Check() error {
	if (a.Host == "") == (a.Token == "") {
		return errors.New("revoke: give exactly one of a host (NAME or HOSTID) or --token")
	}
	if a.Reason == "" {
		return errors.New("revoke: --reason is required (an RFC 5280 reason, e.g. keyCompromise, superseded, cessationOfOperation)")
	}
	_, err := ca.ParseReason(a.Reason)
	return err
}

// Check needs a name and an address.
func (a *ExplainArgs) Check() error {
	if a.Name == "" {
		return errors.New("explain: no host name given")
	}
	if a.From == "" {
		return errors.New("explain: --from ADDR is required")
	}
	if _, err := netip.ParseAddr(a.From); err != nil {
		return fmt.Errorf("--from %q is not an IP address", a.From)
	}
	return nil
}

// Check refuses negative cursors and limits.
func (a *AuditArgs) Check() error {
	if a.Limit < 0 || a.After < 0 {
		return fmt.Errorf("audit: --limit %d, --after %d: want 0 or more", a.Limit, a.After)
	}
	return nil
}

// Check reads both windows.
func (a *InventoryArgs) Check() error {
	if _, err := window("--expiring", a.Expiring); err != nil {
		return err
	}
	_, err := window("--stale", a.Stale)
	return err
}

// window reads an inventory window: a duration or days, 1s to 100 years.
func window(flag, s string) (time.Duration, error) {
	d, err := parseDuration(s)
	if err != nil {
		return 0, fmt.Errorf("%s %q: want a duration (36h) or days (30d)", flag, s)
	}
	if d < time.Second || d > 100*365*24*time.Hour {
		return 0, fmt.Errorf("%s %q: want between 1s and 36500d", flag, s)
	}
	return d, nil
}

func parseDuration(s string) (time.Duration, error) { return tokens.ParseDuration(s) }

func checkLimit(n int) error {
	if n < 0 {
		return fmt.Errorf("limit %d: want 0 or more", n)
	}
	return nil
}

func pageLimit(n, max int) int {
	if n <= 0 || n > max {
		return max
	}
	return n
}

// The handlers.

// caShow shows the current root (its fingerprint is the one hosts confirm)
// and every CA with its state.
func (s *Server) caShow(_ context.Context, _ *Call, _ *CAArgs) (CAInfo, error) {
	return s.caInfo(), nil
}

func (s *Server) caInfo() CAInfo {
	c := s.ca.Bundle()[0]
	info := CAInfo{
		Fingerprint: pki.Fingerprint(c), Subject: c.Subject.String(),
		NotBefore: c.NotBefore, NotAfter: c.NotAfter, Certificates: len(s.ca.Bundle()),
		BundlePEM: string(s.ca.BundlePEM()), PrimaryHostID: s.ca.PrimaryHostID(),
		CAs: s.caEntries(s.now()),
	}
	if l := s.crls.Current(); l != nil {
		info.CRLNumber, info.CRLEntries, info.CRLNextUpdate = l.Number.String(), l.Entries, l.NextUpdate
	}
	return info
}

func (s *Server) levelGet(ctx context.Context, _ *Call, _ *NoArgs) (LevelInfo, error) {
	l, err := s.levels.Level(ctx)
	if err != nil {
		return LevelInfo{}, fmt.Errorf("read level: %w", err)
	}
	return LevelInfo{Level: l, CRLRefreshSeconds: int64(l.CRLRefresh() / time.Second)}, nil
}

func (s *Server) levelSet(ctx context.Context, c *Call, args *LevelArgs) (LevelInfo, error) {
	old, err := s.levels.Level(ctx)
	if err != nil {
		return LevelInfo{}, fmt.Errorf("read level: %w", err)
	}
	l := args.Level
	c.Audit.Detail["from"], c.Audit.Detail["to"] = string(old), string(l)
	if err := s.levels.SetLevel(ctx, l, c.Audit); err != nil {
		return LevelInfo{}, fmt.Errorf("set level: %w", err)
	}
	return LevelInfo{Level: l, CRLRefreshSeconds: int64(l.CRLRefresh() / time.Second)}, nil
}

func (s *Server) hostAdd(ctx context.Context, c *Call, args *NamesArgs) (AddResult, error) {
	names := args.Names
	for _, n := range names {
		if s.ca != nil && s.ca.IsPrimaryName(n) {
			return AddResult{}, fmt.Errorf("%w: %s is a name of the primary; no host certificate carries it", hostname.ErrReserved, n)
		}
	}
	c.Audit.Detail["count"] = len(names)
	if len(names) <= 20 {
		c.Audit.Detail["names"] = names
	}
	added, err := s.store.AddKnown(ctx, names, c.Audit)
	if err != nil {
		return AddResult{}, fmt.Errorf("add hosts: %w", err)
	}
	return AddResult{Added: added, Total: len(names)}, nil
}

func (s *Server) hostRemove(ctx context.Context, c *Call, args *HostArgs) (CountResult, error) {
	name, err := hostname.Normalize(args.Host)
	if err != nil {
		return CountResult{}, err
	}
	c.Audit.Name = name
	if err := s.store.RemoveKnown(ctx, name, c.Audit); err != nil {
		if errors.Is(err, store.ErrNotFound) {
			return CountResult{}, fmt.Errorf("%s is not in the host registry", name)
		}
		return CountResult{}, fmt.Errorf("remove %s: %w", name, err)
	}
	return CountResult{Count: 1}, nil
}

func (s *Server) hostList(ctx context.Context, c *Call, args *HostListArgs) ([]Host, error) {
	p := store.HostPage{After: args.After, Limit: pageLimit(args.Limit, MaxPageRows)}
	if args.Stale != "" {
		d, err := window("--stale", args.Stale)
		if err != nil {
			return nil, err
		}
		p.StaleBefore = c.Now.Add(-d)
	}
	hosts, err := s.store.ListHostsPage(ctx, p)
	if err != nil {
		return nil, fmt.Errorf("list hosts: %w", err)
	}
	out := make([]Host, 0, len(hosts))
	size := 0
	for _, h := range hosts {
		v := hostView(h)
		out = append(out, v)
		if size += approxSize(v); size > pageBytes {
			break
		}
	}
	return out, nil
}

func (s *Server) hostShow(ctx context.Context, _ *Call, args *HostArgs) (HostDetail, error) {
	ref := args.Host
	h, err := s.resolveHost(ctx, ref)
	if err != nil {
		// A registry name without a host ID is still worth showing.
		name, nerr := hostname.Normalize(ref)
		if nerr != nil {
			return HostDetail{}, err
		}
		known, kerr := s.store.IsKnown(ctx, name)
		if kerr != nil || !known {
			return HostDetail{}, err
		}
		return HostDetail{Host: Host{Name: name, Known: true}, Certificates: []Cert{}}, nil
	}
	known, err := s.store.IsKnown(ctx, h.Name)
	if err != nil {
		return HostDetail{}, fmt.Errorf("look up registry: %w", err)
	}
	h.Known = known
	certs, err := s.store.ListCerts(ctx, store.CertFilter{HostID: h.ID, IncludeRevoked: true})
	if err != nil {
		return HostDetail{}, fmt.Errorf("list certificates of %s: %w", h.Name, err)
	}
	d := HostDetail{Host: hostView(h), Certificates: make([]Cert, 0, len(certs))}
	for _, c := range certs {
		d.Certificates = append(d.Certificates, certView(c))
	}
	return d, nil
}

func (s *Server) hostAllowReissue(ctx context.Context, c *Call, args *WindowArgs) (WindowResult, error) {
	d, err := policy.ParseWindow(args.For)
	if err != nil {
		return WindowResult{}, err
	}
	h, err := s.resolveHost(ctx, args.Host)
	if err != nil {
		return WindowResult{}, err
	}
	until := c.Now.Add(d)
	c.Audit.HostID, c.Audit.Name = h.ID, h.Name
	c.Audit.Detail["until"] = until.UTC().Format(time.RFC3339)
	if err := s.store.SetReissueWindow(ctx, h.ID, until, c.Audit); err != nil {
		return WindowResult{}, fmt.Errorf("open auto-reissue window for %s: %w", h.Name, err)
	}
	return WindowResult{HostID: h.ID, Name: h.Name, Until: until}, nil
}

func (s *Server) tokenCreate(ctx context.Context, c *Call, args *TokenArgs) (CreatedToken, error) {
	now, a := c.Now, c.Audit
	kind, hostID := tokens.KindStandard, ""
	if args.ReissueHost != "" {
		h, err := s.resolveHost(ctx, args.ReissueHost)
		if err != nil {
			return CreatedToken{}, err
		}
		kind, hostID = tokens.KindReissue, h.ID
		a.HostID, a.Name = h.ID, h.Name
	}
	bind, err := tokens.ParseBinding(args.BindNames, args.BindNets, hostname.ForHost)
	if err != nil {
		return CreatedToken{}, err
	}
	bindNames, bindNets := bind.Strings()
	maxUses, err := tokens.MaxUses(kind, args.MaxUses)
	if err != nil {
		return CreatedToken{}, err
	}
	validity, err := tokens.ParseValidity(args.ValidFor)
	if err != nil {
		return CreatedToken{}, err
	}
	value, hash, err := tokens.Generate()
	if err != nil {
		return CreatedToken{}, err
	}
	t := store.Token{
		Name: args.Name, Kind: kind, HostID: hostID, Hash: hash, MaxUses: maxUses,
		CreatedAt: now, ExpiresAt: now.Add(validity), Reason: args.Reason,
		BindNames: bindNames, BindNets: bindNets,
	}
	a.TokenName = t.Name
	a.Detail["kind"], a.Detail["max_uses"], a.Detail["expires_at"] = kind, maxUses, t.ExpiresAt.UTC().Format(time.RFC3339)
	if args.Reason != "" {
		a.Detail["reason"] = args.Reason
	}
	if err := s.store.CreateToken(ctx, t, a); err != nil {
		if errors.Is(err, store.ErrExists) {
			return CreatedToken{}, fmt.Errorf("a token named %q already exists", t.Name)
		}
		return CreatedToken{}, fmt.Errorf("create token %s: %w", t.Name, err)
	}
	return CreatedToken{Token: tokenView(t, now), Value: value}, nil
}

func (s *Server) tokenList(ctx context.Context, c *Call, _ *NoArgs) ([]Token, error) {
	list, err := s.store.ListTokens(ctx)
	if err != nil {
		return nil, fmt.Errorf("list tokens: %w", err)
	}
	out := make([]Token, 0, len(list))
	for _, t := range list {
		out = append(out, tokenView(t, c.Now))
	}
	return out, nil
}

func (s *Server) tokenDelete(ctx context.Context, c *Call, args *NameArgs) (CountResult, error) {
	c.Audit.TokenName = args.Name
	if err := s.store.DeleteToken(ctx, args.Name, c.Audit); err != nil {
		if errors.Is(err, store.ErrNotFound) {
			return CountResult{}, fmt.Errorf("no token named %q", args.Name)
		}
		return CountResult{}, fmt.Errorf("delete token %s: %w", args.Name, err)
	}
	return CountResult{Count: 1}, nil
}

func (s *Server) tokenCleanup(ctx context.Context, c *Call, _ *NoArgs) (CountResult, error) {
	n, err := s.store.CleanupTokens(ctx, c.Now, c.Audit)
	if err != nil {
		return CountResult{}, fmt.Errorf("clean up tokens: %w", err)
	}
	return CountResult{Count: n}, nil
}

func (s *Server) certList(ctx context.Context, c *Call, args *CertArgs) ([]Cert, error) {
	p := store.CertPage{CertFilter: store.CertFilter{TokenName: args.Token, IncludeRevoked: true},
		After: args.After, Limit: pageLimit(args.Limit, MaxPageRows)}
	if args.Host != "" {
		h, err := s.resolveHost(ctx, args.Host)
		if err != nil {
			return nil, err
		}
		p.HostID = h.ID
	}
	if args.Expiring != "" {
		d, err := window("--expiring", args.Expiring)
		if err != nil {
			return nil, err
		}
		p.ExpiringBefore = c.Now.Add(d)
	}
	certs, err := s.store.ListCertsPage(ctx, p)
	if errors.Is(err, store.ErrNotFound) {
		return nil, fmt.Errorf("--after %s: no certificate with that serial", args.After)
	}
	if err != nil {
		return nil, fmt.Errorf("list certificates: %w", err)
	}
	out := make([]Cert, 0, len(certs))
	size := 0
	for _, c := range certs {
		v := certView(c)
		out = append(out, v)
		if size += approxSize(v); size > pageBytes {
			break
		}
	}
	return out, nil
}

func (s *Server) certRevoke(ctx context.Context, c *Call, args *RevokeArgs) (CountResult, error) {
	reason, err := ca.ParseReason(args.Reason)
	if err != nil {
		return CountResult{}, err
	}
	a := c.Audit
	a.Detail["reason"] = ca.ReasonName(reason)
	var n int
	if args.Token != "" {
		a.TokenName = args.Token
		n, err = s.store.RevokeByToken(ctx, args.Token, reason, c.Now, a)
		if err != nil {
			return CountResult{}, fmt.Errorf("revoke certificates of token %s: %w", args.Token, err)
		}
	} else {
		h, err := s.resolveHost(ctx, args.Host)
		if err != nil {
			return CountResult{}, err
		}
		a.HostID, a.Name = h.ID, h.Name
		n, err = s.store.RevokeHost(ctx, h.ID, reason, c.Now, a)
		if err != nil {
			return CountResult{}, fmt.Errorf("revoke %s: %w", h.Name, err)
		}
	}
	// Return only once the CRL served lists the revocation (SPEC §6).
	if err := s.crls.Refresh(ctx); err != nil {
		s.crls.Trigger()
		return CountResult{}, fmt.Errorf("revoked %d certificate(s), but the CRL listing them is not served yet (it is retried in the background): %w", n, err)
	}
	return CountResult{Count: n}, nil
}

func (s *Server) explainName(ctx context.Context, c *Call, args *ExplainArgs) (protocol.Decision, error) {
	from, err := netip.ParseAddr(args.From)
	if err != nil {
		return protocol.Decision{}, fmt.Errorf("--from %q is not an IP address", args.From)
	}
	d, err := s.explain.Explain(ctx, args.Name, from, args.NAT)
	if err != nil {
		return protocol.Decision{}, fmt.Errorf("explain %s: %w", hostname.Quote(args.Name), err)
	}
	a := c.Audit
	a.Name, a.Source = hostname.Display(args.Name), from.String()
	a.Detail["nat"], a.Detail["need_token"], a.Detail["reason"] = args.NAT, d.NeedToken, d.Reason
	if err := s.store.AppendAudit(ctx, a); err != nil {
		return protocol.Decision{}, fmt.Errorf("audit: %w", err)
	}
	return d, nil
}

func (s *Server) auditPage(ctx context.Context, _ *Call, args *AuditArgs) ([]AuditEntry, error) {
	rows, err := s.store.ListAuditPage(ctx, args.Since.Time, args.After, pageLimit(args.Limit, MaxAuditRows))
	if err != nil {
		return nil, fmt.Errorf("read audit log: %w", err)
	}
	return auditPage(rows, pageBytes)
}

func (s *Server) inventory(ctx context.Context, c *Call, args *InventoryArgs) (InventoryInfo, error) {
	exp, err := window("--expiring", args.Expiring)
	if err != nil {
		return InventoryInfo{}, err
	}
	stale, err := window("--stale", args.Stale)
	if err != nil {
		return InventoryInfo{}, err
	}
	level, err := s.levels.Level(ctx)
	if err != nil {
		return InventoryInfo{}, fmt.Errorf("read level: %w", err)
	}
	inv, err := s.store.Inventory(ctx, c.Now, c.Now.Add(exp), c.Now.Add(-stale))
	if err != nil {
		return InventoryInfo{}, fmt.Errorf("inventory: %w", err)
	}
	out := InventoryInfo{Level: level, At: c.Now, Expiring: args.Expiring, Stale: args.Stale,
		ByRoute: map[string]int{}, ByKeyAlg: map[string]int{}}
	out.Hosts.WithID, out.Hosts.Revoked, out.Hosts.Stale, out.Hosts.RegistryOnly = inv.Hosts, inv.HostsRevoked, inv.Stale, inv.RegistryOnly
	out.Certificates.Valid, out.Certificates.Expiring = inv.Valid, inv.Expiring
	out.Certificates.Expired, out.Certificates.Revoked = inv.Expired, inv.Revoked
	for r, n := range inv.ByRoute {
		if r == "" {
			r = "unrecorded"
		}
		out.ByRoute[r] += n
	}
	for a, n := range inv.ByKeyAlg {
		out.ByKeyAlg[a] += n
	}
	return out, nil
}

// Helpers of the handlers.

func normalizeNames(in []string) ([]string, error) {
	if len(in) == 0 {
		return nil, errors.New("no host names given")
	}
	seen := make(map[string]bool, len(in))
	out := make([]string, 0, len(in))
	for _, raw := range in {
		n, err := hostname.ForHost(raw)
		if err != nil {
			return nil, err
		}
		if !seen[n] {
			seen[n] = true
			out = append(out, n)
		}
	}
	return out, nil
}

// resolveHost finds a host with a host ID by its ID or its name.
func (s *Server) resolveHost(ctx context.Context, ref string) (store.Host, error) {
	if ref == "" {
		return store.Host{}, errNoHost
	}
	if _, err := uuid.Parse(ref); err == nil {
		h, err := s.store.HostByID(ctx, ref)
		if errors.Is(err, store.ErrNotFound) {
			return h, fmt.Errorf("no host with host ID %s", ref)
		}
		return h, err
	}
	name, err := hostname.Normalize(ref)
	if err != nil {
		return store.Host{}, err
	}
	h, err := s.store.HostByName(ctx, name)
	if errors.Is(err, store.ErrNotFound) {
		return h, fmt.Errorf("%s has no host ID yet (it never got a certificate)", name)
	}
	return h, err
}

func hostView(h store.Host) Host {
	v := Host{ID: h.ID, Name: h.Name, Known: h.Known, RevokedAt: h.RevokedAt, ReissueUntil: h.ReissueUntil}
	if !h.CreatedAt.IsZero() {
		t := h.CreatedAt
		v.CreatedAt = &t
	}
	if !h.SeenAt.IsZero() {
		t := h.SeenAt
		v.SeenAt = &t
	}
	return v
}

func tokenView(t store.Token, now time.Time) Token {
	state := "live"
	switch {
	case t.Uses >= t.MaxUses:
		state = "used_up"
	case !now.Before(t.ExpiresAt):
		state = "expired"
	}
	return Token{
		Name: t.Name, Kind: t.Kind, HostID: t.HostID, MaxUses: t.MaxUses, Uses: t.Uses,
		CreatedAt: t.CreatedAt, ExpiresAt: t.ExpiresAt, Reason: t.Reason, State: state,
		BindNames: t.BindNames, BindNets: t.BindNets,
	}
}

func certView(c store.Cert) Cert {
	v := Cert{
		Serial: c.Serial, HostID: c.HostID, Names: c.Names, Kind: string(c.Kind), TokenName: c.TokenName,
		IssuedAt: c.IssuedAt, NotBefore: c.NotBefore, NotAfter: c.NotAfter, RevokedAt: c.RevokedAt,
		RenewedFrom: c.RenewedFrom, UsedAt: c.UsedAt, KeyAlg: c.KeyAlg, Route: c.Route,
	}
	if c.RevokedAt != nil {
		v.RevokeReason = ca.ReasonName(c.RevokeReason)
	}
	return v
}

// approxSize is a row's encoded size, for bounding a page.
func approxSize(v any) int {
	b, err := json.Marshal(v)
	if err != nil {
		return pageBytes // stop the page here; the encoder reports the error
	}
	return len(b) + 1
}

// auditPage turns store rows into the answer, cut short after the row that
// takes it past maxBytes (always at least one row, so paging progresses).
func auditPage(rows []store.Audit, maxBytes int) ([]AuditEntry, error) {
	out := make([]AuditEntry, 0, len(rows))
	size := 0
	for _, r := range rows {
		e := AuditEntry{
			ID: r.ID, At: r.At, Actor: r.Actor, Source: r.Source, Action: r.Action, Outcome: r.Outcome,
			Code: r.Code, HostID: r.HostID, Name: r.Name, TokenName: r.TokenName, Detail: r.Detail, Node: r.Node,
		}
		b, err := json.Marshal(e)
		if err != nil {
			return nil, fmt.Errorf("encode audit row %d: %w", r.ID, err)
		}
		out = append(out, e)
		if size += len(b) + 1; size > maxBytes {
			break
		}
	}
	return out, nil
}
