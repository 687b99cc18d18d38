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

--walk SEED (with --first-view WxH) times each view of a viewer session
instead: the home view, then zooming in by 2 towards a seeded random point
down to full resolution, then four pans by half a viewport in seeded
directions; each view asks every tile it shows (the level a viewer picks
for its scale, in the advertised tile size) on --clients connections, and
is timed from its first request to its last answer (the home view from
the info.json request). Prints views_ms (in order), view_kinds, and the
p50/p90/max of the views.
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
ap.add_argument("--walk", type=int, default=None, metavar="SEED")
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


def level_for(scale):
    """The scale factor a viewer shows at `scale` (screen px per image px)."""
    sf = 1
    while 1 / (sf * 2) >= scale:
        sf *= 2
    return sf


def view_urls(sf, x0, y0, x1, y1):
    """The tiles of level `sf` over the image rectangle [x0, x1) × [y0, y1)."""
    step = a.tile * sf
    out = []
    for ty in range(int(y0 // step) * step, min(H, int(y1)), step):
        for tx in range(int(x0 // step) * step, min(W, int(x1)), step):
            w, h = min(step, W - tx), min(step, H - ty)
            out.append(f"{a.image}/{tx},{ty},{w},{h}/{-(-w // sf)},/0/default.jpg")
    return out


def fetch_all(us, clients):
    """Every URL once on `clients` threads: (latencies, status counts)."""
    lat, status, q, lock = [], {}, list(us), threading.Lock()

    def run():
        while True:
            with lock:
                if not q:
                    return
                u = q.pop(0)
            t0 = time.time()
            try:
                with urllib.request.urlopen(u, timeout=a.timeout) as r:
                    r.read(); code = r.status
            except urllib.error.HTTPError as e:
                code = e.code
            except OSError:
                code = 0
            with lock:
                lat.append(time.time() - t0)
                status[code] = status.get(code, 0) + 1

    ts = [threading.Thread(target=run) for _ in range(clients)]
    [x.start() for x in ts]; [x.join() for x in ts]
    return lat, status


if a.walk is not None:
    if not a.first_view:
        raise SystemExit("--walk needs --first-view WxH")
    rnd = random.Random(a.walk)
    views, kinds, status, ntiles = [], [], {}, 0

    def show(kind, scale, cx, cy, t0=None):
        global ntiles
        vw_img, vh_img = vw / scale, vh / scale
        x0 = min(max(0, cx - vw_img / 2), max(0, W - vw_img))
        y0 = min(max(0, cy - vh_img / 2), max(0, H - vh_img))
        us = view_urls(level_for(scale), x0, y0, min(W, x0 + vw_img), min(H, y0 + vh_img))
        t0 = t0 or time.time()
        _, st = fetch_all(us, a.clients)
        views.append(round((time.time() - t0) * 1000, 1))
        kinds.append(kind)
        ntiles += len(us)
        for k, v in st.items():
            status[k] = status.get(k, 0) + v
        return x0 + vw_img / 2, y0 + vh_img / 2

    scale = min(vw / W, vh / H)
    cx, cy = show("home", scale, W / 2, H / 2, t_open)
    px, py = rnd.uniform(0, W), rnd.uniform(0, H)
    while scale < 1:
        scale = min(1.0, scale * 2)
        # Zooming by 2 around the point keeps it where it was on screen:
        # the centre moves half way towards it.
        cx, cy = show("zoom", scale, (cx + px) / 2, (cy + py) / 2)
    for _ in range(4):
        for _ in range(16):
            dx, dy = rnd.choice([(1, 0), (-1, 0), (0, 1), (0, -1), (1, 1), (-1, -1), (1, -1), (-1, 1)])
            nx, ny = cx + dx * vw / 2, cy + dy * vh / 2
            if vw / 2 <= nx <= W - vw / 2 and vh / 2 <= ny <= H - vh / 2:
                break
        cx, cy = show("pan", 1.0, nx, ny)
    srt = sorted(views)
    q = lambda f: srt[min(len(srt) - 1, int(len(srt) * f))]
    print(json.dumps({"views_ms": views, "view_kinds": kinds, "p50_ms": q(0.5), "p90_ms": q(0.9), "max_ms": srt[-1],
                      "total_ms": round(sum(views), 1), "tiles": ntiles, "status": status, "clients": a.clients,
                      "tile": a.tile}))
    raise SystemExit(0)

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
