// Package admin is the primary's local administration channel (SPEC §9): a
// socket in the data directory that only the server's user can open, a
// one-request-one-response JSON protocol over it, the commands behind
// `hostcert-primary level|host|token|cert|explain|audit|ca`, and the client
// the CLI uses. Every command is audited with the actor "admin:<uid>".
//
// Transport: on Unix a socket DIR/admin.sock with mode 0600 (the peer's uid
// comes from SO_PEERCRED on Linux). On Windows a loopback TCP port whose
// address and a random secret are written owner-only to DIR/admin.token;
// a request without that secret is refused.
package admin

import (
	"encoding/json"
	"fmt"
	"time"

	"github.com/hostcert/hostcert/common/protocol"
)

// File names in the data directory.
const (
	SocketName = "admin.sock"
	TokenName  = "admin.token" // Windows only: "ADDR\nSECRET\n"
)

// Command names of the admin protocol.
const (
	CmdCAShow       = "ca.show"
	CmdLevelGet     = "level.get"
	CmdLevelSet     = "level.set"
	CmdHostAdd      = "host.add"
	CmdHostRemove   = "host.remove"
	CmdHostList     = "host.list"
	CmdHostShow     = "host.show"
	CmdHostReissue  = "host.allow-reissue"
	CmdTokenCreate  = "token.create"
	CmdTokenList    = "token.list"
	CmdTokenDelete  = "token.delete"
	CmdTokenCleanup = "token.cleanup"
	CmdCertList     = "cert.list"
	CmdCertRevoke   = "cert.revoke"
	CmdExplain      = "explain"
	CmdAudit        = "audit"
	CmdInventory    = "inventory"
)

// Request is one admin request: a command and its JSON arguments.
type Request struct {
	Command string          `json:"command"`
	Args    json.RawMessage `json:"args,omitempty"`
	Secret  string          `json:"secret,omitempty"` // Windows transport only
}

// Response is the answer: Data on success, a one-line Error otherwise.
type Response struct {
	OK    bool            `json:"ok"`
	Error string          `json:"error,omitempty"`
	Data  json.RawMessage `json:"data,omitempty"`
}

// MaxMessage bounds one request or response line, on both sides. Commands
// whose data can grow with the fleet stay under it by paging (audit) or by
// sending their input in batches (host import).
const MaxMessage = 4 << 20

// TooLargeError is a request or an answer longer than MaxMessage. The side
// that would send it refuses before sending; the side that receives one
// stops reading at Max and says so.
type TooLargeError struct {
	What string // "request" or "answer"
	Size int    // bytes; 0 when only "more than Max" is known
	Max  int
}

func (e *TooLargeError) Error() string {
	if e.Size > 0 {
		return fmt.Sprintf("%s too large for the admin socket (%d bytes, max %d)", e.What, e.Size, e.Max)
	}
	return fmt.Sprintf("%s too large for the admin socket (more than %d bytes, max %d)", e.What, e.Max, e.Max)
}

// Arguments and results of the commands.

// CAInfo answers ca.show, ca.rotate and ca.retire-root: Fingerprint,
// Subject and validity are the current root's.
type CAInfo struct {
	Fingerprint   string    `json:"fingerprint"`
	Subject       string    `json:"subject"`
	NotBefore     time.Time `json:"not_before"`
	NotAfter      time.Time `json:"not_after"`
	Certificates  int       `json:"certificates"`
	BundlePEM     string    `json:"bundle_pem"`
	PrimaryHostID string    `json:"primary_host_id"`
	CRLNumber     string    `json:"crl_number,omitempty"`
	CRLEntries    int       `json:"crl_entries"`
	CRLNextUpdate time.Time `json:"crl_next_update,omitzero"`
	// CAs are the roots (current first), cross-signed roots and issuing CAs
	// (current first), each with its state.
	CAs []CAEntry `json:"cas,omitempty"`
}

// CAArgs are the arguments of ca.show (a display option only).
type CAArgs struct {
	PEM bool `json:"-" flag:"pem" help:"print the CA bundle as PEM"`
}

// NoArgs are the arguments of an operation that takes none.
type NoArgs struct{}

// LevelArgs are the arguments of level.set.
type LevelArgs struct {
	Level protocol.Level `json:"level" arg:"very-high|high|medium"`
}

// LevelInfo answers level.get and level.set.
type LevelInfo struct {
	Level             protocol.Level `json:"level"`
	CRLRefreshSeconds int64          `json:"crl_refresh_seconds"`
}

// NamesArgs are the arguments of host.add.
type NamesArgs struct {
	Names []string `json:"names" arg:"NAME"`
}

// AddResult answers host.add.
type AddResult struct {
	Added int `json:"added"`
	Total int `json:"total"`
}

// HostArgs name one host by name or host ID.
type HostArgs struct {
	Host string `json:"host" arg:"NAME|HOSTID"`
}

// HostListArgs are the arguments of host.list: a page of hosts by name
// after After; with Stale, only hosts (with a host ID, not revoked) whose
// last contact is older than that duration.
type HostListArgs struct {
	Stale string `json:"stale,omitempty" flag:"stale" help:"only hosts not seen for this long (7d, 36h): no issuance, renewal or request with their certificate"`
	After string `json:"after,omitempty" flag:"after" help:"start after the host with this name"`
	Limit int    `json:"limit,omitempty"`
}

// Host is one row of host.list.
type Host struct {
	ID           string     `json:"host_id,omitempty"`
	Name         string     `json:"name"`
	Known        bool       `json:"known"`
	CreatedAt    *time.Time `json:"created_at,omitempty"`
	RevokedAt    *time.Time `json:"revoked_at,omitempty"`
	ReissueUntil *time.Time `json:"reissue_until,omitempty"`
	// SeenAt is the host's last contact: its last issuance or renewal,
	// or a request with one of its certificates (recorded at most hourly).
	SeenAt *time.Time `json:"seen_at,omitempty"`
}

// HostDetail answers host.show.
type HostDetail struct {
	Host
	Certificates []Cert `json:"certificates"`
}

// WindowArgs are the arguments of host.allow-reissue.
type WindowArgs struct {
	Host string `json:"host" arg:"NAME|HOSTID"`
	For  string `json:"for,omitempty" flag:"for" default:"48h" help:"how long the window stays open (Go duration or days, e.g. 48h, 7d; at most 30d)"`
}

// WindowResult answers host.allow-reissue.
type WindowResult struct {
	HostID string    `json:"host_id"`
	Name   string    `json:"name"`
	Until  time.Time `json:"until"`
}

// TokenArgs are the arguments of token.create. MaxUses left out means the
// default, 1; an explicit 0 is refused.
type TokenArgs struct {
	Name        string `json:"name" flag:"name" help:"unique token name (A-Z a-z 0-9 . _ -)"`
	MaxUses     int    `json:"max_uses,omitempty" flag:"max-uses" default:"1" help:"how many certificates the token may authorise (reissue tokens: 1)"`
	ValidFor    string `json:"valid_for,omitempty" flag:"valid-for" default:"24h" help:"validity (Go duration or days, e.g. 24h, 30d; at most 999d)"`
	Reason      string `json:"reason,omitempty" flag:"reason" help:"why the token exists (goes to the audit log)"`
	ReissueHost string `json:"reissue_host,omitempty" flag:"reissue-host" help:"make a single-use reissue token for this host (NAME or HOSTID)"`
	// BindNames and BindNets bind the token to host names or "*."
	// patterns and to source networks (CIDR or address); see tokens.Binding.
	BindNames []string `json:"bind_names,omitempty" flag:"bind-name" help:"only for this host name or pattern (*.dmz.example.com); repeatable"`
	BindNets  []string `json:"bind_nets,omitempty" flag:"bind-net" help:"only for requests from this network (CIDR or address); repeatable"`
}

// Token is one token as the admin sees it (never its value or hash).
type Token struct {
	Name      string    `json:"name"`
	Kind      string    `json:"kind"`
	HostID    string    `json:"host_id,omitempty"`
	MaxUses   int       `json:"max_uses"`
	Uses      int       `json:"uses"`
	CreatedAt time.Time `json:"created_at"`
	ExpiresAt time.Time `json:"expires_at"`
	Reason    string    `json:"reason,omitempty"`
	State     string    `json:"state"` // live, expired, used_up
	// BindNames and BindNets: the token's bindings, normalised (absent
	// when it is not bound).
	BindNames []string `json:"bind_names,omitempty"`
	BindNets  []string `json:"bind_nets,omitempty"`
}

// CreatedToken answers token.create: the only time the value is shown.
type CreatedToken struct {
	Token
	Value string `json:"value"`
}

// NameArgs name one token.
type NameArgs struct {
	Name string `json:"name" arg:"NAME"`
}

// CountResult answers commands that remove or revoke several things.
type CountResult struct {
	Count int `json:"count"`
}

// CertArgs are the arguments of cert.list: a page of certificates after
// the one with serial After, in issuance order; with Expiring, the current
// certificate of each host that is not revoked and expires within that
// duration (expired ones included), soonest first.
type CertArgs struct {
	Host     string `json:"host,omitempty" flag:"host" help:"only this host (NAME or HOSTID)"`
	Token    string `json:"token,omitempty" flag:"token" help:"only certificates this token authorised"`
	Expiring string `json:"expiring,omitempty" flag:"expiring" help:"only current, unrevoked certificates expiring within this long (30d), expired ones included"`
	After    string `json:"after,omitempty" flag:"after" help:"start after the certificate with this serial"`
	Limit    int    `json:"limit,omitempty"`
}

// Cert is one certificate as the admin sees it.
type Cert struct {
	Serial       string     `json:"serial"`
	HostID       string     `json:"host_id"`
	Names        []string   `json:"names"`
	Kind         string     `json:"kind"`
	TokenName    string     `json:"token,omitempty"`
	IssuedAt     time.Time  `json:"issued_at"`
	NotBefore    time.Time  `json:"not_before"`
	NotAfter     time.Time  `json:"not_after"`
	RevokedAt    *time.Time `json:"revoked_at,omitempty"`
	RevokeReason string     `json:"revoke_reason,omitempty"`
	RenewedFrom  string     `json:"renewed_from,omitempty"` // renewals: the serial presented to renew
	UsedAt       *time.Time `json:"used_at,omitempty"`      // first presented to the primary
	KeyAlg       string     `json:"key_alg,omitempty"`
	Route        string     `json:"route,omitempty"` // direct or tunnel; absent when not recorded
}

// RevokeArgs are the arguments of cert.revoke: Host or Token, and a reason.
type RevokeArgs struct {
	Host   string `json:"host,omitempty" arg:"NAME|HOSTID,optional"`
	Token  string `json:"token,omitempty" flag:"token" help:"revoke every certificate this token authorised"`
	Reason string `json:"reason" flag:"reason" help:"RFC 5280 revocation reason (required)"`
}

// ExplainArgs are the arguments of explain.
type ExplainArgs struct {
	Name string `json:"name" arg:"NAME"`
	From string `json:"from" flag:"from" help:"the address the request would come from"`
	NAT  bool   `json:"nat,omitempty" flag:"nat" help:"the host declares it is behind NAT"`
}

// AuditArgs are the arguments of audit: rows at or after Since with an ID
// above After, oldest first, at most Limit of them (at most MaxAuditRows, and
// fewer when the answer would come near MaxMessage). An empty answer is the
// end; the next page starts after the last row's ID.
type AuditArgs struct {
	Since When  `json:"since" flag:"since" default:"24h" help:"from this time (RFC 3339 or date) or this long ago (24h, 7d)"`
	After int64 `json:"after,omitempty" flag:"after" help:"start after the row with this ID"`
	Limit int   `json:"limit,omitempty"`
}

// AuditEntry is one audit row.
type AuditEntry struct {
	ID        int64          `json:"id"`
	At        time.Time      `json:"at"`
	Actor     string         `json:"actor"`
	Source    string         `json:"source,omitempty"`
	Action    string         `json:"action"`
	Outcome   string         `json:"outcome"`
	Code      string         `json:"code,omitempty"`
	HostID    string         `json:"host_id,omitempty"`
	Name      string         `json:"name,omitempty"`
	TokenName string         `json:"token,omitempty"`
	Detail    map[string]any `json:"detail,omitempty"`
	Node      string         `json:"node,omitempty"` // the primary node that decided it
}

// InventoryArgs are the arguments of inventory: the windows of "expiring"
// and "stale".
type InventoryArgs struct {
	Expiring string `json:"expiring,omitempty" flag:"expiring" default:"30d" help:"count certificates expiring within this long"`
	Stale    string `json:"stale,omitempty" flag:"stale" default:"7d" help:"count hosts not seen for this long"`
}

// InventoryInfo answers inventory: the fleet in numbers.
type InventoryInfo struct {
	Level    protocol.Level `json:"level"`
	At       time.Time      `json:"at"`
	Expiring string         `json:"expiring_window"`
	Stale    string         `json:"stale_window"`
	Hosts    struct {
		WithID       int `json:"with_host_id"`
		Revoked      int `json:"revoked"`
		Stale        int `json:"stale"`
		RegistryOnly int `json:"registry_only"`
	} `json:"hosts"`
	// Certificates: the current certificate of each host.
	Certificates struct {
		Valid    int `json:"valid"`
		Expiring int `json:"expiring"`
		Expired  int `json:"expired"`
		Revoked  int `json:"revoked"`
	} `json:"certificates"`
	// ByRoute and ByKeyAlg count valid current certificates; route
	// "unrecorded" is for certificates issued before routes were recorded.
	ByRoute  map[string]int `json:"by_route"`
	ByKeyAlg map[string]int `json:"by_key_algorithm"`
}
