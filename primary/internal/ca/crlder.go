package ca

import (
	"crypto/ecdsa"
	"crypto/rand"
	"crypto/x509"
	"encoding/asn1"
	"errors"
	"fmt"
	"math/big"
	"time"

	"golang.org/x/crypto/cryptobyte"
	cbasn1 "golang.org/x/crypto/cryptobyte/asn1"
)

// The CRL, encoded directly.
//
// x509.CreateRevocationList builds a pkix struct per entry and marshals the
// whole list by reflection: for 100,000 revoked certificates it holds about
// 110 MB of live heap while it works, which is most of the primary's peak
// memory with a large fleet. For ECDSA keys (the default issuing CA and
// root) the primary encodes the TBSCertList here, entry by entry into one
// buffer (a few megabytes), and signs it once. The encoding reproduces
// CreateRevocationList's byte for byte (crlder_test.go compares them);
// other keys go through x509.

var oidExtCRLNumber = asn1.ObjectIdentifier{2, 5, 29, 20}

// crlEntryBytes is about what one entry takes in DER: serial (up to 20
// bytes), time, reason extension, and their headers.
const crlEntryBytes = 48

// signCRLECDSA signs the CRL of issuer listing entries (already checked and
// filtered for issuer) with key.
func signCRLECDSA(issuer *x509.Certificate, key *ecdsa.PrivateKey, entries []RevokedEntry, number *big.Int, thisUpdate, nextUpdate time.Time) ([]byte, error) {
	alg, hash, _, err := ecdsaAlgorithm(key)
	if err != nil {
		return nil, err
	}
	tbs, err := encodeTBSCertList(issuer, alg, entries, number, thisUpdate, nextUpdate)
	if err != nil {
		return nil, err
	}
	h := hash.New()
	h.Write(tbs)
	sig, err := ecdsa.SignASN1(rand.Reader, key, h.Sum(nil))
	if err != nil {
		return nil, fmt.Errorf("sign crl: %w", err)
	}
	b := cryptobyte.NewBuilder(make([]byte, 0, len(tbs)+len(sig)+32))
	b.AddASN1(cbasn1.SEQUENCE, func(b *cryptobyte.Builder) {
		b.AddBytes(tbs)
		b.AddASN1(cbasn1.SEQUENCE, func(b *cryptobyte.Builder) { b.AddASN1ObjectIdentifier(alg) })
		b.AddASN1BitString(sig)
	})
	return b.Bytes()
}

// encodeTBSCertList is the TBSCertList (RFC 5280 §5.1) that
// x509.CreateRevocationList encodes for the same issuer, signature
// algorithm (ECDSA: no parameters), entries, number and dates: v2, the
// authority key identifier and CRL number extensions, an entry's reason
// code extension only when the reason is not 0 (unspecified).
func encodeTBSCertList(issuer *x509.Certificate, sigAlg asn1.ObjectIdentifier, entries []RevokedEntry, number *big.Int, thisUpdate, nextUpdate time.Time) ([]byte, error) {
	switch {
	case issuer.KeyUsage&x509.KeyUsageCRLSign == 0:
		return nil, errors.New("crl: the issuer lacks the cRLSign key usage")
	case len(issuer.SubjectKeyId) == 0:
		return nil, errors.New("crl: the issuer has no subject key identifier")
	case nextUpdate.Before(thisUpdate):
		return nil, errors.New("crl: next update before this update")
	case number == nil || number.Sign() < 0:
		return nil, errors.New("crl: number must be non-negative")
	}
	if nb := number.Bytes(); len(nb) > 20 || (len(nb) == 20 && nb[0]&0x80 != 0) {
		return nil, errors.New("crl: number exceeds 20 octets")
	}
	issuerName := issuer.RawSubject
	if len(issuerName) == 0 {
		var err error
		if issuerName, err = asn1.Marshal(issuer.Subject.ToRDNSequence()); err != nil {
			return nil, fmt.Errorf("crl: issuer name: %w", err)
		}
	}
	for _, e := range entries {
		if e.Serial == nil {
			return nil, errors.New("crl: entry without a serial")
		}
		if e.RevokedAt.IsZero() {
			return nil, fmt.Errorf("crl: serial %s: no revocation time", SerialHex(e.Serial))
		}
		if e.Reason < 0 || e.Reason > 0x7f {
			return nil, fmt.Errorf("crl: serial %s: %w %d", SerialHex(e.Serial), ErrUnknownReason, e.Reason)
		}
	}
	b := cryptobyte.NewBuilder(make([]byte, 0, 256+len(issuerName)+crlEntryBytes*len(entries)))
	b.AddASN1(cbasn1.SEQUENCE, func(b *cryptobyte.Builder) {
		b.AddASN1Int64(1) // v2
		b.AddASN1(cbasn1.SEQUENCE, func(b *cryptobyte.Builder) { b.AddASN1ObjectIdentifier(sigAlg) })
		b.AddBytes(issuerName)
		addTime(b, thisUpdate)
		addTime(b, nextUpdate)
		if len(entries) > 0 {
			b.AddBytes(revokedCertificates(entries))
		}
		b.AddASN1(cbasn1.Tag(0).Constructed().ContextSpecific(), func(b *cryptobyte.Builder) {
			b.AddASN1(cbasn1.SEQUENCE, func(b *cryptobyte.Builder) {
				addExtension(b, oidExtAuthorityKeyID, false, func(v *cryptobyte.Builder) {
					v.AddASN1(cbasn1.SEQUENCE, func(v *cryptobyte.Builder) {
						v.AddASN1(cbasn1.Tag(0).ContextSpecific(), func(v *cryptobyte.Builder) { v.AddBytes(issuer.SubjectKeyId) })
					})
				})
				addExtension(b, oidExtCRLNumber, false, func(v *cryptobyte.Builder) { v.AddASN1BigInt(number) })
			})
		})
	})
	return b.Bytes()
}

// revokedCertificates is the DER of the revokedCertificates SEQUENCE:
// each entry is appended by hand into one buffer (no builder, closure or
// big.Int.Bytes per entry), then the whole gets its header.
func revokedCertificates(entries []RevokedEntry) []byte {
	body := make([]byte, 0, crlEntryBytes*len(entries))
	var entry []byte
	for _, e := range entries {
		entry = entry[:0]
		// serial: INTEGER, positive (checked by signCRL)
		n := (e.Serial.BitLen() + 7) / 8
		var serial [32]byte
		pad := 0
		if n == 0 || e.Serial.BitLen()%8 == 0 { // the top bit is set: a 0 byte keeps it positive
			pad = 1
		}
		if n <= len(serial)-1 {
			e.Serial.FillBytes(serial[pad : pad+n])
			entry = appendTLV(entry, 0x02, serial[:pad+n])
		} else { // longer than any serial we issue: the general way
			entry = appendTLV(entry, 0x02, append(make([]byte, pad), e.Serial.Bytes()...))
		}
		entry = appendTime(entry, e.RevokedAt)
		if e.Reason != 0 {
			// crlEntryExtensions { Extension { reasonCode, OCTET STRING { ENUMERATED reason } } }
			// (reasons are 1 to 10: one content byte)
			entry = append(entry, 0x30, 0x0c, 0x30, 0x0a, 0x06, 0x03, 0x55, 0x1d, 0x15, 0x04, 0x03, 0x0a, 0x01, byte(e.Reason))
		}
		body = appendTLV(body, 0x30, entry)
	}
	return appendTLV(make([]byte, 0, len(body)+8), 0x30, body)
}

// appendTLV appends a DER tag, the length of value in its shortest form,
// and value.
func appendTLV(b []byte, tag byte, value []byte) []byte {
	b = append(b, tag)
	switch n := len(value); {
	case n < 0x80:
		b = append(b, byte(n))
	case n <= 0xff:
		b = append(b, 0x81, byte(n))
	case n <= 0xffff:
		b = append(b, 0x82, byte(n>>8), byte(n))
	case n <= 0xffffff:
		b = append(b, 0x83, byte(n>>16), byte(n>>8), byte(n))
	default:
		b = append(b, 0x84, byte(n>>24), byte(n>>16), byte(n>>8), byte(n))
	}
	return append(b, value...)
}

// appendTime appends t as x509 encodes a time: UTCTime from 1950 to 2049,
// GeneralizedTime otherwise, in UTC, to the second.
func appendTime(b []byte, t time.Time) []byte {
	t = t.UTC()
	var buf [16]byte
	if t.Year() < 1950 || t.Year() >= 2050 {
		return appendTLV(b, 0x18, t.AppendFormat(buf[:0], "20060102150405Z"))
	}
	return appendTLV(b, 0x17, t.AppendFormat(buf[:0], "060102150405Z"))
}
