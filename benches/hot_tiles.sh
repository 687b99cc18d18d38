#!/usr/bin/env bash
# Hot tiles: Tessera serving a few cached 256² JPEG tiles, against a bare hyper
# server returning a body of the same size, measured with wrk in one run.
# Loopback only; every process started here is stopped on exit.
# usage: benches/hot_tiles.sh [SECONDS] [CONNECTIONS]
# TESSERA_BIN and BARE_BIN name prebuilt binaries (benches/compare/ab.sh runs
# two revisions this way); without them both are built here. HOT_RUST_LOG is
# Tessera's log filter (warn: no access log; benches/access_log.sh sets it).
set -euo pipefail
cd "$(dirname "$0")/.."
. benches/hot_tiles_lib.sh
secs=${1:-10}; conns=${2:-32}
command -v wrk >/dev/null || { sudo=""; [ "$(id -u)" -ne 0 ] && sudo=sudo; $sudo apt-get install -y -qq wrk >/dev/null; }
if [ -z "${TESSERA_BIN:-}" ] || [ -z "${BARE_BIN:-}" ]; then
    cargo build --release --locked --example bare_hyper --bin tessera 2>/dev/null
fi
tessera_bin=${TESSERA_BIN:-target/release/tessera}
bare_bin=${BARE_BIN:-target/release/examples/bare_hyper}
T=18410; B=18411
pids=()
trap 'for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done' EXIT
RUST_LOG=${HOT_RUST_LOG:-warn} "$tessera_bin" serve --listen 127.0.0.1:$T & pids+=($!)
for _ in $(seq 100); do curl -sf "http://127.0.0.1:$T/health" >/dev/null && break; sleep 0.1; done
total=0
for t in "${hot_tiles[@]}"; do n=$(curl -sf "http://127.0.0.1:$T$t" | wc -c); total=$((total + n)); done
size=$((total / ${#hot_tiles[@]}))
decodes_before=$(curl -s "http://127.0.0.1:$T/metrics" | awk '/^tessera_decodes_total/ {print $2}')
"$bare_bin" 127.0.0.1:$B "$size" & pids+=($!)
sleep 0.5
lua=$(mktemp); write_hot_lua "$lua"
rps() { wrk -t1 -c"$conns" -d"${secs}s" "$@" | awk '/Requests\/sec/ {print $2}'; }
tess=$(rps -s "$lua" "http://127.0.0.1:$T")
# The same Lua script drives both (the baseline ignores the path), so wrk does the same work per request.
bare=$(rps -s "$lua" "http://127.0.0.1:$B")
decodes_after=$(curl -s "http://127.0.0.1:$T/metrics" | awk '/^tessera_decodes_total/ {print $2}')
ratio=$(python3 -c "print(f'{$tess / $bare:.2f}')")
echo "| body | connections | Tessera hot tiles req/s | bare hyper req/s | ratio | decodes during load |"
echo "|---|---|---|---|---|---|"
echo "| ${size} B | $conns | $tess | $bare | $ratio | $((decodes_after - decodes_before)) |"
