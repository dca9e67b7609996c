package metrics

import (
	"context"
	"io"
	"net"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/rs/zerolog"
)

func TestListenAddr(t *testing.T) {
	for _, tc := range []struct{ in, want string }{
		{"", ""},
		{"9556", "127.0.0.1:9556"},
		{":9556", "127.0.0.1:9556"},
		{"127.0.0.1:9556", "127.0.0.1:9556"},
		{"[::1]:9556", "[::1]:9556"},
		{"10.0.0.5:9556", "10.0.0.5:9556"},
		{"0.0.0.0:9556", "0.0.0.0:9556"},
	} {
		got, err := ListenAddr(tc.in)
		if err != nil || got != tc.want {
			t.Errorf("ListenAddr(%q) = %q, %v, want %q, nil", tc.in, got, err, tc.want)
		}
	}
	for _, bad := range []string{"host:", "a:b:c"} {
		if got, err := ListenAddr(bad); err == nil {
			t.Errorf("ListenAddr(%q) = %q, nil, want an error", bad, got)
		}
	}
}

func TestServe(t *testing.T) {
	reg := prometheus.NewRegistry()
	c := prometheus.NewCounter(prometheus.CounterOpts{Name: "hostcert_test_things_total", Help: "Things."})
	reg.MustRegister(c)
	c.Add(3)
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- Serve(ctx, ln, reg, zerolog.Nop()) }()
	cl := &http.Client{Timeout: 5 * time.Second}
	resp, err := cl.Get("http://" + ln.Addr().String() + Path)
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if !strings.Contains(string(body), "hostcert_test_things_total 3") {
		t.Errorf("GET /metrics = %q, want hostcert_test_things_total 3", body)
	}
	if resp, err := cl.Get("http://" + ln.Addr().String() + "/other"); err != nil || resp.StatusCode != http.StatusNotFound {
		t.Errorf("GET /other = %v, %v, want 404", resp, err)
	}
	cancel()
	select {
	case err := <-done:
		if err != nil {
			t.Errorf("Serve = %v, want nil after cancel", err)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("Serve did not stop")
	}
}

// TestProfiling: Go's profiles are served only when asked for.
func TestProfiling(t *testing.T) {
	get := func(opts ...Option) int {
		t.Helper()
		ln, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		ctx, cancel := context.WithCancel(context.Background())
		done := make(chan error, 1)
		go func() { done <- Serve(ctx, ln, prometheus.NewRegistry(), zerolog.Nop(), opts...) }()
		defer func() {
			cancel()
			<-done
		}()
		resp, err := (&http.Client{Timeout: 5 * time.Second}).Get("http://" + ln.Addr().String() + ProfilePath + "goroutine?debug=1")
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		return resp.StatusCode
	}
	if code := get(); code != http.StatusNotFound {
		t.Errorf("GET %sgoroutine without WithProfiling = %d, want 404", ProfilePath, code)
	}
	if code := get(WithProfiling()); code != http.StatusOK {
		t.Errorf("GET %sgoroutine with WithProfiling = %d, want 200", ProfilePath, code)
	}
}
