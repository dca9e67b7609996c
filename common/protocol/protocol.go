// Package protocol holds the wire contract between hostcert-agent and
// hostcert-primary: endpoint paths, request and response bodies, deployment
// security levels and the stable refusal codes of SPEC §9.
package protocol

import (
	"fmt"
	"time"
)

// DefaultPort is the API port of the primary and of the tunnel.
const DefaultPort = 1556

// Endpoint paths of the primary's HTTPS API.
const (
	PathCA     = "/v1/ca"     // GET, public: PEM: the roots (current first), cross-signed roots, the issuing CAs (current first)
	PathCRL    = "/v1/crl"    // GET, public: DER CRL of the current issuing CA, or ?issuer=ID of any CA; PEM with Accept: application/x-pem-file or ?format=pem
	PathInfo   = "/v1/info"   // GET, public: Info
	PathEnroll = "/v1/enroll" // POST EnrollRequest -> CertResponse: issue or reissue, token optional
	PathRenew  = "/v1/renew"  // POST RenewRequest over mutual TLS with the current certificate -> CertResponse
	// Health of a primary node, for load balancers (not versioned: they
	// answer the operator's infrastructure, not agents).
	PathHealthz = "/healthz" // GET: 200 while the process serves
	PathReadyz  = "/readyz"  // GET: 200 when the store answers and the CA is loaded, else 503 store_unavailable
)

// CRLIssuerParam selects the CRL of one CA at PathCRL: its ID, the hex of
// the first 8 bytes of its subject key identifier (pki.KeyID).
const CRLIssuerParam = "issuer"

// MaxBodyBytes bounds every request body the primary reads.
const MaxBodyBytes = 1 << 20

// Level is the primary's deployment security level (SPEC §4).
type Level string

// The three deployment security levels.
const (
	LevelVeryHigh Level = "very-high"
	LevelHigh     Level = "high"
	LevelMedium   Level = "medium"
)

// DefaultLevel is the level a new primary starts with.
const DefaultLevel = LevelHigh

// ParseLevel accepts exactly the three level names.
func ParseLevel(s string) (Level, error) {
	switch l := Level(s); l {
	case LevelVeryHigh, LevelHigh, LevelMedium:
		return l, nil
	}
	return "", fmt.Errorf("unknown security level %q (want very-high, high or medium)", s)
}

// CRLRefresh is how often an agent refreshes its CRL at this level (SPEC §6).
func (l Level) CRLRefresh() time.Duration {
	switch l {
	case LevelVeryHigh:
		return time.Hour
	case LevelMedium:
		return 8 * time.Hour
	default:
		return 4 * time.Hour
	}
}

// RequestKind says what an enrollment request is (SPEC §4).
type RequestKind string

// The request kinds.
const (
	KindIssue   RequestKind = "issue"
	KindReissue RequestKind = "reissue"
	KindRenew   RequestKind = "renew"
)

// TokenState describes the token presented with a request, as the decision saw it.
type TokenState string

// Token states. A request without a token is TokenNone.
const (
	TokenNone      TokenState = "none"
	TokenValid     TokenState = "valid"
	TokenInvalid   TokenState = "invalid"         // unknown value; never says whether a name exists
	TokenExpired   TokenState = "expired"         // known, past its validity
	TokenUsedUp    TokenState = "used_up"         // known, no uses left
	TokenWrongKind TokenState = "wrong_kind"      // a standard token presented for a reissue
	TokenWrongHost TokenState = "wrong_host"      // a reissue token made for another host
	TokenOutside   TokenState = "outside_binding" // a live token bound to other host names or source networks
)

// EnrollRequest asks for a first certificate (issue) or a new one for a host
// that already has a host ID (reissue). The primary decides which it is.
type EnrollRequest struct {
	// Name is the host's DNS name, the certificate's DNS SAN.
	Name string `json:"name"`
	// HostID, when set, names the host to reissue for; Name must then match it.
	HostID string `json:"host_id,omitempty"`
	// CSR is a PEM "CERTIFICATE REQUEST" signed by the host's new key.
	CSR string `json:"csr"`
	// Token is the authorization token value, when the host has one.
	Token string `json:"token,omitempty"`
	// NAT declares that the host is behind NAT: it can never be verified.
	NAT bool `json:"nat,omitempty"`
}

// RenewRequest asks for a new certificate for the host whose current
// certificate authenticated the mutual-TLS connection.
type RenewRequest struct {
	CSR string `json:"csr"`
}

// Decision is the primary's answer to "does this request need a token?",
// with every fact that led to it (SPEC §4: level, known, verified, NAT, token state).
type Decision struct {
	Kind       RequestKind `json:"kind"`
	Level      Level       `json:"level"`
	Known      bool        `json:"known"`
	Verified   bool        `json:"verified"`
	DNSChecked bool        `json:"dns_checked"`   // DNS was consulted for this request
	DNS        string      `json:"dns,omitempty"` // what DNS answered, or why it was not consulted
	NAT        bool        `json:"nat"`
	Window     bool        `json:"auto_reissue_window"`
	NeedToken  bool        `json:"need_token"`
	TokenState TokenState  `json:"token_state"`
	Granted    bool        `json:"granted"`
	Code       Code        `json:"code,omitempty"` // refusal code when not granted
	Reason     string      `json:"reason"`         // one human sentence
}

// CertResponse is the answer to a granted enroll or renew.
type CertResponse struct {
	HostID string   `json:"host_id"`
	Names  []string `json:"names"` // approved names only
	// PendingNames are names the host asked for that wait for an admin's
	// approval (SPEC §8); a later renewal carries them once approved.
	PendingNames      []string  `json:"pending_names,omitempty"`
	Serial            string    `json:"serial"` // upper-case hex
	NotBefore         time.Time `json:"not_before"`
	NotAfter          time.Time `json:"not_after"`
	Certificate       string    `json:"certificate"` // PEM, leaf only
	Chain             string    `json:"chain"`       // PEM, the CA certificates between the leaf and a root (the issuing CA)
	CABundle          string    `json:"ca_bundle"`   // PEM, every CA certificate
	Level             Level     `json:"level"`
	CRLRefreshSeconds int64     `json:"crl_refresh_seconds"`
	Decision          Decision  `json:"decision"`
}

// Info is the primary's public, unauthenticated self-description.
type Info struct {
	Level             Level     `json:"level"`
	CRLRefreshSeconds int64     `json:"crl_refresh_seconds"`
	CAFingerprints    []string  `json:"ca_fingerprints"`
	Time              time.Time `json:"time"`
}
