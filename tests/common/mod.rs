//! Shared support for the integration tests: test pictures and image folders
//! (encoded once per test binary, copied into a fresh folder per call), an
//! in-process app, a spawned server and an nginx on free loopback ports, a
//! minimal HTTP/1.1 client, image decoding and PSNR, the one Prometheus text
//! parser, and the one rule for a missing outside tool (skip here, fail in CI).
#![allow(dead_code)]

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, OnceLock};
use std::time::{Duration, Instant};

use bytes::Bytes;
use http::{HeaderMap, Method, Response, Uri};
use rand::rngs::SmallRng;
use rand::{Rng, SeedableRng};
use tessera::codec::encode;
use tessera::config::Config;
use tessera::iiif::Format;
use tessera::pixels::{Layout, Pixels};
use tessera::service::{App, Head};

/// A deterministic test picture with structure (gradients and a grid).
pub fn picture(w: u32, h: u32) -> Pixels {
    let mut d = Vec::with_capacity((w * h * 3) as usize);
    for y in 0..h {
        for x in 0..w {
            let grid = if (x / 16 + y / 16) % 2 == 0 { 40 } else { 0 };
            d.extend_from_slice(&[
                ((x * 200 / w.max(1)) + grid) as u8,
                ((y * 200 / h.max(1)) + grid) as u8,
                (((x + y) * 100 / (w + h).max(1)) + 60) as u8,
            ]);
        }
    }
    Pixels::new(w, h, Layout::Rgb, d).unwrap()
}

/// A folder of its own with a JPEG, a PNG (with alpha), a gray JPEG, the
/// validator image, a nested JPEG, and hostile files. Tests may change their
/// folder: each call gets a new one, filled from [`image_files`].
pub fn image_dir() -> tempfile::TempDir {
    let d = tempfile::tempdir().unwrap();
    for (name, bytes) in image_files() {
        let path = d.path().join(name);
        if let Some(parent) = path.parent() {
            std::fs::create_dir_all(parent).unwrap();
        }
        std::fs::write(path, bytes).unwrap();
    }
    d
}

/// The files of [`image_dir`] (path under the folder, bytes), encoded once
/// per test binary.
fn image_files() -> &'static [(&'static str, Vec<u8>)] {
    static FILES: OnceLock<Vec<(&'static str, Vec<u8>)>> = OnceLock::new();
    FILES.get_or_init(|| {
        let jpg = encode::encode(&picture(1200, 800), Format::Jpg, 92).unwrap();
        let rgba = {
            let mut v = Vec::new();
            for (i, px) in picture(300, 200).data().chunks(3).enumerate() {
                v.extend_from_slice(px);
                v.push(if i % 7 == 0 { 0 } else { 255 });
            }
            Pixels::new(300, 200, Layout::Rgba, v).unwrap()
        };
        let png = encode::encode(&rgba, Format::Png, 90).unwrap();
        let gray = tessera::transform::quality::to_gray(picture(640, 480));
        // 200 random bytes past the JPEG's headers, each with some bits flipped.
        let mut flipped = jpg.clone();
        let mut rng = SmallRng::seed_from_u64(12345);
        for _ in 0..200 {
            let i = 700 + rng.random_range(0..flipped.len() - 800);
            flipped[i] ^= rng.random::<u8>() | 1;
        }
        vec![
            ("photo.jpg", jpg.clone()),
            ("alpha.png", png.clone()),
            ("gray.jpg", encode::encode(&gray, Format::Jpg, 90).unwrap()),
            (
                "67352ccc-d1b0-11e1-89ae-279075081939.png",
                encode::encode(&tessera::samples::generate::validator_image(), Format::Png, 90).unwrap(),
            ),
            ("sub/dir/nested.jpg", encode::encode(&picture(64, 64), Format::Jpg, 90).unwrap()),
            // Hostile files.
            ("truncated.jpg", jpg[..jpg.len() / 3].to_vec()),
            ("header-only.jpg", jpg[..400].to_vec()),
            ("truncated.png", png[..png.len() / 2].to_vec()),
            ("garbage.jpg", b"\xFF\xD8\xFF\xE0this is not a jpeg at all".to_vec()),
            ("notes.txt", b"plain text".to_vec()),
            ("flipped.jpg", flipped),
            ("huge-header.png", huge_png_header()),
        ]
    })
}

/// A PNG whose IHDR claims 100000 × 100000 pixels, with a tiny body.
pub fn huge_png_header() -> Vec<u8> {
    let mut v = b"\x89PNG\r\n\x1a\n".to_vec();
    let mut ihdr = b"IHDR".to_vec();
    ihdr.extend_from_slice(&100_000u32.to_be_bytes());
    ihdr.extend_from_slice(&100_000u32.to_be_bytes());
    ihdr.extend_from_slice(&[8, 2, 0, 0, 0]);
    v.extend_from_slice(&13u32.to_be_bytes());
    v.extend_from_slice(&ihdr);
    v.extend_from_slice(&crc32(&ihdr).to_be_bytes());
    // A short IDAT, so the header reads cleanly and only the size is absurd.
    let mut idat = b"IDAT".to_vec();
    idat.extend_from_slice(&[0x78, 0x9c, 0x63, 0x00, 0x00, 0x00, 0x01, 0x00, 0x01]);
    v.extend_from_slice(&9u32.to_be_bytes());
    v.extend_from_slice(&idat);
    v.extend_from_slice(&crc32(&idat).to_be_bytes());
    v.extend_from_slice(&[0, 0, 0, 0]);
    v.extend_from_slice(b"IEND");
    v.extend_from_slice(&crc32(b"IEND").to_be_bytes());
    v
}

fn crc32(data: &[u8]) -> u32 {
    let mut c = 0xFFFF_FFFFu32;
    for &b in data {
        c ^= b as u32;
        for _ in 0..8 {
            c = if c & 1 != 0 { 0xEDB8_8320 ^ (c >> 1) } else { c >> 1 };
        }
    }
    !c
}

/// An in-process app over `root` whose item catalogue is `root/items`.
pub fn app_with_catalogue(root: &Path) -> Arc<App> {
    let cat = root.join("items");
    app(root, &format!("[presentation]\ncatalogue_root = {:?}", cat.to_str().unwrap()))
}

/// An in-process app over `root` with extra TOML over the defaults.
pub fn app(root: &Path, extra: &str) -> Arc<App> {
    let mut cfg = Config::from_toml_over_defaults(extra).unwrap();
    cfg.source.root = root.to_path_buf();
    // In-process apps run without the disk tier unless a test names its
    // folder (the default folder is shared by the user's servers).
    if !extra.contains("disk_dir") {
        cfg.cache.disk_max_bytes = 0;
    }
    // The CPU backend unless a test names one: on a machine with a GPU the
    // default ("auto", crossover measured at start) would route by timing.
    if !extra.contains("[transform]") {
        cfg.transform.backend = "cpu".into();
    }
    Arc::new(App::new(cfg).unwrap())
}

/// Calls the app with a GET (or another method) and headers.
pub async fn call(app: &Arc<App>, method: Method, path: &str, headers: &[(&str, &str)]) -> Response<Bytes> {
    let uri: Uri = path.parse().unwrap();
    let mut h = HeaderMap::new();
    h.insert("host", "127.0.0.1:8182".parse().unwrap());
    for (k, v) in headers {
        h.insert(http::HeaderName::from_bytes(k.as_bytes()).unwrap(), v.parse().unwrap());
    }
    app.handle(Head { method: &method, uri: &uri, headers: &h }).await
}

pub async fn get(app: &Arc<App>, path: &str) -> Response<Bytes> {
    call(app, Method::GET, path, &[]).await
}

/// The value of the sample `name` in Prometheus text (`name value`, or
/// `name value timestamp`). `name` is matched whole, so a plain name finds
/// only the unlabelled sample; to read a labelled one, give its labels as
/// the text has them (`tessera_http_requests_total{endpoint="image",status="200"}`).
pub fn metric_value(text: &str, name: &str) -> Option<f64> {
    text.lines()
        .filter_map(|l| l.strip_prefix(name)?.strip_prefix(' '))
        .find_map(|rest| rest.split_whitespace().next()?.parse().ok())
}

/// A `tessera serve` child process on a free loopback port; killed on drop.
pub struct Server {
    pub child: Child,
    pub addr: SocketAddr,
    /// The server's own disk tile tier, unless the test named one.
    _tiles: Option<tempfile::TempDir>,
}

impl Server {
    pub fn start(images: &Path, env: &[(&str, &str)]) -> Server {
        for _attempt in 0..5 {
            let port = {
                let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
                l.local_addr().unwrap().port()
            };
            let addr: SocketAddr = format!("127.0.0.1:{port}").parse().unwrap();
            let mut cmd = Command::new(env!("CARGO_BIN_EXE_tessera"));
            cmd.args(["serve", "--listen", &addr.to_string(), "--images"]).arg(images);
            cmd.env("RUST_LOG", "warn").stdout(Stdio::null()).stderr(Stdio::inherit());
            for (k, v) in env {
                cmd.env(k, v);
            }
            let tiles = (!env.iter().any(|(k, _)| *k == "TESSERA_CACHE__DISK_DIR")).then(|| {
                let d = tempfile::tempdir().expect("tile folder");
                cmd.env("TESSERA_CACHE__DISK_DIR", d.path());
                d
            });
            let child = cmd.spawn().expect("spawn tessera");
            let mut s = Server { child, addr, _tiles: tiles };
            let deadline = Instant::now() + Duration::from_secs(30);
            while Instant::now() < deadline {
                if let Ok(Some(_)) = s.child.try_wait() {
                    break;
                }
                if let Ok(r) = http_get(addr, "/health", &[]) {
                    if r.status == 200 {
                        return s;
                    }
                }
                std::thread::sleep(Duration::from_millis(50));
            }
            let _ = s.child.kill();
        }
        panic!("server did not start");
    }

    pub fn base(&self) -> String {
        format!("http://{}", self.addr)
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A raw HTTP/1.1 response.
pub struct Raw {
    pub status: u16,
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
}

impl Raw {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.iter().find(|(k, _)| k.eq_ignore_ascii_case(name)).map(|(_, v)| v.as_str())
    }
}

/// Sends one request on a new connection (`Connection: close`) and reads the
/// whole answer. `path` is sent as is (no normalisation).
pub fn http_request(addr: SocketAddr, method: &str, path: &str, headers: &[(&str, &str)]) -> std::io::Result<Raw> {
    let mut s = TcpStream::connect_timeout(&addr, Duration::from_secs(5))?;
    s.set_read_timeout(Some(Duration::from_secs(30)))?;
    let mut req = format!("{method} {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n");
    for (k, v) in headers {
        req.push_str(&format!("{k}: {v}\r\n"));
    }
    req.push_str("\r\n");
    s.write_all(req.as_bytes())?;
    let mut buf = Vec::new();
    s.read_to_end(&mut buf)?;
    let split = buf.windows(4).position(|w| w == b"\r\n\r\n").ok_or_else(|| std::io::Error::other("no header end"))?;
    let head = String::from_utf8_lossy(&buf[..split]).to_string();
    let mut lines = head.split("\r\n");
    let status = lines
        .next()
        .and_then(|l| l.split(' ').nth(1))
        .and_then(|c| c.parse().ok())
        .ok_or_else(|| std::io::Error::other("bad status line"))?;
    let headers: Vec<(String, String)> =
        lines.filter_map(|l| l.split_once(':')).map(|(k, v)| (k.trim().to_string(), v.trim().to_string())).collect();
    let mut body = buf[split + 4..].to_vec();
    let chunked = headers_has(&headers, "transfer-encoding", "chunked");
    if chunked {
        body = dechunk(&body);
    }
    Ok(Raw { status, headers, body })
}

fn headers_has(h: &[(String, String)], k: &str, v: &str) -> bool {
    h.iter().any(|(a, b)| a.eq_ignore_ascii_case(k) && b.eq_ignore_ascii_case(v))
}

fn dechunk(mut b: &[u8]) -> Vec<u8> {
    let mut out = Vec::new();
    while let Some(p) = b.windows(2).position(|w| w == b"\r\n") {
        let n = usize::from_str_radix(String::from_utf8_lossy(&b[..p]).trim(), 16).unwrap_or(0);
        if n == 0 {
            break;
        }
        out.extend_from_slice(&b[p + 2..p + 2 + n]);
        b = &b[p + 2 + n + 2..];
    }
    out
}

pub fn http_get(addr: SocketAddr, path: &str, headers: &[(&str, &str)]) -> std::io::Result<Raw> {
    http_request(addr, "GET", path, headers)
}

/// Decodes an image response body (any format the `image` crate reads here).
pub fn decode_any(body: &[u8]) -> Pixels {
    if body.starts_with(b"\x89PNG") {
        return tessera::codec::png::decode(body, u64::MAX).unwrap();
    }
    let info = tessera::codec::probe(body).unwrap();
    let full = tessera::plan::Rect { x: 0, y: 0, w: info.width, h: info.height };
    tessera::codec::decode(body, &info, full, 1, u64::MAX).unwrap()
}

/// PSNR in dB between two same-sized buffers.
pub fn psnr(a: &[u8], b: &[u8]) -> f64 {
    assert_eq!(a.len(), b.len());
    let mse: f64 = a.iter().zip(b).map(|(x, y)| (*x as f64 - *y as f64).powi(2)).sum::<f64>() / a.len() as f64;
    if mse == 0.0 {
        return f64::INFINITY;
    }
    10.0 * (255.0f64 * 255.0 / mse).log10()
}

pub fn repo_path(rel: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join(rel)
}

/// Debian's nginx serving `root` on a free loopback port (ETag and Range
/// support built in); stopped on drop. `None` (the test skips) where nginx
/// is not installed — but under CI, where scripts/test.sh installs it, a
/// missing nginx is a failure.
pub struct Nginx {
    child: Child,
    pub addr: SocketAddr,
    _dir: tempfile::TempDir,
}

impl Nginx {
    pub fn start(root: &Path) -> Option<Nginx> {
        let bin = ["/usr/sbin/nginx", "/usr/local/sbin/nginx"].into_iter().find(|p| Path::new(p).exists());
        let Some(bin) = bin else {
            skip_missing("nginx", "scripts/test.sh installs it");
            return None;
        };
        for _attempt in 0..5 {
            let port = {
                let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
                l.local_addr().unwrap().port()
            };
            let dir = tempfile::tempdir().unwrap();
            let d = dir.path().display();
            let conf = format!(
                "daemon off;\nmaster_process off;\nworker_processes 1;\npid {d}/nginx.pid;\nerror_log {d}/error.log;\n\
                 events {{ worker_connections 256; }}\n\
                 http {{\n access_log off;\n client_body_temp_path {d}/b;\n proxy_temp_path {d}/p;\n fastcgi_temp_path {d}/f;\n \
                 uwsgi_temp_path {d}/u;\n scgi_temp_path {d}/s;\n default_type application/octet-stream;\n \
                 server {{ listen 127.0.0.1:{port}; root {}; location / {{ }} }}\n}}\n",
                root.display()
            );
            std::fs::write(dir.path().join("nginx.conf"), conf).unwrap();
            let child = Command::new(bin)
                .arg("-e")
                .arg(dir.path().join("error.log"))
                .arg("-p")
                .arg(dir.path())
                .arg("-c")
                .arg(dir.path().join("nginx.conf"))
                .stdout(Stdio::null())
                .stderr(Stdio::inherit())
                .spawn()
                .expect("spawn nginx");
            let addr: SocketAddr = format!("127.0.0.1:{port}").parse().unwrap();
            let mut n = Nginx { child, addr, _dir: dir };
            let deadline = Instant::now() + Duration::from_secs(10);
            while Instant::now() < deadline {
                if let Ok(Some(_)) = n.child.try_wait() {
                    break;
                }
                if TcpStream::connect_timeout(&addr, Duration::from_millis(200)).is_ok() {
                    return Some(n);
                }
                std::thread::sleep(Duration::from_millis(50));
            }
            let _ = n.child.kill();
            let _ = n.child.wait();
        }
        panic!("nginx did not start");
    }
}

impl Drop for Nginx {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// What a test does when an outside tool it needs (`what`) is absent: skip
/// or fail. Outside CI it prints a `SKIPPED:` line to stderr and returns, and
/// the caller then returns early; with `CI` set it panics, naming what CI
/// must have. `fix` says how to get it.
#[track_caller]
pub fn skip_missing(what: &str, fix: &str) {
    skip_missing_unless_set("CI", what, fix);
}

/// [`skip_missing`], failing instead where the environment variable
/// `required_by` is set (as `TESSERA_REQUIRE_GPU` asks for a GPU adapter).
#[track_caller]
pub fn skip_missing_unless_set(required_by: &str, what: &str, fix: &str) {
    assert!(
        std::env::var(required_by).is_err(),
        "{required_by} is set, so this test must have {what}, which is missing ({fix})"
    );
    eprintln!("SKIPPED: {what} is missing ({fix})");
}

/// Python with Pillow (and its ImageCms): the venv scripts/test.sh makes
/// for the validators; `None` where it is missing.
pub fn pillow_python() -> Option<std::path::PathBuf> {
    let p = repo_path("target/tools/venv/bin/python");
    let ok = Command::new(&p).args(["-c", "import PIL.ImageCms"]).output().is_ok_and(|o| o.status.success());
    ok.then_some(p)
}

/// `px` as a lossy JP2 in codestream tiles of `tile`² (5 levels, 2 layers,
/// RPCL): the archival shape whose tiles the decoded-unit store keeps.
pub fn tiled_jp2(px: &tessera::pixels::Pixels, tile: u32) -> Vec<u8> {
    use tessera::codec::jp2::{self, Container, EncodeInput, EncodeParams, Progression};
    let p = EncodeParams {
        tile_size: Some((tile, tile)),
        levels: 5,
        lossless: false,
        rate: Some(16.0),
        layers: 2,
        progression: Progression::Rpcl,
        precincts: None,
        container: Container::Jp2,
    };
    jp2::encode(&EncodeInput::from_pixels(px), &p).unwrap()
}

/// A `redis-server` on a loopback port, without persistence; killed on
/// drop. `None` (SKIPPED) without redis-server.
pub struct Redis {
    pub child: Child,
    pub port: u16,
    _dir: tempfile::TempDir,
}

impl Redis {
    /// On a free port.
    pub fn start() -> Option<Redis> {
        let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
        Redis::start_on(port)
    }

    /// On `port` (a restart where the instances expect it).
    pub fn start_on(port: u16) -> Option<Redis> {
        if Command::new("redis-server").arg("--version").output().map(|o| !o.status.success()).unwrap_or(true) {
            skip_missing("redis-server", "scripts/deps.sh test installs Debian's redis-server");
            return None;
        }
        let dir = tempfile::tempdir().unwrap();
        let child = Command::new("redis-server")
            .args(["--bind", "127.0.0.1", "--port", &port.to_string(), "--save", "", "--appendonly", "no"])
            .args(["--maxmemory", "256mb", "--maxmemory-policy", "allkeys-lru", "--dir"])
            .arg(dir.path())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        let r = Redis { child, port, _dir: dir };
        let deadline = Instant::now() + Duration::from_secs(10);
        while Instant::now() < deadline {
            if TcpStream::connect(("127.0.0.1", port)).is_ok() {
                return Some(r);
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        panic!("redis-server did not start");
    }

    pub fn url(&self) -> String {
        format!("redis://127.0.0.1:{}", self.port)
    }

    pub fn stop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Drop for Redis {
    fn drop(&mut self) {
        self.stop();
    }
}

/// HAProxy on a free loopback port balancing `backends` round robin, with
/// a health check on `/health` every 300 ms, naming the backend that
/// answered in `X-Served-By`; killed on drop. `None`
/// (SKIPPED) without haproxy.
pub struct Haproxy {
    pub child: Child,
    pub addr: SocketAddr,
    _dir: tempfile::TempDir,
}

impl Haproxy {
    pub fn start(backends: &[SocketAddr]) -> Option<Haproxy> {
        if Command::new("haproxy").arg("-v").output().map(|o| !o.status.success()).unwrap_or(true) {
            skip_missing("haproxy", "scripts/deps.sh test installs Debian's haproxy");
            return None;
        }
        let dir = tempfile::tempdir().unwrap();
        let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
        let mut cfg = format!(
            "global\n  maxconn 512\ndefaults\n  mode http\n  timeout connect 2s\n  timeout client 60s\n  timeout server 60s\n  retries 2\n  option redispatch\n\
             frontend iiif\n  bind 127.0.0.1:{port}\n  default_backend tessera\n\
             backend tessera\n  balance roundrobin\n  option httpchk GET /health\n  default-server inter 300ms fall 2 rise 1\n\
               http-response set-header X-Served-By %[srv_name]\n"
        );
        for (i, b) in backends.iter().enumerate() {
            cfg.push_str(&format!("  server t{i} {b} check\n"));
        }
        let file = dir.path().join("haproxy.cfg");
        std::fs::write(&file, cfg).unwrap();
        let child = Command::new("haproxy")
            .arg("-db")
            .arg("-f")
            .arg(&file)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        let addr: SocketAddr = format!("127.0.0.1:{port}").parse().unwrap();
        let h = Haproxy { child, addr, _dir: dir };
        let deadline = Instant::now() + Duration::from_secs(10);
        while Instant::now() < deadline {
            if http_get(addr, "/health", &[]).map(|r| r.status == 200).unwrap_or(false) {
                return Some(h);
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        panic!("haproxy did not become healthy");
    }
}

impl Drop for Haproxy {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Node.js, the npm packages of tests/e2e and Chromium, for the browser
/// tests.
pub struct E2e {
    pub node: PathBuf,
    pub modules: PathBuf,
    pub chromium: PathBuf,
}

/// What a browser test needs, or None (SKIPPED) when something is missing;
/// panics under CI. `bundle`: the viewer's file under node_modules whose
/// presence says its package is installed; `package`: its name, to say so.
pub fn e2e_prerequisites(package: &str, bundle: &str) -> Option<E2e> {
    let node = PathBuf::from(std::env::var("TESSERA_NODE").unwrap_or_else(|_| "node".into()));
    let modules = std::env::var_os("TESSERA_E2E_MODULES")
        .map(PathBuf::from)
        .unwrap_or_else(|| repo_path("target/tools/e2e/node_modules"));
    let chromium = PathBuf::from(std::env::var("TESSERA_CHROMIUM").unwrap_or_else(|_| "/usr/bin/chromium".into()));
    let node_ok = Command::new(&node)
        .arg("--version")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .map(|s| s.success())
        .unwrap_or(false);
    let missing = if !node_ok {
        Some(format!("Node.js ({})", node.display()))
    } else if !modules.join(bundle).is_file() || !modules.join("playwright-core/package.json").is_file() {
        Some(format!("the {package} and playwright-core packages (in {})", modules.display()))
    } else if !chromium.is_file() {
        Some(format!("a browser at {}", chromium.display()))
    } else {
        None
    };
    if let Some(what) = missing {
        skip_missing(&what, "scripts/e2e-setup.sh installs chromium and the npm packages");
        return None;
    }
    Some(E2e { node, modules, chromium })
}

/// Waits for a browser script to end, at most `limit`: its exit status, or
/// None when it had to be stopped (SIGTERM first, so that it closes its
/// browser and server; then SIGKILL).
pub fn wait_for_script(child: &mut Child, limit: Duration) -> Option<std::process::ExitStatus> {
    let deadline = Instant::now() + limit;
    loop {
        if let Ok(Some(s)) = child.try_wait() {
            return Some(s);
        }
        if Instant::now() > deadline {
            let _ = Command::new("kill").args(["-TERM", &child.id().to_string()]).status();
            std::thread::sleep(Duration::from_secs(5));
            let _ = child.kill();
            let _ = child.wait();
            return None;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
}
