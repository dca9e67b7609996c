package console

import (
	"errors"
	"net/http"
	"strings"
	"testing"
	"time"
)

func TestLinkOnceBeforeExpiry(t *testing.T) {
	t0 := time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC)
	cases := []struct {
		name    string
		useAt   time.Duration // after creation
		uses    int           // earlier uses
		wantErr bool
	}{
		{"first use", time.Minute, 0, false},
		{"second use", time.Minute, 1, true},
		{"just before expiry", 10*time.Minute - time.Nanosecond, 0, false},
		{"at expiry", 10 * time.Minute, 0, true},
		{"after expiry", time.Hour, 0, true},
	}
	for _, tc := range cases {
		a := newAuth()
		s, err := a.newLink("alice", t0.Add(10*time.Minute), t0)
		if err != nil {
			t.Fatal(err)
		}
		for range tc.uses {
			if _, err := a.useLink(s, t0); err != nil {
				t.Fatalf("%s: setup use: %v", tc.name, err)
			}
		}
		op, err := a.useLink(s, t0.Add(tc.useAt))
		if got := err != nil; got != tc.wantErr {
			t.Errorf("%s: useLink = %q, %v; want error %v", tc.name, op, err, tc.wantErr)
		}
		if err != nil && !errors.Is(err, ErrLinkInvalid) {
			t.Errorf("%s: useLink error = %v, want ErrLinkInvalid", tc.name, err)
		}
		if err == nil && op != "alice" {
			t.Errorf("%s: useLink = %q, want alice", tc.name, op)
		}
	}
}

func TestLinksAndSessionsKeptHashed(t *testing.T) {
	a := newAuth()
	now := time.Now()
	link, err := a.newLink("alice", now.Add(time.Minute), now)
	if err != nil {
		t.Fatal(err)
	}
	id, _, err := a.newSession("alice", "link", "", now)
	if err != nil {
		t.Fatal(err)
	}
	for h := range a.links {
		if string(h[:]) == link || h != hashOf(link) {
			t.Error("a link is not kept as its hash")
		}
	}
	for h := range a.sessions {
		if h != hashOf(id) {
			t.Error("a session is not kept as the hash of its cookie")
		}
	}
	if a.session("", now) != nil || a.session(link, now) != nil {
		t.Error("an empty or foreign cookie value opened a session")
	}
	if a.session(id, now.Add(SessionTTL)) != nil {
		t.Error("a session outlived SessionTTL")
	}
}

func TestCSRFOK(t *testing.T) {
	s := &session{csrf: "abc"}
	cases := []struct {
		s    *session
		got  string
		want bool
	}{
		{s, "abc", true},
		{s, "", false},
		{s, "abd", false},
		{s, "abcd", false},
		{nil, "abc", false},
		{&session{csrf: ""}, "", false},
	}
	for _, tc := range cases {
		if ok := csrfOK(tc.s, tc.got); ok != tc.want {
			t.Errorf("csrfOK(%v, %q) = %v, want %v", tc.s, tc.got, ok, tc.want)
		}
	}
}

func TestSameOrigin(t *testing.T) {
	cases := []struct {
		origin, site string
		want         bool
	}{
		{"", "", true},
		{"https://console.test:1557", "same-origin", true},
		{"", "none", true},
		{"https://evil.example", "", false},
		{"null", "", false},
		{"http://console.test:1557", "", false},
		{"", "cross-site", false},
		{"", "same-site", false},
		{"https://console.test:1557", "cross-site", false},
	}
	for _, tc := range cases {
		r, _ := http.NewRequest(http.MethodPost, "https://console.test:1557/tokens/create", nil)
		if tc.origin != "" {
			r.Header.Set("Origin", tc.origin)
		}
		if tc.site != "" {
			r.Header.Set("Sec-Fetch-Site", tc.site)
		}
		if got := sameOrigin(r); got != tc.want {
			t.Errorf("sameOrigin(Origin %q, Sec-Fetch-Site %q) = %v, want %v", tc.origin, tc.site, got, tc.want)
		}
	}
}

func TestHumanDuration(t *testing.T) {
	cases := []struct {
		d    time.Duration
		want string
	}{
		{30 * time.Second, "30 seconds"},
		{5 * time.Minute, "5 minutes"},
		{3 * time.Hour, "3 hours"},
		{72 * time.Hour, "3 days"},
		{-72 * time.Hour, "3 days ago"},
	}
	for _, tc := range cases {
		if got := humanDuration(tc.d); got != tc.want {
			t.Errorf("humanDuration(%v) = %q, want %q", tc.d, got, tc.want)
		}
	}
}

func TestRefusedLoginsAuditedAtMostOnceASecond(t *testing.T) {
	c := &Console{}
	t0 := time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC)
	steps := []struct {
		at   time.Duration
		want bool
	}{{0, true}, {10 * time.Millisecond, false}, {999 * time.Millisecond, false}, {time.Second, true}, {1500 * time.Millisecond, false}, {3 * time.Second, true}}
	for _, s := range steps {
		if got := c.auditRefusal(t0.Add(s.at)); got != s.want {
			t.Errorf("auditRefusal(t0+%v) = %v, want %v", s.at, got, s.want)
		}
	}
}

func TestDetailText(t *testing.T) {
	cases := []struct {
		d    map[string]any
		want string
	}{
		{nil, ""},
		{map[string]any{"b": 2, "a": "x"}, "a=x, b=2"},
		{map[string]any{"k": strings.Repeat("v", 200)}, "k=" + strings.Repeat("v", 155) + "..."},
	}
	for _, tc := range cases {
		if got := detailText(tc.d); got != tc.want {
			t.Errorf("detailText(%v) = %q, want %q", tc.d, got, tc.want)
		}
	}
}
