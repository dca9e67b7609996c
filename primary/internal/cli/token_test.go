package cli

import (
	"context"
	"slices"
	"strings"
	"testing"

	"github.com/rs/zerolog"

	"github.com/hostcert/hostcert/primary/internal/admin"
	"github.com/hostcert/hostcert/primary/internal/server"
)

// TestTokenCreateChecks: token create refuses a max-uses below 1, a
// validity above 999 days and malformed bindings with one clear line, and
// token list (text and --json) shows a token's bindings, normalised.
func TestTokenCreateChecks(t *testing.T) {
	dir := tempDir(t)
	mustRun(t, "init", "--data", dir, "--name", "localhost", "--key-alg", "ecdsa-p256")
	ctx, cancel := context.WithCancel(context.Background())
	srv, err := server.New(ctx, server.Config{DataDir: dir, Listen: "127.0.0.1:0", Log: zerolog.Nop()})
	if err != nil {
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() { done <- srv.Run(ctx) }()
	t.Cleanup(func() { cancel(); <-done })
	cmd := func(args ...string) []string { return append(args, "--data", dir) }

	mustFail(t, "--max-uses: max uses 0: a token must allow at least 1 use", cmd("token", "create", "--name", "zero", "--max-uses", "0")...)
	mustFail(t, "--max-uses: max uses -3: a token must allow at least 1 use", cmd("token", "create", "--name", "neg", "--max-uses", "-3")...)
	mustFail(t, "--valid-for: token validity 1000d: at most 999 days", cmd("token", "create", "--name", "long", "--valid-for", "1000d")...)
	mustFail(t, "at most 999 days", cmd("token", "create", "--name", "long", "--valid-for", "999d1h")...)
	mustFail(t, "at least two labels", cmd("token", "create", "--name", "wide", "--bind-name", "*.com")...)
	mustFail(t, "only a whole leftmost label may be *", cmd("token", "create", "--name", "mid", "--bind-name", "a.*.example.com")...)
	mustFail(t, "did you mean 10.0.0.0/8", cmd("token", "create", "--name", "bits", "--bind-net", "10.1.2.3/8")...)
	var none []admin.Token
	decode(t, mustRun(t, cmd("token", "list", "--json")...), &none)
	if len(none) != 0 {
		t.Fatalf("refused creations left tokens behind: %+v", none)
	}

	code, _, errs := run(t, cmd("token", "create", "--name", "dmz", "--max-uses", "25", "--valid-for", "7d",
		"--bind-name", "*.DMZ.Example.com.", "--bind-name", "gw.example.com",
		"--bind-net", "192.0.2.0/24", "--bind-net", "2001:db8:1::/48")...)
	if code != 0 || !strings.Contains(errs, "bound to names *.dmz.example.com,gw.example.com; nets 192.0.2.0/24,2001:db8:1::/48") {
		t.Fatalf("token create with bindings = %d, stderr %q", code, errs)
	}
	mustRun(t, cmd("token", "create", "--name", "free")...)

	var toks []admin.Token
	decode(t, mustRun(t, cmd("token", "list", "--json")...), &toks)
	if len(toks) != 2 {
		t.Fatalf("token list --json = %+v, want 2 tokens", toks)
	}
	for _, tok := range toks {
		switch tok.Name {
		case "dmz":
			if !slices.Equal(tok.BindNames, []string{"*.dmz.example.com", "gw.example.com"}) ||
				!slices.Equal(tok.BindNets, []string{"192.0.2.0/24", "2001:db8:1::/48"}) || tok.MaxUses != 25 {
				t.Errorf("token list --json: dmz = %+v", tok)
			}
		case "free":
			if tok.BindNames != nil || tok.BindNets != nil || tok.MaxUses != 1 {
				t.Errorf("token list --json: free = %+v, want unbound, 1 use", tok)
			}
		}
	}
	if out := mustRun(t, cmd("token", "list", "--json")...); strings.Count(out, `"bind_names"`) != 1 || strings.Count(out, `"bind_nets"`) != 1 {
		t.Errorf("token list --json = %s, want bind_names and bind_nets only on the bound token", out)
	}
	out := mustRun(t, cmd("token", "list")...)
	if !strings.Contains(out, "BOUND TO") || !strings.Contains(out, "names *.dmz.example.com,gw.example.com; nets 192.0.2.0/24,2001:db8:1::/48") {
		t.Errorf("token list = %q, want the bindings of dmz", out)
	}
}
