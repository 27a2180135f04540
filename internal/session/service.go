package session

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"slices"
	"time"

	"github.com/latchauth/latch/internal/audit"
	"github.com/latchauth/latch/internal/dtoken"
	"github.com/latchauth/latch/internal/email"
	"github.com/latchauth/latch/internal/keywrap"
	"github.com/latchauth/latch/internal/password"
	"github.com/latchauth/latch/internal/rtoken"
)

// Issuer signs access tokens. token.Issuer implements it.
type Issuer interface {
	// Issue signs c as an RFC 9068 access token.
	Issue(c AccessClaims) (string, error)
	// Issuer returns the "iss" value.
	Issuer() string
}

// Config holds the session lifetimes and refresh windows.
type Config struct {
	// Grace is G: a repeat of the parent token within G of the current
	// token being handed out gets that identical token.
	Grace time.Duration
	// LostWindow is L: a repeat of the parent later than G but within L of
	// its rotation gets a fresh successor (a lost response). 0 disables it.
	LostWindow time.Duration
	// Idle ends a session not refreshed for this long.
	Idle time.Duration
	// MaxLifetime ends a session this long after login; 0 means never.
	MaxLifetime time.Duration
	// LongestAccessTTL bounds how long an access token of a revoked session
	// can still be valid; it sets the revocation-feed entry lifetime.
	LongestAccessTTL time.Duration
	// AuditRetention is how long Sweep keeps audit events; 0 keeps them
	// forever.
	AuditRetention time.Duration
}

// Validate reports a configuration that would break the refresh rules.
func (c Config) Validate() error {
	switch {
	case c.Grace < 0:
		return errors.New("session: refresh grace must not be negative")
	case c.LostWindow < 0:
		return errors.New("session: refresh lost window must not be negative")
	case c.LostWindow != 0 && c.LostWindow <= c.Grace:
		return fmt.Errorf("session: refresh lost window (%s) must exceed the grace window (%s), or be 0", c.LostWindow, c.Grace)
	case c.Idle <= 0:
		return errors.New("session: idle timeout must be positive")
	case c.MaxLifetime < 0:
		return errors.New("session: maximum lifetime must not be negative")
	case c.LongestAccessTTL <= 0:
		return errors.New("session: longest access TTL must be positive")
	}
	return nil
}

// Service runs logins, refreshes and revocations. It is safe for concurrent
// use; all shared state lives in the Store.
type Service struct {
	store Store
	// rotator is store's one-statement rotation, nil if it has none.
	rotator Rotator
	issuer  Issuer
	codec   *rtoken.Codec
	hasher  *password.Hasher
	cfg     Config
	clock   func() time.Time
	log     *slog.Logger
	// committed hooks see every transaction that committed: its audit
	// events and the sessions it revoked.
	committed []func(Committed)
	// obs, if set, is told every login, refresh and revocation outcome.
	obs Observer
	// devices mints and checks device tokens (device.go).
	devices  *dtoken.Codec
	epochKey []byte
	// clients caches client lookups (clients.go).
	clients clientCache
	// composer, mailCfg and outboxKey run the account email flows
	// (mail.go, account.go); composer is nil without WithMail.
	composer  Composer
	mailCfg   MailConfig
	outboxKey *keywrap.KEK
}

// Committed is what one committed transaction recorded. Hooks use it to
// push security events out (webhooks) and to wake the revocation feed.
type Committed struct {
	Events  []audit.Event
	Revoked []string
}

// Option configures a Service.
type Option func(*Service)

// WithClock sets the time source (tests use a fake clock).
func WithClock(now func() time.Time) Option { return func(s *Service) { s.clock = now } }

// WithLogger sets the logger; the default discards.
func WithLogger(l *slog.Logger) Option { return func(s *Service) { s.log = l } }

// OnCommit adds a hook called after every transaction that commits audit
// events or revocations, on the caller's goroutine: it must not block.
func OnCommit(fn func(Committed)) Option {
	return func(s *Service) { s.committed = append(s.committed, fn) }
}

// HashSlots returns how many password hashes the service runs at once.
func (s *Service) HashSlots() int { return s.hasher.Slots() }

// New returns a Service.
func New(store Store, issuer Issuer, codec *rtoken.Codec, hasher *password.Hasher, cfg Config, opts ...Option) (*Service, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	if store == nil || issuer == nil || codec == nil || hasher == nil {
		return nil, errors.New("session: New needs a store, an issuer, a codec and a hasher")
	}
	s := &Service{store: store, issuer: issuer, codec: codec, hasher: hasher, cfg: cfg,
		clock: time.Now, log: slog.New(slog.DiscardHandler)}
	s.rotator, _ = store.(Rotator)
	for _, o := range opts {
		o(s)
	}
	if err := newDeviceCodec(s); err != nil {
		return nil, err
	}
	if err := newOutboxKey(s); err != nil {
		return nil, err
	}
	return s, nil
}

// Config returns the service's configuration.
func (s *Service) Config() Config { return s.cfg }

// now truncates to microseconds, the precision every store keeps, so a value
// read back equals the value written.
func (s *Service) now() time.Time { return s.clock().UTC().Truncate(time.Microsecond) }

// Meta describes the request that caused a change, for audit and the
// sessions list.
type Meta struct {
	IP        string
	UserAgent string
	// Actor is the admin client acting through the admin API, recorded
	// as the audit events' actor.
	Actor string
}

// Tokens is what a login or refresh hands to the client.
type Tokens struct {
	AccessToken  string
	AccessExpiry time.Time
	// ExpiresIn is the access token's lifetime in whole seconds.
	ExpiresIn    int64
	RefreshToken string
	SessionID    string
	Scope        string
	// DeviceToken, set by logins, marks the client as a returning device
	// at its next login (device.go).
	DeviceToken string
	// DPoPJKT is the key the access token is bound to (its cnf.jkt), ""
	// for a bearer token: the token_type is then DPoP (RFC 9449 section 5).
	DPoPJKT string
}

// NormalizeEmail returns the canonical form of an address (package
// [email]: trimmed, local part lower-cased NFC, domain in IDNA ASCII form),
// the form stored and looked up, or an error wrapping ErrInvalidEmail
// (and email.ErrInvisible for invisible or control characters).
func NormalizeEmail(addr string) (string, error) {
	e, err := email.Normalize(addr)
	if err != nil {
		return "", fmt.Errorf("%w: %w", ErrInvalidEmail, err)
	}
	return e, nil
}

// mint signs an access token for session ses at now. Its expiry never
// passes the session's absolute expiry.
func (s *Service) mint(ses *Session, c *Client, scope string, extra map[string]json.RawMessage, jkt string, now time.Time) (string, time.Time, error) {
	exp := now.Add(c.AccessTTL)
	if !ses.ExpiresAt.IsZero() && ses.ExpiresAt.Before(exp) {
		exp = ses.ExpiresAt
	}
	claims := AccessClaims{
		Issuer:    s.issuer.Issuer(),
		Subject:   ses.UserID,
		Audience:  slices.Clone(c.Audiences),
		Expiry:    exp,
		IssuedAt:  now,
		NotBefore: now,
		ID:        NewID(),
		ClientID:  c.ID,
		SessionID: ses.ID,
		Scope:     scope,
		Extra:     extra,
	}
	if jkt != "" {
		// RFC 9449 section 6.1: the token names the key it is bound to.
		claims.DPoPJKT = jkt
	}
	tok, err := s.issuer.Issue(claims)
	if err != nil {
		return "", time.Time{}, fmt.Errorf("session: sign access token: %w", err)
	}
	return tok, exp, nil
}

// tokens mints the tokens of a login or refresh; appMeta is the user's
// app_metadata, whose keys named by the client's Claims become claims.
func (s *Service) tokens(ses *Session, c *Client, scope, appMeta, jkt string, now time.Time) (Tokens, error) {
	at, exp, err := s.mint(ses, c, scope, s.mappedClaims(c, appMeta), jkt, now)
	if err != nil {
		return Tokens{}, err
	}
	t := Tokens{
		AccessToken:  at,
		AccessExpiry: exp,
		ExpiresIn:    int64(exp.Sub(now) / time.Second),
		SessionID:    ses.ID,
		Scope:        scope,
		DPoPJKT:      jkt,
	}
	// A refresh token only for clients allowed to use one (RFC 9700
	// section 4.14.2: issue refresh tokens only to clients that may hold
	// them; RFC 6749 section 5.1 makes it optional in the response).
	if c.Allows(GrantRefresh) {
		raw, _ := rawID(ses.ID)
		t.RefreshToken = s.codec.Encode(raw, ses.Gen)
	}
	return t, nil
}

// mappedClaims picks the keys of app_metadata that client c maps into its
// access tokens (docs/design.md "Admin API and claims"). A reserved name
// is never taken, whatever the registration says: CheckClient refuses one
// and the issuer drops one, and this is the third guard. A key the user's
// app_metadata lacks is simply absent from the token.
func (s *Service) mappedClaims(c *Client, appMeta string) map[string]json.RawMessage {
	if len(c.Claims) == 0 || appMeta == "" {
		return nil
	}
	var all map[string]json.RawMessage
	if err := json.Unmarshal([]byte(appMeta), &all); err != nil {
		s.log.Error("app_metadata is not a JSON object; no claims mapped", "client_id", c.ID, "err", err)
		return nil
	}
	var out map[string]json.RawMessage
	for _, name := range c.Claims {
		v, ok := all[name]
		if !ok || ReservedClaim(name) {
			continue
		}
		if out == nil {
			out = make(map[string]json.RawMessage, len(c.Claims))
		}
		out[name] = v
	}
	return out
}

func (s *Service) revocation(r Revocation, now time.Time) Revocation {
	r.At = now
	r.Until = now.Add(s.cfg.LongestAccessTTL)
	return r
}

// EnsureClient creates or replaces client c (used for the built-in client).
func (s *Service) EnsureClient(ctx context.Context, c Client) error {
	if c.CreatedAt.IsZero() {
		c.CreatedAt = s.now()
	}
	// After the commit (or a failure that may have committed): a lookup
	// that read the old value meanwhile does not store it (clientCache.gen).
	defer s.ForgetClient(c.ID)
	return s.store.InTx(ctx, func(tx Tx) error { return tx.PutClient(ctx, c) })
}

func (s *Service) audit(e audit.Event, m Meta) audit.Event {
	e.IP, e.UserAgent, e.Actor = m.IP, m.UserAgent, m.Actor
	return e
}

// inTx runs fn in a store transaction and, once it has committed, tells the
// OnCommit hooks what it recorded and the Observer what it revoked. Nothing
// is reported for a transaction that rolled back.
func (s *Service) inTx(ctx context.Context, fn func(Tx) error) error {
	if len(s.committed) == 0 && s.obs == nil {
		return canceled(ctx, s.store.InTx(ctx, fn))
	}
	var rec *recordingTx
	err := s.store.InTx(ctx, func(tx Tx) error {
		rec = &recordingTx{Tx: tx} // fresh if the store runs fn again
		return fn(rec)
	})
	if err != nil || rec == nil {
		return canceled(ctx, err)
	}
	if s.obs != nil {
		for _, r := range rec.reasons {
			s.obs.Revoked(r.reason, r.n)
		}
	}
	if len(rec.c.Events) == 0 && len(rec.c.Revoked) == 0 {
		return nil
	}
	for _, hook := range s.committed {
		hook(rec.c)
	}
	return nil
}

type recordingTx struct {
	Tx
	c       Committed
	reasons []reasonCount // for the Observer
}

type reasonCount struct {
	reason string
	n      int
}

func (r *recordingTx) AppendAudit(ctx context.Context, e audit.Event) error {
	if err := r.Tx.AppendAudit(ctx, e); err != nil {
		return err
	}
	r.c.Events = append(r.c.Events, e)
	return nil
}

func (r *recordingTx) RevokeSessions(ctx context.Context, rv Revocation) ([]string, error) {
	ids, err := r.Tx.RevokeSessions(ctx, rv)
	if err == nil {
		r.c.Revoked = append(r.c.Revoked, ids...)
		if len(ids) > 0 {
			r.reasons = append(r.reasons, reasonCount{rv.Reason, len(ids)})
		}
	}
	return ids, err
}
