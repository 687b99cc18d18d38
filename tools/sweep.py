#!/usr/bin/env python3
"""A viewer-like sweep of distinct tiles over one image, on loopback: every
tile of the given size at the given scale factors, in viewer order (row by
row), fetched by N concurrent clients. Prints tiles/s. Stdlib only.

usage: sweep.py BASE_IMAGE_URL --tile 256 --sf 1 [--sf 2 ...] [--clients 4]
       [--max-tiles N] [--region x,y,w,h]
"""
import argparse, json, threading, time, urllib.request

ap = argparse.ArgumentParser()
ap.add_argument("image")
ap.add_argument("--tile", type=int, default=256)
ap.add_argument("--sf", type=int, action="append")
ap.add_argument("--clients", type=int, default=1)
ap.add_argument("--max-tiles", type=int, default=400)
ap.add_argument("--region", default=None, help="limit the sweep to x,y,w,h (full-res pixels)")
ap.add_argument("--timeout", type=float, default=120)
a = ap.parse_args()
host = a.image.split("/")[2]
if not (host.startswith("127.") or host.startswith("localhost") or host.startswith("[::1]")):
    raise SystemExit("loopback targets only")
info = json.load(urllib.request.urlopen(a.image + "/info.json"))
W, H = info["width"], info["height"]
rx, ry, rw, rh = (0, 0, W, H) if not a.region else map(int, a.region.split(","))
urls = []
for sf in a.sf or [1]:
    step = a.tile * sf
    y = ry
    while y < min(H, ry + rh):
        x = rx
        while x < min(W, rx + rw):
            w, h = min(step, W - x), min(step, H - y)
            urls.append(f"{a.image}/{x},{y},{w},{h}/{-(-w // sf)},/0/default.jpg")
            x += step
        y += step
urls = urls[: a.max_tiles]
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
        try:
            with urllib.request.urlopen(u) as r:
                b = r.read(); code = r.status
        except urllib.error.HTTPError as e:
            b = b""; code = e.code
        with lock:
            status[code] = status.get(code, 0) + 1
            nbytes[0] += len(b)

t = time.time()
ts = [threading.Thread(target=worker) for _ in range(a.clients)]
[x.start() for x in ts]; [x.join() for x in ts]
dt = time.time() - t
n = sum(status.values())
print(json.dumps({"tiles": n, "seconds": round(dt, 3), "tiles_per_s": round(n / dt, 1), "status": status, "clients": a.clients, "tile": a.tile, "sf": a.sf}))
