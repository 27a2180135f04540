package session

import (
	"context"
	"crypto/rand"
	"encoding/base64"
	"errors"
	"fmt"
	"regexp"
	"slices"
	"strings"
	"time"

	"github.com/latchauth/latch/internal/audit"
)

// Access-token lifetime bounds of a client (docs/design.md "Tokens").
const (
	MinAccessTTL = time.Minute
	MaxAccessTTL = 24 * time.Hour
)

// Limits of a client's claim mapping: a few names, each short; the values
// are bounded by MaxAppMetadata, so tokens stay under bearer's 8 KiB cap.
const (
	MaxClientClaims = 16
	maxClaimName    = 64
)

// ErrInvalidClient reports a client registration that breaks a rule; the
// error names the field and the rule.
var ErrInvalidClient = errors.New("session: invalid client")

// ErrClientExists reports a client id already registered.
var ErrClientExists = errors.New("session: client already exists")

var (
	clientIDRe  = regexp.MustCompile(`^[A-Za-z0-9][A-Za-z0-9._~-]{0,127}$`)
	claimNameRe = regexp.MustCompile(`^[A-Za-z_][A-Za-z0-9_.:-]*$`)
	scopeRe     = regexp.MustCompile(`^[\x21\x23-\x5b\x5d-\x7e]+$`) // RFC 6749 section 3.3 scope-token
)

var knownGrants = []string{GrantPassword, GrantRefresh, GrantClientCredentials}

// CheckClient reports every rule c breaks, each naming its field: an id
// of URL-safe characters; at least one audience, each one resource server
// (RFC 9068 section 5: no wildcard; no spaces, which separate audiences in
// storage); an access TTL within MinAccessTTL..MaxAccessTTL; known grants,
// client_credentials only for a confidential client (RFC 6749 section 4.4);
// scopes of RFC 6749 section 3.3 characters; and claim names that are not
// reserved (ReservedClaim), at most MaxClientClaims of them.
func CheckClient(c Client) error {
	var errs []error
	bad := func(format string, a ...any) { errs = append(errs, fmt.Errorf(format, a...)) }
	if !clientIDRe.MatchString(c.ID) {
		bad("id %q: 1 to 128 letters, digits or . _ ~ -, starting with a letter or digit", c.ID)
	}
	if len(c.Audiences) == 0 {
		bad("audience is required")
	}
	for _, a := range c.Audiences {
		if a == "" || a == "*" || strings.ContainsAny(a, " \t\r\n") {
			bad("audience %q: must name one resource server, without spaces or wildcards", a)
		}
	}
	switch {
	case c.Web && len(c.Origins) == 0:
		bad("a web client needs origins: the browser origins allowed to use the refresh cookie")
	case !c.Web && len(c.Origins) > 0:
		bad("origins are for web clients")
	}
	for _, o := range c.Origins {
		if err := CheckOrigin(o); err != nil {
			bad("origins: %w", err)
		}
	}
	if c.AccessTTL < MinAccessTTL || c.AccessTTL > MaxAccessTTL {
		bad("access TTL %s: must be between %s and %s", c.AccessTTL, MinAccessTTL, MaxAccessTTL)
	}
	for _, g := range c.Grants {
		switch {
		case !slices.Contains(knownGrants, g):
			bad("grant %q: unknown grant type (want %s)", g, strings.Join(knownGrants, ", "))
		case g == GrantClientCredentials && !c.Confidential():
			bad("grant client_credentials: only for confidential clients (RFC 6749 section 4.4)")
		}
	}
	for _, sc := range c.Scopes {
		if !scopeRe.MatchString(sc) {
			bad("scope %q: printable ASCII without spaces, quotes or backslashes (RFC 6749 section 3.3)", sc)
		}
	}
	if len(c.Claims) > MaxClientClaims {
		bad("claims: at most %d", MaxClientClaims)
	}
	for _, name := range c.Claims {
		switch {
		case len(name) > maxClaimName || !claimNameRe.MatchString(name):
			bad("claim %q: a name of letters, digits and _ . : - (at most %d), starting with a letter or _", name, maxClaimName)
		case ReservedClaim(name):
			bad("claim %q is reserved: a mapped claim can never replace a registered or Latch claim", name)
		}
	}
	if len(errs) == 0 {
		return nil
	}
	return fmt.Errorf("%w: %w", ErrInvalidClient, errors.Join(errs...))
}

// newSecret returns a 256-bit random client secret, base64url.
func newSecret() string {
	b := make([]byte, 32)
	rand.Read(b)
	return base64.RawURLEncoding.EncodeToString(b)
}

// CreateClient registers c, after CheckClient; with confidential set it
// gets a new random secret, returned (and shown) once: only its hash is
// stored. An id already registered is ErrClientExists.
func (s *Service) CreateClient(ctx context.Context, c Client, confidential bool, m Meta) (Client, string, error) {
	var secret string
	c.SecretHash = nil
	if confidential && c.Web {
		return Client{}, "", fmt.Errorf("%w: a web client cannot be confidential: a browser app cannot keep a client secret", ErrInvalidClient)
	}
	if confidential {
		secret = newSecret()
		c.SecretHash = HashClientSecret(secret)
	}
	if c.Name == "" {
		c.Name = c.ID
	}
	if err := CheckClient(c); err != nil {
		return Client{}, "", err
	}
	c.CreatedAt = s.now()
	defer s.ForgetClient(c.ID)
	err := s.inTx(ctx, func(tx Tx) error {
		// Read inside the transaction (SQLite: under the write lock), so
		// that two creates of one id cannot both pass.
		if _, err := tx.LockClient(ctx, c.ID); err == nil {
			return ErrClientExists
		} else if !errors.Is(err, ErrNotFound) {
			return err
		}
		if err := tx.PutClient(ctx, c); err != nil {
			return err
		}
		return tx.AppendAudit(ctx, s.audit(audit.Event{At: c.CreatedAt, Type: audit.ClientCreated, ClientID: c.ID, Detail: clientDetail(c)}, m))
	})
	if err != nil {
		return Client{}, "", fmt.Errorf("session: create client: %w", err)
	}
	return c, secret, nil
}

// ClientUpdate changes some fields of a client; nil fields stay.
type ClientUpdate struct {
	Name      *string
	Audiences *[]string
	AccessTTL *time.Duration
	Grants    *[]string
	Scopes    *[]string
	Claims    *[]string
	// Origins replaces a web client's browser origins.
	Origins *[]string
}

// UpdateClient applies u to client id, after CheckClient, and returns the
// client as stored. The change reaches this node at once and the others
// when they hear of the commit, or within ClientCacheTTL where changes are
// not heard (ClientChangesHeard); tokens already issued keep their claims until
// they expire, and new claims reach a session's tokens at its next
// refresh.
func (s *Service) UpdateClient(ctx context.Context, id string, u ClientUpdate, m Meta) (Client, error) {
	defer s.ForgetClient(id)
	now := s.now()
	var c Client
	err := s.inTx(ctx, func(tx Tx) error {
		var err error
		if c, err = tx.LockClient(ctx, id); err != nil {
			return err
		}
		set := func(dst *[]string, v *[]string) {
			if v != nil {
				*dst = slices.Clone(*v)
			}
		}
		if u.Name != nil {
			c.Name = *u.Name
		}
		if u.AccessTTL != nil {
			c.AccessTTL = *u.AccessTTL
		}
		set(&c.Audiences, u.Audiences)
		set(&c.Grants, u.Grants)
		set(&c.Scopes, u.Scopes)
		set(&c.Claims, u.Claims)
		set(&c.Origins, u.Origins)
		if err := CheckClient(c); err != nil {
			return err
		}
		if err := tx.PutClient(ctx, c); err != nil {
			return err
		}
		return tx.AppendAudit(ctx, s.audit(audit.Event{At: now, Type: audit.ClientUpdated, ClientID: id, Detail: clientDetail(c)}, m))
	})
	if err != nil {
		return Client{}, fmt.Errorf("session: update client: %w", err)
	}
	return c, nil
}

// clientDetail is a client's registration for the audit trail (no secret).
func clientDetail(c Client) string {
	return fmt.Sprintf("audiences %q, grants %q, scopes %q, claims %q, access TTL %s, confidential %v",
		strings.Join(c.Audiences, " "), strings.Join(c.Grants, " "), strings.Join(c.Scopes, " "), strings.Join(c.Claims, " "), c.AccessTTL, c.Confidential())
}

// StoredClient reads a client from storage, bypassing the cache: what is
// registered now, for an admin to see.
func (s *Service) StoredClient(ctx context.Context, id string) (Client, error) {
	return s.store.Client(ctx, id)
}
