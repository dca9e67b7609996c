// Command hostcert-primary is the certificate authority of a hostcert fleet:
// CA, deployment policy, tokens, host registry, revocation, CRL, audit, the
// HTTPS API and its admin CLI. See docs/primary.md.
package main

import (
	"context"
	"os"

	"github.com/hostcert/hostcert/primary/internal/cli"
)

func main() {
	os.Exit(cli.Main(context.Background(), os.Args[1:], os.Stdout, os.Stderr))
}
