//go:build windows

package svc

import "testing"

func TestDefaultPathsWindows(t *testing.T) {
	t.Setenv("ProgramData", `D:\PD`)
	if got, want := DefaultDataDir("agent"), `D:\PD\hostcert\agent`; got != want {
		t.Errorf("DefaultDataDir(agent) = %q, want %q", got, want)
	}
	if got, want := DefaultConfigPath("agent"), `D:\PD\hostcert\agent.yaml`; got != want {
		t.Errorf("DefaultConfigPath(agent) = %q, want %q", got, want)
	}
	t.Setenv("ProgramData", "")
	if got, want := DefaultDataDir("tunnel"), `C:\ProgramData\hostcert\tunnel`; got != want {
		t.Errorf("DefaultDataDir(tunnel) with no ProgramData = %q, want %q", got, want)
	}
}
