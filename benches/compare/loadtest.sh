#!/usr/bin/env bash
# Tessera against IIPImage (Debian's iipimage-server behind lighttpd FastCGI)
# with `tessera loadtest`, on the tiled JPEG 2000 (samples/generated/large.jp2)
# and the largest JPEG in samples/generated. Loopback only; everything
# started here is stopped on exit.
#
#   benches/compare/loadtest.sh            # from the repository root or anywhere
#
# Both servers get identical requests: `--tile-size T` replaces the tiles
# each info.json advertises (Tessera and IIPImage advertise different ones)
# by T² tiles at scale factors 1, 2, 4, ... for each T in TILES. Cases, per
# image and tile size, each the median of RUNS runs:
#   sweep, cold     every tile of every level once, coarse to fine (--mode
#                   sweep), the server restarted just before (empty caches),
#                   1 and 4 viewers
#   sessions, hot   right after that sweep, without restart: the same number
#                   of viewers zooming and panning (--mode session, seed 1,
#                   1 s warm-up) for SESSION_DURATION s; every tile they ask
#                   was asked by the sweep, so caches are hot
# A sweep stops after DURATION s if not done (marked "incomplete"). (A hot
# sweep is not measured: a sweep from cache takes a fraction of a second.)
# Debian's iipsrv 1.1 serves JPEG 2000 and TIFF but not plain JPEG: the JPEG
# rows then say n/a for IIPImage (the script checks, it does not assume).
#
# Writes the Markdown table between markers in OUT (created when missing; the
# rest of the file is kept) and prints it.
#
# Environment: RUNS (3), TILES (tile sizes, "256 512"), DURATION (cap per sweep, s, 120),
# SESSION_DURATION (hot sessions, s, 10), TESSERA_PORT (18184), IIP_PORT (18185), IIP_PROCS
# (iipsrv FastCGI processes, 2), OUT (docs/bench/loadtest.md),
# TESSERA_BIN (the server; default target/release/tessera, built if missing),
# LOADTEST_BIN (the binary whose `loadtest` runs; default TESSERA_BIN),
# REPO (the repository root; default this script's ../..).
#
# On a fresh machine it installs iipimage-server and lighttpd with apt-get
# (only when missing). On a systemd machine the packages' own services may
# start (lighttpd on :80, iipsrv on :9000); this script neither uses nor stops them.
set -euo pipefail
# shellcheck source=lib.sh source-path=SCRIPTDIR
. "$(dirname "$0")/lib.sh"
# Cold runs on every start: no disk tile tier (archival.sh measures it).
export TESSERA_CACHE__DISK_MAX_BYTES=0

REPO=${REPO:-$(cd "$(dirname "$0")/../.." && pwd)}
cd "$REPO"
RUNS=${RUNS:-3}
TILES=${TILES:-256 512}
DURATION=${DURATION:-120}
SESSION_DURATION=${SESSION_DURATION:-10}
[ "$SESSION_DURATION" != 0 ] || { echo "SESSION_DURATION must be more than 0" >&2; exit 1; }
TPORT=${TESSERA_PORT:-18184}
IPORT=${IIP_PORT:-18185}
IIP_PROCS=${IIP_PROCS:-2}
OUT=${OUT:-docs/bench/loadtest.md}
IMAGES=$REPO/samples/generated
JP2=$IMAGES/large.jp2

# --- packages -------------------------------------------------------------
ensure_iipimage
IIP_VERSION=$(dpkg-query -W -f='${Version}' iipimage-server)

# --- binaries -------------------------------------------------------------
if [ -z "${TESSERA_BIN:-}" ]; then
    TESSERA_BIN=target/release/tessera
    ensure_tessera "$TESSERA_BIN"
fi
LOADTEST_BIN=${LOADTEST_BIN:-$TESSERA_BIN}
[ -x "$TESSERA_BIN" ] || { echo "TESSERA_BIN $TESSERA_BIN is not executable" >&2; exit 1; }
[ -x "$LOADTEST_BIN" ] || { echo "LOADTEST_BIN $LOADTEST_BIN is not executable" >&2; exit 1; }

TMP=$(mktemp -d /tmp/tessera-loadtest.XXXXXX)
# Private copies, so a rebuild by someone else during the run cannot swap a
# binary between two restarts.
cp "$TESSERA_BIN" "$TMP/tessera"
cp "$LOADTEST_BIN" "$TMP/loadtest"
TESSERA_BUILD=$(describe_build "$TESSERA_BIN")

TPID=
LPID=
trap cleanup_servers EXIT
trap 'exit 130' INT TERM

start_tessera() {
    # With large.jp2 missing, run with the default source.root
    # (samples/generated) from the repository root: the first start
    # generates the samples there, in the background.
    local args=()
    [ -f "$JP2" ] && args=(--images "$IMAGES")
    restart_tessera "$TMP" "$TPORT" "$JP2" "http://127.0.0.1:$TPORT/health" "${args[@]}"
}

write_iipimage_conf "$TMP" "$IPORT" "$IMAGES" "$IIP_PROCS"

IIP="http://127.0.0.1:$IPORT/fcgi-bin/iipsrv.fcgi?IIIF="
start_iip() {
    restart_iipimage "$TMP" "$IIP/large.jp2/info.json"
}

# --- start both once, see what they serve -----------------------------------
for port in "$TPORT" "$IPORT"; do
    require_free_port "$port" "port $port is already in use; set TESSERA_PORT / IIP_PORT"
done
echo "== starting Tessera on :$TPORT" >&2
start_tessera
echo "== starting lighttpd + iipsrv on :$IPORT (max-procs $IIP_PROCS)" >&2
start_iip

JPG=$(find "$IMAGES" -maxdepth 1 -type f -iname '*.jpg' -printf '%s %f\n' | sort -n | tail -1 | cut -d' ' -f2-)
IMGS=(large.jp2)
[ -n "$JPG" ] && IMGS+=("$JPG")
declare -A IIP_OK
for img in "${IMGS[@]}"; do
    code=$(curl -s -o "$TMP/iip-info.json" -w '%{http_code}' --max-time 30 "$IIP/$img/info.json" || true)
    if [ "$code" = 200 ] && python3 -c 'import json,sys; json.load(open(sys.argv[1]))["width"]' "$TMP/iip-info.json" 2>/dev/null; then
        IIP_OK[$img]=1
    else
        IIP_OK[$img]=0
        echo "== IIPImage ($IIP_VERSION) does not serve $img (info.json: HTTP $code): its rows say n/a" >&2
    fi
    curl -sf -o /dev/null --max-time 30 "http://127.0.0.1:$TPORT/iiif/2/$img/info.json" ||
        { echo "Tessera does not serve $img" >&2; exit 1; }
done

# --- the runs ---------------------------------------------------------------
RES=$TMP/results.jsonl
: >"$RES"
load_before=$(cut -d' ' -f1-3 /proc/loadavg)
t_start=$(date +%s)

url_of() { # SERVER IMAGE
    if [ "$1" = tessera ]; then echo "http://127.0.0.1:$TPORT/iiif/2/$2/info.json"; else echo "$IIP/$2/info.json"; fi
}
restart() { if [ "$1" = tessera ]; then start_tessera; else start_iip; fi; }

lt() { # SERVER IMAGE TILE CASE VIEWERS RUN ARGS...
    local server=$1 image=$2 tile=$3 case=$4 viewers=$5 run=$6
    shift 6
    local json="$TMP/r.json"
    rm -f "$json"
    if ! "$TMP/loadtest" loadtest "$(url_of "$server" "$image")" --quiet --json "$json" --tile-size "$tile" \
        --timeout 60 -c "$viewers" "$@" >>"$TMP/loadtest.log" 2>&1; then
        echo "loadtest failed ($server $image $case); last lines of its log:" >&2
        tail -5 "$TMP/loadtest.log" >&2
        return 1
    fi
    python3 - "$json" "$server" "$image" "$tile" "$case" "$viewers" "$run" <<'PY' | tee -a "$RES" >&2
import json, sys
r = json.load(open(sys.argv[1]))
server, image, tile, case, viewers, run = sys.argv[2:8]
l = r["latency_ms"]
print(json.dumps(dict(server=server, image=image, tile=int(tile), case=case, viewers=int(viewers), run=int(run),
    requests=r["requests"], rps=round(r["requests_per_s"], 2), mib_s=round(r["bytes_per_s"] / 2**20, 2),
    p50=l["p50"], p99=l["p99"], errors=r["errors"], errors_by_kind=r["errors_by_kind"],
    stopped_by=r["stopped_by"], elapsed_s=round(r["elapsed_s"], 2))))
PY
}

for run in $(seq 1 "$RUNS"); do
    # Alternate which server goes first, so drift in the background load
    # does not always favour the same one.
    if [ $((run % 2)) = 1 ]; then order="tessera iipimage"; else order="iipimage tessera"; fi
    for img in "${IMGS[@]}"; do
        for tile in $TILES; do
            for s in $order; do
                [ "$s" = iipimage ] && [ "${IIP_OK[$img]}" = 0 ] && continue
                for c in 1 4; do
                    restart "$s"
                    lt "$s" "$img" "$tile" sweep-cold "$c" "$run" --mode sweep --duration "$DURATION"
                    lt "$s" "$img" "$tile" sessions-hot "$c" "$run" --mode session --seed 1 --warmup 1 \
                        --duration "$SESSION_DURATION"
                done
            done
        done
    done
done
load_after=$(cut -d' ' -f1-3 /proc/loadavg)
t_end=$(date +%s)

# --- table ------------------------------------------------------------------
TABLE=$TMP/table.md
CPU=$(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2- | sed 's/^ *//' || echo '?')
python3 - "$RES" "$RUNS" "$load_before" "$load_after" "$((t_end - t_start))" "$IIP_PROCS" "$TESSERA_BUILD" \
    "$IIP_VERSION" "$TILES" "$DURATION" "$SESSION_DURATION" "$(nproc)" "$CPU" "$(date -u +%Y-%m-%dT%H:%MZ)" \
    "${IMGS[*]}" >"$TABLE" <<'PY'
import collections, json, statistics, sys
(res, runs, lb, la, secs, procs, build, iipv, tiles, dur, sdur, ncpu, cpu, when, imgs) = sys.argv[1:16]
rows = [json.loads(l) for l in open(res)]
by = collections.defaultdict(list)
for r in rows:
    by[(r["image"], r["tile"], r["case"], r["viewers"], r["server"])].append(r)
print(f"Machine: {ncpu} CPUs ({cpu}); {when}; load average before/after {lb} / {la}; the runs took {secs} s.")
print(f"Tessera: {build}. IIPImage: Debian iipimage-server {iipv} behind lighttpd FastCGI, max-procs {procs}.")
print(f"Requests: `tessera loadtest --tile-size T` (T² tiles at scale factors 1, 2, 4, … for both servers, "
      f"Image API 2 URLs, `w,` sizes); sweeps capped at {dur} s; hot sessions {sdur} s after a 1 s warm-up, "
      f"right after the cold sweep on the same server. "
      f"Median of {runs} runs (all runs in brackets). Ratio = Tessera req/s ÷ IIPImage req/s.")
print()
print("| image | tile | case | viewers | requests | Tessera req/s | IIPImage req/s | ratio | p50 ms Tessera / IIPImage | p99 ms Tessera / IIPImage | MiB/s Tessera / IIPImage | errors Tessera / IIPImage |")
print("| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |")
labels = {"sweep-cold": "sweep, cold", "sessions-hot": "sessions, hot"}
def fmt(v):
    return f"{v:.0f}" if v >= 100 else f"{v:.1f}"
def med(rs, k):
    return statistics.median(r[k] for r in rs)
for img, tile, case, c in [(m, int(t), k, c) for m in imgs.split() for t in tiles.split()
                           for k in ("sweep-cold", "sessions-hot") for c in (1, 4)]:
            t = by.get((img, tile, case, c, "tessera"), [])
            i = by.get((img, tile, case, c, "iipimage"), [])
            if not t:
                continue
            inc = [r for r in t + i if r["stopped_by"] == "duration" and case == "sweep-cold"]
            label = labels[case] + (" (incomplete: duration)" if inc else "")
            reqs = f"{med(t, 'requests'):.0f}" + (f" / {med(i, 'requests'):.0f}" if i else "")
            tr = f"**{fmt(med(t, 'rps'))}** ({', '.join(fmt(r['rps']) for r in t)})"
            terr = sum(r["errors"] for r in t)
            if i:
                ir = f"**{fmt(med(i, 'rps'))}** ({', '.join(fmt(r['rps']) for r in i)})"
                ratio = f"{med(t, 'rps') / med(i, 'rps'):.1f}×" if med(i, "rps") > 0 else "n/a"
                p50 = f"{med(t, 'p50'):.1f} / {med(i, 'p50'):.1f}"
                p99 = f"{med(t, 'p99'):.1f} / {med(i, 'p99'):.1f}"
                mib = f"{med(t, 'mib_s'):.1f} / {med(i, 'mib_s'):.1f}"
                errs = f"{terr} / {sum(r['errors'] for r in i)}"
            else:
                ir, ratio = "n/a", "n/a"
                p50 = f"{med(t, 'p50'):.1f} / n/a"
                p99 = f"{med(t, 'p99'):.1f} / n/a"
                mib = f"{med(t, 'mib_s'):.1f} / n/a"
                errs = f"{terr} / n/a"
            print(f"| {img} | {tile}² | {label} | {c} | {reqs} | {tr} | {ir} | {ratio} | {p50} | {p99} | {mib} | {errs} |")
na = [img for img in imgs.split() if not any(k[0] == img and k[4] == "iipimage" for k in by)]
if na:
    print()
    print(f"n/a: Debian's iipsrv {iipv} does not serve {', '.join(na)} (its info.json answers an error: "
          "this version reads TIFF and JPEG 2000 only).")
errs = collections.Counter()
for r in rows:
    for k, v in r["errors_by_kind"].items():
        errs[(r["server"], k)] += v
if errs:
    print()
    print("Errors by kind: " + ", ".join(f"{s} {k}×{v}" for (s, k), v in sorted(errs.items())))
PY

mkdir -p "$(dirname "$OUT")"
replace_section "$OUT" benches/compare/loadtest.sh "$TABLE" "# Load test: Tessera and IIPImage

Viewer-like load from \`tessera loadtest\` (see \`tessera loadtest --help\`) against Tessera and IIPImage on \
the same images and the same requests. Regenerate with \`benches/compare/loadtest.sh\`.
"
cat "$TABLE"
echo "(written to $OUT)" >&2
