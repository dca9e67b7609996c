package main

import (
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strings"
	"testing"
)

// The agent's tests run the real primary in-process (primary/primarytest);
// the agent itself must never link any of the primary: not its CA, its
// store nor its policy. `go list -deps` of every non-test agent package, for
// each operating system the agent ships on, names no package under
// primary/. The same listing with the tests does name primary/primarytest,
// which shows the check sees such an import when there is one.
func TestAgentDoesNotImportThePrimary(t *testing.T) {
	const primary = "github.com/hostcert/hostcert/primary/"
	for _, goos := range []string{"linux", "windows"} {
		prod := deps(t, goos, false)
		if !prod["github.com/hostcert/hostcert/agent/internal/client"] {
			t.Fatalf("GOOS=%s: go list -deps ./... lacks agent/internal/client; the listing is wrong", goos)
		}
		for p := range prod {
			if strings.HasPrefix(p, primary) {
				t.Errorf("GOOS=%s: non-test agent code depends on %s", goos, p)
			}
		}
		if withTests := deps(t, goos, true); !withTests[primary+"primarytest"] {
			t.Errorf("GOOS=%s: go list -deps -test ./... does not list primary/primarytest, which the agent's tests import: the check cannot see an import of the primary", goos)
		}
	}
}

// deps lists the packages ./... (the agent) depends on.
func deps(t *testing.T, goos string, tests bool) map[string]bool {
	t.Helper()
	args := []string{"list", "-deps"}
	if tests {
		args = append(args, "-test")
	}
	cmd := exec.Command(goTool(t), append(args, "./...")...)
	cmd.Env = append(os.Environ(), "GOOS="+goos)
	out, err := cmd.Output()
	if err != nil {
		var stderr string
		if ee, ok := err.(*exec.ExitError); ok {
			stderr = string(ee.Stderr)
		}
		t.Fatalf("GOOS=%s go %s: %v\n%s", goos, strings.Join(args, " "), err, stderr)
	}
	m := map[string]bool{}
	for _, p := range strings.Fields(string(out)) {
		m[p] = true
	}
	return m
}

// goTool is the go command of the toolchain that built this test.
func goTool(t *testing.T) string {
	t.Helper()
	if p := filepath.Join(runtime.GOROOT(), "bin", "go"); fileExists(p) {
		return p
	}
	p, err := exec.LookPath("go")
	if err != nil {
		t.Fatalf("no go command to list the agent's imports: %v", err)
	}
	return p
}

func fileExists(p string) bool { _, err := os.Stat(p); return err == nil }
