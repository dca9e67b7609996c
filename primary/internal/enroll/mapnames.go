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

// MaxPending is store.MaxPendingNames: the pending claims one host may
// hold at once; a request that would leave it more is refused with
// too_many_pending_names.
const MaxPending = store.MaxPendingNames

// namePlan is what the names a request asks for come to.
type namePlan struct {
	Cert     []string // the names the certificate carries: asked and approved for the host
	Claims   []string // asked and approved for nobody: they become the host's mappings
	Pending  []string // asked and already pending for the host
	Conflict string   // asked and approved for another host ID: the request is refused
	// TooMany is the host's pending claims after the request when that is
	// more than MaxPending (the request is refused); 0 otherwise.
	TooMany int
	Auto    bool // auto-approve: the claims are approved at once (and in Cert)
}

// planNames decides, purely, what the names asked for by a host come to.
// hostID is the host ("" for a first issuance); main is its main name (for
// a first issuance, the requested name, approved by the issuance itself);
// held are the mappings of the host and of the asked names, of every host;
// auto is the auto-approve setting. The certificate carries every approved
// name of the host, main name first — what the host asks for adds claims,
// never an unapproved name — and, with auto-approve, the claims. Only an
// approved mapping owns a name: another host's pending claim on a name is
// no conflict (the name is still free; whoever gets it approved first has
// it). A host's pending claims after the request are at most MaxPending.
func planNames(hostID, main string, asked []string, held []store.Mapping, auto bool) namePlan {
	owner := make(map[string]string, len(held))            // approved name → its host ID
	mine := make(map[string]store.MappingState, len(held)) // the host's own mappings
	p := namePlan{Auto: auto, Cert: []string{main}}
	var others []string
	pending := 0
	for _, m := range held {
		if m.State == store.MappingApproved {
			owner[m.Name] = m.HostID
		}
		if hostID == "" || m.HostID != hostID {
			continue
		}
		mine[m.Name] = m.State
		switch {
		case m.State == store.MappingPending:
			pending++
		case m.Name != main:
			others = append(others, m.Name)
		}
	}
	slices.Sort(others)
	p.Cert = append(p.Cert, others...)
	for _, n := range asked {
		o, approved := owner[n]
		switch {
		case approved && o != hostID:
			return namePlan{Conflict: n}
		case n == main || approved:
		case mine[n] == store.MappingPending:
			p.Pending = append(p.Pending, n)
		default:
			p.Claims = append(p.Claims, n)
			if auto {
				p.Cert = append(p.Cert, n)
			}
		}
	}
	if after := pending + len(p.Claims); !auto && after > MaxPending {
		p.TooMany = after
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
