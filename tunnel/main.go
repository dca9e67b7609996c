// Command hostcert-tunnel runs on a media server next to a DMZ: an HTTP
// CONNECT proxy that admits only the hostcert primary's address(es), so DMZ
// hosts can reach the primary with TLS end to end. See docs/tunnel.md.
package main

import (
	"context"
	"os"

	"github.com/hostcert/hostcert/tunnel/internal/cli"
)

func main() {
	os.Exit(cli.Main(context.Background(), os.Args[1:], os.Stdout, os.Stderr))
}
