// Command primarytest serves agent/internal/primarytest on an address until
// interrupted, for trying the agent by hand and for its benchmarks. It prints
// the address and the CA fingerprint. Not a product: the real primary is
// hostcert-primary.
package main

import (
	"flag"
	"fmt"
	"os"
	"os/signal"
	"syscall"
	"time"

	"github.com/hostcert/hostcert/agent/internal/primarytest"
)

func main() {
	addr := flag.String("listen", "127.0.0.1:0", "address to listen on")
	token := flag.String("require-token", "", "require this token for issue")
	validity := flag.Duration("validity", 365*24*time.Hour, "validity of issued certificates")
	flag.Parse()
	s, err := primarytest.New(primarytest.Options{Addr: *addr, RequireToken: *token != "", Validity: *validity})
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	if *token != "" {
		s.AddToken(*token)
	}
	fmt.Printf("listening on %s\nCA fingerprint %s\n", s.Addr(), s.Fingerprint())
	ch := make(chan os.Signal, 1)
	signal.Notify(ch, os.Interrupt, syscall.SIGTERM)
	<-ch
	s.Close()
}
