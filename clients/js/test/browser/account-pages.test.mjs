// Latch's hosted /verify and /reset pages in a real browser, with
// JavaScript off (they must work without it): the links come from the
// messages `latch serve` writes to its log when no SMTP server is
// configured; each step is saved as a screenshot (LATCH_SCREENSHOTS, by
// default clients/js/test/output/, which git ignores).
import { test, before, after } from 'node:test'
import assert from 'node:assert/strict'
import { mkdir, stat } from 'node:fs/promises'
import { join } from 'node:path'
import { startLatch, freshEmail, PASSWORD } from '../support/latch.mjs'
import { browserSkip, launchBrowser } from '../support/browser.mjs'

const skip = browserSkip()
const shots = process.env.LATCH_SCREENSHOTS ?? join(import.meta.dirname, '..', 'output')
let latch, chrome

before(async () => {
  if (skip) return
  await mkdir(shots, { recursive: true })
  latch = await startLatch()
  chrome = await launchBrowser()
})
after(async () => { await chrome?.close(); await latch?.stop() })

function post(path, body) {
  return fetch(latch.url + path, { method: 'POST', headers: { 'Content-Type': 'application/json' }, body: JSON.stringify(body) })
}

/** The links of kind (verify or reset) the server logged so far. */
function links(kind) {
  const re = new RegExp(latch.url.replace(/[.]/g, '\\.') + '/' + kind + '\\?token=latch_(?:ev|pr)_[A-Za-z0-9_-]+', 'g')
  return [...latch.log().matchAll(re)].map((m) => m[0])
}

/** Waits for a link of kind beyond the first `after` ones and returns the newest. */
async function linkInLog(kind, after = 0) {
  const deadline = Date.now() + 10_000
  for (;;) {
    const found = links(kind)
    if (found.length > after) return found.at(-1)
    if (Date.now() > deadline) throw new Error(`no ${kind} link in the log:\n${latch.log()}`)
    await new Promise((r) => setTimeout(r, 50))
  }
}

/** A page with JavaScript off that records every request and CSP report. */
async function openPage() {
  const ctx = await chrome.browser.createBrowserContext()
  const page = await ctx.newPage()
  await page.setJavaScriptEnabled(false)
  const requests = []
  const problems = []
  page.on('request', (r) => requests.push(r.url()))
  page.on('console', (m) => { if (/Content Security Policy|Refused/i.test(m.text())) problems.push(m.text()) })
  return { ctx, page, requests, problems }
}

async function shot(page, name) {
  const path = join(shots, name)
  await page.screenshot({ path, fullPage: true })
  assert.ok((await stat(path)).size > 1000, `screenshot ${path} is empty`)
}

function checkHeaders(res) {
  const h = res.headers()
  assert.match(h['content-type'], /^text\/html/)
  assert.match(h['content-security-policy'], /default-src 'none'/)
  assert.doesNotMatch(h['content-security-policy'], /script-src|unsafe/)
  assert.equal(h['referrer-policy'], 'no-referrer')
}

test('verify and reset through the hosted pages, without JavaScript', { skip }, async () => {
  const email = freshEmail('pages')
  assert.equal((await post('/v1/signup', { email, password: PASSWORD, login: false })).status, 201)
  const { ctx, page, requests, problems } = await openPage()
  try {
    // Verification: the GET shows a button and spends nothing.
    const verify = await linkInLog('verify')
    let res = await page.goto(verify)
    assert.equal(res.status(), 200)
    checkHeaders(res)
    assert.equal(await page.$eval('#title', (e) => e.textContent), 'Confirm your email address')
    assert.equal(await page.$$eval('script', (s) => s.length), 0)
    await shot(page, 'verify-1-confirm.png')
    await Promise.all([page.waitForNavigation(), page.click('#submit')])
    assert.match(await page.$eval('#message', (e) => e.textContent), /confirmed/)
    await shot(page, 'verify-2-done.png')
    const login = await (await post('/v1/login', { email, password: PASSWORD })).json()
    const me = await (await fetch(latch.url + '/v1/me', { headers: { Authorization: 'Bearer ' + login.access_token } })).json()
    assert.equal(me.email_verified, true)

    // Reset: the form, a mismatch, the new password, then the spent link.
    const before = links('reset').length
    assert.equal((await post('/v1/password/forgot', { email })).status, 202)
    const reset = await linkInLog('reset', before)
    res = await page.goto(reset)
    assert.equal(res.status(), 200)
    checkHeaders(res)
    await page.type('#new_password', 'a page-set passphrase 9')
    await page.type('#confirm_password', 'a different one')
    await Promise.all([page.waitForNavigation(), page.click('#submit')])
    assert.match(await page.$eval('#message', (e) => e.textContent), /differ/)
    await shot(page, 'reset-1-mismatch.png')
    await page.type('#new_password', 'a page-set passphrase 9')
    await page.type('#confirm_password', 'a page-set passphrase 9')
    await Promise.all([page.waitForNavigation(), page.click('#submit')])
    assert.match(await page.$eval('#message', (e) => e.textContent), /was changed/)
    await shot(page, 'reset-2-done.png')
    assert.equal((await post('/v1/login', { email, password: PASSWORD })).status, 401)
    assert.equal((await post('/v1/login', { email, password: 'a page-set passphrase 9' })).status, 200)
    // The old session ended with the reset.
    const r = await fetch(latch.url + '/oauth/token', { method: 'POST', headers: { 'Content-Type': 'application/x-www-form-urlencoded' },
      body: new URLSearchParams({ grant_type: 'refresh_token', refresh_token: login.refresh_token, client_id: 'app' }) })
    assert.equal((await r.json()).error, 'invalid_grant')

    res = await page.goto(reset)
    assert.equal(res.status(), 400)
    assert.match(await page.$eval('#message', (e) => e.textContent), /already used/)
    await shot(page, 'reset-3-used-link.png')

    for (const u of requests) assert.ok(u.startsWith(latch.url + '/'), `the page loaded ${u} from another origin`)
    assert.deepEqual(problems, [])
  } finally {
    await ctx.close()
  }
})
