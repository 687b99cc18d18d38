#!/usr/bin/env bash
# Tessera against IIPImage on a pyramidal TIFF (benches/corpus/make.sh's
# photo-pyramid.tif: the 12000×9000 real-photo master through `vips tiffsave
# --tile --tile-width 256 --tile-height 256 --pyramid --compression jpeg
# --Q 90`), in one run, each server with its defaults (Tessera:
# config/default.toml without the disk tier; IIPImage 1.1 from Debian behind
# lighttpd FastCGI, 2 processes). Workloads, 256² tiles as a viewer asks them
# (on the pages' grid, so Tessera passes the stored JPEG tiles through):
#   pass C      every tile of every level once, seeded shuffled order, C
#               clients (tools/sweep.py), from a cold server;
#   hot C       the same pass again right after, on the warm server.
# Then the same two with `tessera loadtest --mode sweep` as the client
# (Rust, keep-alive connections; every tile of every level once, coarse to
# fine), which is not the limit the Python client is.
# Loopback only; everything started here is stopped on exit.
#
#   benches/corpus/make.sh && benches/compare/tiff.sh
#
# Environment: CORPUS (target/corpus), TESSERA_BIN (target/release/tessera),
# CLIENTS ("1 4"), MAX_TILES (all), TESSERA_PORT (18196), IIP_PORT (18197).
set -euo pipefail
# shellcheck source=lib.sh source-path=SCRIPTDIR
. "$(dirname "$0")/lib.sh"
REPO=$(cd "$(dirname "$0")/../.." && pwd)
cd "$REPO"
CORPUS=$(cd "${CORPUS:-target/corpus}" && pwd)
BIN=${TESSERA_BIN:-target/release/tessera}
CLIENTS=${CLIENTS:-1 4}
MAX_TILES=${MAX_TILES:-1000000}
TPORT=${TESSERA_PORT:-18196}
IPORT=${IIP_PORT:-18197}
F=photo-pyramid.tif
[ -f "$CORPUS/$F" ] || { echo "no $CORPUS/$F: run benches/corpus/make.sh" >&2; exit 1; }
ensure_tessera -q "$BIN"
ensure_packages -q iipimage-server lighttpd
TMP=$(mktemp -d /tmp/tessera-tiff.XXXXXX)
cp "$BIN" "$TMP/tessera"
TPID=
LPID=
trap cleanup_servers EXIT
write_iipimage_conf --docroot "$TMP" --max-connections 0 --verbosity 0 "$TMP" "$IPORT" "$CORPUS" 2
start_iip() {
    launch_iipimage "$TMP"
    poll_http "http://127.0.0.1:$IPORT/fcgi-bin/iipsrv.fcgi?IIIF=/$F/info.json" 240 0.25 --max-time 5
}
IIPV=$(dpkg-query -W -f='${Version}' iipimage-server)
T="http://127.0.0.1:$TPORT/iiif/2/$F"
I="http://127.0.0.1:$IPORT/fcgi-bin/iipsrv.fcgi?IIIF=/$F"
row_header
for c in $CLIENTS; do
    args=(--tile 256 --all-levels --shuffle 1 --clients "$c" --max-tiles "$MAX_TILES")
    start_cold_tessera "$TMP/tessera" "$CORPUS" "$TMP/tessera.log"
    r=$(sweep "$T" "${args[@]}"); row "$F" "pass $c" Tessera "$r" "$(tessera_facts)"
    r=$(sweep "$T" "${args[@]}"); row "$F" "hot $c" Tessera "$r" "$(tessera_facts)"
    stop_servers
    start_iip
    r=$(sweep "$I" "${args[@]}"); row "$F" "pass $c" "IIPImage $IIPV" "$r" ""
    r=$(sweep "$I" "${args[@]}"); row "$F" "hot $c" "IIPImage $IIPV" "$r" ""
    stop_servers
done
echo
# The loadtest client: C viewers sweeping every tile of every level once.
lt_row() { # SERVER WORKLOAD INFO_URL C
    rm -f "$TMP/lt.json"
    "$TMP/tessera" loadtest "$3" --quiet --json "$TMP/lt.json" -c "$4" --mode sweep --tile-size 256 \
        --timeout 60 >>"$TMP/loadtest.log" 2>&1 || true
    [ -s "$TMP/lt.json" ] || { echo "| $F | $2 | $1 | loadtest failed |  |  |  |"; return; }
    python3 - "$TMP/lt.json" "$1" "$2" <<'PY'
import json, sys
r = json.load(open(sys.argv[1]))
l = r["latency_ms"]
print(f"| photo-pyramid.tif | {sys.argv[3]} | {sys.argv[2]} | {r['requests']} | {r['requests_per_s']:.1f} | {l['p50']} | {l['p99']} | errors {r['errors']} |")
PY
}
echo "| file | workload (tessera loadtest --mode sweep) | server | tiles | tiles/s | p50 ms | p99 ms | errors |"
echo "|---|---|---|---:|---:|---:|---:|---|"
for c in $CLIENTS; do
    start_cold_tessera "$TMP/tessera" "$CORPUS" "$TMP/tessera.log"
    lt_row Tessera "sweep $c" "$T/info.json" "$c"
    lt_row Tessera "hot $c" "$T/info.json" "$c"
    stop_servers
    start_iip
    lt_row "IIPImage $IIPV" "sweep $c" "$I/info.json" "$c"
    lt_row "IIPImage $IIPV" "hot $c" "$I/info.json" "$c"
    stop_servers
done
echo
echo "Machine: $(nproc) cores, $(free -g | awk '/Mem/{print $2}') GiB; commit $(git rev-parse --short HEAD)$( [ -n "$(git status --porcelain --untracked-files=no)" ] && echo ' + uncommitted changes' || true); $(date -u +%Y-%m-%d)."
