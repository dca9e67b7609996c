package svc

import (
	"errors"
	"os/user"
	"strings"
	"testing"
	"time"

	"github.com/kardianos/service"
)

func TestSupported(t *testing.T) {
	tests := []struct {
		f    Facts
		want bool
	}{
		{Facts{Platform: "linux-systemd", HasUnit: true}, true},
		{Facts{Platform: "linux-systemd", HasUnit: false}, false},
		{Facts{Platform: "windows-service"}, true},
		{Facts{Platform: "windows-service", HasUnit: true}, true},
		{Facts{Platform: "unix-systemv", HasUnit: true}, false},
		{Facts{Platform: "linux-upstart", HasUnit: true}, false},
		{Facts{Platform: "linux-openrc", HasUnit: true}, false},
		{Facts{Platform: "linux-rcs", HasUnit: true}, false},
		{Facts{Platform: "linux-procd", HasUnit: true}, false},
		{Facts{Platform: "darwin-launchd", HasUnit: true}, false},
		{Facts{Platform: "freebsd", HasUnit: true}, false},
		{Facts{Platform: "", HasUnit: true}, false},
	}
	for _, tt := range tests {
		err := supported(tt.f)
		if got := err == nil; got != tt.want {
			t.Errorf("supported(%+v) = %v, want supported %v", tt.f, err, tt.want)
		}
		if err != nil && !errors.Is(err, ErrUnsupportedManager) {
			t.Errorf("supported(%+v) = %v, want ErrUnsupportedManager", tt.f, err)
		}
	}
	err := supported(Facts{Platform: "unix-systemv", HasUnit: true})
	for _, want := range []string{`"unix-systemv"`, "systemd", "Windows", "run", "hostcert user", "docs/packaging.md"} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("supported(sysv) = %q, want it to say %q", err, want)
		}
	}
}

func TestParseSystemdShow(t *testing.T) {
	tests := []struct {
		out  string
		want upState
	}{
		{"ActiveState=active\nSubState=running\nMainPID=42\nNRestarts=0\n", upState{true, "42/0", "systemd: active/running"}},
		{"MainPID=0\nNRestarts=3\nActiveState=activating\nSubState=auto-restart\n", upState{false, "0/3", "systemd: activating/auto-restart"}},
		{"ActiveState=failed\nSubState=failed\nMainPID=0\nNRestarts=5\n", upState{false, "0/5", "systemd: failed/failed"}},
		{"ActiveState=inactive\nSubState=dead\nMainPID=0\nNRestarts=0\n", upState{false, "0/0", "systemd: inactive/dead"}},
		{"", upState{false, "/", "systemd: /"}},
	}
	for _, tt := range tests {
		if got := parseSystemdShow(tt.out); got != tt.want {
			t.Errorf("parseSystemdShow(%q) = %+v, want %+v", tt.out, got, tt.want)
		}
	}
}

// seq is a probe that answers states in order, repeating the last one.
func seq(states ...upState) probeFunc {
	i := 0
	return func() (upState, error) {
		st := states[min(i, len(states)-1)]
		i++
		return st, nil
	}
}

func TestWaitUp(t *testing.T) {
	up := func(id string) upState { return upState{Running: true, Instance: id, Detail: "up"} }
	down := upState{Running: false, Instance: "0/1", Detail: "systemd: activating/auto-restart"}
	tests := []struct {
		name  string
		probe probeFunc
		want  bool
	}{
		{"stays up", seq(up("7/0")), true},
		{"exits at once", seq(down), false},
		{"exits after a while", seq(up("7/0"), up("7/0"), down), false},
		{"restarted between polls", seq(up("7/0"), up("9/1")), false},
		{"probe fails", func() (upState, error) { return upState{}, errors.New("no systemctl") }, false},
	}
	for _, tt := range tests {
		var slept time.Duration
		err := waitUp(tt.probe, time.Second, 250*time.Millisecond, func(d time.Duration) { slept += d })
		if got := err == nil; got != tt.want {
			t.Errorf("waitUp(%s) = %v, want up %v", tt.name, err, tt.want)
		}
		if err != nil && !errors.Is(err, ErrNotStaying) {
			t.Errorf("waitUp(%s) = %v, want ErrNotStaying", tt.name, err)
		}
		if slept > time.Second {
			t.Errorf("waitUp(%s) slept %v, want at most the 1s window", tt.name, slept)
		}
	}
}

// fakeService is a service manager that records what it was asked; its
// Platform is the injected detection.
type fakeService struct {
	service.Service
	platform string
	calls    []string
}

func (f *fakeService) Platform() string { return f.platform }
func (f *fakeService) String() string   { return "fake" }
func (f *fakeService) Install() error   { f.calls = append(f.calls, "install"); return nil }
func (f *fakeService) Start() error     { f.calls = append(f.calls, "start"); return nil }
func (f *fakeService) Restart() error   { f.calls = append(f.calls, "restart"); return nil }
func (f *fakeService) Uninstall() error { f.calls = append(f.calls, "uninstall"); return nil }
func (f *fakeService) Stop() error      { f.calls = append(f.calls, "stop"); return nil }

func fakeController(f *fakeService, probe probeFunc) controller {
	return controller{
		newService: func(service.Interface, *service.Config) (service.Service, error) { return f, nil },
		probe:      func(service.Service, string) probeFunc { return probe },
		window:     time.Second, every: 250 * time.Millisecond,
		sleep:      func(time.Duration) {},
		lookupUser: func(name string) (*user.User, error) { return &user.User{Username: name}, nil },
	}
}

// TestInstallRefusedWithoutHardenedUnit: on a host whose service manager is
// SysV (or anything but systemd and Windows), install refuses before
// anything is installed; on systemd with the packaged unit it installs.
func TestInstallRefusedWithoutHardenedUnit(t *testing.T) {
	cfg := Config{Name: "hostcert-agent", Executable: "/usr/bin/hostcert-agent", SystemdUnit: "[Service]\nUser=hostcert\n"}
	for _, platform := range []string{"unix-systemv", "linux-upstart", "linux-openrc", "darwin-launchd"} {
		f := &fakeService{platform: platform}
		out, err := fakeController(f, seq(upState{Running: true})).control(cfg, "install")
		if !errors.Is(err, ErrUnsupportedManager) || len(f.calls) != 0 {
			t.Errorf("install on %s = %q, %v, calls %v; want ErrUnsupportedManager and nothing installed", platform, out, err, f.calls)
		}
	}
	f := &fakeService{platform: PlatformSystemd}
	if out, err := fakeController(f, seq(upState{Running: true})).control(Config{Name: "x", Executable: "/bin/x"}, "install"); !errors.Is(err, ErrUnsupportedManager) || len(f.calls) != 0 {
		t.Errorf("install on systemd without the packaged unit = %q, %v, calls %v; want a refusal", out, err, f.calls)
	}
	f = &fakeService{platform: PlatformSystemd}
	if out, err := fakeController(f, seq(upState{Running: true})).control(cfg, "install"); err != nil || strings.Join(f.calls, ",") != "install" {
		t.Errorf("install on systemd = %q, %v, calls %v; want installed", out, err, f.calls)
	}
	// Removing a service installed earlier stays possible anywhere.
	f = &fakeService{platform: "unix-systemv"}
	if _, err := fakeController(f, seq(upState{Running: true})).control(cfg, "uninstall"); err != nil || strings.Join(f.calls, ",") != "uninstall" {
		t.Errorf("uninstall on sysv = %v, calls %v; want uninstalled", err, f.calls)
	}
}

// TestStartReportsServiceThatDoesNotStayUp: start says done only when the
// service is still running StartCheck later.
func TestStartReportsServiceThatDoesNotStayUp(t *testing.T) {
	cfg := Config{Name: "hostcert-agent", Executable: "/usr/bin/hostcert-agent", SystemdUnit: "[Service]\n"}
	crashed := upState{Running: false, Instance: "0/1", Detail: "systemd: activating/auto-restart"}
	for _, action := range []string{"start", "restart"} {
		f := &fakeService{platform: PlatformSystemd}
		out, err := fakeController(f, seq(crashed)).control(cfg, action)
		if !errors.Is(err, ErrNotStaying) || out != "" {
			t.Fatalf("%s of a program that exits at once = %q, %v; want ErrNotStaying", action, out, err)
		}
		for _, want := range []string{"journalctl -u hostcert-agent", "activating/auto-restart", "hostcert-agent run"} {
			if !strings.Contains(err.Error(), want) {
				t.Errorf("%s error %q does not say %q", action, err, want)
			}
		}
		f = &fakeService{platform: PlatformSystemd}
		out, err = fakeController(f, seq(upState{Running: true, Instance: "7/0"})).control(cfg, action)
		if err != nil || !strings.Contains(out, action+" done") {
			t.Errorf("%s of a program that stays up = %q, %v; want done", action, out, err)
		}
	}
}
