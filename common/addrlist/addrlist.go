// Package addrlist decodes the configuration keys that take one address or
// a list of addresses — the agent's `primary` and the tunnel's `upstream` —
// so that both programs accept the same two YAML shapes the same way.
package addrlist

import (
	"fmt"

	"gopkg.in/yaml.v3"
)

// DecodeYAML decodes a scalar (one address; an empty one is no address) or
// a sequence of strings. Any other node is an error naming its line and,
// when key is not empty, the key.
func DecodeYAML(n *yaml.Node, key string) ([]string, error) {
	switch n.Kind {
	case yaml.ScalarNode:
		var s string
		if err := n.Decode(&s); err != nil {
			return nil, err
		}
		if s == "" {
			return nil, nil
		}
		return []string{s}, nil
	case yaml.SequenceNode:
		var l []string
		if err := n.Decode(&l); err != nil {
			return nil, err
		}
		return l, nil
	}
	if key != "" {
		key += ": "
	}
	return nil, fmt.Errorf("line %d: %swant an address or a list of addresses", n.Line, key)
}
