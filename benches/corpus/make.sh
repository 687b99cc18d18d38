#!/usr/bin/env bash
# Build a JPEG 2000 benchmark corpus of real photographs, encoded the way
# digital libraries encode their JP2 masters. See benches/corpus/README.md.
#
#   benches/corpus/make.sh [OUT_DIR]        (default: target/corpus)
#
# Environment knobs:
#   THREADS=1        opj_compress/opj_decompress -threads, VIPS_CONCURRENCY
#   NOISE_SIGMA=4    std-dev of the per-channel gaussian grain added to the mosaic
#   NUM_RES=6        opj -n (resolutions = DWT levels + 1)
#   PSNR=1           decode the JP2s and measure PSNR against the master (0: skip)
#   KEEP_MASTER=1    keep photo-master.ppm (the lossless intermediate, 324 MB)
#   FORCE=0          1: rebuild outputs that already exist
#   W=12000 H=9000   mosaic size (smaller only for a quick smoke test)
set -euo pipefail

HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
REPO="$(cd "$HERE/../.." && pwd)"
OUT="${1:-$REPO/target/corpus}"
THREADS="${THREADS:-1}"
NOISE_SIGMA="${NOISE_SIGMA:-4}"
NUM_RES="${NUM_RES:-6}"
PSNR="${PSNR:-1}"
KEEP_MASTER="${KEEP_MASTER:-1}"
FORCE="${FORCE:-0}"
export VIPS_CONCURRENCY="${VIPS_CONCURRENCY:-$THREADS}"
export VIPS_WARNING=0   # silence "unknown EXIF resolution unit" on the sources

W="${W:-12000}" H="${H:-9000}" COLS=4 ROWS=4   # W/H override only for smoke tests
CELL_W=$((W / COLS)) CELL_H=$((H / ROWS))   # 3000x2250 (4:3)

# 16 distinct photographs (2560x1600 JPEGs) from two Debian wallpaper packages.
PLASMA=/usr/share/wallpapers
MATE=/usr/share/backgrounds/mate/nature
PHOTOS=(
  "$PLASMA/EveningGlow/contents/images/2560x1600.jpg"
  "$MATE/LadyBird.jpg"
  "$PLASMA/Path/contents/images/2560x1600.jpg"
  "$PLASMA/ColorfulCups/contents/images/2560x1600.jpg"
  "$MATE/Garden.jpg"
  "$PLASMA/Grey/contents/images/2560x1600.jpg"
  "$MATE/TwoWings.jpg"
  "$PLASMA/BytheWater/contents/images/2560x1600.jpg"
  "$PLASMA/OneStandsOut/contents/images/2560x1600.jpg"
  "$MATE/Wood.jpg"
  "$PLASMA/FallenLeaf/contents/images/2560x1600.jpg"
  "$MATE/YellowFlower.jpg"
  "$PLASMA/summer_1am/contents/images/2560x1600.jpg"
  "$PLASMA/Kite/contents/images/2560x1600.jpg"
  "$MATE/Aqua.jpg"
  "$PLASMA/DarkestHour/contents/images/2560x1600.jpg"
)

# ---------------------------------------------------------------- helpers
log() { printf '%s\n' "$*" | tee -a "$OUT/build.log" >&2; }

# step NAME CMD...: run CMD with its output captured (shown only if it
# fails), log wall time and, for programs, peak RSS.
step() {
  local name=$1; shift
  local t0 t1 rc=0 rss=""
  t0=$(date +%s.%N)
  if [ -x /usr/bin/time ] && [ "$(type -t "$1")" = file ]; then
    /usr/bin/time -f '%M' -o "$TMP/rss" "$@" >"$TMP/step.out" 2>&1 || rc=$?
    rss=$(tail -n1 "$TMP/rss" 2>/dev/null || true)
  else
    "$@" >"$TMP/step.out" 2>&1 || rc=$?
  fi
  t1=$(date +%s.%N)
  if [ "$rc" != 0 ]; then
    cat "$TMP/step.out" >&2
    log "  $name FAILED (exit $rc)"
    exit "$rc"
  fi
  log "$(awk -v n="$name" -v a="$t0" -v b="$t1" -v r="${rss:-0}" \
    'BEGIN { printf "  %-36s %7.1f s", n, b - a; if (r > 0) printf "   peak RSS %5.0f MiB", r / 1024 }')"
}

need() { [ "$FORCE" = 1 ] || [ ! -s "$1" ]; }

human() { numfmt --to=iec-i --suffix=B --format='%.1f' "$1"; }

# ---------------------------------------------------------------- packages
PKGS=(libvips-tools libopenjp2-tools plasma-workspace-wallpapers mate-backgrounds)
missing=()
for p in "${PKGS[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q 'install ok installed' \
    || missing+=("$p")
done
if [ ${#missing[@]} -gt 0 ]; then
  SUDO=""; [ "$(id -u)" = 0 ] || SUDO=sudo
  echo "installing: ${missing[*]}" >&2
  $SUDO apt-get update
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y --no-install-recommends "${missing[@]}"
fi
for f in "${PHOTOS[@]}"; do [ -r "$f" ] || { echo "missing source photo $f" >&2; exit 1; }; done

mkdir -p "$OUT"
TMP="$OUT/.tmp"
rm -rf "$TMP"; mkdir -p "$TMP"
trap 'rm -rf "$TMP"' EXIT

T_START=$(date +%s.%N)
{
  echo "== corpus build $(date -u +%FT%TZ) on $(uname -n), $(nproc) cpus, THREADS=$THREADS"
  echo "   $(vips --version); opj $(opj_compress -h 2>&1 | grep -oE 'v[0-9]+\.[0-9]+\.[0-9]+' | head -1)" \
       "($(dpkg-query -W -f='${Version}' libopenjp2-tools))"
  echo "   photos: plasma-workspace-wallpapers $(dpkg-query -W -f='${Version}' plasma-workspace-wallpapers)," \
       "mate-backgrounds $(dpkg-query -W -f='${Version}' mate-backgrounds)"
} | tee -a "$OUT/build.log" >&2

MASTER="$OUT/photo-master.ppm"

# ---------------------------------------------------------------- mosaic
build_master() {
  local i=0 cells=()
  for f in "${PHOTOS[@]}"; do
    # resize to cover the 3000x2250 cell (upscale ~1.41x), centre crop
    vips thumbnail "$f" "$TMP/cell$i.v" "$CELL_W" --height "$CELL_H" \
      --crop centre --size both
    cells+=("$TMP/cell$i.v"); i=$((i + 1))
  done
  vips arrayjoin "${cells[*]}" "$TMP/mosaic.v" --across "$COLS"
  rm -f "${cells[@]}"
  # independent gaussian grain per channel (like scanner/sensor noise)
  for b in 0 1 2; do
    vips gaussnoise "$TMP/n$b.v" "$W" "$H" --sigma "$NOISE_SIGMA" --mean 0 --seed $((b + 1))
  done
  vips bandjoin "$TMP/n0.v $TMP/n1.v $TMP/n2.v" "$TMP/noise.v"
  rm -f "$TMP"/n[012].v
  vips add "$TMP/mosaic.v" "$TMP/noise.v" "$TMP/sum.v"
  rm -f "$TMP/noise.v" "$TMP/mosaic.v"
  vips round "$TMP/sum.v" "$TMP/rounded.v" rint
  rm -f "$TMP/sum.v"
  vips cast "$TMP/rounded.v" "$TMP/master.v" uchar   # cast clips to 0..255
  rm -f "$TMP/rounded.v"
  # --strip: no "#vips2ppm <date>" comment, so the file is byte-reproducible
  vips ppmsave "$TMP/master.v" "$TMP/master.ppm" --strip
  rm -f "$TMP/master.v"
  mv "$TMP/master.ppm" "$MASTER"
}

log "steps:"
if need "$MASTER"; then
  step "mosaic ${W}x${H} -> photo-master.ppm" build_master
else
  log "  photo-master.ppm exists, kept (FORCE=1 to rebuild)"
fi

# ---------------------------------------------------------------- JPEG 2000
# Lossy recipe: 9/7, 8 layers, RPCL, precincts 256,256,128..., 64x64 blocks,
# SOP+EPH, PLT+TLM. Precincts are spelt out for every resolution: opj halves
# the last record for each further level, Kakadu repeats it; listing all of
# them gives the Kakadu-style {256,256},{256,256},{128,128} recipe.
PRECINCTS="[256,256],[256,256]"
for ((r = 2; r < NUM_RES; r++)); do PRECINCTS+=",[128,128]"; done
RATES="2560,1280,640,320,160,80,40,20"
COMMON=(-p RPCL -n "$NUM_RES" -c "$PRECINCTS" -b 64,64 -SOP -EPH -PLT -TLM -threads "$THREADS")
LOSSY=(-I -r "$RATES")

encode() { # encode OUTNAME ARGS...
  local name=$1; shift
  if need "$OUT/$name"; then
    # (opj_compress 2.5.0 has no -quiet; step captures its chatter)
    step "opj_compress $name" opj_compress -i "$MASTER" -o "$TMP/$name" "$@"
    mv "$TMP/$name" "$OUT/$name"
  else
    log "  $name exists, kept"
  fi
}

encode photo-untiled.jp2   "${LOSSY[@]}" "${COMMON[@]}"
encode photo-tiled1024.jp2 "${LOSSY[@]}" "${COMMON[@]}" -t 1024,1024
encode photo-tiled512.jp2  "${LOSSY[@]}" "${COMMON[@]}" -t 512,512
encode photo-lossless.jp2  "${COMMON[@]}" -t 1024,1024

# ---------------------------------------------------------------- pyramidal TIFF
if need "$OUT/photo-pyramid.tif"; then
  step "vips tiffsave photo-pyramid.tif" \
    vips tiffsave "$MASTER" "$TMP/photo-pyramid.tif" --tile --tile-width 256 \
      --tile-height 256 --pyramid --compression jpeg --Q 90
  mv "$TMP/photo-pyramid.tif" "$OUT/photo-pyramid.tif"
else
  log "  photo-pyramid.tif exists, kept"
fi

# ---------------------------------------------------------------- checks
psnr_of() { # psnr_of DECODED.ppm -> "all R G B" PSNR in dB, or "exact"
  vips subtract "$1" "$MASTER" "$TMP/diff.v"
  vips stats "$TMP/diff.v" "$TMP/stats.mat"
  rm -f "$TMP/diff.v"
  # .mat: header line, then rows all,R,G,B; cols min max sum sum2 mean dev ...
  awk -v n=$((W * H)) 'NR == 1 { next }
    NR == 2 { minv = $1; maxv = $2 }
    { mse = $4 / (NR == 2 ? 3 * n : n)
      out = out (mse == 0 ? "inf" : sprintf("%.2f", 10 * log(255 * 255 / mse) / log(10))) " " }
    END { printf "%s(diff min %d max %d)", out, minv, maxv }' "$TMP/stats.mat"
}

if [ "$PSNR" = 1 ]; then
  log "full-resolution decode + PSNR vs photo-master.ppm (dB: all R G B):"
  for f in photo-untiled.jp2 photo-tiled1024.jp2 photo-tiled512.jp2 photo-lossless.jp2; do
    step "opj_decompress $f" \
      opj_decompress -i "$OUT/$f" -o "$TMP/dec.ppm" -threads "$THREADS" -quiet
    log "    PSNR $f: $(psnr_of "$TMP/dec.ppm")"
    rm -f "$TMP/dec.ppm"
  done
  step "vips decode photo-pyramid.tif" vips copy "$OUT/photo-pyramid.tif" "$TMP/dec.ppm"
  log "    PSNR photo-pyramid.tif: $(psnr_of "$TMP/dec.ppm")"
  rm -f "$TMP/dec.ppm"
fi

T_END=$(date +%s.%N)
log "$(awk -v a="$T_START" -v b="$T_END" 'BEGIN { printf "total build time %.0f s", b - a }')"

# ---------------------------------------------------------------- report
{
  echo
  echo "files (sha256 truncated to 16 hex digits):"
  for f in photo-master.ppm photo-untiled.jp2 photo-tiled1024.jp2 photo-tiled512.jp2 \
           photo-lossless.jp2 photo-pyramid.tif; do
    [ -e "$OUT/$f" ] || continue
    s=$(stat -c %s "$OUT/$f")
    sum=$(sha256sum "$OUT/$f" | cut -c1-16)
    awk -v f="$f" -v s="$s" -v h="$(human "$s")" -v px=$((W * H)) -v sum="$sum" \
      'BEGIN { printf "  %-20s %10d B %9s %7.3f bpp %5.1f:1  %s\n", f, s, h, s * 8 / px, px * 3 / s, sum }'
  done
  echo
  python3 "$HERE/jp2markers.py" "$OUT"/photo-*.jp2
  echo
  pages=$(vipsheader -f n-pages "$OUT/photo-pyramid.tif")
  echo "photo-pyramid.tif: $pages pages (pyramid levels), 256x256 JPEG Q90 tiles:"
  for ((p = 0; p < pages; p++)); do
    printf '  %s\n' "$(vipsheader "$OUT/photo-pyramid.tif[page=$p]" | sed 's/^[^:]*: //')"
  done
} | tee "$OUT/facts.txt" | tee -a "$OUT/build.log" >&2

for f in "$OUT"/photo-*.jp2; do
  opj_dump -i "$f" > "$f.dump.txt" 2>&1 || true
done
[ "$KEEP_MASTER" = 1 ] || rm -f "$MASTER"
echo "done: $OUT (build.log, facts.txt, *.dump.txt)" >&2
