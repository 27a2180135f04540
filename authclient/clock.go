package authclient

import (
	"net/http"
	"sync"
	"time"
)

// skew estimates the server's clock from the Date header of its responses
// (RFC 9110 section 6.6.1), so that every expiry decision is made in server
// time: a client clock minutes off neither refreshes in a loop nor sends
// expired tokens.
//
// A sample is offset = (Date + 0.5 s) − the local midpoint of the request:
// Date has one-second resolution, so the true server time lies in
// [Date, Date+1 s) and its centre is the best guess. Samples within
// 1 s + RTT/2 of the estimate are noise and only nudge it (1/8 of the
// difference); a sample further off is a clock step on one side and
// replaces it.
type skew struct {
	mu     sync.Mutex
	offset time.Duration
	known  bool
}

func (s *skew) get() time.Duration {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.offset
}

// serverNow returns the estimated server time at local time now, and
// whether any offset has been learnt or restored yet.
func (s *skew) serverNow(now time.Time) (time.Time, bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return now.Add(s.offset), s.known
}

func (s *skew) set(d time.Duration) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.offset, s.known = d, true
}

// observe takes a sample from a response received at recv to a request
// sent at sent (both local).
func (s *skew) observe(h http.Header, sent, recv time.Time) {
	date, err := http.ParseTime(h.Get("Date"))
	if err != nil || recv.Before(sent) {
		return
	}
	rtt := recv.Sub(sent)
	mid := sent.Add(rtt / 2)
	sample := date.Add(500 * time.Millisecond).Sub(mid)
	s.mu.Lock()
	defer s.mu.Unlock()
	diff := sample - s.offset
	tol := time.Second + rtt/2
	switch {
	case !s.known || diff > tol || diff < -tol:
		s.offset, s.known = sample, true
	default:
		s.offset += diff / 8
	}
}
