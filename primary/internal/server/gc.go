package server

import (
	"os"
	"runtime/debug"
)

// Garbage collector settings of `serve`. An enrollment allocates a few
// hundred small objects (TLS handshake, CSR, certificate, JSON) and keeps
// almost none, so with Go's default GOGC=100 the collector ran every few
// milliseconds under load and cost about a fifth of the primary's CPU per
// enrollment. GOGC=400 lets the heap grow to five times the live data
// before a collection (peak RSS about 48 MiB at 64 concurrent enrollments
// instead of 36 MiB); the soft memory limit makes the collector work harder
// before the Go heap passes 80 MiB, whatever GOGC allows.
const (
	DefaultGCPercent   = 400
	DefaultMemoryLimit = 80 << 20 // bytes
)

// tuneGC applies DefaultGCPercent and DefaultMemoryLimit to the process,
// each only when the operator did not set it with the standard GOGC or
// GOMEMLIMIT environment variable.
func tuneGC() {
	if _, ok := os.LookupEnv("GOGC"); !ok {
		debug.SetGCPercent(DefaultGCPercent)
	}
	if _, ok := os.LookupEnv("GOMEMLIMIT"); !ok {
		debug.SetMemoryLimit(DefaultMemoryLimit)
	}
}
