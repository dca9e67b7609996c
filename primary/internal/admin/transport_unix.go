//go:build !windows

package admin

import (
	"errors"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"syscall"
	"time"
)

// Listen opens the admin socket DIR/admin.sock, owner-only (0600). A stale
// socket left by a killed server is replaced; a live one is an error.
func (s *Server) Listen(dir string) (net.Listener, error) {
	path := filepath.Join(dir, SocketName)
	if _, err := os.Lstat(path); err == nil {
		if c, err := net.DialTimeout("unix", path, time.Second); err == nil {
			c.Close()
			return nil, fmt.Errorf("admin: %s is in use: is another hostcert-primary serving this data directory?", path)
		}
		if err := os.Remove(path); err != nil {
			return nil, fmt.Errorf("admin: remove stale socket: %w", err)
		}
	}
	ln, err := net.Listen("unix", path)
	if err != nil {
		return nil, fmt.Errorf("admin: listen: %w", err)
	}
	// The data directory is owner-only too, so nobody else could reach the
	// socket between its creation and this chmod.
	if err := os.Chmod(path, 0o600); err != nil {
		ln.Close()
		return nil, fmt.Errorf("admin: chmod socket: %w", err)
	}
	ln.(*net.UnixListener).SetUnlinkOnClose(true)
	return ln, nil
}

// dial connects to the admin socket of the server using dir.
func dial(dir string, timeout time.Duration) (net.Conn, string, error) {
	path := filepath.Join(dir, SocketName)
	c, err := net.DialTimeout("unix", path, timeout)
	if err != nil {
		if errors.Is(err, os.ErrNotExist) {
			return nil, "", fmt.Errorf("no admin socket at %s: is hostcert-primary serving with --data %s?", path, dir)
		}
		if errors.Is(err, os.ErrPermission) {
			return nil, "", fmt.Errorf("permission denied on %s: run as the server's user", path)
		}
		if errors.Is(err, syscall.ECONNREFUSED) {
			// A socket file nobody listens on: the server crashed or was
			// killed. The next serve replaces it.
			return nil, "", fmt.Errorf("%s: %w: start it with hostcert-primary serve --data %s (or systemctl start hostcert-primary)", path, ErrNotServing, dir)
		}
		return nil, "", fmt.Errorf("connect to %s: %w", path, err)
	}
	return c, "", nil
}
