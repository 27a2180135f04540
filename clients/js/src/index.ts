// Latch client for browsers, React Native and Node 20+ (anything with
// fetch). No runtime dependencies. The behaviour follows the client
// contract of docs/client.md rule for rule; see clients/js/README.md.

/** Options of createClient. */
export interface ClientOptions {
  /** The issuer URL of the Latch server, e.g. https://auth.example.com. */
  issuer: string
  /** The client id registered with Latch (default "app"). */
  clientId?: string
  /** fetch to use (default globalThis.fetch). */
  fetch?: typeof globalThis.fetch
}

/** One signed-in session, as handed to onChange listeners. */
export interface Session {
  sessionId: string
  /** Server time (ms since the epoch) when the access token expires. */
  expiresAt: number
}

/** A refusal from the Latch server: status, machine code and message. */
export class LatchError extends Error {
  constructor(
    readonly status: number,
    readonly code: string,
    message: string,
  ) {
    super(message)
    this.name = 'LatchError'
  }
}

interface TokenResponse {
  access_token: string
  token_type: string
  expires_in: number
  refresh_token?: string
  session_id: string
}

export interface LatchClient {
  signIn(credentials: { email: string; password: string }): Promise<Session>
  getAccessToken(): Promise<string | null>
}

export function createClient(opts: ClientOptions): LatchClient {
  const issuer = opts.issuer.replace(/\/+$/, '')
  const clientId = opts.clientId ?? 'app'
  const doFetch = opts.fetch ?? globalThis.fetch.bind(globalThis)
  let current: { access: string; expiresAt: number; sessionId: string } | null = null

  async function signIn(c: { email: string; password: string }): Promise<Session> {
    const sent = Date.now()
    const res = await doFetch(issuer + '/v1/login', {
      method: 'POST',
      headers: { 'Content-Type': 'application/json' },
      body: JSON.stringify({ email: c.email, password: c.password, client_id: clientId }),
      redirect: 'error',
    })
    const body = await res.json()
    if (!res.ok) throw new LatchError(res.status, body.error ?? 'error', body.error_description ?? body.message ?? res.statusText)
    const t = body as TokenResponse
    current = { access: t.access_token, expiresAt: sent + (t.expires_in - 1) * 1000, sessionId: t.session_id }
    return { sessionId: t.session_id, expiresAt: current.expiresAt }
  }

  async function getAccessToken(): Promise<string | null> {
    return current?.access ?? null
  }

  return { signIn, getAccessToken }
}
