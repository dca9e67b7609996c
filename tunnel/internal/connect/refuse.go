package connect

import (
	"bytes"
	"io"
	"net"
	"net/http"
	"strconv"
	"time"
)

// refusal is one way the tunnel says no: an HTTP status, a stable code (sent
// in the X-Hostcert-Tunnel-Refusal header and logged) and a human sentence.
type refusal struct {
	status int
	code   string
	msg    string
}

// Every refusal the tunnel can answer with (docs/tunnel.md lists them).
var (
	refuseMalformed   = refusal{http.StatusBadRequest, "malformed_request", "CONNECT needs a host:port target"}
	refuseNotAllowed  = refusal{http.StatusForbidden, "target_not_allowed", "this tunnel only connects to its configured primary addresses"}
	refuseMethod      = refusal{http.StatusMethodNotAllowed, "method_not_allowed", "this tunnel only answers CONNECT"}
	refuseTimeout     = refusal{http.StatusRequestTimeout, "handshake_timeout", "no complete CONNECT request in time"}
	refuseRate        = refusal{http.StatusTooManyRequests, "rate_limited", "too many new connections from your address; slow down"}
	refuseSourceConns = refusal{http.StatusTooManyRequests, "too_many_connections_from_source", "too many open connections from your address"}
	refuseBusy        = refusal{http.StatusServiceUnavailable, "too_many_connections", "the tunnel has too many open connections; try again later"}
	refuseTunnels     = refusal{http.StatusServiceUnavailable, "too_many_tunnels", "the tunnel has too many open tunnels; try again later"}
	refuseShutdown    = refusal{http.StatusServiceUnavailable, "shutting_down", "the tunnel is shutting down"}
	refuseDial        = refusal{http.StatusBadGateway, "upstream_unreachable", "the primary could not be reached from the tunnel"}
	refuseDialTimeout = refusal{http.StatusGatewayTimeout, "upstream_timeout", "the primary did not answer the tunnel in time"}
)

// RefusalHeader names the header carrying a refusal's stable code.
const RefusalHeader = "X-Hostcert-Tunnel-Refusal"

// response is the complete HTTP/1.1 answer for r; the connection closes after it.
func (r *refusal) response() *http.Response {
	body := "hostcert-tunnel: " + r.msg + "\n"
	h := http.Header{}
	h.Set("Content-Type", "text/plain; charset=utf-8")
	h.Set("Content-Length", strconv.Itoa(len(body)))
	h.Set("Connection", "close")
	h.Set(RefusalHeader, r.code)
	if r.status == http.StatusMethodNotAllowed {
		h.Set("Allow", http.MethodConnect)
	}
	if r.status == http.StatusTooManyRequests || r.status == http.StatusServiceUnavailable {
		h.Set("Retry-After", "1")
	}
	return &http.Response{
		Status:        strconv.Itoa(r.status) + " " + http.StatusText(r.status),
		StatusCode:    r.status,
		Proto:         "HTTP/1.1",
		ProtoMajor:    1,
		ProtoMinor:    1,
		Header:        h,
		Body:          io.NopCloser(bytes.NewReader([]byte(body))),
		ContentLength: int64(len(body)),
		Close:         true,
	}
}

// writeTo sends the answer on a raw connection, bounded in time.
func (r *refusal) writeTo(c net.Conn) error {
	_ = c.SetWriteDeadline(time.Now().Add(time.Second))
	return r.response().Write(c)
}

// lingerClose sends r on a connection whose request was never read, then
// closes it gently: a FIN after the answer, and whatever the client had sent
// drained briefly, so the kernel does not reset the connection before the
// client reads the answer.
func lingerClose(c net.Conn, r *refusal) {
	defer c.Close()
	if err := r.writeTo(c); err != nil {
		return
	}
	if cw, ok := c.(interface{ CloseWrite() error }); ok {
		_ = cw.CloseWrite()
	}
	_ = c.SetReadDeadline(time.Now().Add(250 * time.Millisecond))
	_, _ = io.CopyN(io.Discard, c, 16<<10)
}
