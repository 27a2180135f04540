import { type Storage } from './storage.js';
import { type KeyStore } from './dpop.js';
export { memoryStorage, localStorageAdapter, secureStoreAdapter } from './storage.js';
export type { Storage, SecureStoreLike } from './storage.js';
export { indexedDBKeyStore, memoryKeyStore, storageKeyStore } from './dpop.js';
export type { KeyStore } from './dpop.js';
/** Options of createClient. */
export interface ClientOptions {
    /** The issuer URL of the Latch server, e.g. https://auth.example.com. */
    issuer: string;
    /** The client id registered with Latch (default "app", the built-in client). */
    clientId?: string;
    /**
     * Where the session is kept in token mode (default: memory). Unused in
     * cookie mode, which keeps nothing a script can read.
     */
    storage?: Storage;
    /** fetch to use (default globalThis.fetch). */
    fetch?: typeof globalThis.fetch;
    /**
     * Cookie mode: the client is registered with --web, the refresh token
     * lives in an HttpOnly cookie set by Latch, and requests to Latch carry
     * credentials. Default: true in a browser page, false elsewhere.
     */
    cookies?: boolean;
    /**
     * Coordinate with the other tabs of this origin (Web Locks and
     * BroadcastChannel): one refresh per token across tabs, shared results
     * and sign-outs. Default: true in a browser page.
     */
    tabs?: boolean;
    /**
     * Refresh in the background when the token is due, so requests do not
     * wait for it (authclient's KeepFresh). Default: true in a browser page.
     * The check on every use stays.
     */
    autoRefresh?: boolean;
    /**
     * DPoP (RFC 9449): bind the session to a key made at sign-in, when the
     * server offers ES256 proofs (in a browser page the key is
     * non-extractable, in IndexedDB). Default false: the APIs the tokens
     * go to must accept DPoP (Go's bearer does; ./server does not) and, from
     * a page, allow the DPoP request header in their CORS.
     */
    dpop?: boolean;
    /**
     * Where the DPoP key is kept. Default: IndexedDB in a browser page;
     * elsewhere the storage option (as a JWK), or memory.
     */
    keyStore?: KeyStore;
    /** The local clock (default Date.now); tests move it. */
    now?: () => number;
    /** The server's grace window G (--refresh-grace), default 30 s. */
    graceMs?: number;
    /**
     * How long to wait for the cross-tab refresh lock before taking it from
     * its holder (a frozen tab), default 5 s. A closed tab's lock is freed
     * by the browser at once.
     */
    lockTimeoutMs?: number;
}
/** One signed-in session, as handed to onChange listeners. */
export interface Session {
    /** The server's session id (the `id` of this device in sessions()). */
    sessionId: string;
    /** Local time (ms since the epoch) at which the access token expires. */
    expiresAt: number;
}
/** A device of the user: one session, as GET /v1/sessions lists it. */
export interface DeviceSession {
    id: string;
    createdAt: string;
    lastUsedAt: string;
    userAgent: string;
    ip: string;
    clientId: string;
    /** This session: the one the client is signed in with. */
    current: boolean;
}
/** The signed-in user, as GET /v1/me answers. */
export interface User {
    id: string;
    email: string;
    emailVerified: boolean;
    createdAt: string;
    /** The user's own data (a JSON object of at most 4 KiB), never in tokens. */
    userMetadata: Record<string, unknown>;
}
/** A refusal from the Latch server: HTTP status, machine code, message. */
export declare class LatchError extends Error {
    readonly status: number;
    readonly code: string;
    constructor(status: number, code: string, message: string);
}
/** The session is over (signed out, revoked, expired): sign in again. */
export declare class SessionEndedError extends Error {
    readonly reason: string;
    constructor(reason: string, options?: {
        cause?: unknown;
    });
}
/** Latch could not be reached, or is overloaded; the session is kept. */
export declare class UnavailableError extends Error {
    /** Milliseconds before the next refresh attempt. */
    readonly retryAfterMs: number;
    constructor(retryAfterMs: number, options?: {
        cause?: unknown;
    });
}
/** Saving the session to storage failed; no token is handed out until it succeeds. */
export declare class PersistError extends Error {
    constructor(options?: {
        cause?: unknown;
    });
}
export interface LatchClient {
    signUp(credentials: {
        email: string;
        password: string;
    }): Promise<Session>;
    signIn(credentials: {
        email: string;
        password: string;
    }): Promise<Session>;
    signOut(options?: {
        scope?: 'current' | 'others' | 'all';
    }): Promise<void>;
    /** A fresh access token (refreshed ahead of expiry), or null when signed out. */
    getAccessToken(): Promise<string | null>;
    /** fetch with the access token; one refresh and retry on a 401 invalid_token. */
    fetch(input: RequestInfo | URL, init?: RequestInit): Promise<Response>;
    sessions(): Promise<DeviceSession[]>;
    revokeSession(id: string): Promise<void>;
    changePassword(p: {
        currentPassword: string;
        newPassword: string;
    }): Promise<void>;
    /** Called on sign-in, refresh and sign-out (also from another tab); returns the unsubscribe function. */
    onChange(listener: (session: Session | null) => void): () => void;
    /** Forces one refresh now (joins one in flight). Apps rarely need it. */
    refresh(): Promise<void>;
    /** The user (GET /v1/me). */
    me(): Promise<User>;
    /** Replaces the user's own metadata (PATCH /v1/me). */
    updateMe(userMetadata: Record<string, unknown>): Promise<User>;
    /** Deletes the account (needs the password); every session ends, this one too. */
    deleteAccount(p: {
        password: string;
    }): Promise<void>;
    /** Starts an email change (needs the password): it happens when the new address is verified. */
    changeEmail(p: {
        newEmail: string;
        password: string;
    }): Promise<void>;
    /** Sends a verification message to the user's address. */
    requestVerification(): Promise<void>;
    /** Verifies an address with the token of a verification message (no session needed). */
    verifyEmail(token: string): Promise<void>;
    /** Asks for a reset message; the answer says nothing about whether the address exists. */
    forgotPassword(email: string): Promise<void>;
    /** Sets a new password with the token of a reset message; every session ends. With signIn, signs in. */
    resetPassword(p: {
        token: string;
        newPassword: string;
        signIn?: boolean;
    }): Promise<Session | null>;
    /** The current session, without any request; null when signed out or not known yet. */
    readonly session: Session | null;
}
/** createClient returns a client of one Latch server and one client id. */
export declare function createClient(opts: ClientOptions): LatchClient;
