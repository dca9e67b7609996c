package packaging

import (
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
)

func TestSystemdUnitFileDirectives(t *testing.T) {
	// Every unit restarts on failure, waits for the network, runs as the
	// hostcert user and carries the hardening docs/packaging.md promises.
	common := []string{
		"After=network-online.target",
		"Wants=network-online.target",
		"Restart=on-failure",
		"User=hostcert",
		"Group=hostcert",
		"UMask=0077",
		"NoNewPrivileges=yes",
		"CapabilityBoundingSet=",
		"AmbientCapabilities=",
		"ProtectSystem=strict",
		"ProtectHome=yes",
		"PrivateTmp=yes",
		"PrivateDevices=yes",
		"PrivateMounts=yes",
		"ProtectKernelTunables=yes",
		"ProtectKernelModules=yes",
		"ProtectControlGroups=yes",
		"RestrictNamespaces=yes",
		"RestrictSUIDSGID=yes",
		"MemoryDenyWriteExecute=yes",
		"SystemCallArchitectures=native",
		"SystemCallFilter=@system-service",
		"WantedBy=multi-user.target",
	}
	tests := []struct {
		name  string
		extra []string
	}{
		{"hostcert-primary", []string{
			"ExecStart=/usr/bin/hostcert-primary serve --data /var/lib/hostcert/primary $HOSTCERT_PRIMARY_ARGS",
			"StateDirectory=hostcert/primary",
			"StateDirectoryMode=0700",
			"ConditionPathExists=|/var/lib/hostcert/primary/ca/root.pem",
			"ConditionPathExists=|/var/lib/hostcert/primary/ca/ca.pem",
			"RestrictAddressFamilies=AF_INET AF_INET6 AF_UNIX",
			"InaccessiblePaths=-/var/lib/hostcert/agent",
		}},
		{"hostcert-agent", []string{
			"ExecStart=/usr/bin/hostcert-agent run --config /etc/hostcert/agent.yaml",
			"StateDirectory=hostcert/agent",
			"StateDirectoryMode=0700",
			"InaccessiblePaths=-/var/lib/hostcert/primary",
			"RestrictAddressFamilies=AF_INET AF_INET6 AF_UNIX",
		}},
		{"hostcert-tunnel", []string{
			"ExecStart=/usr/bin/hostcert-tunnel run --config /etc/hostcert/tunnel.yaml",
			"RestrictAddressFamilies=AF_INET AF_INET6 AF_UNIX",
			"InaccessiblePaths=-/var/lib/hostcert",
			// Longer than the tunnel's own drain (shutdown_timeout, 30s).
			"TimeoutStopSec=45s",
		}},
	}
	for _, tt := range tests {
		unit := SystemdUnitFile(tt.name)
		if unit == "" {
			t.Fatalf("SystemdUnitFile(%q) = \"\", want the unit", tt.name)
		}
		lines := map[string]bool{}
		for _, l := range strings.Split(unit, "\n") {
			lines[l] = true
		}
		for _, want := range append(common, tt.extra...) {
			if !lines[want] {
				t.Errorf("SystemdUnitFile(%q) has no line %q", tt.name, want)
			}
		}
		if strings.Contains(unit, "{{") {
			t.Errorf("SystemdUnitFile(%q) contains \"{{\", which kardianos' template engine would take for an action", tt.name)
		}
		if got := SystemdUnitFile(tt.name + ".service"); got != unit {
			t.Errorf("SystemdUnitFile(%q) differs from SystemdUnitFile(%q)", tt.name+".service", tt.name)
		}
	}
}

func TestSystemdUnitUnknown(t *testing.T) {
	for _, name := range []string{"", "hostcert", "sshd", "../units.go", "systemd/hostcert-agent"} {
		if got := SystemdUnit(name); got != "" {
			t.Errorf("SystemdUnit(%q) = %q, want \"\"", name, got)
		}
		if got := SystemdUnitFile(name); got != "" {
			t.Errorf("SystemdUnitFile(%q) = %q, want \"\"", name, got)
		}
	}
}

// actionRE finds kardianos template actions.
var actionRE = regexp.MustCompile(`{{(.*?)}}`)

// render expands a SystemdUnit template the way kardianos/service v1.3.0's
// engine does for the actions it may contain (checked first):
// cmdEscape and cmd are copied from service_linux.go.
func render(t *testing.T, tmpl, path string, args []string) string {
	t.Helper()
	var actions []string
	for _, m := range actionRE.FindAllStringSubmatch(tmpl, -1) {
		actions = append(actions, strings.TrimSpace(m[1]))
	}
	want := []string{"Path | cmdEscape", "range Arguments", ". | cmd", "end"}
	if strings.Join(actions, ",") != strings.Join(want, ",") {
		t.Fatalf("template actions = %q, want exactly %q", actions, want)
	}
	cmdEscape := func(s string) string { return strings.ReplaceAll(s, " ", `\x20`) }
	cmdQuote := func(s string) string { return `"` + strings.ReplaceAll(s, `"`, `\"`) + `"` }
	line := "ExecStart=" + cmdEscape(path)
	for _, a := range args {
		line += " " + cmdQuote(a)
	}
	return strings.Replace(tmpl, execStartTemplate, line, 1)
}

func TestSystemdUnitTemplate(t *testing.T) {
	for _, name := range Programs {
		file, tmpl := SystemdUnitFile(name), SystemdUnit(name)
		if strings.Count(tmpl, "ExecStart=") != 1 {
			t.Fatalf("SystemdUnit(%q) has %d ExecStart= lines, want 1", name, strings.Count(tmpl, "ExecStart="))
		}
		got := render(t, tmpl, "/usr/bin/"+name, nil)
		// Apart from ExecStart, the template is the packaged file.
		strip := func(s string) string {
			var out []string
			for _, l := range strings.Split(s, "\n") {
				if !strings.HasPrefix(l, "ExecStart=") {
					out = append(out, l)
				}
			}
			return strings.Join(out, "\n")
		}
		if strip(got) != strip(file) {
			t.Errorf("SystemdUnit(%q) rendered differs from the packaged unit outside ExecStart=", name)
		}
		rendered := render(t, tmpl, "/opt/host cert/"+name, []string{"run", "--config", `C:"x y"`})
		if want := `ExecStart=/opt/host\x20cert/` + name + ` "run" "--config" "C:\"x y\""`; !strings.Contains(rendered, want+"\n") {
			t.Errorf("SystemdUnit(%q) rendered has no line %q:\n%s", name, want, rendered)
		}
	}
}

// systemUnitDir is the distribution's unit directory, copied into the
// throwaway root so that sysinit.target and friends resolve.
func systemUnitDir(t *testing.T) string {
	for _, d := range []string{"/usr/lib/systemd/system", "/lib/systemd/system"} {
		if fi, err := os.Stat(d); err == nil && fi.IsDir() {
			return d
		}
	}
	t.Skip("SKIP: no /usr/lib/systemd/system to verify units against")
	return ""
}

// verify runs systemd-analyze verify --root=root on the named units; any
// output (warnings included) fails the test.
func verify(t *testing.T, root string, units ...string) {
	t.Helper()
	args := append([]string{"verify", "--root=" + root}, units...)
	out, err := exec.Command("systemd-analyze", args...).CombinedOutput()
	if err != nil || len(out) > 0 {
		t.Errorf("systemd-analyze %s: err %v, output (any output fails):\n%s", strings.Join(args, " "), err, out)
	}
}

// newRoot makes a throwaway root with the distribution's units and stand-in
// executables at the given paths (verify only checks that ExecStart= is
// executable; scripts/test-packages.sh verifies with the real binaries).
func newRoot(t *testing.T, executables ...string) string {
	t.Helper()
	root := t.TempDir()
	dst := filepath.Join(root, "usr/lib/systemd")
	if err := os.MkdirAll(dst, 0o755); err != nil {
		t.Fatal(err)
	}
	if out, err := exec.Command("cp", "-a", systemUnitDir(t), dst+"/").CombinedOutput(); err != nil {
		t.Fatalf("copy units: %v: %s", err, out)
	}
	for _, e := range executables {
		p := filepath.Join(root, e)
		if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(p, []byte("#!/bin/sh\n"), 0o755); err != nil {
			t.Fatal(err)
		}
	}
	return root
}

func TestSystemdAnalyzeVerify(t *testing.T) {
	if _, err := exec.LookPath("systemd-analyze"); err != nil {
		t.Skip("SKIP: systemd-analyze not installed; the units are not verified (apt-get install systemd)")
	}
	var units []string
	for _, name := range Programs {
		units = append(units, name+".service")
	}

	t.Run("packaged", func(t *testing.T) {
		var exes []string
		for _, name := range Programs {
			exes = append(exes, "/usr/bin/"+name)
		}
		root := newRoot(t, exes...)
		for _, name := range Programs {
			p := filepath.Join(root, "lib/systemd/system", name+".service")
			if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
				t.Fatal(err)
			}
			if err := os.WriteFile(p, []byte(SystemdUnitFile(name)), 0o644); err != nil {
				t.Fatal(err)
			}
		}
		verify(t, root, units...)
	})

	t.Run("service install", func(t *testing.T) {
		// What `hostcert-agent service install` writes: kardianos renders the
		// template into /etc/systemd/system with the executable's own path.
		var exes []string
		for _, name := range Programs {
			exes = append(exes, "/opt/host cert/"+name)
		}
		root := newRoot(t, exes...)
		for _, name := range Programs {
			unit := render(t, SystemdUnit(name), "/opt/host cert/"+name, []string{"run", "--config", "/etc/hostcert/x y.yaml"})
			p := filepath.Join(root, "etc/systemd/system", name+".service")
			if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
				t.Fatal(err)
			}
			if err := os.WriteFile(p, []byte(unit), 0o644); err != nil {
				t.Fatal(err)
			}
		}
		verify(t, root, units...)
	})

	t.Run("a warning fails", func(t *testing.T) {
		// The check itself: a unit systemd warns about must not pass.
		root := newRoot(t, "/usr/bin/hostcert-agent")
		p := filepath.Join(root, "lib/systemd/system/hostcert-agent.service")
		if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
			t.Fatal(err)
		}
		bad := strings.Replace(SystemdUnitFile("hostcert-agent"), "PrivateTmp=yes", "PrivateTmp=yes\nProtectEverything=yes", 1)
		if err := os.WriteFile(p, []byte(bad), 0o644); err != nil {
			t.Fatal(err)
		}
		out, err := exec.Command("systemd-analyze", "verify", "--root="+root, "hostcert-agent.service").CombinedOutput()
		if err == nil && len(out) == 0 {
			t.Error("systemd-analyze verify of a unit with an unknown key printed nothing, want a warning")
		}
	})
}
