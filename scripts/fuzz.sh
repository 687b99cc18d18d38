#!/usr/bin/env bash
# Fuzzes Tessera's request parser and codec entry points with libFuzzer
# (cargo-fuzz) for a bounded time, then stops by itself.
#
# Usage: scripts/fuzz.sh [SECONDS_PER_TARGET] [TARGET...]
#   SECONDS_PER_TARGET  how long each target runs (default 60); 10 makes a
#                       quick seeded smoke run, 3600 a long one.
#   TARGET              any of iiif_request codec_probe codec_decode
#                       jp2_header (default: all, one after the other).
#
# Needs a nightly toolchain and cargo-fuzz:
#   rustup toolchain install nightly && cargo install cargo-fuzz --locked
# Seeds: the committed ones (fuzz/seeds/<target>/), earlier finds kept in
# tests/fuzz/, and small images made at run time with python3, libvips
# (`vips`: JPEG, PNG and TIFF variants) and `opj_compress` (Debian:
# libopenjp2-tools; JPEG 2000 variants), whichever are present: a missing
# tool only means fewer seeds.
#
# Everything it writes lies under target/fuzz/ (ignored by git):
#   target/fuzz/corpus/<target>/     the corpus, kept and grown across runs
#   target/fuzz/artifacts/<target>/  crash-*, timeout-*, oom-*, leak-* inputs
#   target/fuzz/logs/<target>.log    libFuzzer's output
# Exit status: 0 when no target found anything, 1 when one did (the files are
# listed), 2 on a usage or build error.
#
# A crash, once found: minimise it, keep it as a regression input, fix it.
#   target/fuzz/<triple>/release/<target> -minimize_crash=1 -max_total_time=60 \
#       -exact_artifact_path=/tmp/min <crash file>
#   (or cargo +nightly fuzz tmin --fuzz-dir fuzz --target-dir target/fuzz
#    --codegen-units 16 <target> <crash file>: without the same flags as the
#    build here, cargo rebuilds everything)
#   cp /tmp/min tests/fuzz/<target>-<short-name>
#   cargo test --test fuzz_regressions   # replays tests/fuzz/* on stable
# The fuzz build sets `--cfg fuzzing`, under which the png crate skips its
# CRC and Adler-32 checks: a PNG input needs its chunk CRCs recomputed before
# it is kept, or a normal build refuses it before reaching the bug.
# Inputs kept under tests/fuzz/ are also seeds here: until the bug is fixed,
# their target stops at once with that crash.
# Environment: FUZZ_RSS_LIMIT_MB (default 2048), FUZZ_TIMEOUT_S (seconds one
# input may take before it counts as a hang, default 30), FUZZ_ARGS (more
# libFuzzer flags, e.g. "-fork=2 -ignore_crashes=1" to use two cores and go
# on past a crash).
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"

ALL_TARGETS=(iiif_request codec_probe codec_decode jp2_header)
SECS="${1:-60}"
if ! [[ "$SECS" =~ ^[0-9]+$ ]] || [ "$SECS" -lt 1 ]; then
    echo "usage: $0 [SECONDS_PER_TARGET] [TARGET...]" >&2
    exit 2
fi
shift || true
TARGETS=("$@")
[ ${#TARGETS[@]} -gt 0 ] || TARGETS=("${ALL_TARGETS[@]}")
for t in "${TARGETS[@]}"; do
    if [[ ! " ${ALL_TARGETS[*]} " =~ " $t " ]]; then
        echo "unknown target $t (known: ${ALL_TARGETS[*]})" >&2
        exit 2
    fi
done

RSS_LIMIT_MB="${FUZZ_RSS_LIMIT_MB:-2048}"
TIMEOUT_S="${FUZZ_TIMEOUT_S:-30}"
WORK="$ROOT/target/fuzz"
TRIPLE="$(rustc +nightly -vV | sed -n 's/^host: //p')"
BIN_DIR="$WORK/$TRIPLE/release"

if ! cargo +nightly fuzz --version >/dev/null 2>&1; then
    echo "cargo-fuzz is missing: cargo install cargo-fuzz --locked" >&2
    exit 2
fi

echo "== building fuzz targets (nightly, AddressSanitizer)"
# 16 codegen units: a much faster build of Tessera's dependencies for a
# slightly slower fuzzer.
cargo +nightly fuzz build --fuzz-dir fuzz --target-dir "$WORK" --codegen-units 16 || exit 2

# ---------------------------------------------------------------------------
# Seeds made at run time (small images; each tool is optional).
# ---------------------------------------------------------------------------
SEEDS="$WORK/seeds"
rm -rf "$SEEDS"
mkdir -p "$SEEDS/images" "$SEEDS/jp2" "$SEEDS/tmp"
made() { [ -s "$1" ] && [ "$(wc -c <"$1")" -le 51200 ]; }
T="$SEEDS/tmp"

if command -v python3 >/dev/null 2>&1; then
    # Source pictures (48x32: gradients and a checkerboard) as PNM for the
    # tools below, and two PNGs straight from the standard library.
    python3 - "$SEEDS" <<'PY'
import struct, sys, zlib
out = sys.argv[1]
w, h = 48, 32
rgb = bytes(v for y in range(h) for x in range(w) for v in (x * 5, y * 8, ((x // 4 + y // 4) % 2) * 200))
gray = rgb[::3]
open(f"{out}/tmp/src.ppm", "wb").write(b"P6\n%d %d\n255\n" % (w, h) + rgb)
open(f"{out}/tmp/src.pgm", "wb").write(b"P5\n%d %d\n255\n" % (w, h) + gray)
open(f"{out}/tmp/src16.pgm", "wb").write(b"P5\n%d %d\n65535\n" % (w, h) + b"".join(struct.pack(">H", v * 257) for v in gray))
def png(path, ctype, data, channels):
    raw = b"".join(b"\0" + data[y * w * channels:(y + 1) * w * channels] for y in range(h))
    chunk = lambda t, d: struct.pack(">I", len(d)) + t + d + struct.pack(">I", zlib.crc32(t + d))
    ihdr = struct.pack(">IIBBBBB", w, h, 8, ctype, 0, 0, 0)
    open(path, "wb").write(b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", zlib.compress(raw)) + chunk(b"IEND", b""))
png(f"{out}/images/py-rgb.png", 2, rgb, 3)
png(f"{out}/images/py-gray.png", 0, gray, 1)
PY
fi

if command -v vips >/dev/null 2>&1 && [ -s "$T/src.ppm" ]; then
    # JPEG and PNG variants (libvips over libjpeg and libpng/spng).
    v() { vips "$@" >/dev/null 2>&1 || true; }
    I="$SEEDS/images"
    v copy "$T/src.ppm" "$I/baseline.jpg[Q=80]"
    v copy "$T/src.ppm" "$I/progressive.jpg[Q=50,interlace]"
    v copy "$T/src.ppm" "$I/444.jpg[Q=95,subsample-mode=off]"
    v copy "$T/src.ppm" "$I/restart.jpg[restart-interval=1]"
    v copy "$T/src.ppm" "$I/optimized.jpg[optimize-coding,strip]"
    v copy "$T/src.pgm" "$I/gray.jpg"
    v colourspace "$T/src.ppm" "$I/cmyk.jpg[strip]" cmyk
    v copy "$T/src.ppm" "$I/interlaced.png[interlace]"
    v copy "$T/src.ppm" "$I/palette.png[palette,colours=16]"
    v copy "$T/src.pgm" "$I/bilevel.png[bitdepth=1]"
    v cast "$T/src.pgm" "$T/g16.v" ushort
    v copy "$T/g16.v" "$I/gray16.png[bitdepth=16]"
    v bandjoin_const "$T/src.ppm" "$I/rgba.png" 128
    v bandjoin_const "$T/src.pgm" "$I/gray-alpha.png" 200
    v copy "$T/src.ppm" "$T/src.png"
    # TIFF variants: every compression Tessera reads, tiled and striped,
    # pyramidal, 16-bit, bilevel, with alpha, CMYK, planar, SubIFD pages.
    v tiffsave "$T/src.ppm" "$I/tiled-jpeg-pyramid.tif" --tile --tile-width 16 --tile-height 16 --pyramid --compression jpeg
    v tiffsave "$T/src.ppm" "$I/tiled-deflate.tif" --tile --tile-width 16 --tile-height 16 --compression deflate
    v tiffsave "$T/src.ppm" "$I/striped-lzw.tif" --compression lzw
    v tiffsave "$T/src.ppm" "$I/striped-packbits.tif" --compression packbits
    v tiffsave "$T/src.ppm" "$I/bigtiff.tif" --bigtiff
    v tiffsave "$T/g16.v" "$I/gray16.tif" --compression deflate
    v tiffsave "$T/src.pgm" "$I/bilevel-g4.tif" --bitdepth 1 --compression ccittfax4
    v tiffsave "$I/rgba.png" "$I/rgba.tif" --tile --tile-width 16 --tile-height 16
    # CMYK, JPEG pages as SubIFDs, and (with libtiff's tiffcp) planar.
    v copy "$T/src.ppm" "$T/src.v"
    v bandjoin_const "$T/src.v" "$T/inks.v" 40
    v copy "$T/inks.v" "$T/cmyk.v" --interpretation cmyk
    v tiffsave "$T/cmyk.v" "$I/cmyk.tif" --tile --tile-width 16 --tile-height 16 --compression lzw
    v tiffsave "$T/src.ppm" "$I/subifd-jpeg.tif" --tile --tile-width 16 --tile-height 16 --pyramid --subifd --compression jpeg
    if command -v tiffcp >/dev/null 2>&1; then
        tiffcp -p separate -c zip "$I/cmyk.tif" "$I/cmyk-planar.tif" 2>/dev/null || true
    fi
fi

if command -v opj_compress >/dev/null 2>&1; then
    # JPEG 2000 variants: containers, tiles, tile-parts, precincts,
    # progressions, layers, code-block sizes, SOP/EPH markers, an image
    # offset, 16 bits and alpha.
    for src in "$T/src.ppm" "$T/src.pgm" "$T/src16.pgm" "$SEEDS/images/rgba.png"; do
        [ -s "$src" ] || continue
        base="$(basename "$src" | tr . -)"
        j() { opj_compress -i "$src" -o "$SEEDS/jp2/$base-$1" "${@:2}" >/dev/null 2>&1 || true; }
        j plain.jp2 -n 4
        j tiled.jp2 -t 16,16 -n 3
        j raw.j2k -n 2
        j lossy-layers.jp2 -r 40,20,10 -I
        j rpcl-precincts.jp2 -p RPCL -c '[32,32],[16,16]' -n 3
        j sop-eph.j2k -SOP -EPH -n 2
        j offset.j2k -d 3,5 -n 2
        j tileparts.jp2 -t 16,16 -TP R -n 3
        j cblk.jp2 -b 8,8 -n 3
    done
fi
cp "$SEEDS"/jp2/* "$SEEDS/images/" 2>/dev/null || true
for f in samples/generated/*; do
    [ -f "$f" ] && made "$f" && cp "$f" "$SEEDS/images/" || true
done
for f in "$SEEDS"/images/* "$SEEDS"/jp2/*; do
    [ -f "$f" ] && ! made "$f" && rm -f "$f"
done
rm -rf "$SEEDS/tmp"

seed_dirs() { # the read-only seed folders of target $1
    local dirs=()
    [ -d "fuzz/seeds/$1" ] && dirs+=("fuzz/seeds/$1")
    case "$1" in
        codec_probe | codec_decode) dirs+=("$SEEDS/images") ;;
        jp2_header) dirs+=("$SEEDS/jp2") ;;
    esac
    if compgen -G "tests/fuzz/$1-*" >/dev/null; then
        mkdir -p "$SEEDS/kept-$1"
        cp tests/fuzz/"$1"-* "$SEEDS/kept-$1/"
        dirs+=("$SEEDS/kept-$1")
    fi
    [ ${#dirs[@]} -eq 0 ] || printf '%s\n' "${dirs[@]}"
}

dict_of() {
    case "$1" in
        iiif_request) echo fuzz/dicts/iiif_request.dict ;;
        jp2_header) echo fuzz/dicts/jp2.dict ;;
        *) echo fuzz/dicts/codec.dict ;;
    esac
}

# ---------------------------------------------------------------------------
# Runs
# ---------------------------------------------------------------------------
mkdir -p "$WORK/logs"
found=()
summary=()
for t in "${TARGETS[@]}"; do
    corpus="$WORK/corpus/$t"
    artifacts="$WORK/artifacts/$t"
    log="$WORK/logs/$t.log"
    mkdir -p "$corpus" "$artifacts"
    mapfile -t seeds < <(seed_dirs "$t")
    before="$(find "$artifacts" -type f | sort)"
    echo "== $t: ${SECS}s (corpus $corpus, seeds: ${seeds[*]:-none})"
    set +e
    # shellcheck disable=SC2086 # FUZZ_ARGS is a list of flags
    "$BIN_DIR/$t" "$corpus" "${seeds[@]}" \
        -max_total_time="$SECS" -rss_limit_mb="$RSS_LIMIT_MB" -timeout="$TIMEOUT_S" \
        -dict="$(dict_of "$t")" -artifact_prefix="$artifacts/" -print_final_stats=1 \
        ${FUZZ_ARGS:-} >"$log" 2>&1
    rc=$?
    set -e
    execs="$(sed -n 's/^stat::number_of_executed_units: *//p' "$log" | tail -n1)" || true
    cov="$(grep -o 'cov: [0-9]*' "$log" | tail -n1 | cut -d' ' -f2)" || true
    # The inputs libFuzzer saved: named in its log (an input found again is
    # not written again, under the same name) or new in the folder.
    new="$( (sed -n 's/.*Test unit written to //p' "$log"
        comm -13 <(echo "$before") <(find "$artifacts" -type f | sort)) | sed '/^$/d' | sort -u)" || true
    summary+=("$(printf '%-14s rc=%-3s executions=%-10s coverage=%s' "$t" "$rc" "${execs:-?}" "${cov:-?}")")
    if [ "$rc" -ne 0 ] || [ -n "$new" ]; then
        echo "!! $t found a problem (exit status $rc); log: $log"
        grep -m1 -E '^==[0-9]+==ERROR|panicked at|deadly signal|ERROR: libFuzzer' "$log" || true
        if [ -n "$new" ]; then
            while IFS= read -r f; do
                echo "   crash input: $f"
                found+=("$t:$f")
            done <<<"$new"
        else
            found+=("$t:(no input saved, see $log)")
        fi
    fi
done

echo "== summary (${SECS}s per target)"
printf '   %s\n' "${summary[@]}"
if [ ${#found[@]} -gt 0 ]; then
    echo "== ${#found[@]} finding(s):"
    printf '   %s\n' "${found[@]}"
    echo "Reproduce: $BIN_DIR/<target> <file>"
    echo "Minimise:  $BIN_DIR/<target> -minimize_crash=1 -max_total_time=60 -exact_artifact_path=/tmp/min <file>"
    echo "Keep:      cp /tmp/min tests/fuzz/<target>-<short-name>  (replayed by: cargo test --test fuzz_regressions;"
    echo "           a PNG needs its chunk CRCs fixed first, see the header of this script)"
    exit 1
fi
echo "== no crash found"
