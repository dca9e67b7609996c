package cli

import (
	"context"
	"database/sql"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/rs/zerolog"

	"github.com/hostcert/hostcert/primary/internal/admin"
	"github.com/hostcert/hostcert/primary/internal/server"
)

// startPrimary initialises a data directory and runs a real server on it
// (127.0.0.1:0 and its admin socket) until the test ends. before runs
// between init and serve, with the database closed.
func startPrimary(t *testing.T, before func(dir string)) (dir string, cmd func(...string) []string) {
	t.Helper()
	dir, cmd, _ = startPrimaryServer(t, before)
	return dir, cmd
}

// startPrimaryServer is startPrimary, and the server (for its addresses).
func startPrimaryServer(t *testing.T, before func(dir string)) (dir string, cmd func(...string) []string, srv *server.Server) {
	t.Helper()
	dir = tempDir(t)
	mustRun(t, "init", "--data", dir, "--name", "localhost", "--key-alg", "ecdsa-p256")
	if before != nil {
		before(dir)
	}
	ctx, cancel := context.WithCancel(context.Background())
	srv, err := server.New(ctx, server.Config{DataDir: dir, Listen: "127.0.0.1:0", Console: "127.0.0.1:0", Log: zerolog.Nop()})
	if err != nil {
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() { done <- srv.Run(ctx) }()
	t.Cleanup(func() { cancel(); <-done })
	return dir, func(args ...string) []string { return append(args, "--data", dir) }, srv
}

// scaleSmall: under -race or -short the scale tests generate fewer rows,
// each larger, so that the data still adds up to several admin messages.
func scaleSmall() bool { return raceEnabled || testing.Short() }

// TestHostImportStreams: a host list far larger than one admin message
// (admin.MaxMessage) is imported whole, in bounded batches; a bad name
// anywhere in a file imports nothing and names its line.
func TestHostImportStreams(t *testing.T) {
	_, cmd := startPrimary(t, nil)
	n, domain := 200_000, "fleet.example.com"
	if scaleSmall() {
		// Names near the 253-character limit.
		n, domain = 25_000, strings.Repeat(strings.Repeat("d", 60)+".", 3)+"example.com"
	}
	list := filepath.Join(t.TempDir(), "fleet.txt")
	var b strings.Builder
	b.WriteString("# the whole fleet\n")
	for i := range n {
		fmt.Fprintf(&b, "host-%07d.%s\n", i, domain)
	}
	if b.Len() <= admin.MaxMessage {
		t.Fatalf("generated list is %d bytes, want more than one admin message (%d)", b.Len(), admin.MaxMessage)
	}
	if err := os.WriteFile(list, []byte(b.String()), 0o600); err != nil {
		t.Fatal(err)
	}
	start := time.Now()
	out := mustRun(t, cmd("host", "import", list)...)
	t.Logf("host import of %d lines (%d bytes): %v", n, b.Len(), time.Since(start))
	if want := fmt.Sprintf("added %d of %d names", n, n); !strings.Contains(out, want) {
		t.Errorf("host import = %q, want %q", out, want)
	}
	// Again: everything is known already.
	if want := fmt.Sprintf("added 0 of %d names", n); !strings.Contains(mustRun(t, cmd("host", "import", list)...), want) {
		t.Errorf("second host import, want %q", want)
	}

	// A bad name on the last line: nothing of the file is imported.
	bad := filepath.Join(t.TempDir(), "bad.txt")
	os.WriteFile(bad, []byte(strings.Repeat("fresh.example.com\n", importBatch+1)+"also-fresh.example.com\nbad_name!\n"), 0o600)
	mustFail(t, fmt.Sprintf("line %d", importBatch+3), cmd("host", "import", bad)...)
	if code, _, errs := run(t, cmd("host", "import", bad)...); !strings.Contains(errs, "nothing was imported") || code != 1 {
		t.Errorf("import of a list with a bad name = %d %q, want nothing imported", code, errs)
	}
	if out := mustRun(t, cmd("host", "add", "fresh.example.com", "also-fresh.example.com")...); !strings.Contains(out, "added 2 of 2") {
		t.Errorf("host add after a refused import = %q, want both names new", out)
	}
	empty := filepath.Join(t.TempDir(), "empty.txt")
	os.WriteFile(empty, []byte("# nothing yet\n\n"), 0o600)
	mustFail(t, "holds no host names", cmd("host", "import", empty)...)
}

// auditRows is how many audit rows TestAuditPages generates: more than the
// 106,000 of the report in which `audit --limit 10000` failed.
const auditRows = 110_000

// TestAuditPages: an audit log whose rows add up to far more than one admin
// message is listed whole, page by page; --limit and --after select rows;
// a negative --limit is refused.
func TestAuditPages(t *testing.T) {
	n, pad := auditRows, ""
	if scaleSmall() {
		n, pad = 4_000, strings.Repeat("x", 1500)
	}
	_, cmd := startPrimary(t, func(dir string) {
		db, err := sql.Open("sqlite", filepath.Join(dir, server.DBName))
		if err != nil {
			t.Fatal(err)
		}
		defer db.Close()
		tx, err := db.Begin()
		if err != nil {
			t.Fatal(err)
		}
		ins, err := tx.Prepare(`INSERT INTO audit (at, actor, source, action, outcome, code, host_id, name, token_name, detail)
			VALUES (?, 'api', '192.0.2.7', 'refuse', 'refused', 'token_required', '', ?, '', ?)`)
		if err != nil {
			t.Fatal(err)
		}
		// About 400 bytes a row in JSON (1.4 KB padded): 10,000 rows alone come near
		// or past the 4 MiB cap.
		detail := `{"level":"high","known":false,"verified":true,"nat":false,"reason":"issue of a name not in the registry at level high needs a token` + pad + `"}`
		at := time.Now().Add(-time.Hour).UnixNano()
		gen := time.Now()
		for i := range n {
			if _, err := ins.Exec(at+int64(i), fmt.Sprintf("host-%06d.fleet.example.com", i), detail); err != nil {
				t.Fatal(err)
			}
		}
		if err := tx.Commit(); err != nil {
			t.Fatal(err)
		}
		t.Logf("generated %d audit rows: %v", n, time.Since(gen))
	})

	start := time.Now()
	out := mustRun(t, cmd("audit")...)
	t.Logf("audit of %d rows (%d bytes): %v", n, len(out), time.Since(start))
	lines := strings.Split(strings.TrimSuffix(out, "\n"), "\n")
	if !strings.HasPrefix(lines[0], "ID ") {
		t.Fatalf("audit: first line %q, want the header", lines[0])
	}
	ids := make([]int64, 0, len(lines)-1)
	for _, l := range lines[1:] {
		var id int64
		if _, err := fmt.Sscan(l, &id); err != nil {
			t.Fatalf("audit line %q: %v", l, err)
		}
		if len(ids) > 0 && id <= ids[len(ids)-1] {
			t.Fatalf("audit rows out of order: ID %d after %d", id, ids[len(ids)-1])
		}
		ids = append(ids, id)
	}
	if len(ids) < n {
		t.Fatalf("audit = %d rows, want at least %d", len(ids), n)
	}
	if len(out) <= admin.MaxMessage {
		t.Errorf("audit output is %d bytes, want more than one admin message (%d)", len(out), admin.MaxMessage)
	}

	var page []admin.AuditEntry
	// The report's case: --limit 10000 on a big log (3,000 under -race).
	limit := min(10_000, n-1000)
	decode(t, mustRun(t, cmd("audit", "--limit", fmt.Sprint(limit), "--json")...), &page)
	if len(page) != limit || page[0].ID != ids[0] || page[limit-1].ID != ids[limit-1] {
		t.Errorf("audit --limit %d = %d rows, want the first %d", limit, len(page), limit)
	}
	decode(t, mustRun(t, cmd("audit", "--after", fmt.Sprint(ids[41]), "--limit", "3", "--json")...), &page)
	if len(page) != 3 || page[0].ID != ids[42] || page[2].ID != ids[44] || page[1].Name == "" || page[1].Detail["reason"] == nil {
		t.Errorf("audit --after %d --limit 3 = %+v, want rows %d..%d", ids[41], page, ids[42], ids[44])
	}
	decode(t, mustRun(t, cmd("audit", "--after", fmt.Sprint(ids[len(ids)-1]), "--json")...), &page)
	if len(page) != 0 {
		t.Errorf("audit after the last row = %+v, want []", page)
	}
	mustFail(t, "--limit -1", cmd("audit", "--limit", "-1")...)
	mustFail(t, "--after -5", cmd("audit", "--after", "-5")...)
}

// The JSON the CLI streams must be one array even for a single page.
func TestAuditJSONEmpty(t *testing.T) {
	_, cmd := startPrimary(t, nil)
	var rows []admin.AuditEntry
	out := mustRun(t, cmd("audit", "--since", "2000-01-01T00:00:00Z", "--after", "999999999", "--json")...)
	if err := json.Unmarshal([]byte(out), &rows); err != nil || len(rows) != 0 {
		t.Errorf("audit --json with no rows = %q (%v), want []", out, err)
	}
}
