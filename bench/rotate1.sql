-- The one-statement rotation that Latch sends for the current token of a
-- live session (internal/store/postgres: RotateSession; session.Rotation):
-- the conditions and the write in one UPDATE, its own transaction, one
-- round trip. rotate.sql is the locked transaction that every other row of
-- the rotation table takes (and that every refresh took before). The
-- presented generation is the row's own (gen = gen): pgbench does not
-- follow it, and the condition costs the same either way.
UPDATE bench_sessions SET parent_gen = gen, gen = gen + 1, rotated_at = now(), handed_at = GREATEST(handed_at, now()), last_used_at = now(),
  idle_expires_at = now() + interval '30 days', ip = '127.0.0.1', rotated_ip = '127.0.0.1', user_agent = 'latch-bench', rotated_user_agent = 'latch-bench'
WHERE id = (SELECT id FROM bench_sessions WHERE id = 'bench-' || :client_id FOR NO KEY UPDATE SKIP LOCKED) AND gen = gen AND client_id = 'app' AND dpop_jkt IN ('', '')
  AND revoked_at IS NULL AND (expires_at IS NULL OR expires_at > now()) AND idle_expires_at > now()
RETURNING user_id, scope, expires_at, dpop_jkt;
