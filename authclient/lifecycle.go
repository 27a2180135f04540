package authclient

import (
	"bytes"
	"context"
	"encoding/json"
	"net/http"
	"time"
)

// User is the signed-in user's account (GET /v1/me).
type User struct {
	ID            string    `json:"id"`
	Email         string    `json:"email"`
	EmailVerified bool      `json:"email_verified"`
	CreatedAt     time.Time `json:"created_at"`
	// UserMetadata is the user's own JSON object (at most 4 KiB); it is
	// never put in tokens.
	UserMetadata json.RawMessage `json:"user_metadata"`
}

// Me returns the signed-in user (GET /v1/me).
func (s *Session) Me(ctx context.Context) (*User, error) {
	var u User
	if err := s.call(ctx, http.MethodGet, "/v1/me", nil, &u); err != nil {
		return nil, err
	}
	return &u, nil
}

// UpdateMe replaces the user's metadata with metadata, a JSON object of at
// most 4 KiB (PATCH /v1/me), and returns the user. Anything that encodes
// to a JSON object will do: a map, a struct, a json.RawMessage.
func (s *Session) UpdateMe(ctx context.Context, metadata any) (*User, error) {
	raw, err := json.Marshal(metadata)
	if err != nil {
		return nil, err
	}
	var u User
	if err := s.call(ctx, http.MethodPatch, "/v1/me", map[string]json.RawMessage{"user_metadata": raw}, &u); err != nil {
		return nil, err
	}
	return &u, nil
}

// DeleteAccount deletes the user's account (DELETE /v1/me), given the
// current password: every session ends, this one too, and the user's
// personal data is erased. A wrong password is an *Error with Code
// "invalid_credentials".
func (s *Session) DeleteAccount(ctx context.Context, password string) error {
	if err := s.call(ctx, http.MethodDelete, "/v1/me", map[string]string{"password": password}, nil); err != nil {
		return err
	}
	s.end(ctx)
	return nil
}

// ChangeEmail asks to move the account to newEmail (POST /v1/email/change),
// given the current password: a link goes to the new address and a notice
// to the old; the change happens when the link is used ([Client.VerifyEmail]
// with its token). A wrong password is an *Error with Code
// "invalid_credentials".
func (s *Session) ChangeEmail(ctx context.Context, newEmail, password string) error {
	return s.call(ctx, http.MethodPost, "/v1/email/change", map[string]string{"new_email": newEmail, "password": password}, nil)
}

// RequestVerification sends a new verification link to the user's address
// (POST /v1/email/verify/request); only the newest link works.
func (s *Session) RequestVerification(ctx context.Context) error {
	return s.call(ctx, http.MethodPost, "/v1/email/verify/request", nil, nil)
}

// ForgotPassword asks for a reset link to email (POST /v1/password/forgot).
// The answer is the same whether or not the address has an account, so a
// nil error says only that the request was accepted.
func (c *Client) ForgotPassword(ctx context.Context, email string) error {
	return c.postJSON(ctx, "/v1/password/forgot", map[string]string{"email": email}, nil)
}

// ResetPassword sets a new password with the token of a reset link (POST
// /v1/password/reset). Every session of the user ends, on every device. A
// token that is invalid, expired or used is an *Error with Code
// "invalid_token"; a refused password, Code "weak_password".
func (c *Client) ResetPassword(ctx context.Context, token, newPassword string) error {
	return c.postJSON(ctx, "/v1/password/reset", map[string]string{"token": token, "new_password": newPassword}, nil)
}

// ResetPasswordAndLogin is ResetPassword that also starts a session with
// the new password, in the same request.
func (c *Client) ResetPasswordAndLogin(ctx context.Context, token, newPassword string) (*Session, error) {
	return c.start(ctx, "/v1/password/reset", Saved{}, map[string]any{"token": token, "new_password": newPassword, "login": true, "client_id": c.cfg.ClientID})
}

// VerifyEmail uses the token of a verification or email-change link (POST
// /v1/email/verify). An invalid, expired or used token is an *Error with
// Code "invalid_token".
func (c *Client) VerifyEmail(ctx context.Context, token string) error {
	return c.postJSON(ctx, "/v1/email/verify", map[string]string{"token": token}, nil)
}

// postJSON posts in to the Latch server without a session.
func (c *Client) postJSON(ctx context.Context, path string, in, out any) error {
	b, err := json.Marshal(in)
	if err != nil {
		return err
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, c.base+path, bytes.NewReader(b))
	if err != nil {
		return err
	}
	req.Header.Set("Content-Type", "application/json")
	return unwrapStatus(c.do(req, out))
}
