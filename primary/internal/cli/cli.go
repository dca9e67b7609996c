// Package cli is the command line of hostcert-primary: `init` and `serve`,
// and the admin commands (SPEC §9) that talk to the running server over its
// admin socket. main only calls Main.
package cli

import (
	"context"
	"fmt"
	"io"
	"strings"

	"github.com/spf13/cobra"

	"github.com/hostcert/hostcert/common/svc"
	"github.com/hostcert/hostcert/common/version"
	"github.com/hostcert/hostcert/primary/internal/admin"
)

// Program is the binary's name.
const Program = "hostcert-primary"

// DefaultDataDir is where the primary keeps its CA, database and socket:
// /var/lib/hostcert/primary (%ProgramData%\hostcert\primary on Windows), the
// directory the packages and the systemd unit use.
func DefaultDataDir() string { return svc.DefaultDataDir("primary") }

// Main runs the command line and returns the exit code: 0 on success,
// 1 with a one-line reason on stderr otherwise.
func Main(ctx context.Context, args []string, stdout, stderr io.Writer) int {
	root := NewRoot()
	root.SetArgs(args)
	root.SetOut(stdout)
	root.SetErr(stderr)
	if err := root.ExecuteContext(ctx); err != nil {
		fmt.Fprintf(stderr, "%s: %s\n", Program, firstLine(err.Error()))
		return 1
	}
	return 0
}

// NewRoot builds the whole command tree.
func NewRoot() *cobra.Command {
	root := &cobra.Command{
		Use:   Program,
		Short: "hostcert primary server: CA, deployment policy, tokens, host registry, revocation and audit",
		Long: `hostcert-primary is the certificate authority of a hostcert fleet.

  init    creates the CA and the data directory
  join    sets up another node of a fleet on a shared PostgreSQL store
  serve   runs the HTTPS API and the admin socket

Every other command is an admin command: it talks to the running server over
the admin socket in the data directory (--data), which only the server's user
can open.`,
		Version:       version.String(Program),
		SilenceUsage:  true,
		SilenceErrors: true,
	}
	root.SetVersionTemplate("{{.Version}}\n")
	root.CompletionOptions.DisableDefaultCmd = true
	root.PersistentFlags().String("data", DefaultDataDir(), "data directory of the primary (CA, database, admin socket)")
	root.AddCommand(initCmd(), joinCmd(), serveCmd())
	root.AddCommand(adminCmds()...)
	return root
}

func dataDir(cmd *cobra.Command) string {
	d, _ := cmd.Flags().GetString("data")
	return d
}

// call sends one admin command to the server of --data.
func call(cmd *cobra.Command, command string, args, out any) error {
	c := admin.Client{Dir: dataDir(cmd)}
	return c.Call(cmd.Context(), command, args, out)
}

// addJSON adds --json to a command whose output is data.
func addJSON(cmd *cobra.Command) {
	cmd.Flags().Bool("json", false, "print the result as JSON")
}

func wantJSON(cmd *cobra.Command) bool {
	j, _ := cmd.Flags().GetBool("json")
	return j
}

func printJSON(cmd *cobra.Command, v any) error { return admin.JSON(cmd.OutOrStdout(), v) }

func firstLine(s string) string {
	if i := strings.IndexAny(s, "\r\n"); i >= 0 {
		return s[:i]
	}
	return s
}
