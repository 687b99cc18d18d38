#!/usr/bin/env bash
# The GPU transform backend against the CPU path, side by side in one run,
# for issue 19's figures; writes them to docs/bench/gpu-hardware.md with the
# adapter named. Two parts:
#
#   1. the transform stage alone: the criterion bench benches/gpu_transform.rs
#      (RGB 1024²→256², 4096²→512², 8192²→1024², 4096²→512² turned and gray,
#      a sub-pixel crop of a reduced decode to 1024²), CPU and GPU;
#   2. end to end: Tessera on the same images, cold (no disk tier), started
#      with transform.backend = "cpu", then "gpu" with gpu_min_pixels = 0
#      (every transform on the GPU, to find the crossover), then "gpu" with
#      the crossover the server measures at start (gpu_min_pixels =
#      "measure", the default; the measured sizes are logged and copied into
#      the report); each answers a sweep of every 256² tile of
#      every level once (`tessera loadtest --mode sweep`, 4 viewers) and a set
#      of whole-image downscales (full/!N,N/ for N = 256 … 2048, each 3 times);
#      the table gives tiles/s, p50/p99 and the mean transform ms a request
#      from the server's own stage histogram.
#
#   benches/compare/gpu.sh [IMAGES_DIR]
#
# IMAGES_DIR (default target/corpus) holds the masters, e.g. the real-photo
# photo-tiled1024.jp2 of benches/corpus. Binaries: TESSERA_BIN (default
# target/release/tessera) and GPU_BENCH_BIN (the gpu_transform bench binary;
# default: `cargo bench --bench gpu_transform` builds and runs it). Neither is
# built when given, so a machine without Rust can run this with binaries
# built elsewhere (strip them to carry them). It needs a Vulkan loader and
# driver on that machine; without a hardware adapter `transform.backend =
# "gpu"` takes a software one (lavapipe), which the table then names: such
# figures say the script works, not what a GPU does.
set -euo pipefail
. "$(dirname "$0")/lib.sh"
cd "$(dirname "$0")/../.."

images=${1:-target/corpus}
bin=${TESSERA_BIN:-target/release/tessera}
out=docs/bench/gpu-hardware.md
TPID=''
TPORT=${TPORT:-8193}
trap 'stop_pid TPID' EXIT
ensure_tessera "$bin"
require_free_port "$TPORT" "port $TPORT is in use; set TPORT"
tmp=$(mktemp -d /tmp/tessera-gpu.XXXXXX)
trap 'stop_pid TPID; rm -rf "$tmp"' EXIT
masters=$(cd "$images" && ls -- *.jp2 *.jpg *.tif 2>/dev/null | head -3 || true)
[ -n "$masters" ] || { echo "no .jp2, .jpg or .tif in $images" >&2; exit 1; }

card=$(nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv,noheader 2>/dev/null || echo "no nvidia-smi")

echo "== transform stage (criterion)" >&2
if [ -n "${GPU_BENCH_BIN:-}" ]; then
    "$GPU_BENCH_BIN" --bench >"$tmp/criterion.txt" 2>&1
else
    cargo bench --locked --bench gpu_transform >"$tmp/criterion.txt" 2>&1
fi
adapter=$(grep -m1 '^GPU adapter' "$tmp/criterion.txt" || echo "GPU adapter: none")

# One server run: BACKEND MIN_PIXELS LABEL
run() {
    local backend=$1 min=$2 label=$3 m json facts log
    log="$tmp/$label.log"
    TESSERA_TRANSFORM__BACKEND=$backend TESSERA_TRANSFORM__GPU_MIN_PIXELS=$min \
        start_cold_tessera "$bin" "$images" "$log"
    grep -m1 -o 'transform backend[^"]*' "$log" >&2 || true
    if [ "$min" = measure ]; then
        # Jobs wait for the measurement (on the CPU meanwhile): let it end first.
        for _ in $(seq 60); do
            grep -q 'GPU crossover measured' "$log" && break
            sleep 1
        done
        grep -m1 'GPU crossover measured' "$log" >"$tmp/crossover.txt" || echo "no crossover line in the log" >"$tmp/crossover.txt"
    fi
    for m in $masters; do
        json="$tmp/$label-$m.json"
        "$bin" loadtest --mode sweep -c 4 --quiet --json "$json" \
            "http://127.0.0.1:$TPORT/iiif/2/$m/info.json" >/dev/null
        python3 - "$json" "$m" "$label" <<'PY'
import json, sys
r = json.load(open(sys.argv[1]))
lat = r["latency_ms"]
print(f"| {sys.argv[2]} | 256² sweep | {sys.argv[3]} | {r['requests']} | {r['requests_per_s']:.1f} | "
      f"{lat['p50']:.1f} | {lat['p99']:.1f} |", end=" ")
PY
        echo "$(tessera_facts) |"
        for n in 256 512 1024 2048; do
            local t0 t1 i
            t0=$(date +%s%N)
            for i in 1 2 3; do
                curl -sf -o /dev/null "http://127.0.0.1:$TPORT/iiif/2/$m/full/!$n,$n/0/default.jpg?run=$label-$i"
            done
            t1=$(date +%s%N)
            echo "| $m | full/!$n,$n/ ×3 | $label | 3 | $(awk -v a="$t0" -v b="$t1" 'BEGIN{printf "%.1f", 3e9/(b-a)}') | | | $(tessera_facts) |"
        done
    done
    stop_pid TPID
}

{
    echo "| file | workload | backend | requests | req/s | p50 ms | p99 ms | decodes, eager tiles, peak RSS; mean ms a request in decode / queue / transform / encode |"
    echo "|---|---|---|---:|---:|---:|---:|---|"
    run cpu 0 cpu
    run gpu 0 "gpu-all"
    run gpu measure "gpu-measured"
} >"$tmp/e2e.md"

{
    echo "# GPU transform backend on hardware (benches/compare/gpu.sh)"
    echo
    echo "- Card: $card"
    echo "- $adapter"
    echo "- Machine: $(nproc) cores, $(awk '/MemTotal/{printf "%.0f GiB", $2/1048576}' /proc/meminfo); $(describe_build "$bin"); $(date -u +%Y-%m-%d)"
    echo "- Images: $(echo "$masters" | tr '\n' ' ')from $images"
    echo "- Regenerate: \`benches/compare/gpu.sh $images\`"
    echo
    echo "## Transform stage (criterion, median)"
    echo
    echo '```'
    grep -E '^(transform|GPU adapter|SKIPPED|note:)|time:' "$tmp/criterion.txt" || true
    echo '```'
    echo
    echo "## Crossover measured by the server at start"
    echo
    echo '```'
    cat "$tmp/crossover.txt"
    echo '```'
    echo
    echo "## End to end, cold caches"
    echo
    echo "The req/s of the full/!N,N/ rows are three requests one after another; the last column is the server run's running total at that row."
    echo
    cat "$tmp/e2e.md"
} >"$out"
echo "wrote $out" >&2
