#!/usr/bin/env bash
# The access log's cost in instructions per hot-tile request, counted by
# callgrind in the server process (every thread: the reactor, the log
# writer thread), with the log off, as text to a file and as JSON to a file.
# Instruction counts do not move with what else the machine is doing, which
# the wall-clock ratio of benches/access_log.sh does on a small machine.
#
#   benches/access_log_instructions.sh [SECONDS]
#
# Each mode: Tessera under `valgrind --tool=callgrind`, the four tiles of
# benches/hot_tiles.sh rendered once, the counters zeroed, then wrk (1
# thread, 8 connections) for SECONDS on those cached tiles, then SIGTERM;
# instructions collected since the zeroing ÷ requests wrk completed.
# Loopback only; the processes started here are stopped on exit.
set -euo pipefail
cd "$(dirname "$0")/.."
. benches/hot_tiles_lib.sh
secs=${1:-20}
for tool in valgrind callgrind_control wrk; do
    command -v "$tool" >/dev/null || { echo "needs $tool (Debian: valgrind, wrk)" >&2; exit 1; }
done
cargo build --release --locked --bin tessera 2>/dev/null
bin=target/release/tessera
T=18412
tmp=$(mktemp -d /tmp/tessera-ir.XXXXXX)
pid=''
trap '[ -z "$pid" ] || kill "$pid" 2>/dev/null || true; rm -rf "$tmp"' EXIT
lua="$tmp/tiles.lua"
write_hot_lua "$lua"

measure() { # LABEL ENV...
    local label=$1 log="$tmp/$1.vg" reqs ir
    shift
    env "$@" "${hot_env[@]}" valgrind --tool=callgrind --callgrind-out-file="$tmp/$label.out" --log-file="$log" \
        "$bin" serve --listen 127.0.0.1:$T >/dev/null 2>&1 &
    pid=$!
    warm_hot_tiles $T 120
    callgrind_control -z "$pid" >/dev/null
    reqs=$(wrk -t1 -c8 -d"${secs}s" -s "$lua" "http://127.0.0.1:$T" | awk '/requests in/ {print $1}')
    stop_server "$pid" "$label"
    pid=''
    ir=$(awk '/Collected :/ {print $NF}' "$log" | tail -1)
    echo "| $label | $reqs | $ir | $(python3 -c "print(round($ir / $reqs))") |"
}

echo "| access log | requests | instructions | per request |"
echo "|---|---:|---:|---:|"
measure off TESSERA_LOG__ACCESS=false RUST_LOG=warn
measure "text to a file" RUST_LOG=warn,access=info TESSERA_LOG__FILE="$tmp/text.log"
measure "JSON to a file" RUST_LOG=warn,access=info TESSERA_LOG__FORMAT=json TESSERA_LOG__FILE="$tmp/json.log"
echo
echo "Machine: $(nproc) cores; commit $(git rev-parse --short HEAD); $(date -u +%Y-%m-%d); $secs s of wrk a mode under callgrind."
