package enroll

import (
	"crypto/x509"
	"fmt"
	"strings"

	"github.com/hostcert/hostcert/common/pki"
)

// TrustChangeError is returned by Bootstrap when a trust store exists and
// the primary offers a CA that shares no certificate with it: trust never
// switches without Confirm.Replace. Nothing is written.
type TrustChangeError struct {
	Trusted []string // fingerprints in the trust store
	Offered []string // fingerprints the primary offers
}

func (e *TrustChangeError) Error() string {
	return fmt.Sprintf("this host trusts CA %s, the primary offers CA %s: trust not switched, nothing written; to move this host to that primary pass --replace (docs/agent.md, moving a host)",
		strings.Join(e.Trusted, ", "), strings.Join(e.Offered, ", "))
}

// SameCA reports whether offered continues trusted: it carries at least one
// certificate of trusted (a CA rotation serves the new CA and the old one).
func SameCA(trusted, offered []*x509.Certificate) bool {
	for _, o := range offered {
		for _, t := range trusted {
			if o.Equal(t) {
				return true
			}
		}
	}
	return false
}

func fingerprints(certs []*x509.Certificate) []string {
	out := make([]string, 0, len(certs))
	for _, c := range certs {
		out = append(out, pki.Fingerprint(c))
	}
	return out
}
