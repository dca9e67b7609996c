package server

import (
	"net/http"
	"testing"

	"github.com/hostcert/hostcert/common/protocol"
)

// TestVerificationAnswersCached: a flood of requests for one made-up name
// asks the DNS server once; the answer ("no such host") is reused.
func TestVerificationAnswersCached(t *testing.T) {
	e := newEnv(t, envOpts{})
	e.setLevel(protocol.LevelMedium) // at medium DNS decides: the lookup is needed
	r := e.enroll(newHost(t, "made-up.test"), "", "", false)
	if r.status == http.StatusOK || r.err.Code != protocol.CodeTokenRequired {
		t.Fatalf("enroll made-up.test = %s, want token_required", r)
	}
	asked := e.dns.Queries()
	if asked == 0 {
		t.Fatal("the first enrollment asked DNS nothing")
	}
	for i := 0; i < 5; i++ {
		if r := e.enroll(newHost(t, "made-up.test"), "", "", false); r.err.Code != protocol.CodeTokenRequired {
			t.Fatalf("enroll made-up.test again = %s, want token_required", r)
		}
	}
	if got := e.dns.Queries(); got != asked {
		t.Errorf("DNS queries after 5 more requests for the same name = %d, want %d (cached)", got, asked)
	}
}
