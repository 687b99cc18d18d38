# Sourced by the hot-tile benchmarks (hot_tiles.sh, access_log_cpu.sh,
# access_log_instructions.sh): the four 256² tiles of the sample landscape
# they keep asking for, a wrk script that cycles through them, and the
# start-up and stop of a server under measurement.
hot_tiles=(
  "/iiif/2/landscape/0,0,1024,1024/256,/0/default.jpg"
  "/iiif/2/landscape/1024,0,1024,1024/256,/0/default.jpg"
  "/iiif/2/landscape/0,1024,1024,1024/256,/0/default.jpg"
  "/iiif/2/landscape/1024,1024,1024,1024/256,/0/default.jpg"
)

# write_hot_lua FILE: the wrk script asking for hot_tiles in turn.
write_hot_lua() {
    cat >"$1" <<LUA
local paths = { "${hot_tiles[0]}", "${hot_tiles[1]}", "${hot_tiles[2]}", "${hot_tiles[3]}" }
local i = 0
request = function() i = i % #paths + 1; return wrk.format("GET", paths[i]) end
LUA
}

# The environment the access-log benchmarks start Tessera with: no disk
# tier, no drain wait at SIGTERM, no background canvas checksums.
hot_env=(TESSERA_CACHE__DISK_MAX_BYTES=0 TESSERA_SERVER__DRAIN_SECS=0 TESSERA_PRESENTATION__CANVAS_CHECKSUM=false)

# warm_hot_tiles PORT SECONDS: waits at most SECONDS for /health, then
# renders each hot tile once, so that the load that follows finds them
# cached.
warm_hot_tiles() {
    local port=$1 secs=$2 t
    for _ in $(seq $((secs * 5))); do curl -sf "http://127.0.0.1:$port/health" >/dev/null && break; sleep 0.2; done
    for t in "${hot_tiles[@]}"; do curl -sf -o /dev/null "http://127.0.0.1:$port$t"; done
}

# stop_server PID LABEL: SIGTERM and wait; says so (and fails) when the
# server had exited already, since its figures are then not its own.
stop_server() {
    kill -TERM "$1" 2>/dev/null || { echo "the server ($2) had exited before the end of its run" >&2; return 1; }
    wait "$1" 2>/dev/null || true
}
