// Package health is the one verdict on this host's certificate that both
// `self-check` and `status` print: good, bad, or cannot tell, a pure
// function of the certificate, the trust store, the stored CRL and the
// clock. The verdict maps to self-check's exit code (0, 2, 1).
package health

import (
	"crypto/x509"
	"errors"
	"fmt"
	"slices"
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
	Chain       []*x509.Certificate // the issuing CA(s) stored with the certificate
	CAs         []*x509.Certificate // the trust store (roots)
	CRL         *x509.RevocationList
	RootCRL     *x509.RevocationList // the root's CRL: needed when an issuing CA signed Cert
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
	// IssuingCARevoked: the root's CRL lists the issuing CA of the certificate.
	IssuingCARevoked bool `json:"issuing_ca_revoked,omitempty"`
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
		r.CRLSignedByTrustedCA = signedByOneOf(in.CRL, append(slices.Clone(in.CAs), verifiedIssuers(in.Chain, in.CAs)...))
		if r.CRLSignedByTrustedCA {
			for _, e := range in.CRL.RevokedCertificateEntries {
				if e.SerialNumber.Cmp(c.SerialNumber) == 0 {
					r.Revoked, r.RevokedAt = true, e.RevocationTime
				}
			}
		}
	}
	var (
		chainErr error
		issuing  *x509.Certificate // the issuing CA of a verified chain, nil when a root signed c
	)
	if len(in.CAs) > 0 {
		issuing, chainErr = chains(c, in.Chain, in.CAs, in.Now)
		r.ChainsToTrustedCA = chainErr == nil
	}
	rootCRLOK := issuing == nil
	if issuing != nil && in.RootCRL != nil && signedByOneOf(in.RootCRL, in.CAs) {
		rootCRLOK = in.Now.Before(in.RootCRL.NextUpdate) || in.RootCRL.NextUpdate.IsZero()
		for _, e := range in.RootCRL.RevokedCertificateEntries {
			if e.SerialNumber.Cmp(issuing.SerialNumber) == 0 {
				r.IssuingCARevoked = true
			}
		}
	}
	const reissue = "run get-cert with a reissue token"
	switch {
	case r.Expired:
		r.Verdict, r.Reason = Bad, fmt.Sprintf("certificate %s expired at %s: %s", r.Serial, stamp(c.NotAfter), reissue)
	case in.Now.Before(c.NotBefore):
		r.Verdict, r.Reason = Bad, fmt.Sprintf("certificate %s is not valid before %s: check this host's clock", r.Serial, stamp(c.NotBefore))
	case r.Revoked:
		r.Verdict, r.Reason = Bad, fmt.Sprintf("certificate %s is REVOKED (since %s): %s", r.Serial, stamp(r.RevokedAt), reissue)
	case r.IssuingCARevoked:
		r.Verdict, r.Reason = Bad, fmt.Sprintf("the issuing CA %q of certificate %s is REVOKED by its root: %s", issuing.Subject.CommonName, r.Serial, reissue)
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
	case !rootCRLOK:
		r.Verdict, r.Reason = Unknown, "no current CRL of the root (it says whether the issuing CA is revoked): run get-crl"
	case r.RenewalDue:
		r.Verdict, r.Reason = Good, "ok, renewal due (run renews it; or run renew)"
	default:
		r.Verdict, r.Reason = Good, "ok"
	}
	return r
}

// chains verifies c against the roots cas through chain; it returns the
// issuing CA of the verified chain (nil when a root signed c).
func chains(c *x509.Certificate, chain, cas []*x509.Certificate, now time.Time) (*x509.Certificate, error) {
	roots, inter := x509.NewCertPool(), x509.NewCertPool()
	for _, ca := range cas {
		roots.AddCert(ca)
	}
	for _, ca := range chain {
		inter.AddCert(ca)
	}
	got, err := c.Verify(x509.VerifyOptions{Roots: roots, Intermediates: inter, CurrentTime: now, KeyUsages: []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth}})
	if err != nil {
		return nil, err
	}
	if len(got[0]) > 2 {
		return got[0][1], nil
	}
	return nil, nil
}

// verifiedIssuers keeps the certificates of chain that a root of cas signed.
func verifiedIssuers(chain, cas []*x509.Certificate) []*x509.Certificate {
	var out []*x509.Certificate
	for _, c := range chain {
		for _, r := range cas {
			if c.IsCA && c.CheckSignatureFrom(r) == nil {
				out = append(out, c)
				break
			}
		}
	}
	return out
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
