#!/usr/bin/env node
// End-to-end check of Tessera's Deep Zoom and Zoomify with OpenSeadragon 6
// in headless Chromium (tests/openseadragon.rs runs it).
//
//   node tests/e2e/openseadragon.mjs BASE_URL ID OUT_DIR [--modules DIR] [--chromium PATH] [--timeout S]
//
// Serves, from its own loopback HTTP server (another origin than Tessera),
// a page that loads openseadragon.min.js, and for each protocol:
//   dzi       OpenSeadragon opens BASE_URL/dzi/ID.dzi itself;
//   zoomify   the page reads BASE_URL/zoomify/ID/ImageProperties.xml and
//             gives OpenSeadragon its WIDTH, HEIGHT and TILESIZE
//             (type "zoomifytileservice": OpenSeadragon reads no Zoomify
//             descriptor on its own).
// It waits for the home view to be fully loaded and drawn, zooms to two
// screen pixels per image pixel (full resolution), waits again, and checks
// that every tile OpenSeadragon asked for was answered 200 with
// Access-Control-Allow-Origin, that tiles of the top level (Deep Zoom) or
// tier (Zoomify) were among them, and that the canvas shows an image.
// Writes OUT_DIR/{dzi,zoomify}-{home,full}.png, OUT_DIR/requests.json and
// OUT_DIR/report.json. Exit status 0 = pass, 1 = a check failed, 2 = bad
// usage or set-up (modules or browser missing).

import fs from 'node:fs';
import http from 'node:http';
import os from 'node:os';
import path from 'node:path';
import { createRequire } from 'node:module';
import { fileURLToPath } from 'node:url';

const HERE = path.dirname(fileURLToPath(import.meta.url));
const REPO = path.resolve(HERE, '..', '..');
const OSD_JS = 'openseadragon/build/openseadragon/openseadragon.min.js';

// The flags known to work with Debian's chromium here (as mirador.mjs).
const CHROMIUM_ARGS = [
  '--no-sandbox', '--disable-gpu', '--disable-quic', '--no-first-run', '--disable-background-networking',
  '--disable-component-update', '--disable-sync', '--disable-dev-shm-usage',
];

function usage(msg) {
  if (msg) console.error(`openseadragon.mjs: ${msg}`);
  console.error('usage: node tests/e2e/openseadragon.mjs BASE_URL ID OUT_DIR [--modules DIR] [--chromium PATH] [--timeout S]');
  process.exit(2);
}

function parseArgs(argv) {
  const o = {
    modules: process.env.TESSERA_E2E_MODULES || path.join(REPO, 'target/tools/e2e/node_modules'),
    chromium: process.env.TESSERA_CHROMIUM || '/usr/bin/chromium',
    timeout: 120,
  };
  const pos = [];
  for (let i = 0; i < argv.length; i++) {
    const a = argv[i];
    const val = () => (i + 1 < argv.length ? argv[++i] : usage(`${a} needs a value`));
    if (a === '--modules') o.modules = val();
    else if (a === '--chromium') o.chromium = val();
    else if (a === '--timeout') o.timeout = Number(val());
    else if (a.startsWith('--')) usage(`unknown option ${a}`);
    else pos.push(a);
  }
  if (pos.length !== 3) usage('BASE_URL, ID and OUT_DIR are required');
  [o.base, o.id, o.out] = pos;
  let u;
  try { u = new URL(o.base); } catch { usage(`bad base URL ${o.base}`); }
  if (!['127.0.0.1', 'localhost', '[::1]'].includes(u.hostname)) usage(`the base URL must be on loopback: ${o.base}`);
  o.base = o.base.replace(/\/+$/, '');
  if (!(o.timeout > 0)) usage('--timeout must be a positive number of seconds');
  return o;
}

const sleep = (ms) => new Promise((r) => setTimeout(r, ms));
const t0 = Date.now();
const log = (...a) => console.log(`[${((Date.now() - t0) / 1000).toFixed(1).padStart(5)}s]`, ...a);
class CheckFailed extends Error {}
function check(cond, msg) {
  if (!cond) throw new CheckFailed(msg);
}
async function waitFor(what, ms, pred) {
  const end = Date.now() + ms;
  for (;;) {
    const v = await pred();
    if (v) return v;
    if (Date.now() > end) throw new CheckFailed(`timed out after ${(ms / 1000).toFixed(0)} s waiting for ${what}`);
    await sleep(150);
  }
}

function pageHtml() {
  return `<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>Tessera × OpenSeadragon e2e</title>
<style>html,body{margin:0;height:100%;background:#000}#osd{position:absolute;inset:0}</style>
</head><body><div id="osd"></div>
<script>window.__errors = []; addEventListener('error', function (e) { window.__errors.push(String(e.message)); });</script>
<script src="/openseadragon.min.js"></script>
<script>
window.openImage = async function (kind, base, id) {
  let source;
  if (kind === 'dzi') {
    source = base + '/dzi/' + encodeURIComponent(id) + '.dzi';
  } else {
    const r = await fetch(base + '/zoomify/' + encodeURIComponent(id) + '/ImageProperties.xml');
    if (!r.ok) throw new Error('ImageProperties.xml answered ' + r.status);
    const e = new DOMParser().parseFromString(await r.text(), 'application/xml').documentElement;
    source = {
      type: 'zoomifytileservice',
      width: Number(e.getAttribute('WIDTH')),
      height: Number(e.getAttribute('HEIGHT')),
      tileSize: Number(e.getAttribute('TILESIZE')),
      tilesUrl: base + '/zoomify/' + encodeURIComponent(id) + '/',
    };
  }
  window.viewer = OpenSeadragon({
    id: 'osd', tileSources: source, crossOriginPolicy: 'Anonymous', drawer: 'canvas',
    showNavigationControl: false, animationTime: 0, springStiffness: 100, imageLoaderLimit: 6,
  });
  await new Promise(function (resolve, reject) {
    viewer.addOnceHandler('open', resolve);
    viewer.addOnceHandler('open-failed', function (e) { reject(new Error('open-failed: ' + e.message)); });
  });
  const ts = viewer.world.getItemAt(0).source;
  return { maxLevel: ts.maxLevel, width: ts.dimensions.x, height: ts.dimensions.y, tileSize: ts.getTileWidth(ts.maxLevel) };
};
window.fullyLoaded = function () {
  const item = viewer.world.getItemAt(0);
  return !!item && item.getFullyLoaded();
};
// Luminance spread and colour variety of the drawn canvas (its centre).
window.canvasStats = function () {
  const c = viewer.drawer.canvas;
  const d = c.getContext('2d').getImageData(0, 0, c.width, c.height).data;
  let n = 0, sum = 0, sum2 = 0;
  const colours = new Set();
  for (let y = Math.floor(c.height * 0.3); y < c.height * 0.7; y += 2) {
    for (let x = Math.floor(c.width * 0.3); x < c.width * 0.7; x += 2) {
      const i = (y * c.width + x) * 4;
      const l = 0.299 * d[i] + 0.587 * d[i + 1] + 0.114 * d[i + 2];
      n++; sum += l; sum2 += l * l;
      colours.add(((d[i] >> 3) << 10) | ((d[i + 1] >> 3) << 5) | (d[i + 2] >> 3));
    }
  }
  const mean = sum / Math.max(n, 1);
  return { sampled: n, stddev: Math.sqrt(Math.max(0, sum2 / Math.max(n, 1) - mean * mean)), colours: colours.size };
};
window.zoomToImagePixels = function (screenPerImagePixel) {
  viewer.viewport.zoomTo(viewer.viewport.imageToViewportZoom(screenPerImagePixel), null, true);
  viewer.viewport.applyConstraints(true);
};
</script>
</body></html>
`;
}

function startPageServer(html, osdJs) {
  const server = http.createServer((req, res) => {
    const p = new URL(req.url, 'http://x').pathname;
    if (p === '/' || p === '/index.html') {
      res.writeHead(200, { 'content-type': 'text/html; charset=utf-8', 'cache-control': 'no-store' }).end(html);
    } else if (p === '/favicon.ico') {
      res.writeHead(204).end();
    } else if (p === '/openseadragon.min.js') {
      res.writeHead(200, { 'content-type': 'text/javascript; charset=utf-8' }).end(osdJs);
    } else {
      res.writeHead(404, { 'content-type': 'text/plain' }).end('not found\n');
    }
  });
  server.keepAliveTimeout = 1000;
  return new Promise((resolve, reject) => {
    server.once('error', reject);
    server.listen(0, '127.0.0.1', () => resolve(server));
  });
}

// A tile URL of either protocol → { kind, level } (null for other URLs).
function tileOf(url, opts) {
  if (!url.startsWith(opts.base + '/')) return null;
  const p = url.slice(opts.base.length).split('?')[0];
  let m = /^\/dzi\/[^/]+_files\/(\d+)\/(\d+)_(\d+)\.(jpg|png)$/.exec(p);
  if (m) return { kind: 'dzi', level: Number(m[1]) };
  m = /^\/zoomify\/[^/]+\/TileGroup(\d+)\/(\d+)-(\d+)-(\d+)\.jpg$/.exec(p);
  if (m) return { kind: 'zoomify', level: Number(m[2]) };
  return null;
}

async function main() {
  const opts = parseArgs(process.argv.slice(2));
  const osdPath = path.join(opts.modules, OSD_JS);
  if (!fs.existsSync(osdPath) || !fs.existsSync(path.join(opts.modules, 'playwright-core/package.json'))) {
    console.error(`openseadragon.mjs: openseadragon and playwright-core not found in ${opts.modules}; run scripts/e2e-setup.sh`);
    process.exit(2);
  }
  if (!fs.existsSync(opts.chromium)) {
    console.error(`openseadragon.mjs: no browser at ${opts.chromium}; run scripts/e2e-setup.sh`);
    process.exit(2);
  }
  const require = createRequire(path.join(opts.modules, 'noop.js'));
  const { chromium } = require('playwright-core');
  fs.mkdirSync(opts.out, { recursive: true });

  const records = [];
  const report = { base: opts.base, id: opts.id, checks: [], protocols: {} };
  const pass = (msg) => { report.checks.push(msg); log('ok:', msg); };
  let server = null, context = null, page = null;
  const userDir = fs.mkdtempSync(path.join(os.tmpdir(), 'tessera-osd-'));
  const cleanup = async () => {
    if (context) await context.close().catch((e) => log('closing the browser:', e.message));
    context = null;
    if (server) await new Promise((r) => { server.closeAllConnections?.(); server.close(() => r()); });
    server = null;
    fs.rmSync(userDir, { recursive: true, force: true });
  };
  for (const sig of ['SIGINT', 'SIGTERM']) {
    process.once(sig, () => { log(`${sig}: closing`); cleanup().finally(() => process.exit(130)); });
  }
  const hard = setTimeout(() => { console.error('openseadragon.mjs: FAIL: hard time limit'); process.exit(1); }, (opts.timeout + 20) * 1000);
  hard.unref();
  const deadline = new Promise((_, reject) => {
    const t = setTimeout(() => reject(new CheckFailed(`overall time limit of ${opts.timeout} s reached`)), opts.timeout * 1000);
    t.unref();
  });
  const shot = async (name) => {
    if (page) await page.screenshot({ path: path.join(opts.out, name), timeout: 15000 }).catch((e) => log(`screenshot ${name}: ${e.message}`));
  };

  const run = async () => {
    server = await startPageServer(pageHtml(), fs.readFileSync(osdPath));
    const pageOrigin = `http://127.0.0.1:${server.address().port}`;
    check(pageOrigin !== new URL(opts.base).origin, 'the page must be another origin than Tessera');
    context = await chromium.launchPersistentContext(userDir, {
      executablePath: opts.chromium, headless: true, args: CHROMIUM_ARGS, viewport: { width: 1000, height: 700 },
    });
    for (const kind of ['dzi', 'zoomify']) {
      page = await context.newPage();
      page.on('console', (m) => { if (m.type() === 'error') log(`console: ${m.text()}`); });
      const mine = [];
      const byRequest = new Map();
      page.on('request', (req) => {
        const r = { url: req.url(), tile: tileOf(req.url(), opts), status: null, allowOrigin: null, failure: null, kind };
        byRequest.set(req, r);
        records.push(r);
        mine.push(r);
      });
      page.on('response', (res) => {
        const r = byRequest.get(res.request());
        if (r) { r.status = res.status(); r.allowOrigin = res.headers()['access-control-allow-origin'] ?? null; }
      });
      page.on('requestfailed', (req) => {
        const r = byRequest.get(req);
        if (r) r.failure = req.failure()?.errorText ?? 'failed';
      });
      const tiles = () => mine.filter((r) => r.tile);
      const settled = async (what) => {
        await waitFor(`${what}: the tiles to load`, 45000, async () => {
          if (tiles().some((r) => r.status === null && !r.failure)) return false;
          return page.evaluate(() => window.fullyLoaded());
        });
        const bad = tiles().filter((r) => r.status !== 200 || r.allowOrigin === null);
        check(bad.length === 0, `${kind} ${what}: tiles failed: ${bad.map((r) => `${r.url} → ${r.status ?? r.failure} ACAO=${r.allowOrigin}`).join('; ')}`);
        const stats = await waitFor(`${what}: the canvas to show the image`, 20000, async () => {
          const s = await page.evaluate(() => window.canvasStats());
          return s.stddev >= 6 && s.colours >= 40 ? s : null;
        });
        return stats;
      };

      await page.goto(pageOrigin + '/', { waitUntil: 'load' });
      const src = await page.evaluate(([k, b, i]) => window.openImage(k, b, i), [kind, opts.base, opts.id]);
      pass(`${kind}: OpenSeadragon opened ${src.width}×${src.height}, tiles of ${src.tileSize}, top level ${src.maxLevel}`);
      const home = await settled('home view');
      const homeTiles = tiles().length;
      pass(`${kind}: home view: ${homeTiles} tile(s), all 200 with Access-Control-Allow-Origin; drawn (${JSON.stringify(home)})`);
      await shot(`${kind}-home.png`);

      await page.evaluate(() => window.zoomToImagePixels(2));
      const top = () => tiles().filter((r) => r.tile.level === src.maxLevel);
      await waitFor(`${kind}: tiles of the top level ${src.maxLevel} after zooming in`, 20000, () => top().length > 0);
      const full = await settled('full resolution');
      pass(`${kind}: zoomed to full resolution: ${tiles().length - homeTiles} more tile(s), ${top().length} of the top level, all 200; drawn (${JSON.stringify(full)})`);
      await shot(`${kind}-full.png`);
      report.protocols[kind] = {
        source: src,
        tiles: tiles().length,
        topLevelTiles: top().length,
        levels: [...new Set(tiles().map((r) => r.tile.level))].sort((a, b) => a - b),
      };
      const errors = await page.evaluate(() => window.__errors);
      check(errors.length === 0, `${kind}: page errors: ${errors.join('; ')}`);
      await page.close();
      page = null;
    }
  };

  let failure = null;
  const running = run();
  running.catch(() => {});
  try {
    await Promise.race([running, deadline]);
  } catch (e) {
    failure = e;
    await shot('failure.png');
  }
  await Promise.race([cleanup(), sleep(15000)]);
  report.ok = failure === null;
  report.failure = failure ? failure.message : null;
  fs.writeFileSync(path.join(opts.out, 'requests.json'), JSON.stringify(records, null, 1));
  fs.writeFileSync(path.join(opts.out, 'report.json'), JSON.stringify(report, null, 2));
  if (failure) {
    console.error(`openseadragon.mjs: FAIL: ${failure.message}`);
    if (!(failure instanceof CheckFailed)) console.error(failure.stack);
    return 1;
  }
  log(`PASS; artifacts in ${opts.out}`);
  return 0;
}

main().then((code) => process.exit(code), (e) => {
  console.error(`openseadragon.mjs: FAIL: ${e.stack || e}`);
  process.exit(1);
});
