package daemon_test

import (
	"bytes"
	"context"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/cenkalti/backoff/v4"
	"github.com/rs/zerolog"

	"github.com/hostcert/hostcert/agent/internal/certstore"
	"github.com/hostcert/hostcert/agent/internal/cli"
	"github.com/hostcert/hostcert/agent/internal/config"
	"github.com/hostcert/hostcert/agent/internal/daemon"
	"github.com/hostcert/hostcert/common/pki"
	"github.com/hostcert/hostcert/common/svc"
	"github.com/hostcert/hostcert/internal/nettest"
	"github.com/hostcert/hostcert/primary/primarytest"
)

// syncBuf is a goroutine-safe log sink.
type syncBuf struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuf) Write(p []byte) (int, error) { s.mu.Lock(); defer s.mu.Unlock(); return s.b.Write(p) }
func (s *syncBuf) String() string              { s.mu.Lock(); defer s.mu.Unlock(); return s.b.String() }

type agent struct {
	t      *testing.T
	srv    *primarytest.Primary
	data   string
	config string
	log    *syncBuf
}

// setup enrolls h1.example.com (known and verified on the primary) with an
// agent whose config file points at dial (the server or a proxy in front of it).
func setup(t *testing.T, srv *primarytest.Primary, dial string, yaml string) *agent {
	t.Helper()
	srv.AddHost("h1.example.com")
	dir := t.TempDir()
	a := &agent{t: t, srv: srv, data: filepath.Join(dir, "data"), config: filepath.Join(dir, "agent.yaml"), log: &syncBuf{}}
	cfg := "primary: primary.test:" + srv.Port() + "\nprimary_dial: " + dial + "\ndata_dir: " + a.data + "\nlog_format: json\ndial_timeout: 300ms\nrequest_timeout: 2s\n" + yaml
	if err := os.WriteFile(a.config, []byte(cfg), 0o644); err != nil {
		t.Fatal(err)
	}
	for _, args := range [][]string{
		{"get-ca-cert", "--fingerprint", srv.Fingerprint()},
		{"get-cert", "--name", "h1.example.com"},
	} {
		var out, errb bytes.Buffer
		if err := cli.Execute(context.Background(), append(args, "--config", a.config), cli.IO{Out: &out, Err: &errb, In: strings.NewReader("")}); err != nil {
			t.Fatalf("%v: %v\n%s", args, err, errb.String())
		}
	}
	return a
}

func fastBackOff() backoff.BackOff {
	b := backoff.NewExponentialBackOff()
	b.InitialInterval = 50 * time.Millisecond
	b.MaxInterval = 300 * time.Millisecond
	b.MaxElapsedTime = 0
	b.Reset()
	return b
}

func (a *agent) options() daemon.Options {
	return daemon.Options{
		ConfigPath: a.config, Overrides: config.Overrides{},
		Log: zerolog.New(a.log).Level(zerolog.DebugLevel), NewBackOff: fastBackOff,
	}
}

// start runs the agent until the test ends; it checks that Run returns nil on cancel.
func (a *agent) start() {
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- daemon.Run(ctx, a.options()) }()
	a.t.Cleanup(func() {
		cancel()
		select {
		case err := <-done:
			if err != nil {
				a.t.Errorf("Run() = %v after cancel, want nil", err)
			}
		case <-time.After(10 * time.Second):
			a.t.Errorf("Run() did not return within 10s of cancel")
		}
	})
}

func (a *agent) identity() *certstore.Identity {
	a.t.Helper()
	s, _ := certstore.Open(a.data)
	id, err := s.Identity()
	if err != nil {
		a.t.Fatal(err)
	}
	return id
}

// state is the agent's state.json.
func (a *agent) state() certstore.State {
	a.t.Helper()
	s, _ := certstore.Open(a.data)
	st, err := s.State()
	if err != nil {
		a.t.Fatal(err)
	}
	return st
}

func eventually(t *testing.T, what string, f func() bool) {
	t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	for !f() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// A short-lived certificate is renewed by run, again and again, over mTLS.
func TestRunRenewsShortLivedCertificate(t *testing.T) {
	srv := primarytest.Start(t, primarytest.Options{CertValidity: 3 * time.Second})
	a := setup(t, srv, srv.Addr(), "renew_before: 2s\n")
	first := a.identity().Cert
	// Make the stored CRL stale so run refreshes it at once.
	s, _ := certstore.Open(a.data)
	s.UpdateState(func(st *certstore.State) { st.LastCRLRefresh = time.Time{} })
	a.start()
	eventually(t, "two renewals", func() bool { return srv.Count("renew") >= 2 })
	eventually(t, "renewed certificate on disk", func() bool { return !a.identity().Cert.Equal(first) })
	if !strings.Contains(a.log.String(), "certificate renewed") {
		t.Errorf("log lacks 'certificate renewed':\n%s", a.log.String())
	}
	eventually(t, "run to refresh the stale CRL", func() bool { return !a.state().LastCRLRefresh.IsZero() })
}

// Faults on the agent->primary leg: the agent keeps its current certificate,
// logs and backs off, and renews once the path is back.
func TestRunSurvivesPartitions(t *testing.T) {
	for _, tc := range []struct {
		name   string
		inject func(*nettest.Toxi) error
		heal   func(*nettest.Toxi) error
		fails  bool
	}{
		{"black hole", (*nettest.Toxi).BlackHole, (*nettest.Toxi).Heal, true},
		{"reset", func(x *nettest.Toxi) error { return x.Add("reset", "reset_peer", "upstream", `{"timeout":0}`) },
			func(x *nettest.Toxi) error { return x.Remove("reset") }, true},
		{"latency", func(x *nettest.Toxi) error {
			return x.Add("lat", "latency", "downstream", `{"latency":150,"jitter":50}`)
		},
			func(x *nettest.Toxi) error { return x.Remove("lat") }, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			srv := primarytest.Start(t, primarytest.Options{CertValidity: 20 * time.Second})
			toxi, err := nettest.NewToxi(srv.Addr())
			if err != nil {
				t.Fatal(err)
			}
			defer toxi.Close()
			a := setup(t, srv, toxi.Addr(), "")
			if err := tc.inject(toxi); err != nil {
				t.Fatal(err)
			}
			shortLived(t, a, srv)
			before := a.identity().Cert
			a.start()
			if tc.fails {
				eventually(t, "renewal failures being logged", func() bool { return strings.Count(a.log.String(), "renewal failed") >= 2 })
				if cur := a.identity().Cert; !cur.Equal(before) {
					t.Fatalf("certificate changed during the fault")
				}
				if time.Now().After(before.NotAfter) {
					t.Fatalf("test too slow: the certificate expired during the fault")
				}
				if err := tc.heal(toxi); err != nil {
					t.Fatal(err)
				}
			}
			eventually(t, "renewal after the path came back", func() bool { return !a.identity().Cert.Equal(before) })
			if !tc.fails {
				tc.heal(toxi)
			}
		})
	}
}

// shortLived renews once straight to the primary (bypassing the faulty
// proxy) to get a fresh 20s certificate (plus the primary's 5 minute
// back-dating), and sets renew_before to 5m: capped at mid-life, renewal is
// due at once.
func shortLived(t *testing.T, a *agent, srv *primarytest.Primary) {
	t.Helper()
	var out, errb bytes.Buffer
	if err := cli.Execute(context.Background(), []string{"renew", "--config", a.config, "--primary-dial", srv.Addr()}, cli.IO{Out: &out, Err: &errb, In: strings.NewReader("")}); err != nil {
		t.Fatalf("renew: %v\n%s", err, errb.String())
	}
	b, _ := os.ReadFile(a.config)
	os.WriteFile(a.config, append(b, []byte("renew_before: 5m\n")...), 0o644)
}

// The service program (what the service manager drives) starts the agent
// and stops it by cancelling its context.
func TestServiceProgramStartStop(t *testing.T) {
	srv := primarytest.Start(t, primarytest.Options{})
	a := setup(t, srv, srv.Addr(), "")
	// Make the stored CRL stale so run refreshes it at once.
	s, _ := certstore.Open(a.data)
	s.UpdateState(func(st *certstore.State) { st.LastCRLRefresh = time.Time{} })
	p := svc.NewProgram(func(ctx context.Context) error { return daemon.Run(ctx, a.options()) }, 10*time.Second)
	if err := p.Start(nil); err != nil {
		t.Fatal(err)
	}
	eventually(t, "the running agent to refresh the CRL", func() bool { return !a.state().LastCRLRefresh.IsZero() })
	if err := p.Stop(nil); err != nil {
		t.Fatalf("Stop() = %v, want nil", err)
	}
	if err := p.Wait(); err != nil {
		t.Errorf("Wait() = %v, want nil", err)
	}
}

// A config edit that does not parse is rejected; the agent keeps running on the last good one.
func TestRunKeepsLastGoodConfig(t *testing.T) {
	srv := primarytest.Start(t, primarytest.Options{})
	a := setup(t, srv, srv.Addr(), "")
	a.start()
	eventually(t, "agent running", func() bool { return strings.Contains(a.log.String(), "agent running") })
	good, _ := os.ReadFile(a.config)
	os.WriteFile(a.config, append(good, []byte("no_such_key: 1\n")...), 0o644)
	eventually(t, "the bad edit to be rejected", func() bool {
		return strings.Contains(a.log.String(), "config change rejected") && strings.Contains(a.log.String(), "no_such_key")
	})
	os.WriteFile(a.config, good, 0o644)
	eventually(t, "the good config to be reloaded", func() bool { return strings.Contains(a.log.String(), "config reloaded") })
}

// A revoked host: run says so loudly, does not spin on renewal, keeps the
// CRL fresh, and picks up a certificate reissued by get-cert.
func TestRunRevokedWaitsForReissue(t *testing.T) {
	srv := primarytest.Start(t, primarytest.Options{CertValidity: 20 * time.Second})
	a := setup(t, srv, srv.Addr(), "renew_before: 5m\n") // due at once (capped at mid-life)
	hostID := srv.HostID("h1.example.com")
	srv.Revoke(hostID)
	before := a.identity().Cert
	opts := a.options()
	opts.BlockedPoll = 50 * time.Millisecond
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- daemon.Run(ctx, opts) }()
	defer func() { cancel(); <-done }()
	eventually(t, "the revocation to be logged at error level", func() bool {
		l := a.log.String()
		return strings.Contains(l, `"level":"error"`) && strings.Contains(l, "cannot renew")
	})
	time.Sleep(300 * time.Millisecond) // six blocked polls
	renewals := srv.Count("renew")
	if renewals != 1 {
		t.Errorf("renewal attempts after host_revoked = %d, want exactly 1 (no retries)", renewals)
	}
	tok := srv.ReissueToken("reissue-h1", hostID)
	var out, errb bytes.Buffer
	if err := cli.Execute(context.Background(), []string{"get-cert", "--name", "h1.example.com", "--token", tok, "--config", a.config}, cli.IO{Out: &out, Err: &errb, In: strings.NewReader("")}); err != nil {
		t.Fatalf("reissue: %v\n%s", err, errb.String())
	}
	eventually(t, "run to pick up the reissued certificate and renew it", func() bool {
		return strings.Contains(a.log.String(), "new certificate found on disk") && srv.Count("renew") > renewals
	})
	if a.identity().Cert.Equal(before) {
		t.Errorf("certificate unchanged after reissue")
	}
	// (The primary's refusal says "cannot renew" too: count the messages.)
	if n := strings.Count(a.log.String(), `"message":"cannot renew`); n != 1 {
		t.Errorf("'cannot renew' logged %d times, want once per hour\n%s", n, a.log.String())
	}
}

// After ca revoke-issuing of the issuing CA that signed this host's
// certificate, run's CRL refresh says so at error level, and its renewal
// is refused (host_revoked) and not retried: the host needs a reissue.
func TestRunIssuingCARevoked(t *testing.T) {
	srv := primarytest.Start(t, primarytest.Options{CertValidity: 20 * time.Second})
	a := setup(t, srv, srv.Addr(), "renew_before: 5m\n") // due at once (capped at mid-life)
	issuing := a.identity().Chain[0]
	srv.RotateCA(false)
	srv.RevokeIssuing(pki.Fingerprint(issuing), "keyCompromise")
	// No CRL stored: run refreshes it at once (else at the level's interval).
	if err := os.Remove(filepath.Join(a.data, certstore.CRLFile)); err != nil && !os.IsNotExist(err) {
		t.Fatal(err)
	}
	opts := a.options()
	opts.BlockedPoll = 50 * time.Millisecond
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- daemon.Run(ctx, opts) }()
	defer func() { cancel(); <-done }()
	eventually(t, "the revoked issuing CA and the refused renewal to be logged at error level", func() bool {
		l := a.log.String()
		return strings.Contains(l, `"message":"this host's issuing ca is revoked`) && strings.Contains(l, "host_revoked")
	})
	time.Sleep(300 * time.Millisecond) // six blocked polls
	if n := srv.Count("renew"); n != 1 {
		t.Errorf("renewal attempts after host_revoked = %d, want exactly 1 (no retries)", n)
	}
	if !a.identity().Chain[0].Equal(issuing) {
		t.Error("the certificate changed: a certificate of a revoked issuing CA was renewed")
	}
}
