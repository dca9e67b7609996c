package connect

import (
	"net"
	"reflect"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/pires/go-proxyproto"
)

func TestUpstreamOrder(t *testing.T) {
	now := time.Date(2026, 1, 1, 12, 0, 0, 0, time.UTC)
	ups := []string{"a:1", "b:1", "c:1"}
	for _, tc := range []struct {
		name   string
		failed map[string]time.Time
		want   []string
	}{
		{"none failed", nil, []string{"a:1", "b:1", "c:1"}},
		{"first failed just now", map[string]time.Time{"a:1": now}, []string{"b:1", "c:1", "a:1"}},
		{"first failed long ago", map[string]time.Time{"a:1": now.Add(-FailureMemory)}, []string{"a:1", "b:1", "c:1"}},
		{"two failed, most recent last", map[string]time.Time{"a:1": now.Add(-time.Second), "b:1": now.Add(-2 * time.Second)}, []string{"c:1", "b:1", "a:1"}},
		{"all failed", map[string]time.Time{"a:1": now, "b:1": now.Add(-time.Second), "c:1": now.Add(-2 * time.Second)}, []string{"c:1", "b:1", "a:1"}},
		{"an upstream no longer configured is ignored", map[string]time.Time{"x:1": now}, []string{"a:1", "b:1", "c:1"}},
	} {
		if got := upstreamOrder(ups, tc.failed, now); !reflect.DeepEqual(got, tc.want) {
			t.Errorf("upstreamOrder(%s) = %v, want %v", tc.name, got, tc.want)
		}
	}
	if got := upstreamOrder([]string{"a:1"}, map[string]time.Time{"a:1": now}, now); !reflect.DeepEqual(got, []string{"a:1"}) {
		t.Errorf("upstreamOrder(one upstream, failed) = %v, want it still dialled", got)
	}
}

// proxyEcho is an upstream that reads the PROXY header, records the client
// address it names, and echoes.
type proxyEcho struct {
	*countingListener
	source atomic.Value // string: the source of the last PROXY header
}

func newProxyEcho(t *testing.T) *proxyEcho {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	p := &proxyEcho{countingListener: &countingListener{Listener: &proxyproto.Listener{Listener: ln}}}
	go func() {
		for {
			c, err := p.Accept()
			if err != nil {
				return
			}
			go func() {
				defer c.Close()
				buf := make([]byte, 64)
				for {
					n, err := c.Read(buf) // reads the PROXY header first
					if h := c.(*proxyproto.Conn).ProxyHeader(); h != nil {
						p.source.Store(h.SourceAddr.String())
					}
					if n > 0 {
						c.Write(buf[:n])
					}
					if err != nil {
						return
					}
				}
			}()
		}
	}()
	t.Cleanup(func() { ln.Close() })
	return p
}

// deadAddr is a loopback address that refuses connections.
func deadAddr(t *testing.T) string {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := l.Addr().String()
	l.Close()
	return addr
}

// One allowed target, two upstreams, the first refusing: the CONNECT gets
// through to the second, with the PROXY header naming the client; the
// failing one is remembered and not dialled first again for a while.
func TestFailoverToTheNextUpstream(t *testing.T) {
	dead, good := deadAddr(t), newProxyEcho(t)
	tt := startTunnel(t, []string{"primary.example.com:1556=" + dead + "," + good.Addr().String()}, nil)
	c := connectThrough(t, tt.addr, "127.0.0.3", "primary.example.com:1556")
	echoRoundTrip(t, c, "through the second upstream")
	if src, _ := good.source.Load().(string); !strings.HasPrefix(src, "127.0.0.3:") {
		t.Errorf("PROXY header at the second upstream names %q, want the client 127.0.0.3", src)
	}
	if n := strings.Count(tt.logs.String(), "upstream unreachable"); n != 1 {
		t.Fatalf("logged %d unreachable upstreams, want 1:\n%s", n, tt.logs.String())
	}
	echoRoundTrip(t, connectThrough(t, tt.addr, "", "primary.example.com:1556"), "again")
	if n := strings.Count(tt.logs.String(), "upstream unreachable"); n != 1 {
		t.Errorf("the refusing upstream was dialled first again within the failure memory (%d failures logged)", n)
	}
	if good.n.Load() != 2 {
		t.Errorf("second upstream accepted %d tunnels, want 2", good.n.Load())
	}
}

// Every upstream down: 502, after trying each once.
func TestAllUpstreamsDownIs502(t *testing.T) {
	tt := startTunnel(t, []string{"primary.example.com:1556=" + deadAddr(t) + "," + deadAddr(t)}, nil)
	resp, _ := rawRequest(t, tt.addr, "", "CONNECT primary.example.com:1556 HTTP/1.1\r\n\r\n")
	if resp.StatusCode != 502 {
		t.Fatalf("CONNECT with every upstream down = %s, want 502", resp.Status)
	}
	if n := strings.Count(tt.logs.String(), `"upstream unreachable"`); n != 2 {
		t.Errorf("logged %d unreachable upstreams, want both tried once:\n%s", n, tt.logs.String())
	}
}

// Several upstreams do not widen the allow list: another target, or an
// upstream's own address asked for as a target, dials nothing.
func TestSeveralUpstreamsDialOnlyForTheTarget(t *testing.T) {
	a, b := newProxyEcho(t), newProxyEcho(t)
	tt := startTunnel(t, []string{"primary.example.com:1556=" + a.Addr().String() + "," + b.Addr().String()}, nil)
	for _, target := range []string{"other.example.com:1556", a.Addr().String(), b.Addr().String()} {
		resp, _ := rawRequest(t, tt.addr, "", "CONNECT "+target+" HTTP/1.1\r\n\r\n")
		if resp.StatusCode != 403 {
			t.Errorf("CONNECT %s = %s, want 403", target, resp.Status)
		}
	}
	if a.n.Load()+b.n.Load() != 0 {
		t.Errorf("refused CONNECTs dialled the upstreams %d times, want 0", a.n.Load()+b.n.Load())
	}
}
