package httpapi

import (
	"bytes"
	"context"
	"embed"
	"errors"
	"html/template"
	"net/http"
	"net/url"

	"github.com/latchauth/latch/internal/password"
	"github.com/latchauth/latch/internal/session"
)

// Latch's hosted /reset and /verify pages, where the links in its messages
// lead unless --app-url points elsewhere: server-rendered, no script at
// all, no third-party asset, and a strict Content-Security-Policy. A GET
// only shows a form; the token is used by the form's POST, so a mail
// scanner that opens the link does not spend it.

//go:embed pages/page.html pages/latch.css
var pageFiles embed.FS

var (
	pageTmpl = template.Must(template.ParseFS(pageFiles, "pages/page.html"))
	pageCSS  = must(pageFiles.ReadFile("pages/latch.css"))
)

func must[T any](v T, err error) T {
	if err != nil {
		panic(err)
	}
	return v
}

// pageCSP allows the page's own stylesheet and form posts to itself;
// nothing else loads or runs (CSP Level 3).
const pageCSP = "default-src 'none'; style-src 'self'; form-action 'self'; frame-ancestors 'none'; base-uri 'none'"

type pageData struct {
	Title   string
	Message string
	Failed  bool
	// Form is "reset", "verify" or "" (a result page).
	Form  string
	Token string
}

func (s *Server) pageRoutes() {
	s.route("GET /reset", s.page(s.linkPage(session.PurposeReset, resetTitle, "reset")))
	s.route("POST /reset", s.page(s.resetSubmit))
	s.route("GET /verify", s.page(s.linkPage(session.PurposeVerify, verifyTitle, "verify")))
	s.route("POST /verify", s.page(s.verifySubmit))
	s.route("GET /assets/latch.css", http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "text/css; charset=utf-8")
		w.Header().Set("Cache-Control", "public, max-age=3600")
		w.Write(pageCSS)
	}))
}

// page adapts a page handler as handle does the API's: the in-flight cap
// and the request timeout apply; the answer is HTML, written by fn.
func (s *Server) page(fn http.HandlerFunc) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if s.inflight != nil {
			select {
			case s.inflight <- struct{}{}:
				defer func() { <-s.inflight }()
			default:
				s.shed(w, r)
				return
			}
		}
		ctx, cancel := context.WithTimeout(r.Context(), s.cfg.RequestTimeout)
		defer cancel()
		fn(w, r.WithContext(ctx))
	})
}

func (s *Server) render(w http.ResponseWriter, status int, d pageData) {
	var b bytes.Buffer
	if err := pageTmpl.Execute(&b, d); err != nil {
		s.log.Error("render page", "err", err)
		http.Error(w, "internal error", http.StatusInternalServerError)
		return
	}
	h := w.Header()
	h.Set("Content-Security-Policy", pageCSP)
	h.Set("Content-Type", "text/html; charset=utf-8")
	// The URL holds a token: neither caches nor Referer may keep it.
	h.Set("Cache-Control", "no-store")
	h.Set("Referrer-Policy", "no-referrer")
	w.WriteHeader(status)
	w.Write(b.Bytes())
}

const linkProblem = "This link is invalid, has expired or was already used. Ask for a new one from the app; only the newest link works."

// pageError renders err as the page's answer.
func (s *Server) pageError(w http.ResponseWriter, r *http.Request, title string, err error) {
	e := toError(r.Pattern, err)
	msg := e.Message
	switch {
	case errors.Is(err, session.ErrInvalidMessageToken):
		msg = linkProblem
	case e.Status >= 500:
		s.log.Error("page request failed", "request_id", requestIDFrom(r.Context()), "path", r.URL.Path, "err", err)
		msg = "Something went wrong on our side. Try the link again in a minute."
	case e.Status == http.StatusTooManyRequests:
		msg = "Too many attempts. Wait a minute, then try again."
	}
	s.render(w, e.Status, pageData{Title: title, Message: msg, Failed: true})
}

// pageForm reads a urlencoded form post of at most 8 KiB.
func pageForm(w http.ResponseWriter, r *http.Request) (url.Values, error) {
	if err := requireType(r, "application/x-www-form-urlencoded"); err != nil {
		return nil, err
	}
	r.Body = http.MaxBytesReader(w, r.Body, 8<<10)
	if err := r.ParseForm(); err != nil {
		return nil, badRequest("malformed form")
	}
	return r.PostForm, nil
}

// POST /reset (token, new_password, confirm_password)
func (s *Server) resetSubmit(w http.ResponseWriter, r *http.Request) {
	const title = resetTitle
	form, err := pageForm(w, r)
	if err != nil {
		s.pageError(w, r, title, err)
		return
	}
	tok, pw := form.Get("token"), form.Get("new_password")
	again := func(msg string) {
		s.render(w, http.StatusBadRequest, pageData{Title: title, Form: "reset", Token: tok, Message: msg, Failed: true})
	}
	if pw == "" {
		again("Type the new password.")
		return
	}
	if pw != form.Get("confirm_password") {
		again("The two passwords differ. Type the same password twice.")
		return
	}
	m := s.meta(r)
	if err := s.emailThrottle(r.Context(), "", m.IP); err != nil {
		s.pageError(w, r, title, err)
		return
	}
	_, err = s.sessions.ResetPassword(r.Context(), session.ResetRequest{Token: tok, NewPassword: pw, Meta: m})
	switch {
	case password.IsPolicy(err):
		again("That password cannot be used: " + trimPrefix(err) + ".")
	case err != nil:
		s.pageError(w, r, title, err)
	default:
		s.render(w, http.StatusOK, pageData{Title: "Password changed", Message: "Your password was changed, and every device was signed out. Sign in with the new password."})
	}
}

const (
	resetTitle  = "Choose a new password"
	verifyTitle = "Confirm your email address"
)

// linkPage is GET /reset?token=… and GET /verify?token=…: a form for a
// link that can still work, which the person submits (a GET uses no
// token, so a mail scanner opening the link spends nothing), or why not.
func (s *Server) linkPage(purpose, title, form string) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		tok := r.URL.Query().Get("token")
		if err := s.sessions.CheckLink(r.Context(), tok, purpose); err != nil {
			s.pageError(w, r, title, err)
			return
		}
		s.render(w, http.StatusOK, pageData{Title: title, Form: form, Token: tok})
	}
}

// POST /verify (token)
func (s *Server) verifySubmit(w http.ResponseWriter, r *http.Request) {
	const title = verifyTitle
	form, err := pageForm(w, r)
	if err != nil {
		s.pageError(w, r, title, err)
		return
	}
	m := s.meta(r)
	if err := s.emailThrottle(r.Context(), "", m.IP); err != nil {
		s.pageError(w, r, title, err)
		return
	}
	if err := s.sessions.VerifyEmail(r.Context(), form.Get("token"), m); err != nil {
		s.pageError(w, r, title, err)
		return
	}
	s.render(w, http.StatusOK, pageData{Title: "Email address confirmed", Message: "Thank you: your email address is confirmed. You can close this page."})
}
