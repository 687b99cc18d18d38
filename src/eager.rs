//! Eager tiling: every decode yields all the tiles it can.
//!
//! A decode unit (a codestream tile, a virtual tile of an untiled JPEG 2000,
//! a whole JPEG level) covers many IIIF tiles, and a viewer will ask for
//! them all. Encoding one costs about a millisecond against tens or hundreds
//! for the decode, so when a unit is decoded, every tile of the grid that
//! info.json advertises inside it, and of the grid the asking viewer walks
//! when that is another size, is encoded at default quality in jpg into the
//! tile cache and the persistent tier. The decoded pixels then need not
//! stay in memory for their neighbours to come: the neighbours are ready.
//!
//! The work runs as background jobs on the worker pool
//! (`Pool::submit_background`), taken only while no request job waits: one
//! job per unit, which encodes one tile and queues itself again for the
//! rest (so units take turns, and a request never waits for more than the
//! one tile each worker is encoding). A unit whose job finds the
//! background queue full is not tiled; its tiles render on demand.
//!
//! On a GPU backend the first job of a unit transforms all its tiles at
//! once (one submission, one wait, the unit uploaded once and kept on the
//! device while hot: `transform::apply_in`), and
//! each job after that encodes one transformed tile; on the CPU each tile
//! is cut, transformed and encoded in its own job.
//!
//! [`tiles_inside`] and [`walked_grid`] are pure; [`hook`] runs them
//! against a [`Sink`], which the service implements (the caches, the pool
//! and the encoder), so this module knows nothing of HTTP or of the
//! service's state.

use std::sync::Arc;
use std::time::{Duration, Instant};

use crate::cache::{Encoded, TileKey};
use crate::codec::ImageInfo;
use crate::decoded::{DecodedTiles, DecodedUnit, TilePlan};
use crate::iiif::{self, ApiVersion, ImageRequest, Quality, Region, Rotation, Size, SizeKind};
use crate::pixels::Pixels;
use crate::plan::{Limits, Plan, Rect};
use crate::source::SourceVersion;
use crate::transform::gpu::Rect4;

/// Where eager tiles go, and what makes them.
pub trait Sink: Send + Sync + 'static {
    /// Whether the tile is cached already (not counted as a lookup).
    fn is_cached(&self, key: &TileKey) -> bool;
    /// Transforms and encodes cut pixels as a request's render would.
    fn encode(&self, pixels: Pixels, plan: &Plan) -> Option<Encoded>;
    /// Whether the transform backend does a unit's tiles better together
    /// (a GPU: one submission and one wait for them all) than each with
    /// its encode.
    fn batches(&self) -> bool;
    /// Transforms rectangles `(x, y, w, h)` of one unit together, each as
    /// [`Sink::encode`] would transform it cut out; `None` when a rectangle
    /// lies outside the unit.
    fn transform_in(&self, unit: &Arc<Pixels>, items: Vec<(Rect4, &Plan)>) -> Option<Vec<Pixels>>;
    /// Encodes pixels [`Sink::transform_in`] transformed.
    fn encode_transformed(&self, pixels: &Pixels, plan: &Plan) -> Option<Encoded>;
    /// Keeps an encoded tile (memory cache, disk tier) and counts it;
    /// `took` is the time spent cutting and encoding it.
    fn keep(&self, key: TileKey, tile: Arc<Encoded>, took: std::time::Duration);
    /// Queues background work; false when its queue is full.
    fn background(&self, job: Box<dyn FnOnce() + Send>) -> bool;
}

/// The full-resolution regions of the tiles of a `tile`-sized grid at scale
/// factor `sf` (the grid of info.json: tile `i` starts at `i · tile · sf`)
/// that lie wholly inside `unit`, in raster order.
pub fn tiles_inside((width, height): (u32, u32), (tw, th): (u32, u32), sf: u32, unit: Rect) -> Vec<Rect> {
    let (sx, sy) = (tw as u64 * sf as u64, th as u64 * sf as u64);
    if sx == 0 || sy == 0 || unit.w == 0 || unit.h == 0 {
        return Vec::new();
    }
    let (ux1, uy1) = (unit.x as u64 + unit.w as u64, unit.y as u64 + unit.h as u64);
    let (w, h) = (width as u64, height as u64);
    let axis = |start: u32, end: u64, step: u64, size: u64| -> Vec<(u32, u32)> {
        let mut out = Vec::new();
        let mut p = (start as u64).div_ceil(step) * step;
        while p < end.min(size) {
            let e = (p + step).min(size);
            if e <= end {
                out.push((p as u32, (e - p) as u32));
            }
            p += step;
        }
        out
    };
    let cols = axis(unit.x, ux1, sx, w);
    let rows = axis(unit.y, uy1, sy, h);
    let mut out = Vec::with_capacity(cols.len() * rows.len());
    for &(y, rh) in &rows {
        for &(x, rw) in &cols {
            out.push(Rect { x, y, w: rw, h: rh });
        }
    }
    out
}

/// The grid a request belongs to, when it is an interior tile of a regular
/// one: a square output of `t` pixels cut from a `t · scale` square whose
/// origin lies on that grid, at default quality in jpg, unrotated.
pub fn walked_grid(plan: &Plan) -> Option<(u32, u32)> {
    let t = plan.scaled_w;
    let step = t.checked_mul(plan.scale)?;
    let plain = plan.rotation == Rotation::NONE && plan.quality == Quality::Default && plan.format == iiif::Format::Jpg;
    let interior = plan.scaled_h == t && plan.region.w == step && plan.region.h == step;
    (plain && interior && t > 0 && plan.region.x.is_multiple_of(step) && plan.region.y.is_multiple_of(step))
        .then_some((t, t))
}

/// The request a viewer sends for the tile at `region` (full resolution) of
/// a level at 1/`sf`: that region at its width divided by `sf`, rounded up.
fn tile_request(region: Rect, sf: u32) -> ImageRequest {
    ImageRequest {
        region: Region::Pixels { x: region.x, y: region.y, w: region.w, h: region.h },
        size: Size { kind: SizeKind::Width(region.w.div_ceil(sf)), upscale: true },
        rotation: Rotation::NONE,
        quality: Quality::Default,
        format: iiif::Format::Jpg,
    }
}

/// What the tiles of one request's decodes are keyed and planned by.
pub struct Context {
    pub version: ApiVersion,
    /// The file's cache key and version (as in [`TileKey`]).
    pub file: String,
    pub source_version: SourceVersion,
    pub info: Arc<ImageInfo>,
    /// Tile sizes to fill: the advertised one, and the walked one if other.
    pub grids: Vec<(u32, u32)>,
    pub limits: Limits,
    pub max_pixels: u64,
    /// The decoded-tile store (it plans the cut of a tile from its unit).
    pub store: Arc<DecodedTiles>,
    /// The asking request's own tile (its `TileKey::canonical`): that
    /// request renders it, so it is not queued here.
    pub asked: String,
}

/// The hook a request hands to the decoded-tile store: told of each unit
/// its jobs decode, it queues one background job per tile of `ctx`'s grids
/// inside that unit that is not cached yet.
pub fn hook<S: Sink>(sink: Arc<S>, ctx: Context) -> Arc<dyn Fn(DecodedUnit) + Send + Sync> {
    let ctx = Arc::new(ctx);
    Arc::new(move |unit: DecodedUnit| queue_tiles(&sink, &ctx, unit))
}

/// One tile to encode: its key, its plan and how to cut it from the unit;
/// once a batch transform has run, its transformed pixels and its share of
/// that transform's time.
struct Pending {
    key: TileKey,
    plan: Plan,
    cut: TilePlan,
    ready: Option<(Pixels, Duration)>,
}

/// The tiles of one unit still to encode, and the unit's pixels.
struct Batch {
    unit: Arc<DecodedUnit>,
    tiles: std::vec::IntoIter<Pending>,
    /// Whether the batch transform has run (or was not wanted).
    transformed: bool,
}

fn queue_tiles<S: Sink>(sink: &Arc<S>, ctx: &Arc<Context>, unit: DecodedUnit) {
    let facts = ctx.info.facts();
    let image = (ctx.info.width, ctx.info.height);
    let mut pending = Vec::new();
    for &grid in &ctx.grids {
        for region in tiles_inside(image, grid, unit.scale, unit.full) {
            let Ok(plan) = crate::plan::plan(&facts, &tile_request(region, unit.scale), &ctx.limits, ctx.version)
            else {
                continue;
            };
            // The planner may serve this tile from another level (a scale
            // factor beyond the codestream's levels): not from this unit.
            if plan.scale != unit.scale {
                continue;
            }
            let key = TileKey {
                file: ctx.file.clone(),
                version: ctx.source_version,
                canonical: format!("{}:{}", ctx.version as u8, plan.canonical),
            };
            if key.canonical == ctx.asked || sink.is_cached(&key) {
                continue;
            }
            let Some(cut) =
                ctx.store.plan(&ctx.info, &ctx.file, ctx.source_version, plan.region, plan.scale, ctx.max_pixels)
            else {
                continue;
            };
            if cut.is_within(&unit.id) {
                pending.push(Pending { key, plan, cut, ready: None });
            }
        }
    }
    if !pending.is_empty() {
        run_batch(sink.clone(), Batch { unit: Arc::new(unit), tiles: pending.into_iter(), transformed: false });
    }
}

/// Queues a background job that encodes the batch's next tile and queues
/// the rest behind whatever else waits, so each job is one tile long and
/// the units being tiled take turns. Dropped when the background queue is
/// full: a viewer asking for those tiles later renders them as usual. On a
/// backend that batches, the first job transforms every tile first.
fn run_batch<S: Sink>(sink: Arc<S>, mut batch: Batch) {
    let s = sink.clone();
    sink.background(Box::new(move || {
        if !batch.transformed {
            batch.transformed = true;
            if s.batches() {
                transform_all(&*s, &mut batch);
            }
        }
        if let Some(p) = batch.tiles.next() {
            encode_one(&*s, &batch.unit, p);
        }
        if batch.tiles.len() > 0 {
            run_batch(s, batch);
        }
    }));
}

/// Transforms every tile of the batch not cached yet in one call, as
/// rectangles of the unit (on a GPU the unit is uploaded once and stays on
/// the device while hot); each tile keeps its pixels for its own encode job.
fn transform_all<S: Sink>(sink: &S, batch: &mut Batch) {
    let t = Instant::now();
    let mut kept = Vec::new();
    let mut rects = Vec::new();
    for p in std::mem::take(&mut batch.tiles) {
        if sink.is_cached(&p.key) {
            continue;
        }
        if let Some(r) = p.cut.rect_in(&batch.unit.pixels) {
            rects.push(r);
            kept.push(p);
        }
    }
    if kept.is_empty() {
        return;
    }
    let items = rects.into_iter().zip(&kept).map(|(r, p)| (r, &p.plan)).collect();
    let Some(done) = sink.transform_in(&batch.unit.pixels, items) else {
        // Not transformed together: each tile is cut and encoded alone.
        batch.tiles = kept.into_iter();
        return;
    };
    let each = t.elapsed() / kept.len() as u32;
    for (p, px) in kept.iter_mut().zip(done) {
        p.ready = Some((px, each));
    }
    batch.tiles = kept.into_iter();
}

fn encode_one<S: Sink>(sink: &S, unit: &DecodedUnit, p: Pending) {
    if sink.is_cached(&p.key) {
        return;
    }
    let t = Instant::now();
    let (encoded, before) = match &p.ready {
        Some((px, spent)) => (sink.encode_transformed(px, &p.plan), *spent),
        None => {
            let Ok(pixels) = p.cut.assemble(std::slice::from_ref(&unit.pixels)) else { return };
            (sink.encode(pixels, &p.plan), Duration::ZERO)
        }
    };
    let Some(enc) = encoded else { return };
    sink.keep(p.key, Arc::new(enc), before + t.elapsed());
}

#[cfg(test)]
mod tests {
    use super::*;

    fn r(x: u32, y: u32, w: u32, h: u32) -> Rect {
        Rect { x, y, w, h }
    }

    #[test]
    fn a_unit_yields_the_grid_tiles_wholly_inside_it() {
        // 1000×600 image, 256 grid at scale 1, a 512² unit at the origin.
        let t = tiles_inside((1000, 600), (256, 256), 1, r(0, 0, 512, 512));
        assert_eq!(t, vec![r(0, 0, 256, 256), r(256, 0, 256, 256), r(0, 256, 256, 256), r(256, 256, 256, 256)]);
    }

    #[test]
    fn edge_tiles_are_cut_at_the_image_border() {
        // The unit at (512, 512) reaches the image's edge: 488 × 88 remain.
        let t = tiles_inside((1000, 600), (256, 256), 1, r(512, 512, 488, 88));
        assert_eq!(t, vec![r(512, 512, 256, 88), r(768, 512, 232, 88)]);
    }

    #[test]
    fn tiles_straddling_the_unit_border_are_left_to_their_requests() {
        // A 512 grid over 768-wide units: the tile at 512 crosses x = 768.
        let t = tiles_inside((2000, 512), (512, 512), 1, r(0, 0, 768, 512));
        assert_eq!(t, vec![r(0, 0, 512, 512)]);
        let t = tiles_inside((2000, 512), (512, 512), 1, r(768, 0, 768, 512));
        assert_eq!(t, vec![r(1024, 0, 512, 512)]);
    }

    #[test]
    fn coarser_levels_step_by_tile_times_scale() {
        // Scale 4: a 256 grid steps by 1024 full-resolution pixels.
        let t = tiles_inside((3000, 1000), (256, 256), 4, r(0, 0, 2048, 2048));
        assert_eq!(t, vec![r(0, 0, 1024, 1000), r(1024, 0, 1024, 1000)]);
    }

    #[test]
    fn an_empty_unit_or_grid_yields_nothing() {
        assert!(tiles_inside((100, 100), (0, 256), 1, r(0, 0, 100, 100)).is_empty());
        assert!(tiles_inside((100, 100), (256, 256), 1, r(0, 0, 0, 100)).is_empty());
    }

    fn plan_of(region: &str, size: &str) -> Plan {
        let req = iiif::v2::parse(region, size, "0", "default.jpg").unwrap();
        let facts = crate::plan::SourceFacts { width: 12000, height: 9000, scale_factors: vec![1, 2, 4, 8, 16, 32] };
        crate::plan::plan(&facts, &req, &crate::plan::Limits::default(), ApiVersion::V2).unwrap()
    }

    #[test]
    fn an_interior_viewer_tile_names_its_grid() {
        assert_eq!(walked_grid(&plan_of("1024,512,512,512", "256,")), Some((256, 256)));
        assert_eq!(walked_grid(&plan_of("2048,0,1024,1024", "512,")), Some((512, 512)));
    }

    #[test]
    fn other_requests_name_no_grid() {
        // Off the grid, an edge tile, a whole image.
        assert_eq!(walked_grid(&plan_of("100,0,512,512", "256,")), None);
        assert_eq!(walked_grid(&plan_of("11776,0,224,256", "224,")), None);
        assert_eq!(walked_grid(&plan_of("full", "1000,")), None);
    }
}
