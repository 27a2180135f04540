// Latch client for browsers, React Native and Node 20+ (anything with
// fetch). No runtime dependencies. It keeps the client contract of
// docs/client.md rule for rule, as the Go reference client (authclient)
// does; the comments name the rule each piece follows. See
// clients/js/README.md for use.
import { sha256 } from './sha256.js';
import { memoryStorage } from './storage.js';
import { dpopChallenge, generateKeyPair, indexedDBKeyStore, memoryKeyStore, prepare, proof, storageKeyStore } from './dpop.js';
export { memoryStorage, localStorageAdapter, secureStoreAdapter } from './storage.js';
export { indexedDBKeyStore, memoryKeyStore, storageKeyStore } from './dpop.js';
/** A refusal from the Latch server: HTTP status, machine code, message. */
export class LatchError extends Error {
    status;
    code;
    constructor(status, code, message) {
        super(message);
        this.name = 'LatchError';
        this.status = status;
        this.code = code;
    }
}
/** The session is over (signed out, revoked, expired): sign in again. */
export class SessionEndedError extends Error {
    reason;
    constructor(reason, options) {
        super('latch: the session has ended (' + reason + '); sign in again', options);
        this.name = 'SessionEndedError';
        this.reason = reason;
    }
}
/** Latch could not be reached, or is overloaded; the session is kept. */
export class UnavailableError extends Error {
    /** Milliseconds before the next refresh attempt. */
    retryAfterMs;
    constructor(retryAfterMs, options) {
        super('latch: the server is unavailable; retry in ' + Math.ceil(retryAfterMs / 1000) + ' s', options);
        this.name = 'UnavailableError';
        this.retryAfterMs = retryAfterMs;
    }
}
/** Saving the session to storage failed; no token is handed out until it succeeds. */
export class PersistError extends Error {
    constructor(options) {
        super('latch: could not save the session', options);
        this.name = 'PersistError';
    }
}
// The schedule of authclient (docs/client.md "When to refresh").
const MARGIN_MIN = 0.25;
const MARGIN_MAX = 1 / 3;
const MIN_MARGIN = 5_000;
const SAFETY = 2_000; // a token with less than this left is not sent
const BACKOFF_BASE = 1_000;
const BACKOFF_MAX = 60_000;
const RETRY_AFTER_CAP = 3_600_000;
// How long a new tab waits for another tab's tokens: without Web Locks it
// cannot tell whether any tab holds a session, so briefly; with them it
// asks only when one does (a held presence lock), and that tab answers as
// soon as its event loop runs.
const ASK_WAIT = 150;
const ASK_WAIT_PRESENT = 2_000;
const CONTENDED_ASK_WAIT = 500; // how long a tab that waited for the refresh lock waits for the holder's tokens
const inBrowser = typeof window !== 'undefined' && typeof document !== 'undefined';
/** createClient returns a client of one Latch server and one client id. */
export function createClient(opts) {
    const issuer = opts.issuer.replace(/\/+$/, '');
    const clientId = opts.clientId ?? 'app';
    const doFetch = opts.fetch ?? ((input, init) => globalThis.fetch(input, init));
    const cookies = opts.cookies ?? inBrowser;
    const storage = opts.storage ?? memoryStorage();
    const now = opts.now ?? Date.now;
    const grace = opts.graceMs ?? 30_000;
    const lockTimeout = opts.lockTimeoutMs ?? 5_000;
    const key = 'latch:' + issuer + ':' + clientId;
    const tabs = (opts.tabs ?? inBrowser) && typeof BroadcastChannel !== 'undefined';
    const autoRefresh = opts.autoRefresh ?? inBrowser;
    const locks = tabs && typeof navigator !== 'undefined' ? navigator.locks : undefined;
    const credentials = cookies ? 'include' : 'same-origin';
    const subtle = typeof crypto !== 'undefined' ? crypto.subtle : undefined;
    const dpopOn = (opts.dpop ?? false) && subtle !== undefined;
    const keyStore = opts.keyStore ?? (inBrowser && typeof indexedDB !== 'undefined' ? indexedDBKeyStore() : opts.storage ? storageKeyStore(opts.storage) : memoryKeyStore());
    const keyName = key + ':dpop';
    let dpopKey = null;
    let dpopLoaded = false;
    // The last DPoP-Nonce of each origin (RFC 9449 section 8).
    const nonces = new Map();
    let state = null;
    let deviceToken; // kept past the session (docs/client.md "Persistence")
    let loaded = false; // token mode: storage read; cookie mode: restore tried
    let loading = null;
    let ended = null;
    let unsaved = false;
    let flight = null;
    let failures = 0;
    let retryAt = 0; // local ms
    let lastErr = null;
    let timer;
    let metadata = null;
    // Clock offset (server − local, ms), docs/client.md "Time".
    let offset = 0;
    let offsetKnown = false;
    const listeners = new Set();
    const channel = tabs ? new BroadcastChannel(key) : null;
    const serverNow = () => now() + offset;
    function observeDate(res, sent, recv) {
        const date = Date.parse(res.headers.get('Date') ?? '');
        if (Number.isNaN(date) || recv < sent)
            return;
        const rtt = recv - sent;
        const sample = date + 500 - (sent + rtt / 2);
        const diff = sample - offset;
        const tol = 1000 + rtt / 2;
        if (!offsetKnown || Math.abs(diff) > tol)
            offset = sample;
        else
            offset += diff / 8;
        offsetKnown = true;
    }
    /** The margin drawn from the token, as authclient draws it. */
    function refreshAt(s) {
        // authclient hashes the refresh token; in cookie mode the page never
        // sees it, and the access token is what every tab shares.
        const sum = sha256(new TextEncoder().encode(s.refresh ?? s.access));
        const hi = new DataView(sum.buffer).getUint32(0);
        const lo = new DataView(sum.buffer).getUint32(4);
        const frac = (hi * 2 ** 21 + Math.floor(lo / 2 ** 11)) / 2 ** 53; // top 53 bits, uniform in [0, 1)
        let margin = s.lifetime * (MARGIN_MIN + frac * (MARGIN_MAX - MARGIN_MIN));
        margin = Math.min(Math.max(margin, MIN_MARGIN), s.lifetime / 2);
        return Math.max(s.expiresAt - margin, s.receivedAt + grace);
    }
    const usable = (s, now) => now < s.expiresAt - SAFETY;
    function publicSession(s) {
        return s && { sessionId: s.sessionId, expiresAt: s.expiresAt - offset };
    }
    function emit() {
        const s = publicSession(ended ? null : state);
        for (const l of listeners) {
            try {
                l(s);
            }
            catch (e) {
                setTimeout(() => {
                    throw e;
                });
            }
        }
    }
    // A presence lock, held while this tab holds a session, tells a new tab
    // (locks.query) that asking the others is worth waiting for.
    // A presence lock, held while this tab holds a session and named with
    // its token's receipt time, tells other tabs (locks.query) that a session
    // exists, and how new the newest token is: a tab that gets the refresh
    // lock and sees a newer token held elsewhere waits for it instead of
    // refreshing again, however late the broadcast arrives.
    let presence = null;
    const tabId = Math.random().toString(36).slice(2);
    async function markPresent() {
        if (!locks || !state || ended)
            return;
        const name = `${key}:session:${state.receivedAt}:${tabId}`;
        if (presence?.name === name)
            return;
        const old = presence;
        const p = { name, abort: new AbortController() };
        presence = p;
        await new Promise((granted) => {
            locks
                .request(name, { signal: p.abort.signal }, () => {
                granted();
                return new Promise((release) => (p.release = release));
            })
                .catch(() => granted());
        });
        if (old) {
            old.abort.abort();
            old.release?.();
        }
    }
    function markAbsent() {
        if (!presence)
            return;
        presence.abort.abort();
        presence.release?.();
        presence = null;
    }
    /** The receipt time of the newest token any tab holds (0 if none is known). */
    async function newestHeld() {
        if (!locks)
            return 0;
        try {
            const q = await locks.query();
            let newest = 0;
            for (const l of q.held ?? []) {
                const i = l.name?.indexOf(key + ':session:') ?? -1;
                if (i !== 0)
                    continue;
                const t = Number(l.name.slice(key.length + ':session:'.length).split(':')[0]);
                if (t > newest)
                    newest = t;
            }
            return newest;
        }
        catch {
            return 0;
        }
    }
    /** Waits (at most ms) until this tab holds a token received at or after t. */
    function awaitToken(t, ms) {
        if (!channel || (state && state.receivedAt >= t))
            return Promise.resolve();
        return new Promise((resolve) => {
            const done = () => {
                channel.removeEventListener('message', check);
                clearTimeout(timeout);
                resolve();
            };
            const check = () => {
                if (state && state.receivedAt >= t)
                    done();
            };
            const timeout = setTimeout(done, ms);
            // Registered after the tab's own adopting listener, so it sees the result.
            channel.addEventListener('message', check);
            broadcast({ type: 'ask' });
        });
    }
    function schedule() {
        void markPresent();
        if (!autoRefresh)
            return;
        clearTimeout(timer);
        if (!state || ended)
            return;
        const wait = Math.max(refreshAt(state) - serverNow(), retryAt - now(), 10);
        timer = setTimeout(() => {
            getAccessToken().catch(() => { }); // failures back off; the next use reports them
        }, Math.min(wait, 2 ** 31 - 1));
        timer.unref?.();
    }
    function broadcast(m) {
        channel?.postMessage(m);
    }
    /** Adopt s if it is newer than what we hold (from another tab or storage). */
    function adopt(s) {
        if (s.issuer !== issuer || s.clientId !== clientId)
            return false;
        if (state && state.sessionId === s.sessionId && s.receivedAt <= state.receivedAt)
            return false;
        state = s;
        ended = null;
        if (s.jkt && dpopKey?.jkt !== s.jkt)
            dpopLoaded = false; // another tab's new key: read it
        schedule();
        return true;
    }
    channel?.addEventListener('message', (ev) => {
        const m = ev.data;
        switch (m.type) {
            case 'tokens':
                // The tabs of an origin share one local clock: a tab that has not
                // talked to Latch yet takes the offset of the tab that got the
                // tokens (measured just now), not one from a cached response.
                if (!offsetKnown && m.state.issuer === issuer && Number.isFinite(m.state.offset)) {
                    offset = m.state.offset;
                    offsetKnown = true;
                }
                if (adopt(m.state))
                    emit();
                break;
            case 'signedOut':
                if (state && state.sessionId === m.sessionId)
                    endLocal('signed out in another tab', false);
                break;
            case 'ask':
                // Even a token that is due: the asking tab then refreshes it under
                // the lock, once, instead of restoring the session beside it.
                if (state && !ended)
                    broadcast({ type: 'tokens', state });
                break;
        }
    });
    /** Asks the other tabs for their tokens; resolves on a newer one or after CONTENDED_ASK_WAIT. */
    function askTabs() {
        return new Promise((resolve) => {
            const before = state?.receivedAt ?? 0;
            const onMsg = (ev) => {
                if (ev.data.type === 'tokens' && ev.data.state.receivedAt > before)
                    setTimeout(done, 0); // after adopt()
            };
            const done = () => {
                channel.removeEventListener('message', onMsg);
                clearTimeout(t);
                resolve();
            };
            const t = setTimeout(done, CONTENDED_ASK_WAIT);
            channel.addEventListener('message', onMsg);
            broadcast({ type: 'ask' });
        });
    }
    // ---- requests to Latch ----
    async function latchFetch(url, init, timeoutMs) {
        const sent = now();
        const signal = timeoutMs ? AbortSignal.timeout(timeoutMs) : init.signal;
        // Calls to Latch follow no redirect, so a password or token is never
        // resent elsewhere (docs/client.md "Objects").
        const res = await doFetch(url, { ...init, credentials, redirect: 'error', signal: signal ?? null });
        // Only answers to requests other than GET set the clock offset: a GET
        // (the metadata, max-age 3600) may come from the HTTP cache with the
        // Date of its first fetch, minutes old. Such an offset made tabs send
        // refreshes whose request_time was more than G in the past, which
        // Latch refuses as stale (503), so each tab in turn refreshed the same
        // token.
        if (init.method !== 'GET')
            observeDate(res, sent, now());
        keepNonce(url, res);
        const text = await res.text();
        let body = null;
        if (text) {
            try {
                body = JSON.parse(text);
            }
            catch {
                body = null;
            }
        }
        return { res, body, sent };
    }
    // ---- DPoP (RFC 9449) ----
    function keepNonce(url, res) {
        const n = res.headers.get('DPoP-Nonce');
        if (n)
            nonces.set(new URL(url).origin, n);
    }
    /** The session's key, read from the key store once; null for none. */
    async function currentKey() {
        if (!dpopOn)
            return null;
        if (!dpopLoaded) {
            try {
                const pair = await keyStore.get(keyName);
                dpopKey = pair ? await prepare(pair) : null;
            }
            catch {
                dpopKey = null;
            }
            dpopLoaded = true;
        }
        return dpopKey;
    }
    /**
     * The key dies with its session; the next sign-in makes a new one. Only
     * the ended session's own key is deleted: another tab may have stored a
     * new session's key since.
     */
    async function dropKey(jkt) {
        try {
            const pair = await keyStore.get(keyName);
            if (pair && (await prepare(pair)).jkt === jkt)
                await keyStore.delete(keyName);
        }
        catch { }
        if (dpopKey?.jkt === jkt)
            dpopKey = null;
    }
    /** The DPoP header for one request, with the origin's nonce. */
    async function dpopHeader(k, method, url, at) {
        return proof(k, method, url, serverNow(), at, nonces.get(new URL(url).origin));
    }
    /**
     * A request to a Latch token endpoint, with a proof by k if set; an
     * answer use_dpop_nonce is sent again once with the new nonce (the
     * server did nothing else with it).
     */
    async function tokenRequest(url, init, k, timeoutMs) {
        for (let i = 0;; i++) {
            const headers = { ...init.headers };
            if (k)
                headers.DPoP = await dpopHeader(k, init.method ?? 'GET', url);
            const r = await latchFetch(url, { ...init, headers }, timeoutMs);
            if (k && i === 0 && r.res.status === 400 && r.body?.error === 'use_dpop_nonce')
                continue;
            return r;
        }
    }
    function errorOf(res, body) {
        return new LatchError(res.status, body?.error ?? 'http_' + res.status, body?.error_description ?? res.statusText);
    }
    function discover() {
        if (!metadata) {
            metadata = (async () => {
                const { res, body } = await latchFetch(issuer + '/.well-known/oauth-authorization-server', { method: 'GET' });
                if (!res.ok)
                    throw errorOf(res, body);
                // RFC 8414 section 3.3: the metadata must name the issuer asked for.
                if (body?.issuer !== issuer)
                    throw new Error(`latch: metadata issuer ${body?.issuer} is not ${issuer}`);
                return body;
            })();
            metadata.catch(() => {
                metadata = null;
            });
        }
        return metadata;
    }
    function stateFrom(t, sent, prev) {
        if (!t.access_token || !/^(bearer|dpop)$/i.test(t.token_type) || !(t.expires_in > 0))
            throw new Error('latch: malformed token response');
        if (!cookies && !t.refresh_token)
            throw new Error('latch: the token response has no refresh token; is this a --web client? (use cookies: true in a browser)');
        const lifetime = t.expires_in * 1000;
        const s = {
            v: 1,
            issuer,
            clientId,
            sessionId: t.session_id || prev?.sessionId || '',
            access: t.access_token,
            lifetime,
            // The token cannot have been issued before the request was sent, and
            // exp has whole seconds: this is never later than the real exp.
            expiresAt: sent + offset + lifetime - 1000,
            // Strictly after its predecessor, so that "newer" is an order along
            // the session even when the offset estimate moved between them.
            receivedAt: Math.max(serverNow(), prev ? prev.receivedAt + 1 : 0),
            offset,
        };
        if (t.refresh_token)
            s.refresh = t.refresh_token;
        if (/^dpop$/i.test(t.token_type)) {
            if (!dpopKey)
                throw new Error('latch: a DPoP token without a key');
            s.jkt = dpopKey.jkt;
        }
        const dt = t.device_token || prev?.deviceToken;
        if (dt)
            s.deviceToken = dt;
        return s;
    }
    // ---- storage (token mode) ----
    async function load() {
        if (loaded)
            return;
        if (!loading) {
            loading = (async () => {
                if (!cookies) {
                    try {
                        const raw = await storage.getItem(key);
                        const s = raw ? JSON.parse(raw) : null;
                        if (s && s.v === 1 && s.access && s.refresh) {
                            offset = s.offset;
                            adopt(s);
                        }
                        else if (s?.deviceToken) {
                            deviceToken = s.deviceToken;
                        }
                    }
                    catch {
                        // unreadable storage: start signed out
                    }
                }
                else if (!state && channel) {
                    // A new tab: another tab may hold the session's tokens already.
                    let others = true;
                    if (locks) {
                        try {
                            const q = await locks.query();
                            others = (q.held ?? []).some((l) => l.name?.startsWith(key + ':session:'));
                        }
                        catch {
                            // no answer: ask anyway
                        }
                    }
                    if (others)
                        await new Promise((resolve) => {
                            const onMsg = (ev) => {
                                if (ev.data.type === 'tokens')
                                    done();
                            };
                            const done = () => {
                                channel.removeEventListener('message', onMsg);
                                clearTimeout(t);
                                resolve();
                            };
                            const t = setTimeout(done, locks ? ASK_WAIT_PRESENT : ASK_WAIT);
                            channel.addEventListener('message', onMsg);
                            broadcast({ type: 'ask' });
                        });
                }
                loaded = true;
            })();
        }
        await loading;
    }
    async function save(s) {
        if (cookies)
            return; // the browser keeps the cookie; nothing else to keep
        await storage.setItem(key, JSON.stringify(s));
    }
    async function forget(rt) {
        if (cookies)
            return;
        try {
            // Another session saved since (a later sign-in elsewhere) is kept.
            const raw = await storage.getItem(key);
            const saved = raw ? JSON.parse(raw) : null;
            if (saved && saved.refresh && saved.refresh !== rt)
                return;
            const dt = state?.deviceToken ?? deviceToken;
            if (dt) {
                deviceToken = dt;
                await storage.setItem(key, JSON.stringify({ v: 1, issuer, clientId, deviceToken: dt }));
            }
            else
                await storage.removeItem(key);
        }
        catch {
            // best effort: the server has ended the session anyway
        }
    }
    /** End the session here; tell other tabs when `tell`. */
    function endLocal(reason, tell) {
        const had = state;
        ended = new SessionEndedError(reason);
        clearTimeout(timer);
        if (had) {
            void forget(had.refresh);
            if (tell)
                broadcast({ type: 'signedOut', sessionId: had.sessionId });
        }
        if (had?.deviceToken)
            deviceToken = had.deviceToken;
        state = null;
        markAbsent();
        if (had?.jkt)
            void dropKey(had.jkt);
        emit();
    }
    // ---- refresh ----
    /**
     * Runs fn holding the cross-tab refresh lock (or just fn without tabs).
     * fn learns whether another tab held the lock first: that tab has most
     * likely just refreshed, and its broadcast may not have arrived yet
     * (the lock and the channel are separate paths between tabs, and a busy
     * or hidden tab gets its messages late).
     */
    async function withLock(fn) {
        if (!locks)
            return fn(false);
        const name = key + ':refresh';
        let running = null;
        let contended = false;
        const run = () => (running = fn(contended));
        const free = await locks.request(name, { ifAvailable: true }, (lock) => (lock ? run().then((v) => ({ v })) : null));
        if (free)
            return free.v;
        contended = true;
        try {
            return await locks.request(name, { signal: AbortSignal.timeout(lockTimeout) }, run);
        }
        catch (e) {
            // Another tab took the lock from us while fn ran: fn still finishes.
            if (running)
                return running;
            const n = e?.name;
            if (n !== 'TimeoutError' && n !== 'AbortError')
                throw e;
            // The holder has not let go within the timeout: a frozen or hung
            // tab (a closed tab's lock is freed at once). Take the lock from it,
            // so that no tab waits on it forever and later tabs queue behind
            // us. A duplicate refresh within G is harmless: the server answers
            // it with the identical token.
            return await locks.request(name, { steal: true }, run);
        }
    }
    /** One refresh of due, under the lock; adopts a newer state instead if one arrived. */
    async function refresh(due, forced) {
        await withLock(async (contended) => {
            // The tab before us in the lock has probably refreshed this very
            // token: ask the tabs for theirs rather than refresh it again.
            if (contended && channel && (!state || !due || state.access === due.access))
                await askTabs();
            // Another tab, or another process sharing storage, may have
            // refreshed while we waited: keep only the newest token.
            if (!cookies) {
                try {
                    const raw = await storage.getItem(key);
                    const saved = raw ? JSON.parse(raw) : null;
                    if (saved?.refresh && saved.sessionId === due?.sessionId && saved.receivedAt > (state?.receivedAt ?? 0))
                        adopt(saved);
                }
                catch { }
            }
            if (locks && due) {
                // The tab before us in the queue may have refreshed already; its
                // broadcast can arrive after the lock did.
                const newest = await newestHeld();
                if (newest > due.receivedAt)
                    await awaitToken(newest, ASK_WAIT_PRESENT);
            }
            if (state && due && state.access !== due.access) {
                const t = serverNow();
                if (usable(state, t) && (t < refreshAt(state) || forced))
                    return; // fresh already
            }
            if (ended && due)
                return;
            const cur = state;
            if (!cookies && !cur?.refresh)
                throw new SessionEndedError('no session');
            let meta;
            try {
                meta = await discover();
            }
            catch (e) {
                throw failed(e);
            }
            const form = new URLSearchParams({ grant_type: 'refresh_token', client_id: clientId });
            if (!cookies)
                form.set('refresh_token', cur.refresh); // cookie mode: the cookie carries it
            // When this attempt is sent, in server time (Unix ms): the server never
            // lets an attempt it reaches more than G later, or after this client
            // gave up on it, abandon a token or revoke the session (docs/design.md
            // "Abandoned and late requests"). Only once the offset is known: the
            // local clock alone may be minutes off.
            if (offsetKnown)
                form.set('request_time', String(Math.round(serverNow())));
            let r;
            try {
                // One attempt, bounded well within G, never replayed. A bound
                // session proves its key (RFC 9449 section 5); in cookie mode a
                // page load does not know yet whether the session is bound, and
                // proves the key it kept if it has one.
                const k = cur?.jkt || (cookies && !cur) ? await currentKey() : null;
                r = await tokenRequest(meta.token_endpoint, { method: 'POST', headers: { 'Content-Type': 'application/x-www-form-urlencoded' }, body: form.toString() }, k, (grace * 2) / 3);
            }
            catch (e) {
                throw failed(e);
            }
            if (!r.res.ok)
                throw failed(errorOf(r.res, r.body), r.res);
            let next;
            try {
                next = stateFrom(r.body, r.sent, cur);
            }
            catch (e) {
                throw failed(e);
            }
            // Saved before it is handed out (docs/client.md "Persistence").
            let saveErr = null;
            try {
                await save(next);
            }
            catch (e) {
                saveErr = e;
            }
            state = next; // the newest token only, kept even if unsaved
            ended = null;
            failures = 0;
            retryAt = 0;
            lastErr = null;
            unsaved = saveErr !== null;
            if (unsaved)
                throw new PersistError({ cause: saveErr });
            await markPresent(); // held before the lock passes on (see newestHeld)
            broadcast({ type: 'tokens', state: next });
            schedule();
            emit();
            // Give the other tabs' message handlers a moment before the lock
            // passes, so the next holder sees this token instead of refreshing.
            if (locks)
                await new Promise((res) => setTimeout(res, 50));
        });
    }
    function retryAfterOf(res) {
        const h = res?.headers.get('Retry-After');
        if (!h)
            return 0;
        const secs = Number(h);
        const ms = Number.isFinite(secs) ? secs * 1000 : Date.parse(h) - serverNow();
        return Math.min(Math.max(ms, 0), RETRY_AFTER_CAP);
    }
    /** Classifies a failed refresh (docs/client.md "Failures"). */
    function failed(err, res) {
        if (err instanceof LatchError && err.code === 'invalid_grant') {
            endLocal('invalid_grant', true);
            return new SessionEndedError('invalid_grant', { cause: err });
        }
        failures++;
        const backoff = Math.min(BACKOFF_BASE * 2 ** Math.min(failures - 1, 10), BACKOFF_MAX);
        let wait = backoff / 2 + Math.random() * (backoff / 2);
        wait = Math.max(wait, retryAfterOf(res));
        retryAt = now() + wait;
        lastErr = err;
        schedule();
        if (err instanceof LatchError && err.status !== 429 && err.status < 500)
            return err; // a refusal, not an outage
        return new UnavailableError(wait, { cause: err });
    }
    /**
     * The access token to send. seen, when set, is a token a resource server
     * refused with invalid_token: if it is still the current one, a refresh
     * is forced; a newer one is returned as is. Callers that find the token
     * due join the refresh in flight, or start it (single flight).
     */
    async function token(seen) {
        await load();
        if (ended || (!state && !cookies))
            return null;
        const cur = state;
        const at = serverNow();
        const forced = seen !== undefined && cur?.access === seen;
        // In cookie mode with nothing in memory (a page load), the first
        // refresh restores the session from the cookie, or finds none.
        const due = !cur || forced || at >= refreshAt(cur) || !usable(cur, at);
        if (!unsaved && !due)
            return cur.access;
        if (!flight) {
            if (!unsaved && now() < retryAt) {
                // Backing off after a failure: no new attempt yet.
                if (cur && usable(cur, at) && !forced)
                    return cur.access;
                throw new UnavailableError(retryAt - now(), { cause: lastErr });
            }
            const f = unsaved && cur ? retrySave(cur) : refresh(cur, forced);
            flight = f;
            f.then(() => void (flight === f && (flight = null)), () => void (flight === f && (flight = null)));
        }
        try {
            await flight;
        }
        catch (e) {
            if (e instanceof SessionEndedError)
                return null;
            if (e instanceof PersistError)
                throw e;
            // The current token still works: use it; the refresh is retried
            // after the backoff.
            const s = state;
            if (s && usable(s, serverNow()) && s.access !== seen && !unsaved)
                return s.access;
            throw e;
        }
        return ended || !state ? null : state.access;
    }
    async function retrySave(cur) {
        try {
            await save(cur);
        }
        catch (e) {
            throw new PersistError({ cause: e });
        }
        if (state === cur)
            unsaved = false;
    }
    async function getAccessToken() {
        return token();
    }
    // ---- sign-in ----
    /** A request that answers a token response: sign-in, sign-up, reset-and-sign-in. */
    async function start(url, body, withDevice) {
        await load();
        body.client_id = clientId;
        // A returning device's token (docs/design.md "Returning devices"); in
        // cookie mode the server reads it from its own HttpOnly cookie.
        const dt = state?.deviceToken ?? deviceToken;
        if (dt && withDevice)
            body.device_token = dt;
        // A new key for every session (RFC 9449 section 5), kept before it is
        // used, when the server offers ES256 proofs.
        const meta = await discover();
        let k = null;
        if (dpopOn && meta.dpop_signing_alg_values_supported?.includes('ES256')) {
            const pair = await generateKeyPair(keyStore);
            await keyStore.set(keyName, pair);
            k = await prepare(pair);
            dpopKey = k;
            dpopLoaded = true;
        }
        const r = await tokenRequest(url, {
            method: 'POST',
            headers: { 'Content-Type': 'application/json' },
            body: JSON.stringify(body),
        }, k);
        if (!r.res.ok)
            throw errorOf(r.res, r.body);
        if (r.res.status === 202) {
            // --signup-enumeration-safe: nothing is said about the address here.
            throw new LatchError(202, 'accepted', 'accepted: confirm the address from the message sent to it, then sign in');
        }
        const prevSession = state;
        const next = stateFrom(r.body, r.sent, null);
        if (!next.deviceToken && dt)
            next.deviceToken = dt;
        try {
            await save(next);
        }
        catch (e) {
            throw new PersistError({ cause: e });
        }
        if (prevSession && prevSession.sessionId !== next.sessionId)
            broadcast({ type: 'signedOut', sessionId: prevSession.sessionId });
        state = next;
        ended = null;
        unsaved = false;
        failures = 0;
        retryAt = 0;
        loaded = true;
        broadcast({ type: 'tokens', state: next });
        schedule();
        emit();
        return publicSession(next);
    }
    const signIn = async (c) => start((await discover()).latch_login_endpoint ?? issuer + '/v1/login', { email: c.email, password: c.password }, true);
    const signUp = async (c) => start((await discover()).latch_signup_endpoint ?? issuer + '/v1/signup', { email: c.email, password: c.password }, false);
    /** An unauthenticated JSON POST to Latch (account lifecycle). */
    async function post(path, body) {
        const r = await latchFetch(issuer + path, { method: 'POST', headers: { 'Content-Type': 'application/json' }, body: JSON.stringify(body) });
        if (!r.res.ok)
            throw errorOf(r.res, r.body);
    }
    function userOf(b) {
        return { id: b.id, email: b.email, emailVerified: b.email_verified, createdAt: b.created_at, userMetadata: b.user_metadata ?? {} };
    }
    // ---- account calls ----
    /** A request to an account endpoint with the token; one forced refresh on 401. */
    async function account(endpoint, fallback, init, suffix = '', path) {
        const meta = await discover();
        const url = path ? issuer + path : (meta[endpoint] ?? issuer + fallback) + suffix;
        let seen;
        let nonceRetried = false;
        for (let i = 0; i < 2; i++) {
            const at = await token(seen);
            if (!at)
                throw ended ?? new SessionEndedError('signed out');
            const headers = { ...init.headers, Authorization: 'Bearer ' + at };
            const k = state?.jkt ? await currentKey() : null;
            if (k) {
                headers.Authorization = 'DPoP ' + at;
                headers.DPoP = await dpopHeader(k, init.method ?? 'GET', url, at);
            }
            const r = await latchFetch(url, { ...init, headers });
            if (r.res.status === 401 && k && !nonceRetried && dpopChallenge(r.res.headers.get('WWW-Authenticate')) === 'use_dpop_nonce') {
                // The nonce is kept now (RFC 9449 section 9): the same token again, once.
                nonceRetried = true;
                i--;
                continue;
            }
            // Only invalid_token is about the token (RFC 6750 section 3.1); a
            // 401 invalid_credentials (a wrong current password) is the
            // caller's error and keeps the session.
            const badToken = r.res.status === 401 && r.body?.error === 'invalid_token';
            if (badToken && i === 0) {
                seen = at;
                continue;
            }
            if (badToken) {
                // The session is gone on the server (revoked elsewhere).
                endLocal('revoked', true);
                throw new SessionEndedError('revoked', { cause: errorOf(r.res, r.body) });
            }
            if (!r.res.ok)
                throw errorOf(r.res, r.body);
            return r;
        }
        throw new Error('unreachable');
    }
    async function signOut(o) {
        const scope = o?.scope ?? 'current';
        await load();
        if (!state && !cookies)
            return;
        try {
            await account('latch_logout_endpoint', '/v1/logout', { method: 'POST', headers: { 'Content-Type': 'application/json' }, body: JSON.stringify({ scope }) });
        }
        catch (e) {
            if (!(e instanceof SessionEndedError)) {
                if (scope === 'others')
                    throw e;
                // Signing out must not fail here because Latch is unreachable:
                // forget the session locally; its cookie or token dies on its own.
                if (!(e instanceof LatchError) && !(e instanceof UnavailableError))
                    throw e;
            }
        }
        if (scope !== 'others')
            endLocal('signed out', true);
    }
    async function sessions() {
        const { body } = await account('latch_sessions_endpoint', '/v1/sessions', { method: 'GET' });
        return body.map((s) => ({
            id: s.id,
            createdAt: s.created_at,
            lastUsedAt: s.last_used_at,
            userAgent: s.user_agent,
            ip: s.ip,
            clientId: s.client_id,
            current: s.current,
        }));
    }
    async function revokeSession(id) {
        const own = state?.sessionId === id;
        await account('latch_sessions_endpoint', '/v1/sessions', { method: 'DELETE' }, '/' + encodeURIComponent(id));
        if (own)
            endLocal('signed out', true);
    }
    async function changePassword(p) {
        const body = { current_password: p.currentPassword, new_password: p.newPassword };
        const dt = state?.deviceToken ?? deviceToken;
        if (dt)
            body.device_token = dt;
        await account('latch_password_endpoint', '/v1/password', { method: 'POST', headers: { 'Content-Type': 'application/json' }, body: JSON.stringify(body) });
    }
    // ---- account lifecycle (docs/design.md "Account lifecycle") ----
    async function me() {
        return userOf((await account('latch_sessions_endpoint', '/v1/me', { method: 'GET' }, '', '/v1/me')).body);
    }
    async function updateMe(userMetadata) {
        const r = await account('latch_sessions_endpoint', '/v1/me', { method: 'PATCH', headers: { 'Content-Type': 'application/json' }, body: JSON.stringify({ user_metadata: userMetadata }) }, '', '/v1/me');
        return userOf(r.body);
    }
    async function deleteAccount(p) {
        await account('latch_sessions_endpoint', '/v1/me', { method: 'DELETE', headers: { 'Content-Type': 'application/json' }, body: JSON.stringify({ password: p.password }) }, '', '/v1/me');
        endLocal('account deleted', true);
    }
    async function changeEmail(p) {
        await account('latch_sessions_endpoint', '/v1/email/change', { method: 'POST', headers: { 'Content-Type': 'application/json' }, body: JSON.stringify({ new_email: p.newEmail, password: p.password }) }, '', '/v1/email/change');
    }
    async function requestVerification() {
        await account('latch_sessions_endpoint', '/v1/email/verify/request', { method: 'POST' }, '', '/v1/email/verify/request');
    }
    const verifyEmail = (token) => post('/v1/email/verify', { token });
    const forgotPassword = (email) => post('/v1/password/forgot', { email });
    async function resetPassword(p) {
        if (!p.signIn) {
            await post('/v1/password/reset', { token: p.token, new_password: p.newPassword });
            return null;
        }
        return start(issuer + '/v1/password/reset', { token: p.token, new_password: p.newPassword, login: true }, false);
    }
    // ---- fetch for resource servers ----
    async function latchFetchAPI(input, init) {
        const template = new Request(input, init);
        // A request whose body is a stream cannot be replayed; anything else
        // can, from a copy taken before the first attempt.
        const stream = typeof ReadableStream !== 'undefined' && init?.body instanceof ReadableStream;
        const spare = stream ? null : template.clone();
        const at = await token();
        if (!at)
            throw ended ?? new SessionEndedError('signed out');
        let res = await doFetch(await withToken(stream ? template : template.clone(), at));
        keepNonce(template.url, res);
        if (res.status === 401 && spare && dpopChallenge(res.headers.get('WWW-Authenticate')) === 'use_dpop_nonce') {
            // RFC 9449 section 9: once more with the nonce the API just sent.
            res = await doFetch(await withToken(spare.clone(), at));
            keepNonce(template.url, res);
        }
        if (res.status !== 401 || !spare)
            return res;
        // RFC 6750 section 3.1: invalid_token means "refresh and retry"; a
        // WWW-Authenticate the API's CORS does not expose reads as null, and
        // gets the one retry too. Never more than one.
        const wwwAuth = res.headers.get('WWW-Authenticate');
        if (wwwAuth !== null && !/error="?invalid_token/i.test(wwwAuth))
            return res;
        let again;
        try {
            again = await token(at);
        }
        catch {
            return res;
        }
        if (!again || again === at)
            return res;
        return doFetch(await withToken(spare, again));
    }
    /** req with the token: "Bearer", or "DPoP" and a proof for req (RFC 9449 section 7.1). */
    async function withToken(req, at) {
        const headers = new Headers(req.headers);
        const k = state?.jkt ? await currentKey() : null;
        if (k) {
            headers.set('Authorization', 'DPoP ' + at);
            headers.set('DPoP', await dpopHeader(k, req.method, req.url, at));
        }
        else
            headers.set('Authorization', 'Bearer ' + at);
        return new Request(req, { headers });
    }
    /** Forces one refresh now (joining one in flight), like authclient's Session.Refresh. */
    async function forceRefresh() {
        await load();
        const at = state?.access;
        const got = await token(at ?? '');
        if (!got)
            throw ended ?? new SessionEndedError('signed out');
    }
    function onChange(listener) {
        listeners.add(listener);
        return () => listeners.delete(listener);
    }
    return {
        signUp,
        signIn,
        signOut,
        getAccessToken,
        fetch: latchFetchAPI,
        sessions,
        revokeSession,
        changePassword,
        onChange,
        refresh: forceRefresh,
        me,
        updateMe,
        deleteAccount,
        changeEmail,
        requestVerification,
        verifyEmail,
        forgotPassword,
        resetPassword,
        get session() {
            return publicSession(ended ? null : state);
        },
    };
}
