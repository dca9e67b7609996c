package admin

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/hostcert/hostcert/primary/internal/tokens"
)

// CmdConsoleLogin makes a one-time login link for the web console.
const CmdConsoleLogin = "console.login"

// MaxLoginValidity bounds how long a login link works.
const MaxLoginValidity = time.Hour

// Logins makes one-time login links (the web console, package console).
type Logins interface {
	NewLogin(operator string, validFor time.Duration, now time.Time) (LoginLink, error)
}

// UseLogins makes console.login create links with l (the running
// console). Without it console.login says the console is off. Call before
// Serve.
func (s *Server) UseLogins(l Logins) { s.logins = l }

// LoginArgs are the arguments of console.login.
type LoginArgs struct {
	Operator string `json:"operator,omitempty" flag:"operator" help:"the operator's name, in the audit rows of every console action (default: the admin socket's actor)"`
	ValidFor string `json:"valid_for,omitempty" flag:"valid-for" default:"10m" help:"how long the link works (at most 1h); it works once"`
}

// LoginLink answers console.login: the link, shown once (only its hash is
// kept), and until when it works.
type LoginLink struct {
	URL       string    `json:"url"`
	Operator  string    `json:"operator"`
	ExpiresAt time.Time `json:"expires_at"`
}

// Check reads the validity and the name.
func (a *LoginArgs) Check() error {
	_, err := loginValidity(a.ValidFor)
	if err != nil {
		return err
	}
	if err := checkOperator(a.Operator); err != nil {
		return err
	}
	return nil
}

func loginValidity(s string) (time.Duration, error) {
	d, err := tokens.ParseDuration(s)
	if err != nil || d < time.Second || d > MaxLoginValidity {
		return 0, fmt.Errorf("--valid-for %q: want a duration from 1s to 1h (10m)", s)
	}
	return d, nil
}

// checkOperator accepts printable ASCII names of at most 64 bytes: the name
// goes into audit rows and onto the console's pages.
func checkOperator(s string) error {
	if len(s) > 64 {
		return errors.New("--operator: at most 64 characters")
	}
	for _, r := range s {
		if r <= ' ' || r > '~' {
			return fmt.Errorf("--operator %q: letters, digits and punctuation only", s)
		}
	}
	return nil
}

func (s *Server) consoleLogin(ctx context.Context, c *Call, args *LoginArgs) (LoginLink, error) {
	if s.logins == nil {
		return LoginLink{}, errors.New("the web console is off (serve --console ADDR turns it on)")
	}
	d, err := loginValidity(args.ValidFor)
	if err != nil {
		return LoginLink{}, err
	}
	op := args.Operator
	if op == "" {
		op = c.Actor
	}
	l, err := s.logins.NewLogin(op, d, c.Now)
	if err != nil {
		return LoginLink{}, fmt.Errorf("console login: %w", err)
	}
	a := c.Audit
	a.Detail["operator"], a.Detail["expires_at"] = op, l.ExpiresAt.UTC().Format(time.RFC3339)
	if err := s.store.AppendAudit(ctx, a); err != nil {
		return LoginLink{}, fmt.Errorf("audit: %w", err)
	}
	return l, nil
}

func textLogin(o Output, _ *LoginArgs, l LoginLink) error {
	_, err := fmt.Fprintf(o.Out, "%s\n", l.URL)
	if err == nil {
		_, err = fmt.Fprintf(o.Err, "one-time login link for %s, valid until %s\n", l.Operator, l.ExpiresAt.Local().Format(time.RFC3339))
	}
	return err
}
