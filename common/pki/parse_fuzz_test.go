package pki

import (
	"bytes"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"math/big"
	"strings"
	"testing"
	"time"
)

// fuzzSeeds are real PEM objects of each kind the parsers take, plus
// their truncations, so the fuzzer starts inside the interesting space.
func fuzzSeeds(f *testing.F) [][]byte {
	f.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		f.Fatal(err)
	}
	csr, err := CreateCSR(key, "web01.example.com")
	if err != nil {
		f.Fatal(err)
	}
	keyPEM, err := EncodeKey(key)
	if err != nil {
		f.Fatal(err)
	}
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "seed"},
		NotBefore: time.Unix(0, 0), NotAfter: time.Unix(1<<31, 0),
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, key.Public(), key)
	if err != nil {
		f.Fatal(err)
	}
	cert := pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der})
	seeds := [][]byte{csr, keyPEM, cert, append(append([]byte{}, cert...), cert...), []byte("garbage"), nil}
	for _, s := range [][]byte{csr, keyPEM, cert} {
		seeds = append(seeds, s[:len(s)/2], bytes.Replace(s, []byte("CERTIFICATE"), []byte("NEW CERTIFICATE REQUEST"), 1))
	}
	return seeds
}

// FuzzParseCSR: a CSR that parses has a good signature, and parsing never
// panics on hostile bytes.
func FuzzParseCSR(f *testing.F) {
	for _, s := range fuzzSeeds(f) {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		csr, err := ParseCSR(data)
		if err != nil {
			return
		}
		if err := csr.CheckSignature(); err != nil {
			t.Fatalf("ParseCSR(%q) accepted a CSR whose signature fails: %v", data, err)
		}
	})
}

// FuzzParseCerts: a bundle that parses yields certificates whose re-encoding
// parses to the same certificates.
func FuzzParseCerts(f *testing.F) {
	for _, s := range fuzzSeeds(f) {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		certs, err := ParseCerts(data)
		if err != nil {
			return
		}
		if len(certs) == 0 {
			t.Fatalf("ParseCerts(%q) = no certificates and no error", data)
		}
		again, err := ParseCerts(EncodeCerts(certs))
		if err != nil || len(again) != len(certs) {
			t.Fatalf("re-parse of %d certificates = %d, %v", len(certs), len(again), err)
		}
		for i := range certs {
			if !certs[i].Equal(again[i]) {
				t.Fatalf("certificate %d changed in a round trip", i)
			}
		}
	})
}

// FuzzParseKey: a key that parses can sign, and re-encodes to a key that
// parses to the same public key.
func FuzzParseKey(f *testing.F) {
	for _, s := range fuzzSeeds(f) {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		k, err := ParseKey(data)
		if err != nil {
			return
		}
		enc, err := EncodeKey(k)
		if err != nil {
			return // a parsed key PKCS#8 cannot hold is refused on write, not a crash
		}
		k2, err := ParseKey(enc)
		if err != nil {
			t.Fatalf("re-parse of an encoded key: %v", err)
		}
		type equaler interface{ Equal(x any) bool }
		if e, ok := k.Public().(equaler); ok && !e.Equal(k2.Public()) {
			t.Fatal("public key changed in a round trip")
		}
	})
}

// FuzzNormalizeFingerprint: an accepted fingerprint is canonical (64 hex
// digits, upper case, colon-separated) and normalising it again is a no-op.
func FuzzNormalizeFingerprint(f *testing.F) {
	fp := FingerprintDER([]byte("seed"))
	for _, s := range []string{fp, strings.ToLower(fp), strings.ReplaceAll(fp, ":", ""), "sha256:" + fp, " " + fp + " ", "SHA256:" + strings.ReplaceAll(fp, ":", " "), "", "zz", fp[:10]} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		n, err := NormalizeFingerprint(s)
		if err != nil {
			return
		}
		if len(n) != 95 || strings.ToUpper(n) != n || strings.Count(n, ":") != 31 {
			t.Fatalf("NormalizeFingerprint(%q) = %q, not canonical", s, n)
		}
		if n2, err := NormalizeFingerprint(n); err != nil || n2 != n {
			t.Fatalf("NormalizeFingerprint(%q) = %q, %v, want itself", n, n2, err)
		}
	})
}
