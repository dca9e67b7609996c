package pki

import (
	"bytes"
	"crypto"
	"crypto/sha256"
	"crypto/x509"
	"encoding/hex"
	"encoding/pem"
	"net/url"
	"strings"
	"testing"
)

func TestFingerprintFormat(t *testing.T) {
	der := []byte("not really a certificate")
	sum := sha256.Sum256(der)
	want := strings.ToUpper(hex.EncodeToString(sum[:]))
	got := FingerprintDER(der)
	if strings.ReplaceAll(got, ":", "") != want || len(got) != 64+31 {
		t.Fatalf("FingerprintDER = %s, want colon-separated %s", got, want)
	}
	for _, in := range []string{got, strings.ToLower(got), want, "sha256:" + strings.ToLower(want), " " + got + "\n"} {
		n, err := NormalizeFingerprint(in)
		if err != nil || n != got {
			t.Errorf("NormalizeFingerprint(%q) = %q, %v, want %q", in, n, err, got)
		}
	}
	for _, bad := range []string{"", "AB:CD", want[:62], want + "00", strings.Repeat("ZZ", 32)} {
		if _, err := NormalizeFingerprint(bad); err == nil {
			t.Errorf("NormalizeFingerprint(%q) = nil error, want an error", bad)
		}
	}
}

func TestCSRRoundTrip(t *testing.T) {
	for _, alg := range []KeyAlgorithm{ECDSAP256, RSA2048} {
		key, err := GenerateKey(alg)
		if err != nil {
			t.Fatal(err)
		}
		csrPEM, err := CreateCSR(key, "web1.example.test")
		if err != nil {
			t.Fatal(err)
		}
		csr, err := ParseCSR(csrPEM)
		if err != nil {
			t.Fatalf("ParseCSR(%s) = %v, want nil", alg, err)
		}
		if len(csr.DNSNames) != 1 || csr.DNSNames[0] != "web1.example.test" {
			t.Errorf("csr.DNSNames = %v, want [web1.example.test]", csr.DNSNames)
		}
		keyPEM, err := EncodeKey(key)
		if err != nil {
			t.Fatal(err)
		}
		back, err := ParseKey(keyPEM)
		if err != nil {
			t.Fatalf("ParseKey = %v", err)
		}
		if !back.Public().(interface{ Equal(crypto.PublicKey) bool }).Equal(key.Public()) {
			t.Errorf("ParseKey(EncodeKey(k)) is a different key")
		}
	}
}

func TestParseCSRRejectsTamperedSignature(t *testing.T) {
	key, _ := GenerateKey(ECDSAP256)
	other, _ := GenerateKey(ECDSAP256)
	good, _ := CreateCSR(key, "a.test")
	csr, err := ParseCSR(good)
	if err != nil {
		t.Fatal(err)
	}
	otherPEM, _ := CreateCSR(other, "a.test")
	oc, _ := ParseCSR(otherPEM)
	// Swap in another public key of the same size: the signature no longer matches.
	raw := bytes.Clone(csr.Raw)
	idx := bytes.Index(raw, csr.RawSubjectPublicKeyInfo)
	if idx < 0 || len(oc.RawSubjectPublicKeyInfo) != len(csr.RawSubjectPublicKeyInfo) {
		t.Fatal("test setup: cannot locate the public key in the CSR")
	}
	copy(raw[idx:], oc.RawSubjectPublicKeyInfo)
	tampered := pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE REQUEST", Bytes: raw})
	if _, err := ParseCSR(tampered); err == nil {
		t.Error("ParseCSR(csr with swapped key) = nil error, want a signature error")
	}
	if _, err := ParseCSR([]byte("garbage")); err == nil {
		t.Error("ParseCSR(garbage) = nil error, want an error")
	}
}

func TestHostURI(t *testing.T) {
	u := HostURI("5f0c")
	if u.String() != "urn:hostcert:host:5f0c" {
		t.Errorf("HostURI = %s, want urn:hostcert:host:5f0c", u)
	}
	c := &x509.Certificate{URIs: []*url.URL{u}}
	if got := HostIDFromCert(c); got != "5f0c" {
		t.Errorf("HostIDFromCert = %q, want 5f0c", got)
	}
}

func TestAlgorithmOf(t *testing.T) {
	for _, alg := range []KeyAlgorithm{ECDSAP256, ECDSAP384, RSA2048} {
		key, err := GenerateKey(alg)
		if err != nil {
			t.Fatal(err)
		}
		if got := AlgorithmOf(key); got != alg {
			t.Errorf("AlgorithmOf(%s key) = %q, want %q", alg, got, alg)
		}
	}
}
