//go:build !windows

package svc

// afterInstall has nothing to add on systemd and other Unix service
// managers: the unit (Config.SystemdUnit) carries the restart policy.
func afterInstall(string) error { return nil }
