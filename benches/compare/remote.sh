#!/usr/bin/env bash
# Remote masters (issue #29): Tessera serving the real-photo corpus
# (benches/corpus/make.sh) from local files, and from an nginx origin on
# loopback through the HTTP source, read by range (the default) and
# downloaded whole (`range_reads = false`, the behaviour before), with the
# origin's connections limited to 100 Mbit/s and to 1 Gbit/s (nginx
# `limit_rate`), all in one run. Every workload starts a cold server (no
# disk tier, an empty source folder).
#   first view  info.json + every tile of the level a 1920×1080 viewer shows
#               at home, in the advertised tile size, 6 connections
#               (tools/sweep.py --first-view), with the bytes the origin sent
#               (nginx's $body_bytes_sent);
#   pass 256    every 256² tile of every level once, seeded shuffled order,
#               4 clients, at 1 Gbit/s against local files (PASS_FILES);
#   walk        one viewer's session, view by view (tools/sweep.py --walk):
#               home, zoom by 2 to full resolution, four pans, 6
#               connections, at 100 Mbit/s against local files (WALK_FILES);
#   many        MANY masters (200) opened one after the other, each a first
#               view, through a source folder of MANY_CACHE bytes (1 GiB,
#               and a quarter of it), at 100 Mbit/s: the four masters in
#               turn under MANY distinct URLs (nginx maps /mNNN-NAME to
#               NAME), with the folder's disk use after the run; the anchor
#               is the same sequence from local files (hard links to the
#               corpus under the same names, in target/).
# With Garage installed (scripts/deps.sh test), the same masters also come
# from a one-node Garage S3 store on loopback (source.kind = "s3"; no rate
# limit: loopback speed), uploaded with curl's SigV4; Tessera opens a
# connection per request to it (`keep_alive = false`: Garage's answers on a
# kept-alive connection wait 40 ms for TCP's delayed acknowledgement).
# Loopback only; everything started here is stopped on exit.
#
#   benches/corpus/make.sh && benches/compare/remote.sh
#
# Environment: CORPUS (target/corpus), TESSERA_BIN (target/release/tessera),
# FILES (the four masters), PASS_FILES ("photo-tiled1024.jp2
# photo-pyramid.tif photo-untiled.jp2"), MAX_TILES (all), OUT
# (docs/bench/remote.md), TESSERA_PORT (18196), BLOCK (range_block_bytes
# of the remote runs; the default configuration's when empty), MODES (the
# first-view sources: "local r100 w100 r1g w1g", then s3 when Garage is
# installed; NO_S3=1 leaves Garage out), WALK_FILES (FILES), MANY (200; 0
# leaves the section out), MANY_CACHE (1073741824), KEEP (a folder to keep
# the logs and metrics in).
set -euo pipefail
# shellcheck source=lib.sh source-path=SCRIPTDIR
. "$(dirname "$0")/lib.sh"
REPO=$(cd "$(dirname "$0")/../.." && pwd)
cd "$REPO"
CORPUS=$(cd "${CORPUS:-target/corpus}" && pwd)
BIN=${TESSERA_BIN:-target/release/tessera}
FILES=${FILES:-photo-untiled.jp2 photo-tiled1024.jp2 photo-lossless.jp2 photo-pyramid.tif}
PASS_FILES=${PASS_FILES:-photo-tiled1024.jp2 photo-pyramid.tif photo-untiled.jp2}
MAX_TILES=${MAX_TILES:-1000000}
OUT=${OUT:-docs/bench/remote.md}
TPORT=${TESSERA_PORT:-18196}
BLOCK=${BLOCK:-}
[ -z "$BLOCK" ] || export TESSERA_SOURCE__HTTP__RANGE_BLOCK_BYTES=$BLOCK
ensure_packages -q nginx curl
ensure_tessera -q "$BIN"

TMP=$(mktemp -d /tmp/tessera-remote.XXXXXX)
cp "$BIN" "$TMP/tessera"
TPID=
NPID=
GPID=
cleanup() {
    stop_pid TPID
    stop_pid NPID
    stop_pid GPID
    if [ -n "${KEEP:-}" ]; then mkdir -p "$KEEP" && cp -r "$TMP"/*.log "$TMP"/*.txt "$TMP/nginx/access.log" "$KEEP"/ 2>/dev/null || true; fi
    rm -rf "$TMP"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
P100=$(free_port)
P1G=$(free_port)
mkdir -p "$TMP/nginx" "$TMP/empty"
cat > "$TMP/nginx/nginx.conf" <<EOF
daemon off;
master_process off;
worker_processes 1;
pid $TMP/nginx/nginx.pid;
error_log $TMP/nginx/error.log;
events { worker_connections 512; }
http {
  log_format bytes '\$uri \$status \$body_bytes_sent';
  access_log $TMP/nginx/access.log bytes;
  client_body_temp_path $TMP/nginx/b; proxy_temp_path $TMP/nginx/p; fastcgi_temp_path $TMP/nginx/f;
  uwsgi_temp_path $TMP/nginx/u; scgi_temp_path $TMP/nginx/s;
  default_type application/octet-stream;
  sendfile on;
  keepalive_requests 100000;
  server { listen 127.0.0.1:$P100; root $CORPUS; limit_rate 12500k; location / { }
           location ~ ^/m[0-9]+-(.+)\$ { alias $CORPUS/\$1; } }
  server { listen 127.0.0.1:$P1G; root $CORPUS; limit_rate 125m; location / { } }
}
EOF
/usr/sbin/nginx -e "$TMP/nginx/error.log" -p "$TMP/nginx" -c "$TMP/nginx/nginx.conf" &
NPID=$!
poll_http "http://127.0.0.1:$P1G/photo-untiled.jp2" 100 0.1 -I -r 0-0

# Garage, if installed: one node, bucket "corpus", the masters uploaded.
GARAGE=$(command -v garage || true)
if [ -z "$GARAGE" ] && [ -x "$HOME/.cargo/bin/garage" ]; then GARAGE=$HOME/.cargo/bin/garage; fi
S3_MODES=
if [ -n "$GARAGE" ] && [ -z "${NO_S3:-}" ]; then
    GRPC=$(free_port)
    GS3=$(free_port)
    mkdir -p "$TMP/garage"
    {
        echo "metadata_dir = \"$TMP/garage/meta\""
        echo "data_dir = \"$TMP/garage/data\""
        echo 'db_engine = "sqlite"'
        echo 'replication_factor = 1'
        echo "rpc_bind_addr = \"127.0.0.1:$GRPC\""
        echo "rpc_public_addr = \"127.0.0.1:$GRPC\""
        echo "rpc_secret = \"$(head -c 32 /dev/urandom | od -An -tx1 | tr -d ' \n')\""
        echo '[s3_api]'
        echo 's3_region = "garage"'
        echo "api_bind_addr = \"127.0.0.1:$GS3\""
        echo 'root_domain = ".s3.garage.localhost"'
    } > "$TMP/garage/garage.toml"
    g() { "$GARAGE" -c "$TMP/garage/garage.toml" "$@"; }
    RUST_LOG=warn "$GARAGE" -c "$TMP/garage/garage.toml" server >"$TMP/garage/log" 2>&1 &
    GPID=$!
    node=
    for _ in $(seq 1 100); do
        node=$({ g status 2>/dev/null || true; } | awk '$1 ~ /^[0-9a-f][0-9a-f][0-9a-f][0-9a-f][0-9a-f][0-9a-f][0-9a-f][0-9a-f]/ {print $1; exit}')
        [ -n "$node" ] && break
        sleep 0.2
    done
    g layout assign -z dc1 -c 10G "$node" >/dev/null
    g layout apply --version 1 >/dev/null
    g bucket create corpus >/dev/null
    keyinfo=$(g key create bench)
    GKEY=$(echo "$keyinfo" | awk -F': *' 'tolower($1) ~ /key id/ {print $2; exit}')
    GSECRET=$(echo "$keyinfo" | awk -F': *' 'tolower($1) ~ /secret key/ {print $2; exit}')
    g bucket allow --read --write corpus --key bench >/dev/null
    for f in $FILES; do
        curl -sf --aws-sigv4 "aws:amz:garage:s3" --user "$GKEY:$GSECRET" -H "x-amz-content-sha256: UNSIGNED-PAYLOAD" \
            -T "$CORPUS/$f" "http://127.0.0.1:$GS3/corpus/$f" >/dev/null
    done
    S3_MODES=s3
fi

# start MODE: a cold Tessera. local = files; r100/r1g = HTTP source read by
# range at 100 Mbit/s / 1 Gbit/s; w100/w1g = downloaded whole (before #29).
start() {
    local mode=$1 port ranges=true
    rm -rf "$TMP/src" "$TMP/tiles"
    mkdir -p "$TMP/src" "$TMP/tiles"
    if [ "$mode" = local ]; then
        TESSERA_CACHE__DISK_MAX_BYTES=0 "$TMP/tessera" serve --listen "127.0.0.1:$TPORT" --images "$CORPUS" >>"$TMP/tessera.log" 2>&1 &
    elif [ "$mode" = manylocal ]; then
        TESSERA_CACHE__DISK_MAX_BYTES=0 "$TMP/tessera" serve --listen "127.0.0.1:$TPORT" --images "$LINKS" >>"$TMP/tessera.log" 2>&1 &
    elif [ "$mode" = s3 ]; then
        env TESSERA_CACHE__DISK_MAX_BYTES=0 TESSERA_SOURCE__KIND=s3 TESSERA_SOURCE__S3__BUCKET=corpus \
            TESSERA_SOURCE__S3__ENDPOINT="http://127.0.0.1:$GS3" TESSERA_SOURCE__S3__REGION=garage \
            TESSERA_SOURCE__S3__ALLOW_HTTP=true TESSERA_SOURCE__S3__ACCESS_KEY_ID="$GKEY" \
            TESSERA_SOURCE__S3__SECRET_ACCESS_KEY="$GSECRET" TESSERA_SOURCE__S3__CACHE_DIR="$TMP/src" \
            TESSERA_SOURCE__S3__KEEP_ALIVE=false \
            ${BLOCK:+TESSERA_SOURCE__S3__RANGE_BLOCK_BYTES=$BLOCK} \
            "$TMP/tessera" serve --listen "127.0.0.1:$TPORT" --images "$TMP/empty" >>"$TMP/tessera.log" 2>&1 &
    else
        case $mode in *100 | many*) port=$P100 ;; *) port=$P1G ;; esac
        case $mode in w*) ranges=false ;; esac
        env TESSERA_CACHE__DISK_MAX_BYTES=0 TESSERA_SOURCE__KIND=http \
            TESSERA_SOURCE__HTTP__URL_PREFIX="http://127.0.0.1:$port/" \
            TESSERA_SOURCE__HTTP__CACHE_DIR="$TMP/src" \
            TESSERA_SOURCE__HTTP__RANGE_READS=$ranges \
            ${CACHE_MAX:+TESSERA_SOURCE__HTTP__CACHE_MAX_BYTES=$CACHE_MAX} \
            ${CACHE_MAX:+TESSERA_SOURCE__HTTP__MAX_SOURCE_BYTES=$CACHE_MAX} \
            "$TMP/tessera" serve --listen "127.0.0.1:$TPORT" --images "$TMP/empty" >>"$TMP/tessera.log" 2>&1 &
    fi
    TPID=$!
    poll_http "http://127.0.0.1:$TPORT/health" 240 0.25 --max-time 5
}
# Bytes the origin sent for FILE since access-log line FROM.
fetched() { # FILE FROM
    tail -n +"$(($2 + 1))" "$TMP/nginx/access.log" | awk -v f="/$1" '$1==f {s+=$3} END {printf "%d", s}'
}
loglines() { wc -l < "$TMP/nginx/access.log" 2>/dev/null || echo 0; }
metric() { curl -s "http://127.0.0.1:$TPORT/metrics" | awk -v m="$1" '$1==m {printf "%d", $2}'; }
# For an S3 row: the bytes of the ranged GETs plus the first block of each open.
s3_fetched() {
    local r o b=${BLOCK:-16384}
    [ "$b" -ge 16384 ] || b=16384 # the open read: ranged::open_read_bytes
    r=$(metric tessera_s3_range_bytes_total)
    o=$(metric tessera_s3_opens_total)
    echo $((${r:-0} + ${o:-0} * b))
}

RES=$TMP/results.txt
: > "$RES"
# measure KIND FILE MODE SWEEP_ARG...: a cold server in MODE, one sweep of
# FILE, and a result line with the bytes and range requests it cost.
measure() {
    local kind=$1 f=$2 mode=$3 size from r got reqs
    shift 3
    size=$(stat -c %s "$CORPUS/$f")
    start "$mode"
    from=$(loglines)
    r=$(python3 tools/sweep.py "http://127.0.0.1:$TPORT/iiif/2/$f" "$@")
    sleep 0.2
    got=0
    reqs=$(metric tessera_source_range_requests_total)
    case $mode in
        local) ;;
        s3) got=$(s3_fetched); reqs=$(metric tessera_s3_range_requests_total) ;;
        *) got=$(fetched "$f" "$from") ;;
    esac
    echo "$kind $f $size $mode $got ${reqs:-0} $r" | tee -a "$RES" >&2
    stop_pid TPID
}
for f in $FILES; do
    for mode in ${MODES:-local r100 w100 r1g w1g} $S3_MODES; do
        measure first "$f" "$mode" --timeout 600 --first-view 1920x1080 --clients 6
    done
done
for f in ${WALK_FILES:-$FILES}; do
    for mode in local r100; do
        measure walk "$f" "$mode" --timeout 600 --first-view 1920x1080 --walk 1 --clients 6
    done
done
for f in $PASS_FILES; do
    for mode in local r1g $S3_MODES; do
        measure pass "$f" "$mode" --timeout 1200 --tile 256 --all-levels --shuffle 1 --clients 4 --max-tiles "$MAX_TILES"
    done
done

# many CACHE: MANY first views of distinct masters through one server
# whose source folder holds CACHE bytes ("local": the same names as hard
# links to the local files, the anchor).
many_run() {
    local cache=$1 i=0 f r from size got disk mode=many$1
    local files=($FILES)
    if [ "$cache" = local ]; then
        mode=manylocal
        start manylocal
    else
        CACHE_MAX=$cache start many
    fi
    for i in $(seq 1 "$MANY"); do
        f=${files[$(((i - 1) % ${#files[@]}))]}
        size=$(stat -c %s "$CORPUS/$f")
        from=$(loglines)
        r=$(python3 tools/sweep.py "http://127.0.0.1:$TPORT/iiif/2/m$i-$f" --timeout 600 --first-view 1920x1080 --clients 6)
        sleep 0.05
        got=$(fetched "m$i-$f" "$from")
        echo "many $f $size $mode $got 0 $r" | tee -a "$RES" >&2
    done
    if [ "$cache" = local ]; then
        stop_pid TPID
        return
    fi
    curl -s "http://127.0.0.1:$TPORT/metrics" > "$TMP/metrics-$mode.txt" || true
    disk=$(du -s --block-size=1 "$TMP/src" | cut -f1)
    echo "manydisk $cache $disk $(metric tessera_source_stored_bytes) $(metric tessera_source_memory_bytes)" | tee -a "$RES" >&2
    stop_pid TPID
}
MANY=${MANY:-200}
MANY_CACHE=${MANY_CACHE:-1073741824}
if [ "$MANY" -gt 0 ]; then
    # The anchor: the same sequence from local files, under the same names.
    LINKS=$REPO/target/remote-many-links
    rm -rf "$LINKS"
    mkdir -p "$LINKS"
    linked=1
    files=($FILES)
    for i in $(seq 1 "$MANY"); do
        f=${files[$(((i - 1) % ${#files[@]}))]}
        ln "$CORPUS/$f" "$LINKS/m$i-$f" 2>/dev/null || { linked=; break; }
    done
    [ -z "$linked" ] || many_run local
    rm -rf "$LINKS"
    many_run "$MANY_CACHE"
    many_run $((MANY_CACHE / 4))
fi

TABLE=$TMP/table.md
python3 - "$RES" > "$TABLE" <<'PY'
import json, sys
rows, disks = [], []
for line in open(sys.argv[1]):
    if line.startswith("manydisk "):
        disks.append([int(v or 0) for v in line.split()[1:]])
        continue
    kind, f, size, mode, got, reqs, js = line.split(" ", 6)
    rows.append((kind, f, int(size), mode, int(got), int(reqs), json.loads(js)))
names = {"local": "local file", "r100": "HTTP, by range, 100 Mbit/s", "w100": "HTTP, whole (before), 100 Mbit/s",
         "r1g": "HTTP, by range, 1 Gbit/s", "w1g": "HTTP, whole (before), 1 Gbit/s",
         "s3": "S3 (Garage, loopback, keep_alive = false), by range"}
print("### First view (1920×1080, home level, 6 connections, cold server)\n")
print("| master | size | source | first view ms | × local | bytes from origin | % of file | range requests | statuses |")
print("|---|---:|---|---:|---:|---:|---:|---:|---|")
local = {r[1]: r[6]["first_view_ms"] for r in rows if r[0] == "first" and r[3] == "local"}
for kind, f, size, mode, got, reqs, r in rows:
    if kind != "first":
        continue
    fv = r["first_view_ms"]
    x = f"{fv / local[f]:.2f}×" if f in local and local[f] else ""
    pct = "" if mode == "local" else f"{100 * got / size:.2f} %"
    b = "" if mode == "local" else f"{got:,}"
    print(f"| {f} | {size / 1e6:.1f} MB | {names[mode]} | {fv:.0f} | {x} | {b} | {pct} | {reqs if mode[0] in 'rs' else ''} | {r['status']} |")
print("\n### Shuffled pass over every 256² tile of every level (4 clients, cold server)\n")
print("| master | source | tiles | tiles/s | × local | p50 ms | p99 ms | bytes from origin | × file | statuses |")
print("|---|---|---:|---:|---:|---:|---:|---:|---:|---|")
lp = {r[1]: r[6]["tiles_per_s"] for r in rows if r[0] == "pass" and r[3] == "local"}
for kind, f, size, mode, got, reqs, r in rows:
    if kind != "pass":
        continue
    x = f"{r['tiles_per_s'] / lp[f]:.2f}×" if f in lp and lp[f] else ""
    b = "" if mode == "local" else f"{got:,}"
    xf = "" if mode == "local" else f"{got / size:.2f}"
    print(f"| {f} | {names[mode]} | {r['tiles']} | {r['tiles_per_s']} | {x} | {r['p50_ms']} | {r['p99_ms']} | {b} | {xf} | {r['status']} |")
walks = [r for r in rows if r[0] == "walk"]
if walks:
    print("\n### A viewer's session, view by view (home, zoom by 2 to full resolution, 4 pans; 6 connections, cold server)\n")
    print("| master | source | views | tiles | view p50 ms | p90 ms | max ms | session ms | × local (session) | bytes from origin | % of file | statuses |")
    print("|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---|")
    lw = {r[1]: r[6]["total_ms"] for r in walks if r[3] == "local"}
    for kind, f, size, mode, got, reqs, r in walks:
        x = f"{r['total_ms'] / lw[f]:.2f}×" if lw.get(f) else ""
        b = "" if mode == "local" else f"{got:,}"
        pct = "" if mode == "local" else f"{100 * got / size:.2f} %"
        print(f"| {f} | {names[mode]} | {len(r['views_ms'])} | {r['tiles']} | {r['p50_ms']} | {r['p90_ms']} | {r['max_ms']} | {r['total_ms']} | {x} | {b} | {pct} | {r['status']} |")
many = [r for r in rows if r[0] == "many"]
if many:
    print("\n### Many masters through a bounded source folder (first views one after the other, 100 Mbit/s origin)\n")
    print("| source (folder bound) | master | masters | first view p50 ms | p90 ms | max ms | × local (p90) | bytes per first view | % of file | statuses |")
    print("|---:|---|---:|---:|---:|---:|---:|---:|---:|---|")
    def p90(mode, f):
        fv = sorted(r[6]["first_view_ms"] for r in many if r[3] == mode and r[1] == f)
        return fv[min(len(fv) - 1, int(len(fv) * 0.9))] if fv else None
    modes = sorted({r[3] for r in many}, key=lambda m: float("-inf") if m == "manylocal" else -int(m[4:]))
    for mode in modes:
        for f in dict.fromkeys(r[1] for r in many):
            rs = [r for r in many if r[3] == mode and r[1] == f]
            if not rs:
                continue
            fv = sorted(r[6]["first_view_ms"] for r in rs)
            q = lambda p: fv[min(len(fv) - 1, int(len(fv) * p))]
            st = {}
            for r in rs:
                for k, v in r[6]["status"].items():
                    st[k] = st.get(k, 0) + v
            got = sum(r[4] for r in rs) / len(rs)
            anchor = p90("manylocal", f)
            x = f"{q(0.9) / anchor:.2f}×" if anchor else ""
            if mode == "manylocal":
                print(f"| local files | {f} | {len(rs)} | {q(0.5):.0f} | {q(0.9):.0f} | {fv[-1]:.0f} | {x} |  |  | {st} |")
                continue
            print(f"| {int(mode[4:]) / 2**20:.0f} MiB | {f} | {len(rs)} | {q(0.5):.0f} | {q(0.9):.0f} | {fv[-1]:.0f} | {x} | {got:,.0f} | {100 * got / rs[0][2]:.2f} % | {st} |")
    for cache, disk, stored, memory in disks:
        print(f"\nFolder bound {cache / 2**20:.0f} MiB: {disk / 2**20:.1f} MiB on disk after the run (du), "
              f"{stored / 2**20:.1f} MiB counted, {memory / 2**20:.1f} MiB in memory.")
PY
replace_section "$OUT" benches/compare/remote.sh "$TABLE" $'# Remote masters read by range\n\n' \
    " on $(nproc) CPUs, $(describe_build "$BIN")${BLOCK:+, range_block_bytes = $BLOCK}"
cat "$TABLE"
