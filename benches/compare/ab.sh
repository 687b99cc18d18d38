#!/usr/bin/env bash
# Two revisions of Tessera side by side, in one run: the criterion benches of
# benches/pipeline.rs (BEFORE saved as a baseline, AFTER compared with it, then
# the other way round, so drift on the machine shows as disagreement) and the
# hot-tile benchmark (benches/hot_tiles.sh) with each revision's binary,
# alternated. It answers "does this change cost speed?" (a refactor must not).
#
# usage: benches/compare/ab.sh BEFORE_REV [AFTER_REV] [HOT_SECONDS]
#   AFTER_REV defaults to HEAD. Each revision is checked out in a git worktree
#   under target/ab/ and built there with its own target folder (seeded from
#   target/release, so only Tessera itself compiles: about 10 minutes each on
#   2 cores). Set AB_SKIP_BUILD=1 to reuse what an earlier run built, and
#   AB_HOT_ROUNDS (default 3) for the number of alternated hot-tile rounds.
# Output: the Markdown tables, on stdout. Loopback only; every process started
# here is stopped on exit (hot_tiles.sh stops its own).
set -euo pipefail
cd "$(dirname "$0")/../.."
before=${1:?usage: benches/compare/ab.sh BEFORE_REV [AFTER_REV] [HOT_SECONDS]}
after=${2:-HEAD}
hot_secs=${3:-10}
repo=$PWD
work=$repo/target/ab
mkdir -p "$work"
export CRITERION_HOME=$work/criterion

# Builds REV in its worktree; prints "PIPELINE_BENCH TESSERA BARE" paths.
build() { # NAME REV
    local name=$1 rev=$2 tree=$work/$1 tgt=$work/$1-target
    if [ -z "${AB_SKIP_BUILD:-}" ]; then
        git -C "$repo" worktree remove --force "$tree" 2>/dev/null || rm -rf "$tree"
        git -C "$repo" worktree add --force --detach "$tree" "$rev" >/dev/null 2>&1
        if [ ! -d "$tgt/release" ] && [ -d "$repo/target/release" ]; then
            mkdir -p "$tgt" && cp -a "$repo/target/release" "$tgt/"
        fi
        (cd "$tree" && CARGO_TARGET_DIR=$tgt cargo bench --locked --bench pipeline --no-run >&2 2>/dev/null)
        (cd "$tree" && CARGO_TARGET_DIR=$tgt cargo build --release --locked --bin tessera --example bare_hyper >&2 2>/dev/null)
    fi
    local bench
    bench=$(find "$tgt/release/deps" -maxdepth 1 -type f -executable -name 'pipeline-*' -printf '%T@ %p\n' | sort -n | tail -1 | cut -d' ' -f2)
    echo "$bench $tgt/release/tessera $tgt/release/examples/bare_hyper"
}

read -r b_bench b_tess b_bare < <(build before "$before")
read -r a_bench a_tess a_bare < <(build after "$after")
echo "before: $(git -C "$repo" rev-parse --short "$before")  after: $(git -C "$repo" rev-parse --short "$after")" >&2

# Criterion: each binary runs from its own tree (the benches read nothing
# from disk, but keep each with its sources).
crit() { # BENCH_BINARY TREE ARGS...
    local bin=$1 tree=$2
    shift 2
    (cd "$tree" && "$bin" --bench "$@" 2>&1)
}
crit "$b_bench" "$work/before" --save-baseline before >"$work/before-1.txt"
crit "$a_bench" "$work/after" --save-baseline after >"$work/after-1.txt"
crit "$a_bench" "$work/after" --baseline before >"$work/after-vs-before.txt"
crit "$b_bench" "$work/before" --baseline after >"$work/before-vs-after.txt"

# One row per bench: each binary ran twice (once saving its baseline, once
# compared with the other's), so the spread between a binary's own two runs
# is the machine's noise, against which the change BEFORE → AFTER is read.
python3 - "$work" <<'PY'
import re, sys
work = sys.argv[1]
UNIT = {"ps": 1e-3, "ns": 1.0, "µs": 1e3, "us": 1e3, "ms": 1e6, "s": 1e9}
def parse(path):
    out, name = {}, None
    for line in open(path, encoding="utf-8", errors="replace"):
        line = line.rstrip()
        m = re.match(r"^(\S.*?)\s+time:\s+\[(.*)\]$", line) or re.match(r"^()\s+time:\s+\[(.*)\]$", line)
        if m:
            if m.group(1):
                name = m.group(1).strip()
            t = m.group(2).split()
            if name:
                out[name] = float(t[2]) * UNIT[t[3]]
            continue
        if line and not line.startswith((" ", "Benchmarking", "Found", "Warning", "Gnuplot")):
            name = line.strip()
    return out
b1, b2 = parse(f"{work}/before-1.txt"), parse(f"{work}/before-vs-after.txt")
a1, a2 = parse(f"{work}/after-1.txt"), parse(f"{work}/after-vs-before.txt")
def fmt(ns):
    for u, f in (("s", 1e9), ("ms", 1e6), ("µs", 1e3)):
        if ns >= f:
            return f"{ns / f:.3g} {u}"
    return f"{ns:.3g} ns"
print("| bench | before (run 1, run 2) | after (run 1, run 2) | after ÷ before (means) | same binary, run 2 ÷ run 1 (before; after) |")
print("|---|---|---|---|---|")
for name in b1:
    if name not in a1 or name not in b2 or name not in a2:
        continue
    mb, ma = (b1[name] + b2[name]) / 2, (a1[name] + a2[name]) / 2
    print(f"| {name} | {fmt(b1[name])}, {fmt(b2[name])} | {fmt(a1[name])}, {fmt(a2[name])} | {ma / mb:.2f} | {b2[name] / b1[name]:.2f}; {a2[name] / a1[name]:.2f} |")
PY
echo
echo "Hot tiles (benches/hot_tiles.sh ${hot_secs} s, 32 connections), alternated:"
for round in $(seq "${AB_HOT_ROUNDS:-3}"); do
    for side in before after; do
        if [ $side = before ]; then bin=$b_tess bare=$b_bare; else bin=$a_tess bare=$a_bare; fi
        echo "$side (round $round):"
        TESSERA_BIN=$bin BARE_BIN=$bare benches/hot_tiles.sh "$hot_secs" 32 | tail -1
    done
done
