//go:build linux

package packaging

import (
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/kardianos/service"
)

// renderHelperEnv makes the test binary act as TestKardianosInstall's helper.
const renderHelperEnv = "HOSTCERT_KARDIANOS_RENDER_TO"

// TestKardianosInstall renders the units with kardianos/service's own
// systemd Install (its real template engine, not the test's copy), inside a
// private mount namespace whose /etc/systemd/system is a tmpfs, then verifies
// the result with systemd-analyze.
func TestKardianosInstall(t *testing.T) {
	if os.Getenv(renderHelperEnv) != "" {
		kardianosRenderHelper(t, os.Getenv(renderHelperEnv))
		return
	}
	if os.Geteuid() != 0 {
		t.Skip("SKIP: not root: rendering with kardianos' Install needs a private mount namespace")
	}
	for _, tool := range []string{"unshare", "mount", "systemd-analyze"} {
		if _, err := exec.LookPath(tool); err != nil {
			t.Skipf("SKIP: %s not installed: units are not rendered by kardianos' Install", tool)
		}
	}
	out := t.TempDir()
	self, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command("unshare", "--mount", "--propagation", "private", "sh", "-c",
		`mount -t tmpfs tmpfs /etc/systemd/system && exec "$0" -test.run '^TestKardianosInstall$' -test.v`, self)
	cmd.Env = append(os.Environ(), renderHelperEnv+"="+out)
	if b, err := cmd.CombinedOutput(); err != nil {
		// A sandbox that forbids mount namespaces is not a failure of the units.
		if strings.Contains(string(b), "unshare failed") || strings.Contains(string(b), "mount: ") {
			t.Skipf("SKIP: no private mount namespace here: %s", b)
		}
		t.Fatalf("helper: %v\n%s", err, b)
	}

	root := newRoot(t, exesFor("/opt/host cert/")...)
	for _, name := range Programs {
		b, err := os.ReadFile(filepath.Join(out, name+".service"))
		if err != nil {
			t.Fatalf("kardianos rendered no unit for %s: %v", name, err)
		}
		want := `ExecStart=/opt/host\x20cert/` + name + ` "run" "--config" "/etc/hostcert/x y.yaml"` + "\n"
		if !strings.Contains(string(b), want) {
			t.Errorf("kardianos rendered %s without the line %q:\n%s", name, want, b)
		}
		if strings.Contains(string(b), "{{") {
			t.Errorf("kardianos rendered %s with an unexpanded action:\n%s", name, b)
		}
		p := filepath.Join(root, "etc/systemd/system", name+".service")
		if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(p, b, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	var units []string
	for _, name := range Programs {
		units = append(units, name+".service")
	}
	verify(t, root, units...)
}

func exesFor(dir string) []string {
	var exes []string
	for _, name := range Programs {
		exes = append(exes, dir+name)
	}
	return exes
}

// forcedSystemd is kardianos' systemd backend, used even where systemd is
// not running (Install writes the unit before calling systemctl).
type forcedSystemd struct{ service.System }

func (forcedSystemd) Detect() bool { return true }

type nopProgram struct{}

func (nopProgram) Start(service.Service) error { return nil }
func (nopProgram) Stop(service.Service) error  { return nil }

// kardianosRenderHelper runs in the private mount namespace: it installs each
// unit with kardianos (systemctl may fail afterwards; the unit file is
// written first) and copies the result to out.
func kardianosRenderHelper(t *testing.T, out string) {
	var systemd service.System
	for _, s := range service.AvailableSystems() {
		if s.String() == "linux-systemd" {
			systemd = s
		}
	}
	if systemd == nil {
		t.Fatal("kardianos has no linux-systemd system")
	}
	service.ChooseSystem(forcedSystemd{systemd})
	for _, name := range Programs {
		s, err := service.New(nopProgram{}, &service.Config{
			Name:        name,
			Description: "test",
			Executable:  "/opt/host cert/" + name,
			Arguments:   []string{"run", "--config", "/etc/hostcert/x y.yaml"},
			Option:      service.KeyValue{"SystemdScript": SystemdUnit(name)},
		})
		if err != nil {
			t.Fatal(err)
		}
		installErr := s.Install()
		b, err := os.ReadFile("/etc/systemd/system/" + name + ".service")
		if err != nil {
			t.Fatalf("Install(%s) = %v and wrote no unit: %v", name, installErr, err)
		}
		if err := os.WriteFile(filepath.Join(out, name+".service"), b, 0o644); err != nil {
			t.Fatal(err)
		}
		var exitErr *exec.ExitError
		if installErr != nil && !errors.As(installErr, &exitErr) && !strings.Contains(installErr.Error(), "exit status") {
			t.Logf("Install(%s) after writing the unit: %v (systemctl without systemd)", name, installErr)
		}
	}
}
