package server

import (
	"encoding/json"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/hostcert/hostcert/common/protocol"
	"github.com/hostcert/hostcert/internal/pgtest"
)

// getCode fetches path and returns the status, the refusal code (if any)
// and Retry-After.
func (e *env) getCode(path string) (int, protocol.Code, string) {
	e.t.Helper()
	resp, body := e.get(path, nil)
	var perr protocol.Error
	if resp.StatusCode != http.StatusOK {
		if err := json.Unmarshal(body, &perr); err != nil {
			e.t.Fatalf("GET %s = %d %q: not a JSON refusal: %v", path, resp.StatusCode, body, err)
		}
	}
	return resp.StatusCode, perr.Code, resp.Header.Get("Retry-After")
}

// TestHealthSQLite: on the default store both probes answer 200.
func TestHealthSQLite(t *testing.T) {
	e := newEnv(t, envOpts{})
	for _, p := range []string{protocol.PathHealthz, protocol.PathReadyz} {
		if st, code, _ := e.getCode(p); st != http.StatusOK {
			t.Errorf("GET %s = %d %s, want 200", p, st, code)
		}
	}
}

// TestReadyzFollowsPostgres: a primary on PostgreSQL is ready while the
// database answers; with the database stopped /readyz and an enrollment
// answer 503 store_unavailable with Retry-After (fail closed) while
// /healthz stays 200; after the database restarts the same process is
// ready and issues again, without being restarted.
func TestReadyzFollowsPostgres(t *testing.T) {
	c := pgtest.Start(t)
	// The test cluster trusts loopback, so the password is not checked:
	// it is here to show that no log line carries it.
	dsn := strings.Replace(c.CreateDatabase(t, "primary"), "postgres@", "postgres:s3cret-pw@", 1)
	e := newEnv(t, envOpts{store: dsn})
	e.setLevel(protocol.LevelHigh)
	tok := e.token("pg", 10, "")

	if st, code, _ := e.getCode(protocol.PathReadyz); st != http.StatusOK {
		t.Fatalf("GET /readyz with the database up = %d %s, want 200", st, code)
	}
	if r := e.enroll(newHost(t, "before.example"), tok, "", false); r.status != http.StatusOK {
		t.Fatalf("enroll with the database up = %v, want 200", r)
	}

	c.Stop(t)
	if st, code, retry := e.getCode(protocol.PathReadyz); st != http.StatusServiceUnavailable || code != protocol.CodeStoreUnavailable || retry == "" {
		t.Errorf("GET /readyz with the database down = %d %s Retry-After %q, want 503 store_unavailable with Retry-After", st, code, retry)
	}
	if st, code, _ := e.getCode(protocol.PathHealthz); st != http.StatusOK {
		t.Errorf("GET /healthz with the database down = %d %s, want 200 (the process is up)", st, code)
	}
	r := e.enroll(newHost(t, "during.example"), tok, "", false)
	if r.status != http.StatusServiceUnavailable || r.err.Code != protocol.CodeStoreUnavailable {
		t.Errorf("enroll with the database down = %v, want 503 store_unavailable", r)
	}

	c.Restart(t)
	deadline := time.Now().Add(30 * time.Second)
	for {
		st, _, _ := e.getCode(protocol.PathReadyz)
		if st == http.StatusOK {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("GET /readyz after the database restarted = %d, want 200 within 30 s", st)
		}
		time.Sleep(200 * time.Millisecond)
	}
	if r := e.enroll(newHost(t, "after.example"), tok, "", false); r.status != http.StatusOK {
		t.Errorf("enroll after the database restarted = %v, want 200", r)
	}
	if _, err := e.store().HostByName(t.Context(), "during.example"); err == nil {
		t.Error("the enrollment refused while the database was down left a host behind")
	}
	logs := e.log.String()
	if strings.Contains(logs, "s3cret") || !strings.Contains(logs, `"store_at":"postgres://postgres:xxxxx@`) {
		t.Errorf("the primary's log shows the store's password, or not its redacted URL:\n%s", logs)
	}
}
