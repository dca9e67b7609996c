// Package cli is hostcert-agent's command line: get-ca-cert, get-cert,
// status, self-check, get-crl, renew, run and service. Every configuration
// key is also a flag (flags win over the file). Errors come back to main as
// one line; refusals from the primary name their stable code and what to do.
package cli

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"strings"
	"time"

	"github.com/rs/zerolog"
	"github.com/spf13/cobra"
	"github.com/spf13/pflag"

	"github.com/hostcert/hostcert/agent/internal/certstore"
	"github.com/hostcert/hostcert/agent/internal/config"
	"github.com/hostcert/hostcert/agent/internal/daemon"
	"github.com/hostcert/hostcert/common/logging"
	"github.com/hostcert/hostcert/common/protocol"
	"github.com/hostcert/hostcert/common/version"
)

// ExitError carries a specific exit code (self-check: 2 when revoked or expired).
type ExitError struct {
	Code int
	Err  error
}

func (e *ExitError) Error() string { return e.Err.Error() }
func (e *ExitError) Unwrap() error { return e.Err }

// IO is where a command reads and writes; tests replace it.
type IO struct {
	In       io.Reader
	Out      io.Writer
	Err      io.Writer
	Terminal func() bool // stdin and stdout are a terminal
}

type app struct {
	io         IO
	configPath string
	configSet  bool
	over       config.Overrides
}

// Main runs the command line and returns the process exit code.
func Main(ctx context.Context, args []string, stdio IO) int {
	err := Execute(ctx, args, stdio)
	if err == nil {
		return 0
	}
	fmt.Fprintln(stdio.Err, "hostcert-agent: "+OneLine(err))
	var ee *ExitError
	if errors.As(err, &ee) {
		return ee.Code
	}
	return 1
}

// Execute runs the command line and returns its error.
func Execute(ctx context.Context, args []string, stdio IO) error {
	a := &app{io: stdio}
	root := a.root()
	root.SetArgs(args)
	root.SetIn(stdio.In)
	root.SetOut(stdio.Out)
	root.SetErr(stdio.Err)
	return root.ExecuteContext(ctx)
}

// OneLine is err on one line, with refusals spelled out.
func OneLine(err error) string {
	var pe *protocol.Error
	if errors.As(err, &pe) {
		return refusal(pe.Code, pe.Message)
	}
	return strings.Join(strings.Fields(strings.ReplaceAll(err.Error(), "\n", "; ")), " ")
}

// refusal is "refused (code): message; what to do", saying nothing twice:
// a message that opens by restating the code ("token required: …") loses
// that opening, and a hint the message already gives is left out.
func refusal(code protocol.Code, msg string) string {
	msg = strings.Join(strings.Fields(msg), " ")
	spoken := strings.ReplaceAll(string(code), "_", " ")
	if len(msg) > len(spoken) && strings.EqualFold(msg[:len(spoken)], spoken) && strings.HasPrefix(msg[len(spoken):], ": ") {
		msg = msg[len(spoken)+2:]
	}
	s := fmt.Sprintf("refused (%s): %s", code, msg)
	if h := hint(code); h != "" && !strings.Contains(strings.ToLower(msg), strings.ToLower(h)) {
		s += "; " + h
	}
	return s
}

// hint is what to do about a refusal; it does not restate why (the
// primary's message says that).
func hint(c protocol.Code) string {
	switch c {
	case protocol.CodeTokenRequired:
		return "run get-cert with --token-file FILE (or --token, or HOSTCERT_TOKEN)"
	case protocol.CodeReissueTokenRequired:
		return "run get-cert with a reissue token made for this host (--token-file FILE)"
	case protocol.CodeTokenInvalid:
		return "it may be mistyped, expired, used up or bound to another host: ask the primary's admin for a new one"
	case protocol.CodeHostRevoked, protocol.CodeCertExpired:
		return "run get-cert with a reissue token"
	case protocol.CodeNotVerified:
		return "run get-cert with --token-file FILE"
	case protocol.CodeRateLimited:
		return "wait and retry"
	case protocol.CodeNameNotAllowed:
		return "check --name"
	case protocol.CodeNameReserved:
		return "this name can never be a host's (a name of the primary, localhost, an address or a token value): check --name"
	case protocol.CodeNameConflict:
		return "another host holds one of the names asked for: check the name list (--name, name: in the config) or ask the primary's admin (host mapping list)"
	case protocol.CodeTooManyPendingNames:
		return "ask fewer new names (other_names in the config), or ask the primary's admin to decide this host's pending names (mapping list --pending)"
	}
	return ""
}

func (a *app) root() *cobra.Command {
	root := &cobra.Command{
		Use:           "hostcert-agent",
		Short:         "Enroll this host for a hostcert certificate and keep it renewed",
		Version:       version.String("hostcert-agent"),
		SilenceUsage:  true,
		SilenceErrors: true,
	}
	root.SetVersionTemplate("{{.Version}}\n")
	root.CompletionOptions.DisableDefaultCmd = true
	a.flags(root.PersistentFlags())
	root.AddCommand(a.getCACert(), a.getCert(), a.status(), a.selfCheck(), a.getCRL(), a.renew(), a.run(), a.service())
	return root
}

// flags binds every config key to a persistent flag.
func (a *app) flags(fs *pflag.FlagSet) {
	fs.StringVar(&a.configPath, "config", config.DefaultPath(), "configuration file (missing is fine unless given explicitly)")
	str := func(name, key, usage string, set func(*config.Config, string)) {
		v := fs.String(name, "", usage+" (config: "+key+")")
		a.over = append(a.over, func(c *config.Config) {
			if fs.Changed(name) {
				set(c, *v)
			}
		})
	}
	boolean := func(name, key, usage string, set func(*config.Config, bool)) {
		v := fs.Bool(name, false, usage+" (config: "+key+")")
		a.over = append(a.over, func(c *config.Config) {
			if fs.Changed(name) {
				set(c, *v)
			}
		})
	}
	dur := func(name, key, usage string, set func(*config.Config, time.Duration)) {
		v := fs.Duration(name, 0, usage+" (config: "+key+")")
		a.over = append(a.over, func(c *config.Config) {
			if fs.Changed(name) {
				set(c, *v)
			}
		})
	}
	primaries := fs.StringArray("primary", nil, "the primary's HOST[:PORT] or https://HOST[:PORT]/ (port default 1556); several primary nodes: repeat it or separate them by commas, tried in order (config: primary; get-ca-cert records it for later commands)")
	a.over = append(a.over, func(c *config.Config) {
		if fs.Changed("primary") {
			c.Primary = nil
			for _, p := range *primaries {
				c.Primary = append(c.Primary, config.ParseAddrs(p)...)
			}
			c.PrimarySource = config.SourceFlag
		}
	})
	str("primary-dial", "primary_dial", "dial this ADDR instead of resolving the primary's host; TLS still verifies the host", func(c *config.Config, s string) { c.PrimaryDial = s })
	str("source-address", "source_address", "local IP address for outgoing connections (default: the system's choice)", func(c *config.Config, s string) { c.SourceAddress = s })
	tunnels := fs.StringSlice("tunnel", nil, "tunnel HOST:PORT, repeatable, tried in order (config: tunnels)")
	a.over = append(a.over, func(c *config.Config) {
		if fs.Changed("tunnel") {
			c.Tunnels = append([]string(nil), *tunnels...)
		}
	})
	str("data", "data_dir", "data directory (default "+config.DefaultDataDir()+")", func(c *config.Config, s string) { c.DataDir = s })
	str("name", "name", "host name to request (default: this machine's FQDN)", func(c *config.Config, s string) { c.Name = s })
	boolean("nat", "nat", "declare that this host is behind NAT", func(c *config.Config, b bool) { c.NAT = b })
	str("key-algorithm", "key_algorithm", "key for new certificates: ecdsa-p256 (default) or rsa-3072", func(c *config.Config, s string) { c.KeyAlgorithm = s })
	dur("renew-before", "renew_before", "renew this long before expiry (default 4320h = 180 days)", func(c *config.Config, d time.Duration) { c.RenewBefore = d })
	boolean("keep-key", "keep_key", "keep the current key on renewal", func(c *config.Config, b bool) { c.KeepKey = b })
	dur("dial-timeout", "dial_timeout", "connect + TLS handshake timeout per route (default 2s)", func(c *config.Config, d time.Duration) { c.DialTimeout = d })
	dur("request-timeout", "request_timeout", "timeout of one request over all routes (default 30s)", func(c *config.Config, d time.Duration) { c.RequestTimeout = d })
	dur("probe-interval", "probe_interval", "re-probe the direct route this often while on a tunnel (default 10m)", func(c *config.Config, d time.Duration) { c.ProbeInterval = d })
	str("metrics-listen", "metrics_listen", "run: serve Prometheus metrics at /metrics on this address (a bare port binds 127.0.0.1; default off)", func(c *config.Config, s string) { c.MetricsListen = s })
	str("log-format", "log_format", "auto, console or json", func(c *config.Config, s string) { c.LogFormat = s })
	str("log-level", "log_level", "debug, info, warn or error", func(c *config.Config, s string) { c.LogLevel = s })
}

func (a *app) loadConfig(cmd *cobra.Command) (config.Config, error) {
	explicit := cmd.Flags().Changed("config")
	return config.Load(a.configPath, !explicit, a.over)
}

func (a *app) logger(c config.Config) (zerolog.Logger, error) {
	return logging.New(logging.Options{Format: logging.Format(c.LogFormat), Level: c.LogLevel, Out: a.io.Err})
}

// need says what a command needs before it starts.
type need int

const (
	needPrimary need = 1 << iota // a primary's address (network commands)
	needDataDir                  // an existing data directory (status, self-check: they only look)
)

// env loads the configuration, the logger and the data directory.
func (a *app) env(cmd *cobra.Command, n need) (*daemon.Env, error) {
	cfg, err := a.loadConfig(cmd)
	if err != nil {
		return nil, err
	}
	if n&needPrimary != 0 {
		if err := cfg.NeedPrimary(); err != nil {
			return nil, err
		}
	}
	if n&needDataDir != 0 {
		if _, err := certstore.OpenExisting(cfg.DataDir); err != nil {
			return nil, err
		}
	}
	log, err := a.logger(cfg)
	if err != nil {
		return nil, err
	}
	return daemon.NewEnv(cfg, log)
}

func (a *app) daemonOptions(cmd *cobra.Command) (daemon.Options, config.Config, error) {
	cfg, err := a.loadConfig(cmd)
	if err != nil {
		return daemon.Options{}, cfg, err
	}
	log, err := a.logger(cfg)
	if err != nil {
		return daemon.Options{}, cfg, err
	}
	return daemon.Options{
		ConfigPath: a.configPath, ConfigOptional: !cmd.Flags().Changed("config"),
		Overrides: a.over, Log: log,
	}, cfg, nil
}

func isTerminal(f *os.File) bool { return f != nil && termCheck(int(f.Fd())) }
