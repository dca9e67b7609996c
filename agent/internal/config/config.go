// Package config loads and validates hostcert-agent's configuration: the
// primary's address, the route (direct address override and tunnels), the
// data directory, the key and renewal settings, and logging. The file is YAML,
// decoded strictly; every key can also be set by a command-line flag, which
// wins over the file.
package config

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"net"
	"net/netip"
	"os"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"
	"time"

	"gopkg.in/yaml.v3"

	"github.com/hostcert/hostcert/common/metrics"
	"github.com/hostcert/hostcert/common/pki"
	"github.com/hostcert/hostcert/common/protocol"
)

// Defaults, filled in by (*Config).applyDefaults and documented in docs/agent.md.
const (
	DefaultRenewBefore    = 180 * 24 * time.Hour
	DefaultDialTimeout    = 2 * time.Second
	DefaultRequestTimeout = 30 * time.Second
	DefaultProbeInterval  = 10 * time.Minute
	DefaultKeyAlgorithm   = pki.ECDSAP256
)

// ErrInvalid marks a configuration that parses but does not validate.
var ErrInvalid = errors.New("invalid agent configuration")

// MaxOtherNames bounds other_names (the primary takes at most 16 names in
// one request, the main name included).
const MaxOtherNames = 15

// Config is the agent's configuration. Zero values in the file mean "the default".
type Config struct {
	// Primary is the primary's "HOST[:PORT]", or several (primary nodes,
	// tried in order, the one that answered last first); each HOST is the
	// name TLS verifies on its node. A name that resolves to several
	// addresses is tried at each of them.
	Primary Addrs `yaml:"primary"`
	// PrimaryDial, when set, is the address dialled instead of resolving
	// Primary's host (like curl --resolve); TLS still verifies Primary's
	// host. Only with a single primary.
	PrimaryDial string `yaml:"primary_dial"`
	// Tunnels are hostcert-tunnel addresses tried in order when the primary
	// cannot be reached directly.
	Tunnels []string `yaml:"tunnels"`
	// SourceAddress, when set, is the local IP address outgoing connections
	// use (multi-homed hosts: the address the host's name resolves to, so the
	// primary can verify it).
	SourceAddress string `yaml:"source_address"`
	// DataDir holds the trust store, key, certificate, CRL and state.
	DataDir string `yaml:"data_dir"`
	// Name is the host name to request (default: this machine's FQDN).
	Name string `yaml:"name"`
	// OtherNames are further names of this host (short name, other
	// interfaces) it asks the primary for, in every enrollment and renewal.
	// A name the host does not hold yet waits for the primary admin's
	// approval (a pending mapping); the next renewal after it carries it.
	OtherNames []string `yaml:"other_names"`
	// NAT declares that this host is behind NAT (it can never be verified).
	NAT bool `yaml:"nat"`
	// KeyAlgorithm for new keys: ecdsa-p256 (default) or rsa-3072 (any pki algorithm).
	KeyAlgorithm string `yaml:"key_algorithm"`
	// RenewBefore: renew this long before expiry (jittered by up to 10% later).
	RenewBefore time.Duration `yaml:"renew_before"`
	// KeepKey keeps the current key on renewal instead of generating a new one.
	KeepKey bool `yaml:"keep_key"`
	// DialTimeout bounds TCP connect plus TLS handshake on one route.
	DialTimeout time.Duration `yaml:"dial_timeout"`
	// RequestTimeout bounds one whole API request over all routes.
	RequestTimeout time.Duration `yaml:"request_timeout"`
	// ProbeInterval is how often the direct route is re-probed while a tunnel is in use.
	ProbeInterval time.Duration `yaml:"probe_interval"`
	// LogFormat is auto, console or json; LogLevel debug, info, warn or error.
	LogFormat string `yaml:"log_format"`
	LogLevel  string `yaml:"log_level"`
	// MetricsListen, when set, makes `run` serve Prometheus metrics at
	// /metrics on that address; a bare port binds loopback. Off by default.
	MetricsListen string `yaml:"metrics_listen"`

	// PrimarySource says where Primary came from: a flag, the config file,
	// or the record get-ca-cert left in the data directory. Not a file key.
	PrimarySource Source `yaml:"-"`
}

// Source is where the primary's address came from.
type Source string

// Sources of the primary's address, strongest first.
const (
	SourceFlag     Source = "flag"
	SourceFile     Source = "config file"
	SourceRecorded Source = "recorded by get-ca-cert"
)

// DefaultPath is the configuration file's default location on this OS.
func DefaultPath() string {
	if runtime.GOOS == "windows" {
		return filepath.Join(programData(), "hostcert", "agent.yaml")
	}
	return "/etc/hostcert/agent.yaml"
}

// DefaultDataDir is the data directory's default location on this OS.
func DefaultDataDir() string {
	if runtime.GOOS == "windows" {
		return filepath.Join(programData(), "hostcert", "agent")
	}
	return "/var/lib/hostcert/agent"
}

func programData() string {
	if p := os.Getenv("ProgramData"); p != "" {
		return p
	}
	return `C:\ProgramData`
}

// Overrides are command-line values applied over the file (see cli).
type Overrides []func(*Config)

// Apply runs every override on c.
func (o Overrides) Apply(c *Config) {
	for _, f := range o {
		f(c)
	}
}

// Parse decodes YAML strictly: an unknown key is an error naming it and its line.
// An empty document is an empty configuration.
func Parse(data []byte) (Config, error) {
	var c Config
	dec := yaml.NewDecoder(bytes.NewReader(data))
	dec.KnownFields(true)
	if err := dec.Decode(&c); err != nil && !errors.Is(err, io.EOF) {
		return Config{}, fmt.Errorf("parse: %s", strings.ReplaceAll(err.Error(), "\n ", ""))
	}
	return c, nil
}

// Load reads path (a missing file is an error unless optional), applies the
// overrides, then what get-ca-cert recorded in the data directory (for what
// neither set; see Resolve), then the defaults, and validates.
func Load(path string, optional bool, o Overrides) (Config, error) {
	var c Config
	data, err := os.ReadFile(path)
	switch {
	case err == nil:
		c, err = Parse(data)
		if err != nil {
			return Config{}, fmt.Errorf("config %s: %w", path, err)
		}
		if len(c.Primary) > 0 {
			c.PrimarySource = SourceFile
		}
	case optional && errors.Is(err, os.ErrNotExist):
	default:
		return Config{}, fmt.Errorf("config: %w", err)
	}
	o.Apply(&c)
	if c.DataDir == "" {
		c.DataDir = DefaultDataDir()
	}
	if len(c.Primary) == 0 || c.Tunnels == nil {
		rec, err := ReadRecorded(c.DataDir)
		switch {
		case err == nil:
			c = Resolve(c, rec)
		case len(c.Primary) == 0:
			// Only an error when the record is what would give the primary.
			return Config{}, err
		}
	}
	c.applyDefaults()
	if err := c.Validate(); err != nil {
		return Config{}, fmt.Errorf("config %s: %w", path, err)
	}
	return c, nil
}

// LoadRun loads the configuration of the long-running agent (`run`):
// Load's checks, and a primary to talk to. It is run's one validation, used
// at start-up and at every reload of the watched file, so that a reload
// never accepts a file that start-up would refuse (an empty file, or one
// without primary:).
func LoadRun(path string, optional bool, o Overrides) (Config, error) {
	c, err := Load(path, optional, o)
	if err != nil {
		return Config{}, err
	}
	if err := c.NeedPrimary(); err != nil {
		return Config{}, fmt.Errorf("config %s: %w", path, err)
	}
	return c, nil
}

func (c *Config) applyDefaults() {
	if c.DataDir == "" {
		c.DataDir = DefaultDataDir()
	}
	if c.KeyAlgorithm == "" {
		c.KeyAlgorithm = string(DefaultKeyAlgorithm)
	}
	if c.RenewBefore == 0 {
		c.RenewBefore = DefaultRenewBefore
	}
	if c.DialTimeout == 0 {
		c.DialTimeout = DefaultDialTimeout
	}
	if c.RequestTimeout == 0 {
		c.RequestTimeout = DefaultRequestTimeout
	}
	if c.ProbeInterval == 0 {
		c.ProbeInterval = DefaultProbeInterval
	}
	if c.LogFormat == "" {
		c.LogFormat = "auto"
	}
	if c.LogLevel == "" {
		c.LogLevel = "info"
	}
	for i, p := range c.Primary {
		c.Primary[i] = NormalizeAddr(p)
	}
	if c.PrimaryDial != "" {
		c.PrimaryDial = NormalizeAddr(c.PrimaryDial)
	}
	for i, t := range c.Tunnels {
		c.Tunnels[i] = NormalizeAddr(t)
	}
	if a, err := metrics.ListenAddr(c.MetricsListen); err == nil {
		c.MetricsListen = a // a bad value is left for Validate to name
	}
}

// NormalizeAddr is addr as HOST:PORT: an "https://HOST[:PORT][/]" URL is
// understood as its host and port, and the default API port (1556) is added
// when none is given. Anything else with a scheme is left for Validate to
// refuse.
func NormalizeAddr(addr string) string {
	addr = strings.TrimSpace(addr)
	if rest, ok := cutPrefixFold(addr, "https://"); ok {
		rest = strings.TrimSuffix(rest, "/")
		if rest != "" && !strings.ContainsAny(rest, "/?#@") {
			addr = rest
		}
	}
	if strings.Contains(addr, "://") {
		return addr
	}
	return WithDefaultPort(addr)
}

func cutPrefixFold(s, prefix string) (string, bool) {
	if len(s) >= len(prefix) && strings.EqualFold(s[:len(prefix)], prefix) {
		return s[len(prefix):], true
	}
	return s, false
}

// WithDefaultPort adds the default API port (1556) to an address without one.
func WithDefaultPort(addr string) string {
	addr = strings.TrimSpace(addr)
	if _, _, err := net.SplitHostPort(addr); err == nil {
		return addr
	}
	return net.JoinHostPort(strings.Trim(addr, "[]"), strconv.Itoa(protocol.DefaultPort))
}

// Validate checks values that parse but make no sense. Primary may be empty
// (commands that need it check with NeedPrimary).
func (c *Config) Validate() error {
	var errs []error
	bad := func(format string, a ...any) { errs = append(errs, fmt.Errorf(format, a...)) }
	for i, p := range c.Primary {
		key := "primary"
		if len(c.Primary) > 1 {
			key = fmt.Sprintf("primary[%d]", i)
		}
		if err := checkAddr(p); err != nil {
			bad("%s: %v", key, err)
		}
		for _, q := range c.Primary[:i] {
			if q == p {
				bad("%s: %q listed twice", key, p)
			}
		}
	}
	if c.PrimaryDial != "" {
		if err := checkAddr(c.PrimaryDial); err != nil {
			bad("primary_dial: %v", err)
		}
		if len(c.Primary) > 1 {
			bad("primary_dial: only with a single primary (it replaces that primary's address)")
		}
	}
	for i, t := range c.Tunnels {
		if err := checkAddr(t); err != nil {
			bad("tunnels[%d]: %v", i, err)
		}
	}
	if c.SourceAddress != "" {
		if _, err := netip.ParseAddr(c.SourceAddress); err != nil {
			bad("source_address: %q is not an IP address", c.SourceAddress)
		}
	}
	if _, err := metrics.ListenAddr(c.MetricsListen); err != nil {
		bad("metrics_listen: %v", err)
	}
	if _, err := pki.ParseKeyAlgorithm(c.KeyAlgorithm); err != nil {
		bad("key_algorithm: %v", err)
	}
	if len(c.OtherNames) > MaxOtherNames {
		bad("other_names: %d names, at most %d", len(c.OtherNames), MaxOtherNames)
	}
	for i, n := range c.OtherNames {
		if n = strings.TrimSpace(n); n == "" || strings.ContainsAny(n, " \t/:@") {
			bad("other_names[%d]: %q is not a host name", i, c.OtherNames[i])
		}
	}
	for _, d := range []struct {
		key string
		d   time.Duration
	}{
		{"renew_before", c.RenewBefore}, {"dial_timeout", c.DialTimeout},
		{"request_timeout", c.RequestTimeout}, {"probe_interval", c.ProbeInterval},
	} {
		if d.d < 0 {
			bad("%s: %v is negative", d.key, d.d)
		}
	}
	switch c.LogFormat {
	case "auto", "console", "json":
	default:
		bad("log_format: %q (want auto, console or json)", c.LogFormat)
	}
	switch c.LogLevel {
	case "trace", "debug", "info", "warn", "error":
	default:
		bad("log_level: %q (want debug, info, warn or error)", c.LogLevel)
	}
	if len(errs) == 0 {
		return nil
	}
	return fmt.Errorf("%w: %w", ErrInvalid, errors.Join(errs...))
}

// ErrNoPrimary is returned by NeedPrimary when no primary is configured.
var ErrNoPrimary = errors.New("no primary configured: run get-ca-cert --primary HOST[:PORT] (it is remembered), or set primary: in the config file")

// NeedPrimary fails when the primary's address is missing.
func (c *Config) NeedPrimary() error {
	if len(c.Primary) == 0 {
		return ErrNoPrimary
	}
	return nil
}

// PrimaryHost is the host part of the first primary: the name the
// primary's TLS certificate must carry.
func (c *Config) PrimaryHost() string {
	p := c.Primary.First()
	h, _, err := net.SplitHostPort(p)
	if err != nil {
		return p
	}
	return h
}

func checkAddr(addr string) error {
	if strings.Contains(addr, "://") {
		return fmt.Errorf("%q: give HOST[:PORT] or https://HOST[:PORT]/ (the API speaks HTTPS only, no path)", addr)
	}
	h, p, err := net.SplitHostPort(addr)
	if err != nil {
		return fmt.Errorf("%q is not HOST:PORT: %w", addr, err)
	}
	if h == "" {
		return fmt.Errorf("%q has no host", addr)
	}
	if n, err := strconv.Atoi(p); err != nil || n < 1 || n > 65535 {
		return fmt.Errorf("%q: port %q is not 1-65535", addr, p)
	}
	return nil
}
