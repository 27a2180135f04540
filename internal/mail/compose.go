// Package mail delivers Latch's account messages: it composes them from
// templates (text and HTML, embedded, overridable from a directory) with
// links built from the --app-url template, and sends what the session
// service wrote to the outbox, through SMTP or, with none configured, to
// the log.
package mail

import (
	"bytes"
	"embed"
	"errors"
	"fmt"
	htmltemplate "html/template"
	"io/fs"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	texttemplate "text/template"
	"time"

	"github.com/latchauth/latch/internal/session"
)

//go:embed templates/*.txt templates/*.html
var embedded embed.FS

// kinds are the messages, each with KIND.txt (a "subject" block, then the
// body) and KIND.html.
var kinds = []session.MessageKind{session.KindVerify, session.KindEmailChange, session.KindEmailChangeNotice,
	session.KindReset, session.KindAccountExists, session.KindPasswordChanged}

// Composer renders messages; it implements session.Composer.
type Composer struct {
	links Links
	text  map[session.MessageKind]*texttemplate.Template
	html  map[session.MessageKind]*htmltemplate.Template
}

// NewComposer loads the embedded templates and, when dir is not empty,
// replaces each with the file of the same name in dir (verify.txt,
// verify.html, reset.txt, …); a file missing from dir keeps the embedded
// one. Every template is parsed and tried once here, so a broken override
// stops the server at start rather than a message later.
func NewComposer(links Links, dir string) (*Composer, error) {
	c := &Composer{links: links, text: map[session.MessageKind]*texttemplate.Template{}, html: map[session.MessageKind]*htmltemplate.Template{}}
	read := func(name string) (string, error) {
		if dir != "" {
			b, err := os.ReadFile(filepath.Join(dir, name))
			if err == nil {
				return string(b), nil
			}
			if !errors.Is(err, fs.ErrNotExist) {
				return "", fmt.Errorf("mail: template %s: %w", name, err)
			}
		}
		b, err := embedded.ReadFile("templates/" + name)
		return string(b), err
	}
	for _, k := range kinds {
		src, err := read(string(k) + ".txt")
		if err != nil {
			return nil, err
		}
		tt, err := texttemplate.New(string(k)).Option("missingkey=error").Parse(src)
		if err != nil {
			return nil, fmt.Errorf("mail: template %s.txt: %w", k, err)
		}
		if tt.Lookup("subject") == nil {
			return nil, fmt.Errorf("mail: template %s.txt has no {{define \"subject\"}} block", k)
		}
		src, err = read(string(k) + ".html")
		if err != nil {
			return nil, err
		}
		ht, err := htmltemplate.New(string(k)).Option("missingkey=error").Parse(src)
		if err != nil {
			return nil, fmt.Errorf("mail: template %s.html: %w", k, err)
		}
		c.text[k], c.html[k] = tt, ht
		if _, err := c.Compose(session.MessageData{Kind: k, To: "user@example.com", NewEmail: "new@example.com", Expires: time.Hour}, session.PrefixVerify+"try"); err != nil {
			return nil, err
		}
	}
	return c, nil
}

// data is what templates see: MessageData with the expiry in words.
type data struct {
	Kind     session.MessageKind
	To       string
	Link     string
	NewEmail string
	Expires  string
}

// Compose implements session.Composer.
func (c *Composer) Compose(d session.MessageData, token string) (session.Content, error) {
	tt, ok := c.text[d.Kind]
	if !ok {
		return session.Content{}, fmt.Errorf("mail: no template for %q", d.Kind)
	}
	v := data{Kind: d.Kind, To: d.To, NewEmail: d.NewEmail, Expires: words(d.Expires)}
	if token != "" {
		v.Link = c.links.For(d.Kind, token)
	}
	var subj, text, html bytes.Buffer
	if err := tt.ExecuteTemplate(&subj, "subject", v); err != nil {
		return session.Content{}, fmt.Errorf("mail: %s subject: %w", d.Kind, err)
	}
	if err := tt.Execute(&text, v); err != nil {
		return session.Content{}, fmt.Errorf("mail: %s text: %w", d.Kind, err)
	}
	if err := c.html[d.Kind].Execute(&html, v); err != nil {
		return session.Content{}, fmt.Errorf("mail: %s html: %w", d.Kind, err)
	}
	// A subject is one header line (RFC 5322 section 2.2).
	subject := strings.Join(strings.Fields(subj.String()), " ")
	return session.Content{To: d.To, Subject: subject, Text: strings.TrimSpace(text.String()) + "\n", HTML: html.String(), Kind: d.Kind}, nil
}

// words writes 24h as "24 hours" and 30m as "30 minutes".
func words(d time.Duration) string {
	switch {
	case d <= 0:
		return ""
	case d%time.Hour == 0:
		return plural(int(d/time.Hour), "hour")
	case d%time.Minute == 0:
		return plural(int(d/time.Minute), "minute")
	}
	return d.String()
}

func plural(n int, unit string) string {
	if n == 1 {
		return "1 " + unit
	}
	return fmt.Sprintf("%d %ss", n, unit)
}

// Links builds the links in messages from a template: {token} is replaced
// by the token and {action} by "reset" or "verify". The default,
// ISSUER/{action}?token={token}, opens Latch's own hosted pages; an app
// sets https://app.example.com/{action}?token={token}, or a mobile deep
// link such as myapp://{action}?token={token}.
type Links struct{ Template string }

// DefaultLinks returns the links to the hosted pages of issuer.
func DefaultLinks(issuer string) Links {
	return Links{Template: strings.TrimSuffix(issuer, "/") + "/{action}?token={token}"}
}

// ParseLinks checks an --app-url template.
func ParseLinks(tmpl string) (Links, error) {
	if strings.Count(tmpl, "{token}") != 1 {
		return Links{}, errors.New("--app-url must hold {token} once, as in https://app.example.com/{action}?token={token}")
	}
	l := Links{Template: tmpl}
	u, err := url.Parse(l.For(session.KindReset, session.PrefixReset+"x"))
	if err != nil || u.Scheme == "" {
		return Links{}, errors.New("--app-url must be an absolute URL (https://… or an app's scheme://…) with {token}")
	}
	if u.Scheme == "http" && !loopbackHost(u.Hostname()) {
		return Links{}, errors.New("--app-url: links carry secrets; use https:// (http:// only to a loopback host)")
	}
	if strings.EqualFold(u.Scheme, "javascript") || strings.EqualFold(u.Scheme, "data") {
		return Links{}, fmt.Errorf("--app-url: scheme %q is not allowed", u.Scheme)
	}
	return l, nil
}

// For returns the link for a message of kind carrying token.
func (l Links) For(kind session.MessageKind, token string) string {
	action := "verify"
	if kind == session.KindReset {
		action = "reset"
	}
	return strings.NewReplacer("{action}", action, "{token}", url.QueryEscape(token)).Replace(l.Template)
}
