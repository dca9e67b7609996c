package admin

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"time"
)

// Client sends admin requests to the server serving a data directory.
type Client struct {
	Dir     string
	Timeout time.Duration // per request; default 30s
}

// ErrNotServing: the admin socket exists but no server answers on it (left
// behind by a server that crashed or was killed).
var ErrNotServing = errors.New("no hostcert-primary is serving this data directory (its admin socket is left over from a server that stopped)")

// CommandError is a command the server refused or failed; its text is the
// server's one-line reason.
type CommandError struct {
	Command string
	Reason  string
}

func (e *CommandError) Error() string { return e.Reason }

// Call sends cmd with args and decodes the result into out (may be nil).
func (c *Client) Call(ctx context.Context, cmd string, args, out any) error {
	timeout := c.Timeout
	if timeout <= 0 {
		timeout = ioTimeout
	}
	conn, secret, err := dial(c.Dir, timeout)
	if err != nil {
		return err
	}
	defer conn.Close()
	deadline := time.Now().Add(timeout)
	if d, ok := ctx.Deadline(); ok && d.Before(deadline) {
		deadline = d
	}
	_ = conn.SetDeadline(deadline)
	stop := context.AfterFunc(ctx, func() { _ = conn.SetDeadline(time.Unix(1, 0)) })
	defer stop()

	req := Request{Command: cmd, Secret: secret}
	if args != nil {
		raw, err := json.Marshal(args)
		if err != nil {
			return fmt.Errorf("encode %s arguments: %w", cmd, err)
		}
		req.Args = raw
	}
	b, err := json.Marshal(req)
	if err != nil {
		return fmt.Errorf("encode %s: %w", cmd, err)
	}
	if len(b)+1 > MaxMessage {
		return fmt.Errorf("%s: %w", cmd, &TooLargeError{What: "request", Size: len(b) + 1, Max: MaxMessage})
	}
	// A write error is not the end: a server that refuses this peer answers
	// before reading, and one that refuses an oversized request answers
	// after it; the answer may still be waiting to be read.
	_, werr := conn.Write(append(b, '\n'))
	var resp Response
	line, err := readLine(bufio.NewReaderSize(conn, 64*1024), "answer")
	if err == nil {
		err = json.Unmarshal(line, &resp)
	}
	if err != nil {
		if ctx.Err() != nil {
			return ctx.Err()
		}
		if werr != nil { // the server hung up without an answer
			return fmt.Errorf("send %s: %w", cmd, werr)
		}
		return fmt.Errorf("read %s answer: %w", cmd, err)
	}
	if !resp.OK {
		return &CommandError{Command: cmd, Reason: resp.Error}
	}
	if out != nil {
		if err := json.Unmarshal(resp.Data, out); err != nil {
			return fmt.Errorf("decode %s answer: %w", cmd, err)
		}
	}
	return nil
}
