//! The persistent tile tier: encoded tiles kept on disk behind the memory
//! cache, bounded in bytes, least recently used first out, surviving a
//! restart. The second viewer of an image, a week later, gets its tiles
//! with no decode.
//!
//! [`TileTier`] is the seam: the service asks a tier for a tile after a
//! memory miss and offers it every tile it renders (or encodes eagerly).
//! [`DiskTier`] is the one implementation today; a shared store (Redis, an
//! object store) for several instances can stand behind the same trait.
//!
//! Layout under the configured folder:
//! ```text
//! lock                     held (flock) by the one server using the folder
//! ab/ab12…ef/0123…cdef.t   one tile: ab12…ef hashes the file's cache key,
//!                          0123…cdef its version, the render settings and
//!                          the canonical request
//! ```
//! A tile file starts with a header naming its whole key, checked on every
//! read, so a hash collision, a truncated file or a file from another
//! build reads as a miss, never as another tile. Files are written under a
//! temporary name and renamed, so a reader (or a crash) never sees half a
//! tile.
//!
//! Keys are those of the memory cache (file, version, canonical request)
//! plus a fingerprint of everything else that shapes the bytes (JPEG
//! quality, Tessera's version): a configuration change makes old tiles
//! unreachable rather than wrong, and the LRU bound retires them.
//!
//! Work off the reactor: reads run on tokio's blocking threads; writes go to
//! one writer thread through a bounded queue and are dropped (counted) when
//! it is full, since a tier is a cache and nothing is lost. At start, a
//! background scan indexes the folder (oldest modification first) and
//! evicts down to the bound; reads work during the scan.

use std::collections::{BTreeMap, HashMap};
use std::fs::{self, File};
use std::future::Future;
use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::mpsc::{sync_channel, Receiver, SyncSender, TrySendError};

use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime};

use bytes::Bytes;

use super::{Encoded, TileKey};
use crate::source::fnv1a;

/// A future returned by a tier.
pub type TierFuture<'a, T> = Pin<Box<dyn Future<Output = T> + Send + 'a>>;

/// A store of encoded tiles behind the memory cache.
pub trait TileTier: Send + Sync {
    /// The tile under `key`, if the tier holds it intact.
    fn get<'a>(&'a self, key: &'a TileKey) -> TierFuture<'a, Option<Encoded>>;
    /// Offers a tile; kept when there is room to write it (best effort).
    fn put(&self, key: &TileKey, value: &Arc<Encoded>);
    /// Drops every tile of one file (all versions).
    fn purge(&self, file: &str);
    /// Drops every tile.
    fn purge_all(&self);
    /// Appends the tier's counters in Prometheus text format.
    fn render_metrics(&self, out: &mut String);
}

/// First bytes of a tile file.
const MAGIC: &[u8; 8] = b"TSRTILE1";
/// The suffix of tile files (temporary ones end otherwise).
const SUFFIX: &str = ".t";
/// Writes waiting for the writer thread before new ones are dropped.
const WRITE_QUEUE: usize = 4096;
/// Index entries scanned at start get sequence numbers below this; entries
/// written or read since get numbers above it, so they are newer.
const LIVE_SEQ: u64 = 1 << 48;
/// A hit rewrites a file's modification time (its recency after a restart)
/// at most this often.
const TOUCH_EVERY: Duration = Duration::from_secs(600);

/// Why the tier could not open its folder.
#[derive(Debug, thiserror::Error)]
pub enum TierError {
    #[error("creating or reading the tile folder {0}: {1}")]
    Io(PathBuf, std::io::Error),
    #[error("the tile folder {0} is in use by another running server")]
    Locked(PathBuf),
}

#[derive(Default, Debug)]
pub struct TierStats {
    pub hits: AtomicU64,
    pub misses: AtomicU64,
    pub writes: AtomicU64,
    pub writes_dropped: AtomicU64,
    pub evictions: AtomicU64,
    pub errors: AtomicU64,
}

/// Where an entry lives: hashes of the file key and of the rest of the key.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
struct Slot {
    file: u64,
    entry: u64,
}

struct Meta {
    bytes: u64,
    seq: u64,
    touched: SystemTime,
}

#[derive(Default)]
struct Index {
    entries: HashMap<Slot, Meta>,
    order: BTreeMap<u64, Slot>,
    bytes: u64,
    next_seq: u64,
}

impl Index {
    fn insert(&mut self, slot: Slot, bytes: u64, seq: u64, touched: SystemTime) {
        self.remove(slot);
        self.entries.insert(slot, Meta { bytes, seq, touched });
        self.order.insert(seq, slot);
        self.bytes += bytes;
    }

    fn remove(&mut self, slot: Slot) -> Option<Meta> {
        let m = self.entries.remove(&slot)?;
        self.order.remove(&m.seq);
        self.bytes = self.bytes.saturating_sub(m.bytes);
        Some(m)
    }

    fn live_seq(&mut self) -> u64 {
        self.next_seq += 1;
        LIVE_SEQ + self.next_seq
    }

    /// Marks `slot` used now; true when its file's time should be rewritten.
    fn bump(&mut self, slot: Slot, now: SystemTime) -> bool {
        let seq = self.live_seq();
        let Some(m) = self.entries.get_mut(&slot) else { return false };
        self.order.remove(&m.seq);
        m.seq = seq;
        self.order.insert(seq, slot);
        let stale = now.duration_since(m.touched).map(|d| d >= TOUCH_EVERY).unwrap_or(false);
        if stale {
            m.touched = now;
        }
        stale
    }
}

struct Inner {
    root: PathBuf,
    max_bytes: u64,
    fingerprint: u64,
    index: Mutex<Index>,
    stats: TierStats,
    scanned: AtomicBool,
    /// Held for the tier's life: the folder's lock.
    _lock: File,
}

/// Work for the writer thread.
enum WriteJob {
    Put(TileKey, Arc<Encoded>),
    /// Drop one file's tiles (by the hash of its key), or all.
    Purge(Option<u64>),
    /// Answered once every write queued before it is done.
    Flush(SyncSender<()>),
}

/// Encoded tiles in a folder, bounded in bytes (see the module comment).
pub struct DiskTier {
    inner: Arc<Inner>,
    writes: SyncSender<WriteJob>,
}

impl DiskTier {
    /// Opens (creating) the folder, takes its lock, and starts the writer
    /// and the scan. `fingerprint` names the render settings (see the module
    /// comment).
    pub fn open(root: &Path, max_bytes: u64, fingerprint: u64) -> Result<DiskTier, TierError> {
        let io = |e| TierError::Io(root.to_path_buf(), e);
        fs::create_dir_all(root).map_err(io)?;
        let lock = File::options().create(true).truncate(false).write(true).open(root.join("lock")).map_err(io)?;
        match lock.try_lock() {
            Ok(()) => {}
            Err(fs::TryLockError::WouldBlock) => return Err(TierError::Locked(root.to_path_buf())),
            Err(fs::TryLockError::Error(e)) => return Err(io(e)),
        }
        let inner = Arc::new(Inner {
            root: root.to_path_buf(),
            max_bytes,
            fingerprint,
            index: Mutex::new(Index::default()),
            stats: TierStats::default(),
            scanned: AtomicBool::new(false),
            _lock: lock,
        });
        let (tx, rx) = sync_channel(WRITE_QUEUE);
        let w = inner.clone();
        std::thread::Builder::new().name("tessera-tier-writer".into()).spawn(move || writer(&w, rx)).map_err(io)?;
        let s = inner.clone();
        std::thread::Builder::new().name("tessera-tier-scan".into()).spawn(move || s.scan()).map_err(io)?;
        Ok(DiskTier { inner, writes: tx })
    }

    pub fn stats(&self) -> &TierStats {
        &self.inner.stats
    }

    /// Bytes the index holds (tiles found by the scan so far included).
    pub fn bytes(&self) -> u64 {
        self.inner.lock_index().bytes
    }

    pub fn len(&self) -> usize {
        self.inner.lock_index().entries.len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Whether the start-up scan has finished.
    pub fn scanned(&self) -> bool {
        self.inner.scanned.load(Ordering::Acquire)
    }

    /// Waits (blocking, at most 10 s) until the writes queued so far are on
    /// disk.
    pub fn flush(&self) {
        let (tx, rx) = sync_channel(1);
        if self.writes.send(WriteJob::Flush(tx)).is_ok() {
            let _ = rx.recv_timeout(Duration::from_secs(10));
        }
    }

    /// Queues a purge behind the writes already queued (so none of them
    /// lands after it), never dropped. A full queue (a slow disk) is waited
    /// out on a blocking thread, not on the caller's: purges come from
    /// request handlers on the reactor.
    fn queue_purge(&self, file: Option<u64>) {
        match self.writes.try_send(WriteJob::Purge(file)) {
            Ok(()) | Err(TrySendError::Disconnected(_)) => {}
            Err(TrySendError::Full(job)) => {
                let writes = self.writes.clone();
                let send = move || {
                    let _ = writes.send(job);
                };
                match tokio::runtime::Handle::try_current() {
                    Ok(h) => drop(h.spawn_blocking(send)),
                    Err(_) => send(),
                }
            }
        }
    }

    /// Reads a tile (blocking).
    fn read(inner: &Inner, key: &TileKey) -> Option<Encoded> {
        let slot = inner.slot(key);
        let path = inner.path(slot);
        let mut f = match File::open(&path) {
            Ok(f) => f,
            Err(_) => {
                inner.stats.misses.fetch_add(1, Ordering::Relaxed);
                return None;
            }
        };
        let mut buf = Vec::new();
        let ok = f.read_to_end(&mut buf).is_ok();
        let parsed = if ok { parse(&buf, &inner.full_key(key)) } else { None };
        let Some((media_type, start)) = parsed else {
            // A torn, foreign or colliding file: a miss, and gone.
            inner.stats.misses.fetch_add(1, Ordering::Relaxed);
            inner.stats.errors.fetch_add(1, Ordering::Relaxed);
            return None;
        };
        inner.stats.hits.fetch_add(1, Ordering::Relaxed);
        let now = SystemTime::now();
        if inner.lock_index().bump(slot, now) {
            let _ = f.set_modified(now);
        }
        let body = Bytes::from(buf).slice(start..);
        Some(Encoded { body, media_type })
    }
}

impl TileTier for DiskTier {
    fn get<'a>(&'a self, key: &'a TileKey) -> TierFuture<'a, Option<Encoded>> {
        let inner = self.inner.clone();
        let key = key.clone();
        Box::pin(async move { tokio::task::spawn_blocking(move || DiskTier::read(&inner, &key)).await.ok().flatten() })
    }

    fn put(&self, key: &TileKey, value: &Arc<Encoded>) {
        if self.inner.max_bytes == 0 || media_code(value.media_type).is_none() {
            return;
        }
        match self.writes.try_send(WriteJob::Put(key.clone(), value.clone())) {
            Ok(()) => {}
            Err(TrySendError::Full(_)) | Err(TrySendError::Disconnected(_)) => {
                self.inner.stats.writes_dropped.fetch_add(1, Ordering::Relaxed);
            }
        }
    }

    // Purges go through the writer's queue: done off the reactor, and after
    // the writes queued before them.
    fn purge(&self, file: &str) {
        self.queue_purge(Some(fnv1a(&[file.as_bytes()])));
    }

    fn purge_all(&self) {
        self.queue_purge(None);
    }

    fn render_metrics(&self, out: &mut String) {
        use std::fmt::Write as _;
        let s = &self.inner.stats;
        let counters = [
            ("tessera_tier_hits_total", "Tiles read from the disk tier", &s.hits),
            ("tessera_tier_misses_total", "Disk tier lookups that found no intact tile", &s.misses),
            ("tessera_tier_writes_total", "Tiles written to the disk tier", &s.writes),
            (
                "tessera_tier_writes_dropped_total",
                "Tiles not written because the write queue was full",
                &s.writes_dropped,
            ),
            ("tessera_tier_evictions_total", "Tiles removed from the disk tier to keep its bound", &s.evictions),
            (
                "tessera_tier_errors_total",
                "Disk tier files unreadable or failing their key check, and failed writes",
                &s.errors,
            ),
        ];
        for (name, help, v) in counters {
            let _ = writeln!(out, "# HELP {name} {help}\n# TYPE {name} counter\n{name} {}", v.load(Ordering::Relaxed));
        }
        let (bytes, entries) = {
            let ix = self.inner.lock_index();
            (ix.bytes, ix.entries.len())
        };
        let _ = writeln!(
            out,
            "# HELP tessera_tier_bytes Bytes of tiles in the disk tier\n# TYPE tessera_tier_bytes gauge\ntessera_tier_bytes {bytes}\n\
             # HELP tessera_tier_entries Tiles in the disk tier\n# TYPE tessera_tier_entries gauge\ntessera_tier_entries {entries}\n\
             # HELP tessera_tier_capacity_bytes Byte bound of the disk tier\n# TYPE tessera_tier_capacity_bytes gauge\ntessera_tier_capacity_bytes {}",
            self.inner.max_bytes
        );
    }
}

impl Inner {
    fn lock_index(&self) -> std::sync::MutexGuard<'_, Index> {
        self.index.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// The whole key as written into (and checked against) the file header.
    fn full_key(&self, key: &TileKey) -> String {
        full_key(key, self.fingerprint)
    }

    fn slot(&self, key: &TileKey) -> Slot {
        let (file, entry) = key_hashes(key, self.fingerprint);
        Slot { file, entry }
    }

    fn file_dir(&self, file: u64) -> PathBuf {
        let f = format!("{file:016x}");
        self.root.join(&f[..2]).join(f)
    }

    fn path(&self, slot: Slot) -> PathBuf {
        self.file_dir(slot.file).join(format!("{:016x}{SUFFIX}", slot.entry))
    }

    /// Writes one tile (on the writer thread), then evicts to the bound.
    fn write(&self, key: &TileKey, value: &Encoded) {
        let Some(head) = record_head(&self.full_key(key), value) else { return };
        let slot = self.slot(key);
        let bytes = disk_bytes(head.len() as u64 + value.body.len() as u64);
        if bytes > self.max_bytes / 2 {
            return;
        }
        let dir = self.file_dir(slot.file);
        let path = self.path(slot);
        let tmp = dir.join(format!(".{:016x}.{}.tmp", slot.entry, std::process::id()));
        let written = fs::create_dir_all(&dir).and_then(|_| {
            let mut f = File::create(&tmp)?;
            f.write_all(&head)?;
            f.write_all(&value.body)?;
            fs::rename(&tmp, &path)
        });
        if written.is_err() {
            let _ = fs::remove_file(&tmp);
            self.stats.errors.fetch_add(1, Ordering::Relaxed);
            return;
        }
        self.stats.writes.fetch_add(1, Ordering::Relaxed);
        {
            let mut ix = self.lock_index();
            let seq = ix.live_seq();
            ix.insert(slot, bytes, seq, SystemTime::now());
        }
        self.evict();
    }

    /// Removes one file's tiles, or every tile.
    fn purge(&self, file: Option<u64>) {
        match file {
            Some(file) => {
                let _ = fs::remove_dir_all(self.file_dir(file));
                let mut ix = self.lock_index();
                let gone: Vec<Slot> = ix.entries.keys().filter(|s| s.file == file).copied().collect();
                for s in gone {
                    ix.remove(s);
                }
            }
            None => {
                for top in read_dirs(&self.root) {
                    if is_hex(&name_of(&top), 2) {
                        let _ = fs::remove_dir_all(top);
                    }
                }
                let mut ix = self.lock_index();
                *ix = Index { next_seq: ix.next_seq, ..Index::default() };
            }
        }
    }

    /// Removes the least recently used tiles until the bound holds.
    fn evict(&self) {
        loop {
            let victim = {
                let mut ix = self.lock_index();
                if ix.bytes <= self.max_bytes {
                    return;
                }
                let Some((_, slot)) = ix.order.pop_first() else { return };
                if let Some(m) = ix.entries.remove(&slot) {
                    ix.bytes = ix.bytes.saturating_sub(m.bytes);
                }
                slot
            };
            let _ = fs::remove_file(self.path(victim));
            self.stats.evictions.fetch_add(1, Ordering::Relaxed);
        }
    }

    /// Indexes the tiles already in the folder, oldest first, removes
    /// temporary files left by a crash, then evicts to the bound.
    fn scan(&self) {
        let own_tmp = format!(".{}.tmp", std::process::id());
        let mut found: Vec<(SystemTime, Slot, u64)> = Vec::new();
        for top in read_dirs(&self.root) {
            if !is_hex(&name_of(&top), 2) {
                continue;
            }
            for file_dir in read_dirs(&top) {
                let Some(file) = parse_hex(&name_of(&file_dir)) else { continue };
                let Ok(entries) = fs::read_dir(&file_dir) else { continue };
                for e in entries.flatten() {
                    let name = e.file_name().to_string_lossy().into_owned();
                    if name.ends_with(".tmp") {
                        // Left by a server that stopped mid-write (the folder
                        // lock says it is gone). This process's own are being
                        // written right now by the writer thread: removing one
                        // between its creation and its rename lost the tile.
                        if !name.ends_with(&own_tmp) {
                            let _ = fs::remove_file(e.path());
                        }
                        continue;
                    }
                    let Some(entry) = name.strip_suffix(SUFFIX).and_then(parse_hex) else { continue };
                    let Ok(meta) = e.metadata() else { continue };
                    let modified = meta.modified().unwrap_or(SystemTime::UNIX_EPOCH);
                    found.push((modified, Slot { file, entry }, disk_bytes(meta.len())));
                }
            }
        }
        found.sort_by_key(|(t, s, _)| (*t, *s));
        {
            let mut ix = self.lock_index();
            for (seq, (modified, slot, bytes)) in found.into_iter().enumerate() {
                // A tile written or read since start is already newer.
                if !ix.entries.contains_key(&slot) {
                    ix.insert(slot, bytes, seq as u64, modified);
                }
            }
        }
        self.scanned.store(true, Ordering::Release);
        self.evict();
    }
}

fn writer(inner: &Inner, rx: Receiver<WriteJob>) {
    while let Ok(w) = rx.recv() {
        match w {
            WriteJob::Put(key, value) => inner.write(&key, &value),
            WriteJob::Purge(file) => inner.purge(file),
            WriteJob::Flush(done) => {
                let _ = done.try_send(());
            }
        }
    }
}

/// The whole key of a tile as its record states it: file key, version,
/// render-settings fingerprint and canonical request.
pub(super) fn full_key(key: &TileKey, fingerprint: u64) -> String {
    format!("{}\n{}:{}\n{:016x}\n{}", key.file, key.version.len, key.version.mtime_ns, fingerprint, key.canonical)
}

/// Two hashes naming a tile: its file's (so one file's tiles can be found
/// together) and the rest of its key's.
pub(super) fn key_hashes(key: &TileKey, fingerprint: u64) -> (u64, u64) {
    (
        fnv1a(&[key.file.as_bytes()]),
        fnv1a(&[
            &key.version.len.to_le_bytes(),
            &key.version.mtime_ns.to_le_bytes(),
            &fingerprint.to_le_bytes(),
            key.canonical.as_bytes(),
        ]),
    )
}

/// The head of a tile record (magic, media type, the whole key), which the
/// body follows; None for a media type tiers do not keep. The disk tier
/// writes records as files, the shared tier as values.
pub(super) fn record_head(full_key: &str, value: &Encoded) -> Option<Vec<u8>> {
    let code = media_code(value.media_type)?;
    let mut head = Vec::with_capacity(MAGIC.len() + 5 + full_key.len());
    head.extend_from_slice(MAGIC);
    head.push(code);
    head.extend_from_slice(&(full_key.len() as u32).to_le_bytes());
    head.extend_from_slice(full_key.as_bytes());
    Some(head)
}

/// The body's offset and media type, if `buf` is an intact tile of `key`.
pub(super) fn parse(buf: &[u8], key: &str) -> Option<(&'static str, usize)> {
    let rest = buf.strip_prefix(MAGIC.as_slice())?;
    let (&code, rest) = rest.split_first()?;
    let len = u32::from_le_bytes(rest.get(..4)?.try_into().ok()?) as usize;
    let stored = rest.get(4..4 + len)?;
    (stored == key.as_bytes()).then_some((media_type(code)?, MAGIC.len() + 1 + 4 + len))
}

const MEDIA_TYPES: [&str; 5] = ["image/jpeg", "image/png", "image/gif", "image/tiff", "image/webp"];

fn media_code(t: &str) -> Option<u8> {
    MEDIA_TYPES.iter().position(|m| *m == t).map(|i| i as u8)
}

fn media_type(code: u8) -> Option<&'static str> {
    MEDIA_TYPES.get(code as usize).copied()
}

/// Bytes a file of `len` bytes takes on disk (whole 4 KiB blocks).
fn disk_bytes(len: u64) -> u64 {
    len.div_ceil(4096).max(1) * 4096
}

fn read_dirs(dir: &Path) -> Vec<PathBuf> {
    fs::read_dir(dir)
        .map(|it| {
            it.flatten().filter(|e| e.file_type().map(|t| t.is_dir()).unwrap_or(false)).map(|e| e.path()).collect()
        })
        .unwrap_or_default()
}

fn name_of(p: &Path) -> String {
    p.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default()
}

fn is_hex(s: &str, len: usize) -> bool {
    s.len() == len && s.bytes().all(|b| b.is_ascii_hexdigit())
}

fn parse_hex(s: &str) -> Option<u64> {
    is_hex(s, 16).then(|| u64::from_str_radix(s, 16).ok()).flatten()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::source::SourceVersion;

    fn key(file: &str, canonical: &str) -> TileKey {
        TileKey { file: file.into(), version: SourceVersion { len: 10, mtime_ns: 20 }, canonical: canonical.into() }
    }

    fn tile(n: usize, fill: u8) -> Arc<Encoded> {
        Arc::new(Encoded { body: Bytes::from(vec![fill; n]), media_type: "image/jpeg" })
    }

    /// Opens `dir` again once the previous tier's threads have let go of it.
    fn reopen(dir: &Path, max: u64, fp: u64) -> DiskTier {
        for _ in 0..200 {
            match DiskTier::open(dir, max, fp) {
                Ok(t) => return t,
                Err(TierError::Locked(_)) => std::thread::sleep(Duration::from_millis(10)),
                Err(e) => panic!("{e}"),
            }
        }
        panic!("the tier's folder stayed locked");
    }

    fn wait_scanned(t: &DiskTier) {
        while !t.scanned() {
            std::thread::sleep(Duration::from_millis(5));
        }
    }

    #[tokio::test]
    async fn a_written_tile_reads_back_and_survives_a_restart() {
        let dir = tempfile::tempdir().unwrap();
        let t = DiskTier::open(dir.path(), 1 << 20, 7).unwrap();
        let k = key("/img/a.jp2", "0:0,0,256,256/256,/0/default.jpg");
        assert!(t.get(&k).await.is_none());
        t.put(&k, &tile(1000, 3));
        t.flush();
        let got = t.get(&k).await.expect("hit");
        assert_eq!((got.body.len(), got.body[0], got.media_type), (1000, 3, "image/jpeg"));
        drop(t);
        let t = reopen(dir.path(), 1 << 20, 7);
        wait_scanned(&t);
        assert_eq!(t.len(), 1, "the scan indexed the tile written before the restart");
        assert_eq!(t.get(&k).await.expect("hit after restart").body, tile(1000, 3).body);
    }

    #[tokio::test]
    async fn other_settings_versions_or_keys_never_read_a_tile() {
        let dir = tempfile::tempdir().unwrap();
        let t = DiskTier::open(dir.path(), 1 << 20, 7).unwrap();
        let k = key("/img/a.jp2", "0:full/max/0/default.jpg");
        t.put(&k, &tile(100, 1));
        t.flush();
        let mut newer = k.clone();
        newer.version.mtime_ns += 1;
        assert!(t.get(&newer).await.is_none(), "another version of the file");
        drop(t);
        let t = reopen(dir.path(), 1 << 20, 8);
        assert!(t.get(&k).await.is_none(), "another render fingerprint");
    }

    #[tokio::test]
    async fn a_torn_or_foreign_file_reads_as_a_miss() {
        let dir = tempfile::tempdir().unwrap();
        let t = DiskTier::open(dir.path(), 1 << 20, 7).unwrap();
        let (a, b) = (key("/a.jp2", "0:x"), key("/a.jp2", "0:y"));
        t.put(&a, &tile(100, 1));
        t.flush();
        // b's file holding a's bytes: as if the hashes collided.
        let ia = t.inner.path(t.inner.slot(&a));
        let ib = t.inner.path(t.inner.slot(&b));
        fs::copy(&ia, &ib).unwrap();
        assert!(t.get(&b).await.is_none());
        // A file cut short inside its header.
        let f = File::options().write(true).open(&ia).unwrap();
        f.set_len(12).unwrap();
        assert!(t.get(&a).await.is_none());
        assert_eq!(t.stats().errors.load(Ordering::Relaxed), 2);
    }

    #[tokio::test]
    async fn the_least_recently_used_tiles_leave_first_to_keep_the_bound() {
        let dir = tempfile::tempdir().unwrap();
        // Room for four 4 KiB blocks.
        let t = DiskTier::open(dir.path(), 4 * 4096, 7).unwrap();
        wait_scanned(&t);
        let k = |i: u32| key("/a.jp2", &format!("0:{i}"));
        for i in 0..4 {
            t.put(&k(i), &tile(1000, i as u8));
        }
        t.flush();
        // Tile 0 read: now the most recent.
        assert!(t.get(&k(0)).await.is_some());
        t.put(&k(4), &tile(1000, 4));
        t.flush();
        assert!(t.bytes() <= 4 * 4096);
        assert!(t.get(&k(1)).await.is_none(), "the least recently used went");
        for i in [0, 2, 3, 4] {
            assert!(t.get(&k(i)).await.is_some(), "tile {i} kept");
        }
        assert_eq!(t.stats().evictions.load(Ordering::Relaxed), 1);
    }

    #[test]
    fn the_start_scan_removes_stale_temp_files_but_not_ones_being_written() {
        let dir = tempfile::tempdir().unwrap();
        let file_dir = dir.path().join("ab").join("ab00000000000000");
        fs::create_dir_all(&file_dir).unwrap();
        let stale = file_dir.join(".0000000000000001.4194305.tmp");
        let mine = file_dir.join(format!(".0000000000000002.{}.tmp", std::process::id()));
        fs::write(&stale, b"x").unwrap();
        fs::write(&mine, b"x").unwrap();
        let t = DiskTier::open(dir.path(), 1 << 20, 7).unwrap();
        wait_scanned(&t);
        assert!(!stale.exists(), "left by a server that is gone");
        assert!(mine.exists(), "this server's writer may be between create and rename");
    }

    #[tokio::test]
    async fn purging_a_file_drops_its_tiles_only() {
        let dir = tempfile::tempdir().unwrap();
        let t = DiskTier::open(dir.path(), 1 << 20, 7).unwrap();
        t.put(&key("/a.jp2", "0:x"), &tile(10, 1));
        t.put(&key("/b.jp2", "0:x"), &tile(10, 2));
        t.flush();
        t.purge("/a.jp2");
        t.flush();
        assert!(t.get(&key("/a.jp2", "0:x")).await.is_none());
        assert!(t.get(&key("/b.jp2", "0:x")).await.is_some());
        t.purge_all();
        t.flush();
        assert!(t.get(&key("/b.jp2", "0:x")).await.is_none());
        assert_eq!(t.len(), 0);
    }

    #[test]
    fn a_second_server_cannot_take_a_folder_in_use() {
        let dir = tempfile::tempdir().unwrap();
        let _t = DiskTier::open(dir.path(), 1 << 20, 7).unwrap();
        assert!(matches!(DiskTier::open(dir.path(), 1 << 20, 7), Err(TierError::Locked(_))));
    }
}
