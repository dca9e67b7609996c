package cli

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"time"

	"github.com/spf13/cobra"

	"github.com/hostcert/hostcert/common/atomicfile"
	"github.com/hostcert/hostcert/common/hostname"
	"github.com/hostcert/hostcert/common/pki"
	"github.com/hostcert/hostcert/primary/internal/ca"
	"github.com/hostcert/hostcert/primary/internal/server"
	"github.com/hostcert/hostcert/primary/internal/store"
)

// NodeFile is the record init and join leave in the data directory: the
// node's name and where its store is, so that `serve` without --store uses
// the store the node was set up with instead of a new, empty SQLite file.
const NodeFile = "node.json"

// nodeRecord is the content of NodeFile.
type nodeRecord struct {
	// Node names this node in the shared audit log.
	Node string `json:"node"`
	// Backend is "sqlite" or "postgres".
	Backend string `json:"backend"`
	// Store is the --store value init or join was given ("" when it came
	// from --store-file or the environment, or for the default SQLite file).
	Store string `json:"store,omitempty"`
	// StoreFile is the --store-file init or join was given.
	StoreFile string `json:"store_file,omitempty"`
}

// readNodeRecord reads dir's record; nil (no error) when there is none (a
// data directory made before the record existed: SQLite).
func readNodeRecord(dir string) (*nodeRecord, error) {
	b, err := os.ReadFile(filepath.Join(dir, NodeFile))
	if errors.Is(err, fs.ErrNotExist) {
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("read %s: %w", NodeFile, err)
	}
	var r nodeRecord
	if err := json.Unmarshal(b, &r); err != nil {
		return nil, fmt.Errorf("%s: %w", filepath.Join(dir, NodeFile), err)
	}
	return &r, nil
}

// writeNodeRecord writes dir's record owner-only (it may hold a DSN).
func writeNodeRecord(dir string, r nodeRecord) error {
	b, err := json.MarshalIndent(r, "", "  ")
	if err != nil {
		return err
	}
	if err := atomicfile.WritePrivate(filepath.Join(dir, NodeFile), append(b, '\n')); err != nil {
		return fmt.Errorf("record the node's store: %w", err)
	}
	return nil
}

// newNodeRecord is what init and join record for the store flags they were
// given (target is what the flags and the environment resolved to).
func newNodeRecord(node string, sf storeFlags, target string) nodeRecord {
	r := nodeRecord{Node: node, Backend: "sqlite", StoreFile: sf.file}
	if abs, err := filepath.Abs(sf.file); err == nil && sf.file != "" {
		r.StoreFile = abs // serve may run from another directory
	}
	if store.IsPostgres(target) {
		r.Backend = "postgres"
	}
	if sf.file == "" {
		r.Store = sf.dsn
	}
	return r
}

// recordedStore decides the store `serve` opens: target (from --store,
// --store-file or the environment) when given, else what init or join
// recorded. A PostgreSQL node is never served from a SQLite file (a new,
// empty one would be a different fleet): a SQLite target is refused, and so
// is no target when the DSN came from the environment and is not there now.
func recordedStore(dir, target string, rec *nodeRecord, read func(string) (string, error)) (string, error) {
	if rec == nil {
		return target, nil
	}
	pg := rec.Backend == "postgres"
	if target != "" {
		if pg && !store.IsPostgres(target) {
			return "", fmt.Errorf("%s keeps its store in PostgreSQL (%s); %s is not a postgres:// DSN", dir, NodeFile, target)
		}
		return target, nil
	}
	switch {
	case rec.StoreFile != "":
		return read(rec.StoreFile)
	case rec.Store != "" || !pg:
		return rec.Store, nil
	}
	return "", fmt.Errorf("%s keeps its store in PostgreSQL; give its DSN with --store-file or %s", dir, StoreEnv)
}

// nodeName is name, else the machine's host name.
func nodeName(name string) string {
	if name != "" {
		return name
	}
	h, err := os.Hostname()
	if err != nil {
		return ""
	}
	return h
}

// JoinResult is what join prints with --json.
type JoinResult struct {
	DataDir       string   `json:"data_dir"`
	Node          string   `json:"node"`
	Fingerprint   string   `json:"fingerprint"`
	PrimaryHostID string   `json:"primary_host_id"`
	Names         []string `json:"names"`
}

func joinCmd() *cobra.Command {
	var (
		name, from string
		services   []string
		sf         storeFlags
	)
	cmd := &cobra.Command{
		Use:   "join --data DIR --ca-from CA_DIR --store-file FILE --name NODE_DNS_NAME --service-name PRIMARY_DNS_NAME",
		Short: "make this machine another primary node of a fleet whose store is PostgreSQL",
		Long: `join sets up the data directory of a second (third, …) primary node that
serves the same fleet from the same PostgreSQL database as the first.

--ca-from is a directory holding a copy of the first node's DIR/ca directory
(roots, issuing CAs and their keys, the fleet key), copied over an encrypted
channel by the operator: no key goes into the database in clear. join checks
that the database belongs to that CA and fleet key, reserves the node's names
on every node, gives the node its own host ID and its own TLS certificate for
the --service-name(s) (the address agents use) and --name (this node's own
name), and records the store, so that "serve --data DIR" uses it. Remove the
copy of the keys afterwards. Later CA rotations reach the node through the
database (sealed with the fleet key).`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if name == "" || from == "" {
				return errors.New("join: --name (this node's DNS name) and --ca-from (a copy of the first node's ca directory) are required")
			}
			target, warning, err := sf.target()
			if err != nil {
				return err
			}
			if warning != "" {
				fmt.Fprintf(cmd.ErrOrStderr(), "%s: warning: %s\n", Program, warning)
			}
			if !store.IsPostgres(target) {
				return errors.New("join: nodes share a PostgreSQL store: give its postgres:// DSN with --store-file, --store or " + StoreEnv)
			}
			dir := dataDir(cmd)
			st, err := server.OpenStore(cmd.Context(), dir, target)
			if err != nil {
				return err
			}
			defer st.Close()
			fleet, err := st.FleetCA(cmd.Context())
			if err != nil {
				return fmt.Errorf("join: %w", err)
			}
			if fleet == "" {
				return errors.New("join: the database serves no fleet yet; run `hostcert-primary init --store …` on the first node")
			}
			if err := checkFleetCA(from, fleet); err != nil {
				return err
			}
			if err := checkFleetKey(cmd.Context(), st, from); err != nil {
				return err
			}
			all := append(append([]string(nil), services...), name)
			// Reserved on every node before a certificate for them exists.
			var reserve []string
			for _, n := range all {
				k, err := hostname.ForServer(n)
				if err != nil {
					return fmt.Errorf("join: --name/--service-name: %w", err)
				}
				reserve = append(reserve, k)
			}
			if err := st.RecordPrimaryNames(cmd.Context(), name, reserve, time.Now()); err != nil {
				return fmt.Errorf("join: %w", err)
			}
			c, err := ca.Join(dir, from, all, time.Now())
			if err != nil {
				if errors.Is(err, ca.ErrExists) {
					return fmt.Errorf("%s already holds a CA; refusing to overwrite it", dir)
				}
				return err
			}
			if err := writeNodeRecord(dir, newNodeRecord(name, sf, target)); err != nil {
				return err
			}
			res := JoinResult{DataDir: dir, Node: name, Fingerprint: c.Fingerprint(), PrimaryHostID: c.PrimaryHostID(),
				Names: append(append([]string(nil), services...), name)}
			if wantJSON(cmd) {
				return printJSON(cmd, res)
			}
			out := cmd.OutOrStdout()
			fmt.Fprintf(out, "node %s joined the fleet of CA %s in %s\n", name, res.Fingerprint, dir)
			fmt.Fprintf(out, "primary host ID: %s\n", res.PrimaryHostID)
			fmt.Fprintf(out, "remove the copy of the CA key in %s\n", from)
			return nil
		},
	}
	f := cmd.Flags()
	f.StringVar(&name, "name", "", "this node's own DNS name or IP address (in its TLS certificate and in the audit log)")
	f.StringArrayVar(&services, "service-name", nil, "the fleet's shared DNS name or IP address that agents use (repeatable)")
	f.StringVar(&from, "ca-from", "", "directory holding a copy of the first node's ca directory")
	sf.add(cmd)
	addJSON(cmd)
	return cmd
}

// checkFleetKey refuses a copy whose fleet key (ca/fleet-key) is not the
// one the database records: the node would miss every rotation. A copy
// without one is accepted (a fleet set up before fleet keys existed; its
// first node to serve makes one).
func checkFleetKey(ctx context.Context, st *store.Store, from string) error {
	recorded, err := st.FleetKeyID(ctx)
	if err != nil {
		return fmt.Errorf("join: %w", err)
	}
	key, err := ca.ReadFleetKey(filepath.Join(from, filepath.Base(ca.FleetKeyPath(""))))
	switch {
	case errors.Is(err, ca.ErrNoFleetKey):
		if recorded != "" {
			return fmt.Errorf("join: %s has no fleet-key, and the fleet has one: copy the first node's whole ca directory", from)
		}
		return nil
	case err != nil:
		return fmt.Errorf("join: %w", err)
	case recorded != "" && key.ID() != recorded:
		return fmt.Errorf("join: the fleet key in %s is not the fleet's (the database records key %s, this one is %s)", from, recorded, key.ID())
	}
	return nil
}

// checkFleetCA refuses CA files that are not the fleet's CA, before
// anything is written: the fleet's recorded root must be one of the roots
// in from (root.pem; ca.pem and previous.pem in a single-CA directory).
func checkFleetCA(from, fleet string) error {
	var got []string
	for _, name := range []string{"root.pem", "ca.pem", "previous.pem"} {
		b, err := os.ReadFile(filepath.Join(from, name))
		if errors.Is(err, fs.ErrNotExist) {
			continue
		}
		if err != nil {
			return fmt.Errorf("join: %w", err)
		}
		certs, err := pki.ParseCerts(b)
		if err != nil {
			return fmt.Errorf("join: %s: %w", filepath.Join(from, name), err)
		}
		for _, c := range certs {
			if fp := pki.Fingerprint(c); fp == fleet {
				return nil
			} else if c.IsCA {
				got = append(got, fp)
			}
		}
		if name == "root.pem" {
			break // a hierarchy: ca.pem is not a root
		}
	}
	if len(got) == 0 {
		return fmt.Errorf("join: no CA certificate in %s (want a copy of the first node's ca directory)", from)
	}
	return fmt.Errorf("join: %w: the database's CA is %s, the one in %s is %s", store.ErrOtherCA, fleet, from, got[0])
}
