//! HTTP sources: images fetched from a web store — a DSpace bitstream
//! endpoint, say — instead of read from a shared disk.
//!
//! An identifier maps to `url_prefix + identifier + url_suffix` (Cantaloupe's
//! HttpSource basic lookup). A fetched image is streamed into a folder of this
//! server's own, bounded in bytes and evicted least-recently-used, and then
//! memory-mapped from there like a local file, so JPEG 2000 region decoding
//! works unchanged. Concurrent requests for an image being fetched wait for
//! the one fetch ([`SingleFlight`], keyed by URL and credentials).
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
//! `auth_ttl` seconds per image and credential). A client without
//! credentials gets the origin's 401/403. Restricted responses are marked
//! `Cache-Control: private` by the service and never take its hot path.
//!
//! Architecture invariant: a restricted image is served to a request only if
//! the origin admitted that request's exact credentials for that image within
//! `auth_ttl` seconds; nothing is keyed on a hash of credentials.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime};

use http::header::{self, HeaderMap, HeaderValue};
use http::StatusCode;
use percent_encoding::{utf8_percent_encode, AsciiSet, NON_ALPHANUMERIC};
use tokio::io::AsyncWriteExt;

use super::{fnv1a, is_safe_identifier, Located, Origin, SourceVersion};
use crate::cache::SingleFlight;
use crate::config::HttpSourceCfg;
use crate::error::{Error, Result};

/// Characters of an identifier escaped in the origin URL (`/` is kept, so
/// `a/b` maps to a path below the prefix).
const URL_ESCAPE: &AsciiSet = &NON_ALPHANUMERIC.remove(b'-').remove(b'.').remove(b'_').remove(b'~').remove(b'/');

/// Admissions remembered before the table is cleared.
const ADMISSION_LIMIT: usize = 100_000;

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
    /// Failed exchanges (timeouts, 5xx, connection errors, oversized images).
    pub errors: AtomicU64,
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
}

#[derive(Default)]
struct State {
    entries: HashMap<String, Arc<Entry>>,
    bytes: u64,
    /// (URL, exact credentials) → admitted until.
    admitted: HashMap<(String, Vec<u8>), Instant>,
}

type FlightKey = (String, Vec<u8>);

/// Images fetched over HTTP(S) into a bounded local folder.
pub struct HttpSource {
    cfg: HttpSourceCfg,
    client: reqwest::Client,
    dir: PathBuf,
    /// The folder was made for this process and is removed on drop.
    owns_dir: bool,
    state: Mutex<State>,
    flights: Arc<SingleFlight<FlightKey, Result<Arc<Entry>>>>,
    clock: AtomicU64,
    seq: AtomicU64,
    pub stats: Stats,
}

impl HttpSource {
    /// Prepares the folder (removing what an earlier run left) and the client.
    pub fn new(cfg: &HttpSourceCfg) -> std::result::Result<HttpSource, String> {
        let (dir, owns_dir) = if cfg.cache_dir.as_os_str().is_empty() {
            let d = std::env::temp_dir().join(format!("tessera-sources-{}", std::process::id()));
            (d, true)
        } else {
            (cfg.cache_dir.clone(), false)
        };
        std::fs::create_dir_all(&dir).map_err(|e| format!("source.http.cache_dir {}: {e}", dir.display()))?;
        clear_folder(&dir);
        // rustls needs a process-wide crypto provider; another component may
        // have installed one already, which is fine.
        let _ = rustls::crypto::ring::default_provider().install_default();
        let client = reqwest::Client::builder()
            .connect_timeout(Duration::from_secs(cfg.connect_timeout))
            .read_timeout(Duration::from_secs(cfg.read_timeout))
            .timeout(Duration::from_secs(cfg.timeout))
            .redirect(reqwest::redirect::Policy::limited(5))
            .user_agent(concat!("tessera/", env!("CARGO_PKG_VERSION")))
            .tls_danger_accept_invalid_certs(cfg.allow_insecure_tls)
            .no_proxy()
            .build()
            .map_err(|e| format!("HTTP client: {e}"))?;
        Ok(HttpSource {
            cfg: cfg.clone(),
            client,
            dir,
            owns_dir,
            state: Mutex::new(State::default()),
            flights: Arc::new(SingleFlight::default()),
            clock: AtomicU64::new(0),
            seq: AtomicU64::new(0),
            stats: Stats::default(),
        })
    }

    /// Bytes kept in the folder now.
    pub fn stored_bytes(&self) -> u64 {
        self.lock().bytes
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// The origin URL of an identifier. Identifiers that could climb out of
    /// the prefix's path (`..` segments) are refused.
    pub fn url_for(&self, id: &str) -> Result<String> {
        if !is_safe_identifier(id) || id.split('/').any(|s| s == ".." || s == ".") {
            return Err(Error::not_found());
        }
        let url = format!("{}{}{}", self.cfg.url_prefix, utf8_percent_encode(id, URL_ESCAPE), self.cfg.url_suffix);
        reqwest::Url::parse(&url).map_err(|_| Error::not_found())?;
        Ok(url)
    }

    /// Finds the image of an identifier for a request with these headers:
    /// from the folder if fresh (and, if restricted, admitted for these
    /// credentials), else after asking the origin.
    pub async fn locate(self: &Arc<Self>, id: &str, headers: &HeaderMap) -> Result<Located> {
        let url = self.url_for(id)?;
        let creds = Credentials::of(headers, &self.cfg);
        let now = Instant::now();
        let current = self.entry(&url);
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

    fn is_fresh(&self, e: &Entry, now: Instant) -> bool {
        now.saturating_duration_since(e.validated) < Duration::from_secs(self.cfg.revalidate_after)
    }

    fn is_admitted(&self, url: &str, creds: &Credentials, now: Instant) -> bool {
        if creds.is_empty() || self.cfg.auth_ttl == 0 {
            return false;
        }
        self.lock().admitted.get(&(url.to_string(), creds.key())).is_some_and(|until| now < *until)
    }

    fn admit(&self, url: &str, creds: &Credentials) {
        if creds.is_empty() || self.cfg.auth_ttl == 0 {
            return;
        }
        let mut s = self.lock();
        if s.admitted.len() >= ADMISSION_LIMIT {
            s.admitted.clear();
        }
        s.admitted.insert((url.to_string(), creds.key()), Instant::now() + Duration::from_secs(self.cfg.auth_ttl));
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
    async fn exchange(&self, url: &str, creds: &Credentials, prev: Option<Arc<Entry>>) -> Result<Arc<Entry>> {
        let resp = match self.send(url, creds, prev.as_deref()).await {
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
                Ok(self.put(url, e))
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
                Ok(self.put(url, e))
            }
            (StatusCode::UNAUTHORIZED | StatusCode::FORBIDDEN, prev) => {
                self.stats.refusals.fetch_add(1, Ordering::Relaxed);
                if creds.is_empty() {
                    if let Some(p) = prev {
                        let mut e = (*p).clone();
                        e.validated = now;
                        e.anonymous_refusal = Some(status);
                        self.put(url, e);
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
            (s, _) => {
                self.stats.errors.fetch_add(1, Ordering::Relaxed);
                Err(bad_gateway(format!("origin answered {s}")))
            }
        }
    }

    /// Sends a GET, retrying 5xx answers and failed connections with
    /// exponential back-off. A timeout is not retried (the client has waited
    /// long enough). After the last retry a 5xx answer is returned as is.
    async fn send(&self, url: &str, creds: &Credentials, prev: Option<&Entry>) -> Result<reqwest::Response> {
        let mut attempt = 0u32;
        loop {
            let mut rb = self.client.get(url);
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

    /// Streams a 200 answer into a new file of the folder.
    async fn download(
        &self,
        url: &str,
        mut resp: reqwest::Response,
        anonymous_refusal: Option<StatusCode>,
    ) -> Result<Entry> {
        let max = self.cfg.max_source_bytes;
        if resp.content_length().is_some_and(|n| n > max) {
            return Err(too_large());
        }
        let text = |h: header::HeaderName| resp.headers().get(h).and_then(|v| v.to_str().ok()).map(str::to_string);
        let etag = text(header::ETAG);
        let last_modified = text(header::LAST_MODIFIED);
        let n = self.seq.fetch_add(1, Ordering::Relaxed);
        let path = self.dir.join(format!("{:016x}-{n}.src", fnv1a(&[url.as_bytes()])));
        let part = path.with_extension("part");
        let written = async {
            let mut f =
                tokio::fs::File::create(&part).await.map_err(|e| Error::internal(format!("source cache: {e}")))?;
            let mut total = 0u64;
            while let Some(chunk) = resp.chunk().await.map_err(transfer_error)? {
                total += chunk.len() as u64;
                if total > max {
                    return Err(too_large());
                }
                f.write_all(&chunk).await.map_err(|e| Error::internal(format!("source cache: {e}")))?;
            }
            f.flush().await.map_err(|e| Error::internal(format!("source cache: {e}")))?;
            Ok(total)
        }
        .await;
        let total = match written {
            Ok(t) => t,
            Err(e) => {
                let _ = tokio::fs::remove_file(&part).await;
                return Err(e);
            }
        };
        // The file is complete before it gets its name: a memory map never
        // sees a file that is still being written.
        if let Err(e) = tokio::fs::rename(&part, &path).await {
            let _ = tokio::fs::remove_file(&part).await;
            return Err(Error::internal(format!("source cache: {e}")));
        }
        self.stats.downloads.fetch_add(1, Ordering::Relaxed);
        self.stats.bytes.fetch_add(total, Ordering::Relaxed);
        // The origin's validator names the content; without one, each fetch
        // is a new version (nothing else can tell two contents apart).
        let validator = etag.clone().or_else(|| last_modified.clone()).unwrap_or_else(|| format!("fetch-{n}"));
        let version = SourceVersion { len: total, mtime_ns: fnv1a(&[validator.as_bytes()]) as u128 };
        let modified =
            last_modified.as_deref().and_then(|lm| httpdate::parse_http_date(lm).ok()).unwrap_or_else(SystemTime::now);
        Ok(Entry {
            path,
            len: total,
            version,
            modified,
            etag,
            last_modified,
            validated: Instant::now(),
            anonymous_refusal,
            last_used: Arc::new(AtomicU64::new(self.tick())),
        })
    }

    /// Records an entry, deletes the file it replaces, and evicts the least
    /// recently used images beyond the byte bound. A deleted file stays
    /// readable through the memory maps that requests in flight hold.
    fn put(&self, url: &str, e: Entry) -> Arc<Entry> {
        e.last_used.store(self.tick(), Ordering::Relaxed);
        let e = Arc::new(e);
        let mut doomed = Vec::new();
        {
            let mut s = self.lock();
            match s.entries.insert(url.to_string(), e.clone()) {
                Some(old) if old.path == e.path => {}
                Some(old) => {
                    s.bytes = s.bytes.saturating_sub(old.len) + e.len;
                    doomed.push(old.path.clone());
                }
                None => s.bytes += e.len,
            }
            while s.bytes > self.cfg.cache_max_bytes {
                let victim = s
                    .entries
                    .iter()
                    .filter(|(u, _)| u.as_str() != url)
                    .min_by_key(|(_, v)| v.last_used.load(Ordering::Relaxed))
                    .map(|(u, _)| u.clone());
                let Some(v) = victim else { break };
                if let Some(old) = s.entries.remove(&v) {
                    s.bytes = s.bytes.saturating_sub(old.len);
                    doomed.push(old.path.clone());
                }
            }
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
        if self.owns_dir {
            let _ = std::fs::remove_dir_all(&self.dir);
        } else {
            clear_folder(&self.dir);
        }
    }
}

/// Removes the files this module writes (`*.src`, `*.part`) from a folder.
fn clear_folder(dir: &Path) {
    let Ok(rd) = std::fs::read_dir(dir) else { return };
    for e in rd.flatten() {
        let p = e.path();
        if matches!(p.extension().and_then(|x| x.to_str()), Some("src" | "part")) {
            let _ = std::fs::remove_file(p);
        }
    }
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

    #[test]
    fn the_folder_is_bounded_and_evicts_the_least_recently_used() {
        let d = tempfile::tempdir().unwrap();
        let mut c = cfg();
        c.cache_dir = d.path().to_path_buf();
        c.cache_max_bytes = 250;
        let s = HttpSource::new(&c).unwrap();
        let mk = |name: &str, n: u64| {
            let p = d.path().join(format!("{name}.src"));
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
            }
        };
        s.put("u1", mk("one", 1));
        s.put("u2", mk("two", 2));
        assert!(s.entry("u1").is_some(), "touch u1 so u2 is the oldest");
        s.put("u3", mk("three", 3));
        assert_eq!(s.stored_bytes(), 200);
        assert!(s.lock().entries.contains_key("u1"));
        assert!(!s.lock().entries.contains_key("u2"));
        assert!(!d.path().join("two.src").exists(), "the evicted file is deleted");
        assert!(d.path().join("three.src").exists());
    }

    #[test]
    fn files_left_by_an_earlier_run_are_removed_at_start() {
        let d = tempfile::tempdir().unwrap();
        std::fs::write(d.path().join("0123-1.src"), b"old").unwrap();
        std::fs::write(d.path().join("0123-2.part"), b"old").unwrap();
        std::fs::write(d.path().join("keep.txt"), b"mine").unwrap();
        let mut c = cfg();
        c.cache_dir = d.path().to_path_buf();
        let _s = HttpSource::new(&c).unwrap();
        assert!(!d.path().join("0123-1.src").exists());
        assert!(!d.path().join("0123-2.part").exists());
        assert!(d.path().join("keep.txt").exists(), "only this module's files are touched");
    }
}
