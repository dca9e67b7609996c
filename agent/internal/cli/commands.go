package cli

import (
	"context"
	"crypto/x509"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/spf13/cobra"
	"github.com/spf13/pflag"

	"github.com/hostcert/hostcert/agent/internal/certstore"
	"github.com/hostcert/hostcert/agent/internal/client"
	"github.com/hostcert/hostcert/agent/internal/config"
	"github.com/hostcert/hostcert/agent/internal/crl"
	"github.com/hostcert/hostcert/agent/internal/daemon"
	"github.com/hostcert/hostcert/agent/internal/enroll"
	"github.com/hostcert/hostcert/agent/internal/health"
	"github.com/hostcert/hostcert/agent/internal/renew"
	"github.com/hostcert/hostcert/agent/internal/route"
	"github.com/hostcert/hostcert/common/pki"
	"github.com/hostcert/hostcert/common/svc"
	"github.com/hostcert/hostcert/packaging"
)

func stdin() *os.File  { return os.Stdin }
func stdout() *os.File { return os.Stdout }

func (a *app) getCACert() *cobra.Command {
	var fp string
	var yes, replace bool
	cmd := &cobra.Command{
		Use:   "get-ca-cert --primary HOST[:PORT] [--tunnel T ...] [--fingerprint FP] [--yes] [--replace]",
		Short: "Fetch the primary's CA, confirm its fingerprint and store it as the trust store",
		Long: "Fetches /v1/ca without verifying TLS (the one unverified call), prints each CA's SHA-256\n" +
			"fingerprint and asks y/n on a terminal, or compares --fingerprint. The trust store is written\n" +
			"only on a match, and only if the primary's own TLS certificate chains to the confirmed CA.\n" +
			"The primary (and --tunnel addresses) are then recorded in the data directory (defaults.json)\n" +
			"for every later command and run; a flag or the config file still wins.\n" +
			"A trust store holding another CA is never replaced without --replace.",
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if fp != "" {
				if _, err := pki.NormalizeFingerprint(fp); err != nil {
					return err
				}
			}
			env, err := a.env(cmd, needPrimary)
			if err != nil {
				return err
			}
			// A selector that remembers nothing: a refused bootstrap writes nothing at all.
			sel := route.NewSelector(daemon.RouteConfig(env.Config), route.Outcomes{}, env.Log, nil)
			c := client.New(sel, nil, nil, env.Config.RequestTimeout)
			before, _ := env.Store.CA()
			bundle, err := enroll.Bootstrap(cmd.Context(), c, env.Store, enroll.Confirm{
				Fingerprint: fp, Yes: yes, Terminal: a.io.Terminal != nil && a.io.Terminal(), In: a.io.In, Out: a.io.Out,
				Replace: replace,
			})
			if err != nil {
				return err
			}
			fmt.Fprintf(a.io.Out, "trusted %d CA certificate(s); trust store written to %s\n", len(bundle), env.Store.Path(certstore.CAFile))
			if before != nil && !enroll.SameCA(before, bundle) {
				fmt.Fprintln(a.io.Out, "trust replaced: the certificate from the previous primary no longer chains; run get-cert with a token from this primary")
			}
			rec := config.Recorded{Primary: env.Config.Primary, Tunnels: env.Config.Tunnels}
			if err := config.WriteRecorded(env.Store.Dir(), rec); err != nil {
				return err
			}
			fmt.Fprintf(a.io.Out, "primary %s recorded in %s for later commands\n", rec.Primary, config.RecordedPath(env.Store.Dir()))
			return nil
		},
	}
	cmd.Flags().StringVar(&fp, "fingerprint", "", "expected SHA-256 fingerprint of the CA (from `hostcert-primary ca show`)")
	cmd.Flags().BoolVar(&yes, "yes", false, "accept the fingerprint shown without asking (trust on first use; insecure)")
	cmd.Flags().BoolVar(&replace, "replace", false, "replace a trust store that holds another CA (moving this host to another primary)")
	return cmd
}

func (a *app) getCert() *cobra.Command {
	var token, tokenFile string
	cmd := &cobra.Command{
		Use:   "get-cert [--token T | --token-file F] [--name NAME] [--nat]",
		Short: "Generate a key on this host and get a certificate (issue, or reissue when this host already has an ID)",
		Long: "The token may also come from the environment variable HOSTCERT_TOKEN.\n" +
			"The host name defaults to this machine's fully qualified name.",
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			tok, err := resolveToken(token, tokenFile, cmd.Flags().Changed("token"), os.Getenv("HOSTCERT_TOKEN"))
			if err != nil {
				return err
			}
			env, err := a.env(cmd, needPrimary)
			if err != nil {
				return err
			}
			name := env.Config.Name
			if name == "" {
				if name, err = FQDN(); err != nil {
					return err
				}
			}
			alg, err := pki.ParseKeyAlgorithm(env.Config.KeyAlgorithm)
			if err != nil {
				return err
			}
			id, resp, err := enroll.Enroll(cmd.Context(), env.Client, env.Store, enroll.Request{Name: name, Others: env.Config.OtherNames, Token: tok, NAT: env.Config.NAT, KeyAlg: alg})
			if err != nil {
				return err
			}
			// Best effort: a fresh CRL for self-check right away.
			if _, err := (&crl.Refresher{Store: env.Store, State: env.Store, Client: env.Client, Now: time.Now}).Refresh(cmd.Context()); err != nil {
				env.Log.Warn().Err(err).Msg("crl refresh after enrollment failed; run get-crl later")
			}
			fmt.Fprintf(a.io.Out, "certificate issued (%s): host ID %s, name %s, serial %s, valid until %s\n",
				resp.Decision.Kind, resp.HostID, name, renew.Serial(id.Cert.SerialNumber), id.Cert.NotAfter.UTC().Format(time.RFC3339))
			return nil
		},
	}
	cmd.Flags().StringVar(&token, "token", "", "enrollment token (prefer --token-file or HOSTCERT_TOKEN: flags show in ps)")
	cmd.Flags().StringVar(&tokenFile, "token-file", "", "file holding the enrollment token")
	return cmd
}

// resolveToken picks the token from the flag, the file or the environment (in that order).
func resolveToken(flag, file string, flagSet bool, env string) (string, error) {
	if flagSet && file != "" {
		return "", errors.New("give either --token or --token-file, not both")
	}
	switch {
	case flagSet:
		return strings.TrimSpace(flag), nil
	case file != "":
		b, err := os.ReadFile(file)
		if err != nil {
			return "", fmt.Errorf("token file: %w", err)
		}
		t := strings.TrimSpace(string(b))
		if t == "" {
			return "", fmt.Errorf("token file %s is empty", file)
		}
		return t, nil
	}
	return strings.TrimSpace(env), nil
}

// FQDN is this machine's fully qualified name: the hostname, canonicalised
// through the resolver when that gives a longer name.
func FQDN() (string, error) {
	h, err := os.Hostname()
	if err != nil {
		return "", fmt.Errorf("host name: %w (pass --name)", err)
	}
	h = strings.ToLower(strings.TrimSuffix(h, "."))
	if strings.Contains(h, ".") {
		return h, nil
	}
	if cname, err := net.LookupCNAME(h); err == nil {
		if c := strings.ToLower(strings.TrimSuffix(cname, ".")); strings.HasPrefix(c, h+".") {
			return c, nil
		}
	}
	if addrs, err := net.LookupHost(h); err == nil {
		for _, ad := range addrs {
			if names, err := net.LookupAddr(ad); err == nil {
				for _, n := range names {
					if n = strings.ToLower(strings.TrimSuffix(n, ".")); strings.HasPrefix(n, h+".") {
						return n, nil
					}
				}
			}
		}
	}
	return h, nil
}

// Status is what `status --json` prints (every key snake_case).
type Status struct {
	DataDir       string          `json:"data_dir"`
	Primary       string          `json:"primary"`                  // the first primary
	Primaries     []string        `json:"primaries"`                // every primary, in order of preference
	PrimarySource string          `json:"primary_source,omitempty"` // flag, config file, recorded by get-ca-cert
	Tunnels       []string        `json:"tunnels,omitempty"`
	Trusted       bool            `json:"trusted"`
	CAFingerprint []string        `json:"ca_fingerprints,omitempty"`
	Enrolled      bool            `json:"enrolled"`
	HostID        string          `json:"host_id,omitempty"`
	Names         []string        `json:"names,omitempty"`
	Serial        string          `json:"serial,omitempty"`
	NotBefore     time.Time       `json:"not_before,omitzero"`
	NotAfter      time.Time       `json:"not_after,omitzero"`
	Issuer        string          `json:"issuer,omitempty"`
	Health        health.Report   `json:"health"` // the same verdict self-check gives
	State         certstore.State `json:"state"`
}

// checkHealth is the verdict on this host's certificate, from the files in
// the data directory and the clock: what self-check and status both show.
func checkHealth(env *daemon.Env, now time.Time) (health.Report, []*x509.Certificate, error) {
	in := health.Input{Now: now, RenewBefore: env.Config.RenewBefore}
	cas, err := env.Store.CA()
	if err != nil && !errors.Is(err, certstore.ErrNoTrust) {
		return health.Report{}, nil, err
	}
	in.CAs = cas
	if id := env.Identity.Load(); id != nil {
		in.Cert, in.Chain = id.Cert, id.Chain
	}
	list, err := env.Store.CRL()
	switch {
	case err == nil:
		in.CRL = list
	case !errors.Is(err, certstore.ErrNoCRL):
		env.Log.Warn().Err(err).Msg("stored crl unreadable; treating it as missing")
	}
	if rl, err := env.Store.RootCRL(); err == nil {
		in.RootCRL = rl
	}
	return health.Check(in), cas, nil
}

func (a *app) collectStatus(env *daemon.Env) (Status, error) {
	s := Status{DataDir: env.Store.Dir(), Primary: env.Config.Primary.First(), Primaries: env.Config.Primary, PrimarySource: string(env.Config.PrimarySource), Tunnels: env.Config.Tunnels}
	rep, cas, err := checkHealth(env, time.Now())
	if err != nil {
		return s, err
	}
	s.Health = rep
	s.Trusted = cas != nil
	for _, ca := range cas {
		s.CAFingerprint = append(s.CAFingerprint, pki.Fingerprint(ca))
	}
	// NewEnv has warned about a damaged state.json; this is the rebuilt one.
	if s.State, err = env.Store.State(); err != nil && !errors.Is(err, certstore.ErrStateDamaged) {
		return s, err
	}
	id := env.Identity.Load()
	if id == nil {
		return s, nil
	}
	s.Enrolled = true
	s.HostID = pki.HostIDFromCert(id.Cert)
	s.Names = id.Cert.DNSNames
	s.Serial = renew.Serial(id.Cert.SerialNumber)
	s.NotBefore, s.NotAfter = id.Cert.NotBefore, id.Cert.NotAfter
	s.Issuer = id.Cert.Issuer.String()
	return s, nil
}

func (a *app) status() *cobra.Command {
	var asJSON bool
	cmd := &cobra.Command{
		Use:   "status [--json]",
		Short: "Show the primary, trust, certificate, health (as self-check), level, route and renewal/CRL times",
		Long:  "Exits 0 whenever it can show the data directory; the health line is self-check's verdict\n(self-check is the one whose exit code says good 0, cannot tell 1, bad 2).",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			env, err := a.env(cmd, needDataDir)
			if err != nil {
				return err
			}
			s, err := a.collectStatus(env)
			if err != nil {
				return err
			}
			if asJSON {
				enc := json.NewEncoder(a.io.Out)
				enc.SetIndent("", "  ")
				return enc.Encode(s)
			}
			printStatus(a.io.Out, s, time.Now())
			return nil
		},
	}
	cmd.Flags().BoolVar(&asJSON, "json", false, "print JSON")
	return cmd
}

// healthLine is the verdict in words, as status and self-check print it.
func healthLine(r health.Report) string {
	switch r.Verdict {
	case health.Good:
		return "good: " + r.Reason
	case health.Bad:
		return "BAD: " + r.Reason
	}
	return "cannot tell: " + r.Reason
}

func ts(t time.Time, now time.Time) string {
	if t.IsZero() {
		return "never"
	}
	d := t.Sub(now).Round(time.Second)
	rel := "in " + human(d)
	if d <= 0 {
		rel = human(-d) + " ago"
	}
	return t.UTC().Format(time.RFC3339) + " (" + rel + ")"
}

func printStatus(w interface{ Write([]byte) (int, error) }, s Status, now time.Time) {
	line := func(k, v string) { fmt.Fprintf(w, "%-17s %s\n", k+":", v) }
	line("data directory", s.DataDir)
	primary := orNone(strings.Join(s.Primaries, ", "))
	if s.PrimarySource != "" {
		primary += " (" + s.PrimarySource + ")"
	}
	line("primary", primary)
	if len(s.Tunnels) > 0 {
		line("tunnels", strings.Join(s.Tunnels, ", "))
	}
	if !s.Trusted {
		line("trust", "none: run get-ca-cert")
	} else {
		line("trusted CA", strings.Join(s.CAFingerprint, ", "))
	}
	if !s.Enrolled {
		line("certificate", "none: run get-cert")
	} else {
		line("host ID", s.HostID)
		line("names", strings.Join(s.Names, ", "))
		line("serial", s.Serial)
		line("issuer", s.Issuer)
		line("valid from", ts(s.NotBefore, now))
		line("valid until", ts(s.NotAfter, now))
	}
	line("health", healthLine(s.Health))
	st := s.State
	level := "unknown"
	if st.Level != "" {
		level = fmt.Sprintf("%s (CRL refresh every %s)", st.Level, st.CRLInterval())
	}
	line("level", level)
	route := orNone(st.Route)
	if st.Node != "" && strings.HasPrefix(st.Route, "direct") {
		route += " (answered at " + st.Node + ")"
	}
	if !st.RouteSince.IsZero() {
		route += " since " + st.RouteSince.UTC().Format(time.RFC3339)
	}
	line("route", route)
	line("last issue/renew", ts(st.LastRenewal, now))
	if st.LastRenewalError != "" {
		line("renewal error", st.LastRenewalError)
	}
	if s.Enrolled {
		line("next renewal", ts(s.Health.RenewalAt, now))
	}
	line("last CRL refresh", ts(st.LastCRLRefresh, now))
	if st.LastCRLError != "" {
		line("CRL error", st.LastCRLError)
	}
	line("next CRL refresh", ts(st.NextCRLRefresh, now))
}

// human is d rounded for people: "3d4h" beyond two days, else Go's form.
func human(d time.Duration) string {
	if d >= 48*time.Hour {
		days := d / (24 * time.Hour)
		return fmt.Sprintf("%dd%dh", days, (d-days*24*time.Hour)/time.Hour)
	}
	return d.String()
}

func orNone(s string) string {
	if s == "" {
		return "none"
	}
	return s
}

func (a *app) selfCheck() *cobra.Command {
	var asJSON bool
	cmd := &cobra.Command{
		Use:   "self-check [--json]",
		Short: "Check this host's certificate: exit 0 good, 2 bad (revoked, expired, not from the trusted CA), 1 cannot tell",
		Long: "Checks the certificate against the trust store, the stored CRL and the clock (no network).\n" +
			"Exit 0: good. Exit 2: bad — revoked, expired, not yet valid, or not chaining to the trusted CA.\n" +
			"Exit 1: cannot tell — no certificate, no trust store, no CRL, a CRL not signed by the trusted CA\n" +
			"or past its next update (run get-crl), or the data directory cannot be read.",
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			env, err := a.env(cmd, needDataDir)
			if err != nil {
				return err
			}
			rep, _, err := checkHealth(env, time.Now())
			if err != nil {
				return err
			}
			if asJSON {
				enc := json.NewEncoder(a.io.Out)
				enc.SetIndent("", "  ")
				if err := enc.Encode(rep); err != nil {
					return err
				}
			} else {
				if rep.Serial != "" {
					fmt.Fprintf(a.io.Out, "serial %s: revoked=%t expired=%t chains=%t renewal_due=%t (due %s) crl=%s\n",
						rep.Serial, rep.Revoked, rep.Expired, rep.ChainsToTrustedCA, rep.RenewalDue, rep.RenewalAt.UTC().Format(time.RFC3339), crlWord(rep))
				}
				fmt.Fprintln(a.io.Out, "health: "+healthLine(rep))
			}
			if rep.Verdict == health.Good {
				return nil
			}
			return &ExitError{Code: rep.ExitCode, Err: errors.New(healthLine(rep))}
		},
	}
	cmd.Flags().BoolVar(&asJSON, "json", false, "print JSON")
	return cmd
}

func crlWord(r health.Report) string {
	switch {
	case !r.CRLPresent:
		return "none"
	case !r.CRLSignedByTrustedCA:
		return "not-from-trusted-ca"
	case r.CRLStale:
		return "stale"
	}
	return "current"
}

func (a *app) getCRL() *cobra.Command {
	return &cobra.Command{
		Use:   "get-crl",
		Short: "Fetch the primary's CRL now (verified against the trust store)",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			env, err := a.env(cmd, needPrimary)
			if err != nil {
				return err
			}
			list, err := (&crl.Refresher{Store: env.Store, State: env.Store, Client: env.Client, Now: time.Now}).Refresh(cmd.Context())
			if err != nil {
				return err
			}
			fmt.Fprintf(a.io.Out, "CRL number %v, %d revoked, this update %s, next update %s; written to %s\n",
				list.Number, len(list.RevokedCertificateEntries), list.ThisUpdate.UTC().Format(time.RFC3339),
				list.NextUpdate.UTC().Format(time.RFC3339), env.Store.Path(certstore.CRLFile))
			return nil
		},
	}
}

func (a *app) renew() *cobra.Command {
	return &cobra.Command{
		Use:   "renew",
		Short: "Renew the certificate now over mutual TLS (new key unless keep_key)",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			env, err := a.env(cmd, needPrimary)
			if err != nil {
				return err
			}
			cfg := env.Config
			r := &renew.Renewer{Store: env.Store, Client: env.Client, Identity: env.Identity, Now: time.Now,
				Settings: func() renew.Settings { return daemon.Settings(cfg) },
				RefreshCRL: func(ctx context.Context) error {
					_, err := (&crl.Refresher{Store: env.Store, State: env.Store, Client: env.Client, Now: time.Now}).Refresh(ctx)
					return err
				}}
			id, err := r.Renew(cmd.Context())
			if err != nil {
				return err
			}
			fmt.Fprintf(a.io.Out, "certificate renewed: serial %s, valid until %s\n", renew.Serial(id.Cert.SerialNumber), id.Cert.NotAfter.UTC().Format(time.RFC3339))
			return nil
		},
	}
}

func (a *app) run() *cobra.Command {
	return &cobra.Command{
		Use:   "run",
		Short: "Run in the foreground (what the service runs): renew, refresh the CRL, watch the config",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			opts, _, err := a.daemonOptions(cmd)
			if err != nil {
				return err
			}
			return svc.Run(a.svcConfig(cmd, "hostcert-agent"), func(ctx context.Context) error { return daemon.Run(ctx, opts) })
		},
	}
}

func (a *app) svcConfig(cmd *cobra.Command, name string) svc.Config {
	args := []string{"run"}
	// The config file goes into the service's command line when given or
	// present; without one, run finds the primary get-ca-cert recorded (an
	// explicit --config naming a missing file would stop it from starting).
	if _, err := os.Stat(a.configPath); err == nil || cmd.Flags().Changed("config") {
		if p, err := filepath.Abs(a.configPath); err == nil {
			args = append(args, "--config", p)
		}
	}
	// Every other configuration flag given to `service install` goes into
	// the service's command line too (paths made absolute).
	persistent := cmd.Root().PersistentFlags()
	cmd.Flags().Visit(func(f *pflag.Flag) {
		if persistent.Lookup(f.Name) == nil {
			return
		}
		switch f.Name {
		case "config":
			return
		case "data":
			if p, err := filepath.Abs(f.Value.String()); err == nil {
				args = append(args, "--data", p)
			}
			return
		}
		if sv, ok := f.Value.(pflag.SliceValue); ok {
			for _, v := range sv.GetSlice() {
				args = append(args, "--"+f.Name, v)
			}
			return
		}
		args = append(args, "--"+f.Name+"="+f.Value.String())
	})
	return svc.Config{
		Name: name, DisplayName: "hostcert agent",
		Description: "Enrolls this host for a hostcert certificate and keeps it renewed.",
		Arguments:   args, SystemdUnit: packaging.SystemdUnit("hostcert-agent"),
		StopTimeout: 20 * time.Second,
	}
}

func (a *app) service() *cobra.Command {
	var name string
	cmd := &cobra.Command{
		Use:       "service install|uninstall|start|stop|restart|status",
		Short:     "Install or control the agent as a system service (systemd, Windows service manager)",
		Args:      cobra.ExactArgs(1),
		ValidArgs: svc.Actions,
		RunE: func(cmd *cobra.Command, args []string) error {
			out, err := svc.Control(a.svcConfig(cmd, name), args[0])
			if err != nil {
				return err
			}
			fmt.Fprintln(a.io.Out, out)
			return nil
		},
	}
	cmd.Flags().StringVar(&name, "service-name", "hostcert-agent", "service name (for several agents on one machine)")
	return cmd
}
