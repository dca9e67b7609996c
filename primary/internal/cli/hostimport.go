package cli

import (
	"bufio"
	"fmt"
	"io"
	"os"
	"strings"

	"github.com/spf13/cobra"

	"github.com/hostcert/hostcert/primary/internal/admin"
	"github.com/hostcert/hostcert/primary/internal/enroll"
)

// importBatch is how many names one host.add request of an import carries:
// a few hundred KiB, far below admin.MaxMessage, and a short write
// transaction on the server.
const importBatch = 5000

// scanNames reads a host list: one or more names per line separated by
// spaces, tabs or commas; '#' starts a comment. It calls fn with each name
// and its line number, holding one line at a time.
func scanNames(r io.Reader, fn func(line int, name string) error) error {
	sc := bufio.NewScanner(r)
	sc.Buffer(make([]byte, 64*1024), 1<<20)
	n := 0
	for sc.Scan() {
		n++
		line := sc.Text()
		if i := strings.IndexByte(line, '#'); i >= 0 {
			line = line[:i]
		}
		for _, name := range strings.FieldsFunc(line, func(r rune) bool {
			return r == ' ' || r == '\t' || r == ',' || r == '\r'
		}) {
			if err := fn(n, name); err != nil {
				return err
			}
		}
	}
	if err := sc.Err(); err != nil {
		return fmt.Errorf("line %d: %w", n+1, err)
	}
	return nil
}

// checkNames validates every name of a host list with the primary's own
// normaliser and counts them.
func checkNames(r io.Reader) (int, error) {
	count := 0
	err := scanNames(r, func(line int, name string) error {
		if _, err := enroll.NormalizeName(name); err != nil {
			return fmt.Errorf("line %d: %w", line, err)
		}
		count++
		return nil
	})
	return count, err
}

// importHosts adds every name of the list at path ("-": standard input) to
// the registry, streaming it to the server in batches of importBatch names,
// so that a file of any size goes through in bounded memory and bounded
// messages. A regular file is checked whole first: a bad name anywhere
// imports nothing. From standard input, batches before a bad name stay
// imported (importing again is harmless: known names are skipped).
func importHosts(cmd *cobra.Command, path string) (admin.AddResult, error) {
	var total admin.AddResult
	var in io.Reader
	seekable := false
	if path == "-" {
		in = cmd.InOrStdin()
	} else {
		f, err := os.Open(path)
		if err != nil {
			return total, fmt.Errorf("read host list: %w", err)
		}
		defer f.Close()
		in = f
		if fi, err := f.Stat(); err == nil && fi.Mode().IsRegular() {
			seekable = true
			n, err := checkNames(f)
			if err != nil {
				return total, fmt.Errorf("%s: %w (nothing was imported)", path, err)
			}
			if n == 0 {
				return total, fmt.Errorf("%s holds no host names", path)
			}
			if _, err := f.Seek(0, io.SeekStart); err != nil {
				return total, fmt.Errorf("read host list: %w", err)
			}
		}
	}

	batch := make([]string, 0, importBatch)
	send := func() error {
		if len(batch) == 0 {
			return nil
		}
		var r admin.AddResult
		if err := call(cmd, admin.CmdHostAdd, admin.NamesArgs{Names: batch}, &r); err != nil {
			return err
		}
		total.Added += r.Added
		total.Total += r.Total
		batch = batch[:0]
		return nil
	}
	err := scanNames(in, func(line int, name string) error {
		if !seekable {
			if _, err := enroll.NormalizeName(name); err != nil {
				return fmt.Errorf("line %d: %w", line, err)
			}
		}
		batch = append(batch, name)
		if len(batch) == importBatch {
			return send()
		}
		return nil
	})
	if err == nil {
		err = send()
	}
	switch {
	case err != nil && total.Total == 0:
		return total, fmt.Errorf("%s: %w (nothing was imported)", path, err)
	case err != nil:
		return total, fmt.Errorf("%s: %w (the %d names before it were imported, %d of them new; importing again skips known names)", path, err, total.Total, total.Added)
	case total.Total == 0:
		return total, fmt.Errorf("%s holds no host names", path)
	}
	return total, nil
}
