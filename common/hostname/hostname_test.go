package hostname

import (
	"errors"
	"net/netip"
	"strings"
	"testing"
	"unicode/utf8"
)

const token = "hct_mfrggzdfmztwq2lknnwg23tpobyxe43uov3ho6dzpjqwey3emvtgo2lkn"

func TestNormalize(t *testing.T) {
	for _, c := range []struct{ in, want string }{
		{"host1.example.com", "host1.example.com"},
		{"Host1.Example.COM.", "host1.example.com"},
		{"  db-01.corp ", "db-01.corp"},
		{"\tPRIMARY.hostcert.test.\n", "primary.hostcert.test"},
		{"localhost", "localhost"}, // reserved for hosts only: see TestForHost
		{"3com.net", "3com.net"},
		{"xn--bcher-kva.example", "xn--bcher-kva.example"},
		{"XN--BCHER-KVA.example", "xn--bcher-kva.example"},
		{strings.Repeat("a", 63) + ".test", strings.Repeat("a", 63) + ".test"},
		{strings.Repeat("0123456789", 4) + ".test", strings.Repeat("0123456789", 4) + ".test"}, // a SHA-1 sized label is a name
	} {
		got, err := Normalize(c.in)
		if err != nil || got != c.want {
			t.Errorf("Normalize(%q) = %q, %v, want %q", c.in, got, err, c.want)
		}
	}
}

func TestNormalizeRefuses(t *testing.T) {
	for _, c := range []struct {
		in   string
		want error
	}{
		{"", ErrInvalid},
		{".", ErrInvalid},
		{"a..b", ErrInvalid},
		{"a.test..", ErrInvalid},
		{"-a.test", ErrInvalid},
		{"a-.test", ErrInvalid},
		{"a_b.test", ErrInvalid},
		{"a b.test", ErrInvalid},
		{"*.test", ErrInvalid},
		{"héllo.test", ErrInvalid},
		{"ｐｒｉｍａｒｙ.test", ErrInvalid}, // full-width letters
		{"primary．test", ErrInvalid}, // full-width dot
		{"xn--zz.test", ErrInvalid},  // not punycode that decodes
		{strings.Repeat("a", 64) + ".test", ErrInvalid},
		{strings.Repeat("abcdefghi.", 26) + "test", ErrInvalid},
		{"10.0.0.1", ErrReserved},
		{"10.0.0.1.", ErrReserved},
		{"::1", ErrReserved},
		{"[::1]", ErrReserved},
		{"fe80::1%eth0", ErrReserved},
		{"::ffff:127.0.0.1", ErrReserved},
		{"127.1", ErrReserved},
		{"0x7f000001", ErrReserved},
		{"host.123", ErrReserved},
		{token, ErrReserved},
		{strings.ToUpper(token), ErrReserved},
		{" " + token + ".example.com ", ErrReserved},
		{token[len(TokenPrefix):], ErrReserved}, // the body alone
		{strings.Repeat("0123456789abcdef", 4), ErrReserved},
	} {
		got, err := Normalize(c.in)
		if err == nil || !errors.Is(err, c.want) {
			t.Errorf("Normalize(%q) = %q, %v, want an error matching %v", c.in, got, err, c.want)
		}
	}
}

func TestForHost(t *testing.T) {
	for _, c := range []struct {
		in   string
		want string
		err  error
	}{
		{"web1.example.com", "web1.example.com", nil},
		{"localhost", "", ErrReserved},
		{"LocalHost.", "", ErrReserved},
		{"a.localhost", "", ErrReserved},
		{"x.y.LOCALHOST.", "", ErrReserved},
		{"localhost.example.com", "localhost.example.com", nil},
		{"notlocalhost", "notlocalhost", nil},
		{"127.0.0.1", "", ErrReserved},
		{token, "", ErrReserved},
	} {
		got, err := ForHost(c.in)
		if got != c.want || !errors.Is(err, c.err) || (c.err == nil) != (err == nil) {
			t.Errorf("ForHost(%q) = %q, %v, want %q, %v", c.in, got, err, c.want, c.err)
		}
	}
}

// TestTokenNeverRepeated: an error for a token-like name never contains the
// value, nor does Display or Quote.
func TestForServer(t *testing.T) {
	for in, want := range map[string]string{
		"127.0.0.1": "127.0.0.1", "[::1]": "::1", " 2001:DB8::0:1 ": "2001:db8::1", "::ffff:10.0.0.1": "10.0.0.1",
		"Primary.Example.": "primary.example", "localhost": "localhost",
	} {
		if got, err := ForServer(in); err != nil || got != want {
			t.Errorf("ForServer(%q) = %q, %v, want %q", in, got, err, want)
		}
	}
	for _, bad := range []string{"fe80::1%eth0", token, "a..b", "host.123", ""} {
		if got, err := ForServer(bad); err == nil {
			t.Errorf("ForServer(%q) = %q, want an error", bad, got)
		}
	}
}

func TestTokenNeverRepeated(t *testing.T) {
	body := token[len(TokenPrefix):]
	for _, in := range []string{token, " " + token + " ", token + ".example.com", "web." + body + ".test"} {
		_, err := ForHost(in)
		if err == nil {
			t.Fatalf("ForHost(%q) = nil error", in)
		}
		for _, out := range []string{err.Error(), Display(in), Quote(in)} {
			if strings.Contains(out, body[:20]) {
				t.Errorf("%q repeats the token value", out)
			}
		}
		if Display(in) != TokenPlaceholder {
			t.Errorf("Display(%q) = %q, want %q", in, Display(in), TokenPlaceholder)
		}
	}
}

func TestLooksLikeToken(t *testing.T) {
	for _, c := range []struct {
		in   string
		want bool
	}{
		{token, true},
		{"HCT_x", true},
		{"web.hct_x.test", true},
		{strings.Repeat("a", 48), false},
		{strings.Repeat("a1", 23) + "a", false},
		{strings.Repeat("a1", 24), true},
		{"x." + strings.Repeat("a1", 24) + ".y", true},
		{strings.Repeat("a", 40) + "-" + strings.Repeat("b", 40), false},
		{"web1.example.com", false},
		{"", false},
	} {
		if got := LooksLikeToken(c.in); got != c.want {
			t.Errorf("LooksLikeToken(%q) = %v, want %v", c.in, got, c.want)
		}
	}
}

func TestKeyAndEqual(t *testing.T) {
	if got := Key(" Web1.Example.COM. "); got != "web1.example.com" {
		t.Errorf("Key = %q, want web1.example.com", got)
	}
	if got := Key("not a name"); got != "not a name" {
		t.Errorf("Key(not a name) = %q, want it unchanged", got)
	}
	if !Equal("PRIMARY.test.", " primary.test") || Equal("a.test", "b.test") || Equal("", "") {
		t.Error("Equal disagrees with Normalize")
	}
}

// FuzzNormalize: Normalize is idempotent, its output passes its own check
// and is a plain lower-case ASCII host name that is neither an address nor
// token-like; a token-like input is never repeated in the error.
func FuzzNormalize(f *testing.F) {
	for _, s := range []string{"host1.example.com", "Host.Example.COM.", " a.b ", "10.0.0.1", "[::1]", "localhost",
		"a.localhost", token, "xn--bcher-kva.example", "xn--zz", "127.1", "a..b", "ｐｒｉｍａｒｙ.test", ""} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, in string) {
		out, err := Normalize(in)
		if err != nil {
			if !errors.Is(err, ErrInvalid) && !errors.Is(err, ErrReserved) {
				t.Fatalf("Normalize(%q) error %v matches neither ErrInvalid nor ErrReserved", in, err)
			}
			if LooksLikeToken(in) && len(in) > 0 && strings.Contains(err.Error(), in) {
				t.Fatalf("Normalize(%q) error repeats a token-like input: %v", in, err)
			}
			return
		}
		again, err := Normalize(out)
		if err != nil || again != out {
			t.Fatalf("Normalize(%q) = %q, but Normalize(%q) = %q, %v", in, out, out, again, err)
		}
		if out == "" || len(out) > MaxLen || !utf8.ValidString(out) || strings.ToLower(out) != out ||
			strings.HasSuffix(out, ".") || strings.TrimSpace(out) != out || LooksLikeToken(out) {
			t.Fatalf("Normalize(%q) = %q, not canonical", in, out)
		}
		if _, err := netip.ParseAddr(out); err == nil {
			t.Fatalf("Normalize(%q) = %q, an IP address", in, out)
		}
		if h, err := ForHost(in); err == nil && h != out {
			t.Fatalf("ForHost(%q) = %q, Normalize gives %q", in, h, out)
		}
		if sv, err := ForServer(in); err != nil || sv != out {
			t.Fatalf("ForServer(%q) = %q, %v; Normalize gives %q", in, sv, err, out)
		}
	})
}
