package svc

import (
	"bufio"
	"errors"
	"fmt"
	"strings"
	"time"
)

// Start verification: after start (and restart), Control watches the
// service for StartCheck, polling every StartPoll, and reports a service
// that stopped or was restarted meanwhile (a program that exits at once).
const (
	StartCheck = 3 * time.Second
	StartPoll  = 250 * time.Millisecond
)

// ErrNotStaying is returned by Control("start") when the service did not
// stay up.
var ErrNotStaying = errors.New("the service did not stay up")

// upState is one observation of a service.
type upState struct {
	Running bool
	// Instance identifies the running process (systemd: MainPID and
	// NRestarts); a change means the service manager restarted it.
	Instance string
	// Detail is what the service manager says, for the error.
	Detail string
}

// probeFunc observes the service once.
type probeFunc func() (upState, error)

// waitUp polls probe every interval for window and fails as soon as the
// service is not running or was restarted. sleep is time.Sleep outside tests.
func waitUp(probe probeFunc, window, interval time.Duration, sleep func(time.Duration)) error {
	var first string
	for elapsed := time.Duration(0); ; elapsed += interval {
		st, err := probe()
		if err != nil {
			return fmt.Errorf("%w: %v", ErrNotStaying, err)
		}
		if !st.Running {
			return fmt.Errorf("%w: it stopped within %v of start (%s)", ErrNotStaying, elapsed, st.Detail)
		}
		if elapsed == 0 {
			first = st.Instance
		} else if st.Instance != first {
			return fmt.Errorf("%w: it was restarted within %v of start (%s)", ErrNotStaying, elapsed, st.Detail)
		}
		if elapsed >= window {
			return nil
		}
		sleep(interval)
	}
}

// parseSystemdShow reads `systemctl show -p ActiveState -p SubState -p
// MainPID -p NRestarts UNIT`: running means active/running; the instance is
// the main PID and the restart count.
func parseSystemdShow(out string) upState {
	kv := make(map[string]string)
	sc := bufio.NewScanner(strings.NewReader(out))
	for sc.Scan() {
		if k, v, ok := strings.Cut(strings.TrimSpace(sc.Text()), "="); ok {
			kv[k] = v
		}
	}
	return upState{
		Running:  kv["ActiveState"] == "active" && kv["SubState"] == "running",
		Instance: kv["MainPID"] + "/" + kv["NRestarts"],
		Detail:   "systemd: " + kv["ActiveState"] + "/" + kv["SubState"],
	}
}

// startHint says where to look when a service does not stay up.
func startHint(platform, name, program string) string {
	run := "run `" + program + " run` with the same arguments in a terminal to see the error"
	if platform == PlatformSystemd {
		return "see `journalctl -u " + name + " -n 50 --no-pager`, or " + run
	}
	return run
}
