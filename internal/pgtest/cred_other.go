//go:build !unix

package pgtest

import "os/exec"

// credential: outside Unix the cluster runs as the current user.
type credential struct{}

func newCredential(uint32, uint32) *credential { return nil }

func (*credential) apply(*exec.Cmd)       {}
func (*credential) chown(...string) error { return nil }
