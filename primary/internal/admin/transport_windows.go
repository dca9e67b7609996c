//go:build windows

package admin

import (
	"bufio"
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"net"
	"os"
	"os/user"
	"path/filepath"
	"strings"
	"time"

	"github.com/hostcert/hostcert/common/atomicfile"
)

// Listen opens the admin channel on Windows: a loopback TCP port; its address
// and a random secret go owner-only into DIR/admin.token. Only someone who can
// read that file (the server's user, and administrators) can send commands.
func (s *Server) Listen(dir string) (net.Listener, error) {
	var raw [32]byte
	if _, err := rand.Read(raw[:]); err != nil {
		return nil, fmt.Errorf("admin: secret: %w", err)
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return nil, fmt.Errorf("admin: listen: %w", err)
	}
	s.secret = hex.EncodeToString(raw[:])
	path := filepath.Join(dir, TokenName)
	if err := atomicfile.WritePrivate(path, []byte(ln.Addr().String()+"\n"+s.secret+"\n")); err != nil {
		ln.Close()
		return nil, fmt.Errorf("admin: write %s: %w", path, err)
	}
	return &removeOnClose{Listener: ln, path: path}, nil
}

type removeOnClose struct {
	net.Listener
	path string
}

func (l *removeOnClose) Close() error {
	os.Remove(l.path)
	return l.Listener.Close()
}

func dial(dir string, timeout time.Duration) (net.Conn, string, error) {
	path := filepath.Join(dir, TokenName)
	f, err := os.Open(path)
	if err != nil {
		return nil, "", fmt.Errorf("no admin channel (%s): is hostcert-primary serving with --data %s, and are you its user? %w", path, dir, err)
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	var lines []string
	for sc.Scan() {
		lines = append(lines, strings.TrimSpace(sc.Text()))
	}
	if len(lines) < 2 {
		return nil, "", fmt.Errorf("%s: malformed", path)
	}
	c, err := net.DialTimeout("tcp", lines[0], timeout)
	if err != nil {
		// admin.token outlives a server that crashed or was killed.
		return nil, "", fmt.Errorf("connect to the admin port %s (%w: start it with hostcert-primary serve --data %s): %w", lines[0], ErrNotServing, dir, err)
	}
	return c, lines[1], nil
}

// serverUID has no meaning on Windows: the admin channel is a loopback TCP
// port whose peer the server cannot attribute to a user (untested: the
// test suite does not run on Windows).
func serverUID() uint32 { return 0 }

// checkPeer admits every connection to the loopback port: the secret that
// handle checks next proves the peer could read the owner-only admin.token
// file (readable by SYSTEM, Administrators and the server's user only).
func (s *Server) checkPeer(net.Conn) (string, error) {
	if u, err := user.Current(); err == nil {
		return "admin:" + u.Username, nil
	}
	return "admin:unknown", nil
}
