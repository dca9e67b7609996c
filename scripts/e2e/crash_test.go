//go:build linux

package e2e

import (
	"context"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/hostcert/hostcert/common/protocol"
	"github.com/hostcert/hostcert/internal/dnstest"
)

// TestKillDuringEnrollmentBurst SIGKILLs the primary while 16 clients enroll
// with one token, restarts it, and checks that every certificate a client
// received is in the store, that no serial repeats and that the token was
// not used more than allowed (issue 2, SPEC §10).
func TestKillDuringEnrollmentBurst(t *testing.T) {
	if testing.Short() {
		t.Skip("end-to-end: builds and runs the primary")
	}
	const (
		hosts   = 400
		maxUses = 300
		workers = 16
	)
	dns := dnstest.New(t, nil)
	pr := newPrimary(t, primaryOpts{dnsServer: dns.Addr()})
	tok := strings.TrimSpace(pr.admin("token", "create", "--name", "burst", "--max-uses", strconv.Itoa(maxUses)))
	reqs := make([]protocol.EnrollRequest, hosts)
	for i := range reqs {
		name := fmt.Sprintf("b%d.burst.test", i)
		reqs[i] = protocol.EnrollRequest{Name: name, CSR: csrFor(t, name), Token: tok}
	}
	client := newAPIClient(t, pr.listen, primaryName, pr.caPEM, true)

	var (
		mu       sync.Mutex
		received = map[string]string{} // serial -> host
		next     int
		wg       sync.WaitGroup
	)
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	killed := make(chan struct{})
	for w := 0; w < workers; w++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for {
				mu.Lock()
				i := next
				next++
				mu.Unlock()
				if i >= hosts {
					return
				}
				resp, err := client.enroll(ctx, reqs[i])
				if err != nil {
					var pe *protocol.Error
					if errors.As(err, &pe) && pe.Code != protocol.CodeTokenInvalid {
						t.Errorf("enroll %s: %v", reqs[i].Name, err)
					}
					select {
					case <-killed:
						return // the primary is gone: connection errors are expected
					default:
						continue
					}
				}
				mu.Lock()
				if other, dup := received[resp.Serial]; dup {
					t.Errorf("serial %s issued twice (%s and %s)", resp.Serial, other, reqs[i].Name)
				}
				received[resp.Serial] = reqs[i].Name
				n := len(received)
				mu.Unlock()
				if n == 60 {
					pr.p.kill() // mid-burst: other enrollments are in flight
					close(killed)
				}
			}
		}()
	}
	wg.Wait()
	select {
	case <-killed:
	default:
		t.Fatal("the burst ended before the primary was killed")
	}
	pr.start()

	var certs []struct {
		Serial    string `json:"serial"`
		TokenName string `json:"token"`
	}
	pr.adminJSON(&certs, "cert", "list", "--token", "burst")
	stored := map[string]bool{}
	for _, c := range certs {
		if stored[c.Serial] {
			t.Errorf("serial %s stored twice", c.Serial)
		}
		stored[c.Serial] = true
	}
	for serial, host := range received {
		if !stored[serial] {
			t.Errorf("certificate %s (%s) was received by a client but is not in the store after the restart", serial, host)
		}
	}
	var tokens []struct {
		Name    string `json:"name"`
		Uses    int    `json:"uses"`
		MaxUses int    `json:"max_uses"`
	}
	pr.adminJSON(&tokens, "token", "list")
	for _, tk := range tokens {
		if tk.Name != "burst" {
			continue
		}
		if tk.Uses > maxUses || tk.Uses != len(certs) {
			t.Errorf("token burst: %d uses recorded, %d certificates stored, max %d", tk.Uses, len(certs), maxUses)
		}
	}
	t.Logf("received %d certificates before the kill, %d stored after the restart", len(received), len(certs))

	// The token keeps counting exactly after the restart: use it up.
	left := maxUses - len(certs)
	for i := 0; i < left+1; i++ {
		name := fmt.Sprintf("after%d.burst.test", i)
		_, err := client.enroll(ctx, protocol.EnrollRequest{Name: name, CSR: csrFor(t, name), Token: tok})
		if i < left && err != nil {
			t.Fatalf("enroll %d of the %d uses left: %v", i+1, left, err)
		}
		if i == left && !errors.Is(err, &protocol.Error{Code: protocol.CodeTokenInvalid}) {
			t.Fatalf("enroll past max uses: %v, want token_invalid", err)
		}
	}
}
