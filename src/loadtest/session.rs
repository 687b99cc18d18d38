//! The tile requests a person causes in a deep-zoom viewer, as pure seeded
//! sequences: an image's levels (from info.json's `tiles`, via
//! [`crate::tile_walk::level_tiles`], or its `sizes` when it has no tiles), the
//! URL path of one tile per Image API version, a viewer session (home view,
//! zoom-ins toward a random point, pans at the finest level) and the cold
//! sweep (every tile of every level once, coarse to fine). No I/O.

use std::collections::{HashSet, VecDeque};
use std::sync::Arc;

use rand::rngs::SmallRng;
use rand::{Rng, SeedableRng};

use crate::tile_walk::{level_tiles, TileRequest};

/// Image API major version of an info.json.
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize)]
pub enum ApiVersion {
    V2,
    V3,
}

/// The `tiles` entry a viewer uses (the first one in info.json).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TileSpec {
    pub width: u32,
    pub height: u32,
    pub scale_factors: Vec<u32>,
}

/// What the load test needs from one info.json.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ImageSpec {
    /// The image's base URI (`@id` / `id`), without a trailing slash.
    pub id: String,
    pub version: ApiVersion,
    pub width: u32,
    pub height: u32,
    pub tiles: Option<TileSpec>,
    /// `sizes`, as (width, height).
    pub sizes: Vec<(u32, u32)>,
}

impl ImageSpec {
    /// The same image with `px`×`px` tiles at scale factors 1, 2, 4, … up
    /// to the first level that fits one tile, whatever info.json advertises
    /// (`--tile-size`: identical requests for every server of the image).
    pub fn with_tile_size(mut self, px: u32) -> ImageSpec {
        let px = px.max(1) as u64;
        let mut scale_factors = vec![1u32];
        let mut sf = 1u64;
        while px * sf < self.width.max(self.height) as u64 && sf < 1 << 20 {
            sf *= 2;
            scale_factors.push(sf as u32);
        }
        self.tiles = Some(TileSpec { width: px as u32, height: px as u32, scale_factors });
        self
    }
}

/// One request: the image (index into the run's images), the scale factor
/// it belongs to (for per-level figures), and the path after the image's id.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct Req {
    pub image: usize,
    pub scale_factor: u32,
    pub path: String,
}

/// What a view of a session is.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum ViewKind {
    /// The image fitted to the viewport.
    Home,
    /// One zoom-in step (by 2) toward the session's point.
    Zoom,
    /// Half a viewport sideways at the finest level.
    Pan,
}

impl ViewKind {
    pub fn name(self) -> &'static str {
        match self {
            ViewKind::Home => "home",
            ViewKind::Zoom => "zoom",
            ViewKind::Pan => "pan",
        }
    }
}

/// One gesture of a session and the tiles it newly shows: a viewer waits
/// for all of them before the view is sharp.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct View {
    pub kind: ViewKind,
    pub reqs: Vec<Req>,
}

/// The viewer's canvas in screen pixels.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Viewport {
    pub width: u32,
    pub height: u32,
}

impl std::str::FromStr for Viewport {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        let (w, h) = s.split_once(['x', 'X']).ok_or_else(|| format!("{s:?}: expected WIDTHxHEIGHT, e.g. 1024x768"))?;
        let p = |v: &str| v.trim().parse::<u32>().ok().filter(|n| (1..=100_000).contains(n));
        match (p(w), p(h)) {
            (Some(width), Some(height)) => Ok(Viewport { width, height }),
            _ => Err(format!("{s:?}: width and height must be whole numbers from 1 to 100000")),
        }
    }
}

/// One level of the tile pyramid: its tiles in `level_tiles` order
/// (row-major), and the grid they form.
#[derive(Clone, Debug)]
struct Level {
    sf: u32,
    cols: u64,
    rows: u64,
    /// Source pixels covered by one (non-edge) tile.
    span_w: f64,
    span_h: f64,
    paths: Vec<String>,
}

/// An image prepared for request generation: its levels, coarsest first.
#[derive(Clone, Debug)]
pub struct ImagePlan {
    pub spec: ImageSpec,
    levels: Vec<Level>,
    /// Sizes-only images: (width, height) ascending.
    sizes: Vec<(u32, u32)>,
}

impl ImagePlan {
    pub fn new(spec: ImageSpec) -> ImagePlan {
        let mut levels = Vec::new();
        if let Some(t) = spec.tiles.as_ref().filter(|t| t.width > 0 && t.height > 0) {
            let mut sfs: Vec<u32> = t.scale_factors.iter().copied().filter(|s| *s > 0).collect();
            if sfs.is_empty() {
                sfs.push(1);
            }
            sfs.sort_unstable_by(|a, b| b.cmp(a));
            sfs.dedup();
            for sf in sfs {
                let tiles = level_tiles(spec.width, spec.height, t.width, t.height, sf);
                if tiles.is_empty() {
                    continue;
                }
                let span_w = t.width as u64 * sf as u64;
                let span_h = t.height as u64 * sf as u64;
                let (cols, rows) = if tiles.len() == 1 {
                    (1, 1)
                } else {
                    ((spec.width as u64).div_ceil(span_w), (spec.height as u64).div_ceil(span_h))
                };
                let paths = tiles.iter().map(|r| tile_path(&spec, r)).collect();
                levels.push(Level { sf, cols, rows, span_w: span_w as f64, span_h: span_h as f64, paths });
            }
        }
        let mut sizes: Vec<(u32, u32)> = spec.sizes.iter().copied().filter(|(w, h)| *w > 0 && *h > 0).collect();
        sizes.sort_unstable();
        sizes.dedup();
        if levels.is_empty() && sizes.is_empty() && spec.width > 0 && spec.height > 0 {
            sizes.push((spec.width, spec.height));
        }
        ImagePlan { spec, levels, sizes }
    }

    /// True when requests come from `tiles`, false for the `sizes` fallback.
    pub fn tiled(&self) -> bool {
        !self.levels.is_empty()
    }

    /// Scale factors of the levels, coarsest first.
    pub fn scale_factors(&self) -> Vec<u32> {
        if self.tiled() {
            self.levels.iter().map(|l| l.sf).collect()
        } else {
            self.sizes.iter().rev().map(|&(w, _)| self.size_sf(w)).collect()
        }
    }

    fn size_sf(&self, w: u32) -> u32 {
        ((self.spec.width as f64 / w.max(1) as f64).round() as u32).max(1)
    }

    fn size_path(&self, w: u32, h: u32) -> String {
        match self.spec.version {
            ApiVersion::V2 => format!("full/{w},/0/default.jpg"),
            ApiVersion::V3 => format!("full/{w},{h}/0/default.jpg"),
        }
    }

    /// Every distinct request of the image once, coarse to fine.
    pub fn sweep(&self, image: usize) -> Vec<Req> {
        if self.tiled() {
            self.levels
                .iter()
                .flat_map(|l| l.paths.iter().map(move |p| Req { image, scale_factor: l.sf, path: p.clone() }))
                .collect()
        } else {
            self.sizes
                .iter()
                .map(|&(w, h)| Req { image, scale_factor: self.size_sf(w), path: self.size_path(w, h) })
                .collect()
        }
    }

    /// One viewer session: the home view, zoom-ins (one level step at a time)
    /// toward a random point down to the finest level, then `pans` pans of
    /// half a viewport in random directions. Tiles already asked in the
    /// session are not asked again (the browser holds them).
    pub fn session(&self, image: usize, viewport: Viewport, pans: u32, rng: &mut SmallRng) -> Vec<Req> {
        self.session_views(image, viewport, pans, rng).into_iter().flat_map(|v| v.reqs).collect()
    }

    /// [`ImagePlan::session`] view by view: each gesture's new tiles, in the
    /// order asked (a view whose tiles were all asked before has none).
    pub fn session_views(&self, image: usize, viewport: Viewport, pans: u32, rng: &mut SmallRng) -> Vec<View> {
        let (w, h) = (self.spec.width as f64, self.spec.height as f64);
        if w <= 0.0 || h <= 0.0 {
            return Vec::new();
        }
        let (vw, vh) = (viewport.width as f64, viewport.height as f64);
        // Source pixels per screen pixel in the home view (the image fitted).
        let s0 = (w / vw).max(h / vh);
        if !self.tiled() {
            // Each zoom-in asks the next larger size; the first is the
            // smallest size that covers the home view.
            let first = self
                .sizes
                .iter()
                .position(|&(sw, _)| sw as f64 >= w / s0 - 0.5)
                .unwrap_or(self.sizes.len().saturating_sub(1));
            return self
                .sizes
                .get(first..)
                .unwrap_or(&[])
                .iter()
                .enumerate()
                .map(|(k, &(sw, sh))| View {
                    kind: if k == 0 { ViewKind::Home } else { ViewKind::Zoom },
                    reqs: vec![Req { image, scale_factor: self.size_sf(sw), path: self.size_path(sw, sh) }],
                })
                .collect();
        }
        let finest = self.levels.last().map(|l| l.sf).unwrap_or(1) as f64;
        let target = (rng.random_range(0.0..w), rng.random_range(0.0..h));
        let home = (w / 2.0, h / 2.0);
        let mut seen = HashSet::new();
        let mut out = Vec::new();
        let mut s = s0;
        let mut centre: (f64, f64);
        let mut kind = ViewKind::Home;
        loop {
            // Zooming keeps the target point fixed on screen.
            let k = (s / s0).min(1.0);
            centre = (target.0 + (home.0 - target.0) * k, target.1 + (home.1 - target.1) * k);
            let mut reqs = Vec::new();
            self.ask_view(image, s, &mut centre, viewport, &mut seen, &mut reqs);
            out.push(View { kind, reqs });
            kind = ViewKind::Zoom;
            if s <= finest {
                break;
            }
            s = (s / 2.0).max(finest);
        }
        for _ in 0..pans {
            let a = rng.random_range(0.0..std::f64::consts::TAU);
            centre.0 += a.cos() * vw * s / 2.0;
            centre.1 += a.sin() * vh * s / 2.0;
            let mut reqs = Vec::new();
            self.ask_view(image, s, &mut centre, viewport, &mut seen, &mut reqs);
            out.push(View { kind: ViewKind::Pan, reqs });
        }
        out
    }

    /// Asks the tiles of the level a viewer shows at `s` source pixels per
    /// screen pixel that intersect the view around `centre` (clamped into
    /// the image), nearest the centre first.
    fn ask_view(
        &self,
        image: usize,
        s: f64,
        centre: &mut (f64, f64),
        viewport: Viewport,
        seen: &mut HashSet<(u32, usize)>,
        out: &mut Vec<Req>,
    ) {
        let Some(level) = pick_level(&self.levels, s) else {
            return;
        };
        let (w, h) = (self.spec.width as f64, self.spec.height as f64);
        let (rw, rh) = (viewport.width as f64 * s, viewport.height as f64 * s);
        centre.0 = clamp_centre(centre.0, rw, w);
        centre.1 = clamp_centre(centre.1, rh, h);
        let rect = (centre.0 - rw / 2.0, centre.1 - rh / 2.0, centre.0 + rw / 2.0, centre.1 + rh / 2.0);
        let mut hits = visible_tiles(level, rect);
        let dist = |&(c, r): &(u64, u64)| {
            let dx = (c as f64 + 0.5) * level.span_w - centre.0;
            let dy = (r as f64 + 0.5) * level.span_h - centre.1;
            dx * dx + dy * dy
        };
        hits.sort_by(|a, b| dist(a).total_cmp(&dist(b)).then(a.cmp(b)));
        for (c, r) in hits {
            let idx = (r * level.cols + c) as usize;
            if let Some(path) = level.paths.get(idx) {
                if seen.insert((level.sf, idx)) {
                    out.push(Req { image, scale_factor: level.sf, path: path.clone() });
                }
            }
        }
    }
}

/// The level a viewer draws at `s` source pixels per screen pixel: the
/// coarsest whose resolution still covers the screen (largest scale factor
/// ≤ s), or the finest level when zoomed in past it. `levels` coarsest first.
fn pick_level(levels: &[Level], s: f64) -> Option<&Level> {
    levels.iter().find(|l| l.sf as f64 <= s * (1.0 + 1e-9)).or(levels.last())
}

/// Keeps a view of `span` inside `0..size` (centred when it is larger).
fn clamp_centre(c: f64, span: f64, size: f64) -> f64 {
    if span >= size {
        size / 2.0
    } else {
        c.clamp(span / 2.0, size - span / 2.0)
    }
}

/// (column, row) of the level's tiles intersecting `rect` = (x0, y0, x1, y1)
/// in source pixels, row-major.
fn visible_tiles(level: &Level, rect: (f64, f64, f64, f64)) -> Vec<(u64, u64)> {
    let range = |a: f64, b: f64, span: f64, n: u64| {
        let lo = (a / span).floor().max(0.0) as u64;
        let hi = ((b / span).ceil() as u64).min(n);
        (lo.min(n), hi)
    };
    let (c0, c1) = range(rect.0, rect.2, level.span_w, level.cols);
    let (r0, r1) = range(rect.1, rect.3, level.span_h, level.rows);
    let mut out = Vec::new();
    for r in r0..r1 {
        for c in c0..c1 {
            out.push((c, r));
        }
    }
    out
}

/// The `{region}/{size}/0/default.jpg` path a viewer asks for a tile: the
/// `w,` size for Image API 2 (as [`crate::viewer`] computes it), `w,h` for
/// Image API 3 (`max` when that is the full size), as OpenSeadragon does.
pub fn tile_path(spec: &ImageSpec, t: &TileRequest) -> String {
    if spec.version == ApiVersion::V2 {
        return t.path();
    }
    let sf = t.scale_factor.max(1) as u64;
    let rh = if t.region == "full" {
        Some(spec.height as u64)
    } else {
        t.region.split(',').nth(3).and_then(|v| v.parse::<u64>().ok())
    };
    let w = t.size.trim_end_matches(',').parse::<u64>().ok();
    match (w, rh) {
        (Some(w), Some(rh)) => {
            let h = rh.div_ceil(sf);
            let size =
                if w == spec.width as u64 && h == spec.height as u64 { "max".to_string() } else { format!("{w},{h}") };
            format!("{}/{size}/0/default.jpg", t.region)
        }
        _ => t.path(),
    }
}

/// Where a virtual viewer's requests come from.
pub enum Source {
    /// Sessions back to back on randomly chosen images.
    Sessions(SessionGen),
    /// A shared list of requests, taken in order by every viewer.
    Sweep(Arc<SweepQueue>),
}

impl Source {
    pub fn next_req(&mut self) -> Option<Req> {
        match self {
            Source::Sessions(g) => g.next_req(),
            Source::Sweep(q) => q.next_req(),
        }
    }
}

/// Endless sessions for one virtual viewer, seeded.
pub struct SessionGen {
    images: Arc<Vec<ImagePlan>>,
    rng: SmallRng,
    viewport: Viewport,
    pans: u32,
    queue: VecDeque<Req>,
}

impl SessionGen {
    /// Viewer `viewer` of a run seeded with `seed`: distinct, reproducible.
    pub fn new(images: Arc<Vec<ImagePlan>>, seed: u64, viewer: u64, viewport: Viewport, pans: u32) -> SessionGen {
        let rng = SmallRng::seed_from_u64(seed ^ viewer.wrapping_add(1).wrapping_mul(0x9E37_79B9_7F4A_7C15));
        SessionGen { images, rng, viewport, pans, queue: VecDeque::new() }
    }

    /// The next request; `None` only when no image yields any request.
    pub fn next_req(&mut self) -> Option<Req> {
        for _ in 0..4 {
            if let Some(r) = self.queue.pop_front() {
                return Some(r);
            }
            if self.images.is_empty() {
                return None;
            }
            let i = self.rng.random_range(0..self.images.len());
            if let Some(img) = self.images.get(i) {
                let s = img.session(i, self.viewport, self.pans, &mut self.rng);
                self.queue.extend(s);
            }
        }
        self.queue.pop_front()
    }
}

/// Endless sessions for one virtual viewer, view by view, seeded as
/// [`SessionGen`] (the same seed and viewer give the same tiles).
pub struct ViewGen {
    images: Arc<Vec<ImagePlan>>,
    rng: SmallRng,
    viewport: Viewport,
    pans: u32,
    queue: VecDeque<View>,
    /// Sessions left to start (`None`: no end).
    sessions_left: Option<u64>,
}

impl ViewGen {
    /// Viewer `viewer`'s views; after `sessions` sessions (if given), none.
    pub fn new(
        images: Arc<Vec<ImagePlan>>,
        seed: u64,
        viewer: u64,
        viewport: Viewport,
        pans: u32,
        sessions: Option<u64>,
    ) -> ViewGen {
        let rng = SmallRng::seed_from_u64(seed ^ viewer.wrapping_add(1).wrapping_mul(0x9E37_79B9_7F4A_7C15));
        ViewGen { images, rng, viewport, pans, queue: VecDeque::new(), sessions_left: sessions }
    }

    /// The next view with at least one tile; `None` when the sessions are
    /// done or no image yields any.
    pub fn next_view(&mut self) -> Option<View> {
        for _ in 0..4 {
            while let Some(v) = self.queue.pop_front() {
                if !v.reqs.is_empty() {
                    return Some(v);
                }
            }
            if self.images.is_empty() || self.sessions_left == Some(0) {
                return None;
            }
            if let Some(n) = self.sessions_left.as_mut() {
                *n -= 1;
            }
            let i = self.rng.random_range(0..self.images.len());
            if let Some(img) = self.images.get(i) {
                let views = img.session_views(i, self.viewport, self.pans, &mut self.rng);
                self.queue.extend(views);
            }
        }
        None
    }
}

/// The cold sweep's work list, shared by all viewers.
pub struct SweepQueue {
    reqs: Vec<Req>,
    next: std::sync::atomic::AtomicUsize,
}

impl SweepQueue {
    /// Every image's sweep, one image after another.
    pub fn new(images: &[ImagePlan]) -> SweepQueue {
        let reqs = images.iter().enumerate().flat_map(|(i, p)| p.sweep(i)).collect();
        SweepQueue { reqs, next: Default::default() }
    }

    pub fn len(&self) -> usize {
        self.reqs.len()
    }

    pub fn is_empty(&self) -> bool {
        self.reqs.is_empty()
    }

    pub fn next_req(&self) -> Option<Req> {
        let i = self.next.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        self.reqs.get(i).cloned()
    }
}

/// Open loop: when request `i` is due, counted from the start of the run.
pub fn scheduled_offset(rate: f64, i: u64) -> std::time::Duration {
    if rate > 0.0 && rate.is_finite() {
        std::time::Duration::from_secs_f64(i as f64 / rate)
    } else {
        std::time::Duration::ZERO
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn spec(version: ApiVersion, w: u32, h: u32, tile: u32, sfs: &[u32]) -> ImageSpec {
        ImageSpec {
            id: "http://127.0.0.1:1/iiif/x".into(),
            version,
            width: w,
            height: h,
            tiles: Some(TileSpec { width: tile, height: tile, scale_factors: sfs.to_vec() }),
            sizes: vec![],
        }
    }

    fn rng() -> SmallRng {
        SmallRng::seed_from_u64(7)
    }

    const VP: Viewport = Viewport { width: 1024, height: 768 };

    #[test]
    fn a_session_view_by_view_is_home_then_zooms_then_pans_and_asks_the_same_tiles_in_the_same_order() {
        let plan = ImagePlan::new(spec(ApiVersion::V2, 12000, 9000, 512, &[1, 2, 4, 8, 16, 32]));
        let views = plan.session_views(0, VP, 4, &mut rng());
        let kinds: Vec<ViewKind> = views.iter().map(|v| v.kind).collect();
        assert_eq!(kinds.first(), Some(&ViewKind::Home));
        assert_eq!(kinds.iter().filter(|k| **k == ViewKind::Pan).count(), 4);
        let zooms = kinds.iter().filter(|k| **k == ViewKind::Zoom).count();
        assert!(zooms >= 3, "zoom-ins by 2 from the home view to full resolution: {kinds:?}");
        assert!(kinds.windows(2).all(|w| w[0] <= w[1]), "home, then zooms, then pans: {kinds:?}");
        let flat: Vec<Req> = views.into_iter().flat_map(|v| v.reqs).collect();
        assert_eq!(flat, plan.session(0, VP, 4, &mut rng()));
    }

    #[test]
    fn a_view_generator_skips_views_with_no_new_tile_and_stops_after_its_sessions() {
        let images = Arc::new(vec![ImagePlan::new(spec(ApiVersion::V3, 2000, 1500, 256, &[1, 2, 4, 8]))]);
        let mut g = ViewGen::new(images.clone(), 3, 0, VP, 8, None);
        for _ in 0..50 {
            let v = g.next_view().unwrap();
            assert!(!v.reqs.is_empty());
        }
        let mut one = ViewGen::new(images, 3, 0, VP, 2, Some(1));
        let mut kinds = Vec::new();
        while let Some(v) = one.next_view() {
            kinds.push(v.kind);
        }
        assert_eq!(kinds.first(), Some(&ViewKind::Home));
        assert_eq!(kinds.iter().filter(|k| **k == ViewKind::Home).count(), 1, "one session, then none: {kinds:?}");
    }

    #[test]
    fn viewport_parses() {
        assert_eq!("1024x768".parse::<Viewport>(), Ok(VP));
        assert!("1024".parse::<Viewport>().is_err());
        assert!("0x5".parse::<Viewport>().is_err());
    }

    #[test]
    fn v2_paths_are_viewer_rs_paths_and_v3_adds_the_height() {
        let v2 = ImagePlan::new(spec(ApiVersion::V2, 4000, 3000, 256, &[1, 2, 4, 8, 16]));
        let s2 = v2.sweep(0);
        let expect: Vec<String> = level_tiles(4000, 3000, 256, 256, 8).iter().map(|t| t.path()).collect();
        let got: Vec<String> = s2.iter().filter(|r| r.scale_factor == 8).map(|r| r.path.clone()).collect();
        assert_eq!(got, expect);
        let v3 = ImagePlan::new(spec(ApiVersion::V3, 4000, 3000, 256, &[1, 2, 4, 8, 16]));
        let s3 = v3.sweep(0);
        assert_eq!(s3[0].path, "full/250,188/0/default.jpg");
        let edge = s3.iter().find(|r| r.path.starts_with("2048,2048,1952,952/")).map(|r| r.path.as_str());
        assert_eq!(edge, Some("2048,2048,1952,952/244,119/0/default.jpg"));
        // A level that is the full image in one tile asks max in 3.0.
        let small = ImagePlan::new(spec(ApiVersion::V3, 200, 100, 256, &[1]));
        assert_eq!(small.sweep(0)[0].path, "full/max/0/default.jpg");
    }

    #[test]
    fn sweep_is_every_tile_once_coarse_to_fine() {
        let p = ImagePlan::new(spec(ApiVersion::V2, 4000, 3000, 256, &[1, 2, 4, 8, 16]));
        let s = p.sweep(3);
        let sfs: Vec<u32> = s.iter().map(|r| r.scale_factor).collect();
        assert!(sfs.windows(2).all(|w| w[0] >= w[1]));
        let total: usize = [1, 2, 4, 8, 16].iter().map(|&sf| level_tiles(4000, 3000, 256, 256, sf).len()).sum();
        assert_eq!(s.len(), total);
        assert_eq!(s.iter().collect::<HashSet<_>>().len(), total);
        assert!(s.iter().all(|r| r.image == 3));
    }

    #[test]
    fn session_starts_with_the_level_covering_the_viewport_and_zooms_coarse_to_fine() {
        // 10000x8000 in 1024x768: home view at ~10.4 source px per screen px,
        // so the first level is sf 8 (16 would be blurry).
        let p = ImagePlan::new(spec(ApiVersion::V2, 10000, 8000, 1024, &[1, 2, 4, 8, 16]));
        let s = p.session(0, VP, 0, &mut rng());
        assert_eq!(s[0].scale_factor, 8);
        let home: Vec<&Req> = s.iter().filter(|r| r.scale_factor == 8).collect();
        assert_eq!(home.len(), level_tiles(10000, 8000, 1024, 1024, 8).len(), "home view shows the whole image");
        let sfs: Vec<u32> = s.iter().map(|r| r.scale_factor).collect();
        assert!(sfs.windows(2).all(|w| w[0] >= w[1]), "{sfs:?}");
        assert_eq!(sfs.last(), Some(&1));
        for sf in [4, 2, 1] {
            assert!(sfs.contains(&sf));
        }
        // At sf 1 a 1024x768 view touches at most 2x2 tiles of 1024.
        assert!(s.iter().filter(|r| r.scale_factor == 1).count() <= 4);
        assert_eq!(s.iter().collect::<HashSet<_>>().len(), s.len(), "no tile twice in a session");
    }

    #[test]
    fn view_intersection_picks_the_tiles_under_the_viewport() {
        let p = ImagePlan::new(spec(ApiVersion::V2, 4000, 3000, 256, &[1, 2, 4]));
        let mut out = Vec::new();
        let mut seen = HashSet::new();
        // 512x512 screen at sf 1 around (1000, 1000): x 744..1256, y 744..1256
        // -> columns 2..4, rows 2..4 = 9 tiles.
        let mut c = (1000.0, 1000.0);
        p.ask_view(0, 1.0, &mut c, Viewport { width: 512, height: 512 }, &mut seen, &mut out);
        assert_eq!(out.len(), 9);
        assert_eq!(out[0].path, "768,768,256,256/256,/0/default.jpg", "centre tile first");
        assert!(out.iter().all(|r| r.scale_factor == 1));
        // The bottom-right corner: edge tiles clipped, view clamped inside.
        let mut c = (4000.0, 3000.0);
        out.clear();
        p.ask_view(0, 1.0, &mut c, Viewport { width: 300, height: 300 }, &mut seen, &mut out);
        assert_eq!(c, (3850.0, 2850.0));
        assert!(out.iter().any(|r| r.path == "3840,2816,160,184/160,/0/default.jpg"), "{out:?}");
        assert_eq!(out.len(), 4);
    }

    #[test]
    fn sessions_are_seeded_and_pan_at_the_finest_level() {
        let p = ImagePlan::new(spec(ApiVersion::V3, 10000, 8000, 512, &[1, 2, 4, 8, 16]));
        let a = p.session(0, VP, 4, &mut SmallRng::seed_from_u64(1));
        let b = p.session(0, VP, 4, &mut SmallRng::seed_from_u64(1));
        let c = p.session(0, VP, 4, &mut SmallRng::seed_from_u64(2));
        assert_eq!(a, b);
        assert_ne!(a, c);
        let no_pan = p.session(0, VP, 0, &mut SmallRng::seed_from_u64(1));
        assert!(a.len() > no_pan.len());
        assert!(a[no_pan.len()..].iter().all(|r| r.scale_factor == 1));
    }

    #[test]
    fn small_images_and_sizes_only_images() {
        let p = ImagePlan::new(spec(ApiVersion::V2, 300, 200, 512, &[1]));
        assert_eq!(
            p.session(0, VP, 3, &mut rng()),
            vec![Req { image: 0, scale_factor: 1, path: "full/300,/0/default.jpg".into() }]
        );
        let mut s = spec(ApiVersion::V3, 4000, 3000, 0, &[]);
        s.tiles = None;
        s.sizes = vec![(1000, 750), (250, 188), (500, 375), (4000, 3000)];
        let p = ImagePlan::new(s);
        assert!(!p.tiled());
        let sw = p.sweep(0);
        assert_eq!(sw.len(), 4);
        assert_eq!(sw[0].path, "full/250,188/0/default.jpg");
        assert_eq!(sw[0].scale_factor, 16);
        // Home view of 4000x3000 in 800x600 is 800 px wide: from 1000 up.
        let se = p.session(0, Viewport { width: 800, height: 600 }, 2, &mut rng());
        let paths: Vec<&str> = se.iter().map(|r| r.path.as_str()).collect();
        assert_eq!(paths, ["full/1000,750/0/default.jpg", "full/4000,3000/0/default.jpg"]);
    }

    #[test]
    fn tile_size_override() {
        let s = spec(ApiVersion::V2, 10000, 8000, 1024, &[1, 2, 4, 8, 16]).with_tile_size(256);
        assert_eq!(s.tiles, Some(TileSpec { width: 256, height: 256, scale_factors: vec![1, 2, 4, 8, 16, 32, 64] }));
        let mut bare = spec(ApiVersion::V2, 1000, 600, 0, &[]);
        bare.tiles = None;
        let t = bare.with_tile_size(256).tiles.unwrap();
        assert_eq!(t.scale_factors, vec![1, 2, 4]);
    }

    #[test]
    fn generators_and_queue() {
        let images = Arc::new(vec![
            ImagePlan::new(spec(ApiVersion::V2, 4000, 3000, 256, &[1, 2, 4, 8, 16])),
            ImagePlan::new(spec(ApiVersion::V3, 2000, 1000, 512, &[1, 2, 4])),
        ]);
        let mut g = SessionGen::new(images.clone(), 5, 0, VP, 2);
        let reqs: Vec<Req> = (0..500).filter_map(|_| g.next_req()).collect();
        assert_eq!(reqs.len(), 500);
        assert!(reqs.iter().any(|r| r.image == 0) && reqs.iter().any(|r| r.image == 1));
        let mut g2 = SessionGen::new(images.clone(), 5, 1, VP, 2);
        let other: Vec<Req> = (0..500).filter_map(|_| g2.next_req()).collect();
        assert_ne!(reqs, other, "viewers differ");
        let q = SweepQueue::new(&images);
        let n = q.len();
        let got: Vec<Req> = std::iter::from_fn(|| q.next_req()).collect();
        assert_eq!(got.len(), n);
        assert!(q.next_req().is_none());
        assert_eq!(got[0].image, 0);
        assert_eq!(got[n - 1].image, 1);
    }

    #[test]
    fn open_loop_schedule_is_evenly_spaced() {
        assert_eq!(scheduled_offset(100.0, 0), std::time::Duration::ZERO);
        assert_eq!(scheduled_offset(100.0, 250), std::time::Duration::from_millis(2500));
        let due_in_2s = (0..).take_while(|&i| scheduled_offset(40.0, i) < std::time::Duration::from_secs(2)).count();
        assert_eq!(due_in_2s, 80);
    }
}
