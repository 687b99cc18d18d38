#!/usr/bin/env bash
# The access log's cost in CPU time per hot-tile request: every thread of
# the server process (reactor workers, the log's batch and writer threads),
# user and kernel time alike, counted by `perf stat` (task-clock, a software
# counter: works in VMs without hardware counters) over a wrk run on the
# four cached tiles of benches/hot_tiles.sh, with the log off, as text to a
# file and as JSON to a file, ROUNDS rounds alternating. Context switches
# per request are printed beside it (a log writer woken per line shows
# there).
#
#   benches/access_log_cpu.sh [SECONDS] [ROUNDS]
#
# Loopback only; the processes started here are stopped on exit.
set -euo pipefail
cd "$(dirname "$0")/.."
. benches/hot_tiles_lib.sh
secs=${1:-8}; rounds=${2:-3}
for tool in perf wrk; do
    command -v "$tool" >/dev/null || { echo "needs $tool (Debian: linux-perf, wrk)" >&2; exit 1; }
done
cargo build --release --locked --bin tessera 2>/dev/null
bin=target/release/tessera
T=18413
tmp=$(mktemp -d /tmp/tessera-cpu.XXXXXX)
pid=''
trap '[ -z "$pid" ] || kill "$pid" 2>/dev/null || true; rm -rf "$tmp"' EXIT
write_hot_lua "$tmp/tiles.lua"

measure() { # LABEL ENV...
    local label=$1 reqs cpu_ms switches
    shift
    env "$@" "${hot_env[@]}" "$bin" serve --listen 127.0.0.1:$T >/dev/null 2>&1 &
    pid=$!
    warm_hot_tiles $T 30
    # perf counts a little longer than wrk runs; the server is idle then.
    perf stat -x, -e task-clock,context-switches -p "$pid" -o "$tmp/perf" -- sleep $((secs + 1)) &
    local perf_pid=$!
    sleep 0.5
    reqs=$(wrk -t1 -c8 -d"${secs}s" -s "$tmp/tiles.lua" "http://127.0.0.1:$T" | awk '/requests in/ {print $1}')
    wait "$perf_pid" || true
    stop_server "$pid" "$label"
    pid=''
    cpu_ms=$(awk -F, '/task-clock/ {print $1}' "$tmp/perf")
    switches=$(awk -F, '/context-switches/ {print $1}' "$tmp/perf")
    python3 -c "print(f'| $label | {$reqs / $secs:.0f} | {$cpu_ms * 1000 / $reqs:.1f} | {$switches / $reqs:.2f} |')"
    rm -f "$tmp"/*.log
}

echo "| access log | req/s | CPU µs a request | context switches a request |"
echo "|---|---:|---:|---:|"
for ((r = 0; r < rounds; r++)); do
    measure off TESSERA_LOG__ACCESS=false RUST_LOG=warn
    measure "text to a file" RUST_LOG=warn,access=info TESSERA_LOG__FILE="$tmp/text.log"
    measure "JSON to a file" RUST_LOG=warn,access=info TESSERA_LOG__FORMAT=json TESSERA_LOG__FILE="$tmp/json.log"
done
echo
echo "Machine: $(nproc) cores; commit $(git rev-parse --short HEAD); $(date -u +%Y-%m-%d); $secs s of wrk (1 thread, 8 connections) a mode."
