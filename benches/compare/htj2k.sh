#!/usr/bin/env bash
# HTJ2K (JPEG 2000 part 15) decoders side by side on the real-photo master
# (benches/corpus/make.sh's photo-master.ppm, 12000×9000) encoded by
# OpenJPH's `ojph_compress` (tiles 1024, 9/7, qstep 0.025: about 1.1 bpp,
# like the lossy archival masters): Debian's OpenJPH (`ojph_expand`)
# against Debian's OpenJPEG (`opj_decompress`, one thread) on a whole image
# at full resolution, a whole image at 1/8, and single codestream tiles
# (OpenJPH 0.9 has no tile or region access); then Tessera (OpenJPEG 2.5.3
# inside) serving a shuffled pass of 256² tiles of that file against the
# same pass over the classic-coded tiled master (photo-tiled1024.jp2).
# Each timing is the best of RUNS, in CPU seconds (user).
#
#   benches/corpus/make.sh && benches/compare/htj2k.sh
#
# Environment: CORPUS (target/corpus), TESSERA_BIN (target/release/tessera),
# RUNS (3), TESSERA_PORT (18198).
set -euo pipefail
# shellcheck source=lib.sh source-path=SCRIPTDIR
. "$(dirname "$0")/lib.sh"
REPO=$(cd "$(dirname "$0")/../.." && pwd)
cd "$REPO"
CORPUS=$(cd "${CORPUS:-target/corpus}" && pwd)
BIN=${TESSERA_BIN:-target/release/tessera}
RUNS=${RUNS:-3}
TPORT=${TESSERA_PORT:-18198}
HT=$CORPUS/photo-ht1024.j2c
[ -f "$CORPUS/photo-master.ppm" ] || { echo "no $CORPUS/photo-master.ppm: run benches/corpus/make.sh" >&2; exit 1; }
ensure_packages -q openjph-tools libopenjp2-tools time
ensure_tessera -q "$BIN"
if [ ! -f "$HT" ]; then
    ojph_compress -i "$CORPUS/photo-master.ppm" -o "$HT.tmp" -tile_size "{1024,1024}" -qstep 0.025 >/dev/null
    mv "$HT.tmp" "$HT"
fi
TMP=$(mktemp -d /tmp/tessera-htj2k.XXXXXX)
TPID=
LPID=
trap 'cleanup_servers; rm -rf "$TMP"' EXIT
# Best user CPU seconds of RUNS runs of COMMAND...
best() {
    local i t b=
    for ((i = 0; i < RUNS; i++)); do
        /usr/bin/time -o "$TMP/time" -f %U "$@" >/dev/null 2>&1
        t=$(tail -1 "$TMP/time")
        if [ -z "$b" ] || awk -v t="$t" -v b="$b" 'BEGIN{exit !(t < b)}'; then b=$t; fi
    done
    echo "$b"
}
echo "File: $(basename "$HT"), $(stat -c %s "$HT") bytes; OpenJPH $(dpkg-query -W -f='${Version}' openjph-tools), OpenJPEG $(dpkg-query -W -f='${Version}' libopenjp2-tools)."
echo
echo "| decode | OpenJPH s | OpenJPEG s |"
echo "|---|---:|---:|"
echo "| whole image, full resolution | $(best ojph_expand -i "$HT" -o "$TMP/a.ppm") | $(best opj_decompress -threads 1 -i "$HT" -o "$TMP/b.ppm") |"
echo "| whole image at 1/8 | $(best ojph_expand -i "$HT" -o "$TMP/a.ppm" -skip_res 3) | $(best opj_decompress -threads 1 -i "$HT" -o "$TMP/b.ppm" -r 3) |"
for t in 0 50 100; do
    echo "| codestream tile $t (1024²) | no tile access | $(best opj_decompress -threads 1 -i "$HT" -o "$TMP/b.ppm" -t "$t") |"
done
echo
row_header
for f in "$(basename "$HT")" photo-tiled1024.jp2; do
    start_cold_tessera "$BIN" "$CORPUS" "$TMP/tessera.log"
    r=$(sweep "http://127.0.0.1:$TPORT/iiif/2/$f" --tile 256 --all-levels --shuffle 1 --clients 4 --max-tiles 1000000)
    row "$f" "pass 256" Tessera "$r" "$(tessera_facts)"
    stop_servers
done
echo
echo "Machine: $(nproc) cores, $(free -g | awk '/Mem/{print $2}') GiB; commit $(git rev-parse --short HEAD); $(date -u +%Y-%m-%d)."
