package protocol

import "fmt"

// Code is a stable, machine-readable refusal code (SPEC §9). Never renumber or
// rename one: agents and scripts branch on them.
type Code string

// Refusal codes.
const (
	CodeTokenRequired        Code = "token_required"
	CodeReissueTokenRequired Code = "reissue_token_required"
	CodeTokenInvalid         Code = "token_invalid"
	CodeHostRevoked          Code = "host_revoked"
	CodeNotVerified          Code = "not_verified"
	CodeRateLimited          Code = "rate_limited"
	CodeBadRequest           Code = "bad_request"
	CodeBodyTooLarge         Code = "body_too_large"
	CodeBadCSR               Code = "bad_csr"
	CodeNameNotAllowed       Code = "name_not_allowed"
	CodeNameReserved         Code = "name_reserved"          // a name of the primary, loopback, an IP literal or a token-like value
	CodeNameConflict         Code = "name_conflict"          // a name asked for is approved for another host ID
	CodeTooManyPendingNames  Code = "too_many_pending_names" // the host would hold more names waiting for approval than allowed
	CodeCertExpired          Code = "cert_expired"
	CodeCertSuperseded       Code = "cert_superseded" // a renewal with a certificate that is not the host's current one
	CodeClientCertRequired   Code = "client_cert_required"
	CodeNotFound             Code = "not_found"
	CodeMethodNotAllowed     Code = "method_not_allowed"
	CodeUnavailable          Code = "unavailable"
	CodeStoreUnavailable     Code = "store_unavailable" // the primary cannot reach its database: fails closed, retry later (Retry-After)
	CodeInternal             Code = "internal"
)

// Error is the JSON body of every refusal from the primary.
type Error struct {
	Code     Code      `json:"code"`
	Message  string    `json:"message"`
	Decision *Decision `json:"decision,omitempty"`
}

func (e *Error) Error() string { return fmt.Sprintf("%s: %s", e.Code, e.Message) }

// Is lets errors.Is match on the code alone: errors.Is(err, &protocol.Error{Code: protocol.CodeTokenRequired}).
func (e *Error) Is(target error) bool {
	t, ok := target.(*Error)
	return ok && t.Code == e.Code
}
