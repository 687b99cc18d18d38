//! Remote masters read by range: the bytes of an image at an HTTP origin
//! fetched block by block, as the codecs ask for them, instead of whole.
//!
//! A [`Remote`] is one version of one origin file (its URL and validator).
//! Its blocks (`range_block_bytes` each) are kept in a *sparse file* of the
//! file's full length in the HTTP source's folder: a fetched block is written
//! at its offset, a missing one is a hole that costs no disk. The file is
//! memory-mapped like any source, so the codecs read one slice of the whole
//! image; before they read a range they call [`Remote::need`]
//! ([`crate::codec::Need`]), which fetches the blocks missing from it. The
//! operating system's page cache is the memory tier of these blocks; the
//! folder's byte bound (`cache_max_bytes`, shared with whole downloads)
//! bounds the disk, counting the blocks present.
//!
//! Fetching: the missing blocks of one `need` go out together, adjacent ones
//! merged into one `Range` request (runs longer than 1 MiB cut into pieces
//! fetched side by side), all runs at once. A block being fetched
//! is fetched once: other readers wait for it. Reads that follow each other
//! (OpenJPEG streaming an untiled codestream) grow a read-ahead, doubling up
//! to `range_read_ahead_bytes`. Each request carries `If-Range` with the
//! validator the version was opened with (the origin's strong ETag, else its
//! Last-Modified), so blocks of two versions are never mixed: a 200 (the
//! file changed, or the origin stopped answering ranges), a 416, or a
//! `Content-Range` other than the one asked marks this version changed; its
//! reads then fail with [`CodecError::SourceChanged`] (503, nothing cached)
//! and the HTTP source asks the origin afresh. A body shorter than its range,
//! a stall, a reset or a 5xx fail the read with
//! [`CodecError::Unavailable`] (502/504) and leave the blocks missing.
//!
//! When the folder refuses a block (a full disk, a quota, an unwritable
//! folder), the blocks go to memory instead: a remote created then keeps
//! them in an anonymous memory file (`memfd`), mapped the same way and
//! bounded apart (`range_memory_max_bytes`, [`Counted::memory`]), and the
//! folder is tried again after [`DISK_RETRY`]. A remote whose folder
//! refuses a block while it is read is given up like a changed one (503
//! once, nothing cached); the next request opens it afresh, in memory.
//!
//! `need` blocks its thread (a pool worker, like a page fault on a local
//! file): the exchange runs on the tokio runtime the source was opened on and
//! the worker waits for its answer.
//!
//! Architecture invariant: a byte of a remote master reaches a codec only
//! after the block holding it was fetched under this version's validator and
//! written whole. Checked by
//! `range_source::a_file_changed_at_the_origin_between_two_ranges_is_never_mixed`.

use std::fs::File;
use std::future::Future;
use std::os::unix::fs::FileExt;
use std::path::PathBuf;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Condvar, Mutex, MutexGuard};
use std::time::Duration;

use bytes::Bytes;
use http::header;
use http::StatusCode;

use crate::codec::CodecError;

/// Range requests one read sends at once: a tiled master's home view wants
/// a prefix of each of its tile-parts (108 for a 12000×9000 master tiled
/// 1024, in two waves), and a hostile index of thousands of tile-parts must
/// not open thousands of connections to the origin.
const MAX_PARALLEL_RUNS: usize = 64;

/// Most bytes one range request asks: longer runs are cut into pieces
/// fetched side by side (at most [`MAX_PARALLEL_RUNS`] at once).
const PIECE_BYTES: u64 = 1 << 20;

/// Smallest block (a smaller `range_block_bytes` is raised to it).
pub const MIN_BLOCK: u64 = 1024;

/// Bytes asked when an image is opened, whatever the block size: a JPEG
/// 2000 main header with its TLM index, a TIFF's first directory (GDAL's
/// `/vsicurl/` ingests 16 KB at open for the same reason).
pub fn open_read_bytes(block: u64) -> u64 {
    block.max(MIN_BLOCK).max(16 << 10)
}

thread_local! {
    /// Reads on this thread that waited on an origin (fetched blocks, or
    /// waited for blocks another read was fetching).
    static WAITS: std::cell::Cell<u64> = const { std::cell::Cell::new(0) };
}

/// How many reads on this thread have waited on an origin so far: the
/// difference across a job tells whether the job did (for the access log's
/// `origin` tier).
pub fn waits_on_this_thread() -> u64 {
    WAITS.with(|w| w.get())
}

fn count_wait() {
    WAITS.with(|w| w.set(w.get() + 1));
}

/// Counters for /metrics, shared by every remote of a source.
#[derive(Default)]
pub struct RangeStats {
    /// Range requests sent to the origin.
    pub requests: AtomicU64,
    /// Bytes received in range answers.
    pub bytes: AtomicU64,
    /// Blocks a read found present.
    pub block_hits: AtomicU64,
    /// Blocks a read had to fetch (or wait for).
    pub block_misses: AtomicU64,
    /// Versions found changed at the origin while read.
    pub changed: AtomicU64,
    /// Range requests that failed (timeouts, resets, short bodies, 5xx).
    pub errors: AtomicU64,
}

/// How a remote talks to its origin.
#[derive(Clone)]
pub struct Fetcher {
    /// The runtime the exchanges run on (the server's).
    pub runtime: tokio::runtime::Handle,
    /// Longest wait for one read's blocks.
    pub timeout: Duration,
    pub retries: u32,
    pub retry_backoff_ms: u64,
    pub stats: Arc<RangeStats>,
}

/// How long new remotes keep their blocks in memory after the folder
/// refused one.
pub const DISK_RETRY: Duration = Duration::from_secs(60);

/// Bytes held by the blocks of a source's remotes: in the folder (its
/// bound) and in memory (when the folder refused them); a remote stops
/// counting once its entry is evicted (its file is deleted then).
#[derive(Default)]
pub struct Counted {
    pub bytes: AtomicU64,
    pub memory: AtomicU64,
    /// Until when new remotes skip the folder (it refused a block).
    refused_until: Mutex<Option<std::time::Instant>>,
}

impl Counted {
    /// The folder refused a write: new remotes go to memory for a while.
    fn refuse_disk(&self) {
        let mut r = self.refused_until.lock().unwrap_or_else(|p| p.into_inner());
        if r.is_none_or(|t| t <= std::time::Instant::now()) {
            tracing::warn!(
                retry_s = DISK_RETRY.as_secs(),
                "the source folder refuses blocks (full?): images read by range keep them in memory"
            );
        }
        *r = Some(std::time::Instant::now() + DISK_RETRY);
    }

    fn disk_refused(&self) -> bool {
        let r = self.refused_until.lock().unwrap_or_else(|p| p.into_inner());
        r.is_some_and(|t| t > std::time::Instant::now())
    }
}

/// One version of one origin file, read by range into a sparse file.
pub struct Remote {
    /// Where the blocks come from (an HTTP URL, an S3 object).
    origin: Box<dyn RangeOrigin>,
    len: u64,
    block: u64,
    max_ahead: u64,
    /// The sparse file (written here, mapped by the sources opened on it),
    /// or the memory file standing in for it.
    file: File,
    /// Where the sparse file is (for a remote in memory, where it would
    /// have been: unique, and never created).
    pub path: PathBuf,
    /// Its blocks are in memory ([`Counted::memory`]), not in the folder.
    in_memory: bool,
    fetcher: Fetcher,
    blocks: Mutex<Blocks>,
    arrived: Condvar,
    changed: AtomicBool,
    folder: Arc<Counted>,
}

struct Blocks {
    present: Vec<u64>,
    inflight: Vec<u64>,
    /// Bytes of blocks present, and whether they count in the folder's bound.
    stored: u64,
    counted: bool,
    /// Where the last read ended (bytes), and the read-ahead (blocks) the
    /// next read gets if it starts there.
    last_end: u64,
    ahead: u64,
}

fn bit(v: &[u64], i: u64) -> bool {
    v[(i / 64) as usize] & (1 << (i % 64)) != 0
}

fn set(v: &mut [u64], i: u64, on: bool) {
    let w = &mut v[(i / 64) as usize];
    if on {
        *w |= 1 << (i % 64);
    } else {
        *w &= !(1 << (i % 64));
    }
}

impl std::fmt::Debug for Remote {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Remote").field("origin", &self.origin.name()).field("len", &self.len).finish_non_exhaustive()
    }
}

/// Whether a validator may go in `If-Range` (a strong ETag or a date).
pub fn usable_validator(etag: Option<&str>, last_modified: Option<&str>) -> Option<String> {
    match etag {
        Some(t) if !t.starts_with("W/") => Some(t.to_string()),
        _ => last_modified.map(str::to_string),
    }
}

/// `Content-Range: bytes a-b/len` → (a, b, len); `None` for anything else
/// (an unknown length `*` included).
pub fn parse_content_range(v: &str) -> Option<(u64, u64, u64)> {
    let rest = v.trim().strip_prefix("bytes ")?;
    let (span, len) = rest.split_once('/')?;
    let (a, b) = span.split_once('-')?;
    let (a, b, len) = (a.trim().parse().ok()?, b.trim().parse().ok()?, len.trim().parse().ok()?);
    (a <= b && b < len).then_some((a, b, len))
}

/// How one range request failed.
#[derive(Debug)]
pub enum Fault {
    /// The object is no longer the version read so far (a 200 or 412 to a
    /// conditional range, another length): never retried.
    Changed(String),
    /// Worth another try (a 5xx, a reset connection).
    Transient(String),
    /// Not worth another try (a timeout, a refusal).
    Failed { timeout: bool, detail: String },
}

/// The future of one range request.
pub type RangeFuture<'a> = Pin<Box<dyn Future<Output = Result<Bytes, Fault>> + Send + 'a>>;

/// Where a remote's blocks come from: bytes `start..=end` of the one version
/// the remote was opened on, or a [`Fault`] (an origin that cannot promise
/// the version answers [`Fault::Changed`] rather than other bytes).
pub trait RangeOrigin: Send + Sync + 'static {
    fn get(&self, start: u64, end: u64) -> RangeFuture<'_>;
    /// For logs (a URL or `s3://bucket/key`; never shown to clients).
    fn name(&self) -> &str;
}

/// An HTTP origin: `Range` with `If-Range` on the version's validator.
pub struct HttpRange {
    pub client: reqwest::Client,
    pub url: String,
    /// The strong ETag or Last-Modified the version was opened with.
    pub validator: String,
    pub len: u64,
}

impl RangeOrigin for HttpRange {
    fn name(&self) -> &str {
        &self.url
    }

    fn get(&self, start: u64, end: u64) -> RangeFuture<'_> {
        Box::pin(async move {
            let r = self
                .client
                .get(&self.url)
                .header(header::RANGE, format!("bytes={start}-{end}"))
                .header(header::IF_RANGE, self.validator.as_str());
            // A strong ETag also goes in If-Match: an origin (or a cache in
            // front of it) that ignores If-Range still cannot send another
            // version's bytes (412).
            let r =
                if self.validator.starts_with('"') { r.header(header::IF_MATCH, self.validator.as_str()) } else { r };
            let r = r.send().await;
            let resp = match r {
                Ok(resp) => resp,
                Err(e) if e.is_timeout() => return Err(Fault::Failed { timeout: true, detail: e.to_string() }),
                Err(e) => return Err(Fault::Transient(e.to_string())),
            };
            let status = resp.status();
            if status == StatusCode::PARTIAL_CONTENT {
                let cr = resp.headers().get(header::CONTENT_RANGE).and_then(|v| v.to_str().ok());
                if cr.and_then(parse_content_range) != Some((start, end, self.len)) {
                    return Err(Fault::Changed("origin answered another range or length".into()));
                }
                return match resp.bytes().await {
                    Ok(body) => Ok(body),
                    Err(e) if e.is_timeout() => Err(Fault::Failed { timeout: true, detail: e.to_string() }),
                    Err(e) => Err(Fault::Transient(format!("range body: {e}"))),
                };
            }
            if status == StatusCode::OK
                || status == StatusCode::RANGE_NOT_SATISFIABLE
                || status == StatusCode::PRECONDITION_FAILED
            {
                return Err(Fault::Changed("origin answered a range with the whole file".into()));
            }
            if status.is_server_error() {
                return Err(Fault::Transient(format!("origin answered {status}")));
            }
            Err(Fault::Failed { timeout: false, detail: format!("origin answered {status} to a range") })
        })
    }
}

impl Remote {
    /// A remote of `len` bytes over a new sparse file at `path` (in memory
    /// if the folder refuses it), holding `head` (the bytes from offset 0
    /// already received).
    #[allow(clippy::too_many_arguments)]
    pub fn create(
        origin: Box<dyn RangeOrigin>,
        len: u64,
        block: u64,
        max_ahead: u64,
        path: PathBuf,
        head: &[u8],
        fetcher: Fetcher,
        folder: Arc<Counted>,
    ) -> std::io::Result<Remote> {
        let block = block.max(MIN_BLOCK);
        // Only whole blocks (or the file's last, short one) count as present.
        let whole = if head.len() as u64 >= len { len } else { head.len() as u64 / block * block };
        let head = &head[..whole as usize];
        let on_disk = if folder.disk_refused() {
            None
        } else {
            match sparse_file(&path, len, head) {
                Ok(f) => Some(f),
                Err(e) => {
                    tracing::warn!(error = %e, "cannot create a sparse file in the source folder");
                    folder.refuse_disk();
                    None
                }
            }
        };
        let (file, in_memory) = match on_disk {
            Some(f) => (f, false),
            None => (memory_file(len, head)?, true),
        };
        let n = len.div_ceil(block);
        let words = n.div_ceil(64) as usize;
        let mut present = vec![0u64; words];
        let full = if whole >= len { n } else { whole / block };
        for i in 0..full {
            set(&mut present, i, true);
        }
        let stored = pages(0, whole);
        if in_memory { &folder.memory } else { &folder.bytes }.fetch_add(stored, Ordering::Relaxed);
        let blocks = Blocks { present, inflight: vec![0u64; words], stored, counted: true, last_end: 0, ahead: 0 };
        Ok(Remote {
            origin,
            len,
            block,
            max_ahead: (max_ahead / block).max(1),
            file,
            path,
            in_memory,
            fetcher,
            blocks: Mutex::new(blocks),
            arrived: Condvar::new(),
            changed: AtomicBool::new(false),
            folder,
        })
    }

    pub fn len(&self) -> u64 {
        self.len
    }

    /// Blocks per request at most: a long run (an untiled master read at
    /// full resolution, a lossless tile-part) goes out as pieces of
    /// [`PIECE_BYTES`] side by side, as S3's guidance and download tools
    /// do, since one connection's rate is what an origin (or a long path)
    /// limits.
    fn piece_blocks(&self) -> u64 {
        (PIECE_BYTES / self.block).max(1)
    }

    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// Whether the origin's file was found changed while this version was read.
    pub fn changed(&self) -> bool {
        self.changed.load(Ordering::Relaxed)
    }

    /// Whether its blocks are kept in memory (the folder refused them).
    pub fn in_memory(&self) -> bool {
        self.in_memory
    }

    /// A new handle on its file (the sparse file, or the memory file), to
    /// map: the file itself, wherever its entry has gone since.
    pub fn reopen(&self) -> std::io::Result<File> {
        self.file.try_clone()
    }

    /// Where its blocks count: the folder's bytes or the memory's.
    fn counter(&self) -> &AtomicU64 {
        if self.in_memory {
            &self.folder.memory
        } else {
            &self.folder.bytes
        }
    }

    /// Its blocks stop counting in the source's bounds (its entry is gone).
    pub fn uncount(&self) {
        let mut b = self.lock();
        if b.counted {
            b.counted = false;
            let _ =
                self.counter().fetch_update(Ordering::Relaxed, Ordering::Relaxed, |v| Some(v.saturating_sub(b.stored)));
        }
    }

    fn lock(&self) -> MutexGuard<'_, Blocks> {
        self.blocks.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn blocks_of(&self, (start, end): (u64, u64)) -> Option<(u64, u64)> {
        let end = end.min(self.len);
        (start < end).then(|| (start / self.block, (end - 1) / self.block))
    }

    /// Makes `ranges` readable in the mapped file: fetches the blocks missing
    /// from them (waiting for those others are fetching), blocking this
    /// thread. Never call it on the async reactor.
    pub fn need(self: &Arc<Self>, ranges: &[(u64, u64)]) -> Result<(), CodecError> {
        let wanted: Vec<(u64, u64)> = ranges.iter().filter_map(|&r| self.blocks_of(r)).collect();
        if wanted.is_empty() {
            return self.check();
        }
        let stats = &self.fetcher.stats;
        let mut first = true;
        let mut first_wait = true;
        // Waiting for blocks others fetch: at most as long as a fetch may take.
        let deadline = std::time::Instant::now() + self.fetcher.timeout + Duration::from_secs(1);
        // A read that starts where the last one ended is sequential: it
        // fetches ahead, more each time (reads after a skip do not).
        let sequential = {
            let mut b = self.lock();
            // Only small reads (a parser walking a header) grow it: a large
            // read already names all it wants.
            let small = ranges.len() == 1 && ranges[0].1.saturating_sub(ranges[0].0) < self.block;
            let seq = small && ranges[0].0 == b.last_end && b.last_end > 0;
            b.ahead = if seq { (b.ahead * 2).clamp(1, self.max_ahead) } else { 0 };
            b.last_end = ranges.last().map_or(0, |r| r.1);
            seq
        };
        loop {
            self.check()?;
            let mut b = self.lock();
            let mut missing: Vec<u64> = Vec::new();
            let mut waiting = false;
            let mut hits = 0u64;
            for &(lo, hi) in &wanted {
                for i in lo..=hi {
                    if bit(&b.present, i) {
                        hits += 1;
                    } else if bit(&b.inflight, i) {
                        waiting = true;
                    } else if missing.last() != Some(&i) {
                        missing.push(i);
                    }
                }
            }
            if first {
                let total: u64 = wanted.iter().map(|(lo, hi)| hi - lo + 1).sum();
                stats.block_hits.fetch_add(hits, Ordering::Relaxed);
                stats.block_misses.fetch_add(total - hits, Ordering::Relaxed);
                first = false;
            }
            if missing.is_empty() && !waiting {
                return Ok(());
            }
            if first_wait {
                count_wait();
                first_wait = false;
            }
            if missing.is_empty() {
                let left = deadline.saturating_duration_since(std::time::Instant::now());
                let (g, _) = self.arrived.wait_timeout(b, left).unwrap_or_else(|p| p.into_inner());
                drop(g);
                if std::time::Instant::now() >= deadline {
                    return Err(CodecError::Unavailable {
                        timeout: true,
                        detail: "waited too long for a block".into(),
                    });
                }
                continue;
            }
            missing.sort_unstable();
            missing.dedup();
            if sequential {
                let last = *missing.last().unwrap_or(&0);
                let n = self.len.div_ceil(self.block);
                let mut i = last + 1;
                while i < n && i <= last + b.ahead && !bit(&b.present, i) && !bit(&b.inflight, i) {
                    missing.push(i);
                    i += 1;
                }
            }
            for &i in &missing {
                set(&mut b.inflight, i, true);
            }
            drop(b);
            let runs = split_runs(runs_of(&missing), self.piece_blocks());
            // Whatever happens below (an error, a panic), the blocks stop
            // being "in flight" and their waiters wake.
            let _inflight = Inflight { remote: self, blocks: missing };
            let got = self.fetch_blocking(runs.clone());
            match got {
                Ok(bodies) => self.store(&runs, bodies)?,
                Err(e) => return Err(e),
            }
        }
    }

    fn check(&self) -> Result<(), CodecError> {
        if self.changed() {
            Err(CodecError::SourceChanged)
        } else {
            Ok(())
        }
    }

    /// Writes fetched runs into the sparse file and marks their blocks.
    /// A write refused (a full folder) gives this version up: its readers
    /// get a 503 once, and the image is opened afresh (in memory, since the
    /// folder now counts as refusing).
    fn store(&self, runs: &[(u64, u64)], bodies: Vec<Bytes>) -> Result<(), CodecError> {
        for (&(lo, _), body) in runs.iter().zip(&bodies) {
            if let Err(e) = self.file.write_all_at(body, lo * self.block) {
                tracing::warn!(error = %e, in_memory = self.in_memory, "cannot store fetched blocks");
                if !self.in_memory {
                    self.folder.refuse_disk();
                }
                self.fetcher.stats.errors.fetch_add(1, Ordering::Relaxed);
                self.changed.store(true, Ordering::Relaxed);
                return Err(CodecError::SourceChanged);
            }
        }
        let mut b = self.lock();
        for (&(lo, hi), body) in runs.iter().zip(&bodies) {
            for i in lo..=hi {
                set(&mut b.present, i, true);
            }
            // What the run occupies on disk: whole pages (blocks smaller
            // than a page still take one each).
            let start = lo * self.block;
            let n = pages(start, start + body.len() as u64);
            b.stored += n;
            if b.counted {
                self.counter().fetch_add(n, Ordering::Relaxed);
            }
        }
        Ok(())
    }

    /// Fetches runs of blocks on the runtime, waiting here for all of them.
    fn fetch_blocking(self: &Arc<Self>, runs: Vec<(u64, u64)>) -> Result<Vec<Bytes>, CodecError> {
        let (tx, rx) = std::sync::mpsc::channel();
        let me = self.clone();
        let timeout = self.fetcher.timeout;
        let late = || CodecError::Unavailable { timeout: true, detail: "origin did not answer a range in time".into() };
        let task = self.fetcher.runtime.spawn(async move {
            let r = tokio::time::timeout(timeout, me.fetch_runs(&runs)).await.unwrap_or_else(|_| Err(late()));
            let _ = tx.send(r);
        });
        match rx.recv_timeout(timeout + Duration::from_secs(1)) {
            Ok(r) => r,
            Err(std::sync::mpsc::RecvTimeoutError::Timeout) => {
                task.abort();
                Err(late())
            }
            Err(std::sync::mpsc::RecvTimeoutError::Disconnected) => Err(CodecError::Unavailable {
                timeout: false,
                detail: "the range fetch ended without an answer".into(),
            }),
        }
    }

    /// Starts fetching `range` in the background (a guess at what the first
    /// reads will want, e.g. a TIFF's last directories): its blocks count as
    /// being fetched, so readers wait for this fetch instead of repeating it.
    pub fn prefetch(self: &Arc<Self>, range: (u64, u64)) {
        let Some((lo, hi)) = self.blocks_of(range) else { return };
        let missing: Vec<u64> = {
            let mut b = self.lock();
            let m: Vec<u64> = (lo..=hi).filter(|&i| !bit(&b.present, i) && !bit(&b.inflight, i)).collect();
            for &i in &m {
                set(&mut b.inflight, i, true);
            }
            m
        };
        if missing.is_empty() {
            return;
        }
        let me = self.clone();
        let runs = split_runs(runs_of(&missing), self.piece_blocks());
        self.fetcher.runtime.spawn(async move {
            let r = me.fetch_runs(&runs).await;
            // The sparse file is written from a blocking thread, as `need`
            // does; the guard clears the in-flight marks however it ends.
            let _ = tokio::task::spawn_blocking(move || {
                let inflight = Inflight { remote: &me, blocks: missing };
                if let Ok(bodies) = r {
                    let _ = inflight.remote.store(&runs, bodies);
                }
            })
            .await;
        });
    }

    /// All runs at once; the first failure is the result.
    async fn fetch_runs(&self, runs: &[(u64, u64)]) -> Result<Vec<Bytes>, CodecError> {
        use futures_util::StreamExt;
        // Made first, so that the stream holds futures, not a closure (a
        // closure there trips the `Send` check of the task that awaits it).
        let fetches: Vec<_> = runs.iter().map(|&r| Box::pin(self.fetch_run(r))).collect();
        let all: Vec<_> = futures_util::stream::iter(fetches).buffered(MAX_PARALLEL_RUNS).collect().await;
        all.into_iter().collect()
    }

    /// One request for blocks `lo..=hi`, retried after transient faults
    /// (5xx, resets, short bodies) with exponential back-off.
    async fn fetch_run(&self, (lo, hi): (u64, u64)) -> Result<Bytes, CodecError> {
        let start = lo * self.block;
        let end = ((hi + 1) * self.block).min(self.len) - 1;
        let stats = &self.fetcher.stats;
        let mut attempt = 0u32;
        loop {
            stats.requests.fetch_add(1, Ordering::Relaxed);
            let detail = match self.origin.get(start, end).await {
                Ok(body) if body.len() as u64 == end - start + 1 => {
                    stats.bytes.fetch_add(body.len() as u64, Ordering::Relaxed);
                    return Ok(body);
                }
                Ok(body) => format!("short range: {} of {} bytes", body.len(), end - start + 1),
                Err(Fault::Changed(why)) => return Err(self.mark_changed(&why)),
                Err(Fault::Failed { timeout, detail }) => {
                    stats.errors.fetch_add(1, Ordering::Relaxed);
                    return Err(CodecError::Unavailable { timeout, detail });
                }
                Err(Fault::Transient(detail)) => detail,
            };
            stats.errors.fetch_add(1, Ordering::Relaxed);
            if attempt >= self.fetcher.retries {
                return Err(CodecError::Unavailable { timeout: false, detail });
            }
            let backoff = self.fetcher.retry_backoff_ms.saturating_mul(1 << attempt.min(10));
            tokio::time::sleep(Duration::from_millis(backoff)).await;
            attempt += 1;
        }
    }

    fn mark_changed(&self, why: &str) -> CodecError {
        if !self.changed.swap(true, Ordering::Relaxed) {
            self.fetcher.stats.changed.fetch_add(1, Ordering::Relaxed);
            tracing::info!(origin = %self.origin.name(), why, "remote image changed while read by range");
        }
        CodecError::SourceChanged
    }
}

impl Drop for Remote {
    fn drop(&mut self) {
        self.uncount();
    }
}

/// Blocks marked in flight by one fetch: unmarked, and their waiters woken,
/// when it is dropped (after the fetch, on its errors and on a panic).
struct Inflight<'a> {
    remote: &'a Remote,
    blocks: Vec<u64>,
}

impl Drop for Inflight<'_> {
    fn drop(&mut self) {
        let mut b = self.remote.lock();
        for &i in &self.blocks {
            set(&mut b.inflight, i, false);
        }
        drop(b);
        self.remote.arrived.notify_all();
    }
}

/// Bytes of the file-system pages (4 KiB) that bytes `start..end` touch:
/// what a sparse file allocates for them, and what the bounds count (two
/// runs sharing a page count it twice: the bound errs on the safe side).
fn pages(start: u64, end: u64) -> u64 {
    const PAGE: u64 = 4096;
    if end <= start {
        return 0;
    }
    (end.div_ceil(PAGE) - start / PAGE) * PAGE
}

/// A new sparse file of `len` bytes at `path` holding `head` at offset 0
/// (removed again if it cannot be made whole).
fn sparse_file(path: &std::path::Path, len: u64, head: &[u8]) -> std::io::Result<File> {
    let file = std::fs::OpenOptions::new().read(true).write(true).create_new(true).open(path)?;
    match file.set_len(len).and_then(|()| file.write_all_at(head, 0)) {
        Ok(()) => Ok(file),
        Err(e) => {
            let _ = std::fs::remove_file(path);
            Err(e)
        }
    }
}

/// An anonymous memory file of `len` bytes holding `head` at offset 0: the
/// stand-in for a sparse file the folder refused. Its holes cost nothing;
/// the memory goes when its last handle and mapping do.
#[cfg(target_os = "linux")]
fn memory_file(len: u64, head: &[u8]) -> std::io::Result<File> {
    let fd = rustix::fs::memfd_create("tessera-remote", rustix::fs::MemfdFlags::CLOEXEC)?;
    let file = File::from(fd);
    file.set_len(len)?;
    file.write_all_at(head, 0)?;
    Ok(file)
}

#[cfg(not(target_os = "linux"))]
fn memory_file(_len: u64, _head: &[u8]) -> std::io::Result<File> {
    Err(std::io::Error::new(std::io::ErrorKind::Unsupported, "no memory files on this system"))
}

/// Runs longer than `piece` blocks cut into pieces of `piece` blocks,
/// fetched side by side.
fn split_runs(runs: Vec<(u64, u64)>, piece: u64) -> Vec<(u64, u64)> {
    let piece = piece.max(1);
    let mut out = Vec::with_capacity(runs.len());
    for (lo, hi) in runs {
        let mut a = lo;
        while a <= hi {
            let b = hi.min(a + piece - 1);
            out.push((a, b));
            a = b + 1;
        }
    }
    out
}

/// Sorted block indices → runs of adjacent blocks `(first, last)`.
fn runs_of(blocks: &[u64]) -> Vec<(u64, u64)> {
    let mut v: Vec<u64> = blocks.to_vec();
    v.sort_unstable();
    v.dedup();
    let mut runs: Vec<(u64, u64)> = Vec::new();
    for i in v {
        match runs.last_mut() {
            Some((_, hi)) if *hi + 1 == i => *hi = i,
            _ => runs.push((i, i)),
        }
    }
    runs
}

#[cfg(test)]
mod tests {
    use super::*;

    /// An origin serving `bytes` for any range.
    struct Fake(Vec<u8>);

    impl RangeOrigin for Fake {
        fn get(&self, start: u64, end: u64) -> RangeFuture<'_> {
            let body = Bytes::copy_from_slice(&self.0[start as usize..=end as usize]);
            Box::pin(async move { Ok(body) })
        }
        fn name(&self) -> &str {
            "fake"
        }
    }

    fn fetcher(rt: &tokio::runtime::Runtime) -> Fetcher {
        Fetcher {
            runtime: rt.handle().clone(),
            timeout: Duration::from_secs(5),
            retries: 0,
            retry_backoff_ms: 0,
            stats: Arc::new(RangeStats::default()),
        }
    }

    fn content() -> Vec<u8> {
        (0..40_000u32).map(|i| (i * 7 % 251) as u8).collect()
    }

    fn remote(rt: &tokio::runtime::Runtime, path: PathBuf, folder: &Arc<Counted>) -> Remote {
        let bytes = content();
        let head = bytes[..2048].to_vec();
        Remote::create(Box::new(Fake(bytes)), 40_000, 1024, 4096, path, &head, fetcher(rt), folder.clone()).unwrap()
    }

    fn read(r: &Remote, at: u64, n: usize) -> Vec<u8> {
        let mut v = vec![0; n];
        r.reopen().unwrap().read_exact_at(&mut v, at).unwrap();
        v
    }

    #[test]
    fn a_folder_that_refuses_the_sparse_file_keeps_the_blocks_in_memory_and_they_read_back() {
        let rt = tokio::runtime::Runtime::new().unwrap();
        let dir = tempfile::tempdir().unwrap();
        let folder = Arc::new(Counted::default());
        // A folder that is not there refuses the sparse file.
        let r = Arc::new(remote(&rt, dir.path().join("missing/x.rng"), &folder));
        assert!(r.in_memory());
        r.need(&[(30_000, 33_000)]).unwrap();
        assert_eq!(read(&r, 30_000, 3000), content()[30_000..33_000].to_vec());
        assert_eq!(folder.bytes.load(Ordering::Relaxed), 0);
        // Whole pages: the head's first page, and the page or two that
        // blocks 29..=32 (29 KiB to 33 KiB) touch.
        assert_eq!(folder.memory.load(Ordering::Relaxed), 4096 + 2 * 4096);
        // For a while, new remotes go to memory even where the folder is.
        let r2 = remote(&rt, dir.path().join("y.rng"), &folder);
        assert!(r2.in_memory() && !dir.path().join("y.rng").exists());
        r.uncount();
        r2.uncount();
        assert_eq!(folder.memory.load(Ordering::Relaxed), 0);
    }

    #[test]
    fn a_block_the_folder_refuses_mid_read_gives_the_version_up_and_the_next_goes_to_memory() {
        use std::os::unix::fs::FileExt as _;
        let rt = tokio::runtime::Runtime::new().unwrap();
        let dir = tempfile::tempdir().unwrap();
        let folder = Arc::new(Counted::default());
        let path = dir.path().join("x.rng");
        let mut r = remote(&rt, path.clone(), &folder);
        assert!(!r.in_memory());
        assert_eq!(folder.bytes.load(Ordering::Relaxed), 4096, "the head's page");
        // The folder stops taking writes (a read-only handle stands in for a full disk).
        r.file = File::open(&path).unwrap();
        assert!(r.file.write_at(b"x", 0).is_err());
        let r = Arc::new(r);
        assert!(matches!(r.need(&[(10_000, 11_000)]), Err(CodecError::SourceChanged)));
        assert!(r.changed());
        assert!(matches!(r.need(&[(0, 100)]), Err(CodecError::SourceChanged)), "never read again");
        let next = remote(&rt, dir.path().join("x2.rng"), &folder);
        assert!(next.in_memory());
    }

    #[test]
    fn stored_bytes_count_the_whole_pages_a_range_touches() {
        assert_eq!(pages(0, 0), 0);
        assert_eq!(pages(0, 1), 4096);
        assert_eq!(pages(1024, 2048), 4096);
        assert_eq!(pages(4095, 4097), 8192);
        assert_eq!(pages(4096, 8192), 4096);
        assert_eq!(pages(5, 3), 0);
    }

    #[test]
    fn long_runs_go_out_as_pieces_side_by_side() {
        assert_eq!(split_runs(vec![(0, 9), (20, 21)], 4), vec![(0, 3), (4, 7), (8, 9), (20, 21)]);
        assert_eq!(split_runs(vec![(5, 5)], 1), vec![(5, 5)]);
        assert_eq!(split_runs(vec![(0, 3)], 0), vec![(0, 0), (1, 1), (2, 2), (3, 3)]);
    }

    #[test]
    fn adjacent_blocks_merge_into_one_run() {
        assert_eq!(runs_of(&[5, 1, 2, 3, 7, 8, 2]), vec![(1, 3), (5, 5), (7, 8)]);
        assert!(runs_of(&[]).is_empty());
    }

    #[test]
    fn content_range_must_name_a_span_and_a_known_length() {
        assert_eq!(parse_content_range("bytes 0-65535/1000000"), Some((0, 65535, 1000000)));
        assert_eq!(parse_content_range("bytes 0-9/*"), None);
        assert_eq!(parse_content_range("bytes 9-0/100"), None);
        assert_eq!(parse_content_range("bytes 0-100/100"), None);
        assert_eq!(parse_content_range("items 0-1/2"), None);
    }

    #[test]
    fn weak_etags_never_go_in_if_range() {
        assert_eq!(usable_validator(Some("\"a\""), None).as_deref(), Some("\"a\""));
        assert_eq!(
            usable_validator(Some("W/\"a\""), Some("Mon, 07 Dec 2026 00:00:00 GMT")).as_deref(),
            Some("Mon, 07 Dec 2026 00:00:00 GMT")
        );
        assert_eq!(usable_validator(Some("W/\"a\""), None), None);
        assert_eq!(usable_validator(None, None), None);
    }
}
