package server

import (
	"bytes"
	"database/sql"
	"encoding/json"
	"net"
	"net/http"
	"net/netip"
	"path/filepath"
	"testing"
	"time"

	"github.com/hostcert/hostcert/common/protocol"
	"github.com/hostcert/hostcert/primary/internal/admin"
)

// TestRouteRecorded: a certificate records the route its request took —
// tunnel when it came through a declared tunnel (127.0.0.1 here, with a
// PROXY v2 header), direct otherwise — and its key algorithm; the
// inventory counts them.
func TestRouteRecorded(t *testing.T) {
	if ln, err := net.Listen("tcp", "127.0.0.2:0"); err != nil {
		t.Skipf("127.0.0.2 is not usable here: %v", err)
	} else {
		ln.Close()
	}
	e := newEnv(t, envOpts{tunnels: []string{"127.0.0.1/32"}})
	e.setLevel(protocol.LevelMedium)
	dmz := netip.MustParseAddrPort("198.51.100.7:40000")
	e.dns.Set("dmz.test", dmz.Addr())
	e.dns.Set("lan.test", netip.MustParseAddr("127.0.0.2"))
	for _, c := range []struct {
		name   string
		client *http.Client
	}{
		{"dmz.test", e.clientVia("127.0.0.1", 2, dmz)},
		{"lan.test", e.clientVia("127.0.0.2", 0, netip.AddrPort{})},
	} {
		h := newHost(t, c.name)
		body, _ := json.Marshal(protocol.EnrollRequest{Name: c.name, CSR: h.csr(t)})
		resp, err := c.client.Post("https://"+e.addr+protocol.PathEnroll, "application/json", bytes.NewReader(body))
		if err != nil {
			t.Fatalf("enroll %s: %v", c.name, err)
		}
		resp.Body.Close()
		if resp.StatusCode != http.StatusOK {
			t.Fatalf("enroll %s = %d, want 200", c.name, resp.StatusCode)
		}
	}
	for name, want := range map[string]string{"dmz.test": "tunnel", "lan.test": "direct"} {
		var certs []admin.Cert
		e.call(admin.CmdCertList, admin.CertArgs{Host: name}, &certs)
		if len(certs) != 1 || certs[0].Route != want || certs[0].KeyAlg != "ecdsa-p256" {
			t.Errorf("cert list --host %s = %+v, want one certificate, route %s, key ecdsa-p256", name, certs, want)
		}
	}
	var inv admin.InventoryInfo
	e.call(admin.CmdInventory, nil, &inv)
	if inv.ByRoute["tunnel"] != 1 || inv.ByRoute["direct"] != 1 || inv.ByKeyAlg["ecdsa-p256"] != 2 || inv.Certificates.Valid != 2 {
		t.Errorf("inventory = %+v, want one certificate by each route, both ecdsa-p256", inv)
	}
}

// TestLastContactRecorded: a request made with a host's certificate (its
// CRL or info refresh) counts as contact, not only the first one: a host
// whose last contact is old is seen again at its next request, and drops
// out of host list --stale.
func TestLastContactRecorded(t *testing.T) {
	e := newEnv(t, envOpts{})
	e.setLevel(protocol.LevelMedium)
	e.dns.Set("seen.test", netip.MustParseAddr("127.0.0.1"))
	h := newHost(t, "seen.test")
	if r := e.enroll(h, "", "", false); r.status != http.StatusOK {
		t.Fatalf("enroll = %s", r)
	}
	get := func(path string) {
		resp, err := e.client(h.tls).Get("https://" + e.addr + path)
		if err != nil {
			t.Fatalf("GET %s: %v", path, err)
		}
		resp.Body.Close()
	}
	get(protocol.PathCRL) // the first use
	// The host went quiet 30 days ago (written behind the server's back).
	db, err := sql.Open("sqlite", filepath.Join(e.dir, DBName))
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	old := time.Now().Add(-30 * 24 * time.Hour)
	if _, err := db.Exec("UPDATE hosts SET seen_at = ? WHERE name = 'seen.test'", old.UnixNano()); err != nil {
		t.Fatal(err)
	}
	var stale []admin.Host
	e.call(admin.CmdHostList, admin.HostListArgs{Stale: "7d"}, &stale)
	if len(stale) != 1 || stale[0].Name != "seen.test" {
		t.Fatalf("host list --stale 7d = %+v, want seen.test", stale)
	}
	before := time.Now()
	get(protocol.PathInfo) // a later request with the same certificate
	e.call(admin.CmdHostList, admin.HostListArgs{Stale: "7d"}, &stale)
	var all []admin.Host
	e.call(admin.CmdHostList, nil, &all)
	if len(stale) != 0 || len(all) != 1 || all[0].SeenAt == nil || all[0].SeenAt.Before(before.Add(-time.Second)) {
		t.Errorf("after a request with its certificate: stale %+v, hosts %+v, want seen.test seen at about %s", stale, all, before)
	}
}
