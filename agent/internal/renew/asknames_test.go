package renew

import (
	"crypto/x509"
	"crypto/x509/pkix"
	"fmt"
	"testing"
)

func TestAskNames(t *testing.T) {
	for _, tc := range []struct {
		cn    string
		dns   []string
		other []string
		want  string
	}{
		{"h", []string{"web.example"}, nil, "[web.example]"},
		{"h", []string{"web.example", "web"}, nil, "[web.example web]"},
		{"h", []string{"web.example"}, []string{"web", "WEB.example"}, "[web.example web]"},
		{"h", []string{"web.example", "web"}, []string{"web.internal"}, "[web.example web web.internal]"},
		{"only-cn.example", nil, []string{"x"}, "[only-cn.example x]"},
	} {
		c := &x509.Certificate{Subject: pkix.Name{CommonName: tc.cn}, DNSNames: tc.dns}
		if got := fmt.Sprint(AskNames(c, tc.other)); got != tc.want {
			t.Errorf("AskNames(dns %v, other %v) = %s, want %s", tc.dns, tc.other, got, tc.want)
		}
	}
}
