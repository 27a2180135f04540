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

/** The newest link token of a kind (latch_ev_, latch_pr_) sent to addr, from the server log. */
async function linkToken(prefix, addr) {
  const deadline = Date.now() + 5000
  for (;;) {
    const lines = latch.log().split('\n').filter((l) => l.includes(addr) && l.includes(prefix))
    const m = lines.length && new RegExp(`(${prefix}[A-Za-z0-9_-]+)`).exec(lines.at(-1))
    if (m) return m[1]
    if (Date.now() > deadline) throw new Error(`no ${prefix} message to ${addr} in the log:\n${latch.log().slice(-3000)}`)
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
  await c.requestVerification()
  await c.verifyEmail(await linkToken('latch_ev_', email))
  assert.equal((await c.me()).emailVerified, true)
  await assert.rejects(c.verifyEmail('latch_ev_nonsense'), { name: 'LatchError', code: 'invalid_token' })

  const next = freshEmail('moved')
  await c.changeEmail({ newEmail: next, password: PASSWORD })
  await c.verifyEmail(await linkToken('latch_ev_', next))
  assert.equal((await c.me()).email, next)

  await c.forgotPassword(next)
  await c.forgotPassword('nobody-' + next) // the same answer for an unknown address
  const fresh = PASSWORD + ' reset'
  const s = await c.resetPassword({ token: await linkToken('latch_pr_', next), newPassword: fresh, signIn: true })
  assert.ok(s.sessionId)
  assert.equal((await c.sessions()).length, 1, 'a reset ends every other session')

  await assert.rejects(c.deleteAccount({ password: 'wrong password here' }), { code: 'invalid_credentials' })
  await c.deleteAccount({ password: fresh })
  assert.equal(await c.getAccessToken(), null)
  await assert.rejects(c.signIn({ email: next, password: fresh }), { code: 'invalid_credentials' })
})
