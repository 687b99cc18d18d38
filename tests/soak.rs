//! The chaos soak (#30): real `tessera serve` processes under faults, every
//! answer checked against the truth.
//!
//! Two instances share a file source behind HAProxy, with the Redis tier
//! and a disk tier each; a third reads an HTTP origin (this test's own, on
//! loopback, with ranges, ETags and a restricted image) behind a second
//! HAProxy. Viewers replay deep-zoom sessions (the load test's: home view,
//! zoom-ins to full resolution, pans), each after its info.json, over a
//! mixed corpus (JPEG 2000 tiled, untiled and 16-bit, pyramidal TIFF,
//! JPEG, PNG), a quarter of the requests conditional, while a seeded
//! fault schedule rewrites, replaces, truncates and deletes files on disk
//! and at the origin; kills (SIGKILL, SIGTERM) and restarts instances,
//! Redis and the origin; makes the origin slow, cut bodies short or answer
//! 500; fills the disk of the tier and of the download folder; and every
//! instance runs with worker panics and pool refusals injected
//! (`src/faults.rs`, the `fault-injection` feature this test requires).
//!
//! Every answer is checked: a 200 image against references rendered
//! in-process from each version of the file that was current at some
//! moment of the request (≥ 30 dB against one of them; the HTTP source may
//! lag by its `revalidate_after`); a 304 only for an ETag whose version was
//! current; errors are 4xx/5xx naming no file path; no request hangs; the
//! restricted image never reaches a client without the origin's token.
//! Afterwards the folders are within their bounds and each process within
//! its memory, file and thread budgets.
//!
//! `TESSERA_SOAK_SECS` (120) and `TESSERA_SOAK_SEED` (30) set the run;
//! `scripts/soak.sh MINUTES [SEED]` runs a long one. The summary (faults
//! injected, answers checked by kind) is printed and written to
//! `target/soak/summary.md`. Without redis-server or haproxy the test says
//! SKIPPED (a failure under CI).

mod common;

use std::collections::HashMap;
use std::io::{BufRead, BufReader, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicU8, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use common::*;
use rand::rngs::SmallRng;
use rand::{Rng, SeedableRng};
use tessera::codec::{encode, jp2};
use tessera::iiif::Format;
use tessera::loadtest::session::{ImagePlan, Viewport};
use tessera::pixels::Pixels;

const W: u32 = 1024;
const H: u32 = 768;
/// The origin's restricted images need this bearer token.
const TOKEN: &str = "Bearer letmein";
/// The HTTP source's `revalidate_after` (and `auth_ttl`): how long it may
/// serve a version the origin has replaced.
const REVALIDATE_SECS: u64 = 1;

// ---------------------------------------------------------------------------
// The corpus and its versions

#[derive(Clone, Copy, Debug, PartialEq)]
enum Kind {
    Jp2Tiled,
    Jp2Untiled,
    Jp2Deep,
    Tiff,
    Jpeg,
    Png,
}

/// The pixels of version `seed`: a photo-like picture, inverted on odd
/// seeds, so that any two versions are far apart (< 20 dB).
fn version_pixels(seed: u64) -> Pixels {
    let p = tessera::samples::generate::photo_like(W, H, seed);
    if seed.is_multiple_of(2) {
        return p;
    }
    let d: Vec<u8> = p.data().iter().map(|&v| 255 - v).collect();
    Pixels::new(W, H, p.layout(), d).unwrap()
}

/// The bytes of version `seed` of an image of `kind`.
fn encode_version(kind: Kind, seed: u64, scratch: &Path) -> Vec<u8> {
    let px = version_pixels(seed);
    match kind {
        Kind::Jp2Tiled => tiled_jp2(&px, 256),
        Kind::Jp2Untiled => {
            let params = jp2::EncodeParams {
                tile_size: None,
                levels: 4,
                lossless: false,
                rate: Some(12.0),
                ..Default::default()
            };
            jp2::encode(&jp2::EncodeInput::from_pixels(&px), &params).unwrap()
        }
        Kind::Jp2Deep => {
            let wide: Vec<u16> = px.data().iter().map(|&v| u16::from(v) * 257).collect();
            let input = jp2::EncodeInput {
                width: W,
                height: H,
                components: 3,
                precision: 16,
                samples: jp2::Samples::U16(&wide),
            };
            let params =
                jp2::EncodeParams { tile_size: Some((512, 512)), levels: 4, lossless: true, ..Default::default() };
            jp2::encode(&input, &params).unwrap()
        }
        Kind::Tiff => {
            let png = scratch.join(format!("v{seed}.png"));
            let tif = scratch.join(format!("v{seed}.tif"));
            std::fs::write(&png, encode::encode(&px, Format::Png, 90).unwrap()).unwrap();
            let out = Command::new("vips")
                .arg("tiffsave")
                .arg(&png)
                .arg(&tif)
                .args(["--tile", "--pyramid", "--compression", "jpeg", "--tile-width", "256", "--tile-height", "256"])
                .output()
                .expect("vips (scripts/deps.sh test installs libvips-tools)");
            assert!(out.status.success(), "vips: {}", String::from_utf8_lossy(&out.stderr));
            let bytes = std::fs::read(&tif).unwrap();
            let _ = std::fs::remove_file(png);
            let _ = std::fs::remove_file(tif);
            bytes
        }
        Kind::Jpeg => encode::encode(&px, Format::Jpg, 90).unwrap(),
        Kind::Png => encode::encode(&px, Format::Png, 90).unwrap(),
    }
}

/// One version of an image: current from `from` until `until` (open while
/// it is the file's content).
#[derive(Clone)]
struct Version {
    id: u64,
    bytes: Arc<Vec<u8>>,
    from: Instant,
    until: Option<Instant>,
}

/// What the file is now, besides its versions.
#[derive(Clone, Copy, PartialEq, Debug)]
enum State {
    Whole,
    Truncated,
    Deleted,
}

struct Image {
    name: String,
    kind: Kind,
    /// Served through the HTTP source (the file lives at the origin).
    remote: bool,
    /// The origin answers it only to `TOKEN`.
    restricted: bool,
    dir: PathBuf,
    versions: Vec<Version>,
    state: State,
    /// The levels and tiles a viewer sees (from its first info.json).
    plan: Option<Arc<ImagePlan>>,
}

impl Image {
    fn path(&self) -> PathBuf {
        self.dir.join(&self.name)
    }
}

/// The files, their versions, and who changes them.
struct Truth {
    images: Mutex<Vec<Image>>,
    next_seed: AtomicU64,
    scratch: PathBuf,
}

impl Truth {
    /// Writes a new version of image `i` with `how` ("in place" or
    /// "replace"). The version is recorded as current *before* the file
    /// changes, and the old one ends only once the change is done: a
    /// request checked while the rename is under way may match either.
    /// (Recording the new version only afterwards let an answer that came
    /// from it, checked in that gap, be attributed to the old version
    /// alone: the one unexplained info.json ETag of the first 30-minute
    /// soak, and 164 flagged answers of the second.)
    fn write_version(&self, i: usize, how: &str) {
        let (kind, path, dir) = {
            let imgs = self.images.lock().unwrap();
            (imgs[i].kind, imgs[i].path(), imgs[i].dir.clone())
        };
        let seed = self.next_seed.fetch_add(1, Ordering::SeqCst);
        let bytes = Arc::new(encode_version(kind, seed, &self.scratch));
        let in_place = how == "in place" && path.exists();
        let tmp = dir.join(format!(".tmp-{seed}"));
        if !in_place {
            std::fs::write(&tmp, &*bytes).unwrap();
        }
        self.begin_version(i, Version { id: seed, bytes: bytes.clone(), from: Instant::now(), until: None });
        if in_place {
            let mut f = std::fs::OpenOptions::new().write(true).open(&path).unwrap();
            f.write_all(&bytes).unwrap();
            f.set_len(bytes.len() as u64).unwrap();
        } else {
            std::fs::rename(&tmp, &path).unwrap();
        }
        self.end_older_versions(i, State::Whole);
    }

    /// Makes `v` current beside the versions that still are (they end in
    /// `end_older_versions`, once the file has changed).
    fn begin_version(&self, i: usize, v: Version) {
        self.images.lock().unwrap()[i].versions.push(v);
    }

    /// Ends every version of image `i` but the newest, now, and sets its
    /// state.
    fn end_older_versions(&self, i: usize, state: State) {
        let after = Instant::now();
        let mut imgs = self.images.lock().unwrap();
        let img = &mut imgs[i];
        let n = img.versions.len();
        for v in img.versions.iter_mut().take(n.saturating_sub(1)) {
            if v.until.is_none() {
                v.until = Some(after);
            }
        }
        img.state = state;
    }

    /// Truncates image `i` to a third, or deletes it. A truncated file is
    /// a version of its own (its first third: the tiles whose bytes it
    /// still holds may well decode, and must then be the old pixels); a
    /// deleted one has none until the next write.
    fn break_file(&self, i: usize, delete: bool) {
        let path = self.images.lock().unwrap()[i].path();
        if delete {
            let _ = std::fs::remove_file(&path);
            // A deleted file has no version: every one ends now (the
            // newest included, hence a sentinel that never matches).
            let after = Instant::now();
            let mut imgs = self.images.lock().unwrap();
            for v in imgs[i].versions.iter_mut().filter(|v| v.until.is_none()) {
                v.until = Some(after);
            }
            imgs[i].state = State::Deleted;
            return;
        }
        // The truncated version is what the file holds now, cut to a
        // third: recorded before the cut, like a write.
        let Ok(now) = std::fs::read(&path) else { return };
        let kept = now[..now.len() / 3].to_vec();
        let id = self.next_seed.fetch_add(1, Ordering::SeqCst);
        self.begin_version(i, Version { id, bytes: Arc::new(kept.clone()), from: Instant::now(), until: None });
        let cut = std::fs::OpenOptions::new().write(true).open(&path).and_then(|f| f.set_len(kept.len() as u64));
        if cut.is_err() {
            // Not cut: the version never was (it ends at once).
            let mut imgs = self.images.lock().unwrap();
            if let Some(v) = imgs[i].versions.last_mut() {
                v.until = Some(v.from);
            }
            return;
        }
        self.end_older_versions(i, State::Truncated);
    }
}

// ---------------------------------------------------------------------------
// The origin: files from a folder, with ranges, strong ETags, a restricted
// image, and faults on demand.

const ORIGIN_OK: u8 = 0;
const ORIGIN_SLOW: u8 = 1;
const ORIGIN_CUT: u8 = 2;
const ORIGIN_500: u8 = 3;

struct Origin {
    dir: PathBuf,
    addr: SocketAddr,
    mode: AtomicU8,
    down: AtomicBool,
    stop: AtomicBool,
    answered: AtomicU64,
}

fn fnv(b: &[u8]) -> u64 {
    b.iter().fold(0xcbf29ce484222325u64, |h, &x| (h ^ x as u64).wrapping_mul(0x100000001b3))
}

impl Origin {
    fn start(dir: PathBuf) -> Arc<Origin> {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = listener.local_addr().unwrap();
        let o = Arc::new(Origin {
            dir,
            addr,
            mode: AtomicU8::new(ORIGIN_OK),
            down: AtomicBool::new(false),
            stop: AtomicBool::new(false),
            answered: AtomicU64::new(0),
        });
        let me = o.clone();
        std::thread::spawn(move || me.accept_loop(Some(listener)));
        o
    }

    /// Accepts until stopped; while `down`, the port is closed (as a
    /// killed origin's), then bound again.
    fn accept_loop(self: Arc<Self>, mut listener: Option<TcpListener>) {
        while !self.stop.load(Ordering::SeqCst) {
            if self.down.load(Ordering::SeqCst) {
                listener = None;
                std::thread::sleep(Duration::from_millis(20));
                continue;
            }
            let l = match &listener {
                Some(l) => l,
                None => match TcpListener::bind(self.addr) {
                    Ok(l) => {
                        l.set_nonblocking(true).unwrap();
                        listener.insert(l)
                    }
                    Err(_) => {
                        std::thread::sleep(Duration::from_millis(20));
                        continue;
                    }
                },
            };
            l.set_nonblocking(true).unwrap();
            match l.accept() {
                Ok((s, _)) => {
                    let me = self.clone();
                    std::thread::spawn(move || me.answer(s));
                }
                Err(_) => std::thread::sleep(Duration::from_millis(2)),
            }
        }
    }

    fn answer(&self, mut s: TcpStream) {
        let _ = s.set_nonblocking(false);
        let _ = s.set_read_timeout(Some(Duration::from_secs(10)));
        let mut head = Vec::new();
        let mut r = BufReader::new(match s.try_clone() {
            Ok(c) => c,
            Err(_) => return,
        });
        loop {
            let mut line = String::new();
            if r.read_line(&mut line).unwrap_or(0) == 0 {
                return;
            }
            if line == "\r\n" || line == "\n" {
                break;
            }
            head.push(line.trim_end().to_string());
        }
        let Some(request_line) = head.first() else { return };
        let mut parts = request_line.split(' ');
        let method = parts.next().unwrap_or("").to_string();
        let target = parts.next().unwrap_or("/").to_string();
        let header = |name: &str| {
            head.iter().skip(1).find_map(|l| {
                let (k, v) = l.split_once(':')?;
                k.trim().eq_ignore_ascii_case(name).then(|| v.trim().to_string())
            })
        };
        self.answered.fetch_add(1, Ordering::Relaxed);
        let mode = self.mode.load(Ordering::SeqCst);
        if mode == ORIGIN_SLOW {
            std::thread::sleep(Duration::from_millis(1500));
        }
        if mode == ORIGIN_500 {
            let _ = s.write_all(
                b"HTTP/1.1 500 Internal Server Error\r\nContent-Length: 5\r\nConnection: close\r\n\r\noops\n",
            );
            return;
        }
        let name = target.trim_start_matches('/').to_string();
        if name.contains('/') || name.starts_with('.') {
            let _ = s.write_all(b"HTTP/1.1 404 Not Found\r\nContent-Length: 0\r\nConnection: close\r\n\r\n");
            return;
        }
        if name.starts_with("secret-") && header("authorization").as_deref() != Some(TOKEN) {
            let _ =
                s.write_all(b"HTTP/1.1 401 Unauthorized\r\nContent-Length: 11\r\nConnection: close\r\n\r\nlogin first");
            return;
        }
        let Ok(bytes) = std::fs::read(self.dir.join(&name)) else {
            let _ = s.write_all(b"HTTP/1.1 404 Not Found\r\nContent-Length: 0\r\nConnection: close\r\n\r\n");
            return;
        };
        let len = bytes.len() as u64;
        let etag = format!("\"{:x}-{len}\"", fnv(&bytes));
        if header("if-none-match").as_deref() == Some(etag.as_str()) {
            let _ = write!(s, "HTTP/1.1 304 Not Modified\r\nETag: {etag}\r\nConnection: close\r\n\r\n");
            return;
        }
        let range =
            header("range").filter(|_| header("if-range").is_none_or(|v| v == etag)).and_then(|v| parse_range(&v, len));
        let (status, body, extra) = match range {
            Some((a, b)) => (
                "206 Partial Content",
                &bytes[a as usize..=b as usize],
                format!("Content-Range: bytes {a}-{b}/{len}\r\n"),
            ),
            None => ("200 OK", &bytes[..], String::new()),
        };
        let _ = write!(
            s,
            "HTTP/1.1 {status}\r\nContent-Length: {}\r\nETag: {etag}\r\nAccept-Ranges: bytes\r\n{extra}Connection: close\r\n\r\n",
            body.len()
        );
        if method == "HEAD" {
            return;
        }
        if mode == ORIGIN_CUT && body.len() > 16 {
            // Half the body, then the connection closed.
            let _ = s.write_all(&body[..body.len() / 2]);
            let _ = s.shutdown(std::net::Shutdown::Both);
            return;
        }
        let _ = s.write_all(body);
    }
}

/// `bytes=a-b`, `bytes=a-` or `bytes=-n` over `len` bytes.
fn parse_range(v: &str, len: u64) -> Option<(u64, u64)> {
    let spec = v.strip_prefix("bytes=")?;
    let (a, b) = spec.split_once('-')?;
    let (start, end) = match (a, b) {
        ("", n) => (len.saturating_sub(n.parse().ok()?), len.checked_sub(1)?),
        (a, "") => (a.parse().ok()?, len.checked_sub(1)?),
        (a, b) => (a.parse().ok()?, b.parse::<u64>().ok()?.min(len.checked_sub(1)?)),
    };
    (start <= end && start < len).then_some((start, end))
}

// ---------------------------------------------------------------------------
// Instances

/// A `tessera serve` on a fixed port, restartable; its log in `log`.
struct Instance {
    /// The binary, copied at the start (a build during the soak must not
    /// change what a restart runs).
    bin: PathBuf,
    name: &'static str,
    addr: SocketAddr,
    images: PathBuf,
    env: Vec<(String, String)>,
    log: PathBuf,
    child: Option<Child>,
}

impl Instance {
    fn new(bin: &Path, name: &'static str, images: &Path, env: Vec<(String, String)>, logs: &Path) -> Instance {
        let port = TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
        let mut i = Instance {
            bin: bin.to_path_buf(),
            name,
            addr: format!("127.0.0.1:{port}").parse().unwrap(),
            images: images.to_path_buf(),
            env,
            log: logs.join(format!("{name}.log")),
            child: None,
        };
        assert!(i.start(), "{name} did not start");
        i
    }

    /// Starts it and waits (up to 30 s) until /health answers 200.
    fn start(&mut self) -> bool {
        let log = std::fs::OpenOptions::new().create(true).append(true).open(&self.log).unwrap();
        let mut cmd = Command::new(&self.bin);
        cmd.args(["serve", "--listen", &self.addr.to_string(), "--images"]).arg(&self.images);
        cmd.env("RUST_LOG", "warn").stdout(Stdio::null()).stderr(log);
        for (k, v) in &self.env {
            cmd.env(k, v);
        }
        let Ok(child) = cmd.spawn() else { return false };
        self.child = Some(child);
        let deadline = Instant::now() + Duration::from_secs(30);
        while Instant::now() < deadline {
            if http_get(self.addr, "/health", &[]).map(|r| r.status == 200).unwrap_or(false) {
                return true;
            }
            if self.exited() {
                return false;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        false
    }

    fn pid(&self) -> Option<u32> {
        self.child.as_ref().map(Child::id)
    }

    /// Whether the process has exited (reaped).
    fn exited(&mut self) -> bool {
        matches!(self.child.as_mut().map(|c| c.try_wait()), Some(Ok(Some(_))) | None)
    }

    fn signal(&self, sig: &str) {
        if let Some(pid) = self.pid() {
            let _ = Command::new("kill").args([sig, &pid.to_string()]).status();
        }
    }

    /// Waits up to `limit` for the process to exit; kills it after.
    fn wait_exit(&mut self, limit: Duration) {
        let deadline = Instant::now() + limit;
        while !self.exited() && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(20));
        }
        if let Some(c) = self.child.as_mut() {
            let _ = c.kill();
            let _ = c.wait();
        }
        self.child = None;
    }
}

impl Drop for Instance {
    fn drop(&mut self) {
        if let Some(c) = self.child.as_mut() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

/// A tmpfs for the tier and download folders, so the disk can be filled;
/// `None` where mounting is not allowed (not root): the disk faults are
/// then left out, and the summary says so.
struct Tmpfs {
    dir: PathBuf,
}

impl Tmpfs {
    fn mount(dir: &Path, bytes: u64) -> Option<Tmpfs> {
        std::fs::create_dir_all(dir).unwrap();
        let ok = Command::new("mount")
            .args(["-t", "tmpfs", "-o", &format!("size={bytes}"), "tessera-soak"])
            .arg(dir)
            .stderr(Stdio::null())
            .status()
            .map(|s| s.success())
            .unwrap_or(false);
        ok.then(|| Tmpfs { dir: dir.to_path_buf() })
    }
}

impl Drop for Tmpfs {
    fn drop(&mut self) {
        let _ = Command::new("umount").arg("-l").arg(&self.dir).status();
    }
}

// ---------------------------------------------------------------------------
// Checking answers

#[derive(Default)]
struct Tally {
    /// (kind of answer) → count.
    answers: HashMap<String, u64>,
    /// (fault) → times injected.
    faults: HashMap<String, u64>,
    wrong: Vec<String>,
}

impl Tally {
    fn answer(&mut self, what: &str) {
        *self.answers.entry(what.to_string()).or_default() += 1;
    }
    fn fault(&mut self, what: &str) {
        *self.faults.entry(what.to_string()).or_default() += 1;
    }
}

/// References rendered in-process from one version's bytes, by path.
struct References {
    rt: tokio::runtime::Runtime,
    apps: Mutex<HashMap<u64, (Arc<tessera::service::App>, tempfile::TempDir)>>,
    rendered: Mutex<HashMap<(u64, String), Arc<Pixels>>>,
}

impl References {
    fn new() -> References {
        References {
            rt: tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().unwrap(),
            apps: Mutex::new(HashMap::new()),
            rendered: Mutex::new(HashMap::new()),
        }
    }

    /// What `path` renders to from version `v` of `name` (no cache: a
    /// server of its own over a folder holding only that version).
    fn render(&self, name: &str, v: &Version, path: &str) -> Option<Arc<Pixels>> {
        let key = (v.id, path.to_string());
        if let Some(p) = self.rendered.lock().unwrap().get(&key) {
            return Some(p.clone());
        }
        let app = {
            let mut apps = self.apps.lock().unwrap();
            apps.entry(v.id)
                .or_insert_with(|| {
                    let d = tempfile::tempdir().unwrap();
                    std::fs::write(d.path().join(name), &*v.bytes).unwrap();
                    (app(d.path(), ""), d)
                })
                .0
                .clone()
        };
        let r = self.rt.block_on(get(&app, path));
        if r.status() != 200 {
            return None;
        }
        let px = Arc::new(decode_any(r.body()));
        self.rendered.lock().unwrap().insert(key, px.clone());
        Some(px)
    }
}

impl Checker {
    /// Records that a 200 to `path` carried ETag `tag` and could have come
    /// from `versions`. An ETag names one version: if an earlier 200 with it
    /// could only have come from other versions, one of the two was stale
    /// (wrong, though an info.json body cannot show it). Whether it held.
    fn record_etag(&self, path: &str, tag: &str, versions: Vec<u64>, start: Instant, r: &Raw) -> bool {
        let mut etags = self.etags.lock().unwrap();
        let key = (path.to_string(), tag.to_string());
        match etags.get_mut(&key) {
            None => {
                etags.insert(key, (versions, start));
                true
            }
            Some((known, first)) => {
                let both: Vec<u64> = known.iter().copied().filter(|v| versions.contains(v)).collect();
                if both.is_empty() {
                    let msg = format!(
                        "{path}: ETag {tag} (from {:?}) given for versions {versions:?}, and {:.3} s earlier for {known:?}: one of the answers was stale",
                        r.header("x-served-by"),
                        start.saturating_duration_since(*first).as_secs_f64()
                    );
                    drop(etags);
                    self.wrong(msg);
                    return false;
                }
                *known = both;
                true
            }
        }
    }
}

impl References {
    /// Forgets the references and servers of versions not in `keep`.
    fn keep_only(&self, keep: &std::collections::HashSet<u64>) {
        self.rendered.lock().unwrap().retain(|(id, _), _| keep.contains(id));
        self.apps.lock().unwrap().retain(|id, _| keep.contains(id));
    }
}

/// Decodes an answer's body without panicking on garbage.
fn try_decode(body: &[u8]) -> Option<Pixels> {
    let b = body.to_vec();
    std::panic::catch_unwind(move || decode_any(&b)).ok()
}

/// (path, ETag) → (the versions it may name, when first seen).
type EtagsSeen = HashMap<(String, String), (Vec<u64>, Instant)>;

struct Checker {
    truth: Arc<Truth>,
    refs: References,
    tally: Mutex<Tally>,
    /// (path, ETag) → the versions every 200 carrying it could have come
    /// from (those it matched; for info.json, whose body does not tell
    /// versions apart, those current then): the intersection over all of
    /// them, and when it was first seen.
    etags: Mutex<EtagsSeen>,
    roots: Vec<String>,
}

impl Checker {
    fn wrong(&self, msg: String) {
        eprintln!("WRONG: {msg}");
        self.tally.lock().unwrap().wrong.push(msg);
    }

    /// Checks one answer to `path` of image `i`, asked between `start`
    /// and `end`; whether it was right (a 200 whose ETag a viewer may
    /// send again).
    #[allow(clippy::too_many_arguments)]
    fn check(
        &self,
        i: usize,
        path: &str,
        sent_token: bool,
        inm: Option<&str>,
        start: Instant,
        end: Instant,
        r: &Raw,
    ) -> bool {
        let (name, remote, restricted, candidates, all) = {
            let imgs = self.truth.images.lock().unwrap();
            let img = &imgs[i];
            // The HTTP source may serve a replaced version for up to its
            // revalidation interval (and the time to notice).
            let lag = if img.remote { Duration::from_secs(REVALIDATE_SECS + 2) } else { Duration::ZERO };
            let live = |v: &Version| v.from <= end && v.until.is_none_or(|u| u + lag >= start);
            let live: Vec<Version> = img.versions.iter().filter(|v| live(v)).cloned().collect();
            (img.name.clone(), img.remote, img.restricted, live, img.versions.clone())
        };
        let head = |k: &str| r.header(k).map(str::to_string);
        match r.status {
            200 | 304 if restricted && !sent_token => {
                self.wrong(format!("{path}: {} to a client without the origin's token", r.status));
            }
            200 if path.ends_with("info.json") => {
                let ok = serde_json::from_slice::<serde_json::Value>(&r.body)
                    .map(|j| j["width"] == W && j["height"] == H)
                    .unwrap_or(false);
                if ok {
                    if let Some(tag) = head("etag") {
                        if !self.record_etag(path, &tag, candidates.iter().map(|c| c.id).collect(), start, r) {
                            return false;
                        }
                    }
                    self.tally.lock().unwrap().answer("200 info.json");
                    return true;
                } else {
                    self.wrong(format!("{path}: info.json is not the image's: {}", String::from_utf8_lossy(&r.body)));
                }
            }
            200 => {
                if let Some(cl) = head("content-length").and_then(|v| v.parse::<usize>().ok()) {
                    if cl != r.body.len() {
                        // Cut off in transfer (an instance killed mid-answer):
                        // the client sees a broken answer, never wrong bytes.
                        self.tally.lock().unwrap().answer("200 cut off in transfer");
                        return false;
                    }
                }
                let Some(got) = try_decode(&r.body) else {
                    self.wrong(format!("{path}: a 200 that does not decode ({} bytes)", r.body.len()));
                    return false;
                };
                let score = |v: &Version| -> Option<f64> {
                    let want = self.refs.render(&name, v, path)?;
                    ((want.width(), want.height()) == (got.width(), got.height()) && want.layout() == got.layout())
                        .then(|| psnr(want.data(), got.data()))
                };
                let matched: Vec<u64> =
                    candidates.iter().filter(|c| score(c).is_some_and(|db| db >= 30.0)).map(|c| c.id).collect();
                if !matched.is_empty() {
                    if let Some(tag) = head("etag") {
                        if !self.record_etag(path, &tag, matched, start, r) {
                            return false;
                        }
                    }
                    self.tally.lock().unwrap().answer(if remote {
                        "200 image (HTTP source)"
                    } else {
                        "200 image (files)"
                    });
                    return true;
                }
                // Wrong: say which version it was closest to, and when
                // that one was current (seconds from the request's start).
                let rel = |x: Instant| {
                    x.checked_duration_since(start)
                        .map_or_else(|| -start.duration_since(x).as_secs_f64(), |d| d.as_secs_f64())
                };
                let best = all
                    .iter()
                    .filter_map(|c| score(c).map(|db| (c.id, db, rel(c.from), c.until.map(rel))))
                    .max_by(|a, b| a.1.total_cmp(&b.1));
                self.wrong(format!(
                    "{path}: a 200 matching no version current during the request (0..{:.3} s); closest {best:?} (version, dB, current from, until); current then: {:?}",
                    rel(end),
                    candidates.iter().map(|c| c.id).collect::<Vec<_>>()
                ));
            }
            304 => {
                let Some(sent) = inm else {
                    self.wrong(format!("{path}: 304 to an unconditional request"));
                    return false;
                };
                let v = self.etags.lock().unwrap().get(&(path.to_string(), sent.to_string())).cloned();
                if v.as_ref().is_some_and(|(v, _)| candidates.iter().any(|c| v.contains(&c.id))) {
                    self.tally.lock().unwrap().answer("304");
                } else {
                    let rel = |x: Instant| {
                        x.checked_duration_since(start)
                            .map_or_else(|| -start.duration_since(x).as_secs_f64(), |d| d.as_secs_f64())
                    };
                    let windows: Vec<String> = all
                        .iter()
                        .filter(|c| v.as_ref().is_some_and(|(v, _)| v.contains(&c.id)))
                        .map(|c| format!("v{} current {:.3}..{:?}", c.id, rel(c.from), c.until.map(rel)))
                        .collect();
                    let msg = format!(
                        "{path}: 304 (from {:?}) for ETag {sent}, first seen {:?} s before, of versions {windows:?}, none current during the request (0..{:.3} s; current then: {:?})",
                        r.header("x-served-by"),
                        v.as_ref().map(|(_, at)| start.saturating_duration_since(*at).as_secs_f64()),
                        rel(end),
                        candidates.iter().map(|c| c.id).collect::<Vec<_>>()
                    );
                    self.wrong(msg);
                }
            }
            s if (400..600).contains(&s) => {
                let body = String::from_utf8_lossy(&r.body);
                if let Some(root) = self.roots.iter().find(|root| body.contains(root.as_str())) {
                    self.wrong(format!("{path}: {s} names a file path ({root}): {body}"));
                } else {
                    self.tally.lock().unwrap().answer(&format!("{s}"));
                }
            }
            s => self.wrong(format!("{path}: unexpected status {s}")),
        }
        false
    }
}

// ---------------------------------------------------------------------------
// The run

fn seconds(name: &str, default: u64) -> u64 {
    std::env::var(name).ok().and_then(|v| v.parse().ok()).unwrap_or(default)
}

fn du(dir: &Path) -> u64 {
    fn walk(p: &Path) -> u64 {
        let Ok(rd) = std::fs::read_dir(p) else { return 0 };
        rd.flatten()
            .map(|e| match e.metadata() {
                Ok(m) if m.is_dir() => walk(&e.path()),
                Ok(m) => {
                    use std::os::unix::fs::MetadataExt;
                    m.blocks() * 512
                }
                Err(_) => 0,
            })
            .sum()
    }
    walk(dir)
}

/// (RSS bytes, open files, threads, mappings) of process `pid`.
fn process_use(pid: u32) -> Option<(u64, usize, usize, usize)> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    let rss = status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))?
        .trim()
        .trim_end_matches("kB")
        .trim()
        .parse::<u64>()
        .ok()?
        * 1024;
    let fds = std::fs::read_dir(format!("/proc/{pid}/fd")).ok()?.count();
    let threads = std::fs::read_dir(format!("/proc/{pid}/task")).ok()?.count();
    let maps = std::fs::read_to_string(format!("/proc/{pid}/maps")).ok()?.lines().count();
    Some((rss, fds, threads, maps))
}

#[test]
fn a_soak_under_faults_gives_no_client_a_wrong_answer() {
    let secs = seconds("TESSERA_SOAK_SECS", 120);
    let seed = seconds("TESSERA_SOAK_SEED", 30);
    println!("soak: {secs} s, seed {seed} (TESSERA_SOAK_SEED={seed} reproduces the fault schedule)");
    let Some(redis) = Redis::start() else { return };
    if Command::new("vips").arg("--version").output().is_err() {
        skip_missing_unless_set("the soak", "vips", "scripts/deps.sh test installs libvips-tools");
        return;
    }
    let root = tempfile::tempdir().unwrap();
    let at = |p: &str| {
        let d = root.path().join(p);
        std::fs::create_dir_all(&d).unwrap();
        d
    };
    let (files, origin_dir, scratch, no_images) = (at("files"), at("origin"), at("scratch"), at("empty-images"));
    // The instances' logs outlive the run, for whoever reads a failure.
    let logs = repo_path("target/soak/logs");
    let _ = std::fs::remove_dir_all(&logs);
    std::fs::create_dir_all(&logs).unwrap();
    let disks = Tmpfs::mount(&root.path().join("disk"), 48 << 20);
    let disk_root = at("disk");
    let (tier_a, tier_b, downloads) = (disk_root.join("tier-a"), disk_root.join("tier-b"), disk_root.join("downloads"));
    for d in [&tier_a, &tier_b, &downloads] {
        std::fs::create_dir_all(d).unwrap();
    }
    let tier_bytes: u64 = 12 << 20;
    let download_bytes: u64 = 12 << 20;

    // The corpus, version 0 of each.
    let specs: [(&str, Kind, bool, bool); 9] = [
        ("tiled.jp2", Kind::Jp2Tiled, false, false),
        ("untiled.jp2", Kind::Jp2Untiled, false, false),
        ("deep.jp2", Kind::Jp2Deep, false, false),
        ("pyramid.tif", Kind::Tiff, false, false),
        ("photo.jpg", Kind::Jpeg, false, false),
        ("photo.png", Kind::Png, false, false),
        ("remote-tiled.jp2", Kind::Jp2Tiled, true, false),
        ("remote-pyramid.tif", Kind::Tiff, true, false),
        ("secret-tiled.jp2", Kind::Jp2Tiled, true, true),
    ];
    let truth = Arc::new(Truth { images: Mutex::new(Vec::new()), next_seed: AtomicU64::new(seed * 1000), scratch });
    for (name, kind, remote, restricted) in specs {
        let dir = if remote { origin_dir.clone() } else { files.clone() };
        truth.images.lock().unwrap().push(Image {
            name: name.into(),
            kind,
            remote,
            restricted,
            dir,
            versions: Vec::new(),
            state: State::Deleted,
            plan: None,
        });
    }
    for i in 0..specs.len() {
        truth.write_version(i, "replace");
    }

    let bin = root.path().join("tessera");
    std::fs::copy(env!("CARGO_BIN_EXE_tessera"), &bin).unwrap();
    let origin = Origin::start(origin_dir.clone());
    let faults = [
        ("TESSERA_FAULT_WORKER_PANICS".to_string(), "5".to_string()),
        ("TESSERA_FAULT_POOL_REFUSALS".to_string(), "5".to_string()),
    ];
    let shared = |tier: &Path| {
        let mut env = vec![
            ("TESSERA_CACHE__SHARED__KIND".to_string(), "redis".to_string()),
            ("TESSERA_CACHE__SHARED__URL".to_string(), redis.url()),
            ("TESSERA_CACHE__DISK_DIR".to_string(), tier.display().to_string()),
            ("TESSERA_CACHE__DISK_MAX_BYTES".to_string(), tier_bytes.to_string()),
            ("TESSERA_SERVER__DRAIN_SECS".to_string(), "1".to_string()),
        ];
        env.extend(faults.iter().cloned());
        env
    };
    let mut a = Instance::new(&bin, "a", &files, shared(&tier_a), &logs);
    let mut b = Instance::new(&bin, "b", &files, shared(&tier_b), &logs);
    let mut c_env = vec![
        ("TESSERA_SOURCE__KIND".to_string(), "http".to_string()),
        ("TESSERA_SOURCE__HTTP__URL_PREFIX".to_string(), format!("http://{}/", origin.addr)),
        ("TESSERA_SOURCE__HTTP__CACHE_DIR".to_string(), downloads.display().to_string()),
        ("TESSERA_SOURCE__HTTP__CACHE_MAX_BYTES".to_string(), download_bytes.to_string()),
        ("TESSERA_SOURCE__HTTP__MAX_SOURCE_BYTES".to_string(), download_bytes.to_string()),
        ("TESSERA_SOURCE__HTTP__REVALIDATE_AFTER".to_string(), REVALIDATE_SECS.to_string()),
        ("TESSERA_SOURCE__HTTP__AUTH_TTL".to_string(), REVALIDATE_SECS.to_string()),
        ("TESSERA_SOURCE__HTTP__READ_TIMEOUT".to_string(), "3".to_string()),
        ("TESSERA_SOURCE__HTTP__TIMEOUT".to_string(), "8".to_string()),
        ("TESSERA_CACHE__DISK_MAX_BYTES".to_string(), "0".to_string()),
        ("TESSERA_SERVER__DRAIN_SECS".to_string(), "1".to_string()),
    ];
    c_env.extend(faults.iter().cloned());
    let mut c = Instance::new(&bin, "c", &no_images, c_env, &logs);
    let Some(lb_files) = Haproxy::start(&[a.addr, b.addr]) else { return };
    let Some(lb_remote) = Haproxy::start(&[c.addr]) else { return };

    let checker = Arc::new(Checker {
        truth: truth.clone(),
        refs: References::new(),
        tally: Mutex::new(Tally::default()),
        etags: Mutex::new(HashMap::new()),
        roots: vec![root.path().display().to_string(), "/tmp/".to_string()],
    });
    // Each image's levels, from its info.json as a viewer reads it.
    for img in truth.images.lock().unwrap().iter_mut() {
        let addr = if img.remote { lb_remote.addr } else { lb_files.addr };
        let url = format!("http://{addr}/iiif/2/{}/info.json", img.name);
        let headers: &[(&str, &str)] = if img.restricted { &[("Authorization", TOKEN)] } else { &[] };
        let r = http_get(addr, &format!("/iiif/2/{}/info.json", img.name), headers).unwrap();
        assert_eq!(r.status, 200, "{url}: {}", String::from_utf8_lossy(&r.body));
        let spec = tessera::loadtest::target::parse_info(&url, &r.body).unwrap();
        img.plan = Some(Arc::new(ImagePlan::new(spec)));
    }
    let deadline = Instant::now() + Duration::from_secs(secs);
    let hangs = Arc::new(AtomicU64::new(0));

    // Viewers.
    let viewers: Vec<_> = (0..4u64)
        .map(|v| {
            let (checker, truth, hangs) = (checker.clone(), truth.clone(), hangs.clone());
            let (files_addr, remote_addr) = (lb_files.addr, lb_remote.addr);
            std::thread::spawn(move || {
                let mut rng = SmallRng::seed_from_u64(seed ^ ((v + 1) * 0x9E37));
                let mut last: HashMap<String, String> = HashMap::new();
                // Sessions as a viewer makes them (home view, zoom-ins to
                // full resolution, pans: the load test's), each after its
                // info.json, on images drawn at random.
                let mut queue: std::collections::VecDeque<(usize, String)> = Default::default();
                while Instant::now() < deadline {
                    let Some((i, path)) = queue.pop_front() else {
                        let imgs = truth.images.lock().unwrap();
                        let i = rng.random_range(0..imgs.len());
                        let img = &imgs[i];
                        queue.push_back((i, format!("/iiif/2/{}/info.json", img.name)));
                        if let Some(plan) = &img.plan {
                            let viewport = Viewport { width: 800, height: 600 };
                            for r in plan.session(i, viewport, 3, &mut rng) {
                                queue.push_back((i, format!("/iiif/2/{}/{}", img.name, r.path)));
                            }
                        }
                        continue;
                    };
                    let (remote, restricted) = {
                        let imgs = truth.images.lock().unwrap();
                        (imgs[i].remote, imgs[i].restricted)
                    };
                    let token = restricted && rng.random_bool(0.7);
                    let inm = last.get(&path).filter(|_| rng.random_bool(0.25)).cloned();
                    let mut headers: Vec<(&str, &str)> = Vec::new();
                    if token {
                        headers.push(("Authorization", TOKEN));
                    } else if restricted && rng.random_bool(0.5) {
                        headers.push(("Authorization", "Bearer wrong"));
                    }
                    if let Some(tag) = &inm {
                        headers.push(("If-None-Match", tag));
                    }
                    let addr = if remote { remote_addr } else { files_addr };
                    let start = Instant::now();
                    let r = http_request(addr, "GET", &path, &headers);
                    let end = Instant::now();
                    match r {
                        Ok(r) => {
                            if checker.check(i, &path, token, inm.as_deref(), start, end, &r) {
                                if let Some(tag) = r.header("etag") {
                                    last.insert(path.clone(), tag.to_string());
                                }
                            }
                        }
                        Err(e)
                            if e.kind() == std::io::ErrorKind::WouldBlock
                                || e.kind() == std::io::ErrorKind::TimedOut =>
                        {
                            hangs.fetch_add(1, Ordering::SeqCst);
                            checker.wrong(format!("{path}: no answer within 30 s ({e})"));
                        }
                        Err(_) => {
                            checker.tally.lock().unwrap().answer("connection error (balancer restarting a backend)")
                        }
                    }
                }
            })
        })
        .collect();

    // The fault schedule.
    let mut rng = SmallRng::seed_from_u64(seed);
    let mut crashes = 0u64;
    let mut schedule_log = Vec::new();
    let t0 = Instant::now();
    let mut redis_slot = Some(redis);
    let redis_port = redis_slot.as_ref().map(|r| r.port).unwrap_or(0);
    while Instant::now() + Duration::from_secs(3) < deadline {
        std::thread::sleep(Duration::from_millis(rng.random_range(300..1200)));
        // Crashes: an instance that exited though nobody stopped it.
        for inst in [&mut a, &mut b, &mut c] {
            if inst.exited() {
                crashes += 1;
                checker.wrong(format!("instance {} exited by itself (see {})", inst.name, inst.log.display()));
                inst.start();
            }
        }
        let n = truth.images.lock().unwrap().len();
        let i = rng.random_range(0..n);
        let fault = rng.random_range(0..14u32);
        let name = match fault {
            0..=1 => {
                truth.write_version(i, "in place");
                "rewrite in place"
            }
            2..=3 => {
                truth.write_version(i, "replace");
                "replace (rename over)"
            }
            4 => {
                truth.break_file(i, false);
                std::thread::sleep(Duration::from_millis(rng.random_range(200..1500)));
                truth.write_version(i, "in place");
                "truncate, then rewrite"
            }
            5 => {
                truth.break_file(i, true);
                std::thread::sleep(Duration::from_millis(rng.random_range(200..1500)));
                truth.write_version(i, "replace");
                "delete, then restore"
            }
            6 => {
                let inst = if rng.random_bool(0.5) { &mut a } else { &mut b };
                inst.signal("-KILL");
                inst.wait_exit(Duration::from_secs(5));
                std::thread::sleep(Duration::from_millis(rng.random_range(200..1500)));
                inst.start();
                "SIGKILL an instance, restart it"
            }
            7 => {
                let inst = match rng.random_range(0..3) {
                    0 => &mut a,
                    1 => &mut b,
                    _ => &mut c,
                };
                inst.signal("-TERM");
                inst.wait_exit(Duration::from_secs(10));
                inst.start();
                "SIGTERM an instance (drain), restart it"
            }
            8 => {
                c.signal("-KILL");
                c.wait_exit(Duration::from_secs(5));
                c.start();
                "SIGKILL the HTTP-source instance, restart it"
            }
            9 => {
                drop(redis_slot.take());
                std::thread::sleep(Duration::from_millis(rng.random_range(500..2500)));
                redis_slot = Redis::start_on(redis_port);
                "kill Redis, restart it"
            }
            10 => {
                let (mode, what) = match rng.random_range(0..3) {
                    0 => (ORIGIN_SLOW, "origin slow (1.5 s an answer) for a while"),
                    1 => (ORIGIN_CUT, "origin cuts bodies short for a while"),
                    _ => (ORIGIN_500, "origin answers 500 for a while"),
                };
                origin.mode.store(mode, Ordering::SeqCst);
                std::thread::sleep(Duration::from_millis(rng.random_range(500..3000)));
                origin.mode.store(ORIGIN_OK, Ordering::SeqCst);
                what
            }
            11 => {
                origin.down.store(true, Ordering::SeqCst);
                std::thread::sleep(Duration::from_millis(rng.random_range(500..2500)));
                origin.down.store(false, Ordering::SeqCst);
                "origin down (port closed), then back"
            }
            12 if disks.is_some() => {
                // Fill the disk of the tier and the download folder.
                let fill = disk_root.join("filler");
                if let Ok(mut f) = std::fs::File::create(&fill) {
                    let chunk = vec![0u8; 1 << 20];
                    while f.write_all(&chunk).is_ok() {}
                }
                std::thread::sleep(Duration::from_millis(rng.random_range(1000..3000)));
                let _ = std::fs::remove_file(&fill);
                "disk of the tier and downloads full, then freed"
            }
            _ => {
                truth.write_version(i, "replace");
                "replace (rename over)"
            }
        };
        // References are kept for the versions a request may still match.
        let keep: std::collections::HashSet<u64> = {
            let imgs = truth.images.lock().unwrap();
            let horizon = Instant::now() - Duration::from_secs(60);
            imgs.iter()
                .flat_map(|img| img.versions.iter())
                .filter(|v| v.until.is_none_or(|u| u > horizon))
                .map(|v| v.id)
                .collect()
        };
        checker.refs.keep_only(&keep);
        schedule_log.push(format!(
            "{:7.3} s {name} ({})",
            t0.elapsed().as_secs_f64(),
            truth.images.lock().unwrap()[i].name
        ));
        checker.tally.lock().unwrap().fault(name);
    }
    for v in viewers {
        v.join().unwrap();
    }
    if redis_slot.is_none() {
        redis_slot = Redis::start_on(redis_port);
    }

    // Afterwards: quiet, then the bounds and budgets.
    std::thread::sleep(Duration::from_secs(2));
    let mut after = Vec::new();
    for (dir, bound, what) in
        [(&tier_a, tier_bytes, "tier a"), (&tier_b, tier_bytes, "tier b"), (&downloads, download_bytes, "downloads")]
    {
        let used = du(dir);
        after.push(format!(
            "{what}: {:.1} MiB on disk (bound {:.0} MiB)",
            used as f64 / 1048576.0,
            bound as f64 / 1048576.0
        ));
        if used > bound + bound / 10 + (1 << 20) {
            checker.wrong(format!("{what} holds {used} bytes, over its bound of {bound}"));
        }
    }
    for inst in [&mut a, &mut b, &mut c] {
        if inst.exited() {
            checker.wrong(format!("instance {} is not running at the end", inst.name));
            continue;
        }
        let Some((rss, fds, threads, maps)) = inst.pid().and_then(process_use) else { continue };
        after.push(format!(
            "{}: RSS {:.0} MiB, {fds} open files, {threads} threads, {maps} mappings",
            inst.name,
            rss as f64 / 1048576.0
        ));
        if rss > 1 << 30 || fds > 512 || threads > 128 || maps > 4096 {
            checker.wrong(format!(
                "{}: over its budgets (RSS {rss}, {fds} files, {threads} threads, {maps} maps)",
                inst.name
            ));
        }
    }

    let tally = checker.tally.lock().unwrap();
    let mut summary = format!(
        "Soak: {secs} s, seed {seed}, 2 file instances + 1 HTTP-source instance, {} images.\n\n| fault | injected |\n|---|---:|\n",
        specs.len()
    );
    let mut faults: Vec<_> = tally.faults.iter().collect();
    faults.sort();
    for (f, n) in faults {
        summary.push_str(&format!("| {f} | {n} |\n"));
    }
    summary.push_str("| worker panic, pool refusal (each job, per thousand) | 5, 5 |\n");
    if disks.is_none() {
        summary.push_str("| disk full (not run: mounting a tmpfs needs root) | 0 |\n");
    }
    summary.push_str("\n| answer | checked |\n|---|---:|\n");
    let mut answers: Vec<_> = tally.answers.iter().collect();
    answers.sort();
    for (a, n) in answers {
        summary.push_str(&format!("| {a} | {n} |\n"));
    }
    summary.push_str(&format!(
        "\nWrong answers: {}; hangs: {}; crashes: {crashes}.\n\n{}\n",
        tally.wrong.len(),
        hangs.load(Ordering::SeqCst),
        after.join("\n")
    ));
    println!("{summary}");
    println!("schedule:\n{}", schedule_log.join("\n"));
    let out = repo_path("target/soak");
    let _ = std::fs::create_dir_all(&out);
    let _ = std::fs::write(out.join("summary.md"), &summary);
    let _ = std::fs::write(out.join("schedule.txt"), schedule_log.join("\n"));
    for w in tally.wrong.iter().take(20) {
        eprintln!("wrong: {w}");
    }
    assert!(
        tally.wrong.is_empty(),
        "{} wrong answers (first: {:?}); logs in {}",
        tally.wrong.len(),
        tally.wrong.first(),
        logs.display()
    );
    let checked: u64 =
        tally.answers.iter().filter(|(k, _)| k.starts_with("200 image") || k.as_str() == "304").map(|(_, n)| n).sum();
    assert!(checked > 50, "too few image answers checked ({checked}) for the soak to mean anything");
    drop(redis_slot);
}
