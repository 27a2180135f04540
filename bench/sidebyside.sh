#!/usr/bin/env bash
# Refresh through Latch against the bare rotate transaction under pgbench, on
# one PostgreSQL, interleaved: latch, pgbench, pgbench1, latch, … so that
# the machine's drift lands on every side. pgbench runs rotate.sql, the
# locked transaction of two round trips (the target's reference), and
# pgbench1 runs rotate1.sql, the one statement Latch sends for the common
# case. For each run it prints throughput,
# p50/p99 latency and CPU per operation read from the kernel's accounting
# (/proc/PID/stat utime+stime of the Latch process and of every postgres
# process), then the ratio Latch ÷ pgbench of each adjacent pair and their
# median. docs/performance.md "Side by side with pgbench" explains the method.
#
#   bench/sidebyside.sh                      # 3 rounds of 15 s at c=16
#   ROUNDS=5 DURATION=20s C=16 bench/sidebyside.sh
#   CHECK=1 bench/sidebyside.sh              # exit 1 below ratio 0.4 or p99 ≥ 10 ms
#
# Needs: go, pgbench, psql, curl and python3 on PATH, a PostgreSQL that PGURL reaches as a
# user allowed to create databases. It creates (and drops first) the database
# $DB there, runs a throwaway `latch serve` on 127.0.0.1 and stops it at exit.
set -euo pipefail

PGURL=${PGURL:-postgres://postgres@127.0.0.1:5432}
DB=${DB:-latch_sidebyside}
C=${C:-16}
DURATION=${DURATION:-15s}
ROUNDS=${ROUNDS:-3}
ADDR=${ADDR:-127.0.0.1:18399}
CHECK=${CHECK:-0}
MIN_RATIO=0.4
MAX_P99_MS=10

here=$(cd "$(dirname "$0")" && pwd)
repo=$(cd "$here/.." && pwd)
work=$(mktemp -d)
server_pid=
cleanup() {
	if [ -n "$server_pid" ]; then kill "$server_pid" 2>/dev/null || true; wait "$server_pid" 2>/dev/null || true; fi
	rm -rf "$work"
}
trap cleanup EXIT

case $C in *[!0-9]* | "" | 0) echo "C must be a positive whole number" >&2; exit 2 ;; esac
if [ "$C" -gt 256 ]; then
	# rotate.sql's clients rotate rows bench-0 … bench-255 of setup.sql:
	# a client past them would update nothing and look fast.
	echo "C must be at most 256 (the rows of bench/setup.sql)" >&2
	exit 2
fi
secs=${DURATION%s}
case $secs in *[!0-9]* | "" | [0-4]) echo "DURATION must be whole seconds, at least 5s, such as 15s" >&2; exit 2 ;; esac

echo "building latch and latch-bench" >&2
(cd "$repo" && go build -o "$work/latch" ./cmd/latch && go build -o "$work/latch-bench" ./cmd/latch-bench)

# PostgreSQL's CPU is read from /proc: it must run on this machine.
pgrep -o -x postgres >/dev/null || { echo "no postgres process on this machine: the CPU of PostgreSQL is read from /proc" >&2; exit 2; }
psql -q -X "$PGURL/postgres?sslmode=disable" -c "DROP DATABASE IF EXISTS $DB" -c "CREATE DATABASE $DB" >/dev/null
dburl="$PGURL/$DB?sslmode=disable"
head -c 32 /dev/urandom | base64 >"$work/kek"
"$work/latch" serve --addr "$ADDR" --issuer "http://$ADDR" --database "$dburl" --rate-limit=false \
	--key-encryption-key-file "$work/kek" --log-level warn 2>"$work/server.log" &
server_pid=$!
for _ in $(seq 100); do
	curl -fsS "http://$ADDR/healthz" >/dev/null 2>&1 && break
	sleep 0.1
done
curl -fsS "http://$ADDR/healthz" >/dev/null || { cat "$work/server.log" >&2; exit 1; }
psql -q -X "$dburl" -f "$here/setup.sql" >/dev/null 2>&1

# proc_ticks PID...: CPU clock ticks (user + system) of these processes.
proc_ticks() {
	local t=0 p v
	for p in "$@"; do
		v=$(awk '{print $14 + $15}' "/proc/$p/stat" 2>/dev/null || echo 0)
		t=$((t + v))
	done
	echo "$t"
}
# pg_ticks: CPU ticks of PostgreSQL: every server process alive now, plus
# the postmaster's own and its reaped children's (cutime + cstime), so a
# connection that ends inside a window still counts.
pg_ticks() {
	local pm
	pm=$(pgrep -o -x postgres)
	echo $(($(proc_ticks $(pgrep -x postgres)) + $(awk '{print $16 + $17}' "/proc/$pm/stat")))
}
rotated() { curl -fsS "http://$ADDR/metrics" | awk '/^latch_refreshes_total\{outcome="rotated"\}/ {print $2}'; }
hz=$(getconf CLK_TCK)

# One latch-bench run; the CPU window is the measured part only: the
# counters are read when the warm-up ends and when the run does.
run_latch() {
	"$work/latch-bench" refresh --target "http://$ADDR" -c "$C" --duration "$DURATION" --warmup 3s \
		--run-id sidebyside --json >"$work/latch.json" &
	local bench=$!
	# Sign-up (first round) and log-in take a moment: wait for the first
	# rotations, then for the 3 s warm-up.
	local r0
	for _ in $(seq 300); do
		r0=$(rotated)
		[ "${r0%.*}" -gt 0 ] 2>/dev/null && [ "$(rotated)" != "$r0" ] && break
		sleep 0.1
	done
	sleep 3
	local r1 s1 p1 t1 r2 s2 p2 t2
	r1=$(rotated); s1=$(proc_ticks "$server_pid"); p1=$(pg_ticks); t1=$(date +%s.%N)
	sleep $((secs - 1))
	r2=$(rotated); s2=$(proc_ticks "$server_pid"); p2=$(pg_ticks); t2=$(date +%s.%N)
	if ! wait "$bench"; then
		echo "latch-bench failed; its errors by kind, then the server's log:" >&2
		python3 -c 'import json, sys; print(json.load(open(sys.argv[1]))["ops"]["refresh"]["errors"])' "$work/latch.json" >&2 || true
		tail -20 "$work/server.log" >&2
		exit 1
	fi
	python3 - "$work/latch.json" "$r1" "$r2" "$s1" "$s2" "$p1" "$p2" "$t1" "$t2" "$hz" <<'EOF'
import json, sys
d = json.load(open(sys.argv[1]))["ops"]["refresh"]
r1, r2, s1, s2, p1, p2, t1, t2, hz = map(float, sys.argv[2:])
n = r2 - r1
print(f"latch   {d['rps']:8.0f}/s  p50 {d['p50_ms']:6.2f} ms  p99 {d['p99_ms']:6.2f} ms  errors {d['error_count']}  "
      f"server CPU {(s2 - s1) / hz / n * 1e3:.3f} ms/refresh  postgres CPU {(p2 - p1) / hz / n * 1e3:.3f} ms/refresh")
print(f"RESULT latch {d['rps']} {d['p99_ms']}")
EOF
}

# run_pgbench SCRIPT NAME: one pgbench run of bench/SCRIPT, reported as NAME.
run_pgbench() {
	local script=$1 name=$2
	(cd "$work" && rm -f pgbench_log.* && exec pgbench -n -M prepared -c "$C" -j 2 -T "$secs" -f "$here/$script" \
		--log --log-prefix=pgbench_log "$dburl" >"$work/pgbench.txt" 2>&1) &
	local bench=$! p1 p2 t1 t2
	# The window starts once pgbench's connections are up (their server
	# processes exist only while it runs) and ends before they close.
	sleep 1.5
	p1=$(pg_ticks); t1=$(date +%s.%N)
	sleep $((secs - 3))
	p2=$(pg_ticks); t2=$(date +%s.%N)
	wait "$bench"
	python3 - "$work" "$name" "$p1" "$p2" "$t1" "$t2" "$hz" <<'EOF'
import glob, re, sys
work, name = sys.argv[1], sys.argv[2]
p1, p2, t1, t2, hz = map(float, sys.argv[3:])
out = open(work + "/pgbench.txt").read()
tps = float(re.search(r"tps = ([0-9.]+)", out).group(1))
# pgbench_log lines: client, transaction, latency µs, script, end time s, µs
# (pgbench 15 "Per-Transaction Logging"). The latencies are those of the
# window, as latch-bench's leave out its warm-up.
txs = [l.split() for f in glob.glob(work + "/pgbench_log.*") for l in open(f)]
inside = [t for t in txs if t1 <= int(t[4]) + int(t[5]) / 1e6 < t2]
lat = sorted(int(t[2]) for t in inside)
window = len(inside)
pct = lambda p: lat[int(p * (len(lat) - 1))] / 1000
print(f"{name:8s}{tps:8.0f}/s  p50 {pct(0.5):6.2f} ms  p99 {pct(0.99):6.2f} ms  "
      f"postgres CPU {(p2 - p1) / hz / window * 1e3:.3f} ms/transaction")
print(f"RESULT {name} {tps} {pct(0.99)}")
EOF
}

echo "c=$C, $ROUNDS rounds of $DURATION each side, PostgreSQL $(psql -X -At "$dburl" -c 'show server_version'), $(nproc) cores"
results=$work/results
: >"$results"
# settle: each run starts on a settled database, whichever side ran before
# it: the dead row versions both sides leave (a refresh and a pgbench
# transaction each update one row) are vacuumed and the dirty pages
# written by a checkpoint now, not by autovacuum and the checkpointer
# inside the next run's window.
settle() {
	psql -q -X "$dburl" -c "VACUUM sessions" -c "VACUUM bench_sessions" -c "CHECKPOINT" >/dev/null
	sleep 1
}
for round in $(seq "$ROUNDS"); do
	echo "round $round"
	settle
	run_latch | tee -a "$results" | grep -v '^RESULT'
	settle
	run_pgbench rotate.sql pgbench | tee -a "$results" | grep -v '^RESULT'
	settle
	run_pgbench rotate1.sql pgbench1 | tee -a "$results" | grep -v '^RESULT'
done
python3 - "$results" "$MIN_RATIO" "$MAX_P99_MS" "$CHECK" <<'EOF'
import statistics, sys
rows = [l.split()[1:] for l in open(sys.argv[1]) if l.startswith("RESULT")]
latch = [(float(a), float(b)) for k, a, b in rows if k == "latch"]
pg = [(float(a), float(b)) for k, a, b in rows if k == "pgbench"]
pg1 = [(float(a), float(b)) for k, a, b in rows if k == "pgbench1"]
ratios = [l[0] / p[0] for l, p in zip(latch, pg)]
ratios1 = [l[0] / p[0] for l, p in zip(latch, pg1)]
ratio = statistics.median(ratios)
p99 = statistics.median(l[1] for l in latch)
print("ratio latch/pgbench (rotate.sql, the locked transaction) per round: " + ", ".join(f"{r:.2f}" for r in ratios))
print("ratio latch/pgbench1 (rotate1.sql, the one statement Latch sends) per round: " + ", ".join(f"{r:.2f}" for r in ratios1))
print(f"median ratio {ratio:.2f} against rotate.sql (target >= {sys.argv[2]}), {statistics.median(ratios1):.2f} against rotate1.sql; "
      f"median latch p99 {p99:.2f} ms (target < {sys.argv[3]} ms)")
ok = ratio >= float(sys.argv[2]) and p99 < float(sys.argv[3])
print("targets met" if ok else "targets NOT met")
sys.exit(0 if ok or sys.argv[4] != "1" else 1)
EOF
