import type { Storage } from './storage.js';
/** Where a DPoP key pair is kept between page loads or app starts. */
export interface KeyStore {
    /** Whether keys made for this store may be exported (a string store needs it). */
    readonly extractable: boolean;
    get(name: string): Promise<CryptoKeyPair | null>;
    set(name: string, pair: CryptoKeyPair): Promise<void>;
    delete(name: string): Promise<void>;
}
/** memoryKeyStore keeps keys in this process only. */
export declare function memoryKeyStore(): KeyStore;
/**
 * indexedDBKeyStore keeps non-extractable CryptoKey objects in IndexedDB
 * (the browser stores them as they are; the key material never becomes
 * readable to scripts). The default in a browser.
 */
export declare function indexedDBKeyStore(dbName?: string): KeyStore;
/**
 * storageKeyStore keeps keys as JWK in a Storage (a platform secure store
 * on React Native, a file-backed store in Node). Keys made for it are
 * extractable: a string store can hold nothing else.
 */
export declare function storageKeyStore(storage: Storage): KeyStore;
export declare function b64url(b: Uint8Array): string;
/** A key pair ready to sign proofs: its JWS header and RFC 7638 thumbprint. */
export interface DPoPKey {
    pair: CryptoKeyPair;
    header: string;
    jkt: string;
}
/** generateKeyPair makes an ES256 key pair for store. */
export declare function generateKeyPair(store: KeyStore): Promise<CryptoKeyPair>;
/** prepare reads the public JWK (public keys are always exportable) and the thumbprint. */
export declare function prepare(pair: CryptoKeyPair): Promise<DPoPKey>;
/**
 * proof signs a DPoP proof (RFC 9449 section 4.2) for a request with
 * method to url (without its query and fragment), issued at iatMs (server
 * time), bound to accessToken by ath when one is given, with nonce when the
 * server asked for one.
 */
export declare function proof(k: DPoPKey, method: string, url: string, iatMs: number, accessToken?: string, nonce?: string): Promise<string>;
/** The error of a DPoP challenge in a 401's WWW-Authenticate, if any (RFC 9449 section 7.1). */
export declare function dpopChallenge(h: string | null): string | null;
