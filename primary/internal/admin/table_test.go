//go:build !windows

package admin

import (
	"context"
	"encoding/json"
	"errors"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/rs/zerolog"

	"github.com/hostcert/hostcert/primary/internal/store"
)

// TestTable checks every entry of the command table: a unique name that
// spells a CLI path under a documented group, help, a declared argument
// struct (every field a flag, a positional argument or a paging field,
// each flag with help, defaults that parse), audited when it changes
// state, and paging fields on paged operations.
func TestTable(t *testing.T) {
	if len(Ops()) < 16 {
		t.Fatalf("the table has %d operations, want at least 16", len(Ops()))
	}
	names := map[string]bool{}
	for _, op := range Ops() {
		t.Run(op.Name, func(t *testing.T) {
			if names[op.Name] {
				t.Errorf("operation %s declared twice", op.Name)
			}
			names[op.Name] = true
			if Lookup(op.Name) != op {
				t.Errorf("Lookup(%s) does not find it", op.Name)
			}
			path := op.Path()
			if len(path) > 2 || (len(path) == 2 && Groups[path[0]] == "") {
				t.Errorf("path %v: want a name or GROUP.NAME with a documented group", path)
			}
			if op.Short == "" || strings.HasSuffix(op.Short, ".") {
				t.Errorf("Short = %q, want one line of help without a full stop", op.Short)
			}
			if op.Mutates && !op.Audited {
				t.Errorf("changes state but is not audited")
			}
			if op.Audited && op.Audits == "" {
				t.Errorf("audited, but Audits does not say what the row records")
			}
			if !op.HasText() {
				t.Errorf("no text rendering")
			}
			args := op.NewArgs() // panics on a default that does not parse
			if reflect.TypeOf(args).Kind() != reflect.Pointer || reflect.TypeOf(op.NewResult()).Kind() != reflect.Pointer {
				t.Fatalf("NewArgs/NewResult are not pointers")
			}
			flags := map[string]bool{}
			hasAfter, hasLimit := false, false
			for _, f := range op.Fields() {
				switch {
				case f.Flag != "":
					if flags[f.Flag] || f.Flag == "json" || f.Flag == "limit" || f.Flag == "data" {
						t.Errorf("flag --%s declared twice or reserved", f.Flag)
					}
					flags[f.Flag] = true
					if f.Help == "" {
						t.Errorf("flag --%s has no help", f.Flag)
					}
				case f.Arg != "":
				case f.Name == "Limit" && op.Paged:
				case f.Internal:
				default:
					t.Errorf("field %s is neither a flag, a positional argument nor a paging field", f.Name)
				}
				hasAfter = hasAfter || f.Name == "After"
				hasLimit = hasLimit || f.Name == "Limit"
			}
			if op.Paged {
				if !hasAfter || !hasLimit {
					t.Errorf("paged, but its arguments lack After or Limit")
				}
				if n, err := op.Advance(args, op.NewResult()); n != 0 || err != nil {
					t.Errorf("Advance over an empty page = %d, %v, want 0 (the end)", n, err)
				}
			}
		})
	}
}

// badArgs are, per operation that takes arguments, a request its checks
// refuse and a part of the refusal. A new operation with arguments needs
// a row here (TestTableRefusesBadArguments fails without one).
var badArgs = map[string]struct{ args, want string }{
	CmdMappingList:        {`{"limit":-1}`, "want 0 or more"},
	CmdMappingApprove:     {`{}`, "no name given"},
	CmdMappingReject:      {`{}`, "no name given"},
	CmdMappingAdd:         {`{"name":"a.test"}`, "no host given"},
	CmdMappingRemove:      {`{}`, "no name given"},
	CmdMappingAutoApprove: {`{"state":"maybe"}`, "want on or off"},
	CmdMappingSettings:    {`{"auto_approve":true}`, "bad arguments"},
	CmdLevelSet:           {`{"level":"low"}`, "unknown security level"},
	CmdHostAdd:            {`{"names":["bad_name!"]}`, "invalid host name"},
	CmdHostRemove:         {`{"host":""}`, "no host given"},
	CmdHostList:           {`{"stale":"soon"}`, "--stale"},
	CmdHostShow:           {`{}`, "no host given"},
	CmdHostReissue:        {`{"host":"a.test","for":"31d"}`, "at most 30 days"},
	CmdTokenCreate:        {`{"name":"t","max_uses":0}`, "at least 1 use"},
	CmdTokenDelete:        {`{}`, "no token name"},
	CmdCertList:           {`{"expiring":"-3d"}`, "--expiring"},
	CmdCertRevoke:         {`{"host":"a.test","reason":"because"}`, "unknown revocation reason"},
	CmdExplain:            {`{"name":"a.test","from":"nowhere"}`, "not an IP address"},
	CmdAudit:              {`{"limit":-1}`, "want 0 or more"},
	CmdInventory:          {`{"stale":"0s"}`, "--stale"},
	CmdCAShow:             {`{"pem":true}`, "bad arguments"}, // --pem is the CLI's alone
	CmdLevelGet:           {`{"level":"high"}`, "bad arguments"},
	CmdTokenList:          {`{"all":true}`, "bad arguments"},
	CmdTokenCleanup:       {`{"before":"1d"}`, "bad arguments"},
	CmdConsoleLogin:       {`{"valid_for":"2h"}`, "--valid-for"},
	CmdCARotate:           {`{"root_key_file":"root-key.pem"}`, "absolute path"},
	CmdCARetireRoot:       {`{"fingerprint":"AB:CD"}`, "fingerprint"},
	CmdAdminAdd:           {`{"name":"../alice","csr":"x"}`, "administrator name"},
	CmdAdminList:          {`{"name":"alice"}`, "bad arguments"},
	CmdAdminRevoke:        {`{"name":"alice","reason":"because"}`, "unknown revocation reason"},
	CmdCARevokeIssuing:    {`{"issuing":"0011223344556677","reason":"keyCompromise","root_key_file":"k.pem"}`, "absolute path"},
	CmdCASignRootCRL:      {`{"root_key_file":"k.pem"}`, "absolute path"},
}

// TestTableRefusesBadArguments: over the real socket, every operation
// refuses an unknown argument and its own bad arguments with one line,
// before its handler runs; an operation that changes state audits the
// refusal (outcome error), the others do not.
func TestTableRefusesBadArguments(t *testing.T) {
	base := serveTempStore(t)
	c := Client{Dir: base.dir}
	ctx := context.Background()
	for _, op := range Ops() {
		t.Run(op.Name, func(t *testing.T) {
			bad, ok := badArgs[op.Name]
			if !ok {
				t.Fatalf("no bad arguments for %s in badArgs", op.Name)
			}
			before := auditRows(t, base.store)
			for _, tc := range []struct{ args, want string }{{`{"no_such_argument":1}`, "bad arguments"}, bad} {
				err := c.Call(ctx, op.Name, json.RawMessage(tc.args), nil)
				var ce *CommandError
				if !errors.As(err, &ce) || !strings.Contains(ce.Reason, tc.want) || strings.Contains(ce.Reason, "\n") {
					t.Errorf("%s %s = %v, want a one-line refusal containing %q", op.Name, tc.args, err, tc.want)
				}
			}
			var errRows int
			for _, r := range auditRows(t, base.store)[len(before):] {
				if r.Action != op.Name || r.Outcome != "error" {
					t.Errorf("audit row %+v after refused %s requests", r, op.Name)
				}
				errRows++
			}
			if want := map[bool]int{true: 2, false: 0}[op.Mutates]; errRows != want {
				t.Errorf("%s: %d error rows audited for 2 refused requests, want %d", op.Name, errRows, want)
			}
		})
	}
}

type tempServer struct {
	dir   string
	store *store.Store
}

func serveTempStore(t *testing.T) tempServer {
	t.Helper()
	dir := serveTemp(t, zerolog.Nop())
	st, err := store.Open(context.Background(), dir+"/primary.db")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { st.Close() })
	return tempServer{dir: dir, store: st}
}

func auditRows(t *testing.T, st *store.Store) []store.Audit {
	t.Helper()
	rows, err := st.ListAuditPage(context.Background(), time.Time{}, 0, 10_000)
	if err != nil {
		t.Fatal(err)
	}
	return rows
}
