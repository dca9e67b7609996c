package pgtest

import (
	"fmt"
	"strconv"
	"time"
)

// Launch starts a throwaway cluster outside a test — the same cluster as
// Start's (initdb and pg_ctl in a temporary directory, 127.0.0.1 only, an
// unprivileged user when run as root) — for programs such as the
// high-availability demo. The caller stops it and deletes its files with
// Remove. Where PostgreSQL is not installed the error says so.
func Launch() (*Cluster, error) {
	c, err := launch()
	if err != nil {
		if c != nil {
			c.remove()
		}
		return nil, err
	}
	return c, nil
}

// Remove stops the cluster at once and deletes its files.
func (c *Cluster) Remove() { c.remove() }

// NewDatabase creates a new, empty database and returns its DSN.
func (c *Cluster) NewDatabase(name string) (string, error) {
	out, err := c.run(time.Minute, "createdb", "-h", "127.0.0.1", "-p", strconv.Itoa(c.Port), "-U", Superuser, name)
	if err != nil {
		return "", fmt.Errorf("createdb %s: %v\n%s", name, err, out)
	}
	return c.DSN(name), nil
}
