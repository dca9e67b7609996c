package console

import (
	"crypto/rand"
	"crypto/sha256"
	"crypto/subtle"
	"encoding/base64"
	"errors"
	"sync"
	"time"
)

// Session lifetimes.
const (
	// SessionTTL is how long a console session lasts from its login.
	SessionTTL = 8 * time.Hour
	// maxLinks and maxSessions bound the memory a flood of logins can take.
	maxLinks    = 1000
	maxSessions = 1000
)

// Errors of the login link.
var (
	// ErrLinkInvalid: no such link, already used, or expired (one error:
	// the page does not tell which).
	ErrLinkInvalid = errors.New("login link unknown, used or expired")
	errTooMany     = errors.New("too many open login links or sessions")
)

// link is a login link not yet used: only the hash of its secret is kept.
type link struct {
	operator string
	expires  time.Time
}

// session is a logged-in browser.
type session struct {
	operator string
	csrf     string
	expires  time.Time
	via      string // "link" or "certificate"
	serial   string // via certificate: the certificate's serial (the session works only with it)
}

// auth holds the login links and the sessions, in memory: a restart of
// the primary logs everyone out and voids the links.
type auth struct {
	mu       sync.Mutex
	links    map[[32]byte]link
	sessions map[[32]byte]*session
}

func newAuth() *auth {
	return &auth{links: map[[32]byte]link{}, sessions: map[[32]byte]*session{}}
}

func secret() (string, error) {
	b := make([]byte, 32)
	if _, err := rand.Read(b); err != nil {
		return "", err
	}
	return base64.RawURLEncoding.EncodeToString(b), nil
}

func hashOf(s string) [32]byte { return sha256.Sum256([]byte(s)) }

// newLink stores a link for operator and returns its secret.
func (a *auth) newLink(operator string, expires, now time.Time) (string, error) {
	s, err := secret()
	if err != nil {
		return "", err
	}
	a.mu.Lock()
	defer a.mu.Unlock()
	a.sweep(now)
	if len(a.links) >= maxLinks {
		return "", errTooMany
	}
	a.links[hashOf(s)] = link{operator: operator, expires: expires}
	return s, nil
}

// useLink consumes a link: it works once, before it expires.
func (a *auth) useLink(s string, now time.Time) (string, error) {
	a.mu.Lock()
	defer a.mu.Unlock()
	h := hashOf(s)
	l, ok := a.links[h]
	if !ok {
		return "", ErrLinkInvalid
	}
	delete(a.links, h)
	if !now.Before(l.expires) {
		return "", ErrLinkInvalid
	}
	return l.operator, nil
}

// newSession opens a session and returns its cookie value. serial is the
// certificate of a session via certificate ("" for a link).
func (a *auth) newSession(operator, via, serial string, now time.Time) (string, *session, error) {
	id, err := secret()
	if err != nil {
		return "", nil, err
	}
	csrf, err := secret()
	if err != nil {
		return "", nil, err
	}
	a.mu.Lock()
	defer a.mu.Unlock()
	a.sweep(now)
	if len(a.sessions) >= maxSessions {
		return "", nil, errTooMany
	}
	s := &session{operator: operator, csrf: csrf, expires: now.Add(SessionTTL), via: via, serial: serial}
	a.sessions[hashOf(id)] = s
	return id, s, nil
}

// session finds the live session of a cookie value.
func (a *auth) session(id string, now time.Time) *session {
	if id == "" {
		return nil
	}
	a.mu.Lock()
	defer a.mu.Unlock()
	h := hashOf(id)
	s, ok := a.sessions[h]
	if !ok {
		return nil
	}
	if !now.Before(s.expires) {
		delete(a.sessions, h)
		return nil
	}
	return s
}

func (a *auth) endSession(id string) {
	a.mu.Lock()
	defer a.mu.Unlock()
	delete(a.sessions, hashOf(id))
}

// sweep drops expired links and sessions (a.mu held).
func (a *auth) sweep(now time.Time) {
	for h, l := range a.links {
		if !now.Before(l.expires) {
			delete(a.links, h)
		}
	}
	for h, s := range a.sessions {
		if !now.Before(s.expires) {
			delete(a.sessions, h)
		}
	}
}

// csrfOK compares a form's CSRF token with the session's in constant time.
func csrfOK(s *session, got string) bool {
	return s != nil && got != "" && subtle.ConstantTimeCompare([]byte(got), []byte(s.csrf)) == 1
}
