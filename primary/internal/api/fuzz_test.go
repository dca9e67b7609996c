package api

import (
	"bytes"
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"testing"
	"unicode/utf8"

	"github.com/rs/zerolog"

	"github.com/hostcert/hostcert/common/protocol"
)

// FuzzEnrollBody feeds arbitrary bodies to POST /v1/enroll and /v1/renew.
// Whatever arrives, the answer is one JSON refusal with a stable code whose
// HTTP status matches it, and a body the decoder refuses never reaches the
// issuance path.
func FuzzEnrollBody(f *testing.F) {
	for _, s := range []string{
		`{"name":"web01.example.com","csr":"-----BEGIN CERTIFICATE REQUEST-----\nAA==\n-----END CERTIFICATE REQUEST-----\n","token":"hct_x","nat":false}`,
		`{"name":"a","host_id":"00000000-0000-0000-0000-000000000000"}`,
		`{"csr":""}`,
		`{"name":"a"}{"name":"b"}`,
		`{"name":"a","name":"b"}`,
		`{"nat":"yes"}`,
		`[]`, `null`, `""`, `{`, ``, "\xff\xfe", `{"name":"\u0000"}`,
	} {
		f.Add([]byte(s), false)
		f.Add([]byte(s), true)
	}
	f.Fuzz(func(t *testing.T, body []byte, renew bool) {
		// The fake refuses both paths, as the real issuance path does for
		// any request it cannot grant.
		fk := &fake{err: &protocol.Error{Code: protocol.CodeTokenRequired, Message: "a token is required"}}
		h := New(fk, noCRL{}, noCA{}, level{}, zerolog.Nop())
		path := protocol.PathEnroll
		if renew {
			path = protocol.PathRenew
		}
		r := httptest.NewRequest(http.MethodPost, path, bytes.NewReader(body))
		r.Header.Set("Content-Type", "application/json")
		w := httptest.NewRecorder()
		h.ServeHTTP(w, r)

		var e protocol.Error
		if err := json.Unmarshal(w.Body.Bytes(), &e); err != nil {
			t.Fatalf("POST %s %q answered %d with a body that is not JSON: %q", path, body, w.Code, w.Body)
		}
		if e.Code == "" || e.Message == "" {
			t.Fatalf("POST %s %q answered %d %q, want a refusal with code and message", path, body, w.Code, w.Body)
		}
		if w.Code != status(e.Code) {
			t.Fatalf("POST %s %q answered %d for code %s, want %d", path, body, w.Code, e.Code, status(e.Code))
		}
		if !utf8.Valid(w.Body.Bytes()) {
			t.Fatalf("POST %s %q answered invalid UTF-8 %q", path, body, w.Body)
		}
		// A decode refusal never reaches Enroll; anything Enroll saw came
		// from a body that is one valid JSON object.
		if len(fk.got) > 0 {
			var obj map[string]json.RawMessage
			if err := json.Unmarshal(body, &obj); err != nil {
				t.Fatalf("Enroll was reached by a body that is not one JSON object: %q", body)
			}
		}
		if len(fk.rejected) > 0 && len(fk.got) > 0 {
			t.Fatalf("one request was both rejected and enrolled: %q", body)
		}
	})
}
