package api

import (
	"bytes"
	"context"
	"crypto/x509"
	"encoding/json"
	"errors"
	"net/http"
	"net/http/httptest"
	"net/netip"
	"strings"
	"testing"

	"github.com/rs/zerolog"

	"github.com/hostcert/hostcert/common/protocol"
	"github.com/hostcert/hostcert/primary/internal/crl"
	"github.com/hostcert/hostcert/primary/internal/enroll"
)

func TestStatus(t *testing.T) {
	for code, want := range map[protocol.Code]int{
		protocol.CodeBadRequest:           400,
		protocol.CodeBadCSR:               400,
		protocol.CodeClientCertRequired:   401,
		protocol.CodeTokenRequired:        403,
		protocol.CodeReissueTokenRequired: 403,
		protocol.CodeTokenInvalid:         403,
		protocol.CodeHostRevoked:          403,
		protocol.CodeNotVerified:          403,
		protocol.CodeNameNotAllowed:       403,
		protocol.CodeNameReserved:         403,
		protocol.CodeCertExpired:          403,
		protocol.CodeNameConflict:         409,
		protocol.CodeTooManyPendingNames:  409,
		protocol.CodeNotFound:             404,
		protocol.CodeMethodNotAllowed:     405,
		protocol.CodeBodyTooLarge:         413,
		protocol.CodeRateLimited:          429,
		protocol.CodeInternal:             500,
		protocol.CodeUnavailable:          503,
		protocol.Code("something_new"):    500,
	} {
		if got := status(code); got != want {
			t.Errorf("status(%s) = %d, want %d", code, got, want)
		}
	}
}

func TestSource(t *testing.T) {
	for in, want := range map[string]string{
		"192.0.2.1:4000":        "192.0.2.1",
		"[2001:db8::1]:4000":    "2001:db8::1",
		"[::ffff:10.0.0.1]:443": "10.0.0.1",
		"10.0.0.2":              "10.0.0.2",
	} {
		r := httptest.NewRequest(http.MethodPost, "/", nil)
		r.RemoteAddr = in
		if got := source(r); got.String() != want {
			t.Errorf("source(%q) = %s, want %s", in, got, want)
		}
	}
}

// fake is an in-test Enroller that records what reached it.
type fake struct {
	got      []enroll.Request
	rejected []protocol.Code
	err      error
}

func (f *fake) Enroll(_ context.Context, req enroll.Request) (enroll.Result, error) {
	f.got = append(f.got, req)
	if f.err == nil {
		return enroll.Result{}, &protocol.Error{Code: protocol.CodeTokenRequired, Message: "a token is required"}
	}
	return enroll.Result{}, f.err
}

func (f *fake) Seen(context.Context, []*x509.Certificate) {}

func (f *fake) Renew(context.Context, []*x509.Certificate, []byte, netip.Addr) (enroll.Result, error) {
	return enroll.Result{}, f.err
}

func (f *fake) Reject(_ context.Context, _ protocol.RequestKind, _ netip.Addr, code protocol.Code, msg string) error {
	f.rejected = append(f.rejected, code)
	return &protocol.Error{Code: code, Message: msg}
}

type noCRL struct{}

func (noCRL) Current() *crl.List        { return nil }
func (noCRL) ByIssuer(string) *crl.List { return nil }

type noCA struct{}

func (noCA) Bundle() []*x509.Certificate                    { return nil }
func (noCA) BundlePEM() []byte                              { return nil }
func (noCA) ChainFor(*x509.Certificate) []*x509.Certificate { return nil }

type level struct{}

func (level) Level(context.Context) (protocol.Level, error) { return protocol.LevelHigh, nil }

func serve(h http.Handler, method, path, ctype string, body []byte) (*httptest.ResponseRecorder, protocol.Error) {
	r := httptest.NewRequest(method, path, bytes.NewReader(body))
	if ctype != "" {
		r.Header.Set("Content-Type", ctype)
	}
	w := httptest.NewRecorder()
	h.ServeHTTP(w, r)
	var e protocol.Error
	_ = json.Unmarshal(w.Body.Bytes(), &e)
	return w, e
}

// TestDecodeStrictly: the body is decoded strictly and a refusal never
// reaches the issuance path.
func TestDecodeStrictly(t *testing.T) {
	f := &fake{}
	h := New(f, noCRL{}, noCA{}, level{}, zerolog.Nop())
	for _, c := range []struct {
		desc, ctype, body string
		code              protocol.Code
	}{
		{"truncated", "application/json", `{"name":"a"`, protocol.CodeBadRequest},
		{"empty", "application/json", ``, protocol.CodeBadRequest},
		{"unknown field", "application/json", `{"name":"a","x":1}`, protocol.CodeBadRequest},
		{"trailing data", "application/json", `{"name":"a"}x`, protocol.CodeBadRequest},
		{"array", "application/json", `[]`, protocol.CodeBadRequest},
		{"xml", "application/xml", `<a/>`, protocol.CodeBadRequest},
		{"too large", "application/json", `{"csr":"` + strings.Repeat("A", protocol.MaxBodyBytes) + `"}`, protocol.CodeBodyTooLarge},
	} {
		w, e := serve(h, http.MethodPost, protocol.PathEnroll, c.ctype, []byte(c.body))
		if w.Code != status(c.code) || e.Code != c.code || e.Message == "" {
			t.Errorf("POST %s = %d %s, want %d %s", c.desc, w.Code, w.Body, status(c.code), c.code)
		}
	}
	if len(f.got) != 0 || len(f.rejected) != 7 {
		t.Errorf("enroll calls %d, rejections %d, want 0 and 7 (each refusal audited by Reject)", len(f.got), len(f.rejected))
	}
	w, e := serve(h, http.MethodPost, protocol.PathEnroll, "application/json; charset=utf-8", []byte(`{"name":"a.test","csr":"x","token":"t","nat":true}`))
	if len(f.got) != 1 || f.got[0].Name != "a.test" || !f.got[0].NAT || f.got[0].Token != "t" || f.got[0].Source.String() != "192.0.2.1" {
		t.Errorf("good body reached Enroll as %+v (status %d), want a.test nat token t from 192.0.2.1", f.got, w.Code)
	}
	if w.Code != 403 || e.Code != protocol.CodeTokenRequired {
		t.Errorf("refusal from Enroll answered %d %s, want 403 token_required", w.Code, w.Body)
	}
}

// TestFailHidesInternalErrors: an internal error is answered with a generic
// message, never its detail.
func TestFailHidesInternalErrors(t *testing.T) {
	var logs bytes.Buffer
	h := New(&fake{err: errors.New("database is on fire at /var/lib/secret")}, noCRL{}, noCA{}, level{}, zerolog.New(&logs))
	w, e := serve(h, http.MethodPost, protocol.PathEnroll, "application/json", []byte(`{"name":"a.test","csr":"x"}`))
	if w.Code != 500 || e.Code != protocol.CodeInternal || strings.Contains(w.Body.String(), "fire") {
		t.Errorf("internal error answered %d %s, want 500 internal without detail", w.Code, w.Body)
	}
	if n := strings.Count(logs.String(), "\n"); n != 1 || !strings.Contains(logs.String(), "fire") {
		t.Errorf("log = %q, want exactly one line with the detail", logs.String())
	}
	w, e = serve(h, http.MethodGet, protocol.PathCRL, "", nil)
	if w.Code != 503 || e.Code != protocol.CodeUnavailable {
		t.Errorf("GET /v1/crl before the first CRL = %d %s, want 503 unavailable", w.Code, w.Body)
	}
	w, e = serve(h, http.MethodDelete, protocol.PathCA, "", nil)
	if w.Code != 405 || e.Code != protocol.CodeMethodNotAllowed || w.Header().Get("Allow") != http.MethodGet {
		t.Errorf("DELETE /v1/ca = %d %s, want 405 with Allow: GET", w.Code, w.Body)
	}
}
