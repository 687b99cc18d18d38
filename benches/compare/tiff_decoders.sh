#!/usr/bin/env bash
# libtiff against the `tiff` crate (which Tessera uses) decoding the same
# tiles: a 4000×3000 cut of the real-photo master (benches/corpus/make.sh)
# written by libvips as 256² tiles with deflate and with LZW (horizontal
# predictor, vips's default). Every tile of the page, best of 3 runs each.
# JPEG tiles are not compared: Tessera sends them to libjpeg-turbo (or
# passes them through) and never to either library.
#
#   benches/corpus/make.sh && benches/compare/tiff_decoders.sh
set -euo pipefail
# shellcheck source=lib.sh source-path=SCRIPTDIR
. "$(dirname "$0")/lib.sh"
cd "$(dirname "$0")/../.."
CORPUS=${CORPUS:-target/corpus}
[ -f "$CORPUS/photo-master.ppm" ] || { echo "no $CORPUS/photo-master.ppm: run benches/corpus/make.sh" >&2; exit 1; }
ensure_packages -q libtiff-dev libvips-tools gcc
TMP=$(mktemp -d /tmp/tessera-tiffdec.XXXXXX)
trap 'rm -rf "$TMP"' EXIT
vips extract_area "$CORPUS/photo-master.ppm" "$TMP/cut.v" 4000 3000 4000 3000
gcc -O2 -o "$TMP/libtiff" benches/compare/tiff_decoders.c -ltiff
cargo build --release --locked --example tiff_chunks 2>/dev/null
for c in deflate lzw; do
    vips tiffsave "$TMP/cut.v" "$TMP/$c.tif" --tile --tile-width 256 --tile-height 256 --compression "$c"
    echo "$c ($(stat -c %s "$TMP/$c.tif") bytes): $("$TMP/libtiff" "$TMP/$c.tif"); $(target/release/examples/tiff_chunks "$TMP/$c.tif")"
done
echo "Machine: $(nproc) cores; libtiff $(dpkg-query -W -f='${Version}' libtiff-dev); commit $(git rev-parse --short HEAD); $(date -u +%Y-%m-%d)."
