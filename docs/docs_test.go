package docs

import (
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
)

// link matches an inline Markdown link or image target: ](target).
var link = regexp.MustCompile(`\]\(([^)\s]+)(?:\s+"[^"]*")?\)`)

// documents are README.md and docs/*.md, relative to the repository root.
func documents(t *testing.T) (root string, files []string) {
	t.Helper()
	root, err := filepath.Abs("..")
	if err != nil {
		t.Fatal(err)
	}
	files = []string{"README.md"}
	md, err := filepath.Glob(filepath.Join(root, "docs", "*.md"))
	if err != nil {
		t.Fatal(err)
	}
	for _, m := range md {
		files = append(files, filepath.Join("docs", filepath.Base(m)))
	}
	if len(files) < 5 {
		t.Fatalf("found %v, want README.md and the docs", files)
	}
	return root, files
}

// checkLink says what is wrong with a link target in the document doc
// (relative to root), or "" when it stays inside the repository and what it
// points at exists. Web links (http, https, mailto) are allowed: they do not
// pretend to be part of the clone.
func checkLink(root, doc, target string) string {
	switch {
	case strings.HasPrefix(target, "#"):
		return ""
	case strings.HasPrefix(target, "http://"), strings.HasPrefix(target, "https://"), strings.HasPrefix(target, "mailto:"):
		return ""
	case strings.Contains(target, "://"):
		return "a link with a scheme other than http(s)"
	case filepath.IsAbs(target) || strings.HasPrefix(target, "/"):
		return "an absolute path (outside the clone)"
	}
	path := target
	if i := strings.IndexByte(path, '#'); i >= 0 {
		path = path[:i]
	}
	abs := filepath.Join(root, filepath.Dir(doc), filepath.FromSlash(path))
	rel, err := filepath.Rel(root, abs)
	if err != nil || rel == ".." || strings.HasPrefix(rel, ".."+string(filepath.Separator)) {
		return "leaves the repository"
	}
	if _, err := os.Stat(abs); err != nil {
		return "points at " + filepath.ToSlash(rel) + ", which does not exist"
	}
	return ""
}

func TestCheckLink(t *testing.T) {
	root, err := filepath.Abs("..")
	if err != nil {
		t.Fatal(err)
	}
	for _, c := range []struct {
		doc, target string
		ok          bool
	}{
		{"README.md", "docs/packaging.md", true},
		{"README.md", "docs/packaging.md#checks", true},
		{"README.md", "#tests", true},
		{"docs/agent.md", "packaging.md", true},
		{"docs/agent.md", "../README.md", true},
		{"README.md", "https://go.dev/doc/", true},
		{"README.md", "../shared/SPEC.md", false},
		{"docs/agent.md", "../../shared/SPEC.md", false},
		{"README.md", "/work/shared/SPEC.md", false},
		{"README.md", "file:///etc/passwd", false},
		{"README.md", "docs/nothing-here.md", false},
	} {
		if got := checkLink(root, c.doc, c.target); (got == "") != c.ok {
			t.Errorf("checkLink(%s, %s) = %q, want ok %v", c.doc, c.target, got, c.ok)
		}
	}
}

// TestLinksStayInRepository: README.md and docs/*.md read whole in a clone.
func TestLinksStayInRepository(t *testing.T) {
	root, files := documents(t)
	n := 0
	for _, doc := range files {
		b, err := os.ReadFile(filepath.Join(root, doc))
		if err != nil {
			t.Fatal(err)
		}
		for i, line := range strings.Split(string(b), "\n") {
			for _, m := range link.FindAllStringSubmatch(line, -1) {
				n++
				if why := checkLink(root, doc, m[1]); why != "" {
					t.Errorf("%s:%d: link %s: %s", doc, i+1, m[1], why)
				}
			}
			// Text that sends the reader to a file a clone does not have.
			if strings.Contains(line, "shared/SPEC.md") || strings.Contains(line, "/work/") {
				t.Errorf("%s:%d: refers to a file outside the repository: %s", doc, i+1, strings.TrimSpace(line))
			}
		}
	}
	if n < 10 {
		t.Errorf("checked %d links, want the documents' links (regexp broken?)", n)
	}
}

// unitStopTimeout reads TimeoutStopSec= from a shipped unit file.
func unitStopTimeout(t *testing.T, root, program string) string {
	t.Helper()
	b, err := os.ReadFile(filepath.Join(root, "packaging", "systemd", "hostcert-"+program+".service"))
	if err != nil {
		t.Fatal(err)
	}
	m := regexp.MustCompile(`(?m)^TimeoutStopSec=(\S+)$`).FindSubmatch(b)
	if m == nil {
		t.Fatalf("hostcert-%s.service has no TimeoutStopSec=", program)
	}
	return string(m[1])
}

// TestStopTimeoutsMatchUnits: what docs/tunnel.md and docs/packaging.md say
// about the units' stop timeouts is what the unit files hold.
func TestStopTimeoutsMatchUnits(t *testing.T) {
	root, _ := documents(t)
	read := func(doc string) string {
		b, err := os.ReadFile(filepath.Join(root, "docs", doc))
		if err != nil {
			t.Fatal(err)
		}
		return string(b)
	}
	tunnel := unitStopTimeout(t, root, "tunnel")
	mentions := regexp.MustCompile("TimeoutStopSec=([0-9]+s)").FindAllStringSubmatch(read("tunnel.md"), -1)
	if len(mentions) == 0 {
		t.Error("docs/tunnel.md does not say the unit's TimeoutStopSec")
	}
	for _, m := range mentions {
		if m[1] != tunnel {
			t.Errorf("docs/tunnel.md says TimeoutStopSec=%s, hostcert-tunnel.service has %s", m[1], tunnel)
		}
	}
	want := fmt.Sprintf("`TimeoutStopSec=` %s / %s / %s (agent / tunnel / primary)",
		unitStopTimeout(t, root, "agent"), tunnel, unitStopTimeout(t, root, "primary"))
	if !strings.Contains(read("packaging.md"), want) {
		t.Errorf("docs/packaging.md does not say %q", want)
	}
}

// fuzzTarget matches the declaration of a Go fuzz target.
var fuzzTarget = regexp.MustCompile(`(?m)^func (Fuzz\w+)\(`)

// TestFuzzTargetsListed: docs/security.md lists every fuzz target of the
// repository with its package, so the threat model's list of fuzzed parsers
// cannot fall behind the code.
func TestFuzzTargetsListed(t *testing.T) {
	root, err := filepath.Abs("..")
	if err != nil {
		t.Fatal(err)
	}
	doc, err := os.ReadFile(filepath.Join(root, "docs", "security.md"))
	if err != nil {
		t.Fatal(err)
	}
	found := 0
	err = filepath.WalkDir(root, func(path string, d os.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if d.IsDir() && (strings.HasPrefix(d.Name(), ".") || d.Name() == "testdata" || d.Name() == "node_modules") {
			return filepath.SkipDir
		}
		if d.IsDir() || !strings.HasSuffix(path, "_test.go") {
			return nil
		}
		b, err := os.ReadFile(path)
		if err != nil {
			return err
		}
		pkg, _ := filepath.Rel(root, filepath.Dir(path))
		for _, m := range fuzzTarget.FindAllStringSubmatch(string(b), -1) {
			found++
			row := fmt.Sprintf("| `%s` | `%s` |", m[1], filepath.ToSlash(pkg))
			if !strings.Contains(string(doc), row) {
				t.Errorf("docs/security.md does not list %s of %s (want a row starting %q)", m[1], pkg, row)
			}
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	if found < 10 {
		t.Fatalf("found %d fuzz targets, want at least 10: is the walk right?", found)
	}
}
