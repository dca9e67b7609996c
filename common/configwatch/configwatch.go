// Package configwatch keeps a program's configuration file loaded and
// reloads it when it changes on disk. It watches the file's directory (editors
// save by rename, which a watch on the file itself would lose), debounces
// bursts of events, and keeps the last good configuration when an edit does
// not parse or validate.
package configwatch

import (
	"context"
	"errors"
	"fmt"
	"path/filepath"
	"sync"
	"sync/atomic"
	"time"

	"github.com/fsnotify/fsnotify"
	"github.com/rs/zerolog"
)

// DefaultDebounce is how long the watcher waits after the last event before reloading.
const DefaultDebounce = 250 * time.Millisecond

// Loader reads and validates the configuration at path.
type Loader[T any] func(path string) (T, error)

// Watcher holds the current configuration.
type Watcher[T any] struct {
	path     string
	load     Loader[T]
	log      zerolog.Logger
	debounce time.Duration
	current  atomic.Pointer[T]

	fw        *fsnotify.Watcher
	mu        sync.Mutex
	listeners []func(T)
	lastErr   error
}

// New loads path once (it fails when that first load fails) and starts
// watching its directory at once, so no edit made after New returns is
// missed. Run delivers the changes and closes the watch when it returns;
// a caller that never calls Run calls Close.
func New[T any](path string, load Loader[T], log zerolog.Logger) (*Watcher[T], error) {
	abs, err := filepath.Abs(path)
	if err != nil {
		return nil, fmt.Errorf("config %s: %w", path, err)
	}
	cfg, err := load(abs)
	if err != nil {
		return nil, err
	}
	fw, err := fsnotify.NewWatcher()
	if err != nil {
		return nil, fmt.Errorf("watch config %s: %w", abs, err)
	}
	if err := fw.Add(filepath.Dir(abs)); err != nil {
		fw.Close()
		return nil, fmt.Errorf("watch config directory %s: %w", filepath.Dir(abs), err)
	}
	w := &Watcher[T]{path: abs, load: load, log: log, debounce: DefaultDebounce, fw: fw}
	w.current.Store(&cfg)
	return w, nil
}

// Close stops watching; Run does it itself when it returns.
func (w *Watcher[T]) Close() error { return w.fw.Close() }

// SetDebounce changes the debounce delay; call before Run.
func (w *Watcher[T]) SetDebounce(d time.Duration) { w.debounce = d }

// Current returns the last good configuration.
func (w *Watcher[T]) Current() T { return *w.current.Load() }

// LastError is the error of the most recent rejected reload, nil after a good one.
func (w *Watcher[T]) LastError() error {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.lastErr
}

// OnChange registers f to be called with every newly accepted configuration.
func (w *Watcher[T]) OnChange(f func(T)) {
	w.mu.Lock()
	defer w.mu.Unlock()
	w.listeners = append(w.listeners, f)
}

// Run watches until ctx ends.
func (w *Watcher[T]) Run(ctx context.Context) error {
	fw := w.fw
	defer fw.Close()
	base := filepath.Base(w.path)
	timer := time.NewTimer(time.Hour)
	timer.Stop()
	defer timer.Stop()
	for {
		select {
		case <-ctx.Done():
			return nil
		case ev, ok := <-fw.Events:
			if !ok {
				return errors.New("config watcher closed")
			}
			if filepath.Base(ev.Name) != base {
				continue
			}
			timer.Reset(w.debounce)
		case err, ok := <-fw.Errors:
			if !ok {
				return errors.New("config watcher closed")
			}
			w.log.Warn().Err(err).Str("path", w.path).Msg("config watch error")
		case <-timer.C:
			w.Reload()
		}
	}
}

// Reload loads the file now; on failure the last good configuration stays.
func (w *Watcher[T]) Reload() {
	cfg, err := w.load(w.path)
	w.mu.Lock()
	w.lastErr = err
	listeners := append([]func(T){}, w.listeners...)
	w.mu.Unlock()
	if err != nil {
		w.log.Error().Err(err).Str("path", w.path).Msg("config change rejected; keeping the last good config")
		return
	}
	w.current.Store(&cfg)
	w.log.Info().Str("path", w.path).Msg("config reloaded")
	for _, f := range listeners {
		f(cfg)
	}
}
