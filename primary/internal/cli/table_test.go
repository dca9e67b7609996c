package cli

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"fmt"
	"math/big"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/google/uuid"
	"github.com/spf13/cobra"

	"github.com/hostcert/hostcert/common/protocol"
	"github.com/hostcert/hostcert/primary/internal/admin"
	"github.com/hostcert/hostcert/primary/internal/ca"
	"github.com/hostcert/hostcert/primary/internal/server"
	"github.com/hostcert/hostcert/primary/internal/store"
)

// opSamples are, per operation, CLI arguments that succeed on the primary
// TestEveryOperation starts (a registry with a.test, a host seeded.test
// with a host ID and a certificate), in table order. A new operation needs
// a row here: the test fails without one.
var opSamples = map[string][]string{
	admin.CmdMappingList:        {"--pending"},
	admin.CmdMappingAdd:         {"seeded-alt.test", "seeded.test"},
	admin.CmdMappingApprove:     {"seeded-ask.test"},
	admin.CmdMappingReject:      {"seeded-ask2.test"},
	admin.CmdMappingRemove:      {"seeded-alt.test"},
	admin.CmdMappingAutoApprove: {"off"},
	admin.CmdMappingSettings:    {},
	admin.CmdCAShow:             {},
	admin.CmdLevelGet:           {},
	admin.CmdLevelSet:           {"medium"},
	admin.CmdHostAdd:            {"a.test", "b.test"},
	admin.CmdHostRemove:         {"b.test"},
	admin.CmdHostList:           {"--limit", "5"},
	admin.CmdHostShow:           {"seeded.test"},
	admin.CmdHostReissue:        {"seeded.test", "--for", "1h"},
	admin.CmdTokenCreate:        {"--name", "t1", "--max-uses", "2"},
	admin.CmdTokenList:          {},
	admin.CmdTokenDelete:        {"t1"},
	admin.CmdTokenCleanup:       {},
	admin.CmdCertList:           {"--host", "seeded.test"},
	admin.CmdCertRevoke:         {"seeded.test", "--reason", "cessationOfOperation"},
	admin.CmdExplain:            {"a.test", "--from", "127.0.0.1", "--nat"},
	admin.CmdAudit:              {"--since", "1h", "--limit", "3"},
	admin.CmdInventory:          {"--expiring", "30d", "--stale", "7d"},
	admin.CmdConsoleLogin:       {"--operator", "alice", "--valid-for", "5m"},
	admin.CmdCARotate:           {"--root"},
	admin.CmdCARetireRoot:       nil, // the root init made: filled in by TestEveryOperation
	admin.CmdAdminAdd:           nil, // alice, --out a temporary directory: filled in by TestEveryOperation
	admin.CmdAdminList:          {},
	admin.CmdAdminRevoke:        {"alice", "--reason", "privilegeWithdrawn"},
	admin.CmdCARevokeIssuing:    nil, // the issuing CA init made: filled in by TestEveryOperation
	admin.CmdCASignRootCRL:      {},
}

// seedHost gives name a host ID and a certificate in the store of dir,
// as an issuance would (the CLI tests run no agent).
func seedHost(t *testing.T, st *store.Store, name string, notAfter time.Time, now time.Time) store.Issuance {
	t.Helper()
	k, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	serial, _ := rand.Int(rand.Reader, new(big.Int).Lsh(big.NewInt(1), 120))
	tmpl := &x509.Certificate{SerialNumber: serial, Subject: pkix.Name{CommonName: name}, NotBefore: now.Add(-time.Minute), NotAfter: notAfter}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &k.PublicKey, k)
	if err != nil {
		t.Fatal(err)
	}
	id := uuid.NewString()
	is := store.Issuance{
		Kind: protocol.KindIssue, Host: store.Host{ID: id, Name: name},
		Cert: store.Cert{Serial: fmt.Sprintf("%X", serial), HostID: id, Names: []string{name}, IssuedAt: now,
			NotBefore: tmpl.NotBefore, NotAfter: notAfter, DER: der, Route: store.RouteDirect},
		Now: now, Audit: store.Audit{Actor: "api"},
	}
	if err := st.CommitIssuance(context.Background(), is); err != nil {
		t.Fatal(err)
	}
	return is
}

func withStore(t *testing.T, dir string, fn func(st *store.Store)) {
	t.Helper()
	st, err := store.Open(context.Background(), filepath.Join(dir, server.DBName))
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	fn(st)
}

// findCmd finds the command at path under root.
func findCmd(root *cobra.Command, path []string) *cobra.Command {
	c, rest, err := root.Find(path)
	if err != nil || len(rest) != 0 || c.Name() != path[len(path)-1] {
		return nil
	}
	return c
}

// TestEveryOperation: every operation of the command table is a CLI
// command at its path, with its help, and runs over the real admin socket
// of a real server (text and --json); every audited operation leaves its
// audit row, by the operator's uid. Every admin command of the CLI comes
// from the table (host import aside, which streams through host.add).
func TestEveryOperation(t *testing.T) {
	var firstRoot, firstIssuing string
	_, cmd := startPrimary(t, func(dir string) {
		withStore(t, dir, func(st *store.Store) {
			is := seedHost(t, st, "seeded.test", time.Now().Add(365*24*time.Hour), time.Now())
			// A renewal that asked for two more names: pending, for the
			// mapping operations.
			ask := is
			ask.Kind, ask.RenewedFrom, ask.Now = protocol.KindRenew, is.Cert.Serial, time.Now()
			ask.Cert.Serial += "01"
			ask.Claims = []string{"seeded-ask.test", "seeded-ask2.test"}
			if err := st.CommitIssuance(context.Background(), ask); err != nil {
				t.Fatal(err)
			}
		})
		c, err := ca.Load(dir)
		if err != nil {
			t.Fatal(err)
		}
		firstRoot = c.Fingerprint()
		firstIssuing = ca.ID(c.Certificate())
	})
	// ca rotate --root runs before ca retire-root, which retires the
	// root init made (seeded.test's certificate is from no root of ours).
	opSamples[admin.CmdCARetireRoot] = []string{firstRoot}
	opSamples[admin.CmdAdminAdd] = []string{"alice", "--out", t.TempDir()}
	opSamples[admin.CmdCARevokeIssuing] = []string{firstIssuing, "--reason", "keyCompromise"}
	root := NewRoot()
	actor := fmt.Sprintf("admin:%d", os.Getuid())
	lastID := int64(0)
	for _, op := range admin.Ops() {
		t.Run(op.Name, func(t *testing.T) {
			argv, ok := opSamples[op.Name]
			if !ok {
				t.Fatalf("no sample arguments for %s in opSamples", op.Name)
			}
			c := findCmd(root, op.Path())
			if c == nil {
				t.Fatalf("no CLI command at %v", op.Path())
			}
			if c.Short != op.Short {
				t.Errorf("%v: Short %q, want the table's %q", op.Path(), c.Short, op.Short)
			}
			help := op.Short // cobra shows Long instead when there is one
			if op.Long != "" {
				help = firstLine(op.Long)
			}
			if code, out, _ := run(t, append(op.Path(), "--help")...); code != 0 || !strings.Contains(out, help) || !strings.Contains(out, "Usage:") {
				t.Errorf("%v --help = exit %d, %q, want its help", op.Path(), code, out)
			}
			jsonArgs := append(append(slices.Clone(op.Path()), argv...), "--json")
			if op.Mutates {
				// Once, as JSON: the second run would find its work done.
				out := mustRun(t, cmd(jsonArgs...)...)
				if !strings.HasPrefix(strings.TrimSpace(out), "{") && !strings.HasPrefix(strings.TrimSpace(out), "[") {
					t.Errorf("%v = %q, want JSON", jsonArgs, out)
				}
			} else {
				mustRun(t, cmd(append(slices.Clone(op.Path()), argv...)...)...)
				var v any
				decode(t, mustRun(t, cmd(jsonArgs...)...), &v)
			}
			if !op.Audited {
				return
			}
			var rows []admin.AuditEntry
			decode(t, mustRun(t, cmd("audit", "--since", "1h", "--after", fmt.Sprint(lastID), "--json")...), &rows)
			found := false
			for _, r := range rows {
				lastID = max(lastID, r.ID)
				if r.Action == op.Name && r.Outcome == "ok" && r.Actor == actor {
					found = true
				}
			}
			if !found {
				t.Errorf("no audit row %s ok by %s after it ran; rows: %+v", op.Name, actor, rows)
			}
		})
	}

	// Every admin command of the CLI is an operation of the table.
	for _, c := range root.Commands() {
		if c.Name() == "init" || c.Name() == "join" || c.Name() == "serve" || c.Name() == "help" {
			continue
		}
		var leaves []*cobra.Command
		var walk func(c *cobra.Command)
		walk = func(c *cobra.Command) {
			if !c.HasSubCommands() {
				leaves = append(leaves, c)
			}
			for _, s := range c.Commands() {
				walk(s)
			}
		}
		walk(c)
		for _, l := range leaves {
			name := strings.TrimPrefix(strings.ReplaceAll(l.CommandPath(), " ", "."), Program+".")
			if strings.HasPrefix(name, "host.mapping.") { // host mapping X is mapping X
				name = strings.TrimPrefix(name, "host.")
			}
			if admin.Lookup(name) == nil && name != "host.import" {
				t.Errorf("CLI command %q is not in the command table", l.CommandPath())
			}
		}
	}
}
