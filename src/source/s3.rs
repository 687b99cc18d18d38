//! S3 sources: images kept in an S3 bucket (or any S3-compatible store:
//! MinIO, Garage, Ceph RGW…), read by range.
//!
//! An identifier maps to the key `key_prefix + identifier + key_suffix` in
//! `bucket` (identifiers with `.` or `..` segments are refused). The first
//! request for an image asks its first block (a ranged GET, which also gives
//! the object's size and ETag: one round trip); the image then becomes a
//! [`Remote`] over a sparse file in this server's folder, and its blocks are
//! read as the codecs ask for them ([`super::ranged`]), every one with
//! `If-Match` on the ETag it was opened with, so blocks of two versions are
//! never mixed (412 → the version is dropped, 503 once, the next request
//! opens the new one). Every format is read this way: a JPEG or PNG simply
//! asks for all its blocks at once.
//!
//! Freshness: an image is used without asking the store for
//! `revalidate_after` seconds; then its first block is asked again with
//! `If-None-Match` (304 keeps everything fetched). Credentials: the
//! configured keys, else the standard AWS environment variables
//! (`AWS_ACCESS_KEY_ID`, …, a web identity token, the instance profile), as
//! `object_store`'s `AmazonS3Builder::from_env` finds them.
//!
//! The folder is the HTTP source's kind (`cache_dir`, one locked
//! subfolder per running server, cleared at exit and by the next start after
//! a crash), bounded to `cache_max_bytes` of blocks, least recently used
//! images out first.

use std::collections::HashMap;
use std::fs::File;
use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime};

use bytes::Bytes;
use http::StatusCode;
use object_store::path::Path as KeyPath;
use object_store::{GetOptions, GetRange, ObjectStore};

use super::ranged::{Counted, Fault, Fetcher, RangeFuture, RangeOrigin, RangeStats, Remote};
use super::{fnv1a, is_safe_identifier, Located, Origin, SourceVersion};
use crate::config::S3SourceCfg;
use crate::error::{Error, Result};
use crate::flight::SingleFlight;

/// Counters for /metrics.
#[derive(Default)]
pub struct S3Stats {
    /// Images opened (a first block fetched for a new version).
    pub opens: AtomicU64,
    /// Revalidations answered "not modified".
    pub not_modified: AtomicU64,
    /// Failed opens and revalidations.
    pub errors: AtomicU64,
    /// The block reads of the opened images.
    pub range: Arc<RangeStats>,
}

struct Entry {
    remote: Arc<Remote>,
    etag: String,
    version: SourceVersion,
    modified: SystemTime,
    validated: Mutex<Instant>,
    last_used: AtomicU64,
}

/// Images in an S3 bucket, read by range into a bounded local folder.
pub struct S3Source {
    cfg: S3SourceCfg,
    store: Arc<dyn ObjectStore>,
    dir: PathBuf,
    _run_lock: File,
    entries: Mutex<HashMap<String, Arc<Entry>>>,
    flights: Arc<SingleFlight<String, Result<Arc<Entry>>>>,
    counted: Arc<Counted>,
    clock: AtomicU64,
    seq: AtomicU64,
    pub stats: S3Stats,
}

impl S3Source {
    /// Builds the client (nothing is asked of the store yet) and the folder.
    pub fn new(cfg: &S3SourceCfg) -> std::result::Result<S3Source, String> {
        if cfg.bucket.is_empty() {
            return Err("source.s3.bucket is empty".into());
        }
        let _ = rustls::crypto::ring::default_provider().install_default();
        // The client options carry allow_http too: setting them after
        // with_allow_http would turn it off again.
        let mut b = object_store::aws::AmazonS3Builder::from_env()
            .with_bucket_name(&cfg.bucket)
            .with_virtual_hosted_style_request(!cfg.path_style)
            .with_retry(object_store::RetryConfig {
                max_retries: cfg.retries as usize,
                retry_timeout: Duration::from_secs(cfg.timeout),
                ..Default::default()
            })
            .with_client_options(
                object_store::ClientOptions::default()
                    .with_allow_http(cfg.allow_http)
                    // Without keep-alive, a connection per request (see the
                    // `keep_alive` key in config/default.toml).
                    .with_pool_max_idle_per_host(if cfg.keep_alive { usize::MAX } else { 0 })
                    .with_connect_timeout(Duration::from_secs(cfg.connect_timeout))
                    .with_timeout(Duration::from_secs(cfg.timeout)),
            );
        if !cfg.region.is_empty() {
            b = b.with_region(&cfg.region);
        }
        if !cfg.endpoint.is_empty() {
            b = b.with_endpoint(&cfg.endpoint);
        }
        if !cfg.access_key_id.is_empty() {
            b = b.with_access_key_id(&cfg.access_key_id).with_secret_access_key(&cfg.secret_access_key);
        }
        let store = b.build().map_err(|e| format!("source.s3: {e}"))?;
        let (dir, run_lock) = super::http::prepare_folder(&cfg.cache_dir, "source.s3.cache_dir")?;
        Ok(S3Source {
            cfg: cfg.clone(),
            store: Arc::new(store),
            dir,
            _run_lock: run_lock,
            entries: Mutex::new(HashMap::new()),
            flights: Arc::new(SingleFlight::default()),
            counted: Arc::new(Counted::default()),
            clock: AtomicU64::new(0),
            seq: AtomicU64::new(0),
            stats: S3Stats::default(),
        })
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<String, Arc<Entry>>> {
        self.entries.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// The object key of an identifier; identifiers that could climb out of
    /// the prefix are refused.
    pub fn key_for(&self, id: &str) -> Result<String> {
        if !is_safe_identifier(id) || id.split('/').any(|s| s.is_empty() || s == ".." || s == ".") {
            return Err(Error::not_found());
        }
        Ok(format!("{}{}{}", self.cfg.key_prefix, id, self.cfg.key_suffix))
    }

    /// Bytes of blocks kept in the folder now.
    pub fn stored_bytes(&self) -> u64 {
        self.counted.bytes.load(Ordering::Relaxed)
    }

    /// Bytes of blocks kept in memory now (the folder refused them).
    pub fn memory_bytes(&self) -> u64 {
        self.counted.memory.load(Ordering::Relaxed)
    }

    fn name(&self, key: &str) -> Arc<str> {
        format!("s3://{}/{key}", self.cfg.bucket).into()
    }

    fn located(&self, key: &str, e: &Entry) -> Located {
        e.last_used.store(self.clock.fetch_add(1, Ordering::Relaxed) + 1, Ordering::Relaxed);
        Located {
            path: e.remote.path.clone(),
            version: e.version,
            modified: e.modified,
            origin: Origin::Http { url: self.name(key), restricted: false },
            remote: Some(e.remote.clone()),
        }
    }

    fn is_fresh(&self, e: &Entry) -> bool {
        let validated = *e.validated.lock().unwrap_or_else(|p| p.into_inner());
        validated.elapsed() < Duration::from_secs(self.cfg.revalidate_after) && !e.remote.changed()
    }

    /// The image of an identifier, opened or revalidated if need be.
    pub async fn locate(self: &Arc<Self>, id: &str) -> Result<Located> {
        let key = self.key_for(id)?;
        self.trim();
        let current = self.lock().get(&key).cloned();
        if let Some(e) = &current {
            if self.is_fresh(e) {
                return Ok(self.located(&key, e));
            }
        }
        let me = self.clone();
        let k = key.clone();
        let (res, _) = self.flights.run(key.clone(), move || async move { me.open(&k, current).await }).await;
        let e = res.unwrap_or_else(|| Err(Error::internal("S3 open task failed")))?;
        Ok(self.located(&key, &e))
    }

    /// Without network I/O: the image if it is open.
    pub fn peek(&self, id: &str) -> Option<Located> {
        let key = self.key_for(id).ok()?;
        let e = self.lock().get(&key).cloned()?;
        Some(self.located(&key, &e))
    }

    /// Whether `version` of `name` may be answered without asking the store.
    pub fn is_current(&self, name: &str, version: SourceVersion) -> bool {
        let Some(key) = name.strip_prefix(&format!("s3://{}/", self.cfg.bucket)) else { return false };
        match self.lock().get(key) {
            Some(e) => e.version == version && self.is_fresh(e),
            None => false,
        }
    }

    /// Asks the store for the first block (conditionally if `prev`), and opens
    /// the version it names.
    async fn open(&self, key: &str, prev: Option<Arc<Entry>>) -> Result<Arc<Entry>> {
        let first = super::ranged::open_read_bytes(self.cfg.range_block_bytes);
        let options = GetOptions {
            range: Some(GetRange::Bounded(0..first)),
            if_none_match: prev.as_ref().filter(|p| !p.remote.changed()).map(|p| p.etag.clone()),
            ..Default::default()
        };
        let got = match self.store.get_opts(&KeyPath::from(key), options).await {
            Ok(g) => g,
            Err(object_store::Error::NotModified { .. }) if prev.is_some() => {
                self.stats.not_modified.fetch_add(1, Ordering::Relaxed);
                let p = prev.ok_or_else(|| Error::internal("no previous version"))?;
                *p.validated.lock().unwrap_or_else(|x| x.into_inner()) = Instant::now();
                return Ok(p);
            }
            Err(object_store::Error::NotFound { .. }) => {
                self.forget(key);
                return Err(Error::not_found());
            }
            Err(e) => {
                self.stats.errors.fetch_add(1, Ordering::Relaxed);
                return Err(store_error(e));
            }
        };
        let meta = got.meta.clone();
        let head = got.bytes().await.map_err(|e| {
            self.stats.errors.fetch_add(1, Ordering::Relaxed);
            store_error(e)
        })?;
        let total = meta.size;
        if total > self.cfg.max_source_bytes {
            return Err(Error::with_status(StatusCode::BAD_GATEWAY, "The image is too large")
                .with_detail(format!("{} bytes > source.s3.max_source_bytes", total)));
        }
        let Some(etag) = meta.e_tag.clone() else {
            return Err(Error::with_status(StatusCode::BAD_GATEWAY, "The image's store gave no version")
                .with_detail("no ETag on the object"));
        };
        if head.len() as u64 != first.min(total) {
            return Err(Error::with_status(StatusCode::BAD_GATEWAY, "The image's store failed to send the image")
                .with_detail(format!("first block: {} of {} bytes", head.len(), first.min(total))));
        }
        if crate::codec::sniff(&head).is_none() {
            return Err(Error::with_status(StatusCode::BAD_GATEWAY, "The file in the store is not an image")
                .with_detail(format!("object starts {:02x?}", &head[..head.len().min(8)])));
        }
        let n = self.seq.fetch_add(1, Ordering::Relaxed);
        let path = self.dir.join(format!("{:016x}-{n}.rng", fnv1a(&[key.as_bytes()])));
        let fetcher = Fetcher {
            runtime: tokio::runtime::Handle::current(),
            timeout: Duration::from_secs(self.cfg.timeout),
            retries: 0,
            retry_backoff_ms: 0,
            stats: self.stats.range.clone(),
        };
        let origin = S3Range {
            store: self.store.clone(),
            key: KeyPath::from(key),
            name: self.name(key).to_string(),
            etag: etag.clone(),
            len: total,
        };
        let remote = Remote::create(
            Box::new(origin),
            total,
            self.cfg.range_block_bytes,
            self.cfg.range_read_ahead_bytes,
            path,
            &head,
            fetcher,
            self.counted.clone(),
        )
        .map_err(|e| Error::internal(format!("source folder: {e}")))?;
        let remote = Arc::new(remote);
        if crate::codec::sniff(&head) == Some(crate::codec::SourceFormat::Tiff) && self.cfg.range_tiff_tail_bytes > 0 {
            remote.prefetch((total.saturating_sub(self.cfg.range_tiff_tail_bytes), total));
        }
        self.stats.opens.fetch_add(1, Ordering::Relaxed);
        let modified = SystemTime::from(meta.last_modified);
        let e = Arc::new(Entry {
            remote,
            version: SourceVersion { len: total, mtime_ns: fnv1a(&[etag.as_bytes()]) as u128 },
            etag,
            modified,
            validated: Mutex::new(Instant::now()),
            last_used: AtomicU64::new(self.clock.fetch_add(1, Ordering::Relaxed) + 1),
        });
        let old = self.lock().insert(key.to_string(), e.clone());
        if let Some(o) = old {
            drop_entry(&o);
        }
        self.trim();
        Ok(e)
    }

    /// Removes least recently used images while the blocks pass the
    /// folder's bound, or those kept in memory pass theirs.
    fn trim(&self) {
        loop {
            let disk = self.counted.bytes.load(Ordering::Relaxed) > self.cfg.cache_max_bytes;
            let memory = self.counted.memory.load(Ordering::Relaxed) > self.cfg.range_memory_max_bytes;
            if !disk && !memory {
                break;
            }
            let victim = {
                let mut m = self.lock();
                let k = m
                    .iter()
                    .filter(|(_, e)| disk || e.remote.in_memory())
                    .min_by_key(|(_, e)| e.last_used.load(Ordering::Relaxed))
                    .map(|(k, _)| k.clone());
                k.and_then(|k| m.remove(&k))
            };
            match victim {
                Some(e) => drop_entry(&e),
                None => break,
            }
        }
    }

    fn forget(&self, key: &str) {
        let old = self.lock().remove(key);
        if let Some(o) = old {
            drop_entry(&o);
        }
    }

    /// Forgets every image (admin purge).
    pub fn purge_all(&self) {
        let all: Vec<_> = self.lock().drain().map(|(_, e)| e).collect();
        for e in all {
            drop_entry(&e);
        }
    }

    /// Forgets one identifier's image.
    pub fn purge(&self, id: &str) {
        if let Ok(key) = self.key_for(id) {
            self.forget(&key);
        }
    }
}

impl Drop for S3Source {
    fn drop(&mut self) {
        super::http::clear_run(&self.dir);
    }
}

/// An entry leaving the folder: its blocks stop counting and its file goes
/// (requests still reading it keep their mapping).
fn drop_entry(e: &Entry) {
    e.remote.uncount();
    let _ = std::fs::remove_file(&e.remote.path);
}

fn store_error(e: object_store::Error) -> Error {
    let text = e.to_string();
    let timeout = text.contains("timed out") || text.contains("timeout");
    if timeout {
        Error::with_status(StatusCode::GATEWAY_TIMEOUT, "The image's store did not answer in time").with_detail(text)
    } else {
        Error::with_status(StatusCode::BAD_GATEWAY, "The image's store failed to send the image").with_detail(text)
    }
}

/// One version of one object: ranged GETs with `If-Match` on its ETag.
struct S3Range {
    store: Arc<dyn ObjectStore>,
    key: KeyPath,
    name: String,
    etag: String,
    len: u64,
}

impl RangeOrigin for S3Range {
    fn name(&self) -> &str {
        &self.name
    }

    fn get(&self, start: u64, end: u64) -> RangeFuture<'_> {
        Box::pin(async move {
            let options = GetOptions {
                range: Some(GetRange::Bounded(start..end + 1)),
                if_match: Some(self.etag.clone()),
                ..Default::default()
            };
            let got = match self.store.get_opts(&self.key, options).await {
                Ok(g) => g,
                Err(object_store::Error::Precondition { .. }) => {
                    return Err(Fault::Changed("the object's ETag changed".into()))
                }
                Err(object_store::Error::NotFound { .. }) => return Err(Fault::Changed("the object is gone".into())),
                Err(e) => {
                    let detail = e.to_string();
                    return Err(Fault::Failed { timeout: detail.contains("timed out"), detail });
                }
            };
            if got.meta.size != self.len || got.range != (start..end + 1) {
                return Err(Fault::Changed("the store answered another range or length".into()));
            }
            got.bytes().await.map_err(|e| Fault::Transient(e.to_string())).map(|b: Bytes| b)
        })
    }
}
