// Package config loads and validates hostcert-tunnel's configuration: the
// listen address, the allow list of primary addresses with their upstreams,
// and the limits that keep the tunnel from being abused. The PROXY protocol
// header is always sent; the old proxy_protocol key is accepted only as true.
package config

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"slices"
	"strconv"
	"strings"
	"time"

	"gopkg.in/yaml.v3"

	"github.com/hostcert/hostcert/common/addrlist"
	"github.com/hostcert/hostcert/common/hostname"
	"github.com/hostcert/hostcert/common/metrics"
	"github.com/hostcert/hostcert/common/protocol"
)

// Defaults, filled in by (*File).applyDefaults and documented in docs/tunnel.md.
const (
	DefaultHandshakeTimeout        = 10 * time.Second
	DefaultIdleTimeout             = 5 * time.Minute
	DefaultDialTimeout             = 10 * time.Second
	DefaultShutdownTimeout         = 30 * time.Second
	DefaultMaxTunnels              = 1024
	DefaultMaxConnections          = 2048 // or 2 x max_tunnels when that is more
	DefaultMaxConnectionsPerSource = 64
	DefaultRatePerSource           = 20.0
	DefaultBurstPerSource          = 40
	DefaultMaxHeaderBytes          = 8 << 10
)

// DefaultListen is the listen address when none is configured.
var DefaultListen = ":" + strconv.Itoa(protocol.DefaultPort)

// ErrInvalid marks a configuration that parses but does not validate.
var ErrInvalid = errors.New("invalid tunnel configuration")

// ErrProxyProtocolOff refuses proxy_protocol: false (or --proxy-protocol=false).
// A tunnel that relays no client address would make the primary take the
// tunnel's own address for every DMZ host's, so the header can no longer be
// turned off.
var ErrProxyProtocolOff = errors.New("proxy_protocol: false is no longer supported: the tunnel always sends a PROXY v2 header " +
	"with the client's address; remove the key and declare this tunnel on the primary with `hostcert-primary serve --tunnel-addr`")

// File is the YAML configuration file. Zero values mean "the default".
type File struct {
	Listen string  `yaml:"listen"`
	Allow  []Allow `yaml:"allow"`
	// ProxyProtocol is the old switch of the PROXY v2 header, which is now
	// always sent: absent or true is accepted, false is refused.
	ProxyProtocol   *bool         `yaml:"proxy_protocol"`
	Limits          Limits        `yaml:"limits"`
	ShutdownTimeout time.Duration `yaml:"shutdown_timeout"`
	// MetricsListen, when set, serves Prometheus metrics at /metrics on
	// that address; a bare port binds loopback. Off by default.
	MetricsListen string `yaml:"metrics_listen"`
}

// Allow admits CONNECT requests for Target and relays them to one of
// Upstream.
type Allow struct {
	// Target is the "name:port" a client must ask for, exactly.
	Target string `yaml:"target"`
	// Upstream is the "host:port" the tunnel dials, or several (primary
	// nodes): `upstream: 10.0.0.1:1556` or `upstream: [10.0.0.1:1556,
	// 10.0.0.2:1556]`, dialled in order until one answers. Empty means
	// Target, resolved by the tunnel itself at dial time.
	Upstream Upstreams `yaml:"upstream"`
}

// Upstreams are the addresses an allowed target is relayed to, in order of
// preference.
type Upstreams []string

// String is the list joined by commas (the --allow form).
func (u Upstreams) String() string { return strings.Join(u, ",") }

// UnmarshalYAML accepts one address or a list of addresses.
func (u *Upstreams) UnmarshalYAML(n *yaml.Node) error {
	l, err := addrlist.DecodeYAML(n, "upstream")
	if err != nil {
		return err
	}
	*u = l
	return nil
}

// Limits bound what clients can make the tunnel hold.
type Limits struct {
	HandshakeTimeout        time.Duration `yaml:"handshake_timeout"`
	IdleTimeout             time.Duration `yaml:"idle_timeout"`
	DialTimeout             time.Duration `yaml:"dial_timeout"`
	MaxTunnels              int           `yaml:"max_tunnels"`
	MaxConnections          int           `yaml:"max_connections"`
	MaxConnectionsPerSource int           `yaml:"max_connections_per_source"`
	RatePerSource           float64       `yaml:"new_connections_per_second"`
	BurstPerSource          int           `yaml:"new_connections_burst"`
	MaxHeaderBytes          int           `yaml:"max_header_bytes"`
}

// Overrides are command-line values that take precedence over the file at
// every load, reloads included. Nil/empty fields leave the file's value.
type Overrides struct {
	Listen        string
	Allow         []Allow
	ProxyProtocol *bool
}

// Load reads path (strict YAML: unknown keys are errors naming key and line),
// applies overrides and defaults, and validates. It is the tunnel's one
// validation of a config file, at start-up and at every reload, so a
// reload accepts nothing start-up would refuse.
func Load(path string, o Overrides) (File, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return File{}, fmt.Errorf("read tunnel config: %w", err)
	}
	f, err := Parse(data)
	if err != nil {
		return File{}, fmt.Errorf("tunnel config %s: %w", path, err)
	}
	return f.Resolve(o)
}

// Parse decodes YAML strictly without applying defaults or validating.
func Parse(data []byte) (File, error) {
	var f File
	dec := yaml.NewDecoder(bytes.NewReader(data))
	dec.KnownFields(true)
	if err := dec.Decode(&f); err != nil && !errors.Is(err, io.EOF) {
		return File{}, fmt.Errorf("parse: %w", err)
	}
	return f, nil
}

// Resolve applies overrides and defaults, normalises the allow list and
// validates the result.
func (f File) Resolve(o Overrides) (File, error) {
	if o.Listen != "" {
		f.Listen = o.Listen
	}
	if len(o.Allow) > 0 {
		f.Allow = append([]Allow(nil), o.Allow...)
	}
	if o.ProxyProtocol != nil {
		v := *o.ProxyProtocol
		f.ProxyProtocol = &v
	}
	f.applyDefaults()
	if err := f.validate(); err != nil {
		return File{}, err
	}
	return f, nil
}

func (f *File) applyDefaults() {
	if f.Listen == "" {
		f.Listen = DefaultListen
	}
	if f.ShutdownTimeout == 0 {
		f.ShutdownTimeout = DefaultShutdownTimeout
	}
	l := &f.Limits
	setDur := func(p *time.Duration, d time.Duration) {
		if *p == 0 {
			*p = d
		}
	}
	setInt := func(p *int, d int) {
		if *p == 0 {
			*p = d
		}
	}
	setDur(&l.HandshakeTimeout, DefaultHandshakeTimeout)
	setDur(&l.IdleTimeout, DefaultIdleTimeout)
	setDur(&l.DialTimeout, DefaultDialTimeout)
	setInt(&l.MaxTunnels, DefaultMaxTunnels)
	if l.MaxConnections == 0 {
		// Room for as many connections still handshaking as there are tunnels.
		l.MaxConnections = max(DefaultMaxConnections, 2*l.MaxTunnels)
	}
	setInt(&l.MaxConnectionsPerSource, DefaultMaxConnectionsPerSource)
	setInt(&l.BurstPerSource, DefaultBurstPerSource)
	setInt(&l.MaxHeaderBytes, DefaultMaxHeaderBytes)
	if l.RatePerSource == 0 {
		l.RatePerSource = DefaultRatePerSource
	}
}

func (f *File) validate() error {
	var errs []error
	// Everything net.Listen would refuse for its form is refused here, so
	// that a reload never takes an address the next start-up cannot use.
	if _, port, err := net.SplitHostPort(f.Listen); err != nil {
		errs = append(errs, fmt.Errorf("listen %q: %w", f.Listen, err))
	} else if _, err := net.LookupPort("tcp", port); err != nil {
		errs = append(errs, fmt.Errorf("listen %q: port %q is not 0-65535 or a service name", f.Listen, port))
	}
	if f.ProxyProtocol != nil && !*f.ProxyProtocol {
		errs = append(errs, ErrProxyProtocolOff)
	}
	if addr, err := metrics.ListenAddr(f.MetricsListen); err != nil {
		errs = append(errs, fmt.Errorf("metrics_listen: %w", err))
	} else {
		f.MetricsListen = addr
	}
	if len(f.Allow) == 0 {
		errs = append(errs, errors.New("allow: at least one target is required (the tunnel admits nothing else)"))
	}
	seen := make(map[string]bool)
	for i, a := range f.Allow {
		t, err := NormalizeTarget(a.Target)
		if err != nil {
			errs = append(errs, fmt.Errorf("allow[%d].target: %w", i, err))
			continue
		}
		if seen[t] {
			errs = append(errs, fmt.Errorf("allow[%d].target %q: listed twice", i, a.Target))
		}
		seen[t] = true
		f.Allow[i].Target = t
		if len(a.Upstream) == 0 {
			f.Allow[i].Upstream = Upstreams{t}
		}
		for j, u := range a.Upstream {
			if _, err := NormalizeTarget(u); err != nil {
				errs = append(errs, fmt.Errorf("allow[%d].upstream[%d]: %w", i, j, err))
			} else if slices.Contains(a.Upstream[:j], u) {
				errs = append(errs, fmt.Errorf("allow[%d].upstream[%d] %q: listed twice", i, j, u))
			}
		}
	}
	l := f.Limits
	for _, d := range []struct {
		name string
		v    time.Duration
	}{
		{"limits.handshake_timeout", l.HandshakeTimeout},
		{"limits.idle_timeout", l.IdleTimeout},
		{"limits.dial_timeout", l.DialTimeout},
		{"shutdown_timeout", f.ShutdownTimeout},
	} {
		if d.v < 0 {
			errs = append(errs, fmt.Errorf("%s %v: must be positive", d.name, d.v))
		}
	}
	for _, n := range []struct {
		name string
		v    int
	}{
		{"limits.max_tunnels", l.MaxTunnels},
		{"limits.max_connections", l.MaxConnections},
		{"limits.max_connections_per_source", l.MaxConnectionsPerSource},
		{"limits.new_connections_burst", l.BurstPerSource},
		{"limits.max_header_bytes", l.MaxHeaderBytes},
	} {
		if n.v < 0 {
			errs = append(errs, fmt.Errorf("%s %d: must be positive", n.name, n.v))
		}
	}
	if l.RatePerSource < 0 {
		errs = append(errs, fmt.Errorf("limits.new_connections_per_second %v: must be positive", l.RatePerSource))
	}
	if l.MaxConnections < l.MaxTunnels {
		errs = append(errs, fmt.Errorf("limits.max_connections %d: must be at least limits.max_tunnels %d", l.MaxConnections, l.MaxTunnels))
	}
	if err := errors.Join(errs...); err != nil {
		return fmt.Errorf("%w: %w", ErrInvalid, err)
	}
	return nil
}

// NormalizeTarget checks a "host:port" authority and returns it in the form
// the allow list is matched in: host lower-cased without a trailing dot,
// IPv6 literals bracketed, port a decimal number 1-65535.
func NormalizeTarget(s string) (string, error) {
	host, port, err := net.SplitHostPort(s)
	if err != nil {
		return "", fmt.Errorf("%q: want host:port: %w", s, err)
	}
	if host == "" {
		return "", fmt.Errorf("%q: empty host", s)
	}
	// The one normaliser of names and addresses the primary's own names go
	// through: labels of letters, digits and hyphens, none empty, an IP
	// address in its canonical form.
	if host, err = hostname.ForServer(host); err != nil {
		return "", fmt.Errorf("%q: bad host: %w", s, err)
	}
	p, err := strconv.ParseUint(port, 10, 16)
	if err != nil || p == 0 || strconv.FormatUint(p, 10) != port {
		return "", fmt.Errorf("%q: port must be a number 1-65535", s)
	}
	return net.JoinHostPort(host, port), nil
}

// ParseAllowFlag parses the --allow value "TARGET[=UPSTREAM[,UPSTREAM...]]".
func ParseAllowFlag(s string) (Allow, error) {
	target, upstreams, _ := strings.Cut(s, "=")
	t, err := NormalizeTarget(target)
	if err != nil {
		return Allow{}, fmt.Errorf("--allow %q: %w", s, err)
	}
	a := Allow{Target: t}
	if upstreams == "" {
		return a, nil
	}
	for _, u := range strings.Split(upstreams, ",") {
		if _, err := NormalizeTarget(u); err != nil {
			return Allow{}, fmt.Errorf("--allow %q: upstream: %w", s, err)
		}
		a.Upstream = append(a.Upstream, u)
	}
	return a, nil
}
