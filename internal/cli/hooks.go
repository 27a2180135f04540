package cli

import (
	"context"
	"fmt"
	"log/slog"
	"strings"

	"github.com/latchauth/latch/internal/config"
	"github.com/latchauth/latch/internal/session"
	"github.com/latchauth/latch/internal/webhook"
)

// commitHooks are the OnCommit hooks of a process's session service, the
// same for latch serve and for the admin commands, so that an operator's
// action has the effects a request's has:
//
//   - wake, for every committed revocation: a serving node's feed hub, so
//     its subscribers hear at once. Admin commands pass nil; their
//     revocations reach the servers through the database (NOTIFY on
//     PostgreSQL, each server's feed poll on SQLite).
//   - the webhook sender, when --webhook-url is set, for every committed
//     audit event of a configured type. The caller runs it (Sender.Run).
func commitHooks(c *config.Config, log *slog.Logger, wake func()) ([]session.Option, *webhook.Sender, error) {
	var opts []session.Option
	if wake != nil {
		opts = append(opts, session.OnCommit(func(cm session.Committed) {
			if len(cm.Revoked) > 0 {
				wake()
			}
		}))
	}
	if c.WebhookURL == "" {
		return opts, nil, nil
	}
	var types []string
	if c.WebhookEvents != "" {
		types = strings.Split(c.WebhookEvents, ",")
	}
	hooks, err := webhook.New(webhook.Config{URL: c.WebhookURL, Secret: []byte(c.WebhookSecret), Types: types}, webhook.WithLogger(log))
	if err != nil {
		return nil, nil, fmt.Errorf("--webhook-url: %w", err)
	}
	// Events leave only after their transaction committed.
	opts = append(opts, session.OnCommit(func(cm session.Committed) {
		for _, e := range cm.Events {
			hooks.Send(e)
		}
	}))
	return opts, hooks, nil
}

// runHooks delivers an admin command's webhook events until d.Close, which
// then waits for the sender's bounded flush (each event still queued gets
// one more attempt, within webhook.DefaultFlushTimeout) and logs what was
// not delivered: the audit trail holds those events.
func (d *deps) runHooks(ctx context.Context, hooks *webhook.Sender) {
	ctx, cancel := context.WithCancel(ctx)
	done := make(chan struct{})
	go func() { defer close(done); hooks.Run(ctx) }()
	d.stopHooks = func() {
		cancel()
		<-done
		if n := hooks.Failed() + hooks.Dropped(); n > 0 {
			d.log.Warn("webhook: events not delivered; the audit trail (latch audit) has them", "count", n, "url", d.cfg.WebhookURL)
		}
	}
}
