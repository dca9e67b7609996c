package tokens

import (
	"bytes"
	"crypto/sha256"
	"errors"
	"strings"
	"testing"
	"time"
)

func TestGenerate(t *testing.T) {
	seen := make(map[string]bool)
	for i := 0; i < 100; i++ {
		v, h, err := Generate()
		if err != nil {
			t.Fatalf("Generate() error = %v", err)
		}
		if !strings.HasPrefix(v, Prefix) {
			t.Errorf("Generate() = %q, want prefix %q", v, Prefix)
		}
		if len(v) != ValueLen || ValueLen != 4+52 {
			t.Errorf("len(Generate()) = %d, ValueLen %d, want 56", len(v), ValueLen)
		}
		if !WellFormed(v) {
			t.Errorf("WellFormed(%q) = false, want true", v)
		}
		sum := sha256.Sum256([]byte(v))
		if !bytes.Equal(h, sum[:]) || !bytes.Equal(Hash(v), h) {
			t.Errorf("Generate() hash = %x, want SHA-256 of value %x", h, sum)
		}
		raw, err := encoding.DecodeString(v[len(Prefix):])
		if err != nil || len(raw) != RandomBytes {
			t.Errorf("decode(%q) = %d bytes, %v, want %d bytes", v, len(raw), err, RandomBytes)
		}
		if seen[v] {
			t.Fatalf("Generate() repeated %q", v)
		}
		seen[v] = true
	}
}

func TestEqual(t *testing.T) {
	a, b := Hash("hct_a"), Hash("hct_b")
	if !Equal(a, Hash("hct_a")) || Equal(a, b) || Equal(a, a[:10]) {
		t.Errorf("Equal does not compare hashes exactly")
	}
}

func TestWellFormed(t *testing.T) {
	good, _, err := Generate()
	if err != nil {
		t.Fatal(err)
	}
	body := good[len(Prefix):]
	for _, tc := range []struct {
		in   string
		want bool
	}{
		{good, true},
		{Prefix + strings.Repeat("a", 52), true},
		{Prefix + strings.Repeat("7", 52), false}, // last char carries non-zero pad bits
		{"", false},
		{Prefix, false},
		{good[:len(good)-1], false},
		{good + "a", false},
		{"hcx_" + body, false},
		{"HCT_" + body, false},
		{Prefix + strings.ToUpper(body), false},
		{Prefix + body[:51] + "1", false},
		{Prefix + body[:51] + "=", false},
		{" " + good[1:], false},
		{good[:len(good)-1] + "\n", false},
		{Prefix + strings.Repeat("é", 26), false},
	} {
		if got := WellFormed(tc.in); got != tc.want {
			t.Errorf("WellFormed(%q) = %v, want %v", tc.in, got, tc.want)
		}
	}
}

func TestValidName(t *testing.T) {
	for _, tc := range []struct {
		in string
		ok bool
	}{
		{"a", true},
		{"dmz-batch_2026.11", true},
		{"ABC.def-_9", true},
		{strings.Repeat("x", 64), true},
		{strings.Repeat("x", 65), false},
		{"", false},
		{"has space", false},
		{"slash/name", false},
		{"ümlaut", false},
		{"semi;colon", false},
		{"new\nline", false},
	} {
		err := ValidName(tc.in)
		if (err == nil) != tc.ok {
			t.Errorf("ValidName(%q) = %v, want ok=%v", tc.in, err, tc.ok)
		}
		if err != nil && !errors.Is(err, ErrBadName) {
			t.Errorf("ValidName(%q) = %v, want it to wrap ErrBadName", tc.in, err)
		}
	}
}

func TestMaxUses(t *testing.T) {
	for _, tc := range []struct {
		kind string
		in   int
		want int
		ok   bool
	}{
		{KindStandard, 0, 1, true},
		{KindStandard, 5, 5, true},
		{KindStandard, MaxMaxUses, MaxMaxUses, true},
		{KindStandard, MaxMaxUses + 1, 0, false},
		{KindStandard, -1, 0, false},
		{KindReissue, 0, 1, true},
		{KindReissue, 1, 1, true},
		{KindReissue, 2, 0, false},
		{"bogus", 1, 0, false},
	} {
		got, err := MaxUses(tc.kind, tc.in)
		if got != tc.want || (err == nil) != tc.ok {
			t.Errorf("MaxUses(%q, %d) = %d, %v, want %d, ok=%v", tc.kind, tc.in, got, err, tc.want, tc.ok)
		}
	}
}

func TestParseValidity(t *testing.T) {
	const day = 24 * time.Hour
	for _, tc := range []struct {
		in   string
		want time.Duration
		ok   bool
	}{
		{"", 24 * time.Hour, true},
		{"  ", 24 * time.Hour, true},
		{"24h", 24 * time.Hour, true},
		{"90m", 90 * time.Minute, true},
		{"1h30m", 90 * time.Minute, true},
		{"7d", 7 * day, true},
		{"1d12h", 36 * time.Hour, true},
		{"999d", 999 * day, true},
		{"23976h", 999 * day, true},
		{"1000d", 0, false},
		{"998d24h1s", 0, false},
		{"0s", 0, false},
		{"500ms", 0, false},
		{"-1h", 0, false},
		{"-1d", 0, false},
		{"d", 0, false},
		{"1.5d", 0, false},
		{"7days", 0, false},
		{"1d-1h", 0, false},
		{"99999999999d", 0, false},
		{"tomorrow", 0, false},
		{"24", 0, false},
	} {
		got, err := ParseValidity(tc.in)
		if (err == nil) != tc.ok || (tc.ok && got != tc.want) {
			t.Errorf("ParseValidity(%q) = %v, %v, want %v, ok=%v", tc.in, got, err, tc.want, tc.ok)
		}
	}
}

func BenchmarkGenerate(b *testing.B) {
	for b.Loop() {
		if _, _, err := Generate(); err != nil {
			b.Fatal(err)
		}
	}
}

func BenchmarkWellFormedAndHash(b *testing.B) {
	v, _, _ := Generate()
	for b.Loop() {
		if !WellFormed(v) {
			b.Fatal("not well-formed")
		}
		Hash(v)
	}
}
