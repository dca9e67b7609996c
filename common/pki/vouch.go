package pki

import (
	"bytes"
	"crypto/x509"
	"slices"
	"time"
)

// Vouched returns the roots of offered that trusted does not hold but
// vouches for: a root R is vouched for when offered also carries a cross
// certificate — a CA certificate valid at now with R's subject and R's
// public key — whose signature verifies under a trusted root (or under a
// root vouched for before it, so a chain of rotations is followed). Nothing
// else is ever added: a root that no trusted root signed stays out,
// whatever channel offered came over. Callers pass only what they got over
// a channel they verified against trusted.
func Vouched(trusted, offered []*x509.Certificate, now time.Time) []*x509.Certificate {
	known := slices.Clone(trusted)
	var out []*x509.Certificate
	for changed := true; changed; {
		changed = false
		for _, r := range Roots(offered) {
			if slices.ContainsFunc(known, r.Equal) || now.After(r.NotAfter) || now.Before(r.NotBefore) {
				continue
			}
			if vouchedBy(r, offered, known, now) {
				known = append(known, r)
				out = append(out, r)
				changed = true
			}
		}
	}
	return out
}

func vouchedBy(root *x509.Certificate, offered, known []*x509.Certificate, now time.Time) bool {
	for _, x := range offered {
		if x.Equal(root) || !x.IsCA || !x.BasicConstraintsValid || now.After(x.NotAfter) || now.Before(x.NotBefore) ||
			!bytes.Equal(x.RawSubject, root.RawSubject) || !samePublicKey(x, root) {
			continue
		}
		for _, k := range known {
			if bytes.Equal(x.RawIssuer, k.RawSubject) && x.CheckSignatureFrom(k) == nil {
				return true
			}
		}
	}
	return false
}

func samePublicKey(a, b *x509.Certificate) bool {
	return bytes.Equal(a.RawSubjectPublicKeyInfo, b.RawSubjectPublicKeyInfo)
}

// Kept returns the roots of trusted that stay trusted after the primary
// listed offered (its whole CA bundle, fetched over a channel verified
// against trusted): a root offered no longer lists was retired by the
// primary and is dropped, except a root of anchors (those this host's
// certificate chains to) — and when offered lists none of trusted, all of
// trusted stays (that list cannot speak for them), so the result is never
// empty while trusted is not. The order of trusted is kept.
func Kept(trusted, offered, anchors []*x509.Certificate) []*x509.Certificate {
	listed := Roots(offered)
	if !slices.ContainsFunc(trusted, func(r *x509.Certificate) bool { return slices.ContainsFunc(listed, r.Equal) }) {
		return slices.Clone(trusted)
	}
	var out []*x509.Certificate
	for _, r := range trusted {
		if slices.ContainsFunc(listed, r.Equal) || slices.ContainsFunc(anchors, r.Equal) {
			out = append(out, r)
		}
	}
	return out
}
