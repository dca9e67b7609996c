// Package version carries the version and commit stamped into every binary
// at build time (see the Makefile's LDFLAGS).
package version

import "fmt"

// Set with -ldflags "-X github.com/hostcert/hostcert/common/version.Version=... -X ...Commit=...".
var (
	Version = "dev"
	Commit  = "unknown"
)

// String is what --version prints: "hostcert-agent 1.2.3 (commit abc1234)".
func String(program string) string {
	return fmt.Sprintf("%s %s (commit %s)", program, Version, Commit)
}
