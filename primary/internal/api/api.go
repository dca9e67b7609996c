// Package api is the primary's public HTTPS API (SPEC §3, §4, §6): the CA
// bundle, the CRL, the primary's info, enrollment (issue, reissue) and
// renewal over mutual TLS. Handlers only decode, call package enroll, and
// encode; one function maps every error to a status, a stable code and a
// public message, and logs once.
package api

import (
	"bytes"
	"context"
	"crypto/x509"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/netip"
	"strconv"
	"strings"
	"time"

	"github.com/rs/zerolog"

	"github.com/hostcert/hostcert/common/pki"
	"github.com/hostcert/hostcert/common/protocol"
	"github.com/hostcert/hostcert/primary/internal/crl"
	"github.com/hostcert/hostcert/primary/internal/enroll"
	"github.com/hostcert/hostcert/primary/internal/store"
)

// Enroller is the issuance path (package enroll).
type Enroller interface {
	Enroll(ctx context.Context, req enroll.Request) (enroll.Result, error)
	Renew(ctx context.Context, chain []*x509.Certificate, csrPEM []byte, source netip.Addr) (enroll.Result, error)
	Reject(ctx context.Context, kind protocol.RequestKind, source netip.Addr, code protocol.Code, msg string) error
	// Seen records that a host's certificate was presented (first use).
	Seen(ctx context.Context, chain []*x509.Certificate)
}

// CRLs gives the current CRLs: the current issuing CA's, or any CA's by
// its ca.ID.
type CRLs interface {
	Current() *crl.List
	ByIssuer(id string) *crl.List
}

// Authority is what the API shows of the CA.
type Authority interface {
	Bundle() []*x509.Certificate
	BundlePEM() []byte
	// ChainFor is the issuing CA of a certificate it signed (none when a
	// root signed it).
	ChainFor(c *x509.Certificate) []*x509.Certificate
}

// Levels reads the current deployment security level.
type Levels interface {
	Level(ctx context.Context) (protocol.Level, error)
}

// Readiness says whether this node can serve requests now: its store
// answers (else an error wrapping store.ErrUnavailable) and its CA is loaded.
type Readiness interface {
	Ready(ctx context.Context) error
}

// ReadyTimeout bounds one readiness check.
const ReadyTimeout = 2 * time.Second

// StoreRetryAfter is the Retry-After (seconds) of a store_unavailable answer.
const StoreRetryAfter = "5"

// Handler serves the API.
type Handler struct {
	ready    Readiness
	enroller Enroller
	crls     CRLs
	ca       Authority
	levels   Levels
	log      zerolog.Logger
	mux      *http.ServeMux
	now      func() time.Time
}

// New returns the API handler.
func New(e Enroller, crls CRLs, ca Authority, levels Levels, log zerolog.Logger) *Handler {
	h := &Handler{enroller: e, crls: crls, ca: ca, levels: levels, log: log, mux: http.NewServeMux(), now: time.Now}
	h.mux.HandleFunc(protocol.PathCA, h.only(http.MethodGet, h.getCA))
	h.mux.HandleFunc(protocol.PathCRL, h.only(http.MethodGet, h.getCRL))
	h.mux.HandleFunc(protocol.PathInfo, h.only(http.MethodGet, h.getInfo))
	h.mux.HandleFunc(protocol.PathEnroll, h.only(http.MethodPost, h.postEnroll))
	h.mux.HandleFunc(protocol.PathRenew, h.only(http.MethodPost, h.postRenew))
	h.mux.HandleFunc(protocol.PathHealthz, h.only(http.MethodGet, h.getHealthz))
	h.mux.HandleFunc(protocol.PathReadyz, h.only(http.MethodGet, h.getReadyz))
	h.mux.HandleFunc("/", func(w http.ResponseWriter, r *http.Request) {
		h.fail(w, r, &protocol.Error{Code: protocol.CodeNotFound, Message: "no such endpoint"})
	})
	return h
}

func (h *Handler) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	w.Header().Set("X-Content-Type-Options", "nosniff")
	h.mux.ServeHTTP(w, r)
}

// only refuses other methods with a JSON method_not_allowed (HEAD rides on GET).
func (h *Handler) only(method string, next http.HandlerFunc) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		if r.Method != method && !(method == http.MethodGet && r.Method == http.MethodHead) {
			w.Header().Set("Allow", method)
			h.fail(w, r, &protocol.Error{Code: protocol.CodeMethodNotAllowed, Message: fmt.Sprintf("use %s for %s", method, r.URL.Path)})
			return
		}
		next(w, r)
	}
}

// UseReadiness sets what /readyz checks; without it /readyz checks only
// that a CA is loaded.
func (h *Handler) UseReadiness(r Readiness) { h.ready = r }

// getHealthz: the process is up and serving.
func (h *Handler) getHealthz(w http.ResponseWriter, _ *http.Request) {
	w.Header().Set("Cache-Control", "no-store")
	h.writeJSON(w, http.StatusOK, map[string]string{"status": "ok"})
}

// getReadyz: the store answers within ReadyTimeout and the CA is loaded.
func (h *Handler) getReadyz(w http.ResponseWriter, r *http.Request) {
	w.Header().Set("Cache-Control", "no-store")
	if len(h.ca.Bundle()) == 0 {
		h.fail(w, r, &protocol.Error{Code: protocol.CodeUnavailable, Message: "no CA is loaded"})
		return
	}
	if h.ready != nil {
		ctx, cancel := context.WithTimeout(r.Context(), ReadyTimeout)
		defer cancel()
		if err := h.ready.Ready(ctx); err != nil {
			h.fail(w, r, fmt.Errorf("readiness: %w: %w", store.ErrUnavailable, err))
			return
		}
	}
	h.writeJSON(w, http.StatusOK, map[string]string{"status": "ready"})
}

func (h *Handler) getCA(w http.ResponseWriter, r *http.Request) {
	w.Header().Set("Content-Type", "application/x-pem-file")
	w.Header().Set("Cache-Control", "no-cache")
	_, _ = w.Write(h.ca.BundlePEM())
}

func (h *Handler) getCRL(w http.ResponseWriter, r *http.Request) {
	h.seen(r)
	list := h.crls.Current()
	if id := r.URL.Query().Get(protocol.CRLIssuerParam); id != "" {
		if list = h.crls.ByIssuer(id); list == nil {
			h.fail(w, r, &protocol.Error{Code: protocol.CodeNotFound, Message: "no CRL of a CA with that id"})
			return
		}
	}
	if list == nil {
		h.fail(w, r, &protocol.Error{Code: protocol.CodeUnavailable, Message: "the CRL is not generated yet; try again in a few seconds"})
		return
	}
	body, ctype, etag := list.DER, "application/pkix-crl", list.ETag
	if r.URL.Query().Get("format") == "pem" || strings.Contains(r.Header.Get("Accept"), "application/x-pem-file") {
		body, ctype, etag = list.PEM, "application/x-pem-file", list.PEMETag
	}
	hd := w.Header()
	hd.Set("Content-Type", ctype)
	if etag != "" {
		hd.Set("ETag", etag)
	}
	hd.Set("Vary", "Accept")
	hd.Set("Expires", list.NextUpdate.UTC().Format(http.TimeFormat))
	hd.Set("Cache-Control", CRLCacheControl(list.NextUpdate, h.now()))
	// The bytes were encoded and signed when the CRL was generated:
	// ServeContent only compares validators (If-None-Match first, then
	// If-Modified-Since against Last-Modified, the CRL's thisUpdate) and
	// answers 304 Not Modified, or writes them.
	http.ServeContent(w, r, "", list.ThisUpdate, bytes.NewReader(body))
}

// CRLCacheControl is the Cache-Control of a CRL answer: reusable by any
// cache for protocol.CRLMaxAge at most and never beyond the CRL's next
// update, then revalidated (a conditional GET answered 304 is cheap).
func CRLCacheControl(nextUpdate, now time.Time) string {
	age := min(nextUpdate.Sub(now), protocol.CRLMaxAge)
	if age < time.Second {
		return "no-cache"
	}
	return fmt.Sprintf("public, max-age=%d, must-revalidate", int(age/time.Second))
}

func (h *Handler) getInfo(w http.ResponseWriter, r *http.Request) {
	h.seen(r)
	level, err := h.levels.Level(r.Context())
	if err != nil {
		h.fail(w, r, fmt.Errorf("read level: %w", err))
		return
	}
	info := protocol.Info{Level: level, CRLRefreshSeconds: int64(level.CRLRefresh() / time.Second), Time: h.now().UTC()}
	for _, c := range h.ca.Bundle() {
		info.CAFingerprints = append(info.CAFingerprints, pki.Fingerprint(c))
	}
	h.writeJSON(w, http.StatusOK, info)
}

// seen passes the client certificate of a request, when there is one, to
// the issuance path: a host's certificate counts as used once presented.
func (h *Handler) seen(r *http.Request) {
	if r.TLS != nil && len(r.TLS.PeerCertificates) > 0 {
		h.enroller.Seen(r.Context(), r.TLS.PeerCertificates)
	}
}

func (h *Handler) postEnroll(w http.ResponseWriter, r *http.Request) {
	src := source(r)
	var req protocol.EnrollRequest
	if code, msg := decode(w, r, &req); code != "" {
		h.fail(w, r, h.enroller.Reject(r.Context(), protocol.KindIssue, src, code, msg))
		return
	}
	res, err := h.enroller.Enroll(r.Context(), enroll.Request{
		Name: req.Name, HostID: req.HostID, CSR: []byte(req.CSR), Token: req.Token, NAT: req.NAT, Source: src,
	})
	if err != nil {
		h.fail(w, r, err)
		return
	}
	h.writeCert(w, res)
}

func (h *Handler) postRenew(w http.ResponseWriter, r *http.Request) {
	src := source(r)
	var req protocol.RenewRequest
	if code, msg := decode(w, r, &req); code != "" {
		h.fail(w, r, h.enroller.Reject(r.Context(), protocol.KindRenew, src, code, msg))
		return
	}
	var chain []*x509.Certificate
	if r.TLS != nil {
		chain = r.TLS.PeerCertificates
	}
	res, err := h.enroller.Renew(r.Context(), chain, []byte(req.CSR), src)
	if err != nil {
		h.fail(w, r, err)
		return
	}
	h.writeCert(w, res)
}

func (h *Handler) writeCert(w http.ResponseWriter, res enroll.Result) {
	w.Header().Set("Cache-Control", "no-store")
	h.writeJSON(w, http.StatusOK, protocol.CertResponse{
		HostID:            res.HostID,
		Names:             res.Names,
		PendingNames:      res.Pending,
		Serial:            res.Serial,
		NotBefore:         res.Cert.NotBefore.UTC(),
		NotAfter:          res.Cert.NotAfter.UTC(),
		Certificate:       string(pki.EncodeCert(res.Cert)),
		Chain:             string(pki.EncodeCerts(h.ca.ChainFor(res.Cert))),
		CABundle:          string(h.ca.BundlePEM()),
		Level:             res.Level,
		CRLRefreshSeconds: int64(res.Level.CRLRefresh() / time.Second),
		Decision:          res.Decision,
	})
}

// decode reads one JSON object strictly: at most protocol.MaxBodyBytes,
// no unknown fields, nothing after it. It returns a refusal code and message,
// or "" when v was filled.
func decode(w http.ResponseWriter, r *http.Request, v any) (protocol.Code, string) {
	if ct := r.Header.Get("Content-Type"); ct != "" && !strings.HasPrefix(ct, "application/json") {
		return protocol.CodeBadRequest, "the body must be JSON (Content-Type: application/json)"
	}
	body, err := io.ReadAll(http.MaxBytesReader(w, r.Body, protocol.MaxBodyBytes))
	if err != nil {
		var tooBig *http.MaxBytesError
		if errors.As(err, &tooBig) {
			return protocol.CodeBodyTooLarge, fmt.Sprintf("the body is larger than %d bytes", protocol.MaxBodyBytes)
		}
		return protocol.CodeBadRequest, "the body could not be read"
	}
	dec := json.NewDecoder(bytes.NewReader(body))
	dec.DisallowUnknownFields()
	if err := dec.Decode(v); err != nil {
		return protocol.CodeBadRequest, "the body is not a valid request: " + jsonProblem(err)
	}
	if dec.More() {
		return protocol.CodeBadRequest, "the body has data after the JSON object"
	}
	if _, err := dec.Token(); !errors.Is(err, io.EOF) {
		return protocol.CodeBadRequest, "the body has data after the JSON object"
	}
	return "", ""
}

// jsonProblem describes a decode error without echoing request data at length.
func jsonProblem(err error) string {
	var syn *json.SyntaxError
	var typ *json.UnmarshalTypeError
	switch {
	case errors.As(err, &syn):
		return fmt.Sprintf("malformed JSON at byte %d", syn.Offset)
	case errors.As(err, &typ):
		return fmt.Sprintf("field %q has the wrong type", typ.Field)
	case errors.Is(err, io.EOF), errors.Is(err, io.ErrUnexpectedEOF):
		return "empty or truncated JSON"
	case strings.HasPrefix(err.Error(), "json: unknown field "):
		f := strings.TrimPrefix(err.Error(), "json: unknown field ")
		if len(f) > 66 {
			f = f[:64] + `…"`
		}
		return "unknown field " + f
	}
	return "malformed JSON"
}

// source is the address the request came from: the TCP peer, or the client
// address a tunnel relayed with PROXY protocol v2 (the listener puts it in
// RemoteAddr).
func source(r *http.Request) netip.Addr {
	ap, err := netip.ParseAddrPort(r.RemoteAddr)
	if err == nil {
		return ap.Addr().Unmap()
	}
	host, _, err := net.SplitHostPort(r.RemoteAddr)
	if err != nil {
		host = r.RemoteAddr
	}
	a, _ := netip.ParseAddr(host)
	return a.Unmap()
}

// status maps a refusal code to its HTTP status.
func status(code protocol.Code) int {
	switch code {
	case protocol.CodeBadRequest, protocol.CodeBadCSR:
		return http.StatusBadRequest
	case protocol.CodeClientCertRequired:
		return http.StatusUnauthorized
	case protocol.CodeTokenRequired, protocol.CodeReissueTokenRequired, protocol.CodeTokenInvalid,
		protocol.CodeHostRevoked, protocol.CodeNotVerified, protocol.CodeNameNotAllowed, protocol.CodeNameReserved, protocol.CodeCertExpired,
		protocol.CodeCertSuperseded:
		return http.StatusForbidden
	case protocol.CodeNameConflict, protocol.CodeTooManyPendingNames:
		return http.StatusConflict
	case protocol.CodeNotFound:
		return http.StatusNotFound
	case protocol.CodeMethodNotAllowed:
		return http.StatusMethodNotAllowed
	case protocol.CodeBodyTooLarge:
		return http.StatusRequestEntityTooLarge
	case protocol.CodeRateLimited:
		return http.StatusTooManyRequests
	case protocol.CodeUnavailable, protocol.CodeStoreUnavailable:
		return http.StatusServiceUnavailable
	}
	return http.StatusInternalServerError
}

// fail is the one place an error becomes a response: a *protocol.Error keeps
// its code, message and decision; anything else is internal, logged with its
// detail and answered with a generic message. It logs exactly once.
func (h *Handler) fail(w http.ResponseWriter, r *http.Request, err error) {
	var perr *protocol.Error
	if !errors.As(err, &perr) && errors.Is(err, store.ErrUnavailable) {
		// Fail closed: nothing was decided or written; the client retries.
		h.log.Warn().Err(err).Str("path", r.URL.Path).Str("source", r.RemoteAddr).Msg("store unavailable")
		perr = &protocol.Error{Code: protocol.CodeStoreUnavailable, Message: "the primary cannot reach its store; try again later"}
		w.Header().Set("Retry-After", StoreRetryAfter)
	} else if perr == nil {
		h.log.Error().Err(err).Str("path", r.URL.Path).Str("source", r.RemoteAddr).Msg("request failed")
		perr = &protocol.Error{Code: protocol.CodeInternal, Message: "internal error; the primary's log has the details"}
	} else {
		ev := h.log.Info()
		if perr.Code == protocol.CodeUnavailable || perr.Code == protocol.CodeStoreUnavailable {
			ev = h.log.Warn()
		}
		ev.Str("path", r.URL.Path).Str("source", r.RemoteAddr).Str("code", string(perr.Code)).Msg("request refused")
	}
	st := status(perr.Code)
	if st == http.StatusRequestEntityTooLarge {
		w.Header().Set("Connection", "close")
	}
	if st == http.StatusTooManyRequests {
		w.Header().Set("Retry-After", "15")
	}
	h.writeJSON(w, st, perr)
}

// writeJSON writes v as the JSON body with its Content-Length: one write
// for header and body (a certificate response is larger than net/http's
// 2 KiB buffer, which would otherwise answer chunked, in several writes).
func (h *Handler) writeJSON(w http.ResponseWriter, status int, v any) {
	body, err := json.Marshal(v)
	if err != nil {
		h.log.Error().Err(err).Msg("encoding response")
		http.Error(w, "internal error", http.StatusInternalServerError)
		return
	}
	body = append(body, '\n')
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("Content-Length", strconv.Itoa(len(body)))
	w.WriteHeader(status)
	if _, err := w.Write(body); err != nil {
		h.log.Debug().Err(err).Msg("writing response")
	}
}
