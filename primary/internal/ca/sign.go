package ca

import (
	"crypto"
	"crypto/ecdsa"
	"crypto/rand"
	"crypto/x509"
	"encoding/asn1"
	"errors"
	"fmt"
	"sync"

	"github.com/hostcert/hostcert/common/pki"
)

// x509.CreateCertificate verifies every signature it makes against the
// signer's public key, a guard against faulty external signers. For a P-384
// CA that verification costs twice the signature itself and was a third of
// the primary's CPU per enrollment. With an ECDSA CA key held in memory the
// primary signs instead as follows: Go's encoder builds the TBSCertificate
// with a throwaway P-256 stand-in key in the parent's place (its own cheap
// signature and check are discarded; the issuer name, authority key ID and
// signature algorithm come from the real CA certificate), and the CA key
// signs that TBSCertificate once. RSA keys keep the standard path: a faulty
// RSA signature can leak the key, so there the check is worth its cost.

// standIn is the throwaway key the encoder signs with.
var standIn = sync.OnceValues(func() (crypto.Signer, error) { return pki.GenerateKey(pki.ECDSAP256) })

// signECDSA issues tmpl for pub, signed by key whose certificate is parent.
func signECDSA(tmpl, parent *x509.Certificate, pub crypto.PublicKey, key *ecdsa.PrivateKey) ([]byte, error) {
	alg, hash, err := ecdsaAlgorithm(key)
	if err != nil {
		return nil, err
	}
	stand, err := standIn()
	if err != nil {
		return nil, err
	}
	t := *tmpl
	t.SignatureAlgorithm = alg
	p := *parent
	p.PublicKey = stand.Public()
	draft, err := x509.CreateCertificate(rand.Reader, &t, &p, pub, stand)
	if err != nil {
		return nil, err
	}
	var cert struct {
		TBS       asn1.RawValue
		Algorithm asn1.RawValue
		Signature asn1.BitString
	}
	if rest, err := asn1.Unmarshal(draft, &cert); err != nil || len(rest) != 0 {
		return nil, fmt.Errorf("re-sign: decode draft certificate: %v", err)
	}
	h := hash.New()
	h.Write(cert.TBS.FullBytes)
	sig, err := ecdsa.SignASN1(rand.Reader, key, h.Sum(nil))
	if err != nil {
		return nil, fmt.Errorf("re-sign: %w", err)
	}
	cert.Signature = asn1.BitString{Bytes: sig, BitLength: 8 * len(sig)}
	return asn1.Marshal(cert)
}

// ecdsaAlgorithm is the signature algorithm x509 uses for an ECDSA key's curve.
func ecdsaAlgorithm(key *ecdsa.PrivateKey) (x509.SignatureAlgorithm, crypto.Hash, error) {
	switch key.Curve.Params().BitSize {
	case 256:
		return x509.ECDSAWithSHA256, crypto.SHA256, nil
	case 384:
		return x509.ECDSAWithSHA384, crypto.SHA384, nil
	case 521:
		return x509.ECDSAWithSHA512, crypto.SHA512, nil
	}
	return 0, 0, errors.New("re-sign: unsupported ECDSA curve")
}
