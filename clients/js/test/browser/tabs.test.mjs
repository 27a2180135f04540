// Four tabs of one app calling an API through latch.fetch across at least
// five access-token lifetimes (1 minute, the shortest Latch allows): no
// request sees a 401, no tab is signed out, and each token is refreshed
// exactly once, by one tab for all (Web Locks + BroadcastChannel), on
// authclient's schedule (2/3 to 3/4 of its life). The API checks exp with
// no leeway. About 5½ minutes; LATCH_TEST_LIFETIMES changes the count.
import { test, before, after } from 'node:test'
import assert from 'node:assert/strict'
import { startLatch, freshEmail, PASSWORD } from '../support/latch.mjs'
import { serveStatic } from '../support/static.mjs'
import { browserSkip, launchBrowser } from '../support/browser.mjs'
import { appPages, openApp, countRefreshes } from '../support/app.mjs'
import { startNotesAPI } from '../../../../examples/notes-api-js/server.mjs'

const skip = browserSkip()
const TTL = 60_000
const LIFETIMES = Number(process.env.LATCH_TEST_LIFETIMES ?? 5)
let latch, site, api, chrome

before(async () => {
  if (skip) return
  site = await serveStatic({ pages: appPages })
  latch = await startLatch()
  const out = await latch.admin('clients', 'create', 'notes-js', '--confidential', '--audience', 'notes-js')
  const secret = /client secret \(shown once\): (\S+)/.exec(out)[1]
  await latch.admin('clients', 'create', 'web', '--web', '--origins', site.origin, '--access-ttl', '1m', '--audience', 'notes-js', '--audience', latch.url)
  api = await startNotesAPI({ issuer: latch.url, feedClient: 'notes-js', feedSecret: secret, origins: [site.origin], leewaySeconds: 0 })
  chrome = await launchBrowser()
})
after(async () => { await chrome?.close(); await api?.close(); await site?.close(); await latch?.stop() })

test(`four tabs, ${LIFETIMES} token lifetimes: no 401, no sign-out, one refresh per lifetime`, { skip, timeout: LIFETIMES * TTL + 120_000 }, async () => {
  const email = freshEmail()
  const r = await fetch(latch.url + '/v1/signup', { method: 'POST', headers: { 'Content-Type': 'application/json' }, body: JSON.stringify({ email, password: PASSWORD, login: false }) })
  assert.equal(r.status, 201)
  const refreshes = []
  const first = await openApp(chrome.browser, site, latch.url)
  countRefreshes(first, refreshes)
  await first.evaluate((email, password) => window.latch.signIn({ email, password }), email, PASSWORD)
  const signedInAt = Date.now()
  const tabs = [first]
  for (let i = 0; i < 3; i++) {
    const p = await openApp(chrome.browser, site, latch.url)
    countRefreshes(p, refreshes)
    tabs.push(p)
  }
  const duration = LIFETIMES * TTL + 5_000
  const results = await Promise.all(tabs.map((p) => p.evaluate((url, d) => window.hammer(url, d, 250), api.url + '/notes', duration)))
  const events = await Promise.all(tabs.map((p) => p.evaluate(() => window.events)))
  const visibility = await Promise.all(tabs.map((p) => p.evaluate(() => document.visibilityState)))
  const calls = results.reduce((n, x) => n + x.calls, 0)
  const times = refreshes.map((t) => ((t - signedInAt) / 1000).toFixed(1) + 's')
  console.log(`${calls} API calls from 4 tabs (${visibility.join(', ')}) over ${duration / 1000} s; refreshes at ${times.join(', ')}`)
  for (const [i, x] of results.entries()) {
    assert.deepEqual(x.errors, [], `tab ${i} errors`)
    assert.deepEqual(Object.keys(x.statuses), ['200'], `tab ${i} statuses ${JSON.stringify(x.statuses)}`)
  }
  for (const [i, e] of events.entries()) assert.ok(!e.includes('out'), `tab ${i} was signed out: ${e}`)
  // One refresh per lifetime: each 40 to 45 s after the previous token
  // (2/3 to 3/4 of 60 s), none doubled, none missed. Requests within 1 s
  // of each other form a round; a round of more than one is a duplicate.
  // (Duplicates seen under load had one cause: tabs that learnt their
  // clock offset from a cached metadata GET sent a request_time 40 s old,
  // were refused as stale, and passed the lock on; the offset now comes
  // only from uncached answers.)
  const rounds = []
  for (const t of refreshes) {
    if (rounds.length && t - rounds.at(-1).at(-1) < 1_000) rounds.at(-1).push(t)
    else rounds.push([t])
  }
  const doubled = rounds.filter((r) => r.length > 1)
  assert.equal(doubled.length, 0, `duplicate refreshes in ${doubled.length} round(s): ${times}`)
  assert.ok(rounds.length >= LIFETIMES, `${rounds.length} refresh rounds in ${LIFETIMES} lifetimes`)
  const gaps = [rounds[0][0] - signedInAt, ...rounds.slice(1).map((r, i) => r[0] - rounds[i][0])]
  for (const g of gaps) assert.ok(g > 38_000 && g < 47_000, `a refresh ${g} ms after the previous token (want 40–45 s): ${times}`)
})
