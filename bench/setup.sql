-- A copy of the sessions table's shape (columns, indexes, fillfactor) with
-- one row per pgbench client, for rotate.sql. It lives beside Latch's own
-- tables in the benchmark database and holds no real session.
DROP TABLE IF EXISTS bench_sessions;
CREATE TABLE bench_sessions (LIKE sessions INCLUDING DEFAULTS INCLUDING INDEXES) WITH (fillfactor = 80);
INSERT INTO bench_sessions (id, user_id, client_id, created_at, last_used_at, idle_expires_at, gen, handed_at, rotated_at)
  SELECT 'bench-' || n, 'bench-user-' || n, 'app', now(), now(), now() + interval '30 days', 1, now(), now()
  FROM generate_series(0, 255) AS n;
VACUUM ANALYZE bench_sessions;
