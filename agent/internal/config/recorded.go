package config

import (
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"

	"github.com/hostcert/hostcert/common/atomicfile"
)

// RecordedFile is the file in the data directory where get-ca-cert records
// the primary it confirmed (and the tunnels given with it), the way
// `step ca bootstrap` writes its defaults.
const RecordedFile = "defaults.json"

// Recorded is what get-ca-cert remembers for later commands and `run`.
type Recorded struct {
	Primary Addrs    `json:"primary"` // one address as a string, several as an array
	Tunnels []string `json:"tunnels,omitempty"`
}

// RecordedPath is the record's path in dataDir.
func RecordedPath(dataDir string) string { return filepath.Join(dataDir, RecordedFile) }

// ReadRecorded reads the record in dataDir; none is the zero Recorded.
func ReadRecorded(dataDir string) (Recorded, error) {
	var r Recorded
	data, err := os.ReadFile(RecordedPath(dataDir))
	if errors.Is(err, os.ErrNotExist) {
		return r, nil
	}
	if err == nil {
		err = json.Unmarshal(data, &r)
	}
	if err != nil {
		return Recorded{}, fmt.Errorf("recorded primary %s: %w (run get-ca-cert --primary HOST again, or pass --primary)", RecordedPath(dataDir), err)
	}
	return r, nil
}

// WriteRecorded replaces the record in dataDir atomically.
func WriteRecorded(dataDir string, r Recorded) error {
	data, err := json.MarshalIndent(r, "", "  ")
	if err != nil {
		return fmt.Errorf("encode recorded primary: %w", err)
	}
	if err := atomicfile.Write(RecordedPath(dataDir), append(data, '\n'), 0o644); err != nil {
		return fmt.Errorf("record primary: %w", err)
	}
	return nil
}

// Resolve fills in, from what get-ca-cert recorded, what neither a flag nor
// the config file set (precedence: flag > config file > recorded): the
// primaries, and the tunnels — the recorded tunnels only while the
// primaries in use are the recorded ones (they were given for them).
func Resolve(c Config, r Recorded) Config {
	if len(r.Primary) == 0 {
		return c
	}
	if len(c.Primary) == 0 {
		c.Primary, c.PrimarySource = append(Addrs(nil), r.Primary...), SourceRecorded
	}
	if c.Tunnels == nil && c.Primary.Equal(r.Primary) && len(r.Tunnels) > 0 {
		c.Tunnels = append([]string(nil), r.Tunnels...)
	}
	return c
}
