//! The shared tile tier: encoded tiles in Redis (or any server that speaks
//! its protocol, such as Valkey), shared by every Tessera instance pointed
//! at it. Behind a load balancer, a tile one instance rendered is a hit for
//! the others, a purge on one reaches all (pub/sub), and two instances that
//! miss the same tile at once render it once (a lease in Redis).
//!
//! Order of lookup in the pipeline: memory → disk tier → this → render.
//!
//! Keys (`{ns}` is `cache.shared.namespace`):
//! ```text
//! {ns}:t:{file hash}:{entry hash}   a tile record (the disk tier's format:
//!                                   magic, media type, the whole key, the
//!                                   body), with a TTL
//! {ns}:l:{file hash}:{entry hash}   the lease of whoever renders that tile
//! {ns}:u:{file hash}:{unit hash}    a decoded unit (a codestream tile, an
//!                                   area of an untiled JPEG 2000): its pixels,
//!                                   for the others to cut tiles from instead
//!                                   of decoding it again; short TTL
//! {ns}:ul:{file hash}:{unit hash}   the lease of whoever decodes that unit
//! {ns}:purge                        the pub/sub channel of purges
//! ```
//! A record names its whole key, checked on every read, so a hash collision
//! reads as a miss. Redis evicts by its own policy: run it with a
//! `maxmemory` and `maxmemory-policy allkeys-lru` (docs/DEPLOYMENT.md).
//!
//! Architecture Invariant: Redis down or slow never takes Tessera down.
//! Every call has a deadline (`timeout_ms`); failures open a circuit
//! breaker that skips Redis entirely for `breaker_cooldown_ms`, then lets
//! one call through to test it; writes are fire-and-forget with a bound on
//! those in flight. A miss here only means a render.

use std::sync::atomic::{AtomicBool, AtomicU32, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use futures_util::StreamExt;
use redis::aio::{ConnectionManager, ConnectionManagerConfig};
use tokio::sync::{OnceCell, Semaphore};

pub use crate::config::SharedCfg;

use super::tier::{full_key, key_hashes, parse, record_head};
use super::{Encoded, TileKey};
use crate::pixels::{Layout, Pixels};

/// Writes in flight to Redis before new ones are dropped (counted).
const WRITES_IN_FLIGHT: usize = 256;
/// Tiles larger than this are not shared (a tile is tens of KiB).
const MAX_RECORD_BYTES: usize = 8 << 20;
/// Keys deleted per UNLINK while purging.
const PURGE_BATCH: usize = 500;
/// A waiter gives up on a renewed lease after this many lease times, and
/// does the work itself.
const MAX_WAIT_LEASES: u32 = 4;
/// First bytes of a decoded-unit record.
const UNIT_MAGIC: &[u8; 8] = b"TSRUNIT1";
/// Time to live of a decoded unit in Redis: long enough for the instances
/// serving one viewer's sweep to share it; Redis's LRU does the rest.
const UNIT_TTL: Duration = Duration::from_secs(300);

/// Counters for /metrics.
#[derive(Default, Debug)]
pub struct SharedStats {
    pub hits: AtomicU64,
    pub misses: AtomicU64,
    /// Calls that failed or passed their deadline.
    pub errors: AtomicU64,
    /// Calls not made because the breaker was open.
    pub skipped: AtomicU64,
    pub writes: AtomicU64,
    pub writes_dropped: AtomicU64,
    /// Times the breaker opened.
    pub breaker_trips: AtomicU64,
    /// Purges received from other instances.
    pub purges_received: AtomicU64,
    /// Leases taken (this instance rendered for everyone).
    pub leases_taken: AtomicU64,
    /// Tiles another instance's lease made this one wait for, and got.
    pub lease_waits_served: AtomicU64,
    /// Decoded units taken from Redis instead of decoded here.
    pub units_shared: AtomicU64,
    /// Decoded units stored for the others.
    pub units_stored: AtomicU64,
}

/// A purge announced by another instance.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PurgeNotice {
    /// Everything.
    All,
    /// One image, by identifier.
    Image(String),
}

/// Opens after `threshold` consecutive failures; while open (for
/// `cooldown`), calls are skipped; then one call is let through, and its
/// outcome closes or reopens it.
struct Breaker {
    threshold: u32,
    cooldown: Duration,
    clock: Instant,
    failures: AtomicU32,
    /// Milliseconds since `clock` until which calls are skipped.
    open_until: AtomicU64,
    open: AtomicBool,
}

impl Breaker {
    fn new(threshold: u32, cooldown: Duration) -> Breaker {
        Breaker {
            threshold,
            cooldown,
            clock: Instant::now(),
            failures: AtomicU32::new(0),
            open_until: AtomicU64::new(0),
            open: AtomicBool::new(false),
        }
    }

    fn now_ms(&self) -> u64 {
        self.clock.elapsed().as_millis() as u64
    }

    /// Whether a call may be made now. After the cooldown, one caller gets
    /// through (it pushes the deadline on for the others).
    fn allow(&self) -> bool {
        let until = self.open_until.load(Ordering::Relaxed);
        if until == 0 {
            return true;
        }
        let now = self.now_ms();
        now >= until
            && self
                .open_until
                .compare_exchange(until, now + self.cooldown.as_millis() as u64, Ordering::Relaxed, Ordering::Relaxed)
                .is_ok()
    }

    fn success(&self) {
        self.failures.store(0, Ordering::Relaxed);
        if self.open_until.swap(0, Ordering::Relaxed) != 0 {
            self.open.store(false, Ordering::Relaxed);
            tracing::info!("shared tier: Redis answers again; breaker closed");
        }
    }

    /// Returns true when this failure opened the breaker.
    fn failure(&self) -> bool {
        let n = self.failures.fetch_add(1, Ordering::Relaxed) + 1;
        if n >= self.threshold && !self.open.swap(true, Ordering::Relaxed) {
            self.open_until.store(self.now_ms() + self.cooldown.as_millis() as u64, Ordering::Relaxed);
            return true;
        }
        if self.open.load(Ordering::Relaxed) {
            // A trial call failed: stay open for another cooldown.
            self.open_until.store(self.now_ms() + self.cooldown.as_millis() as u64, Ordering::Relaxed);
        }
        false
    }

    fn is_open(&self) -> bool {
        self.open.load(Ordering::Relaxed)
    }
}

/// A decoded unit from Redis, the lease to decode it, or neither.
pub enum UnitOrLease {
    Unit(Pixels),
    /// Decode it, then [`RedisTier::put_unit_then_release`].
    Lease(String),
    /// Decode it here, alone (Redis unavailable, or the holder too slow).
    Neither,
}

/// A unit record: magic, the unit's whole name, size, layout, pixels. None
/// when it is too large to share.
fn unit_record(unit: &str, p: &Pixels) -> Option<Vec<u8>> {
    let len = UNIT_MAGIC.len() + 4 + unit.len() + 9 + p.data().len();
    if len > MAX_RECORD_BYTES {
        return None;
    }
    let layout = match p.layout() {
        Layout::Gray => 0u8,
        Layout::GrayAlpha => 1,
        Layout::Rgb => 2,
        Layout::Rgba => 3,
    };
    let mut r = Vec::with_capacity(len);
    r.extend_from_slice(UNIT_MAGIC);
    r.extend_from_slice(&(unit.len() as u32).to_le_bytes());
    r.extend_from_slice(unit.as_bytes());
    r.extend_from_slice(&p.width().to_le_bytes());
    r.extend_from_slice(&p.height().to_le_bytes());
    r.push(layout);
    r.extend_from_slice(p.data());
    Some(r)
}

/// The pixels of a unit record, if it is intact and names `unit`.
fn parse_unit(buf: &[u8], unit: &str) -> Option<Pixels> {
    let rest = buf.strip_prefix(UNIT_MAGIC.as_slice())?;
    let n = u32::from_le_bytes(rest.get(..4)?.try_into().ok()?) as usize;
    if rest.get(4..4 + n)? != unit.as_bytes() {
        return None;
    }
    let rest = &rest[4 + n..];
    let w = u32::from_le_bytes(rest.get(..4)?.try_into().ok()?);
    let h = u32::from_le_bytes(rest.get(4..8)?.try_into().ok()?);
    let layout = match rest.get(8)? {
        0 => Layout::Gray,
        1 => Layout::GrayAlpha,
        2 => Layout::Rgb,
        3 => Layout::Rgba,
        _ => return None,
    };
    Pixels::new(w, h, layout, rest.get(9..)?.to_vec()).ok()
}

/// A lease kept alive in the background; dropping it stops the renewals
/// (the lease then expires, or is released).
pub struct Renewal(Option<tokio::task::JoinHandle<()>>);

impl Drop for Renewal {
    fn drop(&mut self) {
        if let Some(h) = self.0.take() {
            h.abort();
        }
    }
}

/// Whether this instance got a tile's lease.
pub enum Lease {
    /// Render it; [`RedisTier::release`] when it is stored.
    Held(String),
    /// Another instance renders it: wait with [`RedisTier::wait_for`].
    Taken,
    /// Redis cannot say (down, slow, breaker open): render locally.
    Unknown,
}

/// The Redis tier.
pub struct RedisTier {
    client: redis::Client,
    conn: OnceCell<ConnectionManager>,
    ns: String,
    fingerprint: u64,
    ttl_ms: u64,
    timeout: Duration,
    lease: Duration,
    breaker: Breaker,
    writes: Arc<Semaphore>,
    /// This process's id in purge messages (its own are ignored).
    instance: String,
    pub stats: SharedStats,
}

impl RedisTier {
    /// A tier for `cfg` (already validated); connects on first use.
    /// `fingerprint` is the render settings' (as for the disk tier).
    pub fn new(cfg: &SharedCfg, fingerprint: u64) -> Result<Arc<RedisTier>, String> {
        let client = redis::Client::open(cfg.url.as_str()).map_err(|e| format!("cache.shared.url: {e}"))?;
        Ok(Arc::new(RedisTier {
            client,
            conn: OnceCell::new(),
            ns: cfg.namespace.clone(),
            fingerprint,
            ttl_ms: cfg.ttl_secs.saturating_mul(1000),
            timeout: Duration::from_millis(cfg.timeout_ms),
            lease: Duration::from_millis(cfg.lease_ms),
            breaker: Breaker::new(cfg.breaker_failures, Duration::from_millis(cfg.breaker_cooldown_ms)),
            writes: Arc::new(Semaphore::new(WRITES_IN_FLIGHT)),
            instance: format!("{:016x}", rand::random::<u64>()),
            stats: SharedStats::default(),
        }))
    }

    fn tile_key(&self, key: &TileKey) -> String {
        let (f, e) = key_hashes(key, self.fingerprint);
        format!("{}:t:{f:016x}:{e:016x}", self.ns)
    }

    fn lease_key(&self, key: &TileKey) -> String {
        let (f, e) = key_hashes(key, self.fingerprint);
        format!("{}:l:{f:016x}:{e:016x}", self.ns)
    }

    fn channel(&self) -> String {
        format!("{}:purge", self.ns)
    }

    /// Runs `cmd` under the deadline and the breaker; None when skipped or
    /// failed (counted).
    async fn call<T: redis::FromRedisValue>(&self, cmd: redis::Cmd) -> Option<T> {
        if !self.breaker.allow() {
            self.stats.skipped.fetch_add(1, Ordering::Relaxed);
            return None;
        }
        let work = async {
            let conn = self
                .conn
                .get_or_try_init(|| async {
                    let cfg = ConnectionManagerConfig::new()
                        .set_connection_timeout(Some(self.timeout))
                        .set_response_timeout(Some(self.timeout))
                        .set_number_of_retries(1);
                    ConnectionManager::new_with_config(self.client.clone(), cfg).await
                })
                .await?;
            let mut conn = conn.clone();
            cmd.query_async::<T>(&mut conn).await
        };
        match tokio::time::timeout(self.timeout, work).await {
            Ok(Ok(v)) => {
                self.breaker.success();
                Some(v)
            }
            outcome => {
                self.stats.errors.fetch_add(1, Ordering::Relaxed);
                if self.breaker.failure() {
                    self.stats.breaker_trips.fetch_add(1, Ordering::Relaxed);
                    let why = match outcome {
                        Ok(Err(e)) => e.to_string(),
                        _ => format!("no answer within {} ms", self.timeout.as_millis()),
                    };
                    tracing::warn!(error = %why, cooldown_ms = self.breaker.cooldown.as_millis() as u64,
                        "shared tier: Redis failing; working without it for a while");
                }
                None
            }
        }
    }

    /// The tile under `key`, if Redis holds it intact.
    pub async fn get(&self, key: &TileKey) -> Option<Encoded> {
        let raw: Option<Vec<u8>> = self.call(redis::cmd("GET").arg(self.tile_key(key)).clone()).await.flatten();
        let Some(buf) = raw else {
            self.stats.misses.fetch_add(1, Ordering::Relaxed);
            return None;
        };
        let Some((media_type, start)) = parse(&buf, &full_key(key, self.fingerprint)) else {
            // A colliding or foreign record: a miss.
            self.stats.misses.fetch_add(1, Ordering::Relaxed);
            return None;
        };
        self.stats.hits.fetch_add(1, Ordering::Relaxed);
        Some(Encoded { body: Bytes::from(buf).slice(start..), media_type })
    }

    /// Offers a tile (in the background; dropped when too many writes are
    /// in flight, or outside a runtime).
    pub fn put(self: &Arc<Self>, key: &TileKey, value: &Arc<Encoded>) {
        let Some(record) = self.tile_record(key, value) else { return };
        let (Ok(handle), Ok(permit)) = (tokio::runtime::Handle::try_current(), self.writes.clone().try_acquire_owned())
        else {
            self.stats.writes_dropped.fetch_add(1, Ordering::Relaxed);
            return;
        };
        let (me, k) = (self.clone(), self.tile_key(key));
        handle.spawn(async move {
            me.store_tile(&k, record).await;
            drop(permit);
        });
    }

    /// A tile's record (head and body); None when tiers do not keep its
    /// media type or it is too large to share.
    fn tile_record(&self, key: &TileKey, value: &Encoded) -> Option<Vec<u8>> {
        let mut record = record_head(&full_key(key, self.fingerprint), value)?;
        if record.len() + value.body.len() > MAX_RECORD_BYTES {
            return None;
        }
        record.extend_from_slice(&value.body);
        Some(record)
    }

    async fn store_tile(&self, tile_key: &str, record: Vec<u8>) {
        let cmd = redis::cmd("SET").arg(tile_key).arg(record).arg("PX").arg(self.ttl_ms).clone();
        if self.call::<()>(cmd).await.is_some() {
            self.stats.writes.fetch_add(1, Ordering::Relaxed);
        }
    }

    /// Stores a tile rendered under a lease, then gives the lease back, in
    /// that order (so whoever waits finds the tile when the lease is gone).
    pub fn put_then_release(self: &Arc<Self>, key: &TileKey, value: &Arc<Encoded>, token: String) {
        let Ok(handle) = tokio::runtime::Handle::try_current() else { return };
        let record = self.tile_record(key, value);
        let (me, k, lk) = (self.clone(), self.tile_key(key), self.lease_key(key));
        handle.spawn(async move {
            if let Some(record) = record {
                me.store_tile(&k, record).await;
            }
            me.release_now(&lk, &token).await;
        });
    }

    /// Tries to take the lease of rendering `key` for everyone.
    pub async fn lease(&self, key: &TileKey) -> Lease {
        let lease = self.lease_at(&self.lease_key(key)).await;
        if matches!(lease, Lease::Held(_)) {
            self.stats.leases_taken.fetch_add(1, Ordering::Relaxed);
        }
        lease
    }

    async fn lease_at(&self, lease_key: &str) -> Lease {
        let token = format!("{}:{:016x}", self.instance, rand::random::<u64>());
        let cmd =
            redis::cmd("SET").arg(lease_key).arg(&token).arg("NX").arg("PX").arg(self.lease.as_millis() as u64).clone();
        match self.call::<Option<String>>(cmd).await {
            Some(Some(_)) => Lease::Held(token),
            Some(None) => Lease::Taken,
            None => Lease::Unknown,
        }
    }

    /// Keeps the lease of rendering `key` alive while this instance works
    /// on it; stops when the returned value is dropped.
    pub fn renew(self: &Arc<Self>, key: &TileKey, token: &str) -> Renewal {
        self.renew_at(self.lease_key(key), token.to_string())
    }

    /// Keeps the lease of decoding a unit alive while this instance works
    /// on it; stops when the returned value is dropped.
    pub fn renew_unit(self: &Arc<Self>, unit: &str, file: &str, token: &str) -> Renewal {
        self.renew_at(self.unit_keys(unit, file).1, token.to_string())
    }

    fn renew_at(self: &Arc<Self>, lease_key: String, token: String) -> Renewal {
        let Ok(handle) = tokio::runtime::Handle::try_current() else { return Renewal(None) };
        let me = self.clone();
        Renewal(Some(handle.spawn(async move {
            let script = "if redis.call('GET', KEYS[1]) == ARGV[1] then \
                          return redis.call('PEXPIRE', KEYS[1], ARGV[2]) else return 0 end";
            loop {
                tokio::time::sleep(me.lease / 3).await;
                let ms = me.lease.as_millis() as u64;
                let cmd = redis::cmd("EVAL").arg(script).arg(1).arg(&lease_key).arg(&token).arg(ms).clone();
                if me.call::<i64>(cmd).await != Some(1) {
                    return; // no longer ours, or Redis away: nothing to keep
                }
            }
        })))
    }

    /// Gives a lease back (only if it is still ours: it may have expired
    /// and been taken by another instance).
    pub fn release(self: &Arc<Self>, key: &TileKey, token: String) {
        let Ok(handle) = tokio::runtime::Handle::try_current() else { return };
        let (me, k) = (self.clone(), self.lease_key(key));
        handle.spawn(async move { me.release_now(&k, &token).await });
    }

    async fn release_now(&self, lease_key: &str, token: &str) {
        let script =
            "if redis.call('GET', KEYS[1]) == ARGV[1] then return redis.call('DEL', KEYS[1]) else return 0 end";
        let cmd = redis::cmd("EVAL").arg(script).arg(1).arg(lease_key).arg(token).clone();
        let _ = self.call::<i64>(cmd).await;
    }

    /// Waits for the tile another instance is rendering: polls with back-off
    /// until it is stored, its lease is gone, or the lease time has passed.
    /// None: render it here.
    pub async fn wait_for(&self, key: &TileKey) -> Option<Encoded> {
        let tile = self.wait_at(&self.lease_key(key), || self.get(key)).await;
        if tile.is_some() {
            self.stats.lease_waits_served.fetch_add(1, Ordering::Relaxed);
        }
        tile
    }

    /// Polls `get` with back-off while the lease at `lease_key` is held
    /// (its holder renews it while it works), for at most
    /// [`MAX_WAIT_LEASES`] lease times.
    async fn wait_at<T, F, Fut>(&self, lease_key: &str, mut get: F) -> Option<T>
    where
        F: FnMut() -> Fut,
        Fut: std::future::Future<Output = Option<T>>,
    {
        let deadline = Instant::now() + self.lease * MAX_WAIT_LEASES;
        let mut pause = Duration::from_millis(5);
        while Instant::now() < deadline {
            tokio::time::sleep(pause).await;
            pause = (pause * 2).min(Duration::from_millis(100));
            if let Some(v) = get().await {
                return Some(v);
            }
            let held: Option<i64> = self.call(redis::cmd("EXISTS").arg(lease_key).clone()).await;
            if held != Some(1) {
                // Released without a result (the work failed), or Redis went away.
                return get().await;
            }
        }
        None
    }

    fn unit_keys(&self, unit: &str, file: &str) -> (String, String) {
        let f = crate::source::fnv1a(&[file.as_bytes()]);
        let u = crate::source::fnv1a(&[unit.as_bytes(), &self.fingerprint.to_le_bytes()]);
        (format!("{}:u:{f:016x}:{u:016x}", self.ns), format!("{}:ul:{f:016x}:{u:016x}", self.ns))
    }

    /// A decoded unit another instance stored: `unit` names it whole (file,
    /// version, level, position), `file` is its file's cache key.
    pub async fn get_unit(&self, unit: &str, file: &str) -> Option<Pixels> {
        let (k, _) = self.unit_keys(unit, file);
        let buf: Vec<u8> = self.call::<Option<Vec<u8>>>(redis::cmd("GET").arg(k).clone()).await.flatten()?;
        let p = parse_unit(&buf, unit)?;
        self.stats.units_shared.fetch_add(1, Ordering::Relaxed);
        Some(p)
    }

    /// The unit from Redis, or the lease of decoding it for everyone, or
    /// (with `wait`) the unit once the instance holding that lease has
    /// stored it. Decoding ahead of demand does not wait: not worth it.
    pub async fn unit_or_lease(&self, unit: &str, file: &str, wait: bool) -> UnitOrLease {
        if let Some(p) = self.get_unit(unit, file).await {
            return UnitOrLease::Unit(p);
        }
        let (_, lk) = self.unit_keys(unit, file);
        match self.lease_at(&lk).await {
            Lease::Held(token) => UnitOrLease::Lease(token),
            Lease::Taken if wait => match self.wait_at(&lk, || self.get_unit(unit, file)).await {
                Some(p) => UnitOrLease::Unit(p),
                None => UnitOrLease::Neither,
            },
            Lease::Taken | Lease::Unknown => UnitOrLease::Neither,
        }
    }

    /// Stores a unit decoded under its lease (when it fits a record), then
    /// gives the lease back; `pixels` None: the decode failed, just release.
    pub fn put_unit_then_release(
        self: &Arc<Self>,
        handle: &tokio::runtime::Handle,
        unit: &str,
        file: &str,
        pixels: Option<Arc<Pixels>>,
        token: String,
    ) {
        let (k, lk) = self.unit_keys(unit, file);
        let (me, unit) = (self.clone(), unit.to_string());
        handle.spawn(async move {
            if let Some(record) = pixels.and_then(|p| unit_record(&unit, &p)) {
                let cmd = redis::cmd("SET").arg(&k).arg(record).arg("PX").arg(UNIT_TTL.as_millis() as u64).clone();
                if me.call::<()>(cmd).await.is_some() {
                    me.stats.units_stored.fetch_add(1, Ordering::Relaxed);
                }
            }
            me.release_now(&lk, &token).await;
        });
    }

    /// Drops one file's tiles from Redis and tells the other instances to
    /// purge the image (`id`) from their own caches. In the background.
    pub fn purge(self: &Arc<Self>, file: &str, id: &str) {
        let f = crate::source::fnv1a(&[file.as_bytes()]);
        self.purge_matching(format!("{}:t:{f:016x}:*", self.ns), format!("{}\nimage\n{id}", self.instance));
    }

    /// Drops every tile from Redis and tells the other instances.
    pub fn purge_all(self: &Arc<Self>) {
        self.purge_matching(format!("{}:t:*", self.ns), format!("{}\nall\n", self.instance));
    }

    fn purge_matching(self: &Arc<Self>, pattern: String, notice: String) {
        let Ok(handle) = tokio::runtime::Handle::try_current() else { return };
        let me = self.clone();
        handle.spawn(async move {
            // Tell the others first: their memory caches matter most.
            let _ = me.call::<i64>(redis::cmd("PUBLISH").arg(me.channel()).arg(&notice).clone()).await;
            let mut cursor: u64 = 0;
            loop {
                let cmd = redis::cmd("SCAN").arg(cursor).arg("MATCH").arg(&pattern).arg("COUNT").arg(1000).clone();
                let Some((next, keys)) = me.call::<(u64, Vec<String>)>(cmd).await else { return };
                for batch in keys.chunks(PURGE_BATCH) {
                    let _ = me.call::<i64>(redis::cmd("UNLINK").arg(batch).clone()).await;
                }
                if next == 0 {
                    return;
                }
                cursor = next;
            }
        });
    }

    /// Listens, for the life of the process, to the purges other instances
    /// announce and hands each to `on_purge`. Reconnects after a failure.
    pub fn listen(self: &Arc<Self>, on_purge: impl Fn(PurgeNotice) + Send + Sync + 'static) {
        let me = self.clone();
        tokio::spawn(async move {
            loop {
                match tokio::time::timeout(me.timeout.max(Duration::from_secs(1)), me.client.get_async_pubsub()).await {
                    Ok(Ok(mut pubsub)) => {
                        if pubsub.subscribe(me.channel()).await.is_ok() {
                            tracing::info!(channel = %me.channel(), "shared tier: listening for purges");
                            let mut messages = pubsub.into_on_message();
                            while let Some(msg) = messages.next().await {
                                let Ok(text) = msg.get_payload::<String>() else { continue };
                                let mut parts = text.splitn(3, '\n');
                                let (from, kind, id) = (parts.next(), parts.next(), parts.next().unwrap_or(""));
                                if from == Some(me.instance.as_str()) {
                                    continue;
                                }
                                let notice = match kind {
                                    Some("all") => PurgeNotice::All,
                                    Some("image") if !id.is_empty() => PurgeNotice::Image(id.to_string()),
                                    _ => continue,
                                };
                                me.stats.purges_received.fetch_add(1, Ordering::Relaxed);
                                on_purge(notice);
                            }
                        }
                    }
                    Ok(Err(e)) => tracing::debug!(error = %e, "shared tier: cannot subscribe yet"),
                    Err(_) => tracing::debug!("shared tier: subscribing timed out"),
                }
                tokio::time::sleep(Duration::from_secs(1)).await;
            }
        });
    }

    /// Appends the tier's counters in Prometheus text format.
    pub fn render_metrics(&self, out: &mut String) {
        let s = &self.stats;
        let counters = [
            ("hits", "Tiles found in the shared tier", &s.hits),
            ("misses", "Tiles not found in the shared tier", &s.misses),
            ("errors", "Shared-tier calls that failed or passed their deadline", &s.errors),
            ("skipped", "Shared-tier calls skipped while the breaker was open", &s.skipped),
            ("writes", "Tiles written to the shared tier", &s.writes),
            ("writes_dropped", "Tiles not written (too many writes in flight)", &s.writes_dropped),
            ("breaker_trips", "Times the shared tier's breaker opened", &s.breaker_trips),
            ("purges_received", "Purges announced by other instances", &s.purges_received),
            ("leases_taken", "Tiles this instance rendered under a shared lease", &s.leases_taken),
            ("lease_waits_served", "Tiles another instance rendered while this one waited", &s.lease_waits_served),
            ("units_shared", "Decoded units taken from the shared tier instead of decoded here", &s.units_shared),
            ("units_stored", "Decoded units stored in the shared tier for the other instances", &s.units_stored),
        ];
        for (name, help, v) in counters {
            out.push_str(&format!(
                "# HELP tessera_shared_tier_{name}_total {help}.\n# TYPE tessera_shared_tier_{name}_total counter\ntessera_shared_tier_{name}_total {}\n",
                v.load(Ordering::Relaxed)
            ));
        }
        out.push_str(&format!(
            "# HELP tessera_shared_tier_breaker_open 1 while Redis is skipped after failures.\n# TYPE tessera_shared_tier_breaker_open gauge\ntessera_shared_tier_breaker_open {}\n",
            self.breaker.is_open() as u8
        ));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn breaker_opens_after_the_threshold_skips_then_lets_one_call_through() {
        let b = Breaker::new(3, Duration::from_millis(40));
        assert!(b.allow());
        assert!(!b.failure() && !b.failure());
        assert!(b.allow(), "two failures: still closed");
        assert!(b.failure(), "the third opens it");
        assert!(b.is_open() && !b.allow());
        std::thread::sleep(Duration::from_millis(60));
        assert!(b.allow(), "after the cooldown one call goes through");
        assert!(!b.allow(), "only one");
        b.success();
        assert!(!b.is_open() && b.allow());
    }

    #[test]
    fn a_failed_trial_keeps_the_breaker_open_for_another_cooldown() {
        let b = Breaker::new(1, Duration::from_millis(40));
        assert!(b.failure());
        std::thread::sleep(Duration::from_millis(60));
        assert!(b.allow());
        assert!(!b.failure(), "already open");
        assert!(!b.allow(), "reopened");
        assert!(b.is_open());
    }

    fn cfg() -> SharedCfg {
        SharedCfg {
            kind: "redis".into(),
            url: "redis://127.0.0.1:1".into(),
            namespace: "t".into(),
            ttl_secs: 60,
            timeout_ms: 50,
            lease_ms: 200,
            breaker_failures: 2,
            breaker_cooldown_ms: 10_000,
        }
    }

    #[test]
    fn bad_settings_name_their_key() {
        assert!(cfg().validate().is_ok());
        let bad = |f: fn(&mut SharedCfg)| {
            let mut c = cfg();
            f(&mut c);
            c.validate().unwrap_err().0
        };
        assert_eq!(bad(|c| c.kind = "memcached".into()), "kind");
        assert_eq!(bad(|c| c.url = "http://x".into()), "url");
        assert_eq!(bad(|c| c.namespace = "a b".into()), "namespace");
        assert_eq!(bad(|c| c.timeout_ms = 0), "timeout_ms");
        assert_eq!(bad(|c| c.breaker_failures = 0), "breaker_failures");
    }

    #[test]
    fn a_unit_record_round_trips_and_names_its_unit() {
        let p = Pixels::new(3, 2, Layout::Rgb, (0..18).collect()).unwrap();
        let r = unit_record("f\n1:2\n0\n3\n4", &p).unwrap();
        let back = parse_unit(&r, "f\n1:2\n0\n3\n4").unwrap();
        assert_eq!((back.width(), back.height(), back.data()), (3, 2, p.data()));
        assert!(parse_unit(&r, "f\n1:2\n0\n3\n5").is_none(), "another unit's name");
        assert!(parse_unit(&r[..r.len() - 1], "f\n1:2\n0\n3\n4").is_none(), "truncated");
    }

    #[tokio::test]
    async fn an_unreachable_redis_is_a_quick_miss_and_opens_the_breaker() {
        let tier = RedisTier::new(&cfg(), 1).unwrap();
        let version = crate::source::SourceVersion { len: 1, mtime_ns: 2 };
        let key = TileKey { file: "f".into(), version, canonical: "c".into() };
        let t = Instant::now();
        for _ in 0..5 {
            assert!(tier.get(&key).await.is_none());
        }
        assert!(t.elapsed() < Duration::from_secs(2), "each call is bounded: {:?}", t.elapsed());
        assert!(tier.breaker.is_open());
        assert_eq!(tier.stats.errors.load(Ordering::Relaxed), 2);
        assert_eq!(tier.stats.skipped.load(Ordering::Relaxed), 3, "calls skipped while open");
        assert!(matches!(tier.lease(&key).await, Lease::Unknown));
    }
}
