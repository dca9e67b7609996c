package ca

import (
	"bytes"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/rsa"
	"crypto/x509"
	"encoding/pem"
	"errors"
	"math/big"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/google/uuid"

	"github.com/hostcert/hostcert/common/hostname"
	"github.com/hostcert/hostcert/common/pki"
)

var t0 = time.Date(2026, 11, 23, 12, 0, 0, 0, time.UTC)

func newCA(t testing.TB, opts InitOptions) (*CA, string) {
	t.Helper()
	dir := filepath.Join(t.TempDir(), "data")
	if opts.Names == nil {
		opts.Names = []string{"primary.example.com"}
	}
	c, err := Init(dir, opts, t0)
	if err != nil {
		t.Fatalf("Init: %v", err)
	}
	return c, dir
}

func TestInitCreatesCA(t *testing.T) {
	c, dir := newCA(t, InitOptions{Names: []string{"Primary.Example.com", "primary.example.com."}})
	root, iss := c.Root(), c.Certificate()
	for _, ca := range []*x509.Certificate{root, iss} {
		if !ca.IsCA || !ca.BasicConstraintsValid {
			t.Errorf("%s: IsCA = %v, BasicConstraintsValid = %v, want true, true", ca.Subject, ca.IsCA, ca.BasicConstraintsValid)
		}
		if ca.KeyUsage&(x509.KeyUsageCertSign|x509.KeyUsageCRLSign) != x509.KeyUsageCertSign|x509.KeyUsageCRLSign {
			t.Errorf("%s: KeyUsage = %b, want CertSign|CRLSign", ca.Subject, ca.KeyUsage)
		}
		if len(ca.SubjectKeyId) == 0 {
			t.Errorf("%s: SubjectKeyId empty", ca.Subject)
		}
	}
	if pub, ok := root.PublicKey.(*ecdsa.PublicKey); !ok || pub.Curve != elliptic.P384() {
		t.Errorf("root key = %T, want ECDSA P-384", root.PublicKey)
	}
	if pub, ok := iss.PublicKey.(*ecdsa.PublicKey); !ok || pub.Curve != elliptic.P256() {
		t.Errorf("issuing CA key = %T, want ECDSA P-256", iss.PublicKey)
	}
	if got, want := root.NotAfter.Sub(t0), DefaultRootValidity; got != want {
		t.Errorf("root validity = %s, want %s", got, want)
	}
	if got, want := iss.NotAfter.Sub(t0), DefaultIssuingValidity; got != want {
		t.Errorf("issuing CA validity = %s, want %s", got, want)
	}
	if err := root.CheckSignatureFrom(root); err != nil {
		t.Errorf("root not self-signed: %v", err)
	}
	if err := iss.CheckSignatureFrom(root); err != nil {
		t.Errorf("issuing CA not signed by the root: %v", err)
	}
	if root.MaxPathLen != -1 || iss.MaxPathLen != 0 || !iss.MaxPathLenZero {
		t.Errorf("path lengths: root %d, issuing %d (zero %v), want none and 0", root.MaxPathLen, iss.MaxPathLen, iss.MaxPathLenZero)
	}
	if !bytes.Equal(iss.AuthorityKeyId, root.SubjectKeyId) {
		t.Error("issuing CA's authority key ID is not the root's key ID")
	}
	if c.Single() || !c.RootKeyOnline() {
		t.Errorf("Single() = %v, RootKeyOnline() = %v, want false, true", c.Single(), c.RootKeyOnline())
	}
	if got := c.Fingerprint(); got != pki.Fingerprint(root) || len(got) != 95 {
		t.Errorf("Fingerprint() = %q, want the root's", got)
	}
	if b := c.Bundle(); len(b) != 1 || !b[0].Equal(root) {
		t.Errorf("Bundle() = %d certificates, want the root only", len(b))
	}
	if got, err := pki.ParseCerts(c.BundlePEM()); err != nil || len(got) != 2 || !got[0].Equal(root) || !got[1].Equal(iss) {
		t.Errorf("BundlePEM = %d certificates (%v), want root then issuing CA", len(got), err)
	}
	if _, err := uuid.Parse(c.PrimaryHostID()); err != nil {
		t.Errorf("PrimaryHostID() = %q: %v", c.PrimaryHostID(), err)
	}
	rootCRLs, err := c.RootCRLs()
	if err != nil || len(rootCRLs) != 1 || !rootCRLs[0].Issuer.Equal(root) {
		t.Fatalf("RootCRLs() = %d, %v, want one signed by the root", len(rootCRLs), err)
	}
	if l, err := x509.ParseRevocationList(rootCRLs[0].DER); err != nil || l.CheckSignatureFrom(root) != nil || l.NextUpdate.Sub(t0) != RootCRLValidity {
		t.Errorf("root CRL does not verify or is not valid %s: %v", RootCRLValidity, err)
	}
	ca := iss
	srv := c.ServerTLS()
	if srv == nil || srv.Leaf == nil {
		t.Fatal("ServerTLS() = nil after Init")
	}
	leaf := srv.Leaf
	if err := leaf.CheckSignatureFrom(ca); err != nil {
		t.Errorf("server cert not issued by CA: %v", err)
	}
	if !slices.Equal(leaf.DNSNames, []string{"primary.example.com"}) {
		t.Errorf("server DNSNames = %v, want [primary.example.com]", leaf.DNSNames)
	}
	if len(leaf.IPAddresses) != 0 {
		t.Errorf("server IPAddresses = %v, want none", leaf.IPAddresses)
	}
	if role, id := pki.RoleOf(leaf); leaf.Subject.CommonName != c.PrimaryHostID() || role != pki.RolePrimary || id != c.PrimaryHostID() {
		t.Errorf("server CN = %q, role = %q %q, want primary %q", leaf.Subject.CommonName, role, id, c.PrimaryHostID())
	}
	if pki.HostIDFromCert(leaf) != "" || len(leaf.SubjectKeyId) == 0 {
		t.Errorf("server certificate: host ID %q (want none), SKI %x (want one)", pki.HostIDFromCert(leaf), leaf.SubjectKeyId)
	}
	if !slices.Equal(leaf.ExtKeyUsage, []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth}) {
		t.Errorf("server ExtKeyUsage = %v, want server auth only", leaf.ExtKeyUsage)
	}
	pool, inter := x509.NewCertPool(), x509.NewCertPool()
	pool.AddCert(root)
	inter.AddCert(iss)
	if _, err := leaf.Verify(x509.VerifyOptions{Roots: pool, Intermediates: inter, DNSName: "primary.example.com", CurrentTime: t0}); err != nil {
		t.Errorf("server cert does not verify for its name: %v", err)
	}
	if got := srv.Certificate; len(got) != 2 || !bytes.Equal(got[1], iss.Raw) {
		t.Errorf("server chain = %d certificates, want the leaf and the issuing CA", len(got))
	}

	if runtime.GOOS != "windows" {
		for _, p := range []string{dir, filepath.Join(dir, "ca"), filepath.Join(dir, "tls")} {
			if fi, err := os.Stat(p); err != nil || fi.Mode().Perm() != 0o700 {
				t.Errorf("mode of %s = %v (%v), want 0700", p, fi.Mode().Perm(), err)
			}
		}
		for _, p := range []string{RootKeyPath(dir, ID(root)), IssuingKeyPath(dir, ID(iss)), ServerKeyPath(dir)} {
			if fi, err := os.Stat(p); err != nil || fi.Mode().Perm() != 0o600 {
				t.Errorf("mode of %s = %v (%v), want 0600", p, fi.Mode().Perm(), err)
			}
		}
	}
}

func TestInitRSA(t *testing.T) {
	c, _ := newCA(t, InitOptions{KeyAlg: pki.RSA2048, IssuingKeyAlg: pki.RSA2048, Validity: 48 * time.Hour})
	if _, ok := c.Root().PublicKey.(*rsa.PublicKey); !ok {
		t.Errorf("root key = %T, want RSA", c.Root().PublicKey)
	}
	if _, ok := c.Certificate().PublicKey.(*rsa.PublicKey); !ok {
		t.Errorf("issuing CA key = %T, want RSA", c.Certificate().PublicKey)
	}
	if got := c.Root().NotAfter; !got.Equal(t0.Add(48 * time.Hour)) {
		t.Errorf("root NotAfter = %s, want %s", got, t0.Add(48*time.Hour))
	}
	// Nothing outlives the root.
	if got := c.Certificate().NotAfter; got.After(c.Root().NotAfter) {
		t.Errorf("issuing CA NotAfter %s is after the root's %s", got, c.Root().NotAfter)
	}
	if got := c.ServerTLS().Leaf.NotAfter; got.After(c.Certificate().NotAfter) {
		t.Errorf("server NotAfter %s is after CA NotAfter %s", got, c.Certificate().NotAfter)
	}
}

func TestInitRefusesOverwrite(t *testing.T) {
	c, dir := newCA(t, InitOptions{})
	before, _ := os.ReadFile(RootPath(dir))
	beforeKey, _ := os.ReadFile(RootKeyPath(dir, ID(c.Root())))
	_, err := Init(dir, InitOptions{Names: []string{"other"}}, t0)
	if !errors.Is(err, ErrExists) {
		t.Fatalf("second Init error = %v, want ErrExists", err)
	}
	after, _ := os.ReadFile(RootPath(dir))
	afterKey, _ := os.ReadFile(RootKeyPath(dir, ID(c.Root())))
	if !bytes.Equal(before, after) || !bytes.Equal(beforeKey, afterKey) {
		t.Error("second Init changed the CA files")
	}
	l, err := Load(dir)
	if err != nil {
		t.Fatal(err)
	}
	if l.Fingerprint() != c.Fingerprint() {
		t.Errorf("Load fingerprint = %s, want %s", l.Fingerprint(), c.Fingerprint())
	}
}

func TestInitNeedsNames(t *testing.T) {
	if _, err := Init(t.TempDir(), InitOptions{}, t0); err == nil {
		t.Error("Init without names succeeded, want error")
	}
	if _, err := Init(t.TempDir(), InitOptions{Names: []string{" "}}, t0); err == nil {
		t.Error("Init with a blank name succeeded, want error")
	}
}

func TestLoad(t *testing.T) {
	c, dir := newCA(t, InitOptions{})
	l, err := Load(dir)
	if err != nil {
		t.Fatal(err)
	}
	if !l.Certificate().Equal(c.Certificate()) {
		t.Error("Load returned another CA certificate")
	}
	if l.PrimaryHostID() != c.PrimaryHostID() {
		t.Errorf("Load PrimaryHostID = %s, want %s", l.PrimaryHostID(), c.PrimaryHostID())
	}
	if l.ServerTLS() == nil || !bytes.Equal(l.ServerTLS().Certificate[0], c.ServerTLS().Certificate[0]) {
		t.Error("Load did not load the server certificate")
	}
	if !bytes.Equal(l.BundlePEM(), c.BundlePEM()) {
		t.Error("Load's BundlePEM differs from Init's")
	}
	// A signature made by the loaded key verifies under the CA.
	key, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	tmpl, err := Template(HostCertRequest{HostID: "h", Names: []string{"a"}, PublicKey: key.Public(), Serial: big.NewInt(7)}, l.Certificate(), t0)
	if err != nil {
		t.Fatal(err)
	}
	cert, err := l.Sign(tmpl, key.Public())
	if err != nil {
		t.Fatal(err)
	}
	if err := cert.CheckSignatureFrom(c.Certificate()); err != nil {
		t.Errorf("cert signed by loaded CA does not verify: %v", err)
	}

	// A key that does not match the certificate is refused.
	other, _ := pki.GenerateKey(pki.ECDSAP384)
	kp, _ := pki.EncodeKey(other)
	for _, p := range []string{IssuingKeyPath(dir, ID(c.Certificate())), RootKeyPath(dir, ID(c.Root()))} {
		good, _ := os.ReadFile(p)
		if err := os.WriteFile(p, kp, 0o600); err != nil {
			t.Fatal(err)
		}
		if _, err := Load(dir); err == nil {
			t.Errorf("Load with a mismatched key %s succeeded, want error", p)
		}
		os.WriteFile(p, good, 0o600)
	}
	if _, err := Load(t.TempDir()); err == nil {
		t.Error("Load of an empty directory succeeded, want error")
	}
}

func TestEnsureServerCert(t *testing.T) {
	c, dir := newCA(t, InitOptions{Names: []string{"primary.example.com"}})
	first := c.ServerTLS().Leaf

	renewed, err := c.EnsureServerCert([]string{"PRIMARY.example.com"}, t0.Add(time.Hour))
	if err != nil || renewed {
		t.Errorf("EnsureServerCert(same names) = %v, %v, want false, nil", renewed, err)
	}
	renewed, err = c.EnsureServerCert([]string{"primary.example.com", "alt.example.com"}, t0.Add(time.Hour))
	if err != nil || !renewed {
		t.Fatalf("EnsureServerCert(new names) = %v, %v, want true, nil", renewed, err)
	}
	second := c.ServerTLS().Leaf
	if second.SerialNumber.Cmp(first.SerialNumber) == 0 || len(second.DNSNames) != 2 {
		t.Errorf("server cert not replaced with the new names: %v %v", second.DNSNames, second.IPAddresses)
	}
	// Within 30 days of NotAfter it is renewed.
	late := second.NotAfter.Add(-29 * 24 * time.Hour)
	renewed, err = c.EnsureServerCert([]string{"primary.example.com", "alt.example.com"}, late)
	if err != nil || !renewed {
		t.Errorf("EnsureServerCert(29 days left) = %v, %v, want true, nil", renewed, err)
	}
	// The new one is on disk for the next Load.
	l, err := Load(dir)
	if err != nil {
		t.Fatal(err)
	}
	if !l.ServerTLS().Leaf.Equal(c.ServerTLS().Leaf) {
		t.Error("Load after EnsureServerCert returned the old server certificate")
	}
	// A server key that does not match its certificate (a crash between the
	// two writes) is treated as missing and replaced.
	otherKey, _ := pki.GenerateKey(pki.ECDSAP256)
	okp, _ := pki.EncodeKey(otherKey)
	if err := os.WriteFile(ServerKeyPath(dir), okp, 0o600); err != nil {
		t.Fatal(err)
	}
	l, err = Load(dir)
	if err != nil {
		t.Fatalf("Load with a mismatched server key: %v", err)
	}
	if l.ServerTLS() != nil {
		t.Error("ServerTLS() with a mismatched server key != nil")
	}
	if renewed, err := l.EnsureServerCert([]string{"primary.example.com", "alt.example.com"}, t0); err != nil || !renewed {
		t.Errorf("EnsureServerCert(mismatched) = %v, %v, want true, nil", renewed, err)
	}
	// A missing server certificate is created.
	os.Remove(ServerCertPath(dir))
	os.Remove(ServerKeyPath(dir))
	l, err = Load(dir)
	if err != nil {
		t.Fatal(err)
	}
	if l.ServerTLS() != nil {
		t.Error("ServerTLS() after removing its files != nil")
	}
	if renewed, err := l.EnsureServerCert([]string{"primary.example.com"}, t0); err != nil || !renewed || l.ServerTLS() == nil {
		t.Errorf("EnsureServerCert(missing) = %v, %v, want true, nil", renewed, err)
	}
}

func TestTemplate(t *testing.T) {
	caKey, _ := ecdsa.GenerateKey(elliptic.P384(), rand.Reader)
	caCert, err := selfSign(caKey, 10*365*24*time.Hour, t0)
	if err != nil {
		t.Fatal(err)
	}
	ecKey, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	rsaKey, _ := rsa.GenerateKey(rand.Reader, 2048)
	const id = "2b0a4f0e-7c1d-4b4e-9a51-0c3d8f4e2a10"
	now := t0.Add(24 * time.Hour)
	day := 24 * time.Hour

	tests := []struct {
		name          string
		req           HostCertRequest
		now           time.Time
		wantErr       bool
		wantDNS       []string
		wantIPs       []string
		wantUsage     x509.KeyUsage
		wantNotBefore time.Time
		wantNotAfter  time.Time
	}{
		{
			name:          "defaults",
			req:           HostCertRequest{HostID: id, Names: []string{"web1.example.com"}, PublicKey: ecKey.Public(), Serial: big.NewInt(1)},
			now:           now,
			wantDNS:       []string{"web1.example.com"},
			wantUsage:     x509.KeyUsageDigitalSignature,
			wantNotBefore: now.Add(-5 * time.Minute),
			wantNotAfter:  now.Add(365 * day),
		},
		{
			name:          "rsa adds keyEncipherment, names lower-cased and deduplicated",
			req:           HostCertRequest{HostID: id, Names: []string{"Web1.Example.COM", "web1.example.com.", "alias.example.com"}, PublicKey: rsaKey.Public(), Serial: big.NewInt(2), Validity: 30 * day, Backdate: 10 * time.Minute},
			now:           now,
			wantDNS:       []string{"web1.example.com", "alias.example.com"},
			wantUsage:     x509.KeyUsageDigitalSignature | x509.KeyUsageKeyEncipherment,
			wantNotBefore: now.Add(-10 * time.Minute),
			wantNotAfter:  now.Add(30 * day),
		},
		{
			name:          "backdate capped at one hour",
			req:           HostCertRequest{HostID: id, Names: []string{"a"}, PublicKey: ecKey.Public(), Serial: big.NewInt(3), Backdate: 48 * time.Hour},
			now:           now,
			wantDNS:       []string{"a"},
			wantUsage:     x509.KeyUsageDigitalSignature,
			wantNotBefore: now.Add(-time.Hour),
			wantNotAfter:  now.Add(365 * day),
		},
		{
			name:          "NotBefore never before the CA",
			req:           HostCertRequest{HostID: id, Names: []string{"a"}, PublicKey: ecKey.Public(), Serial: big.NewInt(3), Backdate: time.Hour},
			now:           caCert.NotBefore.Add(time.Minute),
			wantDNS:       []string{"a"},
			wantUsage:     x509.KeyUsageDigitalSignature,
			wantNotBefore: caCert.NotBefore,
			wantNotAfter:  caCert.NotBefore.Add(time.Minute + 365*day),
		},
		{
			name:          "NotAfter capped at the CA",
			req:           HostCertRequest{HostID: id, Names: []string{"a"}, PublicKey: ecKey.Public(), Serial: big.NewInt(4)},
			now:           caCert.NotAfter.Add(-10 * day),
			wantDNS:       []string{"a"},
			wantUsage:     x509.KeyUsageDigitalSignature,
			wantNotBefore: caCert.NotAfter.Add(-10*day - 5*time.Minute),
			wantNotAfter:  caCert.NotAfter,
		},
		{name: "IP literals are refused", req: HostCertRequest{HostID: id, Names: []string{"h.example", "192.0.2.7"}, PublicKey: ecKey.Public(), Serial: big.NewInt(5)}, now: now, wantErr: true},
		{name: "localhost is refused for a host", req: HostCertRequest{HostID: id, Names: []string{"LocalHost."}, PublicKey: ecKey.Public(), Serial: big.NewInt(5)}, now: now, wantErr: true},
		{name: "token-like name refused", req: HostCertRequest{HostID: id, Names: []string{"hct_abc.example"}, PublicKey: ecKey.Public(), Serial: big.NewInt(5)}, now: now, wantErr: true},
		{name: "admin with names", req: HostCertRequest{Role: pki.RoleAdmin, HostID: "alice", Names: []string{"a.example"}, PublicKey: ecKey.Public(), Serial: big.NewInt(5)}, now: now, wantErr: true},
		{name: "unknown role", req: HostCertRequest{Role: "root", HostID: id, Names: []string{"a.example"}, PublicKey: ecKey.Public(), Serial: big.NewInt(5)}, now: now, wantErr: true},
		{name: "empty host ID", req: HostCertRequest{Names: []string{"a"}, PublicKey: ecKey.Public(), Serial: big.NewInt(1)}, now: now, wantErr: true},
		{name: "no public key", req: HostCertRequest{HostID: id, Names: []string{"a"}, Serial: big.NewInt(1)}, now: now, wantErr: true},
		{name: "no serial", req: HostCertRequest{HostID: id, Names: []string{"a"}, PublicKey: ecKey.Public()}, now: now, wantErr: true},
		{name: "zero serial", req: HostCertRequest{HostID: id, Names: []string{"a"}, PublicKey: ecKey.Public(), Serial: big.NewInt(0)}, now: now, wantErr: true},
		{name: "negative validity", req: HostCertRequest{HostID: id, Names: []string{"a"}, PublicKey: ecKey.Public(), Serial: big.NewInt(1), Validity: -time.Hour}, now: now, wantErr: true},
		{name: "blank name", req: HostCertRequest{HostID: id, Names: []string{""}, PublicKey: ecKey.Public(), Serial: big.NewInt(1)}, now: now, wantErr: true},
		{name: "CA expired", req: HostCertRequest{HostID: id, Names: []string{"a"}, PublicKey: ecKey.Public(), Serial: big.NewInt(1)}, now: caCert.NotAfter, wantErr: true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := Template(tt.req, caCert, tt.now)
			if tt.wantErr {
				if err == nil {
					t.Fatalf("Template(%s) error = nil, want an error", tt.name)
				}
				return
			}
			if err != nil {
				t.Fatalf("Template(%s) error = %v", tt.name, err)
			}
			if got.Subject.CommonName != id {
				t.Errorf("CN = %q, want %q", got.Subject.CommonName, id)
			}
			if !slices.Equal(got.DNSNames, tt.wantDNS) {
				t.Errorf("DNSNames = %v, want %v", got.DNSNames, tt.wantDNS)
			}
			var ips []string
			for _, ip := range got.IPAddresses {
				ips = append(ips, ip.String())
			}
			if !slices.Equal(ips, tt.wantIPs) {
				t.Errorf("IPAddresses = %v, want %v", ips, tt.wantIPs)
			}
			if len(got.URIs) != 1 || got.URIs[0].String() != "urn:hostcert:host:"+id {
				t.Errorf("URIs = %v, want [urn:hostcert:host:%s]", got.URIs, id)
			}
			if got.KeyUsage != tt.wantUsage {
				t.Errorf("KeyUsage = %b, want %b", got.KeyUsage, tt.wantUsage)
			}
			if !slices.Equal(got.ExtKeyUsage, []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth, x509.ExtKeyUsageClientAuth}) {
				t.Errorf("ExtKeyUsage = %v, want server+client auth", got.ExtKeyUsage)
			}
			if got.IsCA || !got.BasicConstraintsValid {
				t.Errorf("IsCA = %v, BasicConstraintsValid = %v, want false, true", got.IsCA, got.BasicConstraintsValid)
			}
			if !got.NotBefore.Equal(tt.wantNotBefore) {
				t.Errorf("NotBefore = %s, want %s", got.NotBefore, tt.wantNotBefore)
			}
			if !got.NotAfter.Equal(tt.wantNotAfter) {
				t.Errorf("NotAfter = %s, want %s", got.NotAfter, tt.wantNotAfter)
			}
			if got.SerialNumber.Cmp(tt.req.Serial) != 0 {
				t.Errorf("SerialNumber = %s, want %s", got.SerialNumber, tt.req.Serial)
			}
		})
	}
}

func TestSignedHostCertVerifies(t *testing.T) {
	c, _ := newCA(t, InitOptions{})
	key, _ := pki.GenerateKey(pki.ECDSAP256)
	csrPEM, err := pki.CreateCSR(key, "web1.example.com")
	if err != nil {
		t.Fatal(err)
	}
	csr, err := pki.ParseCSR(csrPEM)
	if err != nil {
		t.Fatal(err)
	}
	serial, _ := NewSerial()
	tmpl, err := Template(HostCertRequest{HostID: "h-1", Names: csr.DNSNames, PublicKey: csr.PublicKey, Serial: serial}, c.Certificate(), t0)
	if err != nil {
		t.Fatal(err)
	}
	cert, err := c.Sign(tmpl, csr.PublicKey)
	if err != nil {
		t.Fatal(err)
	}
	pool := x509.NewCertPool()
	pool.AddCert(c.Certificate())
	for _, usage := range []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth, x509.ExtKeyUsageServerAuth} {
		if _, err := cert.Verify(x509.VerifyOptions{Roots: pool, DNSName: "web1.example.com", CurrentTime: t0, KeyUsages: []x509.ExtKeyUsage{usage}}); err != nil {
			t.Errorf("host cert does not verify for usage %v: %v", usage, err)
		}
	}
	if !bytes.Equal(cert.AuthorityKeyId, c.Certificate().SubjectKeyId) {
		t.Error("AuthorityKeyId != CA SubjectKeyId")
	}
}

func TestNewSerial(t *testing.T) {
	seen := map[string]bool{}
	for range 1000 {
		n, err := NewSerial()
		if err != nil {
			t.Fatal(err)
		}
		if n.Sign() <= 0 || n.BitLen() > 127 {
			t.Fatalf("NewSerial() = %s, want positive, at most 127 bits", n)
		}
		h := SerialHex(n)
		if seen[h] {
			t.Fatalf("NewSerial() repeated %s", h)
		}
		seen[h] = true
		back, err := ParseSerialHex(h)
		if err != nil || back.Cmp(n) != 0 {
			t.Fatalf("ParseSerialHex(SerialHex(%s)) = %v, %v", n, back, err)
		}
	}
}

func TestSerialHex(t *testing.T) {
	tests := []struct {
		in   *big.Int
		want string
	}{
		{big.NewInt(255), "FF"},
		{big.NewInt(0xabc), "ABC"},
		{new(big.Int).Lsh(big.NewInt(1), 100), "10000000000000000000000000"},
	}
	for _, tt := range tests {
		if got := SerialHex(tt.in); got != tt.want {
			t.Errorf("SerialHex(%s) = %s, want %s", tt.in, got, tt.want)
		}
	}
	for _, bad := range []string{"", "xyz", "0", "-1"} {
		if _, err := ParseSerialHex(bad); err == nil {
			t.Errorf("ParseSerialHex(%q) error = nil, want an error", bad)
		}
	}
	if n, err := ParseSerialHex("0a:Bc"); err != nil || n.Int64() != 0xabc {
		t.Errorf("ParseSerialHex(0a:Bc) = %v, %v, want 2748", n, err)
	}
}

func TestParseReason(t *testing.T) {
	tests := []struct {
		in   string
		want int
	}{
		{"unspecified", 0}, {"0", 0},
		{"keyCompromise", 1}, {"key-compromise", 1}, {"KEY_COMPROMISE", 1}, {"1", 1},
		{"cACompromise", 2}, {"ca-compromise", 2},
		{"affiliationChanged", 3}, {"affiliation-changed", 3},
		{"superseded", 4}, {" Superseded ", 4}, {"4", 4},
		{"cessationOfOperation", 5}, {"cessation_of_operation", 5},
		{"certificateHold", 6}, {"certificate-hold", 6},
		{"removeFromCRL", 8}, {"remove-from-crl", 8}, {"8", 8},
		{"privilegeWithdrawn", 9}, {"privilege-withdrawn", 9},
		{"aACompromise", 10}, {"aa-compromise", 10}, {"10", 10},
	}
	for _, tt := range tests {
		got, err := ParseReason(tt.in)
		if err != nil || got != tt.want {
			t.Errorf("ParseReason(%q) = %d, %v, want %d", tt.in, got, err, tt.want)
		}
	}
	for _, bad := range []string{"", "7", "11", "-1", "stolen", "key compromised"} {
		if got, err := ParseReason(bad); !errors.Is(err, ErrUnknownReason) {
			t.Errorf("ParseReason(%q) = %d, %v, want ErrUnknownReason", bad, got, err)
		}
	}
}

func TestReasonName(t *testing.T) {
	tests := []struct {
		code int
		want string
	}{
		{0, "unspecified"}, {1, "keyCompromise"}, {2, "cACompromise"}, {3, "affiliationChanged"},
		{4, "superseded"}, {5, "cessationOfOperation"}, {6, "certificateHold"}, {8, "removeFromCRL"},
		{9, "privilegeWithdrawn"}, {10, "aACompromise"}, {7, "unknown(7)"}, {42, "unknown(42)"},
	}
	for _, tt := range tests {
		if got := ReasonName(tt.code); got != tt.want {
			t.Errorf("ReasonName(%d) = %q, want %q", tt.code, got, tt.want)
		}
		if tt.code != 7 && tt.code != 42 {
			if back, err := ParseReason(ReasonName(tt.code)); err != nil || back != tt.code {
				t.Errorf("ParseReason(ReasonName(%d)) = %d, %v", tt.code, back, err)
			}
		}
	}
}

func TestCRL(t *testing.T) {
	c, _ := newCA(t, InitOptions{})
	entries := []RevokedEntry{
		{Serial: big.NewInt(0x1234), RevokedAt: t0.Add(-time.Hour), Reason: ReasonKeyCompromise},
		{Serial: big.NewInt(0x5678), RevokedAt: t0.Add(-2 * time.Hour), Reason: ReasonUnspecified},
		{Serial: big.NewInt(0x9abc), RevokedAt: t0.Add(-3 * time.Hour), Reason: ReasonSuperseded},
	}
	der, err := c.CRL(entries, big.NewInt(42), t0, 0)
	if err != nil {
		t.Fatal(err)
	}
	crl, err := x509.ParseRevocationList(der)
	if err != nil {
		t.Fatal(err)
	}
	if err := crl.CheckSignatureFrom(c.Certificate()); err != nil {
		t.Errorf("CRL signature: %v", err)
	}
	if crl.Number.Int64() != 42 {
		t.Errorf("CRL number = %s, want 42", crl.Number)
	}
	if !crl.ThisUpdate.Equal(t0) || !crl.NextUpdate.Equal(t0.Add(7*24*time.Hour)) {
		t.Errorf("CRL ThisUpdate, NextUpdate = %s, %s, want %s, +7d", crl.ThisUpdate, crl.NextUpdate, t0)
	}
	if len(crl.RevokedCertificateEntries) != 3 {
		t.Fatalf("CRL has %d entries, want 3", len(crl.RevokedCertificateEntries))
	}
	for i, e := range crl.RevokedCertificateEntries {
		if e.SerialNumber.Cmp(entries[i].Serial) != 0 || e.ReasonCode != entries[i].Reason || !e.RevocationTime.Equal(entries[i].RevokedAt) {
			t.Errorf("entry %d = %s reason %d at %s, want %s reason %d at %s", i, e.SerialNumber, e.ReasonCode, e.RevocationTime, entries[i].Serial, entries[i].Reason, entries[i].RevokedAt)
		}
	}
	if _, err := c.CRL([]RevokedEntry{{Serial: big.NewInt(1), Reason: 7}}, big.NewInt(1), t0, 0); err == nil {
		t.Error("CRL with reason 7 succeeded, want error")
	}
	if _, err := c.CRL(nil, nil, t0, 0); err == nil {
		t.Error("CRL without a number succeeded, want error")
	}
	if der, err := c.CRL(nil, big.NewInt(1), t0, time.Hour); err != nil {
		t.Errorf("empty CRL: %v", err)
	} else if crl, _ := x509.ParseRevocationList(der); crl == nil || !crl.NextUpdate.Equal(t0.Add(time.Hour)) {
		t.Error("empty CRL NextUpdate != now+1h")
	}
}

// TestOpenSSLVerifyWithCRL checks the hierarchy, host certificates and both
// CRLs with a real openssl: a good host certificate verifies with
// -CAfile root -untrusted issuing -crl_check_all (the issuing CA's CRL and
// the root's), a revoked one is rejected.
func TestOpenSSLVerifyWithCRL(t *testing.T) {
	openssl, err := exec.LookPath("openssl")
	if err != nil {
		t.Skip("SKIPPED: openssl not found in PATH; the CRL interoperability check did not run")
	}
	now := time.Now()
	for _, alg := range []pki.KeyAlgorithm{pki.ECDSAP384, pki.RSA2048} {
		t.Run(string(alg), func(t *testing.T) {
			dir := t.TempDir()
			c, err := Init(filepath.Join(dir, "data"), InitOptions{Names: []string{"primary.example.com"}, KeyAlg: alg, IssuingKeyAlg: alg}, now)
			if err != nil {
				t.Fatal(err)
			}
			issue := func(name string) (*x509.Certificate, string) {
				key, _ := pki.GenerateKey(pki.ECDSAP256)
				serial, _ := NewSerial()
				tmpl, err := Template(HostCertRequest{HostID: uuid.NewString(), Names: []string{name}, PublicKey: key.Public(), Serial: serial}, c.Certificate(), now)
				if err != nil {
					t.Fatal(err)
				}
				cert, err := c.Sign(tmpl, key.Public())
				if err != nil {
					t.Fatal(err)
				}
				p := filepath.Join(dir, name+".pem")
				if err := os.WriteFile(p, pki.EncodeCert(cert), 0o600); err != nil {
					t.Fatal(err)
				}
				return cert, p
			}
			_, goodPath := issue("good.example.com")
			revoked, revokedPath := issue("revoked.example.com")

			crlDER, err := c.CRL([]RevokedEntry{{Serial: revoked.SerialNumber, RevokedAt: now.Add(-time.Minute), Reason: ReasonKeyCompromise, Issuer: revoked.AuthorityKeyId}}, big.NewInt(1), now.Add(-time.Minute), 0)
			if err != nil {
				t.Fatal(err)
			}
			rootCRLs, err := c.RootCRLs()
			if err != nil || len(rootCRLs) != 1 {
				t.Fatalf("RootCRLs = %d, %v", len(rootCRLs), err)
			}
			rootPath := filepath.Join(dir, "root.pem")
			issuingPath := filepath.Join(dir, "issuing.pem")
			crlPath := filepath.Join(dir, "crl.pem")
			for p, b := range map[string][]byte{
				rootPath:    pki.EncodeCerts(c.Bundle()),
				issuingPath: pki.EncodeCerts(c.Issuing()),
				crlPath: append(pem.EncodeToMemory(&pem.Block{Type: "X509 CRL", Bytes: crlDER}),
					pem.EncodeToMemory(&pem.Block{Type: "X509 CRL", Bytes: rootCRLs[0].DER})...),
			} {
				if err := os.WriteFile(p, b, 0o600); err != nil {
					t.Fatal(err)
				}
			}
			verify := func(cert string) (string, error) {
				out, err := exec.Command(openssl, "verify", "-CAfile", rootPath, "-untrusted", issuingPath, "-CRLfile", crlPath, "-crl_check_all", cert).CombinedOutput()
				return string(out), err
			}
			// Without the issuing CA the host certificate does not verify
			// against the root alone.
			if out, err := exec.Command(openssl, "verify", "-CAfile", rootPath, goodPath).CombinedOutput(); err == nil {
				t.Errorf("openssl verify without -untrusted issuing accepted a host certificate:\n%s", out)
			}
			if out, err := verify(goodPath); err != nil {
				t.Errorf("openssl verify -crl_check good cert failed: %v\n%s", err, out)
			}
			out, err := verify(revokedPath)
			if err == nil {
				t.Errorf("openssl verify -crl_check accepted the revoked cert:\n%s", out)
			} else if !bytes.Contains([]byte(out), []byte("certificate revoked")) {
				t.Errorf("openssl verify of revoked cert failed for another reason: %s", out)
			}
			// The CRL itself parses in openssl with the reason we set.
			text, err := exec.Command(openssl, "crl", "-in", crlPath, "-noout", "-text").CombinedOutput()
			if err != nil {
				t.Fatalf("openssl crl: %v\n%s", err, text)
			}
			if !bytes.Contains(text, []byte("Key Compromise")) {
				t.Errorf("openssl crl -text does not show the reason Key Compromise:\n%s", text)
			}
		})
	}
}

// TestBundlePEMCached: BundlePEM is Bundle encoded, the same on every call,
// and a caller modifying its copy changes nothing for the next one.
func TestBundlePEMCached(t *testing.T) {
	c, _ := newCA(t, InitOptions{})
	want := pki.EncodeCerts(append(c.Bundle(), c.Issuing()...))
	first := c.BundlePEM()
	if !bytes.Equal(first, want) {
		t.Fatalf("BundlePEM = %q, want %q", first, want)
	}
	first[0] = 'X'
	if got := c.BundlePEM(); !bytes.Equal(got, want) {
		t.Errorf("BundlePEM after modifying an earlier result = %q, want %q", got, want)
	}
}

func BenchmarkBundlePEM(b *testing.B) {
	c, _ := newCA(b, InitOptions{})
	b.ReportAllocs()
	for range b.N {
		_ = c.BundlePEM()
	}
}

// TestInitNamesAddresses: the primary's names may be IP addresses, which
// its certificate carries as IP SANs; a token-like value is still refused.
func TestInitNamesAddresses(t *testing.T) {
	c, err := Init(filepath.Join(t.TempDir(), "d"), InitOptions{Names: []string{"10.0.0.5", "primary.example.com", "[::1]"}}, t0)
	if err != nil {
		t.Fatalf("Init with addresses: %v", err)
	}
	leaf := c.ServerTLS().Leaf
	if got := CertNames(leaf); !slices.Equal(got, []string{"primary.example.com", "10.0.0.5", "::1"}) {
		t.Errorf("server certificate names = %v, want [primary.example.com 10.0.0.5 ::1]", got)
	}
	if _, err := Init(filepath.Join(t.TempDir(), "d"), InitOptions{Names: []string{"hct_x.example"}}, t0); !errors.Is(err, hostname.ErrReserved) {
		t.Errorf("Init([hct_x.example]) error = %v, want hostname.ErrReserved", err)
	}
}

// TestCASubjectsUnique: two CAs created on the same day (same instant,
// even) have different subjects, and the subject still shows the date.
func TestCASubjectsUnique(t *testing.T) {
	a, _ := newCA(t, InitOptions{})
	b, _ := newCA(t, InitOptions{})
	var subjects []string
	for _, c := range []*x509.Certificate{a.Root(), a.Certificate(), b.Root(), b.Certificate()} {
		subjects = append(subjects, c.Subject.String())
	}
	for i, s := range subjects {
		for _, o := range subjects[i+1:] {
			if s == o {
				t.Errorf("two CAs created at %s have one subject %q", t0, s)
			}
		}
		want := "hostcert root CA 2026-11-23 "
		if i%2 == 1 {
			want = "hostcert issuing CA 2026-11-23 "
		}
		if !strings.Contains(s, want) {
			t.Errorf("CA subject %q does not say %q", s, want)
		}
	}
}

// TestPrimaryNamesRemembered: every name the primary's certificate ever
// held stays a primary name — across a rename and a reload, in any spelling
// — and a data directory made before the names file counts its current
// certificate's names.
func TestPrimaryNamesRemembered(t *testing.T) {
	c, dir := newCA(t, InitOptions{Names: []string{"old.example.com"}})
	if _, err := c.EnsureServerCert([]string{"new.example.com"}, t0.Add(time.Hour)); err != nil {
		t.Fatal(err)
	}
	l, err := Load(dir)
	if err != nil {
		t.Fatal(err)
	}
	for _, n := range []string{"old.example.com", "OLD.Example.com.", " new.example.com "} {
		if !l.IsPrimaryName(n) {
			t.Errorf("IsPrimaryName(%q) = false after a rename and a reload, want true", n)
		}
	}
	if l.IsPrimaryName("other.example.com") || l.IsPrimaryName("") {
		t.Error("IsPrimaryName of another name = true")
	}
	if got := l.PrimaryNames(); !slices.Equal(got, []string{"new.example.com", "old.example.com"}) {
		t.Errorf("PrimaryNames() = %v", got)
	}
	// Without the file (an older data directory), the current names count.
	if err := os.Remove(NamesPath(dir)); err != nil {
		t.Fatal(err)
	}
	l, err = Load(dir)
	if err != nil {
		t.Fatal(err)
	}
	if !l.IsPrimaryName("new.example.com") {
		t.Error("IsPrimaryName(current name) = false without the names file")
	}
}

// TestTemplateRoles: the CA sets exactly one role marker, the key usages of
// the role and the subject key identifier.
func TestTemplateRoles(t *testing.T) {
	c, _ := newCA(t, InitOptions{})
	key, _ := pki.GenerateKey(pki.ECDSAP256)
	for _, tc := range []struct {
		role     pki.Role
		id       string
		names    []string
		wantRole pki.Role
		wantEKU  []x509.ExtKeyUsage
	}{
		{"", "h-1", []string{"a.example"}, pki.RoleHost, []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth, x509.ExtKeyUsageClientAuth}},
		{pki.RoleHost, "h-1", []string{"a.example"}, pki.RoleHost, []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth, x509.ExtKeyUsageClientAuth}},
		{pki.RolePrimary, "p-1", []string{"localhost"}, pki.RolePrimary, []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth}},
		{pki.RoleAdmin, "alice", nil, pki.RoleAdmin, []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth}},
	} {
		tmpl, err := Template(HostCertRequest{Role: tc.role, HostID: tc.id, Names: tc.names, PublicKey: key.Public(), Serial: big.NewInt(1)}, c.Certificate(), t0)
		if err != nil {
			t.Fatalf("Template(%q) error = %v", tc.role, err)
		}
		cert, err := c.Sign(tmpl, key.Public())
		if err != nil {
			t.Fatal(err)
		}
		if role, id := pki.RoleOf(cert); role != tc.wantRole || id != tc.id || len(cert.URIs) != 1 {
			t.Errorf("Template(%q): role %q %q (%d URIs), want %q %q", tc.role, role, id, len(cert.URIs), tc.wantRole, tc.id)
		}
		if !slices.Equal(cert.ExtKeyUsage, tc.wantEKU) {
			t.Errorf("Template(%q): EKU %v, want %v", tc.role, cert.ExtKeyUsage, tc.wantEKU)
		}
		if ski, _ := subjectKeyID(key.Public()); !bytes.Equal(cert.SubjectKeyId, ski) {
			t.Errorf("Template(%q): SKI %x, want %x", tc.role, cert.SubjectKeyId, ski)
		}
	}
}
