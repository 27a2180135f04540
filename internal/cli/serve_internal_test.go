package cli

import (
	"bytes"
	"context"
	"encoding/json"
	"log/slog"
	"testing"
)

// TestRedisLoggerIsJSON: go-redis's printf-style lines become slog
// records, so stderr holds only JSON.
func TestRedisLoggerIsJSON(t *testing.T) {
	var buf bytes.Buffer
	redisLogger{slog.New(slog.NewJSONHandler(&buf, nil))}.Printf(context.Background(), "redis: %s failed: %d", "dial", 3)
	var rec map[string]any
	if err := json.Unmarshal(buf.Bytes(), &rec); err != nil {
		t.Fatalf("not one JSON record: %q", buf.String())
	}
	if rec["level"] != "WARN" || rec["msg"] != "redis client" || rec["detail"] != "redis: dial failed: 3" {
		t.Fatalf("record %v", rec)
	}
}
