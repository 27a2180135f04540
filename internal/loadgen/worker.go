package loadgen

import (
	"context"
	"errors"
	"net/http"
	"time"
)

// errorPause is how long a worker waits after a failed request, so a down
// or throttling server is not hammered in a tight loop.
const errorPause = 100 * time.Millisecond

// worker is one virtual client: one session (after its login), one request
// in flight. Its statistics are its own, merged when the run ends.
type worker struct {
	r     *runner
	email string

	// The session: only the newest refresh token is kept (the client
	// contract in docs/design.md).
	access, refresh string
	refreshAt       time.Time // refresh ahead of expiry, at 3/4 of the lifetime

	hist  [numOps]*Histogram // successful requests' latencies
	count [numOps]int64      // measured requests, failed ones included
	errs  [numOps]map[string]int64
}

func newWorker(r *runner, email string) *worker {
	return &worker{r: r, email: email}
}

func (w *worker) run(ctx context.Context) {
	for ctx.Err() == nil {
		switch w.r.cfg.Scenario {
		case ScenarioLogin:
			w.do(ctx, opLogin, w.login)
		case ScenarioRefresh:
			if w.session(ctx) {
				w.do(ctx, opRefresh, w.rotate)
			}
		case ScenarioAPI:
			if !w.session(ctx) {
				continue
			}
			if w.due() {
				w.do(ctx, opRefresh, w.rotate)
				continue
			}
			w.do(ctx, opAPI, w.call)
		case ScenarioMixed:
			if !w.session(ctx) {
				continue
			}
			// One access-token lifetime of a real app, compressed: its API
			// calls, then the refresh its client makes ahead of expiry.
			for i := 0; i < w.r.cfg.APIPerRefresh && ctx.Err() == nil && w.refresh != "" && !w.due(); i++ {
				w.do(ctx, opAPI, w.call)
			}
			if w.refresh != "" {
				w.do(ctx, opRefresh, w.rotate)
			}
		}
	}
}

// session logs in unless the worker holds a session; it reports whether
// it does.
func (w *worker) session(ctx context.Context) bool {
	if w.refresh == "" {
		w.do(ctx, opLogin, w.login)
	}
	return w.refresh != ""
}

func (w *worker) due() bool { return !time.Now().Before(w.refreshAt) }

func (w *worker) keep(t tokenResponse, received time.Time) {
	w.access, w.refresh = t.AccessToken, t.RefreshToken
	w.refreshAt = received.Add(time.Duration(t.ExpiresIn) * time.Second * 3 / 4)
}

func (w *worker) login(ctx context.Context) error {
	t, err := w.r.c.login(ctx, w.email, w.r.cfg.Password)
	if err == nil && w.r.cfg.Scenario != ScenarioLogin {
		w.keep(t, time.Now())
	}
	return err
}

// rotate refreshes, keeping only the new refresh token. invalid_grant ends
// the session (the next round logs in again); any other failure keeps the
// token for a retry, as authclient does.
func (w *worker) rotate(ctx context.Context) error {
	t, err := w.r.c.refresh(ctx, w.refresh)
	var he *httpError
	switch {
	case err == nil:
		w.keep(t, time.Now())
	case errors.As(err, &he) && he.Code == "invalid_grant":
		w.access, w.refresh = "", ""
	}
	return err
}

// call is one API request; a 401 makes the next round refresh.
func (w *worker) call(ctx context.Context) error {
	err := w.r.c.callAPI(ctx, w.access)
	var he *httpError
	if errors.As(err, &he) && he.Status == http.StatusUnauthorized {
		w.refreshAt = time.Time{}
	}
	return err
}

// do runs one request and records it if it started inside the measured
// window and finished before the run stopped. Requests cut short by the
// stop are neither counted nor errors.
func (w *worker) do(ctx context.Context, o op, fn func(context.Context) error) {
	r := w.r
	t0 := time.Now()
	measured := !t0.Before(r.measureStart)
	if measured && r.cfg.Requests > 0 && r.tickets.Add(1) > r.cfg.Requests {
		// Every request is started: the one that completes last stops
		// the run.
		<-ctx.Done()
		return
	}
	err := fn(ctx)
	end := time.Now()
	if ctx.Err() != nil && (err != nil || end.After(r.stopTime())) {
		return
	}
	if !measured {
		r.warmOps.Add(1)
		if err != nil {
			r.warmErrs.Add(1)
			pause(ctx)
		}
		return
	}
	w.count[o]++
	if err != nil {
		if w.errs[o] == nil {
			w.errs[o] = map[string]int64{}
		}
		w.errs[o][kindOf(err)]++
		r.errCount.Add(1)
	} else {
		if w.hist[o] == nil {
			w.hist[o] = newHistogram()
		}
		w.hist[o].Record(end.Sub(t0))
	}
	if n := r.completed.Add(1); r.cfg.Requests > 0 && n == r.cfg.Requests {
		r.stop(StoppedRequests, end)
	}
	if err != nil {
		pause(ctx)
	}
}

func pause(ctx context.Context) {
	t := time.NewTimer(errorPause)
	defer t.Stop()
	select {
	case <-ctx.Done():
	case <-t.C:
	}
}
