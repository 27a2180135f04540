-- The bare rotate transaction of one refresh, as Latch's PostgreSQL store
-- sends it (internal/store/postgres: LockSession, UpdateSession): BEGIN and
-- the locked read in one round trip, the update and COMMIT in the second.
-- Each pgbench client rotates its own row, as each latch-bench worker
-- refreshes its own session. Run with -M prepared (pipelines need it).
\startpipeline
BEGIN;
SELECT id, user_id, client_id, scope, created_at, last_used_at, user_agent, ip, expires_at, idle_expires_at, gen, parent_gen, handed_at, rotated_at, revoked_at, revoke_reason, rotated_ip, rotated_user_agent, dpop_jkt FROM bench_sessions WHERE id = 'bench-' || :client_id FOR UPDATE;
\endpipeline
\startpipeline
UPDATE bench_sessions SET last_used_at = now(), user_agent = 'latch-bench', ip = '127.0.0.1', idle_expires_at = now() + interval '30 days', gen = gen + 1, parent_gen = gen, handed_at = now(), rotated_at = now(), rotated_ip = '127.0.0.1', rotated_user_agent = 'latch-bench' WHERE id = 'bench-' || :client_id;
COMMIT;
\endpipeline
