//go:build !windows

package main

import (
	"bufio"
	"crypto/tls"
	"encoding/json"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"
)

// TestMain lets the test binary act as hostcert-primary, so the tests below
// run the real command as a separate process.
func TestMain(m *testing.M) {
	if os.Getenv("HOSTCERT_PRIMARY_AS_MAIN") == "1" {
		main()
		return
	}
	os.Exit(m.Run())
}

func command(args ...string) *exec.Cmd {
	cmd := exec.Command(os.Args[0], args...)
	cmd.Env = append(os.Environ(), "HOSTCERT_PRIMARY_AS_MAIN=1")
	return cmd
}

// TestServeAsProcess: init, then serve as a standalone process that logs
// "serving" with its address, answers, and stops cleanly on SIGTERM.
func TestServeAsProcess(t *testing.T) {
	base, err := os.MkdirTemp("", "hcm")
	if err != nil {
		t.Fatal(err)
	}
	defer os.RemoveAll(base)
	dir := filepath.Join(base, "data")
	if out, err := command("init", "--data", dir, "--name", "localhost").CombinedOutput(); err != nil {
		t.Fatalf("init: %v\n%s", err, out)
	}
	if out, err := command("init", "--data", dir, "--name", "localhost").CombinedOutput(); err == nil {
		t.Fatalf("second init succeeded: %s", out)
	}

	cmd := command("serve", "--data", dir, "--listen", "127.0.0.1:0", "--console", "", "--log-format", "json")
	stderr, err := cmd.StderrPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	defer cmd.Process.Kill()
	lines := make(chan map[string]any, 100)
	go func() {
		defer close(lines)
		sc := bufio.NewScanner(stderr)
		for sc.Scan() {
			var m map[string]any
			if json.Unmarshal(sc.Bytes(), &m) == nil {
				lines <- m
			}
		}
	}()
	var addr string
	timeout := time.After(20 * time.Second)
	for addr == "" {
		select {
		case m, ok := <-lines:
			if !ok {
				t.Fatal("serve exited before serving")
			}
			if m["message"] == "serving" {
				addr, _ = m["addr"].(string)
			}
		case <-timeout:
			t.Fatal("no \"serving\" line within 20s")
		}
	}
	c := &http.Client{Timeout: 10 * time.Second, Transport: &http.Transport{TLSClientConfig: &tls.Config{InsecureSkipVerify: true}}}
	resp, err := c.Get("https://" + addr + "/v1/ca")
	if err != nil {
		t.Fatalf("GET /v1/ca: %v", err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != 200 || !strings.Contains(string(body), "BEGIN CERTIFICATE") {
		t.Errorf("GET /v1/ca = %d %q", resp.StatusCode, body)
	}
	if out, err := command("level", "set", "medium", "--data", dir).CombinedOutput(); err != nil || string(out) != "medium\n" {
		t.Errorf("level set medium as a process = %q, %v", out, err)
	}

	if err := cmd.Process.Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	stopped := false
	for m := range lines {
		stopped = stopped || m["message"] == "stopped"
	}
	if err := cmd.Wait(); err != nil || !stopped {
		t.Errorf("serve after SIGTERM: %v, logged stopped=%v; want exit 0 after \"stopped\"", err, stopped)
	}
	if _, err := os.Stat(filepath.Join(dir, "admin.sock")); !os.IsNotExist(err) {
		t.Errorf("admin socket left behind after shutdown: %v", err)
	}
}
