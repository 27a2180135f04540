// Where a session is kept between page loads or app starts, in token mode
// (cookie mode keeps nothing: the refresh token is in an HttpOnly cookie).
// A small async interface, so that a platform secure store fits.

/** Storage keeps one string per key. Every method may be async. */
export interface Storage {
  getItem(key: string): Promise<string | null> | string | null
  setItem(key: string, value: string): Promise<void> | void
  removeItem(key: string): Promise<void> | void
}

/** memoryStorage keeps sessions in this process only (the default). */
export function memoryStorage(): Storage {
  const m = new Map<string, string>()
  return {
    getItem: (k) => m.get(k) ?? null,
    setItem: (k, v) => void m.set(k, v),
    removeItem: (k) => void m.delete(k),
  }
}

/**
 * localStorageAdapter keeps the session in window.localStorage. Any script
 * running in the page can read it there: prefer cookie mode (a web client)
 * in browsers; use this only where cookie mode is impossible.
 */
export function localStorageAdapter(ls: globalThis.Storage = globalThis.localStorage): Storage {
  return {
    getItem: (k) => ls.getItem(k),
    setItem: (k, v) => ls.setItem(k, v),
    removeItem: (k) => ls.removeItem(k),
  }
}

/** The calls of a secure store such as expo-secure-store. */
export interface SecureStoreLike {
  getItemAsync(key: string): Promise<string | null>
  setItemAsync(key: string, value: string): Promise<void>
  deleteItemAsync(key: string): Promise<void>
}

/**
 * secureStoreAdapter keeps the session in a platform secure store (the iOS
 * keychain, Android's keystore), e.g.
 * `secureStoreAdapter(await import('expo-secure-store'))`. Keys are made of
 * characters such stores accept.
 */
export function secureStoreAdapter(store: SecureStoreLike): Storage {
  const safe = (k: string) => k.replace(/[^A-Za-z0-9._-]/g, '_')
  return {
    getItem: (k) => store.getItemAsync(safe(k)),
    setItem: (k, v) => store.setItemAsync(safe(k), v),
    removeItem: (k) => store.deleteItemAsync(safe(k)),
  }
}
