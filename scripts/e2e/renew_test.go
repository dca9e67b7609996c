//go:build linux

package e2e

import (
	"encoding/json"
	"errors"
	"io"
	"net"
	"net/netip"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

// answerCutter is a TCP relay in front of the primary that loses one
// renewal's answer: while armed, once committed() says the primary has
// committed the renewal, the first connection that receives a large answer
// (a certificate response, not a CRL or an info document) is closed before
// that answer reaches the agent. Everything else passes untouched.
type answerCutter struct {
	t         testing.TB
	ln        net.Listener
	upstream  string
	committed func() bool
	armed     atomic.Bool
	cuts      atomic.Int32
	wg        sync.WaitGroup
}

// cutSize is the least downstream size taken for a certificate response.
const cutSize = 1500

func newAnswerCutter(t testing.TB, upstream string, committed func() bool) *answerCutter {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	c := &answerCutter{t: t, ln: ln, upstream: upstream, committed: committed}
	c.wg.Add(1)
	go c.serve()
	t.Cleanup(func() { ln.Close(); c.wg.Wait() })
	return c
}

func (c *answerCutter) addr() string { return c.ln.Addr().String() }

func (c *answerCutter) serve() {
	defer c.wg.Done()
	for {
		down, err := c.ln.Accept()
		if err != nil {
			return
		}
		up, err := net.DialTimeout("tcp", c.upstream, 5*time.Second)
		if err != nil {
			down.Close()
			continue
		}
		c.wg.Add(2)
		go func() {
			defer c.wg.Done()
			io.Copy(up, down)
			up.(*net.TCPConn).CloseWrite()
		}()
		go func() {
			defer c.wg.Done()
			defer down.Close()
			defer up.Close()
			c.relayDown(up, down)
		}()
	}
}

// relayDown copies the primary's bytes to the agent; after the commit it
// holds them briefly to tell a certificate response (cut) from a small
// answer (passed on).
func (c *answerCutter) relayDown(up, down net.Conn) {
	buf := make([]byte, 32<<10)
	var held []byte
	for {
		if len(held) > 0 {
			up.SetReadDeadline(time.Now().Add(300 * time.Millisecond))
		} else {
			up.SetReadDeadline(time.Time{})
		}
		n, err := up.Read(buf)
		if n > 0 {
			if len(held) > 0 || (c.armed.Load() && c.committed()) {
				held = append(held, buf[:n]...)
				if len(held) >= cutSize && c.armed.CompareAndSwap(true, false) {
					c.cuts.Add(1)
					return // closes both: the answer is lost
				}
				continue
			}
			if _, err := down.Write(buf[:n]); err != nil {
				return
			}
		}
		var ne net.Error
		if errors.As(err, &ne) && ne.Timeout() {
			if _, err := down.Write(held); err != nil {
				return
			}
			held = nil
			continue
		}
		if err != nil {
			down.Write(held)
			return
		}
	}
}

// TestLostRenewalAnswer: the agent's service loop renews; the primary
// commits the renewal but its answer never reaches the agent. The loop
// retries by itself — no token, no operator — with the key it kept pending,
// and gets the certificate already issued: the host ends with exactly one
// current certificate, the one the agent holds.
func TestLostRenewalAnswer(t *testing.T) {
	if testing.Short() {
		t.Skip("end-to-end: builds and runs the programs")
	}
	w := newWorld(t, "--cert-validity", "2m")
	w.pr.admin("level", "set", "medium")
	const name = "lost.renew.test"
	// The relay reaches the primary from 127.0.0.1: the name resolves there.
	w.dns.Set(name, netip.MustParseAddr("127.0.0.1"))

	var certs []struct {
		Serial      string     `json:"serial"`
		RenewedFrom string     `json:"renewed_from"`
		UsedAt      *time.Time `json:"used_at"`
	}
	listCerts := func() int {
		r := w.pr.tryAdmin("cert", "list", "--host", name, "--json")
		certs = certs[:0]
		if r.code != 0 || json.Unmarshal([]byte(r.stdout), &certs) != nil {
			return -1
		}
		return len(certs)
	}
	relay := newAnswerCutter(t, w.pr.listen, func() bool { return listCerts() >= 2 })

	a := newAgentHost(t, name, w.primary, "primary_dial: "+relay.addr(), "renew_before: 110s")
	a.must("get-ca-cert", "--fingerprint", w.pr.fingerprint)
	a.must("get-cert")
	first := a.status()
	if n := listCerts(); n != 1 {
		t.Fatalf("certificates after get-cert = %d, want 1", n)
	}

	relay.armed.Store(true)
	ag := start(t, "agent run", "", bins.agent, "run", "--config", a.config)
	var st agentStatus
	untilTrue(t, 60*time.Second, "the agent holds a renewed certificate", func() bool {
		st = a.status()
		return st.Serial != first.Serial
	})
	ag.stop(5 * time.Second)

	if relay.cuts.Load() != 1 {
		t.Fatalf("answers cut = %d, want 1 (the renewal's answer)\n%s", relay.cuts.Load(), ag.output())
	}
	if !strings.Contains(ag.output(), "renewal failed") {
		t.Errorf("the agent's log shows no failed renewal attempt:\n%s", ag.output())
	}
	if n := listCerts(); n != 2 {
		t.Fatalf("certificates of %s = %d (%+v), want 2: the first and one renewal", name, n, certs)
	}
	if certs[1].Serial != st.Serial || certs[1].RenewedFrom != first.Serial || st.HostID != first.HostID {
		t.Errorf("the agent holds %s (host %s); the primary's current certificate is %s renewed from %s; want the current one, renewed from %s",
			st.Serial, st.HostID, certs[1].Serial, certs[1].RenewedFrom, first.Serial)
	}
	if _, err := os.Stat(filepath.Join(a.dir, "data", "pending-key.pem")); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("pending key left after the renewal was stored: %v", err)
	}
	var audit []struct {
		Action string `json:"action"`
		Name   string `json:"name"`
	}
	w.pr.adminJSON(&audit, "audit")
	resends := 0
	for _, r := range audit {
		if r.Action == "resend" && r.Name == name {
			resends++
		}
	}
	if resends != 1 {
		t.Errorf("resends of %s in the audit log = %d, want 1", name, resends)
	}
	// The superseded certificate cannot renew any more: the agent's
	// current one can.
	a.must("renew")
	if n := listCerts(); n != 3 {
		t.Errorf("certificates after a later renewal = %d, want 3", n)
	}
}
