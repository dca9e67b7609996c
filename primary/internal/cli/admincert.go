package cli

import (
	"bufio"
	"bytes"
	"crypto"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"

	"github.com/spf13/cobra"
	pkcs12 "software.sslmate.com/src/go-pkcs12"

	"github.com/hostcert/hostcert/common/atomicfile"
	"github.com/hostcert/hostcert/common/pki"
	"github.com/hostcert/hostcert/primary/internal/admin"
)

// local is what the command line does itself around an operation of the
// table: before runs once the arguments are parsed, before they are
// checked and sent; the after it returns runs on the answer before it is
// printed.
type local func(cmd *cobra.Command, args any) (after func(res any) error, err error)

// locals are the operations with a local part.
var locals = map[string]local{
	admin.CmdAdminAdd: adminAddLocal,
}

// p12Iterations is the PBKDF2 iteration count of NAME.p12.
const p12Iterations = 100_000

// adminAddLocal generates the administrator's key in this process, puts
// its CSR into the request (the key itself is never sent), and once the
// server answers writes NAME.key (owner-only), NAME.pem (certificate and
// chain) and, with a password, NAME.p12. It refuses before anything is
// signed when a file it would write exists.
func adminAddLocal(cmd *cobra.Command, args any) (func(res any) error, error) {
	a := args.(*admin.AdminAddArgs)
	if err := admin.ValidAdminName(a.Name); err != nil {
		return nil, err
	}
	// A directory that does not exist yet is made, owner-only (it is where
	// the key goes); anything else that is not a directory is refused.
	if fi, err := os.Stat(a.Out); errors.Is(err, fs.ErrNotExist) {
		if err := os.MkdirAll(a.Out, 0o700); err != nil {
			return nil, fmt.Errorf("--out %s: %w", a.Out, err)
		}
	} else if err != nil || !fi.IsDir() {
		return nil, fmt.Errorf("--out %s: not a directory", a.Out)
	}
	keyPath := filepath.Join(a.Out, a.Name+".key")
	pemPath := filepath.Join(a.Out, a.Name+".pem")
	p12Path := filepath.Join(a.Out, a.Name+".p12")
	paths := []string{keyPath, pemPath}
	var password string
	if a.P12PasswordFile != "" {
		var err error
		if password, err = readPassword(a.P12PasswordFile); err != nil {
			return nil, err
		}
		paths = append(paths, p12Path)
	}
	for _, p := range paths {
		if _, err := os.Lstat(p); err == nil {
			return nil, fmt.Errorf("%s exists: remove it or choose another --out (an administrator's key is never overwritten)", p)
		}
	}
	key, err := pki.GenerateKey(pki.ECDSAP256)
	if err != nil {
		return nil, err
	}
	der, err := x509.CreateCertificateRequest(rand.Reader, &x509.CertificateRequest{Subject: pkix.Name{CommonName: a.Name}}, key)
	if err != nil {
		return nil, fmt.Errorf("admin add %s: csr: %w", a.Name, err)
	}
	a.CSR = string(pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE REQUEST", Bytes: der}))

	return func(res any) error {
		r := res.(*admin.AdminIssued)
		cert, chain, err := checkIssued(r, a.Name, key)
		if err != nil {
			return err
		}
		keyPEM, err := pki.EncodeKey(key)
		if err != nil {
			return err
		}
		if err := atomicfile.WritePrivate(keyPath, keyPEM); err != nil {
			return fmt.Errorf("write %s: %w", keyPath, err)
		}
		if err := atomicfile.Write(pemPath, []byte(r.CertPEM+r.ChainPEM), 0o644); err != nil {
			return fmt.Errorf("write %s: %w", pemPath, err)
		}
		r.Files = []string{keyPath, pemPath}
		if a.P12PasswordFile == "" {
			fmt.Fprintf(cmd.ErrOrStderr(), "no --p12-password-file: no %s.p12 written; for a browser, make one with\n  openssl pkcs12 -export -inkey %s -in %s -out %s\n",
				a.Name, keyPath, pemPath, p12Path)
			return nil
		}
		p12, err := pkcs12.Modern2023.WithIterations(p12Iterations).Encode(key, cert, chain, password)
		if err != nil {
			return fmt.Errorf("admin add %s: pkcs12: %w", a.Name, err)
		}
		if err := atomicfile.WritePrivate(p12Path, p12); err != nil {
			return fmt.Errorf("write %s: %w", p12Path, err)
		}
		r.Files = append(r.Files, p12Path)
		return nil
	}, nil
}

// checkIssued checks that the server's answer is an administrator's
// certificate for name and for key, and parses it and its chain.
func checkIssued(r *admin.AdminIssued, name string, key crypto.Signer) (*x509.Certificate, []*x509.Certificate, error) {
	certs, err := pki.ParseCerts([]byte(r.CertPEM))
	if err != nil || len(certs) != 1 {
		return nil, nil, fmt.Errorf("admin add %s: the server's answer holds no certificate (%v)", name, err)
	}
	cert := certs[0]
	if k, ok := cert.PublicKey.(interface{ Equal(crypto.PublicKey) bool }); !ok || !k.Equal(key.Public()) {
		return nil, nil, fmt.Errorf("admin add %s: the server's certificate is not for the key made here", name)
	}
	if role, id := pki.RoleOf(cert); role != pki.RoleAdmin || id != name {
		return nil, nil, fmt.Errorf("admin add %s: the server's certificate has role %q for %q, not admin for %s", name, role, id, name)
	}
	var chain []*x509.Certificate
	if r.ChainPEM != "" {
		if chain, err = pki.ParseCerts([]byte(r.ChainPEM)); err != nil {
			return nil, nil, fmt.Errorf("admin add %s: chain: %w", name, err)
		}
	}
	return cert, chain, nil
}

// readPassword reads the first line of a password file; it must not be empty.
func readPassword(path string) (string, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return "", fmt.Errorf("--p12-password-file: %w", err)
	}
	line, _, _ := bufio.NewReader(bytes.NewReader(b)).ReadLine()
	if len(bytes.TrimSpace(line)) == 0 {
		return "", errors.New("--p12-password-file: the file's first line (the password) is empty")
	}
	return string(line), nil
}
