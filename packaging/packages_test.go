package packaging

import (
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// repoRoot is the module root (this package lives in packaging/).
func repoRoot(t *testing.T) string {
	t.Helper()
	root, err := filepath.Abs("..")
	if err != nil {
		t.Fatal(err)
	}
	return root
}

// TestDebPackages builds this machine's .debs and runs scripts/test-packages.sh:
// systemd-analyze verify with the shipped binaries, lintian, install into a
// throwaway root with dpkg --root, checks, reinstall, purge.
func TestDebPackages(t *testing.T) {
	if testing.Short() {
		t.Skip("SKIP: -short: the package test builds the three programs")
	}
	if os.Geteuid() != 0 {
		t.Skip("SKIP: not root: the .deb install test needs root (dpkg --root installs files owned by hostcert)")
	}
	if _, err := exec.LookPath("dpkg"); err != nil {
		t.Skip("SKIP: dpkg not installed: the .deb install test needs a Debian machine")
	}
	root := repoRoot(t)
	for _, p := range []string{"primary", "agent", "tunnel"} {
		if m, _ := filepath.Glob(filepath.Join(root, p, "*.go")); len(m) == 0 {
			t.Skipf("SKIP: %s/ has no main package yet; nothing to package", p)
		}
	}
	ctx, cancel := context.WithTimeout(context.Background(), 8*time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, "bash", "scripts/test-packages.sh")
	cmd.Dir = root
	// What --version must print; packages.sh stamps the binaries with these.
	cmd.Env = append(os.Environ(), "VERSION=v0.0.0-packagetest", "COMMIT=abcdef0", "LDFLAGS=")
	out, err := cmd.CombinedOutput()
	t.Logf("scripts/test-packages.sh:\n%s", out)
	if err != nil {
		t.Fatalf("scripts/test-packages.sh: %v", err)
	}
	if !strings.Contains(string(out), "test-packages: PASS") {
		t.Fatal("scripts/test-packages.sh did not print PASS")
	}
}

// TestInstallScriptParses checks packaging/windows/install.ps1 with the
// tree-sitter PowerShell grammar (npm, pinned in psparse/package-lock.json),
// and that the check does catch a broken script.
func TestInstallScriptParses(t *testing.T) {
	for _, tool := range []string{"node", "npm"} {
		if _, err := exec.LookPath(tool); err != nil {
			t.Skipf("SKIP: %s not installed: install.ps1 is not parsed (apt-get install nodejs npm)", tool)
		}
	}
	dir := t.TempDir()
	for _, f := range []string{"package.json", "package-lock.json", "check.mjs"} {
		b, err := os.ReadFile(filepath.Join("windows", "psparse", f))
		if err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(filepath.Join(dir, f), b, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	npm := exec.CommandContext(ctx, "npm", "ci", "--no-audit", "--no-fund", "--ignore-scripts", "--legacy-peer-deps")
	npm.Dir = dir
	if out, err := npm.CombinedOutput(); err != nil {
		t.Fatalf("npm ci: %v\n%s", err, out)
	}

	script, err := os.ReadFile(filepath.Join("windows", "install.ps1"))
	if err != nil {
		t.Fatal(err)
	}
	broken := filepath.Join(dir, "broken.ps1")
	// Drop the script's last closing brace.
	i := strings.LastIndex(string(script), "}")
	if err := os.WriteFile(broken, append(script[:i:i], script[i+1:]...), 0o644); err != nil {
		t.Fatal(err)
	}

	// One node run for both files: loading the grammar takes seconds.
	abs, err := filepath.Abs(filepath.Join("windows", "install.ps1"))
	if err != nil {
		t.Fatal(err)
	}
	out, err := exec.CommandContext(ctx, "node", filepath.Join(dir, "check.mjs"), abs, broken).CombinedOutput()
	if err == nil {
		t.Errorf("check of install.ps1 without its last } passed, want a syntax error:\n%s", out)
	}
	if !strings.Contains(string(out), abs+": parses\n") {
		t.Errorf("install.ps1 does not parse:\n%s", out)
	}
	if !strings.Contains(string(out), broken+":") {
		t.Errorf("check printed no error for install.ps1 without its last }:\n%s", out)
	}
}
