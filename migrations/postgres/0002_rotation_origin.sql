-- The request that made a session's parent token the parent (docs/design.md,
-- "Sessions and rotation"): a grace answer to another IP or user agent is
-- audited as suspicious. Existing sessions take their last use, which for
-- most is that rotation, so that upgrading raises no false alarms. No index
-- covers the new columns, so refreshes stay HOT updates.
ALTER TABLE sessions ADD COLUMN rotated_ip text NOT NULL DEFAULT '';
ALTER TABLE sessions ADD COLUMN rotated_user_agent text NOT NULL DEFAULT '';
UPDATE sessions SET rotated_ip = ip, rotated_user_agent = user_agent;
