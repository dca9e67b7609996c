package svc

// Default locations of a hostcert program's files, the same the packages
// and the Windows installer use (docs/packaging.md):
//
//	             Linux                          Windows
//	config       /etc/hostcert/PROGRAM.yaml     %ProgramData%\hostcert\PROGRAM.yaml
//	data         /var/lib/hostcert/PROGRAM      %ProgramData%\hostcert\PROGRAM
//
// PROGRAM is "agent", "tunnel" or "primary".

// DefaultConfigPath is where PROGRAM's config file lives by default.
func DefaultConfigPath(program string) string {
	return configDir() + sep + program + ".yaml"
}

// DefaultDataDir is PROGRAM's data directory by default.
func DefaultDataDir(program string) string {
	return dataDir() + sep + program
}
