package ca

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"time"

	"github.com/hostcert/hostcert/common/atomicfile"
)

// Join makes dir the data directory of another primary node of an existing
// fleet. from is a copy of the first node's DIR/ca directory (its roots,
// issuing CAs and their keys, cross certificates, CRL and primary-names,
// whose names stay reserved here too); every file but the host ID is
// copied owner-only, the copy must load as a CA (keys matching their
// certificates), and the node gets its own host ID and its own TLS server
// certificate for names (the shared service name and the node's own name),
// issued like every primary certificate (EnsureServerCert). It refuses
// with ErrExists when dir already has a CA; a copy that does not load leaves
// no CA behind.
func Join(dir, from string, names []string, now time.Time) (_ *CA, err error) {
	for _, p := range []string{RootPath(dir), CertPath(dir)} {
		if _, err := os.Stat(p); err == nil {
			return nil, fmt.Errorf("join: %s: %w", dir, ErrExists)
		} else if !errors.Is(err, fs.ErrNotExist) {
			return nil, fmt.Errorf("join: %w", err)
		}
	}
	entries, err := os.ReadDir(from)
	if err != nil {
		return nil, fmt.Errorf("join: the copy of the CA files: %w", err)
	}
	_, statErr := os.Stat(dir)
	created := errors.Is(statErr, fs.ErrNotExist)
	defer func() {
		if err == nil {
			return
		}
		if created {
			os.RemoveAll(dir)
			return
		}
		os.RemoveAll(filepath.Join(dir, caDir))
		os.RemoveAll(filepath.Join(dir, tlsDir))
	}()
	for _, d := range []string{dir, filepath.Join(dir, caDir), filepath.Join(dir, tlsDir)} {
		if err := atomicfile.MkdirPrivate(d); err != nil {
			return nil, fmt.Errorf("join: %w", err)
		}
	}
	for _, e := range entries {
		if !e.Type().IsRegular() || e.Name() == hostIDFile {
			continue
		}
		b, err := os.ReadFile(filepath.Join(from, e.Name()))
		if err != nil {
			return nil, fmt.Errorf("join: %w", err)
		}
		if err := atomicfile.WritePrivate(filepath.Join(dir, caDir, e.Name()), b); err != nil {
			return nil, fmt.Errorf("join: %w", err)
		}
	}
	if _, err := ensureHostID(dir); err != nil {
		return nil, fmt.Errorf("join: %w", err)
	}
	c, err := Load(dir)
	if err != nil {
		return nil, fmt.Errorf("join: the copy in %s: %w", from, err)
	}
	if _, err := c.EnsureServerCert(names, now); err != nil {
		return nil, fmt.Errorf("join: %w", err)
	}
	return c, nil
}
