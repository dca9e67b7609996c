package crl

import (
	"bytes"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"math/big"
	"testing"
	"time"

	"github.com/hostcert/hostcert/common/pki"
	"github.com/hostcert/hostcert/primary/internal/ca"
	"github.com/hostcert/hostcert/primary/internal/store/storebench"
)

// TestAuthorityKeyID: the CRL builder's reading of a certificate's
// authority key identifier agrees with x509.ParseCertificate on
// certificates of the primary's CA, of other issuers, without the
// extension, and on what is no certificate.
func TestAuthorityKeyID(t *testing.T) {
	c, err := ca.Init(t.TempDir(), ca.InitOptions{Names: []string{"p.test"}, KeyAlg: pki.ECDSAP256}, time.Now())
	if err != nil {
		t.Fatal(err)
	}
	key, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	now := time.Now()
	tmpl := func(cn string) *x509.Certificate {
		return &x509.Certificate{SerialNumber: big.NewInt(now.UnixNano()), Subject: pkix.Name{CommonName: cn},
			DNSNames: []string{cn}, NotBefore: now, NotAfter: now.Add(time.Hour)}
	}
	issued, err := c.Sign(tmpl("h.test"), key.Public())
	if err != nil {
		t.Fatal(err)
	}
	// A version 1 certificate: no version field, no extensions.
	v1der, err := x509.CreateCertificate(rand.Reader, &x509.Certificate{SerialNumber: big.NewInt(2), NotBefore: now, NotAfter: now.Add(time.Hour)},
		&x509.Certificate{Subject: pkix.Name{CommonName: "v1"}}, key.Public(), key)
	if err != nil {
		t.Fatal(err)
	}
	noAKI, err := storebench.HostCertDER()
	if err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		name string
		der  []byte
		want []byte
	}{
		{"issued by the primary", issued.Raw, c.Certificate().SubjectKeyId},
		{"issuing CA (signed by the root)", c.Certificate().Raw, c.Root().SubjectKeyId},
		{"without the extension", noAKI, nil},
		{"minimal", v1der, nil},
		{"truncated", issued.Raw[:len(issued.Raw)/2], nil},
		{"not DER", []byte("der of h.test"), nil},
		{"empty", nil, nil},
	} {
		got := authorityKeyID(tc.der)
		if !bytes.Equal(got, tc.want) {
			t.Errorf("authorityKeyID(%s) = %x, want %x", tc.name, got, tc.want)
		}
		if parsed, err := x509.ParseCertificate(tc.der); err == nil && !bytes.Equal(got, parsed.AuthorityKeyId) {
			t.Errorf("authorityKeyID(%s) = %x, x509.ParseCertificate says %x", tc.name, got, parsed.AuthorityKeyId)
		}
	}
}

// TestReadHeader: the number, dates and entry count the publisher reads
// from a signed CRL agree with x509.ParseRevocationList, for an empty
// CRL, one with entries, and the root's.
func TestReadHeader(t *testing.T) {
	c, err := ca.Init(t.TempDir(), ca.InitOptions{Names: []string{"p.test"}, KeyAlg: pki.ECDSAP256}, time.Now())
	if err != nil {
		t.Fatal(err)
	}
	now := time.Now()
	var entries []ca.RevokedEntry
	for i := range 300 {
		entries = append(entries, ca.RevokedEntry{Serial: big.NewInt(int64(1000 + i)), RevokedAt: now, Reason: i % 2})
	}
	var lists [][]byte
	for _, e := range [][]ca.RevokedEntry{nil, entries} {
		signed, err := c.CRLs(e, big.NewInt(now.UnixMilli()), now, time.Hour)
		if err != nil {
			t.Fatal(err)
		}
		lists = append(lists, signed[0].DER)
	}
	roots, err := c.RootCRLs()
	if err != nil {
		t.Fatal(err)
	}
	for _, r := range roots {
		lists = append(lists, r.DER)
	}
	for i, der := range lists {
		h, err := readHeader(der)
		want, perr := x509.ParseRevocationList(der)
		if err != nil || perr != nil {
			t.Fatalf("list %d: readHeader: %v, x509: %v", i, err, perr)
		}
		if h.number.Cmp(want.Number) != 0 || h.entries != len(want.RevokedCertificateEntries) ||
			!h.thisUpdate.Equal(want.ThisUpdate) || !h.next.Equal(want.NextUpdate) {
			t.Errorf("readHeader(list %d) = number %v, %d entries, %v to %v; want %v, %d, %v to %v", i,
				h.number, h.entries, h.thisUpdate, h.next, want.Number, len(want.RevokedCertificateEntries), want.ThisUpdate, want.NextUpdate)
		}
		if _, err := readHeader(der[:len(der)/2]); err == nil {
			t.Errorf("readHeader(list %d cut in half) = nil error, want an error", i)
		}
	}
	if len(lists) < 3 {
		t.Errorf("%d lists checked, want an empty, a full and a root CRL", len(lists))
	}
}
