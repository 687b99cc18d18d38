//! The HTTP source against a real HTTP origin on loopback: a small
//! DSpace-like server (hyper, in this process) with ETags, conditional GET,
//! bearer-token access control, and failure modes (a stall, a dropped
//! connection, a 503 once, redirects, streams that are not images or never
//! end, slow answers). A second origin on another port plays "another host".
//! Tessera runs in-process over `source.kind = "http"` (and once as a child
//! process, killed mid-life, for the folder's clean-up at the next start).

mod common;

use std::collections::{HashMap, HashSet};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::pin::Pin;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use bytes::Bytes;
use common::*;
use http::{Request, Response, StatusCode};
use http_body_util::combinators::BoxBody;
use http_body_util::{BodyExt, Full};
use hyper::body::{Frame, Incoming};
use tessera::codec::encode;
use tessera::iiif::Format;

type Body = BoxBody<Bytes, std::io::Error>;

/// A request's name, Authorization and Cookie headers.
type Seen = (String, Option<String>, Option<String>);

/// The origin's state: what it serves and what it was asked.
#[derive(Default)]
struct Origin {
    files: Mutex<HashMap<String, Vec<u8>>>,
    restricted: Mutex<HashSet<String>>,
    /// Requests per name, and 200 answers with a body per name.
    asked: Mutex<HashMap<String, usize>>,
    bodies: Mutex<HashMap<String, usize>>,
    /// 503 answers still to give for "flaky".
    flaky_left: AtomicUsize,
    /// Every request's (name, Authorization, Cookie).
    seen: Mutex<Vec<Seen>>,
    /// Bytes handed to the connection by the streamed answers, per name.
    sent: Mutex<HashMap<String, Arc<AtomicU64>>>,
    /// "slow-*" requests being answered now, and the most at once.
    active: AtomicUsize,
    max_active: AtomicUsize,
    /// Where "moved-away" and "closed-moved" redirect to.
    elsewhere: Mutex<Option<SocketAddr>>,
}

impl Origin {
    fn put(&self, name: &str, bytes: Vec<u8>) {
        self.files.lock().unwrap().insert(name.into(), bytes);
    }
    fn asked(&self, name: &str) -> usize {
        self.asked.lock().unwrap().get(name).copied().unwrap_or(0)
    }
    fn bodies(&self, name: &str) -> usize {
        self.bodies.lock().unwrap().get(name).copied().unwrap_or(0)
    }
    fn sent(&self, name: &str) -> Arc<AtomicU64> {
        self.sent.lock().unwrap().entry(name.into()).or_default().clone()
    }
}

fn etag_of(b: &[u8]) -> String {
    format!("\"{:016x}\"", tessera::source::fnv1a(&[b]))
}

fn answer(status: StatusCode, body: Vec<u8>) -> Response<Body> {
    let mut r = Response::new(Full::new(Bytes::from(body)).map_err(|never| match never {}).boxed());
    *r.status_mut() = status;
    r
}

fn redirect(to: String) -> Response<Body> {
    let mut r = answer(StatusCode::FOUND, vec![]);
    r.headers_mut().insert("location", to.parse().unwrap());
    r
}

/// A body fed by a channel of capacity 1: what it sends is made only as fast
/// as the connection takes it.
struct ChanBody(tokio::sync::mpsc::Receiver<Bytes>);

impl hyper::body::Body for ChanBody {
    type Data = Bytes;
    type Error = std::io::Error;
    fn poll_frame(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Result<Frame<Bytes>, Self::Error>>> {
        self.0.poll_recv(cx).map(|o| o.map(|b| Ok(Frame::data(b))))
    }
}

/// A 200 of `first` then zeros up to `total` bytes, made lazily in chunks of
/// `chunk` bytes (a pause between them), without a Content-Length. Counts
/// the bytes handed over in `sent`; stops when the client goes.
fn streamed(first: Vec<u8>, total: u64, chunk: usize, pause: Duration, sent: Arc<AtomicU64>) -> Response<Body> {
    let (tx, rx) = tokio::sync::mpsc::channel::<Bytes>(1);
    tokio::spawn(async move {
        let mut left = total;
        let n = first.len() as u64;
        if tx.send(Bytes::from(first)).await.is_err() {
            return;
        }
        sent.fetch_add(n, Ordering::SeqCst);
        left = left.saturating_sub(n);
        let zeros = Bytes::from(vec![0u8; chunk]);
        while left > 0 {
            let c = zeros.slice(..(left.min(chunk as u64) as usize));
            let n = c.len() as u64;
            if tx.send(c).await.is_err() {
                return;
            }
            sent.fetch_add(n, Ordering::SeqCst);
            left -= n;
            if !pause.is_zero() {
                tokio::time::sleep(pause).await;
            }
        }
    });
    let mut r = Response::new(BodyExt::boxed(ChanBody(rx)));
    r.headers_mut().insert("content-type", "application/octet-stream".parse().unwrap());
    r
}

const MB: u64 = 1 << 20;

async fn serve(origin: Arc<Origin>, req: Request<Incoming>) -> Result<Response<Body>, std::io::Error> {
    let path = req.uri().path().to_string();
    let Some(name) = path.strip_prefix("/bits/").and_then(|p| p.strip_suffix("/content")) else {
        return Ok(answer(StatusCode::NOT_FOUND, vec![]));
    };
    let name = name.to_string();
    *origin.asked.lock().unwrap().entry(name.clone()).or_default() += 1;
    let text = |h: &str| req.headers().get(h).and_then(|v| v.to_str().ok()).map(str::to_string);
    origin.seen.lock().unwrap().push((name.clone(), text("authorization"), text("cookie")));
    match name.as_str() {
        "stall" => {
            tokio::time::sleep(Duration::from_secs(60)).await;
            return Ok(answer(StatusCode::OK, vec![]));
        }
        // An error from the service makes hyper drop the connection.
        "drop" => return Err(std::io::Error::other("dropped on purpose")),
        "flaky" if origin.flaky_left.load(Ordering::SeqCst) > 0 => {
            origin.flaky_left.fetch_sub(1, Ordering::SeqCst);
            return Ok(answer(StatusCode::SERVICE_UNAVAILABLE, vec![]));
        }
        // A login page as big as a film: 500 MB of HTML, made on demand.
        "html" => {
            let page = b"<!DOCTYPE html><html><body>Please log in".to_vec();
            return Ok(streamed(page, 500 * MB, 64 << 10, Duration::ZERO, origin.sent("html")));
        }
        // A JPEG's first bytes, then 100 MB more, a little at a time.
        "huge-jpeg" => {
            let head = jpeg(64, 64, false)[..600].to_vec();
            return Ok(streamed(head, 100 * MB, 16 << 10, Duration::from_millis(1), origin.sent("huge-jpeg")));
        }
        "moved-here" => return Ok(redirect("/bits/pub/content".into())),
        "moved-away" => {
            let to = origin.elsewhere.lock().unwrap().expect("elsewhere");
            return Ok(redirect(format!("http://{to}/bits/pub/content")));
        }
        n if n.starts_with("slow-") => {
            let now = origin.active.fetch_add(1, Ordering::SeqCst) + 1;
            origin.max_active.fetch_max(now, Ordering::SeqCst);
            tokio::time::sleep(Duration::from_millis(300)).await;
            origin.active.fetch_sub(1, Ordering::SeqCst);
        }
        _ => {}
    }
    if origin.restricted.lock().unwrap().contains(&name) {
        match req.headers().get("authorization").and_then(|v| v.to_str().ok()) {
            None => return Ok(answer(StatusCode::UNAUTHORIZED, b"login first".to_vec())),
            Some("Bearer good") => {}
            Some(_) => return Ok(answer(StatusCode::FORBIDDEN, b"not yours".to_vec())),
        }
    }
    if name == "closed-moved" {
        let to = origin.elsewhere.lock().unwrap().expect("elsewhere");
        return Ok(redirect(format!("http://{to}/bits/pub/content")));
    }
    let Some(bytes) = origin.files.lock().unwrap().get(&name).cloned() else {
        return Ok(answer(StatusCode::NOT_FOUND, vec![]));
    };
    if name.starts_with("trickle-") {
        // Its bytes, slowly: 16 KB every 20 ms.
        let total = bytes.len() as u64;
        let sent = origin.sent(&name);
        *origin.bodies.lock().unwrap().entry(name).or_default() += 1;
        let (tx, rx) = tokio::sync::mpsc::channel::<Bytes>(1);
        tokio::spawn(async move {
            for c in bytes.chunks(16 << 10) {
                if tx.send(Bytes::copy_from_slice(c)).await.is_err() {
                    return;
                }
                sent.fetch_add(c.len() as u64, Ordering::SeqCst);
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
        });
        let mut r = Response::new(BodyExt::boxed(ChanBody(rx)));
        r.headers_mut().insert("content-length", total.into());
        return Ok(r);
    }
    let etag = etag_of(&bytes);
    if req.headers().get("if-none-match").and_then(|v| v.to_str().ok()) == Some(etag.as_str()) {
        let mut r = answer(StatusCode::NOT_MODIFIED, vec![]);
        r.headers_mut().insert("etag", etag.parse().unwrap());
        return Ok(r);
    }
    *origin.bodies.lock().unwrap().entry(name).or_default() += 1;
    let mut r = answer(StatusCode::OK, bytes);
    r.headers_mut().insert("etag", etag.parse().unwrap());
    r.headers_mut().insert("content-type", "application/octet-stream".parse().unwrap());
    Ok(r)
}

/// Starts the origin on a free loopback port (in the test's runtime).
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

fn jpeg(w: u32, h: u32, invert: bool) -> Vec<u8> {
    let mut p = picture(w, h);
    if invert {
        let d: Vec<u8> = p.data().iter().map(|v| 255 - v).collect();
        p = tessera::pixels::Pixels::new(w, h, tessera::pixels::Layout::Rgb, d).unwrap();
    }
    encode::encode(&p, Format::Jpg, 90).unwrap()
}

/// A JPEG padded with zeros after its end to `len` bytes.
fn padded_jpeg(len: usize) -> Vec<u8> {
    let mut v = jpeg(64, 64, false);
    assert!(v.len() < len);
    v.resize(len, 0);
    v
}

struct Setup {
    origin: Arc<Origin>,
    app: Arc<tessera::service::App>,
    _root: tempfile::TempDir,
    folder: tempfile::TempDir,
}

async fn setup(extra: &str) -> Setup {
    setup_with(1, extra).await
}

/// The test configuration; a key set in `extra` replaces the default here.
async fn setup_with(revalidate_after: u64, extra: &str) -> Setup {
    let origin = Arc::new(Origin::default());
    origin.put("pub", jpeg(512, 384, false));
    origin.put("flaky", jpeg(64, 64, false));
    origin.put("closed", jpeg(320, 240, false));
    origin.restricted.lock().unwrap().insert("closed".into());
    origin.restricted.lock().unwrap().insert("closed-moved".into());
    origin.put("big", vec![0u8; 300_000]);
    let addr = start_origin(origin.clone()).await;
    let root = tempfile::tempdir().unwrap();
    let folder = tempfile::tempdir().unwrap();
    let base = format!(
        r#"url_prefix = "http://{addr}/bits/"
url_suffix = "/content"
cache_dir = "{}"
revalidate_after = {revalidate_after}
connect_timeout = 2
read_timeout = 1
timeout = 20
retries = 1
retry_backoff_ms = 20
max_source_bytes = 200000"#,
        folder.path().display()
    );
    let overridden = |line: &str| {
        let key = line.split('=').next().unwrap_or("").trim();
        extra.lines().any(|l| l.split('=').next().unwrap_or("").trim() == key)
    };
    let kept: Vec<&str> = base.lines().filter(|l| !overridden(l)).collect();
    let toml = format!("[source]\nkind = \"http\"\n[source.http]\n{}\n{extra}\n", kept.join("\n"));
    let app = app(root.path(), &toml);
    Setup { origin, app, _root: root, folder }
}

const TILE: &str = "full/128,/0/default.jpg";

fn metric(text: &str, name: &str) -> f64 {
    metric_value(text, name).unwrap_or(-1.0)
}

/// The files of images (and partial downloads) under a source folder, with
/// their sizes (the run subfolders' lock files are not counted).
fn stored(folder: &Path) -> Vec<(PathBuf, u64)> {
    let mut out = Vec::new();
    let mut todo = vec![folder.to_path_buf()];
    while let Some(d) = todo.pop() {
        let Ok(rd) = std::fs::read_dir(&d) else { continue };
        for e in rd.flatten() {
            let p = e.path();
            match e.metadata() {
                Ok(m) if m.is_dir() => todo.push(p),
                Ok(m) if matches!(p.extension().and_then(|x| x.to_str()), Some("src" | "part")) => {
                    out.push((p, m.len()))
                }
                _ => {}
            }
        }
    }
    out
}

fn stored_bytes(folder: &Path) -> u64 {
    stored(folder).iter().map(|(_, n)| n).sum()
}

/// Samples the bytes under `folder` every millisecond until stopped; returns
/// the most seen.
fn watch_folder(folder: PathBuf) -> (Arc<std::sync::atomic::AtomicBool>, tokio::task::JoinHandle<u64>) {
    let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let s = stop.clone();
    let h = tokio::task::spawn_blocking(move || {
        let mut most = 0;
        while !s.load(Ordering::SeqCst) {
            most = most.max(stored_bytes(&folder));
            std::thread::sleep(Duration::from_millis(1));
        }
        most
    });
    (stop, h)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_public_image_is_fetched_once_for_many_concurrent_requests() {
    let s = setup_with(60, "").await;
    let mut tasks = Vec::new();
    for i in 0..32 {
        let app = s.app.clone();
        let path = if i % 2 == 0 { format!("/iiif/2/pub/{TILE}") } else { "/iiif/2/pub/info.json".into() };
        tasks.push(tokio::spawn(async move { get(&app, &path).await.status() }));
    }
    for t in tasks {
        assert_eq!(t.await.unwrap(), StatusCode::OK);
    }
    assert_eq!(s.origin.bodies("pub"), 1, "one download for 32 concurrent requests");
    assert_eq!(s.origin.asked("pub"), 1);
    let r = get(&s.app, &format!("/iiif/2/pub/{TILE}")).await;
    assert!(r.headers()["cache-control"].to_str().unwrap().starts_with("public"));
    let m = String::from_utf8(get(&s.app, "/metrics").await.into_body().to_vec()).unwrap();
    assert_eq!(metric(&m, "tessera_source_downloads_total"), 1.0, "{m}");
    assert!(metric(&m, "tessera_source_stored_bytes") > 0.0);
    assert_eq!(stored(s.folder.path()).len(), 1, "the fetched image lies in the source folder");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_replaced_image_is_served_new_after_revalidation_and_an_unchanged_one_costs_a_304() {
    let s = setup("").await;
    let first = get(&s.app, "/iiif/2/pub/full/max/0/default.png").await;
    assert_eq!(first.status(), StatusCode::OK);
    let etag1 = first.headers()["etag"].clone();
    // Unchanged at the origin: after revalidate_after, a conditional GET (304).
    tokio::time::sleep(Duration::from_millis(1100)).await;
    let again = get(&s.app, "/iiif/2/pub/full/max/0/default.png").await;
    assert_eq!(again.body(), first.body());
    assert_eq!(s.origin.bodies("pub"), 1, "revalidated, not downloaded again");
    assert_eq!(s.origin.asked("pub"), 2);
    // Replaced: the new content once the copy is stale again.
    s.origin.put("pub", jpeg(512, 384, true));
    tokio::time::sleep(Duration::from_millis(1100)).await;
    let new = get(&s.app, "/iiif/2/pub/full/max/0/default.png").await;
    assert_eq!(new.status(), StatusCode::OK);
    assert_ne!(new.body(), first.body(), "a replaced image is never served from the old tiles");
    assert_ne!(new.headers()["etag"], etag1);
    let a = decode_any(first.body());
    let b = decode_any(new.body());
    let (x, y) = (a.data()[0] as i32, b.data()[0] as i32);
    assert!((x + y - 255).abs() < 20, "the new tile shows the inverted picture ({x} vs {y})");
    assert_eq!(s.origin.bodies("pub"), 2);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn restricted_images_are_served_only_to_credentials_the_origin_admits() {
    let s = setup("auth_ttl = 0").await;
    let tile = format!("/iiif/2/closed/{TILE}");
    let good = [("authorization", "Bearer good")];
    let bad = [("authorization", "Bearer stolen")];
    assert_eq!(get(&s.app, &tile).await.status(), StatusCode::UNAUTHORIZED);
    assert_eq!(call(&s.app, http::Method::GET, &tile, &bad).await.status(), StatusCode::FORBIDDEN);
    let ok = call(&s.app, http::Method::GET, &tile, &good).await;
    assert_eq!(ok.status(), StatusCode::OK);
    assert!(ok.headers()["cache-control"].to_str().unwrap().starts_with("private"), "restricted tiles are private");
    // Cached now, but never for a client the origin refuses.
    assert_eq!(get(&s.app, &tile).await.status(), StatusCode::UNAUTHORIZED);
    assert_eq!(call(&s.app, http::Method::GET, &tile, &bad).await.status(), StatusCode::FORBIDDEN);
    let info = call(&s.app, http::Method::GET, "/iiif/2/closed/info.json", &bad).await;
    assert_eq!(info.status(), StatusCode::FORBIDDEN, "info.json is guarded too");
    let again = call(&s.app, http::Method::GET, &tile, &good).await;
    assert_eq!(again.status(), StatusCode::OK);
    assert_eq!(again.body(), ok.body());
    assert_eq!(s.origin.bodies("closed"), 1, "the bytes are fetched once; only access is asked again");
    // The public message carries no detail of the origin.
    let r = get(&s.app, &tile).await;
    let msg = String::from_utf8_lossy(r.body());
    assert!(!msg.contains("127.0.0.1") && !msg.contains("login first"), "{msg}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_admitted_credential_is_remembered_for_auth_ttl_only_for_itself() {
    let s = setup("auth_ttl = 30").await;
    let tile = format!("/iiif/2/closed/{TILE}");
    let good = [("authorization", "Bearer good")];
    assert_eq!(call(&s.app, http::Method::GET, &tile, &good).await.status(), StatusCode::OK);
    let asked = s.origin.asked("closed");
    assert_eq!(call(&s.app, http::Method::GET, "/iiif/2/closed/full/64,/0/default.jpg", &good).await.status(), 200);
    assert_eq!(s.origin.asked("closed"), asked, "admitted within auth_ttl: no new question");
    let other = [("authorization", "Bearer goodX")];
    assert_eq!(call(&s.app, http::Method::GET, &tile, &other).await.status(), StatusCode::FORBIDDEN);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stalled_origin_gives_504_within_the_timeout_and_other_images_still_serve() {
    let s = setup("").await;
    let app = s.app.clone();
    let t = Instant::now();
    let stalled = tokio::spawn(async move { get(&app, &format!("/iiif/2/stall/{TILE}")).await.status() });
    // Meanwhile, other images are served.
    assert_eq!(get(&s.app, &format!("/iiif/2/pub/{TILE}")).await.status(), StatusCode::OK);
    assert_eq!(stalled.await.unwrap(), StatusCode::GATEWAY_TIMEOUT);
    assert!(t.elapsed() < Duration::from_secs(10), "answered within the configured timeout ({:?})", t.elapsed());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_dropped_connection_gives_502_after_the_retries() {
    let s = setup("").await;
    let r = get(&s.app, &format!("/iiif/2/drop/{TILE}")).await;
    assert_eq!(r.status(), StatusCode::BAD_GATEWAY);
    assert_eq!(s.origin.asked("drop"), 2, "one retry");
    assert_eq!(get(&s.app, &format!("/iiif/2/pub/{TILE}")).await.status(), StatusCode::OK);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_server_error_is_retried_with_back_off() {
    let s = setup("").await;
    s.origin.flaky_left.store(1, Ordering::SeqCst);
    assert_eq!(get(&s.app, &format!("/iiif/2/flaky/{TILE}")).await.status(), StatusCode::OK);
    assert_eq!(s.origin.asked("flaky"), 2);
    s.origin.flaky_left.store(5, Ordering::SeqCst);
    tokio::time::sleep(Duration::from_millis(1100)).await;
    let r = get(&s.app, "/iiif/2/flaky/full/32,/0/default.jpg").await;
    assert_eq!(r.status(), StatusCode::BAD_GATEWAY, "still failing after the retries");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_image_deleted_at_the_origin_is_404_after_revalidation() {
    let s = setup("").await;
    assert_eq!(get(&s.app, &format!("/iiif/2/pub/{TILE}")).await.status(), StatusCode::OK);
    s.origin.files.lock().unwrap().remove("pub");
    tokio::time::sleep(Duration::from_millis(1100)).await;
    assert_eq!(get(&s.app, &format!("/iiif/2/pub/{TILE}")).await.status(), StatusCode::NOT_FOUND);
    assert_eq!(get(&s.app, "/iiif/2/pub/info.json").await.status(), StatusCode::NOT_FOUND);
    assert_eq!(stored(s.folder.path()).len(), 0, "its copy is deleted");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_image_over_the_size_cap_is_refused_with_502() {
    let s = setup("").await;
    let r = get(&s.app, "/iiif/2/big/info.json").await;
    assert_eq!(r.status(), StatusCode::BAD_GATEWAY);
    assert!(String::from_utf8_lossy(r.body()).contains("larger"));
    assert_eq!(stored(s.folder.path()).len(), 0, "nothing partial is left");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn identifiers_climbing_out_of_the_prefix_never_reach_the_origin() {
    let s = setup("").await;
    for raw in ["..%2Fadmin", "a%2F..%2F..%2Fx", "%2E%2E"] {
        assert_eq!(get(&s.app, &format!("/iiif/2/{raw}/info.json")).await.status(), StatusCode::NOT_FOUND, "{raw}");
    }
    assert_eq!(s.origin.asked.lock().unwrap().len(), 0);
    assert_eq!(get(&s.app, "/iiif/2/missing/info.json").await.status(), StatusCode::NOT_FOUND);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_origin_that_is_down_gives_502() {
    let root = tempfile::tempdir().unwrap();
    let port = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        l.local_addr().unwrap().port()
    };
    let toml = format!(
        "[source]\nkind = \"http\"\n[source.http]\nurl_prefix = \"http://127.0.0.1:{port}/\"\nretries = 1\nretry_backoff_ms = 10\n"
    );
    let app = app(root.path(), &toml);
    let t = Instant::now();
    assert_eq!(get(&app, "/iiif/2/x/info.json").await.status(), StatusCode::BAD_GATEWAY);
    assert!(t.elapsed() < Duration::from_secs(5));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_download_that_is_not_an_image_stops_at_its_first_bytes_and_leaves_no_file() {
    // A cap far above what is sent before the sniff: only the sniff stops it.
    let s = setup("max_source_bytes = 1000000000").await;
    let t = Instant::now();
    let r = get(&s.app, "/iiif/2/html/info.json").await;
    assert_eq!(r.status(), StatusCode::BAD_GATEWAY);
    let msg = String::from_utf8_lossy(r.body()).to_string();
    assert!(msg.contains("not an image"), "{msg}");
    assert!(!msg.contains("127.0.0.1") && !msg.contains(s.folder.path().to_str().unwrap()), "{msg}");
    // The origin stops being read: what it managed to hand over is what
    // fits in the sockets' buffers, not 500 MB.
    tokio::time::sleep(Duration::from_millis(200)).await;
    let sent = s.origin.sent("html").load(Ordering::SeqCst);
    assert!(sent < 32 * MB, "{sent} bytes were sent before the download stopped");
    assert!(t.elapsed() < Duration::from_secs(10));
    assert!(stored(s.folder.path()).is_empty(), "no file is kept: {:?}", stored(s.folder.path()));
    // An image in a format this server does not read: 501, not downloaded.
    let mut gif = b"GIF89a\x01\0\x01\0".to_vec();
    gif.resize(150_000, 0);
    s.origin.put("gif", gif);
    let r = get(&s.app, "/iiif/2/gif/info.json").await;
    assert_eq!(r.status(), StatusCode::NOT_IMPLEMENTED);
    assert!(stored(s.folder.path()).is_empty());
    // A short answer is judged on all it has.
    s.origin.put("tiny", b"oops".to_vec());
    assert_eq!(get(&s.app, "/iiif/2/tiny/info.json").await.status(), StatusCode::BAD_GATEWAY);
    let m = String::from_utf8(get(&s.app, "/metrics").await.into_body().to_vec()).unwrap();
    assert_eq!(metric(&m, "tessera_source_downloads_total"), 0.0, "{m}");
    assert_eq!(get(&s.app, &format!("/iiif/2/pub/{TILE}")).await.status(), StatusCode::OK, "images still serve");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_download_passing_the_cap_is_aborted_while_streaming_and_the_folder_never_holds_more() {
    let s = setup("").await; // max_source_bytes = 200000
    let (stop, most) = watch_folder(s.folder.path().to_path_buf());
    let r = get(&s.app, "/iiif/2/huge-jpeg/info.json").await;
    stop.store(true, Ordering::SeqCst);
    let most = most.await.unwrap();
    assert_eq!(r.status(), StatusCode::BAD_GATEWAY);
    assert!(String::from_utf8_lossy(r.body()).contains("larger"));
    assert!(most <= 200_000, "the folder held {most} bytes");
    tokio::time::sleep(Duration::from_millis(200)).await;
    let sent = s.origin.sent("huge-jpeg").load(Ordering::SeqCst);
    assert!(sent < 32 * MB, "{sent} of 100 MB were sent: the download was not stopped at the cap");
    assert!(stored(s.folder.path()).is_empty(), "the partial file is deleted");
    assert_eq!(inflight(&s), 0);
}

/// The bytes of downloads under way that the app's HTTP source counts now.
fn inflight(s: &Setup) -> u64 {
    s.app.sources.http().map(|h| h.inflight_bytes()).unwrap_or(u64::MAX)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn downloads_beyond_max_concurrent_fetches_wait_for_a_free_slot() {
    let s = setup("max_concurrent_fetches = 2").await;
    for i in 0..6 {
        s.origin.put(&format!("slow-{i}"), jpeg(64, 64, false));
    }
    let mut tasks = Vec::new();
    for i in 0..6 {
        let app = s.app.clone();
        tasks.push(tokio::spawn(async move { get(&app, &format!("/iiif/2/slow-{i}/info.json")).await.status() }));
    }
    for t in tasks {
        assert_eq!(t.await.unwrap(), StatusCode::OK);
    }
    assert_eq!(s.origin.max_active.load(Ordering::SeqCst), 2, "at most two exchanges with the origin at once");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bytes_in_flight_count_against_the_folder_bound() {
    let s = setup("cache_max_bytes = 250000").await;
    s.origin.put("stored-a", padded_jpeg(150_000));
    s.origin.put("trickle-b", padded_jpeg(150_000));
    assert_eq!(get(&s.app, "/iiif/2/stored-a/info.json").await.status(), StatusCode::OK);
    assert_eq!(stored_bytes(s.folder.path()), 150_000);
    // B arrives slowly; A must make room as B's bytes come, not after.
    let (stop, most) = watch_folder(s.folder.path().to_path_buf());
    let r = get(&s.app, "/iiif/2/trickle-b/info.json").await;
    stop.store(true, Ordering::SeqCst);
    let most = most.await.unwrap();
    assert_eq!(r.status(), StatusCode::OK);
    assert!(most <= 250_000, "the folder held {most} bytes, over its bound of 250000");
    assert_eq!(stored_bytes(s.folder.path()), 150_000, "A was evicted for B");
    assert_eq!(inflight(&s), 0);
    // Two slow downloads that together pass the bound: one is refused (503)
    // rather than overfilling the folder.
    s.origin.put("trickle-c", padded_jpeg(150_000));
    s.origin.put("trickle-d", padded_jpeg(150_000));
    let (stop, most) = watch_folder(s.folder.path().to_path_buf());
    let (c, d) = tokio::join!(get(&s.app, "/iiif/2/trickle-c/info.json"), get(&s.app, "/iiif/2/trickle-d/info.json"));
    stop.store(true, Ordering::SeqCst);
    let most = most.await.unwrap();
    let mut statuses = [c.status(), d.status()];
    statuses.sort();
    assert_eq!(statuses, [StatusCode::OK, StatusCode::SERVICE_UNAVAILABLE]);
    let busy = if c.status() == StatusCode::OK { d } else { c };
    assert!(busy.headers().contains_key("retry-after"));
    assert!(most <= 250_000, "the folder held {most} bytes");
    assert_eq!(inflight(&s), 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_slashless_prefix_cannot_send_a_request_or_credentials_to_another_host() {
    let other = Arc::new(Origin::default());
    other.put("pub", jpeg(64, 64, false));
    let other_addr = start_origin(other.clone()).await;
    let root = tempfile::tempdir().unwrap();
    let folder = tempfile::tempdir().unwrap();
    // No port and no trailing slash: `prefix + "PORT/bits/pub" + suffix`
    // would be a URL of another server.
    let toml = format!(
        "[source]\nkind = \"http\"\n[source.http]\nurl_prefix = \"http://127.0.0.1:\"\nurl_suffix = \"/content\"\ncache_dir = \"{}\"\nretries = 0\n",
        folder.path().display()
    );
    let app = app(root.path(), &toml);
    let id = format!("{}%2Fbits%2Fpub", other_addr.port());
    let r =
        call(&app, http::Method::GET, &format!("/iiif/2/{id}/info.json"), &[("authorization", "Bearer s3cret")]).await;
    assert_eq!(r.status(), StatusCode::NOT_FOUND);
    assert!(!String::from_utf8_lossy(r.body()).contains("127.0.0.1"));
    assert_eq!(other.asked("pub"), 0, "the other host is never contacted");
    assert!(other.seen.lock().unwrap().is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redirects_are_followed_only_to_the_prefix_origin() {
    let s = setup("").await;
    let other = Arc::new(Origin::default());
    other.put("pub", jpeg(64, 64, false));
    *s.origin.elsewhere.lock().unwrap() = Some(start_origin(other.clone()).await);
    // Same origin: followed.
    assert_eq!(get(&s.app, "/iiif/2/moved-here/info.json").await.status(), StatusCode::OK);
    // Another host (another port of the same address): refused, not asked.
    let r = get(&s.app, "/iiif/2/moved-away/info.json").await;
    assert_eq!(r.status(), StatusCode::BAD_GATEWAY);
    let msg = String::from_utf8_lossy(r.body()).to_string();
    assert!(msg.contains("redirected") && !msg.contains("127.0.0.1"), "{msg}");
    let good = [("authorization", "Bearer good")];
    let r = call(&s.app, http::Method::GET, "/iiif/2/closed-moved/info.json", &good).await;
    assert_eq!(r.status(), StatusCode::BAD_GATEWAY);
    assert_eq!(s.origin.asked("closed-moved"), 2, "asked anonymously, then with the credentials");
    assert_eq!(other.asked("pub"), 0, "the other host receives no request");
    assert!(stored(s.folder.path()).len() == 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn when_redirects_to_other_hosts_are_allowed_credentials_stay_behind() {
    let s = setup("follow_redirects_to_other_hosts = true\nforward_cookies = [\"session\"]").await;
    let other = Arc::new(Origin::default());
    other.put("pub", jpeg(64, 64, false));
    *s.origin.elsewhere.lock().unwrap() = Some(start_origin(other.clone()).await);
    let creds = [("authorization", "Bearer good"), ("cookie", "session=s3cret")];
    let r = call(&s.app, http::Method::GET, "/iiif/2/closed-moved/info.json", &creds).await;
    assert_eq!(r.status(), StatusCode::OK);
    assert!(s.origin.seen.lock().unwrap().iter().any(|(_, a, _)| a.as_deref() == Some("Bearer good")));
    let seen = other.seen.lock().unwrap().clone();
    assert!(!seen.is_empty(), "the redirect was followed");
    for (name, authorization, cookie) in seen {
        assert_eq!((authorization, cookie), (None, None), "credentials forwarded to another host for {name}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_crashed_servers_downloads_are_removed_at_the_next_start() {
    let origin = Arc::new(Origin::default());
    origin.put("pub", jpeg(512, 384, false));
    let addr = start_origin(origin.clone()).await;
    let images = tempfile::tempdir().unwrap();
    let folder = tempfile::tempdir().unwrap();
    std::fs::write(folder.path().join("notes.src"), b"not Tessera's").unwrap();
    let prefix = format!("http://{addr}/bits/");
    let dir = folder.path().to_str().unwrap().to_string();
    let env = [
        ("TESSERA_SOURCE__KIND", "http"),
        ("TESSERA_SOURCE__HTTP__URL_PREFIX", prefix.as_str()),
        ("TESSERA_SOURCE__HTTP__URL_SUFFIX", "/content"),
        ("TESSERA_SOURCE__HTTP__CACHE_DIR", dir.as_str()),
        ("TESSERA_SAMPLES__GENERATE", "false"),
    ];
    let images_path = images.path().to_path_buf();
    let env_owned: Vec<(String, String)> = env.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect();
    let mut server = tokio::task::spawn_blocking(move || {
        let env: Vec<(&str, &str)> = env_owned.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
        let server = Server::start(&images_path, &env);
        let r = http_get(server.addr, "/iiif/2/pub/info.json", &[]).unwrap();
        assert_eq!(r.status, 200);
        server
    })
    .await
    .unwrap();
    let left = stored(folder.path());
    assert_eq!(left.len(), 2, "the download and the user's file: {left:?}");
    // A crash: no clean-up runs.
    server.child.kill().unwrap();
    server.child.wait().unwrap();
    assert_eq!(stored(folder.path()).len(), 2, "the killed server's download is still there");
    // The next start (here in-process) removes it, and only it.
    let root = tempfile::tempdir().unwrap();
    let toml = format!(
        "[source]\nkind = \"http\"\n[source.http]\nurl_prefix = \"{prefix}\"\nurl_suffix = \"/content\"\ncache_dir = \"{dir}\"\n"
    );
    let app = app(root.path(), &toml);
    let left = stored(folder.path());
    assert_eq!(left.len(), 1, "{left:?}");
    assert_eq!(left[0].0, folder.path().join("notes.src"), "a file Tessera did not write is kept");
    let runs: Vec<_> = std::fs::read_dir(folder.path())
        .unwrap()
        .flatten()
        .filter(|e| e.file_name().to_string_lossy().starts_with("tessera-run-"))
        .collect();
    assert_eq!(runs.len(), 1, "only the new run's subfolder");
    assert_eq!(get(&app, "/iiif/2/pub/info.json").await.status(), StatusCode::OK);
    drop(server);
}
