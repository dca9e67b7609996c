package server

import (
	"net/http"
	"testing"
	"time"

	"github.com/hostcert/hostcert/common/pki"
	"github.com/hostcert/hostcert/common/protocol"
	"github.com/hostcert/hostcert/primary/internal/admin"
)

// TestCRLConditionalGET: GET /v1/crl (and ?issuer=) carries a strong ETag
// (protocol.CRLETag of the bytes), Last-Modified (thisUpdate), Expires
// (nextUpdate) and a Cache-Control bounded by both protocol.CRLMaxAge and
// the next update; If-None-Match or If-Modified-Since with what the client
// holds is answered 304 with no body, until the CRL changes.
func TestCRLConditionalGET(t *testing.T) {
	e := newEnv(t, envOpts{})
	get := func(path string, hdr ...string) (*http.Response, []byte) {
		t.Helper()
		h := http.Header{}
		for i := 0; i+1 < len(hdr); i += 2 {
			h.Set(hdr[i], hdr[i+1])
		}
		return e.get(path, h)
	}
	for _, path := range []string{protocol.PathCRL, protocol.PathCRL + "?" + protocol.CRLIssuerParam + "=" + pki.KeyID(e.issuing.SubjectKeyId)} {
		resp, der := get(path)
		list := e.crl()
		etag := resp.Header.Get("ETag")
		if resp.StatusCode != http.StatusOK || etag != protocol.CRLETag(der) {
			t.Fatalf("GET %s = %d with ETag %q, want 200 with %q", path, resp.StatusCode, etag, protocol.CRLETag(der))
		}
		lm, err := http.ParseTime(resp.Header.Get("Last-Modified"))
		if err != nil || !lm.Equal(list.ThisUpdate.Truncate(time.Second)) {
			t.Errorf("Last-Modified = %q, want the CRL's thisUpdate %v", resp.Header.Get("Last-Modified"), list.ThisUpdate)
		}
		if cc := resp.Header.Get("Cache-Control"); cc != "public, max-age=60, must-revalidate" {
			t.Errorf("Cache-Control = %q, want public, max-age=60, must-revalidate", cc)
		}
		if v := resp.Header.Get("Vary"); v != "Accept" {
			t.Errorf("Vary = %q, want Accept (DER or PEM by Accept)", v)
		}
		for _, cond := range [][]string{
			{"If-None-Match", etag},
			{"If-None-Match", `"other", ` + etag},
			{"If-Modified-Since", resp.Header.Get("Last-Modified")},
			{"If-Modified-Since", list.ThisUpdate.Add(time.Hour).UTC().Format(http.TimeFormat)},
		} {
			r, body := get(path, cond...)
			if r.StatusCode != http.StatusNotModified || len(body) != 0 || r.Header.Get("ETag") != etag {
				t.Errorf("GET %s with %s: %s = %d, %d bytes, ETag %q; want 304, no body, the same ETag", path, cond[0], cond[1], r.StatusCode, len(body), r.Header.Get("ETag"))
			}
		}
		for _, cond := range [][]string{
			{"If-None-Match", `"other"`},
			{"If-Modified-Since", list.ThisUpdate.Add(-time.Hour).UTC().Format(http.TimeFormat)},
			// If-None-Match wins over If-Modified-Since (RFC 9110 13.2.2).
			{"If-None-Match", `"other"`, "If-Modified-Since", resp.Header.Get("Last-Modified")},
		} {
			if r, body := get(path, cond...); r.StatusCode != http.StatusOK || string(body) != string(der) {
				t.Errorf("GET %s with %v = %d, want 200 with the CRL", path, cond, r.StatusCode)
			}
		}
		// The PEM form is another representation: its own tag.
		r, pemBody := get(path, "Accept", "application/x-pem-file", "If-None-Match", etag)
		pemTag := r.Header.Get("ETag")
		if r.StatusCode != http.StatusOK || len(pemBody) == 0 || pemTag != protocol.CRLETagPEM(der) {
			t.Errorf("GET %s as PEM with the DER's ETag = %d, ETag %q; want 200 with %q", path, r.StatusCode, pemTag, protocol.CRLETagPEM(der))
		}
		if r, _ := get(path, "Accept", "application/x-pem-file", "If-None-Match", pemTag); r.StatusCode != http.StatusNotModified {
			t.Errorf("GET %s as PEM with its ETag = %d, want 304", path, r.StatusCode)
		}
	}

	// A revocation makes a new CRL: the old tag gets the new bytes.
	resp, der := get(protocol.PathCRL)
	etag := resp.Header.Get("ETag")
	p := enrolled(t, e, "crlcache.test")
	var n admin.CountResult
	e.call(admin.CmdCertRevoke, admin.RevokeArgs{Host: p.name, Reason: "keyCompromise"}, &n)
	r, fresh := get(protocol.PathCRL, "If-None-Match", etag)
	if r.StatusCode != http.StatusOK || string(fresh) == string(der) || r.Header.Get("ETag") != protocol.CRLETag(fresh) {
		t.Errorf("GET /v1/crl with the old ETag after a revocation = %d, ETag %q; want 200 with the new CRL and its tag", r.StatusCode, r.Header.Get("ETag"))
	}
}
