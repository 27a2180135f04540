-- The same schema as sqlite/0001_init.sql, in PostgreSQL's own types:
-- timestamptz (microsecond precision, as the SQLite store keeps) and bytea.

CREATE TABLE users (
    id                  text PRIMARY KEY,
    email               text NOT NULL UNIQUE,
    password_hash       text NOT NULL,
    created_at          timestamptz NOT NULL,
    password_changed_at timestamptz NOT NULL,
    disabled_at         timestamptz
);

CREATE TABLE clients (
    id             text PRIMARY KEY,
    name           text NOT NULL DEFAULT '',
    secret_hash    bytea,             -- NULL for public clients
    audience       text NOT NULL,
    access_ttl_us  bigint NOT NULL,
    grants         text NOT NULL,     -- space-separated grant types
    scopes         text NOT NULL DEFAULT '',
    created_at     timestamptz NOT NULL
);

-- One row per login. The refresh state is O(1) per session: the current
-- generation, its parent, and the two window anchors. No token, hash or
-- secret of a refresh token is stored (see docs/database-dump.md).
CREATE TABLE sessions (
    id              text PRIMARY KEY,
    user_id         text NOT NULL REFERENCES users(id) ON DELETE CASCADE,
    client_id       text NOT NULL,
    scope           text NOT NULL DEFAULT '',
    created_at      timestamptz NOT NULL,
    last_used_at    timestamptz NOT NULL,
    user_agent      text NOT NULL DEFAULT '',
    ip              text NOT NULL DEFAULT '',
    expires_at      timestamptz,      -- absolute expiry; NULL = none
    idle_expires_at timestamptz NOT NULL,
    gen             bigint NOT NULL,
    parent_gen      bigint NOT NULL DEFAULT 0,
    handed_at       timestamptz NOT NULL,
    rotated_at      timestamptz NOT NULL,
    revoked_at      timestamptz,
    revoke_reason   text NOT NULL DEFAULT ''
);
-- A refresh updates only columns no index covers, and fillfactor leaves room
-- on the page, so refreshes are HOT updates: no index write, no index bloat.
-- That is why idle_expires_at has no index here (SQLite has one): the
-- sweeper, every few minutes, scans for idle sessions instead.
ALTER TABLE sessions SET (fillfactor = 80);
CREATE INDEX sessions_user_id ON sessions (user_id);
CREATE INDEX sessions_revoked_at ON sessions (revoked_at) WHERE revoked_at IS NOT NULL;
CREATE INDEX sessions_expires_at ON sessions (expires_at) WHERE expires_at IS NOT NULL;

-- The revocation feed: one entry per revoked session, kept until no access
-- token of that session can still be valid.
CREATE TABLE revocations (
    seq         bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    session_id  text NOT NULL,
    revoked_at  timestamptz NOT NULL,
    until       timestamptz NOT NULL
);
CREATE INDEX revocations_until ON revocations (until);

CREATE TABLE audit_events (
    id          bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    at          timestamptz NOT NULL,
    type        text NOT NULL,
    user_id     text NOT NULL DEFAULT '',
    session_id  text NOT NULL DEFAULT '',
    client_id   text NOT NULL DEFAULT '',
    ip          text NOT NULL DEFAULT '',
    user_agent  text NOT NULL DEFAULT '',
    detail      text NOT NULL DEFAULT ''
);
CREATE INDEX audit_events_at ON audit_events (at);

CREATE TABLE signing_keys (
    kid          text PRIMARY KEY,
    alg          text NOT NULL,
    state        text NOT NULL CHECK (state IN ('next', 'current', 'retired')),
    private_key  bytea NOT NULL,      -- PKCS #8, sealed with the key-encryption key
    public_jwk   text NOT NULL,
    created_at   timestamptz NOT NULL,
    activated_at timestamptz,
    retired_at   timestamptz
);
-- At most one current and one next key, enforced by the database.
CREATE UNIQUE INDEX signing_keys_one_current ON signing_keys (state) WHERE state IN ('current', 'next');

-- Server secrets (the refresh-token MAC key), sealed with the key-encryption key.
CREATE TABLE secrets (
    name       text PRIMARY KEY,
    value      bytea NOT NULL,
    created_at timestamptz NOT NULL
);
