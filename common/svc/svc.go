// Package svc is the one kardianos/service wrapper the agent and the tunnel
// share: it runs a program's Run(ctx) under the service manager (systemd,
// Windows SCM) or in the foreground, and installs/controls the service.
package svc

import (
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"os/signal"
	"os/user"
	"path/filepath"
	"strings"
	"syscall"
	"time"

	"github.com/kardianos/service"
)

// RunFunc is a long-running part: it returns when ctx ends or it fails.
type RunFunc func(ctx context.Context) error

// Config describes one service.
type Config struct {
	Name        string   // service name, e.g. "hostcert-agent"
	DisplayName string   // shown by the Windows service manager
	Description string   // one sentence
	Arguments   []string // what the service manager passes, e.g. ["run", "--config", "/etc/hostcert/agent.yaml"]
	Executable  string   // absolute path; default: this executable
	// SystemdUnit, when set, is the unit file installed on systemd hosts
	// instead of kardianos/service's generated one, e.g.
	// packaging.SystemdUnit("hostcert-agent"). It is a template in
	// kardianos/service v1.3.0's own small language (not text/template):
	// keys have no leading dot ({{Path | cmdEscape}},
	// {{range Arguments}} {{. | cmd}}{{end}}, {{Name}}, {{Description}}, ...).
	SystemdUnit string
	// StopTimeout bounds how long Stop waits for Run to return.
	StopTimeout time.Duration
}

// Actions accepted by Control.
var Actions = []string{"install", "uninstall", "start", "stop", "restart", "status"}

// ErrUnknownAction is returned by Control for an action not in Actions.
var ErrUnknownAction = errors.New("unknown service action")

func (c Config) kardianos() (*service.Config, error) {
	exe := c.Executable
	if exe == "" {
		e, err := os.Executable()
		if err != nil {
			return nil, fmt.Errorf("service %s: find executable: %w", c.Name, err)
		}
		exe = e
	}
	abs, err := filepath.Abs(exe)
	if err != nil {
		return nil, fmt.Errorf("service %s: executable path: %w", c.Name, err)
	}
	opts := service.KeyValue{
		// Windows: automatic start, restart on failure after 5s, reset the
		// failure count after a day.
		"StartType":              "automatic",
		"OnFailure":              "restart",
		"OnFailureDelayDuration": "5s",
		"OnFailureResetPeriod":   86400,
	}
	if c.SystemdUnit != "" {
		opts["SystemdScript"] = c.SystemdUnit
	}
	return &service.Config{
		Name:        c.Name,
		DisplayName: c.DisplayName,
		Description: c.Description,
		Arguments:   c.Arguments,
		Executable:  abs,
		Option:      opts,
	}, nil
}

// Program adapts a RunFunc to kardianos/service's Start/Stop: Start launches
// Run in the background, Stop cancels its context and waits (bounded).
type Program struct {
	run     RunFunc
	timeout time.Duration
	cancel  context.CancelFunc
	done    chan error
}

// NewProgram wraps run.
func NewProgram(run RunFunc, stopTimeout time.Duration) *Program {
	if stopTimeout <= 0 {
		stopTimeout = 20 * time.Second
	}
	return &Program{run: run, timeout: stopTimeout}
}

// Start implements service.Interface; it must not block.
func (p *Program) Start(service.Service) error {
	ctx, cancel := context.WithCancel(context.Background())
	p.cancel = cancel
	p.done = make(chan error, 1)
	go func() { p.done <- p.run(ctx) }()
	return nil
}

// Stop implements service.Interface.
func (p *Program) Stop(service.Service) error {
	if p.cancel == nil {
		return nil
	}
	p.cancel()
	select {
	case err := <-p.done:
		p.done <- err // Wait may still want it
		return err
	case <-time.After(p.timeout):
		return fmt.Errorf("stop: still running after %v", p.timeout)
	}
}

// Wait returns Run's result once it has returned.
func (p *Program) Wait() error {
	err := <-p.done
	p.done <- err
	return err
}

// Run runs fn: under the service manager when started by it, otherwise in the
// foreground until SIGINT/SIGTERM. A failing Run makes the process exit
// non-zero so the service manager restarts it.
func Run(cfg Config, fn RunFunc) error {
	if service.Interactive() {
		ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
		defer stop()
		return fn(ctx)
	}
	kc, err := cfg.kardianos()
	if err != nil {
		return err
	}
	prog := NewProgram(fn, cfg.StopTimeout)
	var runErr error
	wrapped := &failFast{Program: prog, onExit: func(err error) { runErr = err }}
	s, err := service.New(wrapped, kc)
	if err != nil {
		return fmt.Errorf("service %s: %w", cfg.Name, err)
	}
	wrapped.svc = s
	if err := s.Run(); err != nil {
		return fmt.Errorf("service %s: %w", cfg.Name, err)
	}
	return runErr
}

// failFast stops the service loop when Run returns on its own (an error), so
// the process exits and the service manager's restart policy applies.
type failFast struct {
	*Program
	svc    service.Service
	onExit func(error)
}

func (f *failFast) Start(s service.Service) error {
	if err := f.Program.Start(s); err != nil {
		return err
	}
	go func() {
		err := f.Program.Wait()
		if err != nil {
			f.onExit(err)
			os.Exit(1)
		}
	}()
	return nil
}

// Control performs action on the installed service and returns a one-line
// human status for "status". install refuses where hostcert ships no
// hardened service definition (see supported); start and restart report a
// service that does not stay up for StartCheck.
func Control(cfg Config, action string) (string, error) {
	return controller{}.control(cfg, action)
}

// controller holds what Control needs from the system; zero values are the
// real ones. Tests replace them: no test installs a real service.
type controller struct {
	newService func(service.Interface, *service.Config) (service.Service, error)
	// probe observes the service once; nil = systemctl show on systemd,
	// kardianos' Status elsewhere.
	probe         func(s service.Service, name string) probeFunc
	window, every time.Duration
	sleep         func(time.Duration)
	lookupUser    func(string) (*user.User, error)
}

func (c controller) control(cfg Config, action string) (string, error) {
	if c.newService == nil {
		c.newService = service.New
	}
	if c.probe == nil {
		c.probe = systemProbe
	}
	if c.window == 0 {
		c.window, c.every = StartCheck, StartPoll
	}
	if c.sleep == nil {
		c.sleep = time.Sleep
	}
	if c.lookupUser == nil {
		c.lookupUser = user.Lookup
	}
	kc, err := cfg.kardianos()
	if err != nil {
		return "", err
	}
	s, err := c.newService(NewProgram(func(context.Context) error { return nil }, 0), kc)
	if err != nil {
		return "", fmt.Errorf("service %s: %w", cfg.Name, err)
	}
	switch action {
	case "status":
		st, err := s.Status()
		if err != nil {
			return "", fmt.Errorf("service %s status: %w", cfg.Name, err)
		}
		switch st {
		case service.StatusRunning:
			return cfg.Name + ": running", nil
		case service.StatusStopped:
			return cfg.Name + ": stopped", nil
		}
		return cfg.Name + ": unknown", nil
	case "install", "uninstall", "start", "stop", "restart":
		if action == "install" {
			if err := supported(Facts{Platform: s.Platform(), HasUnit: cfg.SystemdUnit != ""}); err != nil {
				return "", fmt.Errorf("service %s install: %w", cfg.Name, err)
			}
			if s.Platform() == PlatformSystemd {
				if err := checkUnitUser(cfg.SystemdUnit, c.lookupUser); err != nil {
					return "", fmt.Errorf("service %s install: %w", cfg.Name, err)
				}
			}
		}
		if err := service.Control(s, action); err != nil {
			return "", fmt.Errorf("service %s %s: %w", cfg.Name, action, err)
		}
		switch action {
		case "install":
			if err := afterInstall(cfg.Name); err != nil {
				return "", fmt.Errorf("service %s install: %w", cfg.Name, err)
			}
		case "start", "restart":
			if err := waitUp(c.probe(s, cfg.Name), c.window, c.every, c.sleep); err != nil {
				return "", fmt.Errorf("service %s %s: %w; %s", cfg.Name, action, err,
					startHint(s.Platform(), cfg.Name, filepath.Base(kc.Executable)))
			}
			return fmt.Sprintf("%s: %s done, running for %v", cfg.Name, action, c.window), nil
		}
		return fmt.Sprintf("%s: %s done", cfg.Name, action), nil
	}
	return "", fmt.Errorf("service %s %q: %w (want one of %v)", cfg.Name, action, ErrUnknownAction, Actions)
}

// systemProbe observes a real service: systemctl show on systemd (whose
// is-active, which kardianos' Status uses, calls a service waiting to be
// restarted "activating", i.e. running), kardianos' Status elsewhere.
func systemProbe(s service.Service, name string) probeFunc {
	if s.Platform() == PlatformSystemd {
		return func() (upState, error) {
			out, err := exec.Command("systemctl", "show", "-p", "ActiveState", "-p", "SubState", "-p", "MainPID", "-p", "NRestarts",
				strings.TrimSuffix(name, ".service")+".service").Output()
			if err != nil {
				return upState{}, fmt.Errorf("systemctl show: %w", err)
			}
			return parseSystemdShow(string(out)), nil
		}
	}
	return func() (upState, error) {
		st, err := s.Status()
		if err != nil {
			return upState{}, err
		}
		detail := map[service.Status]string{service.StatusRunning: "running", service.StatusStopped: "stopped"}[st]
		if detail == "" {
			detail = "unknown"
		}
		return upState{Running: st == service.StatusRunning, Detail: "status: " + detail}, nil
	}
}

// ErrNoServiceUser is returned by Control("install") when the systemd unit
// runs as a user (User=) that does not exist on this host: the unit would
// install but never start. The packages create the user; a manual install
// must create it first.
var ErrNoServiceUser = errors.New("the service user does not exist")

// checkUnitUser checks that the User= of a systemd unit exists.
func checkUnitUser(unit string, lookup func(string) (*user.User, error)) error {
	for _, line := range strings.Split(unit, "\n") {
		name, ok := strings.CutPrefix(strings.TrimSpace(line), "User=")
		if !ok || name == "" || strings.Contains(name, "{{") {
			continue
		}
		if _, err := lookup(name); err != nil {
			return fmt.Errorf("%w: %s (create it: useradd --system --user-group --home-dir /var/lib/hostcert --no-create-home --shell /usr/sbin/nologin %s): %v",
				ErrNoServiceUser, name, name, err)
		}
	}
	return nil
}
