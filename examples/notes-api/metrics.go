package main

import (
	"net/http"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"

	"github.com/latchauth/latch/bearer"
)

// verifierCollector exports a bearer.Verifier's counters (bearer.Stats) as
// Prometheus metrics. bearer itself imports no metrics library; this
// adapter reads one Stats snapshot per scrape, so the values agree.
type verifierCollector struct{ v *bearer.Verifier }

var (
	verifiedDesc = prometheus.NewDesc("bearer_verified_total", "Access tokens accepted.", nil, nil)
	hitsDesc     = prometheus.NewDesc("bearer_cache_hits_total", "Verifications answered from the cache of tokens verified before.", nil, nil)
	rejectedDesc = prometheus.NewDesc("bearer_rejected_total", "Access tokens refused, by reason: malformed, signature, claims, expired, revoked, feed_stale.", []string{"reason"}, nil)
	fetchesDesc  = prometheus.NewDesc("bearer_jwks_fetches_total", "JWKS fetches.", nil, nil)
	failuresDesc = prometheus.NewDesc("bearer_jwks_failures_total", "JWKS fetches that failed (the last good key set was kept).", nil, nil)
	staleDesc    = prometheus.NewDesc("bearer_feed_staleness_seconds", "Time since the revocation feed was last heard from (0 with the feed off).", nil, nil)
	revokedDesc  = prometheus.NewDesc("bearer_revoked_sessions", "Revoked sessions held from the revocation feed.", nil, nil)
)

func (c verifierCollector) Describe(ch chan<- *prometheus.Desc) {
	prometheus.DescribeByCollect(c, ch)
}

func (c verifierCollector) Collect(ch chan<- prometheus.Metric) {
	s := c.v.Stats()
	counter := func(d *prometheus.Desc, v uint64, labels ...string) {
		ch <- prometheus.MustNewConstMetric(d, prometheus.CounterValue, float64(v), labels...)
	}
	counter(verifiedDesc, s.Verified)
	counter(hitsDesc, s.CacheHits)
	counter(rejectedDesc, s.Rejected.Malformed, "malformed")
	counter(rejectedDesc, s.Rejected.Signature, "signature")
	counter(rejectedDesc, s.Rejected.Claims, "claims")
	counter(rejectedDesc, s.Rejected.Expired, "expired")
	counter(rejectedDesc, s.Rejected.Revoked, "revoked")
	counter(rejectedDesc, s.Rejected.FeedStale, "feed_stale")
	counter(fetchesDesc, s.JWKSFetches)
	counter(failuresDesc, s.JWKSFailures)
	ch <- prometheus.MustNewConstMetric(staleDesc, prometheus.GaugeValue, s.FeedStaleness.Seconds())
	ch <- prometheus.MustNewConstMetric(revokedDesc, prometheus.GaugeValue, float64(s.Revoked))
}

// metricsHandler serves the verifier's metrics and the Go runtime's from a
// registry of their own.
func metricsHandler(v *bearer.Verifier) http.Handler {
	reg := prometheus.NewRegistry()
	reg.MustRegister(verifierCollector{v}, collectors.NewGoCollector())
	return promhttp.HandlerFor(reg, promhttp.HandlerOpts{})
}
