//go:build linux

// Package e2e runs hostcert the way an operator meets it: the three built
// binaries as separate processes on loopback (and, as root, in network
// namespaces made by scripts/netns.sh), driven through their command lines.
// It also holds the enrollment benchmark against a real primary process.
package e2e
