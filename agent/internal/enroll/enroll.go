// Package enroll bootstraps the agent's trust in the primary (fingerprint
// confirmation, SPEC §3) and obtains a certificate (issue or reissue): the
// key is generated here and never leaves the host; the primary gets a CSR.
package enroll

import (
	"bufio"
	"context"
	"crypto"
	"crypto/x509"
	"errors"
	"fmt"
	"io"
	"strings"
	"time"

	"github.com/hostcert/hostcert/agent/internal/certstore"
	"github.com/hostcert/hostcert/agent/internal/client"
	"github.com/hostcert/hostcert/common/pki"
	"github.com/hostcert/hostcert/common/protocol"
)

// Errors of the bootstrap; nothing is written when one is returned.
var (
	ErrFingerprintMismatch = errors.New("CA fingerprint does not match")
	ErrRefused             = errors.New("CA not confirmed")
	ErrNoTerminal          = errors.New("no terminal to confirm the CA fingerprint on; pass --fingerprint FP")
	ErrServerNotUnderCA    = errors.New("the primary's TLS certificate does not chain to the confirmed CA")
)

// Confirm describes how the CA fingerprint gets confirmed.
type Confirm struct {
	Fingerprint string    // expected fingerprint (any accepted spelling); wins over the rest
	Yes         bool      // accept what is shown without asking (trust on first use)
	Terminal    bool      // In/Out are a terminal a person can answer on
	In          io.Reader // answers
	Out         io.Writer // fingerprints and the question
	// Replace allows replacing a trust store that holds another CA (moving
	// the host to another primary); without it that is a TrustChangeError.
	Replace bool
}

// Bootstrap fetches the CA bundle without verification, has it confirmed,
// checks that the primary's own TLS certificate chains to it, and only then
// writes the trust store. The chain must carry the name of the primary that
// answered (its TLS server name).
func Bootstrap(ctx context.Context, c *client.Client, store *certstore.Store, cf Confirm) ([]*x509.Certificate, error) {
	all, peer, host, err := c.FetchCA(ctx)
	if err != nil {
		return nil, err
	}
	// The trust store holds roots only; the bundle also carries the
	// issuing CAs and cross-signed roots, which the TLS chain brings.
	bundle := pki.Roots(all)
	if len(bundle) == 0 {
		return nil, errors.New("CA bundle from the primary: no root CA in it")
	}
	for _, ca := range bundle {
		fmt.Fprintf(cf.Out, "CA %q\n  SHA-256 fingerprint: %s\n  valid until %s\n", ca.Subject.String(), pki.Fingerprint(ca), ca.NotAfter.UTC().Format(time.RFC3339))
	}
	replacing, err := trustChange(store, bundle, cf.Replace)
	if err != nil {
		return nil, err
	}
	if err := confirm(bundle, cf); err != nil {
		return nil, err
	}
	// With --fingerprint only the root confirmed is trusted: another root
	// in an unverified bundle never joins the trust store unconfirmed.
	bundle = confirmed(bundle, cf.Fingerprint)
	if err := checkServer(bundle, peer, host); err != nil {
		return nil, err
	}
	if err := store.WriteCA(bundle); err != nil {
		return nil, err
	}
	if replacing {
		if err := store.ForgetPrimary(); err != nil {
			return nil, err
		}
	}
	return bundle, nil
}

// trustChange says whether writing bundle replaces another CA, and refuses
// that unless replace.
func trustChange(store *certstore.Store, bundle []*x509.Certificate, replace bool) (bool, error) {
	trusted, err := store.CA()
	switch {
	case errors.Is(err, certstore.ErrNoTrust):
		return false, nil
	case err != nil && replace:
		return true, nil
	case err != nil:
		return false, fmt.Errorf("%w; pass --replace to overwrite it", err)
	case SameCA(trusted, bundle):
		return false, nil
	case !replace:
		return false, &TrustChangeError{Trusted: fingerprints(trusted), Offered: fingerprints(bundle)}
	}
	return true, nil
}

// confirmed is what Bootstrap writes: every root shown when a person (or
// --yes) accepted them, else only the root with the fingerprint given. A
// newer root it vouches for is learnt later, over a verified connection.
func confirmed(roots []*x509.Certificate, fingerprint string) []*x509.Certificate {
	want, err := pki.NormalizeFingerprint(fingerprint)
	if fingerprint == "" || err != nil {
		return roots
	}
	var out []*x509.Certificate
	for _, r := range roots {
		if pki.Fingerprint(r) == want {
			out = append(out, r)
		}
	}
	return out
}

func confirm(bundle []*x509.Certificate, cf Confirm) error {
	if cf.Fingerprint != "" {
		want, err := pki.NormalizeFingerprint(cf.Fingerprint)
		if err != nil {
			return err
		}
		for _, ca := range bundle {
			if pki.Fingerprint(ca) == want {
				return nil
			}
		}
		return fmt.Errorf("%w: the primary's CA is not %s (possible man in the middle); nothing written", ErrFingerprintMismatch, want)
	}
	if cf.Yes {
		fmt.Fprintln(cf.Out, "warning: accepting the fingerprint above without confirmation (--yes)")
		return nil
	}
	if !cf.Terminal {
		return ErrNoTerminal
	}
	fmt.Fprint(cf.Out, "Does this match the fingerprint shown by `hostcert-primary ca show` on the primary? [y/N] ")
	line, err := bufio.NewReader(cf.In).ReadString('\n')
	if err != nil && line == "" {
		return fmt.Errorf("%w: no answer", ErrRefused)
	}
	switch strings.ToLower(strings.TrimSpace(line)) {
	case "y", "yes":
		return nil
	}
	return fmt.Errorf("%w: answered %q; nothing written", ErrRefused, strings.TrimSpace(line))
}

// checkServer verifies the TLS chain the primary presented against the
// confirmed bundle: it chains to it, it is the primary's certificate (a
// host's certificate is refused, whatever its names) and it holds the
// primary's name (a mismatch names the names it holds).
func checkServer(bundle, peer []*x509.Certificate, host string) error {
	if len(peer) == 0 {
		return fmt.Errorf("%w: no server certificate", ErrServerNotUnderCA)
	}
	err := client.VerifyPrimary(peer, certstore.Pool(bundle), host)
	var chainErr *pki.ChainError
	switch {
	case err == nil:
		return nil
	case errors.As(err, &chainErr):
		return fmt.Errorf("%w: %w", ErrServerNotUnderCA, chainErr.Err)
	}
	return fmt.Errorf("the primary's TLS certificate: %w; nothing written", err)
}

// Request is what get-cert asks for.
type Request struct {
	Name   string
	Others []string // further names to ask for (config other_names)
	Token  string
	NAT    bool
	KeyAlg pki.KeyAlgorithm
}

// Enroll sends a CSR (with the stored host ID, making it a reissue, when
// there is one) and stores the granted certificate. The key is kept as the
// pending key until then: when the answer to an enrollment is lost, the next
// get-cert asks again with the same key, and the primary hands back the
// certificate it already issued for that key instead of needing a reissue
// token.
func Enroll(ctx context.Context, c *client.Client, store *certstore.Store, req Request) (*certstore.Identity, protocol.CertResponse, error) {
	cas, err := store.CA()
	if err != nil {
		return nil, protocol.CertResponse{}, err
	}
	st, err := store.State() // a damaged state.json comes back rebuilt from host.pem
	if err != nil && !errors.Is(err, certstore.ErrStateDamaged) {
		return nil, protocol.CertResponse{}, err
	}
	key, err := PendingKey(store, req.KeyAlg)
	if err != nil {
		return nil, protocol.CertResponse{}, err
	}
	csr, err := pki.CreateCSR(key, req.Name, req.Others...)
	if err != nil {
		return nil, protocol.CertResponse{}, err
	}
	er := protocol.EnrollRequest{Name: req.Name, CSR: string(csr), Token: req.Token, NAT: req.NAT}
	if st.Name == "" || strings.EqualFold(st.Name, req.Name) {
		er.HostID = st.HostID
	}
	resp, err := c.Enroll(ctx, er)
	if err != nil {
		return nil, resp, err
	}
	id, err := Accept(resp, key, cas)
	if err != nil {
		return nil, resp, err
	}
	if err := Save(store, id, resp, time.Now()); err != nil {
		return nil, resp, err
	}
	if err := store.RemovePendingKey(); err != nil {
		return nil, resp, err
	}
	return id, resp, nil
}

// KeyStore keeps the key of a request until its certificate is stored
// (*certstore.Store).
type KeyStore interface {
	PendingKey() (crypto.Signer, error)
	WritePendingKey(crypto.Signer) error
	RemovePendingKey() error
}

// PendingKey is the pending key when there is one of the wanted algorithm,
// else a new key, stored as pending before any CSR made with it is sent.
// Enrollment and renewal both use it, so that a request whose answer was
// lost is retried with the same key and the primary can send again the
// certificate it already issued for that key.
func PendingKey(store KeyStore, alg pki.KeyAlgorithm) (crypto.Signer, error) {
	key, err := store.PendingKey()
	if err != nil {
		return nil, err
	}
	if key != nil && pki.AlgorithmOf(key) == alg {
		return key, nil
	}
	if key, err = pki.GenerateKey(alg); err != nil {
		return nil, err
	}
	if err := store.WritePendingKey(key); err != nil {
		return nil, err
	}
	return key, nil
}

// Accept checks a granted certificate — it chains to the trusted CA, is for
// key, carries a host ID — and pairs it with key.
func Accept(resp protocol.CertResponse, key crypto.Signer, cas []*x509.Certificate) (*certstore.Identity, error) {
	certs, err := pki.ParseCerts([]byte(resp.Certificate))
	if err != nil {
		return nil, fmt.Errorf("certificate from the primary: %w", err)
	}
	cert := certs[0]
	var chain []*x509.Certificate
	if resp.Chain != "" {
		if chain, err = pki.ParseCerts([]byte(resp.Chain)); err != nil {
			return nil, fmt.Errorf("certificate chain from the primary: %w", err)
		}
	}
	inter := x509.NewCertPool()
	for _, c := range chain {
		inter.AddCert(c)
	}
	if _, err := cert.Verify(x509.VerifyOptions{
		Roots: certstore.Pool(cas), Intermediates: inter, CurrentTime: cert.NotBefore.Add(time.Second),
		KeyUsages: []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth},
	}); err != nil {
		return nil, fmt.Errorf("certificate from the primary does not chain to the trusted CA: %w", err)
	}
	if pki.HostIDFromCert(cert) == "" {
		return nil, errors.New("certificate from the primary has no host ID URI SAN")
	}
	return certstore.NewIdentity(cert, key, chain...)
}

// Saver is where a new identity is kept (*certstore.Store).
type Saver interface {
	WriteIdentity(*certstore.Identity) error
	UpdateState(func(*certstore.State)) (certstore.State, error)
}

// Save stores a new identity and records it in the state.
func Save(store Saver, id *certstore.Identity, resp protocol.CertResponse, now time.Time) error {
	if err := store.WriteIdentity(id); err != nil {
		return err
	}
	_, err := store.UpdateState(func(st *certstore.State) {
		st.HostID = pki.HostIDFromCert(id.Cert)
		if len(id.Cert.DNSNames) > 0 {
			st.Name = id.Cert.DNSNames[0]
		}
		if resp.Level != "" {
			st.Level = resp.Level
		}
		if resp.CRLRefreshSeconds > 0 {
			st.CRLRefreshSeconds = resp.CRLRefreshSeconds
		}
		st.LastRenewal = now
		st.LastRenewalError = ""
	})
	return err
}
