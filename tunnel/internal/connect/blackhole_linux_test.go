package connect

import (
	"net"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/hostcert/hostcert/tunnel/internal/config"
)

// blackHoleAddr is a loopback address that never answers a SYN: a listener
// with a backlog of 0 whose one queue slot is taken and never accepted, so
// the kernel drops every further connection attempt (a dial times out, as
// to a node that vanished from the network).
func blackHoleAddr(t *testing.T) string {
	t.Helper()
	fd, err := syscall.Socket(syscall.AF_INET, syscall.SOCK_STREAM, 0)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { syscall.Close(fd) })
	if err := syscall.Bind(fd, &syscall.SockaddrInet4{Addr: [4]byte{127, 0, 0, 1}}); err != nil {
		t.Fatal(err)
	}
	if err := syscall.Listen(fd, 0); err != nil {
		t.Fatal(err)
	}
	sa, err := syscall.Getsockname(fd)
	if err != nil {
		t.Fatal(err)
	}
	addr := net.JoinHostPort("127.0.0.1", strconv.Itoa(sa.(*syscall.SockaddrInet4).Port))
	for range 8 { // fill the accept queue until a dial times out
		c, err := net.DialTimeout("tcp", addr, 200*time.Millisecond)
		if err != nil {
			return addr
		}
		t.Cleanup(func() { c.Close() })
	}
	t.Skip("could not fill the accept queue of a loopback listener")
	return ""
}

// The first upstream black-holed: its dial times out after the dial
// timeout, the CONNECT gets through to the second, and the next CONNECT
// goes to the second straight away.
func TestFailoverPastABlackHoledUpstream(t *testing.T) {
	hole, good := blackHoleAddr(t), newProxyEcho(t)
	tt := startTunnel(t, []string{"primary.example.com:1556=" + hole + "," + good.Addr().String()}, func(f *config.File) {
		f.Limits.DialTimeout = 500 * time.Millisecond
	})
	start := time.Now()
	echoRoundTrip(t, connectThrough(t, tt.addr, "", "primary.example.com:1556"), "past the black hole")
	if took := time.Since(start); took < 500*time.Millisecond {
		t.Errorf("first CONNECT took %v, want at least the dial timeout spent on the black hole", took)
	}
	if !strings.Contains(tt.logs.String(), "upstream unreachable") || good.n.Load() != 1 {
		t.Fatalf("black-holed upstream not reported or second not reached (%d):\n%s", good.n.Load(), tt.logs.String())
	}
	echoRoundTrip(t, connectThrough(t, tt.addr, "", "primary.example.com:1556"), "remembered")
	if n := strings.Count(tt.logs.String(), "upstream unreachable"); n != 1 {
		t.Errorf("the black-holed upstream was dialled first again (%d failures logged)", n)
	}
}
