// DPoP in a real browser (RFC 9449, dpop: true): the client of dist/index.js, on a
// page of another origin in cookie mode, binds its session to a key made
// at sign-in with WebCrypto, non-extractable and kept in IndexedDB. A
// script in the page finds the key but cannot export it; the tokens go
// with proofs; the page reloads and the session comes back with the key.
import { test, before, after } from 'node:test'
import assert from 'node:assert/strict'
import { startLatch, freshEmail, PASSWORD } from '../support/latch.mjs'
import { serveStatic } from '../support/static.mjs'
import { browserSkip, launchBrowser } from '../support/browser.mjs'
import { appPages, openApp } from '../support/app.mjs'

const skip = browserSkip()
let latch, site, chrome

before(async () => {
  if (skip) return
  site = await serveStatic({ pages: appPages })
  latch = await startLatch({ flags: ['--dpop-nonce'] })
  await latch.admin('clients', 'create', 'web', '--web', '--origins', site.origin, '--audience', 'web', '--audience', latch.url)
  chrome = await launchBrowser()
})
after(async () => { await chrome?.close(); await site?.close(); await latch?.stop() })

async function signedIn() {
  const email = freshEmail('dpop')
  const r = await fetch(latch.url + '/v1/signup', { method: 'POST', headers: { 'Content-Type': 'application/json' }, body: JSON.stringify({ email, password: PASSWORD, login: false }) })
  assert.equal(r.status, 201)
  const ctx = await chrome.browser.createBrowserContext()
  const page = await openApp(ctx, site, latch.url, { dpop: '1' })
  const requests = []
  page.on('request', (q) => { if (q.url().startsWith(latch.url)) requests.push({ url: q.url(), method: q.method(), headers: q.headers() }) })
  await page.evaluate((email, password) => window.latch.signIn({ email, password }), email, PASSWORD)
  return { ctx, page, requests }
}

const claims = (jwt) => JSON.parse(Buffer.from(jwt.split('.')[1], 'base64url').toString())

test('the session is DPoP-bound: proofs on token and account requests, the token refused without one', { skip }, async () => {
  const { ctx, page, requests } = await signedIn()
  try {
    const access = await page.evaluate(() => window.latch.getAccessToken())
    assert.ok(claims(access).cnf?.jkt, 'the access token names no key')
    const login = requests.find((q) => q.url.endsWith('/v1/login') && q.method === 'POST')
    assert.ok(login.headers.dpop, 'the login carried no proof')
    assert.equal((await page.evaluate(() => window.latch.sessions())).length, 1)
    const call = requests.findLast((q) => q.url.endsWith('/v1/sessions') && q.method === 'GET')
    assert.match(call.headers.authorization, /^DPoP /)
    assert.equal(claims(call.headers.dpop).htu, latch.url + '/v1/sessions')
    await page.evaluate(() => window.latch.refresh())
    const refresh = requests.findLast((q) => q.url.endsWith('/oauth/token') && q.method === 'POST')
    assert.ok(refresh.headers.dpop, 'the refresh carried no proof')
    // The token copied out of the page is useless without the key.
    const stolen = await page.evaluate(() => window.latch.getAccessToken())
    for (const authz of ['Bearer ' + stolen, 'DPoP ' + stolen]) {
      const r = await fetch(latch.url + '/v1/sessions', { headers: { Authorization: authz } })
      assert.equal(r.status, 401)
      assert.match(r.headers.get('www-authenticate'), /^DPoP error=/)
    }
    // A script in the page that refreshes with the cookie but no proof
    // gets invalid_grant, and the session (and its cookie) live on.
    const status = await page.evaluate(async (issuer) => (await fetch(issuer + '/oauth/token', { method: 'POST', credentials: 'include', headers: { 'Content-Type': 'application/x-www-form-urlencoded' }, body: 'grant_type=refresh_token&client_id=web' })).status, latch.url)
    assert.equal(status, 400)
    await page.evaluate(() => window.latch.refresh())
    assert.equal((await page.evaluate(() => window.latch.sessions())).length, 1)
  } finally {
    await ctx.close()
  }
})

test('the key is non-extractable: a script in the page finds it in IndexedDB and cannot export it', { skip }, async () => {
  const { ctx, page } = await signedIn()
  try {
    const got = await page.evaluate(async () => {
      // What an injected script can do: open the database and read the pair.
      const db = await new Promise((resolve, reject) => {
        const r = indexedDB.open('latch-dpop')
        r.onsuccess = () => resolve(r.result)
        r.onerror = () => reject(r.error)
      })
      const pairs = await new Promise((resolve) => {
        const q = db.transaction('keys').objectStore('keys').getAll()
        q.onsuccess = () => resolve(q.result)
      })
      const out = { count: pairs.length, results: [] }
      for (const p of pairs) {
        out.extractable = p.privateKey.extractable
        out.type = p.privateKey.type
        for (const format of ['jwk', 'pkcs8']) {
          try {
            await crypto.subtle.exportKey(format, p.privateKey)
            out.results.push(format + ': exported')
          } catch (e) {
            out.results.push(format + ': ' + e.name)
          }
        }
        // Wrapping it for export is refused too.
        try {
          const wrapper = await crypto.subtle.generateKey({ name: 'AES-KW', length: 256 }, true, ['wrapKey'])
          await crypto.subtle.wrapKey('jwk', p.privateKey, wrapper, 'AES-KW')
          out.results.push('wrap: exported')
        } catch (e) {
          out.results.push('wrap: ' + e.name)
        }
      }
      db.close()
      return out
    })
    assert.equal(got.count, 1)
    assert.equal(got.type, 'private')
    assert.equal(got.extractable, false)
    assert.deepEqual(got.results, ['jwk: InvalidAccessError', 'pkcs8: InvalidAccessError', 'wrap: InvalidAccessError'])
    // After a reload the session comes back from the cookie, with a proof
    // by the same key (the refresh of a bound session needs one).
    const before = claims(await page.evaluate(() => window.latch.getAccessToken())).cnf.jkt
    await page.reload()
    await page.waitForFunction(() => document.title === 'ready')
    const after = await page.evaluate(() => window.latch.getAccessToken())
    assert.ok(after, 'the session did not come back after a reload')
    assert.equal(claims(after).cnf.jkt, before)
    // Signing out deletes the key.
    await page.evaluate(() => window.latch.signOut())
    await new Promise((r) => setTimeout(r, 100))
    const left = await page.evaluate(() => new Promise((resolve) => {
      const r = indexedDB.open('latch-dpop')
      r.onsuccess = () => {
        const q = r.result.transaction('keys').objectStore('keys').count()
        q.onsuccess = () => { r.result.close(); resolve(q.result) }
      }
    }))
    assert.equal(left, 0)
  } finally {
    await ctx.close()
  }
})
