//! Caches: encoded responses bounded in bytes (LRU-like, `quick_cache`'s
//! CLOCK-Pro with a byte weighter) and source headers (info); the disk tier
//! behind them (`tier`). The single-flight gate that makes any number of
//! identical concurrent misses cause exactly one render is `crate::flight`
//! (re-exported here).
//!
//! Architecture invariant: every key carries the source's version (size and
//! mtime), so a changed file is never served from cache; a deleted file fails
//! at source resolution (404) before the cache is consulted.
//! Failed renders are never cached; every waiter of a failed flight receives
//! the same error.

pub mod shared;
pub mod tier;

pub use crate::flight::{SingleFlight, Wanted};

use std::hash::Hash;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use bytes::Bytes;
use quick_cache::sync::Cache;
use quick_cache::{DefaultHashBuilder, Lifecycle, Weighter};

use crate::codec::ImageInfo;
use crate::source::SourceVersion;

/// An encoded image ready to send.
#[derive(Clone, Debug)]
pub struct Encoded {
    pub body: Bytes,
    pub media_type: &'static str,
}

/// Which tier answered an image request (the access log's `tier`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Tier {
    /// The hot path: a request seen before, answered from its kept headers.
    Hot,
    /// The memory cache of encoded tiles.
    Memory,
    /// The disk tier.
    Disk,
    /// The shared (Redis) tier, or another instance's render awaited.
    Shared,
    /// Rendered here (decoded, or passed through from a stored tile).
    Render,
    /// Rendered here after waiting on the origin of a remote master for
    /// some of its bytes (a cold read by range).
    Origin,
    /// Another request's render under way here, awaited.
    Coalesced,
}

impl Tier {
    pub fn as_str(self) -> &'static str {
        match self {
            Tier::Hot => "hot",
            Tier::Memory => "memory",
            Tier::Disk => "disk",
            Tier::Shared => "shared",
            Tier::Render => "render",
            Tier::Origin => "origin",
            Tier::Coalesced => "coalesced",
        }
    }
}

/// A tile-cache key: the source file, its version and the canonical request.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct TileKey {
    /// The file's cache key (see `source::Located::cache_key`).
    pub file: String,
    pub version: SourceVersion,
    pub canonical: String,
}

/// Counters for /metrics.
#[derive(Default, Debug)]
pub struct CacheStats {
    pub hits: AtomicU64,
    pub misses: AtomicU64,
    pub evictions: AtomicU64,
    pub inserts: AtomicU64,
    pub coalesced: AtomicU64,
}

#[derive(Clone)]
struct Bytewise;
impl Weighter<TileKey, Arc<Encoded>> for Bytewise {
    fn weight(&self, k: &TileKey, v: &Arc<Encoded>) -> u64 {
        // Body plus a rough per-entry overhead, so many tiny entries still count.
        (v.body.len() + k.file.len() + k.canonical.len() + 128) as u64
    }
}

#[derive(Clone)]
struct CountEvictions(Arc<CacheStats>);
impl<K, V> Lifecycle<K, V> for CountEvictions {
    type RequestState = ();
    fn on_evict(&self, _: &mut (), _: K, _: V) {
        self.0.evictions.fetch_add(1, Ordering::Relaxed);
    }
}

type Inner = Cache<TileKey, Arc<Encoded>, Bytewise, DefaultHashBuilder, CountEvictions>;

/// The cache of encoded responses.
pub struct TileCache {
    inner: Option<Inner>,
    stats: Arc<CacheStats>,
}

impl TileCache {
    /// A cache of at most `max_bytes` (0 disables caching; lookups miss).
    pub fn new(max_bytes: u64) -> Self {
        let stats = Arc::new(CacheStats::default());
        let inner = (max_bytes > 0).then(|| {
            // Estimate ~40 KB per tile to size the index.
            let items = (max_bytes / 40_000).clamp(64, 1 << 20) as usize;
            Cache::with(items, max_bytes, Bytewise, DefaultHashBuilder::default(), CountEvictions(stats.clone()))
        });
        TileCache { inner, stats }
    }

    pub fn get(&self, k: &TileKey) -> Option<Arc<Encoded>> {
        let v = self.inner.as_ref().and_then(|c| c.get(k));
        let ctr = if v.is_some() { &self.stats.hits } else { &self.stats.misses };
        ctr.fetch_add(1, Ordering::Relaxed);
        v
    }

    /// Whether `k` is cached, without counting a hit or a miss or marking it
    /// used.
    pub fn contains(&self, k: &TileKey) -> bool {
        self.inner.as_ref().is_some_and(|c| c.peek(k).is_some())
    }

    pub fn insert(&self, k: TileKey, v: Arc<Encoded>) {
        if let Some(c) = &self.inner {
            c.insert(k, v);
            self.stats.inserts.fetch_add(1, Ordering::Relaxed);
        }
    }

    /// Drops every entry of one file (all versions), by its cache key.
    pub fn purge(&self, file: &str) -> usize {
        let Some(c) = &self.inner else { return 0 };
        let before = c.len();
        c.retain(|k, _| k.file != file);
        before.saturating_sub(c.len())
    }

    pub fn purge_all(&self) -> usize {
        let Some(c) = &self.inner else { return 0 };
        let n = c.len();
        c.clear();
        n
    }

    pub fn bytes(&self) -> u64 {
        self.inner.as_ref().map(|c| c.weight()).unwrap_or(0)
    }
    pub fn capacity(&self) -> u64 {
        self.inner.as_ref().map(|c| c.capacity()).unwrap_or(0)
    }
    pub fn len(&self) -> usize {
        self.inner.as_ref().map(|c| c.len()).unwrap_or(0)
    }
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
    pub fn stats(&self) -> &CacheStats {
        &self.stats
    }
}

/// Header facts per (identifier, version): an info.json never decodes pixels
/// and a tile request never re-reads a header.
pub struct InfoCache {
    inner: Cache<(String, SourceVersion), Arc<ImageInfo>>,
}

impl InfoCache {
    pub fn new(entries: usize) -> Self {
        InfoCache { inner: Cache::new(entries.max(16)) }
    }
    pub fn get(&self, id: &str, v: SourceVersion) -> Option<Arc<ImageInfo>> {
        self.inner.get(&(id.to_string(), v))
    }
    pub fn insert(&self, id: &str, v: SourceVersion, info: Arc<ImageInfo>) {
        self.inner.insert((id.to_string(), v), info);
    }
    pub fn purge(&self, id: &str) {
        self.inner.retain(|k, _| k.0 != id);
    }
    pub fn purge_all(&self) {
        self.inner.clear();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key(id: &str, c: &str) -> TileKey {
        TileKey { file: id.into(), version: SourceVersion { len: 1, mtime_ns: 2 }, canonical: c.into() }
    }
    fn enc(n: usize) -> Arc<Encoded> {
        Arc::new(Encoded { body: Bytes::from(vec![0u8; n]), media_type: "image/jpeg" })
    }

    #[test]
    fn the_cache_stays_within_its_byte_bound() {
        let c = TileCache::new(1_000_000);
        for i in 0..200 {
            c.insert(key("a", &i.to_string()), enc(50_000));
        }
        assert!(c.bytes() <= 1_000_000, "{} bytes", c.bytes());
        assert!(c.stats().evictions.load(Ordering::Relaxed) > 0);
    }

    #[test]
    fn purge_removes_one_identifier_only() {
        let c = TileCache::new(10_000_000);
        c.insert(key("a", "1"), enc(10));
        c.insert(key("a", "2"), enc(10));
        c.insert(key("b", "1"), enc(10));
        assert_eq!(c.purge("a"), 2);
        assert!(c.get(&key("a", "1")).is_none());
        assert!(c.get(&key("b", "1")).is_some());
    }

    #[test]
    fn a_new_source_version_is_a_different_key() {
        let c = TileCache::new(10_000_000);
        c.insert(key("a", "1"), enc(10));
        let mut k2 = key("a", "1");
        k2.version.mtime_ns += 1;
        assert!(c.get(&k2).is_none());
    }
}
