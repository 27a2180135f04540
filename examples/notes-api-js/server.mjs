// A small notes API in Node that accepts Latch access tokens: the
// JavaScript twin of examples/notes-api. It verifies tokens with the
// "./server" helper of the Latch JS package (jose underneath) and follows
// the revocation feed, so a logout reaches it within about a second.
//
//   latch clients create notes-js --confidential --audience notes-js   # the feed credential
//   latch clients create web --web --origins http://localhost:5173 --audience notes-js --audience http://127.0.0.1:8080
//   LATCH_ISSUER=http://127.0.0.1:8080 LATCH_FEED_CLIENT=notes-js LATCH_FEED_SECRET=… \
//     API_ORIGINS=http://localhost:5173 node examples/notes-api-js/server.mjs
//
// Plain node:http, no framework; with Express, app.use(verifier.middleware())
// does the same.
import { createServer } from 'node:http'
// In your app: import { createVerifier } from '@latchauth/latch/server'
// (and npm install jose). Here, the package's built file in this repository:
import { createVerifier } from '../../clients/js/dist/server.js'

/** Starts the API; returns { url, close(), verifier }. Exported for the tests. */
export async function startNotesAPI({ issuer, audience = 'notes-js', feedClient, feedSecret, origins = [], port = 0, leewaySeconds } = {}) {
  const verifier = await createVerifier({
    issuer,
    audience,
    leewaySeconds,
    revocations: feedClient ? { clientId: feedClient, clientSecret: feedSecret } : undefined,
  })
  const auth = verifier.middleware()
  const notes = new Map() // user id → [note]
  const server = createServer(async (req, res) => {
    // CORS for the app's origins: the browser sends Authorization, and
    // the client reads WWW-Authenticate to tell invalid_token from others.
    const origin = req.headers.origin
    if (origin && origins.includes(origin)) {
      res.setHeader('Access-Control-Allow-Origin', origin)
      res.setHeader('Vary', 'Origin')
      res.setHeader('Access-Control-Expose-Headers', 'WWW-Authenticate')
      if (req.method === 'OPTIONS') {
        res.setHeader('Access-Control-Allow-Methods', 'GET, POST')
        res.setHeader('Access-Control-Allow-Headers', 'Authorization, Content-Type')
        res.setHeader('Access-Control-Max-Age', '600')
        res.statusCode = 204
        return res.end()
      }
    }
    const claims = await auth(req, res)
    if (!claims) return // answered 401 or 503
    const mine = notes.get(claims.sub) ?? []
    if (req.method === 'GET' && req.url === '/notes') {
      res.setHeader('Content-Type', 'application/json')
      return res.end(JSON.stringify({ user: claims.sub, notes: mine }))
    }
    if (req.method === 'POST' && req.url === '/notes') {
      let body = ''
      for await (const chunk of req) {
        body += chunk
        if (body.length > 4096) { res.statusCode = 413; return res.end() }
      }
      mine.push(String(body))
      notes.set(claims.sub, mine)
      res.statusCode = 201
      return res.end()
    }
    res.statusCode = 404
    res.end()
  })
  await new Promise((resolve) => server.listen(port, '127.0.0.1', resolve))
  return {
    url: `http://127.0.0.1:${server.address().port}`,
    verifier,
    close: () => new Promise((resolve) => { verifier.close(); server.closeAllConnections(); server.close(resolve) }),
  }
}

if (import.meta.url === `file://${process.argv[1]}`) {
  const api = await startNotesAPI({
    issuer: process.env.LATCH_ISSUER ?? 'http://127.0.0.1:8080',
    feedClient: process.env.LATCH_FEED_CLIENT,
    feedSecret: process.env.LATCH_FEED_SECRET,
    origins: (process.env.API_ORIGINS ?? '').split(',').filter(Boolean),
    port: Number(process.env.PORT ?? 8081),
  })
  console.log(`notes API on ${api.url}`)
}
