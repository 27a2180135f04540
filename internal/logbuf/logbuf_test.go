package logbuf

import (
	"bytes"
	"log/slog"
	"strings"
	"sync"
	"testing"
	"time"
)

// syncBuffer is a bytes.Buffer that counts its writes.
type syncBuffer struct {
	mu     sync.Mutex
	buf    bytes.Buffer
	writes int
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.writes++
	return s.buf.Write(p)
}

func (s *syncBuffer) read() (string, int) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.buf.String(), s.writes
}

func TestInfoLinesAreBatchedAndArriveWithinTheInterval(t *testing.T) {
	out := &syncBuffer{}
	b := New(out)
	log := slog.New(Handler(slog.NewJSONHandler(b, nil), b))
	for i := range 100 {
		log.Info("request", "i", i)
	}
	if s, _ := out.read(); s != "" {
		t.Fatalf("info lines written at once: %q", s)
	}
	deadline := time.Now().Add(5 * time.Second)
	for {
		s, writes := out.read()
		if n := strings.Count(s, "\n"); n == 100 {
			if writes != 1 {
				t.Fatalf("100 lines in %d writes, want 1", writes)
			}
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("after 5s: %d of 100 lines written", strings.Count(s, "\n"))
		}
		time.Sleep(10 * time.Millisecond)
	}
}

func TestAWarningIsWrittenAtOnceWithTheLinesBeforeIt(t *testing.T) {
	out := &syncBuffer{}
	b := New(out)
	log := slog.New(Handler(slog.NewJSONHandler(b, nil), b)).With("node", "a").WithGroup("g")
	log.Info("first")
	log.Warn("second")
	s, writes := out.read()
	if !strings.Contains(s, `"msg":"first"`) || !strings.Contains(s, `"msg":"second"`) || writes != 1 {
		t.Fatalf("after a warning: %d writes of %q; want both lines in one write", writes, s)
	}
	if !strings.Contains(s, `"node":"a"`) {
		t.Fatalf("attributes lost through the wrapper: %q", s)
	}
}

func TestLargeBatchAndClose(t *testing.T) {
	out := &syncBuffer{}
	b := New(out)
	line := strings.Repeat("x", 1023) + "\n"
	for range 64 {
		b.Write([]byte(line))
	}
	if s, _ := out.read(); len(s) != 64*1024 {
		t.Fatalf("a full batch (64 KiB) waited: %d bytes written", len(s))
	}
	b.Write([]byte("tail\n"))
	b.Close()
	if s, _ := out.read(); !strings.HasSuffix(s, "tail\n") {
		t.Fatal("Close did not write the batch")
	}
	b.Write([]byte("after\n"))
	if s, _ := out.read(); !strings.HasSuffix(s, "after\n") {
		t.Fatal("a write after Close waited")
	}
}
