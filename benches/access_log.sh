#!/usr/bin/env bash
# The access log's cost on the hot path: benches/hot_tiles.sh (cached 256²
# tiles under wrk, against a bare hyper server in the same round) with the
# access log off and on, alternating, ROUNDS rounds each. "On" writes every
# line to a file (text, then JSON), as a production server does.
#
#   benches/access_log.sh [ROUNDS] [SECONDS]
set -euo pipefail
cd "$(dirname "$0")/.."
rounds=${1:-3}; secs=${2:-10}
cargo build --release --locked --example bare_hyper --bin tessera 2>/dev/null
export TESSERA_BIN=target/release/tessera BARE_BIN=target/release/examples/bare_hyper
tmp=$(mktemp -d /tmp/tessera-access.XXXXXX)
trap 'rm -rf "$tmp"' EXIT
run() { # LABEL ENV...
    local label=$1; shift
    env "$@" bash benches/hot_tiles.sh "$secs" 32 | tail -1 | awk -F'|' -v l="$label" '{gsub(/ /,"",$4); gsub(/ /,"",$5); printf "| %s | %s | %s | %.2f |\n", l, $4, $5, $4 / $5}'
}
echo "| access log | Tessera hot tiles req/s | bare hyper req/s | ratio |"
echo "|---|---:|---:|---:|"
for ((r = 0; r < rounds; r++)); do
    run off TESSERA_LOG__ACCESS=false
    run "on, text to a file" HOT_RUST_LOG=warn,access=info TESSERA_LOG__FILE="$tmp/text.log"
    run "on, JSON to a file" HOT_RUST_LOG=warn,access=info TESSERA_LOG__FORMAT=json TESSERA_LOG__FILE="$tmp/json.log"
done
echo
echo "Lines written: text $(wc -l < "$tmp/text.log"), JSON $(wc -l < "$tmp/json.log"). Machine: $(nproc) cores; commit $(git rev-parse --short HEAD); $(date -u +%Y-%m-%d)."
