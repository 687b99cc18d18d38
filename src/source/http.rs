//! HTTP sources: images fetched from a web store — a DSpace bitstream
//! endpoint, say — instead of read from a shared disk.
//!
//! An identifier maps to `url_prefix + identifier + url_suffix` (Cantaloupe's
//! HttpSource basic lookup). The joined URL must keep the prefix's scheme,
//! host, port and user: with a prefix lacking its trailing `/`, an identifier
//! such as `.attacker.example/x` would otherwise name another host (and the
//! client's credentials would be sent there); such identifiers are 404 and
//! nothing is asked. Redirects are followed only to the prefix's origin
//! (scheme, host, port) unless `follow_redirects_to_other_hosts` is set; a
//! refused redirect is 502.
//!
//! Downloads: at most `max_concurrent_fetches` exchanges with the origin run
//! at once (others wait, up to `timeout` seconds, then get 503). The first
//! bytes of a download are sniffed ([`crate::codec::sniff`]): a file that is
//! not an image this server decodes is refused (502, or 501 for a TIFF, GIF
//! or WebP) before anything is written. The size cap (`max_source_bytes`)
//! and the folder's byte bound (`cache_max_bytes`) are enforced while the
//! bytes arrive: bytes in flight are counted against the folder's bound as
//! they are received (least recently used images are evicted to make room,
//! 503 if downloads in flight alone fill it), and a download passing the cap
//! is aborted at once. A partial file is deleted on every failure, including
//! a dropped task.
//!
//! The folder: a fetched image is streamed into a folder of this server's
//! own, bounded in bytes and evicted least-recently-used, and then
//! memory-mapped from there like a local file, so JPEG 2000 region decoding
//! works unchanged. Each running server writes only into a subfolder
//! `tessera-run-<random>` of `cache_dir` (default: `tessera-sources` under the
//! system temp directory), holding an advisory lock (`flock`) on its `.lock`
//! file while it runs (the kernel drops it when the process dies).
//! At start, the subfolders whose lock no process holds (a crashed run's)
//! are removed, and only the files this module names there; other files in
//! `cache_dir` are never touched. Several servers may share `cache_dir`.
//! Concurrent requests for an image being fetched wait for the one fetch
//! ([`SingleFlight`], keyed by URL and credentials).
//!
//! Freshness: an image is served without asking the origin for
//! `revalidate_after` seconds; then a conditional GET (`If-None-Match` /
//! `If-Modified-Since`) revalidates it. A changed image is stored as a new
//! file with a new [`SourceVersion`] (from the origin's validator), so every
//! cache keyed on the version — tiles, headers, decoded tiles — misses.
//!
//! Access control: the origin decides. The first fetch of an image is
//! anonymous. If the origin answers 200, the image is public and served to
//! everyone from the cache. If it answers 401/403, the image is *restricted*:
//! it is fetched with the client's credentials (its `Authorization` header and
//! the configured cookies) and its bytes and tiles are cached once, but every
//! client must be admitted by the origin with its own credentials (a
//! conditional GET forwarding them; the admission is remembered for
//! `auth_ttl` seconds per image and credential, in a table bounded to
//! [`ADMISSION_MAX_BYTES`] of keys, oldest forgotten first). A client without
//! credentials gets the origin's 401/403. Restricted responses are marked
//! `Cache-Control: private` by the service and never take its hot path.
//!
//! Architecture invariant: a restricted image is served to a request only if
//! the origin admitted that request's exact credentials for that image within
//! `auth_ttl` seconds; nothing is keyed on a hash of credentials.

use std::collections::{BTreeMap, HashMap};
use std::fs::{File, OpenOptions};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime};

use bytes::Bytes;
use http::header::{self, HeaderMap, HeaderValue};
use http::StatusCode;
use percent_encoding::{utf8_percent_encode, AsciiSet, NON_ALPHANUMERIC};
use tokio::io::AsyncWriteExt;
use tokio::sync::Semaphore;

use super::ranged::{self, Counted, Fetcher, HttpRange, RangeStats, Remote};
use super::{fnv1a, is_safe_identifier, Located, Origin, SourceVersion};
use crate::config::HttpSourceCfg;
use crate::error::{Error, Result};
use crate::flight::SingleFlight;

/// Characters of an identifier escaped in the origin URL (`/` is kept, so
/// `a/b` maps to a path below the prefix).
const URL_ESCAPE: &AsciiSet = &NON_ALPHANUMERIC.remove(b'-').remove(b'.').remove(b'_').remove(b'~').remove(b'/');

/// Bytes the admission table may hold (URLs and credentials, plus
/// [`ADMISSION_OVERHEAD`] per entry); the oldest admissions are forgotten
/// beyond it. A forgotten admission only costs a new question to the origin.
pub const ADMISSION_MAX_BYTES: usize = 16 << 20;

/// Bytes counted per admission besides its key: the map slot, the expiry and
/// the order index.
const ADMISSION_OVERHEAD: usize = 96;

/// Bytes of a download read before deciding whether it is an image (the
/// longest signature: a JP2 signature box, or `RIFF....WEBP`).
const SNIFF_LEN: usize = 12;

/// Redirects followed for one request (all to allowed origins).
const MAX_REDIRECTS: usize = 5;

/// `Retry-After` seconds when no download slot or folder space is free.
const BUSY_RETRY_AFTER: u32 = 5;

/// The folder under the system temp directory used when `cache_dir` is empty.
pub const DEFAULT_FOLDER: &str = "tessera-sources";

/// Each running server's subfolder of `cache_dir` starts with this.
const RUN_PREFIX: &str = "tessera-run-";

/// The lock file in a run subfolder, held while its server runs.
const RUN_LOCK: &str = ".lock";

/// The lock file in `cache_dir` held while a server prepares its subfolder.
const FOLDER_LOCK: &str = ".tessera-sources.lock";

/// What a client sends that the origin may use to decide access.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Credentials {
    authorization: Option<HeaderValue>,
    cookie: Option<HeaderValue>,
}

impl Credentials {
    /// The credentials of a request, as `cfg` says to forward them.
    pub fn of(headers: &HeaderMap, cfg: &HttpSourceCfg) -> Credentials {
        let authorization = if cfg.forward_authorization { headers.get(header::AUTHORIZATION).cloned() } else { None };
        let cookie = forwarded_cookies(headers, &cfg.forward_cookies).and_then(|c| HeaderValue::from_str(&c).ok());
        Credentials { authorization, cookie }
    }

    pub fn is_empty(&self) -> bool {
        self.authorization.is_none() && self.cookie.is_none()
    }

    /// An exact, unhashed key (for the single-flight and admission tables).
    fn key(&self) -> Vec<u8> {
        let mut k = Vec::new();
        if let Some(a) = &self.authorization {
            k.extend_from_slice(a.as_bytes());
        }
        k.push(0);
        if let Some(c) = &self.cookie {
            k.extend_from_slice(c.as_bytes());
        }
        k
    }
}

/// The client's cookies named in `names` (`"*"` = all), as one Cookie value.
fn forwarded_cookies(headers: &HeaderMap, names: &[String]) -> Option<String> {
    if names.is_empty() {
        return None;
    }
    let all = names.iter().any(|n| n == "*");
    let kept: Vec<&str> = headers
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .map(str::trim)
        .filter(|c| {
            let name = c.split('=').next().unwrap_or("");
            !name.is_empty() && (all || names.iter().any(|n| n == name))
        })
        .collect();
    (!kept.is_empty()).then(|| kept.join("; "))
}

/// Counters for /metrics.
#[derive(Default)]
pub struct Stats {
    /// Full downloads of an image.
    pub downloads: AtomicU64,
    /// Bytes downloaded.
    pub bytes: AtomicU64,
    /// Conditional requests answered 304.
    pub not_modified: AtomicU64,
    /// 401/403 answers from the origin.
    pub refusals: AtomicU64,
    /// Failed exchanges (timeouts, 5xx, connection errors, oversized images,
    /// files that are not images, refused redirects).
    pub errors: AtomicU64,
    /// Images opened for reading by range (instead of downloaded whole).
    pub ranged_opens: AtomicU64,
    /// The range reads of those images.
    pub range: Arc<RangeStats>,
}

/// One image kept in the folder.
#[derive(Clone, Debug)]
struct Entry {
    path: PathBuf,
    len: u64,
    version: SourceVersion,
    modified: SystemTime,
    etag: Option<String>,
    last_modified: Option<String>,
    /// When the origin last confirmed this content.
    validated: Instant,
    /// The origin's answer to an anonymous request at the last check, if it
    /// refused one (401 or 403): the image is restricted.
    anonymous_refusal: Option<StatusCode>,
    /// LRU clock; shared by the refreshed copies of one file.
    last_used: Arc<AtomicU64>,
    /// Read by range: `path` is its sparse file, and `len` is 0 (its blocks
    /// count in [`HttpSource::counted`] as they arrive).
    remote: Option<Arc<Remote>>,
}

/// (URL, exact credentials).
type AdmissionKey = (String, Vec<u8>);

/// Admissions by the origin: (URL, exact credentials) → admitted until.
/// Bounded in bytes: the keys are client-supplied and may be large, so their
/// sizes are counted and the oldest admissions (which, with one `auth_ttl`,
/// are also the first to expire) are forgotten beyond `max_bytes`.
struct Admissions {
    max_bytes: usize,
    bytes: usize,
    seq: u64,
    map: HashMap<Arc<AdmissionKey>, (Instant, u64)>,
    /// Insertion order: seq → key.
    order: BTreeMap<u64, Arc<AdmissionKey>>,
}

impl Admissions {
    fn new(max_bytes: usize) -> Admissions {
        Admissions { max_bytes, bytes: 0, seq: 0, map: HashMap::new(), order: BTreeMap::new() }
    }

    fn cost(k: &AdmissionKey) -> usize {
        k.0.len() + k.1.len() + ADMISSION_OVERHEAD
    }

    fn is_admitted(&self, k: &AdmissionKey, now: Instant) -> bool {
        self.map.get(k).is_some_and(|(until, _)| now < *until)
    }

    fn insert(&mut self, k: AdmissionKey, until: Instant, now: Instant) {
        self.remove(&k);
        let cost = Self::cost(&k);
        if cost > self.max_bytes {
            return;
        }
        // The expired first, then the oldest while over the bound.
        while let Some((&seq, key)) = self.order.first_key_value() {
            let expired = self.map.get(key).is_some_and(|(u, _)| *u <= now);
            if !expired && self.bytes + cost <= self.max_bytes {
                break;
            }
            if let Some(key) = self.order.remove(&seq) {
                self.map.remove(&key);
                self.bytes = self.bytes.saturating_sub(Self::cost(&key));
            }
        }
        self.seq += 1;
        let k = Arc::new(k);
        self.order.insert(self.seq, k.clone());
        self.map.insert(k, (until, self.seq));
        self.bytes += cost;
    }

    fn remove(&mut self, k: &AdmissionKey) {
        if let Some((key, (_, seq))) = self.map.remove_entry(k) {
            self.order.remove(&seq);
            self.bytes = self.bytes.saturating_sub(Self::cost(&key));
        }
    }

    fn clear(&mut self) {
        self.map.clear();
        self.order.clear();
        self.bytes = 0;
    }
}

struct State {
    entries: HashMap<String, Arc<Entry>>,
    /// Bytes of the entries' files.
    bytes: u64,
    /// Bytes received by downloads under way (counted against the bound too).
    inflight: u64,
    admitted: Admissions,
}

impl Default for State {
    fn default() -> State {
        State { entries: HashMap::new(), bytes: 0, inflight: 0, admitted: Admissions::new(ADMISSION_MAX_BYTES) }
    }
}

type FlightKey = (String, Vec<u8>);

/// Images fetched over HTTP(S) into a bounded local folder.
pub struct HttpSource {
    cfg: HttpSourceCfg,
    client: reqwest::Client,
    /// The parsed `url_prefix`: every origin URL keeps its scheme, host, port.
    prefix: reqwest::Url,
    /// This run's subfolder of `cache_dir`.
    dir: PathBuf,
    /// Held (locked) while this source lives: marks `dir` as in use.
    _run_lock: File,
    state: Mutex<State>,
    flights: Arc<SingleFlight<FlightKey, Result<Arc<Entry>>>>,
    /// Exchanges with the origin under way (`max_concurrent_fetches`).
    fetches: Semaphore,
    clock: AtomicU64,
    seq: AtomicU64,
    pub stats: Stats,
    /// Bytes of the blocks of images read by range (part of the bound).
    counted: Arc<Counted>,
}

impl HttpSource {
    /// Prepares the folder (removing what crashed runs left) and the client.
    pub fn new(cfg: &HttpSourceCfg) -> std::result::Result<HttpSource, String> {
        let prefix =
            reqwest::Url::parse(&cfg.url_prefix).map_err(|e| format!("source.http.url_prefix: not a URL ({e})"))?;
        let (dir, run_lock) = prepare_folder(&cfg.cache_dir, "source.http.cache_dir")?;
        // rustls needs a process-wide crypto provider; another component may
        // have installed one already, which is fine.
        let _ = rustls::crypto::ring::default_provider().install_default();
        let allowed = prefix.clone();
        let other_hosts = cfg.follow_redirects_to_other_hosts;
        let redirects = reqwest::redirect::Policy::custom(move |attempt| {
            if attempt.previous().len() >= MAX_REDIRECTS {
                attempt.error("too many redirects")
            } else if other_hosts || same_origin(attempt.url(), &allowed) {
                attempt.follow()
            } else {
                // The 3xx answer is handed back and refused in `exchange`.
                attempt.stop()
            }
        });
        let client = reqwest::Client::builder()
            .connect_timeout(Duration::from_secs(cfg.connect_timeout))
            .read_timeout(Duration::from_secs(cfg.read_timeout))
            .timeout(Duration::from_secs(cfg.timeout))
            .redirect(redirects)
            .user_agent(concat!("tessera/", env!("CARGO_PKG_VERSION")))
            .tls_danger_accept_invalid_certs(cfg.allow_insecure_tls)
            .no_proxy()
            .build()
            .map_err(|e| format!("HTTP client: {e}"))?;
        Ok(HttpSource {
            cfg: cfg.clone(),
            client,
            prefix,
            dir,
            _run_lock: run_lock,
            state: Mutex::new(State::default()),
            flights: Arc::new(SingleFlight::default()),
            fetches: Semaphore::new(cfg.max_concurrent_fetches.clamp(1, Semaphore::MAX_PERMITS)),
            clock: AtomicU64::new(0),
            seq: AtomicU64::new(0),
            stats: Stats::default(),
            counted: Arc::new(Counted::default()),
        })
    }

    /// Bytes kept in the folder now (finished images and the blocks of
    /// images read by range).
    pub fn stored_bytes(&self) -> u64 {
        self.lock().bytes + self.counted.bytes.load(Ordering::Relaxed)
    }

    /// Bytes of blocks kept in memory now (the folder refused them).
    pub fn memory_bytes(&self) -> u64 {
        self.counted.memory.load(Ordering::Relaxed)
    }

    /// Bytes received by downloads under way.
    pub fn inflight_bytes(&self) -> u64 {
        self.lock().inflight
    }

    /// This run's subfolder of `cache_dir` (for logs and tests; never shown
    /// to a client).
    pub fn folder(&self) -> &Path {
        &self.dir
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// The origin URL of an identifier. Identifiers that could climb out of
    /// the prefix's path (`..` segments), or whose URL would leave the
    /// prefix's scheme, host, port or user (a prefix without a trailing `/`),
    /// are refused.
    pub fn url_for(&self, id: &str) -> Result<String> {
        if !is_safe_identifier(id) || id.split('/').any(|s| s == ".." || s == ".") {
            return Err(Error::not_found());
        }
        let url = format!("{}{}{}", self.cfg.url_prefix, utf8_percent_encode(id, URL_ESCAPE), self.cfg.url_suffix);
        let parsed = reqwest::Url::parse(&url).map_err(|_| Error::not_found())?;
        if !same_origin(&parsed, &self.prefix)
            || parsed.username() != self.prefix.username()
            || parsed.password() != self.prefix.password()
        {
            return Err(Error::not_found().with_detail("identifier would leave url_prefix's host"));
        }
        Ok(url)
    }

    /// Finds the image of an identifier for a request with these headers:
    /// from the folder if fresh (and, if restricted, admitted for these
    /// credentials), else after asking the origin.
    pub async fn locate(self: &Arc<Self>, id: &str, headers: &HeaderMap) -> Result<Located> {
        let url = self.url_for(id)?;
        let creds = Credentials::of(headers, &self.cfg);
        self.trim();
        let now = Instant::now();
        let mut current = self.entry(&url);
        if current.as_ref().is_some_and(|e| e.remote.as_ref().is_some_and(|r| r.changed())) {
            // That version was found changed: never revalidate it (a 304
            // would keep it); open the image afresh.
            self.forget(&url);
            current = None;
        }
        if let Some(e) = &current {
            let fresh = self.is_fresh(e, now);
            match e.anonymous_refusal {
                None if fresh => return Ok(self.located(&url, e)),
                Some(status) if fresh && creds.is_empty() => return Err(refused(status)),
                Some(_) if fresh && self.is_admitted(&url, &creds, now) => return Ok(self.located(&url, e)),
                // Restricted (fresh or not) and credentials to check: one
                // conditional request with them both admits and revalidates.
                Some(_) if !creds.is_empty() => {
                    let e = self.sync(&url, creds, current.clone()).await?;
                    return Ok(self.located(&url, &e));
                }
                _ => {}
            }
        }
        // Unknown or stale: ask anonymously first, so that a public image is
        // cached once for everyone.
        match self.sync(&url, Credentials::default(), current).await {
            Ok(e) => Ok(self.located(&url, &e)),
            Err(err) if is_refusal(err.status()) && !creds.is_empty() => {
                let current = self.entry(&url);
                let e = self.sync(&url, creds, current).await?;
                Ok(self.located(&url, &e))
            }
            Err(err) => Err(err),
        }
    }

    /// The image of an identifier if it is in the folder (no network).
    pub fn peek(&self, id: &str) -> Option<Located> {
        let url = self.url_for(id).ok()?;
        let e = self.entry(&url)?;
        Some(self.located(&url, &e))
    }

    /// Whether `l` may be answered without asking the origin: its entry is
    /// still this version, fresh, and public.
    pub fn is_current(&self, url: &str, version: SourceVersion) -> bool {
        match self.entry(url) {
            Some(e) => e.version == version && e.anonymous_refusal.is_none() && self.is_fresh(&e, Instant::now()),
            None => false,
        }
    }

    fn entry(&self, url: &str) -> Option<Arc<Entry>> {
        let e = self.lock().entries.get(url).cloned()?;
        e.last_used.store(self.tick(), Ordering::Relaxed);
        Some(e)
    }

    /// The LRU clock's next value.
    fn tick(&self) -> u64 {
        self.clock.fetch_add(1, Ordering::Relaxed) + 1
    }

    /// Fresh: confirmed by the origin within `revalidate_after`, and (read by
    /// range) not found changed since.
    fn is_fresh(&self, e: &Entry, now: Instant) -> bool {
        now.saturating_duration_since(e.validated) < Duration::from_secs(self.cfg.revalidate_after)
            && !e.remote.as_ref().is_some_and(|r| r.changed())
    }

    fn is_admitted(&self, url: &str, creds: &Credentials, now: Instant) -> bool {
        if creds.is_empty() || self.cfg.auth_ttl == 0 {
            return false;
        }
        self.lock().admitted.is_admitted(&(url.to_string(), creds.key()), now)
    }

    fn admit(&self, url: &str, creds: &Credentials) {
        if creds.is_empty() || self.cfg.auth_ttl == 0 {
            return;
        }
        let now = Instant::now();
        let until = now + Duration::from_secs(self.cfg.auth_ttl);
        self.lock().admitted.insert((url.to_string(), creds.key()), until, now);
    }

    fn revoke(&self, url: &str, creds: &Credentials) {
        self.lock().admitted.remove(&(url.to_string(), creds.key()));
    }

    fn located(&self, url: &str, e: &Entry) -> Located {
        Located {
            path: e.path.clone(),
            version: e.version,
            modified: e.modified,
            origin: Origin::Http { url: url.into(), restricted: e.anonymous_refusal.is_some() },
            remote: e.remote.clone(),
        }
    }

    /// One exchange with the origin per (URL, credentials) at a time.
    async fn sync(self: &Arc<Self>, url: &str, creds: Credentials, prev: Option<Arc<Entry>>) -> Result<Arc<Entry>> {
        let me = self.clone();
        let key = (url.to_string(), creds.key());
        let url = url.to_string();
        let (res, _) = self.flights.run(key, move || async move { me.exchange(&url, &creds, prev).await }).await;
        res.unwrap_or_else(|| Err(Error::internal("source fetch task failed")))
    }

    /// Asks the origin (conditionally, if `prev`) and records the answer.
    /// Holds one of the `max_concurrent_fetches` slots throughout.
    async fn exchange(&self, url: &str, creds: &Credentials, prev: Option<Arc<Entry>>) -> Result<Arc<Entry>> {
        let wait = Duration::from_secs(self.cfg.timeout);
        let _slot = match tokio::time::timeout(wait, self.fetches.acquire()).await {
            Ok(Ok(slot)) => slot,
            _ => {
                self.stats.errors.fetch_add(1, Ordering::Relaxed);
                return Err(Error::overloaded(BUSY_RETRY_AFTER).with_detail("no free download slot"));
            }
        };
        // A public image (asked anonymously) is opened by range when the
        // configuration allows; one already read by range is revalidated so.
        let by_range = self.cfg.range_reads && creds.is_empty() && prev.as_ref().is_none_or(|p| p.remote.is_some());
        let range = by_range.then(|| format!("bytes=0-{}", ranged::open_read_bytes(self.cfg.range_block_bytes) - 1));
        let resp = match self.send(url, creds, prev.as_deref(), range.as_deref()).await {
            Ok(r) => r,
            Err(e) => {
                self.stats.errors.fetch_add(1, Ordering::Relaxed);
                return Err(e);
            }
        };
        let status = resp.status();
        let now = Instant::now();
        match (status, prev) {
            (StatusCode::NOT_MODIFIED, Some(p)) => {
                self.stats.not_modified.fetch_add(1, Ordering::Relaxed);
                let mut e = (*p).clone();
                e.validated = now;
                if creds.is_empty() {
                    e.anonymous_refusal = None;
                }
                self.admit(url, creds);
                Ok(self.put(url, e, None))
            }
            (StatusCode::OK, prev) => {
                // An anonymous 200 makes the image public; a 200 for
                // credentials keeps what is known of anonymous access.
                let refusal = if creds.is_empty() {
                    None
                } else {
                    prev.as_ref().and_then(|p| p.anonymous_refusal).or(Some(StatusCode::UNAUTHORIZED))
                };
                let e = match self.download(url, resp, refusal).await {
                    Ok(e) => e,
                    Err(e) => {
                        self.stats.errors.fetch_add(1, Ordering::Relaxed);
                        return Err(e);
                    }
                };
                self.admit(url, creds);
                Ok(e)
            }
            (StatusCode::PARTIAL_CONTENT, _) if range.is_some() => {
                let opened = match self.open_ranged(url, resp).await {
                    Ok(Some(e)) => Ok(e),
                    // Not worth reading by range (a JPEG, no validator, an
                    // odd answer): downloaded whole, as before.
                    Ok(None) => match self.send(url, creds, None, None).await {
                        Ok(r) if r.status() == StatusCode::OK => self.download(url, r, None).await,
                        Ok(r) => Err(bad_gateway(format!("origin answered {} after a range", r.status()))),
                        Err(e) => Err(e),
                    },
                    Err(e) => Err(e),
                };
                if opened.is_err() {
                    self.stats.errors.fetch_add(1, Ordering::Relaxed);
                }
                opened
            }
            (StatusCode::UNAUTHORIZED | StatusCode::FORBIDDEN, prev) => {
                self.stats.refusals.fetch_add(1, Ordering::Relaxed);
                if creds.is_empty() && prev.as_ref().is_some_and(|p| p.remote.is_some()) {
                    // Range reads are anonymous: an image that became
                    // restricted is fetched whole with credentials instead.
                    self.forget(url);
                } else if creds.is_empty() {
                    if let Some(p) = prev {
                        let mut e = (*p).clone();
                        e.validated = now;
                        e.anonymous_refusal = Some(status);
                        self.put(url, e, None);
                    }
                } else {
                    self.revoke(url, creds);
                }
                Err(refused(status))
            }
            (StatusCode::NOT_FOUND | StatusCode::GONE, _) => {
                self.forget(url);
                Err(Error::not_found())
            }
            (s, _) if s.is_redirection() => {
                // The redirect policy stopped here: another origin.
                self.stats.errors.fetch_add(1, Ordering::Relaxed);
                let to = resp.headers().get(header::LOCATION).and_then(|v| v.to_str().ok()).unwrap_or("");
                Err(Error::with_status(StatusCode::BAD_GATEWAY, "The image's origin redirected to another host")
                    .with_detail(format!("origin answered {s} to {to}; follow_redirects_to_other_hosts is off")))
            }
            (s, _) => {
                self.stats.errors.fetch_add(1, Ordering::Relaxed);
                Err(bad_gateway(format!("origin answered {s}")))
            }
        }
    }

    /// Sends a GET, retrying 5xx answers and failed connections with
    /// exponential back-off. A timeout is not retried (the client has waited
    /// long enough), nor a refused redirect. After the last retry a 5xx
    /// answer is returned as is.
    async fn send(
        &self,
        url: &str,
        creds: &Credentials,
        prev: Option<&Entry>,
        range: Option<&str>,
    ) -> Result<reqwest::Response> {
        let mut attempt = 0u32;
        loop {
            let mut rb = self.client.get(url);
            if let Some(r) = range {
                rb = rb.header(header::RANGE, r);
            }
            if let Some(p) = prev {
                if let Some(t) = &p.etag {
                    rb = rb.header(header::IF_NONE_MATCH, t.as_str());
                }
                if let Some(lm) = &p.last_modified {
                    rb = rb.header(header::IF_MODIFIED_SINCE, lm.as_str());
                }
            }
            if let Some(a) = &creds.authorization {
                rb = rb.header(header::AUTHORIZATION, a.clone());
            }
            if let Some(c) = &creds.cookie {
                rb = rb.header(header::COOKIE, c.clone());
            }
            let retry = match rb.send().await {
                Ok(r) if r.status().is_server_error() && attempt < self.cfg.retries => {
                    tracing::debug!(status = r.status().as_u16(), attempt, "origin error, retrying");
                    true
                }
                Ok(r) => return Ok(r),
                Err(e) if e.is_timeout() => return Err(timed_out(e)),
                Err(e) if e.is_redirect() => return Err(bad_gateway(e.to_string())),
                Err(e) if attempt < self.cfg.retries => {
                    tracing::debug!(error = %e, attempt, "origin unreachable, retrying");
                    true
                }
                Err(e) => return Err(bad_gateway(e.to_string())),
            };
            if retry {
                let backoff = self.cfg.retry_backoff_ms.saturating_mul(1 << attempt.min(10));
                tokio::time::sleep(Duration::from_millis(backoff)).await;
                attempt += 1;
            }
        }
    }

    /// Streams a 200 answer into a new file of the folder and records it.
    /// The first [`SNIFF_LEN`] bytes decide whether it is an image before
    /// any file is made; every chunk is counted against the size cap and the
    /// folder's bound as it arrives.
    async fn download(
        &self,
        url: &str,
        mut resp: reqwest::Response,
        anonymous_refusal: Option<StatusCode>,
    ) -> Result<Arc<Entry>> {
        let max = self.cfg.max_source_bytes;
        if resp.content_length().is_some_and(|n| n > max) {
            return Err(too_large());
        }
        let text = |h: header::HeaderName| resp.headers().get(h).and_then(|v| v.to_str().ok()).map(str::to_string);
        let etag = text(header::ETAG);
        let last_modified = text(header::LAST_MODIFIED);
        let n = self.seq.fetch_add(1, Ordering::Relaxed);
        let path = self.dir.join(format!("{:016x}-{n}.src", fnv1a(&[url.as_bytes()])));
        let mut part = PartFile { path: path.with_extension("part"), armed: false };
        let mut held = Reservation { src: self, bytes: 0 };
        let mut head: Vec<u8> = Vec::with_capacity(SNIFF_LEN);
        let mut pending: Vec<Bytes> = Vec::new();
        let mut file: Option<tokio::fs::File> = None;
        let mut total = 0u64;
        while let Some(chunk) = resp.chunk().await.map_err(transfer_error)? {
            total += chunk.len() as u64;
            if total > max {
                return Err(too_large());
            }
            self.reserve(&mut held, chunk.len() as u64)?;
            match file.as_mut() {
                Some(f) => f.write_all(&chunk).await.map_err(folder_error)?,
                None => {
                    let take = (SNIFF_LEN - head.len()).min(chunk.len());
                    head.extend_from_slice(&chunk[..take]);
                    pending.push(chunk);
                    if head.len() >= SNIFF_LEN {
                        file = Some(start_file(&mut part, &head, &mut pending).await?);
                    }
                }
            }
        }
        let mut f = match file {
            Some(f) => f,
            None => start_file(&mut part, &head, &mut pending).await?,
        };
        f.flush().await.map_err(folder_error)?;
        drop(f);
        // The file is complete before it gets its name: a memory map never
        // sees a file that is still being written.
        tokio::fs::rename(&part.path, &path).await.map_err(folder_error)?;
        part.armed = false;
        self.stats.downloads.fetch_add(1, Ordering::Relaxed);
        self.stats.bytes.fetch_add(total, Ordering::Relaxed);
        // The origin's validator names the content; without one, each fetch
        // is a new version (nothing else can tell two contents apart).
        let validator = etag.clone().or_else(|| last_modified.clone()).unwrap_or_else(|| format!("fetch-{n}"));
        let version = SourceVersion { len: total, mtime_ns: fnv1a(&[validator.as_bytes()]) as u128 };
        let modified =
            last_modified.as_deref().and_then(|lm| httpdate::parse_http_date(lm).ok()).unwrap_or_else(SystemTime::now);
        let e = Entry {
            path,
            len: total,
            version,
            modified,
            etag,
            last_modified,
            validated: Instant::now(),
            anonymous_refusal,
            last_used: Arc::new(AtomicU64::new(self.tick())),
            remote: None,
        };
        Ok(self.put(url, e, Some(&mut held)))
    }

    /// Opens a public image by range from the origin's 206 answer to its
    /// first block: a sparse file of its length holding that block, read
    /// further as the codecs ask ([`ranged`]). `None` when it is better
    /// downloaded whole: a JPEG or PNG (no random access), an origin that
    /// gave no strong validator for `If-Range`, or an answer that does not
    /// start at byte 0 or gives no length.
    async fn open_ranged(&self, url: &str, resp: reqwest::Response) -> Result<Option<Arc<Entry>>> {
        let text = |h: header::HeaderName| resp.headers().get(h).and_then(|v| v.to_str().ok()).map(str::to_string);
        let etag = text(header::ETAG);
        let last_modified = text(header::LAST_MODIFIED);
        let Some((0, last, total)) = text(header::CONTENT_RANGE).as_deref().and_then(ranged::parse_content_range)
        else {
            return Ok(None);
        };
        if total > self.cfg.max_source_bytes {
            return Err(too_large());
        }
        let Some(validator) = ranged::usable_validator(etag.as_deref(), last_modified.as_deref()) else {
            return Ok(None);
        };
        if last >= ranged::open_read_bytes(self.cfg.range_block_bytes).saturating_mul(4) {
            // Far more than asked: not an origin to read by range.
            return Ok(None);
        }
        let head = resp.bytes().await.map_err(transfer_error)?;
        if head.len() as u64 != last + 1 {
            return Err(bad_gateway(format!("short first range: {} of {} bytes", head.len(), last + 1)));
        }
        check_image(&head[..head.len().min(SNIFF_LEN)])?;
        let format = crate::codec::sniff(&head);
        let complete = head.len() as u64 == total;
        let random_access = matches!(format, Some(crate::codec::SourceFormat::Tiff | crate::codec::SourceFormat::Jp2));
        if !complete && !random_access {
            return Ok(None);
        }
        let n = self.seq.fetch_add(1, Ordering::Relaxed);
        let path = self.dir.join(format!("{:016x}-{n}.rng", fnv1a(&[url.as_bytes()])));
        let fetcher = Fetcher {
            runtime: tokio::runtime::Handle::current(),
            timeout: Duration::from_secs(self.cfg.timeout),
            retries: self.cfg.retries,
            retry_backoff_ms: self.cfg.retry_backoff_ms,
            stats: self.stats.range.clone(),
        };
        let origin =
            HttpRange { client: self.client.clone(), url: url.to_string(), validator: validator.clone(), len: total };
        let remote = Remote::create(
            Box::new(origin),
            total,
            self.cfg.range_block_bytes,
            self.cfg.range_read_ahead_bytes,
            path.clone(),
            &head,
            fetcher,
            self.counted.clone(),
        )
        .map_err(folder_error)?;
        let remote = Arc::new(remote);
        if !complete && format == Some(crate::codec::SourceFormat::Tiff) && self.cfg.range_tiff_tail_bytes > 0 {
            // A pyramidal TIFF written level by level keeps the directories
            // of its small levels at the end: fetch the tail now, beside
            // the first directory read.
            remote.prefetch((total.saturating_sub(self.cfg.range_tiff_tail_bytes), total));
        }
        if complete {
            // The whole image came in its first range: a download.
            self.stats.downloads.fetch_add(1, Ordering::Relaxed);
            self.stats.bytes.fetch_add(total, Ordering::Relaxed);
        } else {
            self.stats.ranged_opens.fetch_add(1, Ordering::Relaxed);
            self.stats.range.bytes.fetch_add(head.len() as u64, Ordering::Relaxed);
            self.stats.range.requests.fetch_add(1, Ordering::Relaxed);
        }
        let version = SourceVersion { len: total, mtime_ns: fnv1a(&[validator.as_bytes()]) as u128 };
        let modified =
            last_modified.as_deref().and_then(|lm| httpdate::parse_http_date(lm).ok()).unwrap_or_else(SystemTime::now);
        let e = Entry {
            path,
            len: 0,
            version,
            modified,
            etag,
            last_modified,
            validated: Instant::now(),
            anonymous_refusal: None,
            last_used: Arc::new(AtomicU64::new(self.tick())),
            remote: Some(remote),
        };
        Ok(Some(self.put(url, e, None)))
    }

    /// Evicts least recently used images while the blocks read by range
    /// have grown the folder past its bound.
    fn trim(&self) {
        if self.counted.bytes.load(Ordering::Relaxed) == 0 && self.counted.memory.load(Ordering::Relaxed) == 0 {
            return;
        }
        let mut doomed = Vec::new();
        {
            let mut s = self.lock();
            self.evict_over_bound(&mut s, None, &mut doomed);
        }
        for p in doomed {
            let _ = std::fs::remove_file(p);
        }
    }

    /// Counts `n` more bytes of a download under way against the folder's
    /// bound, evicting least recently used images to make room. Fails (503)
    /// if the downloads under way alone would pass the bound.
    fn reserve(&self, held: &mut Reservation<'_>, n: u64) -> Result<()> {
        let mut doomed = Vec::new();
        let fits = {
            let mut s = self.lock();
            s.inflight += n;
            held.bytes += n;
            self.evict_over_bound(&mut s, None, &mut doomed);
            s.bytes + s.inflight + self.counted.bytes.load(Ordering::Relaxed) <= self.cfg.cache_max_bytes
        };
        for p in doomed {
            let _ = std::fs::remove_file(p);
        }
        if fits {
            Ok(())
        } else {
            Err(Error::overloaded(BUSY_RETRY_AFTER).with_detail("source folder full of downloads under way"))
        }
    }

    /// Evicts least recently used entries (never `keep`) while the folder's
    /// files and the downloads under way pass the bound, and while the
    /// blocks kept in memory pass theirs.
    fn evict_over_bound(&self, s: &mut State, keep: Option<&str>, doomed: &mut Vec<PathBuf>) {
        while s.bytes + s.inflight + self.counted.bytes.load(Ordering::Relaxed) > self.cfg.cache_max_bytes {
            let victim = s
                .entries
                .iter()
                .filter(|(u, _)| Some(u.as_str()) != keep)
                .min_by_key(|(_, v)| v.last_used.load(Ordering::Relaxed))
                .map(|(u, _)| u.clone());
            let Some(v) = victim else { break };
            if let Some(old) = s.entries.remove(&v) {
                s.bytes = s.bytes.saturating_sub(old.len);
                uncount(&old);
                doomed.push(old.path.clone());
            }
        }
        // Blocks kept in memory (the folder refused them): their own bound.
        while self.counted.memory.load(Ordering::Relaxed) > self.cfg.range_memory_max_bytes {
            let victim = s
                .entries
                .iter()
                .filter(|(u, v)| Some(u.as_str()) != keep && v.remote.as_ref().is_some_and(|r| r.in_memory()))
                .min_by_key(|(_, v)| v.last_used.load(Ordering::Relaxed))
                .map(|(u, _)| u.clone());
            let Some(v) = victim else { break };
            if let Some(old) = s.entries.remove(&v) {
                uncount(&old);
            }
        }
    }

    /// Records an entry, deletes the file it replaces, and evicts the least
    /// recently used images beyond the byte bound. The bytes `held` for its
    /// download become the entry's in the same step. A deleted file stays
    /// readable through the memory maps that requests in flight hold.
    fn put(&self, url: &str, e: Entry, held: Option<&mut Reservation<'_>>) -> Arc<Entry> {
        e.last_used.store(self.tick(), Ordering::Relaxed);
        let e = Arc::new(e);
        let mut doomed = Vec::new();
        {
            let mut s = self.lock();
            if let Some(h) = held {
                s.inflight = s.inflight.saturating_sub(h.bytes);
                h.bytes = 0;
            }
            match s.entries.insert(url.to_string(), e.clone()) {
                Some(old) if old.path == e.path => {}
                Some(old) => {
                    s.bytes = s.bytes.saturating_sub(old.len) + e.len;
                    uncount(&old);
                    doomed.push(old.path.clone());
                }
                None => s.bytes += e.len,
            }
            self.evict_over_bound(&mut s, Some(url), &mut doomed);
        }
        for p in doomed {
            let _ = std::fs::remove_file(p);
        }
        e
    }

    /// Forgets an image the origin no longer has.
    fn forget(&self, url: &str) {
        let old = {
            let mut s = self.lock();
            let old = s.entries.remove(url);
            if let Some(o) = &old {
                s.bytes = s.bytes.saturating_sub(o.len);
                uncount(o);
            }
            old
        };
        if let Some(o) = old {
            let _ = std::fs::remove_file(&o.path);
        }
    }

    /// Forgets every image (admin purge); the files go too.
    pub fn purge_all(&self) {
        let entries: Vec<_> = {
            let mut s = self.lock();
            s.bytes = 0;
            s.admitted.clear();
            s.entries.drain().collect()
        };
        for (_, e) in entries {
            uncount(&e);
            let _ = std::fs::remove_file(&e.path);
        }
    }

    /// Forgets one identifier's image.
    pub fn purge(&self, id: &str) {
        if let Ok(url) = self.url_for(id) {
            self.forget(&url);
        }
    }
}

impl Drop for HttpSource {
    fn drop(&mut self) {
        clear_run(&self.dir);
    }
}

/// An entry leaving the folder: the blocks of its remote stop counting.
fn uncount(e: &Entry) {
    if let Some(r) = &e.remote {
        r.uncount();
    }
}

/// Bytes of a download under way, counted in [`State::inflight`] until they
/// become an entry's (in [`HttpSource::put`]) or the download ends.
struct Reservation<'a> {
    src: &'a HttpSource,
    bytes: u64,
}

impl Drop for Reservation<'_> {
    fn drop(&mut self) {
        if self.bytes > 0 {
            let mut s = self.src.lock();
            s.inflight = s.inflight.saturating_sub(self.bytes);
        }
    }
}

/// A download's partial file, deleted unless it was renamed into place (on
/// errors and when the download's task is dropped).
struct PartFile {
    path: PathBuf,
    armed: bool,
}

impl Drop for PartFile {
    fn drop(&mut self) {
        if self.armed {
            let _ = std::fs::remove_file(&self.path);
        }
    }
}

/// Checks the first bytes of a download, then creates its partial file and
/// writes the bytes held so far.
async fn start_file(part: &mut PartFile, head: &[u8], pending: &mut Vec<Bytes>) -> Result<tokio::fs::File> {
    check_image(head)?;
    let mut f =
        tokio::fs::OpenOptions::new().write(true).create_new(true).open(&part.path).await.map_err(folder_error)?;
    part.armed = true;
    for c in pending.drain(..) {
        f.write_all(&c).await.map_err(folder_error)?;
    }
    Ok(f)
}

/// Whether the first bytes of a download are an image this server decodes.
fn check_image(head: &[u8]) -> Result<()> {
    if crate::codec::sniff(head).is_some() {
        return Ok(());
    }
    let detail = format!("origin sent a file starting {:02x?}", &head[..head.len().min(8)]);
    let gif = head.starts_with(b"GIF87a") || head.starts_with(b"GIF89a");
    let webp = head.len() >= 12 && head.starts_with(b"RIFF") && &head[8..12] == b"WEBP";
    if gif || webp {
        Err(Error::not_implemented("The source image format is not supported").with_detail(detail))
    } else {
        Err(Error::with_status(StatusCode::BAD_GATEWAY, "The file at the image's origin is not an image")
            .with_detail(detail))
    }
}

/// Whether two URLs have the same scheme, host and port.
fn same_origin(a: &reqwest::Url, b: &reqwest::Url) -> bool {
    a.scheme() == b.scheme() && a.host_str() == b.host_str() && a.port_or_known_default() == b.port_or_known_default()
}

/// Opens `cache_dir` (or the default folder), removes the run subfolders of
/// servers that are no longer running, and makes and locks this run's.
/// Makes (or checks) the folder `configured` (the default one when empty)
/// and this run's locked subfolder of it; `what` names the setting in errors.
pub(super) fn prepare_folder(configured: &Path, what: &str) -> std::result::Result<(PathBuf, File), String> {
    let default = configured.as_os_str().is_empty();
    let root = if default { std::env::temp_dir().join(DEFAULT_FOLDER) } else { configured.to_path_buf() };
    let fail = |e: std::io::Error| format!("{what} {}: {e}", root.display());
    std::fs::create_dir_all(&root).map_err(fail)?;
    if default {
        // The system temp directory is shared: the default folder must be
        // a real folder of this user's, and private.
        let meta = std::fs::symlink_metadata(&root).map_err(fail)?;
        if !meta.is_dir() {
            return Err(format!("{what} {}: not a folder; set {what}", root.display()));
        }
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            // Only a folder's owner may change its mode.
            std::fs::set_permissions(&root, std::fs::Permissions::from_mode(0o700))
                .map_err(|e| format!("{what} {}: {e} (another user's folder?); set {what}", root.display()))?;
        }
    }
    // One server at a time prepares its subfolder: the scan below must not
    // take a subfolder another server is still locking for stale.
    let guard =
        OpenOptions::new().create(true).truncate(false).write(true).open(root.join(FOLDER_LOCK)).map_err(fail)?;
    lock_wait(&guard).map_err(fail)?;
    remove_stale_runs(&root);
    let mut last = None;
    for _ in 0..16 {
        let dir = root.join(format!("{RUN_PREFIX}{:016x}", rand::random::<u64>()));
        match std::fs::create_dir(&dir) {
            Ok(()) => {
                let lock = OpenOptions::new().create_new(true).write(true).open(dir.join(RUN_LOCK)).map_err(fail)?;
                lock_wait(&lock).map_err(|e| format!("{what} {}: {e}", dir.display()))?;
                return Ok((dir, lock));
            }
            Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => last = Some(e),
            Err(e) => return Err(fail(e)),
        }
    }
    Err(fail(last.unwrap_or_else(|| std::io::Error::other("no free subfolder name"))))
}

/// Removes the run subfolders of `root` whose lock no process holds.
fn remove_stale_runs(root: &Path) {
    let Ok(rd) = std::fs::read_dir(root) else { return };
    for e in rd.flatten() {
        let is_run = e.file_name().to_str().is_some_and(|n| n.starts_with(RUN_PREFIX));
        if !is_run || !e.file_type().is_ok_and(|t| t.is_dir()) {
            continue;
        }
        let dir = e.path();
        let Ok(lock) = OpenOptions::new().write(true).open(dir.join(RUN_LOCK)) else { continue };
        if try_lock(&lock).unwrap_or(false) {
            tracing::info!(folder = %dir.display(), "removing an earlier run's source folder");
            clear_run(&dir);
        }
    }
}

/// Takes an exclusive advisory lock (`flock`) on a file, waiting for it. The
/// kernel drops it when the process ends, however it ends.
#[cfg(unix)]
fn lock_wait(f: &File) -> std::io::Result<()> {
    flock(f, libc::LOCK_EX).map(|_| ())
}

/// Takes an exclusive advisory lock on a file if no one holds it: false if
/// another open file (this process's or another's) holds it.
#[cfg(unix)]
fn try_lock(f: &File) -> std::io::Result<bool> {
    flock(f, libc::LOCK_EX | libc::LOCK_NB)
}

#[cfg(unix)]
#[allow(unsafe_code)] // One system call on a descriptor we own.
fn flock(f: &File, op: libc::c_int) -> std::io::Result<bool> {
    use std::os::fd::AsRawFd;
    loop {
        // SAFETY: `flock` reads no memory; the descriptor is `f`'s, open
        // for the whole call.
        if unsafe { libc::flock(f.as_raw_fd(), op) } == 0 {
            return Ok(true);
        }
        let e = std::io::Error::last_os_error();
        match e.raw_os_error() {
            Some(libc::EINTR) => continue,
            Some(libc::EWOULDBLOCK) if op & libc::LOCK_NB != 0 => return Ok(false),
            _ => return Err(e),
        }
    }
}

/// Without `flock`, no run subfolder can be told stale: none is removed.
#[cfg(not(unix))]
fn lock_wait(_f: &File) -> std::io::Result<()> {
    Ok(())
}

#[cfg(not(unix))]
fn try_lock(_f: &File) -> std::io::Result<bool> {
    Ok(false)
}

/// Removes the files this module writes in a run subfolder (`*.src`,
/// `*.part`, its lock), then the subfolder if nothing else is left in it.
/// Removes this module's files from a run subfolder, then the subfolder.
pub(super) fn clear_run(dir: &Path) {
    if let Ok(rd) = std::fs::read_dir(dir) {
        for e in rd.flatten() {
            let p = e.path();
            if matches!(p.extension().and_then(|x| x.to_str()), Some("src" | "part" | "rng")) {
                let _ = std::fs::remove_file(p);
            }
        }
    }
    let _ = std::fs::remove_file(dir.join(RUN_LOCK));
    let _ = std::fs::remove_dir(dir);
}

fn is_refusal(s: StatusCode) -> bool {
    s == StatusCode::UNAUTHORIZED || s == StatusCode::FORBIDDEN
}

fn refused(status: StatusCode) -> Error {
    if status == StatusCode::UNAUTHORIZED {
        Error::with_status(status, "The image's origin requires authentication")
    } else {
        Error::with_status(StatusCode::FORBIDDEN, "The image's origin refused access")
    }
}

fn bad_gateway(detail: String) -> Error {
    Error::with_status(StatusCode::BAD_GATEWAY, "The image's origin could not be reached or failed").with_detail(detail)
}

fn timed_out(e: reqwest::Error) -> Error {
    Error::with_status(StatusCode::GATEWAY_TIMEOUT, "The image's origin did not answer in time")
        .with_detail(e.to_string())
}

fn too_large() -> Error {
    Error::with_status(StatusCode::BAD_GATEWAY, "The image at the origin is larger than this server accepts")
}

fn folder_error(e: std::io::Error) -> Error {
    Error::internal(format!("source folder: {e}"))
}

fn transfer_error(e: reqwest::Error) -> Error {
    if e.is_timeout() {
        timed_out(e)
    } else {
        bad_gateway(format!("transfer: {e}"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cfg() -> HttpSourceCfg {
        let c = crate::config::Config::defaults().unwrap();
        let mut h = c.source.http;
        h.url_prefix = "http://127.0.0.1:9/bitstreams/".into();
        h.url_suffix = "/content".into();
        h
    }

    fn source(prefix: &str, dir: &Path) -> HttpSource {
        let mut c = cfg();
        c.url_prefix = prefix.into();
        c.cache_dir = dir.to_path_buf();
        HttpSource::new(&c).unwrap()
    }

    #[test]
    fn identifiers_map_to_prefix_identifier_suffix_with_escaping() {
        let d = tempfile::tempdir().unwrap();
        let mut c = cfg();
        c.cache_dir = d.path().to_path_buf();
        let s = HttpSource::new(&c).unwrap();
        assert_eq!(s.url_for("abc-1").unwrap(), "http://127.0.0.1:9/bitstreams/abc-1/content");
        assert_eq!(s.url_for("a b?c#d").unwrap(), "http://127.0.0.1:9/bitstreams/a%20b%3Fc%23d/content");
        assert_eq!(s.url_for("dir/x.jp2").unwrap(), "http://127.0.0.1:9/bitstreams/dir/x.jp2/content");
    }

    #[test]
    fn identifiers_that_climb_out_of_the_prefix_are_404() {
        let d = tempfile::tempdir().unwrap();
        let mut c = cfg();
        c.cache_dir = d.path().to_path_buf();
        let s = HttpSource::new(&c).unwrap();
        for bad in ["../admin", "a/../../x", "./a", "a\0", "", "/etc/passwd", "a\\b"] {
            assert_eq!(s.url_for(bad).unwrap_err().status(), StatusCode::NOT_FOUND, "{bad:?}");
        }
    }

    #[test]
    fn identifiers_that_would_change_the_host_of_a_slashless_prefix_are_404() {
        let d = tempfile::tempdir().unwrap();
        let s = source("https://dspace.example", d.path());
        assert_eq!(s.url_for(".attacker.example/x").unwrap_err().status(), StatusCode::NOT_FOUND);
        assert_eq!(s.url_for("-evil.example").unwrap_err().status(), StatusCode::NOT_FOUND);
        assert_eq!(s.url_for("/x").unwrap_err().status(), StatusCode::NOT_FOUND);
        // An empty port in the prefix must not take the identifier's digits.
        let s = source("http://127.0.0.1:", d.path());
        assert_eq!(s.url_for("8080/x").unwrap_err().status(), StatusCode::NOT_FOUND);
        // A path-level join is the prefix's business; a user cannot be made up
        // ('@' is escaped, the host stays).
        let s = source("https://dspace.example/bits", d.path());
        assert_eq!(s.url_for("tream/x").unwrap(), "https://dspace.example/bitstream/x/content");
        assert_eq!(s.url_for("x@evil.example").unwrap(), "https://dspace.example/bitsx%40evil.example/content");
    }

    #[test]
    fn only_the_configured_cookies_are_forwarded() {
        let mut h = HeaderMap::new();
        h.append(header::COOKIE, HeaderValue::from_static("a=1; session=s3cret; b=2"));
        h.append(header::COOKIE, HeaderValue::from_static("other=x"));
        assert_eq!(forwarded_cookies(&h, &["session".into()]).as_deref(), Some("session=s3cret"));
        assert_eq!(forwarded_cookies(&h, &["*".into()]).as_deref(), Some("a=1; session=s3cret; b=2; other=x"));
        assert_eq!(forwarded_cookies(&h, &[]), None);
        assert_eq!(forwarded_cookies(&h, &["none".into()]), None);
    }

    #[test]
    fn credentials_follow_the_forwarding_settings() {
        let mut h = HeaderMap::new();
        h.insert(header::AUTHORIZATION, HeaderValue::from_static("Bearer t"));
        let mut c = cfg();
        assert!(!Credentials::of(&h, &c).is_empty());
        c.forward_authorization = false;
        assert!(Credentials::of(&h, &c).is_empty());
    }

    fn entry_file(dir: &Path, name: &str, n: u64) -> Entry {
        let p = dir.join(format!("{name}.src"));
        std::fs::write(&p, vec![0u8; 100]).unwrap();
        Entry {
            path: p,
            len: 100,
            version: SourceVersion { len: 100, mtime_ns: n as u128 },
            modified: SystemTime::now(),
            etag: None,
            last_modified: None,
            validated: Instant::now(),
            anonymous_refusal: None,
            last_used: Arc::new(AtomicU64::new(0)),
            remote: None,
        }
    }

    /// A source whose folder holds 250 bytes, with images `u1` (put first)
    /// and `u2` of 100 bytes each stored.
    fn folder_of_250_bytes_holding_u1_and_u2() -> (tempfile::TempDir, HttpSource, PathBuf) {
        let d = tempfile::tempdir().unwrap();
        let mut c = cfg();
        c.cache_dir = d.path().to_path_buf();
        c.cache_max_bytes = 250;
        let s = HttpSource::new(&c).unwrap();
        let dir = s.folder().to_path_buf();
        s.put("u1", entry_file(&dir, "one", 1), None);
        s.put("u2", entry_file(&dir, "two", 2), None);
        (d, s, dir)
    }

    #[test]
    fn the_folder_is_bounded_and_evicts_the_least_recently_used() {
        let (_d, s, dir) = folder_of_250_bytes_holding_u1_and_u2();
        assert!(s.entry("u1").is_some(), "touch u1 so u2 is the oldest");
        s.put("u3", entry_file(&dir, "three", 3), None);
        assert_eq!(s.stored_bytes(), 200);
        assert!(s.lock().entries.contains_key("u1"));
        assert!(!s.lock().entries.contains_key("u2"));
        assert!(!dir.join("two.src").exists(), "the evicted file is deleted");
        assert!(dir.join("three.src").exists());
    }

    #[test]
    fn bytes_in_flight_evict_stored_images_and_are_released_when_a_download_ends() {
        let (_d, s, dir) = folder_of_250_bytes_holding_u1_and_u2();
        {
            let mut held = Reservation { src: &s, bytes: 0 };
            s.reserve(&mut held, 60).unwrap();
            assert_eq!(s.inflight_bytes(), 60);
            assert_eq!(s.stored_bytes(), 100, "the least recently used image made room");
            assert!(!dir.join("one.src").exists());
            s.reserve(&mut held, 100).unwrap();
            assert_eq!(s.stored_bytes(), 0);
            let full = s.reserve(&mut held, 100).unwrap_err();
            assert_eq!(full.status(), StatusCode::SERVICE_UNAVAILABLE, "downloads alone pass the bound");
        }
        assert_eq!(s.inflight_bytes(), 0, "a dropped download releases its bytes");
    }

    #[test]
    fn the_admission_table_stays_under_its_byte_bound_under_a_flood_of_huge_credentials() {
        let d = tempfile::tempdir().unwrap();
        let mut c = cfg();
        c.cache_dir = d.path().to_path_buf();
        c.auth_ttl = 3600;
        let s = HttpSource::new(&c).unwrap();
        // 400 distinct 100 KB credentials: 40 MB offered, more than twice the bound.
        let mut last = None;
        for i in 0..400u32 {
            let mut token = format!("Bearer {i:08}-");
            token.push_str(&"x".repeat(100_000));
            let mut h = HeaderMap::new();
            h.insert(header::AUTHORIZATION, HeaderValue::from_str(&token).unwrap());
            let creds = Credentials::of(&h, &c);
            s.admit("http://127.0.0.1:9/bitstreams/a/content", &creds);
            let t = s.lock();
            assert!(t.admitted.bytes <= ADMISSION_MAX_BYTES, "{} bytes after {i}", t.admitted.bytes);
            drop(t);
            last = Some(creds);
        }
        let t = s.lock();
        let held: usize = t.admitted.map.keys().map(|k| k.0.len() + k.1.len()).sum();
        assert!(held <= ADMISSION_MAX_BYTES, "counted bytes match the keys held ({held})");
        assert_eq!(t.admitted.map.len(), t.admitted.order.len());
        assert!(t.admitted.map.len() < 400 && t.admitted.map.len() > 100, "{}", t.admitted.map.len());
        drop(t);
        let now = Instant::now();
        let last = last.unwrap();
        assert!(s.is_admitted("http://127.0.0.1:9/bitstreams/a/content", &last, now), "the newest is kept");
    }

    #[test]
    fn admissions_forget_the_oldest_first_and_skip_a_key_larger_than_the_table() {
        let mut a = Admissions::new(3 * (10 + ADMISSION_OVERHEAD));
        let now = Instant::now();
        let later = now + Duration::from_secs(60);
        let key = |i: u8| (format!("u{i}"), vec![i; 8]);
        for i in 0..5 {
            a.insert(key(i), later, now);
        }
        assert!(!a.is_admitted(&key(0), now) && !a.is_admitted(&key(1), now));
        assert!((2..5).all(|i| a.is_admitted(&key(i), now)));
        a.insert(key(2), later, now); // re-admitted: now the newest
        a.insert(key(5), later, now);
        assert!(a.is_admitted(&key(2), now) && !a.is_admitted(&key(3), now));
        a.insert(("u".into(), vec![0; 4000]), later, now);
        assert_eq!(a.map.len(), 3, "an oversized key is not remembered and evicts nothing");
        a.remove(&key(2));
        assert_eq!(a.bytes, 2 * (10 + ADMISSION_OVERHEAD));
        // Expired admissions go first even under the bound.
        let mut a = Admissions::new(1 << 20);
        a.insert(key(1), now, now);
        a.insert(key(2), later, now + Duration::from_millis(1));
        assert_eq!(a.map.len(), 1);
    }

    #[test]
    fn the_default_folder_is_fixed_under_the_temp_dir_and_each_run_has_its_own_subfolder() {
        let mut c = cfg();
        c.cache_dir = PathBuf::new();
        let a = HttpSource::new(&c).unwrap();
        let b = HttpSource::new(&c).unwrap();
        let root = std::env::temp_dir().join(DEFAULT_FOLDER);
        assert_eq!(a.folder().parent(), Some(root.as_path()));
        assert_eq!(b.folder().parent(), Some(root.as_path()));
        assert_ne!(a.folder(), b.folder());
        let pid = std::process::id().to_string();
        assert!(!root.to_string_lossy().contains(&pid));
        let dir = a.folder().to_path_buf();
        drop(a);
        assert!(!dir.exists(), "a run's subfolder goes with it");
        assert!(b.folder().exists(), "another run's is kept");
    }

    #[test]
    fn files_left_by_a_crashed_run_are_removed_at_start_and_nothing_else() {
        let d = tempfile::tempdir().unwrap();
        let stale = d.path().join("tessera-run-00000000deadbeef");
        std::fs::create_dir(&stale).unwrap();
        std::fs::write(stale.join(RUN_LOCK), b"").unwrap();
        std::fs::write(stale.join("0123-1.src"), b"old").unwrap();
        std::fs::write(stale.join("0123-2.part"), b"old").unwrap();
        std::fs::write(stale.join("0123-3.rng"), b"sparse").unwrap();
        std::fs::write(d.path().join("keep.src"), b"mine").unwrap();
        let unlocked = d.path().join("tessera-run-notes");
        std::fs::create_dir(&unlocked).unwrap();
        std::fs::write(unlocked.join("n.src"), b"mine").unwrap();
        let mut c = cfg();
        c.cache_dir = d.path().to_path_buf();
        let _s = HttpSource::new(&c).unwrap();
        assert!(!stale.exists(), "the crashed run's folder is gone");
        assert!(d.path().join("keep.src").exists(), "files outside run folders are never touched");
        assert!(unlocked.join("n.src").exists(), "a folder without a run lock is not ours");
    }

    #[test]
    fn only_images_pass_the_sniff() {
        assert!(check_image(&[0xFF, 0xD8, 0xFF, 0xE0, 0, 16, b'J', b'F', b'I', b'F', 0, 1]).is_ok());
        assert!(check_image(b"\x89PNG\r\n\x1a\n\0\0\0\x0d").is_ok());
        assert!(check_image(&[0, 0, 0, 12, b'j', b'P', b' ', b' ', 0x0D, 0x0A, 0x87, 0x0A]).is_ok());
        assert!(check_image(&[0xFF, 0x4F, 0xFF, 0x51, 0, 0x2F, 0, 0, 0, 0, 0, 0]).is_ok());
        assert!(check_image(b"II*\0\x08\0\0\0\0\0\0\0").is_ok());
        assert!(check_image(b"MM\0*\0\0\0\x08\0\0\0\0").is_ok());
        for unsupported in [&b"GIF89a\x01\0\x01\0\0\0"[..], b"RIFF\0\0\0\0WEBP"] {
            assert_eq!(check_image(unsupported).unwrap_err().status(), StatusCode::NOT_IMPLEMENTED);
        }
        for junk in [&b"<!DOCTYPE html><html>"[..], b"%PDF-1.7\n", b"", b"\xFF\xD8"] {
            let e = check_image(junk).unwrap_err();
            assert_eq!(e.status(), StatusCode::BAD_GATEWAY);
            assert_eq!(e.public_message(), "The file at the image's origin is not an image");
        }
    }
}
