package protocol

import (
	"crypto/sha256"
	"encoding/hex"
	"time"
)

// CRLETag is the strong entity tag under which the primary serves the
// DER CRL der at PathCRL (the PEM form's is the same with "-pem"): a hash of
// the bytes, so that a holder of a CRL can ask for it conditionally
// (If-None-Match) without having stored the tag, and two primary nodes
// serving the same bytes give the same tag.
func CRLETag(der []byte) string {
	sum := sha256.Sum256(der)
	return `"` + hex.EncodeToString(sum[:16]) + `"`
}

// CRLETagPEM is the entity tag of the PEM form of the DER CRL der.
func CRLETagPEM(der []byte) string {
	sum := sha256.Sum256(der)
	return `"` + hex.EncodeToString(sum[:16]) + `-pem"`
}

// CRLMaxAge bounds how long an HTTP cache may reuse a CRL answer without
// asking the primary again (Cache-Control max-age; never beyond the CRL's
// next update): revocations reach such caches within it.
const CRLMaxAge = time.Minute
