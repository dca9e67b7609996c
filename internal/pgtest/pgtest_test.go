package pgtest

import (
	"context"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
)

// TestCluster: a cluster starts, takes a connection and a write, survives a
// crash (immediate stop) with the committed row intact, and stops.
func TestCluster(t *testing.T) {
	c := Start(t)
	dsn := c.CreateDatabase(t, "pgtest")
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()

	conn, err := pgx.Connect(ctx, dsn)
	if err != nil {
		t.Fatalf("connect %s: %v\n%s", dsn, err, c.Log())
	}
	if _, err := conn.Exec(ctx, `CREATE TABLE t (v int); INSERT INTO t VALUES (42)`); err != nil {
		t.Fatal(err)
	}
	conn.Close(ctx)

	c.Crash(t)
	if _, err := pgx.Connect(ctx, dsn); err == nil {
		t.Fatal("connect to a crashed cluster succeeded, want an error")
	}
	c.Restart(t)
	conn, err = pgx.Connect(ctx, dsn)
	if err != nil {
		t.Fatalf("connect after restart: %v\n%s", err, c.Log())
	}
	defer conn.Close(ctx)
	var v int
	if err := conn.QueryRow(ctx, `SELECT v FROM t`).Scan(&v); err != nil || v != 42 {
		t.Fatalf("SELECT v after a crash = %d, %v, want 42", v, err)
	}
	var listen string
	if err := conn.QueryRow(ctx, `SHOW listen_addresses`).Scan(&listen); err != nil || listen != "127.0.0.1" {
		t.Fatalf("listen_addresses = %q, %v, want 127.0.0.1 only", listen, err)
	}
}
