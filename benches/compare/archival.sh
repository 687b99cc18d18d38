#!/usr/bin/env bash
# Tessera against IIPImage on archival JPEG 2000 masters of real photographs
# (benches/corpus/make.sh: 12000×9000, lossy 9/7, 8 layers, RPCL, precincts,
# SOP/EPH/PLT/TLM; untiled and tiled 1024), in one run, with the defaults of
# each server (Tessera: config/default.toml; IIPImage 1.1 from Debian behind
# lighttpd FastCGI, 2 processes). Every workload starts from a cold server
# (restarted; Tessera with an empty disk tier unless said):
#   first view  info.json + every tile of the level a 1920×1080 viewer shows
#               at home, in the advertised tile size, 6 connections;
#   pass T      every T² tile of every level once, seeded shuffled order,
#               4 clients (tools/sweep.py), for T in TILES;
#   restart     Tessera restarted after its 256 pass, with its disk tier:
#               the same pass again (decodes should be 0), against IIPImage
#               on a pyramidal TIFF of the same image (photo-pyramid.tif);
#   sessions    `tessera loadtest`, 4 viewers, SESSION_SECS s (OpenSeadragon's
#               requests, in the tile size each server advertises).
# For Tessera it adds decodes, tiles encoded eagerly, peak RSS, and the mean
# time per request in each stage (from /metrics' stage histograms).
# Loopback only; everything started here is stopped on exit.
#
#   benches/corpus/make.sh && benches/compare/archival.sh
#
# Environment: CORPUS (target/corpus), TESSERA_BIN (target/release/tessera),
# CLIENTS (4), TILES ("256 512"), MAX_TILES (all), SESSION_SECS (30),
# FILES ("photo-untiled.jp2 photo-tiled1024.jp2"), TESSERA_ENV (extra
# VAR=value settings for Tessera, e.g. "TESSERA_CACHE__DECODED_UNIT=1024"),
# TESSERA_PORT (18194), IIP_PORT (18195).
set -euo pipefail
# shellcheck source=lib.sh source-path=SCRIPTDIR
. "$(dirname "$0")/lib.sh"
REPO=$(cd "$(dirname "$0")/../.." && pwd)
cd "$REPO"
CORPUS=$(cd "${CORPUS:-target/corpus}" && pwd)
BIN=${TESSERA_BIN:-target/release/tessera}
CLIENTS=${CLIENTS:-4}
TILES=${TILES:-256 512}
MAX_TILES=${MAX_TILES:-1000000}
SESSION_SECS=${SESSION_SECS:-30}
TESSERA_ENV=${TESSERA_ENV:-}
FILES=${FILES:-photo-untiled.jp2 photo-tiled1024.jp2}
TPORT=${TESSERA_PORT:-18194}
IPORT=${IIP_PORT:-18195}
ensure_tessera -q "$BIN"
if [ -n "$(missing_packages iipimage-server lighttpd)" ]; then
    apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends iipimage-server lighttpd >/dev/null
fi
TMP=$(mktemp -d /tmp/tessera-archival.XXXXXX)
cp "$BIN" "$TMP/tessera"
TPID=
LPID=
trap cleanup_servers EXIT
write_iipimage_conf --docroot "$TMP" --max-connections 0 --verbosity 0 "$TMP" "$IPORT" "$CORPUS" 2
start_tessera() { # [keep]: keep the disk tier of the previous start
    [ "${1:-}" = keep ] || { rm -rf "$TMP/tiles"; mkdir -p "$TMP/tiles"; }
    env $TESSERA_ENV TESSERA_CACHE__DISK_DIR="$TMP/tiles" "$TMP/tessera" serve --listen "127.0.0.1:$TPORT" --images "$CORPUS" >>"$TMP/tessera.log" 2>&1 &
    TPID=$!
    poll_http "http://127.0.0.1:$TPORT/health" 240 0.25 --max-time 5
}
start_iip() {
    launch_iipimage "$TMP"
    poll_http "http://127.0.0.1:$IPORT/fcgi-bin/iipsrv.fcgi?IIIF=/$1/info.json" 240 0.25 --max-time 5
}
session_row() { # FILE SERVER INFO_URL
    rm -f "$TMP/lt.json"
    "$TMP/tessera" loadtest "$3" --quiet --json "$TMP/lt.json" -c 4 --mode session --seed 1 --warmup 0 \
        --duration "$SESSION_SECS" --timeout 60 >>"$TMP/loadtest.log" 2>&1 || true
    [ -s "$TMP/lt.json" ] || { echo "| $1 | sessions | $2 | loadtest failed |  |  |  |  |  |"; return; }
    F="$1" S="$2" python3 - "$TMP/lt.json" <<'PY'
import json, os, sys
r = json.load(open(sys.argv[1]))
l = r["latency_ms"]
print(f"| {os.environ['F']} | sessions {r['elapsed_s']:.0f} s | {os.environ['S']} | {r['requests']} | {r['requests_per_s']:.1f} | {l['p50']} | {l['p99']} | | errors {r['errors']} |")
PY
}
IIPV=$(dpkg-query -W -f='${Version}' iipimage-server)
row_header
for f in $FILES; do
    T="http://127.0.0.1:$TPORT/iiif/2/$f"
    I="http://127.0.0.1:$IPORT/fcgi-bin/iipsrv.fcgi?IIIF=/$f"
    start_tessera; r=$(sweep "$T" --first-view 1920x1080 --clients 6); x=$(tessera_facts); stop_servers
    row "$f" "first view" Tessera "$r" "$x"
    start_iip "$f"; r=$(sweep "$I" --first-view 1920x1080 --clients 6); stop_servers
    row "$f" "first view" "IIPImage $IIPV" "$r" ""
    for t in $TILES; do
        start_tessera; r=$(sweep "$T" --tile "$t" --all-levels --shuffle 1 --clients "$CLIENTS" --max-tiles "$MAX_TILES"); x=$(tessera_facts); stop_servers
        row "$f" "pass $t" Tessera "$r" "$x"
        if [ "$t" = 256 ]; then
            start_tessera keep; r=$(sweep "$T" --tile "$t" --all-levels --shuffle 1 --clients "$CLIENTS" --max-tiles "$MAX_TILES"); x=$(tessera_facts); stop_servers
            row "$f" "pass $t after restart" "Tessera (disk tier)" "$r" "$x"
        fi
        start_iip "$f"; r=$(sweep "$I" --tile "$t" --all-levels --shuffle 1 --clients "$CLIENTS" --max-tiles "$MAX_TILES"); stop_servers
        row "$f" "pass $t" "IIPImage $IIPV" "$r" ""
    done
    start_tessera; session_row "$f" Tessera "$T/info.json"; x=$(tessera_facts); stop_servers
    echo "| $f | sessions (Tessera's figures) |  |  |  |  |  | $x |  |"
    start_iip "$f"; session_row "$f" "IIPImage $IIPV" "$I/info.json"; stop_servers
done
P=photo-pyramid.tif
start_iip "$P"; r=$(sweep "http://127.0.0.1:$IPORT/fcgi-bin/iipsrv.fcgi?IIIF=/$P" --tile 256 --all-levels --shuffle 1 --clients "$CLIENTS" --max-tiles "$MAX_TILES"); stop_servers
row "$P" "pass 256" "IIPImage $IIPV (pyramidal TIFF)" "$r" ""
echo
echo "Machine: $(nproc) cores, $(free -g | awk '/Mem/{print $2}') GiB; commit $(git rev-parse --short HEAD)$( [ -n "$(git status --porcelain --untracked-files=no)" ] && echo ' + uncommitted changes' || true); $(date -u +%Y-%m-%d). TESSERA_ENV: ${TESSERA_ENV:-none}."
