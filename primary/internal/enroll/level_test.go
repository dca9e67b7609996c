package enroll

import (
	"context"
	"errors"
	"testing"
	"time"

	"github.com/hostcert/hostcert/common/protocol"
	"github.com/hostcert/hostcert/primary/internal/store"
)

type levels struct {
	l     protocol.Level
	reads int
	fail  bool
}

func (f *levels) Level(context.Context) (protocol.Level, error) { f.reads++; return f.l, nil }

func (f *levels) SetLevel(_ context.Context, l protocol.Level, _ store.Audit) error {
	if f.fail {
		return errors.New("disk full")
	}
	f.l = l
	return nil
}

func TestLevelCache(t *testing.T) {
	ctx := context.Background()
	st := &levels{l: protocol.LevelHigh}
	c := NewLevelCache(st, time.Minute)
	now := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	c.now = func() time.Time { return now }
	for i := 0; i < 3; i++ {
		if l, err := c.Level(ctx); l != protocol.LevelHigh || err != nil {
			t.Fatalf("Level() = %s, %v, want high", l, err)
		}
	}
	if st.reads != 1 {
		t.Errorf("store reads = %d after 3 cached Level calls, want 1", st.reads)
	}
	if err := c.SetLevel(ctx, protocol.LevelMedium, store.Audit{}); err != nil {
		t.Fatal(err)
	}
	if l, _ := c.Level(ctx); l != protocol.LevelMedium || st.reads != 1 {
		t.Errorf("Level() after SetLevel = %s (%d reads), want medium without a read", l, st.reads)
	}
	st.l = protocol.LevelVeryHigh // changed by someone else
	now = now.Add(2 * time.Minute)
	if l, _ := c.Level(ctx); l != protocol.LevelVeryHigh || st.reads != 2 {
		t.Errorf("Level() after the TTL = %s (%d reads), want very-high from a fresh read", l, st.reads)
	}
	st.fail = true
	if err := c.SetLevel(ctx, protocol.LevelHigh, store.Audit{}); err == nil {
		t.Error("SetLevel with a failing store = nil, want the error")
	}
	if l, _ := c.Level(ctx); l != protocol.LevelVeryHigh || st.reads != 3 {
		t.Errorf("Level() after a failed SetLevel = %s (%d reads), want a fresh read of very-high", l, st.reads)
	}
}
