package cli

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/hostcert/hostcert/agent/internal/config"
	"github.com/hostcert/hostcert/primary/primarytest"
)

// Several primaries by flag (comma-separated or repeated): the first refuses,
// the agent carries on with the second, records both, and status names the
// node that answered.
func TestSeveralPrimaries(t *testing.T) {
	srv := newServer(t, primarytest.Options{})
	down := "127.0.0.1:1"
	up := "localhost:" + srv.Port() // a name of the primary's certificate
	for i, form := range [][]string{
		{"--primary", down + "," + up},
		{"--primary", down, "--primary", up},
	} {
		dir := t.TempDir()
		data := filepath.Join(dir, "data")
		if err := os.WriteFile(filepath.Join(dir, "agent.yaml"), []byte("log_format: json\n"), 0o644); err != nil {
			t.Fatal(err)
		}
		run := func(args ...string) result {
			t.Helper()
			var out, errb bytes.Buffer
			code := Main(context.Background(), append(args, "--config", filepath.Join(dir, "agent.yaml"), "--data", data, "--dial-timeout", "500ms"), IO{In: strings.NewReader(""), Out: &out, Err: &errb})
			if code != 0 {
				t.Fatalf("%v: exit %d: %s", args, code, errb.String())
			}
			return result{out: out.String(), err: errb.String()}
		}
		run(append([]string{"get-ca-cert", "--fingerprint", srv.Fingerprint()}, form...)...)
		rec, err := config.ReadRecorded(data)
		if want := (config.Addrs{down, up}); err != nil || !slices.Equal(rec.Primary, want) {
			t.Fatalf("%v: recorded %q, %v; want %q", form, rec.Primary, err, want)
		}
		name := fmt.Sprintf("web%d.example.com", i)
		srv.AddHost(name)
		run("get-cert", "--name", name) // the primaries from the record
		var st Status
		if err := json.Unmarshal([]byte(run("status", "--json").out), &st); err != nil {
			t.Fatal(err)
		}
		if !st.Enrolled || st.Primary != down || !slices.Equal(st.Primaries, []string{down, up}) || st.State.Route != "direct "+up {
			t.Errorf("%v: status = primary %q, primaries %q, route %q, enrolled %t; want both primaries and route direct %s",
				form, st.Primary, st.Primaries, st.State.Route, st.Enrolled, up)
		}
		if human := run("status").out; !strings.Contains(human, down+", "+up) || !strings.Contains(human, "direct "+up) {
			t.Errorf("%v: status does not show both primaries and the node that answered:\n%s", form, human)
		}
	}
}

// A certificate error at the first primary never moves on to the second.
func TestSeveralPrimariesNoFailoverOnCertificateError(t *testing.T) {
	srv := newServer(t, primarytest.Options{})
	h := newHarness(t, srv)
	h.must("get-ca-cert", "--fingerprint", srv.Fingerprint())
	evil, _ := mitm(t, nil)
	var out, errb bytes.Buffer
	code := Main(context.Background(), []string{"get-cert", "--name", "x.example.com", "--config", h.config, "--data", h.data,
		"--primary", addrOf(evil) + ",localhost:" + srv.Port()}, IO{In: strings.NewReader(""), Out: &out, Err: &errb})
	if code == 0 || !strings.Contains(errb.String(), "certificate") {
		t.Fatalf("get-cert with a MITM first: exit %d, %q; want a certificate error", code, errb.String())
	}
	if n := srv.Count("issue"); n != 0 {
		t.Errorf("the second primary issued %d certificates after a certificate error at the first, want 0", n)
	}
}
