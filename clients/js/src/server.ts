// Resource-server helper for Node (the "./server" subpath): verifies Latch
// access tokens (RFC 9068) with the issuer's published keys and keeps the
// revocation feed's set of revoked sessions in memory, with the staleness
// rules of the Go `bearer` package. Signatures and JWKS handling are jose's
// (a peer dependency of this subpath only; the client stays
// dependency-free). For Express and plain node:http.

import { createRemoteJWKSet, jwtVerify, errors as joseErrors, type JWTPayload } from 'jose'
import type { IncomingMessage, ServerResponse } from 'node:http'

export interface FeedOptions {
  /** Feed URL; default issuer + "/v1/revocations". */
  url?: string
  /** A confidential client (latch clients create ID --confidential). */
  clientId: string
  clientSecret: string
  /** How long without an entry or heartbeat before failClosed applies; default 45 s. */
  maxStalenessMs?: number
  /**
   * Past maxStaleness: true rejects every token (503, a logout is never
   * missed); false (default) accepts tokens that pass every other check
   * and logs a warning (the API stays up during a Latch outage).
   */
  failClosed?: boolean
}

export interface VerifierOptions {
  /** The exact iss of accepted tokens, e.g. https://auth.example.com. */
  issuer: string
  /** This API's audience; a token's aud must contain it. */
  audience: string
  /** Accepted algorithms; default ["EdDSA", "ES256", "RS256"]. Only asymmetric ones. */
  algorithms?: string[]
  /** Clock skew tolerated on exp and nbf, seconds; default 30 (bearer's DefaultLeeway); 0 for none. */
  leewaySeconds?: number
  /** Turns the revocation feed on. */
  revocations?: FeedOptions
  /** fetch for metadata and the feed (default globalThis.fetch). */
  fetch?: typeof globalThis.fetch
  /** Where warnings go (default console.warn). */
  warn?: (msg: string) => void
}

/** The claims of a verified token. */
export interface Claims extends JWTPayload {
  sub: string
  sid: string
  client_id?: string
  scope?: string
}

/** The token is not acceptable: answer 401 invalid_token. */
export class InvalidTokenError extends Error {
  constructor(message: string, options?: { cause?: unknown }) {
    super(message, options)
    this.name = 'InvalidTokenError'
  }
}

/** The feed is staler than maxStaleness and the verifier fails closed: answer 503. */
export class FeedStaleError extends Error {
  constructor(ms: number) {
    super(`revocation feed too stale: last heard ${ms} ms ago`)
    this.name = 'FeedStaleError'
  }
}

export interface Verifier {
  /** Verifies a token; throws InvalidTokenError or FeedStaleError. */
  verify(token: string): Promise<Claims>
  /**
   * Middleware for Express (req, res, next) or node:http (req, res → Promise<Claims | null>):
   * sets req.auth to the claims, or answers 401/503 itself.
   */
  middleware(): (req: IncomingMessage & { auth?: Claims }, res: ServerResponse, next?: (err?: unknown) => void) => Promise<Claims | null>
  /** Milliseconds since the feed was last heard from; 0 when it is off. */
  staleness(): number
  /** Revoked sessions held. */
  revoked(): number
  /** Stops the feed. */
  close(): void
}

const ASYMMETRIC = new Set(['EdDSA', 'Ed25519', 'ES256', 'ES384', 'ES512', 'RS256', 'RS384', 'RS512', 'PS256', 'PS384', 'PS512'])

/** createVerifier discovers the issuer's keys and, if asked, loads and follows the revocation feed. */
export async function createVerifier(opts: VerifierOptions): Promise<Verifier> {
  const doFetch = opts.fetch ?? globalThis.fetch
  const issuer = opts.issuer.replace(/\/+$/, '')
  const algorithms = opts.algorithms ?? ['EdDSA', 'ES256', 'RS256']
  for (const a of algorithms) if (!ASYMMETRIC.has(a)) throw new Error(`latch/server: algorithm ${a} is not an asymmetric JWS algorithm`)
  const leeway = opts.leewaySeconds ?? 30
  const warn = opts.warn ?? ((m: string) => console.warn(m))

  // RFC 8414: the jwks_uri from the metadata, whose issuer must match.
  const mres = await doFetch(issuer + '/.well-known/oauth-authorization-server', { redirect: 'error' })
  if (!mres.ok) throw new Error(`latch/server: metadata: ${mres.status}`)
  const meta = (await mres.json()) as { issuer?: string; jwks_uri?: string }
  if (meta.issuer !== issuer || !meta.jwks_uri) throw new Error(`latch/server: metadata names issuer ${meta.issuer}, not ${issuer}`)
  const jwks = createRemoteJWKSet(new URL(meta.jwks_uri), { cooldownDuration: 30_000, cacheMaxAge: 3_600_000 })

  const feed = opts.revocations ? await startFeed(doFetch, issuer, opts.revocations, warn) : null

  async function verify(token: string): Promise<Claims> {
    if (!token || token.length > 8192) throw new InvalidTokenError('missing or oversized token')
    let payload: JWTPayload
    try {
      // RFC 9068 section 4: typ at+jwt, iss exact, aud contains ours,
      // exp and nbf with the leeway; jose ignores jku, x5u and embedded
      // keys, and takes the algorithm only from the allow-list.
      ;({ payload } = await jwtVerify(token, jwks, {
        issuer,
        audience: opts.audience,
        algorithms,
        typ: 'at+jwt',
        clockTolerance: leeway,
        requiredClaims: ['exp', 'sub', 'iat'],
      }))
    } catch (e) {
      if (e instanceof joseErrors.JOSEError) throw new InvalidTokenError(e.message, { cause: e })
      throw e
    }
    // RFC 9449 section 7.1: a DPoP-bound token is never accepted as a
    // bearer token. This verifier checks no proofs, so it refuses every
    // token with cnf; verify DPoP with Go's bearer package.
    if (payload.cnf !== undefined) throw new InvalidTokenError('a DPoP-bound token (cnf) presented as a bearer token')
    const claims = payload as Claims
    if (feed) feed.check(claims) // throws when revoked, or stale and failing closed
    return claims
  }

  function middleware() {
    return async (req: IncomingMessage & { auth?: Claims }, res: ServerResponse, next?: (err?: unknown) => void): Promise<Claims | null> => {
      const h = req.headers.authorization ?? ''
      const m = /^Bearer ([A-Za-z0-9._~+/-]+=*)$/.exec(h)
      try {
        if (!m) {
          // RFC 6750 section 3.1: no error code when credentials are absent.
          res.statusCode = 401
          res.setHeader('WWW-Authenticate', 'Bearer realm="api"')
          res.end()
          return null
        }
        const claims = await verify(m[1]!)
        req.auth = claims
        next?.()
        return claims
      } catch (e) {
        if (e instanceof InvalidTokenError) {
          res.statusCode = 401
          res.setHeader('WWW-Authenticate', 'Bearer realm="api", error="invalid_token", error_description="the access token is invalid, expired or revoked"')
          res.end()
          return null
        }
        if (e instanceof FeedStaleError) {
          res.statusCode = 503
          res.setHeader('Retry-After', '5')
          res.end()
          return null
        }
        if (next) next(e)
        else throw e
        return null
      }
    }
  }

  return {
    verify,
    middleware,
    staleness: () => feed?.staleness() ?? 0,
    revoked: () => feed?.size() ?? 0,
    close: () => feed?.close(),
  }
}

interface Feed {
  check(c: Claims): void
  staleness(): number
  size(): number
  close(): void
}

/** The revocation feed (docs/revocation-feed.md): one poll, then the SSE stream. */
async function startFeed(doFetch: typeof fetch, issuer: string, o: FeedOptions, warn: (m: string) => void): Promise<Feed> {
  const url = o.url ?? issuer + '/v1/revocations'
  const maxStale = o.maxStalenessMs ?? 45_000
  // RFC 6749 section 2.3.1: form-urlencode, then Basic.
  const auth = 'Basic ' + btoa(encodeURIComponent(o.clientId) + ':' + encodeURIComponent(o.clientSecret))
  const revoked = new Map<string, number>() // sid → until (Unix seconds)
  let cursor = '0'
  let lastSeen = Date.now()
  let lastPrune = 0
  let warned = 0
  const abort = new AbortController()

  const seen = () => {
    lastSeen = Date.now()
    if (lastSeen - lastPrune > 60_000) {
      lastPrune = lastSeen
      const now = Date.now() / 1000 - 30
      for (const [sid, until] of revoked) if (until < now) revoked.delete(sid)
    }
  }

  // The first poll: a bad credential fails createVerifier.
  const res = await doFetch(url + '?since=0', { headers: { Authorization: auth, Accept: 'application/json' }, redirect: 'error' })
  if (!res.ok) throw new Error(`latch/server: revocation feed: ${res.status}`)
  const page = (await res.json()) as { entries: { sid: string; until: number }[]; cursor: string }
  for (const e of page.entries) revoked.set(e.sid, e.until)
  cursor = page.cursor
  seen()

  async function stream(): Promise<boolean> {
    let got = false
    const ctl = new AbortController()
    const stop = () => ctl.abort()
    abort.signal.addEventListener('abort', stop)
    // Watchdog: a stream silent longer than maxStale is dead (heartbeats come every 15 s).
    let watch = setTimeout(stop, maxStale)
    try {
      const r = await doFetch(url, { headers: { Authorization: auth, Accept: 'text/event-stream', 'Last-Event-ID': cursor }, signal: ctl.signal, redirect: 'error' })
      if (!r.ok || !r.body || !(r.headers.get('Content-Type') ?? '').startsWith('text/event-stream')) throw new Error(`stream: ${r.status}`)
      got = true
      const reader = r.body.pipeThrough(new TextDecoderStream()).getReader()
      let buf = ''
      let id = '', event = '', data = ''
      for (;;) {
        const { value, done } = await reader.read()
        if (done) break
        clearTimeout(watch)
        watch = setTimeout(stop, maxStale)
        buf += value
        let nl: number
        while ((nl = buf.indexOf('\n')) >= 0) {
          const line = buf.slice(0, nl).replace(/\r$/, '')
          buf = buf.slice(nl + 1)
          if (line === '') {
            dispatch(id, event, data)
            id = event = data = ''
          } else if (line.startsWith(':')) {
            seen()
          } else {
            const i = line.indexOf(':')
            const name = i < 0 ? line : line.slice(0, i)
            const val = i < 0 ? '' : line.slice(i + 1).replace(/^ /, '')
            if (name === 'id') id = val
            else if (name === 'event') event = val
            else if (name === 'data') data += val
          }
        }
      }
    } finally {
      clearTimeout(watch)
      abort.signal.removeEventListener('abort', stop)
    }
    return got
  }

  function dispatch(id: string, event: string, data: string) {
    if (event === 'heartbeat' || event === 'ready') return seen()
    if (!id) return
    if (event === 'revoke') {
      const e = JSON.parse(data) as { sid: string; until: number }
      if (e.sid) revoked.set(e.sid, e.until)
    }
    if (BigInt(id) > BigInt(cursor)) cursor = id
    seen()
  }

  void (async () => {
    let backoff = 250
    while (!abort.signal.aborted) {
      let got = false
      try {
        got = await stream()
      } catch (e) {
        if (abort.signal.aborted) return
        warn(`latch/server: revocation feed disconnected (${(e as Error).message}); reconnecting`)
      }
      if (got) backoff = 250
      await new Promise((r) => setTimeout(r, backoff / 2 + Math.random() * (backoff / 2)))
      backoff = Math.min(backoff * 2, 30_000)
    }
  })()

  return {
    check(c: Claims) {
      if (!c.sid) throw new InvalidTokenError('no sid: the token cannot be checked against the revocation feed')
      if (revoked.has(c.sid)) throw new InvalidTokenError('the session is revoked')
      const stale = Date.now() - lastSeen
      if (stale > maxStale) {
        if (o.failClosed) throw new FeedStaleError(stale)
        if (Date.now() - warned > 10_000) {
          warned = Date.now()
          warn(`latch/server: revocation feed stale (${stale} ms); accepting tokens (fail open)`)
        }
      }
    },
    staleness: () => Date.now() - lastSeen,
    size: () => revoked.size,
    close: () => abort.abort(),
  }
}
