package addrlist

import (
	"reflect"
	"strings"
	"testing"

	"gopkg.in/yaml.v3"
)

func TestDecodeYAML(t *testing.T) {
	for _, c := range []struct {
		doc  string
		want []string
		err  string
	}{
		{`a:1556`, []string{"a:1556"}, ""},
		{`""`, nil, ""},
		{`[a, "b:1"]`, []string{"a", "b:1"}, ""},
		{`[]`, []string{}, ""},
		{`{x: 1}`, nil, "line 1: upstream: want an address or a list of addresses"},
		{`[[a]]`, nil, "cannot unmarshal"},
	} {
		var doc yaml.Node
		if err := yaml.Unmarshal([]byte(c.doc), &doc); err != nil {
			t.Fatal(err)
		}
		got, err := DecodeYAML(doc.Content[0], "upstream")
		if c.err != "" {
			if err == nil || !strings.Contains(err.Error(), c.err) {
				t.Errorf("DecodeYAML(%s) = %v, %v, want error %q", c.doc, got, err, c.err)
			}
			continue
		}
		if err != nil || !reflect.DeepEqual(got, c.want) {
			t.Errorf("DecodeYAML(%s) = %#v, %v, want %#v", c.doc, got, err, c.want)
		}
	}
}
