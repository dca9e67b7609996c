package logging

import (
	"bytes"
	"encoding/json"
	"go/ast"
	"go/parser"
	"go/token"
	"io/fs"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"
)

// A duration is written in milliseconds under a key that says so.
func TestDurationCarriesItsUnit(t *testing.T) {
	var b bytes.Buffer
	log, err := New(Options{Out: &b, Format: FormatJSON})
	if err != nil {
		t.Fatal(err)
	}
	log.Warn().Dur("retry_in"+DurationSuffix, 1500*time.Millisecond).Msg("renewal failed")
	var m map[string]any
	if err := json.Unmarshal(b.Bytes(), &m); err != nil {
		t.Fatalf("log line %q is not JSON: %v", b.String(), err)
	}
	if got, ok := m["retry_in_ms"].(float64); !ok || got != 1500 {
		t.Errorf("retry_in_ms = %v (line %s), want 1500 (milliseconds)", m["retry_in_ms"], b.String())
	}
}

// retired keys, and the one key each concept uses instead.
var retired = map[string]string{
	"component": "part", "data": "data_dir", "datadir": "data_dir", "dir": "data_dir",
	"client": "source", "peer": "source", "remote": "source", "remote_addr": "source", "src": "source",
}

// Every log call of the three programs (and common/) keeps to the keys:
// duration fields end in _ms, and no retired key is used.
func TestLogKeys(t *testing.T) {
	root := filepath.Join("..", "..")
	fset := token.NewFileSet()
	checked := 0
	for _, top := range []string{"agent", "primary", "tunnel", "common"} {
		err := filepath.WalkDir(filepath.Join(root, top), func(path string, d fs.DirEntry, err error) error {
			if err != nil || d.IsDir() || !strings.HasSuffix(path, ".go") || strings.HasSuffix(path, "_test.go") {
				return err
			}
			f, err := parser.ParseFile(fset, path, nil, 0)
			if err != nil {
				return err
			}
			ast.Inspect(f, func(n ast.Node) bool {
				call, ok := n.(*ast.CallExpr)
				if !ok || len(call.Args) < 2 {
					return true
				}
				sel, ok := call.Fun.(*ast.SelectorExpr)
				if !ok {
					return true
				}
				lit, ok := call.Args[0].(*ast.BasicLit)
				if !ok || lit.Kind != token.STRING {
					return true
				}
				key, _ := strconv.Unquote(lit.Value)
				switch sel.Sel.Name {
				case "Dur":
					checked++
					if !strings.HasSuffix(key, DurationSuffix) {
						t.Errorf("%s: duration field %q: want a key ending in %s", fset.Position(lit.Pos()), key, DurationSuffix)
					}
				case "Str", "Stringer", "Strs", "Int", "Int64", "Any", "Interface", "Time", "Bool", "IPAddr":
					checked++
					if want, bad := retired[key]; bad {
						t.Errorf("%s: log key %q: use %q", fset.Position(lit.Pos()), key, want)
					}
				}
				return true
			})
			return nil
		})
		if err != nil {
			t.Fatal(err)
		}
	}
	if checked < 20 {
		t.Fatalf("checked %d log fields, want the sources of the three programs (run from common/logging)", checked)
	}
}
