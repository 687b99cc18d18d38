#!/usr/bin/env python3
"""A viewer-like sweep of distinct tiles over one image, on loopback: every
tile of the given size at the given scale factors, in viewer order (row by
row), fetched by N concurrent clients. Prints tiles/s. Stdlib only.

usage: sweep.py BASE_IMAGE_URL --tile 256 --sf 1 [--sf 2 ...] [--clients 4]
       [--max-tiles N] [--region x,y,w,h] [--all-levels] [--shuffle SEED]

--all-levels asks every scale factor from 1 up to the one whose single tile
covers the image; --shuffle visits the tiles in a seeded random order (a
crowd of viewers rather than one). Also prints p50/p99 latency.

--first-view WxH times what a viewer of that size does on opening the image
cold: info.json, then every tile of the level its home view shows (the
coarsest whose pixels cover the image fitted into the viewport), in the
tile size info.json advertises, on --clients connections (a browser uses 6).
Prints first_view_ms: from the info.json request to the last tile.
"""
import argparse, json, random, threading, time, urllib.request

ap = argparse.ArgumentParser()
ap.add_argument("image")
ap.add_argument("--tile", type=int, default=256)
ap.add_argument("--sf", type=int, action="append")
ap.add_argument("--clients", type=int, default=1)
ap.add_argument("--max-tiles", type=int, default=400)
ap.add_argument("--region", default=None, help="limit the sweep to x,y,w,h (full-res pixels)")
ap.add_argument("--timeout", type=float, default=120)
ap.add_argument("--all-levels", action="store_true")
ap.add_argument("--shuffle", type=int, default=None, metavar="SEED")
ap.add_argument("--first-view", default=None, metavar="WxH")
a = ap.parse_args()
host = a.image.split("/")[2]
if not (host.startswith("127.") or host.startswith("localhost") or host.startswith("[::1]")):
    raise SystemExit("loopback targets only")
t_open = time.time()
info = json.load(urllib.request.urlopen(a.image + "/info.json"))
W, H = info["width"], info["height"]
if a.first_view:
    vw, vh = map(int, a.first_view.lower().split("x"))
    shown_w = W * min(vw / W, vh / H)
    tiles = info.get("tiles") or [{"width": a.tile}]
    a.tile = tiles[0]["width"]
    sf = 1
    while W / (sf * 2) >= shown_w:
        sf *= 2
    a.sf, a.all_levels, a.shuffle, a.max_tiles = [sf], False, None, 1 << 30
rx, ry, rw, rh = (0, 0, W, H) if not a.region else map(int, a.region.split(","))
urls = []
sfs = a.sf or [1]
if a.all_levels:
    sfs, sf = [], 1
    while True:
        sfs.append(sf)
        if a.tile * sf >= max(W, H):
            break
        sf *= 2
for sf in sfs:
    step = a.tile * sf
    y = ry
    while y < min(H, ry + rh):
        x = rx
        while x < min(W, rx + rw):
            w, h = min(step, W - x), min(step, H - y)
            urls.append(f"{a.image}/{x},{y},{w},{h}/{-(-w // sf)},/0/default.jpg")
            x += step
        y += step
if a.shuffle is not None:
    random.Random(a.shuffle).shuffle(urls)
urls = urls[: a.max_tiles]
lat = []
lock = threading.Lock()
idx = [0]
status = {}
nbytes = [0]
deadline = time.time() + a.timeout

def worker():
    while time.time() < deadline:
        with lock:
            if idx[0] >= len(urls):
                return
            u = urls[idx[0]]; idx[0] += 1
        t0 = time.time()
        try:
            with urllib.request.urlopen(u) as r:
                b = r.read(); code = r.status
        except urllib.error.HTTPError as e:
            b = b""; code = e.code
        with lock:
            lat.append(time.time() - t0)
            status[code] = status.get(code, 0) + 1
            nbytes[0] += len(b)

t = time.time()
ts = [threading.Thread(target=worker) for _ in range(a.clients)]
[x.start() for x in ts]; [x.join() for x in ts]
dt = time.time() - t
n = sum(status.values())
lat.sort()
pct = lambda q: round(lat[min(len(lat) - 1, int(len(lat) * q))] * 1000, 1) if lat else None
extra = {"first_view_ms": round((time.time() - t_open) * 1000, 1)} if a.first_view else {}
print(json.dumps({**extra, "tiles": n, "seconds": round(dt, 3), "tiles_per_s": round(n / dt, 1), "p50_ms": pct(0.5),
                  "p99_ms": pct(0.99), "status": status, "clients": a.clients, "tile": a.tile, "sf": sfs}))
