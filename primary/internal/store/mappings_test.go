package store

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"testing"
	"time"
)

// issued commits a first issuance of name and returns its host.
func issued(t *testing.T, s *Store, name string) Host {
	t.Helper()
	is := issuance(name, "")
	if err := s.CommitIssuance(context.Background(), is); err != nil {
		t.Fatalf("issue %s: %v", name, err)
	}
	h, err := s.HostByID(context.Background(), is.Host.ID)
	if err != nil {
		t.Fatal(err)
	}
	return h
}

// renewAsking renews h from its current certificate, asking for claims,
// with a certificate carrying names.
func renewAsking(t *testing.T, s *Store, h Host, names, claims []string) error {
	t.Helper()
	cur, err := s.CurrentCert(context.Background(), h.ID)
	if err != nil {
		t.Fatal(err)
	}
	is := renewal(h, cur.Serial, t0.Add(time.Hour))
	is.Cert.Names, is.Claims = names, claims
	return s.CommitIssuance(context.Background(), is)
}

func mappingStates(t *testing.T, s *Store, hostID string) string {
	t.Helper()
	ms, err := s.ListMappings(context.Background(), MappingFilter{HostID: hostID})
	if err != nil {
		t.Fatal(err)
	}
	out := ""
	for _, m := range ms {
		out += fmt.Sprintf("%s=%s ", m.Name, m.State)
	}
	return out
}

// TestMappings: a host's first name is approved at issuance; a name asked
// at renewal is pending (not in a certificate) until approved; a name
// belongs to at most one host ID; a rename keeps the host ID; a name known
// through a mapping counts as known.
func TestMappings(t *testing.T) { forEachBackend(t, testMappings) }

func testMappings(t *testing.T, s *Store) {
	ctx := context.Background()
	a := issued(t, s, "a.example")
	b := issued(t, s, "b.example")
	if got, want := mappingStates(t, s, a.ID), "a.example=approved "; got != want {
		t.Errorf("mappings after issue = %q, want %q", got, want)
	}

	// Asked at renewal: pending; the certificate carries only approved names.
	if err := renewAsking(t, s, a, []string{"a.example"}, []string{"Alias.example"}); err != nil {
		t.Fatal(err)
	}
	if got, want := mappingStates(t, s, a.ID), "a.example=approved alias.example=pending "; got != want {
		t.Errorf("mappings after the ask = %q, want %q", got, want)
	}
	if h, err := s.LookupName(ctx, "alias.example"); err != nil || h.ID != "" {
		t.Errorf("LookupName(pending alias) = %+v, %v, want no host ID", h, err)
	}
	if err := renewAsking(t, s, a, []string{"a.example", "alias.example"}, nil); !errors.Is(err, ErrNameWithdrawn) {
		t.Errorf("certificate with a pending name: error = %v, want ErrNameWithdrawn", err)
	}
	if err := renewAsking(t, s, a, []string{"a.example", "never.example"}, nil); !errors.Is(err, ErrNameWithdrawn) {
		t.Errorf("certificate with an unmapped name: error = %v, want ErrNameWithdrawn", err)
	}
	if err := renewAsking(t, s, a, []string{"b.example"}, nil); !errors.Is(err, ErrNameConflict) {
		t.Errorf("certificate with another host's name: error = %v, want ErrNameConflict", err)
	}

	// A pending claim owns nothing: another host may claim the name too.
	// An approved name it can take neither by asking nor by an admin's
	// mapping, and its refused renewal wrote nothing.
	if err := renewAsking(t, s, b, []string{"b.example"}, []string{"alias.example"}); err != nil {
		t.Errorf("b asks for the name a claims: %v, want a pending claim of b too", err)
	}
	before, _ := s.ListCerts(ctx, CertFilter{HostID: b.ID, IncludeRevoked: true})
	if err := renewAsking(t, s, b, []string{"b.example"}, []string{"a.example"}); !errors.Is(err, ErrNameConflict) {
		t.Errorf("b asks for a's approved name: error = %v, want ErrNameConflict", err)
	}
	if after, _ := s.ListCerts(ctx, CertFilter{HostID: b.ID, IncludeRevoked: true}); len(after) != len(before) {
		t.Errorf("certificates of b after the refused renewal = %d, want %d", len(after), len(before))
	}
	if _, err := s.AddMapping(ctx, "a.example", b.ID, t0, Audit{}); !errors.Is(err, ErrNameConflict) {
		t.Errorf("AddMapping(a.example, b) error = %v, want ErrNameConflict", err)
	}
	if got, want := mappingStates(t, s, b.ID), "alias.example=pending b.example=approved "; got != want {
		t.Errorf("mappings of b = %q, want %q", got, want)
	}

	// Two hosts claim alias.example: the admin says which one; approved
	// for a, b's claim is dropped.
	if _, err := s.DecideMapping(ctx, "alias.example", "", true, t0, Audit{}); !errors.Is(err, ErrAmbiguous) {
		t.Errorf("approve a name two hosts claim, no host given: error = %v, want ErrAmbiguous", err)
	}
	m, err := s.DecideMapping(ctx, "alias.example", a.ID, true, t0, Audit{Actor: "admin:0"})
	if err != nil || m.HostID != a.ID || m.State != MappingApproved || m.DecidedAt == nil {
		t.Fatalf("approve = %+v, %v", m, err)
	}
	if _, err := s.DecideMapping(ctx, "alias.example", "", true, t0, Audit{}); !errors.Is(err, ErrNotFound) {
		t.Errorf("approve an approved mapping: error = %v, want ErrNotFound", err)
	}
	if _, err := s.DecideMapping(ctx, "alias.example", b.ID, true, t0, Audit{}); !errors.Is(err, ErrNotFound) {
		t.Errorf("approve b's dropped claim: error = %v, want ErrNotFound", err)
	}
	if got, want := mappingStates(t, s, b.ID), "b.example=approved "; got != want {
		t.Errorf("mappings of b after a's approval = %q, want %q (its claim dropped)", got, want)
	}
	if h, err := s.LookupName(ctx, "alias.example"); err != nil || h.ID != a.ID || h.Name != "a.example" {
		t.Errorf("LookupName(alias) = %+v, %v, want host %s named a.example", h, err, a.ID)
	}
	if h, err := s.HostByName(ctx, "ALIAS.example."); err != nil || h.ID != a.ID {
		t.Errorf("HostByName(alias) = %+v, %v, want %s", h, err, a.ID)
	}
	if err := renewAsking(t, s, a, []string{"a.example", "alias.example"}, nil); err != nil {
		t.Errorf("certificate with both approved names: %v", err)
	}
	if err := s.CommitIssuance(ctx, issuance("alias.example", "")); !errors.Is(err, ErrHostExists) {
		t.Errorf("first issuance of a's approved name: error = %v, want ErrHostExists", err)
	}

	// Known through a mapping: the registry knows only the alias.
	if h, _ := s.LookupName(ctx, "a.example"); h.Known {
		t.Errorf("LookupName(a) known before the registry has any of its names")
	}
	if _, err := s.AddKnown(ctx, []string{"alias.example"}, Audit{}); err != nil {
		t.Fatal(err)
	}
	if h, _ := s.LookupName(ctx, "a.example"); !h.Known || h.ID != a.ID {
		t.Errorf("LookupName(a) = %+v, want known through its mapping alias.example", h)
	}
	if h, _ := s.HostByID(ctx, a.ID); !h.Known {
		t.Errorf("HostByID(a) not known though its approved name alias.example is")
	}
	if hosts, _ := s.ListHosts(ctx); len(hosts) != 2 {
		t.Errorf("ListHosts = %+v, want the two hosts (the known alias is not a host of its own)", hosts)
	}

	// A rename: the main name removed, the other approved name takes over;
	// the host ID stays; the last name cannot go.
	if _, err := s.RemoveMapping(ctx, "a.example", "", t0, Audit{}); err != nil {
		t.Fatal(err)
	}
	if h, err := s.HostByID(ctx, a.ID); err != nil || h.Name != "alias.example" {
		t.Errorf("host after removing its main name = %+v, %v, want named alias.example", h, err)
	}
	if h, err := s.HostByName(ctx, "a.example"); !errors.Is(err, ErrNotFound) {
		t.Errorf("HostByName(removed name) = %+v, %v, want ErrNotFound", h, err)
	}
	if _, err := s.RemoveMapping(ctx, "alias.example", "", t0, Audit{}); !errors.Is(err, ErrLastName) {
		t.Errorf("remove the last name: error = %v, want ErrLastName", err)
	}
	if _, err := s.RemoveMapping(ctx, "nothing.example", "", t0, Audit{}); !errors.Is(err, ErrNotFound) {
		t.Errorf("remove an unmapped name: error = %v, want ErrNotFound", err)
	}
	// The removed name is free again: an admin maps it to b.
	if _, err := s.AddMapping(ctx, "a.example", b.ID, t0, Audit{}); err != nil {
		t.Errorf("AddMapping(freed name, b): %v", err)
	}
	if _, err := s.AddMapping(ctx, "a.example", b.ID, t0, Audit{}); !errors.Is(err, ErrExists) {
		t.Errorf("AddMapping twice: error = %v, want ErrExists", err)
	}

	// Rejected: the pending mapping is gone and the name is free.
	if err := renewAsking(t, s, b, []string{"b.example"}, []string{"z.example"}); err != nil {
		t.Fatal(err)
	}
	if _, err := s.DecideMapping(ctx, "z.example", "", false, t0, Audit{}); err != nil {
		t.Fatal(err)
	}
	if ms, _ := s.MappingsFor(ctx, "", []string{"z.example"}); len(ms) != 0 {
		t.Errorf("mappings of a rejected name = %+v, want none", ms)
	}
	pending, _ := s.ListMappings(ctx, MappingFilter{State: MappingPending})
	if len(pending) != 0 {
		t.Errorf("pending mappings = %+v, want none", pending)
	}

	// Auto-approve: off by default; claims in state approved.
	if on, err := s.AutoApprove(ctx); err != nil || on {
		t.Errorf("AutoApprove() = %v, %v, want off", on, err)
	}
	if err := s.SetAutoApprove(ctx, true, Audit{Actor: "admin:0"}); err != nil {
		t.Fatal(err)
	}
	if on, _ := s.AutoApprove(ctx); !on {
		t.Error("AutoApprove() after turning it on = off")
	}
	cur, _ := s.CurrentCert(ctx, b.ID)
	is := renewal(b, cur.Serial, t0.Add(2*time.Hour))
	is.Cert.Names, is.Claims, is.ClaimState = []string{"b.example", "auto.example"}, []string{"auto.example"}, MappingApproved
	if err := s.CommitIssuance(ctx, is); err != nil {
		t.Errorf("renewal with an auto-approved claim: %v", err)
	}
	if ms, _ := s.MappingsFor(ctx, "", []string{"auto.example"}); len(ms) != 1 || ms[0].State != MappingApproved || ms[0].HostID != b.ID {
		t.Errorf("auto-approved claim = %+v, want approved for b", ms)
	}

	// Every change is audited.
	rows, _ := s.ListAudit(ctx, time.Time{}, 0)
	seen := map[string]int{}
	for _, r := range rows {
		seen[r.Action]++
	}
	for _, act := range []string{"host.mapping.approve", "host.mapping.reject", "host.mapping.add", "host.mapping.remove", "host.mapping.auto-approve"} {
		if seen[act] == 0 {
			t.Errorf("no audit row %s in %v", act, seen)
		}
	}
}

// TestNameClaimRace: several hosts getting one free name at once (real
// concurrent commits: one writer batch on SQLite, concurrent transactions
// on PostgreSQL) leave exactly one owner; the others get ErrNameConflict
// and nothing of theirs is written. Each round, a fresh name:
//   - every host claims it pending at once: every claim is written (a
//     pending claim owns nothing, so none blocks another);
//   - then, at once, an admin approves each host's claim, a new host is
//     issued a certificate for the name, and another host renews with the
//     name auto-approved: exactly one of them gets it, the name is approved
//     for that one only, and every other claim is gone;
//   - a second fresh name, auto-approved for every host at once: one owner.
//
// Repeated.
func TestNameClaimRace(t *testing.T) { forEachBackend(t, testNameClaimRace) }

func testNameClaimRace(t *testing.T, s *Store) {
	ctx := context.Background()
	const hosts, rounds = 4, 8
	hs := make([]Host, hosts)
	for i := range hs {
		hs[i] = issued(t, s, fmt.Sprintf("racer%d.example", i))
	}
	taker := issued(t, s, "taker.example")
	// race runs every fn at once and returns their errors.
	race := func(fns ...func() error) []error {
		errs := make([]error, len(fns))
		var wg sync.WaitGroup
		start := make(chan struct{})
		for i, fn := range fns {
			wg.Go(func() {
				<-start
				errs[i] = fn()
			})
		}
		close(start)
		wg.Wait()
		return errs
	}
	renewClaiming := func(h Host, name string, state MappingState, at time.Time) func() error {
		cur, err := s.CurrentCert(ctx, h.ID)
		if err != nil {
			t.Fatal(err)
		}
		is := renewal(h, cur.Serial, at)
		is.Claims, is.ClaimState = []string{name}, state
		if state == MappingApproved {
			is.Cert.Names = []string{h.Name, name}
		}
		return func() error { return s.CommitIssuance(ctx, is) }
	}
	for r := range rounds {
		at := t0.Add(time.Duration(r+1) * time.Minute)
		name := fmt.Sprintf("shared%d.example", r)
		var claims []func() error
		for _, h := range hs {
			claims = append(claims, renewClaiming(h, name, MappingPending, at))
		}
		for i, err := range race(claims...) {
			if err != nil {
				t.Fatalf("round %d: host %d claiming %s: %v, want a pending claim", r, i, name, err)
			}
		}
		if ms, _ := s.MappingsFor(ctx, "", []string{name}); len(ms) != hosts {
			t.Fatalf("round %d: claims on %s = %+v, want one per host", r, name, ms)
		}

		newcomer := issuance(name, "")
		getters := []func() error{
			func() error { return s.CommitIssuance(ctx, newcomer) },
			renewClaiming(taker, name, MappingApproved, at),
		}
		owners := []string{newcomer.Host.ID, taker.ID}
		for _, h := range hs {
			getters = append(getters, func() error {
				_, err := s.DecideMapping(ctx, name, h.ID, true, at, Audit{Actor: "admin:0"})
				return err
			})
			owners = append(owners, h.ID)
		}
		winner := ""
		for i, err := range race(getters...) {
			switch {
			case err == nil && winner == "":
				winner = owners[i]
			case err == nil:
				t.Fatalf("round %d: getter %d won %s too, after %s", r, i, name, winner)
			case !errors.Is(err, ErrNameConflict) && !errors.Is(err, ErrHostExists) && !errors.Is(err, ErrNotFound):
				t.Errorf("round %d: getter %d: %v, want nil, ErrNameConflict, ErrHostExists or ErrNotFound", r, i, err)
			}
		}
		ms, _ := s.MappingsFor(ctx, "", []string{name})
		if winner == "" || len(ms) != 1 || ms[0].HostID != winner || ms[0].State != MappingApproved {
			t.Fatalf("round %d: winner %q, mappings of %s %+v, want exactly one, approved for the winner", r, winner, name, ms)
		}
		if winner == taker.ID {
			taker, _ = s.HostByID(ctx, taker.ID)
		}

		auto := fmt.Sprintf("auto%d.example", r)
		var takers []func() error
		for _, h := range hs {
			takers = append(takers, renewClaiming(h, auto, MappingApproved, at.Add(time.Second)))
		}
		won := 0
		for i, err := range race(takers...) {
			switch {
			case err == nil:
				won++
			case !errors.Is(err, ErrNameConflict):
				t.Errorf("round %d: host %d taking %s: %v, want nil or ErrNameConflict", r, i, auto, err)
			}
		}
		if ms, _ := s.MappingsFor(ctx, "", []string{auto}); won != 1 || len(ms) != 1 || ms[0].State != MappingApproved {
			t.Fatalf("round %d: %d winners of %s, mappings %+v, want exactly one, approved", r, won, auto, ms)
		}
	}
}
