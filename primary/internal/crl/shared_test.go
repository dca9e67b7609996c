package crl

import (
	"context"
	"path/filepath"
	"testing"
	"time"

	"github.com/rs/zerolog"

	"github.com/hostcert/hostcert/common/pki"
	"github.com/hostcert/hostcert/primary/internal/ca"
	"github.com/hostcert/hostcert/primary/internal/store"
)

// TestSharedNumbersNeverGoDown: two publishers on one store (two nodes of
// a fleet) regenerating in turn; whatever either serves, by Current or by
// issuer, is never below a CRL the other one served before.
func TestSharedNumbersNeverGoDown(t *testing.T) {
	ctx := context.Background()
	c, err := ca.Init(t.TempDir(), ca.InitOptions{Names: []string{"p.test"}, KeyAlg: pki.ECDSAP256}, time.Now())
	if err != nil {
		t.Fatal(err)
	}
	st, err := store.Open(ctx, filepath.Join(t.TempDir(), "primary.db"))
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	var nodes [2]*Publisher
	for i := range nodes {
		nodes[i] = New(st, c, zerolog.Nop(), 0, 0)
		nodes[i].UseShared(st)
		if err := nodes[i].Refresh(ctx); err != nil {
			t.Fatal(err)
		}
	}
	id := ca.ID(c.Certificate())
	var last int64
	serve := func(i int, l *List) {
		t.Helper()
		if n := l.Number.Int64(); n < last {
			t.Fatalf("node %d serves CRL number %d after %d was served", i+1, n, last)
		} else {
			last = n
		}
	}
	for round := range 6 {
		writer := round % 2
		if err := nodes[writer].Refresh(ctx); err != nil {
			t.Fatal(err)
		}
		for _, i := range []int{writer, 1 - writer, writer, 1 - writer} {
			serve(i, nodes[i].Current())
			serve(i, nodes[i].ByIssuer(id))
		}
	}
	if a, b := nodes[0].Current(), nodes[1].Current(); string(a.DER) != string(b.DER) {
		t.Errorf("the nodes serve different CRLs with numbers %v and %v", a.Number, b.Number)
	}
}
