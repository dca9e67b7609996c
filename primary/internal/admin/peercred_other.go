//go:build !linux && !darwin && !freebsd && !windows

package admin

import (
	"fmt"
	"net"
	"runtime"
)

// peerUID: where the platform gives no peer credentials the server cannot
// tell who connected, so it admits nobody (fail closed).
func peerUID(net.Conn) (uint32, error) {
	return 0, fmt.Errorf("peer credentials are not supported on %s: the admin socket admits nobody", runtime.GOOS)
}
