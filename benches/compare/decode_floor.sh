#!/usr/bin/env bash
# The JPEG 2000 decode floor: how long one region decode of
# samples/generated/large.jp2 (10000 x 8000, 1024^2 codestream tiles) takes
# through Tessera with every cache off, against Debian's opj_decompress on the
# same region and reduction. Loopback only; stops what it started on exit.
#
#   benches/compare/decode_floor.sh
#
# Tessera: TESSERA_CACHE__MAX_BYTES=0 TESSERA_CACHE__DECODED_MAX_BYTES=0, one
# HTTP client, 2 warm-up requests, then N timed requests of the same URL
# (each one decodes: checked with tessera_decodes_total); the table gives the
# median round trip (decode + resize + JPEG encode + HTTP) and the mean of
# Tessera's own "decode" stage (tessera_stage_seconds).
# opj_decompress: `opj_decompress -i large.jp2 -o out.ppm -d x0,y0,x1,y1 -r R`
# (single-threaded: OPJ_NUM_THREADS unset, no -threads), whole process timed
# with hyperfine (start-up, reading the file, writing the PPM included). (Its
# own printed "decode time" is CPU time from getrusage at tick granularity, so
# it is not used.) The first row, a 1-pixel output at the coarsest level, is
# the fixed cost of each side (HTTP + header + tile set-up; process start-up +
# reading the headers + writing a PPM).
#
# CPU columns (user + system time: Tessera's server process over the N
# requests, read from /proc; opj_decompress from hyperfine) vary less than
# wall time when the machine is shared.
#
# Environment: N (10), TESSERA_PORT (18182), OUT (docs/bench/jp2.md).
set -euo pipefail
# shellcheck source=lib.sh source-path=SCRIPTDIR
. "$(dirname "$0")/lib.sh"
# Cold runs on every start: no disk tile tier (archival.sh measures it).
export TESSERA_CACHE__DISK_MAX_BYTES=0

cd "$(dirname "$0")/../.."
REPO=$PWD
N=${N:-10}
TPORT=${TESSERA_PORT:-18182}
OUT=${OUT:-docs/bench/jp2.md}
JP2=$REPO/samples/generated/large.jp2
TBASE="http://127.0.0.1:$TPORT/iiif/2/large"
unset OPJ_NUM_THREADS

ensure_packages libopenjp2-tools hyperfine

ensure_tessera target/release/tessera
TMP=$(mktemp -d /tmp/tessera-decode-floor.XXXXXX)
cp target/release/tessera "$TMP/tessera"
TESSERA_BUILD=$(describe_build target/release/tessera)

TPID=
trap 'stop_tessera; rm -rf "$TMP"' EXIT
trap 'exit 130' INT TERM

require_free_port "$TPORT" "port $TPORT is already in use; set TESSERA_PORT"
TESSERA_CACHE__MAX_BYTES=0 TESSERA_CACHE__DECODED_MAX_BYTES=0 \
    "$TMP/tessera" serve --listen "127.0.0.1:$TPORT" >"$TMP/tessera.log" 2>&1 &
TPID=$!
t=0
until [ -f "$JP2" ] && curl -sf -o /dev/null --max-time 5 "$TBASE/info.json"; do
    sleep 1
    t=$((t + 1))
    kill -0 "$TPID" 2>/dev/null || { echo "Tessera exited:" >&2; tail "$TMP/tessera.log" >&2; exit 1; }
    [ $t -lt 900 ] || { echo "Tessera / large.jp2 not ready after 900 s" >&2; exit 1; }
done

# name | IIIF region x,y,w,h (full-resolution pixels) | reduce | IIIF size
CASES="fixed cost: 64² at reduce 6 (→ 1×1)|0,0,64,64|6|1,
512² at reduce 0|2048,2048,512,512|0|512,
256² at reduce 0 (one sweep tile)|2048,2048,256,256|0|256,
1024² at reduce 0 (one whole codestream tile)|2048,2048,1024,1024|0|1024,
2048² at reduce 2 (→ 512²)|2048,2048,2048,2048|2|512,
8192×8000 at reduce 4 (→ 512×500)|0,0,8192,8000|4|512,"

ROWS=$TMP/rows.jsonl
: >"$ROWS"
load_before=$(cut -d' ' -f1-3 /proc/loadavg)
while IFS='|' read -r name region reduce size; do
    echo "== $name" >&2
    IFS=, read -r x y w h <<<"$region"
    d="$x,$y,$((x + w)),$((y + h))"
    # Tessera over HTTP
    tess=$(python3 - "$TBASE/$region/$size/0/default.jpg" "http://127.0.0.1:$TPORT/metrics" "$N" "$TPID" <<'PY'
import json, os, statistics, sys, time, urllib.request
url, metrics, n, pid = sys.argv[1], sys.argv[2], int(sys.argv[3]), sys.argv[4]
def cpu():  # user + system seconds of the Tessera process, all threads
    f = open(f"/proc/{pid}/stat").read().rsplit(")", 1)[1].split()
    return (int(f[11]) + int(f[12])) / os.sysconf("SC_CLK_TCK")
def metric(name):
    for l in urllib.request.urlopen(metrics).read().decode().splitlines():
        if l.startswith(name + " "):
            return float(l.split()[-1])
    return 0.0
def get():
    with urllib.request.urlopen(url) as r:
        b = r.read()
        assert r.status == 200 and r.headers["Content-Type"] == "image/jpeg" and b[:2] == b"\xff\xd8", url
for _ in range(2):
    get()
d0, s0 = metric("tessera_decodes_total"), metric('tessera_stage_seconds_sum{stage="decode"}')
c0 = cpu()
ts = []
for _ in range(n):
    t = time.perf_counter(); get(); ts.append(1000 * (time.perf_counter() - t))
c1 = cpu()
d1, s1 = metric("tessera_decodes_total"), metric('tessera_stage_seconds_sum{stage="decode"}')
print(json.dumps({"cpu_mean_ms": 1000 * (c1 - c0) / n, "http_median_ms": statistics.median(ts), "http_min_ms": min(ts),
                  "decode_stage_mean_ms": 1000 * (s1 - s0) / n, "decodes": d1 - d0}))
PY
)
    # opj_decompress: whole process (hyperfine), then its own decode time
    hyperfine -N --warmup 2 --runs "$N" --export-json "$TMP/h.json" \
        "opj_decompress -i $JP2 -o $TMP/out.ppm -d $d -r $reduce -quiet" >&2
    python3 - "$name" "$region" "$reduce" "$size" "$tess" "$TMP/h.json" >>"$ROWS" <<'PY'
import json, sys
name, region, reduce, size, tess, hj = sys.argv[1:7]
h = json.load(open(hj))["results"][0]
print(json.dumps({"name": name, "region": region, "reduce": int(reduce), "size": size, **json.loads(tess),
                  "opj_process_median_ms": 1000 * h["median"], "opj_process_min_ms": 1000 * h["min"],
                  "opj_cpu_mean_ms": 1000 * (h["user"] + h["system"])}))
PY
    tail -1 "$ROWS" >&2
done <<<"$CASES"
load_after=$(cut -d' ' -f1-3 /proc/loadavg)

TABLE=$TMP/table.md
python3 - "$ROWS" "$N" "$load_before" "$load_after" "$(dpkg-query -W -f='${Version}' libopenjp2-tools)" "$TESSERA_BUILD" >"$TABLE" <<'PY'
import json, sys
rows, n, lb, la, opjv, build = sys.argv[1:7]
print(f"Median of {n} (min in brackets), milliseconds; load average before/after {lb} / {la}.")
print(f"Tessera: {build}. opj_decompress: Debian libopenjp2-tools {opjv}, single-threaded.")
print()
print("| region decode | IIIF region / size | Tessera HTTP round trip, caches off | Tessera decode stage (mean) | opj_decompress whole process | ratio opj ÷ Tessera | CPU per request (mean): Tessera server / opj_decompress | decodes per Tessera request |")
print("| --- | --- | --- | --- | --- | --- | --- | --- |")
for l in open(rows):
    r = json.loads(l)
    print(f"| {r['name']} | `{r['region']}/{r['size']}` | **{r['http_median_ms']:.1f}** ({r['http_min_ms']:.1f}) | {r['decode_stage_mean_ms']:.1f} "
          f"| **{r['opj_process_median_ms']:.1f}** ({r['opj_process_min_ms']:.1f}) | {r['opj_process_median_ms'] / r['http_median_ms']:.1f}× | {r['cpu_mean_ms']:.0f} / {r['opj_cpu_mean_ms']:.0f} | {r['decodes'] / int(n):.0f} |")
PY

mkdir -p "$(dirname "$OUT")"
replace_section "$OUT" benches/compare/decode_floor.sh "$TABLE" $'# Tessera and IIPImage on JPEG 2000\n\n'
cat "$TABLE"
echo "(written to $OUT)" >&2
