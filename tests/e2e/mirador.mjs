#!/usr/bin/env node
// End-to-end check of Tessera with Mirador 3 in headless Chromium.
//
//   node tests/e2e/mirador.mjs BASE_URL ITEM OUT_DIR [options]
//   node tests/e2e/mirador.mjs --base http://127.0.0.1:8182 --item book-of-hours --out target/test-artifacts/mirador
//
// Serves, from its own loopback HTTP server (a different origin from
// Tessera), a page that loads mirador.min.js and opens
// BASE_URL/iiif/ITEM/manifest, drives /usr/bin/chromium through playwright-core,
// records every request, and checks:
//   default mode        the manifest and an info.json load (200 + CORS), tiles
//                       are asked and answered 200 with CORS, the viewer shows
//                       pixels; then zooms in until scale-factor-1 tiles are
//                       asked and served, and the viewer still shows pixels.
//   --expect-blocked    Tessera does not allow the page's origin (no
//                       Access-Control-Allow-Origin for it) and nothing is drawn.
//   --search WORD       after the first tiles are drawn, opens Mirador's search
//                       panel (sidebar → Search tab), types WORD and submits;
//                       checks the search request is answered 200 with CORS,
//                       the hit list shows, Mirador goes to the first hit's
//                       canvas and draws the selected-hit highlight (yellow) on
//                       the viewer where the hit's box is. With
//                       --expect-hit CANVAS#xywh=X,Y,W,H (CANVAS: index from 0)
//                       the first hit must be on that canvas with that box.
//                       Writes OUT_DIR/search.png. (Needs a single-canvas view:
//                       an item whose viewing hint is not "paged".)
// Writes OUT_DIR/before-zoom.png, OUT_DIR/after-zoom.png (or blocked.png),
// OUT_DIR/requests.json and OUT_DIR/report.json. Exit status 0 = pass,
// 1 = a check failed, 2 = bad usage or set-up (modules or browser missing).
//
// Options:
//   --expect-blocked        the negative CORS check
//   --timeout SECONDS       overall limit (default 90)
//   --page-port PORT        port of the page server (default: a free one)
//   --modules DIR           node_modules holding mirador and playwright-core
//                           (default: $TESSERA_E2E_MODULES, else
//                           target/tools/e2e/node_modules, else tests/e2e/node_modules)
//   --chromium PATH         browser executable (default $TESSERA_CHROMIUM or /usr/bin/chromium)
//   --strict-origin         require Access-Control-Allow-Origin to be the page's
//                           own origin (not "*") with "Vary: Origin" (for a server
//                           run with cors.allowed_origins = [that origin]; pair
//                           with --page-port)
//   --viewer-page           open Tessera's own page BASE_URL/viewer/ITEM (same
//                           origin, Mirador from BASE_URL/static/) instead of a
//                           page of another origin; CORS headers are then not required
//   --headed                show the browser (needs a display)

import fs from 'node:fs';
import http from 'node:http';
import os from 'node:os';
import path from 'node:path';
import zlib from 'node:zlib';
import { createRequire } from 'node:module';
import { fileURLToPath } from 'node:url';

const HERE = path.dirname(fileURLToPath(import.meta.url));
const REPO = path.resolve(HERE, '..', '..');

// The flags known to work with Debian's chromium here (see the project's notes).
const CHROMIUM_ARGS = [
  '--no-sandbox',
  '--disable-gpu',
  '--disable-quic',
  '--no-first-run',
  '--disable-background-networking',
  '--disable-component-update',
  '--disable-sync',
  '--disable-dev-shm-usage',
];

// ---------------------------------------------------------------- arguments

function usage(msg) {
  if (msg) console.error(`mirador.mjs: ${msg}`);
  console.error('usage: node tests/e2e/mirador.mjs BASE_URL ITEM OUT_DIR [--expect-blocked] [--timeout S] [--page-port P] [--modules DIR] [--chromium PATH]');
  process.exit(2);
}

function parseArgs(argv) {
  const o = {
    base: null, item: null, out: null, expectBlocked: false, timeout: 90, pagePort: 0,
    modules: process.env.TESSERA_E2E_MODULES || null,
    chromium: process.env.TESSERA_CHROMIUM || '/usr/bin/chromium',
    headed: false, strictOrigin: false, viewerPage: false, search: null, expectHit: null,
  };
  const pos = [];
  for (let i = 0; i < argv.length; i++) {
    const a = argv[i];
    const val = () => {
      if (i + 1 >= argv.length) usage(`${a} needs a value`);
      return argv[++i];
    };
    switch (a) {
      case '--base': o.base = val(); break;
      case '--item': o.item = val(); break;
      case '--out': o.out = val(); break;
      case '--expect-blocked': o.expectBlocked = true; break;
      case '--timeout': o.timeout = Number(val()); break;
      case '--page-port': o.pagePort = Number(val()); break;
      case '--modules': o.modules = val(); break;
      case '--chromium': o.chromium = val(); break;
      case '--headed': o.headed = true; break;
      case '--strict-origin': o.strictOrigin = true; break;
      case '--viewer-page': o.viewerPage = true; break;
      case '--search': o.search = val(); break;
      case '--expect-hit': {
        const m = /^(\d+)#xywh=(\d+),(\d+),(\d+),(\d+)$/.exec(val());
        if (!m) usage('--expect-hit wants CANVAS#xywh=X,Y,W,H');
        o.expectHit = { canvas: Number(m[1]), box: m.slice(2).map(Number) };
        break;
      }
      case '-h': case '--help': usage(); break;
      default:
        if (a.startsWith('--')) usage(`unknown option ${a}`);
        pos.push(a);
    }
  }
  if (pos.length > 3) usage('too many arguments');
  o.base = o.base ?? pos[0];
  o.item = o.item ?? pos[1];
  o.out = o.out ?? pos[2];
  if (!o.base || !o.item || !o.out) usage('BASE_URL, ITEM and OUT_DIR are required');
  let u;
  try { u = new URL(o.base); } catch { usage(`bad base URL ${o.base}`); }
  if (!['127.0.0.1', 'localhost', '[::1]'].includes(u.hostname)) usage(`the base URL must be on loopback: ${o.base}`);
  o.base = o.base.replace(/\/+$/, '');
  if (o.viewerPage && (o.expectBlocked || o.strictOrigin)) usage('--viewer-page is same-origin: it does not go with --expect-blocked or --strict-origin');
  if (!(o.timeout > 0)) usage('--timeout must be a positive number of seconds');
  if (!Number.isInteger(o.pagePort) || o.pagePort < 0 || o.pagePort > 65535) usage('bad --page-port');
  return o;
}

function findModules(explicit) {
  const candidates = explicit
    ? [explicit]
    : [path.join(REPO, 'target/tools/e2e/node_modules'), path.join(HERE, 'node_modules')];
  for (const dir of candidates) {
    if (fs.existsSync(path.join(dir, 'playwright-core/package.json')) && fs.existsSync(path.join(dir, 'mirador/dist/mirador.min.js'))) {
      return path.resolve(dir);
    }
  }
  console.error(`mirador.mjs: mirador and playwright-core not found in ${candidates.join(' or ')}; run scripts/e2e-setup.sh`);
  process.exit(2);
}

// ---------------------------------------------------------------- small helpers

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

function isLoopback(url) {
  try {
    const u = new URL(url);
    if (u.protocol === 'data:' || u.protocol === 'blob:' || u.protocol === 'about:') return true;
    return ['127.0.0.1', 'localhost', '[::1]'].includes(u.hostname);
  } catch {
    return false;
  }
}

// Minimal PNG decoder (8-bit RGB/RGBA, not interlaced: what Chromium's
// screenshots are) → { width, height, channels, data }.
function decodePng(buf) {
  check(buf.subarray(0, 8).equals(Buffer.from([0x89, 0x50, 0x4e, 0x47, 0x0d, 0x0a, 0x1a, 0x0a])), 'screenshot is not a PNG');
  let pos = 8, width = 0, height = 0, ctype = 0, depth = 0, interlace = 0;
  const idat = [];
  while (pos < buf.length) {
    const len = buf.readUInt32BE(pos);
    const type = buf.toString('ascii', pos + 4, pos + 8);
    const body = buf.subarray(pos + 8, pos + 8 + len);
    if (type === 'IHDR') {
      width = body.readUInt32BE(0); height = body.readUInt32BE(4);
      depth = body[8]; ctype = body[9]; interlace = body[12];
    } else if (type === 'IDAT') idat.push(body);
    else if (type === 'IEND') break;
    pos += 12 + len;
  }
  check(depth === 8 && (ctype === 2 || ctype === 6) && interlace === 0, `unexpected PNG format (depth ${depth}, colour type ${ctype})`);
  const ch = ctype === 6 ? 4 : 3;
  const raw = zlib.inflateSync(Buffer.concat(idat));
  const stride = width * ch;
  const out = Buffer.alloc(stride * height);
  for (let y = 0; y < height; y++) {
    const f = raw[y * (stride + 1)];
    const src = raw.subarray(y * (stride + 1) + 1, (y + 1) * (stride + 1));
    const row = out.subarray(y * stride, (y + 1) * stride);
    const prev = y > 0 ? out.subarray((y - 1) * stride, y * stride) : null;
    for (let x = 0; x < stride; x++) {
      const a = x >= ch ? row[x - ch] : 0;
      const b = prev ? prev[x] : 0;
      const c = prev && x >= ch ? prev[x - ch] : 0;
      let v = src[x];
      if (f === 1) v += a;
      else if (f === 2) v += b;
      else if (f === 3) v += (a + b) >> 1;
      else if (f === 4) {
        const p = a + b - c, pa = Math.abs(p - a), pb = Math.abs(p - b), pc = Math.abs(p - c);
        v += pa <= pb && pa <= pc ? a : pb <= pc ? b : c;
      }
      row[x] = v & 255;
    }
  }
  return { width, height, channels: ch, data: out };
}

// Luminance spread and colour variety of the central part of an image (the
// viewer's controls sit on its edges).
function pixelStats(img) {
  const { width, height, channels, data } = img;
  const x0 = Math.floor(width * 0.2), x1 = Math.ceil(width * 0.8);
  const y0 = Math.floor(height * 0.15), y1 = Math.ceil(height * 0.8);
  let n = 0, sum = 0, sum2 = 0;
  const colours = new Set();
  for (let y = y0; y < y1; y += 2) {
    for (let x = x0; x < x1; x += 2) {
      const i = (y * width + x) * channels;
      const r = data[i], g = data[i + 1], b = data[i + 2];
      const l = 0.299 * r + 0.587 * g + 0.114 * b;
      n++; sum += l; sum2 += l * l;
      colours.add(((r >> 3) << 10) | ((g >> 3) << 5) | (b >> 3));
    }
  }
  const mean = sum / Math.max(n, 1);
  const stddev = Math.sqrt(Math.max(0, sum2 / Math.max(n, 1) - mean * mean));
  return { sampled: n, mean: +mean.toFixed(1), stddev: +stddev.toFixed(1), colours: colours.size };
}
const looksDrawn = (s) => s.stddev >= 6 && s.colours >= 40;

// ---------------------------------------------------------------- the page server

function pageHtml(manifestUrl) {
  const cfg = {
    id: 'viewer',
    windows: [{ manifestId: manifestUrl, thumbnailNavigationPosition: 'off' }],
    window: { allowClose: false, allowMaximize: false, sideBarOpen: false, defaultView: 'single' },
    workspaceControlPanel: { enabled: false },
    osdConfig: { crossOriginPolicy: 'Anonymous' },
  };
  const json = JSON.stringify(cfg).replace(/</g, '\\u003c');
  return `<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>Tessera × Mirador e2e</title>
<style>html,body{margin:0;height:100%}#viewer{position:absolute;inset:0}</style>
</head><body><div id="viewer"></div>
<script>window.__errors = []; addEventListener('error', function (e) { window.__errors.push(String(e.message)); });</script>
<script src="/mirador.min.js"></script>
<script>window.miradorInstance = Mirador.viewer(${json});</script>
</body></html>
`;
}

function startPageServer(port, html, miradorJs) {
  const server = http.createServer((req, res) => {
    const p = new URL(req.url, 'http://x').pathname;
    if (req.method !== 'GET' && req.method !== 'HEAD') {
      res.writeHead(405).end();
    } else if (p === '/' || p === '/index.html') {
      res.writeHead(200, { 'content-type': 'text/html; charset=utf-8', 'cache-control': 'no-store' }).end(html);
    } else if (p === '/mirador.min.js') {
      res.writeHead(200, { 'content-type': 'text/javascript; charset=utf-8', 'content-length': miradorJs.length });
      res.end(req.method === 'HEAD' ? undefined : miradorJs);
    } else {
      res.writeHead(404, { 'content-type': 'text/plain' }).end('not found\n');
    }
  });
  server.keepAliveTimeout = 1000;
  return new Promise((resolve, reject) => {
    server.once('error', reject);
    server.listen(port, '127.0.0.1', () => resolve(server));
  });
}

// ---------------------------------------------------------------- requests

const safeDecode = (s) => { try { return decodeURIComponent(s); } catch { return s; } };

// Classifies a Tessera URL: manifest, Image API info.json, or image request
// (with region, size and the scale factor when it can tell).
function classify(url, opts, infos) {
  if (!url.startsWith(opts.base + '/')) return { kind: 'other' };
  const rest = url.slice(opts.base.length).split('?')[0];
  const mm = rest.match(/^\/iiif\/([^/]+)\/manifest$/);
  if (mm && safeDecode(mm[1]) === opts.item) return { kind: 'manifest' };
  const m = rest.match(/^\/iiif\/2\/([^/]+)\/(.*)$/);
  if (!m) return { kind: 'tessera-other' };
  const [, id, tail] = m;
  if (tail === 'info.json') return { kind: 'info', id };
  const s = tail.split('/');
  if (s.length !== 4) return { kind: 'tessera-other' };
  const [region, size] = s;
  let sf = null;
  const sw = size.match(/^(\d+),$/);
  const rr = region.match(/^(\d+),(\d+),(\d+),(\d+)$/);
  if (sw && rr) sf = Number(rr[3]) / Number(sw[1]);
  else if (sw && region === 'full' && infos.has(id)) sf = infos.get(id).width / Number(sw[1]);
  return { kind: 'image', id, region, size, sf: sf === null ? null : +sf.toFixed(3) };
}

// One request from Node (no browser, no CORS enforcement) with an Origin
// header: what Tessera itself answers.
function probe(url, origin, method = 'GET', extra = {}) {
  return new Promise((resolve, reject) => {
    const req = http.request(url, { method, headers: { origin, ...extra }, timeout: 15000 }, (res) => {
      const chunks = [];
      res.on('data', (c) => chunks.push(c));
      res.on('end', () => resolve({
        url, method, status: res.statusCode,
        allowOrigin: res.headers['access-control-allow-origin'] ?? null,
        body: Buffer.concat(chunks),
      }));
    });
    req.on('timeout', () => req.destroy(new Error(`timeout: ${method} ${url}`)));
    req.on('error', reject);
    req.end();
  });
}

// The first Image API service of a Presentation 2 manifest.
function firstService(manifest) {
  const img = manifest?.sequences?.[0]?.canvases?.[0]?.images?.[0]?.resource;
  const svc = Array.isArray(img?.service) ? img.service[0] : img?.service;
  return svc?.['@id'] ?? svc?.id ?? null;
}

// ---------------------------------------------------------------- main

async function main() {
  const opts = parseArgs(process.argv.slice(2));
  const modules = findModules(opts.modules);
  if (!fs.existsSync(opts.chromium)) {
    console.error(`mirador.mjs: no browser at ${opts.chromium}; run scripts/e2e-setup.sh (apt-get install chromium)`);
    process.exit(2);
  }
  const require = createRequire(path.join(modules, 'noop.js'));
  const { chromium } = require('playwright-core');
  const miradorJs = fs.readFileSync(path.join(modules, 'mirador/dist/mirador.min.js'));
  fs.mkdirSync(opts.out, { recursive: true });

  const manifestUrl = `${opts.base}/iiif/${encodeURIComponent(opts.item)}/manifest`;
  const records = [];
  const infos = new Map();
  const consoleLines = [];
  const external = [];
  const mode = opts.expectBlocked ? 'expect-blocked' : opts.viewerPage ? 'viewer-page' : opts.strictOrigin ? 'strict-origin' : 'normal';
  const report = { mode, base: opts.base, item: opts.item, manifest: manifestUrl, checks: [] };
  const pass = (msg) => { report.checks.push(msg); log('ok:', msg); };

  let server = null, context = null, userDir = null;
  // Hard stop if closing hangs past the limit.
  const hard = setTimeout(() => {
    console.error(`mirador.mjs: FAIL: hard time limit (${opts.timeout + 20} s) reached while closing`);
    process.exit(1);
  }, (opts.timeout + 20) * 1000);
  hard.unref();

  const cleanup = async () => {
    if (context) await context.close().catch((e) => log('closing the browser:', e.message));
    context = null;
    if (server) await new Promise((r) => { server.closeAllConnections?.(); server.close(() => r()); });
    server = null;
    if (userDir) fs.rmSync(userDir, { recursive: true, force: true });
    userDir = null;
  };
  for (const sig of ['SIGINT', 'SIGTERM']) {
    process.once(sig, () => { log(`${sig}: closing`); cleanup().finally(() => process.exit(130)); });
  }

  const deadline = new Promise((_, reject) => {
    const t = setTimeout(() => reject(new CheckFailed(`overall time limit of ${opts.timeout} s reached`)), opts.timeout * 1000);
    t.unref();
  });

  let page;
  const shot = async (name) => {
    if (!page) return;
    const file = path.join(opts.out, name);
    await page.screenshot({ path: file, timeout: 15000 }).then(() => log('screenshot', file), (e) => log(`screenshot ${name} failed: ${e.message}`));
  };
  const mirador = (fn, arg) => page.evaluate(fn, arg);
  const canvasStats = async () => {
    const el = page.locator('.openseadragon-canvas').first();
    if ((await el.count()) === 0) return null;
    const png = await el.screenshot({ timeout: 10000 });
    return pixelStats(decodePng(png));
  };
  // A `full` tile's scale factor needs its info.json, which may arrive after
  // the tile was asked: work it out again when asked.
  const tiles = () => records.filter((r) => r.kind === 'image').map((r) => {
    if (r.sf === null) r.sf = classify(r.url, opts, infos).sf;
    return r;
  });
  const pending = () => records.filter((r) => r.kind === 'image' && r.status === null && !r.failure);

  const run = async () => {
    let pageUrl, pageOrigin;
    if (opts.viewerPage) {
      pageUrl = `${opts.base}/viewer/${encodeURIComponent(opts.item)}`;
      pageOrigin = new URL(opts.base).origin;
      log(`Tessera's viewer page ${pageUrl}, manifest ${manifestUrl}`);
    } else {
      server = await startPageServer(opts.pagePort, pageHtml(manifestUrl), miradorJs);
      pageOrigin = `http://127.0.0.1:${server.address().port}`;
      pageUrl = pageOrigin + '/';
      check(pageOrigin !== new URL(opts.base).origin, 'the page server must be another origin than Tessera');
      log(`page server ${pageOrigin}, Tessera ${opts.base}, manifest ${manifestUrl}`);
    }
    report.page = pageUrl;
    report.pageOrigin = pageOrigin;

    userDir = fs.mkdtempSync(path.join(os.tmpdir(), 'tessera-mirador-'));
    context = await chromium.launchPersistentContext(userDir, {
      executablePath: opts.chromium,
      headless: !opts.headed,
      args: CHROMIUM_ARGS,
      viewport: { width: 1280, height: 900 },
      timeout: 30000,
    });
    report.browser = context.browser()?.version() ?? 'chromium';

    // Loopback only: anything else is refused and reported.
    await context.route((u) => !isLoopback(u.href), (route) => {
      external.push(route.request().url());
      return route.abort('blockedbyclient');
    });

    const byRequest = new Map();
    context.on('request', (req) => {
      const c = classify(req.url(), opts, infos);
      const r = { url: req.url(), method: req.method(), type: req.resourceType(), ...c, status: null, allowOrigin: null, vary: null, failure: null, t: Date.now() - t0 };
      records.push(r);
      byRequest.set(req, r);
    });
    context.on('response', async (resp) => {
      const r = byRequest.get(resp.request());
      if (!r) return;
      const h = resp.headers();
      r.status = resp.status();
      r.allowOrigin = h['access-control-allow-origin'] ?? null;
      r.vary = h['vary'] ?? null;
      r.contentType = h['content-type'] ?? null;
      if (r.kind === 'info' && r.status === 200) {
        try {
          const j = await resp.json();
          infos.set(r.id, { width: j.width, height: j.height, tiles: j.tiles });
        } catch { /* the body may be gone when the browser blocked it */ }
      }
    });
    context.on('requestfailed', (req) => {
      const r = byRequest.get(req);
      if (r) r.failure = req.failure()?.errorText ?? 'failed';
    });

    page = context.pages()[0] ?? (await context.newPage());
    page.on('console', (m) => consoleLines.push(`${m.type()}: ${m.text()}`));
    page.on('pageerror', (e) => consoleLines.push(`pageerror: ${e.message}`));

    const doc = await page.goto(pageUrl, { waitUntil: 'load', timeout: 30000 });
    check(doc && doc.status() === 200, `${pageUrl} answered ${doc ? doc.status() : 'nothing'}`);
    check(await mirador(() => typeof window.Mirador === 'object' && !!window.miradorInstance), 'Mirador did not start on the page');
    pass('Mirador 3 started on the page');

    const withCors = opts.viewerPage ? '(same origin)' : 'with CORS';
    const varyOrigin = (r) => (r.vary ?? '').toLowerCase().split(',').map((v) => v.trim()).includes('origin');
    const allowed = opts.viewerPage
      ? () => true // same origin: no CORS needed
      : opts.strictOrigin && !opts.expectBlocked
        ? (r) => r.allowOrigin === pageOrigin && varyOrigin(r)
        : (r) => r.allowOrigin === '*' || r.allowOrigin === pageOrigin;
    const manifestReq = await waitFor('the manifest request', 20000, () => records.find((r) => r.kind === 'manifest' && (r.status !== null || r.failure)));

    if (opts.expectBlocked) {
      const outcome = await waitFor('Mirador to give up on the manifest', 20000, () =>
        mirador(() => {
          const m = ((st) => st.manifests[Object.values(st.windows)[0]?.manifestId])(window.miradorInstance.store.getState());
          return m && m.error ? 'error' : m && m.json ? 'loaded' : null;
        }));
      check(outcome === 'error', `Mirador read the manifest although its origin should be refused (manifest: ${manifestReq.status}, Access-Control-Allow-Origin ${manifestReq.allowOrigin})`);
      const err = await mirador(() => String(((st) => st.manifests[Object.values(st.windows)[0]?.manifestId])(window.miradorInstance.store.getState()).error));
      report.manifestError = err;
      pass(`Mirador could not read the manifest (${err})`);
      await sleep(3000); // let anything else that would happen, happen
      const tess = records.filter((r) => r.kind !== 'other' && r.url.startsWith(opts.base + '/'));
      check(tess.length > 0, 'no request reached Tessera');
      const leaking = tess.filter((r) => r.status !== null && allowed(r));
      check(leaking.length === 0, `Tessera allowed the page's origin: ${leaking.map((r) => `${r.url} → ${r.allowOrigin}`).join(', ')}`);
      pass(`the browser refused all ${tess.length} Tessera response(s) (manifest: ${manifestReq.status ?? manifestReq.failure}, Access-Control-Allow-Origin ${manifestReq.allowOrigin ?? 'absent'})`);
      // What Tessera answers to this origin, asked directly: the resources
      // exist (200) but carry no Allow-Origin for it.
      const m = await probe(manifestUrl, pageOrigin);
      check(m.status === 200, `manifest asked directly: ${m.status}`);
      const svc = firstService(JSON.parse(m.body.toString('utf8')));
      check(svc, 'the manifest names no image service');
      const probes = [
        m,
        await probe(`${svc}/info.json`, pageOrigin),
        await probe(`${svc}/0,0,512,512/256,/0/default.jpg`, pageOrigin),
        await probe(manifestUrl, pageOrigin, 'OPTIONS', { 'access-control-request-method': 'GET' }),
      ];
      report.probes = probes.map(({ body, ...p }) => p);
      for (const p of probes) {
        check(p.method === 'OPTIONS' || p.status === 200, `${p.method} ${p.url} answered ${p.status}`);
        check(p.allowOrigin !== '*' && p.allowOrigin !== pageOrigin, `Tessera allows ${pageOrigin}: ${p.method} ${p.url} → Access-Control-Allow-Origin ${p.allowOrigin}`);
      }
      pass(`asked directly with Origin ${pageOrigin}, manifest, info.json, a tile and a preflight carry no Allow-Origin for it (${probes.map((p) => `${p.method} ${p.status} ${p.allowOrigin ?? 'absent'}`).join('; ')})`);
      const served = tiles().filter((r) => r.status === 200 && allowed(r));
      check(served.length === 0, `tiles were served to the page: ${served.map((r) => r.url).join(', ')}`);
      const stats = await canvasStats();
      report.canvas = stats;
      check(stats === null || !looksDrawn(stats), `the viewer shows an image although CORS should block it: ${JSON.stringify(stats)}`);
      pass(stats === null ? 'no OpenSeadragon canvas was created: nothing drawn' : `the OpenSeadragon canvas is blank (${JSON.stringify(stats)})`);
      await shot('blocked.png');
      return;
    }

    // 1. Manifest and info.json with CORS.
    check(manifestReq.status !== null, `the browser refused the manifest (${manifestReq.failure}): blocked by CORS? (see requests.json)`);
    check(manifestReq.status === 200, `manifest answered ${manifestReq.status}`);
    check(allowed(manifestReq), `manifest lacks Access-Control-Allow-Origin for ${pageOrigin}${opts.strictOrigin ? ' with Vary: Origin' : ''} (got ${manifestReq.allowOrigin ?? 'none'}, Vary ${manifestReq.vary ?? 'none'})`);
    pass(`manifest 200, Access-Control-Allow-Origin ${manifestReq.allowOrigin}, Vary ${manifestReq.vary ?? 'none'}`);
    await waitFor('Mirador to read the manifest', 20000, () =>
      mirador(() => {
        const m = ((st) => st.manifests[Object.values(st.windows)[0]?.manifestId])(window.miradorInstance.store.getState());
        if (m && m.error) throw new Error(`Mirador: manifest error ${m.error}`);
        return !!(m && m.json);
      }));
    const info = await waitFor('an info.json answered 200', 20000, () => records.find((r) => r.kind === 'info' && r.status === 200));
    check(allowed(info), `info.json lacks Access-Control-Allow-Origin for ${pageOrigin}: ${info.url} (got ${info.allowOrigin ?? 'none'})`);
    pass(`info.json 200, Access-Control-Allow-Origin ${info.allowOrigin} (${info.url})`);

    // 2. First tiles, answered 200 with CORS, and drawn.
    await waitFor('tile requests', 20000, () => tiles().some((r) => r.status !== null || r.failure));
    await waitFor('the first tiles to finish', 30000, () => tiles().length > 0 && pending().length === 0);
    let bad = tiles().filter((r) => r.status !== 200 || !allowed(r));
    check(bad.length === 0, `tiles failed: ${bad.map((r) => `${r.url} → ${r.status ?? r.failure} ACAO=${r.allowOrigin}`).join('; ')}`);
    const firstSfs = [...new Set(tiles().map((r) => r.sf))].sort((a, b) => a - b);
    pass(`${tiles().length} tile(s) at scale factor(s) ${firstSfs.join(', ')}, all 200 ${withCors}`);
    const before = await waitFor('the viewer to show pixels', 20000, async () => {
      const s = await canvasStats();
      return s && looksDrawn(s) ? s : null;
    });
    report.canvasBefore = before;
    pass(`the OpenSeadragon canvas is drawn (${JSON.stringify(before)})`);
    await sleep(500);
    await shot('before-zoom.png');

    if (opts.search) {
      await searchThroughThePanel(allowed, withCors);
      return;
    }

    // 3. Zoom in until scale-factor-1 tiles are needed.
    const { windowId, viewer } = await waitFor('the viewer state', 20000, () =>
      mirador(() => {
        const st = window.miradorInstance.store.getState();
        const windowId = Object.keys(st.windows)[0];
        const viewer = windowId && st.viewers[windowId];
        return viewer && viewer.zoom ? { windowId, viewer } : null;
      }));
    const canvasSize = await mirador(() => {
      const c = document.querySelector('.openseadragon-canvas');
      return { w: c.clientWidth, h: c.clientHeight };
    });
    // Viewport units are canvas pixels in Mirador 3: zoom = 1 / visible width.
    // Aim at 1.5 canvas pixels per screen pixel's inverse, i.e. 1.5× magnification.
    const targetZoom = Math.max(viewer.zoom * 4, 1.5 / canvasSize.w);
    const target = { x: viewer.x, y: viewer.y, zoom: targetZoom };
    report.zoom = { windowId, from: viewer, to: target, canvasElement: canvasSize };
    const zoomedAt = Date.now() - t0;
    log(`zooming window ${windowId} from ${JSON.stringify(viewer)} to ${JSON.stringify(target)}`);
    await mirador(({ windowId, target }) => {
      window.miradorInstance.store.dispatch(Mirador.actions.updateViewport(windowId, target));
    }, { windowId, target });
    const sf1 = () => tiles().filter((r) => r.t >= zoomedAt && r.sf === 1);
    await waitFor('scale-factor-1 tile requests', 20000, () => sf1().length > 0);
    await waitFor('the zoomed tiles to finish', 30000, async () => {
      if (pending().length > 0) return false;
      await sleep(800);
      return pending().length === 0;
    });
    bad = tiles().filter((r) => r.t >= zoomedAt && (r.status !== 200 || !allowed(r)));
    check(bad.length === 0, `tiles failed after zooming: ${bad.map((r) => `${r.url} → ${r.status ?? r.failure} ACAO=${r.allowOrigin}`).join('; ')}`);
    const sf1ok = sf1().filter((r) => r.status === 200 && allowed(r));
    check(sf1ok.length > 0, 'no scale-factor-1 tile was served');
    pass(`${sf1ok.length} scale-factor-1 tile(s) served 200 ${withCors}, e.g. ${sf1ok[0].url.slice(opts.base.length)}`);
    const after = await waitFor('the zoomed viewer to show pixels', 20000, async () => {
      const s = await canvasStats();
      return s && looksDrawn(s) ? s : null;
    });
    report.canvasAfter = after;
    pass(`the zoomed canvas is drawn (${JSON.stringify(after)})`);
    const zoomedTo = await mirador((w) => window.miradorInstance.store.getState().viewers[w], windowId);
    report.zoom.reached = zoomedTo;
    await sleep(300);
    await shot('after-zoom.png');
  };

  // 3 (--search). Search through Mirador's own panel, as a reader would.
  const searchThroughThePanel = async (allowed, withCors) => {
    const word = opts.search;
    await page.getByRole('button', { name: 'Toggle sidebar' }).first().click({ timeout: 15000 });
    await page.getByRole('tab', { name: 'Search' }).first().click({ timeout: 15000 });
    const input = page.getByLabel('search terms').first();
    await input.fill(word, { timeout: 15000 });
    await input.press('Enter');
    pass(`typed "${word}" in Mirador's search panel and submitted it`);
    const req = await waitFor('the search request', 20000, () =>
      records.find((r) => /\/search\?q=/.test(r.url) && (r.status !== null || r.failure)));
    check(req.status === 200, `search answered ${req.status ?? req.failure} (${req.url})`);
    check(allowed(req), `the search answer lacks Access-Control-Allow-Origin (got ${req.allowOrigin ?? 'none'})`);
    check(!new URL(req.url).search.includes('?', 1), `the service id held a "?" (${req.url})`);
    pass(`search request ${req.url.slice(opts.base.length)} answered 200 ${withCors}`);

    // The hit list: one entry per hit, the match in bold.
    const panel = page.locator('[aria-label="Search"]').filter({ has: page.locator('li') }).first();
    const hits = await waitFor('the hit list', 20000, async () => {
      const items = await panel.locator('li').allInnerTexts().catch(() => []);
      return items.length > 0 ? items : null;
    });
    const firstMatch = await panel.locator('li strong').first().innerText();
    check(firstMatch.toLowerCase() === word.toLowerCase(), `the first hit shows "${firstMatch}", not "${word}"`);
    report.searchHits = hits.length;
    pass(`Mirador lists ${hits.length} hit(s); the first reads "${hits[0].replace(/\s+/g, ' ').slice(0, 80)}"`);

    // Mirador selects the first hit and goes to its canvas.
    const sel = await waitFor('the first hit to be selected', 20000, () =>
      mirador(() => {
        const st = window.miradorInstance.store.getState();
        const windowId = Object.keys(st.windows)[0];
        const w = st.windows[windowId];
        const searches = st.searches?.[windowId] || {};
        for (const cw of Object.values(searches)) {
          const ids = cw.selectedContentSearchAnnotationIds || [];
          if (ids.length === 0) continue;
          const json = Object.values(cw.data || {}).map((d) => d.json).find((j) => j && j.resources);
          const res = json && json.resources.find((r) => r['@id'] === ids[0] || r.id === ids[0]);
          if (res) return { windowId, canvasId: w.canvasId, on: typeof res.on === 'string' ? res.on : JSON.stringify(res.on) };
        }
        return null;
      }));
    const [onCanvas, frag] = sel.on.split('#');
    check(onCanvas === sel.canvasId, `the window shows ${sel.canvasId}, not the first hit's canvas ${onCanvas}`);
    const box = /xywh=(\d+),(\d+),(\d+),(\d+)/.exec(frag || '')?.slice(1).map(Number);
    check(box, `the selected hit has no xywh box: ${sel.on}`);
    if (opts.expectHit) {
      const want = `${opts.base}/iiif/${encodeURIComponent(opts.item)}/canvas/${opts.expectHit.canvas}`;
      check(onCanvas === want, `the first hit is on ${onCanvas}, expected ${want}`);
      check(box.join(',') === opts.expectHit.box.join(','), `the first hit's box is ${box}, expected ${opts.expectHit.box}`);
    }
    report.searchSelected = sel;
    pass(`the first hit is selected and its canvas shown: ${sel.on.slice(opts.base.length)}`);

    // The highlight: where Mirador's overlay paints the selected hit (yellow),
    // against where the box should appear given the viewport.
    const settle = async () => {
      let last = null;
      return waitFor('the viewport to settle', 20000, async () => {
        const v = await mirador((w) => window.miradorInstance.store.getState().viewers[w], sel.windowId);
        if (!v || !v.zoom) { await sleep(200); return null; }
        const same = last && JSON.stringify(v) === JSON.stringify(last);
        last = v;
        if (!same) { await sleep(700); return null; }
        return v;
      });
    };
    const viewport = await settle();
    const drawn = await waitFor('the highlight to be drawn', 20000, () =>
      mirador(() => {
        const canvases = [...document.querySelectorAll('.openseadragon-canvas canvas')];
        const overlay = canvases[canvases.length - 1];
        if (!overlay || canvases.length < 2) return null;
        const { width, height } = overlay;
        const data = overlay.getContext('2d').getImageData(0, 0, width, height).data;
        let x0 = width, y0 = height, x1 = -1, y1 = -1;
        for (let y = 0; y < height; y++) {
          for (let x = 0; x < width; x++) {
            const i = (y * width + x) * 4;
            // #ffff00 at globalAlpha 0.3 on a clear overlay.
            if (data[i + 3] > 20 && data[i] > 200 && data[i + 1] > 200 && data[i + 2] < 80) {
              if (x < x0) x0 = x; if (x > x1) x1 = x; if (y < y0) y0 = y; if (y > y1) y1 = y;
            }
          }
        }
        const el = document.querySelector('.openseadragon-canvas');
        return x1 < 0 ? null : { x: x0, y: y0, w: x1 - x0 + 1, h: y1 - y0 + 1, overlay: { width, height }, element: { w: el.clientWidth, h: el.clientHeight } };
      }));
    // Mirador's viewport: centre (x, y) in canvas pixels, zoom = 1 / visible width.
    const k = drawn.overlay.width / drawn.element.w; // overlay pixels per CSS pixel
    const scale = drawn.element.w * viewport.zoom * k;
    const expected = {
      x: drawn.overlay.width / 2 + (box[0] - viewport.x) * scale,
      y: drawn.overlay.height / 2 + (box[1] - viewport.y) * scale,
      w: box[2] * scale,
      h: box[3] * scale,
    };
    report.highlight = { drawn, expected, viewport };
    const tol = Math.max(4, 0.15 * Math.max(expected.w, expected.h));
    const off = Math.max(Math.abs(drawn.x - expected.x), Math.abs(drawn.y - expected.y),
      Math.abs(drawn.w - expected.w), Math.abs(drawn.h - expected.h));
    check(off <= tol, `the highlight is drawn at ${JSON.stringify(drawn)}, the hit's box should be at ${JSON.stringify(expected)} (off by ${off.toFixed(1)} px)`);
    pass(`the highlight lands on the hit's box: drawn ${drawn.x},${drawn.y} ${drawn.w}×${drawn.h}, expected ${expected.x.toFixed(0)},${expected.y.toFixed(0)} ${expected.w.toFixed(0)}×${expected.h.toFixed(0)} (overlay pixels)`);
    await shot('search.png');
  };

  let failure = null;
  const running = run();
  running.catch(() => {}); // after a time-out it fails on the closed browser: ignored
  try {
    await Promise.race([running, deadline]);
  } catch (e) {
    failure = e;
    await shot('failure.png').catch(() => {});
  }
  if (failure === null && external.length > 0) failure = new CheckFailed(`the page tried to leave loopback: ${external.join(', ')}`);
  const pageErrors = page ? await page.evaluate(() => window.__errors || []).catch(() => []) : [];
  await Promise.race([cleanup(), sleep(15000)]);

  report.ok = failure === null;
  report.failure = failure ? failure.message : null;
  report.external = external;
  report.pageErrors = pageErrors;
  report.console = consoleLines.slice(-50);
  report.summary = {
    requests: records.length,
    tessera: records.filter((r) => r.url.startsWith(opts.base + '/')).length,
    tiles: tiles().length,
    tilesByScaleFactor: tiles().reduce((m, r) => ((m[r.sf ?? '?'] = (m[r.sf ?? '?'] || 0) + 1), m), {}),
  };
  fs.writeFileSync(path.join(opts.out, 'requests.json'), JSON.stringify(records, null, 1));
  fs.writeFileSync(path.join(opts.out, 'report.json'), JSON.stringify(report, null, 2));

  if (failure) {
    const tail = records.filter((r) => r.kind !== 'other').slice(-15)
      .map((r) => `  ${r.status ?? r.failure ?? 'pending'} ACAO=${r.allowOrigin ?? '-'} ${r.url}`).join('\n');
    console.error(`mirador.mjs: FAIL: ${failure.message}`);
    if (!(failure instanceof CheckFailed)) console.error(failure.stack);
    console.error(`last Tessera requests:\n${tail || '  (none)'}`);
    if (consoleLines.length) console.error(`browser console (last 15):\n  ${consoleLines.slice(-15).join('\n  ')}`);
    console.error(`details: ${path.join(opts.out, 'report.json')}, ${path.join(opts.out, 'requests.json')}`);
    return 1;
  }
  log(`PASS (${report.summary.tiles} tiles: ${JSON.stringify(report.summary.tilesByScaleFactor)}); artifacts in ${opts.out}`);
  return 0;
}

main().then((code) => process.exit(code), (e) => {
  console.error(`mirador.mjs: FAIL: ${e.stack || e}`);
  process.exit(1);
});
