#!/usr/bin/env bash
# Tessera against IIPImage on archival JPEG 2000 masters of real photographs
# (benches/corpus/make.sh: 12000×9000, lossy 9/7, 8 layers, RPCL, precincts,
# SOP/EPH/PLT/TLM; untiled and tiled 1024), in one run:
#   - Tessera with virtual tiles off (cache.decoded_unit = 0:
#     untiled files region by region, as before virtual tiles),
#   - Tessera with the default virtual tiles (cache.decoded_unit = 512),
#   - IIPImage 1.1 (Debian) behind lighttpd FastCGI, 2 processes.
# Workload: the 256² tiles of every level in a seeded shuffled order, each
# once, 4 clients (tools/sweep.py), each server restarted before each pass
# (cold caches). The untiled file is cut to its first MAX_UNTILED tiles of
# that order (a whole pass of the old path takes minutes).
# Reports tiles/s, p50/p99 and, for Tessera, decodes (/metrics).
# Loopback only; everything started here is stopped on exit.
#
#   benches/corpus/make.sh && benches/compare/archival.sh
#
# Environment: CORPUS (target/corpus), TESSERA_BIN (target/release/tessera),
# CLIENTS (4), MAX_UNTILED (400), FILES ("photo-untiled.jp2 photo-tiled1024.jp2"),
# TESSERA_PORT (18194), IIP_PORT (18195).
set -euo pipefail
REPO=$(cd "$(dirname "$0")/../.." && pwd)
cd "$REPO"
CORPUS=$(cd "${CORPUS:-target/corpus}" && pwd)
BIN=${TESSERA_BIN:-target/release/tessera}
CLIENTS=${CLIENTS:-4}
MAX_UNTILED=${MAX_UNTILED:-400}
FILES=${FILES:-photo-untiled.jp2 photo-tiled1024.jp2}
TPORT=${TESSERA_PORT:-18194}
IPORT=${IIP_PORT:-18195}
[ -x "$BIN" ] || cargo build --release --locked
for p in iipimage-server lighttpd; do
    dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "ok installed" || {
        apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends iipimage-server lighttpd >/dev/null
        break
    }
done
TMP=$(mktemp -d /tmp/tessera-archival.XXXXXX)
cp "$BIN" "$TMP/tessera"
TPID=
LPID=
stop() {
    [ -n "$TPID" ] && { kill "$TPID" 2>/dev/null || true; wait "$TPID" 2>/dev/null || true; TPID=; }
    if [ -n "$LPID" ]; then
        kids=$(pgrep -P "$LPID" 2>/dev/null || true)
        kill "$LPID" 2>/dev/null || true
        wait "$LPID" 2>/dev/null || true
        for k in $kids; do kill "$k" 2>/dev/null || true; done
        LPID=
    fi
}
trap 'stop; rm -rf "$TMP"' EXIT
wait_url() { for _ in $(seq 1 240); do curl -sf -o /dev/null --max-time 5 "$1" && return 0; sleep 0.25; done; return 1; }
cat >"$TMP/lighttpd.conf" <<EOF
server.modules = ("mod_fastcgi")
server.bind = "127.0.0.1"
server.port = $IPORT
server.document-root = "$TMP"
server.errorlog = "$TMP/lighttpd-error.log"
fastcgi.server = ( "/fcgi-bin/iipsrv.fcgi" => ((
  "socket" => "$TMP/iipsrv.sock", "bin-path" => "/usr/lib/iipimage-server/iipsrv.fcgi",
  "check-local" => "disable", "max-procs" => 2,
  "bin-environment" => ( "FILESYSTEM_PREFIX" => "$CORPUS/", "JPEG_QUALITY" => "85", "VERBOSITY" => "0" )
)))
EOF
start_tessera() { # UNIT
    TESSERA_CACHE__DECODED_UNIT=$1 "$TMP/tessera" serve --listen "127.0.0.1:$TPORT" --images "$CORPUS" >>"$TMP/tessera.log" 2>&1 &
    TPID=$!
    wait_url "http://127.0.0.1:$TPORT/health"
}
start_iip() {
    rm -f "$TMP"/iipsrv.sock*
    lighttpd -D -f "$TMP/lighttpd.conf" >>"$TMP/lighttpd.out" 2>&1 &
    LPID=$!
    wait_url "http://127.0.0.1:$IPORT/fcgi-bin/iipsrv.fcgi?IIIF=/$1/info.json"
}
decodes() { curl -s "http://127.0.0.1:$TPORT/metrics" | awk '$1=="tessera_decodes_total"{print $2}'; }
pass() { # BASE_URL FILE
    local max=100000
    [ "$2" = photo-untiled.jp2 ] && max=$MAX_UNTILED
    python3 tools/sweep.py "$1" --tile 256 --all-levels --shuffle 1 --clients "$CLIENTS" --max-tiles "$max" --timeout 900
}
echo "| file | server | tiles | tiles/s | p50 ms | p99 ms | decodes | statuses |"
echo "|---|---|---:|---:|---:|---:|---:|---|"
for f in $FILES; do
    for unit in 0 512; do
        start_tessera "$unit"
        r=$(pass "http://127.0.0.1:$TPORT/iiif/2/$f" "$f")
        d=$(decodes)
        stop
        echo "$r" | python3 -c "import json,sys; r=json.load(sys.stdin); print(f\"| $f | Tessera, decoded_unit=$unit | {r['tiles']} | {r['tiles_per_s']} | {r['p50_ms']} | {r['p99_ms']} | $d | {r['status']} |\")"
    done
    start_iip "$f"
    r=$(pass "http://127.0.0.1:$IPORT/fcgi-bin/iipsrv.fcgi?IIIF=/$f" "$f")
    stop
    echo "$r" | python3 -c "import json,sys; r=json.load(sys.stdin); print(f\"| $f | IIPImage $(dpkg-query -W -f='${Version}' iipimage-server) | {r['tiles']} | {r['tiles_per_s']} | {r['p50_ms']} | {r['p99_ms']} | n/a | {r['status']} |\")"
done
echo
echo "Machine: $(nproc) cores, $(free -g | awk '/Mem/{print $2}') GiB; commit $(git rev-parse --short HEAD)$( [ -n "$(git status --porcelain --untracked-files=no)" ] && echo ' + uncommitted changes' || true); $(date -u +%Y-%m-%d)."
