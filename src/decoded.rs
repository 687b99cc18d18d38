//! The decoded-tile cache for tiled JPEG 2000: a viewer asks for all the
//! small IIIF tiles inside one codestream tile, one after another, and a
//! region decode costs nearly as much as the whole codestream tile (OpenJPEG
//! has no random access inside a tile). So Tessera decodes each codestream
//! tile once at the needed resolution, keeps the pixels in a byte-bounded
//! cache, and cuts neighbouring IIIF tiles from them. An untiled JPEG 2000
//! (most archival masters) is worse still: any region walks the whole
//! codestream. It is decoded in virtual tiles of `unit` output pixels a
//! side at the level asked, treated like codestream tiles from then on.
//!
//! A large JPEG is the same problem in one piece: it has no random access at
//! all (a crop decode still entropy-decodes every row above the crop), so a
//! sweep of its tiles decodes most of the image again and again. A JPEG of
//! at least `jpeg_min_pixels` is treated as one tile covering the whole
//! image: decoded once per DCT scale (1, 1/2, 1/4, 1/8) — a reduced-resolution
//! pyramid built level by level as requests need it — and neighbouring IIIF
//! tiles are cut from it. A level larger than half the cache's bound is not
//! decoded whole: such requests decode their crop directly, as before.
//!
//! Who decodes what ([`DecodedTiles::get_or_decode`], called from the reactor):
//! - the first request to need a codestream tile *claims* it and runs its
//!   decode as a job on the worker pool; every other request needing it
//!   awaits that one decode. Waiting holds no worker, so a worker is never
//!   parked behind another's decode while requests for other tiles queue.
//! - when workers are idle, the request also claims the codestream tiles
//!   that come next in raster order (the next IIIF tile of a sweep, a
//!   viewer filling its viewport row by row) and decodes them ahead on those
//!   workers. One viewer thus keeps every core decoding; under load there
//!   is no idle worker and nothing is decoded ahead.
//! - a claim is completed when its decode ends, fails or is dropped (its
//!   job refused by a full queue, or a panic): waiters of a dropped claim
//!   claim again, so none waits forever.
//! - with a shared tier (several instances, `cache::shared`), the claimer
//!   first looks for the unit in Redis; if another instance is decoding it
//!   (its lease), it waits for those pixels rather than decoding too; if
//!   nobody is, it takes the lease, decodes, and stores the pixels for the
//!   others. Ahead-of-demand decodes only take free leases, never wait.
//!
//! The cache is one shard, so any level up to half the bound is admitted
//! (a sharded cache refuses entries larger than its shard, silently), and
//! half of it holds new entries on probation, so a tile decoded ahead is
//! still there when it is asked for.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use quick_cache::sync::{Cache, DefaultLifecycle};
use quick_cache::{DefaultHashBuilder, OptionsBuilder, Weighter};
use tokio::sync::Notify;

use crate::codec::{self, jp2, CodecError, ImageInfo, SourceFormat};
use crate::pixels::Pixels;
use crate::plan::Rect;
use crate::pool::Pool;
use crate::source::SourceVersion;

/// One decoded codestream tile: file, version, reduce level, tile column, row
/// (for a JPEG, the whole image at 1/2^reduce: column and row 0).
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct TileId {
    pub file: String,
    pub version: SourceVersion,
    pub reduce: u32,
    pub col: u32,
    pub row: u32,
}

/// Times a request claims a tile again after its decode ended unfinished.
const MAX_DROPPED_CLAIMS: u32 = 2;

/// Bytes counted for an entry beyond its pixels.
const ENTRY_OVERHEAD: u64 = 64;

/// The share of the bound for entries on probation, which is also the
/// largest entry the cache admits (quick_cache refuses heavier ones).
const PROBATION: f64 = 0.5;

#[derive(Clone)]
struct ByBytes;
impl Weighter<TileId, Arc<Pixels>> for ByBytes {
    fn weight(&self, _k: &TileId, v: &Arc<Pixels>) -> u64 {
        v.byte_len() as u64 + ENTRY_OVERHEAD
    }
}

type Outcome = Result<Arc<Pixels>, CodecError>;
type TileCache = Cache<TileId, Arc<Pixels>, ByBytes, DefaultHashBuilder, DefaultLifecycle<TileId, Arc<Pixels>>>;

/// A decode under way: `None` while it runs, then `Some(None)` if its claim
/// was dropped unfinished, else `Some(Some(outcome))`.
#[derive(Default)]
struct Slot {
    value: Mutex<Option<Option<Outcome>>>,
    done: Notify,
}

impl Slot {
    /// The outcome, or `None` when the claim was dropped (claim again).
    async fn wait(&self) -> Option<Outcome> {
        loop {
            // Created before the check, so a completion between the check
            // and the await still wakes it (`notify_waiters` reaches every
            // `Notified` that exists when it is called).
            let done = self.done.notified();
            if let Some(v) = self.value.lock().unwrap_or_else(|e| e.into_inner()).clone() {
                return v;
            }
            done.await;
        }
    }
}

/// The store shared with decode jobs on the pool.
struct Shared {
    cache: TileCache,
    pending: Mutex<HashMap<TileId, Arc<Slot>>>,
}

/// The right, and the duty, to decode one tile: completing it (or dropping
/// it) wakes every request waiting for that tile.
struct Claim {
    id: TileId,
    slot: Arc<Slot>,
    shared: Arc<Shared>,
    finished: bool,
}

impl Claim {
    fn finish(mut self, out: Outcome) {
        if let Ok(t) = &out {
            self.shared.cache.insert(self.id.clone(), t.clone());
        }
        self.complete(Some(out));
    }

    fn complete(&mut self, v: Option<Outcome>) {
        self.finished = true;
        // Cached (above) before the claim is removed: a request arriving in
        // between finds the tile in the cache, not a second decode to start.
        self.shared.pending.lock().unwrap_or_else(|e| e.into_inner()).remove(&self.id);
        *self.slot.value.lock().unwrap_or_else(|e| e.into_inner()) = Some(v);
        self.slot.done.notify_waiters();
    }
}

impl Drop for Claim {
    fn drop(&mut self) {
        if !self.finished {
            self.complete(None);
        }
    }
}

enum Claimed {
    Ready(Arc<Pixels>),
    Wait(Arc<Slot>),
    Mine(Claim),
}

/// A tile a request needs: at hand, or being decoded.
enum Started {
    Ready(Arc<Pixels>),
    Wait(Arc<Slot>),
}

/// What one request needs from the store: the codestream tiles (with their
/// rectangles in full-resolution pixels) and the rectangle to cut from them
/// on the reduced grid.
#[derive(Clone, Debug)]
pub struct TilePlan {
    tiles: Vec<(TileId, Rect)>,
    want: Rect,
    scale: u32,
    whole: bool,
    /// The span of codestream tiles: first column, first row, columns, rows.
    span: (u32, u32, u32, u32),
    /// Nominal codestream tile size, and the image size (full resolution).
    tile_size: (u32, u32),
    image: (u32, u32),
}

impl TilePlan {
    /// Whether the plan is cut from the one unit `id` alone.
    pub fn is_within(&self, id: &TileId) -> bool {
        matches!(self.tiles.as_slice(), [(only, _)] if only == id)
    }

    /// The plan's rectangle inside `unit` (x, y, width, height in the
    /// unit's pixels), when the plan is cut from that one unit alone and
    /// lies wholly inside its decoded pixels.
    pub fn rect_in(&self, unit: &Pixels) -> Option<(u32, u32, u32, u32)> {
        let [(_, full)] = self.tiles.as_slice() else { return None };
        let tr = full.at_scale(self.scale, self.image.0, self.image.1);
        let want = self.want;
        let (x, y) = (want.x.checked_sub(tr.x)?, want.y.checked_sub(tr.y)?);
        let fits = u64::from(x) + u64::from(want.w) <= u64::from(unit.width())
            && u64::from(y) + u64::from(want.h) <= u64::from(unit.height());
        fits.then_some((x, y, want.w, want.h))
    }

    /// Cuts the plan's rectangle from its decoded tiles (in plan order).
    pub fn assemble(&self, tiles: &[Arc<Pixels>]) -> Result<Pixels, CodecError> {
        let want = self.want;
        let Some(first) = tiles.first() else {
            return Err(CodecError::Corrupt("no decoded tiles".into()));
        };
        let layout = first.layout();
        let c = layout.channels();
        let mut buf = vec![0u8; want.w as usize * want.h as usize * c];
        for ((_, full), tile) in self.tiles.iter().zip(tiles) {
            if tile.layout() != layout {
                return Err(CodecError::Corrupt("codestream tiles differ in pixel layout".into()));
            }
            // The tile's rectangle on the reduced grid (its origin is a
            // multiple of the scale, so the mapping is exact).
            let tr = full.at_scale(self.scale, self.image.0, self.image.1);
            let (x0, x1) = (want.x.max(tr.x), (want.x + want.w).min(tr.x + tile.width()));
            let (y0, y1) = (want.y.max(tr.y), (want.y + want.h).min(tr.y + tile.height()));
            if x0 >= x1 || y0 >= y1 {
                continue;
            }
            let n = (x1 - x0) as usize * c;
            for y in y0..y1 {
                let src = ((y - tr.y) as usize * tile.width() as usize + (x0 - tr.x) as usize) * c;
                let dst = ((y - want.y) as usize * want.w as usize + (x0 - want.x) as usize) * c;
                let (Some(s), Some(d)) = (tile.data().get(src..src + n), buf.get_mut(dst..dst + n)) else {
                    return Err(CodecError::Corrupt("decoded tile smaller than its header says".into()));
                };
                d.copy_from_slice(s);
            }
        }
        Pixels::new(want.w, want.h, layout, buf).map_err(|e| CodecError::Corrupt(e.to_string()))
    }
}

/// Why [`DecodedTiles::get_or_decode`] failed.
#[derive(Debug)]
pub enum GetOrDecodeError {
    /// The worker queue was full.
    Busy,
    Codec(CodecError),
}

/// What a decode job needs, shared by the jobs of one request.
#[derive(Clone)]
pub struct DecodeInput {
    pub data: Arc<dyn crate::source::SourceBytes>,
    pub info: Arc<ImageInfo>,
    pub max_pixels: u64,
    /// Counts each decode run (demand and ahead).
    pub decodes: prometheus::IntCounter,
    /// Counts the decodes started ahead of demand.
    pub ahead: prometheus::IntCounter,
    /// Told of every unit this request's jobs decode (on the worker, after
    /// waiters are woken): eager tiling encodes the tiles inside it.
    pub on_decoded: Option<Arc<dyn Fn(DecodedUnit) + Send + Sync>>,
    /// Reads of this request's prefetch and decodes that waited on the
    /// origin of a remote master.
    pub waited_on_origin: Arc<std::sync::atomic::AtomicU64>,
}

/// A unit just decoded: which one, its rectangle in full-resolution pixels,
/// the scale it was decoded at and its pixels.
pub struct DecodedUnit {
    pub id: TileId,
    pub full: Rect,
    pub scale: u32,
    pub pixels: Arc<Pixels>,
}

/// Decoded codestream tiles, bounded in bytes.
pub struct DecodedTiles {
    shared: Arc<Shared>,
    /// Use the tile path only when a request touches at most this many tiles.
    pub max_tiles_per_request: u32,
    /// JPEGs with at least this many pixels are decoded whole per scale and
    /// kept (0 = never).
    pub jpeg_min_pixels: u64,
    /// Codestream tiles to decode ahead, in raster order, on idle workers.
    pub ahead: u32,
    /// The side of a JPEG 2000 decode unit in output pixels (0 = native
    /// codestream tiles only, untiled files not at all).
    pub unit: u32,
    max_bytes: u64,
    /// The tier shared with other instances, for decoded units.
    remote: Option<Arc<crate::cache::shared::RedisTier>>,
}

/// What the shared tier offers for a unit this instance claimed.
enum Remote {
    /// Nothing: decode here.
    Nothing,
    /// The pixels, decoded by another instance.
    Unit(Pixels),
    /// The lease: decode here and store the pixels for everyone.
    Lease(String),
}

/// The name of a unit in the shared tier: everything that identifies it.
fn unit_name(id: &TileId) -> String {
    format!("{}\n{}:{}\n{}\n{}\n{}", id.file, id.version.len, id.version.mtime_ns, id.reduce, id.col, id.row)
}

impl DecodedTiles {
    pub fn new(max_bytes: u64) -> Self {
        let items = (max_bytes / 1_000_000).clamp(16, 100_000) as usize;
        let mut opts = OptionsBuilder::new();
        opts.estimated_items_capacity(items)
            .weight_capacity(max_bytes)
            .shards(1)
            // Half the bound for new entries on probation (quick_cache's
            // default is 3 %): a tile decoded ahead, or one a sweep needs
            // again four IIIF rows later, must outlive the next few decodes
            // (3 % of 256 MiB is two 1024² tiles; a 4-viewer sweep then
            // decoded 7 % of its tiles twice).
            .hot_allocation(PROBATION);
        let cache = match opts.build() {
            Ok(o) => Cache::with_options(o, ByBytes, DefaultHashBuilder::default(), DefaultLifecycle::default()),
            // `build` fails only when a required option is missing (both
            // are set above); the sharded default still bounds the bytes.
            Err(_) => {
                Cache::with(items, max_bytes, ByBytes, DefaultHashBuilder::default(), DefaultLifecycle::default())
            }
        };
        DecodedTiles {
            shared: Arc::new(Shared { cache, pending: Mutex::new(HashMap::new()) }),
            max_tiles_per_request: 4,
            jpeg_min_pixels: 0,
            ahead: 0,
            unit: 0,
            max_bytes,
            remote: None,
        }
    }

    /// Shares decoded units with other instances through `tier`.
    pub fn with_shared(mut self, tier: Option<Arc<crate::cache::shared::RedisTier>>) -> Self {
        self.remote = tier;
        self
    }

    /// Asks the shared tier about a unit this instance claimed; `wait`:
    /// whether to wait for another instance decoding it.
    async fn remote(&self, id: &TileId, wait: bool) -> Remote {
        use crate::cache::shared::UnitOrLease;
        let Some(r) = &self.remote else { return Remote::Nothing };
        let name = unit_name(id);
        match r.unit_or_lease(&name, &id.file, wait).await {
            UnitOrLease::Unit(p) => Remote::Unit(p),
            UnitOrLease::Lease(token) => Remote::Lease(token),
            UnitOrLease::Neither => Remote::Nothing,
        }
    }

    /// Enables whole-image caching of JPEGs of at least `pixels` pixels.
    pub fn with_jpeg_min_pixels(mut self, pixels: u64) -> Self {
        self.jpeg_min_pixels = pixels;
        self
    }

    /// Decodes untiled JPEG 2000 in virtual tiles of `side` output pixels a
    /// side: see [`DecodedTiles::unit_size`].
    pub fn with_unit(mut self, side: u32) -> Self {
        self.unit = side;
        self
    }

    /// The decode unit of a JPEG 2000 at 1/`scale`, in full-resolution
    /// pixels: for a tiled file, one codestream tile; for an untiled one,
    /// `unit` output pixels a side (a virtual tile). OpenJPEG walks the whole
    /// codestream of an untiled file for any region, so one call over a
    /// unit costs little more than one over a single IIIF tile, and every
    /// IIIF tile inside it is then cut from memory. (Grouping several
    /// codestream tiles of a tiled file into one call at coarse levels was
    /// measured too, and gained nothing: docs/bench/archival.md.) `None`
    /// when the tiling does not divide the scale, or for an untiled file
    /// with units off.
    fn unit_size(&self, native: Option<(u32, u32)>, scale: u32) -> Option<(u32, u32)> {
        match native {
            Some((tw, th)) => (tw > 0 && th > 0 && tw % scale == 0 && th % scale == 0).then_some((tw, th)),
            None if self.unit > 0 => {
                let unit = (self.unit as u64 * scale as u64).min(1 << 30) as u32;
                Some((unit, unit))
            }
            None => None,
        }
    }

    /// Decodes up to `tiles` codestream tiles ahead on idle workers.
    pub fn with_ahead(mut self, tiles: u32) -> Self {
        self.ahead = tiles;
        self
    }

    /// Whether a JPEG's whole image at 1/`scale` is worth decoding and
    /// keeping: a large image, and a level the cache admits (at most
    /// [`PROBATION`] of the bound).
    fn keeps_whole_jpeg(&self, info: &ImageInfo, scale: u32, max_pixels: u64) -> bool {
        if self.jpeg_min_pixels == 0 || (info.width as u64 * info.height as u64) < self.jpeg_min_pixels {
            return false;
        }
        let s = scale.max(1) as u64;
        let px = (info.width as u64).div_ceil(s) * (info.height as u64).div_ceil(s);
        let weight = px * info.layout.channels() as u64 + ENTRY_OVERHEAD;
        px <= max_pixels && weight <= (self.max_bytes as f64 * PROBATION) as u64
    }

    pub fn bytes(&self) -> u64 {
        self.shared.cache.weight()
    }

    pub fn purge(&self, file: &str) {
        self.shared.cache.retain(|k, _| k.file != file);
    }

    pub fn purge_all(&self) {
        self.shared.cache.clear();
    }

    /// The codestream tiles behind `region` at 1/`scale` (the planner's
    /// region and scale); `None` when the tile path does not apply (untiled,
    /// too many tiles, a scale the tiling does not divide, a small JPEG).
    /// Pure: no I/O, no decode.
    pub fn plan(
        &self,
        info: &ImageInfo,
        file: &str,
        version: SourceVersion,
        region: Rect,
        scale: u32,
        max_pixels: u64,
    ) -> Option<TilePlan> {
        if scale == 0 || region.w == 0 || region.h == 0 {
            return None;
        }
        let whole = info.format == SourceFormat::Jpeg;
        let (tw, th) = if whole {
            if !self.keeps_whole_jpeg(info, scale, max_pixels) {
                return None;
            }
            // One tile at the origin: its mapping onto the reduced grid is exact.
            (info.width, info.height)
        } else if info.format == SourceFormat::Jp2 {
            self.unit_size(info.native_tile, scale)?
        } else {
            return None;
        };
        let (c0, c1) = (region.x / tw, (region.x + region.w - 1) / tw);
        let (r0, r1) = (region.y / th, (region.y + region.h - 1) / th);
        if (c1 - c0 + 1) * (r1 - r0 + 1) > self.max_tiles_per_request {
            return None;
        }
        let image = (info.width, info.height);
        let span = (c0, r0, c1 - c0 + 1, r1 - r0 + 1);
        let mut tiles = Vec::with_capacity(((c1 - c0 + 1) * (r1 - r0 + 1)) as usize);
        for row in r0..=r1 {
            for col in c0..=c1 {
                tiles.push(tile(image, file, version, scale, (tw, th), col, row));
            }
        }
        let want = region.at_scale(scale, info.width, info.height);
        Some(TilePlan { tiles, want, scale, whole, span, tile_size: (tw, th), image })
    }

    /// The codestream tiles that come after `plan`'s in a raster sweep: its
    /// span moved right by its own width, wrapping to the next band of rows,
    /// at most `self.ahead` tiles. None for a whole JPEG (there is no next).
    fn next_tiles(&self, plan: &TilePlan) -> Vec<(TileId, Rect)> {
        let mut out = Vec::new();
        let Some((first, _)) = plan.tiles.first() else { return out };
        if plan.whole || self.ahead == 0 {
            return out;
        }
        let (mut c, mut r, w, h) = plan.span;
        let (cols, rows) = (plan.image.0.div_ceil(plan.tile_size.0), plan.image.1.div_ceil(plan.tile_size.1));
        'steps: loop {
            c += w;
            if c >= cols {
                c = 0;
                r += h;
            }
            if r >= rows {
                break;
            }
            for row in r..(r + h).min(rows) {
                for col in c..(c + w).min(cols) {
                    if out.len() as u32 >= self.ahead {
                        break 'steps;
                    }
                    out.push(tile(plan.image, &first.file, first.version, plan.scale, plan.tile_size, col, row));
                }
            }
        }
        out
    }

    /// The plan's decoded tiles: from the cache, from a decode another
    /// request started, or decoded now on `pool`. Then, with workers idle,
    /// starts decoding the tiles that come next (see the module comment).
    /// Awaits without holding a worker.
    pub async fn get_or_decode(
        &self,
        pool: &Pool,
        input: &DecodeInput,
        plan: &TilePlan,
    ) -> Result<Vec<Arc<Pixels>>, GetOrDecodeError> {
        if input.data.is_remote() {
            // A master read by range: what the units that are not decoded
            // yet will read, fetched together (one or two waits, on a
            // blocking thread) before their decodes queue one by one.
            let missing: Vec<Rect> =
                plan.tiles.iter().filter(|(id, _)| self.shared.cache.peek(id).is_none()).map(|(_, r)| *r).collect();
            if !missing.is_empty() {
                let (data, info, scale) = (input.data.clone(), input.info.clone(), plan.scale);
                let waited = input.waited_on_origin.clone();
                let fetched = tokio::task::spawn_blocking(move || {
                    let before = crate::source::ranged::waits_on_this_thread();
                    let r = codec::prefetch(data.as_ref().as_ref(), &*data, &info, &missing, scale);
                    let n = crate::source::ranged::waits_on_this_thread() - before;
                    waited.fetch_add(n, std::sync::atomic::Ordering::Relaxed);
                    r
                })
                .await;
                if let Ok(Err(e)) = fetched {
                    return Err(GetOrDecodeError::Codec(e));
                }
            }
        }
        let mut started = Vec::with_capacity(plan.tiles.len());
        for (id, full) in &plan.tiles {
            started.push(self.start(pool, input, plan, id, *full).await?);
        }
        // Ahead for a master read by range: the next tiles' bytes, fetched
        // in the background off the pool (a worker never waits on the
        // origin for a guess: that delayed the next image's first view by
        // a decode-ahead's fetch); they decode on demand, from local bytes.
        let ahead_by_decode = !input.data.is_remote();
        if !ahead_by_decode && pool.has_idle_worker() {
            let rects: Vec<Rect> = self
                .next_tiles(plan)
                .into_iter()
                .filter(|(id, _)| self.shared.cache.peek(id).is_none())
                .map(|(_, r)| r)
                .collect();
            if !rects.is_empty() {
                let (data, info, scale) = (input.data.clone(), input.info.clone(), plan.scale);
                drop(tokio::task::spawn_blocking(move || {
                    let _ = codec::prefetch(data.as_ref().as_ref(), &*data, &info, &rects, scale);
                }));
            }
        }
        for (id, full) in self.next_tiles(plan) {
            if !ahead_by_decode || !pool.has_idle_worker() {
                break;
            }
            if let Claimed::Mine(claim) = self.claim(&id) {
                let lease = match self.remote(&id, false).await {
                    Remote::Unit(p) => {
                        claim.finish(Ok(Arc::new(p)));
                        continue;
                    }
                    Remote::Lease(token) => Some(token),
                    // Another instance may be on it: not worth a decode ahead.
                    Remote::Nothing if self.remote.is_some() => continue,
                    Remote::Nothing => None,
                };
                if self.run(pool, input, plan, claim, full, lease).is_err() {
                    break;
                }
                input.ahead.inc();
            }
        }
        let mut out = Vec::with_capacity(started.len());
        for (mut s, (id, full)) in started.into_iter().zip(&plan.tiles) {
            let mut dropped = 0;
            loop {
                match s {
                    Started::Ready(t) => {
                        out.push(t);
                        break;
                    }
                    Started::Wait(slot) => match slot.wait().await {
                        Some(Ok(t)) => {
                            out.push(t);
                            break;
                        }
                        Some(Err(e)) => return Err(GetOrDecodeError::Codec(e)),
                        // Its claim was dropped unfinished: claim again, a
                        // few times (a decode that panics on this file
                        // every time must not be retried for ever).
                        None if dropped < MAX_DROPPED_CLAIMS => {
                            dropped += 1;
                            s = self.start(pool, input, plan, id, *full).await?;
                        }
                        None => {
                            return Err(GetOrDecodeError::Codec(CodecError::Corrupt(
                                "the decode of a codestream tile did not complete".into(),
                            )))
                        }
                    },
                }
            }
        }
        Ok(out)
    }

    /// Claims `id`; when the claim is this caller's, takes the unit from
    /// the shared tier or queues its decode.
    async fn start(
        &self,
        pool: &Pool,
        input: &DecodeInput,
        plan: &TilePlan,
        id: &TileId,
        full: Rect,
    ) -> Result<Started, GetOrDecodeError> {
        Ok(match self.claim(id) {
            Claimed::Ready(t) => Started::Ready(t),
            Claimed::Wait(slot) => Started::Wait(slot),
            Claimed::Mine(claim) => match self.remote(id, true).await {
                Remote::Unit(p) => {
                    let p = Arc::new(p);
                    claim.finish(Ok(p.clone()));
                    Started::Ready(p)
                }
                Remote::Lease(token) => Started::Wait(self.run(pool, input, plan, claim, full, Some(token))?),
                Remote::Nothing => Started::Wait(self.run(pool, input, plan, claim, full, None)?),
            },
        })
    }

    /// Queues the decode of a claimed tile; returns the slot to wait on.
    /// With `lease` (this instance decodes the unit for every instance),
    /// the pixels go to the shared tier, then the lease is given back.
    fn run(
        &self,
        pool: &Pool,
        input: &DecodeInput,
        plan: &TilePlan,
        claim: Claim,
        full: Rect,
        lease: Option<String>,
    ) -> Result<Arc<Slot>, GetOrDecodeError> {
        let slot = claim.slot.clone();
        let input = input.clone();
        let (whole, scale) = (plan.whole, plan.scale);
        let share = match (lease, &self.remote, tokio::runtime::Handle::try_current()) {
            (Some(token), Some(r), Ok(handle)) => {
                let unit = unit_name(&claim.id);
                // Kept alive while the decode waits for a worker and runs.
                let renewal = Some(r.renew_unit(&unit, &claim.id.file, &token));
                let (remote, file) = (r.clone(), claim.id.file.clone());
                Some(UnitShare { remote, handle, unit, file, token, renewal, pixels: None })
            }
            _ => None,
        };
        // A refused job drops its claim: its waiters claim again.
        pool.submit(move || {
            input.decodes.inc();
            let before = crate::source::ranged::waits_on_this_thread();
            let mut r = decode_tile(&*input.data, &input.info, whole, full, scale, input.max_pixels);
            let n = crate::source::ranged::waits_on_this_thread() - before;
            input.waited_on_origin.fetch_add(n, std::sync::atomic::Ordering::Relaxed);
            if r.is_ok() && !input.data.intact() {
                // The file changed under the decode: its pixels are not kept.
                r = Err(CodecError::SourceChanged);
            }
            let out = r.map(Arc::new);
            if let Some(mut share) = share {
                // Stored and the lease given back as it drops, now.
                share.pixels = out.as_ref().ok().cloned();
            }
            let decoded = match (&out, &input.on_decoded) {
                (Ok(p), Some(hook)) => {
                    Some((hook.clone(), DecodedUnit { id: claim.id.clone(), full, scale, pixels: p.clone() }))
                }
                _ => None,
            };
            // Waiters first; the hook's work (queued as background jobs)
            // comes after.
            claim.finish(out);
            if let Some((hook, unit)) = decoded {
                hook(unit);
            }
        })
        .map_err(|_| GetOrDecodeError::Busy)?;
        Ok(slot)
    }

    fn claim(&self, id: &TileId) -> Claimed {
        if let Some(t) = self.shared.cache.get(id) {
            return Claimed::Ready(t);
        }
        let mut pending = self.shared.pending.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(s) = pending.get(id) {
            return Claimed::Wait(s.clone());
        }
        // Again under the lock: a decode may have ended since the first look
        // (it caches its tile before it leaves `pending`).
        if let Some(t) = self.shared.cache.peek(id) {
            return Claimed::Ready(t);
        }
        let slot = Arc::new(Slot::default());
        pending.insert(id.clone(), slot.clone());
        Claimed::Mine(Claim { id: id.clone(), slot, shared: self.shared.clone(), finished: false })
    }
}

/// A unit lease held while this instance decodes the unit for every
/// instance. Dropped, it stops the renewal, stores `pixels` in the shared
/// tier (when the decode gave some) and gives the lease back: after the
/// decode, and also when the decode never ran (the pool refused its job,
/// or it panicked), so other instances do not wait out the lease.
struct UnitShare {
    remote: Arc<crate::cache::shared::RedisTier>,
    handle: tokio::runtime::Handle,
    unit: String,
    file: String,
    token: String,
    renewal: Option<crate::cache::shared::Renewal>,
    pixels: Option<Arc<Pixels>>,
}

impl Drop for UnitShare {
    fn drop(&mut self) {
        drop(self.renewal.take());
        let token = std::mem::take(&mut self.token);
        self.remote.put_unit_then_release(&self.handle, &self.unit, &self.file, self.pixels.take(), token);
    }
}

/// The id and full-resolution rectangle of codestream tile (`col`, `row`).
fn tile(
    (width, height): (u32, u32),
    file: &str,
    version: SourceVersion,
    scale: u32,
    (tw, th): (u32, u32),
    col: u32,
    row: u32,
) -> (TileId, Rect) {
    let id = TileId { file: file.to_string(), version, reduce: scale.trailing_zeros(), col, row };
    let rect = Rect { x: col * tw, y: row * th, w: tw.min(width - col * tw), h: th.min(height - row * th) };
    (id, rect)
}

/// Decodes one codestream tile (or a whole JPEG) at 1/`scale`.
fn decode_tile(
    data: &dyn crate::source::SourceBytes,
    info: &ImageInfo,
    whole: bool,
    full: Rect,
    scale: u32,
    max_pixels: u64,
) -> Result<Pixels, CodecError> {
    if whole {
        codec::decode_with(data.as_ref(), data, info, full, scale, max_pixels)
    } else {
        let area = jp2::DecodeArea { x: full.x, y: full.y, w: full.w, h: full.h };
        let px = jp2::decode_with(data.as_ref(), data, area, scale.trailing_zeros(), max_pixels)
            .map_err(codec::jp2_error)?;
        Ok(match &info.icc {
            Some(icc) => codec::colour::to_srgb(px, icc),
            None => px,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Barrier;
    use std::time::{Duration, Instant};

    const W: u32 = 256;
    const H: u32 = 128;
    const TILE: u32 = 64;

    /// A lossless 256×128 RGB JPEG 2000 tiled 64 (a 4 × 2 grid), and its pixels.
    fn fixture() -> (Arc<Vec<u8>>, Arc<ImageInfo>, Pixels) {
        let px = crate::samples::generate::photo_like(W, H, 7);
        let input = jp2::EncodeInput::from_pixels(&px);
        let params = jp2::EncodeParams { tile_size: Some((TILE, TILE)), levels: 3, ..Default::default() };
        let data = jp2::encode(&input, &params).expect("encode");
        let info = codec::probe(&data).expect("probe");
        assert_eq!(info.native_tile, Some((TILE, TILE)));
        (Arc::new(data), Arc::new(info), px)
    }

    fn input(data: &Arc<Vec<u8>>, info: &Arc<ImageInfo>) -> DecodeInput {
        DecodeInput {
            data: data.clone(),
            info: info.clone(),
            max_pixels: u64::MAX,
            decodes: prometheus::IntCounter::new("d", "d").expect("counter"),
            ahead: prometheus::IntCounter::new("a", "a").expect("counter"),
            on_decoded: None,
            waited_on_origin: Default::default(),
        }
    }

    fn version() -> SourceVersion {
        SourceVersion { len: 1, mtime_ns: 1 }
    }

    fn rect(x: u32, y: u32, w: u32, h: u32) -> Rect {
        Rect { x, y, w, h }
    }

    fn crop(p: &Pixels, r: Rect) -> Vec<u8> {
        let c = p.layout().channels();
        let mut out = Vec::new();
        for y in r.y..r.y + r.h {
            let s = (y * p.width() + r.x) as usize * c;
            out.extend_from_slice(&p.data()[s..s + r.w as usize * c]);
        }
        out
    }

    fn cached(d: &DecodedTiles, col: u32, row: u32) -> bool {
        d.shared.cache.peek(&TileId { file: "f".into(), version: version(), reduce: 0, col, row }).is_some()
    }

    /// Waits (bounded) until no decode is pending.
    async fn settle(d: &DecodedTiles) {
        let t = Instant::now();
        while !d.shared.pending.lock().unwrap().is_empty() && t.elapsed() < Duration::from_secs(10) {
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
    }

    #[test]
    fn a_plan_names_the_codestream_tiles_a_region_touches() {
        let (_, info, _) = fixture();
        let d = DecodedTiles::new(1 << 24);
        let p = d.plan(&info, "f", version(), rect(60, 10, 10, 60), 1, u64::MAX).expect("tiled");
        let cols_rows: Vec<_> = p.tiles.iter().map(|(id, _)| (id.col, id.row)).collect();
        assert_eq!(cols_rows, vec![(0, 0), (1, 0), (0, 1), (1, 1)]);
        assert_eq!(p.tiles[3].1, rect(64, 64, 64, 64));
        // Six tiles is more than a request may cut from; a scale the tiling
        // does not divide has no exact mapping.
        assert!(d.plan(&info, "f", version(), rect(0, 0, 130, 70), 1, u64::MAX).is_none());
        assert!(d.plan(&info, "f", version(), rect(0, 0, 64, 64), 128, u64::MAX).is_none());
    }

    #[test]
    fn untiled_jpeg2000_is_planned_in_virtual_tiles_and_tiled_in_codestream_tiles() {
        let d = DecodedTiles::new(1 << 24).with_unit(64);
        // Untiled: units of 64 output pixels a side at every scale.
        assert_eq!(d.unit_size(None, 1), Some((64, 64)));
        assert_eq!(d.unit_size(None, 4), Some((256, 256)));
        assert_eq!(DecodedTiles::new(1 << 24).unit_size(None, 1), None, "units off: untiled is not planned");
        // Tiled: one codestream tile at every scale the tiling divides.
        assert_eq!(d.unit_size(Some((32, 32)), 4), Some((32, 32)));
        assert_eq!(d.unit_size(Some((64, 64)), 128), None, "a scale the tiling does not divide");
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn an_untiled_jpeg2000_is_cut_exactly_from_virtual_tiles_each_decoded_once() {
        let px = crate::samples::generate::photo_like(W, H, 3);
        let raw = jp2::EncodeInput::from_pixels(&px);
        let params = jp2::EncodeParams { tile_size: None, levels: 3, lossless: true, ..Default::default() };
        let data = Arc::new(jp2::encode(&raw, &params).expect("encode"));
        let info = Arc::new(codec::probe(&data).expect("probe"));
        assert_eq!(info.native_tile, None);
        let d = DecodedTiles::new(1 << 24).with_unit(64);
        let pool = Pool::new(2, 64).expect("pool");
        let inp = input(&data, &info);
        // Sixteen 16² regions in one 64² unit, then one across four units.
        for i in 0..16u32 {
            let r = rect(64 + (i % 4) * 16, (i / 4) * 16, 16, 16);
            let plan = d.plan(&info, "f", version(), r, 1, u64::MAX).expect("virtual tiles");
            let tiles = d.get_or_decode(&pool, &inp, &plan).await.expect("fetch");
            assert_eq!(plan.assemble(&tiles).expect("cut").data(), &crop(&px, r)[..], "region {i}");
            // The same rectangle named inside its one unit (what a GPU reads
            // from the unit kept on the device).
            let (x, y, w, h) = plan.rect_in(&tiles[0]).expect("one unit holds it");
            assert_eq!(tiles[0].crop(x, y, w, h).data(), &crop(&px, r)[..], "region {i} in its unit");
        }
        assert_eq!(inp.decodes.get(), 1, "one decode for the sixteen regions of one unit");
        let r = rect(40, 40, 60, 50);
        let plan = d.plan(&info, "f", version(), r, 1, u64::MAX).expect("virtual tiles");
        assert_eq!(plan.tiles.len(), 4);
        let tiles = d.get_or_decode(&pool, &inp, &plan).await.expect("fetch");
        assert_eq!(plan.assemble(&tiles).expect("cut").data(), &crop(&px, r)[..]);
        assert_eq!(plan.rect_in(&tiles[0]), None, "four units: no one unit holds it");
    }

    #[test]
    fn the_tiles_ahead_follow_raster_order_into_the_next_band_of_rows() {
        let (_, info, _) = fixture();
        let d = DecodedTiles::new(1 << 24).with_ahead(3);
        let p = d.plan(&info, "f", version(), rect(130, 0, 60, 60), 1, u64::MAX).expect("tiled");
        let next: Vec<_> = d.next_tiles(&p).iter().map(|(id, r)| (id.col, id.row, *r)).collect();
        assert_eq!(next, vec![(3, 0, rect(192, 0, 64, 64)), (0, 1, rect(0, 64, 64, 64)), (1, 1, rect(64, 64, 64, 64))]);
        // Nothing after the last tile, nor when decoding ahead is off.
        let last = d.plan(&info, "f", version(), rect(200, 100, 10, 10), 1, u64::MAX).expect("tiled");
        assert!(d.next_tiles(&last).is_empty());
        assert!(DecodedTiles::new(1 << 24).next_tiles(&p).is_empty());
    }

    #[test]
    fn a_tile_decoded_ahead_outlives_the_next_decodes_in_a_full_cache() {
        let px = Pixels::filled(64, 64, crate::pixels::Layout::Rgb, &[1, 2, 3]);
        let d = DecodedTiles::new(8 * (px.byte_len() as u64 + 64));
        let id = |col| TileId { file: "f".into(), version: version(), reduce: 0, col, row: 0 };
        let put = |col| match d.claim(&id(col)) {
            Claimed::Mine(c) => c.finish(Ok(Arc::new(px.clone()))),
            _ => panic!("tile {col} claimed twice"),
        };
        let used = |col| matches!(d.claim(&id(col)), Claimed::Ready(_));
        // A full cache of tiles in use.
        for col in 0..8 {
            put(col);
            assert!(used(col));
        }
        // Decoded ahead: not asked yet.
        put(100);
        // Three more decodes on demand (a viewer finishing the tiles before it).
        for col in 8..11 {
            put(col);
            assert!(used(col));
        }
        assert!(used(100), "the tile decoded ahead was evicted before it was asked");
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn concurrent_requests_for_one_codestream_tile_share_one_decode_and_cut_exact_pixels() {
        let (data, info, px) = fixture();
        let d = Arc::new(DecodedTiles::new(1 << 24));
        let pool = Arc::new(Pool::new(2, 64).expect("pool"));
        let inp = input(&data, &info);
        let mut tasks = Vec::new();
        for i in 0..16u32 {
            let (d, pool, inp, info) = (d.clone(), pool.clone(), inp.clone(), info.clone());
            tasks.push(tokio::spawn(async move {
                let r = rect(64 + (i % 4) * 16, (i / 4) * 16, 16, 16);
                let plan = d.plan(&info, "f", version(), r, 1, u64::MAX).expect("tiled");
                let tiles = d.get_or_decode(&pool, &inp, &plan).await.expect("fetch");
                (r, plan.assemble(&tiles).expect("cut"))
            }));
        }
        for t in tasks {
            let (r, cut) = t.await.expect("task");
            assert_eq!((cut.width(), cut.height()), (r.w, r.h));
            assert_eq!(cut.data(), &crop(&px, r)[..], "lossless tile cut at {r:?}");
        }
        assert_eq!(inp.decodes.get(), 1);
        assert!(d.shared.pending.lock().unwrap().is_empty());
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn idle_workers_decode_the_next_tiles_ahead_and_a_busy_pool_does_not() {
        let (data, info, _) = fixture();
        let d = DecodedTiles::new(1 << 24).with_ahead(2);
        let pool = Pool::new(2, 64).expect("pool");
        let inp = input(&data, &info);
        let plan = d.plan(&info, "f", version(), rect(0, 0, 64, 64), 1, u64::MAX).expect("tiled");
        d.get_or_decode(&pool, &inp, &plan).await.expect("fetch");
        settle(&d).await;
        // Tile (0,0) took one worker; one was idle for (1,0). Whether (2,0)
        // went ahead too depends on (0,0)'s tiny decode ending before the
        // second look at the pool (it can, on a loaded machine).
        let ahead = inp.ahead.get();
        assert!((1..=2).contains(&ahead), "{ahead} decodes ahead");
        assert_eq!(inp.decodes.get(), 1 + ahead);
        assert!(cached(&d, 1, 0));
        // The next request finds its tile decoded, and the idle workers go on.
        let plan = d.plan(&info, "f", version(), rect(64, 0, 64, 64), 1, u64::MAX).expect("tiled");
        d.get_or_decode(&pool, &inp, &plan).await.expect("fetch");
        settle(&d).await;
        // (2,0) went ahead, now or before; (3,0) too unless a worker still
        // looked busy (its count drops just after its decode is stored).
        let ahead = inp.ahead.get();
        assert!((2..=3).contains(&ahead), "{ahead} decodes ahead");
        assert_eq!(inp.decodes.get(), 1 + ahead);
        assert!(cached(&d, 2, 0));

        // With its one worker busy, a pool gets no decode ahead.
        let d = DecodedTiles::new(1 << 24).with_ahead(2);
        let pool = Pool::new(1, 64).expect("pool");
        let gate = Arc::new(Barrier::new(2));
        let g = gate.clone();
        let _busy = pool.submit(move || {
            g.wait();
        });
        let inp = input(&data, &info);
        let plan = d.plan(&info, "f", version(), rect(0, 0, 64, 64), 1, u64::MAX).expect("tiled");
        let fetch = d.get_or_decode(&pool, &inp, &plan);
        tokio::pin!(fetch);
        assert!(tokio::time::timeout(Duration::from_millis(50), &mut fetch).await.is_err(), "waits for the worker");
        gate.wait();
        fetch.await.expect("fetch");
        settle(&d).await;
        assert_eq!((inp.decodes.get(), inp.ahead.get()), (1, 0));
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_full_queue_is_busy_and_leaves_no_claim_behind() {
        let (data, info, _) = fixture();
        let d = DecodedTiles::new(1 << 24);
        let pool = Pool::new(1, 1).expect("pool");
        let gate = Arc::new(Barrier::new(2));
        let g = gate.clone();
        let _busy = pool.submit(move || {
            g.wait();
        });
        // Fill the one queue place (the worker may not have taken the first job yet).
        let mut filler = None;
        for _ in 0..100 {
            if let Ok(rx) = pool.submit(|| ()) {
                filler = Some(rx);
                break;
            }
            tokio::time::sleep(Duration::from_millis(1)).await;
        }
        assert!(filler.is_some());
        let inp = input(&data, &info);
        let plan = d.plan(&info, "f", version(), rect(0, 0, 64, 64), 1, u64::MAX).expect("tiled");
        let r = d.get_or_decode(&pool, &inp, &plan).await;
        assert!(matches!(r, Err(GetOrDecodeError::Busy)), "{r:?}");
        assert!(d.shared.pending.lock().unwrap().is_empty());
        gate.wait();
        // Once the queue drains, the same request succeeds.
        let t = Instant::now();
        loop {
            match d.get_or_decode(&pool, &inp, &plan).await {
                Ok(_) => break,
                Err(GetOrDecodeError::Busy) if t.elapsed() < Duration::from_secs(10) => {
                    tokio::time::sleep(Duration::from_millis(5)).await
                }
                Err(e) => panic!("{e:?}"),
            }
        }
    }

    /// Source bytes whose every read panics (a decoder bug, as seen from here).
    struct Panics;
    impl AsRef<[u8]> for Panics {
        fn as_ref(&self) -> &[u8] {
            panic!("a decode that panics (on purpose, in a test)")
        }
    }
    impl crate::source::SourceBytes for Panics {}
    impl crate::codec::Need for Panics {
        fn need(&self, _: &[(u64, u64)]) -> Result<(), crate::codec::CodecError> {
            Ok(())
        }
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_decode_that_panics_every_time_ends_in_an_error_not_a_loop() {
        let (data, info, _) = fixture();
        let d = DecodedTiles::new(1 << 24);
        let pool = Pool::new(1, 8).expect("pool");
        let mut inp = input(&data, &info);
        inp.data = Arc::new(Panics);
        let plan = d.plan(&info, "f", version(), rect(0, 0, 64, 64), 1, u64::MAX).expect("tiled");
        let r = tokio::time::timeout(Duration::from_secs(10), d.get_or_decode(&pool, &inp, &plan))
            .await
            .expect("not stuck");
        assert!(matches!(r, Err(GetOrDecodeError::Codec(CodecError::Corrupt(_)))), "{r:?}");
        assert_eq!(inp.decodes.get(), 1 + MAX_DROPPED_CLAIMS as u64);
        assert!(d.shared.pending.lock().unwrap().is_empty());
        // The pool and the store still serve.
        let good = input(&data, &info);
        assert_eq!(d.get_or_decode(&pool, &good, &plan).await.expect("fetch").len(), 1);
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn waiters_of_a_dropped_claim_claim_again() {
        let (data, info, _) = fixture();
        let d = Arc::new(DecodedTiles::new(1 << 24));
        let pool = Arc::new(Pool::new(1, 8).expect("pool"));
        let inp = input(&data, &info);
        let plan = d.plan(&info, "f", version(), rect(0, 0, 64, 64), 1, u64::MAX).expect("tiled");
        let Claimed::Mine(claim) = d.claim(&plan.tiles[0].0) else { panic!("first claim") };
        let waiter = {
            let (d, pool, inp, plan) = (d.clone(), pool.clone(), inp.clone(), plan.clone());
            tokio::spawn(async move { d.get_or_decode(&pool, &inp, &plan).await.map(|t| t.len()) })
        };
        tokio::time::sleep(Duration::from_millis(30)).await;
        assert_eq!(inp.decodes.get(), 0, "the waiter waits for the claim");
        drop(claim);
        let n = tokio::time::timeout(Duration::from_secs(10), waiter).await.expect("not stuck").expect("task");
        assert_eq!(n.expect("decoded"), 1);
        assert_eq!(inp.decodes.get(), 1);
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_whole_jpeg_level_up_to_half_the_bound_is_kept() {
        let px = crate::samples::generate::photo_like(200, 150, 3);
        let jpg = codec::encode::encode(&px, crate::iiif::Format::Jpg, 90).expect("jpeg");
        let info = Arc::new(codec::probe(&jpg).expect("probe"));
        let level = 200 * 150 * 3;
        // Exactly the largest level admitted, and small enough that a cache
        // split into shards would refuse it.
        let d = DecodedTiles::new(2 * (level as u64 + ENTRY_OVERHEAD)).with_jpeg_min_pixels(1);
        let pool = Pool::new(2, 8).expect("pool");
        let inp = input(&Arc::new(jpg), &info);
        let plan = d.plan(&info, "f", version(), rect(10, 10, 50, 50), 1, u64::MAX).expect("whole level");
        let tiles = d.get_or_decode(&pool, &inp, &plan).await.expect("fetch");
        assert_eq!(tiles[0].width(), 200);
        assert!(d.bytes() >= level as u64, "kept: {} bytes", d.bytes());
        d.get_or_decode(&pool, &inp, &plan).await.expect("fetch");
        assert_eq!(inp.decodes.get(), 1);
        // A level over half the bound is not decoded whole.
        let small = DecodedTiles::new(2 * (level as u64 + ENTRY_OVERHEAD) - 1).with_jpeg_min_pixels(1);
        assert!(small.plan(&info, "f", version(), rect(0, 0, 10, 10), 1, u64::MAX).is_none());
    }
}
