// Package logbuf batches log output: lines are gathered in memory and
// written together, at most Interval after the first of them, when the
// batch is large, and at once after a warning or an error. A server that
// logs one access line per request otherwise makes one write system call
// per request for it: one of a refresh's four writes, and with the line's
// formatting 4% of the server's CPU in the refresh profile before this
// (docs/performance.md "Refresh and login at the floor"). nginx's
// access_log buffer=… flush=… makes the same trade.
package logbuf

import (
	"context"
	"io"
	"log/slog"
	"sync"
	"time"
)

// Interval is the longest a line waits in memory.
const Interval = 100 * time.Millisecond

// maxBatch is the size at which a batch is written at once.
const maxBatch = 64 << 10

// Writer gathers writes to w. It is safe for concurrent use; each Write
// must be whole lines (slog writes one record per call).
type Writer struct {
	w io.Writer

	mu     sync.Mutex
	buf    []byte
	timer  *time.Timer
	err    error
	closed bool
}

// New returns a Writer over w.
func New(w io.Writer) *Writer {
	b := &Writer{w: w}
	b.timer = time.AfterFunc(Interval, func() { b.Flush() })
	b.timer.Stop()
	return b
}

// Write adds p to the batch. It reports the last write error of an earlier
// batch, if any, so a log that cannot be written is not silent forever.
func (b *Writer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.closed {
		// After Close (shutdown), lines go straight out.
		return b.w.Write(p)
	}
	if len(b.buf) == 0 {
		b.timer.Reset(Interval)
	}
	b.buf = append(b.buf, p...)
	if len(b.buf) >= maxBatch {
		b.flushLocked()
	}
	if err := b.err; err != nil {
		b.err = nil
		return len(p), err
	}
	return len(p), nil
}

// Flush writes the batch now.
func (b *Writer) Flush() {
	b.mu.Lock()
	defer b.mu.Unlock()
	b.flushLocked()
}

func (b *Writer) flushLocked() {
	if len(b.buf) == 0 {
		return
	}
	b.timer.Stop()
	if _, err := b.w.Write(b.buf); err != nil {
		b.err = err
	}
	if cap(b.buf) > 4*maxBatch {
		b.buf = nil // a burst's buffer is not kept
	} else {
		b.buf = b.buf[:0]
	}
}

// Close writes the batch and makes later writes unbuffered.
func (b *Writer) Close() error {
	b.mu.Lock()
	defer b.mu.Unlock()
	b.flushLocked()
	b.closed = true
	return nil
}

// Handler wraps h, whose output goes to b, so that a record at Warn or
// above is written at once, with every line before it: what an operator
// needs when something goes wrong is never the part still in memory.
func Handler(h slog.Handler, b *Writer) slog.Handler { return &handler{h, b} }

type handler struct {
	slog.Handler
	b *Writer
}

func (h *handler) Handle(ctx context.Context, r slog.Record) error {
	err := h.Handler.Handle(ctx, r)
	if r.Level >= slog.LevelWarn {
		h.b.Flush()
	}
	return err
}

func (h *handler) WithAttrs(as []slog.Attr) slog.Handler {
	return &handler{h.Handler.WithAttrs(as), h.b}
}

func (h *handler) WithGroup(name string) slog.Handler {
	return &handler{h.Handler.WithGroup(name), h.b}
}
