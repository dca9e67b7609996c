//go:build !windows

package atomicfile

import "os"

func restrict(f *os.File, perm os.FileMode, _ bool) error { return f.Chmod(perm) }

func restrictDir(dir string) error { return os.Chmod(dir, 0o700) }

func syncDir(dir string) error {
	d, err := os.Open(dir)
	if err != nil {
		return err
	}
	defer d.Close()
	return d.Sync()
}
