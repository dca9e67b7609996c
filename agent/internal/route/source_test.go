package route

import (
	"context"
	"net"
	"testing"
	"time"
)

func TestDialUsesSourceAddress(t *testing.T) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	seen := make(chan string, 1)
	go func() {
		c, err := l.Accept()
		if err != nil {
			return
		}
		host, _, _ := net.SplitHostPort(c.RemoteAddr().String())
		seen <- host
		c.Close()
	}()
	c := Config{Primaries: []string{"primary.test:1556"}, SourceAddress: "127.0.0.7", DialTimeout: 2 * time.Second}
	conn, err := c.dial(context.Background(), Route{}, l.Addr().String())
	if err != nil {
		t.Fatalf("dial with source 127.0.0.7: %v", err)
	}
	conn.Close()
	if got := <-seen; got != "127.0.0.7" {
		t.Errorf("server saw the client at %s, want 127.0.0.7", got)
	}
	bad := Config{Primaries: []string{"primary.test:1556"}, SourceAddress: "not-an-ip"}
	if _, err := bad.dial(context.Background(), Route{}, l.Addr().String()); err == nil {
		t.Error("dial with source address not-an-ip = nil error, want an error")
	}
}
