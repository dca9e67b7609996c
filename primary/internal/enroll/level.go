package enroll

import (
	"context"
	"sync/atomic"
	"time"

	"github.com/hostcert/hostcert/common/protocol"
	"github.com/hostcert/hostcert/primary/internal/store"
)

// LevelStore reads and writes the deployment security level durably.
type LevelStore interface {
	Level(ctx context.Context) (protocol.Level, error)
	SetLevel(ctx context.Context, l protocol.Level, a store.Audit) error
}

// LevelCache keeps the level in memory so that requests do not read it from
// the store each time. SetLevel writes through, so a change made through it
// applies to the very next request; a change made by another process (a
// second primary on a shared store) is seen after Invalidate, which the
// server calls when the store announces a change, or within the TTL.
type LevelCache struct {
	st  LevelStore
	ttl time.Duration
	now func() time.Time
	cur atomic.Pointer[cachedLevel]
}

type cachedLevel struct {
	level protocol.Level
	until time.Time
}

// NewLevelCache caches st's level for ttl (5s when <= 0).
func NewLevelCache(st LevelStore, ttl time.Duration) *LevelCache {
	if ttl <= 0 {
		ttl = 5 * time.Second
	}
	return &LevelCache{st: st, ttl: ttl, now: time.Now}
}

// Level returns the cached level, reading the store when it is older than the TTL.
func (c *LevelCache) Level(ctx context.Context) (protocol.Level, error) {
	now := c.now()
	if v := c.cur.Load(); v != nil && now.Before(v.until) {
		return v.level, nil
	}
	l, err := c.st.Level(ctx)
	if err != nil {
		return "", err
	}
	c.cur.Store(&cachedLevel{level: l, until: now.Add(c.ttl)})
	return l, nil
}

// Invalidate drops the cached level: the next request reads the store
// (another node changed it).
func (c *LevelCache) Invalidate() { c.cur.Store(nil) }

// SetLevel stores the level (with its audit row) and updates the cache.
func (c *LevelCache) SetLevel(ctx context.Context, l protocol.Level, a store.Audit) error {
	if err := c.st.SetLevel(ctx, l, a); err != nil {
		c.cur.Store(nil)
		return err
	}
	c.cur.Store(&cachedLevel{level: l, until: c.now().Add(c.ttl)})
	return nil
}
