//go:build linux

package e2e

import (
	"crypto/x509"
	"encoding/pem"
	"fmt"
	"strings"
	"testing"
)

// crlHas reports whether the PEM CRL lists serial (upper-case hex).
func crlHas(t testing.TB, data []byte, serial string) bool {
	t.Helper()
	block, _ := pem.Decode(data)
	if block == nil {
		t.Fatalf("CRL file is not PEM")
	}
	crl, err := x509.ParseRevocationList(block.Bytes)
	if err != nil {
		t.Fatalf("parse CRL: %v", err)
	}
	for _, e := range crl.RevokedCertificateEntries {
		if strings.EqualFold(fmt.Sprintf("%X", e.SerialNumber), serial) {
			return true
		}
	}
	return false
}
