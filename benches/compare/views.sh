#!/usr/bin/env bash
# Per-view latency (#31): how long a viewer waits from a gesture until the
# whole viewport is sharp, Tessera against IIPImage in one run, on the
# real-photo archival masters (benches/corpus/make.sh). Every row starts
# from a cold server (restarted; Tessera with no disk tier). Each viewer
# makes one session with `tessera loadtest --mode views --sessions 1`:
# info.json, the home view of a 1920×1080 viewport, zoom-ins by 2 towards
# its own point down to full resolution, then 4 pans by half a viewport;
# every new tile of a view asked at once on 6 connections, in the tile size
# the server advertises; THINK seconds between views. Rows: Tessera with 1
# and 4 viewers without pause and 4 viewers with a 1 s pause; IIPImage 1.1
# (Debian, behind lighttpd FastCGI, 2 processes) with 4 viewers without
# pause. Loopback only; everything started here is stopped on exit.
#
#   benches/corpus/make.sh && benches/compare/views.sh
#
# Environment: CORPUS (target/corpus), TESSERA_BIN (target/release/tessera),
# FILES ("photo-untiled.jp2 photo-tiled1024.jp2 photo-pyramid.tif"), SEED
# (1), NO_IIP=1 (Tessera only), OUT (docs/bench/views.md), TESSERA_PORT
# (18197), IIP_PORT (18198).
set -euo pipefail
# shellcheck source=lib.sh source-path=SCRIPTDIR
. "$(dirname "$0")/lib.sh"
REPO=$(cd "$(dirname "$0")/../.." && pwd)
cd "$REPO"
CORPUS=$(cd "${CORPUS:-target/corpus}" && pwd)
BIN=${TESSERA_BIN:-target/release/tessera}
FILES=${FILES:-photo-untiled.jp2 photo-tiled1024.jp2 photo-pyramid.tif}
SEED=${SEED:-1}
OUT=${OUT:-docs/bench/views.md}
TPORT=${TESSERA_PORT:-18197}
IPORT=${IIP_PORT:-18198}
ensure_tessera -q "$BIN"
if [ -z "${NO_IIP:-}" ] && [ -n "$(missing_packages iipimage-server lighttpd)" ]; then
    apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends iipimage-server lighttpd >/dev/null
fi
TMP=$(mktemp -d /tmp/tessera-views.XXXXXX)
cp "$BIN" "$TMP/tessera"
TPID=
LPID=
trap cleanup_servers EXIT
[ -n "${NO_IIP:-}" ] || write_iipimage_conf --docroot "$TMP" --max-connections 0 --verbosity 0 "$TMP" "$IPORT" "$CORPUS" 2
RES=$TMP/results.txt
: >"$RES"

# views SERVER FILE INFO_URL VIEWERS THINK: one cold run, a result line.
views() {
    rm -f "$TMP/lt.json"
    "$TMP/tessera" loadtest "$3" --quiet --json "$TMP/lt.json" --mode views --sessions 1 -c "$4" --per-viewer 6 \
        --think "$5" --viewport 1920x1080 --pans 4 --seed "$SEED" --warmup 0 --duration 1200 --timeout 120 \
        >>"$TMP/loadtest.log" 2>&1 || true
    if [ -s "$TMP/lt.json" ]; then
        echo "$1 $2 $4 $5 $(python3 -c 'import json,sys; print(json.dumps(json.load(open(sys.argv[1]))))' "$TMP/lt.json")" >>"$RES"
    else
        echo "$1 $2 $4 $5 {}" >>"$RES"
    fi
}
for f in $FILES; do
    T="http://127.0.0.1:$TPORT/iiif/2/$f/info.json"
    for run in "1 0" "4 0" "4 1"; do
        set -- $run
        start_cold_tessera "$TMP/tessera" "$CORPUS" "$TMP/tessera.log"
        views Tessera "$f" "$T" "$1" "$2"
        stop_tessera
        echo "views $f Tessera $run done" >&2
    done
    if [ -z "${NO_IIP:-}" ]; then
        I="http://127.0.0.1:$IPORT/fcgi-bin/iipsrv.fcgi?IIIF=/$f/info.json"
        launch_iipimage "$TMP"
        poll_http "$I" 240 0.25 --max-time 5
        views "IIPImage $(dpkg-query -W -f='${Version}' iipimage-server)" "$f" "$I" 4 0
        stop_iipimage
        echo "views $f IIPImage done" >&2
    fi
done

TABLE=$TMP/table.md
python3 - "$RES" >"$TABLE" <<'PY'
import json, sys
print("| master | server | viewers | pause s | views | view p50 ms | p90 ms | max ms | home p90 | zoom p90 | pan p90 | tiles | tile p99 ms | errors |")
print("|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|")
for line in open(sys.argv[1]):
    parts = line.split(" ")
    # "IIPImage <version>" holds a space.
    if parts[0] == "IIPImage":
        server, rest = f"IIPImage {parts[1]}", parts[2:]
    else:
        server, rest = parts[0], parts[1:]
    f, viewers, think, js = rest[0], rest[1], rest[2], " ".join(rest[3:])
    r = json.loads(js)
    v = r.get("views")
    if not v:
        print(f"| {f} | {server} | {viewers} | {think} | run failed | | | | | | | | | |")
        continue
    l, k = v["latency_ms"], v["by_kind"]
    p90 = lambda kind: f"{k[kind]['p90']:.0f}" if kind in k else ""
    print(f"| {f} | {server} | {viewers} | {think} | {v['views']} | {l['p50']:.0f} | {l['p90']:.0f} | {l['max']:.0f} | "
          f"{p90('home')} | {p90('zoom')} | {p90('pan')} | {v['tiles']} | {r['latency_ms']['p99']:.0f} | {r['errors']} |")
PY
replace_section "$OUT" benches/compare/views.sh "$TABLE" $'# Per-view latency\n\n' \
    " on $(nproc) CPUs, $(describe_build "$BIN"), seed $SEED"
cat "$TABLE"
