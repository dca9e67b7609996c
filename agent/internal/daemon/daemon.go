// Package daemon assembles the long-running agent (`hostcert-agent run`):
// the renewal loop, the CRL refresh loop, the direct-route re-probe and the
// config watcher, each a Run(ctx) error part started under one errgroup.
// New certificates reach live TLS configurations through the shared
// atomic.Pointer[certstore.Identity] that GetClientCertificate reads.
package daemon

import (
	"context"
	"crypto/x509"
	"errors"
	"fmt"
	"net"
	"os"
	"sync/atomic"
	"time"

	"github.com/cenkalti/backoff/v4"
	"github.com/rs/zerolog"
	"golang.org/x/sync/errgroup"

	"github.com/hostcert/hostcert/agent/internal/certstore"
	"github.com/hostcert/hostcert/agent/internal/client"
	"github.com/hostcert/hostcert/agent/internal/config"
	"github.com/hostcert/hostcert/agent/internal/crl"
	"github.com/hostcert/hostcert/agent/internal/renew"
	"github.com/hostcert/hostcert/agent/internal/route"
	"github.com/hostcert/hostcert/common/configwatch"
	"github.com/hostcert/hostcert/common/metrics"
	"github.com/hostcert/hostcert/common/pki"
)

// Options say where the configuration comes from.
type Options struct {
	ConfigPath     string
	ConfigOptional bool // a missing file is fine (flags only); then it is not watched
	Overrides      config.Overrides
	Log            zerolog.Logger
	// NewBackOff, when set, replaces the retry policy of renewal and CRL
	// refresh (tests use short intervals).
	NewBackOff func() backoff.BackOff
	// BlockedPoll, when set, replaces how often a revoked/expired agent looks
	// for a reissued certificate on disk (default 30s).
	BlockedPoll time.Duration
}

// Env is what every command needs: the configuration, the data directory,
// the route selector (persisting its outcomes in state.json) and a client.
type Env struct {
	Config   config.Config
	Store    *certstore.Store
	Selector *route.Selector
	Client   *client.Client // nil roots when there is no trust store yet
	Identity *atomic.Pointer[certstore.Identity]
	Log      zerolog.Logger
}

// RouteConfig extracts the route settings.
func RouteConfig(c config.Config) route.Config {
	return route.Config{
		Primaries: c.Primary, PrimaryDial: c.PrimaryDial, Tunnels: c.Tunnels, SourceAddress: c.SourceAddress,
		DialTimeout: c.DialTimeout, ProbeInterval: c.ProbeInterval,
	}
}

// NewEnv opens the data directory and builds the client for cfg.
func NewEnv(cfg config.Config, log zerolog.Logger) (*Env, error) {
	store, err := certstore.Open(cfg.DataDir)
	if err != nil {
		return nil, err
	}
	for _, f := range store.Restored() {
		log.Warn().Str("path", f.Path).Str("mode_was", fmt.Sprintf("%04o", f.Was)).Str("mode", fmt.Sprintf("%04o", f.Now)).
			Msg("private file was open to other users; made it owner-only")
	}
	st, err := store.State()
	switch {
	case errors.Is(err, certstore.ErrStateDamaged):
		log.Warn().Err(err).Str("data_dir", cfg.DataDir).Msg("state damaged; carrying on")
	case err != nil:
		return nil, err
	}
	routeLog := log.With().Str("part", "route").Logger()
	var sel *route.Selector
	sel = route.NewSelector(RouteConfig(cfg), route.Outcomes{
		Current: route.Parse(st.Route), Known: st.Route != "", LastDirectFailure: st.LastDirectFailure, Node: st.Node,
	}, routeLog, func(o route.Outcomes) {
		if _, err := store.UpdateState(func(st *certstore.State) {
			if label := sel.Config().Label(o.Current); st.Route != label {
				st.Route, st.RouteSince = label, time.Now()
			}
			st.LastDirectFailure, st.Node = o.LastDirectFailure, o.Node
		}); err != nil {
			routeLog.Warn().Err(err).Msg("cannot write state")
		}
	})
	ident := new(atomic.Pointer[certstore.Identity])
	if id, err := store.Identity(); err == nil {
		ident.Store(id)
	} else if !errors.Is(err, certstore.ErrNoIdentity) {
		return nil, err
	}
	pool, err := store.CAPool()
	if err != nil && !errors.Is(err, certstore.ErrNoTrust) {
		return nil, err
	}
	return &Env{
		Config: cfg, Store: store, Selector: sel, Identity: ident, Log: log,
		Client: client.New(sel, pool, ident, cfg.RequestTimeout),
	}, nil
}

// Settings are the renewal settings of a configuration (the jitter belongs
// to each certificate: renew.DueFor).
func Settings(c config.Config) renew.Settings {
	return renew.Settings{RenewBefore: c.RenewBefore, KeepKey: c.KeepKey, KeyAlg: pki.KeyAlgorithm(c.KeyAlgorithm), OtherNames: c.OtherNames}
}

// runner is one long-running part of the agent, stopped by cancelling ctx.
type runner interface {
	Run(ctx context.Context) error
}

// prober makes the client's direct-route re-probe a runner.
type prober struct{ c *client.Client }

func (p prober) Run(ctx context.Context) error { return p.c.RunProber(ctx) }

// Run runs the agent until ctx ends or a part fails.
func Run(ctx context.Context, o Options) error {
	// One validation for start-up and every reload (config.LoadRun). Once
	// watched, the file is required: deleting it is a bad edit, not a
	// switch to flags only.
	cfg, err := config.LoadRun(o.ConfigPath, o.ConfigOptional, o.Overrides)
	if err != nil {
		return err
	}
	reload := func(path string) (config.Config, error) { return config.LoadRun(path, false, o.Overrides) }
	env, err := NewEnv(cfg, o.Log)
	if err != nil {
		return err
	}
	if _, err := env.Store.CA(); err != nil {
		return err
	}
	log := part(o.Log, "agent")
	settings := new(atomic.Pointer[renew.Settings])
	set := Settings(cfg)
	settings.Store(&set)

	// The metrics listener (opt-in) is bound before anything runs, so that
	// a taken port fails the start-up.
	var mln net.Listener
	if cfg.MetricsListen != "" {
		if mln, err = net.Listen("tcp", cfg.MetricsListen); err != nil {
			return fmt.Errorf("metrics: listen on %s: %w", cfg.MetricsListen, err)
		}
		defer mln.Close() // after an early return; Serve has closed it otherwise
	}
	am := newAgentMetrics(env.Store, env.Selector, env.Identity)
	am.useHandshakes(env.Client)

	g, ctx := errgroup.WithContext(ctx)
	if _, statErr := os.Stat(o.ConfigPath); statErr == nil {
		w, err := configwatch.New(o.ConfigPath, reload, part(o.Log, "config"))
		if err != nil {
			return err
		}
		w.OnChange(func(c config.Config) {
			if c.DataDir != cfg.DataDir {
				log.Warn().Str("data_dir", c.DataDir).Msg("data_dir changes take effect at restart")
			}
			if c.MetricsListen != cfg.MetricsListen {
				log.Warn().Str("metrics_listen", c.MetricsListen).Msg("metrics_listen changes take effect at restart")
			}
			env.Selector.SetConfig(RouteConfig(c))
			s := Settings(c)
			settings.Store(&s)
		})
		g.Go(func() error { return w.Run(ctx) })
	}
	// A root learnt (or a retired one dropped) over the verified channel
	// reaches the client at once.
	trustLog := part(o.Log, "trust")
	trusted := func(all []*x509.Certificate) {
		env.Client.SetRoots(certstore.Pool(all))
		fps := make([]string, 0, len(all))
		for _, c := range all {
			fps = append(fps, pki.Fingerprint(c))
		}
		trustLog.Info().Int("roots", len(all)).Strs("fingerprints", fps).
			Msg("trust store updated: a new root vouched for by a trusted root learnt, or a root the primary retired dropped")
	}
	refresher := &crl.Refresher{Store: env.Store, State: env.Store, Client: env.Client, Now: time.Now, Trusted: trusted}
	renewer := &renew.Renewer{
		Store: env.Store, Client: env.Client, Identity: env.Identity,
		Settings: func() renew.Settings { return *settings.Load() }, Now: time.Now, Trusted: trusted,
		RefreshCRL: func(ctx context.Context) error { _, err := refresher.Refresh(ctx); return err },
	}
	renewLoop := &renew.Loop{
		Renewer: renewer, Disk: env.Store, Log: part(o.Log, "renew"), NewBackOff: o.NewBackOff, BlockedPoll: o.BlockedPoll,
		OnState: am.renewed,
	}
	crlLoop := &crl.Loop{
		Refresher: refresher,
		Identity:  env.Identity, Log: part(o.Log, "crl"), NewBackOff: o.NewBackOff,
	}
	if mln != nil {
		g.Go(func() error { return metrics.Serve(ctx, mln, am.reg, part(o.Log, "metrics")) })
	}
	for _, r := range []runner{renewLoop, crlLoop, prober{env.Client}} {
		g.Go(func() error { return r.Run(ctx) })
	}
	log.Info().Str("primary", cfg.Primary.String()).Str("primary_source", string(cfg.PrimarySource)).Str("data_dir", cfg.DataDir).Msg("agent running")
	err = g.Wait()
	log.Info().Msg("agent stopped")
	return err
}

// part is log for one part of the agent: every line it writes names the part.
func part(log zerolog.Logger, name string) zerolog.Logger {
	return log.With().Str("part", name).Logger()
}
