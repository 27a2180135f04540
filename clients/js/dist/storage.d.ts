/** Storage keeps one string per key. Every method may be async. */
export interface Storage {
    getItem(key: string): Promise<string | null> | string | null;
    setItem(key: string, value: string): Promise<void> | void;
    removeItem(key: string): Promise<void> | void;
}
/** memoryStorage keeps sessions in this process only (the default). */
export declare function memoryStorage(): Storage;
/**
 * localStorageAdapter keeps the session in window.localStorage. Any script
 * running in the page can read it there: prefer cookie mode (a web client)
 * in browsers; use this only where cookie mode is impossible.
 */
export declare function localStorageAdapter(ls?: globalThis.Storage): Storage;
/** The calls of a secure store such as expo-secure-store. */
export interface SecureStoreLike {
    getItemAsync(key: string): Promise<string | null>;
    setItemAsync(key: string, value: string): Promise<void>;
    deleteItemAsync(key: string): Promise<void>;
}
/**
 * secureStoreAdapter keeps the session in a platform secure store (the iOS
 * keychain, Android's keystore), e.g.
 * `secureStoreAdapter(await import('expo-secure-store'))`. Keys are made of
 * characters such stores accept.
 */
export declare function secureStoreAdapter(store: SecureStoreLike): Storage;
