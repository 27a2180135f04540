// The account-lifecycle calls of the client against a real latch serve
// (no SMTP: messages go to the server log, where the test reads the
// link tokens, as the walkthrough does).
import { test, before, after } from 'node:test'
import assert from 'node:assert/strict'
import { startLatch, freshEmail, PASSWORD } from '../support/latch.mjs'
import { createClient } from '../../dist/index.js'

let latch
before(async () => { latch = await startLatch() })
after(async () => { await latch?.stop() })

const linesOf = (prefix, addr) => latch.log().split('\n').filter((l) => l.includes(addr) && l.includes(prefix))

/**
 * The link token (latch_ev_, latch_pr_) of the message to addr that action
 * makes Latch send: the messages are written off the request, and only
 * the newest of a kind works, so the test waits for one more than before.
 */
async function linkToken(prefix, addr, action) {
  const before = linesOf(prefix, addr).length
  await action()
  const deadline = Date.now() + 10_000
  for (;;) {
    const lines = linesOf(prefix, addr)
    const m = lines.length > before && new RegExp(`(${prefix}[A-Za-z0-9_-]+)`).exec(lines.at(-1))
    if (m) return m[1]
    if (Date.now() > deadline) throw new Error(`no new ${prefix} message to ${addr} in the log:\n${latch.log().slice(-3000)}`)
    await new Promise((r) => setTimeout(r, 50))
  }
}

test('me, updateMe, verification, email change, forgot/reset, delete', async () => {
  const email = freshEmail('life')
  const c = createClient({ issuer: latch.url })
  await c.signUp({ email, password: PASSWORD })
  let u = await c.me()
  assert.equal(u.email, email)
  assert.equal(u.emailVerified, false)
  u = await c.updateMe({ theme: 'dark' })
  assert.deepEqual(u.userMetadata, { theme: 'dark' })
  await c.verifyEmail(await linkToken('latch_ev_', email, () => c.requestVerification()))
  assert.equal((await c.me()).emailVerified, true)
  await assert.rejects(c.verifyEmail('latch_ev_nonsense'), { name: 'LatchError', code: 'invalid_token' })

  const next = freshEmail('moved')
  await c.verifyEmail(await linkToken('latch_ev_', next, () => c.changeEmail({ newEmail: next, password: PASSWORD })))
  assert.equal((await c.me()).email, next)

  await c.forgotPassword('nobody-' + next) // the same answer for an unknown address
  const fresh = PASSWORD + ' reset'
  const reset = await linkToken('latch_pr_', next, () => c.forgotPassword(next))
  const s = await c.resetPassword({ token: reset, newPassword: fresh, signIn: true })
  assert.ok(s.sessionId)
  assert.equal((await c.sessions()).length, 1, 'a reset ends every other session')

  await assert.rejects(c.deleteAccount({ password: 'wrong password here' }), { code: 'invalid_credentials' })
  await c.deleteAccount({ password: fresh })
  assert.equal(await c.getAccessToken(), null)
  await assert.rejects(c.signIn({ email: next, password: fresh }), { code: 'invalid_credentials' })
})
