package cli

import (
	"errors"
	"strings"
	"testing"
)

// TestRecordedStore: serve without --store uses the store init or join
// recorded; a PostgreSQL node never falls back to a new SQLite file.
func TestRecordedStore(t *testing.T) {
	const pg = "postgres://h@db:5432/hc"
	read := func(p string) (string, error) {
		if p == "/etc/hc.dsn" {
			return pg + "?from=file", nil
		}
		return "", errors.New("no such file")
	}
	for _, tc := range []struct {
		name    string
		target  string
		rec     *nodeRecord
		want    string
		wantErr string
	}{
		{"no record, default", "", nil, "", ""},
		{"no record, flag", pg, nil, pg, ""},
		{"sqlite default", "", &nodeRecord{Backend: "sqlite"}, "", ""},
		{"sqlite path recorded", "", &nodeRecord{Backend: "sqlite", Store: "/x/p.db"}, "/x/p.db", ""},
		{"postgres recorded DSN", "", &nodeRecord{Backend: "postgres", Store: pg}, pg, ""},
		{"postgres recorded file", "", &nodeRecord{Backend: "postgres", StoreFile: "/etc/hc.dsn"}, pg + "?from=file", ""},
		{"postgres from the environment, not given now", "", &nodeRecord{Backend: "postgres"}, "", "keeps its store in PostgreSQL"},
		{"postgres given again", pg, &nodeRecord{Backend: "postgres"}, pg, ""},
		{"postgres node given SQLite", "/tmp/x.db", &nodeRecord{Backend: "postgres", Store: pg}, "", "keeps its store in PostgreSQL"},
		{"sqlite node moved to postgres", pg, &nodeRecord{Backend: "sqlite"}, pg, ""},
	} {
		got, err := recordedStore("/d", tc.target, tc.rec, read)
		if tc.wantErr != "" {
			if err == nil || !strings.Contains(err.Error(), tc.wantErr) {
				t.Errorf("%s: recordedStore = %q, %v, want error containing %q", tc.name, got, err, tc.wantErr)
			}
			continue
		}
		if err != nil || got != tc.want {
			t.Errorf("%s: recordedStore = %q, %v, want %q", tc.name, got, err, tc.want)
		}
	}
}
