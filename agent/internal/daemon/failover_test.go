package daemon_test

import (
	"bytes"
	"context"
	"io"
	"math/big"
	"net"
	"os"
	"path/filepath"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/hostcert/hostcert/agent/internal/cli"
	"github.com/hostcert/hostcert/internal/pgtest"
	"github.com/hostcert/hostcert/primary/primarytest"
)

// Two primary nodes on one PostgreSQL database: the agent renews on the node
// it uses (the first), that node is black-holed after it has committed the
// renewal and before its answer arrives, and the renewal completes on the
// second node — which sends the certificate the first one issued (the store
// is shared, so it knows the renewal already happened): one current
// certificate, no second renewal.
//
// The second node gets the CA by copying the first's ca/ and tls/
// directories (primarytest.Options.Join): how a second node receives the CA
// key in production is decided elsewhere (issue 10, item 4); the agent only
// needs both nodes to chain to the CA it trusts.
func TestRenewalFailsOverToTheOtherNode(t *testing.T) {
	dsn := pgtest.Start(t).CreateDatabase(t, "fleet")
	nodeA := primarytest.Start(t, primarytest.Options{Store: dsn, CertValidity: 20 * time.Second})
	nodeB := primarytest.Start(t, primarytest.Options{Store: dsn, CertValidity: 20 * time.Second, Join: nodeA})
	if nodeA.Fingerprint() != nodeB.Fingerprint() {
		t.Fatalf("the nodes have different CAs: %s, %s", nodeA.Fingerprint(), nodeB.Fingerprint())
	}
	toxi := newCutter(t, nodeA.Addr())

	nodeA.AddHost("h1.example.com")
	dir := t.TempDir()
	a := &agent{t: t, srv: nodeA, data: filepath.Join(dir, "data"), config: filepath.Join(dir, "agent.yaml"), log: &syncBuf{}}
	// Both nodes' certificates carry localhost; the first is reached through the proxy.
	first, second := "localhost:"+port(toxi.Addr()), "localhost:"+nodeB.Port()
	cfg := "primary: [" + first + ", " + second + "]\ndata_dir: " + a.data +
		"\nlog_format: json\ndial_timeout: 2s\nrequest_timeout: 6s\nrenew_before: 5m\n"
	if err := os.WriteFile(a.config, []byte(cfg), 0o644); err != nil {
		t.Fatal(err)
	}
	for _, args := range [][]string{
		{"get-ca-cert", "--fingerprint", nodeA.Fingerprint()},
		{"get-cert", "--name", "h1.example.com"},
	} {
		var out, errb bytes.Buffer
		if err := cli.Execute(context.Background(), append(args, "--config", a.config), cli.IO{Out: &out, Err: &errb, In: strings.NewReader("")}); err != nil {
			t.Fatalf("%v: %v\n%s", args, err, errb.String())
		}
	}
	if st := a.state(); st.Route != "direct "+first {
		t.Fatalf("enrolled over %q, want the first node (direct %s)", st.Route, first)
	}
	before := a.identity().Cert

	// Every answer of node A takes a second: the renewal request reaches
	// it, and the black hole swallows its answer.
	toxi.delay.Store(int64(time.Second))
	a.start()
	eventually(t, "node A to commit the renewal", func() bool { return nodeA.Count("renew") >= 1 })
	toxi.cut.Store(true)
	eventually(t, "the renewed certificate on disk", func() bool { return !a.identity().Cert.Equal(before) })

	if n := nodeA.Count("renew"); n != 1 {
		t.Errorf("renewals in the store = %d, want 1 (node B resends, it does not renew again)", n)
	}
	if !strings.Contains(nodeB.Log(), "certificate sent again to a retried request") {
		t.Errorf("node B did not answer the retried renewal; its log:\n%s", nodeB.Log())
	}
	if strings.Contains(nodeA.Log(), "certificate sent again to a retried request") {
		t.Errorf("node A answered the retry although it was black-holed")
	}
	got := a.identity().Cert.SerialNumber
	if want := issuedSerial(t, nodeA); got.Cmp(want) != 0 {
		t.Errorf("agent holds serial %X, want %X, the one node A issued", got, want)
	}
	if st := a.state(); st.Route != "direct "+second {
		t.Errorf("route after failover = %q, want direct %s", st.Route, second)
	}
}

// issuedSerial is the serial of the one renewal in the (shared) audit log.
func issuedSerial(t *testing.T, p *primarytest.Primary) *big.Int {
	t.Helper()
	for _, r := range p.Audit() {
		if r.Action == "renew" {
			s, _ := r.Detail["serial"].(string)
			n, ok := new(big.Int).SetString(s, 16)
			if !ok {
				t.Fatalf("renew audit entry without a serial: %+v", r)
			}
			return n
		}
	}
	t.Fatal("no renew entry in the audit log")
	return nil
}

// cutter is a TCP proxy to one upstream that can delay what the upstream
// sends and black-hole everything at once: once cut, bytes already on
// their way (held by the delay) and every later byte are dropped both ways,
// and new connections are accepted and never answered. (toxiproxy lets a
// delayed chunk through when a black hole is added behind its latency.)
type cutter struct {
	ln    net.Listener
	delay atomic.Int64 // nanoseconds added to every chunk from the upstream
	cut   atomic.Bool
}

func newCutter(t *testing.T, upstream string) *cutter {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	c := &cutter{ln: ln}
	var conns []net.Conn
	done := make(chan struct{})
	go func() {
		defer close(done)
		for {
			client, err := ln.Accept()
			if err != nil {
				return
			}
			conns = append(conns, client)
			if c.cut.Load() {
				continue // held open, never answered
			}
			up, err := net.Dial("tcp", upstream)
			if err != nil {
				client.Close()
				continue
			}
			conns = append(conns, up)
			go c.pipe(up, client, 0)
			go c.pipe(client, up, 1)
		}
	}()
	t.Cleanup(func() {
		ln.Close()
		<-done
		for _, conn := range conns {
			conn.Close()
		}
	})
	return c
}

func (c *cutter) Addr() string { return c.ln.Addr().String() }

func port(addr string) string { _, p, _ := net.SplitHostPort(addr); return p }

// pipe copies src to dst; from the upstream (fromUp == 1) each chunk waits
// out the delay first; after the cut nothing more is written.
func (c *cutter) pipe(dst, src net.Conn, fromUp int) {
	buf := make([]byte, 32<<10)
	for {
		n, err := src.Read(buf)
		if n > 0 {
			if fromUp == 1 {
				time.Sleep(time.Duration(c.delay.Load()))
			}
			if c.cut.Load() {
				io.Copy(io.Discard, src)
				return
			}
			if _, werr := dst.Write(buf[:n]); werr != nil {
				return
			}
		}
		if err != nil {
			if tc, ok := dst.(*net.TCPConn); ok && !c.cut.Load() {
				tc.CloseWrite()
			}
			return
		}
	}
}
