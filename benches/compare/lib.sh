# shellcheck shell=bash
# Shared helpers of the side-by-side benchmark scripts in benches/compare/:
# package and binary checks, starting, waiting for and stopping Tessera and
# IIPImage (iipsrv behind lighttpd FastCGI) on loopback, and writing a
# generated table into a Markdown file between markers.
#
#   . "$(dirname "$0")/lib.sh"      # at the top of a script, before any cd
#
# Sourcing it only defines functions and IIPSRV_FCGI; it runs nothing, and
# `set -euo pipefail` stays with each script. Servers are stopped only by the
# PIDs these functions started, kept in the script's globals TPID (Tessera)
# and LPID (lighttpd): a script empties those it uses before anything else, so
# that a variable inherited from the environment never names a process to stop.

# Debian's iipsrv FastCGI binary (package iipimage-server).
IIPSRV_FCGI=/usr/lib/iipimage-server/iipsrv.fcgi

# --- packages and binaries ---------------------------------------------------

# Print those of the Debian packages PKG... that are not installed, one a line.
missing_packages() { # PKG...
    local p
    for p in "$@"; do
        dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "ok installed" || echo "$p"
    done
}

# Install the missing ones of PKG... with apt-get (through sudo unless root),
# saying so on stderr; -q: quietly (apt-get -qq, its output dropped, no word).
ensure_packages() { # [-q] PKG...
    local quiet='' sudo='' missing=()
    if [ "${1:-}" = -q ]; then quiet=1; shift; fi
    mapfile -t missing < <(missing_packages "$@")
    [ ${#missing[@]} -gt 0 ] || return 0
    [ "$(id -u)" = 0 ] || sudo=sudo
    if [ -n "$quiet" ]; then
        $sudo apt-get update -qq
        DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
    else
        echo "== installing ${missing[*]}" >&2
        $sudo apt-get update
        DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y --no-install-recommends "${missing[@]}"
    fi
}

# Install iipimage-server and lighttpd when missing; exit if iipsrv is not there.
ensure_iipimage() {
    ensure_packages iipimage-server lighttpd
    [ -x "$IIPSRV_FCGI" ] || { echo "no $IIPSRV_FCGI" >&2; exit 1; }
}

# Run `cargo build --release --locked` unless BIN is executable, saying so on
# stderr; -q: without a word.
ensure_tessera() { # [-q] BIN
    if [ "$1" = -q ]; then
        [ -x "$2" ] || cargo build --release --locked
    elif [ ! -x "$1" ]; then
        echo "== building Tessera (cargo build --release --locked)" >&2
        cargo build --release --locked
    fi
}

# Print "BIN of <mtime>, tree at <commit>[ + uncommitted changes]" for a table.
describe_build() { # BIN
    local dirty=''
    [ -z "$(git status --porcelain --untracked-files=no 2>/dev/null)" ] || dirty=' + uncommitted changes'
    echo "$1 of $(date -r "$1" -u +%Y-%m-%dT%H:%MZ), tree at $(git rev-parse --short HEAD 2>/dev/null || echo '?')$dirty"
}

# --- waiting -----------------------------------------------------------------

# Exit with MESSAGE on stderr if something answers HTTP on 127.0.0.1:PORT.
require_free_port() { # PORT MESSAGE
    if curl -s -o /dev/null --max-time 2 "http://127.0.0.1:$1/"; then
        echo "$2" >&2
        exit 1
    fi
}

# Succeed as soon as URL answers without an HTTP error (curl -f): at most
# TRIES tries, sleeping INTERVAL seconds after each failed one; the options go
# to curl.
poll_http() { # URL TRIES INTERVAL [CURL_OPTION...]
    local url=$1 tries=$2 interval=$3 i
    shift 3
    for ((i = 0; i < tries; i++)); do
        curl -sf -o /dev/null "$@" "$url" && return 0
        sleep "$interval"
    done
    return 1
}

# Wait up to about SECONDS for URL (a try every 0.25 s, each up to 5 s); on
# time-out say so on stderr and fail.
wait_for_http() { # URL SECONDS
    poll_http "$1" $(($2 * 4 + 1)) 0.25 --max-time 5 || { echo "timed out waiting for $1" >&2; return 1; }
}

# Fail, with "NAME exited; see log:" and the tails of LOG... on stderr, unless
# process PID is still running.
check_running() { # PID NAME LOG...
    local pid=$1 name=$2
    shift 2
    kill -0 "$pid" 2>/dev/null || { echo "$name exited; see log:" >&2; tail "$@" >&2; return 1; }
}

# --- stopping ----------------------------------------------------------------

# Kill the process whose PID the variable VAR holds (if any), wait for it and
# empty VAR.
stop_pid() { # VAR
    local pid=${!1:-}
    if [ -n "$pid" ]; then
        kill "$pid" 2>/dev/null || true
        wait "$pid" 2>/dev/null || true
        printf -v "$1" '%s' ''
    fi
}

# Stop the Tessera server in TPID, if any.
stop_tessera() {
    stop_pid TPID
}

# Stop the lighttpd in LPID, if any, and the iipsrv processes it spawned.
stop_iipimage() {
    if [ -n "${LPID:-}" ]; then
        # lighttpd stops the iipsrv processes it spawned; make sure anyway,
        # by the PIDs of its own children only.
        local kids k
        kids=$(pgrep -P "$LPID" 2>/dev/null || true)
        kill "$LPID" 2>/dev/null || true
        wait "$LPID" 2>/dev/null || true
        for k in $kids; do kill "$k" 2>/dev/null || true; done
        LPID=
    fi
}

# Stop both servers (Tessera first), if running.
stop_servers() {
    stop_tessera
    stop_iipimage
}

# Stop both servers and remove the script's temporary folder TMP (for
# `trap cleanup_servers EXIT`).
cleanup_servers() {
    stop_servers
    rm -rf "$TMP"
}

# --- Tessera -----------------------------------------------------------------

# (Re)start DIR/tessera serve on 127.0.0.1:PORT with SERVE_ARGs (output
# appended to DIR/tessera.log; PID in TPID), wait until FILE exists (a first
# start generates the samples; up to 900 s) and URL answers (up to 120 s);
# fail with the log's tail if Tessera exits.
restart_tessera() { # DIR PORT FILE URL [SERVE_ARG...]
    local dir=$1 port=$2 file=$3 url=$4 t=0
    shift 4
    stop_tessera
    "$dir/tessera" serve --listen "127.0.0.1:$port" "$@" >>"$dir/tessera.log" 2>&1 &
    TPID=$!
    until [ -f "$file" ]; do
        sleep 1
        t=$((t + 1))
        check_running "$TPID" Tessera "$dir/tessera.log" || return 1
        [ $t -lt 900 ] || { echo "$(basename "$file") not generated after 900 s" >&2; return 1; }
    done
    wait_for_http "$url" 120
    check_running "$TPID" Tessera "$dir/tessera.log" || return 1
}

# --- IIPImage: iipsrv behind lighttpd FastCGI --------------------------------

# Write DIR/lighttpd.conf: lighttpd on 127.0.0.1:PORT (error log
# DIR/lighttpd-error.log) with iipsrv at /fcgi-bin/iipsrv.fcgi (socket
# DIR/iipsrv.sock, up to PROCS processes, JPEG quality 85) on the images in
# folder IMAGES. Defaults: document root DIR/www (created), 256 connections,
# iipsrv VERBOSITY 1 with its log in DIR/iipsrv.log; --max-connections 0 leaves
# lighttpd's default, --verbosity 0 sets no LOGFILE.
write_iipimage_conf() { # [--docroot D] [--max-connections N] [--verbosity V] DIR PORT IMAGES PROCS
    local docroot='' maxconn=256 verbosity=1 logfile=''
    while [ $# -gt 0 ]; do
        case $1 in
            --docroot) docroot=$2; shift 2 ;;
            --max-connections) maxconn=$2; shift 2 ;;
            --verbosity) verbosity=$2; shift 2 ;;
            *) break ;;
        esac
    done
    local dir=$1 port=$2 images=$3 procs=$4
    docroot=${docroot:-$dir/www}
    mkdir -p "$docroot"
    [ "$verbosity" = 0 ] || logfile="    \"LOGFILE\" => \"$dir/iipsrv.log\","$'\n'
    {
        cat <<EOF
server.modules = ("mod_fastcgi")
server.bind = "127.0.0.1"
server.port = $port
server.document-root = "$docroot"
server.errorlog = "$dir/lighttpd-error.log"
EOF
        [ "$maxconn" = 0 ] || echo "server.max-connections = $maxconn"
        cat <<EOF
fastcgi.server = ( "/fcgi-bin/iipsrv.fcgi" => ((
  "socket" => "$dir/iipsrv.sock",
  "bin-path" => "$IIPSRV_FCGI",
  "check-local" => "disable",
  "max-procs" => $procs,
  "bin-environment" => (
    "FILESYSTEM_PREFIX" => "$images/",
    "JPEG_QUALITY" => "85",
${logfile}    "VERBOSITY" => "$verbosity"
  )
)))
EOF
    } >"$dir/lighttpd.conf"
}

# Start lighttpd on DIR/lighttpd.conf in the background (output appended to
# DIR/lighttpd.out; PID in LPID), without waiting.
launch_iipimage() { # DIR
    rm -f "$1"/iipsrv.sock*
    lighttpd -D -f "$1/lighttpd.conf" >>"$1/lighttpd.out" 2>&1 &
    LPID=$!
}

# Stop IIPImage if running, launch it on DIR/lighttpd.conf and wait up to 60 s
# for URL; fail with lighttpd's logs if it exits.
restart_iipimage() { # DIR URL
    stop_iipimage
    launch_iipimage "$1"
    wait_for_http "$2" 60
    check_running "$LPID" lighttpd "$1/lighttpd.out" "$1/lighttpd-error.log" || return 1
}

# --- results -----------------------------------------------------------------

# Put the table in file TABLE into Markdown file OUT between the markers
# "<!-- BEGIN SCRIPT -->" and "<!-- END SCRIPT -->", under the line
# "_Generated by `SCRIPT` at <UTC time>SUFFIX._", keeping the rest of OUT; a
# missing OUT starts as HEADER, a file without the markers gets the section at
# its end. What follows the END marker is tidied to one blank line, or dropped
# when blank; --keep-after keeps it as it is and appends to a file without
# markers after one newline (http_source.sh's way).
replace_section() { # [--keep-after] OUT SCRIPT TABLE HEADER [SUFFIX]
    local keep=''
    if [ "$1" = --keep-after ]; then keep=1; shift; fi
    python3 - "$1" "$2" "$3" "$4" "${5:-}" "$keep" "$(date -u +%Y-%m-%dT%H:%MZ)" <<'PY'
import os, sys
out, script, table, header, suffix, keep, when = sys.argv[1:8]
begin, end = f"<!-- BEGIN {script} -->", f"<!-- END {script} -->"
block = f"{begin}\n_Generated by `{script}` at {when}{suffix}._\n\n{open(table).read()}{end}\n"
if keep:
    text = open(out).read() if os.path.exists(out) else header + begin + "\n" + end + "\n"
    if begin in text and end in text:
        text = text[: text.index(begin)] + block[:-1] + text[text.index(end) + len(end):]
    else:
        text += "\n" + block
else:
    text = open(out).read() if os.path.exists(out) else header
    if begin in text and end in text:
        a, rest = text.split(begin, 1)
        _, b = rest.split(end, 1)
        text = a + block + ("\n" + b.lstrip("\n") if b.strip() else "")
    else:
        text = text.rstrip("\n") + "\n\n" + block
open(out, "w").write(text)
PY
}

# --- sweeps and their table rows ---------------------------------------------
# These read the script's globals TPORT (Tessera's port), TPID (its PID).

# Tessera's figures after a workload: tiles passed through (if any), decodes,
# eager tiles, peak RSS (MiB)
# and mean ms per request in the decode, queue, transform and encode stages.
tessera_facts() {
    local rss
    rss=$(awk '/VmHWM/{printf "%d", $2/1024}' "/proc/$TPID/status" 2>/dev/null || echo "?")
    curl -s "http://127.0.0.1:$TPORT/metrics" | awk -v rss="$rss" '
        $1=="tessera_decodes_total"{d=$2} $1=="tessera_eager_tiles_total"{e=$2} $1=="tessera_passthrough_total"{p=$2}
        $1 ~ /^tessera_stage_seconds_sum/ {match($1,/stage="[a-z]+"/); k=substr($1,RSTART+7,RLENGTH-8); sum[k]=$2}
        $1 ~ /^tessera_stage_seconds_count/ {match($1,/stage="[a-z]+"/); k=substr($1,RSTART+7,RLENGTH-8); cnt[k]=$2}
        END {
            n=cnt["total"]; if (n==0) n=1
            if (p > 0) printf "%d stored tiles passed through, ", p
            printf "%d decodes, %d eager, %s MiB; %.0f / %.0f / %.0f / %.0f", d, e, rss, 1000*sum["decode"]/n, 1000*sum["queue"]/n, 1000*sum["transform"]/n, 1000*sum["encode"]/n
        }'
}
sweep() { # BASE_URL ARGS...
    local base=$1; shift
    python3 tools/sweep.py "$base" --timeout 1200 "$@"
}
row() { # FILE WORKLOAD SERVER JSON FACTS
    python3 - "$1" "$2" "$3" "$5" "$4" <<'PY'
import json, sys
f, w, s, x = sys.argv[1:5]
r = json.loads(sys.argv[5])
fv = r.get("first_view_ms")
rate = r["tiles_per_s"] if fv is None else f"first view {fv} ms"
print(f"| {f} | {w} | {s} | {r['tiles']} | {rate} | {r['p50_ms']} | {r['p99_ms']} | {x} | {r['status']} |")
PY
}

# Start BIN serving IMAGES on 127.0.0.1:$TPORT with no disk tier (every
# start is cold), its output appended to LOG; set TPID; wait for /health.
start_cold_tessera() { # BIN IMAGES LOG
    TESSERA_CACHE__DISK_MAX_BYTES=0 "$1" serve --listen "127.0.0.1:$TPORT" --images "$2" >>"$3" 2>&1 &
    TPID=$!
    poll_http "http://127.0.0.1:$TPORT/health" 240 0.25 --max-time 5
}

# The header of the table that `row` writes rows of.
row_header() {
    echo "| file | workload | server | tiles | tiles/s | p50 ms | p99 ms | Tessera: decodes, tiles encoded eagerly, peak RSS; mean ms per request in decode / queue / transform / encode | statuses |"
    echo "|---|---|---|---:|---:|---:|---:|---|---|"
}
