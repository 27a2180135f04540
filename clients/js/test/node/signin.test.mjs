import { test, after, before } from 'node:test'
import assert from 'node:assert/strict'
import { startLatch, freshEmail, PASSWORD } from '../support/latch.mjs'
import { createClient } from '../../dist/index.js'

let latch
before(async () => { latch = await startLatch() })
after(async () => { await latch?.stop() })

async function signUp(email) {
  const res = await fetch(latch.url + '/v1/signup', {
    method: 'POST', headers: { 'Content-Type': 'application/json' },
    body: JSON.stringify({ email, password: PASSWORD, login: false }),
  })
  assert.ok(res.ok, `signup: ${res.status} ${await res.text()}`)
}

test('signIn returns a session and an access token the account API accepts', async () => {
  const email = freshEmail()
  await signUp(email)
  const latchClient = createClient({ issuer: latch.url })
  const s = await latchClient.signIn({ email, password: PASSWORD })
  assert.match(s.sessionId, /.+/)
  const at = await latchClient.getAccessToken()
  assert.ok(at)
  const res = await fetch(latch.url + '/v1/sessions', { headers: { Authorization: 'Bearer ' + at } })
  assert.equal(res.status, 200)
  const list = await res.json()
  assert.equal(list.length, 1)
  assert.equal(list[0].id, s.sessionId)
})

test('a wrong password is a LatchError with the server code', async () => {
  const email = freshEmail()
  await signUp(email)
  const latchClient = createClient({ issuer: latch.url })
  await assert.rejects(latchClient.signIn({ email, password: 'wrong password entirely' }), { name: 'LatchError', status: 401, code: 'invalid_credentials' })
})
