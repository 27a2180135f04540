-- The account lifecycle (docs/design.md "Account lifecycle (email)"); the
-- same schema as sqlite/0010_account.sql.

ALTER TABLE users ADD COLUMN email_verified_at timestamptz;
ALTER TABLE users ADD COLUMN user_metadata text NOT NULL DEFAULT '{}';

-- Message tokens: only the SHA-256 of a token is stored. A newer token of
-- the same purpose replaces the older; taking one deletes it.
CREATE TABLE message_tokens (
    hash        bytea PRIMARY KEY,
    user_id     text NOT NULL REFERENCES users(id) ON DELETE CASCADE,
    purpose     text NOT NULL,
    email       text NOT NULL,
    created_at  timestamptz NOT NULL,
    expires_at  timestamptz NOT NULL
);
CREATE INDEX message_tokens_user ON message_tokens (user_id, purpose);
CREATE INDEX message_tokens_expires_at ON message_tokens (expires_at);

-- The transactional outbox (see sqlite/0010_account.sql). Senders on many
-- nodes claim rows with FOR UPDATE SKIP LOCKED and a lease.
CREATE TABLE outbox (
    id              text PRIMARY KEY,
    user_id         text NOT NULL REFERENCES users(id) ON DELETE CASCADE,
    body            bytea NOT NULL,
    created_at      timestamptz NOT NULL,
    next_attempt_at timestamptz NOT NULL,
    attempts        integer NOT NULL DEFAULT 0,
    claimed_until   timestamptz,
    last_error      text NOT NULL DEFAULT ''
);
CREATE INDEX outbox_due ON outbox (next_attempt_at);
