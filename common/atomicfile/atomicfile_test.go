package atomicfile

import (
	"os"
	"path/filepath"
	"runtime"
	"testing"
)

func TestWritePrivateReplacesAtomically(t *testing.T) {
	dir := t.TempDir()
	p := filepath.Join(dir, "key.pem")
	if err := WritePrivate(p, []byte("old")); err != nil {
		t.Fatal(err)
	}
	if err := WritePrivate(p, []byte("new")); err != nil {
		t.Fatal(err)
	}
	got, err := os.ReadFile(p)
	if err != nil || string(got) != "new" {
		t.Fatalf("ReadFile = %q, %v, want new", got, err)
	}
	if runtime.GOOS != "windows" {
		st, _ := os.Stat(p)
		if st.Mode().Perm() != 0o600 {
			t.Errorf("mode = %v, want 0600", st.Mode().Perm())
		}
	}
	ents, _ := os.ReadDir(dir)
	if len(ents) != 1 {
		t.Errorf("directory holds %d entries, want 1 (no temp file left)", len(ents))
	}
}

func TestWriteFailureLeavesOldContent(t *testing.T) {
	dir := t.TempDir()
	p := filepath.Join(dir, "cert.pem")
	if err := Write(p, []byte("old"), 0o644); err != nil {
		t.Fatal(err)
	}
	// A target that is a non-empty directory cannot be replaced by rename.
	bad := filepath.Join(dir, "sub")
	os.MkdirAll(filepath.Join(bad, "x"), 0o700)
	if err := Write(bad, []byte("new"), 0o644); err == nil {
		t.Fatal("Write over a non-empty directory = nil error, want an error")
	}
	got, _ := os.ReadFile(p)
	if string(got) != "old" {
		t.Errorf("ReadFile = %q, want old", got)
	}
	ents, _ := os.ReadDir(dir)
	if len(ents) != 2 {
		t.Errorf("directory holds %d entries, want 2 (temp file removed)", len(ents))
	}
}

func TestMkdirPrivate(t *testing.T) {
	d := filepath.Join(t.TempDir(), "a", "data")
	if err := MkdirPrivate(d); err != nil {
		t.Fatal(err)
	}
	if runtime.GOOS != "windows" {
		st, _ := os.Stat(d)
		if st.Mode().Perm() != 0o700 {
			t.Errorf("mode = %v, want 0700", st.Mode().Perm())
		}
	}
}
