package mail

import (
	"context"
	"log/slog"
	"slices"
	"sync"
	"time"

	"github.com/latchauth/latch/internal/session"
)

// Outbox is the storage the sender needs; the SQLite and PostgreSQL stores
// implement it.
type Outbox interface {
	// ClaimMessages claims up to limit messages due at now for lease.
	ClaimMessages(ctx context.Context, now time.Time, lease time.Duration, limit int) ([]session.Message, error)
	// MessageSent deletes a delivered message.
	MessageSent(ctx context.Context, id string) error
	// MessageFailed releases a message for another attempt at retry.
	MessageFailed(ctx context.Context, id string, retry time.Time, reason string) error
	// NextMessageDue returns when the earliest message not due yet will be
	// (its retry time, or its claim's end); ok is false if none is waiting.
	NextMessageDue(ctx context.Context, now time.Time) (at time.Time, ok bool, err error)
}

// Opener unseals outbox rows; session.Service implements it.
type Opener interface {
	OpenMessage(m session.Message) (session.Content, error)
	MaxMessageAge() time.Duration
}

// SenderConfig tunes the sender; zero values take the defaults.
type SenderConfig struct {
	// Interval is how often the outbox is read when nothing woke the
	// sender (default 1s); Wake starts a round at once, and a retry this
	// sender scheduled starts one when it is due. What is left to a poll
	// is what another node's sender dropped: a message queued there whose
	// claim ran out (that node died) or whose retry that node did not live
	// to make.
	Interval time.Duration
	// Lease is how long a claim hides a message from other senders
	// (default 5m). It must exceed a batch's worst case (Batch × the SMTP
	// timeout), or a slow batch could be claimed twice.
	Lease time.Duration
	// Batch is how many messages one claim takes (default 10).
	Batch int
	// Backoff is the wait after a first failure (default 5s); each further
	// failure doubles it, up to MaxBackoff (default 1h).
	Backoff, MaxBackoff time.Duration
	// Now is the clock (default time.Now).
	Now func() time.Time
}

// Sender delivers the outbox. It runs beside the server: requests only
// write rows, so none waits on SMTP.
type Sender struct {
	outbox    Outbox
	open      Opener
	transport Transport
	log       *slog.Logger
	cfg       SenderConfig
	wake      chan struct{}

	mu      sync.Mutex
	retries []time.Time // when the retries this sender scheduled are due, until a round after that
}

// NewSender returns a sender of outbox rows opened by open through t.
func NewSender(o Outbox, open Opener, t Transport, log *slog.Logger, cfg SenderConfig) *Sender {
	if cfg.Interval <= 0 {
		cfg.Interval = time.Second
	}
	if cfg.Lease <= 0 {
		cfg.Lease = 5 * time.Minute
	}
	if cfg.Batch <= 0 {
		cfg.Batch = 10
	}
	if cfg.Backoff <= 0 {
		cfg.Backoff = 5 * time.Second
	}
	if cfg.MaxBackoff <= 0 {
		cfg.MaxBackoff = time.Hour
	}
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	return &Sender{outbox: o, open: open, transport: t, log: log, cfg: cfg, wake: make(chan struct{}, 1)}
}

// Wake makes the sender read the outbox now (after a commit that queued a
// message). It never blocks.
func (s *Sender) Wake() {
	select {
	case s.wake <- struct{}{}:
	default:
	}
}

// Run delivers messages until ctx is done. Messages claimed but not yet
// tried when ctx ends are released at once, so a restart sends them
// without waiting for their lease; a crash leaves them claimed, and the
// next sender takes them when the lease runs out. Either way nothing is
// lost.
func (s *Sender) Run(ctx context.Context) {
	t := time.NewTimer(s.cfg.Interval)
	defer t.Stop()
	first := true
	for {
		now := s.cfg.Now()
		s.mu.Lock()
		// This round claims every retry due by now; a failure reschedules it.
		s.retries = slices.DeleteFunc(s.retries, func(at time.Time) bool { return !at.After(now) })
		s.mu.Unlock()
		for ctx.Err() == nil {
			n, err := s.Round(ctx)
			if err != nil {
				if ctx.Err() == nil {
					s.log.Warn("outbox: reading queued messages", "err", err)
				}
				break
			}
			if n < s.cfg.Batch {
				break
			}
		}
		if first && ctx.Err() == nil {
			// What a sender before this one (a crashed or restarted node)
			// left to retry, or claimed and never finished, is due at a
			// time this one did not schedule: learn it once.
			first = false
			if at, ok, err := s.outbox.NextMessageDue(ctx, s.cfg.Now()); err != nil {
				s.log.Warn("outbox: reading when the next message is due", "err", err)
			} else if ok {
				s.retryLater(at)
			}
		}
		next := s.cfg.Interval
		s.mu.Lock()
		if len(s.retries) > 0 {
			next = min(next, max(0, slices.MinFunc(s.retries, time.Time.Compare).Sub(s.cfg.Now())))
		}
		s.mu.Unlock()
		t.Reset(next)
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		case <-s.wake:
		}
	}
}

// Round claims one batch and tries each message once; it returns how many
// it claimed.
func (s *Sender) Round(ctx context.Context) (int, error) {
	now := s.cfg.Now()
	batch, err := s.outbox.ClaimMessages(ctx, now, s.cfg.Lease, s.cfg.Batch)
	if err != nil {
		return 0, err
	}
	for i, m := range batch {
		if ctx.Err() != nil {
			s.release(batch[i:])
			break
		}
		s.deliver(ctx, m)
	}
	return len(batch), nil
}

// retryLater makes Run read the outbox again at at, when a message this
// sender failed to deliver is due again.
func (s *Sender) retryLater(at time.Time) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.retries = append(s.retries, at)
}

// release hands back claimed messages that were not tried.
func (s *Sender) release(ms []session.Message) {
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
	defer cancel()
	for _, m := range ms {
		if err := s.outbox.MessageFailed(ctx, m.ID, s.cfg.Now(), "released at shutdown"); err != nil {
			s.log.Warn("outbox: releasing a claimed message", "id", m.ID, "err", err)
		}
	}
}

func (s *Sender) deliver(ctx context.Context, m session.Message) {
	// Bookkeeping after a send must happen even if ctx ends meanwhile.
	bctx := context.WithoutCancel(ctx)
	now := s.cfg.Now()
	if age := s.open.MaxMessageAge(); age > 0 && now.Sub(m.CreatedAt) > age {
		// The link inside is dead by now: sending it would only confuse.
		s.log.Error("outbox: giving up on a message older than the longest link lifetime", "id", m.ID, "attempts", m.Attempts-1)
		s.finish(bctx, m.ID)
		return
	}
	c, err := s.open.OpenMessage(m)
	if err != nil {
		// Sealed with another key (the refresh-token secret was rotated):
		// it can never be opened, so retrying is pointless.
		s.log.Error("outbox: dropping a message that cannot be opened", "id", m.ID, "err", err)
		s.finish(bctx, m.ID)
		return
	}
	if err := s.transport.Send(ctx, m.ID, c); err != nil {
		wait := s.backoff(m.Attempts)
		if ctx.Err() != nil {
			wait = 0 // cut short by shutdown: hand it back for the next sender
		}
		// The error goes to the log, not the address or the link.
		s.log.Warn("outbox: delivery failed; will retry", "id", m.ID, "attempt", m.Attempts, "retry_in", wait.String(), "err", err)
		if ferr := s.outbox.MessageFailed(bctx, m.ID, now.Add(wait), truncate(err.Error(), 500)); ferr != nil {
			s.log.Warn("outbox: recording a failed delivery", "id", m.ID, "err", ferr)
		}
		s.retryLater(now.Add(wait))
		return
	}
	s.log.Info("outbox: message delivered", "id", m.ID, "kind", string(c.Kind), "attempt", m.Attempts)
	s.finish(bctx, m.ID)
}

// finish deletes a message; if that fails, the claim runs out and the
// message is sent again: the one case of a duplicate, after a failure.
func (s *Sender) finish(ctx context.Context, id string) {
	if err := s.outbox.MessageSent(ctx, id); err != nil {
		s.log.Warn("outbox: deleting a sent message; it may be sent again when its claim runs out", "id", id, "err", err)
	}
}

// backoff is the wait after the attempts-th failure: Backoff doubled per
// failure, at most MaxBackoff.
func (s *Sender) backoff(attempts int) time.Duration {
	d := s.cfg.Backoff
	for i := 1; i < attempts && d < s.cfg.MaxBackoff; i++ {
		d *= 2
	}
	return min(d, s.cfg.MaxBackoff)
}

func truncate(s string, n int) string {
	if len(s) <= n {
		return s
	}
	return s[:n]
}
