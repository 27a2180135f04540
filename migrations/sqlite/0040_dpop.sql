-- DPoP (RFC 9449, docs/design.md "Sender-constrained tokens: DPoP"): the
-- RFC 7638 thumbprint of the key a session is bound to ('' for none), read
-- and kept by the refresh that already locks the row; and whether a client
-- must send DPoP proofs.
ALTER TABLE sessions ADD COLUMN dpop_jkt TEXT NOT NULL DEFAULT '';
ALTER TABLE clients ADD COLUMN dpop_required INTEGER NOT NULL DEFAULT 0;
