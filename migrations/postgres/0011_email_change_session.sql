-- The session that asked for an email change: it stays when the change
-- happens, and the user's other sessions end (docs/account-lifecycle.md).
ALTER TABLE message_tokens ADD COLUMN session_id text NOT NULL DEFAULT '';
