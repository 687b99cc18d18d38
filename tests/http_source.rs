//! The HTTP source against a real HTTP origin on loopback: a small
//! DSpace-like server (hyper, in this process) with ETags, conditional GET,
//! bearer-token access control, and failure modes (a stall, a dropped
//! connection, a 503 once). Tessera runs in-process over `source.kind = "http"`.

mod common;

use std::collections::{HashMap, HashSet};
use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use bytes::Bytes;
use common::*;
use http::{Request, Response, StatusCode};
use http_body_util::Full;
use hyper::body::Incoming;
use tessera::codec::encode;
use tessera::iiif::Format;

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
}

fn etag_of(b: &[u8]) -> String {
    format!("\"{:016x}\"", tessera::source::fnv1a(&[b]))
}

fn answer(status: StatusCode, body: Vec<u8>) -> Response<Full<Bytes>> {
    let mut r = Response::new(Full::new(Bytes::from(body)));
    *r.status_mut() = status;
    r
}

async fn serve(origin: Arc<Origin>, req: Request<Incoming>) -> Result<Response<Full<Bytes>>, std::io::Error> {
    let path = req.uri().path().to_string();
    let Some(name) = path.strip_prefix("/bits/").and_then(|p| p.strip_suffix("/content")) else {
        return Ok(answer(StatusCode::NOT_FOUND, vec![]));
    };
    let name = name.to_string();
    *origin.asked.lock().unwrap().entry(name.clone()).or_default() += 1;
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
        _ => {}
    }
    if origin.restricted.lock().unwrap().contains(&name) {
        match req.headers().get("authorization").and_then(|v| v.to_str().ok()) {
            None => return Ok(answer(StatusCode::UNAUTHORIZED, b"login first".to_vec())),
            Some("Bearer good") => {}
            Some(_) => return Ok(answer(StatusCode::FORBIDDEN, b"not yours".to_vec())),
        }
    }
    let Some(bytes) = origin.files.lock().unwrap().get(&name).cloned() else {
        return Ok(answer(StatusCode::NOT_FOUND, vec![]));
    };
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

struct Setup {
    origin: Arc<Origin>,
    app: Arc<tessera::service::App>,
    _root: tempfile::TempDir,
    folder: tempfile::TempDir,
}

async fn setup(extra: &str) -> Setup {
    setup_with(1, extra).await
}

async fn setup_with(revalidate_after: u64, extra: &str) -> Setup {
    let origin = Arc::new(Origin::default());
    origin.put("pub", jpeg(512, 384, false));
    origin.put("flaky", jpeg(64, 64, false));
    origin.put("closed", jpeg(320, 240, false));
    origin.restricted.lock().unwrap().insert("closed".into());
    origin.put("big", vec![0u8; 300_000]);
    let addr = start_origin(origin.clone()).await;
    let root = tempfile::tempdir().unwrap();
    let folder = tempfile::tempdir().unwrap();
    let toml = format!(
        r#"
[source]
kind = "http"
[source.http]
url_prefix = "http://{addr}/bits/"
url_suffix = "/content"
cache_dir = "{}"
revalidate_after = {revalidate_after}
connect_timeout = 2
read_timeout = 1
timeout = 20
retries = 1
retry_backoff_ms = 20
max_source_bytes = 200000
{extra}
"#,
        folder.path().display()
    );
    let app = app(root.path(), &toml);
    Setup { origin, app, _root: root, folder }
}

const TILE: &str = "full/128,/0/default.jpg";

fn metric(text: &str, name: &str) -> f64 {
    text.lines()
        .find(|l| l.starts_with(name) && l[name.len()..].starts_with(' '))
        .and_then(|l| l.rsplit(' ').next())
        .and_then(|v| v.parse().ok())
        .unwrap_or(-1.0)
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
    let files: Vec<_> = std::fs::read_dir(s.folder.path()).unwrap().collect();
    assert_eq!(files.len(), 1, "the fetched image lies in the source folder");
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
    assert_eq!(std::fs::read_dir(s.folder.path()).unwrap().count(), 0, "its copy is deleted");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_image_over_the_size_cap_is_refused_with_502() {
    let s = setup("").await;
    let r = get(&s.app, "/iiif/2/big/info.json").await;
    assert_eq!(r.status(), StatusCode::BAD_GATEWAY);
    assert!(String::from_utf8_lossy(r.body()).contains("larger"));
    assert_eq!(std::fs::read_dir(s.folder.path()).unwrap().count(), 0, "nothing partial is left");
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
