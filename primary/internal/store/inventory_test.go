package store

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"fmt"
	"maps"
	"math/big"
	"slices"
	"sort"
	"sync"
	"testing"
	"time"

	"github.com/hostcert/hostcert/common/protocol"
)

// fleet is generated inventory data and what the queries must answer.
type fleet struct {
	hosts    map[string]Host // by name, as issued
	current  map[string]Cert // host ID -> current certificate
	all      []Cert          // every certificate
	revoked  map[string]bool // host IDs revoked (host level)
	seen     map[string]time.Time
	registry []string // registry names without a host ID
}

// genFleet issues n hosts through CommitIssuance (concurrently, as the
// API does): expiry spread over 120 days from t0, every third host renewed
// once (its first certificate superseded), every seventh revoked, key
// algorithms and routes rotating; plus registry names with and without a
// host ID.
func genFleet(t *testing.T, s *Store, n int) fleet {
	t.Helper()
	ctx := context.Background()
	f := fleet{hosts: map[string]Host{}, current: map[string]Cert{}, revoked: map[string]bool{}, seen: map[string]time.Time{}}
	algs := []string{"ecdsa-p256", "ecdsa-p384", "rsa-3072"}
	routes := []string{RouteDirect, RouteTunnel, ""}
	var mu sync.Mutex
	var wg sync.WaitGroup
	sem := make(chan struct{}, 16)
	errs := make(chan error, n)
	for i := range n {
		wg.Add(1)
		sem <- struct{}{}
		go func() {
			defer wg.Done()
			defer func() { <-sem }()
			name := fmt.Sprintf("h%05d.fleet.example", i)
			is := issuance(name, "")
			is.Now = t0.Add(-time.Duration(i%20) * 24 * time.Hour) // last contact: 0-19 days before t0
			is.Cert.IssuedAt = is.Now
			is.Cert.NotAfter = t0.Add(time.Duration(i%120-10) * 24 * time.Hour) // some already expired
			is.Cert.KeyAlg, is.Cert.Route = algs[i%3], routes[i%3]
			if err := s.CommitIssuance(ctx, is); err != nil {
				errs <- err
				return
			}
			cur := is.Cert
			cur.Kind = protocol.KindIssue
			seen := is.Now
			if i%3 == 0 {
				h := is.Host
				r := renewal(h, is.Cert.Serial, is.Now.Add(time.Hour))
				r.Cert.IssuedAt = r.Now
				r.Cert.NotAfter = cur.NotAfter.Add(24 * time.Hour)
				r.Cert.KeyAlg, r.Cert.Route = algs[(i+1)%3], RouteTunnel
				if err := s.CommitIssuance(ctx, r); err != nil {
					errs <- err
					return
				}
				mu.Lock()
				f.all = append(f.all, cur)
				mu.Unlock()
				cur = r.Cert
				cur.Kind = protocol.KindRenew
				seen = r.Now
			}
			revoked := i%7 == 0
			if revoked {
				if _, err := s.RevokeHost(ctx, is.Host.ID, 1, t0, Audit{Actor: "admin:0"}); err != nil {
					errs <- err
					return
				}
			}
			mu.Lock()
			defer mu.Unlock()
			f.hosts[name] = is.Host
			f.current[is.Host.ID] = cur
			f.all = append(f.all, cur)
			f.revoked[is.Host.ID] = revoked
			f.seen[is.Host.ID] = seen
		}()
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Fatal(err)
	}
	var known []string
	for i := range n / 4 {
		known = append(known, fmt.Sprintf("h%05d.fleet.example", i*4)) // these have host IDs
		name := fmt.Sprintf("h%05d.registry.example", i)
		known = append(known, name)
		f.registry = append(f.registry, name)
	}
	if _, err := s.AddKnown(ctx, known, Audit{Actor: "admin:0"}); err != nil {
		t.Fatal(err)
	}
	return f
}

// TestInventoryQueries: paging through every certificate and every host
// returns each exactly once in order; --expiring selects the current,
// unrevoked certificates expiring before the cutoff; --stale the
// unrevoked hosts not seen since; the counts agree with the data.
func TestInventoryQueries(t *testing.T) { forEachBackend(t, testInventoryQueries) }

func testInventoryQueries(t *testing.T, s *Store) {
	ctx := context.Background()
	n := 240
	if testing.Short() {
		n = 90
	}
	f := genFleet(t, s, n)

	// Every certificate, in issuance order, pages of 7.
	var serials []string
	after := ""
	for {
		page, err := s.ListCertsPage(ctx, CertPage{CertFilter: CertFilter{IncludeRevoked: true}, After: after, Limit: 7})
		if err != nil {
			t.Fatal(err)
		}
		if len(page) == 0 {
			break
		}
		if len(page) > 7 {
			t.Fatalf("ListCertsPage(limit 7) = %d rows", len(page))
		}
		for i, c := range page {
			if i > 0 && c.IssuedAt.Before(page[i-1].IssuedAt) {
				t.Fatalf("certificates out of issuance order: %s after %s", c.IssuedAt, page[i-1].IssuedAt)
			}
			serials = append(serials, c.Serial)
		}
		after = page[len(page)-1].Serial
	}
	want := make([]string, 0, len(f.all))
	for _, c := range f.all {
		want = append(want, c.Serial)
	}
	if !sameSet(serials, want) {
		t.Errorf("paging through every certificate: %d serials (%d distinct), want the %d issued", len(serials), len(distinct(serials)), len(want))
	}
	if _, err := s.ListCertsPage(ctx, CertPage{After: "ABCDEF", Limit: 5}); err == nil {
		t.Error("ListCertsPage after an unknown serial: nil error, want ErrNotFound")
	}

	// Expiring within 30 days of t0: current, unrevoked, expired included.
	cut := t0.Add(30 * 24 * time.Hour)
	var wantExp []string
	for id, c := range f.current {
		if !f.revoked[id] && c.NotAfter.Before(cut) {
			wantExp = append(wantExp, c.Serial)
		}
	}
	var gotExp []string
	var last time.Time
	after = ""
	for {
		page, err := s.ListCertsPage(ctx, CertPage{ExpiringBefore: cut, After: after, Limit: 11})
		if err != nil {
			t.Fatal(err)
		}
		if len(page) == 0 {
			break
		}
		for _, c := range page {
			if c.NotAfter.Before(last) {
				t.Fatalf("expiring certificates out of order: %s after %s", c.NotAfter, last)
			}
			last = c.NotAfter
			gotExp = append(gotExp, c.Serial)
		}
		after = page[len(page)-1].Serial
	}
	if len(wantExp) == 0 || !sameSet(gotExp, wantExp) {
		t.Errorf("expiring before %s: %d certificates, want %d (current, unrevoked)", cut, len(gotExp), len(wantExp))
	}

	// Every host and registry name, by name, pages of 9.
	var names []string
	after = ""
	for {
		page, err := s.ListHostsPage(ctx, HostPage{After: after, Limit: 9})
		if err != nil {
			t.Fatal(err)
		}
		if len(page) == 0 {
			break
		}
		if len(page) > 9 {
			t.Fatalf("ListHostsPage(limit 9) = %d rows", len(page))
		}
		for _, h := range page {
			if len(names) > 0 && h.Name <= names[len(names)-1] {
				t.Fatalf("hosts out of order: %s after %s", h.Name, names[len(names)-1])
			}
			if want, ok := f.hosts[h.Name]; ok && (h.ID != want.ID || !h.SeenAt.Equal(f.seen[h.ID])) {
				t.Errorf("host %s = %+v, want ID %s, seen at %s", h.Name, h, want.ID, f.seen[want.ID])
			}
			names = append(names, h.Name)
		}
		after = page[len(page)-1].Name
	}
	wantNames := append(slices.Collect(maps.Keys(f.hosts)), f.registry...)
	if !sameSet(names, wantNames) {
		t.Errorf("paging through hosts: %d names, want %d (hosts and registry names without a host ID)", len(names), len(wantNames))
	}

	// Stale: not revoked, not seen for 7 days before t0.
	stale := t0.Add(-7 * 24 * time.Hour)
	var wantStale []string
	for name, h := range f.hosts {
		if !f.revoked[h.ID] && f.seen[h.ID].Before(stale) {
			wantStale = append(wantStale, name)
		}
	}
	var gotStale []string
	after = ""
	for {
		page, err := s.ListHostsPage(ctx, HostPage{StaleBefore: stale, After: after, Limit: 13})
		if err != nil {
			t.Fatal(err)
		}
		if len(page) == 0 {
			break
		}
		for _, h := range page {
			gotStale = append(gotStale, h.Name)
		}
		after = page[len(page)-1].Name
	}
	if len(wantStale) == 0 || !sameSet(gotStale, wantStale) {
		t.Errorf("stale hosts: %d, want %d", len(gotStale), len(wantStale))
	}

	// The counts.
	inv, err := s.Inventory(ctx, t0, cut, stale)
	if err != nil {
		t.Fatal(err)
	}
	want2 := Inventory{Hosts: len(f.hosts), Stale: len(wantStale), RegistryOnly: len(f.registry),
		ByRoute: map[string]int{}, ByKeyAlg: map[string]int{}}
	for id, c := range f.current {
		switch {
		case f.revoked[id]:
			want2.HostsRevoked++
			want2.Revoked++
		case !c.NotAfter.After(t0):
			want2.Expired++
		default:
			want2.Valid++
			if c.NotAfter.Before(cut) {
				want2.Expiring++
			}
			want2.ByRoute[c.Route]++
			want2.ByKeyAlg[c.KeyAlg]++
		}
	}
	if fmt.Sprint(inv) != fmt.Sprint(want2) {
		t.Errorf("Inventory = %+v\nwant        %+v", inv, want2)
	}
}

func distinct(s []string) []string {
	out := slices.Clone(s)
	sort.Strings(out)
	return slices.Compact(out)
}

func sameSet(got, want []string) bool {
	return len(got) == len(want) && slices.Equal(distinct(got), distinct(want)) && len(distinct(got)) == len(got)
}

// TestLastContact: MarkUsed records a certificate's first use and its
// host's last contact, writing the contact at most every SeenEvery;
// issuances and renewals count as contact too.
func TestLastContact(t *testing.T) { forEachBackend(t, testLastContact) }

func testLastContact(t *testing.T, s *Store) {
	ctx := context.Background()
	is := issuance("contact.example", "")
	if err := s.CommitIssuance(ctx, is); err != nil {
		t.Fatal(err)
	}
	seenAt := func() time.Time {
		h, err := s.HostByID(ctx, is.Host.ID)
		if err != nil {
			t.Fatal(err)
		}
		return h.SeenAt
	}
	if got := seenAt(); !got.Equal(t0) {
		t.Fatalf("seen at after issue = %s, want %s", got, t0)
	}
	steps := []struct {
		at   time.Time
		want time.Time
	}{
		{t0.Add(10 * time.Minute), t0.Add(10 * time.Minute)},                     // first use: written
		{t0.Add(30 * time.Minute), t0.Add(10 * time.Minute)},                     // within SeenEvery: not written
		{t0.Add(9*time.Minute + SeenEvery), t0.Add(10 * time.Minute)},            // still within
		{t0.Add(10*time.Minute + SeenEvery), t0.Add(10*time.Minute + SeenEvery)}, // SeenEvery old: written
		{t0.Add(5 * time.Minute), t0.Add(10*time.Minute + SeenEvery)},            // never backwards
	}
	for _, st := range steps {
		if err := s.MarkUsed(ctx, is.Cert.Serial, st.at); err != nil {
			t.Fatal(err)
		}
		if got := seenAt(); !got.Equal(st.want) {
			t.Errorf("MarkUsed at %s: seen at %s, want %s", st.at, got, st.want)
		}
	}
	if c, _ := s.CertBySerial(ctx, is.Cert.Serial); c.UsedAt == nil || !c.UsedAt.Equal(t0.Add(10*time.Minute)) {
		t.Errorf("used at = %v, want the first use %s", c.UsedAt, t0.Add(10*time.Minute))
	}
	if err := s.MarkUsed(ctx, "0BADC0DE", t0); err != nil {
		t.Errorf("MarkUsed of an unknown serial = %v, want nil", err)
	}
	h, _ := s.HostByID(ctx, is.Host.ID)
	later := t0.Add(48 * time.Hour)
	if err := s.CommitIssuance(ctx, renewal(h, is.Cert.Serial, later)); err != nil {
		t.Fatal(err)
	}
	if got := seenAt(); !got.Equal(later) {
		t.Errorf("seen at after a renewal = %s, want %s", got, later)
	}
}

// TestKeyAlgorithmFromDER: CommitIssuance names the key algorithm of the
// certificate it stores, and Open names it for rows stored without one.
func TestKeyAlgorithmFromDER(t *testing.T) {
	s, path := openTemp(t)
	ctx := context.Background()
	der := func(curve elliptic.Curve) []byte {
		k, err := ecdsa.GenerateKey(curve, rand.Reader)
		if err != nil {
			t.Fatal(err)
		}
		tmpl := &x509.Certificate{SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "x"}, NotBefore: t0, NotAfter: t0.Add(time.Hour)}
		b, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &k.PublicKey, k)
		if err != nil {
			t.Fatal(err)
		}
		return b
	}
	p256 := issuance("p256.example", "")
	p256.Cert.DER = der(elliptic.P256())
	p384 := issuance("p384.example", "")
	p384.Cert.DER = der(elliptic.P384())
	junk := issuance("junk.example", "")
	for _, is := range []Issuance{p256, p384, junk} {
		if err := s.CommitIssuance(ctx, is); err != nil {
			t.Fatal(err)
		}
	}
	want := map[string]string{p256.Cert.Serial: "ecdsa-p256", p384.Cert.Serial: "ecdsa-p384", junk.Cert.Serial: "unknown"}
	check := func(when string) {
		for serial, alg := range want {
			c, err := s.CertBySerial(ctx, serial)
			if err != nil || c.KeyAlg != alg {
				t.Errorf("%s: key algorithm of %s = %q, %v, want %q", when, serial, c.KeyAlg, err, alg)
			}
		}
	}
	check("after CommitIssuance")
	// Rows from before the store kept it: Open fills them in.
	if err := s.write(ctx, func(t *wtx) error { _, err := t.exec("UPDATE certs SET key_alg = ''"); return err }); err != nil {
		t.Fatal(err)
	}
	s.Close()
	s, err := Open(ctx, path)
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	check("after reopening")
}
