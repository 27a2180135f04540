package session

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"
	"time"

	"github.com/latchauth/latch/internal/audit"
)

// ErrGrantNotAllowed reports a client that may not use the grant it asked
// for (RFC 6749 section 5.2 "unauthorized_client").
var ErrGrantNotAllowed = errors.New("session: client may not use this grant type")

// ClientTokenRequest is one client_credentials grant (RFC 6749 section
// 4.4.2). Client must already be authenticated by its secret.
type ClientTokenRequest struct {
	Client Client
	// Scope optionally narrows the token to some of the client's scopes;
	// empty means all of them.
	Scope string
	// Resource optionally narrows aud to one of the client's audiences
	// (RFC 8707).
	Resource string
	Meta     Meta
}

// ClientToken issues an access token to a confidential client for itself
// (RFC 6749 section 4.4): no user, no session and no refresh token (section
// 4.4.3); sub and client_id are the client id (RFC 9068 section 2.2), and
// there is no sid, which is how verifiers tell such a token from a user's
// (bearer's Claims.IsClient). A public client, or one not registered for the
// grant, is ErrGrantNotAllowed; a scope the client does not have is
// ErrInvalidScope: a backend asking for admin and silently getting less
// would only fail later, less clearly. Each token is audited
// (client.token_issued), since it is a login of the client.
func (s *Service) ClientToken(ctx context.Context, req ClientTokenRequest) (Tokens, error) {
	c := req.Client
	// Section 4.4: "MUST only be used by confidential clients".
	if !c.Confidential() || !c.Allows(GrantClientCredentials) {
		return Tokens{}, ErrGrantNotAllowed
	}
	scope := strings.Join(c.Scopes, " ")
	if req.Scope != "" {
		if !scopeSubset(req.Scope, c.Scopes) {
			return Tokens{}, ErrInvalidScope
		}
		scope = strings.Join(dedupe(strings.Fields(req.Scope)), " ")
	}
	var err error
	if c, err = c.Narrow(req.Resource); err != nil {
		return Tokens{}, err
	}
	now := s.now()
	exp := now.Add(c.AccessTTL)
	claims := AccessClaims{
		Issuer:    s.issuer.Issuer(),
		Subject:   c.ID,
		Audience:  slices.Clone(c.Audiences),
		Expiry:    exp,
		IssuedAt:  now,
		NotBefore: now,
		ID:        NewID(),
		ClientID:  c.ID,
		Scope:     scope,
	}
	err = s.inTx(ctx, func(tx Tx) error {
		return tx.AppendAudit(ctx, s.audit(audit.Event{At: now, Type: audit.ClientTokenIssued, ClientID: c.ID, Detail: "scope " + scope}, req.Meta))
	})
	if err != nil {
		return Tokens{}, fmt.Errorf("session: client token: %w", err)
	}
	tok, err := s.issuer.Issue(claims)
	if err != nil {
		return Tokens{}, fmt.Errorf("session: sign access token: %w", err)
	}
	return Tokens{AccessToken: tok, AccessExpiry: exp, ExpiresIn: int64(exp.Sub(now) / time.Second), Scope: scope}, nil
}

func dedupe(v []string) []string {
	var out []string
	for _, x := range v {
		if !slices.Contains(out, x) {
			out = append(out, x)
		}
	}
	return out
}
