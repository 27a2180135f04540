// dist/index.js loads in a page on another origin with <script
// type="module"> under a CSP without inline script, and signs in.
import { test, after, before } from 'node:test'
import assert from 'node:assert/strict'
import { startLatch, freshEmail, PASSWORD } from '../support/latch.mjs'
import { serveStatic } from '../support/static.mjs'
import { browserSkip, launchBrowser } from '../support/browser.mjs'

const skip = browserSkip()
let latch, site, chrome
before(async () => {
  if (skip) return
  site = await serveStatic({
    pages: {
      '/app.html': '<!doctype html><title>app</title><script type="module" src="/app.js"></script>',
      '/app.js': "import { createClient } from '/dist/index.js'; window.createClient = createClient; document.title = 'ready'",
    },
  })
  latch = await startLatch({ flags: ['--cors-origins', site.origin] })
  chrome = await launchBrowser()
})
after(async () => { await chrome?.close(); await site?.close(); await latch?.stop() })

test('dist/index.js loads as a module script and signs in from another origin', { skip }, async () => {
  const email = freshEmail()
  const res = await fetch(latch.url + '/v1/signup', { method: 'POST', headers: { 'Content-Type': 'application/json' }, body: JSON.stringify({ email, password: PASSWORD, login: false }) })
  assert.ok(res.ok)
  const page = await chrome.browser.newPage()
  await page.goto(site.origin + '/app.html')
  await page.waitForFunction(() => document.title === 'ready')
  const got = await page.evaluate(async (issuer, email, password) => {
    const latch = window.createClient({ issuer })
    const s = await latch.signIn({ email, password })
    return { sid: s.sessionId, token: !!(await latch.getAccessToken()) }
  }, latch.url, email, PASSWORD)
  assert.ok(got.sid)
  assert.equal(got.token, true)
})
