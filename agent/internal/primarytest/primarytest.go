// Package primarytest is a small but real hostcert primary for the agent's
// tests: a test CA (ECDSA P-256) built with crypto/x509, real TLS on
// 127.0.0.1, real CSR signing, a real signed CRL and the exact JSON shapes
// and refusal codes of common/protocol. /v1/renew verifies the client
// certificate by hand (the listener only requests one), like the primary.
// Its policy is deliberately simple: a configurable "token required for
// issue" switch, standard tokens, reissue tokens bound to a host, and renewal
// refused for revoked hosts and expired certificates.
package primarytest

import (
	"crypto"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/json"
	"encoding/pem"
	"errors"
	"fmt"
	"io"
	"log"
	"math/big"
	"net"
	"net/http"
	"net/url"
	"strings"
	"sync"
	"time"

	"github.com/hostcert/hostcert/common/pki"
	"github.com/hostcert/hostcert/common/protocol"
)

// Options configure a Server.
type Options struct {
	// Names are the server certificate's DNS names (default "localhost", "primary.test").
	Names []string
	// Validity of issued host certificates (default 365 days).
	Validity time.Duration
	// RequireToken makes issue need a standard token (the "not known" case).
	RequireToken bool
	// Level reported to agents (default high).
	Level protocol.Level
	// Addr to listen on (default 127.0.0.1:0).
	Addr string
}

// Server is a running test primary.
type Server struct {
	CA         *x509.Certificate
	caKey      crypto.Signer
	serverCert tls.Certificate
	opts       Options
	ln         net.Listener
	srv        *http.Server

	mu        sync.Mutex
	level     protocol.Level
	validity  time.Duration
	requireTk bool
	hosts     map[string]string    // name -> host ID
	revoked   map[string]time.Time // host ID -> when the host was revoked
	certs     map[string]*issued   // serial (hex) -> cert
	tokens    map[string]*token    // value -> token
	crlNumber int64
	requests  map[string]int // path -> count
}

type issued struct {
	cert      *x509.Certificate
	hostID    string
	revokedAt time.Time
	reason    int
}

type token struct {
	reissueHost string // "" for standard
	uses        int
}

// New creates the CA and the server certificate and starts serving.
func New(opts Options) (*Server, error) {
	if len(opts.Names) == 0 {
		opts.Names = []string{"localhost", "primary.test"}
	}
	if opts.Validity == 0 {
		opts.Validity = 365 * 24 * time.Hour
	}
	if opts.Level == "" {
		opts.Level = protocol.DefaultLevel
	}
	if opts.Addr == "" {
		opts.Addr = "127.0.0.1:0"
	}
	ca, caKey, err := NewCA("hostcert test CA")
	if err != nil {
		return nil, err
	}
	s := &Server{
		CA: ca, caKey: caKey, opts: opts, level: opts.Level, validity: opts.Validity, requireTk: opts.RequireToken,
		hosts: map[string]string{}, revoked: map[string]time.Time{}, certs: map[string]*issued{},
		tokens: map[string]*token{}, requests: map[string]int{},
	}
	s.serverCert, err = ServerCert(ca, caKey, opts.Names)
	if err != nil {
		return nil, err
	}
	s.ln, err = net.Listen("tcp", opts.Addr)
	if err != nil {
		return nil, fmt.Errorf("primarytest: listen: %w", err)
	}
	mux := http.NewServeMux()
	mux.HandleFunc(protocol.PathCA, s.count(s.handleCA))
	mux.HandleFunc(protocol.PathCRL, s.count(s.handleCRL))
	mux.HandleFunc(protocol.PathInfo, s.count(s.handleInfo))
	mux.HandleFunc(protocol.PathEnroll, s.count(s.handleEnroll))
	mux.HandleFunc(protocol.PathRenew, s.count(s.handleRenew))
	mux.HandleFunc("/", func(w http.ResponseWriter, _ *http.Request) {
		writeErr(w, http.StatusNotFound, protocol.CodeNotFound, "no such endpoint", nil)
	})
	s.srv = &http.Server{
		Handler:           mux,
		ReadHeaderTimeout: 10 * time.Second,
		ErrorLog:          log.New(io.Discard, "", 0),
		TLSConfig: &tls.Config{
			MinVersion:   tls.VersionTLS12,
			Certificates: []tls.Certificate{s.serverCert},
			ClientAuth:   tls.RequestClientCert,
		},
	}
	go s.srv.ServeTLS(s.ln, "", "")
	return s, nil
}

// Addr is the listening address (127.0.0.1:PORT).
func (s *Server) Addr() string { return s.ln.Addr().String() }

// Port is the listening port.
func (s *Server) Port() string { _, p, _ := net.SplitHostPort(s.Addr()); return p }

// Close stops the server.
func (s *Server) Close() error { return s.srv.Close() }

// Fingerprint is the CA's SHA-256 fingerprint.
func (s *Server) Fingerprint() string { return pki.Fingerprint(s.CA) }

// SetLevel changes the reported level.
func (s *Server) SetLevel(l protocol.Level) { s.mu.Lock(); s.level = l; s.mu.Unlock() }

// SetValidity changes the validity of certificates issued from now on.
func (s *Server) SetValidity(d time.Duration) { s.mu.Lock(); s.validity = d; s.mu.Unlock() }

// SetRequireToken switches the issue policy.
func (s *Server) SetRequireToken(b bool) { s.mu.Lock(); s.requireTk = b; s.mu.Unlock() }

// AddToken registers a standard token value (single use).
func (s *Server) AddToken(value string) { s.mu.Lock(); s.tokens[value] = &token{}; s.mu.Unlock() }

// AddReissueToken registers a single-use reissue token for hostID.
func (s *Server) AddReissueToken(value, hostID string) {
	s.mu.Lock()
	s.tokens[value] = &token{reissueHost: hostID}
	s.mu.Unlock()
}

// Requests is how many requests hit path so far.
func (s *Server) Requests(path string) int { s.mu.Lock(); defer s.mu.Unlock(); return s.requests[path] }

// HostID is the host ID of name, "" when none.
func (s *Server) HostID(name string) string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.hosts[strings.ToLower(name)]
}

// RevokeHost revokes the host and every certificate it has (reason keyCompromise).
func (s *Server) RevokeHost(hostID string) int {
	s.mu.Lock()
	defer s.mu.Unlock()
	now := time.Now()
	s.revoked[hostID] = now
	n := 0
	for _, c := range s.certs {
		if c.hostID == hostID && c.revokedAt.IsZero() {
			c.revokedAt, c.reason = now, 1
			n++
		}
	}
	return n
}

func (s *Server) count(h http.HandlerFunc) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		s.mu.Lock()
		s.requests[r.URL.Path]++
		s.mu.Unlock()
		h(w, r)
	}
}

func writeJSON(w http.ResponseWriter, status int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	_ = json.NewEncoder(w).Encode(v)
}

func writeErr(w http.ResponseWriter, status int, code protocol.Code, msg string, d *protocol.Decision) {
	writeJSON(w, status, protocol.Error{Code: code, Message: msg, Decision: d})
}

func (s *Server) handleCA(w http.ResponseWriter, r *http.Request) {
	if r.Method != http.MethodGet {
		writeErr(w, http.StatusMethodNotAllowed, protocol.CodeMethodNotAllowed, "use GET", nil)
		return
	}
	w.Header().Set("Content-Type", "application/x-pem-file")
	w.Write(pki.EncodeCert(s.CA))
}

func (s *Server) handleInfo(w http.ResponseWriter, r *http.Request) {
	s.mu.Lock()
	l := s.level
	s.mu.Unlock()
	writeJSON(w, http.StatusOK, protocol.Info{
		Level: l, CRLRefreshSeconds: int64(l.CRLRefresh() / time.Second),
		CAFingerprints: []string{s.Fingerprint()}, Time: time.Now().UTC(),
	})
}

// CRL returns the current DER CRL, with the next CRL number.
func (s *Server) CRL() ([]byte, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.crlNumber++
	return s.crl(s.crlNumber)
}

// CRLNumbered returns a DER CRL with the given number (for rollback tests).
func (s *Server) CRLNumbered(n int64) ([]byte, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.crl(n)
}

func (s *Server) crl(number int64) ([]byte, error) {
	var entries []x509.RevocationListEntry
	for _, c := range s.certs {
		if !c.revokedAt.IsZero() {
			entries = append(entries, x509.RevocationListEntry{SerialNumber: c.cert.SerialNumber, RevocationTime: c.revokedAt, ReasonCode: c.reason})
		}
	}
	now := time.Now()
	return x509.CreateRevocationList(rand.Reader, &x509.RevocationList{
		Number: big.NewInt(number), ThisUpdate: now.Add(-time.Minute), NextUpdate: now.Add(7 * 24 * time.Hour),
		RevokedCertificateEntries: entries,
	}, s.CA, s.caKey)
}

func (s *Server) handleCRL(w http.ResponseWriter, r *http.Request) {
	der, err := s.CRL()
	if err != nil {
		writeErr(w, http.StatusInternalServerError, protocol.CodeInternal, "crl", nil)
		return
	}
	if r.URL.Query().Get("format") == "pem" || r.Header.Get("Accept") == "application/x-pem-file" {
		w.Header().Set("Content-Type", "application/x-pem-file")
		w.Write(pem.EncodeToMemory(&pem.Block{Type: "X509 CRL", Bytes: der}))
		return
	}
	w.Header().Set("Content-Type", "application/pkix-crl")
	w.Write(der)
}

func decodeBody(w http.ResponseWriter, r *http.Request, v any) bool {
	if r.Method != http.MethodPost {
		writeErr(w, http.StatusMethodNotAllowed, protocol.CodeMethodNotAllowed, "use POST", nil)
		return false
	}
	dec := json.NewDecoder(http.MaxBytesReader(w, r.Body, protocol.MaxBodyBytes))
	dec.DisallowUnknownFields()
	if err := dec.Decode(v); err != nil {
		var mbe *http.MaxBytesError
		if errors.As(err, &mbe) {
			writeErr(w, http.StatusRequestEntityTooLarge, protocol.CodeBodyTooLarge, "request body too large", nil)
			return false
		}
		writeErr(w, http.StatusBadRequest, protocol.CodeBadRequest, "malformed JSON request", nil)
		return false
	}
	if _, err := dec.Token(); !errors.Is(err, io.EOF) {
		writeErr(w, http.StatusBadRequest, protocol.CodeBadRequest, "trailing data after the JSON request", nil)
		return false
	}
	return true
}

func (s *Server) handleEnroll(w http.ResponseWriter, r *http.Request) {
	var req protocol.EnrollRequest
	if !decodeBody(w, r, &req) {
		return
	}
	csr, err := pki.ParseCSR([]byte(req.CSR))
	if err != nil {
		writeErr(w, http.StatusBadRequest, protocol.CodeBadCSR, err.Error(), nil)
		return
	}
	name := strings.ToLower(req.Name)
	if name == "" || len(csr.DNSNames) != 1 || strings.ToLower(csr.DNSNames[0]) != name {
		writeErr(w, http.StatusForbidden, protocol.CodeNameNotAllowed, "the CSR must ask for exactly the requested name", nil)
		return
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	d := protocol.Decision{Level: s.level, Known: false, Verified: true, NAT: req.NAT, TokenState: protocol.TokenNone}
	hostID, exists := s.hosts[name]
	if req.HostID != "" && req.HostID != hostID {
		writeErr(w, http.StatusForbidden, protocol.CodeNameNotAllowed, "host ID does not belong to this name", nil)
		return
	}
	var tk *token
	if req.Token != "" {
		tk = s.tokens[req.Token]
		d.TokenState = protocol.TokenValid
		if tk == nil {
			d.TokenState = protocol.TokenInvalid
		} else if tk.uses >= 1 {
			d.TokenState = protocol.TokenUsedUp
		}
	}
	refuse := func(code protocol.Code, msg string) {
		d.Code, d.Reason = code, msg
		status := http.StatusForbidden
		if code == protocol.CodeTokenRequired || code == protocol.CodeReissueTokenRequired || code == protocol.CodeTokenInvalid {
			status = http.StatusUnauthorized
		}
		writeErr(w, status, code, msg, &d)
	}
	if exists {
		d.Kind = protocol.KindReissue
		d.NeedToken = true
		switch {
		case tk == nil && req.Token == "":
			refuse(protocol.CodeReissueTokenRequired, "reissue token required: "+name+" already has a host ID")
			return
		case d.TokenState != protocol.TokenValid:
			refuse(protocol.CodeTokenInvalid, "the token is not valid")
			return
		case tk.reissueHost == "":
			d.TokenState = protocol.TokenWrongKind
			refuse(protocol.CodeReissueTokenRequired, "reissue token required; a standard token cannot reissue")
			return
		case tk.reissueHost != hostID:
			d.TokenState = protocol.TokenWrongHost
			refuse(protocol.CodeTokenInvalid, "the token is not valid")
			return
		}
	} else {
		d.Kind = protocol.KindIssue
		d.NeedToken = s.requireTk || req.NAT
		switch {
		case req.Token != "" && d.TokenState != protocol.TokenValid:
			refuse(protocol.CodeTokenInvalid, "the token is not valid")
			return
		case d.NeedToken && tk == nil:
			refuse(protocol.CodeTokenRequired, fmt.Sprintf("a token is required at level %s for a host that is not known and verified", s.level))
			return
		case tk != nil && tk.reissueHost != "":
			d.TokenState = protocol.TokenWrongKind
			refuse(protocol.CodeTokenInvalid, "the token is not valid")
			return
		}
		hostID = newUUID()
		s.hosts[name] = hostID
	}
	if tk != nil {
		tk.uses++
	}
	if d.Kind == protocol.KindReissue {
		for _, c := range s.certs {
			if c.hostID == hostID && c.revokedAt.IsZero() {
				c.revokedAt, c.reason = time.Now(), 4
			}
		}
		delete(s.revoked, hostID)
	}
	d.Granted = true
	d.Reason = fmt.Sprintf("%s granted at level %s", d.Kind, s.level)
	s.issue(w, hostID, name, csr.PublicKey, d)
}

// issue signs and answers; s.mu is held.
func (s *Server) issue(w http.ResponseWriter, hostID, name string, pub crypto.PublicKey, d protocol.Decision) {
	now := time.Now()
	serial, _ := rand.Int(rand.Reader, new(big.Int).Lsh(big.NewInt(1), 127))
	serial.Add(serial, big.NewInt(1))
	ku := x509.KeyUsageDigitalSignature
	if _, ok := pub.(*ecdsa.PublicKey); !ok {
		ku |= x509.KeyUsageKeyEncipherment
	}
	notAfter := now.Add(s.validity)
	tmpl := &x509.Certificate{
		SerialNumber: serial, Subject: pkix.Name{CommonName: hostID}, DNSNames: []string{name},
		URIs: []*url.URL{pki.HostURI(hostID)}, NotBefore: now.Add(-5 * time.Minute), NotAfter: notAfter,
		KeyUsage: ku, ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth, x509.ExtKeyUsageServerAuth},
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, s.CA, pub, s.caKey)
	if err != nil {
		writeErr(w, http.StatusInternalServerError, protocol.CodeInternal, "signing failed", nil)
		return
	}
	cert, _ := x509.ParseCertificate(der)
	hex := fmt.Sprintf("%X", serial)
	s.certs[hex] = &issued{cert: cert, hostID: hostID}
	writeJSON(w, http.StatusOK, protocol.CertResponse{
		HostID: hostID, Names: []string{name}, Serial: hex, NotBefore: cert.NotBefore, NotAfter: cert.NotAfter,
		Certificate: string(pki.EncodeCert(cert)), CABundle: string(pki.EncodeCert(s.CA)),
		Level: s.level, CRLRefreshSeconds: int64(s.level.CRLRefresh() / time.Second), Decision: d,
	})
}

func (s *Server) handleRenew(w http.ResponseWriter, r *http.Request) {
	var req protocol.RenewRequest
	if !decodeBody(w, r, &req) {
		return
	}
	if r.TLS == nil || len(r.TLS.PeerCertificates) == 0 {
		writeErr(w, http.StatusUnauthorized, protocol.CodeClientCertRequired, "renewal needs the current certificate over mutual TLS", nil)
		return
	}
	leaf := r.TLS.PeerCertificates[0]
	roots := x509.NewCertPool()
	roots.AddCert(s.CA)
	if _, err := leaf.Verify(x509.VerifyOptions{
		Roots: roots, CurrentTime: leaf.NotBefore.Add(time.Second),
		KeyUsages: []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth},
	}); err != nil {
		writeErr(w, http.StatusUnauthorized, protocol.CodeClientCertRequired, "client certificate not issued by this CA", nil)
		return
	}
	csr, err := pki.ParseCSR([]byte(req.CSR))
	if err != nil {
		writeErr(w, http.StatusBadRequest, protocol.CodeBadCSR, err.Error(), nil)
		return
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	hostID := pki.HostIDFromCert(leaf)
	d := protocol.Decision{Kind: protocol.KindRenew, Level: s.level, TokenState: protocol.TokenNone}
	c := s.certs[fmt.Sprintf("%X", leaf.SerialNumber)]
	switch {
	case c == nil:
		writeErr(w, http.StatusUnauthorized, protocol.CodeClientCertRequired, "unknown client certificate", nil)
		return
	case !c.revokedAt.IsZero() || !s.revoked[hostID].IsZero():
		d.Code, d.Reason = protocol.CodeHostRevoked, "the host or its certificate is revoked; a reissue token is needed"
		writeErr(w, http.StatusForbidden, protocol.CodeHostRevoked, d.Reason, &d)
		return
	case !time.Now().Before(leaf.NotAfter):
		d.Code, d.Reason = protocol.CodeCertExpired, "the certificate has expired; a reissue token is needed"
		writeErr(w, http.StatusForbidden, protocol.CodeCertExpired, d.Reason, &d)
		return
	case len(csr.DNSNames) != 1 || !contains(leaf.DNSNames, csr.DNSNames[0]):
		writeErr(w, http.StatusForbidden, protocol.CodeNameNotAllowed, "renewal must keep the certificate's names", nil)
		return
	}
	d.Granted, d.Reason = true, "renew over mutual TLS needs no token"
	s.issue(w, hostID, strings.ToLower(csr.DNSNames[0]), csr.PublicKey, d)
}

func contains(list []string, s string) bool {
	for _, x := range list {
		if strings.EqualFold(x, s) {
			return true
		}
	}
	return false
}

// NewCA makes a self-signed ECDSA P-256 CA.
func NewCA(cn string) (*x509.Certificate, crypto.Signer, error) {
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return nil, nil, err
	}
	now := time.Now()
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(now.UnixNano()), Subject: pkix.Name{CommonName: cn},
		NotBefore: now.Add(-time.Hour), NotAfter: now.Add(20 * 365 * 24 * time.Hour),
		IsCA: true, BasicConstraintsValid: true, KeyUsage: x509.KeyUsageCertSign | x509.KeyUsageCRLSign,
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, key.Public(), key)
	if err != nil {
		return nil, nil, fmt.Errorf("primarytest: create CA: %w", err)
	}
	c, err := x509.ParseCertificate(der)
	return c, key, err
}

// ServerCert issues a TLS server certificate for names (IP literals become IP SANs; 127.0.0.1 always).
func ServerCert(ca *x509.Certificate, caKey crypto.Signer, names []string) (tls.Certificate, error) {
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return tls.Certificate{}, err
	}
	now := time.Now()
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(now.UnixNano()), Subject: pkix.Name{CommonName: names[0]},
		NotBefore: now.Add(-time.Hour), NotAfter: now.Add(365 * 24 * time.Hour),
		KeyUsage: x509.KeyUsageDigitalSignature, ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
		IPAddresses: []net.IP{net.IPv4(127, 0, 0, 1)},
	}
	for _, n := range names {
		if ip := net.ParseIP(n); ip != nil {
			tmpl.IPAddresses = append(tmpl.IPAddresses, ip)
		} else {
			tmpl.DNSNames = append(tmpl.DNSNames, n)
		}
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, ca, key.Public(), caKey)
	if err != nil {
		return tls.Certificate{}, fmt.Errorf("primarytest: server cert: %w", err)
	}
	leaf, _ := x509.ParseCertificate(der)
	return tls.Certificate{Certificate: [][]byte{der, ca.Raw}, PrivateKey: key, Leaf: leaf}, nil
}

func newUUID() string {
	var b [16]byte
	_, _ = rand.Read(b[:])
	b[6] = b[6]&0x0f | 0x40
	b[8] = b[8]&0x3f | 0x80
	return fmt.Sprintf("%x-%x-%x-%x-%x", b[0:4], b[4:6], b[6:8], b[8:10], b[10:])
}
