package loadgen

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"io"
	"net"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"syscall"
	"time"
)

// client sends the benchmark's requests. Its *http.Client is shared by every
// worker: one Transport, with as many idle connections per host as there are
// workers, so a run reuses its connections instead of exhausting loopback
// ports.
type client struct {
	hc       *http.Client
	target   string
	api      string
	clientID string
}

// tokenResponse is the part of Latch's token response a worker keeps.
type tokenResponse struct {
	AccessToken  string `json:"access_token"`
	RefreshToken string `json:"refresh_token"`
	ExpiresIn    int64  `json:"expires_in"`
}

// httpError is an answer other than the expected status.
type httpError struct {
	Status int
	Code   string // the body's "error", or the WWW-Authenticate error
}

func (e *httpError) Error() string { return "loadgen: " + e.kind() }

func (e *httpError) kind() string {
	if e.Code == "" {
		return strconv.Itoa(e.Status)
	}
	return strconv.Itoa(e.Status) + " " + e.Code
}

// errBadResponse reports a success status with a body that is not a token
// response.
var errBadResponse = errors.New("loadgen: malformed response")

func newHTTPClient(concurrency int, timeout time.Duration) *http.Client {
	tr := http.DefaultTransport.(*http.Transport).Clone()
	tr.MaxIdleConns = 2 * concurrency
	tr.MaxIdleConnsPerHost = concurrency
	tr.IdleConnTimeout = 90 * time.Second
	return &http.Client{Transport: tr, Timeout: timeout}
}

// signup creates a user without a session; existed reports 409 email_taken.
func (c *client) signup(ctx context.Context, email, password string) (existed bool, err error) {
	body, _ := json.Marshal(map[string]any{"email": email, "password": password, "login": false})
	resp, err := c.send(ctx, http.MethodPost, c.target+"/v1/signup", "application/json", body, "")
	if err != nil {
		return false, err
	}
	defer drain(resp)
	if resp.StatusCode == http.StatusCreated {
		return false, nil
	}
	e := responseError(resp)
	if e.Status == http.StatusConflict && e.Code == "email_taken" {
		return true, nil
	}
	return false, e
}

// login is POST /v1/login.
func (c *client) login(ctx context.Context, email, password string) (tokenResponse, error) {
	body, _ := json.Marshal(map[string]string{"email": email, "password": password, "client_id": c.clientID})
	return c.tokens(ctx, c.target+"/v1/login", "application/json", body)
}

// refresh is POST /oauth/token with grant_type=refresh_token.
func (c *client) refresh(ctx context.Context, rt string) (tokenResponse, error) {
	form := url.Values{"grant_type": {"refresh_token"}, "refresh_token": {rt}, "client_id": {c.clientID}}
	return c.tokens(ctx, c.target+"/oauth/token", "application/x-www-form-urlencoded", []byte(form.Encode()))
}

// callAPI is GET {api}/notes with the access token.
func (c *client) callAPI(ctx context.Context, at string) error {
	resp, err := c.send(ctx, http.MethodGet, c.api+"/notes", "", nil, at)
	if err != nil {
		return err
	}
	defer drain(resp)
	if resp.StatusCode != http.StatusOK {
		return responseError(resp)
	}
	return nil
}

func (c *client) tokens(ctx context.Context, u, contentType string, body []byte) (tokenResponse, error) {
	var t tokenResponse
	resp, err := c.send(ctx, http.MethodPost, u, contentType, body, "")
	if err != nil {
		return t, err
	}
	defer drain(resp)
	if resp.StatusCode != http.StatusOK {
		return t, responseError(resp)
	}
	if err := json.NewDecoder(io.LimitReader(resp.Body, 64<<10)).Decode(&t); err != nil || t.AccessToken == "" || t.RefreshToken == "" {
		return t, errBadResponse
	}
	return t, nil
}

func (c *client) send(ctx context.Context, method, u, contentType string, body []byte, bearer string) (*http.Response, error) {
	var rd io.Reader
	if body != nil {
		rd = bytes.NewReader(body)
	}
	req, err := http.NewRequestWithContext(ctx, method, u, rd)
	if err != nil {
		return nil, err
	}
	if contentType != "" {
		req.Header.Set("Content-Type", contentType)
	}
	if bearer != "" {
		req.Header.Set("Authorization", "Bearer "+bearer)
	}
	req.Header.Set("User-Agent", "latch-bench")
	return c.hc.Do(req)
}

// drain reads what is left of the body so the connection is reused.
func drain(resp *http.Response) {
	io.Copy(io.Discard, io.LimitReader(resp.Body, 256<<10))
	resp.Body.Close()
}

// responseError reads the error code of an unexpected answer: the JSON
// body's "error" (Latch, RFC 6749 section 5.2), else the error attribute of
// WWW-Authenticate (RFC 6750 section 3, as bearer answers).
func responseError(resp *http.Response) *httpError {
	e := &httpError{Status: resp.StatusCode}
	var body struct {
		Error string `json:"error"`
	}
	if json.NewDecoder(io.LimitReader(resp.Body, 64<<10)).Decode(&body) == nil && validCode(body.Error) {
		e.Code = body.Error
		return e
	}
	h := resp.Header.Get("WWW-Authenticate")
	if i := strings.Index(h, `error="`); i >= 0 {
		rest := h[i+len(`error="`):]
		if j := strings.IndexByte(rest, '"'); j >= 0 && validCode(rest[:j]) {
			e.Code = rest[:j]
		}
	}
	return e
}

// validCode keeps error kinds few and printable: RFC 6749 codes are
// lower-case letters and underscores.
func validCode(s string) bool {
	if s == "" || len(s) > 64 {
		return false
	}
	for _, r := range s {
		if (r < 'a' || r > 'z') && r != '_' {
			return false
		}
	}
	return true
}

// kindOf names the kind of a failed request, for the errors table: the
// status and code of an HTTP answer ("400 invalid_grant"), or a transport
// failure ("connection refused", "timeout").
func kindOf(err error) string {
	var he *httpError
	var ne net.Error
	switch {
	case errors.As(err, &he):
		return he.kind()
	case errors.Is(err, errBadResponse):
		return "malformed response"
	case errors.Is(err, syscall.ECONNREFUSED):
		return "connection refused"
	case errors.Is(err, syscall.ECONNRESET):
		return "connection reset"
	case errors.Is(err, context.DeadlineExceeded), errors.As(err, &ne) && ne.Timeout():
		return "timeout"
	case errors.Is(err, io.EOF), errors.Is(err, io.ErrUnexpectedEOF):
		return "connection closed"
	case errors.Is(err, syscall.EADDRNOTAVAIL):
		return "no local port"
	}
	return "transport error"
}
