# Sourced by the hot-tile benchmarks (hot_tiles.sh, access_log_cpu.sh,
# access_log_instructions.sh): the four 256² tiles of the sample landscape
# they keep asking for, and a wrk script that cycles through them.
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
