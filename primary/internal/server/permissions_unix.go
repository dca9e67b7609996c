//go:build !windows

package server

// modesMeaningful: Unix file modes say who can read a file.
const modesMeaningful = true
