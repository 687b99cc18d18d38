#!/usr/bin/env bash
# Tessera against IIPImage (Debian's iipimage-server behind lighttpd FastCGI)
# on the same tiled JPEG 2000 (samples/generated/large.jp2: 10000 x 8000,
# 1024^2 codestream tiles, 7 levels), with the viewer-like sweep client
# tools/sweep.py. Loopback only; everything started here is stopped on exit.
#
#   benches/compare/iipimage.sh            # from the repository root or anywhere
#
# Cases (each the median of RUNS runs; "cold" = both servers restarted just
# before the run, so every cache is empty; "hot" = the same sweep again on the
# same server right after the cold one):
#   a) 256^2 tiles, scale factor 1, region 2048,2048,4096,2048 (128 tiles), 1 and 4 clients, cold
#   b) the same region with 512^2 tiles (32 tiles), 1 and 4 clients, cold
#   c) multi-level: 256^2 tiles at scale factors 16,8,4,2 (first 400 tiles), 4 clients, cold
#   d) hot: (a) again without restart, 1 and 4 clients
# Writes the Markdown table between markers in docs/bench/jp2.md (the rest of
# that file is kept) and prints it.
#
# Environment: RUNS (3), TESSERA_PORT (18182), IIP_PORT (18183),
# IIP_PROCS (iipsrv FastCGI processes lighttpd may spawn, 2), TIMEOUT (per
# sweep, seconds, 120), OUT (docs/bench/jp2.md).
#
# On a fresh machine it installs iipimage-server and lighttpd with apt-get
# (only when missing). Note: on a systemd machine the packages' own services
# may start (lighttpd on :80, iipsrv.service on :9000); this script neither
# uses nor stops them.
set -euo pipefail
# shellcheck source=lib.sh source-path=SCRIPTDIR
. "$(dirname "$0")/lib.sh"
# Cold runs on every start: no disk tile tier (archival.sh measures it).
export TESSERA_CACHE__DISK_MAX_BYTES=0

cd "$(dirname "$0")/../.."
REPO=$PWD
RUNS=${RUNS:-3}
TPORT=${TESSERA_PORT:-18182}
IPORT=${IIP_PORT:-18183}
IIP_PROCS=${IIP_PROCS:-2}
TIMEOUT=${TIMEOUT:-120}
OUT=${OUT:-docs/bench/jp2.md}
IMAGES=$REPO/samples/generated
JP2=$IMAGES/large.jp2
REGION=2048,2048,4096,2048
TBASE="http://127.0.0.1:$TPORT/iiif/2/large"
IBASE="http://127.0.0.1:$IPORT/fcgi-bin/iipsrv.fcgi?IIIF=/large.jp2"

# --- packages -------------------------------------------------------------
ensure_iipimage

# --- Tessera binary -------------------------------------------------------
ensure_tessera target/release/tessera

TMP=$(mktemp -d /tmp/tessera-vs-iip.XXXXXX)
# A private copy, so a rebuild by someone else during the run cannot swap the
# binary between two restarts.
cp target/release/tessera "$TMP/tessera"
TESSERA_BUILD=$(describe_build target/release/tessera)

TPID=
LPID=
trap cleanup_servers EXIT
trap 'exit 130' INT TERM

start_tessera() {
    # Run from the repository root: the default source.root is
    # samples/generated, where large.jp2 is generated on first start.
    restart_tessera "$TMP" "$TPORT" "$JP2" "$TBASE/info.json"
}

write_iipimage_conf "$TMP" "$IPORT" "$IMAGES" "$IIP_PROCS"

start_iip() {
    restart_iipimage "$TMP" "$IBASE/info.json"
}

# --- start both once, check what they serve --------------------------------
for port in "$TPORT" "$IPORT"; do
    require_free_port "$port" "port $port is already in use; set TESSERA_PORT / IIP_PORT"
done
echo "== starting Tessera on :$TPORT (first start generates large.jp2 in the background)" >&2
start_tessera
echo "== starting lighttpd + iipsrv on :$IPORT (max-procs $IIP_PROCS)" >&2
start_iip

echo "== checking both servers answer the sweep URLs with 200 and JPEGs of the right size" >&2
python3 - "$TBASE" "$IBASE" "$REGION" <<'PY'
import json, sys, urllib.request
bases, region = sys.argv[1:3], sys.argv[3]

def urls(base, tile, sfs, region=None, limit=400):
    info = json.load(urllib.request.urlopen(base + "/info.json"))
    W, H = info["width"], info["height"]
    rx, ry, rw, rh = (0, 0, W, H) if not region else map(int, region.split(","))
    out = []
    for sf in sfs:  # the same walk as tools/sweep.py
        step = tile * sf
        y = ry
        while y < min(H, ry + rh):
            x = rx
            while x < min(W, rx + rw):
                w, h = min(step, W - x), min(step, H - y)
                out.append((f"{base}/{x},{y},{w},{h}/{-(-w // sf)},/0/default.jpg", -(-w // sf), h / sf))
                x += step
            y += step
    return out[:limit]

def jpeg_size(b):
    if b[:2] != b"\xff\xd8":
        return None
    i = 2
    while i + 9 < len(b):
        if b[i] != 0xFF:
            return None
        m, n = b[i + 1], int.from_bytes(b[i + 2:i + 4], "big")
        if m in (0xC0, 0xC1, 0xC2):
            return int.from_bytes(b[i + 7:i + 9], "big"), int.from_bytes(b[i + 5:i + 7], "big")
        i += 2 + n
    return None

bad = 0
for base in bases:
    for tile, sfs, reg in ((256, [1], region), (512, [1], region), (256, [16, 8, 4, 2], None)):
        us = urls(base, tile, sfs, reg)
        pick = us[:: max(1, len(us) // 12)] + [us[-1]]
        for u, ew, eh in pick:
            with urllib.request.urlopen(u) as r:
                st, ct, b = r.status, r.headers.get("Content-Type"), r.read()
            size = jpeg_size(b)
            ok = st == 200 and ct == "image/jpeg" and size is not None and size[0] == ew and abs(size[1] - eh) <= 1
            if not ok:
                bad += 1
                print(f"  BAD {u}: {st} {ct} {size} (want {ew}x~{eh:.0f})", file=sys.stderr)
        print(f"  {base} tile {tile} sf {sfs}: {len(pick)} sampled URLs of {len(us)}, 200 image/jpeg, sizes as asked", file=sys.stderr)
sys.exit(1 if bad else 0)
PY

# --- the runs ---------------------------------------------------------------
RES=$TMP/results.jsonl
: >"$RES"
load_before=$(cut -d' ' -f1-3 /proc/loadavg)
t_start=$(date +%s)

decodes() { # Tessera's codestream-tile decode counter (decoded-tile cache misses and region decodes)
    curl -s "http://127.0.0.1:$TPORT/metrics" | awk '$1=="tessera_decodes_total"{print $2}'
}

server_pids() { # the processes that serve: Tessera; or lighttpd and the iipsrv processes it spawned
    if [ "$1" = tessera ]; then echo "$TPID"; else echo "$LPID" $(pgrep -P "$LPID" 2>/dev/null || true); fi
}
cpu_ticks() { # PID... -> "pid:ticks ..." (user + system time of all threads, in clock ticks)
    local p
    for p in "$@"; do
        if [ -r "/proc/$p/stat" ]; then
            awk -v p="$p" '{ sub(/^.*\) /, ""); print p ":" $12 + $13 }' "/proc/$p/stat"
        fi
    done | tr '\n' ' '
}

sweep() { # SERVER CASE RUN BASE ARGS...
    local server=$1 case=$2 run=$3 base=$4
    shift 4
    local d0= d1= c0 c1 line
    [ "$server" = tessera ] && d0=$(decodes)
    c0=$(cpu_ticks $(server_pids "$server"))
    line=$(python3 tools/sweep.py "$base" --timeout "$TIMEOUT" "$@")
    c1=$(cpu_ticks $(server_pids "$server"))
    [ "$server" = tessera ] && d1=$(decodes)
    python3 - "$line" "$server" "$case" "$run" "$(cut -d' ' -f1 /proc/loadavg)" "$d0" "$d1" "$c0" "$c1" "$(getconf CLK_TCK)" <<'PY' | tee -a "$RES" >&2
import json, sys
line, server, case, run, load, d0, d1, c0, c1, hz = sys.argv[1:11]
r = json.loads(line)
before = dict(x.split(":") for x in c0.split())
after = dict(x.split(":") for x in c1.split())
# processes spawned during the sweep (lighttpd starts iipsrv on demand) count from 0
cpu = sum(int(v) - int(before.get(p, 0)) for p, v in after.items()) / int(hz)
r.update(server=server, case=case, run=int(run), load=load,
         decodes=(float(d1) - float(d0)) if d0 else None,
         server_cpu_s=round(cpu, 2), cpu_ms_per_tile=round(1000 * cpu / max(1, r["tiles"]), 1))
print(json.dumps(r))
PY
}

restart() { if [ "$1" = tessera ]; then start_tessera; else start_iip; fi; }
base_of() { if [ "$1" = tessera ]; then echo "$TBASE"; else echo "$IBASE"; fi; }

for run in $(seq 1 "$RUNS"); do
    # Alternate which server goes first, so drift in the background load
    # does not always favour the same one.
    if [ $((run % 2)) = 1 ]; then order="tessera iipimage"; else order="iipimage tessera"; fi
    for c in 1 4; do
        for s in $order; do
            restart "$s"
            sweep "$s" "a256-c$c" "$run" "$(base_of "$s")" --tile 256 --sf 1 --region "$REGION" --clients "$c"
            sweep "$s" "d256hot-c$c" "$run" "$(base_of "$s")" --tile 256 --sf 1 --region "$REGION" --clients "$c"
        done
    done
    for c in 1 4; do
        for s in $order; do
            restart "$s"
            sweep "$s" "b512-c$c" "$run" "$(base_of "$s")" --tile 512 --sf 1 --region "$REGION" --clients "$c"
        done
    done
    for s in $order; do
        restart "$s"
        sweep "$s" "c-multi-c4" "$run" "$(base_of "$s")" --tile 256 --sf 16 --sf 8 --sf 4 --sf 2 --max-tiles 400 --clients 4
    done
done
load_after=$(cut -d' ' -f1-3 /proc/loadavg)
t_end=$(date +%s)

# --- table ------------------------------------------------------------------
TABLE=$TMP/table.md
python3 - "$RES" "$RUNS" "$load_before" "$load_after" "$((t_end - t_start))" "$IIP_PROCS" "$TESSERA_BUILD" "$(dpkg-query -W -f='${Version}' iipimage-server)" >"$TABLE" <<'PY'
import json, statistics, sys, collections
res, runs, lb, la, secs, procs, build, iipv = sys.argv[1:9]
rows = [json.loads(l) for l in open(res)]
by = collections.defaultdict(list)
for r in rows:
    by[(r["case"], r["server"])].append(r)
cases = [
    ("a256-c1", "(a) 256² tiles, sf 1, cold", 1, 128),
    ("a256-c4", "(a) 256² tiles, sf 1, cold", 4, 128),
    ("b512-c1", "(b) 512² tiles, sf 1, cold", 1, 32),
    ("b512-c4", "(b) 512² tiles, sf 1, cold", 4, 32),
    ("c-multi-c4", "(c) 256² tiles, sf 16,8,4,2, cold", 4, 400),
    ("d256hot-c1", "(d) 256² tiles, sf 1, hot", 1, 128),
    ("d256hot-c4", "(d) 256² tiles, sf 1, hot", 4, 128),
]
def fmt(v):
    return f"{v:.0f}" if v >= 100 else f"{v:.1f}"
def status(rs):
    c = collections.Counter()
    for r in rs:
        for k, v in r["status"].items():
            c[k] += v
    return " ".join(f"{k}×{v}" for k, v in sorted(c.items()))
print(f"Median of {runs} runs (all runs in brackets), tiles/s. Status = HTTP status counts over all runs.")
print("Server CPU = user + system time of the serving processes (Tessera; lighttpd and its iipsrv processes) during the sweep, per tile (median): a measure the shared machine's load does not inflate as much as wall time.")
print(f"Load average before/after: {lb} / {la}; the runs took {secs} s.")
print(f"Tessera: {build}. IIPImage: Debian iipimage-server {iipv} behind lighttpd FastCGI, max-procs {procs}.")
print()
print("| case | clients | tiles | Tessera tiles/s | IIPImage tiles/s | ratio | Tessera ÷ 200/s goal | server CPU ms/tile, Tessera / IIPImage | Tessera codestream decodes | status Tessera / IIPImage |")
print("| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |")
for key, label, clients, tiles in cases:
    t, i = by.get((key, "tessera"), []), by.get((key, "iipimage"), [])
    if not t or not i:
        continue
    tm = statistics.median(r["tiles_per_s"] for r in t)
    im = statistics.median(r["tiles_per_s"] for r in i)
    tr = ", ".join(fmt(r["tiles_per_s"]) for r in t)
    ir = ", ".join(fmt(r["tiles_per_s"]) for r in i)
    short = [r for r in t + i if r["tiles"] != tiles]
    note = " (incomplete: timeout)" if short else ""
    dec = statistics.median(r["decodes"] for r in t if r["decodes"] is not None)
    tc = statistics.median(r["cpu_ms_per_tile"] for r in t)
    ic = statistics.median(r["cpu_ms_per_tile"] for r in i)
    print(f"| {label}{note} | {clients} | {tiles} | **{fmt(tm)}** ({tr}) | **{fmt(im)}** ({ir}) | {tm / im:.1f}× | {tm / 200:.2f} | {tc:.1f} / {ic:.1f} | {dec:.0f} | {status(t)} / {status(i)} |")
PY

mkdir -p "$(dirname "$OUT")"
replace_section "$OUT" benches/compare/iipimage.sh "$TABLE" $'# Tessera and IIPImage on JPEG 2000\n\n'
cat "$TABLE"
echo "(written to $OUT)" >&2
