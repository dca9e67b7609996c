package ca

import (
	"bytes"
	"crypto"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/asn1"
	"errors"
	"net"
	"net/url"
	"reflect"
	"time"
	"unicode/utf8"

	"golang.org/x/crypto/cryptobyte"
	cbasn1 "golang.org/x/crypto/cryptobyte/asn1"
)

// The host certificate's TBSCertificate, encoded directly.
//
// x509.CreateCertificate signs what it encodes and then verifies that
// signature against the signer's public key, a guard against faulty external
// signers. For a P-384 CA held in memory that check costs twice the
// signature itself, so for ECDSA keys the primary encodes the
// TBSCertificate here and signs it once. The encoding reproduces
// CreateCertificate's byte for byte (tbs_test.go compares them for many
// templates) for exactly the fields Template sets; a template with any other
// field set is left to CreateCertificate.

var (
	oidExtKeyUsage         = asn1.ObjectIdentifier{2, 5, 29, 15}
	oidExtExtKeyUsage      = asn1.ObjectIdentifier{2, 5, 29, 37}
	oidExtBasicConstraints = asn1.ObjectIdentifier{2, 5, 29, 19}
	oidExtAuthorityKeyID   = asn1.ObjectIdentifier{2, 5, 29, 35}
	oidExtSubjectKeyID     = asn1.ObjectIdentifier{2, 5, 29, 14}
	oidExtSubjectAltName   = asn1.ObjectIdentifier{2, 5, 29, 17}

	oidECDSAWithSHA256 = asn1.ObjectIdentifier{1, 2, 840, 10045, 4, 3, 2}
	oidECDSAWithSHA384 = asn1.ObjectIdentifier{1, 2, 840, 10045, 4, 3, 3}
	oidECDSAWithSHA512 = asn1.ObjectIdentifier{1, 2, 840, 10045, 4, 3, 4}
)

// extKeyUsageOIDs are the extended key usages the encoder knows (RFC 5280
// §4.2.1.12); any other leaves the template to x509.
var extKeyUsageOIDs = map[x509.ExtKeyUsage]asn1.ObjectIdentifier{
	x509.ExtKeyUsageAny:             {2, 5, 29, 37, 0},
	x509.ExtKeyUsageServerAuth:      {1, 3, 6, 1, 5, 5, 7, 3, 1},
	x509.ExtKeyUsageClientAuth:      {1, 3, 6, 1, 5, 5, 7, 3, 2},
	x509.ExtKeyUsageCodeSigning:     {1, 3, 6, 1, 5, 5, 7, 3, 3},
	x509.ExtKeyUsageEmailProtection: {1, 3, 6, 1, 5, 5, 7, 3, 4},
	x509.ExtKeyUsageTimeStamping:    {1, 3, 6, 1, 5, 5, 7, 3, 8},
	x509.ExtKeyUsageOCSPSigning:     {1, 3, 6, 1, 5, 5, 7, 3, 9},
}

// errUnsupportedTemplate: the template sets a field encodeTBS does not
// encode; x509.CreateCertificate must build it.
var errUnsupportedTemplate = errors.New("template needs the general encoder")

// emptySubject is the DER of an empty Name.
var emptySubject = []byte{0x30, 0}

// directTemplate reports whether tmpl sets only fields encodeTBS encodes, as
// Template builds them.
func directTemplate(tmpl *x509.Certificate) bool {
	if tmpl.IsCA || tmpl.MaxPathLen != 0 || tmpl.MaxPathLenZero || tmpl.SerialNumber == nil || tmpl.SerialNumber.Sign() < 0 {
		return false
	}
	if !reflect.DeepEqual(tmpl.Subject, pkix.Name{CommonName: tmpl.Subject.CommonName}) {
		return false
	}
	for _, u := range tmpl.ExtKeyUsage {
		if _, ok := extKeyUsageOIDs[u]; !ok {
			return false
		}
	}
	// Everything else must be unset.
	rest := *tmpl
	rest.SerialNumber, rest.Subject, rest.NotBefore, rest.NotAfter = nil, pkix.Name{}, time.Time{}, time.Time{}
	rest.KeyUsage, rest.ExtKeyUsage, rest.BasicConstraintsValid = 0, nil, false
	rest.DNSNames, rest.IPAddresses, rest.URIs = nil, nil, nil
	rest.SubjectKeyId = nil
	rest.SignatureAlgorithm = 0
	return reflect.DeepEqual(rest, x509.Certificate{})
}

// encodeTBS encodes the TBSCertificate x509.CreateCertificate(rand, tmpl,
// parent, pub, key) would sign with a key whose signature algorithm
// identifier is sigAlg (an ECDSA OID: no parameters). It returns
// errUnsupportedTemplate when directTemplate(tmpl) is false.
func encodeTBS(tmpl, parent *x509.Certificate, pub crypto.PublicKey, sigAlg asn1.ObjectIdentifier) ([]byte, error) {
	if !directTemplate(tmpl) {
		return nil, errUnsupportedTemplate
	}
	spki, err := x509.MarshalPKIXPublicKey(pub)
	if err != nil {
		return nil, err
	}
	subject, err := asn1.Marshal(tmpl.Subject.ToRDNSequence())
	if err != nil {
		return nil, err
	}
	issuer := parent.RawSubject
	if len(issuer) == 0 {
		if issuer, err = asn1.Marshal(parent.Subject.ToRDNSequence()); err != nil {
			return nil, err
		}
	}
	var aki []byte
	if !bytes.Equal(issuer, subject) && len(parent.SubjectKeyId) > 0 {
		aki = parent.SubjectKeyId
	}
	san, err := sanValue(tmpl.DNSNames, tmpl.IPAddresses, tmpl.URIs)
	if err != nil {
		return nil, err
	}

	b := cryptobyte.NewBuilder(make([]byte, 0, 768+len(spki)+len(san)))
	b.AddASN1(cbasn1.SEQUENCE, func(b *cryptobyte.Builder) {
		b.AddASN1(cbasn1.Tag(0).Constructed().ContextSpecific(), func(b *cryptobyte.Builder) {
			b.AddASN1Int64(2) // v3
		})
		b.AddASN1BigInt(tmpl.SerialNumber)
		b.AddASN1(cbasn1.SEQUENCE, func(b *cryptobyte.Builder) { b.AddASN1ObjectIdentifier(sigAlg) })
		b.AddBytes(issuer)
		b.AddASN1(cbasn1.SEQUENCE, func(b *cryptobyte.Builder) {
			addTime(b, tmpl.NotBefore)
			addTime(b, tmpl.NotAfter)
		})
		b.AddBytes(subject)
		b.AddBytes(spki)
		exts := tmpl.KeyUsage != 0 || len(tmpl.ExtKeyUsage) > 0 || tmpl.BasicConstraintsValid || len(tmpl.SubjectKeyId) > 0 || aki != nil || san != nil
		if !exts {
			return
		}
		b.AddASN1(cbasn1.Tag(3).Constructed().ContextSpecific(), func(b *cryptobyte.Builder) {
			b.AddASN1(cbasn1.SEQUENCE, func(b *cryptobyte.Builder) {
				if tmpl.KeyUsage != 0 {
					addExtension(b, oidExtKeyUsage, true, func(v *cryptobyte.Builder) { v.AddBytes(keyUsageValue(tmpl.KeyUsage)) })
				}
				if len(tmpl.ExtKeyUsage) > 0 {
					addExtension(b, oidExtExtKeyUsage, false, func(v *cryptobyte.Builder) {
						v.AddASN1(cbasn1.SEQUENCE, func(v *cryptobyte.Builder) {
							for _, u := range tmpl.ExtKeyUsage {
								v.AddASN1ObjectIdentifier(extKeyUsageOIDs[u])
							}
						})
					})
				}
				if tmpl.BasicConstraintsValid {
					// Not a CA, no path length: an empty SEQUENCE.
					addExtension(b, oidExtBasicConstraints, true, func(v *cryptobyte.Builder) { v.AddBytes([]byte{0x30, 0}) })
				}
				if len(tmpl.SubjectKeyId) > 0 {
					addExtension(b, oidExtSubjectKeyID, false, func(v *cryptobyte.Builder) { v.AddASN1OctetString(tmpl.SubjectKeyId) })
				}
				if aki != nil {
					addExtension(b, oidExtAuthorityKeyID, false, func(v *cryptobyte.Builder) {
						v.AddASN1(cbasn1.SEQUENCE, func(v *cryptobyte.Builder) {
							v.AddASN1(cbasn1.Tag(0).ContextSpecific(), func(v *cryptobyte.Builder) { v.AddBytes(aki) })
						})
					})
				}
				if san != nil {
					// RFC 5280 §4.2.1.6: critical when the subject is empty.
					addExtension(b, oidExtSubjectAltName, bytes.Equal(subject, emptySubject), func(v *cryptobyte.Builder) { v.AddBytes(san) })
				}
			})
		})
	})
	return b.Bytes()
}

// addTime adds t as x509 does: UTCTime from 1950 to 2049, GeneralizedTime
// otherwise, in UTC, to the second.
func addTime(b *cryptobyte.Builder, t time.Time) {
	t = t.UTC().Truncate(time.Second)
	if t.Year() < 1950 || t.Year() >= 2050 {
		b.AddASN1GeneralizedTime(t)
		return
	}
	b.AddASN1UTCTime(t)
}

// addExtension adds one Extension (RFC 5280 §4.1) whose value value adds:
// critical is omitted when false (DER leaves out a default value).
func addExtension(b *cryptobyte.Builder, id asn1.ObjectIdentifier, critical bool, value cryptobyte.BuilderContinuation) {
	b.AddASN1(cbasn1.SEQUENCE, func(b *cryptobyte.Builder) {
		b.AddASN1ObjectIdentifier(id)
		if critical {
			b.AddASN1Boolean(true)
		}
		b.AddASN1(cbasn1.OCTET_STRING, value)
	})
}

// keyUsageValue is the KeyUsage BIT STRING: bit 0 (digitalSignature) is the
// most significant bit of the first byte; trailing zero bits are not
// counted.
func keyUsageValue(ku x509.KeyUsage) []byte {
	ku &= 0xffff
	bits := []byte{reverseBits(byte(ku)), reverseBits(byte(ku >> 8))}
	if bits[1] == 0 {
		bits = bits[:1]
	}
	last := bits[len(bits)-1] // not zero: ku != 0 and has no bits above 15
	unused := 0
	for last&(1<<unused) == 0 {
		unused++
	}
	return append([]byte{0x03, byte(1 + len(bits)), byte(unused)}, bits...)
}

func reverseBits(b byte) byte {
	var r byte
	for i := 0; i < 8; i++ {
		r = r<<1 | b&1
		b >>= 1
	}
	return r
}

// sanValue is the SubjectAltName value: DNS names, then IP addresses (IPv4
// in 4 bytes), then URIs; nil when there are none. Names that are not
// IA5Strings leave the template to x509 (which refuses them).
func sanValue(dns []string, ips []net.IP, uris []*url.URL) ([]byte, error) {
	if len(dns) == 0 && len(ips) == 0 && len(uris) == 0 {
		return nil, nil
	}
	for _, n := range dns {
		if !ascii(n) {
			return nil, errUnsupportedTemplate
		}
	}
	uriStrs := make([]string, len(uris))
	for i, u := range uris {
		uriStrs[i] = u.String()
		if !ascii(uriStrs[i]) {
			return nil, errUnsupportedTemplate
		}
	}
	b := cryptobyte.NewBuilder(make([]byte, 0, 256))
	b.AddASN1(cbasn1.SEQUENCE, func(b *cryptobyte.Builder) {
		for _, n := range dns {
			b.AddASN1(cbasn1.Tag(2).ContextSpecific(), func(b *cryptobyte.Builder) { b.AddBytes([]byte(n)) })
		}
		for _, ip := range ips {
			if v4 := ip.To4(); v4 != nil {
				ip = v4
			}
			b.AddASN1(cbasn1.Tag(7).ContextSpecific(), func(b *cryptobyte.Builder) { b.AddBytes(ip) })
		}
		for _, u := range uriStrs {
			b.AddASN1(cbasn1.Tag(6).ContextSpecific(), func(b *cryptobyte.Builder) { b.AddBytes([]byte(u)) })
		}
	})
	return b.Bytes()
}

func ascii(s string) bool {
	for i := 0; i < len(s); i++ {
		if s[i] >= utf8.RuneSelf {
			return false
		}
	}
	return true
}
