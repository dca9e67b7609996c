package cli

import (
	"context"
	"fmt"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/google/uuid"

	"github.com/hostcert/hostcert/common/protocol"
	"github.com/hostcert/hostcert/primary/internal/admin"
	"github.com/hostcert/hostcert/primary/internal/store"
)

// TestInventory: on a generated fleet larger than one page of the admin
// socket (admin.MaxPageRows), cert list, cert list --expiring 30d, host
// list, host list --stale 7d and inventory (--json and text) page through
// the whole of it and agree with the data: expiring = current, unrevoked
// certificates expiring within the window (expired ones included); stale =
// unrevoked hosts whose last contact is older than the window.
func TestInventory(t *testing.T) {
	n := admin.MaxPageRows + 150
	now := time.Now()
	type host struct {
		name, serial   string
		notAfter, seen time.Time
		revoked        bool
		route, keyAlg  string
	}
	hosts := make([]host, n)
	_, cmd := startPrimary(t, func(dir string) {
		withStore(t, dir, func(st *store.Store) {
			start := time.Now()
			var wg sync.WaitGroup
			sem := make(chan struct{}, 16)
			for i := range hosts {
				h := host{
					name:     fmt.Sprintf("h%05d.fleet.example", i),
					serial:   fmt.Sprintf("%032X", i+1),
					notAfter: now.Add(time.Duration(i%90-5)*24*time.Hour + 12*time.Hour), // 4.5 days ago to 84.5 days ahead, never on a boundary
					seen:     now.Add(-time.Duration(i%15) * 24 * time.Hour).Add(-time.Minute),
					revoked:  i%11 == 0,
					route:    []string{store.RouteDirect, store.RouteTunnel}[i%2],
					keyAlg:   []string{"ecdsa-p256", "rsa-3072", "ecdsa-p384"}[i%3],
				}
				hosts[i] = h
				wg.Add(1)
				sem <- struct{}{}
				go func() {
					defer wg.Done()
					defer func() { <-sem }()
					id := uuid.NewString()
					is := store.Issuance{
						Kind: protocol.KindIssue, Host: store.Host{ID: id, Name: h.name},
						Cert: store.Cert{Serial: h.serial, HostID: id, Names: []string{h.name}, IssuedAt: h.seen,
							NotBefore: h.seen, NotAfter: h.notAfter, DER: []byte("generated"), KeyAlg: h.keyAlg, Route: h.route},
						Now: h.seen, Audit: store.Audit{Actor: "api"},
					}
					if err := st.CommitIssuance(context.Background(), is); err != nil {
						t.Error(err)
						return
					}
					if h.revoked {
						if _, err := st.RevokeHost(context.Background(), id, 5, now, store.Audit{Actor: "admin:0"}); err != nil {
							t.Error(err)
						}
					}
				}()
			}
			wg.Wait()
			if _, err := st.AddKnown(context.Background(), []string{"only-registry.example", hosts[3].name}, store.Audit{}); err != nil {
				t.Fatal(err)
			}
			t.Logf("generated %d hosts: %v", n, time.Since(start))
		})
	})

	var certs []admin.Cert
	decode(t, mustRun(t, cmd("cert", "list", "--json")...), &certs)
	if got := serialsOf(certs); len(got) != n || len(slices.Compact(slices.Sorted(slices.Values(got)))) != n {
		t.Errorf("cert list --json = %d certificates, want all %d once each", len(got), n)
	}
	if out := mustRun(t, cmd("cert", "list")...); strings.Count(out, "SERIAL") != 1 || strings.Count(out, "\n") != n+1 {
		t.Errorf("cert list: %d lines, %d headers, want %d lines under one header", strings.Count(out, "\n"), strings.Count(out, "SERIAL"), n+1)
	}

	cut := now.Add(30 * 24 * time.Hour)
	var wantExp, wantStale []string
	inv := admin.InventoryInfo{ByRoute: map[string]int{}, ByKeyAlg: map[string]int{}}
	inv.Hosts.WithID, inv.Hosts.RegistryOnly = n, 1
	for _, h := range hosts {
		if h.revoked {
			inv.Hosts.Revoked++
			inv.Certificates.Revoked++
			continue
		}
		if h.notAfter.Before(cut) {
			wantExp = append(wantExp, h.serial)
		}
		if h.seen.Before(now.Add(-7 * 24 * time.Hour)) {
			wantStale = append(wantStale, h.name)
			inv.Hosts.Stale++
		}
		if !h.notAfter.After(now) {
			inv.Certificates.Expired++
			continue
		}
		inv.Certificates.Valid++
		if h.notAfter.Before(cut) {
			inv.Certificates.Expiring++
		}
		inv.ByRoute[h.route]++
		inv.ByKeyAlg[h.keyAlg]++
	}

	decode(t, mustRun(t, cmd("cert", "list", "--expiring", "30d", "--json")...), &certs)
	got := serialsOf(certs)
	if !slices.Equal(slices.Sorted(slices.Values(got)), slices.Sorted(slices.Values(wantExp))) {
		t.Errorf("cert list --expiring 30d = %d certificates, want %d", len(got), len(wantExp))
	}
	for i := 1; i < len(certs); i++ {
		if certs[i].NotAfter.Before(certs[i-1].NotAfter) {
			t.Fatalf("cert list --expiring: %s after %s, want soonest first", certs[i].NotAfter, certs[i-1].NotAfter)
		}
	}

	var hl []admin.Host
	decode(t, mustRun(t, cmd("host", "list", "--json")...), &hl)
	if len(hl) != n+1 || hl[len(hl)-1].Name != "only-registry.example" {
		t.Errorf("host list --json = %d hosts, want %d and the registry name last", len(hl), n+1)
	}
	decode(t, mustRun(t, cmd("host", "list", "--stale", "7d", "--json")...), &hl)
	var names []string
	for _, h := range hl {
		names = append(names, h.Name)
		if h.SeenAt == nil || !h.SeenAt.Before(now.Add(-7*24*time.Hour)) {
			t.Errorf("host list --stale 7d: %s seen at %v", h.Name, h.SeenAt)
		}
	}
	if !slices.Equal(names, wantStale) { // both by name
		t.Errorf("host list --stale 7d = %d hosts, want %d", len(names), len(wantStale))
	}

	var gotInv admin.InventoryInfo
	decode(t, mustRun(t, cmd("inventory", "--json")...), &gotInv)
	if fmt.Sprint(gotInv.Hosts, gotInv.Certificates, gotInv.ByRoute, gotInv.ByKeyAlg) != fmt.Sprint(inv.Hosts, inv.Certificates, inv.ByRoute, inv.ByKeyAlg) ||
		gotInv.Level != protocol.LevelHigh {
		t.Errorf("inventory --json = %+v\nwant %+v", gotInv, inv)
	}
	out := mustRun(t, cmd("inventory")...)
	for _, want := range []string{fmt.Sprintf("hosts with a host ID:  %d", n), "valid by route tunnel:", "valid by key rsa-3072:", "level:"} {
		if !strings.Contains(strings.Join(strings.Fields(out), " "), strings.Join(strings.Fields(want), " ")) {
			t.Errorf("inventory = %q, want %q", out, want)
		}
	}

	// Paging by hand: --after and --limit.
	decode(t, mustRun(t, cmd("host", "list", "--after", hosts[41].name, "--limit", "3", "--json")...), &hl)
	if len(hl) != 3 || hl[0].Name != hosts[42].name || hl[2].Name != hosts[44].name {
		t.Errorf("host list --after %s --limit 3 = %+v, want hosts 42-44", hosts[41].name, hl)
	}
	decode(t, mustRun(t, cmd("cert", "list", "--after", certs[0].Serial, "--expiring", "30d", "--limit", "2", "--json")...), &certs)
	if len(certs) != 2 {
		t.Errorf("cert list --after --limit 2 = %d certificates", len(certs))
	}
	mustFail(t, "no certificate with that serial", cmd("cert", "list", "--after", "ABCDEF0123")...)
	mustFail(t, "--expiring", cmd("cert", "list", "--expiring", "soon")...)
	mustFail(t, "--stale", cmd("host", "list", "--stale", "-1d")...)
	mustFail(t, "--limit -2", cmd("host", "list", "--limit", "-2")...)
}

func serialsOf(certs []admin.Cert) []string {
	out := make([]string, len(certs))
	for i, c := range certs {
		out[i] = c.Serial
	}
	return out
}
