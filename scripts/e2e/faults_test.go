//go:build linux

package e2e

import (
	"context"
	"fmt"
	"net"
	"net/netip"
	"strings"
	"testing"
	"time"

	toxiproxy "github.com/Shopify/toxiproxy/v2"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/rs/zerolog"

	"github.com/hostcert/hostcert/internal/dnstest"
)

// faultProxy is an in-process toxiproxy proxy on 127.0.0.1 in front of one
// leg of the path agent -> tunnel -> primary.
type faultProxy struct {
	t     testing.TB
	proxy *toxiproxy.Proxy
}

func newFaultProxy(t testing.TB, name, upstream string) *faultProxy {
	t.Helper()
	srv := toxiproxy.NewServer(toxiproxy.NewMetricsContainer(prometheus.NewRegistry()), zerolog.Nop())
	p := toxiproxy.NewProxy(srv, name, "127.0.0.1:0", upstream)
	if err := p.Start(); err != nil {
		t.Fatalf("toxiproxy %s: %v", name, err)
	}
	t.Cleanup(p.Stop)
	return &faultProxy{t: t, proxy: p}
}

func (f *faultProxy) addr() string { return f.proxy.Listen }

// add adds a toxic from its JSON attributes and returns its name.
func (f *faultProxy) add(typ, stream, attrs string) string {
	f.t.Helper()
	name := typ + "_" + stream
	js := fmt.Sprintf(`{"name":%q,"type":%q,"stream":%q,"toxicity":1,"attributes":%s}`, name, typ, stream, attrs)
	if _, err := f.proxy.Toxics.AddToxicJson(strings.NewReader(js)); err != nil {
		f.t.Fatalf("toxiproxy %s: add %s: %v", f.proxy.Name, name, err)
	}
	return name
}

func (f *faultProxy) remove(name string) {
	f.t.Helper()
	if err := f.proxy.Toxics.RemoveToxic(context.Background(), name); err != nil {
		f.t.Fatalf("toxiproxy %s: remove %s: %v", f.proxy.Name, name, err)
	}
}

// toxic is one toxiproxy toxic of a fault.
type toxic struct{ typ, stream, attrs string }

// TestFaults puts toxiproxy on both legs of a DMZ host's path, agent ->
// tunnel and tunnel -> primary, with the three built programs on loopback.
// Under every fault an enrollment and a renewal are attempted: a fault that
// only slows the bytes down must not stop them, a fault that breaks the
// connection must fail them cleanly, and in every case the agent's
// certificate store stays whole (host.pem is a matching certificate and key,
// unchanged by a failed attempt). Once the fault is removed, enrollment and
// renewal succeed.
func TestFaults(t *testing.T) {
	if testing.Short() {
		t.Skip("end-to-end: builds and runs the three programs")
	}
	began := time.Now()
	dns := dnstest.New(t, nil)
	// The tunnel reaches the primary through toxiproxy, so the primary sees
	// it at 127.0.0.1: that is the tunnel address whose PROXY header it reads.
	pr := newPrimary(t, primaryOpts{dnsServer: dns.Addr(), tunnelAddr: []string{"127.0.0.1"}})
	pr.admin("level", "set", "medium")
	_, port, _ := net.SplitHostPort(pr.listen)
	target := primaryName + ":" + port

	legs := map[string]*faultProxy{"tunnel->primary": newFaultProxy(t, "tunnel-primary", pr.listen)}
	tunAddr := freePort(t, "127.0.0.1")
	tun := start(t, "tunnel", "", bins.tunnel, "run", "--listen", tunAddr,
		"--allow", target+"="+legs["tunnel->primary"].addr(), "--log-format", "json")
	tun.waitFor(t, "listening", 20*time.Second)
	legs["agent->tunnel"] = newFaultProxy(t, "agent-tunnel", tunAddr)

	faults := []struct {
		name   string
		toxics []toxic
		passes bool // the operation still succeeds under the fault
	}{
		{"latency", []toxic{
			{"latency", "upstream", `{"latency":150,"jitter":50}`},
			{"latency", "downstream", `{"latency":150,"jitter":50}`},
		}, true},
		{"reset_peer", []toxic{{"reset_peer", "upstream", `{"timeout":0}`}}, false},
		{"timeout (black hole)", []toxic{
			{"timeout", "upstream", `{"timeout":0}`},
			{"timeout", "downstream", `{"timeout":0}`},
		}, false},
		{"slicer", []toxic{
			{"slicer", "upstream", `{"average_size":16,"size_variation":8,"delay":2000}`},
			{"slicer", "downstream", `{"average_size":16,"size_variation":8,"delay":2000}`},
		}, true},
		{"limit_data (connection cut mid-response)", []toxic{{"limit_data", "downstream", `{"bytes":3000}`}}, false},
		{"slow_close", []toxic{
			{"slow_close", "upstream", `{"delay":2000}`},
			{"slow_close", "downstream", `{"delay":2000}`},
		}, true},
	}
	n := 0
	for _, leg := range []string{"agent->tunnel", "tunnel->primary"} {
		for _, f := range faults {
			n++
			name := fmt.Sprintf("f%d.faults.test", n)
			t.Run(leg+"/"+f.name, func(t *testing.T) {
				px := legs[leg]
				// The primary sees the address toxiproxy dials the tunnel
				// from, relayed by the tunnel: 127.0.0.1, which DNS confirms.
				dns.Set(name, netip.MustParseAddr("127.0.0.1"))
				a := newAgentHost(t, name, target, "primary_dial: 127.0.0.1:1", "tunnels: ["+legs["agent->tunnel"].addr()+"]",
					"dial_timeout: 3s", "request_timeout: 15s")
				a.must("get-ca-cert", "--fingerprint", pr.fingerprint)

				var on []string
				inject := func() {
					for _, x := range f.toxics {
						on = append(on, px.add(x.typ, x.stream, x.attrs))
					}
				}
				clear := func() {
					for _, n := range on {
						px.remove(n)
					}
					on = nil
				}
				defer clear()
				// attempt runs an agent command under the fault and checks
				// its outcome against passes.
				attempt := func(cmd string) bool {
					t.Helper()
					t0 := time.Now()
					r := a.do(cmd)
					took := time.Since(t0).Round(time.Millisecond)
					if f.passes && r.code != 0 {
						t.Fatalf("%s under %s on %s failed after %v, want success: %s", cmd, f.name, leg, took, r)
					}
					if !f.passes && r.code == 0 {
						t.Fatalf("%s under %s on %s succeeded after %v, want a failure", cmd, f.name, leg, took)
					}
					t.Logf("%s under the fault: exit %d after %v %s", cmd, r.code, took, strings.TrimSpace(r.stderr))
					return r.code == 0
				}

				// Enrollment.
				inject()
				ok := attempt("get-cert")
				_, cert := checkStore(t, a, pr.caPEM, !ok)
				if !ok && cert != nil {
					t.Fatal("a failed get-cert left a certificate behind")
				}
				clear()
				if !ok {
					enrollAfterFault(t, a)
				}
				before, old := checkStore(t, a, pr.caPEM, false)

				// Renewal.
				inject()
				ok = attempt("renew")
				b, cert := checkStore(t, a, pr.caPEM, false)
				if !ok && string(b) != string(before) {
					t.Fatal("a failed renewal changed host.pem")
				}
				if ok && cert.SerialNumber.Cmp(old.SerialNumber) == 0 {
					t.Fatal("renew succeeded but host.pem still holds the old certificate")
				}
				clear()
				_, old = checkStore(t, a, pr.caPEM, false)
				a.must("renew")
				if _, cert := checkStore(t, a, pr.caPEM, false); cert.SerialNumber.Cmp(old.SerialNumber) == 0 || cert.Subject.CommonName != old.Subject.CommonName {
					t.Fatalf("renew after the fault: serial %s -> %s, host %s -> %s; want a new serial, same host",
						old.SerialNumber, cert.SerialNumber, old.Subject.CommonName, cert.Subject.CommonName)
				}
				if st := a.fullStatus(); st.State.Route != "tunnel "+legs["agent->tunnel"].addr() {
					t.Errorf("route = %q, want the tunnel", st.State.Route)
				}
			})
		}
	}
	t.Logf("TestFaults took %v", time.Since(began).Round(time.Millisecond))
}

// enrollAfterFault runs get-cert once a fault that failed an enrollment is
// gone. When the fault cut the primary's answer after it had issued the
// certificate, the agent asks again with the same (pending) key and the
// primary sends that certificate again: no reissue token is needed.
func enrollAfterFault(t testing.TB, a *agentHost) {
	t.Helper()
	if r := a.do("get-cert"); r.code != 0 {
		t.Fatalf("get-cert after the fault: %s", r)
	}
}
