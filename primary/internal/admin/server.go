package admin

import (
	"bufio"
	"context"
	"crypto/subtle"
	"crypto/x509"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/netip"
	"sync"
	"time"

	"github.com/rs/zerolog"

	"github.com/hostcert/hostcert/common/protocol"
	"github.com/hostcert/hostcert/primary/internal/crl"
	"github.com/hostcert/hostcert/primary/internal/store"
)

// Authority is what the admin commands show of the CA.
type Authority interface {
	Certificate() *x509.Certificate
	Bundle() []*x509.Certificate
	BundlePEM() []byte
	PrimaryHostID() string
	IsPrimaryName(name string) bool
}

// Explainer is the dry run of the deployment decision (package enroll).
type Explainer interface {
	Explain(ctx context.Context, name string, from netip.Addr, nat bool) (protocol.Decision, error)
}

// CRLs is the CRL publisher: regenerate after a revocation, show the current one.
type CRLs interface {
	Trigger()
	Refresh(ctx context.Context) error
	Current() *crl.List
}

// Levels reads and sets the deployment level (the store, or a cache in
// front of it that the API reads too).
type Levels interface {
	Level(ctx context.Context) (protocol.Level, error)
	SetLevel(ctx context.Context, l protocol.Level, a store.Audit) error
}

// Server answers admin requests.
type Server struct {
	rot     Rotator    // nil: no rotation (UseRotator)
	hier    Hierarchy  // nil: ca show lists no hierarchy
	roots   RootSigner // nil: no revoke-issuing, sign-root-crl (UseRootSigner)
	store   Store
	levels  Levels
	ca      Authority
	explain Explainer
	crls    CRLs
	logins  Logins
	issuer  Issuer // nil: admin.add signs nothing (UseIssuer)
	admins  Admins
	log     zerolog.Logger
	now     func() time.Time
	secret  string // Windows transport: every request must carry it
	uid     uint32 // Unix: the server's uid; it and root are the only peers admitted

	wg sync.WaitGroup
}

// NewServer returns an admin server.
func NewServer(st Store, ca Authority, explain Explainer, crls CRLs, log zerolog.Logger) *Server {
	return &Server{store: st, levels: st, admins: st, ca: ca, explain: explain, crls: crls, log: log, now: time.Now, uid: serverUID()}
}

// UseLevels makes level get/set go through l (e.g. the API's level cache, so
// a change applies to the very next request). Call before Serve.
func (s *Server) UseLevels(l Levels) { s.levels = l }

// ActionConnect and CodePermissionDenied name the audit row of an admin
// connection refused because of who made it.
const (
	ActionConnect        = "admin.connect"
	CodePermissionDenied = "permission_denied"
)

// ioTimeout bounds one admin exchange.
const ioTimeout = 30 * time.Second

// Serve answers requests on ln until ctx ends, then closes ln and waits for
// the requests in flight.
func (s *Server) Serve(ctx context.Context, ln net.Listener) error {
	stop := context.AfterFunc(ctx, func() { ln.Close() })
	defer stop()
	defer s.wg.Wait()
	for {
		conn, err := ln.Accept()
		if err != nil {
			if ctx.Err() != nil {
				return nil
			}
			var ne net.Error
			if errors.As(err, &ne) && ne.Timeout() {
				time.Sleep(50 * time.Millisecond)
				continue
			}
			return fmt.Errorf("admin: accept: %w", err)
		}
		s.wg.Add(1)
		go func() {
			defer s.wg.Done()
			s.handle(ctx, conn)
		}()
	}
}

func (s *Server) handle(ctx context.Context, conn net.Conn) {
	defer conn.Close()
	_ = conn.SetDeadline(time.Now().Add(ioTimeout))
	actor, err := s.checkPeer(conn)
	if err != nil {
		s.refusePeer(ctx, conn, actor, err)
		return
	}
	var req Request
	line, err := readLine(bufio.NewReaderSize(conn, 64*1024), "request")
	if tl := (*TooLargeError)(nil); errors.As(err, &tl) {
		s.log.Warn().Int("bytes", tl.Size).Int("max_bytes", tl.Max).Str("actor", actor).Msg("admin request too large, refused")
		s.reply(conn, Response{Error: "admin: " + tl.Error()})
		return
	}
	if err == nil {
		err = json.Unmarshal(line, &req)
	}
	if err != nil {
		s.reply(conn, Response{Error: "admin: malformed request: " + err.Error()})
		return
	}
	if s.secret != "" && subtle.ConstantTimeCompare([]byte(req.Secret), []byte(s.secret)) != 1 {
		s.log.Warn().Str("source", conn.RemoteAddr().String()).Msg("admin request with a wrong secret refused")
		s.reply(conn, Response{Error: "admin: wrong or missing admin secret"})
		return
	}
	data, err := s.Do(ctx, actor, req.Command, req.Args)
	if err != nil {
		s.log.Info().Str("command", req.Command).Str("actor", actor).Err(err).Msg("admin command failed")
		s.reply(conn, Response{Error: oneLine(err.Error())})
		return
	}
	raw, err := json.Marshal(data)
	if err != nil {
		s.reply(conn, Response{Error: "admin: encode result: " + err.Error()})
		return
	}
	// The envelope adds a few bytes; keep well clear of the client's limit.
	if len(raw) > MaxMessage-1024 {
		tl := &TooLargeError{What: "answer", Size: len(raw), Max: MaxMessage}
		s.log.Warn().Str("command", req.Command).Int("bytes", tl.Size).Int("max_bytes", tl.Max).Msg("admin answer too large, refused")
		s.reply(conn, Response{Error: "admin: " + tl.Error() + ": narrow the query"})
		return
	}
	s.log.Info().Str("command", req.Command).Str("actor", actor).Msg("admin command")
	s.reply(conn, Response{OK: true, Data: raw})
}

// refusePeer answers a peer checkPeer refused, logs it at warn and audits
// it. The request is read and discarded (never decoded) so that the client,
// which writes before it reads, gets the answer instead of a broken pipe.
func (s *Server) refusePeer(ctx context.Context, conn net.Conn, actor string, err error) {
	detail := map[string]any{"error": oneLine(err.Error())}
	ev := s.log.Warn().Err(err).Str("actor", actor)
	var pe *PeerRefusedError
	if errors.As(err, &pe) {
		detail["peer_uid"], detail["admitted_uids"] = pe.PeerUID, []uint32{pe.ServerUID, 0}
		ev = ev.Uint32("peer_uid", pe.PeerUID)
	}
	ev.Msg("admin connection refused")
	a := store.Audit{At: s.now(), Actor: actor, Action: ActionConnect, Outcome: "refused",
		Code: CodePermissionDenied, Detail: detail}
	if aerr := s.store.AppendAudit(context.WithoutCancel(ctx), a); aerr != nil {
		s.log.Error().Err(aerr).Msg("writing audit row of a refused admin connection")
	}
	msg := oneLine(err.Error())
	if pe == nil {
		msg = "admin: cannot identify the peer: " + msg
	}
	s.reply(conn, Response{Error: msg})
	if uc, ok := conn.(interface{ CloseWrite() error }); ok {
		_ = uc.CloseWrite()
	}
	_ = conn.SetReadDeadline(time.Now().Add(time.Second))
	_, _ = io.Copy(io.Discard, io.LimitReader(conn, MaxMessage))
}

func (s *Server) reply(conn net.Conn, resp Response) {
	b, err := json.Marshal(resp)
	if err != nil {
		return
	}
	_, _ = conn.Write(append(b, '\n'))
}

// readLine reads one newline-terminated message of at most MaxMessage
// bytes. A longer one is read to its end and dropped (bounded by the
// connection's deadline), so that the peer, still writing, gets the answer
// instead of a broken pipe; the error is a *TooLargeError with its size.
func readLine(r *bufio.Reader, what string) ([]byte, error) {
	var line []byte
	size := 0
	for {
		chunk, err := r.ReadSlice('\n')
		size += len(chunk)
		if size <= MaxMessage {
			line = append(line, chunk...)
		} else {
			line = nil
		}
		switch {
		case errors.Is(err, bufio.ErrBufferFull):
			continue
		case size > MaxMessage && (err == nil || errors.Is(err, io.EOF)):
			return nil, &TooLargeError{What: what, Size: size, Max: MaxMessage}
		case size > MaxMessage:
			return nil, &TooLargeError{What: what, Max: MaxMessage}
		case err == nil:
			return line, nil
		case errors.Is(err, io.EOF) && len(line) > 0:
			return line, nil
		default:
			return nil, err
		}
	}
}

func oneLine(s string) string {
	for i := 0; i < len(s); i++ {
		if s[i] == '\n' || s[i] == '\r' {
			return s[:i]
		}
	}
	return s
}
