package logging

import (
	"bytes"
	"encoding/json"
	"testing"
)

func TestJSONWhenNotATerminal(t *testing.T) {
	var b bytes.Buffer
	log, err := New(Options{Out: &b})
	if err != nil {
		t.Fatal(err)
	}
	log.Info().Str("host", "a").Msg("renewing certificate")
	var m map[string]any
	if err := json.Unmarshal(b.Bytes(), &m); err != nil {
		t.Fatalf("log line %q is not JSON: %v", b.String(), err)
	}
	if m["message"] != "renewing certificate" || m["host"] != "a" {
		t.Errorf("log line = %v, want message and host fields", m)
	}
}

func TestBadOptions(t *testing.T) {
	if _, err := New(Options{Level: "loud"}); err == nil {
		t.Error("New(level=loud) = nil error, want an error")
	}
	if _, err := New(Options{Format: "xml"}); err == nil {
		t.Error("New(format=xml) = nil error, want an error")
	}
}
