-- The admin API and claims (docs/design.md "Admin API and claims").
-- app_metadata: a JSON object per user, written only by admins; a client's
-- claims (space-separated names) pick the keys its access tokens carry.
ALTER TABLE users ADD COLUMN app_metadata TEXT NOT NULL DEFAULT '{}';
ALTER TABLE clients ADD COLUMN claims TEXT NOT NULL DEFAULT '';
-- actor: the admin client that made a change through the admin API.
ALTER TABLE audit_events ADD COLUMN actor TEXT NOT NULL DEFAULT '';
-- Keyset pagination of the user list, (created_at, id) ascending.
CREATE INDEX users_created_at_id ON users (created_at, id);
