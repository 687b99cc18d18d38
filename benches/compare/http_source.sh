#!/usr/bin/env bash
# The HTTP source against local files, on one ~100 MB tiled JPEG 2000:
# Tessera serving it from disk, and Tessera fetching it from nginx on
# loopback (source.kind = "http"). Loopback only; everything started here is
# stopped on exit.
#
#   benches/compare/http_source.sh
#
# Cases (medians of RUNS runs; each run starts both servers afresh, so
# nothing is cached):
#   first tile   info.json then one 256² tile at scale factor 1 in the middle
#                of the image, timed by curl: for the HTTP source this
#                includes fetching the whole file from the origin
#   sweep        right after, a cold sweep of distinct 256² tiles over all
#                levels, coarse to fine (`tessera loadtest --mode sweep
#                --tile-size 256`, 1 viewer, capped at SWEEP_S s), with the
#                image already in the source folder
# The >100 MB image (14000 x 10000, lossless, tiled 1024, 7 levels) is made
# once from samples/generated/large.jp2 with opj_decompress/opj_compress and kept in
# target/bench-data/.
#
# Environment: RUNS (3), SWEEP_S (cap per sweep, 30), OUT
# (docs/bench/http-source.md), TESSERA_BIN (target/release/tessera).
set -euo pipefail
# shellcheck source=lib.sh source-path=SCRIPTDIR
. "$(dirname "$0")/lib.sh"
# Cold runs on every start: no disk tile tier (archival.sh measures it).
export TESSERA_CACHE__DISK_MAX_BYTES=0

cd "$(dirname "$0")/../.."
REPO=$PWD
RUNS=${RUNS:-3}
SWEEP_S=${SWEEP_S:-30}
OUT=${OUT:-docs/bench/http-source.md}
BIN=${TESSERA_BIN:-target/release/tessera}
DATA=$REPO/target/bench-data
BIG=$DATA/big100.jp2

ensure_packages -q nginx libopenjp2-tools curl
ensure_tessera -q "$BIN"
[ -f samples/generated/large.jp2 ] || { echo "run scripts/run.sh once to generate the samples" >&2; exit 1; }

TMP=$(mktemp -d)
NGINX_PID=
SERVER_PID=
# Stops only what this script started and still runs (a stopped server's id
# is forgotten, so a reused id is never signalled).
cleanup() {
    stop_pid SERVER_PID
    stop_pid NGINX_PID
    rm -rf "$TMP"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

mkdir -p "$DATA"
if [ ! -f "$BIG" ]; then
    echo "== making a ~100 MB JPEG 2000 (once)" >&2
    opj_decompress -i samples/generated/large.jp2 -o "$TMP/large.ppm" >/dev/null
    # 14000 x 10000: the 10000 x 8000 sample, wrapped around, so that the
    # lossless file passes 100 MB.
    python3 - "$TMP/large.ppm" "$TMP/big.ppm" <<'PY'
import sys
src = open(sys.argv[1], "rb").read()
# The header: P6, width, height, maxval, with # comments; one whitespace byte
# before the pixels.
tokens, i = [], 0
while len(tokens) < 4:
    while src[i:i + 1].isspace():
        i += 1
    if src[i:i + 1] == b"#":
        i = src.index(b"\n", i) + 1
        continue
    j = i
    while not src[j:j + 1].isspace():
        j += 1
    tokens.append(src[i:j])
    i = j
w, h = int(tokens[1]), int(tokens[2])
px = src[i + 1:]
W, H = 14000, 10000
with open(sys.argv[2], "wb") as out:
    out.write(b"P6\n%d %d\n255\n" % (W, H))
    for y in range(H):
        row = px[(y % h) * w * 3:((y % h) + 1) * w * 3]
        out.write(row + row[: (W - w) * 3])
PY
    rm -f "$TMP/large.ppm"
    opj_compress -i "$TMP/big.ppm" -o "$DATA/big100.part.jp2" -t 1024,1024 -n 7 -p RPCL >/dev/null
    rm -f "$TMP/big.ppm"
    mv "$DATA/big100.part.jp2" "$BIG"
fi
SIZE=$(stat -c %s "$BIG")
echo "== image: $BIG ($((SIZE / 1048576)) MiB)" >&2

free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }

# nginx on loopback, serving target/bench-data.
NPORT=$(free_port)
mkdir -p "$TMP/nginx"
cat > "$TMP/nginx/nginx.conf" <<EOF
daemon off;
master_process off;
worker_processes 1;
pid $TMP/nginx/nginx.pid;
error_log $TMP/nginx/error.log;
events { worker_connections 256; }
http {
  access_log off;
  client_body_temp_path $TMP/nginx/b; proxy_temp_path $TMP/nginx/p; fastcgi_temp_path $TMP/nginx/f;
  uwsgi_temp_path $TMP/nginx/u; scgi_temp_path $TMP/nginx/s;
  default_type application/octet-stream;
  sendfile on;
  server { listen 127.0.0.1:$NPORT; root $DATA; location / { } }
}
EOF
/usr/sbin/nginx -e "$TMP/nginx/error.log" -p "$TMP/nginx" -c "$TMP/nginx/nginx.conf" &
NGINX_PID=$!
poll_http "http://127.0.0.1:$NPORT/big100.jp2" 100 0.1 -I || true

# start_tessera KIND PORT: a fresh server (empty caches) in the background.
start_tessera() {
    local kind=$1 port=$2
    if [ "$kind" = local ]; then
        RUST_LOG=warn "$BIN" serve --listen "127.0.0.1:$port" --images "$DATA" >/dev/null 2>&1 &
    else
        mkdir -p "$TMP/empty"
        RUST_LOG=warn TESSERA_SOURCE__KIND=http \
            TESSERA_SOURCE__HTTP__URL_PREFIX="http://127.0.0.1:$NPORT/" \
            TESSERA_SOURCE__HTTP__URL_SUFFIX=".jp2" \
            TESSERA_SOURCE__HTTP__CACHE_DIR="$TMP/folder-$port" \
            "$BIN" serve --listen "127.0.0.1:$port" --images "$TMP/empty" >/dev/null 2>&1 &
    fi
    SERVER_PID=$!
    poll_http "http://127.0.0.1:$port/health" 200 0.1 ||
        { echo "no answer from http://127.0.0.1:$port/health" >&2; return 1; }
}

RES=$TMP/results.txt
for run in $(seq 1 "$RUNS"); do
    for kind in local http; do
        port=$(free_port)
        start_tessera "$kind" "$port"
        base="http://127.0.0.1:$port/iiif/2/big100"
        t_info=$(curl -sf -o /dev/null -w '%{time_total}' "$base/info.json")
        t_tile=$(curl -sf -o /dev/null -w '%{time_total}' "$base/4864,3840,256,256/256,/0/default.jpg")
        "$BIN" loadtest "$base/info.json" --mode sweep --tile-size 256 --concurrency 1 \
            --duration "$SWEEP_S" --quiet --json "$TMP/sweep.json" >/dev/null
        rps=$(python3 -c 'import json,sys; r=json.load(open(sys.argv[1])); print("%.1f %d %d" % (r["requests_per_s"], r["requests"], r["errors"]))' "$TMP/sweep.json")
        echo "$kind $run $t_info $t_tile $rps" | tee -a "$RES" >&2
        stop_pid SERVER_PID
    done
done

TABLE=$(python3 - "$RES" "$SIZE" "$RUNS" <<'PY'
import statistics, sys
rows = [l.split() for l in open(sys.argv[1])]
size, runs = int(sys.argv[2]), int(sys.argv[3])
def med(kind, i, f=float):
    return statistics.median(f(r[i]) for r in rows if r[0] == kind)
print(f"Image: {size / 1e6:.0f} MB lossless JPEG 2000, 14000 x 10000, tiled 1024, 7 levels. Median of {runs} runs.")
print()
print("| | local file | HTTP source (nginx on loopback) | HTTP / local |")
print("| --- | --- | --- | --- |")
for label, i, unit in (("info.json, nothing cached (s)", 2, "s"), ("then the first tile (s)", 3, "s")):
    a, b = med("local", i), med("http", i)
    print(f"| {label} | {a:.3f} | {b:.3f} | {b / a:.1f}× |")
a, b = med("local", 4), med("http", 4)
print(f"| cold sweep of distinct 256² tiles, image cached (tiles/s) | {a:.1f} | {b:.1f} | {b / a:.2f}× |")
errs = sum(int(r[6]) for r in rows)
print()
print(f"Sweep errors: {errs}.")
PY
)
replace_section --keep-after "$OUT" benches/compare/http_source.sh <(printf '%s\n' "$TABLE") \
    $'# HTTP source\n\n' " on $(nproc) CPUs"
echo "$TABLE"
