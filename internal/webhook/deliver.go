package webhook

import (
	"bytes"
	"context"
	"errors"
	"io"
	"math/rand/v2"
	"net/http"
	"net/url"
	"strconv"
	"time"
)

// outcome classifies one attempt.
type outcome int

const (
	delivered outcome = iota // 2xx
	permanent                // the receiver refused: do not retry
	retryable                // network error, timeout, 408, 429, 5xx
)

type result struct {
	outcome    outcome
	status     int           // 0 when no response arrived
	retryAfter time.Duration // the receiver's Retry-After, capped; -1 if absent
	err        error         // transport error, without the URL
}

// deliver attempts j until it is delivered, refused, or out of attempts.
// Waits between attempts end with ctx; the attempts themselves run on dctx.
func (s *Sender) deliver(ctx, dctx context.Context, j job) {
	for n := 1; ; n++ {
		r := s.attempt(dctx, j)
		if s.settle(j, n, r, false) {
			return
		}
		wait := r.retryAfter
		if wait < 0 {
			wait = backoff(n, s.cfg.BackoffBase, s.cfg.BackoffMax)
		}
		if err := s.sleep(ctx, wait); err != nil {
			s.lastChance(dctx, j, n)
			return
		}
	}
}

// lastChance makes one final attempt at shutdown; prior attempts were made.
func (s *Sender) lastChance(dctx context.Context, j job, prior int) {
	if dctx.Err() != nil {
		s.dropped.Add(1)
		s.log.Warn("webhook: event not delivered at shutdown", "id", j.id, "type", j.typ, "attempts", prior)
		return
	}
	s.settle(j, prior+1, s.attempt(dctx, j), true)
}

// settle counts and logs the result of attempt n and reports whether the
// event is finished with. A final attempt that could be retried counts as
// dropped (the process is shutting down).
func (s *Sender) settle(j job, n int, r result, final bool) bool {
	attrs := []any{"id", j.id, "type", j.typ, "attempt", n, "host", s.host}
	if r.status != 0 {
		attrs = append(attrs, "status", r.status)
	}
	if r.err != nil {
		attrs = append(attrs, "err", r.err)
	}
	// Log before counting: whoever sees the count sees the log line.
	switch {
	case r.outcome == delivered:
		s.log.Debug("webhook: delivered", attrs...)
		s.delivered.Add(1)
	case r.outcome == permanent:
		s.log.Error("webhook: delivery refused, not retrying", attrs...)
		s.failed.Add(1)
	case n >= s.cfg.MaxAttempts:
		s.log.Error("webhook: delivery failed, attempts exhausted", attrs...)
		s.failed.Add(1)
	case final:
		s.log.Warn("webhook: delivery failed at shutdown, event dropped", attrs...)
		s.dropped.Add(1)
	default:
		s.log.Warn("webhook: delivery failed, will retry", attrs...)
		return false
	}
	return true
}

// attempt POSTs j once, signed with the current time.
func (s *Sender) attempt(ctx context.Context, j job) result {
	ctx, cancel := context.WithTimeout(ctx, s.cfg.Timeout)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, s.url, bytes.NewReader(j.body))
	if err != nil { // the URL was checked in New; err would repeat it
		return result{outcome: permanent, retryAfter: -1, err: errors.New("cannot build request")}
	}
	now := s.clock()
	ts := strconv.FormatInt(now.Unix(), 10)
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("User-Agent", "Latch-Webhook/1")
	req.Header.Set(HeaderID, j.id)
	req.Header.Set(HeaderTimestamp, ts)
	req.Header.Set(HeaderSignature, "v1="+sign(s.cfg.Secret, j.id, ts, j.body))
	resp, err := s.client.Do(req)
	if err != nil {
		// A *url.Error repeats the URL, whose path may be a credential.
		if ue, ok := errors.AsType[*url.Error](err); ok {
			err = ue.Err
		}
		return result{outcome: retryable, retryAfter: -1, err: err}
	}
	_, _ = io.Copy(io.Discard, io.LimitReader(resp.Body, maxResponseBody))
	_ = resp.Body.Close()
	r := result{status: resp.StatusCode, retryAfter: -1}
	switch c := resp.StatusCode; {
	case c >= 200 && c < 300:
		r.outcome = delivered
	case c == http.StatusTooManyRequests || c == http.StatusRequestTimeout || c >= 500:
		r.outcome = retryable
		if d, ok := parseRetryAfter(resp.Header.Get("Retry-After"), now); ok {
			r.retryAfter = min(d, s.cfg.BackoffMax)
		}
	default: // other 4xx, and 3xx: redirects are never followed
		r.outcome = permanent
	}
	return r
}

// parseRetryAfter reads a Retry-After value: delay-seconds or an HTTP date
// (RFC 9110 §10.2.3).
func parseRetryAfter(v string, now time.Time) (time.Duration, bool) {
	if v == "" {
		return 0, false
	}
	if secs, err := strconv.ParseInt(v, 10, 64); err == nil {
		if secs < 0 {
			return 0, false
		}
		if secs > int64(time.Duration(1<<63-1)/time.Second) {
			return time.Duration(1<<63 - 1), true
		}
		return time.Duration(secs) * time.Second, true
	}
	t, err := http.ParseTime(v)
	if err != nil {
		return 0, false
	}
	return max(t.Sub(now), 0), true
}

// backoff returns the wait before retry n (n ≥ 1): full jitter, uniform in
// [0, min(hi, base·2^(n-1))).
func backoff(n int, base, hi time.Duration) time.Duration {
	ceil := hi
	if n-1 < 62 && base > 0 && base <= hi>>(n-1) {
		ceil = base << (n - 1)
	}
	if ceil <= 0 {
		return 0
	}
	return rand.N(ceil)
}
