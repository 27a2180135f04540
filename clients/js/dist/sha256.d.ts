/** sha256 returns the 32-byte digest of data. */
export declare function sha256(data: Uint8Array): Uint8Array;
