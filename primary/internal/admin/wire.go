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

// CAInfo answers ca.show.
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
}

// LevelArgs are the arguments of level.set.
type LevelArgs struct {
	Level protocol.Level `json:"level"`
}

// LevelInfo answers level.get and level.set.
type LevelInfo struct {
	Level             protocol.Level `json:"level"`
	CRLRefreshSeconds int64          `json:"crl_refresh_seconds"`
}

// NamesArgs are the arguments of host.add.
type NamesArgs struct {
	Names []string `json:"names"`
}

// AddResult answers host.add.
type AddResult struct {
	Added int `json:"added"`
	Total int `json:"total"`
}

// HostArgs name one host by name or host ID.
type HostArgs struct {
	Host string `json:"host"`
}

// Host is one row of host.list.
type Host struct {
	ID           string     `json:"host_id,omitempty"`
	Name         string     `json:"name"`
	Known        bool       `json:"known"`
	CreatedAt    *time.Time `json:"created_at,omitempty"`
	RevokedAt    *time.Time `json:"revoked_at,omitempty"`
	ReissueUntil *time.Time `json:"reissue_until,omitempty"`
}

// HostDetail answers host.show.
type HostDetail struct {
	Host
	Certificates []Cert `json:"certificates"`
}

// WindowArgs are the arguments of host.allow-reissue.
type WindowArgs struct {
	Host string `json:"host"`
	For  string `json:"for,omitempty"` // duration; default 48h, at most 30 days
}

// WindowResult answers host.allow-reissue.
type WindowResult struct {
	HostID string    `json:"host_id"`
	Name   string    `json:"name"`
	Until  time.Time `json:"until"`
}

// TokenArgs are the arguments of token.create. MaxUses 0 (absent) means the
// default, 1; the CLI refuses an explicit --max-uses 0.
type TokenArgs struct {
	Name        string `json:"name"`
	MaxUses     int    `json:"max_uses,omitempty"`
	ValidFor    string `json:"valid_for,omitempty"`
	Reason      string `json:"reason,omitempty"`
	ReissueHost string `json:"reissue_host,omitempty"`
	// BindNames and BindNets bind the token to host names or "*."
	// patterns and to source networks (CIDR or address); see tokens.Binding.
	BindNames []string `json:"bind_names,omitempty"`
	BindNets  []string `json:"bind_nets,omitempty"`
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
	Name string `json:"name"`
}

// CountResult answers commands that remove or revoke several things.
type CountResult struct {
	Count int `json:"count"`
}

// CertArgs are the arguments of cert.list.
type CertArgs struct {
	Host  string `json:"host,omitempty"`
	Token string `json:"token,omitempty"`
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
}

// RevokeArgs are the arguments of cert.revoke: Host or Token, and a reason.
type RevokeArgs struct {
	Host   string `json:"host,omitempty"`
	Token  string `json:"token,omitempty"`
	Reason string `json:"reason"`
}

// ExplainArgs are the arguments of explain.
type ExplainArgs struct {
	Name string `json:"name"`
	From string `json:"from"`
	NAT  bool   `json:"nat,omitempty"`
}

// AuditArgs are the arguments of audit: rows at or after Since with an ID
// above After, oldest first, at most Limit of them (at most MaxAuditRows, and
// fewer when the answer would come near MaxMessage). An empty answer is the
// end; the next page starts after the last row's ID.
type AuditArgs struct {
	Since time.Time `json:"since"`
	After int64     `json:"after,omitempty"`
	Limit int       `json:"limit,omitempty"`
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
}
