#!/usr/bin/env bash
# Several Tessera instances behind HAProxy (round robin), sharing one Redis
# tier (docs/DEPLOYMENT.md), against one instance: the same seeded shuffled
# pass over every tile of a real-photo JPEG 2000 master (benches/corpus/
# make.sh), CLIENTS clients through the balancer, for 1, 2 and 3 instances.
# Each run starts cold: fresh instances (memory only: no disk tier), an empty
# Redis. Reports tiles/s, p50/p99, decodes summed over the instances (and
# per instance), and where answers came from: each instance's memory cache,
# tiles and decoded units from Redis.
#
# All instances share this machine's cores, so tiles/s shows the cost of
# the coordination, not the gain of more machines; the decodes are the
# figure that carries over.
#
#   benches/corpus/make.sh && benches/compare/shared.sh
#
# Environment: CORPUS (target/corpus), FILE (photo-tiled1024.jp2), TILE
# (256), CLIENTS (4), COUNTS ("1 2 3"), TESSERA_BIN (target/release/tessera).
# Loopback only; every process started here is stopped on exit.
set -euo pipefail
# shellcheck source=lib.sh source-path=SCRIPTDIR
. "$(dirname "$0")/lib.sh"
REPO=$(cd "$(dirname "$0")/../.." && pwd)
cd "$REPO"
CORPUS=$(cd "${CORPUS:-target/corpus}" && pwd)
FILE=${FILE:-photo-tiled1024.jp2}
TILE=${TILE:-256}
CLIENTS=${CLIENTS:-4}
COUNTS=${COUNTS:-1 2 3}
BIN=${TESSERA_BIN:-target/release/tessera}
ensure_packages redis-server haproxy
[ -x "$BIN" ] || cargo build --release --locked --bin tessera >&2
[ -f "$CORPUS/$FILE" ] || { echo "no $CORPUS/$FILE: run benches/corpus/make.sh" >&2; exit 1; }

TMP=$(mktemp -d)
pids=()
stop_all() {
    local p
    for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done
    for p in "${pids[@]}"; do wait "$p" 2>/dev/null || true; done
    pids=()
}
trap 'stop_all; rm -rf "$TMP"' EXIT INT TERM
free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
metric() { # PORT NAME
    curl -s "http://127.0.0.1:$1/metrics" | awk -v n="$2" '$1 == n {print $2}'
}

echo "| instances | tiles | tiles/s | p50 ms | p99 ms | decodes (per instance) | memory hits | tiles from Redis | units from Redis | statuses |"
echo "|---|---|---|---|---|---|---|---|---|---|"
for n in $COUNTS; do
    rport=$(free_port)
    redis-server --bind 127.0.0.1 --port "$rport" --save "" --appendonly no \
        --maxmemory 2gb --maxmemory-policy allkeys-lru --dir "$TMP" >"$TMP/redis.log" 2>&1 &
    pids+=($!)
    for _ in $(seq 50); do (exec 3<>"/dev/tcp/127.0.0.1/$rport") 2>/dev/null && break; sleep 0.1; done
    ports=()
    for i in $(seq "$n"); do
        p=$(free_port)
        ports+=("$p")
        TESSERA_CACHE__DISK_MAX_BYTES=0 TESSERA_CACHE__SHARED__KIND=redis \
            TESSERA_CACHE__SHARED__URL="redis://127.0.0.1:$rport" RUST_LOG=warn \
            "$BIN" serve --listen "127.0.0.1:$p" --images "$CORPUS" >"$TMP/t$i.log" 2>&1 &
        pids+=($!)
    done
    for p in "${ports[@]}"; do wait_for_http "http://127.0.0.1:$p/health" 30; done
    lport=$(free_port)
    {
        printf 'global\n  maxconn 1024\ndefaults\n  mode http\n  timeout connect 2s\n  timeout client 300s\n  timeout server 300s\n  retries 2\n  option redispatch\n'
        printf 'frontend f\n  bind 127.0.0.1:%s\n  default_backend b\nbackend b\n  balance roundrobin\n  option httpchk GET /health\n' "$lport"
        i=0
        for p in "${ports[@]}"; do i=$((i + 1)); printf '  server t%s 127.0.0.1:%s check inter 1s\n' "$i" "$p"; done
    } >"$TMP/haproxy.cfg"
    haproxy -db -f "$TMP/haproxy.cfg" >"$TMP/haproxy.log" 2>&1 &
    pids+=($!)
    wait_for_http "http://127.0.0.1:$lport/health" 10
    r=$(python3 tools/sweep.py "http://127.0.0.1:$lport/iiif/2/$FILE" --tile "$TILE" --all-levels --shuffle 1 \
        --clients "$CLIENTS" --max-tiles 1000000 --timeout 1200)
    decodes=() mem=0 tiles=0 units=0 sum=0
    for p in "${ports[@]}"; do
        d=$(metric "$p" tessera_decodes_total); decodes+=("${d:-0}"); sum=$((sum + ${d:-0}))
        mem=$((mem + $(metric "$p" tessera_cache_hits_total)))
        tiles=$((tiles + $(metric "$p" tessera_shared_tier_hits_total)))
        units=$((units + $(metric "$p" tessera_shared_tier_units_shared_total)))
    done
    N="$n" SUM="$sum" PER="${decodes[*]}" MEM="$mem" TILES="$tiles" UNITS="$units" python3 - "$r" <<'PY'
import json, os, sys
r = json.loads(sys.argv[1])
e = os.environ
per = e["PER"].replace(" ", ", ")
print(f"| {e['N']} | {r['tiles']} | {r['tiles_per_s']} | {r['p50_ms']} | {r['p99_ms']} | {e['SUM']} ({per}) | {e['MEM']} | {e['TILES']} | {e['UNITS']} | {r['status']} |")
PY
    stop_all
done
