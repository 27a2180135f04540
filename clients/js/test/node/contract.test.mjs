// The client contract of docs/client.md, in Node (token mode), against a
// real `latch serve`. A fake local clock moves time for the client; the
// server's clock is real, so what the server decides (rotation, grace,
// reuse) is real too.
import { test, before, after } from 'node:test'
import assert from 'node:assert/strict'
import { startLatch, freshEmail, PASSWORD } from '../support/latch.mjs'
import { createClient, memoryStorage, SessionEndedError, UnavailableError, PersistError } from '../../dist/index.js'

let latch
before(async () => { latch = await startLatch() })
after(async () => { await latch?.stop() })

/** A fetch that records Latch calls and lets a test fail some. */
function recorder() {
  const calls = []
  let fault = null // (url, init) => Response | Error | null
  const f = async (input, init = {}) => {
    const url = typeof input === 'string' ? input : input.url
    const body = typeof init.body === 'string' ? init.body : ''
    const call = { url, method: init.method ?? (input.method || 'GET'), body, refresh: url.endsWith('/oauth/token') && body.includes('grant_type=refresh_token') }
    calls.push(call)
    const injected = fault?.(url, init, call)
    if (injected instanceof Error) throw injected
    if (injected) return injected
    return fetch(input, init)
  }
  return {
    fetch: f,
    calls,
    refreshes: () => calls.filter((c) => c.refresh).length,
    fail: (fn) => { fault = fn },
  }
}

/** A local clock the test moves; starts at the real time plus skew. */
function fakeClock(skew = 0) {
  let t = Date.now() + skew
  return { now: () => t, advance: (ms) => { t += ms } }
}

async function client(extra = {}) {
  const rec = recorder()
  const clock = extra.clock ?? fakeClock()
  const latchClient = createClient({ issuer: latch.url, fetch: rec.fetch, now: clock.now, ...extra })
  return { latch: latchClient, rec, clock }
}

async function signedIn(extra = {}) {
  const c = await client(extra)
  const email = extra.email ?? freshEmail()
  if (!extra.email) await c.latch.signUp({ email, password: PASSWORD })
  else await c.latch.signIn({ email, password: PASSWORD })
  return { ...c, email }
}

test('signUp, signIn, sessions, revokeSession, changePassword, signOut, onChange', async () => {
  const a = await client()
  const events = []
  a.latch.onChange((s) => events.push(s && s.sessionId))
  const email = freshEmail()
  const s1 = await a.latch.signUp({ email, password: PASSWORD })
  assert.equal(events.at(-1), s1.sessionId)
  const b = await client()
  const s2 = await b.latch.signIn({ email, password: PASSWORD })
  let list = await a.latch.sessions()
  assert.deepEqual(list.map((s) => s.id).sort(), [s1.sessionId, s2.sessionId].sort())
  assert.equal(list.find((s) => s.id === s1.sessionId).current, true)
  assert.equal(list.find((s) => s.id === s2.sessionId).current, false)
  assert.match(list[0].lastUsedAt, /^\d{4}-/)
  await a.latch.revokeSession(s2.sessionId)
  list = await a.latch.sessions()
  assert.deepEqual(list.map((s) => s.id), [s1.sessionId])
  // b's session is gone on the server: its next account call ends it.
  await assert.rejects(b.latch.sessions(), SessionEndedError)
  assert.equal(await b.latch.getAccessToken(), null)
  const newPassword = PASSWORD + ' changed'
  await a.latch.changePassword({ currentPassword: PASSWORD, newPassword })
  assert.ok(await a.latch.getAccessToken(), 'the calling session stays after a password change')
  await a.latch.signOut()
  assert.equal(events.at(-1), null)
  assert.equal(await a.latch.getAccessToken(), null)
  await assert.rejects(a.latch.signIn({ email, password: PASSWORD }), { name: 'LatchError', code: 'invalid_credentials' })
  await a.latch.signIn({ email, password: newPassword })
})

test('one refresh for many concurrent callers once the token is due, on the margin schedule', async () => {
  const a = await signedIn()
  const first = await a.latch.getAccessToken()
  a.clock.advance(39_000)
  assert.equal(await a.latch.getAccessToken(), first)
  // 15-minute tokens are due 10 to 11¼ minutes after receipt.
  a.clock.advance(10 * 60_000 - 39_000 - 2_000)
  assert.equal(await a.latch.getAccessToken(), first, 'due before 10 minutes')
  a.clock.advance(75_000 + 4_000)
  const got = await Promise.all(Array.from({ length: 50 }, () => a.latch.getAccessToken()))
  assert.equal(a.rec.refreshes(), 1)
  assert.equal(new Set(got).size, 1)
  assert.notEqual(got[0], first)
})

test('never within G of receiving a token', async () => {
  // With G longer than the margin allows, the refresh waits for G.
  const a = await signedIn({ graceMs: 12 * 60_000 })
  a.clock.advance(11.5 * 60_000)
  await a.latch.getAccessToken()
  assert.equal(a.rec.refreshes(), 0)
  a.clock.advance(31_000)
  await a.latch.getAccessToken()
  assert.equal(a.rec.refreshes(), 1)
})

test('clock skew: decisions in server time', async () => {
  for (const skew of [-5 * 60_000, 5 * 60_000]) {
    const a = await signedIn({ clock: fakeClock(skew) })
    for (let i = 0; i < 5; i++) await a.latch.getAccessToken()
    assert.equal(a.rec.refreshes(), 0, `skew ${skew}: refreshed a fresh token`)
    const s = a.latch.session
    // expiresAt is in local (skewed) time: about 15 minutes from the
    // client's now, whatever the skew.
    assert.ok(Math.abs(s.expiresAt - a.clock.now() - 15 * 60_000) < 3_000, `expiresAt off by ${s.expiresAt - a.clock.now()}`)
  }
})

test('request_time: each refresh says when it was sent, in server time', async () => {
  for (const skew of [-5 * 60_000, 5 * 60_000]) {
    const a = await signedIn({ clock: fakeClock(skew) })
    const moved = 12 * 60_000
    a.clock.advance(moved) // due
    await a.latch.getAccessToken()
    const call = a.rec.calls.find((c) => c.refresh)
    assert.ok(call, `skew ${skew}: no refresh`)
    const sent = Number(new URLSearchParams(call.body).get('request_time'))
    // The local clock is skew + moved off the server's; request_time is
    // corrected by the offset learnt from Date, so only moved remains.
    assert.ok(Math.abs(sent - (Date.now() + moved)) < 3_000, `skew ${skew}: request_time off by ${sent - Date.now() - moved} ms`)
  }
})

test('network errors, 5xx and 429 keep the session; Retry-After is honoured', async () => {
  const a = await signedIn()
  const first = await a.latch.getAccessToken()
  a.clock.advance(12 * 60_000) // due
  a.rec.fail((url, init, call) => (call.refresh ? new TypeError('fetch failed') : null))
  assert.equal(await a.latch.getAccessToken(), first, 'the current token while usable')
  assert.equal(a.rec.refreshes(), 1)
  assert.equal(await a.latch.getAccessToken(), first, 'no new attempt during the backoff')
  assert.equal(a.rec.refreshes(), 1)
  a.clock.advance(3 * 60_000 + 1_000) // expired
  // 503 with Retry-After: 7 seconds.
  a.rec.fail((url, init, call) => (call.refresh ? new Response('{"error":"temporarily_unavailable","error_description":"busy"}', { status: 503, headers: { 'Retry-After': '7', 'Content-Type': 'application/json' } }) : null))
  await assert.rejects(a.latch.getAccessToken(), UnavailableError)
  const n = a.rec.refreshes()
  a.clock.advance(6_000)
  await assert.rejects(a.latch.getAccessToken(), UnavailableError)
  assert.equal(a.rec.refreshes(), n, 'an attempt before Retry-After ended')
  a.clock.advance(1_500)
  a.rec.fail((url, init, call) => (call.refresh ? new Response('{"error":"slow_down","error_description":"x"}', { status: 429, headers: { 'Retry-After': '2' } }) : null))
  await assert.rejects(a.latch.getAccessToken(), UnavailableError)
  a.rec.fail(null)
  a.clock.advance(120_000)
  const back = await a.latch.getAccessToken()
  assert.ok(back && back !== first, 'recovered after the outage')
})

test('invalid_grant ends the session, and only that', async () => {
  const storage = memoryStorage()
  const a = await signedIn({ storage })
  const events = []
  a.latch.onChange((s) => events.push(s))
  const other = await client()
  await other.latch.signIn({ email: a.email, password: PASSWORD })
  await other.latch.signOut({ scope: 'all' })
  a.clock.advance(12 * 60_000)
  assert.equal(await a.latch.getAccessToken(), null)
  assert.deepEqual(events, [null])
  assert.equal(await a.latch.getAccessToken(), null)
  assert.equal(a.rec.refreshes(), 1, 'no further attempts after the session ended')
  const saved = JSON.parse(await storage.getItem('latch:' + latch.url + ':app'))
  assert.equal(saved.refresh, undefined, 'the refresh token is gone from storage')
  assert.match(saved.deviceToken, /^latch_dt_/, 'the device token is kept for the next sign-in')
})

test('a 401 invalid_token from an API: one refresh and one retry, never a loop', async () => {
  const seen = []
  let refuse = 1
  const api = async (input) => {
    const req = input instanceof Request ? input : new Request(input)
    seen.push([req.headers.get('Authorization'), await req.text()])
    if (refuse-- > 0) return new Response('', { status: 401, headers: { 'WWW-Authenticate': 'Bearer error="invalid_token"' } })
    return new Response('ok')
  }
  const wrapped = createClient({ issuer: latch.url, fetch: async (i, init) => (String(i instanceof Request ? i.url : i).startsWith('http://api.test') ? api(i) : fetch(i, init)) })
  const email = freshEmail()
  await wrapped.signUp({ email, password: PASSWORD })
  const t0 = await wrapped.getAccessToken()
  const res = await wrapped.fetch('http://api.test/notes', { method: 'POST', body: 'hello' })
  assert.equal(res.status, 200)
  assert.equal(seen.length, 2)
  assert.equal(seen[0][0], 'Bearer ' + t0)
  assert.notEqual(seen[1][0], seen[0][0], 'the retry carries the refreshed token')
  assert.deepEqual(seen.map((s) => s[1]), ['hello', 'hello'], 'the body is replayed')
  refuse = 5
  seen.length = 0
  const res2 = await wrapped.fetch('http://api.test/notes')
  assert.equal(res2.status, 401)
  assert.equal(seen.length, 2, 'one retry only')
  // Another 401 reason is not retried.
  seen.length = 0
  const noRetry = createClient({ issuer: latch.url, fetch: async (i, init) => (String(i instanceof Request ? i.url : i).startsWith('http://api.test') ? (seen.push(1), new Response('', { status: 401, headers: { 'WWW-Authenticate': 'Bearer error="insufficient_scope"' } })) : fetch(i, init)) })
  await noRetry.signIn({ email, password: PASSWORD })
  assert.equal((await noRetry.fetch('http://api.test/x')).status, 401)
  assert.equal(seen.length, 1)
})

test('saved before handed out; a failed save hands out nothing until it succeeds', async () => {
  const inner = memoryStorage()
  let failing = false
  let handedOut = new Set()
  const storage = {
    getItem: (k) => inner.getItem(k),
    removeItem: (k) => inner.removeItem(k),
    async setItem(k, v) {
      const s = JSON.parse(v)
      assert.ok(!handedOut.has(s.access), 'a token was handed out before it was saved')
      if (failing) throw new Error('disk full')
      return inner.setItem(k, v)
    },
  }
  const a = await signedIn({ storage })
  const track = async () => { const t = await a.latch.getAccessToken(); handedOut.add(t); return t }
  const first = await track()
  a.clock.advance(12 * 60_000)
  failing = true
  await assert.rejects(a.latch.getAccessToken(), PersistError)
  await assert.rejects(a.latch.getAccessToken(), PersistError)
  assert.equal(a.rec.refreshes(), 1, 'no second rotation for a failed save')
  failing = false
  const next = await track()
  assert.ok(next && next !== first)
  assert.equal(JSON.parse(await inner.getItem('latch:' + latch.url + ':app')).access, next)
})

test('a shared storage: the newest refresh token is adopted, never an older one presented', async () => {
  const storage = memoryStorage()
  const a = await signedIn({ storage })
  // b resumes the session from the same storage (a second process).
  const b = await client({ storage })
  assert.equal(await b.latch.getAccessToken(), await a.latch.getAccessToken())
  await a.latch.refresh() // a rotates and saves
  const ta = await a.latch.getAccessToken()
  await b.latch.refresh() // b finds a's newer token in storage and presents nothing older
  assert.equal(await b.latch.getAccessToken(), ta)
  assert.equal(a.rec.refreshes() + b.rec.refreshes(), 1)
  // Had b presented the parent after G, the server would have taken it
  // for reuse or a lost response; the session is intact and b, now
  // holding the newest token, rotates it.
  await new Promise((r) => setTimeout(r, 10))
  await b.latch.refresh()
  assert.equal(b.rec.refreshes(), 1)
  assert.equal((await b.latch.sessions()).length, 1)
})

test('a lost refresh response: the session carries on', async () => {
  const a = await signedIn()
  a.clock.advance(12 * 60_000)
  // The server rotates, the answer never arrives.
  a.rec.fail((url, init, call) => {
    if (!call.refresh) return null
    return fetch(url, init).then(() => { throw new TypeError('connection reset') })
  })
  const kept = await a.latch.getAccessToken()
  assert.ok(kept)
  a.rec.fail(null)
  a.clock.advance(5_000)
  const next = await a.latch.getAccessToken()
  assert.ok(next && next !== kept, 'the retry got a token (grace answer)')
  // And the session is not revoked: the server still accepts it.
  assert.equal((await a.latch.sessions()).length, 1)
})

test('a wrong current password is a refusal, not the end of the session', async () => {
  const a = await signedIn()
  await assert.rejects(a.latch.changePassword({ currentPassword: 'not the password at all', newPassword: PASSWORD + ' x' }), { name: 'LatchError', code: 'invalid_credentials' })
  assert.ok(await a.latch.getAccessToken(), 'signed out by a typo')
  assert.equal((await a.latch.sessions()).length, 1)
})

test('request_time: a cached GET (old Date) does not set the clock offset', async () => {
  // A browser serves the metadata (max-age 3600) from its HTTP cache with
  // the Date of its first fetch. A client that learnt its offset from it
  // sent request_time more than G in the past and got 503 stale.
  const storage = memoryStorage()
  await signedIn({ storage })
  const rec = recorder()
  rec.fail((url, init) => {
    if ((init.method ?? 'GET') !== 'GET') return null
    return fetch(url, init).then((res) => {
      const h = new Headers(res.headers)
      h.set('Date', new Date(Date.now() - 40_000).toUTCString())
      return new Response(res.body, { status: res.status, headers: h })
    })
  })
  const clock = fakeClock()
  const b = createClient({ issuer: latch.url, fetch: rec.fetch, now: clock.now, storage })
  clock.advance(12 * 60_000) // due
  const got = await b.getAccessToken()
  assert.ok(got)
  const call = rec.calls.find((c) => c.refresh)
  assert.ok(call, 'no refresh')
  const sent = new URLSearchParams(call.body).get('request_time')
  if (sent !== null) assert.ok(Math.abs(Number(sent) - Date.now()) < 3_000, `request_time off by ${Number(sent) - Date.now()} ms`)
})
