// Command hostcert-agent runs on every host: it confirms the primary's CA by
// fingerprint, enrolls for a host certificate, keeps it renewed and the CRL
// fresh, reaching the primary directly or through a tunnel. See docs/agent.md.
package main

import (
	"context"
	"os"

	"github.com/hostcert/hostcert/agent/internal/cli"
)

func main() {
	os.Exit(cli.Main(context.Background(), os.Args[1:], cli.IO{
		In: os.Stdin, Out: os.Stdout, Err: os.Stderr, Terminal: cli.StdTerminal,
	}))
}
