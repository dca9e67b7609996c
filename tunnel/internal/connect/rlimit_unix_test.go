//go:build unix

package connect

import (
	"syscall"
	"testing"
)

// raiseNoFile lifts the open-file limit to at least n when the hard limit allows.
func raiseNoFile(t testing.TB, n uint64) {
	var rl syscall.Rlimit
	if err := syscall.Getrlimit(syscall.RLIMIT_NOFILE, &rl); err != nil {
		t.Fatalf("getrlimit: %v", err)
	}
	if rl.Cur >= n {
		return
	}
	rl.Cur = min(n, rl.Max)
	if err := syscall.Setrlimit(syscall.RLIMIT_NOFILE, &rl); err != nil {
		t.Logf("setrlimit: %v", err)
	}
}
