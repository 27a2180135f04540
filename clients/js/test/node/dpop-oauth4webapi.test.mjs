// An outside DPoP client (oauth4webapi, which implements RFC 9449) against
// a real latch serve with server nonces on, and a Go resource server behind
// bearer's middleware (examples/notes-api): it signs in (the password grant
// through oauth4webapi's generic token request), refreshes, and calls the
// API, each with its own proofs; a copied refresh token or access token
// without the key gets nowhere.
import { test, before, after } from 'node:test'
import assert from 'node:assert/strict'
import { spawn } from 'node:child_process'
import * as oauth from 'oauth4webapi'
import { startLatch, freePort, freshEmail, PASSWORD } from '../support/latch.mjs'

const insecure = { [oauth.allowInsecureRequests]: true } // loopback http in tests only

let latch, api, apiProc
before(async () => {
  latch = await startLatch({ flags: ['--dpop-nonce'] })
  await latch.admin('clients', 'create', 'notes-web', '--audience', 'notes-api', '--dpop-required')
  const bin = process.env.NOTES_BIN
  if (!bin) throw new Error('NOTES_BIN is not set: run through `go test ./clients/js`')
  const port = await freePort()
  api = `http://127.0.0.1:${port}`
  apiProc = spawn(bin, [], { env: { ...process.env, NOTES_ISSUER: latch.url, NOTES_ADDR: `127.0.0.1:${port}` }, stdio: 'ignore' })
  for (const deadline = Date.now() + 20_000; ;) {
    try {
      if ((await fetch(api + '/healthz')).ok) break
    } catch {}
    if (Date.now() > deadline) throw new Error('notes-api did not start')
    await new Promise((r) => setTimeout(r, 50))
  }
})
after(async () => {
  apiProc?.kill('SIGTERM')
  await latch?.stop()
})

// once retries a call after use_dpop_nonce (RFC 9449 section 8): the DPoP
// handle has kept the server's nonce from the error response.
async function once(fn) {
  try {
    return await fn()
  } catch (err) {
    if (!oauth.isDPoPNonceError(err)) throw err
    return fn()
  }
}

test('oauth4webapi signs in with DPoP, refreshes, and calls a bearer-protected API', async () => {
  const issuer = new URL(latch.url)
  const as = await oauth.processDiscoveryResponse(issuer, await oauth.discoveryRequest(issuer, { algorithm: 'oauth2', ...insecure }))
  assert.ok(as.dpop_signing_alg_values_supported.includes('ES256'))
  const client = { client_id: 'notes-web' }
  const auth = oauth.None()
  const email = freshEmail('dpop')
  const signup = await fetch(latch.url + '/v1/signup', { method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify({ email, password: PASSWORD, login: false }) })
  assert.equal(signup.status, 201)

  const keyPair = await oauth.generateKeyPair('ES256')
  const DPoP = oauth.DPoP(client, keyPair)
  const login = await once(async () => oauth.processGenericTokenEndpointResponse(as, client,
    await oauth.genericTokenEndpointRequest(as, client, auth, 'password', { username: email, password: PASSWORD }, { DPoP, ...insecure })))
  assert.equal(login.token_type, 'dpop')

  const call = async (token, method = 'GET', body) => {
    const headers = new Headers(body ? { 'content-type': 'application/json' } : {})
    return once(() => oauth.protectedResourceRequest(token, method, new URL(api + '/notes'), headers, body, { DPoP, ...insecure }))
  }
  let r = await call(login.access_token, 'POST', JSON.stringify({ text: 'bound' }))
  assert.equal(r.status, 201)

  const refreshed = await once(async () => oauth.processRefreshTokenResponse(as, client,
    await oauth.refreshTokenGrantRequest(as, client, auth, login.refresh_token, { DPoP, ...insecure })))
  assert.equal(refreshed.token_type, 'dpop')
  assert.notEqual(refreshed.refresh_token, login.refresh_token)
  r = await call(refreshed.access_token)
  assert.equal(r.status, 200)
  assert.deepEqual((await r.json()).map((n) => n.text), ['bound'])

  // Stolen tokens without the key. The access token as a bearer token:
  r = await fetch(api + '/notes', { headers: { Authorization: 'Bearer ' + refreshed.access_token } })
  assert.equal(r.status, 401)
  assert.match(r.headers.get('www-authenticate'), /^DPoP error="invalid_token"/)
  // with the DPoP scheme and another key's proof:
  const thief = oauth.DPoP(client, await oauth.generateKeyPair('ES256'))
  await assert.rejects(
    once(() => oauth.protectedResourceRequest(refreshed.access_token, 'GET', new URL(api + '/notes'), new Headers(), null, { DPoP: thief, ...insecure })),
    (err) => err instanceof oauth.WWWAuthenticateChallengeError && err.status === 401)
  // The refresh token without a proof, and with the thief's:
  const plain = await fetch(as.token_endpoint, { method: 'POST', headers: { 'content-type': 'application/x-www-form-urlencoded' },
    body: new URLSearchParams({ grant_type: 'refresh_token', refresh_token: refreshed.refresh_token, client_id: 'notes-web' }) })
  assert.equal(plain.status, 400)
  assert.equal((await plain.json()).error, 'invalid_dpop_proof') // this client must send one
  await assert.rejects(
    once(async () => oauth.processRefreshTokenResponse(as, client,
      await oauth.refreshTokenGrantRequest(as, client, auth, refreshed.refresh_token, { DPoP: thief, ...insecure }))),
    (err) => err instanceof oauth.ResponseBodyError && err.error === 'invalid_grant')
  // The owner's session is untouched.
  const again = await once(async () => oauth.processRefreshTokenResponse(as, client,
    await oauth.refreshTokenGrantRequest(as, client, auth, refreshed.refresh_token, { DPoP, ...insecure })))
  r = await call(again.access_token)
  assert.equal(r.status, 200)
})
