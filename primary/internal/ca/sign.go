package ca

import (
	"crypto"
	"crypto/ecdsa"
	"crypto/rand"
	"crypto/x509"
	"encoding/asn1"
	"errors"
	"fmt"

	"golang.org/x/crypto/cryptobyte"
	cbasn1 "golang.org/x/crypto/cryptobyte/asn1"
)

// signECDSA issues tmpl for pub, signed by key whose certificate is parent:
// the TBSCertificate is encoded directly (tbs.go) and signed once, without
// x509.CreateCertificate's verification of its own signature, which for a
// P-384 CA costs twice the signature. A template that encodeTBS does not
// cover goes through x509.CreateCertificate.
func signECDSA(tmpl, parent *x509.Certificate, pub crypto.PublicKey, key *ecdsa.PrivateKey) ([]byte, error) {
	alg, hash, std, err := ecdsaAlgorithm(key)
	if err != nil {
		return nil, err
	}
	tbs := []byte(nil)
	if tmpl.SignatureAlgorithm == x509.UnknownSignatureAlgorithm || tmpl.SignatureAlgorithm == std {
		tbs, err = encodeTBS(tmpl, parent, pub, alg)
	} else {
		err = errUnsupportedTemplate // another hash than the curve's: x509 knows
	}
	if errors.Is(err, errUnsupportedTemplate) {
		return x509.CreateCertificate(rand.Reader, tmpl, parent, pub, key)
	}
	if err != nil {
		return nil, fmt.Errorf("encode certificate: %w", err)
	}
	h := hash.New()
	h.Write(tbs)
	sig, err := ecdsa.SignASN1(rand.Reader, key, h.Sum(nil))
	if err != nil {
		return nil, fmt.Errorf("sign certificate: %w", err)
	}
	var b cryptobyte.Builder
	b.AddASN1(cbasn1.SEQUENCE, func(b *cryptobyte.Builder) {
		b.AddBytes(tbs)
		b.AddASN1(cbasn1.SEQUENCE, func(b *cryptobyte.Builder) { b.AddASN1ObjectIdentifier(alg) })
		b.AddASN1BitString(sig)
	})
	return b.Bytes()
}

// ecdsaAlgorithm is the signature algorithm x509 uses by default for an
// ECDSA key's curve: its OID (no parameters), hash and x509 constant.
func ecdsaAlgorithm(key *ecdsa.PrivateKey) (asn1.ObjectIdentifier, crypto.Hash, x509.SignatureAlgorithm, error) {
	switch key.Curve.Params().BitSize {
	case 256:
		return oidECDSAWithSHA256, crypto.SHA256, x509.ECDSAWithSHA256, nil
	case 384:
		return oidECDSAWithSHA384, crypto.SHA384, x509.ECDSAWithSHA384, nil
	case 521:
		return oidECDSAWithSHA512, crypto.SHA512, x509.ECDSAWithSHA512, nil
	}
	return nil, 0, 0, errors.New("sign: unsupported ECDSA curve")
}
