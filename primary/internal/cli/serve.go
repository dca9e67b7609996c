package cli

import (
	"context"
	"errors"
	"fmt"
	"os"
	"os/signal"
	"syscall"
	"time"

	"github.com/spf13/cobra"

	"github.com/hostcert/hostcert/common/atomicfile"
	"github.com/hostcert/hostcert/common/hostname"
	"github.com/hostcert/hostcert/common/logging"
	"github.com/hostcert/hostcert/common/pki"
	"github.com/hostcert/hostcert/primary/internal/ca"
	"github.com/hostcert/hostcert/primary/internal/server"
	"github.com/hostcert/hostcert/primary/internal/verify"
)

// InitResult is what init prints with --json.
type InitResult struct {
	DataDir       string   `json:"data_dir"`
	Fingerprint   string   `json:"fingerprint"`
	PrimaryHostID string   `json:"primary_host_id"`
	Names         []string `json:"names"`
	KeyAlgorithm  string   `json:"key_algorithm"` // the root's
	NotAfter      string   `json:"not_after"`     // the root's
	// The issuing CA's, and where the root's key went when it is offline.
	IssuingKeyAlgorithm string `json:"issuing_key_algorithm"`
	IssuingNotAfter     string `json:"issuing_not_after"`
	RootKeyOut          string `json:"root_key_out,omitempty"`
}

func initCmd() *cobra.Command {
	var (
		names      []string
		keyAlg     string
		issuingAlg string
		rootKeyOut string
		node       string
		sf         storeFlags
	)
	cmd := &cobra.Command{
		Use:   "init --data DIR --name PRIMARY_DNS_NAME [--name ...]",
		Short: "create the CA, the primary's TLS certificate, its host ID and the database",
		Long: `init creates the data directory (owner-only), the CA hierarchy — a self-signed
root (ECDSA P-384 by default, 20 years) and an issuing CA under it (ECDSA P-256
by default, 5 years, path length 0) that signs host certificates — the
primary's own TLS server certificate for the given names (host names only:
agents reach the primary by name, and "primary_dial" in their config connects
to an address) issued by the issuing CA, the primary's host ID and the
database, and prints the root's SHA-256 fingerprint: give it to the hosts'
admins, who confirm it at "hostcert-agent get-ca-cert".

With --root-key-out FILE the root's private key is written to FILE and never
into the data directory: the server issues without it; "ca rotate" then needs
it back with --root-key FILE.

It refuses to touch a data directory that already holds a CA.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if len(names) == 0 {
				return errors.New("init: at least one --name (the primary's DNS name) is required")
			}
			for i, n := range names {
				c, err := hostname.ForServer(n)
				if err != nil {
					return fmt.Errorf("init: --name: %w", err)
				}
				names[i] = c
			}
			alg, err := pki.ParseKeyAlgorithm(keyAlg)
			if err != nil {
				return err
			}
			target, warning, err := sf.target()
			if err != nil {
				return err
			}
			if warning != "" {
				fmt.Fprintf(cmd.ErrOrStderr(), "%s: warning: %s\n", Program, warning)
			}
			dir := dataDir(cmd)
			for _, p := range []string{ca.RootPath(dir), ca.CertPath(dir)} {
				if _, err := os.Stat(p); err == nil {
					return fmt.Errorf("%s already holds a CA; refusing to overwrite it", dir)
				}
			}
			if err := atomicfile.MkdirPrivate(dir); err != nil {
				return fmt.Errorf("create data directory %s: %w", dir, err)
			}
			// The store first: an unreachable database must not leave a CA
			// without its database behind.
			st, err := server.OpenStore(cmd.Context(), dir, target)
			if err != nil {
				return err
			}
			fleet, err := st.FleetCA(cmd.Context())
			if cerr := st.Close(); err == nil && cerr != nil {
				err = fmt.Errorf("init: close database: %w", cerr)
			}
			if err != nil {
				return err
			}
			if fleet != "" {
				return fmt.Errorf("init: the database already serves the fleet of CA %s; to add a node to it, run `hostcert-primary join`", fleet)
			}
			ialg, err := pki.ParseKeyAlgorithm(issuingAlg)
			if err != nil {
				return err
			}
			c, err := ca.Init(dir, ca.InitOptions{Names: names, KeyAlg: alg, IssuingKeyAlg: ialg, RootKeyOut: rootKeyOut}, time.Now())
			if err != nil {
				if errors.Is(err, ca.ErrExists) {
					return fmt.Errorf("%s already holds a CA; refusing to overwrite it", dir)
				}
				return fmt.Errorf("init: %w", err)
			}
			if err := claimFleet(cmd.Context(), dir, target, nodeName(node), c); err != nil {
				return err
			}
			if err := writeNodeRecord(dir, newNodeRecord(nodeName(node), sf, target)); err != nil {
				return err
			}
			res := InitResult{
				DataDir: dir, Fingerprint: c.Fingerprint(), PrimaryHostID: c.PrimaryHostID(),
				Names: names, KeyAlgorithm: string(alg),
				NotAfter:            c.Root().NotAfter.UTC().Format(time.RFC3339),
				IssuingKeyAlgorithm: string(ialg), IssuingNotAfter: c.Certificate().NotAfter.UTC().Format(time.RFC3339),
				RootKeyOut: rootKeyOut,
			}
			if wantJSON(cmd) {
				return printJSON(cmd, res)
			}
			out := cmd.OutOrStdout()
			fmt.Fprintf(out, "CA created in %s: root %s valid until %s, issuing CA %s valid until %s\n", dir, alg, res.NotAfter, ialg, res.IssuingNotAfter)
			if rootKeyOut != "" {
				fmt.Fprintf(out, "root key written to %s (not in the data directory): keep it offline\n", rootKeyOut)
			}
			fmt.Fprintf(out, "primary host ID: %s\n", res.PrimaryHostID)
			fmt.Fprintf(out, "root CA fingerprint (SHA-256):\n%s\n", res.Fingerprint)
			return nil
		},
	}
	cmd.Flags().StringArrayVar(&names, "name", nil, "DNS name or IP address of the primary, for its TLS certificate (repeatable; an address becomes an IP SAN)")
	cmd.Flags().StringVar(&node, "node-name", "", "this node's name in the audit log (default: the host name)")
	cmd.Flags().StringVar(&keyAlg, "key-alg", string(pki.ECDSAP384), "root CA key algorithm: ecdsa-p256, ecdsa-p384, rsa-2048, rsa-3072 or rsa-4096")
	cmd.Flags().StringVar(&issuingAlg, "issuing-key-alg", string(pki.ECDSAP256), "issuing CA key algorithm (same choices)")
	cmd.Flags().StringVar(&rootKeyOut, "root-key-out", "", "write the root's private key to FILE instead of the data directory (offline root)")
	sf.add(cmd)
	addJSON(cmd)
	return cmd
}

func serveCmd() *cobra.Command {
	var cfg server.Config
	var logFormat, logLevel string
	var sf storeFlags
	cmd := &cobra.Command{
		Use:   "serve --data DIR [--listen :1556] [--tunnel-addr ADDR ...]",
		Short: "run the HTTPS API and the admin socket (foreground; what the service runs)",
		Long: `serve runs the primary: the HTTPS API (GET /v1/ca, /v1/crl, /v1/info,
POST /v1/enroll, /v1/renew) on --listen, the admin socket DIR/admin.sock and
the web console on --console (loopback by default; --console "" turns it off).
It logs one line "serving" with the address when it is ready, and stops
gracefully on SIGINT or SIGTERM.

hostcert-tunnel always starts its connections with a PROXY protocol v2 header
carrying the DMZ host's address. Declare each media server running it with
--tunnel-addr (an IP address or CIDR prefix): its connections must start with
that header, and the relayed address is what DNS verification checks. A PROXY
header from any other peer is logged at warn, counted and audited, and that
connection's requests are not verified (neither address counts): a DMZ host
behind an undeclared tunnel needs a token.

At most --max-conns API connections are held open; one more is answered with
a plain HTTP 503 (Retry-After: 5) before any TLS and closed.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			log, err := logging.New(logging.Options{Format: logging.Format(logFormat), Level: logLevel, Out: cmd.ErrOrStderr()})
			if err != nil {
				return err
			}
			cfg.DataDir, cfg.Log = dataDir(cmd), log
			var warning string
			if cfg.Store, warning, err = sf.target(); err != nil {
				return err
			}
			rec, err := readNodeRecord(cfg.DataDir)
			if err != nil {
				return err
			}
			if cfg.Store, err = recordedStore(cfg.DataDir, cfg.Store, rec, readStoreFile); err != nil {
				return err
			}
			if rec != nil {
				cfg.Node = rec.Node
			}
			if warning != "" {
				log.Warn().Msg(warning)
			}
			ctx, stop := signal.NotifyContext(cmd.Context(), os.Interrupt, syscall.SIGTERM)
			defer stop()
			srv, err := server.New(ctx, cfg)
			if err != nil {
				return err
			}
			if err := srv.Run(ctx); err != nil && !errors.Is(err, context.Canceled) {
				return err
			}
			return nil
		},
	}
	f := cmd.Flags()
	f.StringVar(&cfg.Listen, "listen", ":1556", "address of the HTTPS API")
	f.StringSliceVar(&cfg.TunnelAddrs, "tunnel-addr", nil, "IP address or CIDR of a tunnel that relays clients with PROXY protocol v2 (repeatable)")
	f.StringVar(&cfg.DNSServer, "dns-server", "", "DNS server (HOST[:PORT]) for verifying host names; default: the system resolver")
	f.IntVar(&cfg.MaxConns, "max-conns", server.DefaultMaxConns, "most API connections held open at once; more are answered 503 and closed")
	f.IntVar(&cfg.DNS.MaxLookups, "dns-max-lookups", verify.DefaultMaxLookups, "most DNS verification lookups in flight; more are not verified (dns busy)")
	f.DurationVar(&cfg.DNS.TTL, "dns-cache-ttl", verify.DefaultCacheTTL, "how long a DNS answer (addresses or no such host) is reused; negative: no cache")
	f.StringArrayVar(&cfg.Names, "name", nil, "DNS names or IP addresses of the primary's TLS certificate (repeatable); default: keep the current ones")
	f.StringVar(&cfg.Console, "console", "127.0.0.1:1557", `address of the web console (HTTPS, the primary's certificate; log in with "hostcert-primary console login"); "" turns it off`)
	f.BoolVar(&cfg.Profiling, "profiling", false, "also serve Go's profiles (net/http/pprof) at /debug/pprof/ on the --metrics-listen address")
	f.StringVar(&cfg.MetricsListen, "metrics-listen", "", "serve Prometheus metrics at /metrics on this address (e.g. 127.0.0.1:9556; a bare port binds 127.0.0.1); off by default")
	f.DurationVar(&cfg.CertValidity, "cert-validity", 0, "validity of host certificates (default 8760h = 365 days)")
	sf.add(cmd)
	f.StringVar(&logFormat, "log-format", "auto", "log format: auto, console or json")
	f.StringVar(&logLevel, "log-level", "info", "log level: debug, info, warn or error")
	return cmd
}

// claimFleet records the new CA as the fleet's in the store (a second init
// racing this one on the same database loses here) and the primary's names
// as reserved for every node. On PostgreSQL it also makes the fleet key
// (ca/fleet-key) with which the nodes hand each other a rotated CA, and
// records its identifier.
func claimFleet(ctx context.Context, dir, target, node string, c *ca.CA) error {
	st, err := server.OpenStore(ctx, dir, target)
	if err != nil {
		return err
	}
	defer st.Close()
	if err := st.ClaimCA(ctx, c.Fingerprint(), nil); err != nil {
		return fmt.Errorf("init: %w", err)
	}
	if err := st.RecordPrimaryNames(ctx, node, c.PrimaryNames(), time.Now()); err != nil {
		return fmt.Errorf("init: %w", err)
	}
	if st.Backend() != "postgres" {
		return nil
	}
	key, err := ca.CreateFleetKey(dir)
	if err != nil {
		return fmt.Errorf("init: %w", err)
	}
	if _, err := st.ClaimFleetKey(ctx, key.ID()); err != nil {
		return fmt.Errorf("init: %w", err)
	}
	return nil
}
