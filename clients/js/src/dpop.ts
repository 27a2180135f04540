// DPoP (RFC 9449) for the JavaScript client: a key pair made at sign-in,
// a proof signed with WebCrypto for every token request and every API
// request, and the server's nonces. In a browser the key is generated
// non-extractable and kept in IndexedDB as a CryptoKey object, so no
// script in the page, this library's or an attacker's, can read the
// private key out: it can only ask the browser to sign while it runs in
// the page. Elsewhere (Node, React Native) the key goes through the
// client's Storage as a JWK, which is as safe as that storage.

import type { Storage } from './storage.js'

/** Where a DPoP key pair is kept between page loads or app starts. */
export interface KeyStore {
  /** Whether keys made for this store may be exported (a string store needs it). */
  readonly extractable: boolean
  get(name: string): Promise<CryptoKeyPair | null>
  set(name: string, pair: CryptoKeyPair): Promise<void>
  delete(name: string): Promise<void>
}

/** memoryKeyStore keeps keys in this process only. */
export function memoryKeyStore(): KeyStore {
  const m = new Map<string, CryptoKeyPair>()
  return {
    extractable: false,
    get: async (n) => m.get(n) ?? null,
    set: async (n, p) => void m.set(n, p),
    delete: async (n) => void m.delete(n),
  }
}

/**
 * indexedDBKeyStore keeps non-extractable CryptoKey objects in IndexedDB
 * (the browser stores them as they are; the key material never becomes
 * readable to scripts). The default in a browser.
 */
export function indexedDBKeyStore(dbName = 'latch-dpop'): KeyStore {
  const open = () =>
    new Promise<IDBDatabase>((resolve, reject) => {
      const r = indexedDB.open(dbName, 1)
      r.onupgradeneeded = () => r.result.createObjectStore('keys')
      r.onsuccess = () => resolve(r.result)
      r.onerror = () => reject(r.error)
    })
  async function tx<T>(mode: IDBTransactionMode, fn: (s: IDBObjectStore) => IDBRequest<T>): Promise<T> {
    const db = await open()
    try {
      return await new Promise<T>((resolve, reject) => {
        const t = db.transaction('keys', mode)
        const req = fn(t.objectStore('keys'))
        t.oncomplete = () => resolve(req.result)
        t.onerror = () => reject(t.error)
        t.onabort = () => reject(t.error)
      })
    } finally {
      db.close()
    }
  }
  return {
    extractable: false,
    get: async (n) => ((await tx('readonly', (s) => s.get(n))) as CryptoKeyPair | undefined) ?? null,
    set: async (n, p) => void (await tx('readwrite', (s) => s.put(p, n))),
    delete: async (n) => void (await tx('readwrite', (s) => s.delete(n))),
  }
}

/**
 * storageKeyStore keeps keys as JWK in a Storage (a platform secure store
 * on React Native, a file-backed store in Node). Keys made for it are
 * extractable: a string store can hold nothing else.
 */
export function storageKeyStore(storage: Storage): KeyStore {
  const alg = { name: 'ECDSA', namedCurve: 'P-256' }
  return {
    extractable: true,
    async get(n) {
      const raw = await storage.getItem(n)
      if (!raw) return null
      const { priv, pub } = JSON.parse(raw) as { priv: JsonWebKey; pub: JsonWebKey }
      return {
        privateKey: await crypto.subtle.importKey('jwk', priv, alg, true, ['sign']),
        publicKey: await crypto.subtle.importKey('jwk', pub, alg, true, ['verify']),
      }
    },
    async set(n, p) {
      const priv = await crypto.subtle.exportKey('jwk', p.privateKey)
      const pub = await crypto.subtle.exportKey('jwk', p.publicKey)
      await storage.setItem(n, JSON.stringify({ priv, pub }))
    },
    delete: async (n) => void (await storage.removeItem(n)),
  }
}

const enc = new TextEncoder()

export function b64url(b: Uint8Array): string {
  let s = ''
  for (const x of b) s += String.fromCharCode(x)
  return btoa(s).replace(/\+/g, '-').replace(/\//g, '_').replace(/=+$/, '')
}

async function sha256b64(s: string): Promise<string> {
  return b64url(new Uint8Array(await crypto.subtle.digest('SHA-256', enc.encode(s))))
}

/** A key pair ready to sign proofs: its JWS header and RFC 7638 thumbprint. */
export interface DPoPKey {
  pair: CryptoKeyPair
  header: string
  jkt: string
}

/** generateKeyPair makes an ES256 key pair for store. */
export async function generateKeyPair(store: KeyStore): Promise<CryptoKeyPair> {
  return (await crypto.subtle.generateKey({ name: 'ECDSA', namedCurve: 'P-256' }, store.extractable, ['sign', 'verify'])) as CryptoKeyPair
}

/** prepare reads the public JWK (public keys are always exportable) and the thumbprint. */
export async function prepare(pair: CryptoKeyPair): Promise<DPoPKey> {
  const j = await crypto.subtle.exportKey('jwk', pair.publicKey)
  // RFC 7638 section 3.2: the required members in lexicographic order.
  const jwk = `{"crv":"${j.crv}","kty":"${j.kty}","x":"${j.x}","y":"${j.y}"}`
  return { pair, header: b64url(enc.encode(`{"typ":"dpop+jwt","alg":"ES256","jwk":${jwk}}`)), jkt: await sha256b64(jwk) }
}

/**
 * proof signs a DPoP proof (RFC 9449 section 4.2) for a request with
 * method to url (without its query and fragment), issued at iatMs (server
 * time), bound to accessToken by ath when one is given, with nonce when the
 * server asked for one.
 */
export async function proof(k: DPoPKey, method: string, url: string, iatMs: number, accessToken?: string, nonce?: string): Promise<string> {
  const u = new URL(url)
  const jti = new Uint8Array(16)
  crypto.getRandomValues(jti)
  const claims: Record<string, string | number> = { jti: b64url(jti), htm: method.toUpperCase(), htu: u.origin + u.pathname, iat: Math.floor(iatMs / 1000) }
  if (accessToken) claims.ath = await sha256b64(accessToken)
  if (nonce) claims.nonce = nonce
  const input = k.header + '.' + b64url(enc.encode(JSON.stringify(claims)))
  // WebCrypto's ECDSA signature is already R||S (RFC 7518 section 3.4).
  const sig = await crypto.subtle.sign({ name: 'ECDSA', hash: 'SHA-256' }, k.pair.privateKey, enc.encode(input))
  return input + '.' + b64url(new Uint8Array(sig))
}

/** The error of a DPoP challenge in a 401's WWW-Authenticate, if any (RFC 9449 section 7.1). */
export function dpopChallenge(h: string | null): string | null {
  const m = h && /(?:^|,\s*)DPoP\s[^]*?error="([a-z_]+)"/i.exec(h)
  return m ? m[1]! : null
}
