//go:build !windows

package admin

import (
	"net"
	"os"
	"strconv"
)

// serverUID is the uid the server runs as.
func serverUID() uint32 { return uint32(os.Geteuid()) }

// checkPeer admits the connection's peer or refuses it (*PeerRefusedError,
// or an error when the peer cannot be identified), and names the actor of
// the audit rows, "admin:<uid>", either way.
func (s *Server) checkPeer(conn net.Conn) (actor string, err error) {
	uid, err := peerUID(conn)
	if err != nil {
		return "admin:unknown", err
	}
	return "admin:" + strconv.FormatUint(uint64(uid), 10), admitPeer(uid, s.uid)
}
