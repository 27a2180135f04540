package postgres

import (
	"context"
	"testing"
	"time"
)

// TestBoundBy: a call's context ends at the sooner of the caller's deadline
// and the bound, and a caller whose deadline is already the sooner gets its
// own context back (no second timer).
func TestBoundBy(t *testing.T) {
	const d = time.Minute
	tests := []struct {
		name     string
		deadline time.Duration // 0: none
		want     time.Duration // the deadline expected, from now
		same     bool
	}{
		{"no deadline", 0, d, false},
		{"later deadline", time.Hour, d, false},
		{"sooner deadline", time.Second, time.Second, true},
		{"equal deadline", d, d, true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			parent := context.Background()
			if tt.deadline > 0 {
				var cancel context.CancelFunc
				parent, cancel = context.WithTimeout(parent, tt.deadline)
				defer cancel()
			}
			now := time.Now()
			ctx, cancel := boundBy(parent, d)
			defer cancel()
			if got := ctx == parent; got != tt.same {
				t.Errorf("context returned as is: %v, want %v", got, tt.same)
			}
			dl, ok := ctx.Deadline()
			if !ok {
				t.Fatal("no deadline")
			}
			if off := dl.Sub(now.Add(tt.want)); off < -time.Second || off > time.Second {
				t.Errorf("deadline %v from now, want about %v", dl.Sub(now), tt.want)
			}
		})
	}
}
