// Cookie mode in a real browser: dist/index.js loaded by a page on another
// origin than Latch's (same site: 127.0.0.1, another port), a web client
// registered for that origin.
import { test, before, after } from 'node:test'
import assert from 'node:assert/strict'
import { startLatch, freshEmail, PASSWORD } from '../support/latch.mjs'
import { serveStatic } from '../support/static.mjs'
import { browserSkip, launchBrowser } from '../support/browser.mjs'
import { appPages, openApp, countRefreshes } from '../support/app.mjs'

const skip = browserSkip()
let latch, site, foreign, chrome

before(async () => {
  if (skip) return
  site = await serveStatic({ pages: appPages })
  foreign = await serveStatic({ pages: appPages }) // same site, another origin, not registered
  latch = await startLatch()
  await latch.admin('clients', 'create', 'web', '--web', '--origins', site.origin, '--audience', 'web', '--audience', latch.url)
  chrome = await launchBrowser()
})
after(async () => { await chrome?.close(); await site?.close(); await foreign?.close(); await latch?.stop() })

async function newUser() {
  const email = freshEmail()
  const r = await fetch(latch.url + '/v1/signup', { method: 'POST', headers: { 'Content-Type': 'application/json' }, body: JSON.stringify({ email, password: PASSWORD, login: false }) })
  assert.equal(r.status, 201)
  return email
}

/** A fresh browser context (its own cookies, storage, locks and channels). */
async function context() {
  const ctx = await chrome.browser.createBrowserContext()
  return { ctx, open: (params) => openApp(ctx, site, latch.url, params) }
}

test('dist/index.js loads as a module script on another origin and signs in in cookie mode', { skip }, async () => {
  const { ctx, open } = await context()
  try {
    const page = await open()
    const email = await newUser()
    const sid = await page.evaluate((email, password) => window.latch.signIn({ email, password }).then((s) => s.sessionId), email, PASSWORD)
    assert.ok(sid)
    assert.ok(await page.evaluate(() => window.latch.getAccessToken()))
    const list = await page.evaluate(() => window.latch.sessions())
    assert.equal(list.length, 1)
    assert.equal(list[0].current, true)
  } finally {
    await ctx.close()
  }
})

test('after a cookie-mode sign-in nothing token-like is readable by the page', { skip }, async () => {
  const { ctx, open } = await context()
  try {
    const page = await open()
    const email = await newUser()
    await page.evaluate((email, password) => window.latch.signIn({ email, password }), email, PASSWORD)
    await page.evaluate(() => window.latch.refresh()) // a refresh too
    const access = await page.evaluate(() => window.latch.getAccessToken())
    const seen = await page.evaluate(async () => {
      const dump = (s) => Array.from({ length: s.length }, (_, i) => [s.key(i), s.getItem(s.key(i))])
      const dbs = indexedDB.databases ? await indexedDB.databases() : []
      const caches = self.caches ? await self.caches.keys() : []
      return { local: dump(localStorage), session: dump(sessionStorage), cookie: document.cookie, dbs, caches }
    })
    assert.deepEqual(seen.local, [], 'localStorage')
    assert.deepEqual(seen.session, [], 'sessionStorage')
    assert.equal(seen.cookie, '', 'document.cookie')
    assert.deepEqual(seen.dbs, [], 'IndexedDB')
    assert.deepEqual(seen.caches, [], 'Cache Storage')
    // The refresh token exists, as an HttpOnly cookie of Latch's origin.
    const cookies = await page.cookies(latch.url)
    const rt = cookies.find((c) => c.name === 'latch_rt_web')
    assert.ok(rt, 'no refresh cookie: ' + JSON.stringify(cookies.map((c) => c.name)))
    assert.equal(rt.httpOnly, true)
    assert.equal(rt.sameSite, 'Strict')
    assert.match(rt.value, /^latch_rt_/)
    // And no page storage holds the refresh token or the access token.
    const all = JSON.stringify(seen)
    assert.ok(!all.includes(rt.value) && !all.includes(access) && !all.includes('latch_rt_') && !all.includes('latch_dt_'))
    // A script that tries to read it from a response cannot: the refresh
    // answer's body has no refresh token.
    const body = await page.evaluate(async (issuer) => {
      const r = await fetch(issuer + '/oauth/token', { method: 'POST', credentials: 'include', headers: { 'Content-Type': 'application/x-www-form-urlencoded' }, body: 'grant_type=refresh_token&client_id=web' })
      return r.text()
    }, latch.url)
    assert.ok(!body.includes('refresh_token') && !body.includes('latch_rt_'), body)
  } finally {
    await ctx.close()
  }
})

test('a cookie-mode request from an origin not on the list is refused', { skip }, async () => {
  const { ctx, open } = await context()
  try {
    const page = await open()
    const email = await newUser()
    await page.evaluate((email, password) => window.latch.signIn({ email, password }), email, PASSWORD)
    const before = (await page.cookies(latch.url)).find((c) => c.name === 'latch_rt_web').value
    // A page on another origin of the same site: the SameSite=Strict
    // cookie is sent, so only the Origin check stands between it and the
    // session.
    const evil = await ctx.newPage()
    await evil.goto(foreign.origin + '/app.html?issuer=' + encodeURIComponent(latch.url))
    const got = await evil.evaluate(async (issuer) => {
      const out = {}
      try {
        const r = await fetch(issuer + '/oauth/token', { method: 'POST', credentials: 'include', headers: { 'Content-Type': 'application/x-www-form-urlencoded' }, body: 'grant_type=refresh_token&client_id=web' })
        out.cors = 'read ' + r.status + ' ' + (await r.text())
      } catch (e) {
        out.cors = 'blocked'
      }
      // no-cors: the request goes out with the cookie, the answer is opaque.
      const r = await fetch(issuer + '/oauth/token', { method: 'POST', mode: 'no-cors', credentials: 'include', headers: { 'Content-Type': 'application/x-www-form-urlencoded' }, body: 'grant_type=refresh_token&client_id=web' })
      out.noCors = r.type
      return out
    }, latch.url)
    assert.equal(got.cors, 'blocked')
    assert.equal(got.noCors, 'opaque')
    // Replaying a captured cookie from outside a browser: refused with
    // a foreign Origin and with none.
    for (const origin of [foreign.origin, undefined]) {
      const headers = { 'Content-Type': 'application/x-www-form-urlencoded', Cookie: 'latch_rt_web=' + before }
      if (origin) headers.Origin = origin
      const r = await fetch(latch.url + '/oauth/token', { method: 'POST', headers, body: 'grant_type=refresh_token&client_id=web' })
      assert.equal(r.status, 403)
      assert.equal((await r.json()).error, 'origin_forbidden')
    }
    // None of it touched the session: the cookie is unchanged and still
    // the current token, so the app's next refresh is a plain rotation.
    assert.equal((await page.cookies(latch.url)).find((c) => c.name === 'latch_rt_web').value, before)
    await page.evaluate(() => window.latch.refresh())
    assert.notEqual((await page.cookies(latch.url)).find((c) => c.name === 'latch_rt_web').value, before)
    assert.deepEqual(await page.evaluate(() => window.events), ['in', 'in'])
  } finally {
    await ctx.close()
  }
})

test('sign-out in one tab signs out the others', { skip }, async () => {
  const { ctx, open } = await context()
  try {
    const a = await open()
    const email = await newUser()
    await a.evaluate((email, password) => window.latch.signIn({ email, password }), email, PASSWORD)
    const b = await open()
    const c = await open()
    const refreshes = []
    for (const p of [a, b, c]) countRefreshes(p, refreshes)
    // The new tabs get the session from the first one, without a refresh.
    assert.ok(await b.evaluate(() => window.latch.getAccessToken()))
    assert.ok(await c.evaluate(() => window.latch.getAccessToken()))
    assert.equal(refreshes.length, 0, 'a new tab refreshed instead of asking the others')
    await a.evaluate(() => window.latch.signOut())
    for (const p of [b, c]) {
      await p.waitForFunction(() => window.events.at(-1) === 'out', { timeout: 2000 })
      assert.equal(await p.evaluate(() => window.latch.getAccessToken()), null)
    }
    // A tab opened now finds no session either: the cookie is gone.
    const d = await open()
    assert.equal(await d.evaluate(() => window.latch.getAccessToken()), null)
    assert.equal((await d.cookies(latch.url)).find((x) => x.name === 'latch_rt_web'), undefined)
  } finally {
    await ctx.close()
  }
})

test('a tab closed in the middle of a refresh, or frozen holding the lock, blocks the others no longer than the lock timeout', { skip }, async () => {
  const lockTimeout = 2000
  const { ctx, open } = await context()
  try {
    const x = await open({ lockTimeout })
    const email = await newUser()
    await x.evaluate((email, password) => window.latch.signIn({ email, password }), email, PASSWORD)
    const y = await open({ lockTimeout })
    assert.ok(await y.evaluate(() => window.latch.getAccessToken()))
    // x starts a refresh whose request never completes, then is closed.
    await x.setRequestInterception(true)
    let sent
    const hung = new Promise((resolve) => { sent = resolve })
    x.on('request', (r) => {
      if (r.url().endsWith('/oauth/token')) sent() // never answered
      else r.continue()
    })
    await x.evaluate(() => { window.latch.refresh().catch(() => {}) })
    await hung
    const yDone = y.evaluate(async () => { const t = Date.now(); await window.latch.refresh(); return Date.now() })
    await new Promise((r) => setTimeout(r, 300))
    const closedAt = Date.now()
    await x.close()
    const doneAt = await yDone
    assert.ok(doneAt - closedAt < lockTimeout, `y waited ${doneAt - closedAt} ms after x closed`)
    // A frozen tab that holds the lock and never lets go.
    const z = await open({ lockTimeout })
    // Resolves once z holds the lock; z never lets go.
    await z.evaluate((name) => new Promise((held) => { navigator.locks.request(name, () => { held(); return new Promise(() => {}) }) }), `latch:${latch.url}:web:refresh`)
    const started = Date.now()
    await y.evaluate(() => window.latch.refresh())
    const waited = Date.now() - started
    assert.ok(waited >= lockTimeout - 200 && waited < lockTimeout + 3000, `y waited ${waited} ms behind a frozen lock holder`)
    assert.ok(await y.evaluate(() => window.latch.getAccessToken()))
    assert.ok(!(await y.evaluate(() => window.events)).includes('out'))
  } finally {
    await ctx.close()
  }
})
