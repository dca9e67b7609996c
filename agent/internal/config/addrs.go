package config

import (
	"encoding/json"
	"fmt"
	"strings"

	"gopkg.in/yaml.v3"

	"github.com/hostcert/hostcert/common/addrlist"
)

// Addrs are the primary nodes' addresses, in order of preference. In the
// config file `primary:` takes one address (`primary: p.example:1556`) or a
// list (`primary: [a.example, b.example:1556]`); on the command line
// --primary is repeatable and takes a comma-separated list.
type Addrs []string

// ParseAddrs splits a comma-separated list, dropping empty items.
func ParseAddrs(s string) Addrs {
	var out Addrs
	for _, a := range strings.Split(s, ",") {
		if a = strings.TrimSpace(a); a != "" {
			out = append(out, a)
		}
	}
	return out
}

// First is the first address, "" when there is none.
func (a Addrs) First() string {
	if len(a) == 0 {
		return ""
	}
	return a[0]
}

// String is the list joined by ", " (how status and messages show it).
func (a Addrs) String() string { return strings.Join(a, ", ") }

// Equal reports whether a and b are the same addresses in the same order
// once normalised.
func (a Addrs) Equal(b Addrs) bool {
	if len(a) != len(b) {
		return false
	}
	for i := range a {
		if NormalizeAddr(a[i]) != NormalizeAddr(b[i]) {
			return false
		}
	}
	return true
}

// UnmarshalYAML accepts a string or a sequence of strings.
func (a *Addrs) UnmarshalYAML(n *yaml.Node) error {
	l, err := addrlist.DecodeYAML(n, "")
	if err != nil {
		return err
	}
	*a = l
	return nil
}

// UnmarshalJSON accepts a string (records written before several
// primaries) or an array of strings.
func (a *Addrs) UnmarshalJSON(data []byte) error {
	var s string
	if err := json.Unmarshal(data, &s); err == nil {
		*a = nil
		if s != "" {
			*a = Addrs{s}
		}
		return nil
	}
	var l []string
	if err := json.Unmarshal(data, &l); err != nil {
		return fmt.Errorf("want an address or a list of addresses: %w", err)
	}
	*a = l
	return nil
}

// MarshalJSON writes one address as a string (readable by agents from
// before several primaries) and several as an array.
func (a Addrs) MarshalJSON() ([]byte, error) {
	if len(a) == 1 {
		return json.Marshal(a[0])
	}
	return json.Marshal([]string(a))
}
