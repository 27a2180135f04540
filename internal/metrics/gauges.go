package metrics

import (
	"time"

	"github.com/prometheus/client_golang/prometheus"
)

// Feed is what the revocation-feed gauges read: internal/feed.Hub has Lag
// and Len, httpapi.Server has FeedSubscribers.
type Feed struct {
	// Subscribers returns the open SSE streams of GET /v1/revocations.
	Subscribers func() int64
	// MaxClientStreams returns the most open streams one client holds (the
	// per-client cap refuses more).
	MaxClientStreams func() int
	// Lag returns how late other nodes' revocations may reach this node's
	// subscribers (feed.Hub.Lag): while the hub polls, how long ago it last
	// read storage successfully (normally under --feed-poll-interval; it
	// grows while storage is unreachable); while it hears them by LISTEN,
	// 0 unless a notified revocation is still unread.
	Lag func() time.Duration
	// Entries returns the live entries the hub holds.
	Entries func() int
}

// RegisterFeed exports latch_feed_subscribers,
// latch_feed_max_client_streams, latch_feed_lag_seconds and
// latch_feed_entries, read at every scrape. Nil functions are skipped.
func (m *Metrics) RegisterFeed(f Feed) error {
	var cs []prometheus.Collector
	if f.Subscribers != nil {
		cs = append(cs, prometheus.NewGaugeFunc(prometheus.GaugeOpts{
			Name: "latch_feed_subscribers", Help: "Open revocation-feed streams (SSE) on this node.",
		}, func() float64 { return float64(f.Subscribers()) }))
	}
	if f.MaxClientStreams != nil {
		cs = append(cs, prometheus.NewGaugeFunc(prometheus.GaugeOpts{
			Name: "latch_feed_max_client_streams", Help: "The most revocation-feed streams one client holds open on this node; at --feed-streams-per-client that client's next stream answers 429.",
		}, func() float64 { return float64(f.MaxClientStreams()) }))
	}
	if f.Lag != nil {
		cs = append(cs, prometheus.NewGaugeFunc(prometheus.GaugeOpts{
			Name: "latch_feed_lag_seconds", Help: "How late other nodes' revocations may reach this node's feed: while it polls, the time since it last read storage successfully; while PostgreSQL LISTEN is up, 0, or the time since a notified revocation it has not read yet. On PostgreSQL a writing transaction held open anywhere on the cluster also holds new entries back, which this gauge does not show: alert on long-open transactions too.",
		}, func() float64 { return f.Lag().Seconds() }))
	}
	if f.Entries != nil {
		cs = append(cs, prometheus.NewGaugeFunc(prometheus.GaugeOpts{
			Name: "latch_feed_entries", Help: "Live revocation-feed entries held in memory.",
		}, func() float64 { return float64(f.Entries()) }))
	}
	for _, c := range cs {
		if err := m.reg.Register(c); err != nil {
			return err
		}
	}
	return nil
}

// Webhooks is what the webhook counters read; *webhook.Sender implements it.
type Webhooks interface {
	Delivered() uint64
	Failed() uint64
	Dropped() uint64
}

var webhookDesc = prometheus.NewDesc("latch_webhook_events_total",
	"Webhook events by result: delivered (2xx), failed (given up after retries or refused), dropped (queue full or shutting down).", []string{"result"}, nil)

// RegisterWebhooks exports latch_webhook_events_total{result}.
func (m *Metrics) RegisterWebhooks(w Webhooks) error {
	return m.reg.Register(webhookCollector{w})
}

type webhookCollector struct{ w Webhooks }

func (c webhookCollector) Describe(ch chan<- *prometheus.Desc) { ch <- webhookDesc }

func (c webhookCollector) Collect(ch chan<- prometheus.Metric) {
	for _, r := range []struct {
		result string
		n      uint64
	}{{"delivered", c.w.Delivered()}, {"failed", c.w.Failed()}, {"dropped", c.w.Dropped()}} {
		ch <- prometheus.MustNewConstMetric(webhookDesc, prometheus.CounterValue, float64(r.n), r.result)
	}
}
