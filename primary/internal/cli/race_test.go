//go:build race

package cli

// raceEnabled: the race detector slows the pure-Go SQLite some thirty times,
// so the scale tests use fewer, larger rows (still far past one admin
// message) under -race.
const raceEnabled = true
