package config

import (
	"encoding/json"
	"errors"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
)

// primary: takes one address or a list; both decode strictly.
func TestParsePrimaryShapes(t *testing.T) {
	for _, tc := range []struct {
		yaml string
		want Addrs
		err  string
	}{
		{"primary: p.example\n", Addrs{"p.example"}, ""},
		{"primary: ''\n", nil, ""},
		{"primary: [a.example, 'b.example:99']\n", Addrs{"a.example", "b.example:99"}, ""},
		{"primary:\n  - a.example\n  - b.example\n", Addrs{"a.example", "b.example"}, ""},
		{"primary: {host: a}\n", nil, "line 1"},
		{"primaries: [a.example]\n", nil, "field primaries not found"},
	} {
		c, err := Parse([]byte(tc.yaml))
		if tc.err != "" {
			if err == nil || !strings.Contains(err.Error(), tc.err) {
				t.Errorf("Parse(%q) = %v, want an error containing %q", tc.yaml, err, tc.err)
			}
			continue
		}
		if err != nil || !slices.Equal(c.Primary, tc.want) {
			t.Errorf("Parse(%q).Primary = %q, %v; want %q", tc.yaml, c.Primary, err, tc.want)
		}
	}
}

func TestParseAddrs(t *testing.T) {
	for in, want := range map[string]Addrs{
		"a":               {"a"},
		"a:1,b:2":         {"a:1", "b:2"},
		" a , ,[::1]:5 ,": {"a", "[::1]:5"},
		"":                nil,
	} {
		if got := ParseAddrs(in); !slices.Equal(got, want) {
			t.Errorf("ParseAddrs(%q) = %q, want %q", in, got, want)
		}
	}
}

// Several primaries are normalised and validated one by one; primary_dial
// only makes sense with one.
func TestValidatePrimaries(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "agent.yaml")
	load := func(yaml string) (Config, error) {
		os.WriteFile(path, []byte(yaml), 0o644)
		return Load(path, false, Overrides{func(c *Config) { c.DataDir = dir }})
	}
	c, err := load("primary: [a.example, 'https://b.example:99/']\n")
	if err != nil || !slices.Equal(c.Primary, Addrs{"a.example:1556", "b.example:99"}) || c.PrimaryHost() != "a.example" {
		t.Errorf("Load(two primaries) = %q (host %q), %v; want [a.example:1556 b.example:99]", c.Primary, c.PrimaryHost(), err)
	}
	for yaml, want := range map[string]string{
		"primary: [a.example, 'b.example:0']\n":                      "primary[1]",
		"primary: [a.example, 'a.example:1556']\n":                   "listed twice",
		"primary: [a.example, b.example]\nprimary_dial: 127.0.0.1\n": "only with a single primary",
	} {
		if _, err := load(yaml); !errors.Is(err, ErrInvalid) || !strings.Contains(err.Error(), want) {
			t.Errorf("Load(%q) = %v, want ErrInvalid naming %q", yaml, err, want)
		}
	}
}

// The record keeps one primary as a string (as agents before several
// primaries wrote and read it) and several as a list; both read back.
func TestRecordedPrimaries(t *testing.T) {
	for _, r := range []Recorded{{Primary: Addrs{"a.example:1556"}}, {Primary: Addrs{"a.example:1556", "b.example:1556"}, Tunnels: []string{"m:1556"}}} {
		dir := t.TempDir()
		if err := WriteRecorded(dir, r); err != nil {
			t.Fatal(err)
		}
		data, _ := os.ReadFile(RecordedPath(dir))
		var raw struct{ Primary any }
		json.Unmarshal(data, &raw)
		if _, isString := raw.Primary.(string); isString != (len(r.Primary) == 1) {
			t.Errorf("record of %q = %s, want a string for one primary, a list for several", r.Primary, data)
		}
		got, err := ReadRecorded(dir)
		if err != nil || !slices.Equal(got.Primary, r.Primary) || !slices.Equal(got.Tunnels, r.Tunnels) {
			t.Errorf("ReadRecorded() = %+v, %v; want %+v", got, err, r)
		}
	}
}
