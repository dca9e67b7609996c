// Package health is the one verdict on this host's certificate that both
// `self-check` and `status` print: good, bad, or cannot tell, a pure
// function of the certificate, the trust store, the stored CRL and the
// clock. The verdict maps to self-check's exit code (0, 2, 1).
package health

import (
	"crypto/x509"
	"errors"
	"fmt"
	"time"

	"github.com/hostcert/hostcert/agent/internal/renew"
	"github.com/hostcert/hostcert/common/pki"
)

// Verdict is the health of the certificate.
type Verdict string

// Verdicts and their exit codes.
const (
	Good    Verdict = "good"        // exit 0
	Unknown Verdict = "cannot tell" // exit 1: no certificate, no trust store, no usable CRL
	Bad     Verdict = "bad"         // exit 2: revoked, expired, not yet valid, or not from the trusted CA
)

// ExitCode is self-check's exit code for v.
func (v Verdict) ExitCode() int {
	switch v {
	case Good:
		return 0
	case Bad:
		return 2
	}
	return 1
}

// Input is what the verdict is computed from. Nil means "there is none".
type Input struct {
	Cert        *x509.Certificate
	CAs         []*x509.Certificate // the trust store
	CRL         *x509.RevocationList
	Now         time.Time
	RenewBefore time.Duration
}

// Report is the verdict and the facts behind it (status --json "health",
// self-check --json).
type Report struct {
	Verdict  Verdict `json:"verdict"`
	ExitCode int     `json:"exit_code"`
	// Reason is one sentence: what is wrong and what to do (or "ok").
	Reason string `json:"reason"`

	HostID    string    `json:"host_id,omitempty"`
	Serial    string    `json:"serial,omitempty"`
	NotBefore time.Time `json:"not_before,omitzero"`
	NotAfter  time.Time `json:"not_after,omitzero"`
	Expired   bool      `json:"expired"`
	// ChainsToTrustedCA: the certificate verifies against the trust store now.
	ChainsToTrustedCA bool      `json:"chains_to_trusted_ca"`
	Revoked           bool      `json:"revoked"`
	RevokedAt         time.Time `json:"revoked_at,omitzero"`
	RenewalDue        bool      `json:"renewal_due"`
	RenewalAt         time.Time `json:"renewal_at,omitzero"`

	CRLPresent bool `json:"crl_present"`
	// CRLSignedByTrustedCA: the stored CRL verifies against the trust store.
	CRLSignedByTrustedCA bool      `json:"crl_signed_by_trusted_ca"`
	CRLStale             bool      `json:"crl_stale"` // past its next update
	CRLThisUpdate        time.Time `json:"crl_this_update,omitzero"`
	CRLNextUpdate        time.Time `json:"crl_next_update,omitzero"`
}

// Check computes the verdict. Bad wins over cannot-tell: a certificate that
// is expired, not yet valid, not from the trusted CA, or listed on a CRL the
// trusted CA signed (even a stale one: revocation is final) is bad. Else no
// certificate, no trust store, no CRL, a CRL the trusted CA did not sign or
// a CRL past its next update is cannot-tell. Else good (a renewal being due
// is good: the renewal loop handles it).
func Check(in Input) Report {
	r := check(in)
	r.ExitCode = r.Verdict.ExitCode()
	return r
}

func check(in Input) Report {
	var r Report
	c := in.Cert
	if c == nil {
		r.Verdict, r.Reason = Unknown, "no certificate: run get-cert"
		return r
	}
	r.HostID, r.Serial = pki.HostIDFromCert(c), renew.Serial(c.SerialNumber)
	r.NotBefore, r.NotAfter = c.NotBefore, c.NotAfter
	r.RenewalAt = renew.DueFor(c, in.RenewBefore)
	r.RenewalDue = !in.Now.Before(r.RenewalAt)
	r.Expired = !in.Now.Before(c.NotAfter)
	if in.CRL != nil {
		r.CRLPresent = true
		r.CRLThisUpdate, r.CRLNextUpdate = in.CRL.ThisUpdate, in.CRL.NextUpdate
		r.CRLStale = !in.CRL.NextUpdate.IsZero() && in.Now.After(in.CRL.NextUpdate)
		r.CRLSignedByTrustedCA = signedByOneOf(in.CRL, in.CAs)
		if r.CRLSignedByTrustedCA {
			for _, e := range in.CRL.RevokedCertificateEntries {
				if e.SerialNumber.Cmp(c.SerialNumber) == 0 {
					r.Revoked, r.RevokedAt = true, e.RevocationTime
				}
			}
		}
	}
	var chainErr error
	if len(in.CAs) > 0 {
		chainErr = chains(c, in.CAs, in.Now)
		r.ChainsToTrustedCA = chainErr == nil
	}
	const reissue = "run get-cert with a reissue token"
	switch {
	case r.Expired:
		r.Verdict, r.Reason = Bad, fmt.Sprintf("certificate %s expired at %s: %s", r.Serial, stamp(c.NotAfter), reissue)
	case in.Now.Before(c.NotBefore):
		r.Verdict, r.Reason = Bad, fmt.Sprintf("certificate %s is not valid before %s: check this host's clock", r.Serial, stamp(c.NotBefore))
	case r.Revoked:
		r.Verdict, r.Reason = Bad, fmt.Sprintf("certificate %s is REVOKED (since %s): %s", r.Serial, stamp(r.RevokedAt), reissue)
	case len(in.CAs) > 0 && !r.ChainsToTrustedCA:
		r.Verdict, r.Reason = Bad, fmt.Sprintf("certificate %s (issuer %q) does not chain to the trusted CA: %s; run get-cert with a token from the primary this host trusts", r.Serial, c.Issuer.String(), short(chainErr))
	case len(in.CAs) == 0:
		r.Verdict, r.Reason = Unknown, "no trust store: run get-ca-cert"
	case !r.CRLPresent:
		r.Verdict, r.Reason = Unknown, "no CRL: run get-crl"
	case !r.CRLSignedByTrustedCA:
		r.Verdict, r.Reason = Unknown, "the stored CRL is not signed by the trusted CA: run get-crl"
	case r.CRLStale:
		r.Verdict, r.Reason = Unknown, fmt.Sprintf("the stored CRL is past its next update (%s): run get-crl", stamp(in.CRL.NextUpdate))
	case r.RenewalDue:
		r.Verdict, r.Reason = Good, "ok, renewal due (run renews it; or run renew)"
	default:
		r.Verdict, r.Reason = Good, "ok"
	}
	return r
}

func chains(c *x509.Certificate, cas []*x509.Certificate, now time.Time) error {
	roots := x509.NewCertPool()
	for _, ca := range cas {
		roots.AddCert(ca)
	}
	_, err := c.Verify(x509.VerifyOptions{Roots: roots, CurrentTime: now, KeyUsages: []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth}})
	return err
}

func signedByOneOf(crl *x509.RevocationList, cas []*x509.Certificate) bool {
	for _, ca := range cas {
		if crl.CheckSignatureFrom(ca) == nil {
			return true
		}
	}
	return false
}

// short is a verification error without x509's long explanations.
func short(err error) string {
	var ua x509.UnknownAuthorityError
	if errors.As(err, &ua) {
		return "signed by an unknown authority"
	}
	return err.Error()
}

func stamp(t time.Time) string { return t.UTC().Format(time.RFC3339) }
