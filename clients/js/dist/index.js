// Latch client for browsers, React Native and Node 20+ (anything with
// fetch). No runtime dependencies. The behaviour follows the client
// contract of docs/client.md rule for rule; see clients/js/README.md.
/** A refusal from the Latch server: status, machine code and message. */
export class LatchError extends Error {
    status;
    code;
    constructor(status, code, message) {
        super(message);
        this.status = status;
        this.code = code;
        this.name = 'LatchError';
    }
}
export function createClient(opts) {
    const issuer = opts.issuer.replace(/\/+$/, '');
    const clientId = opts.clientId ?? 'app';
    const doFetch = opts.fetch ?? globalThis.fetch.bind(globalThis);
    let current = null;
    async function signIn(c) {
        const sent = Date.now();
        const res = await doFetch(issuer + '/v1/login', {
            method: 'POST',
            headers: { 'Content-Type': 'application/json' },
            body: JSON.stringify({ email: c.email, password: c.password, client_id: clientId }),
            redirect: 'error',
        });
        const body = await res.json();
        if (!res.ok)
            throw new LatchError(res.status, body.error ?? 'error', body.error_description ?? body.message ?? res.statusText);
        const t = body;
        current = { access: t.access_token, expiresAt: sent + (t.expires_in - 1) * 1000, sessionId: t.session_id };
        return { sessionId: t.session_id, expiresAt: current.expiresAt };
    }
    async function getAccessToken() {
        return current?.access ?? null;
    }
    return { signIn, getAccessToken };
}
