//go:build unix

package pgtest

import (
	"os"
	"os/exec"
	"syscall"
)

// credential is the unprivileged user PostgreSQL runs as when the test runs
// as root; nil means "as the current user".
type credential struct{ uid, gid uint32 }

func (c *credential) apply(cmd *exec.Cmd) {
	if c == nil {
		return
	}
	cmd.SysProcAttr = &syscall.SysProcAttr{Credential: &syscall.Credential{Uid: c.uid, Gid: c.gid}}
}

func (c *credential) chown(paths ...string) error {
	if c == nil {
		return nil
	}
	for _, p := range paths {
		if err := os.Chown(p, int(c.uid), int(c.gid)); err != nil {
			return err
		}
	}
	return nil
}

func newCredential(uid, gid uint32) *credential { return &credential{uid: uid, gid: gid} }
