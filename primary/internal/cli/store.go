package cli

import (
	"errors"
	"fmt"
	"os"
	"runtime"
	"strings"

	"github.com/spf13/cobra"

	"github.com/hostcert/hostcert/primary/internal/store"
)

// StoreEnv names the environment variable that may carry the store's DSN,
// so that no password shows in the process list.
const StoreEnv = "HOSTCERT_STORE"

// storeFlags are --store and --store-file of init and serve.
type storeFlags struct{ dsn, file string }

func (f *storeFlags) add(cmd *cobra.Command) {
	cmd.Flags().StringVar(&f.dsn, "store", "",
		"the database: a SQLite file path, or postgres://USER@HOST:PORT/DB?sslmode=verify-full for PostgreSQL shared by several nodes (default: primary.db in --data; also "+StoreEnv+")")
	cmd.Flags().StringVar(&f.file, "store-file", "",
		"read the --store value from this file (owner-only; keeps a password out of the process list)")
}

// target resolves the flags and the environment (see storeTarget).
func (f *storeFlags) target() (target, warning string, err error) {
	return storeTarget(f.dsn, f.file, os.Getenv(StoreEnv), readStoreFile)
}

// storeTarget picks the store: --store, else the content of --store-file,
// else $HOSTCERT_STORE, else "" (SQLite in the data directory). --store and
// --store-file together are an error. A password given on the command line
// works but earns a warning: the process list shows it.
func storeTarget(flag, file, env string, read func(string) (string, error)) (target, warning string, err error) {
	switch {
	case flag != "" && file != "":
		return "", "", errors.New("--store and --store-file are exclusive: give one")
	case flag != "":
		if store.RedactDSN(flag) != flag {
			warning = "the --store value carries a password, which the process list shows; use --store-file or " + StoreEnv
		}
		return flag, warning, nil
	case file != "":
		v, err := read(file)
		if err != nil {
			return "", "", err
		}
		if v == "" {
			return "", "", fmt.Errorf("--store-file %s is empty", file)
		}
		return v, "", nil
	}
	return strings.TrimSpace(env), "", nil
}

// readStoreFile reads a --store-file: its first line, trimmed. It refuses
// a file that other users can read, as the primary does for its keys.
func readStoreFile(path string) (string, error) {
	fi, err := os.Stat(path)
	if err != nil {
		return "", fmt.Errorf("--store-file: %w", err)
	}
	if runtime.GOOS != "windows" && fi.Mode().Perm()&0o007 != 0 {
		return "", fmt.Errorf("--store-file %s is readable by other users (mode %04o); run: chmod o-rwx %s", path, fi.Mode().Perm(), path)
	}
	b, err := os.ReadFile(path)
	if err != nil {
		return "", fmt.Errorf("--store-file: %w", err)
	}
	line, _, _ := strings.Cut(string(b), "\n")
	return strings.TrimSpace(line), nil
}
