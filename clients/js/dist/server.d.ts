import { type JWTPayload } from 'jose';
import type { IncomingMessage, ServerResponse } from 'node:http';
export interface FeedOptions {
    /** Feed URL; default issuer + "/v1/revocations". */
    url?: string;
    /** A confidential client (latch clients create ID --confidential). */
    clientId: string;
    clientSecret: string;
    /** How long without an entry or heartbeat before failClosed applies; default 45 s. */
    maxStalenessMs?: number;
    /**
     * Past maxStaleness: true rejects every token (503, a logout is never
     * missed); false (default) accepts tokens that pass every other check
     * and logs a warning (the API stays up during a Latch outage).
     */
    failClosed?: boolean;
}
export interface VerifierOptions {
    /** The exact iss of accepted tokens, e.g. https://auth.example.com. */
    issuer: string;
    /** This API's audience; a token's aud must contain it. */
    audience: string;
    /** Accepted algorithms; default ["EdDSA", "ES256", "RS256"]. Only asymmetric ones. */
    algorithms?: string[];
    /** Clock skew tolerated on exp and nbf, seconds; default 30 (bearer's DefaultLeeway); 0 for none. */
    leewaySeconds?: number;
    /** Turns the revocation feed on. */
    revocations?: FeedOptions;
    /** fetch for metadata and the feed (default globalThis.fetch). */
    fetch?: typeof globalThis.fetch;
    /** Where warnings go (default console.warn). */
    warn?: (msg: string) => void;
}
/** The claims of a verified token. */
export interface Claims extends JWTPayload {
    sub: string;
    sid: string;
    client_id?: string;
    scope?: string;
}
/** The token is not acceptable: answer 401 invalid_token. */
export declare class InvalidTokenError extends Error {
    constructor(message: string, options?: {
        cause?: unknown;
    });
}
/** The feed is staler than maxStaleness and the verifier fails closed: answer 503. */
export declare class FeedStaleError extends Error {
    constructor(ms: number);
}
export interface Verifier {
    /** Verifies a token; throws InvalidTokenError or FeedStaleError. */
    verify(token: string): Promise<Claims>;
    /**
     * Middleware for Express (req, res, next) or node:http (req, res → Promise<Claims | null>):
     * sets req.auth to the claims, or answers 401/503 itself.
     */
    middleware(): (req: IncomingMessage & {
        auth?: Claims;
    }, res: ServerResponse, next?: (err?: unknown) => void) => Promise<Claims | null>;
    /** Milliseconds since the feed was last heard from; 0 when it is off. */
    staleness(): number;
    /** Revoked sessions held. */
    revoked(): number;
    /** Stops the feed. */
    close(): void;
}
/** createVerifier discovers the issuer's keys and, if asked, loads and follows the revocation feed. */
export declare function createVerifier(opts: VerifierOptions): Promise<Verifier>;
