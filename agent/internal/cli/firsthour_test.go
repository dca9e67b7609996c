package cli

import (
	"bytes"
	"context"
	"encoding/json"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"testing"

	"github.com/spf13/cobra"

	"github.com/hostcert/hostcert/agent/internal/certstore"
	"github.com/hostcert/hostcert/agent/internal/config"
	"github.com/hostcert/hostcert/agent/internal/health"
	"github.com/hostcert/hostcert/agent/internal/renew"
	"github.com/hostcert/hostcert/common/protocol"
	"github.com/hostcert/hostcert/primary/primarytest"
)

// bare runs the agent with exactly args (no harness defaults) and an empty
// configuration file, which configures as much as no file at all.
func bare(t *testing.T, args ...string) result {
	t.Helper()
	empty := filepath.Join(t.TempDir(), "agent.yaml")
	if err := os.WriteFile(empty, nil, 0o644); err != nil {
		t.Fatal(err)
	}
	var out, errb bytes.Buffer
	code := Main(context.Background(), append(args, "--config", empty, "--log-format", "json"), IO{In: strings.NewReader(""), Out: &out, Err: &errb})
	return result{out.String(), errb.String(), code}
}

func mustBare(t *testing.T, args ...string) result {
	t.Helper()
	r := bare(t, args...)
	if r.code != 0 {
		t.Fatalf("%v: exit %d\nstdout: %s\nstderr: %s", args, r.code, r.out, r.err)
	}
	return r
}

func statusOf(t *testing.T, r result) Status {
	t.Helper()
	var s Status
	if err := json.Unmarshal([]byte(r.out), &s); err != nil {
		t.Fatalf("status --json printed %q: %v", r.out, err)
	}
	return s
}

// The README's by-hand block with no configuration: get-ca-cert --primary
// records the primary (given as a URL here) and the tunnels; get-cert,
// status, self-check and get-crl need no --primary afterwards. A flag or
// the config file still wins, and status says where the primary came from.
func TestByHandWithoutConfig(t *testing.T) {
	srv := newServer(t, primarytest.Options{})
	data := filepath.Join(t.TempDir(), "data")
	primary := "localhost:" + srv.Port()
	d := []string{"--data", data}

	r := mustBare(t, append([]string{"get-ca-cert", "--primary", "https://" + primary + "/", "--tunnel", "127.0.0.1:1", "--fingerprint", srv.Fingerprint()}, d...)...)
	if !strings.Contains(r.out, config.RecordedFile) {
		t.Errorf("get-ca-cert does not say where it recorded the primary:\n%s", r.out)
	}
	rec, err := config.ReadRecorded(data)
	if err != nil || rec.Primary.String() != primary || len(rec.Tunnels) != 1 || rec.Tunnels[0] != "127.0.0.1:1" {
		t.Fatalf("recorded = %+v, %v; want primary %s and tunnel 127.0.0.1:1", rec, err, primary)
	}
	srv.AddHost("web01.example.com")
	mustBare(t, append([]string{"get-cert", "--name", "web01.example.com"}, d...)...)
	mustBare(t, append([]string{"get-crl"}, d...)...)
	mustBare(t, append([]string{"self-check"}, d...)...)

	st := statusOf(t, mustBare(t, append([]string{"status", "--json"}, d...)...))
	if st.Primary != primary || st.PrimarySource != string(config.SourceRecorded) || len(st.Tunnels) != 1 || !st.Enrolled || st.Health.Verdict != health.Good {
		t.Errorf("status = primary %q (%q), tunnels %q, enrolled %t, health %s; want %s recorded by get-ca-cert, its tunnel, enrolled, good",
			st.Primary, st.PrimarySource, st.Tunnels, st.Enrolled, st.Health.Verdict, primary)
	}
	human := mustBare(t, append([]string{"status"}, d...)...).out
	if !strings.Contains(human, primary+" ("+string(config.SourceRecorded)+")") {
		t.Errorf("status does not show the primary and where it came from:\n%s", human)
	}

	st = statusOf(t, mustBare(t, append([]string{"status", "--json", "--primary", "other.example"}, d...)...))
	if st.Primary != "other.example:1556" || st.PrimarySource != string(config.SourceFlag) || len(st.Tunnels) != 0 {
		t.Errorf("status --primary other.example = %q (%q), tunnels %q; want the flag's primary, no recorded tunnels", st.Primary, st.PrimarySource, st.Tunnels)
	}
	file := filepath.Join(t.TempDir(), "agent.yaml")
	os.WriteFile(file, []byte("primary: file.example\ndata_dir: "+data+"\n"), 0o644)
	var out, errb bytes.Buffer
	if code := Main(context.Background(), []string{"status", "--json", "--config", file}, IO{Out: &out, Err: &errb}); code != 0 {
		t.Fatalf("status with a config file: exit %d, %s", code, errb.String())
	}
	if st = statusOf(t, result{out: out.String()}); st.Primary != "file.example:1556" || st.PrimarySource != string(config.SourceFile) {
		t.Errorf("status with primary in the config file = %q (%q), want file.example:1556 from the config file", st.Primary, st.PrimarySource)
	}
}

// self-check and status give one verdict; self-check's exit code is 0 good,
// 2 bad, 1 cannot tell. A deleted CRL or a certificate that no longer chains
// to the trust store is not "ok".
func TestHealthVerdicts(t *testing.T) {
	srv := newServer(t, primarytest.Options{})
	other := newServer(t, primarytest.Options{})
	h := newHarness(t, srv)
	h.enroll("web01.example.com")

	agree := func(step string, want health.Verdict, reasonHas string) {
		t.Helper()
		r := h.run("self-check")
		st := h.status()
		if r.code != want.ExitCode() || st.Health.Verdict != want || st.Health.ExitCode != want.ExitCode() {
			t.Errorf("%s: self-check exit %d (%s), status health %s; want %s (exit %d) from both", step, r.code, strings.TrimSpace(r.err), st.Health.Verdict, want, want.ExitCode())
		}
		if !strings.Contains(r.out+r.err, reasonHas) || !strings.Contains(h.must("status").out, reasonHas) {
			t.Errorf("%s: self-check (%q) or status does not say %q", step, r.out+r.err, reasonHas)
		}
		var js health.Report
		if err := json.Unmarshal([]byte(h.run("self-check", "--json").out), &js); err != nil || js.Verdict != want {
			t.Errorf("%s: self-check --json verdict = %q (%v), want %q", step, js.Verdict, err, want)
		}
	}
	agree("enrolled, CRL fetched", health.Good, "good")

	// One computation of the renewal time: status, self-check and renew.DueFor (what run uses).
	var sc health.Report
	json.Unmarshal([]byte(h.must("self-check", "--json").out), &sc)
	due := renew.DueFor(h.identity().Cert, config.DefaultRenewBefore)
	if st := h.status(); !st.Health.RenewalAt.Equal(due) || !sc.RenewalAt.Equal(due) {
		t.Errorf("renewal at: status %v, self-check %v; want both renew.DueFor = %v", st.Health.RenewalAt, sc.RenewalAt, due)
	}

	crlPEM, _ := os.ReadFile(filepath.Join(h.data, certstore.CRLFile))
	os.Remove(filepath.Join(h.data, certstore.CRLFile))
	agree("CRL deleted", health.Unknown, "no CRL")
	os.WriteFile(filepath.Join(h.data, certstore.CRLFile), crlPEM, 0o644)
	agree("CRL back", health.Good, "good")

	// Trust moved to another CA: the certificate no longer chains.
	caPEM, _ := os.ReadFile(filepath.Join(h.data, certstore.CAFile))
	st := h.store()
	if err := st.WriteCA(other.CA()); err != nil {
		t.Fatal(err)
	}
	agree("trust store of another CA", health.Bad, "does not chain to the trusted CA")
	os.WriteFile(filepath.Join(h.data, certstore.CAFile), caPEM, 0o644)

	srv.Revoke("web01.example.com")
	h.must("get-crl")
	agree("revoked", health.Bad, "REVOKED")

	os.Remove(filepath.Join(h.data, certstore.IdentityFile))
	agree("no certificate", health.Unknown, "run get-cert")
}

// Trust never switches silently: a primary with another CA is refused,
// naming both fingerprints, and nothing is written; --replace switches,
// drops what belonged to the old primary, and get-cert enrolls anew.
func TestTrustReplace(t *testing.T) {
	old := newServer(t, primarytest.Options{})
	next := newServer(t, primarytest.Options{})
	h := newHarness(t, old)
	h.enroll("web01.example.com")
	oldHostID := h.status().HostID
	caBefore, _ := os.ReadFile(filepath.Join(h.data, certstore.CAFile))
	recBefore, _ := os.ReadFile(config.RecordedPath(h.data))

	// The same CA again (re-running the first step) is fine.
	h.must("get-ca-cert", "--fingerprint", old.Fingerprint())

	h.dial = next.Addr()
	r := h.run("get-ca-cert", "--fingerprint", next.Fingerprint())
	if r.code == 0 || !strings.Contains(r.err, old.Fingerprint()) || !strings.Contains(r.err, next.Fingerprint()) ||
		!strings.Contains(r.err, "--replace") || strings.Count(strings.TrimSpace(r.err), "\n") != 0 {
		t.Fatalf("get-ca-cert for another CA: exit %d, stderr %q; want one line naming both fingerprints and --replace", r.code, r.err)
	}
	caAfter, _ := os.ReadFile(filepath.Join(h.data, certstore.CAFile))
	recAfter, _ := os.ReadFile(config.RecordedPath(h.data))
	if !bytes.Equal(caBefore, caAfter) || !bytes.Equal(recBefore, recAfter) {
		t.Fatal("a refused get-ca-cert changed the trust store or the recorded primary")
	}
	if st := h.status(); st.HostID != oldHostID || st.Health.Verdict != health.Good {
		t.Errorf("after a refused switch: host %q, health %s; want %q, good", st.HostID, st.Health.Verdict, oldHostID)
	}

	r = h.must("get-ca-cert", "--fingerprint", next.Fingerprint(), "--replace")
	if !strings.Contains(r.out, "trust replaced") {
		t.Errorf("get-ca-cert --replace does not say trust was replaced:\n%s", r.out)
	}
	if exists(filepath.Join(h.data, certstore.CRLFile)) {
		t.Error("the old primary's CRL survived the trust replacement")
	}
	st := h.status()
	if st.State.HostID != "" || st.Health.Verdict != health.Bad || len(st.CAFingerprint) != 1 || st.CAFingerprint[0] != next.Fingerprint() {
		t.Errorf("after --replace: state host %q, health %s, trusted %q; want no host ID, bad (old certificate), %s", st.State.HostID, st.Health.Verdict, st.CAFingerprint, next.Fingerprint())
	}
	if r := h.run("self-check"); r.code != 2 || !strings.Contains(r.err, "does not chain") {
		t.Errorf("self-check with the old certificate: exit %d, %q; want 2, does not chain", r.code, r.err)
	}
	next.AddHost("web01.example.com")
	h.must("get-cert", "--name", "web01.example.com")
	if st := h.status(); st.HostID == oldHostID || st.HostID != next.HostID("web01.example.com") || st.Health.Verdict != health.Good {
		t.Errorf("get-cert on the new primary: host %q, health %s; want the new primary's host ID %q, good", st.HostID, st.Health.Verdict, next.HostID("web01.example.com"))
	}
}

// A damaged state.json does not take the host down: status and self-check
// work, warn, and rebuild the host ID from host.pem; the next write repairs it.
func TestDamagedState(t *testing.T) {
	srv := newServer(t, primarytest.Options{})
	h := newHarness(t, srv)
	h.enroll("web01.example.com")
	hostID := h.status().HostID
	path := filepath.Join(h.data, certstore.StateFile)
	good, _ := os.ReadFile(path)
	for name, damage := range map[string][]byte{
		"truncated":   good[:len(good)/2],
		"garbage":     []byte("\x00\x01 not json at all"),
		"wrong types": []byte(`{"host_id": 5, "level": ["x"], "route_since": true}`),
		"empty":       nil,
	} {
		t.Run(name, func(t *testing.T) {
			os.WriteFile(path, damage, 0o600)
			r := h.run("status", "--json")
			if r.code != 0 || !strings.Contains(r.err, "damaged") {
				t.Fatalf("status with a %s state.json: exit %d, stderr %q; want 0 and a warning", name, r.code, r.err)
			}
			if st := statusOf(t, r); st.HostID != hostID || st.State.HostID != hostID || st.State.Name != "web01.example.com" {
				t.Errorf("status with a %s state.json: host %q, state host %q name %q; want %q rebuilt from host.pem", name, st.HostID, st.State.HostID, st.State.Name, hostID)
			}
			if r := h.run("self-check"); r.code != 0 {
				t.Errorf("self-check with a %s state.json: exit %d, %q; want 0", name, r.code, r.err)
			}
			h.must("get-crl") // writes the state: repairs it
			if _, err := h.store().State(); err != nil {
				t.Errorf("state after get-crl: %v, want repaired", err)
			}
		})
	}
}

// status and self-check on a mistyped --data say so and create nothing.
func TestMistypedDataDir(t *testing.T) {
	missing := filepath.Join(t.TempDir(), "dta")
	for _, cmd := range []string{"status", "self-check"} {
		r := bare(t, cmd, "--data", missing)
		if r.code != 1 || !strings.Contains(r.err, "--data") || strings.Count(strings.TrimSpace(r.err), "\n") != 0 {
			t.Errorf("%s --data %s: exit %d, %q; want exit 1, one line pointing at --data", cmd, missing, r.code, r.err)
		}
		if exists(missing) {
			t.Fatalf("%s created the mistyped data directory %s", cmd, missing)
		}
	}
}

var snake = regexp.MustCompile(`^[a-z][a-z0-9_]*$`)

func jsonKeys(t *testing.T, v any, at string) {
	switch v := v.(type) {
	case map[string]any:
		for k, x := range v {
			if !snake.MatchString(k) {
				t.Errorf("status --json key %s%s is not snake_case", at, k)
			}
			jsonKeys(t, x, at+k+".")
		}
	case []any:
		for _, x := range v {
			jsonKeys(t, x, at)
		}
	}
}

// Every key status --json prints is snake_case, nested ones included.
func TestStatusJSONKeys(t *testing.T) {
	srv := newServer(t, primarytest.Options{})
	h := newHarness(t, srv)
	h.enroll("web01.example.com")
	h.must("renew")
	var m map[string]any
	if err := json.Unmarshal([]byte(h.must("status", "--json").out), &m); err != nil {
		t.Fatal(err)
	}
	if _, ok := m["state"]; !ok {
		t.Errorf("status --json has no \"state\" key: %v", m)
	}
	jsonKeys(t, m, "")
}

// A refusal is one line that says nothing twice (no four words repeated),
// with what to do. The messages are the primary's (policy.Message).
func TestRefusalSaysNothingTwice(t *testing.T) {
	for code, msg := range map[string]string{
		"token_required":         "token required: at high a host not in the registry needs a token",
		"reissue_token_required": "reissue token required: this host already has a host ID; ask the admin for a reissue token or an auto-reissue window",
		"token_invalid":          "the token is not valid for this request",
		"host_revoked":           "this host is revoked and cannot renew; it needs a reissue token",
		"cert_expired":           "the certificate has expired and cannot be renewed; the host needs a reissue",
		"rate_limited":           "too many wrong tokens from this address; wait a minute and try again",
		"not_verified":           "the name does not resolve to the address the request came from",
		"name_not_allowed":       "host ID 1234 belongs to another name",
	} {
		got := refusal(protocolCode(code), msg)
		words := strings.Fields(strings.ToLower(strings.NewReplacer(";", " ", ":", " ", ",", " ", "(", " ", ")", " ").Replace(got)))
		seen := map[string]bool{}
		for i := 0; i+4 <= len(words); i++ {
			g := strings.Join(words[i:i+4], " ")
			if seen[g] {
				t.Errorf("refusal(%s) = %q, repeats %q", code, got, g)
				break
			}
			seen[g] = true
		}
		if !strings.HasPrefix(got, "refused ("+code+"): ") || strings.Contains(got, "\n") {
			t.Errorf("refusal(%s) = %q, want one line starting refused (%s): ", code, got, code)
		}
		if strings.Contains(strings.ToLower(got), strings.ReplaceAll(code, "_", " ")+":") {
			t.Errorf("refusal(%s) = %q, restates the code", code, got)
		}
	}
}

func protocolCode(s string) protocol.Code { return protocol.Code(s) }

// With no config file, `service install` does not name one in the
// service's command line (run would refuse a missing --config file); it
// uses the recorded primary instead.
func TestServiceArgumentsWithoutConfigFile(t *testing.T) {
	a := &app{io: IO{}}
	root := a.root()
	missing := filepath.Join(t.TempDir(), "none.yaml")
	for _, tc := range []struct {
		args    []string
		withCfg bool
	}{
		{[]string{"service", "status", "--data", "d"}, false},
		{[]string{"service", "status", "--config", missing, "--data", "d"}, true},
	} {
		if _, err := os.Stat(config.DefaultPath()); err == nil && !tc.withCfg {
			continue // this machine has the default file: run will read it
		}
		var got []string
		for _, c := range root.Commands() {
			if c.Name() == "service" {
				c.RunE = func(cmd *cobra.Command, _ []string) error { got = a.svcConfig(cmd, "x").Arguments; return nil }
			}
		}
		root.SetArgs(tc.args)
		if err := root.Execute(); err != nil {
			t.Fatal(err)
		}
		if has := slices.Contains(got, "--config"); has != tc.withCfg {
			t.Errorf("%v: service arguments %q, want --config %t", tc.args, got, tc.withCfg)
		}
	}
}
