package store

import (
	"github.com/hostcert/hostcert/internal/pgtest"

	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"strings"
	"sync"
	"testing"
	"time"
)

// crashChildEnv, when set to a database path, turns the test binary into
// the child of TestCrashDurability: it commits issuances in a loop and
// prints each acknowledged serial on its own line.
const crashChildEnv = "HOSTCERT_STORE_CRASH_CHILD_DB"

const crashToken = "crash"

func TestMain(m *testing.M) {
	if path := os.Getenv(crashChildEnv); path != "" {
		os.Exit(crashChild(path))
	}
	os.Exit(pgtest.Main(m))
}

// crashChild runs until killed, or for at most 60 s / 200,000 issuances.
func crashChild(path string) int {
	ctx := context.Background()
	s, err := Open(ctx, path)
	if err != nil {
		fmt.Fprintln(os.Stderr, "child open:", err)
		return 2
	}
	var (
		out      = bufio.NewWriter(os.Stdout)
		mu       sync.Mutex
		wg       sync.WaitGroup
		deadline = time.Now().Add(60 * time.Second)
		failed   = make(chan error, 1)
	)
	const workers, perWorker = 16, 200_000 / 16
	for w := range workers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := 0; i < perWorker && time.Now().Before(deadline); i++ {
				is := issuance(fmt.Sprintf("crash-%d-%d.example", w, i), crashToken)
				if err := s.CommitIssuance(ctx, is); err != nil {
					select {
					case failed <- err:
					default:
					}
					return
				}
				// Acknowledged: the commit is durable. One write per line.
				mu.Lock()
				out.WriteString(is.Cert.Serial + "\n")
				out.Flush()
				mu.Unlock()
			}
		}()
	}
	wg.Wait()
	s.Close()
	select {
	case err := <-failed:
		fmt.Fprintln(os.Stderr, "child commit:", err)
		return 3
	default:
	}
	return 0
}

// TestCrashDurability kills a process that is committing issuances with
// SIGKILL and checks that every issuance it acknowledged survived, that no
// serial repeats and that the token's use count matches its certificates.
func TestCrashDurability(t *testing.T) {
	if testing.Short() {
		t.Skip("SKIPPED in -short mode: the SIGKILL durability test did not run")
	}
	ctx := context.Background()
	s, path := openTemp(t)
	mustToken(t, s, crashToken, KindStandard, "", 1_000_000_000, time.Now().Add(24*time.Hour))
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}

	cmd := exec.Command(os.Args[0], "-test.run=^$")
	cmd.Env = append(os.Environ(), crashChildEnv+"="+path)
	var stderr strings.Builder
	cmd.Stderr = &stderr
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}

	const killAfter = 500
	acked := map[string]bool{}
	dups := 0
	r := bufio.NewReader(stdout)
	killed := false
	timer := time.AfterFunc(30*time.Second, func() { cmd.Process.Kill() })
	defer timer.Stop()
	for {
		line, err := r.ReadString('\n')
		if err != nil {
			// A trailing fragment without its newline was not acknowledged.
			if !errors.Is(err, io.EOF) {
				t.Errorf("reading child: %v", err)
			}
			break
		}
		serial := strings.TrimSpace(line)
		if acked[serial] {
			dups++
		}
		acked[serial] = true
		if len(acked) == killAfter && !killed {
			killed = true
			if err := cmd.Process.Kill(); err != nil { // SIGKILL on Unix
				t.Fatalf("kill child: %v", err)
			}
		}
	}
	werr := cmd.Wait()
	if !killed {
		t.Fatalf("child exited (%v) after %d acknowledgements before it could be killed; stderr: %s", werr, len(acked), stderr.String())
	}
	if dups > 0 {
		t.Errorf("child acknowledged %d serials twice", dups)
	}

	s2, err := Open(ctx, path)
	if err != nil {
		t.Fatalf("reopen after crash: %v", err)
	}
	defer s2.Close()
	missing := 0
	for serial := range acked {
		if _, err := s2.CertBySerial(ctx, serial); err != nil {
			missing++
			if missing < 5 {
				t.Errorf("acknowledged serial %s lost: %v", serial, err)
			}
		}
	}
	if missing > 0 {
		t.Errorf("%d of %d acknowledged issuances lost", missing, len(acked))
	}
	certs, err := s2.ListCerts(ctx, CertFilter{IncludeRevoked: true})
	if err != nil {
		t.Fatal(err)
	}
	seen := map[string]bool{}
	for _, c := range certs {
		if seen[c.Serial] {
			t.Errorf("serial %s stored twice", c.Serial)
		}
		seen[c.Serial] = true
	}
	tok, err := s2.TokenByName(ctx, crashToken)
	if err != nil {
		t.Fatal(err)
	}
	if tok.Uses != len(certs) {
		t.Errorf("token uses = %d, certificates = %d, want equal", tok.Uses, len(certs))
	}
	hosts, _ := s2.ListHosts(ctx)
	if len(hosts) != len(certs) {
		t.Errorf("hosts = %d, certificates = %d, want equal", len(hosts), len(certs))
	}
	t.Logf("child killed after %d acknowledged issuances; %d committed in the database", len(acked), len(certs))
}
