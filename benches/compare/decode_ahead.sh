#!/usr/bin/env bash
# Tessera with and without decoding ahead (`cache.decoded_ahead`), same
# binary, same requests, on samples/generated/large.jp2. Loopback only; the
# servers started here are stopped on exit.
#
#   benches/compare/decode_ahead.sh
#
# Cases, each on a freshly started server (empty caches), alternating the
# setting so drift in background load does not favour one:
#   sweep     `tessera loadtest --mode sweep` (every tile of every level,
#             coarse to fine), TILES sizes, 1 and 4 viewers
#   session   `tessera loadtest --mode session --seed N` from cold for
#             SESSION_DURATION s, 1 viewer: zoom-ins and pans of a viewer
#             (does decoding ahead delay what a viewer asks?)
# Prints a Markdown table (median of RUNS runs) with req/s, p50/p99, the
# decodes counted by /metrics (total and ahead) and the server's CPU time.
#
# Environment: RUNS (3), AHEAD (the setting compared with 0, 2), TILES
# ("256 512"), SESSION_DURATION (15), PORT (18186), TESSERA_BIN
# (target/release/tessera, built if missing).
set -euo pipefail
# shellcheck source=lib.sh source-path=SCRIPTDIR
. "$(dirname "$0")/lib.sh"
# Cold runs on every start: no disk tile tier (archival.sh measures it).
export TESSERA_CACHE__DISK_MAX_BYTES=0

REPO=$(cd "$(dirname "$0")/../.." && pwd)
cd "$REPO"
RUNS=${RUNS:-3}
AHEAD=${AHEAD:-2}
TILES=${TILES:-256 512}
SESSION_DURATION=${SESSION_DURATION:-15}
PORT=${PORT:-18186}
BIN=${TESSERA_BIN:-target/release/tessera}
ensure_tessera -q "$BIN"
[ -f samples/generated/large.jp2 ] || { echo "no samples/generated/large.jp2: run tessera serve once" >&2; exit 1; }
require_free_port "$PORT" "port $PORT is in use; set PORT"

TMP=$(mktemp -d /tmp/tessera-ahead.XXXXXX)
cp "$BIN" "$TMP/tessera"
TPID=
trap 'stop_tessera; rm -rf "$TMP"' EXIT
trap 'exit 130' INT TERM

one() { # AHEAD MODE TILE VIEWERS RUN
    TESSERA_CACHE__DECODED_AHEAD=$1 "$TMP/tessera" serve --listen "127.0.0.1:$PORT" \
        --images samples/generated >>"$TMP/serve.log" 2>&1 &
    TPID=$!
    poll_http "http://127.0.0.1:$PORT/iiif/2/large.jp2/info.json" 300 0.2 ||
        { echo "server did not start" >&2; tail "$TMP/serve.log" >&2; exit 1; }
    local mode=(--mode sweep --duration 150)
    [ "$2" = session ] && mode=(--mode session --seed "$5" --warmup 0 --duration "$SESSION_DURATION")
    "$TMP/tessera" loadtest "http://127.0.0.1:$PORT/iiif/2/large.jp2/info.json" "${mode[@]}" -c "$4" \
        --tile-size "$3" --json "$TMP/r.json" --quiet >>"$TMP/loadtest.log" 2>&1
    local cpu metrics
    cpu=$(awk '{print ($14 + $15) / 100}' "/proc/$TPID/stat")
    metrics=$(curl -s "http://127.0.0.1:$PORT/metrics")
    python3 - "$TMP/r.json" "$1" "$2" "$3" "$4" "$5" "$cpu" <<PY >>"$TMP/results.jsonl"
import json, re, sys
r = json.load(open(sys.argv[1]))
m = """$metrics"""
def metric(name):
    x = re.search(rf"^{name} (\S+)$", m, re.M)
    return float(x.group(1)) if x else 0.0
ahead, mode, tile, viewers, run, cpu = sys.argv[2:8]
print(json.dumps(dict(ahead=int(ahead), mode=mode, tile=int(tile), viewers=int(viewers), run=int(run),
    rps=r["requests_per_s"], requests=r["requests"], p50=r["latency_ms"]["p50"], p99=r["latency_ms"]["p99"],
    errors=r["errors"], decodes=metric("tessera_decodes_total"), ahead_decodes=metric("tessera_decodes_ahead_total"),
    cpu_s=float(cpu))))
PY
    stop_tessera
}

for run in $(seq 1 "$RUNS"); do
    if [ $((run % 2)) = 1 ]; then order="0 $AHEAD"; else order="$AHEAD 0"; fi
    for tile in $TILES; do
        for c in 1 4; do
            for a in $order; do one "$a" sweep "$tile" "$c" "$run"; done
        done
    done
    for a in $order; do one "$a" session 256 1 "$run"; done
    echo "== run $run done" >&2
done

python3 - "$TMP/results.jsonl" "$RUNS" "$AHEAD" "$(nproc)" <<'PY'
import collections, json, statistics, sys
res, runs, ahead, ncpu = sys.argv[1:5]
rows = [json.loads(l) for l in open(res)]
by = collections.defaultdict(list)
for r in rows:
    by[(r["mode"], r["tile"], r["viewers"], r["ahead"])].append(r)
med = lambda rs, k: statistics.median(r[k] for r in rs)
print(f"Median of {runs} runs on {ncpu} CPUs, `tessera loadtest` on large.jp2; decoded_ahead 0 against {ahead}.")
print()
print("| case | tile | viewers | req/s, ahead 0 | req/s, ahead " + ahead + " | gain | p50 / p99 ms, ahead 0 | p50 / p99 ms, ahead "
      + ahead + " | decodes (of them ahead) | server CPU s, 0 / " + ahead + " | errors |")
print("| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |")
for key in sorted({k[:3] for k in by}, key=lambda k: (k[0] != "sweep", k[1], k[2])):
    off, on = by.get(key + (0,), []), by.get(key + (int(ahead),), [])
    if not off or not on:
        continue
    mode, tile, viewers = key
    runs_of = lambda rs: ", ".join(f"{r['rps']:.0f}" for r in rs)
    print(f"| {mode} | {tile}² | {viewers} | {med(off, 'rps'):.0f} ({runs_of(off)}) | {med(on, 'rps'):.0f} ({runs_of(on)}) "
          f"| {med(on, 'rps') / med(off, 'rps'):.2f}× | {med(off, 'p50'):.1f} / {med(off, 'p99'):.1f} "
          f"| {med(on, 'p50'):.1f} / {med(on, 'p99'):.1f} | {med(off, 'decodes'):.0f} / {med(on, 'decodes'):.0f} "
          f"({med(on, 'ahead_decodes'):.0f}) | {med(off, 'cpu_s'):.1f} / {med(on, 'cpu_s'):.1f} "
          f"| {sum(r['errors'] for r in off + on)} |")
PY
