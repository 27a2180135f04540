-- The revocation feed's cursor is (xid, seq): the id of the transaction that
-- wrote the entry, then the entry. seq alone is not safe: identity values
-- become visible in commit order, not in value order, so a reader that
-- moved past seq 8 would never see a seq 7 whose transaction committed
-- later. A reader returns only entries whose xid is below its snapshot's
-- xmin (every transaction below it has ended), so nothing can commit behind
-- its cursor (docs/design.md "Revocation feed").
-- Existing rows get this migration's transaction id.
ALTER TABLE revocations ADD COLUMN xid xid8 NOT NULL DEFAULT pg_current_xact_id();
CREATE INDEX revocations_cursor ON revocations (xid, seq);
