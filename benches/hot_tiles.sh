#!/usr/bin/env bash
# Hot tiles: Tessera serving a few cached 256² JPEG tiles, against a bare hyper
# server returning a body of the same size, nginx serving the same tiles'
# bytes as static files (one worker, no log, sendfile) and Varnish holding
# them in front of Tessera, measured with wrk in one run. Loopback only;
# every process started here is stopped on exit.
# usage: benches/hot_tiles.sh [SECONDS] [CONNECTIONS]
# TESSERA_BIN and BARE_BIN name prebuilt binaries (benches/compare/ab.sh runs
# two revisions this way); without them both are built here. HOT_RUST_LOG is
# Tessera's log filter (warn: no access log; benches/access_log.sh sets it).
set -euo pipefail
cd "$(dirname "$0")/.."
. benches/hot_tiles_lib.sh
secs=${1:-10}; conns=${2:-32}
sudo=""; [ "$(id -u)" -ne 0 ] && sudo=sudo
command -v wrk >/dev/null || $sudo apt-get install -y -qq wrk >/dev/null
[ -x /usr/sbin/nginx ] || $sudo apt-get install -y -qq nginx-light >/dev/null
[ -x /usr/sbin/varnishd ] || $sudo apt-get install -y -qq varnish >/dev/null
if [ -z "${TESSERA_BIN:-}" ] || [ -z "${BARE_BIN:-}" ]; then
    cargo build --release --locked --example bare_hyper --bin tessera 2>/dev/null
fi
tessera_bin=${TESSERA_BIN:-target/release/tessera}
bare_bin=${BARE_BIN:-target/release/examples/bare_hyper}
T=18410; B=18411; N=18412; V=18413
pids=()
work=$(mktemp -d /tmp/tessera-hot.XXXXXX)
trap 'for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done; sleep 0.3; rm -rf "$work"' EXIT
RUST_LOG=${HOT_RUST_LOG:-warn} "$tessera_bin" serve --listen 127.0.0.1:$T & pids+=($!)
for _ in $(seq 100); do curl -sf "http://127.0.0.1:$T/health" >/dev/null && break; sleep 0.1; done
total=0
for t in "${hot_tiles[@]}"; do n=$(curl -sf "http://127.0.0.1:$T$t" | wc -c); total=$((total + n)); done
size=$((total / ${#hot_tiles[@]}))
decodes_before=$(curl -s "http://127.0.0.1:$T/metrics" | awk '/^tessera_decodes_total/ {print $2}')
"$bare_bin" 127.0.0.1:$B "$size" & pids+=($!)
# nginx: the same bytes as static files under the same paths.
for t in "${hot_tiles[@]}"; do mkdir -p "$work/www$(dirname "$t")"; curl -sf "http://127.0.0.1:$T$t" -o "$work/www$t"; done
# Readable by nginx's worker (nobody, when started as root).
chmod 755 "$work"; chmod -R a+rX "$work/www"
mkdir -p "$work/nginx/logs"
cat >"$work/nginx.conf" <<NGINX
worker_processes 1;
pid $work/nginx/nginx.pid;
error_log $work/nginx/logs/error.log;
events { worker_connections 1024; }
http {
    access_log off;
    sendfile on;
    tcp_nopush on;
    keepalive_requests 1000000;
    types { image/jpeg jpg; }
    server { listen 127.0.0.1:$N; root $work/www; }
}
NGINX
/usr/sbin/nginx -p "$work/nginx" -c "$work/nginx.conf" -g 'daemon off;' & pids+=($!)
# Varnish in front of Tessera: the tiles are public, so it keeps them.
/usr/sbin/varnishd -F -a 127.0.0.1:$V -b 127.0.0.1:$T -n "$work/varnish" -s malloc,64m >/dev/null 2>&1 & pids+=($!)
for _ in $(seq 100); do curl -sf "http://127.0.0.1:$V${hot_tiles[0]}" -o /dev/null && break; sleep 0.1; done
for t in "${hot_tiles[@]}"; do curl -sf "http://127.0.0.1:$V$t" -o /dev/null; curl -sf "http://127.0.0.1:$N$t" -o /dev/null; done
sleep 0.5
lua=$(mktemp); write_hot_lua "$lua"
rps() { wrk -t1 -c"$conns" -d"${secs}s" "$@" | awk '/Requests\/sec/ {print $2}'; }
tess=$(rps -s "$lua" "http://127.0.0.1:$T")
# The same Lua script drives both (the baseline ignores the path), so wrk does the same work per request.
bare=$(rps -s "$lua" "http://127.0.0.1:$B")
ngx=$(rps -s "$lua" "http://127.0.0.1:$N")
vsh=$(rps -s "$lua" "http://127.0.0.1:$V")
decodes_after=$(curl -s "http://127.0.0.1:$T/metrics" | awk '/^tessera_decodes_total/ {print $2}')
ratio() { python3 -c "print(f'{$1 / $2:.2f}')"; }
echo "| body | connections | Tessera hot tiles req/s | bare hyper req/s | nginx static req/s | Varnish req/s | Tessera / bare, / nginx, / Varnish | decodes during load |"
echo "|---|---|---|---|---|---|---|---|"
echo "| ${size} B | $conns | $tess | $bare | $ngx | $vsh | $(ratio "$tess" "$bare"), $(ratio "$tess" "$ngx"), $(ratio "$tess" "$vsh") | $((decodes_after - decodes_before)) |"
