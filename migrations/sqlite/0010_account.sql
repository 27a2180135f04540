-- The account lifecycle (docs/design.md "Account lifecycle (email)").

-- When the user last proved they receive mail at their address; NULL while
-- unverified. user_metadata is the user's own JSON object (PATCH /v1/me).
ALTER TABLE users ADD COLUMN email_verified_at INTEGER;
ALTER TABLE users ADD COLUMN user_metadata TEXT NOT NULL DEFAULT '{}';

-- Message tokens (verification, email change, password reset): only the
-- SHA-256 of a token is stored. A newer token of the same purpose replaces
-- the older; taking one deletes it.
CREATE TABLE message_tokens (
    hash        BLOB PRIMARY KEY,
    user_id     TEXT NOT NULL REFERENCES users(id) ON DELETE CASCADE,
    purpose     TEXT NOT NULL,
    email       TEXT NOT NULL,
    created_at  INTEGER NOT NULL,
    expires_at  INTEGER NOT NULL
);
CREATE INDEX message_tokens_user ON message_tokens (user_id, purpose);
CREATE INDEX message_tokens_expires_at ON message_tokens (expires_at);

-- The transactional outbox: a message is written in the transaction that
-- makes its token, and the sender delivers it afterwards. body is sealed
-- with a key derived from the refresh-token secret (not readable from the
-- database alone). A sender claims a row until claimed_until; a claim that
-- ran out (the sender died) is taken again, so nothing is lost.
CREATE TABLE outbox (
    id              TEXT PRIMARY KEY,
    user_id         TEXT NOT NULL REFERENCES users(id) ON DELETE CASCADE,
    body            BLOB NOT NULL,
    created_at      INTEGER NOT NULL,
    next_attempt_at INTEGER NOT NULL,
    attempts        INTEGER NOT NULL DEFAULT 0,
    claimed_until   INTEGER,
    last_error      TEXT NOT NULL DEFAULT ''
);
CREATE INDEX outbox_due ON outbox (next_attempt_at);
