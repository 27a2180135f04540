package httpapi

import (
	"bytes"
	"html/template"
	"io/fs"
	"net/http"
	"path"

	"embed"

	jsclient "github.com/latchauth/latch/clients/js"
)

// The account page (/account): a built-in web client of Latch on its own
// origin (docs/design.md "Browser clients: cookie mode"), written with the
// JavaScript client served from here too. Everything it loads comes from
// this origin; the CSP allows no inline script or style, no other origin,
// no framing.

//go:embed account/index.html account/account.js account/account.css
var accountFiles embed.FS

// accountCSP is the page's policy: scripts, styles and connections to this
// origin only (CSP3 'self'), nothing inline, no plugins, no framing, forms
// post nowhere (the page uses fetch), no <base> tricks.
const accountCSP = "default-src 'none'; script-src 'self'; style-src 'self'; connect-src 'self'; img-src 'self'; " +
	"form-action 'none'; frame-ancestors 'none'; base-uri 'none'"

var accountPage = template.Must(template.ParseFS(accountFiles, "account/index.html"))

func (s *Server) accountRoutes() {
	if s.cfg.AccountClientID == "" {
		return
	}
	var page bytes.Buffer
	// The issuer and client id reach the script as data attributes: no
	// inline script, and html/template escapes them.
	if err := accountPage.Execute(&page, map[string]string{"Issuer": s.cfg.Issuer, "ClientID": s.cfg.AccountClientID}); err != nil {
		panic(err) // the embedded template is fixed; a failure is a build bug
	}
	html := page.Bytes()
	lib, _ := fs.Sub(jsclient.Dist, "dist")
	own, _ := fs.Sub(accountFiles, "account")
	s.route("GET /account", http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		pageHeaders(w, "text/html; charset=utf-8")
		w.Write(html)
	}))
	serve := func(fsys fs.FS) http.HandlerFunc {
		return func(w http.ResponseWriter, r *http.Request) {
			name := path.Clean(r.PathValue("file"))
			b, err := fs.ReadFile(fsys, name)
			if err != nil {
				writeError(w, apiError(http.StatusNotFound, CodeNotFound, "no such file"))
				return
			}
			ct := "text/javascript; charset=utf-8"
			if path.Ext(name) == ".css" {
				ct = "text/css; charset=utf-8"
			}
			pageHeaders(w, ct)
			w.Write(b)
		}
	}
	s.route("GET /account/lib/{file}", serve(lib))
	s.route("GET /account/{file}", serve(own))
}

// pageHeaders are the account page's: its CSP replaces the API's
// default-src 'none', and nothing is cached across deployments unchecked.
func pageHeaders(w http.ResponseWriter, contentType string) {
	h := w.Header()
	h.Set("Content-Type", contentType)
	h.Set("Content-Security-Policy", accountCSP)
	h.Set("Cache-Control", "no-cache")
}
