package admin

import (
	"errors"
	"fmt"
)

// ErrPeerRefused marks an admin connection from a user the server does not
// admit: only its own uid and root may use the admin socket, whatever the
// socket's file mode says.
var ErrPeerRefused = errors.New("permission denied")

// PeerRefusedError is a refused connection: who came, who is admitted.
type PeerRefusedError struct {
	PeerUID, ServerUID uint32
}

func (e *PeerRefusedError) Error() string {
	if e.ServerUID == 0 {
		return "permission denied: the admin socket admits only root (uid 0)"
	}
	return fmt.Sprintf("permission denied: the admin socket admits only uid %d and root", e.ServerUID)
}

func (e *PeerRefusedError) Unwrap() error { return ErrPeerRefused }

// admitPeer is the decision: the server's own user and root are admitted,
// everyone else is refused.
func admitPeer(peer, server uint32) error {
	if peer == server || peer == 0 {
		return nil
	}
	return &PeerRefusedError{PeerUID: peer, ServerUID: server}
}
