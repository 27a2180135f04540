/** Options of createClient. */
export interface ClientOptions {
    /** The issuer URL of the Latch server, e.g. https://auth.example.com. */
    issuer: string;
    /** The client id registered with Latch (default "app"). */
    clientId?: string;
    /** fetch to use (default globalThis.fetch). */
    fetch?: typeof globalThis.fetch;
}
/** One signed-in session, as handed to onChange listeners. */
export interface Session {
    sessionId: string;
    /** Server time (ms since the epoch) when the access token expires. */
    expiresAt: number;
}
/** A refusal from the Latch server: status, machine code and message. */
export declare class LatchError extends Error {
    readonly status: number;
    readonly code: string;
    constructor(status: number, code: string, message: string);
}
export interface LatchClient {
    signIn(credentials: {
        email: string;
        password: string;
    }): Promise<Session>;
    getAccessToken(): Promise<string | null>;
}
export declare function createClient(opts: ClientOptions): LatchClient;
