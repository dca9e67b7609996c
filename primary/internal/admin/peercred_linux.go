package admin

import (
	"errors"
	"fmt"
	"net"
	"strconv"

	"golang.org/x/sys/unix"
)

// peerActor names the admin on the other end of the socket by the uid the
// kernel reports for it (SO_PEERCRED).
func peerActor(conn net.Conn) (string, error) {
	uc, ok := conn.(*net.UnixConn)
	if !ok {
		return "", errors.New("not a unix socket")
	}
	raw, err := uc.SyscallConn()
	if err != nil {
		return "", fmt.Errorf("peer credentials: %w", err)
	}
	var (
		cred *unix.Ucred
		cerr error
	)
	if err := raw.Control(func(fd uintptr) {
		cred, cerr = unix.GetsockoptUcred(int(fd), unix.SOL_SOCKET, unix.SO_PEERCRED)
	}); err != nil {
		return "", fmt.Errorf("peer credentials: %w", err)
	}
	if cerr != nil {
		return "", fmt.Errorf("peer credentials: %w", cerr)
	}
	return "admin:" + strconv.FormatUint(uint64(cred.Uid), 10), nil
}
