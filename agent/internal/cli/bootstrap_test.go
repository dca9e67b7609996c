package cli

import (
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/hostcert/hostcert/agent/internal/certstore"
	"github.com/hostcert/hostcert/primary/primarytest"
)

func TestGetCACert(t *testing.T) {
	srv := newServer(t, primarytest.Options{})
	fp := srv.Fingerprint()
	for _, tc := range []struct {
		name     string
		in       string
		terminal bool
		args     []string
		ok       bool
		errHas   string
	}{
		{"no terminal, no fingerprint", "", false, nil, false, "no terminal"},
		{"wrong fingerprint", "", false, []string{"--fingerprint", strings.Repeat("AB", 32)}, false, "does not match"},
		{"malformed fingerprint", "", false, []string{"--fingerprint", "xyz"}, false, "not a SHA-256"},
		{"terminal says no", "n\n", true, nil, false, "not confirmed"},
		{"terminal says nothing", "", true, nil, false, "not confirmed"},
		{"terminal says yes", "y\n", true, nil, true, ""},
		{"fingerprint, lower case without colons", "", false, []string{"--fingerprint", strings.ToLower(strings.ReplaceAll(fp, ":", ""))}, true, ""},
		{"--yes (trust on first use)", "", false, []string{"--yes"}, true, ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			h := newHarness(t, srv)
			r := h.runIO(tc.in, tc.terminal, append([]string{"get-ca-cert"}, tc.args...)...)
			written := exists(filepath.Join(h.data, certstore.CAFile))
			if (r.code == 0) != tc.ok || written != tc.ok {
				t.Fatalf("get-ca-cert %v: exit %d, trust store written %t; want ok=%t\nstderr: %s", tc.args, r.code, written, tc.ok, r.err)
			}
			if files := dataFiles(h); !tc.ok && len(files) != 0 {
				t.Errorf("refused get-ca-cert left files in the data directory: %v", files)
			}
			if tc.name != "malformed fingerprint" && !strings.Contains(r.out, fp) {
				t.Errorf("get-ca-cert output does not show the fingerprint %s:\n%s", fp, r.out)
			}
			if !tc.ok && (!strings.Contains(r.err, tc.errHas) || strings.Count(strings.TrimSpace(r.err), "\n") != 0) {
				t.Errorf("get-ca-cert stderr = %q, want one line containing %q", r.err, tc.errHas)
			}
		})
	}
}

// A man in the middle on the primary's address: nothing written, non-zero exit.
func TestGetCACertMITM(t *testing.T) {
	real := newServer(t, primarytest.Options{})
	t.Run("other CA", func(t *testing.T) {
		evil, evilFP := mitm(t, nil)
		h := newHarness(t, real)
		h.dial = addrOf(evil)
		r := h.run("get-ca-cert", "--fingerprint", real.Fingerprint())
		if r.code == 0 || len(dataFiles(h)) != 0 || !strings.Contains(r.err, "does not match") {
			t.Fatalf("get-ca-cert via MITM: exit %d, stderr %q; want refusal and no trust store", r.code, r.err)
		}
		if !strings.Contains(r.out, evilFP) {
			t.Errorf("output should show the fingerprint actually received (%s):\n%s", evilFP, r.out)
		}
	})
	t.Run("copied real CA bundle, own TLS certificate", func(t *testing.T) {
		evil, _ := mitm(t, real)
		h := newHarness(t, real)
		h.dial = addrOf(evil)
		r := h.run("get-ca-cert", "--fingerprint", real.Fingerprint())
		if r.code == 0 || len(dataFiles(h)) != 0 || !strings.Contains(r.err, "does not chain") {
			t.Fatalf("get-ca-cert via MITM with a copied bundle: exit %d, stderr %q; want refusal and no trust store", r.code, r.err)
		}
	})
}

// dataFiles lists what is in the agent's data directory.
func dataFiles(h *harness) []string {
	entries, _ := os.ReadDir(h.data)
	var names []string
	for _, e := range entries {
		names = append(names, e.Name())
	}
	return names
}
