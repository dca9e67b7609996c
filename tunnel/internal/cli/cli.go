// Package cli is hostcert-tunnel's command line: run (the proxy, in the
// foreground or under the service manager) and service (install and control
// it). Flags given on the command line win over the config file, at start-up
// and at every reload.
package cli

import (
	"context"
	"fmt"
	"io"
	"net"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/rs/zerolog"
	"github.com/spf13/cobra"
	"golang.org/x/sync/errgroup"

	"github.com/hostcert/hostcert/common/configwatch"
	"github.com/hostcert/hostcert/common/logging"
	"github.com/hostcert/hostcert/common/metrics"
	"github.com/hostcert/hostcert/common/svc"
	"github.com/hostcert/hostcert/common/version"
	"github.com/hostcert/hostcert/packaging"
	"github.com/hostcert/hostcert/tunnel/internal/config"
	"github.com/hostcert/hostcert/tunnel/internal/connect"
)

// Program is the service and binary name.
const Program = "hostcert-tunnel"

// stopSlack is how much longer than the drain deadline the service manager
// is told to wait for a stop.
const stopSlack = 10 * time.Second

type app struct {
	out, errOut io.Writer

	configPath    string
	listen        string
	allow         []string
	proxyProtocol bool
	logLevel      string
	logFormat     string
	serviceName   string
}

// Main runs the command line and returns the process exit code.
func Main(ctx context.Context, args []string, out, errOut io.Writer) int {
	a := &app{out: out, errOut: errOut}
	root := a.root()
	root.SetArgs(args)
	root.SetOut(out)
	root.SetErr(errOut)
	if err := root.ExecuteContext(ctx); err != nil {
		fmt.Fprintln(errOut, Program+": "+strings.Join(strings.Fields(strings.ReplaceAll(err.Error(), "\n", "; ")), " "))
		return 1
	}
	return 0
}

func (a *app) root() *cobra.Command {
	root := &cobra.Command{
		Use:           Program,
		Short:         "CONNECT-only proxy that lets DMZ hosts reach the hostcert primary",
		Version:       version.String(Program),
		SilenceUsage:  true,
		SilenceErrors: true,
	}
	root.SetVersionTemplate("{{.Version}}\n")
	root.CompletionOptions.DisableDefaultCmd = true
	fs := root.PersistentFlags()
	fs.StringVar(&a.configPath, "config", "", "configuration file, watched for changes (default "+svc.DefaultConfigPath("tunnel")+" when it exists)")
	fs.StringVar(&a.listen, "listen", "", "address to listen on (config: listen; default "+config.DefaultListen+")")
	fs.StringArrayVar(&a.allow, "allow", nil, "allowed CONNECT target PRIMARY:PORT[=UPSTREAM:PORT[,UPSTREAM:PORT...]] (several upstreams: primary nodes dialled in order until one answers), repeatable; replaces the config's allow list (config: allow)")
	fs.BoolVar(&a.proxyProtocol, "proxy-protocol", true, "no effect: the PROXY protocol v2 header is always sent; --proxy-protocol=false is refused")
	_ = fs.MarkDeprecated("proxy-protocol", "the tunnel always sends a PROXY v2 header with the client's address; declare it on the primary with serve --tunnel-addr")
	fs.StringVar(&a.logLevel, "log-level", "info", "log level: trace, debug, info, warn, error")
	fs.StringVar(&a.logFormat, "log-format", "auto", "log format: auto, console, json")
	root.AddCommand(a.runCmd(), a.serviceCmd())
	return root
}

// overrides are the config keys set on the command line.
func (a *app) overrides(cmd *cobra.Command) (config.Overrides, error) {
	var o config.Overrides
	o.Listen = a.listen
	for _, s := range a.allow {
		e, err := config.ParseAllowFlag(s)
		if err != nil {
			return o, err
		}
		o.Allow = append(o.Allow, e)
	}
	if cmd.Flags().Changed("proxy-protocol") {
		v := a.proxyProtocol
		o.ProxyProtocol = &v
	}
	return o, nil
}

// configFile is the file to load: --config, or the default path when it
// exists, or "" (flags only).
func (a *app) configFile(cmd *cobra.Command) string {
	if cmd.Flags().Changed("config") {
		return a.configPath
	}
	if p := svc.DefaultConfigPath("tunnel"); fileExists(p) {
		return p
	}
	return ""
}

func fileExists(p string) bool {
	_, err := os.Stat(p)
	return err == nil
}

func (a *app) runCmd() *cobra.Command {
	return &cobra.Command{
		Use:   "run",
		Short: "Run the tunnel in the foreground (what the service runs)",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			log, err := logging.New(logging.Options{Format: logging.Format(a.logFormat), Level: a.logLevel, Out: a.errOut})
			if err != nil {
				return err
			}
			over, err := a.overrides(cmd)
			if err != nil {
				return err
			}
			path := a.configFile(cmd)
			var w *configwatch.Watcher[config.File]
			var f config.File
			if path != "" {
				w, err = configwatch.New(path, func(p string) (config.File, error) { return config.Load(p, over) }, log)
				if err != nil {
					return err
				}
				f = w.Current()
			} else if f, err = (config.File{}).Resolve(over); err != nil {
				return fmt.Errorf("%w (give --allow or --config)", err)
			}
			sc := a.svcConfig(cmd)
			sc.StopTimeout = f.ShutdownTimeout + stopSlack
			return svc.Run(sc, func(ctx context.Context) error { return serve(ctx, f, w, log) })
		},
	}
}

// serve listens, then runs the tunnel and, with a config file, its watcher
// until ctx ends.
func serve(ctx context.Context, f config.File, w *configwatch.Watcher[config.File], log zerolog.Logger) error {
	ln, err := net.Listen("tcp", f.Listen)
	if err != nil {
		if w != nil {
			w.Close()
		}
		return fmt.Errorf("listen: %w", err)
	}
	var mln net.Listener
	if f.MetricsListen != "" {
		if mln, err = net.Listen("tcp", f.MetricsListen); err != nil {
			ln.Close()
			if w != nil {
				w.Close()
			}
			return fmt.Errorf("metrics: listen on %s: %w", f.MetricsListen, err)
		}
	}
	srv := connect.New(f, log)
	g, gctx := errgroup.WithContext(ctx)
	if mln != nil {
		g.Go(func() error {
			return metrics.Serve(gctx, mln, srv.Metrics(), log.With().Str("part", "metrics").Logger())
		})
	}
	if w != nil {
		w.OnChange(func(nf config.File) {
			if nf.MetricsListen != f.MetricsListen {
				log.Warn().Str("metrics_listen", f.MetricsListen).Str("configured", nf.MetricsListen).Msg("metrics_listen change needs a restart; keeping the current one")
			}
			if nf.Listen != f.Listen {
				log.Warn().Str("listen", f.Listen).Str("configured", nf.Listen).Msg("listen address change needs a restart; keeping the current one")
			}
			srv.Update(nf)
		})
		g.Go(func() error { return w.Run(gctx) })
	}
	g.Go(func() error { return srv.Serve(gctx, ln) })
	return g.Wait()
}

func (a *app) svcConfig(cmd *cobra.Command) svc.Config {
	args := []string{"run"}
	if p := a.configFile(cmd); p != "" {
		if abs, err := filepath.Abs(p); err == nil {
			p = abs
		}
		args = append(args, "--config", p)
	}
	fl := cmd.Flags()
	if fl.Changed("listen") {
		args = append(args, "--listen", a.listen)
	}
	for _, s := range a.allow {
		args = append(args, "--allow", s)
	}
	for _, name := range []string{"log-level", "log-format"} {
		if fl.Changed(name) {
			args = append(args, "--"+name, fl.Lookup(name).Value.String())
		}
	}
	name := a.serviceName
	if name == "" {
		name = Program
	}
	return svc.Config{
		Name:        name,
		DisplayName: "hostcert tunnel",
		Description: "CONNECT-only proxy that lets DMZ hosts reach the hostcert primary.",
		Arguments:   args,
		SystemdUnit: packaging.SystemdUnit(Program),
		StopTimeout: config.DefaultShutdownTimeout + stopSlack,
	}
}

func (a *app) serviceCmd() *cobra.Command {
	cmd := &cobra.Command{
		Use:       "service install|uninstall|start|stop|restart|status",
		Short:     "Install or control the tunnel as a system service (systemd, Windows service manager)",
		Long:      "service install records the run flags given here (--config, --listen, --allow, --log-*) as the service's arguments.",
		Args:      cobra.ExactArgs(1),
		ValidArgs: svc.Actions,
		RunE: func(cmd *cobra.Command, args []string) error {
			if args[0] == "install" {
				if _, err := a.overrides(cmd); err != nil {
					return err
				}
				if cmd.Flags().Changed("config") && !fileExists(a.configPath) {
					return fmt.Errorf("--config %s: %w", a.configPath, os.ErrNotExist)
				}
			}
			out, err := svc.Control(a.svcConfig(cmd), args[0])
			if err != nil {
				return err
			}
			fmt.Fprintln(a.out, out)
			return nil
		},
	}
	cmd.Flags().StringVar(&a.serviceName, "service-name", Program, "service name (for several tunnels on one machine)")
	return cmd
}
