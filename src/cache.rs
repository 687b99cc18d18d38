//! Caches: encoded responses bounded in bytes (LRU-like, `quick_cache`'s
//! CLOCK-Pro with a byte weighter), source headers (info), and a
//! single-flight gate so that any number of identical concurrent misses cause
//! exactly one render.
//!
//! Architecture invariant: every key carries the source's version (size and
//! mtime), so a changed file is never served from cache; a deleted file fails
//! at source resolution (404) before the cache is consulted.
//! Failed renders are never cached; every waiter of a failed flight receives
//! the same error.

pub mod tier;

use std::collections::HashMap;
use std::hash::Hash;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use bytes::Bytes;
use quick_cache::sync::Cache;
use quick_cache::{DefaultHashBuilder, Lifecycle, Weighter};
use tokio::sync::watch;

use crate::codec::ImageInfo;
use crate::source::SourceVersion;

/// An encoded image ready to send.
#[derive(Clone, Debug)]
pub struct Encoded {
    pub body: Bytes,
    pub media_type: &'static str,
}

/// A tile-cache key: the source file, its version and the canonical request.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct TileKey {
    /// The file's cache key (see `source::Located::cache_key`).
    pub identifier: String,
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
        (v.body.len() + k.identifier.len() + k.canonical.len() + 128) as u64
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

    /// Drops every entry of one identifier (all versions).
    pub fn purge(&self, identifier: &str) -> usize {
        let Some(c) = &self.inner else { return 0 };
        let before = c.len();
        c.retain(|k, _| k.identifier != identifier);
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

/// Runs one computation per key at a time; concurrent callers with the same
/// key share its result (success or error).
pub struct SingleFlight<K, V> {
    flights: Mutex<HashMap<K, Flight<V>>>,
}

/// A flight under way: where its result will appear, and who waits for it.
type Flight<V> = (watch::Receiver<Option<V>>, Wanted);

/// Whether anyone still waits for a flight's result: the callers of
/// [`SingleFlight::run`] count themselves in while they wait, and out when
/// they return or are dropped (a client that hung up drops its request).
/// A computation checks it before costly work that nobody else would reuse.
#[derive(Clone, Default)]
pub struct Wanted(Arc<std::sync::atomic::AtomicUsize>);

impl Wanted {
    /// At least one caller still waits.
    pub fn is_wanted(&self) -> bool {
        self.0.load(Ordering::Acquire) > 0
    }

    fn join(&self) -> Waiting {
        self.0.fetch_add(1, Ordering::AcqRel);
        Waiting(self.clone())
    }
}

/// One caller counted in [`Wanted`] until dropped.
struct Waiting(Wanted);

impl Drop for Waiting {
    fn drop(&mut self) {
        self.0 .0.fetch_sub(1, Ordering::AcqRel);
    }
}

impl<K: Eq + Hash + Clone + Send + 'static, V: Clone + Send + Sync + 'static> Default for SingleFlight<K, V> {
    fn default() -> Self {
        SingleFlight { flights: Mutex::new(HashMap::new()) }
    }
}

impl<K: Eq + Hash + Clone + Send + 'static, V: Clone + Send + Sync + 'static> SingleFlight<K, V> {
    /// Returns the result of `make` for `key`, running it only if no identical
    /// flight is under way. The computation runs in its own task, so it
    /// completes (and feeds its waiters) even if the first caller goes away.
    /// The bool is true for the caller whose call started the flight; the
    /// value is `None` only if the computation panicked.
    pub async fn run<F, Fut>(self: &Arc<Self>, key: K, make: F) -> (Option<V>, bool)
    where
        F: FnOnce() -> Fut,
        Fut: std::future::Future<Output = V> + Send + 'static,
    {
        self.run_wanted(key, |_| make()).await
    }

    /// [`run`](Self::run), with `make` given the flight's [`Wanted`], so the
    /// computation can skip work once every caller has gone.
    pub async fn run_wanted<F, Fut>(self: &Arc<Self>, key: K, make: F) -> (Option<V>, bool)
    where
        F: FnOnce(Wanted) -> Fut,
        Fut: std::future::Future<Output = V> + Send + 'static,
    {
        let (mut rx, leader, _waiting) = {
            let mut map = self.flights.lock().unwrap_or_else(|p| p.into_inner());
            match map.get(&key) {
                Some((rx, wanted)) => (rx.clone(), false, wanted.join()),
                None => {
                    let (tx, rx) = watch::channel(None);
                    let wanted = Wanted::default();
                    let waiting = wanted.join();
                    map.insert(key.clone(), (rx.clone(), wanted.clone()));
                    let fut = make(wanted);
                    let me = self.clone();
                    let k = key.clone();
                    tokio::spawn(async move {
                        let v = fut.await;
                        // Remove the flight before publishing, so a caller
                        // arriving after this point starts afresh (and finds
                        // the cache filled by `fut` if it succeeded).
                        me.flights.lock().unwrap_or_else(|p| p.into_inner()).remove(&k);
                        let _ = tx.send(Some(v));
                    });
                    (rx, true, waiting)
                }
            }
        };
        loop {
            if let Some(v) = rx.borrow_and_update().clone() {
                return (Some(v), leader);
            }
            if rx.changed().await.is_err() {
                // The flight's task ended without publishing (it panicked).
                return (rx.borrow().clone(), leader);
            }
        }
    }

    /// Flights under way (for /metrics).
    pub fn in_flight(&self) -> usize {
        self.flights.lock().map(|m| m.len()).unwrap_or(0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::AtomicUsize;
    use std::time::Duration;

    fn key(id: &str, c: &str) -> TileKey {
        TileKey { identifier: id.into(), version: SourceVersion { len: 1, mtime_ns: 2 }, canonical: c.into() }
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

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn sixty_four_identical_calls_run_one_computation() {
        let sf: Arc<SingleFlight<String, Result<u32, String>>> = Arc::new(SingleFlight::default());
        let runs = Arc::new(AtomicUsize::new(0));
        let mut tasks = vec![];
        for _ in 0..64 {
            let sf = sf.clone();
            let runs = runs.clone();
            tasks.push(tokio::spawn(async move {
                sf.run("k".to_string(), move || async move {
                    runs.fetch_add(1, Ordering::SeqCst);
                    tokio::time::sleep(Duration::from_millis(100)).await;
                    Ok(42)
                })
                .await
            }));
        }
        let mut leaders = 0;
        for t in tasks {
            let (v, leader) = t.await.unwrap();
            assert_eq!(v, Some(Ok(42)));
            leaders += leader as usize;
        }
        assert_eq!(runs.load(Ordering::SeqCst), 1);
        assert_eq!(leaders, 1);
        assert_eq!(sf.in_flight(), 0);
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn every_waiter_of_a_failed_flight_gets_the_error() {
        let sf: Arc<SingleFlight<String, Result<u32, String>>> = Arc::new(SingleFlight::default());
        let runs = Arc::new(AtomicUsize::new(0));
        let mut tasks = vec![];
        for _ in 0..16 {
            let sf = sf.clone();
            let runs = runs.clone();
            tasks.push(tokio::spawn(async move {
                sf.run("k".to_string(), move || async move {
                    runs.fetch_add(1, Ordering::SeqCst);
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    Err::<u32, _>("corrupt".to_string())
                })
                .await
                .0
            }));
        }
        for t in tasks {
            assert_eq!(t.await.unwrap(), Some(Err("corrupt".to_string())));
        }
        assert_eq!(runs.load(Ordering::SeqCst), 1);
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_flight_whose_every_caller_has_gone_is_no_longer_wanted() {
        let sf: Arc<SingleFlight<String, bool>> = Arc::new(SingleFlight::default());
        let (seen_tx, seen_rx) = tokio::sync::oneshot::channel::<Wanted>();
        let (go_tx, go_rx) = tokio::sync::oneshot::channel::<()>();
        let sf2 = sf.clone();
        let caller = tokio::spawn(async move {
            sf2.run_wanted("k".to_string(), move |w| async move {
                let _ = seen_tx.send(w.clone());
                let _ = go_rx.await;
                w.is_wanted()
            })
            .await
        });
        let wanted = seen_rx.await.unwrap();
        assert!(wanted.is_wanted(), "its caller waits");
        // A second caller joins, then both go away (a client hanging up
        // drops its request future).
        let sf3 = sf.clone();
        let second = tokio::spawn(async move { sf3.run("k".to_string(), || async { true }).await });
        tokio::time::sleep(Duration::from_millis(20)).await;
        assert!(wanted.is_wanted());
        caller.abort();
        second.abort();
        let _ = caller.await;
        let _ = second.await;
        assert!(!wanted.is_wanted(), "nobody waits any more");
        let _ = go_tx.send(());
    }
}
