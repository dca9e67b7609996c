package store

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"os"
)

// Backup writes a consistent copy of the database to dst (which must not
// exist) while the store stays online: SQLite's VACUUM INTO reads one
// snapshot, so writes committed during the backup are simply not in it.
// The copy is owner-only and synced before Backup returns.
func (s *Store) Backup(ctx context.Context, dst string) error {
	if _, err := os.Stat(dst); err == nil {
		return fmt.Errorf("backup to %s: %w", dst, ErrExists)
	} else if !errors.Is(err, os.ErrNotExist) {
		return fmt.Errorf("backup to %s: %w", dst, err)
	}
	db, err := sql.Open("sqlite", dsn(s.path, "busy_timeout(10000)"))
	if err != nil {
		return fmt.Errorf("backup to %s: %w", dst, err)
	}
	defer db.Close()
	if _, err := db.ExecContext(ctx, "VACUUM INTO ?", dst); err != nil {
		return fmt.Errorf("backup to %s: %w", dst, err)
	}
	f, err := os.OpenFile(dst, os.O_RDWR, 0)
	if err != nil {
		return fmt.Errorf("backup to %s: %w", dst, err)
	}
	defer f.Close()
	if err := f.Chmod(0o600); err != nil {
		return fmt.Errorf("backup to %s: %w", dst, err)
	}
	if err := f.Sync(); err != nil {
		return fmt.Errorf("backup to %s: sync: %w", dst, err)
	}
	return nil
}
