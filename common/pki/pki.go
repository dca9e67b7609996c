// Package pki holds the certificate plumbing shared by the primary and the
// agent: key generation, CSRs, PEM encoding and the CA fingerprint format.
package pki

import (
	"bytes"
	"crypto"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/rsa"
	"crypto/sha256"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/hex"
	"encoding/pem"
	"errors"
	"fmt"
	"strings"
)

// KeyAlgorithm names a key type and size.
type KeyAlgorithm string

// Supported key algorithms.
const (
	ECDSAP256 KeyAlgorithm = "ecdsa-p256"
	ECDSAP384 KeyAlgorithm = "ecdsa-p384"
	RSA2048   KeyAlgorithm = "rsa-2048"
	RSA3072   KeyAlgorithm = "rsa-3072"
	RSA4096   KeyAlgorithm = "rsa-4096"
)

// ParseKeyAlgorithm accepts the names above.
func ParseKeyAlgorithm(s string) (KeyAlgorithm, error) {
	switch a := KeyAlgorithm(strings.ToLower(s)); a {
	case ECDSAP256, ECDSAP384, RSA2048, RSA3072, RSA4096:
		return a, nil
	}
	return "", fmt.Errorf("unknown key algorithm %q (want ecdsa-p256, ecdsa-p384, rsa-2048, rsa-3072 or rsa-4096)", s)
}

// GenerateKey makes a new private key of the given algorithm.
func GenerateKey(alg KeyAlgorithm) (crypto.Signer, error) {
	switch alg {
	case ECDSAP256:
		return ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	case ECDSAP384:
		return ecdsa.GenerateKey(elliptic.P384(), rand.Reader)
	case RSA2048:
		return rsa.GenerateKey(rand.Reader, 2048)
	case RSA3072:
		return rsa.GenerateKey(rand.Reader, 3072)
	case RSA4096:
		return rsa.GenerateKey(rand.Reader, 4096)
	}
	return nil, fmt.Errorf("generate key: unknown algorithm %q", alg)
}

// AlgorithmOf names key's algorithm, or "" for a key of another kind or size.
func AlgorithmOf(key crypto.Signer) KeyAlgorithm { return PublicKeyAlgorithm(key.Public()) }

// PublicKeyAlgorithm names the algorithm of a public key (e.g. a
// certificate's), or "" for a key of another kind or size.
func PublicKeyAlgorithm(pub crypto.PublicKey) KeyAlgorithm {
	switch k := pub.(type) {
	case *ecdsa.PublicKey:
		switch k.Curve {
		case elliptic.P256():
			return ECDSAP256
		case elliptic.P384():
			return ECDSAP384
		}
	case *rsa.PublicKey:
		switch k.N.BitLen() {
		case 2048:
			return RSA2048
		case 3072:
			return RSA3072
		case 4096:
			return RSA4096
		}
	}
	return ""
}

// CreateCSR makes a PEM certificate request for name and any more names
// (the host's other names it asks the primary for), signed by key.
func CreateCSR(key crypto.Signer, name string, more ...string) ([]byte, error) {
	tmpl := &x509.CertificateRequest{
		Subject:  pkix.Name{CommonName: name},
		DNSNames: append([]string{name}, more...),
	}
	der, err := x509.CreateCertificateRequest(rand.Reader, tmpl, key)
	if err != nil {
		return nil, fmt.Errorf("create csr for %s: %w", name, err)
	}
	return pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE REQUEST", Bytes: der}), nil
}

// ParseCSR decodes one PEM certificate request and checks its signature, so
// a CSR whose key does not match its signature is refused here.
func ParseCSR(data []byte) (*x509.CertificateRequest, error) {
	block, _ := pem.Decode(data)
	if block == nil || block.Type != "CERTIFICATE REQUEST" && block.Type != "NEW CERTIFICATE REQUEST" {
		return nil, errors.New("parse csr: no PEM CERTIFICATE REQUEST block")
	}
	csr, err := x509.ParseCertificateRequest(block.Bytes)
	if err != nil {
		return nil, fmt.Errorf("parse csr: %w", err)
	}
	if err := csr.CheckSignature(); err != nil {
		return nil, fmt.Errorf("csr signature: %w", err)
	}
	return csr, nil
}

// EncodeCert returns one certificate as PEM.
func EncodeCert(c *x509.Certificate) []byte {
	return pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: c.Raw})
}

// EncodeCerts returns a PEM bundle of the certificates, in order.
func EncodeCerts(certs []*x509.Certificate) []byte {
	var b bytes.Buffer
	for _, c := range certs {
		b.Write(EncodeCert(c))
	}
	return b.Bytes()
}

// ParseCerts decodes every CERTIFICATE block of a PEM bundle. It fails when
// there is none or when anything but certificates and whitespace is present.
func ParseCerts(data []byte) ([]*x509.Certificate, error) {
	var out []*x509.Certificate
	rest := data
	for {
		var block *pem.Block
		block, rest = pem.Decode(rest)
		if block == nil {
			break
		}
		if block.Type != "CERTIFICATE" {
			return nil, fmt.Errorf("parse certificates: unexpected PEM block %q", block.Type)
		}
		c, err := x509.ParseCertificate(block.Bytes)
		if err != nil {
			return nil, fmt.Errorf("parse certificates: %w", err)
		}
		out = append(out, c)
	}
	if len(bytes.TrimSpace(rest)) != 0 {
		return nil, errors.New("parse certificates: trailing data that is not PEM")
	}
	if len(out) == 0 {
		return nil, errors.New("parse certificates: no CERTIFICATE block")
	}
	return out, nil
}

// EncodeKey returns a private key as PKCS#8 PEM.
func EncodeKey(key crypto.Signer) ([]byte, error) {
	der, err := x509.MarshalPKCS8PrivateKey(key)
	if err != nil {
		return nil, fmt.Errorf("encode key: %w", err)
	}
	return pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: der}), nil
}

// ParseKey decodes a PKCS#8, EC or PKCS#1 PEM private key.
func ParseKey(data []byte) (crypto.Signer, error) {
	block, _ := pem.Decode(data)
	if block == nil {
		return nil, errors.New("parse key: no PEM block")
	}
	var (
		k   any
		err error
	)
	switch block.Type {
	case "PRIVATE KEY":
		k, err = x509.ParsePKCS8PrivateKey(block.Bytes)
	case "EC PRIVATE KEY":
		k, err = x509.ParseECPrivateKey(block.Bytes)
	case "RSA PRIVATE KEY":
		k, err = x509.ParsePKCS1PrivateKey(block.Bytes)
	default:
		return nil, fmt.Errorf("parse key: unexpected PEM block %q", block.Type)
	}
	if err != nil {
		return nil, fmt.Errorf("parse key: %w", err)
	}
	s, ok := k.(crypto.Signer)
	if !ok {
		return nil, fmt.Errorf("parse key: %T is not a signing key", k)
	}
	return s, nil
}

// Fingerprint is the SHA-256 of the certificate's DER as colon-separated
// upper-case hex (SPEC §2), e.g. "AB:01:...".
func Fingerprint(c *x509.Certificate) string { return FingerprintDER(c.Raw) }

// FingerprintDER is Fingerprint of raw DER bytes.
func FingerprintDER(der []byte) string {
	sum := sha256.Sum256(der)
	return formatHex(sum[:])
}

// NormalizeFingerprint accepts a SHA-256 fingerprint typed by a person — any
// case, with or without colons or spaces, optionally prefixed "sha256:" — and
// returns it in the canonical form of Fingerprint.
func NormalizeFingerprint(s string) (string, error) {
	t := strings.TrimSpace(s)
	if len(t) > 7 && strings.EqualFold(t[:7], "sha256:") {
		t = t[7:]
	}
	t = strings.NewReplacer(":", "", " ", "", "-", "").Replace(t)
	raw, err := hex.DecodeString(t)
	if err != nil || len(raw) != sha256.Size {
		return "", fmt.Errorf("fingerprint %q is not a SHA-256 hex digest (64 hex digits, colons optional)", s)
	}
	return formatHex(raw), nil
}

func formatHex(raw []byte) string {
	h := strings.ToUpper(hex.EncodeToString(raw))
	var b strings.Builder
	for i := 0; i < len(h); i += 2 {
		if i > 0 {
			b.WriteByte(':')
		}
		b.WriteString(h[i : i+2])
	}
	return b.String()
}

// KeyID names a CA by its key, in file names and at the CRL endpoint: the
// hex of the first 8 bytes of a key identifier — a CA's subject key
// identifier, or the authority key identifier of what it signed.
func KeyID(id []byte) string {
	if len(id) > 8 {
		id = id[:8]
	}
	return fmt.Sprintf("%x", id)
}

// Roots keeps the self-signed CA certificates of certs (the roots a host
// may trust), in order.
func Roots(certs []*x509.Certificate) []*x509.Certificate {
	var out []*x509.Certificate
	for _, c := range certs {
		if c.IsCA && bytes.Equal(c.RawIssuer, c.RawSubject) && c.CheckSignatureFrom(c) == nil {
			out = append(out, c)
		}
	}
	return out
}
