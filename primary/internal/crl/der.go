package crl

import (
	"bytes"
	"fmt"
	"math/big"
	"time"

	"golang.org/x/crypto/cryptobyte"
	"golang.org/x/crypto/cryptobyte/asn1"
)

// oidAuthorityKeyID is id-ce-authorityKeyIdentifier (2.5.29.35), encoded.
var oidAuthorityKeyID = []byte{0x55, 0x1d, 0x23}

// authorityKeyID is the key identifier of the authority key identifier
// extension of the certificate der, or nil when it has none or der is no
// certificate. It reads only the structure on the way to the extension
// (x509.ParseCertificate would decode every field and the public key: most
// of the time of a CRL of 100,000 entries).
func authorityKeyID(der []byte) []byte {
	in := cryptobyte.String(der)
	var cert, tbs cryptobyte.String
	if !in.ReadASN1(&cert, asn1.SEQUENCE) || !cert.ReadASN1(&tbs, asn1.SEQUENCE) {
		return nil
	}
	if !tbs.SkipOptionalASN1(asn1.Tag(0).Constructed().ContextSpecific()) || // version
		!tbs.SkipASN1(asn1.INTEGER) { // serial
		return nil
	}
	for range 5 { // signature algorithm, issuer, validity, subject, public key
		if !tbs.SkipASN1(asn1.SEQUENCE) {
			return nil
		}
	}
	if !tbs.SkipOptionalASN1(asn1.Tag(1).ContextSpecific()) || // issuerUniqueID
		!tbs.SkipOptionalASN1(asn1.Tag(2).ContextSpecific()) { // subjectUniqueID
		return nil
	}
	var wrapped, exts cryptobyte.String
	var present bool
	if !tbs.ReadOptionalASN1(&wrapped, &present, asn1.Tag(3).Constructed().ContextSpecific()) || !present ||
		!wrapped.ReadASN1(&exts, asn1.SEQUENCE) {
		return nil
	}
	for !exts.Empty() {
		var ext, oid, value cryptobyte.String
		if !exts.ReadASN1(&ext, asn1.SEQUENCE) || !ext.ReadASN1(&oid, asn1.OBJECT_IDENTIFIER) {
			return nil
		}
		if !bytes.Equal(oid, oidAuthorityKeyID) {
			continue
		}
		var aki, keyID cryptobyte.String
		if !ext.SkipOptionalASN1(asn1.BOOLEAN) || !ext.ReadASN1(&value, asn1.OCTET_STRING) ||
			!value.ReadASN1(&aki, asn1.SEQUENCE) {
			return nil
		}
		if !aki.ReadOptionalASN1(&keyID, &present, asn1.Tag(0).ContextSpecific()) || !present || len(keyID) == 0 {
			return nil
		}
		return bytes.Clone(keyID)
	}
	return nil
}

// oidCRLNumber is id-ce-cRLNumber (2.5.29.20), encoded.
var oidCRLNumber = []byte{0x55, 0x1d, 0x14}

// header is what the publisher shows of a signed CRL.
type header struct {
	number           *big.Int
	entries          int
	thisUpdate, next time.Time
}

// readHeader reads a CRL's number, dates and entry count, skipping over
// the entries instead of decoding them (x509.ParseRevocationList would
// build a Go value for each of 100,000 entries only to count them).
func readHeader(der []byte) (header, error) {
	var h header
	bad := func(what string) (header, error) { return header{}, fmt.Errorf("malformed CRL: %s", what) }
	in := cryptobyte.String(der)
	var list, tbs cryptobyte.String
	if !in.ReadASN1(&list, asn1.SEQUENCE) || !list.ReadASN1(&tbs, asn1.SEQUENCE) {
		return bad("no tbsCertList")
	}
	if tbs.PeekASN1Tag(asn1.INTEGER) && !tbs.SkipASN1(asn1.INTEGER) {
		return bad("version")
	}
	if !tbs.SkipASN1(asn1.SEQUENCE) || !tbs.SkipASN1(asn1.SEQUENCE) {
		return bad("signature algorithm or issuer")
	}
	var ok bool
	if h.thisUpdate, ok = readTime(&tbs); !ok {
		return bad("thisUpdate")
	}
	if tbs.PeekASN1Tag(asn1.UTCTime) || tbs.PeekASN1Tag(asn1.GeneralizedTime) {
		if h.next, ok = readTime(&tbs); !ok {
			return bad("nextUpdate")
		}
	}
	if tbs.PeekASN1Tag(asn1.SEQUENCE) {
		var revoked cryptobyte.String
		if !tbs.ReadASN1(&revoked, asn1.SEQUENCE) {
			return bad("revokedCertificates")
		}
		for !revoked.Empty() {
			if !revoked.SkipASN1(asn1.SEQUENCE) {
				return bad("revoked certificate entry")
			}
			h.entries++
		}
	}
	var wrapped, exts cryptobyte.String
	var present bool
	if !tbs.ReadOptionalASN1(&wrapped, &present, asn1.Tag(0).Constructed().ContextSpecific()) {
		return bad("crlExtensions")
	}
	if present && !wrapped.ReadASN1(&exts, asn1.SEQUENCE) {
		return bad("crlExtensions")
	}
	for !exts.Empty() {
		var ext, oid, value cryptobyte.String
		if !exts.ReadASN1(&ext, asn1.SEQUENCE) || !ext.ReadASN1(&oid, asn1.OBJECT_IDENTIFIER) {
			return bad("extension")
		}
		if !bytes.Equal(oid, oidCRLNumber) {
			continue
		}
		h.number = new(big.Int)
		if !ext.SkipOptionalASN1(asn1.BOOLEAN) || !ext.ReadASN1(&value, asn1.OCTET_STRING) || !value.ReadASN1Integer(h.number) {
			return bad("CRL number")
		}
	}
	return h, nil
}

func readTime(s *cryptobyte.String) (time.Time, bool) {
	var t time.Time
	if s.PeekASN1Tag(asn1.UTCTime) {
		return t, s.ReadASN1UTCTime(&t)
	}
	return t, s.ReadASN1GeneralizedTime(&t)
}
