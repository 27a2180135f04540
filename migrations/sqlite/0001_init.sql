-- Times are Unix microseconds (INTEGER), UTC.

CREATE TABLE users (
    id                  TEXT PRIMARY KEY,
    email               TEXT NOT NULL UNIQUE,
    password_hash       TEXT NOT NULL,
    created_at          INTEGER NOT NULL,
    password_changed_at INTEGER NOT NULL,
    disabled_at         INTEGER
);

CREATE TABLE clients (
    id             TEXT PRIMARY KEY,
    name           TEXT NOT NULL DEFAULT '',
    secret_hash    BLOB,              -- NULL for public clients
    audience       TEXT NOT NULL,
    access_ttl_us  INTEGER NOT NULL,
    grants         TEXT NOT NULL,     -- space-separated grant types
    scopes         TEXT NOT NULL DEFAULT '',
    created_at     INTEGER NOT NULL
);

-- One row per login. The refresh state is O(1) per session: the current
-- generation, its parent, and the two window anchors. No token, hash or
-- secret of a refresh token is stored (see docs/database-dump.md).
CREATE TABLE sessions (
    id              TEXT PRIMARY KEY,
    user_id         TEXT NOT NULL REFERENCES users(id) ON DELETE CASCADE,
    client_id       TEXT NOT NULL,
    scope           TEXT NOT NULL DEFAULT '',
    created_at      INTEGER NOT NULL,
    last_used_at    INTEGER NOT NULL,
    user_agent      TEXT NOT NULL DEFAULT '',
    ip              TEXT NOT NULL DEFAULT '',
    expires_at      INTEGER,          -- absolute expiry; NULL = none
    idle_expires_at INTEGER NOT NULL,
    gen             INTEGER NOT NULL,
    parent_gen      INTEGER NOT NULL DEFAULT 0,
    handed_at       INTEGER NOT NULL,
    rotated_at      INTEGER NOT NULL,
    revoked_at      INTEGER,
    revoke_reason   TEXT NOT NULL DEFAULT ''
);
CREATE INDEX sessions_user_id ON sessions (user_id);
CREATE INDEX sessions_revoked_at ON sessions (revoked_at) WHERE revoked_at IS NOT NULL;
CREATE INDEX sessions_idle_expires_at ON sessions (idle_expires_at);
CREATE INDEX sessions_expires_at ON sessions (expires_at) WHERE expires_at IS NOT NULL;

-- The revocation feed: one entry per revoked session, kept until no access
-- token of that session can still be valid.
CREATE TABLE revocations (
    seq         INTEGER PRIMARY KEY AUTOINCREMENT,
    session_id  TEXT NOT NULL,
    revoked_at  INTEGER NOT NULL,
    until       INTEGER NOT NULL
);
CREATE INDEX revocations_until ON revocations (until);

CREATE TABLE audit_events (
    id          INTEGER PRIMARY KEY AUTOINCREMENT,
    at          INTEGER NOT NULL,
    type        TEXT NOT NULL,
    user_id     TEXT NOT NULL DEFAULT '',
    session_id  TEXT NOT NULL DEFAULT '',
    client_id   TEXT NOT NULL DEFAULT '',
    ip          TEXT NOT NULL DEFAULT '',
    user_agent  TEXT NOT NULL DEFAULT '',
    detail      TEXT NOT NULL DEFAULT ''
);
CREATE INDEX audit_events_at ON audit_events (at);

CREATE TABLE signing_keys (
    kid          TEXT PRIMARY KEY,
    alg          TEXT NOT NULL,
    state        TEXT NOT NULL CHECK (state IN ('next', 'current', 'retired')),
    private_key  BLOB NOT NULL,       -- PKCS #8, sealed with the key-encryption key
    public_jwk   TEXT NOT NULL,
    created_at   INTEGER NOT NULL,
    activated_at INTEGER,
    retired_at   INTEGER
);
-- At most one current and one next key, enforced by the database.
CREATE UNIQUE INDEX signing_keys_one_current ON signing_keys (state) WHERE state IN ('current', 'next');

-- Server secrets (the refresh-token MAC key), sealed with the key-encryption key.
CREATE TABLE secrets (
    name       TEXT PRIMARY KEY,
    value      BLOB NOT NULL,
    created_at INTEGER NOT NULL
);
