//go:build linux

package admin

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/rs/zerolog"

	"github.com/hostcert/hostcert/primary/internal/store"
)

func TestAdmitPeer(t *testing.T) {
	tests := []struct {
		peer, server uint32
		want         bool
	}{
		{1000, 1000, true},
		{0, 1000, true},
		{0, 0, true},
		{1001, 1000, false},
		{65534, 0, false},
		{65534, 999, false},
		{999, 65534, false},
	}
	for _, tt := range tests {
		err := admitPeer(tt.peer, tt.server)
		if got := err == nil; got != tt.want {
			t.Errorf("admitPeer(%d, %d) = %v, want admitted %v", tt.peer, tt.server, err, tt.want)
		}
		var pe *PeerRefusedError
		if err != nil && (!errors.Is(err, ErrPeerRefused) || !errors.As(err, &pe) || pe.PeerUID != tt.peer) {
			t.Errorf("admitPeer(%d, %d) = %v, want a *PeerRefusedError for uid %d", tt.peer, tt.server, err, tt.peer)
		}
	}
	if got, want := (&PeerRefusedError{PeerUID: 5, ServerUID: 998}).Error(), "permission denied: the admin socket admits only uid 998 and root"; got != want {
		t.Errorf("PeerRefusedError.Error() = %q, want %q", got, want)
	}
}

// peerEnv is a store and an admin server on a socket in a fresh directory.
type peerEnv struct {
	dir   string
	store *store.Store
	srv   *Server
	log   *syncBuffer
}

func startPeerEnv(t *testing.T, configure func(*Server)) *peerEnv {
	t.Helper()
	dir, err := os.MkdirTemp("", "hca") // short: socket paths are limited
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(dir) })
	st, err := store.Open(context.Background(), filepath.Join(dir, "primary.db"))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { st.Close() })
	buf := &syncBuffer{}
	s := NewServer(st, nil, nil, nil, zerolog.New(buf))
	if configure != nil {
		configure(s)
	}
	ln, err := s.Listen(dir)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- s.Serve(ctx, ln) }()
	t.Cleanup(func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("Serve = %v", err)
		}
	})
	return &peerEnv{dir: dir, store: st, srv: s, log: buf}
}

// checkRefusal: no token was created, one refused connection by uid is
// audited, and logged at warn.
func (e *peerEnv) checkRefusal(t *testing.T, uid uint32) {
	t.Helper()
	toks, err := e.store.ListTokens(context.Background())
	if err != nil || len(toks) != 0 {
		t.Errorf("tokens after a refused peer = %+v, %v; want none", toks, err)
	}
	rows, err := e.store.ListAudit(context.Background(), time.Time{}, 10)
	if err != nil {
		t.Fatal(err)
	}
	var found bool
	for _, r := range rows {
		if r.Action == ActionConnect && r.Outcome == "refused" && r.Code == CodePermissionDenied && r.Actor == fmt.Sprintf("admin:%d", uid) {
			found = true
		}
	}
	if !found {
		t.Errorf("audit = %+v, want a refused %s row by admin:%d", rows, ActionConnect, uid)
	}
	logs := e.log.String()
	if !strings.Contains(logs, `"level":"warn"`) || !strings.Contains(logs, "admin connection refused") || !strings.Contains(logs, fmt.Sprintf(`"peer_uid":%d`, uid)) {
		t.Errorf("server log = %s, want a warn line \"admin connection refused\" with peer_uid %d", logs, uid)
	}
}

// TestPeerRefusedWhenNotServerUser: a server whose uid is not the caller's
// refuses the caller even through a socket anyone may open (0666), with the
// promised error on the client side. As root every peer is admitted, so the
// cross-uid case is TestOtherUIDRefused's.
func TestPeerRefusedWhenNotServerUser(t *testing.T) {
	me := uint32(os.Geteuid())
	if me == 0 {
		t.Skip("SKIP: running as root, which the server always admits; TestOtherUIDRefused covers this with a second uid")
	}
	e := startPeerEnv(t, func(s *Server) { s.uid = me + 1 })
	if err := os.Chmod(filepath.Join(e.dir, SocketName), 0o666); err != nil {
		t.Fatal(err)
	}
	c := Client{Dir: e.dir, Timeout: 5 * time.Second}
	err := c.Call(context.Background(), CmdTokenCreate, TokenArgs{Name: "stolen"}, nil)
	want := fmt.Sprintf("permission denied: the admin socket admits only uid %d and root", me+1)
	if err == nil || err.Error() != want {
		t.Fatalf("Call(token.create) = %v, want %q", err, want)
	}
	e.checkRefusal(t, me)
}

// peerHelperEnv makes the test binary act as the other user's client.
const peerHelperEnv = "HOSTCERT_ADMIN_PEER_DIR"

// TestOtherUIDRefused runs a real second process as uid 65534 (nobody)
// against a server whose socket was loosened to 0666 and whose directory
// anyone may enter: the server refuses it by the uid the kernel reports,
// tells it why, audits and logs it; root is still admitted.
func TestOtherUIDRefused(t *testing.T) {
	if dir := os.Getenv(peerHelperEnv); dir != "" {
		peerHelper(dir)
		return
	}
	if os.Geteuid() != 0 {
		t.Skip("SKIP: not root: cannot run a second process as another uid (CI runs this as root)")
	}
	const nobody = 65534
	e := startPeerEnv(t, nil)
	// The attack: the data directory and the socket opened to everyone.
	if err := os.Chmod(e.dir, 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.Chmod(filepath.Join(e.dir, SocketName), 0o666); err != nil {
		t.Fatal(err)
	}
	// A copy of the test binary that uid 65534 may execute.
	binDir, err := os.MkdirTemp("", "hcb")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(binDir) })
	if err := os.Chmod(binDir, 0o755); err != nil {
		t.Fatal(err)
	}
	bin := filepath.Join(binDir, "admin.test")
	copyExecutable(t, bin)

	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	cmd := exec.CommandContext(ctx, bin, "-test.run=^TestOtherUIDRefused$")
	cmd.Dir = binDir
	cmd.Env = []string{peerHelperEnv + "=" + e.dir, "PATH=/usr/bin:/bin"}
	cmd.SysProcAttr = &syscall.SysProcAttr{Credential: &syscall.Credential{Uid: nobody, Gid: nobody}}
	out, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("helper as uid %d: %v\n%s", nobody, err, out)
	}
	want := "refused: permission denied: the admin socket admits only root (uid 0)"
	if !strings.Contains(string(out), want) {
		t.Fatalf("helper as uid %d said %q, want %q", nobody, out, want)
	}
	e.checkRefusal(t, nobody)

	// Root (this process) still gets in.
	c := Client{Dir: e.dir, Timeout: 5 * time.Second}
	if err := c.Call(context.Background(), CmdTokenList, nil, nil); err != nil {
		t.Errorf("root's token.list = %v, want nil", err)
	}
}

// peerHelper is the other user's side: try to create a token, print the outcome.
func peerHelper(dir string) {
	if os.Geteuid() == 0 {
		fmt.Println("helper still runs as root")
		os.Exit(2)
	}
	c := Client{Dir: dir, Timeout: 5 * time.Second}
	var out CreatedToken
	if err := c.Call(context.Background(), CmdTokenCreate, TokenArgs{Name: "stolen"}, &out); err != nil {
		fmt.Printf("refused: %v\n", err)
		os.Exit(0)
	}
	fmt.Println("admitted: created a token")
	os.Exit(0)
}

func copyExecutable(t *testing.T, dst string) {
	t.Helper()
	self, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	in, err := os.Open(self)
	if err != nil {
		t.Fatal(err)
	}
	defer in.Close()
	out, err := os.OpenFile(dst, os.O_CREATE|os.O_WRONLY|os.O_EXCL, 0o755)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := io.Copy(out, in); err != nil {
		t.Fatal(err)
	}
	if err := out.Close(); err != nil {
		t.Fatal(err)
	}
}
