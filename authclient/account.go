package authclient

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"io"
	"net/http"
	"net/url"
	"strings"
	"time"
)

// Logout scopes for [Session.Logout].
const (
	ScopeCurrent = "current" // this session
	ScopeOthers  = "others"  // every other session of the user
	ScopeAll     = "all"     // every session of the user, this one included
)

// SessionInfo is one of the user's sessions (devices).
type SessionInfo struct {
	ID         string    `json:"id"`
	CreatedAt  time.Time `json:"created_at"`
	LastUsedAt time.Time `json:"last_used_at"`
	UserAgent  string    `json:"user_agent"`
	IP         string    `json:"ip"`
	ClientID   string    `json:"client_id"`
	Current    bool      `json:"current"` // the session asking
}

// Logout ends sessions of the user (POST /v1/logout): scope is
// [ScopeCurrent] (or ""), [ScopeOthers] or [ScopeAll]. It returns how many
// sessions ended. With ScopeCurrent and ScopeAll this session is over
// afterwards: the store keeps only the device token (see [Saved]) and
// further calls return a *SessionEndedError.
func (s *Session) Logout(ctx context.Context, scope string) (int, error) {
	if scope == "" {
		scope = ScopeCurrent
	}
	var out struct {
		Revoked int `json:"revoked"`
	}
	if err := s.call(ctx, http.MethodPost, "/v1/logout", map[string]string{"scope": scope}, &out); err != nil {
		return 0, err
	}
	if scope != ScopeOthers {
		s.end(ctx)
	}
	return out.Revoked, nil
}

// Sessions lists the user's active sessions (GET /v1/sessions).
func (s *Session) Sessions(ctx context.Context) ([]SessionInfo, error) {
	var out []SessionInfo
	err := s.call(ctx, http.MethodGet, "/v1/sessions", nil, &out)
	return out, err
}

// RevokeSession ends one of the user's sessions by id (DELETE
// /v1/sessions/{id}); another user's id is an *Error with Status 404. If id
// is this session's, this session is over afterwards.
func (s *Session) RevokeSession(ctx context.Context, id string) error {
	if err := s.call(ctx, http.MethodDelete, "/v1/sessions/"+url.PathEscape(id), nil, nil); err != nil {
		return err
	}
	if id == s.ID() {
		s.end(ctx)
	}
	return nil
}

// ChangePassword changes the user's password (POST /v1/password). This
// session stays; every other session of the user ends. A wrong current
// password is an *Error with Code "invalid_credentials". The session's
// device token goes with it, so that guesses at the account's password from
// elsewhere cannot throttle the owner's change (see [Saved]).
func (s *Session) ChangePassword(ctx context.Context, current, next string) error {
	body := map[string]string{"current_password": current, "new_password": next}
	s.mu.Lock()
	if dt := s.cur.DeviceToken; dt != "" {
		body["device_token"] = dt
	}
	s.mu.Unlock()
	return s.call(ctx, http.MethodPost, "/v1/password", body, nil)
}

// call sends an authenticated JSON request to the Latch server through the
// session's transport.
func (s *Session) call(ctx context.Context, method, path string, in, out any) error {
	var body io.Reader
	if in != nil {
		b, err := json.Marshal(in)
		if err != nil {
			return err
		}
		body = bytes.NewReader(b) // http.NewRequest sets GetBody: replayable
	}
	req, err := http.NewRequestWithContext(ctx, method, s.c.base+path, body)
	if err != nil {
		return err
	}
	if in != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	req.Header.Set("User-Agent", s.c.cfg.UserAgent)
	req.Header.Set("Accept", "application/json")
	// The account endpoints are the Latch server's: no redirects, as for
	// the token calls (a 307 would resend a password to another host).
	hc := noRedirects(s.HTTPClient())
	sent := s.c.cfg.Now()
	resp, err := hc.Do(req)
	if err != nil {
		var ue *url.Error
		if errors.As(err, &ue) {
			var ended *SessionEndedError
			var unavailable *UnavailableError
			var persist *PersistError
			if errors.As(ue.Err, &ended) || errors.As(ue.Err, &unavailable) || errors.As(ue.Err, &persist) {
				return ue.Err
			}
		}
		return err
	}
	defer resp.Body.Close()
	s.c.skew.observe(resp.Header, sent, s.c.cfg.Now())
	b, err := io.ReadAll(io.LimitReader(resp.Body, 1<<20))
	if err != nil {
		return err
	}
	if resp.StatusCode == http.StatusUnauthorized {
		// The transport's forced refresh may have learnt that the session
		// is over (revoked elsewhere): say so, not just "401".
		s.mu.Lock()
		ended := s.ended
		s.mu.Unlock()
		if ended != nil {
			return ended
		}
	}
	if resp.StatusCode/100 != 2 {
		e := &Error{Status: resp.StatusCode, Code: http.StatusText(resp.StatusCode)}
		var obj struct {
			Error       string `json:"error"`
			Description string `json:"error_description"`
		}
		if json.Unmarshal(b, &obj) == nil && obj.Error != "" {
			e.Code, e.Description = obj.Error, obj.Description
		}
		if resp.StatusCode/100 == 3 && e.Description == "" {
			e.Description = "redirect not followed: calls to the Latch server never follow redirects"
		}
		return e
	}
	if out != nil && len(bytes.TrimSpace(b)) > 0 && !strings.HasPrefix(resp.Header.Get("Content-Type"), "text/") {
		return json.Unmarshal(b, out)
	}
	return nil
}

// revoke ends the session on the server with its refresh token (RFC 7009),
// best effort.
func (s *Session) revoke(ctx context.Context) {
	meta, err := s.c.discover(ctx)
	if err != nil || meta.RevocationEndpoint == "" {
		return
	}
	form := url.Values{"token": {s.cur.RefreshToken}, "token_type_hint": {"refresh_token"}, "client_id": {s.c.cfg.ClientID}}
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, meta.RevocationEndpoint, strings.NewReader(form.Encode()))
	if err != nil {
		return
	}
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	s.c.do(req, nil)
}
