// Latch's account page (/account) used as a person would: sign in, see
// two devices, sign out the other one, change the password; screenshots
// in test/output/ (LATCH_UPDATE_SCREENSHOTS=1 also writes the one in
// docs/img/), and axe-core finds no serious or critical violation.
import { test, before, after } from 'node:test'
import assert from 'node:assert/strict'
import { mkdir, copyFile } from 'node:fs/promises'
import { fileURLToPath } from 'node:url'
import { createRequire } from 'node:module'
import { startLatch, freshEmail, PASSWORD } from '../support/latch.mjs'
import { browserSkip, launchBrowser } from '../support/browser.mjs'
import { createClient } from '../../dist/index.js'

const skip = browserSkip()
const out = fileURLToPath(new URL('../output/', import.meta.url))
const docsImg = fileURLToPath(new URL('../../../../docs/img/account-page.png', import.meta.url))
const axePath = createRequire(import.meta.url).resolve('axe-core/axe.min.js')
const IPHONE = 'Mozilla/5.0 (iPhone; CPU iPhone OS 17_4 like Mac OS X) AppleWebKit/605.1.15 (KHTML, like Gecko) Version/17.4 Mobile/15E148 Safari/604.1'
let latch, chrome

before(async () => {
  if (skip) return
  await mkdir(out, { recursive: true })
  latch = await startLatch()
  chrome = await launchBrowser()
})
after(async () => { await chrome?.close(); await latch?.stop() })

/**
 * A page in its own browser context: no cookie from another test, so a
 * test that fails signed in does not leave the next one signed in too.
 */
async function freshPage() {
  const ctx = await chrome.browser.createBrowserContext()
  return ctx.newPage()
}

/** Runs axe-core in page; fails on serious or critical violations. */
async function axe(page, what) {
  await page.addScriptTag({ path: axePath })
  const res = await page.evaluate(() => window.axe.run(document, { resultTypes: ['violations'] }))
  const bad = res.violations.filter((v) => v.impact === 'serious' || v.impact === 'critical')
  assert.deepEqual(bad.map((v) => `${v.id}: ${v.help} (${v.nodes.map((n) => n.target.join(' ')).join(', ')})`), [], `axe on ${what}`)
  return res.violations
}

test('the account page: sign in, two devices, sign out the other, change password; accessible', { skip }, async () => {
  const email = freshEmail('account')
  // Another device: a phone, signed in through the built-in app client.
  const phone = createClient({ issuer: latch.url, fetch: (i, init = {}) => fetch(i, { ...init, headers: { ...init.headers, 'User-Agent': IPHONE } }) })
  await phone.signUp({ email, password: PASSWORD })

  const page = await freshPage()
  await page.setBypassCSP(true) // only so that axe-core can be injected; the page itself needs no exception
  await page.setViewport({ width: 900, height: 900 })
  const res = await page.goto(latch.url + '/account')
  const csp = res.headers()['content-security-policy']
  assert.match(csp, /script-src 'self'/)
  assert.doesNotMatch(csp, /unsafe-inline|unsafe-eval|https?:/)
  // No third-party request, ever.
  const foreign = []
  page.on('request', (r) => { if (!r.url().startsWith(latch.url) && !r.url().startsWith('data:')) foreign.push(r.url()) })
  await page.waitForFunction(() => document.body.dataset.state === 'signin')
  await page.screenshot({ path: out + 'account-signin.png' })
  await axe(page, 'the sign-in form')

  // Keyboard only: the labels name the fields, Enter submits.
  await page.focus('#email')
  await page.keyboard.type(email)
  await page.keyboard.press('Tab')
  assert.equal(await page.evaluate(() => document.activeElement.id), 'password')
  await page.keyboard.type(PASSWORD)
  await page.keyboard.press('Enter')
  // Focus moves to the heading once the whole view is drawn (the devices
  // list can be drawn before the profile is), so wait for the view, then
  // check where the focus is.
  await page.waitForFunction(() => document.body.dataset.state === 'account')
  await page.waitForFunction(() => document.activeElement?.id === 'account-title', { timeout: 5000 })
    .catch(async () => assert.fail(`focus moves to the account heading, not ${await page.evaluate(() => document.activeElement?.id)}`))
  assert.equal(await page.$$eval('#devices li', (lis) => lis.length), 2, 'two devices')
  const devices = await page.$$eval('#devices li', (lis) => lis.map((li) => li.textContent))
  assert.match(devices[0], /Chrome on Linux.*This device/)
  assert.match(devices[1], /Safari on iOS/)
  assert.match(devices[1], /IP 127\.0\.0\.1/)
  assert.match(devices[1], /last used/)
  assert.match(await page.$eval('#who', (e) => e.textContent), new RegExp(`Signed in as ${email.replace(/[.+]/g, '\\$&')}.*not verified`))
  await page.screenshot({ path: out + 'account-devices.png', fullPage: true })
  if (process.env.LATCH_UPDATE_SCREENSHOTS === '1') await copyFile(out + 'account-devices.png', docsImg)
  await axe(page, 'the account view')
  // Nothing token-like readable by the page here either.
  assert.deepEqual(await page.evaluate(() => [localStorage.length, sessionStorage.length, document.cookie]), [0, 0, ''])

  // Sign out the phone.
  await page.click('#devices li:nth-child(2) button')
  await page.waitForFunction(() => document.querySelectorAll('#devices li').length === 1)
  assert.match(await page.$eval('#status', (e) => e.textContent), /Safari on iOS is signed out/)
  await assert.rejects(phone.sessions(), { name: 'SessionEndedError' })

  // Change the password.
  const next = PASSWORD + ' and more'
  await page.type('#current-password', PASSWORD)
  await page.type('#new-password', next)
  await page.click('#password-form button')
  await page.waitForFunction(() => /password is changed/.test(document.getElementById('status').textContent))
  await page.screenshot({ path: out + 'account-password-changed.png', fullPage: true })
  const check = createClient({ issuer: latch.url })
  await assert.rejects(check.signIn({ email, password: PASSWORD }), { code: 'invalid_credentials' })
  await check.signIn({ email, password: next })

  // Ask for a verification message; Latch without SMTP writes it to its log.
  await page.click('#verify')
  await page.waitForFunction(() => /verification link is on its way/.test(document.getElementById('status').textContent))
  assert.match(latch.log(), /latch_ev_/)

  // A reload keeps the session (the HttpOnly cookie); sign out ends it.
  await page.reload()
  await page.waitForFunction(() => document.body.dataset.state === 'account')
  await page.click('#signout')
  await page.waitForFunction(() => document.body.dataset.state === 'signin')
  await page.reload()
  await page.waitForFunction(() => document.body.dataset.state === 'signin')
  assert.deepEqual(foreign, [], 'requests to other origins')
})

test('the account page refuses a wrong password with a message, and serves only its own files', { skip }, async () => {
  const page = await freshPage()
  await page.goto(latch.url + '/account')
  await page.waitForFunction(() => document.body.dataset.state === 'signin')
  await page.type('#email', 'nobody@example.com')
  await page.type('#password', 'not the password at all')
  await page.click('#signin-form button')
  await page.waitForFunction(() => document.getElementById('error').textContent !== '')
  assert.match(await page.$eval('#error', (e) => e.textContent), /invalid email or password/)
  for (const p of ['/account/lib/server.js', '/account/../go.mod', '/account/lib/..%2Fembed.go']) {
    assert.equal((await fetch(latch.url + p)).status, 404, p)
  }
})

test('the account page deletes the account, behind the password', { skip }, async () => {
  const email = freshEmail('delete')
  await createClient({ issuer: latch.url }).signUp({ email, password: PASSWORD })
  const page = await freshPage()
  await page.goto(latch.url + '/account')
  await page.waitForFunction(() => document.body.dataset.state === 'signin')
  await page.type('#email', email)
  await page.type('#password', PASSWORD)
  await page.click('#signin-form button')
  await page.waitForFunction(() => document.body.dataset.state === 'account')
  await page.type('#delete-password', 'not my password at all')
  await page.click('#delete-form button')
  await page.waitForFunction(() => document.getElementById('error').textContent !== '')
  assert.equal(await page.evaluate(() => document.body.dataset.state), 'account', 'a wrong password signed the page out')
  await page.$eval('#delete-password', (e) => { e.value = '' })
  await page.type('#delete-password', PASSWORD)
  await page.click('#delete-form button')
  await page.waitForFunction(() => document.body.dataset.state === 'signin')
  assert.match(await page.$eval('#status', (e) => e.textContent), /account is deleted/)
  await assert.rejects(createClient({ issuer: latch.url }).signIn({ email, password: PASSWORD }), { code: 'invalid_credentials' })
})
