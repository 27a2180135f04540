package testenv

import (
	"slices"
	"testing"
	"time"
)

// ReportLatency reports a concurrent benchmark's throughput (as unit, e.g.
// "refresh/s", over elapsed) and the p50 and p99 of the latencies each
// worker recorded, in milliseconds, so every benchmark that promises a
// latency reports it the same way.
func ReportLatency(b *testing.B, lat [][]time.Duration, elapsed time.Duration, unit string) {
	b.Helper()
	all := slices.Concat(lat...)
	slices.Sort(all)
	if len(all) == 0 {
		return
	}
	pct := func(p float64) float64 { return float64(all[int(p*float64(len(all)-1))].Microseconds()) / 1000 }
	b.ReportMetric(float64(len(all))/elapsed.Seconds(), unit)
	b.ReportMetric(pct(0.50), "p50-ms")
	b.ReportMetric(pct(0.99), "p99-ms")
}
