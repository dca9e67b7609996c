package connect

import (
	"errors"
	"io"
	"net"
	"os"
	"sync"
	"sync/atomic"
	"syscall"
	"time"
)

const (
	// smallBuf is what each direction of an idle tunnel holds while it
	// waits for bytes; a read that fills it switches to a pooled bigBuf.
	smallBuf = 2 << 10
	bigBuf   = 32 << 10
)

var bufPool = sync.Pool{New: func() any { b := make([]byte, bigBuf); return &b }}

// Tunnel outcomes, as logged in the access log.
const (
	outcomeClosed   = "closed"
	outcomeIdle     = "idle_timeout"
	outcomeShutdown = "shutdown"
	outcomeReset    = "reset" // a peer reset the connection (curl does at exit)
	outcomeError    = "error"
)

// tunnel is one established client<->upstream relay.
type tunnel struct {
	client, upstream net.Conn
	start            time.Time
	idle             time.Duration
	last             atomic.Int64 // nanoseconds after start of the last byte read either way
	up, down         atomic.Int64 // bytes client->upstream, upstream->client

	once    sync.Once
	outcome string
	err     error
}

func (t *tunnel) touch() { t.last.Store(int64(time.Since(t.start))) }

// finish records how the tunnel ended (the first call wins) and closes both sides.
func (t *tunnel) finish(outcome string, err error) {
	t.once.Do(func() {
		t.outcome, t.err = outcome, err
		_ = t.client.Close()
		_ = t.upstream.Close()
	})
}

// watchIdle closes the tunnel once no byte has moved either way for t.idle.
// One timer per tunnel, no per-read deadline: a blocked write towards a peer
// that stopped reading is caught as well.
func (t *tunnel) watchIdle() *time.Timer {
	var tm *time.Timer
	tm = time.AfterFunc(t.idle, func() {
		quiet := time.Since(t.start) - time.Duration(t.last.Load())
		if quiet >= t.idle {
			t.finish(outcomeIdle, nil)
			return
		}
		tm.Reset(t.idle - quiet)
	})
	return tm
}

// relay copies both ways until both sides are done, the tunnel idles out, or
// it is closed from outside.
func (t *tunnel) relay() {
	t.touch()
	tm := t.watchIdle()
	defer tm.Stop()
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		t.pipe(t.upstream, t.client, &t.up)
	}()
	t.pipe(t.client, t.upstream, &t.down)
	wg.Wait()
	t.finish(outcomeClosed, nil)
}

// pipe copies src to dst; at EOF it half-closes dst so the other direction
// can finish, on an error it ends the whole tunnel.
func (t *tunnel) pipe(dst, src net.Conn, n *atomic.Int64) {
	err := t.copy(dst, src, n)
	if err == nil {
		if cw, ok := dst.(interface{ CloseWrite() error }); ok && cw.CloseWrite() == nil {
			return
		}
		t.finish(outcomeClosed, nil)
		return
	}
	if errors.Is(err, net.ErrClosed) {
		t.finish(outcomeClosed, nil) // closed by the other direction, the idle watch or shutdown
		return
	}
	if errors.Is(err, syscall.ECONNRESET) || errors.Is(err, syscall.EPIPE) {
		t.finish(outcomeReset, err)
		return
	}
	t.finish(outcomeError, err)
}

// copy moves src to dst until EOF (nil) or an error. Waiting for bytes it
// holds only a small buffer; when a read fills it, a burst has begun and the
// copy goes through the kernel (splice, on Linux) or a pooled big buffer
// until the burst ends.
func (t *tunnel) copy(dst, src net.Conn, count *atomic.Int64) error {
	small := make([]byte, smallBuf)
	buf := small
	var big *[]byte
	defer func() {
		if big != nil {
			bufPool.Put(big)
		}
	}()
	dstTCP, srcTCP := tcpConn(dst), tcpConn(src)
	for {
		n, err := src.Read(buf)
		if n > 0 {
			t.touch()
			w, werr := dst.Write(buf[:n])
			count.Add(int64(w))
			if werr != nil {
				return werr
			}
		}
		if err == io.EOF {
			return nil
		}
		if err != nil {
			return err
		}
		switch {
		case n == len(buf) && spliceBursts && dstTCP != nil && srcTCP != nil:
			if err := t.splice(dstTCP, srcTCP, count); err != nil {
				if err == io.EOF {
					return nil
				}
				return err
			}
		case n == len(buf) && big == nil:
			big = bufPool.Get().(*[]byte)
			buf = *big
		case n < len(buf) && big != nil:
			bufPool.Put(big)
			big, buf = nil, small
		}
	}
}

const (
	// burstChunk is how much one splice call may move before the idle
	// clock is touched again.
	burstChunk = 1 << 20
	// burstPause ends a burst: a source quiet this long goes back to
	// waiting with the small buffer (and no kernel pipe held).
	burstPause = 20 * time.Millisecond
)

// splice moves a burst from src to dst with the kernel's splice(2) (what
// (*net.TCPConn).ReadFrom does for a TCP source) until src pauses for
// burstPause (nil), reaches EOF (io.EOF) or fails.
func (t *tunnel) splice(dst, src *net.TCPConn, count *atomic.Int64) error {
	defer src.SetReadDeadline(time.Time{})
	for {
		_ = src.SetReadDeadline(time.Now().Add(burstPause))
		n, err := dst.ReadFrom(&io.LimitedReader{R: src, N: burstChunk})
		if n > 0 {
			t.touch()
			count.Add(n)
		}
		switch {
		case errors.Is(err, os.ErrDeadlineExceeded):
			return nil
		case err != nil:
			return err
		case n < burstChunk:
			return io.EOF
		}
	}
}

// tcpConn is the TCP connection under c, or nil.
func tcpConn(c net.Conn) *net.TCPConn {
	if cc, ok := c.(*clientConn); ok {
		c = cc.Conn
	}
	tc, _ := c.(*net.TCPConn)
	return tc
}
