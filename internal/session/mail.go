package session

import (
	"crypto/rand"
	"crypto/sha256"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/latchauth/latch/internal/keywrap"
)

// Message-token purposes. A token is bound to one user and one purpose; it
// is refused for any other (docs/design.md "Account lifecycle (email)").
const (
	// PurposeVerify proves the user receives mail at their address.
	PurposeVerify = "verify"
	// PurposeEmailChange proves the user receives mail at the new address
	// of a pending change; taking it makes the change.
	PurposeEmailChange = "email_change"
	// PurposeReset lets the holder set a new password.
	PurposeReset = "reset"
)

// Message-token prefixes, so that secret scanners can find leaked tokens
// and a token for one flow is refused by another before any lookup.
const (
	PrefixVerify = "latch_ev_"
	PrefixReset  = "latch_pr_"
)

// messageTokenBytes is the secret's length: 256 bits, twice the design's
// floor of 128, so guessing is out of the question whatever the throttle.
const messageTokenBytes = 32

// ErrInvalidMessageToken is a message token that is malformed, unknown,
// used, expired, voided or for another purpose: one error for all, so the
// answer is no oracle.
var ErrInvalidMessageToken = errors.New("session: invalid or expired link token")

// ErrEmailNotVerified refuses a login to an account whose address is not
// verified, with --require-verified-email.
var ErrEmailNotVerified = errors.New("session: email address not verified")

// ErrMailUnavailable is returned by the account email flows of a Service
// built without WithMail.
var ErrMailUnavailable = errors.New("session: email is not configured")

// MessageToken is the stored form of a message token: only its SHA-256
// hash is kept, so a database dump holds no usable link.
type MessageToken struct {
	Hash    []byte
	UserID  string
	Purpose string
	// Email is the address the token was sent to: the user's address
	// (verify, reset) or the new one (email change). A verify token for an
	// address the user no longer has is refused.
	Email     string
	CreatedAt time.Time
	ExpiresAt time.Time
	// SessionID is the session that asked for an email change; it stays
	// when the change happens, the user's other sessions end.
	SessionID string
}

// Message is one outbox row. Body is sealed (see [Service.OpenMessage]):
// it holds the recipient and a link with a live token, so it is kept
// encrypted with a key that is not in the database.
type Message struct {
	ID        string
	UserID    string
	Body      []byte
	CreatedAt time.Time
	// Attempts counts delivery attempts so far, this claim included; set
	// by the store when the sender claims the message.
	Attempts int
}

// MessageKind names what a message says.
type MessageKind string

// The messages Latch sends.
const (
	KindVerify MessageKind = "verify"
	// KindEmailChange goes to the new address of a change: a link that
	// makes the change.
	KindEmailChange MessageKind = "email_change"
	// KindEmailChangeNotice goes to the old address: a change was asked.
	KindEmailChangeNotice MessageKind = "email_change_notice"
	KindReset             MessageKind = "reset"
	// KindAccountExists answers a signup, or an email change, to an
	// address that already has an account: that address's owner is told,
	// and the requester learns nothing.
	KindAccountExists MessageKind = "account_exists"
	// KindPasswordChanged tells the user their password was reset.
	KindPasswordChanged MessageKind = "password_changed"
)

// Content is a composed message.
type Content struct {
	To      string `json:"to"`
	Subject string `json:"subject"`
	Text    string `json:"text"`
	HTML    string `json:"html,omitempty"`
	// Kind is kept for the log when no SMTP server is configured.
	Kind MessageKind `json:"kind"`
}

// MessageData is what a template may use.
type MessageData struct {
	Kind MessageKind
	// To is the recipient.
	To string
	// Link carries the token (empty for notices).
	Link string
	// NewEmail is the address of a pending change (KindEmailChange and
	// KindEmailChangeNotice).
	NewEmail string
	// Expires is how long the link stays valid.
	Expires time.Duration
}

// Composer renders messages; internal/mail implements it (templates and
// --app-url links). token is "" for notices.
type Composer interface {
	Compose(d MessageData, token string) (Content, error)
}

// MailConfig sets the account email flows' behaviour.
type MailConfig struct {
	// VerifyTTL and ResetTTL are the links' lifetimes (defaults 24h and
	// 30m).
	VerifyTTL, ResetTTL time.Duration
	// RequireVerified refuses logins until the address is verified.
	RequireVerified bool
}

// WithMail turns on the account email flows: messages are composed by c
// and written to the outbox in the transaction that makes their token.
func WithMail(c Composer, cfg MailConfig) Option {
	return func(s *Service) {
		if cfg.VerifyTTL <= 0 {
			cfg.VerifyTTL = 24 * time.Hour
		}
		if cfg.ResetTTL <= 0 {
			cfg.ResetTTL = 30 * time.Minute
		}
		s.composer, s.mailCfg = c, cfg
	}
}

// outboxKeyLabel names the key that seals outbox bodies, derived from the
// refresh-token secret (sealed with the key-encryption key), so that the
// database alone cannot open a queued link.
const outboxKeyLabel = "outbox"

func newOutboxKey(s *Service) error {
	k, err := keywrap.New(s.codec.Subkey(outboxKeyLabel))
	if err != nil {
		return fmt.Errorf("session: outbox key: %w", err)
	}
	s.outboxKey = k
	return nil
}

// newMessageToken returns a fresh token for purpose and its stored hash.
func newMessageToken(purpose string) (string, []byte) {
	var b [messageTokenBytes]byte
	rand.Read(b[:])
	tok := prefixOf(purpose) + base64.RawURLEncoding.EncodeToString(b[:])
	return tok, hashMessageToken(tok)
}

func prefixOf(purpose string) string {
	if purpose == PurposeReset {
		return PrefixReset
	}
	return PrefixVerify
}

// hashMessageToken is the stored form. The token is 256 random bits, so a
// fast hash suffices (as for client secrets); the lookup by hash is an
// index seek and compares nothing in Go.
func hashMessageToken(tok string) []byte {
	sum := sha256.Sum256([]byte(tok))
	return sum[:]
}

// parseMessageToken checks tok's form for prefix and returns its hash.
func parseMessageToken(tok, prefix string) ([]byte, error) {
	rest, ok := strings.CutPrefix(tok, prefix)
	if !ok || len(rest) != base64.RawURLEncoding.EncodedLen(messageTokenBytes) {
		return nil, ErrInvalidMessageToken
	}
	if _, err := base64.RawURLEncoding.Strict().DecodeString(rest); err != nil {
		return nil, ErrInvalidMessageToken
	}
	return hashMessageToken(tok), nil
}

// message composes d and seals it into an outbox row for userID.
func (s *Service) message(userID string, d MessageData, token string, now time.Time) (Message, error) {
	c, err := s.composer.Compose(d, token)
	if err != nil {
		return Message{}, fmt.Errorf("session: compose %s message: %w", d.Kind, err)
	}
	c.Kind = d.Kind
	body, err := json.Marshal(c)
	if err != nil {
		return Message{}, err
	}
	id := NewID()
	return Message{ID: id, UserID: userID, Body: s.outboxKey.Seal(body, "latch-outbox:"+id), CreatedAt: now}, nil
}

// OpenMessage unseals an outbox row for the sender.
func (s *Service) OpenMessage(m Message) (Content, error) {
	body, err := s.outboxKey.Open(m.Body, "latch-outbox:"+m.ID)
	if err != nil {
		return Content{}, fmt.Errorf("session: open message %s: %w", m.ID, err)
	}
	var c Content
	if err := json.Unmarshal(body, &c); err != nil {
		return Content{}, fmt.Errorf("session: open message %s: %w", m.ID, err)
	}
	return c, nil
}

// MaxMessageAge is how long the outbox keeps trying a message: after the
// longest link lifetime the link inside is dead anyway.
func (s *Service) MaxMessageAge() time.Duration {
	return max(s.mailCfg.VerifyTTL, s.mailCfg.ResetTTL)
}
