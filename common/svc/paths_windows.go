//go:build windows

package svc

import (
	"os"
	"path/filepath"
)

const sep = `\`

// programData is %ProgramData% (C:\ProgramData when the variable is unset,
// as for a process started without the usual environment).
func programData() string {
	if d := os.Getenv("ProgramData"); d != "" && filepath.IsAbs(d) {
		return d
	}
	return `C:\ProgramData`
}

func configDir() string { return filepath.Join(programData(), "hostcert") }
func dataDir() string   { return filepath.Join(programData(), "hostcert") }
