// Package jsclient embeds the built JavaScript client (dist/, compiled
// from src/ by `npm run build` and committed), so that Latch's own account
// page can serve it from Latch's origin with no third-party asset. The
// package's tests (js_test.go) run the client's Node and browser tests.
package jsclient

import "embed"

// Dist holds the browser modules of the client: dist/index.js and the
// modules it imports. dist/server.js (Node only) is left out.
//
//go:embed dist/index.js dist/sha256.js dist/storage.js dist/dpop.js
var Dist embed.FS
