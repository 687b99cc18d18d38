//! Remote masters read by range (source::ranged) against a real HTTP origin
//! on loopback: a small hyper server in this process that answers `Range`
//! (206 with `Content-Range`), honours `If-Range` and `If-None-Match`, logs
//! every request with the bytes it sent, and can misbehave on demand
//! (ignore ranges, cut range bodies short, change a file between two
//! ranges). Tessera runs in-process over `source.kind = "http"`.
//!
//! Round trips are counted without clocks: each request gets a *depth*, one
//! more than the deepest request that had been answered when it arrived, so
//! the deepest depth of a first view is its count of sequential round trips
//! (requests sent together share a depth).

mod common;

use std::collections::HashMap;
use std::net::SocketAddr;
use std::path::Path;
use std::process::Command;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use bytes::Bytes;
use common::*;
use http::{Request, Response, StatusCode};
use http_body_util::Full;
use hyper::body::Incoming;
use tessera::pixels::Pixels;

/// One request the origin answered.
#[derive(Clone, Debug)]
struct Logged {
    name: String,
    range: Option<String>,
    status: u16,
    sent: u64,
    depth: u64,
}

#[derive(Default)]
struct Origin {
    files: Mutex<HashMap<String, (Vec<u8>, String)>>,
    log: Mutex<Vec<Logged>>,
    /// The deepest depth answered so far.
    answered: AtomicU64,
    ignore_ranges: AtomicBool,
    short_ranges: AtomicBool,
    /// Range answers wait this long before their headers (ms).
    stall_ranges_ms: AtomicU64,
}

impl Origin {
    fn put(&self, name: &str, bytes: Vec<u8>) {
        let etag = format!("\"{:x}-{}\"", fnv(&bytes), bytes.len());
        self.files.lock().unwrap().insert(name.into(), (bytes, etag));
    }
    fn log(&self) -> Vec<Logged> {
        self.log.lock().unwrap().clone()
    }
    fn sent(&self, name: &str) -> u64 {
        self.log().iter().filter(|l| l.name == name).map(|l| l.sent).sum()
    }
    fn depth(&self, name: &str) -> u64 {
        self.log().iter().filter(|l| l.name == name).map(|l| l.depth).max().unwrap_or(0)
    }
    fn clear(&self) {
        self.log.lock().unwrap().clear();
        self.answered.store(0, Ordering::SeqCst);
    }
}

fn fnv(b: &[u8]) -> u64 {
    b.iter().fold(0xcbf29ce484222325u64, |h, &x| (h ^ x as u64).wrapping_mul(0x100000001b3))
}

/// `bytes=a-b`, `bytes=a-` or `bytes=-n` over a file of `len` bytes.
fn parse_range(v: &str, len: u64) -> Option<(u64, u64)> {
    let spec = v.strip_prefix("bytes=")?;
    let (a, b) = spec.split_once('-')?;
    let (start, end) = match (a, b) {
        ("", n) => (len.saturating_sub(n.parse().ok()?), len - 1),
        (a, "") => (a.parse().ok()?, len - 1),
        (a, b) => (a.parse().ok()?, b.parse::<u64>().ok()?.min(len - 1)),
    };
    (start <= end && start < len).then_some((start, end))
}

async fn serve(origin: Arc<Origin>, req: Request<Incoming>) -> Result<Response<Full<Bytes>>, std::io::Error> {
    let depth = origin.answered.load(Ordering::SeqCst) + 1;
    // Every answer takes a little while, as over a network: requests sent
    // together all arrive before any is answered, so they share a depth.
    tokio::time::sleep(std::time::Duration::from_millis(15)).await;
    let name = req.uri().path().trim_start_matches("/bits/").to_string();
    let text = |h: &str| req.headers().get(h).and_then(|v| v.to_str().ok()).map(str::to_string);
    let range = text("range");
    let stall = origin.stall_ranges_ms.load(Ordering::SeqCst);
    if stall > 0 && range.as_deref().is_some_and(|r| !r.starts_with("bytes=0-")) {
        tokio::time::sleep(std::time::Duration::from_millis(stall)).await;
    }
    // "closed-*" images answer only a bearer token (an origin's login).
    if name.starts_with("closed-") && text("authorization").as_deref() != Some("Bearer good") {
        let mut r = Response::new(Full::new(Bytes::from_static(b"login first")));
        *r.status_mut() = StatusCode::UNAUTHORIZED;
        origin.log.lock().unwrap().push(Logged { name, range, status: 401, sent: 0, depth });
        origin.answered.fetch_max(depth, Ordering::SeqCst);
        return Ok(r);
    }
    let file = origin.files.lock().unwrap().get(&name).cloned();
    let mut resp = Response::new(Full::new(Bytes::new()));
    let mut sent = 0u64;
    match file {
        None => *resp.status_mut() = StatusCode::NOT_FOUND,
        Some((bytes, etag)) => {
            let len = bytes.len() as u64;
            let if_range_ok = text("if-range").is_none_or(|v| v == etag);
            let ranged = range
                .as_deref()
                .filter(|_| !origin.ignore_ranges.load(Ordering::SeqCst) && if_range_ok)
                .and_then(|r| parse_range(r, len));
            if text("if-none-match").as_deref() == Some(etag.as_str()) {
                *resp.status_mut() = StatusCode::NOT_MODIFIED;
            } else if let Some((a, b)) = ranged {
                let mut body = bytes[a as usize..=b as usize].to_vec();
                if origin.short_ranges.load(Ordering::SeqCst) && a > 0 {
                    body.truncate(body.len() / 2);
                }
                sent = body.len() as u64;
                *resp.status_mut() = StatusCode::PARTIAL_CONTENT;
                resp.headers_mut().insert("content-range", format!("bytes {a}-{b}/{len}").parse().unwrap());
                *resp.body_mut() = Full::new(Bytes::from(body));
            } else {
                sent = len;
                *resp.body_mut() = Full::new(Bytes::from(bytes));
            }
            resp.headers_mut().insert("etag", etag.parse().unwrap());
            if !origin.ignore_ranges.load(Ordering::SeqCst) {
                resp.headers_mut().insert("accept-ranges", "bytes".parse().unwrap());
            }
        }
    }
    let status = resp.status().as_u16();
    origin.log.lock().unwrap().push(Logged { name, range, status, sent, depth });
    origin.answered.fetch_max(depth, Ordering::SeqCst);
    Ok(resp)
}

async fn start_origin(origin: Arc<Origin>) -> SocketAddr {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        loop {
            let Ok((stream, _)) = listener.accept().await else { return };
            let o = origin.clone();
            tokio::spawn(async move {
                let svc = hyper::service::service_fn(move |req| serve(o.clone(), req));
                let _ = hyper::server::conn::http1::Builder::new()
                    .serve_connection(hyper_util::rt::TokioIo::new(stream), svc)
                    .await;
            });
        }
    });
    addr
}

struct Setup {
    origin: Arc<Origin>,
    app: Arc<tessera::service::App>,
    /// The same files served from disk, for the reference answers.
    local: Arc<tessera::service::App>,
    files: tempfile::TempDir,
    _root: tempfile::TempDir,
    _folder: tempfile::TempDir,
}

impl Setup {
    /// A remote app with `extra` in its `[source.http]`, and no fetching
    /// ahead in the background (so that the origin's log is the requests').
    async fn new(extra: &str) -> Setup {
        Setup::with_ahead(0, extra).await
    }

    async fn with_ahead(ahead: u32, extra: &str) -> Setup {
        let origin = Arc::new(Origin::default());
        let addr = start_origin(origin.clone()).await;
        let root = tempfile::tempdir().unwrap();
        let folder = tempfile::tempdir().unwrap();
        let toml = format!(
            "[cache]\ndecoded_ahead = {ahead}\n[source]\nkind = \"http\"\n[source.http]\nurl_prefix = \"http://{addr}/bits/\"\ncache_dir = \"{}\"\n\
             revalidate_after = 60\nread_timeout = 2\ntimeout = 10\nretries = 1\nretry_backoff_ms = 10\n{extra}\n",
            folder.path().display()
        );
        let files = tempfile::tempdir().unwrap();
        let remote = app(root.path(), &toml);
        let local = app(files.path(), "");
        Setup { origin, app: remote, local, files, _root: root, _folder: folder }
    }

    /// Serves `bytes` as `name` at the origin and from the local folder.
    fn put(&self, name: &str, bytes: Vec<u8>) {
        std::fs::write(self.files.path().join(name), &bytes).unwrap();
        self.origin.put(name, bytes);
    }

    async fn metrics(&self) -> String {
        String::from_utf8(get(&self.app, "/metrics").await.into_body().to_vec()).unwrap()
    }
}

fn metric(text: &str, name: &str) -> f64 {
    metric_value(text, name).unwrap_or(0.0)
}

/// A 2048×1536 picture as a tiled JP2 (256² codestream tiles, RPCL).
fn tiled() -> Vec<u8> {
    tiled_jp2(&picture(2048, 1536), 256)
}

/// `px` as a vips pyramidal TIFF (JPEG tiles of 256²), as IIPImage sites
/// make them; `None` (the test skips) without vips.
fn pyramid_tiff(dir: &Path, px: &Pixels) -> Option<Vec<u8>> {
    let png = dir.join("in.png");
    std::fs::write(&png, tessera::codec::encode::encode(px, tessera::iiif::Format::Png, 90).unwrap()).unwrap();
    let out = dir.join("out.tif");
    let args = ["tiffsave", "in.png", "out.tif", "--tile", "--pyramid", "--compression", "jpeg", "--tile-width", "256"];
    match Command::new("vips").args(args).arg("--tile-height").arg("256").current_dir(dir).output() {
        Ok(o) => assert!(o.status.success(), "vips: {}", String::from_utf8_lossy(&o.stderr)),
        Err(_) => {
            skip_missing("vips", "apt-get install libvips-tools");
            return None;
        }
    }
    Some(std::fs::read(out).unwrap())
}

async fn body(app: &Arc<tessera::service::App>, path: &str) -> (StatusCode, Bytes) {
    let r = get(app, path).await;
    (r.status(), r.into_body())
}

/// Asks `path` of both servers: the remote answer must be 200 and decode to
/// the local one's pixels.
async fn same_as_local(s: &Setup, path: &str) {
    let (st, remote) = body(&s.app, path).await;
    assert_eq!(st, StatusCode::OK, "{path}: {}", String::from_utf8_lossy(&remote));
    let (st, local) = body(&s.local, path).await;
    assert_eq!(st, StatusCode::OK, "local {path}");
    if path.ends_with("info.json") {
        let (a, b): (serde_json::Value, serde_json::Value) =
            (serde_json::from_slice(&remote).unwrap(), serde_json::from_slice(&local).unwrap());
        for k in ["width", "height", "sizes", "tiles"] {
            assert_eq!(a[k], b[k], "{path}: {k}");
        }
        return;
    }
    let (a, b) = (decode_any(&remote), decode_any(&local));
    assert_eq!((a.width(), a.height()), (b.width(), b.height()), "{path}");
    assert_eq!(a.data(), b.data(), "{path}: remote pixels differ from the local file's");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_tiled_jp2_is_read_by_range_and_a_tile_costs_a_small_part_of_the_file() {
    let s = Setup::new("range_block_bytes = 16384").await;
    let jp2 = tiled();
    let len = jp2.len() as u64;
    s.put("t.jp2", jp2);
    same_as_local(&s, "/iiif/2/t.jp2/info.json").await;
    same_as_local(&s, "/iiif/2/t.jp2/512,512,256,256/256,/0/default.jpg").await;
    let sent = s.origin.sent("t.jp2");
    assert!(sent * 3 < len, "a header and one tile fetched {sent} of {len} bytes: {:?}", s.origin.log());
    assert!(s.origin.log().iter().all(|l| l.status == 206), "every answer a range: {:?}", s.origin.log());
    let depth = s.origin.depth("t.jp2");
    eprintln!("JP2 first view: {sent} of {len} bytes, {depth} round trips");
    assert!(depth <= 4, "info.json and a tile took {depth} sequential round trips: {:?}", s.origin.log());
    let m = s.metrics().await;
    assert_eq!(metric(&m, "tessera_source_ranged_opens_total"), 1.0);
    assert_eq!(metric(&m, "tessera_source_downloads_total"), 0.0);
    assert!(metric(&m, "tessera_source_range_bytes_total") as u64 == sent);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_tile_of_a_remote_jp2_equals_the_local_files_and_no_block_is_fetched_twice() {
    let s = Setup::new("").await;
    let jp2 = tiled();
    let len = jp2.len() as u64;
    s.put("t.jp2", jp2);
    same_as_local(&s, "/iiif/2/t.jp2/full/512,/0/default.png").await;
    for (x, y) in [(0, 0), (1792, 1280), (1024, 768), (0, 1280)] {
        same_as_local(&s, &format!("/iiif/2/t.jp2/{x},{y},256,256/256,/0/default.png")).await;
    }
    same_as_local(&s, "/iiif/2/t.jp2/full/max/0/default.png").await;
    let sent = s.origin.sent("t.jp2");
    assert!(sent <= len, "blocks fetched twice: {sent} bytes of a {len}-byte file");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_pyramidal_tiff_first_view_reads_its_directories_and_a_few_tiles() {
    let s = Setup::new("range_block_bytes = 16384\nrange_tiff_tail_bytes = 65536").await;
    let dir = tempfile::tempdir().unwrap();
    let Some(tif) = pyramid_tiff(dir.path(), &picture(4096, 3072)) else { return };
    let len = tif.len() as u64;
    s.put("p.tif", tif);
    same_as_local(&s, "/iiif/2/p.tif/info.json").await;
    // The home view of a small viewer: the whole image at 1/8.
    same_as_local(&s, "/iiif/2/p.tif/full/512,/0/default.jpg").await;
    let sent = s.origin.sent("p.tif");
    assert!(sent * 4 < len, "a first view fetched {sent} of {len} bytes");
    let depth = s.origin.depth("p.tif");
    eprintln!("TIFF first view: {sent} of {len} bytes, {depth} round trips");
    assert!(depth <= 4, "a first view took {depth} sequential round trips: {:#?}", s.origin.log());
    same_as_local(&s, "/iiif/2/p.tif/1024,1024,256,256/256,/0/default.jpg").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_file_changed_at_the_origin_between_two_ranges_is_never_mixed() {
    let s = Setup::new("").await;
    s.put("t.jp2", tiled());
    same_as_local(&s, "/iiif/2/t.jp2/info.json").await;
    // Replaced at the origin (and locally, for the reference) after the header.
    let mut inverted = picture(2048, 1536);
    let data: Vec<u8> = inverted.data().iter().map(|v| 255 - v).collect();
    inverted = Pixels::new(2048, 1536, inverted.layout(), data).unwrap();
    s.put("t.jp2", tiled_jp2(&inverted, 256));
    let path = "/iiif/2/t.jp2/1024,512,256,256/256,/0/default.png";
    // The old version's next range gets the new file's 200: that version is
    // dropped, nothing of it is kept, and the server reads the image afresh
    // once: the answer is the new file's (same_as_local reads the new one).
    same_as_local(&s, path).await;
    assert!(s.origin.log().iter().any(|l| l.status == 200), "the If-Range mismatch came back whole");
    let m = s.metrics().await;
    assert_eq!(metric(&m, "tessera_source_range_changed_total"), 1.0);
    assert_eq!(metric(&m, "tessera_source_changed_retries_total"), 1.0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_origin_that_ignores_ranges_is_downloaded_whole_as_before() {
    let s = Setup::new("").await;
    s.origin.ignore_ranges.store(true, Ordering::SeqCst);
    let jp2 = tiled();
    let len = jp2.len() as u64;
    s.put("t.jp2", jp2);
    same_as_local(&s, "/iiif/2/t.jp2/512,512,256,256/256,/0/default.jpg").await;
    assert_eq!(s.origin.sent("t.jp2"), len);
    let m = s.metrics().await;
    assert_eq!(metric(&m, "tessera_source_downloads_total"), 1.0);
    assert_eq!(metric(&m, "tessera_source_ranged_opens_total"), 0.0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn jpegs_are_downloaded_whole_since_they_cannot_be_read_at_random() {
    let s = Setup::new("range_block_bytes = 4096").await;
    let jpg = tessera::codec::encode::encode(&picture(1024, 768), tessera::iiif::Format::Jpg, 95).unwrap();
    assert!(jpg.len() > 4096);
    s.put("j.jpg", jpg);
    same_as_local(&s, "/iiif/2/j.jpg/full/256,/0/default.png").await;
    let m = s.metrics().await;
    assert_eq!(metric(&m, "tessera_source_ranged_opens_total"), 0.0);
    assert_eq!(metric(&m, "tessera_source_downloads_total"), 1.0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_short_range_answer_is_a_502_that_leaves_nothing_cached() {
    let s = Setup::new("").await;
    s.put("t.jp2", tiled());
    same_as_local(&s, "/iiif/2/t.jp2/info.json").await;
    s.origin.short_ranges.store(true, Ordering::SeqCst);
    let path = "/iiif/2/t.jp2/1280,1024,256,256/256,/0/default.png";
    let (st, b) = body(&s.app, path).await;
    assert_eq!(st, StatusCode::BAD_GATEWAY, "{}", String::from_utf8_lossy(&b));
    assert!(!String::from_utf8_lossy(&b).contains("127.0.0.1"), "no origin address in a public message");
    s.origin.short_ranges.store(false, Ordering::SeqCst);
    same_as_local(&s, path).await;
    let m = s.metrics().await;
    assert!(metric(&m, "tessera_source_range_errors_total") >= 1.0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_requests_for_one_remote_tile_fetch_its_blocks_once() {
    let s = Setup::new("").await;
    let jp2 = tiled();
    s.put("t.jp2", jp2);
    same_as_local(&s, "/iiif/2/t.jp2/info.json").await;
    s.origin.clear();
    let path = "/iiif/2/t.jp2/768,768,256,256/256,/0/default.png";
    let asks: Vec<_> = (0..8).map(|_| get(&s.app, path)).collect();
    for r in futures_util::future::join_all(asks).await {
        assert_eq!(r.status(), StatusCode::OK);
    }
    let log = s.origin.log();
    let mut seen = std::collections::HashSet::new();
    for l in &log {
        assert!(seen.insert(l.range.clone()), "range asked twice: {log:?}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_untiled_resolution_first_jp2_home_view_reads_a_prefix_of_the_file() {
    use tessera::codec::jp2::{self, Container, EncodeInput, EncodeParams, Progression};
    let s = Setup::new("range_block_bytes = 16384").await;
    let px = picture(3000, 2000);
    let p = EncodeParams {
        tile_size: None,
        levels: 6,
        lossless: false,
        rate: Some(8.0),
        layers: 4,
        progression: Progression::Rpcl,
        precincts: Some(vec![(256, 256), (128, 128)]),
        container: Container::Jp2,
    };
    let jp2 = jp2::encode(&EncodeInput::from_pixels(&px), &p).unwrap();
    let len = jp2.len() as u64;
    s.put("u.jp2", jp2);
    same_as_local(&s, "/iiif/2/u.jp2/info.json").await;
    same_as_local(&s, "/iiif/2/u.jp2/full/375,/0/default.png").await;
    let sent = s.origin.sent("u.jp2");
    let depth = s.origin.depth("u.jp2");
    eprintln!("untiled home view: {sent} of {len} bytes, {depth} round trips");
    assert!(sent * 10 < len, "a home view at 1/8 fetched {sent} of {len} bytes: {:?}", s.origin.log());
    // Then finer levels: each a longer prefix, the same pixels as the file's.
    same_as_local(&s, "/iiif/2/u.jp2/full/750,/0/default.png").await;
    same_as_local(&s, "/iiif/2/u.jp2/1024,1024,512,512/256,/0/default.png").await;
    same_as_local(&s, "/iiif/2/u.jp2/1024,1024,256,256/256,/0/default.png").await;
    assert!(s.origin.sent("u.jp2") <= len, "no block fetched twice");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_origin_that_stalls_on_a_range_gives_504_and_the_image_serves_once_it_answers() {
    let s = Setup::new("").await;
    s.put("t.jp2", tiled());
    same_as_local(&s, "/iiif/2/t.jp2/info.json").await;
    s.origin.stall_ranges_ms.store(4000, Ordering::SeqCst);
    let path = "/iiif/2/t.jp2/1536,1024,256,256/256,/0/default.png";
    let (st, b) = body(&s.app, path).await;
    assert_eq!(st, StatusCode::GATEWAY_TIMEOUT, "{}", String::from_utf8_lossy(&b));
    s.origin.stall_ranges_ms.store(0, Ordering::SeqCst);
    same_as_local(&s, path).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn restricted_images_are_never_read_by_range_and_only_admitted_clients_get_them() {
    let s = Setup::new("").await;
    s.put("closed-t.jp2", tiled());
    let path = "/iiif/2/closed-t.jp2/512,512,256,256/256,/0/default.png";
    assert_eq!(get(&s.app, path).await.status(), StatusCode::UNAUTHORIZED);
    let r = call(&s.app, http::Method::GET, path, &[("authorization", "Bearer good")]).await;
    assert_eq!(r.status(), StatusCode::OK);
    let r = call(&s.app, http::Method::GET, path, &[("authorization", "Bearer bad")]).await;
    assert_eq!(r.status(), StatusCode::UNAUTHORIZED);
    assert_eq!(get(&s.app, path).await.status(), StatusCode::UNAUTHORIZED);
    let m = s.metrics().await;
    assert_eq!(
        metric(&m, "tessera_source_ranged_opens_total"),
        0.0,
        "range reads are anonymous: never for restricted images"
    );
    assert!(
        s.origin.log().iter().filter(|l| l.status == 206).count() == 0,
        "no block of a restricted image was fetched by range: {:?}",
        s.origin.log()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_tiled_jp2_home_view_reads_only_the_coarse_resolutions_of_each_tile() {
    let s = Setup::new("range_block_bytes = 4096").await;
    let jp2 = tiled_jp2(&picture(4096, 3072), 512);
    let len = jp2.len() as u64;
    s.put("t.jp2", jp2);
    same_as_local(&s, "/iiif/2/t.jp2/info.json").await;
    same_as_local(&s, "/iiif/2/t.jp2/full/512,/0/default.png").await;
    let sent = s.origin.sent("t.jp2");
    let depth = s.origin.depth("t.jp2");
    eprintln!("tiled home view: {sent} of {len} bytes, {depth} round trips");
    assert!(sent * 4 < len, "a home view at 1/8 fetched {sent} of {len} bytes: {:?}", s.origin.log());
    assert!(depth <= 4, "a home view took {depth} sequential round trips: {:?}", s.origin.log());
    // Deeper: the same pixels as the file's at every level.
    same_as_local(&s, "/iiif/2/t.jp2/full/1024,/0/default.png").await;
    same_as_local(&s, "/iiif/2/t.jp2/1024,1024,1024,1024/512,/0/default.png").await;
    same_as_local(&s, "/iiif/2/t.jp2/1536,1024,512,512/512,/0/default.png").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_render_that_waited_on_the_origin_is_logged_as_origin_and_one_that_did_not_as_render() {
    let s = Setup::new("").await;
    s.put("t.jp2", tiled());
    let tier = |r: &http::Response<Bytes>| r.extensions().get::<tessera::cache::Tier>().copied();
    assert_eq!(get(&s.app, "/iiif/2/t.jp2/info.json").await.status(), StatusCode::OK);
    let cold = get(&s.app, "/iiif/2/t.jp2/512,512,256,256/256,/0/default.jpg").await;
    assert_eq!(cold.status(), StatusCode::OK);
    assert_eq!(tier(&cold), Some(tessera::cache::Tier::Origin), "its blocks came from the origin");
    // The same pixels at another size: every byte is here now.
    let sent = s.origin.sent("t.jp2");
    let warm = get(&s.app, "/iiif/2/t.jp2/512,512,256,256/128,/0/default.jpg").await;
    assert_eq!(warm.status(), StatusCode::OK);
    assert_eq!(s.origin.sent("t.jp2"), sent, "nothing more fetched");
    assert_eq!(tier(&warm), Some(tessera::cache::Tier::Render));
    // One request waited, on a few reads (the tile-part headers, then the data).
    let m = s.metrics().await;
    assert_eq!(metric(&m, "tessera_origin_waits_per_request_count"), 1.0);
    let waits = metric(&m, "tessera_origin_waits_per_request_sum");
    assert!((1.0..=4.0).contains(&waits), "{waits} reads waited");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_next_tiles_of_a_remote_master_are_fetched_in_the_background_not_decoded_on_the_pool() {
    let s = Setup::with_ahead(2, "").await;
    s.put("t.jp2", tiled());
    same_as_local(&s, "/iiif/2/t.jp2/info.json").await;
    same_as_local(&s, "/iiif/2/t.jp2/0,0,256,256/256,/0/default.jpg").await;
    // The next codestream tiles' bytes arrive after the answer, from a
    // background fetch; no worker decoded ahead.
    let answered = s.origin.sent("t.jp2");
    // Until the origin has sent more, then nothing more for 200 ms.
    let (mut more, mut quiet) = (answered, 0);
    for _ in 0..200 {
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
        let now = s.origin.sent("t.jp2");
        quiet = if now == more && now > answered { quiet + 1 } else { 0 };
        more = now;
        if quiet >= 10 {
            break;
        }
    }
    assert!(more > answered, "nothing fetched ahead: {:?}", s.origin.log());
    let m = s.metrics().await;
    assert_eq!(metric(&m, "tessera_decodes_ahead_total"), 0.0);
    // The next tile then needs nothing more from the origin.
    let before = s.origin.sent("t.jp2");
    same_as_local(&s, "/iiif/2/t.jp2/256,0,256,256/256,/0/default.jpg").await;
    assert_eq!(s.origin.sent("t.jp2"), before, "the tile fetched ahead was fetched again");
}
