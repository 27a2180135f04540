// Where a session is kept between page loads or app starts, in token mode
// (cookie mode keeps nothing: the refresh token is in an HttpOnly cookie).
// A small async interface, so that a platform secure store fits.
/** memoryStorage keeps sessions in this process only (the default). */
export function memoryStorage() {
    const m = new Map();
    return {
        getItem: (k) => m.get(k) ?? null,
        setItem: (k, v) => void m.set(k, v),
        removeItem: (k) => void m.delete(k),
    };
}
/**
 * localStorageAdapter keeps the session in window.localStorage. Any script
 * running in the page can read it there: prefer cookie mode (a web client)
 * in browsers; use this only where cookie mode is impossible.
 */
export function localStorageAdapter(ls = globalThis.localStorage) {
    return {
        getItem: (k) => ls.getItem(k),
        setItem: (k, v) => ls.setItem(k, v),
        removeItem: (k) => ls.removeItem(k),
    };
}
/**
 * secureStoreAdapter keeps the session in a platform secure store (the iOS
 * keychain, Android's keystore), e.g.
 * `secureStoreAdapter(await import('expo-secure-store'))`. Keys are made of
 * characters such stores accept.
 */
export function secureStoreAdapter(store) {
    const safe = (k) => k.replace(/[^A-Za-z0-9._-]/g, '_');
    return {
        getItem: (k) => store.getItemAsync(safe(k)),
        setItem: (k, v) => store.setItemAsync(safe(k), v),
        removeItem: (k) => store.deleteItemAsync(safe(k)),
    };
}
