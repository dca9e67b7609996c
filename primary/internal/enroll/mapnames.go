package enroll

import (
	"crypto/x509"
	"errors"
	"fmt"
	"slices"

	"github.com/hostcert/hostcert/primary/internal/store"
)

// MaxNames bounds the names one CSR may ask for: a host cannot hold more
// than that many names pending at one request.
const MaxNames = 16

// CSRNames returns the host names a CSR asks for, in its order and without
// repeats: its DNS SANs, then its subject CN when that is not one of them,
// each through norm (the one normaliser; a refused name refuses the CSR).
// A CSR with IP, URI or e-mail SANs, or that names no host, is refused.
// The agent asks for more than one name (short name, FQDN, other interface
// names) by listing them as DNS SANs.
func CSRNames(csr *x509.CertificateRequest, norm func(string) (string, error)) ([]string, error) {
	if len(csr.IPAddresses) > 0 || len(csr.URIs) > 0 || len(csr.EmailAddresses) > 0 {
		return nil, errors.New("the CSR asks for IP, URI or e-mail names; only host names are allowed")
	}
	raw := csr.DNSNames
	if cn := csr.Subject.CommonName; cn != "" {
		raw = append(raw[:len(raw):len(raw)], cn)
	}
	var out []string
	seen := map[string]bool{}
	for _, r := range raw {
		n, err := norm(r)
		if err != nil {
			return nil, fmt.Errorf("the CSR asks for a name that is not allowed: %w", err)
		}
		if !seen[n] {
			seen[n] = true
			out = append(out, n)
		}
	}
	switch {
	case len(out) == 0:
		return nil, errors.New("the CSR names no host")
	case len(out) > MaxNames:
		return nil, fmt.Errorf("the CSR asks for %d names, at most %d", len(out), MaxNames)
	}
	return out, nil
}

// namePlan is what the names a request asks for come to.
type namePlan struct {
	Cert     []string // the names the certificate carries: asked and approved for the host
	Claims   []string // asked and held by nobody: they become the host's mappings
	Pending  []string // asked and already pending for the host
	Conflict string   // asked and held by another host ID: the request is refused
	Auto     bool     // auto-approve: the claims are approved at once (and in Cert)
}

// planNames decides, purely, what the names asked for by a host come to.
// hostID is the host ("" for a first issuance); main is its main name (for
// a first issuance, the requested name, approved by the issuance itself);
// held are the mappings of the host and of the asked names; auto is the
// auto-approve setting. The certificate carries every approved name of the
// host, main name first — what the host asks for adds claims, never an
// unapproved name — and, with auto-approve, the claims.
func planNames(hostID, main string, asked []string, held []store.Mapping, auto bool) namePlan {
	owner := make(map[string]store.Mapping, len(held))
	p := namePlan{Auto: auto, Cert: []string{main}}
	var others []string
	for _, m := range held {
		owner[m.Name] = m
		if hostID != "" && m.HostID == hostID && m.State == store.MappingApproved && m.Name != main {
			others = append(others, m.Name)
		}
	}
	slices.Sort(others)
	p.Cert = append(p.Cert, others...)
	for _, n := range asked {
		m, ok := owner[n]
		switch {
		case ok && m.HostID != hostID:
			return namePlan{Conflict: n}
		case n == main || ok && m.State == store.MappingApproved:
		case ok:
			p.Pending = append(p.Pending, n)
		default:
			p.Claims = append(p.Claims, n)
			if auto {
				p.Cert = append(p.Cert, n)
			}
		}
	}
	return p
}

// claimState is the state the claims of a plan are written in.
func claimState(auto bool) store.MappingState {
	if auto {
		return store.MappingApproved
	}
	return store.MappingPending
}
