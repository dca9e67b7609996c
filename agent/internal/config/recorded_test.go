package config

import (
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
)

func TestResolve(t *testing.T) {
	rec := Recorded{Primary: Addrs{"rec.example:1556"}, Tunnels: []string{"m1.example:1556"}}
	for _, tc := range []struct {
		name        string
		c           Config
		r           Recorded
		wantPrimary string
		wantSource  Source
		wantTunnels []string
	}{
		{"nothing recorded, nothing set", Config{}, Recorded{}, "", "", nil},
		{"recorded only", Config{}, rec, "rec.example:1556", SourceRecorded, []string{"m1.example:1556"}},
		{"config file wins", Config{Primary: Addrs{"file.example"}, PrimarySource: SourceFile}, rec, "file.example", SourceFile, nil},
		{"flag wins", Config{Primary: Addrs{"flag.example:99"}, PrimarySource: SourceFlag}, rec, "flag.example:99", SourceFlag, nil},
		{"same primary by flag keeps the recorded tunnels", Config{Primary: Addrs{"https://rec.example/"}, PrimarySource: SourceFlag}, rec, "https://rec.example/", SourceFlag, []string{"m1.example:1556"}},
		{"tunnels set win over recorded ones", Config{Tunnels: []string{"m2.example:1556"}}, rec, "rec.example:1556", SourceRecorded, []string{"m2.example:1556"}},
		{"tunnels set to none win too", Config{Tunnels: []string{}}, rec, "rec.example:1556", SourceRecorded, []string{}},
		{"recorded without tunnels", Config{}, Recorded{Primary: Addrs{"rec.example:1556"}}, "rec.example:1556", SourceRecorded, nil},
		{"several recorded", Config{}, Recorded{Primary: Addrs{"a.example:1556", "b.example:1556"}, Tunnels: []string{"m1.example:1556"}}, "a.example:1556, b.example:1556", SourceRecorded, []string{"m1.example:1556"}},
		{"same primaries by flag keep the recorded tunnels", Config{Primary: Addrs{"a.example", "b.example"}, PrimarySource: SourceFlag}, Recorded{Primary: Addrs{"a.example:1556", "b.example:1556"}, Tunnels: []string{"m1.example:1556"}}, "a.example, b.example", SourceFlag, []string{"m1.example:1556"}},
		{"other primaries by flag drop the recorded tunnels", Config{Primary: Addrs{"a.example"}, PrimarySource: SourceFlag}, Recorded{Primary: Addrs{"a.example:1556", "b.example:1556"}, Tunnels: []string{"m1.example:1556"}}, "a.example", SourceFlag, nil},
	} {
		got := Resolve(tc.c, tc.r)
		if got.Primary.String() != tc.wantPrimary || got.PrimarySource != tc.wantSource || !slices.Equal(got.Tunnels, tc.wantTunnels) || (got.Tunnels == nil) != (tc.wantTunnels == nil) {
			t.Errorf("%s: Resolve(%+v, %+v) = primary %q from %q, tunnels %q; want %q from %q, tunnels %q",
				tc.name, tc.c, tc.r, got.Primary, got.PrimarySource, got.Tunnels, tc.wantPrimary, tc.wantSource, tc.wantTunnels)
		}
	}
}

func TestNormalizeAddr(t *testing.T) {
	for in, want := range map[string]string{
		"p.example":                   "p.example:1556",
		"p.example:99":                "p.example:99",
		"https://p.example:1556/":     "p.example:1556",
		"HTTPS://p.example":           "p.example:1556",
		"https://p.example/":          "p.example:1556",
		"https://[::1]:1556/":         "[::1]:1556",
		" https://10.0.0.1:1556 ":     "10.0.0.1:1556",
		"http://p.example:1556/":      "http://p.example:1556/",
		"https://p.example:1556/v1/x": "https://p.example:1556/v1/x",
	} {
		if got := NormalizeAddr(in); got != want {
			t.Errorf("NormalizeAddr(%q) = %q, want %q", in, got, want)
		}
	}
}

// A URL given as --primary is understood; a scheme other than https is
// refused with a sentence that says what to give.
func TestLoadPrimaryURL(t *testing.T) {
	dir := t.TempDir()
	missing := filepath.Join(dir, "none.yaml")
	set := func(p string) Overrides {
		return Overrides{func(c *Config) { c.Primary, c.DataDir = Addrs{p}, dir }}
	}
	c, err := Load(missing, true, set("https://primary.example:1556/"))
	if err != nil || c.Primary.String() != "primary.example:1556" || c.PrimaryHost() != "primary.example" {
		t.Fatalf("Load(--primary https://primary.example:1556/) = %q (host %q), %v; want primary.example:1556", c.Primary, c.PrimaryHost(), err)
	}
	_, err = Load(missing, true, set("http://primary.example:1556/"))
	if err == nil || !strings.Contains(err.Error(), "HTTPS only") || strings.Count(err.Error(), "http://") != 1 {
		t.Fatalf("Load(--primary http://…) = %v, want one error saying HTTPS only", err)
	}
}

// With no config file at all, the primary and tunnels recorded in the data
// directory are used; a damaged record is an error only when it is needed.
func TestLoadRecorded(t *testing.T) {
	dir := t.TempDir()
	missing := filepath.Join(dir, "none.yaml")
	data := filepath.Join(dir, "data")
	os.Mkdir(data, 0o700)
	dataDir := Overrides{func(c *Config) { c.DataDir = data }}
	c, err := Load(missing, true, dataDir)
	if err != nil || len(c.Primary) != 0 || c.PrimarySource != "" {
		t.Fatalf("Load(no file, no record) = %q from %q, %v; want no primary", c.Primary, c.PrimarySource, err)
	}
	if err := WriteRecorded(data, Recorded{Primary: Addrs{"rec.example:1556"}, Tunnels: []string{"m1.example:1556"}}); err != nil {
		t.Fatal(err)
	}
	c, err = Load(missing, true, dataDir)
	if err != nil || c.Primary.String() != "rec.example:1556" || c.PrimarySource != SourceRecorded || !slices.Equal(c.Tunnels, []string{"m1.example:1556"}) {
		t.Fatalf("Load(no file, record) = %q from %q, tunnels %q, %v; want the record", c.Primary, c.PrimarySource, c.Tunnels, err)
	}
	file := filepath.Join(dir, "agent.yaml")
	os.WriteFile(file, []byte("primary: file.example\ndata_dir: "+data+"\n"), 0o644)
	c, err = Load(file, false, nil)
	if err != nil || c.Primary.String() != "file.example:1556" || c.PrimarySource != SourceFile || c.Tunnels != nil {
		t.Fatalf("Load(file with primary, record) = %q from %q, tunnels %q, %v; want the file's primary and no tunnels", c.Primary, c.PrimarySource, c.Tunnels, err)
	}

	os.WriteFile(RecordedPath(data), []byte("{\"primary\": 5"), 0o644)
	if _, err := Load(missing, true, dataDir); err == nil || !strings.Contains(err.Error(), RecordedFile) {
		t.Fatalf("Load(damaged record, no primary) = %v, want an error naming %s", err, RecordedFile)
	}
	if c, err := Load(file, false, nil); err != nil || c.Primary.String() != "file.example:1556" {
		t.Fatalf("Load(damaged record, primary in file) = %q, %v; want the file's primary", c.Primary, err)
	}
}
