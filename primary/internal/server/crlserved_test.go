package server

import (
	"bytes"
	"net/http"
	"sync"
	"testing"

	"github.com/hostcert/hostcert/common/protocol"
	"github.com/hostcert/hostcert/primary/internal/admin"
	"github.com/hostcert/hostcert/primary/internal/ca"
)

// TestCRLServedFromCache: GET /v1/crl serves the CRL built at the last
// regeneration, not one built per request: a burst of fetches gets the same
// bytes (every regeneration takes a new, higher CRL number and a new
// ThisUpdate, so one rebuild would show). A revocation is what builds a
// new one.
func TestCRLServedFromCache(t *testing.T) {
	e := newEnv(t, envOpts{})
	h := newHost(t, "cached.test")
	if r := e.enroll(h, e.token("one", 1, ""), "", false); r.status != http.StatusOK {
		t.Fatalf("enroll = %v", r)
	}
	e.call(admin.CmdCertRevoke, admin.RevokeArgs{Host: "cached.test", Reason: "keyCompromise"}, nil)
	built := e.waitCRL(ca.SerialHex(h.leaf.SerialNumber), true)

	const fetches = 40
	bodies := make([][]byte, fetches)
	var wg sync.WaitGroup
	for i := range fetches {
		wg.Go(func() {
			req, _ := http.NewRequest(http.MethodGet, "https://"+e.addr+protocol.PathCRL, nil)
			resp, err := e.client(nil).Do(req)
			if err != nil {
				t.Errorf("GET %s: %v", protocol.PathCRL, err)
				return
			}
			defer resp.Body.Close()
			var b bytes.Buffer
			b.ReadFrom(resp.Body)
			bodies[i] = b.Bytes()
		})
	}
	wg.Wait()
	for i, b := range bodies {
		if !bytes.Equal(b, built.Raw) {
			t.Fatalf("fetch %d of %d: a CRL other than the one built at the revocation (number %v): rebuilt per request", i+1, fetches, built.Number)
		}
	}
}
