package server

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strings"

	"github.com/hostcert/hostcert/primary/internal/ca"
)

// ErrTooOpen marks a data directory whose private files other users can
// read or write: serve refuses to start (like sshd with a loose host key).
var ErrTooOpen = errors.New("private files are open to other users")

// LooseFile is one file or directory of the data directory that group or
// others can read, write or (a directory) enter.
type LooseFile struct {
	Path string
	Mode fs.FileMode
}

// Fix is the exact command that makes the file owner-only, keeping the
// owner's own bits: "chmod 600 /var/lib/hostcert/primary/ca/ca-key.pem".
func (l LooseFile) Fix() string {
	return fmt.Sprintf("chmod %o %s", l.Mode.Perm()&0o700, shellQuote(l.Path))
}

// PermissionError lists every loose file at once, each with its fix, so
// one run of serve tells the operator everything to change.
type PermissionError struct {
	Dir   string
	Files []LooseFile
}

func (e *PermissionError) Error() string {
	parts := make([]string, len(e.Files))
	for i, f := range e.Files {
		parts[i] = fmt.Sprintf("%s is %04o (fix: %s)", f.Path, f.Mode.Perm(), f.Fix())
	}
	return fmt.Sprintf("refusing to start: %s in %s: %s", ErrTooOpen, e.Dir, strings.Join(parts, "; "))
}

func (e *PermissionError) Unwrap() error { return ErrTooOpen }

// tooOpen reports whether a mode gives group or others any access: read,
// write, or (on a directory) the right to enter it.
func tooOpen(mode fs.FileMode) bool { return mode.Perm()&0o077 != 0 }

// privatePaths are the paths of the data directory dir that must be
// owner-only: the directory and its sub-directories, every private key
// (a *.pem whose name says key: the CA key, the server key, and the keys a
// CA rotation keeps), and the database with its WAL and shared memory.
// Paths that do not exist are skipped by the caller.
func privatePaths(dir string) []string {
	paths := []string{dir}
	entries, _ := os.ReadDir(dir)
	for _, e := range entries {
		if !e.IsDir() {
			continue
		}
		sub := filepath.Join(dir, e.Name())
		paths = append(paths, sub)
		files, _ := os.ReadDir(sub)
		for _, f := range files {
			if isKeyFile(f.Name()) {
				paths = append(paths, filepath.Join(sub, f.Name()))
			}
		}
	}
	for _, e := range entries {
		if !e.IsDir() && isKeyFile(e.Name()) {
			paths = append(paths, filepath.Join(dir, e.Name()))
		}
	}
	// The well-known keys, even where the listing above could not read.
	paths = append(paths, ca.KeyPath(dir), ca.ServerKeyPath(dir))
	db := filepath.Join(dir, DBName)
	paths = append(paths, db, db+"-wal", db+"-shm")
	return dedupe(paths)
}

// isKeyFile: "ca-key.pem", "server-key.pem", "root-key.pem", "key.pem".
func isKeyFile(name string) bool {
	return strings.HasSuffix(name, ".pem") && strings.Contains(strings.ToLower(name), "key")
}

func dedupe(in []string) []string {
	seen := make(map[string]bool, len(in))
	out := in[:0]
	for _, p := range in {
		if !seen[p] {
			seen[p] = true
			out = append(out, p)
		}
	}
	return out
}

// CheckPermissions refuses a data directory whose private files (see
// privatePaths) group or others can access, with a *PermissionError naming
// each of them and its chmod. On Windows it checks nothing: access there is
// an ACL, which `init` sets owner-only (SYSTEM, Administrators, the owner)
// and which a mode cannot describe.
func CheckPermissions(dir string) error {
	if !modesMeaningful {
		return nil
	}
	var loose []LooseFile
	for _, p := range privatePaths(dir) {
		fi, err := os.Stat(p)
		if errors.Is(err, fs.ErrNotExist) {
			continue
		}
		if err != nil {
			return fmt.Errorf("check permissions of %s: %w", p, err)
		}
		if tooOpen(fi.Mode()) {
			loose = append(loose, LooseFile{Path: p, Mode: fi.Mode()})
		}
	}
	if len(loose) > 0 {
		return &PermissionError{Dir: dir, Files: loose}
	}
	return nil
}

// shellQuote quotes p for a POSIX shell when it holds anything but safe
// characters, so the printed fix can be pasted as it is.
func shellQuote(p string) string {
	safe := func(r rune) bool {
		return r == '/' || r == '.' || r == '-' || r == '_' || r == '+' || r == ':' || r == ',' || r == '@' ||
			(r >= 'a' && r <= 'z') || (r >= 'A' && r <= 'Z') || (r >= '0' && r <= '9')
	}
	if p != "" && strings.IndexFunc(p, func(r rune) bool { return !safe(r) }) < 0 {
		return p
	}
	return "'" + strings.ReplaceAll(p, "'", `'\''`) + "'"
}
