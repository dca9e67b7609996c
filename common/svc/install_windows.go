//go:build windows

package svc

import (
	"fmt"
	"time"

	"golang.org/x/sys/windows/svc/mgr"
)

// recoveryActions restart the service after every failure: 5s after the
// first and second, 30s after the third and later ones (the SCM repeats the
// last action); the failure count resets after a day without failures.
// kardianos/service v1.3.0's OnFailure option sets a single action, and only
// for crashes; this sets three and also counts a stop with a non-zero exit
// code (SetRecoveryActionsOnNonCrashFailures) as a failure.
var recoveryActions = []mgr.RecoveryAction{
	{Type: mgr.ServiceRestart, Delay: 5 * time.Second},
	{Type: mgr.ServiceRestart, Delay: 5 * time.Second},
	{Type: mgr.ServiceRestart, Delay: 30 * time.Second},
}

const recoveryResetPeriod = 24 * 60 * 60 // seconds

func afterInstall(name string) error {
	m, err := mgr.Connect()
	if err != nil {
		return fmt.Errorf("connect to the service manager: %w", err)
	}
	defer m.Disconnect()
	s, err := m.OpenService(name)
	if err != nil {
		return fmt.Errorf("open service: %w", err)
	}
	defer s.Close()
	if err := s.SetRecoveryActions(recoveryActions, recoveryResetPeriod); err != nil {
		return fmt.Errorf("set recovery actions: %w", err)
	}
	if err := s.SetRecoveryActionsOnNonCrashFailures(true); err != nil {
		return fmt.Errorf("set recovery on non-crash failures: %w", err)
	}
	return nil
}
