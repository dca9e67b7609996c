package svc

import (
	"errors"
	"fmt"
)

// Platforms of kardianos/service (service.Service.Platform) that hostcert
// installs on: the two for which it ships a hardened service definition.
const (
	PlatformSystemd = "linux-systemd"   // the packaged unit: own user, sandboxed, UMask=0077
	PlatformWindows = "windows-service" // the SCM, with restart-on-failure recovery
)

// ErrUnsupportedManager is returned by Control("install") where hostcert has
// no hardened service definition: kardianos/service would otherwise
// install a generic script (SysV, upstart, OpenRC, launchd, ...) that runs
// the program as root, without the unit's user, sandbox or umask.
var ErrUnsupportedManager = errors.New("no hardened service definition for this service manager")

// Facts are what decides whether `service install` may install here.
type Facts struct {
	// Platform is kardianos/service's name of the service manager it
	// detected: "linux-systemd", "unix-systemv", "windows-service", ...
	Platform string
	// HasUnit: Config.SystemdUnit holds the packaged (hardened) unit.
	HasUnit bool
}

// supported is the decision: install only where what gets installed is as
// strong as what the packages install.
func supported(f Facts) error {
	switch f.Platform {
	case PlatformSystemd:
		if f.HasUnit {
			return nil
		}
		return fmt.Errorf("%w: no packaged systemd unit for this program; kardianos/service's generic unit would run it as root", ErrUnsupportedManager)
	case PlatformWindows:
		return nil
	}
	return fmt.Errorf("%w: this host's service manager is %q, and hostcert ships hardened services only for systemd (Linux) and the Windows service manager; "+
		"install the .deb/.rpm on a systemd host, or run the program's `run` command under your own supervisor as the unprivileged hostcert user with UMask 0077 (docs/packaging.md)",
		ErrUnsupportedManager, f.Platform)
}
