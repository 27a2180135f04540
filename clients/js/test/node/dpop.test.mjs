// The JavaScript client with DPoP outside a browser (dpop: true): the key
// kept through the storage interface as a JWK, proofs on every token,
// account and API request, server nonces handled; a Go resource server
// behind bearer (examples/notes-api) accepts the requests, and the
// bearer-only ./server verifier refuses the bound token.
import { test, before, after } from 'node:test'
import assert from 'node:assert/strict'
import { spawn } from 'node:child_process'
import { startLatch, freePort, freshEmail, PASSWORD } from '../support/latch.mjs'
import { createClient, memoryStorage } from '../../dist/index.js'
import { createVerifier, InvalidTokenError } from '../../dist/server.js'

let latch, api, apiProc
before(async () => {
  latch = await startLatch({ flags: ['--dpop-nonce'] })
  await latch.admin('clients', 'create', 'notes-dpop', '--audience', 'notes-api', '--audience', latch.url)
  const port = await freePort()
  api = `http://127.0.0.1:${port}`
  apiProc = spawn(process.env.NOTES_BIN, [], { env: { ...process.env, NOTES_ISSUER: latch.url, NOTES_ADDR: `127.0.0.1:${port}` }, stdio: 'ignore' })
  for (const deadline = Date.now() + 20_000; ;) {
    try {
      if ((await fetch(api + '/healthz')).ok) break
    } catch {}
    if (Date.now() > deadline) throw new Error('notes-api did not start')
    await new Promise((r) => setTimeout(r, 50))
  }
})
after(async () => { apiProc?.kill('SIGTERM'); await latch?.stop() })

const claims = (jwt) => JSON.parse(Buffer.from(jwt.split('.')[1], 'base64url').toString())

test('dpop: true binds the session; proofs and nonces on token, account and API requests', async () => {
  const storage = memoryStorage()
  const seen = []
  const spy = (input, init) => {
    const h = new Headers(init?.headers ?? (input instanceof Request ? input.headers : undefined))
    seen.push({ url: String(input instanceof Request ? input.url : input), dpop: h.get('DPoP'), authz: h.get('Authorization') })
    return fetch(input, init)
  }
  const c = createClient({ issuer: latch.url, clientId: 'notes-dpop', storage, dpop: true, fetch: spy })
  await c.signUp({ email: freshEmail('js-dpop'), password: PASSWORD })
  const at = await c.getAccessToken()
  const jkt = claims(at).cnf?.jkt
  assert.ok(jkt, 'the access token names no key')
  // The key went through the storage interface (JWK), beside the session.
  const saved = JSON.parse(await storage.getItem('latch:' + latch.url + ':notes-dpop:dpop'))
  assert.equal(saved.priv.kty, 'EC')
  // The API behind Go's bearer accepts the proofs.
  let r = await c.fetch(api + '/notes', { method: 'POST', headers: { 'Content-Type': 'application/json' }, body: JSON.stringify({ text: 'js' }) })
  assert.equal(r.status, 201)
  const call = seen.findLast((q) => q.url.startsWith(api))
  assert.match(call.authz, /^DPoP /)
  assert.ok(call.dpop)
  assert.equal((await c.sessions()).length, 1)
  await c.refresh()
  const next = await c.getAccessToken()
  assert.notEqual(next, at)
  assert.equal(claims(next).cnf.jkt, jkt)
  r = await c.fetch(api + '/notes')
  assert.equal(r.status, 200)
  // The nonce: the first signup proof was answered use_dpop_nonce, so two
  // signup requests went out, the second with the nonce.
  const signups = seen.filter((q) => q.url.endsWith('/v1/signup'))
  assert.equal(signups.length, 2)
  assert.equal(claims(signups[0].dpop).nonce, undefined)
  assert.ok(claims(signups[1].dpop).nonce)
  // A new process resuming from the same storage proves the same key.
  const c2 = createClient({ issuer: latch.url, clientId: 'notes-dpop', storage, dpop: true })
  await c2.refresh()
  assert.equal(claims(await c2.getAccessToken()).cnf.jkt, jkt)
  // The bearer-only JS verifier refuses a bound token (RFC 9449 section 7.1).
  const v = await createVerifier({ issuer: latch.url, audience: 'notes-api' })
  await assert.rejects(v.verify(await c2.getAccessToken()), InvalidTokenError)
})
