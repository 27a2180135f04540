// The "./server" helper and examples/notes-api-js against a real latch
// serve: tokens verified with the JWKS (jose), the revocation feed's set
// kept from the stream, staleness rules as bearer's.
import { test, before, after } from 'node:test'
import assert from 'node:assert/strict'
import { startLatch, freshEmail, PASSWORD } from '../support/latch.mjs'
import { createClient } from '../../dist/index.js'
import { createVerifier, InvalidTokenError, FeedStaleError } from '../../dist/server.js'
import { startNotesAPI } from '../../../../examples/notes-api-js/server.mjs'

let latch, secret
before(async () => {
  latch = await startLatch()
  const out = await latch.admin('clients', 'create', 'notes-js', '--confidential', '--audience', 'notes-js')
  secret = /client secret \(shown once\): (\S+)/.exec(out)[1]
  await latch.admin('clients', 'create', 'spa', '--audience', 'notes-js', '--audience', latch.url)
})
after(async () => { await latch?.stop() })

async function signedIn() {
  const c = createClient({ issuer: latch.url, clientId: 'spa' })
  await c.signUp({ email: freshEmail(), password: PASSWORD })
  return c
}

test('the example API accepts a token, and refuses it within a second of logout (feed)', async () => {
  const api = await startNotesAPI({ issuer: latch.url, feedClient: 'notes-js', feedSecret: secret })
  try {
    const c = await signedIn()
    let r = await c.fetch(api.url + '/notes', { method: 'POST', body: 'first note' })
    assert.equal(r.status, 201)
    r = await c.fetch(api.url + '/notes')
    assert.deepEqual((await r.json()).notes, ['first note'])
    const token = await c.getAccessToken()
    await c.signOut()
    const t0 = Date.now()
    let status
    while (Date.now() - t0 < 3000) {
      status = (await fetch(api.url + '/notes', { headers: { Authorization: 'Bearer ' + token } })).status
      if (status === 401) break
      await new Promise((res) => setTimeout(res, 20))
    }
    assert.equal(status, 401, 'a logged-out token still accepted after 3 s')
    assert.ok(Date.now() - t0 < 1500, `logout took ${Date.now() - t0} ms to reach the API`)
    assert.ok(api.verifier.revoked() >= 1)
    const noAuth = await fetch(api.url + '/notes')
    assert.equal(noAuth.status, 401)
    assert.equal(noAuth.headers.get('WWW-Authenticate'), 'Bearer realm="api"')
  } finally {
    await api.close()
  }
})

test('verify: wrong audience, garbage, tampering and alg none are invalid_token', async () => {
  const v = await createVerifier({ issuer: latch.url, audience: 'notes-js' })
  const other = await createVerifier({ issuer: latch.url, audience: 'someone-else' })
  try {
    const c = await signedIn()
    const t = await c.getAccessToken()
    const claims = await v.verify(t)
    assert.ok(claims.sub && claims.sid)
    await assert.rejects(other.verify(t), InvalidTokenError)
    await assert.rejects(v.verify('garbage'), InvalidTokenError)
    const [h, p, s] = t.split('.')
    const body = JSON.parse(Buffer.from(p, 'base64url'))
    body.sub = 'someone'
    await assert.rejects(v.verify([h, Buffer.from(JSON.stringify(body)).toString('base64url'), s].join('.')), InvalidTokenError)
    const none = Buffer.from(JSON.stringify({ alg: 'none', typ: 'at+jwt' })).toString('base64url')
    await assert.rejects(v.verify(none + '.' + p + '.'), InvalidTokenError)
    assert.throws(() => { throw new InvalidTokenError('x') }, InvalidTokenError)
    await assert.rejects(createVerifier({ issuer: latch.url, audience: 'x', algorithms: ['HS256'] }), /not an asymmetric/)
  } finally {
    v.close(); other.close()
  }
})

test('a stale feed: fail open accepts, fail closed refuses with FeedStaleError', async () => {
  // A fetch that cuts the stream after the first poll: the feed goes silent.
  const silent = async (input, init = {}) => {
    if (String(input).includes('/v1/revocations') && (init.headers?.Accept ?? '') === 'text/event-stream') {
      return new Promise((_, reject) => init.signal?.addEventListener('abort', () => reject(new Error('aborted'))))
    }
    return fetch(input, init)
  }
  // Signed in first: a signup's password hash on a busy machine can take
  // longer than the staleness bound, which would make "fresh" stale.
  const t = await (await signedIn()).getAccessToken()
  const warnings = []
  const open = await createVerifier({ issuer: latch.url, audience: 'notes-js', fetch: silent, warn: (m) => warnings.push(m), revocations: { clientId: 'notes-js', clientSecret: secret, maxStalenessMs: 1500 } })
  const closed = await createVerifier({ issuer: latch.url, audience: 'notes-js', fetch: silent, warn: () => {}, revocations: { clientId: 'notes-js', clientSecret: secret, maxStalenessMs: 1500, failClosed: true } })
  try {
    await closed.verify(t) // fresh: fine
    await new Promise((r) => setTimeout(r, 1700))
    assert.ok(open.staleness() > 1500)
    await open.verify(t)
    assert.ok(warnings.some((w) => w.includes('fail open')))
    await assert.rejects(closed.verify(t), FeedStaleError)
  } finally {
    open.close(); closed.close()
  }
})
