-- Web clients (docs/design.md "Browser clients: cookie mode"): the refresh
-- token travels only in an HttpOnly cookie, and every cookie-authenticated
-- request must come from one of the client's origins (space-separated
-- exact origins, as the audience column keeps its list).
ALTER TABLE clients ADD COLUMN web INTEGER NOT NULL DEFAULT 0;
ALTER TABLE clients ADD COLUMN origins TEXT NOT NULL DEFAULT '';
