//! Pure pixel generators for the sample images Tessera ships.
//!
//! The repository carries no binary images; at first start the server makes them
//! from this module: a photo-like landscape ([`photo_like`]) with structure at every
//! zoom level, the IIIF Image API validator's test image ([`validator_image`]), and
//! pages of a book of hours ([`book_page`]) whose words and their boxes are known
//! ([`book_page_words`], laid out in [`text`]). Everything here is deterministic
//! (same arguments, same bytes), uses only `std` (and `font8x8`'s glyphs for the
//! book's words), and renders bands of rows on all available cores with
//! `std::thread::scope`. This module owns the generators and their private
//! machinery (integer hash noise, a row-wise fBm sampler, an anti-aliased shape
//! rasteriser, pseudo-glyphs and a block digit font); writing the results to disk
//! belongs to the caller.

pub mod text;

use crate::pixels::{Layout, Pixels};
use std::sync::Mutex;
pub use text::{book_page_text, book_page_words, PageText, PageWord};

// ---------------------------------------------------------------------------
// Public API
// ---------------------------------------------------------------------------

/// A photo-like RGB image: a landscape (sky with fBm clouds and a sun, ridged
/// mountains with snow, forested hills, a lake, a meadow with a road, a house,
/// trees, fences, power lines, a sign with text at several sizes, flowers, birds and
/// a balloon) with detail at every scale, so each zoom level of a deep-zoom viewer
/// shows structure. Deterministic for a seed.
pub fn photo_like(width: u32, height: u32, seed: u64) -> Pixels {
    if width == 0 || height == 0 {
        return Pixels::filled(width, height, Layout::Rgb, &[0, 0, 0]);
    }
    let scene = Landscape::new(width as usize, height as usize, seed);
    let data =
        render_bands(width as usize, height as usize, || scene.scratch(), |s, y0, band| scene.render_band(s, y0, band));
    rgb_pixels(width, height, data)
}

/// The IIIF Image API validator's test image: 1000x1000 RGB, 10x10 squares of
/// 100 px; the square in column `x`, row `y` has colour `ValidationInfo().colorInfo[x][y]`
/// of the PyPI package `iiif-validator` 1.0.5.
pub fn validator_image() -> Pixels {
    const SIDE: usize = 1000;
    const SQUARE: usize = 100;
    let mut data = Vec::with_capacity(SIDE * SIDE * 3);
    for y in 0..SIDE {
        for x in 0..SIDE {
            data.extend_from_slice(&VALIDATOR_COLOURS[x / SQUARE][y / SQUARE]);
        }
    }
    rgb_pixels(SIDE as u32, SIDE as u32, data)
}

/// A page of a book of hours: parchment background with fibre texture and stains,
/// a ruled double border, lines of real words (Latin prayers, rubricated headings)
/// in an 8×8 bitmap font scaled up to about half the ruled line height (scale 4 on a
/// 2000×3000 page), a rubricated initial, an illustration box, and the page number in
/// a block font at the foot. Deterministic per (width, height, page); the words and
/// their exact ink boxes are [`book_page_words`].
pub fn book_page(width: u32, height: u32, page: u32) -> Pixels {
    if width == 0 || height == 0 {
        return Pixels::filled(width, height, Layout::Rgb, &[0, 0, 0]);
    }
    let book = Page::new(width as usize, height as usize, page);
    let data =
        render_bands(width as usize, height as usize, || book.scratch(), |s, y0, band| book.render_band(s, y0, band));
    rgb_pixels(width, height, data)
}

/// `ValidationInfo().colorInfo` of iiif-validator 1.0.5, indexed `[column][row]`.
#[rustfmt::skip]
const VALIDATOR_COLOURS: [[[u8; 3]; 10]; 10] = [
    [[61, 170, 126], [61, 107, 178], [82, 85, 234], [164, 122, 110], [129, 226, 88], [91, 37, 121], [138, 128, 42], [6, 85, 234], [121, 109, 204], [65, 246, 84]],
    [[195, 133, 120], [171, 43, 102], [118, 45, 130], [242, 105, 171], [5, 85, 105], [113, 58, 41], [223, 69, 3], [45, 79, 140], [35, 117, 248], [121, 156, 184]],
    [[168, 92, 163], [28, 91, 143], [86, 41, 173], [111, 230, 29], [174, 189, 7], [18, 139, 88], [93, 168, 128], [35, 2, 14], [204, 105, 137], [18, 86, 128]],
    [[107, 55, 178], [251, 40, 184], [47, 36, 139], [2, 127, 170], [224, 12, 114], [133, 67, 108], [239, 174, 209], [85, 29, 156], [8, 55, 188], [240, 125, 7]],
    [[112, 167, 30], [166, 63, 161], [232, 227, 23], [74, 80, 135], [79, 97, 47], [145, 160, 80], [45, 160, 79], [12, 54, 215], [203, 83, 70], [78, 28, 46]],
    [[102, 193, 63], [225, 55, 91], [107, 194, 147], [167, 24, 95], [249, 214, 96], [167, 34, 136], [53, 254, 209], [172, 222, 21], [153, 77, 51], [137, 39, 183]],
    [[159, 182, 192], [128, 252, 173], [148, 162, 90], [192, 165, 115], [154, 102, 2], [107, 237, 62], [111, 236, 219], [129, 113, 172], [239, 204, 166], [60, 96, 37]],
    [[72, 172, 227], [119, 51, 100], [209, 85, 165], [87, 172, 159], [188, 42, 162], [99, 3, 54], [7, 42, 37], [105, 155, 100], [38, 220, 240], [98, 46, 2]],
    [[18, 223, 145], [189, 121, 17], [88, 3, 210], [181, 16, 43], [189, 39, 244], [123, 147, 116], [246, 148, 214], [223, 177, 199], [77, 18, 136], [235, 36, 21]],
    [[146, 137, 176], [84, 248, 55], [61, 144, 79], [110, 251, 49], [43, 105, 132], [165, 131, 55], [60, 23, 225], [147, 197, 226], [80, 67, 104], [161, 119, 182]],
];

/// Wraps a buffer we sized ourselves; the fallback is unreachable but keeps this panic-free.
fn rgb_pixels(width: u32, height: u32, data: Vec<u8>) -> Pixels {
    match Pixels::new(width, height, Layout::Rgb, data) {
        Ok(p) => p,
        Err(_) => Pixels::filled(width, height, Layout::Rgb, &[0, 0, 0]),
    }
}

// ---------------------------------------------------------------------------
// Parallel band rendering
// ---------------------------------------------------------------------------

/// Rows per unit of work handed to a thread.
const BAND_ROWS: usize = 16;

/// Renders an RGB buffer band by band on all available cores. `make` builds one
/// scratch state per thread; `band_fn(state, first_row, band_bytes)` fills a band.
fn render_bands<S, M, F>(width: usize, height: usize, make: M, band_fn: F) -> Vec<u8>
where
    M: Fn() -> S + Sync,
    F: Fn(&mut S, usize, &mut [u8]) + Sync,
{
    let stride = width * 3;
    let mut data = vec![0u8; stride * height];
    if data.is_empty() {
        return data;
    }
    let bands = height.div_ceil(BAND_ROWS);
    let threads = std::thread::available_parallelism().map(|n| n.get()).unwrap_or(1).clamp(1, bands);
    {
        let queue = Mutex::new(data.chunks_mut(stride * BAND_ROWS).enumerate());
        let work = || {
            let mut state = make();
            loop {
                let next = match queue.lock() {
                    Ok(mut q) => q.next(),
                    Err(poisoned) => poisoned.into_inner().next(),
                };
                let Some((index, band)) = next else { break };
                band_fn(&mut state, index * BAND_ROWS, band);
            }
        };
        std::thread::scope(|scope| {
            for _ in 1..threads {
                // If a thread cannot be spawned the remaining threads (at least this
                // one) simply take more bands from the queue.
                let _ = std::thread::Builder::new().spawn_scoped(scope, work);
            }
            work();
        });
    }
    data
}

// ---------------------------------------------------------------------------
// Small numeric helpers, hashing, random numbers
// ---------------------------------------------------------------------------

type Rgb = [f32; 3];

#[inline]
fn clamp01(v: f32) -> f32 {
    v.clamp(0.0, 1.0)
}

#[inline]
fn smoothstep(e0: f32, e1: f32, x: f32) -> f32 {
    // Multiplying by the reciprocal lets constant edges fold to one multiply.
    let t = clamp01((x - e0) * (1.0 / (e1 - e0)));
    t * t * (3.0 - 2.0 * t)
}

#[inline]
fn lerp(a: f32, b: f32, t: f32) -> f32 {
    a + (b - a) * t
}

#[inline]
fn mix(a: Rgb, b: Rgb, t: f32) -> Rgb {
    [a[0] + (b[0] - a[0]) * t, a[1] + (b[1] - a[1]) * t, a[2] + (b[2] - a[2]) * t]
}

#[inline]
fn scale(a: Rgb, k: f32) -> Rgb {
    [a[0] * k, a[1] * k, a[2] * k]
}

#[inline]
fn add(a: Rgb, b: Rgb) -> Rgb {
    [a[0] + b[0], a[1] + b[1], a[2] + b[2]]
}

/// Quintic fade used by gradient noise.
#[inline]
fn fade(t: f32) -> f32 {
    t * t * t * (t * (t * 6.0 - 15.0) + 10.0)
}

#[inline]
fn mix64(mut z: u64) -> u64 {
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    z ^ (z >> 31)
}

#[inline]
fn hash2(seed: u64, a: i64, b: i64) -> u64 {
    mix64(mix64(seed ^ (a as u64).wrapping_mul(0x9e37_79b9_7f4a_7c15)) ^ (b as u64).wrapping_mul(0xc2b2_ae3d_27d4_eb4f))
}

/// White noise in [-1, 1] for film grain: one table, read at a per-row offset, so
/// the inner loops pay a load instead of a hash per pixel.
struct GrainTable {
    table: Vec<f32>,
}

impl GrainTable {
    const LEN: usize = 1 << 13;

    fn new(seed: u64) -> GrainTable {
        let mut rng = Rng::new(seed ^ 0x9a1f_3c2d);
        GrainTable { table: (0..Self::LEN).map(|_| rng.range(-1.0, 1.0)).collect() }
    }

    /// An endless run of grain values for row `y`, starting at column 0.
    fn row(&self, y: usize) -> impl Iterator<Item = &f32> {
        let off = (mix64(y as u64 ^ 0x51_7cc1_b727) as usize) % self.table.len().max(1);
        let (a, b) = self.table.split_at(off);
        b.iter().chain(a.iter()).cycle()
    }
}

/// Cheap per-pixel hash noise in [-1, 1].
#[inline]
fn grain(seed: u32, x: usize, y: usize) -> f32 {
    let mut h = (x as u32).wrapping_mul(0x9e37_79b1) ^ (y as u32).wrapping_mul(0x85eb_ca77) ^ seed;
    h ^= h >> 15;
    h = h.wrapping_mul(0x2c1b_3c6d);
    h ^= h >> 12;
    h = h.wrapping_mul(0x297a_2d39);
    h ^= h >> 15;
    (h >> 8) as f32 * (2.0 / 16_777_215.0) - 1.0
}

/// SplitMix64: a tiny deterministic generator for scene layout.
struct Rng(u64);

impl Rng {
    fn new(seed: u64) -> Self {
        Rng(mix64(seed ^ 0x5851_f42d_4c95_7f2d))
    }
    fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        mix64(self.0)
    }
    /// Uniform in [0, 1).
    fn unit(&mut self) -> f32 {
        (self.next_u64() >> 40) as f32 / (1u64 << 24) as f32
    }
    fn range(&mut self, a: f32, b: f32) -> f32 {
        a + (b - a) * self.unit()
    }
    /// Uniform in 0..n (0 when n is 0).
    fn below(&mut self, n: usize) -> usize {
        if n == 0 {
            0
        } else {
            (self.next_u64() % n as u64) as usize
        }
    }
    fn chance(&mut self, p: f32) -> bool {
        self.unit() < p
    }
}

// ---------------------------------------------------------------------------
// Noise: 1D gradient noise for profiles, row-wise 2D fBm for textures
// ---------------------------------------------------------------------------

/// 1D gradient noise, roughly in [-0.5, 0.5].
fn noise1(seed: u64, x: f32) -> f32 {
    let i = x.floor();
    let f = x - i;
    let i = i as i64;
    let g0 = (hash2(seed, i, 0) >> 40) as f32 / (1u64 << 23) as f32 - 1.0;
    let g1 = (hash2(seed, i + 1, 0) >> 40) as f32 / (1u64 << 23) as f32 - 1.0;
    let a = g0 * f;
    let b = g1 * (f - 1.0);
    a + (b - a) * fade(f)
}

/// 1D fBm from wavelength `largest` down to `smallest` (both in the units of `x`).
fn fbm1(seed: u64, x: f32, largest: f32, smallest: f32, gain: f32) -> f32 {
    let mut sum = 0.0;
    let mut norm = 0.0;
    let mut amp = 1.0;
    let mut wl = largest.max(smallest);
    let mut k = 0u64;
    loop {
        sum += amp * noise1(seed.wrapping_add(k.wrapping_mul(0x1234_5677)), x / wl + k as f32 * 17.31);
        norm += amp;
        wl *= 0.5;
        amp *= gain;
        k += 1;
        if wl < smallest || k > 24 {
            break;
        }
    }
    sum / norm * 2.0
}

/// Standard deviation we aim the 2D fBm fields at.
const FIELD_STD: f32 = 0.25;
/// Measured standard deviation of one octave of the 2D gradient noise below.
const OCTAVE_STD: f32 = 0.172;

/// Octaves with cells at most this wide are sampled pixel by pixel rather than cell by cell.
const SMALL_CELL: usize = 2;

/// One octave of a 2D gradient-noise field: lattice cell `sx` x `sy` pixels.
struct Octave {
    sx: usize,
    sy: usize,
    amp: f32,
    seed: u64,
    ox: usize,
    oy: usize,
}

/// A multi-octave 2D gradient-noise field (fBm) with axis-aligned lattices in pixel
/// units, sampled a row at a time by [`Sampler`].
struct Field {
    octaves: Vec<Octave>,
}

impl Field {
    /// Octaves from cell height `largest` px halving down to `smallest` px (at least 2),
    /// cells `aspect` times wider than tall, amplitude multiplied by `gain` per octave.
    fn new(seed: u64, largest: f32, smallest: f32, aspect: f32, gain: f32) -> Field {
        let mut rng = Rng::new(seed);
        let mut octaves = Vec::new();
        let smallest = smallest.max(2.0);
        let mut s = largest.max(smallest);
        let mut amp = 1.0f32;
        let mut sum2 = 0.0f32;
        loop {
            let sy = s.round().max(2.0) as usize;
            let sx = (s * aspect).round().max(2.0) as usize;
            let seed = rng.next_u64();
            let ox = rng.below(sx);
            let oy = rng.below(sy);
            octaves.push(Octave { sx, sy, amp, seed, ox, oy });
            sum2 += amp * amp;
            s *= 0.5;
            amp *= gain;
            if s < smallest || octaves.len() >= 24 {
                break;
            }
        }
        let k = FIELD_STD / (OCTAVE_STD * sum2.sqrt());
        for o in &mut octaves {
            o.amp *= k;
        }
        Field { octaves }
    }

    /// Splits into the octaves with cells at least `cell` px tall and the finer rest;
    /// the two sum to the original field.
    fn split(self, cell: f32) -> (Field, Field) {
        let (lo, hi): (Vec<Octave>, Vec<Octave>) = self.octaves.into_iter().partition(|o| o.sy as f32 >= cell);
        (Field { octaves: lo }, Field { octaves: hi })
    }

    fn sampler(&self, width: usize) -> Sampler {
        let rows = self
            .octaves
            .iter()
            .map(|o| {
                let cols = (width + o.ox) / o.sx + 2;
                let fx: Vec<f32> = (0..o.sx).map(|t| (t as f32 + 0.5) / o.sx as f32).collect();
                let fd: Vec<f32> = fx.iter().map(|&t| fade(t)).collect();
                OctaveRow {
                    j: i64::MIN,
                    g0: vec![[0.0; 2]; cols],
                    g1: vec![[0.0; 2]; cols],
                    p: vec![0.0; cols],
                    q: vec![0.0; cols],
                    fx,
                    fd,
                }
            })
            .collect();
        Sampler { rows }
    }
}

/// Per-thread cache of one octave: lattice gradients of the two lattice rows around
/// the current pixel row, and lookup tables over one cell.
struct OctaveRow {
    j: i64,
    g0: Vec<[f32; 2]>,
    g1: Vec<[f32; 2]>,
    p: Vec<f32>,
    q: Vec<f32>,
    fx: Vec<f32>,
    fd: Vec<f32>,
}

struct Sampler {
    rows: Vec<OctaveRow>,
}

#[inline]
fn gradient(seed: u64, i: i64, j: i64) -> [f32; 2] {
    let h = hash2(seed, i, j);
    [(h & 0xffff_ffff) as f32 * (2.0 / 4_294_967_295.0) - 1.0, (h >> 32) as f32 * (2.0 / 4_294_967_295.0) - 1.0]
}

impl Sampler {
    /// Writes the field's values for row `y`, columns `x0..x1`, into `out[x0..x1]`.
    fn fill(&mut self, field: &Field, y: usize, x0: usize, x1: usize, out: &mut [f32]) {
        let x1 = x1.min(out.len());
        if x0 >= x1 {
            return;
        }
        out[x0..x1].fill(0.0);
        for (o, st) in field.octaves.iter().zip(self.rows.iter_mut()) {
            let sx = o.sx;
            let yy = y + o.oy;
            let j = (yy / o.sy) as i64;
            let ty = ((yy % o.sy) as f32 + 0.5) / o.sy as f32;
            let wy = fade(ty);
            let cols = st.g0.len();
            if j != st.j {
                if j == st.j.wrapping_add(1) {
                    std::mem::swap(&mut st.g0, &mut st.g1);
                } else {
                    for (i, g) in st.g0.iter_mut().enumerate() {
                        *g = gradient(o.seed, i as i64, j);
                    }
                }
                for (i, g) in st.g1.iter_mut().enumerate() {
                    *g = gradient(o.seed, i as i64, j + 1);
                }
                st.j = j;
            }
            let ia = (x0 + o.ox) / sx;
            let ib = ((x1 - 1 + o.ox) / sx + 1).min(cols - 1);
            for i in ia..=ib {
                let (a, b) = (st.g0[i], st.g1[i]);
                st.p[i] = o.amp * (a[0] + wy * (b[0] - a[0]));
                let qa = a[1] * ty;
                let qb = b[1] * (ty - 1.0);
                st.q[i] = o.amp * (qa + wy * (qb - qa));
            }
            if sx <= SMALL_CELL {
                // Small cells: one pass over the pixels, stepping the cell as we go
                // (a loop per cell would cost more in set-up than in work).
                let mut i = ia;
                let mut t = (x0 + o.ox) - ia * sx;
                let (mut pl, mut ql) = (st.p[i], st.q[i]);
                let pr0 = st.p.get(i + 1).copied().unwrap_or(0.0);
                let (mut pr, mut qr) = (pr0, st.q.get(i + 1).copied().unwrap_or(0.0) - pr0);
                let (fx, fd) = (&st.fx[..sx], &st.fd[..sx]);
                for v in &mut out[x0..x1] {
                    let (f, w) = (fx[t], fd[t]);
                    let l = ql + pl * f;
                    let r = qr + pr * f;
                    *v += l + w * (r - l);
                    t += 1;
                    if t == sx {
                        t = 0;
                        i += 1;
                        (pl, ql) = (pr, qr + pr);
                        pr = st.p.get(i + 1).copied().unwrap_or(0.0);
                        qr = st.q.get(i + 1).copied().unwrap_or(0.0) - pr;
                    }
                }
                continue;
            }
            for i in ia..ib {
                let cell0 = i * sx;
                let xs = cell0.max(x0 + o.ox) - o.ox;
                let xe = ((i + 1) * sx - o.ox).min(x1);
                if xs >= xe {
                    continue;
                }
                let t0 = xs + o.ox - cell0;
                let n = xe - xs;
                let (pl, ql, pr, qr) = (st.p[i], st.q[i], st.p[i + 1], st.q[i + 1]);
                let qr = qr - pr;
                for ((v, &f), &w) in out[xs..xe].iter_mut().zip(&st.fx[t0..t0 + n]).zip(&st.fd[t0..t0 + n]) {
                    let l = ql + pl * f;
                    let r = qr + pr * f;
                    *v += l + w * (r - l);
                }
            }
        }
    }
}

// ---------------------------------------------------------------------------
// Shapes: anti-aliased rectangles, discs, capsules and convex polygons
// ---------------------------------------------------------------------------

#[derive(Clone, Copy)]
enum Geom {
    Rect {
        x0: f32,
        y0: f32,
        x1: f32,
        y1: f32,
    },
    Disc {
        cx: f32,
        cy: f32,
        r: f32,
    },
    Ellipse {
        cx: f32,
        cy: f32,
        irx: f32,
        iry: f32,
        rmin: f32,
    },
    Capsule {
        ax: f32,
        ay: f32,
        dx: f32,
        dy: f32,
        inv_len2: f32,
        hw: f32,
    },
    /// Convex polygon: up to four edges `nx*x + ny*y + c` (outward unit normals).
    Poly {
        edges: [[f32; 3]; 4],
        n: usize,
    },
}

#[derive(Clone, Copy)]
struct Shape {
    geom: Geom,
    bbox: [f32; 4],
    color: Rgb,
    alpha: f32,
    /// Colour multiplier `shade[0]*x + shade[1]*y + shade[2]` (lighting gradients).
    shade: [f32; 3],
    /// Amplitude of per-pixel grain, in 0..255 units.
    grain: f32,
}

impl Shape {
    fn new(geom: Geom, color: Rgb) -> Shape {
        let bbox = match geom {
            Geom::Rect { x0, y0, x1, y1 } => [x0, y0, x1, y1],
            Geom::Disc { cx, cy, r } => [cx - r, cy - r, cx + r, cy + r],
            Geom::Ellipse { cx, cy, irx, iry, .. } => [cx - 1.0 / irx, cy - 1.0 / iry, cx + 1.0 / irx, cy + 1.0 / iry],
            Geom::Capsule { ax, ay, dx, dy, hw, .. } => {
                let (bx, by) = (ax + dx, ay + dy);
                [ax.min(bx) - hw, ay.min(by) - hw, ax.max(bx) + hw, ay.max(by) + hw]
            }
            Geom::Poly { .. } => [0.0; 4],
        };
        Shape { geom, bbox, color, alpha: 1.0, shade: [0.0, 0.0, 1.0], grain: 3.0 }
    }
    fn rect(x0: f32, y0: f32, x1: f32, y1: f32, color: Rgb) -> Shape {
        Shape::new(Geom::Rect { x0: x0.min(x1), y0: y0.min(y1), x1: x0.max(x1), y1: y0.max(y1) }, color)
    }
    fn disc(cx: f32, cy: f32, r: f32, color: Rgb) -> Shape {
        Shape::new(Geom::Disc { cx, cy, r }, color)
    }
    fn ellipse(cx: f32, cy: f32, rx: f32, ry: f32, color: Rgb) -> Shape {
        let (rx, ry) = (rx.max(1e-3), ry.max(1e-3));
        Shape::new(Geom::Ellipse { cx, cy, irx: 1.0 / rx, iry: 1.0 / ry, rmin: rx.min(ry) }, color)
    }
    fn line(ax: f32, ay: f32, bx: f32, by: f32, width: f32, color: Rgb) -> Shape {
        let (dx, dy) = (bx - ax, by - ay);
        let l2 = dx * dx + dy * dy;
        let inv_len2 = if l2 > 1e-12 { 1.0 / l2 } else { 0.0 };
        Shape::new(Geom::Capsule { ax, ay, dx, dy, inv_len2, hw: width * 0.5 }, color)
    }
    /// A convex polygon of 3 or 4 vertices, in either winding.
    fn poly(pts: &[[f32; 2]], color: Rgb) -> Shape {
        let n = pts.len().clamp(0, 4);
        let mut edges = [[0.0f32, 0.0, -1.0e9]; 4];
        let mut area = 0.0;
        for k in 0..n {
            let (a, b) = (pts[k], pts[(k + 1) % n]);
            area += a[0] * b[1] - b[0] * a[1];
        }
        let sign = if area >= 0.0 { 1.0 } else { -1.0 };
        let mut bbox = [f32::MAX, f32::MAX, f32::MIN, f32::MIN];
        for k in 0..n {
            let (a, b) = (pts[k], pts[(k + 1) % n]);
            let (ex, ey) = (b[0] - a[0], b[1] - a[1]);
            let len = (ex * ex + ey * ey).sqrt().max(1e-6);
            // Outward normal for counter-clockwise (in y-down coordinates: positive area) winding.
            let (nx, ny) = (sign * ey / len, -sign * ex / len);
            edges[k] = [nx, ny, -(nx * a[0] + ny * a[1])];
            bbox = [bbox[0].min(a[0]), bbox[1].min(a[1]), bbox[2].max(a[0]), bbox[3].max(a[1])];
        }
        let mut s = Shape::new(Geom::Poly { edges, n }, color);
        s.bbox = bbox;
        s
    }
    fn alpha(mut self, a: f32) -> Shape {
        self.alpha = a;
        self
    }
    fn grain(mut self, g: f32) -> Shape {
        self.grain = g;
        self
    }
    /// Vertical lighting: multiplier `top` at the top of the bounding box, `bottom` at its foot.
    fn vgrad(mut self, top: f32, bottom: f32) -> Shape {
        let (y0, y1) = (self.bbox[1], self.bbox[3]);
        let gy = (bottom - top) / (y1 - y0).max(1e-3);
        self.shade = [0.0, gy, top - gy * y0];
        self
    }
    /// Lighting from the upper left: multiplier `1 +- k` across the bounding box.
    fn lit(mut self, k: f32) -> Shape {
        let cx = 0.5 * (self.bbox[0] + self.bbox[2]);
        let cy = 0.5 * (self.bbox[1] + self.bbox[3]);
        let r = (0.5 * (self.bbox[2] - self.bbox[0]).max(self.bbox[3] - self.bbox[1])).max(1e-3);
        let g = -0.7 * k / r;
        self.shade = [g, g, 1.0 - g * (cx + cy)];
        self
    }

    /// Coverage of the pixel whose centre is `(px, py)`: 0 outside, 1 inside, between on edges.
    #[inline]
    fn coverage(&self, px: f32, py: f32) -> f32 {
        match self.geom {
            Geom::Rect { x0, y0, x1, y1 } => {
                let cx = clamp01((px + 0.5).min(x1) - (px - 0.5).max(x0));
                let cy = clamp01((py + 0.5).min(y1) - (py - 0.5).max(y0));
                cx * cy
            }
            Geom::Disc { cx, cy, r } => {
                let (dx, dy) = (px - cx, py - cy);
                clamp01(r + 0.5 - (dx * dx + dy * dy).sqrt())
            }
            Geom::Ellipse { cx, cy, irx, iry, rmin } => {
                let (dx, dy) = ((px - cx) * irx, (py - cy) * iry);
                // Approximate distance: exact on the short axis, close enough for edges.
                clamp01(0.5 - ((dx * dx + dy * dy).sqrt() - 1.0) * rmin)
            }
            Geom::Capsule { ax, ay, dx, dy, inv_len2, hw } => {
                let (qx, qy) = (px - ax, py - ay);
                let t = clamp01((qx * dx + qy * dy) * inv_len2);
                let (ex, ey) = (qx - t * dx, qy - t * dy);
                let d = (ex * ex + ey * ey).sqrt();
                // Lines thinner than a pixel fade instead of vanishing.
                if hw < 0.5 {
                    clamp01(1.0 - d) * (2.0 * hw)
                } else {
                    clamp01(hw + 0.5 - d)
                }
            }
            Geom::Poly { edges, n } => {
                let mut d = f32::MIN;
                for e in &edges[..n] {
                    d = d.max(e[0] * px + e[1] * py + e[2]);
                }
                clamp01(0.5 - d)
            }
        }
    }

    /// Draws the shape into `band` (RGB rows `y0..y0+rows` of an image `width` wide).
    fn draw(&self, band: &mut [u8], width: usize, y0: usize, rows: usize, seed: u32) {
        let [bx0, by0, bx1, by1] = self.bbox;
        let ya = (by0 - 1.0).floor().max(y0 as f32) as usize;
        let yb = ((by1 + 1.0).ceil().max(0.0) as usize).min(y0 + rows);
        let xa = (bx0 - 1.0).floor().max(0.0) as usize;
        let xb = ((bx1 + 1.0).ceil().max(0.0) as usize).min(width);
        if ya >= yb || xa >= xb || self.alpha <= 0.0 {
            return;
        }
        for y in ya..yb {
            let py = y as f32 + 0.5;
            let row = &mut band[(y - y0) * width * 3..(y - y0 + 1) * width * 3];
            let shade_row = self.shade[1] * py + self.shade[2];
            for x in xa..xb {
                let px = x as f32 + 0.5;
                let cov = self.coverage(px, py);
                if cov <= 0.0 {
                    continue;
                }
                let a = cov * self.alpha;
                let m = self.shade[0] * px + shade_row;
                let g = grain(seed ^ 0x6a09_e667, x, y) * self.grain;
                for (dst, &c) in row[x * 3..x * 3 + 3].iter_mut().zip(&self.color) {
                    let old = *dst as f32;
                    *dst = (old + (c * m + g - old) * a + 0.5) as u8;
                }
            }
        }
    }
}

// ---------------------------------------------------------------------------
// Pseudo-script glyphs and a block digit font
// ---------------------------------------------------------------------------

/// Candidate strokes of a pseudo-glyph on a 3x3 node grid (x, y in 0..=2):
/// six horizontal half-strokes, six vertical half-strokes, four diagonals.
const GLYPH_STROKES: [[u8; 4]; 16] = [
    [0, 0, 1, 0],
    [1, 0, 2, 0],
    [0, 1, 1, 1],
    [1, 1, 2, 1],
    [0, 2, 1, 2],
    [1, 2, 2, 2],
    [0, 0, 0, 1],
    [0, 1, 0, 2],
    [1, 0, 1, 1],
    [1, 1, 1, 2],
    [2, 0, 2, 1],
    [2, 1, 2, 2],
    [0, 0, 1, 1],
    [1, 1, 2, 2],
    [2, 0, 1, 1],
    [0, 2, 1, 1],
];

/// A stroke mask for pseudo-glyph `code`: 3 to 7 strokes, diagonals rarer.
fn glyph_mask(code: u64) -> u16 {
    let mut h = mix64(code ^ 0x243f_6a88_85a3_08d3);
    let mut mask = 0u16;
    let mut count = 0;
    for k in 0..16 {
        let p = if k >= 12 { 10 } else { 36 };
        if (h % 100) < p {
            mask |= 1 << k;
            count += 1;
        }
        h = mix64(h);
    }
    if count < 3 {
        mask |= 0b0000_1100_1100_0001 | (1 << (h % 12));
    }
    mask
}

/// Pushes the strokes of a pseudo-glyph with top-left `(x, y)`, height `gh`.
fn push_glyph(out: &mut Vec<Shape>, code: u64, x: f32, y: f32, gh: f32, color: Rgb) {
    let mask = glyph_mask(code);
    let gw = gh * 0.6;
    let sw = (gh * 0.13).max(1.0);
    let node = |nx: u8, ny: u8| (x + nx as f32 * 0.5 * gw, y + ny as f32 * 0.5 * gh);
    for (k, s) in GLYPH_STROKES.iter().enumerate() {
        if mask & (1 << k) == 0 {
            continue;
        }
        let (ax, ay) = node(s[0], s[1]);
        let (bx, by) = node(s[2], s[3]);
        if k >= 12 {
            if gh >= 9.0 {
                out.push(Shape::line(ax, ay, bx, by, sw, color).grain(2.0));
            }
        } else {
            let h = 0.5 * sw;
            out.push(Shape::rect(ax.min(bx) - h, ay.min(by) - h, ax.max(bx) + h, ay.max(by) + h, color).grain(2.0));
        }
    }
}

/// A pseudo-script: which glyph alphabet, at what glyph height and colour.
#[derive(Clone, Copy)]
struct Script {
    alphabet: u64,
    gh: f32,
    color: Rgb,
}

/// Lays out a line of pseudo-script words from `x0` to `x1` at top `y`; glyph codes come
/// from a small alphabet so letters repeat like a real script.
fn push_text_line(out: &mut Vec<Shape>, rng: &mut Rng, script: Script, x0: f32, x1: f32, y: f32) {
    let Script { alphabet, gh, color } = script;
    let advance = gh * 0.8;
    let space = gh * 0.7;
    let mut x = x0;
    while x + advance <= x1 {
        let len = 1 + rng.below(8);
        if x + len as f32 * advance > x1 {
            break;
        }
        for _ in 0..len {
            let code = alphabet.wrapping_add(rng.below(26) as u64);
            push_glyph(out, code, x, y, gh, color);
            x += advance;
        }
        x += space;
    }
}

/// 3x5 block digits, one row of three bits per entry, top row first.
const DIGITS: [[u8; 5]; 10] = [
    [0b111, 0b101, 0b101, 0b101, 0b111],
    [0b010, 0b110, 0b010, 0b010, 0b111],
    [0b111, 0b001, 0b111, 0b100, 0b111],
    [0b111, 0b001, 0b111, 0b001, 0b111],
    [0b101, 0b101, 0b111, 0b001, 0b001],
    [0b111, 0b100, 0b111, 0b001, 0b111],
    [0b111, 0b100, 0b111, 0b101, 0b111],
    [0b111, 0b001, 0b001, 0b001, 0b001],
    [0b111, 0b101, 0b111, 0b101, 0b111],
    [0b111, 0b101, 0b111, 0b001, 0b111],
];

/// Pushes `number` in the block font, centred on `cx`, top `y`, digit height `dh`.
/// Adjacent blocks of a digit are merged into one rectangle per run so no seams show.
fn push_number(out: &mut Vec<Shape>, number: u32, cx: f32, y: f32, dh: f32, color: Rgb) {
    let digits: Vec<usize> = number.to_string().bytes().map(|b| (b - b'0') as usize % 10).collect();
    let cell = dh / 5.0;
    let dw = cell * 3.0;
    let gap = cell;
    let total = digits.len() as f32 * (dw + gap) - gap;
    let mut x = cx - total * 0.5;
    for &d in &digits {
        for (r, bits) in DIGITS[d].iter().enumerate() {
            let mut c = 0;
            while c < 3 {
                if bits & (0b100 >> c) != 0 {
                    let start = c;
                    while c < 3 && bits & (0b100 >> c) != 0 {
                        c += 1;
                    }
                    let (rx0, rx1) = (x + start as f32 * cell, x + c as f32 * cell);
                    let (ry0, ry1) = (y + r as f32 * cell, y + (r + 1) as f32 * cell);
                    out.push(Shape::rect(rx0, ry0, rx1, ry1, color).grain(2.0));
                } else {
                    c += 1;
                }
            }
        }
        x += dw + gap;
    }
}

// ---------------------------------------------------------------------------
// The landscape behind photo_like
// ---------------------------------------------------------------------------

const SKY: u8 = 0;
const MOUNTAIN: u8 = 1;
const HILL: u8 = 2;
const LAKE: u8 = 3;
const MEADOW: u8 = 4;
const ROAD: u8 = 5;
const CROP: u8 = 6;

struct Landscape {
    w: usize,
    h: usize,
    wf: f32,
    hf: f32,
    seed32: u32,
    /// Top row of each layer, per column.
    mountain: Vec<f32>,
    hill: Vec<f32>,
    meadow: Vec<f32>,
    /// Slope lighting of the mountain and hill faces, per column (smoothed).
    m_light: Vec<f32>,
    h_light: Vec<f32>,
    /// Per row: lake and road extents `[x0, x1)` (empty when x0 >= x1).
    lake: Vec<[f32; 2]>,
    lake_rx: f32,
    road: Vec<[f32; 2]>,
    /// Crop field: left edge per row (the field lies right of it below `crop_top`).
    crop_left: Vec<f32>,
    crop_top: f32,
    vanish: [f32; 2],
    snowline: f32,
    treeline: f32,
    sun: [f32; 2],
    sun_glow: f32,
    cloud: Field,
    tex_lo: Field,
    tex_hi: Field,
    water: Field,
    /// Horizontal part of the vignette, per column.
    vig_x: Vec<f32>,
    grain: GrainTable,
    shapes: Vec<Shape>,
    /// Indices into `shapes` touching each band of `BAND_ROWS` rows, in drawing order.
    band_shapes: Vec<Vec<u32>>,
}

struct LandscapeScratch {
    cloud: Sampler,
    tex_lo: Sampler,
    tex_hi: Sampler,
    water: Sampler,
    fc: Vec<f32>,
    flo: Vec<f32>,
    fhi: Vec<f32>,
    fw: Vec<f32>,
    region: Vec<u8>,
    red: Vec<f32>,
    green: Vec<f32>,
    blue: Vec<f32>,
}

const ZENITH: Rgb = [38.0, 84.0, 158.0];
const HORIZON: Rgb = [178.0, 200.0, 222.0];

/// Ridged multifractal profile in roughly [0, 1]: sharp crests, rounded valleys.
fn ridged1(seed: u64, x: f32, largest: f32, smallest: f32) -> f32 {
    let mut sum = 0.0;
    let mut norm = 0.0;
    let mut amp = 1.0;
    let mut wl = largest.max(smallest);
    let mut k = 0u64;
    let mut weight = 1.0f32;
    loop {
        let n = noise1(seed.wrapping_add(k.wrapping_mul(0x9e37_79b9)), x / wl + k as f32 * 7.13);
        let r = 1.0 - (2.0 * n).abs().min(1.0);
        let r = r * r * weight;
        weight = (r * 1.6).clamp(0.25, 1.0);
        sum += amp * r;
        norm += amp;
        wl *= 0.5;
        amp *= 0.55;
        k += 1;
        if wl < smallest || k > 24 {
            break;
        }
    }
    sum / norm
}

/// Per-column light factor from a profile's slope, smoothed over `radius` columns.
fn slope_light(profile: &[f32], radius: usize, k: f32) -> Vec<f32> {
    let w = profile.len();
    let r = radius.max(1);
    (0..w)
        .map(|x| {
            let a = profile[x.saturating_sub(r)];
            let b = profile[(x + r).min(w - 1)];
            // y grows downward: a profile falling to the right (b > a) faces the sun on the right.
            let slope = (b - a) / (2.0 * r as f32);
            (1.0 + k * slope).clamp(0.6, 1.4)
        })
        .collect()
}

impl Landscape {
    fn new(w: usize, h: usize, seed: u64) -> Landscape {
        let (wf, hf) = (w as f32, h as f32);
        let mut rng = Rng::new(seed);
        let big = wf.max(hf);
        // Layer profiles: detail down to about a pixel along every ridge line.
        let (sm, sh, sg) = (rng.next_u64(), rng.next_u64(), rng.next_u64());
        let peak_x = rng.range(0.25, 0.75);
        let mut mountain = Vec::with_capacity(w);
        let mut hill = Vec::with_capacity(w);
        let mut meadow = Vec::with_capacity(w);
        for x in 0..w {
            let xf = x as f32 + 0.5;
            let u = xf / wf;
            let ridge = ridged1(sm, xf, 0.3 * wf, 1.0);
            let massif = (1.0 - ((u - peak_x) * 1.8).powi(2)).max(0.0);
            mountain.push(hf * (0.47 - 0.2 * ridge - 0.1 * massif));
            let hv = fbm1(sh, xf, 0.35 * wf, 1.0, 0.5);
            hill.push(hf * (0.525 + 0.04 * hv));
            let gv = fbm1(sg, xf, 0.5 * wf, 1.0, 0.45);
            meadow.push(hf * (0.635 + 0.02 * gv));
        }
        let m_light = slope_light(&mountain, w / 150, 1.2);
        let h_light = slope_light(&hill, w / 200, 2.0);
        // Lake: a wide ellipse on the left, with a fractal shoreline.
        let (lcx, lcy) = (wf * rng.range(0.2, 0.32), hf * 0.592);
        let (lrx, lry) = (wf * 0.19, hf * 0.036);
        let shore_seed = rng.next_u64();
        let lake = (0..h)
            .map(|y| {
                let dy = (y as f32 + 0.5 - lcy) / lry;
                if dy.abs() >= 1.0 {
                    return [1.0, 0.0];
                }
                let half = lrx * (1.0 - dy * dy).sqrt();
                let yf = y as f32;
                let l = lcx - half + lrx * 0.1 * fbm1(shore_seed, yf, 0.05 * hf, 1.0, 0.6);
                let r = lcx + half + lrx * 0.1 * fbm1(shore_seed ^ 1, yf, 0.05 * hf, 1.0, 0.6);
                [l, r]
            })
            .collect();
        // Road: from the house down to the bottom edge, widening with nearness.
        let house_x = wf * rng.range(0.56, 0.68);
        let house_y = hf * 0.705;
        let road_bottom = wf * rng.range(0.38, 0.5);
        let bend = wf * rng.range(-0.12, 0.12);
        let road_seed = rng.next_u64();
        let road: Vec<[f32; 2]> = (0..h)
            .map(|y| {
                let yf = y as f32 + 0.5;
                if yf < house_y - hf * 0.004 {
                    return [1.0, 0.0];
                }
                let t = ((yf - house_y) / (hf - house_y)).max(0.0);
                let c = lerp(house_x, road_bottom, t) + bend * 4.0 * t * (1.0 - t);
                let half = wf * lerp(0.006, 0.1, t * t * 0.6 + t * 0.4);
                let jag = half * 0.05;
                [
                    c - half + jag * fbm1(road_seed, yf, 0.02 * hf, 1.0, 0.7),
                    c + half + jag * fbm1(road_seed ^ 1, yf, 0.02 * hf, 1.0, 0.7),
                ]
            })
            .collect();
        // Crop field right of the road.
        let crop_top = hf * 0.715;
        let crop_left = road
            .iter()
            .enumerate()
            .map(|(y, &[_, r])| if r > 0.0 { r + wf * 0.03 + (y as f32 - crop_top).max(0.0) * 0.2 } else { wf })
            .collect();
        let vanish = [house_x + wf * 0.25, hf * 0.6];
        let sun = [wf * rng.range(0.62, 0.88), hf * rng.range(0.1, 0.2)];
        let cloud = Field::new(rng.next_u64(), 0.18 * big, 3.0, 2.2, 0.64);
        let tex = Field::new(rng.next_u64(), 0.06 * big, 3.0, 1.0, 0.8);
        let (tex_lo, tex_hi) = tex.split(0.004 * big);
        let water = Field::new(rng.next_u64(), 0.006 * big, 3.0, 6.0, 0.85);
        let cx = wf * 0.5;
        let vig_x = (0..w).map(|x| ((x as f32 + 0.5 - cx) / cx).powi(2) * 0.09).collect();
        let grain = GrainTable::new(seed);
        let mut scene = Landscape {
            w,
            h,
            wf,
            hf,
            seed32: (seed ^ (seed >> 32)) as u32,
            mountain,
            hill,
            meadow,
            m_light,
            h_light,
            lake,
            lake_rx: lrx,
            road,
            crop_left,
            crop_top,
            vanish,
            snowline: hf * 0.335,
            treeline: hf * 0.42,
            sun,
            sun_glow: 1.0 / (0.09 * hf).powi(2),
            cloud,
            tex_lo,
            tex_hi,
            water,
            vig_x,
            grain,
            shapes: Vec::new(),
            band_shapes: Vec::new(),
        };
        scene.shapes = scene.objects(&mut rng, house_x, house_y);
        scene.band_shapes = bucket_shapes(&scene.shapes, h);
        scene
    }

    fn scratch(&self) -> LandscapeScratch {
        LandscapeScratch {
            cloud: self.cloud.sampler(self.w),
            tex_lo: self.tex_lo.sampler(self.w),
            tex_hi: self.tex_hi.sampler(self.w),
            water: self.water.sampler(self.w),
            fc: vec![0.0; self.w],
            flo: vec![0.0; self.w],
            fhi: vec![0.0; self.w],
            fw: vec![0.0; self.w],
            region: vec![0; self.w],
            red: vec![0.0; self.w],
            green: vec![0.0; self.w],
            blue: vec![0.0; self.w],
        }
    }

    fn render_band(&self, s: &mut LandscapeScratch, y0: usize, band: &mut [u8]) {
        let stride = self.w * 3;
        let rows = band.len() / stride;
        for (r, row) in band.chunks_exact_mut(stride).enumerate() {
            self.shade_row(s, y0 + r, row);
        }
        if let Some(list) = self.band_shapes.get(y0 / BAND_ROWS) {
            for &i in list {
                if let Some(shape) = self.shapes.get(i as usize) {
                    shape.draw(band, self.w, y0, rows, self.seed32);
                }
            }
        }
    }

    fn shade_row(&self, s: &mut LandscapeScratch, y: usize, row: &mut [u8]) {
        let w = self.w;
        let yf = y as f32 + 0.5;
        let [lx0, lx1] = self.lake[y];
        let [rx0, rx1] = self.road[y];
        let crop_l = if yf >= self.crop_top { self.crop_left[y] } else { f32::MAX };
        // Classify, and find the span of columns each field is needed on.
        let mut span = [[usize::MAX, 0usize]; 3];
        for (x, reg) in s.region.iter_mut().enumerate() {
            let xf = x as f32 + 0.5;
            let r = if yf < self.mountain[x] {
                SKY
            } else if yf < self.hill[x] {
                MOUNTAIN
            } else if xf >= lx0 && xf < lx1 {
                LAKE
            } else if yf < self.meadow[x] {
                HILL
            } else if xf >= rx0 && xf < rx1 {
                ROAD
            } else if xf >= crop_l {
                CROP
            } else {
                MEADOW
            };
            *reg = r;
            let f = match r {
                SKY => 0,
                LAKE => 2,
                _ => 1,
            };
            span[f][0] = span[f][0].min(x);
            span[f][1] = span[f][1].max(x + 1);
        }
        s.cloud.fill(&self.cloud, y, span[0][0], span[0][1], &mut s.fc);
        s.tex_lo.fill(&self.tex_lo, y, span[1][0], span[1][1], &mut s.flo);
        s.tex_hi.fill(&self.tex_hi, y, span[1][0], span[1][1], &mut s.fhi);
        s.water.fill(&self.water, y, span[2][0], span[2][1], &mut s.fw);

        // Per-row constants.
        let hf = self.hf;
        let v = yf / hf;
        let sky_t = clamp01(v / 0.47);
        let k = RowConsts {
            yf,
            sky: mix(ZENITH, HORIZON, sky_t * sky_t * (1.5 - 0.5 * sky_t)),
            sky_t,
            cloud_bias: -0.04 - 0.2 * sky_t,
            sun_dy2: (yf - self.sun[1]) * (yf - self.sun[1]),
            near: clamp01((v - 0.62) / 0.38),
            snow_edge: (hf * 0.0015).max(0.75),
            lake: [lx0, lx1],
            road: [rx0, rx1],
            inv_dy: 1.0 / (yf - self.vanish[1]).max(1.0),
        };
        // Shade runs of one region at a time: straight-line loops over slices vectorise.
        let mut x0 = 0;
        while x0 < w {
            let r = s.region[x0];
            let mut x1 = x0 + 1;
            while x1 < w && s.region[x1] == r {
                x1 += 1;
            }
            let out = [&mut s.red[x0..x1], &mut s.green[x0..x1], &mut s.blue[x0..x1]];
            let (lo, hi) = (&s.flo[x0..x1], &s.fhi[x0..x1]);
            match r {
                SKY => self.shade_sky(&k, x0, &s.fc[x0..x1], out),
                MOUNTAIN => self.shade_mountain(&k, x0, lo, hi, out),
                HILL => self.shade_hill(x0, lo, hi, out),
                LAKE => self.shade_lake(&k, x0, &s.fw[x0..x1], out),
                ROAD => shade_road(&k, x0, lo, hi, out),
                CROP => self.shade_crop(&k, x0, lo, hi, out),
                _ => shade_meadow(&k, lo, hi, out),
            }
            x0 = x1;
        }

        // Finish: vignette, grain, quantise.
        let vig_y = 1.0 - (v - 0.5) * (v - 0.5) * 0.36;
        let grains = self.grain.row(y);
        for (((((p, &r), &g), &b), &vx), &n) in
            row.chunks_exact_mut(3).zip(&s.red).zip(&s.green).zip(&s.blue).zip(&self.vig_x).zip(grains)
        {
            let vig = vig_y - vx;
            let n = n * 3.5 + 0.5;
            p[0] = (r * vig + n) as u8;
            p[1] = (g * vig + n) as u8;
            p[2] = (b * vig + n) as u8;
        }
    }

    fn shade_sky(&self, k: &RowConsts, x0: usize, fc: &[f32], out: [&mut [f32]; 3]) {
        let [red, green, blue] = out;
        let n = fc.len().min(red.len()).min(green.len()).min(blue.len());
        let (sx, glow_k) = (self.sun[0], self.sun_glow);
        for i in 0..n {
            let xf = (x0 + i) as f32 + 0.5;
            let dens = fc[i] + k.cloud_bias;
            let dx = xf - sx;
            let glow = 1.0 / (1.0 + (dx * dx + k.sun_dy2) * glow_k);
            let base = add(k.sky, scale([255.0, 228.0, 175.0], 0.55 * glow));
            // A thin veil of cirrus wherever the cloud field is close to forming cloud, so
            // even clear sky carries structure at every zoom.
            let base = mix(base, [226.0, 233.0, 242.0], 0.3 * smoothstep(-0.4, 0.0, dens));
            let a = smoothstep(0.0, 0.2, dens) * 0.97;
            let lit = smoothstep(0.0, 0.45, dens + 0.1 * (1.0 - k.sky_t));
            let cloud = mix([142.0, 150.0, 172.0], [252.0, 250.0, 246.0], lit);
            let cloud = add(cloud, scale([30.0, 22.0, 5.0], glow));
            let c = mix(base, cloud, a);
            (red[i], green[i], blue[i]) = (c[0], c[1], c[2]);
        }
    }

    fn shade_mountain(&self, k: &RowConsts, x0: usize, lo: &[f32], hi: &[f32], out: [&mut [f32]; 3]) {
        let [red, green, blue] = out;
        let n = lo.len().min(hi.len()).min(red.len()).min(green.len()).min(blue.len());
        let tops = &self.mountain[x0..x0 + n];
        let light = &self.m_light[x0..x0 + n];
        let (hf, yf, e) = (self.hf, k.yf, k.snow_edge);
        for i in 0..n {
            let (lo, hi) = (lo[i], hi[i]);
            let below = (yf - tops[i]) / hf;
            // Faces lit by the crest's slope just under the crest, by the texture lower down.
            let face = 1.0 + (light[i] - 1.0) * (1.0 - smoothstep(0.0, 0.025, below));
            // Cracks and gullies: thin dark lines where the noise crosses zero, at every scale.
            let crack = 0.6 + 0.4 * smoothstep(0.0, 0.025, (hi + 0.2 * lo).abs());
            let gully = 0.7 + 0.3 * smoothstep(0.0, 0.05, (lo - 0.05).abs());
            let strata = (0.9 + 0.6 * lo + 2.2 * hi) * crack * gully;
            let rock = scale(mix([86.0, 84.0, 94.0], [128.0, 114.0, 100.0], clamp01(0.5 + 2.0 * lo)), strata * face);
            // Conifer forest on the lower slopes.
            let treeline = self.treeline + hf * 0.05 * lo;
            let forest = smoothstep(-e, e, yf - treeline) * smoothstep(-0.1, 0.0, lo);
            let trees = scale([44.0, 66.0, 48.0], 0.8 + 2.6 * hi + 0.5 * lo);
            let ground = mix(rock, trees, forest);
            let snow_y = self.snowline + hf * (0.06 * lo + 0.02 * hi);
            let snow = smoothstep(-e, e, snow_y - yf) * smoothstep(-0.02, 0.04, lo + hi + 0.12);
            let white =
                scale([236.0, 240.0, 250.0], (0.84 + 0.3 * (face - 1.0) + 0.6 * hi).min(1.05) * (0.8 + 0.2 * crack));
            let c = mix(ground, white, snow);
            let c = mix(c, HORIZON, 0.2 + 0.22 * smoothstep(0.0, 0.2, below));
            (red[i], green[i], blue[i]) = (c[0], c[1], c[2]);
        }
    }

    fn shade_hill(&self, x0: usize, lo: &[f32], hi: &[f32], out: [&mut [f32]; 3]) {
        let [red, green, blue] = out;
        let n = lo.len().min(hi.len()).min(red.len()).min(green.len()).min(blue.len());
        let light = &self.h_light[x0..x0 + n];
        for i in 0..n {
            let (lo, hi) = (lo[i], hi[i]);
            let forest = smoothstep(-0.16, 0.0, lo + 0.3 * hi);
            let grass = scale([100.0, 124.0, 64.0], 0.9 + 0.4 * lo + 2.2 * hi);
            let trees = scale([50.0, 78.0, 44.0], 0.8 + 3.5 * hi + 0.5 * lo);
            let c = mix(scale(mix(grass, trees, forest), light[i]), HORIZON, 0.22);
            (red[i], green[i], blue[i]) = (c[0], c[1], c[2]);
        }
    }

    fn shade_lake(&self, k: &RowConsts, x0: usize, fw: &[f32], out: [&mut [f32]; 3]) {
        let [red, green, blue] = out;
        let n = fw.len().min(red.len()).min(green.len()).min(blue.len());
        let [lx0, lx1] = k.lake;
        let rim = 1.0 / (0.03 * self.lake_rx);
        let narrow = ((lx1 - lx0).max(1.0) / (0.06 * self.lake_rx)).min(1.0);
        let water_base = mix([40.0, 70.0, 94.0], mix(HORIZON, ZENITH, 0.3), 0.62);
        let (sx, inv_w) = (self.sun[0], 6.0 / self.wf);
        for i in 0..n {
            let xf = (x0 + i) as f32 + 0.5;
            let r = fw[i];
            let edge = ((xf - lx0).min(lx1 - xf) * rim).min(narrow);
            let water = scale(water_base, 0.97 + 0.55 * r);
            let glint = smoothstep(0.25, 0.5, r) * clamp01(1.0 - (xf - sx).abs() * inv_w);
            let water = mix(water, [250.0, 246.0, 228.0], glint);
            let c = mix([150.0, 138.0, 108.0], water, smoothstep(0.2, 0.9, edge));
            (red[i], green[i], blue[i]) = (c[0], c[1], c[2]);
        }
    }

    fn shade_crop(&self, k: &RowConsts, x0: usize, lo: &[f32], hi: &[f32], out: [&mut [f32]; 3]) {
        let [red, green, blue] = out;
        let n = lo.len().min(hi.len()).min(red.len()).min(green.len()).min(blue.len());
        let vx = self.vanish[0];
        for i in 0..n {
            let xf = (x0 + i) as f32 + 0.5;
            let (lo, hi) = (lo[i], hi[i]);
            // Furrows converge on a vanishing point on the horizon.
            // Offset keeps the argument positive so truncation is a floor.
            let sdir = (xf - vx) * k.inv_dy * 60.0 + 65_536.0;
            let stripe = (sdir - (sdir as i32) as f32 - 0.5).abs() * 2.0;
            let ripe = clamp01(0.5 + 1.5 * lo);
            let c = mix([170.0, 150.0, 70.0], [214.0, 178.0, 92.0], ripe);
            let c = scale(c, (0.82 + 0.3 * stripe) * (0.97 + 0.1 * lo + 1.3 * hi));
            (red[i], green[i], blue[i]) = (c[0], c[1], c[2]);
        }
    }

    /// The sharp-edged objects, back to front.
    fn objects(&self, rng: &mut Rng, house_x: f32, house_y: f32) -> Vec<Shape> {
        let (wf, hf) = (self.wf, self.hf);
        let u = hf / 1000.0; // one unit of the composition
        let area = wf * hf;
        let mut out = Vec::new();
        // Sun disc.
        out.push(Shape::disc(self.sun[0], self.sun[1], 16.0 * u, [255.0, 250.0, 235.0]).grain(1.0).alpha(0.97));
        // Birds: small V strokes at several sizes.
        for _ in 0..(12 + rng.below(14)) {
            let (bx, by) = (rng.range(0.05, 0.95) * wf, rng.range(0.05, 0.3) * hf);
            let s = u * rng.range(1.5, 10.0);
            let lw = (s * 0.16).max(0.6);
            let col = [38.0, 38.0, 46.0];
            let flap = rng.range(-0.4, 0.5) * s;
            out.push(Shape::line(bx - s, by - flap, bx, by + 0.25 * s, lw, col).grain(1.0));
            out.push(Shape::line(bx, by + 0.25 * s, bx + s, by - flap, lw, col).grain(1.0));
        }
        // Hot-air balloon with striped gores.
        {
            let (bx, by) = (wf * rng.range(0.12, 0.45), hf * rng.range(0.1, 0.22));
            let r = 26.0 * u;
            let a = [rng.range(180.0, 230.0), rng.range(30.0, 80.0), rng.range(30.0, 60.0)];
            let b = [240.0, 205.0, 70.0];
            out.push(
                Shape::poly(
                    &[
                        [bx - 0.9 * r, by + 0.4 * r],
                        [bx + 0.9 * r, by + 0.4 * r],
                        [bx + 0.26 * r, by + 1.4 * r],
                        [bx - 0.26 * r, by + 1.4 * r],
                    ],
                    a,
                )
                .lit(0.5),
            );
            out.push(Shape::disc(bx, by, r, a).lit(0.45));
            out.push(Shape::ellipse(bx, by, 0.62 * r, r, b).lit(0.45));
            out.push(Shape::ellipse(bx, by, 0.26 * r, r, a).lit(0.45));
            out.push(
                Shape::poly(
                    &[
                        [bx - 0.5 * r, by + 0.62 * r],
                        [bx + 0.5 * r, by + 0.62 * r],
                        [bx + 0.18 * r, by + 1.4 * r],
                        [bx - 0.18 * r, by + 1.4 * r],
                    ],
                    b,
                )
                .lit(0.5),
            );
            out.push(
                Shape::poly(
                    &[
                        [bx - 0.2 * r, by + 0.62 * r],
                        [bx + 0.2 * r, by + 0.62 * r],
                        [bx + 0.07 * r, by + 1.4 * r],
                        [bx - 0.07 * r, by + 1.4 * r],
                    ],
                    a,
                )
                .lit(0.5),
            );
            for sgn in [-1.0f32, 1.0] {
                out.push(Shape::line(
                    bx + sgn * 0.24 * r,
                    by + 1.4 * r,
                    bx + sgn * 0.13 * r,
                    by + 1.85 * r,
                    (0.025 * r).max(0.5),
                    [60.0, 50.0, 40.0],
                ));
            }
            out.push(
                Shape::rect(bx - 0.15 * r, by + 1.85 * r, bx + 0.15 * r, by + 2.1 * r, [110.0, 78.0, 45.0])
                    .vgrad(1.1, 0.8)
                    .grain(6.0),
            );
        }

        // Ground objects, drawn in order of their base line (nearer later).
        let mut ground = Layers::default();
        // Trees on the hills and along the meadow edge.
        for _ in 0..(140 + rng.below(60)) {
            let x = rng.unit() * wf;
            let xi = (x as usize).min(self.w - 1);
            let (top, bottom) = (self.hill[xi], self.meadow[xi]);
            let base = lerp(top + 0.25 * (bottom - top), bottom + 0.012 * hf, rng.unit());
            if self.in_lake(x, base, 3.0 * u) {
                continue;
            }
            let depth = clamp01((base / hf - 0.5) / 0.5);
            let size = u * lerp(5.0, 30.0, depth) * rng.range(0.6, 1.4);
            push_tree(ground.open(base), rng, x, base, size);
        }
        // A few big trees in the foreground meadow.
        for _ in 0..(3 + rng.below(3)) {
            let x = rng.range(0.02, 0.98) * wf;
            let base = hf * rng.range(0.68, 0.84);
            if self.in_road(x, base, 0.08 * wf) || x > self.crop_left[(base as usize).min(self.h - 1)] - 0.05 * wf {
                continue;
            }
            let size = u * rng.range(45.0, 80.0) * (base / hf);
            push_tree(ground.open(base), rng, x, base, size);
        }
        // House at the end of the road.
        push_house(ground.open(house_y), rng, house_x, house_y, 64.0 * u);
        // Power line: poles receding toward the house, wires between them.
        {
            let pl = ground.open(house_y + 0.001 * hf);
            let n = 6;
            let mut prev: Option<(f32, f32, f32)> = None;
            for k in 0..n {
                let t = k as f32 / (n - 1) as f32; // 0 far .. 1 near
                let base = lerp(house_y - 0.005 * hf, hf * 1.02, t * t);
                let x = lerp(house_x + 0.12 * wf, wf * 0.97, t * t * 0.8 + 0.2 * t);
                let hgt = lerp(45.0, 330.0, t * t) * u;
                let pw = (hgt * 0.03).max(0.7);
                let top = base - hgt;
                let wood = [92.0, 70.0, 50.0];
                pl.push(Shape::rect(x - pw, top, x + pw, base, wood).vgrad(1.0, 0.75).grain(6.0));
                pl.push(
                    Shape::rect(x - hgt * 0.2, top + hgt * 0.06, x + hgt * 0.2, top + hgt * 0.06 + pw * 1.5, wood)
                        .grain(6.0),
                );
                for ins in [-0.18f32, 0.0, 0.18] {
                    pl.push(Shape::disc(x + ins * hgt, top + hgt * 0.05, pw * 0.45, [190.0, 200.0, 195.0]).lit(0.4));
                }
                if let Some((px, ptop, phgt)) = prev {
                    for wi in 0..3 {
                        let off = (wi as f32 - 1.0) * 0.18;
                        let (ax, ay) = (px + off * phgt, ptop + phgt * 0.05);
                        let (bx, by) = (x + off * hgt, top + hgt * 0.05);
                        let sag = 0.07 * (bx - ax).abs().max((by - ay).abs()) + 2.0 * u;
                        let segs = 16;
                        let lw = (0.8 * u * (0.6 + 2.0 * t)).max(0.6);
                        for sgi in 0..segs {
                            let (s0, s1) = (sgi as f32 / segs as f32, (sgi + 1) as f32 / segs as f32);
                            let y0 = lerp(ay, by, s0) + sag * 4.0 * s0 * (1.0 - s0);
                            let y1 = lerp(ay, by, s1) + sag * 4.0 * s1 * (1.0 - s1);
                            pl.push(
                                Shape::line(lerp(ax, bx, s0), y0, lerp(ax, bx, s1), y1, lw, [35.0, 35.0, 38.0])
                                    .grain(0.5),
                            );
                        }
                    }
                }
                prev = Some((x, top, hgt));
            }
        }
        // Fence along the left side of the road.
        {
            let fence = ground.open(hf * 0.99);
            let n = 16;
            let mut prev: Option<(f32, f32, f32)> = None;
            for k in 0..n {
                let t = k as f32 / (n - 1) as f32;
                let y = lerp(house_y + 0.012 * hf, hf * 0.995, t * t);
                let [l, _] = self.road[(y as usize).min(self.h - 1)];
                let x = l - (0.01 + 0.03 * t) * wf;
                let ph = lerp(8.0, 95.0, t * t) * u;
                let pw = ph * 0.065;
                fence.push(Shape::rect(x - pw, y - ph, x + pw, y, [128.0, 104.0, 78.0]).vgrad(1.1, 0.75).grain(7.0));
                fence.push(Shape::rect(x - pw, y - ph, x + pw, y - ph + pw * 0.8, [90.0, 74.0, 58.0]).grain(4.0));
                if let Some((px, py, pph)) = prev {
                    for rail in [0.22f32, 0.58] {
                        fence.push(
                            Shape::line(
                                px,
                                py - pph * (1.0 - rail),
                                x,
                                y - ph * (1.0 - rail),
                                (pw * 0.9).max(0.6),
                                [146.0, 120.0, 90.0],
                            )
                            .grain(5.0),
                        );
                    }
                }
                prev = Some((x, y, ph));
            }
        }
        // A sign with text at several sizes.
        {
            let (sx, sy) = (wf * rng.range(0.03, 0.1), hf * 0.735);
            push_sign(ground.open(sy + 230.0 * u), rng, sx, sy, 250.0 * u, 125.0 * u);
        }
        // Flower clusters: sizes in composition units, growing toward the viewer.
        let palette: [Rgb; 6] = [
            [250.0, 250.0, 244.0],
            [246.0, 214.0, 58.0],
            [214.0, 46.0, 50.0],
            [150.0, 92.0, 196.0],
            [248.0, 160.0, 190.0],
            [250.0, 250.0, 244.0],
        ];
        for _ in 0..(50 + rng.below(30)) {
            let cx = rng.unit() * wf;
            let depth0 = rng.unit().sqrt();
            let cy = lerp(self.meadow[(cx as usize).min(self.w - 1)] + 0.01 * hf, hf, depth0);
            let spread = u * lerp(15.0, 110.0, depth0);
            let hue = palette[rng.below(palette.len())];
            for _ in 0..(8 + rng.below(30)) {
                let x = cx + spread * (rng.unit() + rng.unit() - 1.0) * 1.5;
                let y = cy + spread * 0.35 * (rng.unit() + rng.unit() - 1.0);
                if !self.is_meadow(x, y) || (y >= self.crop_top && x >= self.crop_left[(y as usize).min(self.h - 1)]) {
                    continue;
                }
                let depth = clamp01((y / hf - 0.63) / 0.37);
                let r = u * lerp(0.7, 5.0, depth * depth) * rng.range(0.6, 1.4);
                let c = if rng.chance(0.15) { palette[0] } else { hue };
                push_flower(ground.open(y), x, y, r, c);
            }
        }
        // Grass blades in the near meadow.
        let blades = ((area / 9000.0) as usize).clamp(100, 9000);
        for _ in 0..blades {
            let x = rng.unit() * wf;
            let y = lerp(hf * 0.72, hf * 1.01, rng.unit().sqrt());
            if !self.is_meadow(x, y) {
                continue;
            }
            let depth = clamp01((y / hf - 0.63) / 0.37);
            let len = u * lerp(2.0, 11.0, depth) * rng.range(0.6, 1.4);
            let lean = rng.range(-0.45, 0.45) * len;
            let g = rng.range(0.6, 1.25);
            let in_crop = y >= self.crop_top && x >= self.crop_left[(y as usize).min(self.h - 1)];
            let c = if in_crop { [205.0 * g, 172.0 * g, 88.0 * g] } else { [88.0 * g, 134.0 * g, 52.0 * g] };
            ground.open(y).push(Shape::line(x, y, x + lean, y - len, (len * 0.05).max(0.7), c).grain(4.0));
        }
        // Stones on the road.
        for _ in 0..(150 + rng.below(100)) {
            let y = lerp(house_y, hf, rng.unit().sqrt());
            let [l, r] = self.road[(y as usize).min(self.h - 1)];
            if l >= r {
                continue;
            }
            let x = lerp(l, r, rng.unit());
            let depth = clamp01((y / hf - 0.7) / 0.3);
            let rad = u * lerp(0.5, 3.5, depth) * rng.range(0.5, 1.5);
            let g = rng.range(120.0, 200.0);
            ground.open(y).push(Shape::disc(x, y, rad, [g, g * 0.96, g * 0.9]).lit(0.5).grain(5.0));
        }
        // Pixel-scale detail: tiny flowers, seeds and pebbles a few pixels across,
        // numerous enough that full-resolution tiles show them everywhere below the hills.
        let specks = ((area / 2500.0) as usize).clamp(200, 50_000);
        for _ in 0..specks {
            let x = rng.unit() * wf;
            let y = lerp(hf * 0.62, hf, rng.unit());
            let rad = rng.range(0.7, 2.2);
            let yi = (y as usize).min(self.h - 1);
            let c = if self.in_road(x, y, 0.0) {
                let g = rng.range(100.0, 210.0);
                [g, g * 0.95, g * 0.88]
            } else if self.is_meadow(x, y) {
                if x >= self.crop_left[yi] && y >= self.crop_top {
                    [rng.range(120.0, 230.0), rng.range(30.0, 60.0), 30.0]
                } else {
                    palette[rng.below(palette.len())]
                }
            } else {
                continue;
            };
            ground.open(y).push(Shape::disc(x, y, rad, c).grain(6.0));
        }
        ground.flatten_into(&mut out);
        out
    }

    fn in_lake(&self, x: f32, y: f32, margin: f32) -> bool {
        let yi = (y.max(0.0) as usize).min(self.h - 1);
        let [l, r] = self.lake[yi];
        l < r && x >= l - margin && x < r + margin
    }

    fn in_road(&self, x: f32, y: f32, margin: f32) -> bool {
        let yi = (y.max(0.0) as usize).min(self.h - 1);
        let [l, r] = self.road[yi];
        l < r && x >= l - margin && x < r + margin
    }

    /// Below the meadow's top edge, off the road and out of the lake.
    fn is_meadow(&self, x: f32, y: f32) -> bool {
        if x < 0.0 || x >= self.wf || y >= self.hf {
            return false;
        }
        let xi = (x as usize).min(self.w - 1);
        y >= self.meadow[xi] && !self.in_road(x, y, 0.0) && !self.in_lake(x, y, 0.0)
    }
}

/// Per-row constants shared by the region shaders of [`Landscape`].
struct RowConsts {
    yf: f32,
    sky: Rgb,
    sky_t: f32,
    cloud_bias: f32,
    sun_dy2: f32,
    near: f32,
    snow_edge: f32,
    lake: [f32; 2],
    road: [f32; 2],
    inv_dy: f32,
}

fn shade_road(k: &RowConsts, x0: usize, lo: &[f32], hi: &[f32], out: [&mut [f32]; 3]) {
    let [red, green, blue] = out;
    let n = lo.len().min(hi.len()).min(red.len()).min(green.len()).min(blue.len());
    let [rx0, rx1] = k.road;
    let inv = 1.0 / (rx1 - rx0).max(1.0);
    for i in 0..n {
        let xf = (x0 + i) as f32 + 0.5;
        let (lo, hi) = (lo[i], hi[i]);
        let rel = ((xf - rx0) * inv - 0.5).abs();
        // Two wheel ruts and grassy verges.
        let rut = 1.0 - 0.16 * smoothstep(0.07, 0.0, (rel - 0.26).abs());
        let edge = smoothstep(0.4, 0.5, rel);
        let gravel = scale([160.0, 142.0, 114.0], (0.95 + 0.4 * lo + 1.6 * hi) * rut);
        let c = mix(gravel, [112.0, 132.0, 64.0], edge * 0.6);
        (red[i], green[i], blue[i]) = (c[0], c[1], c[2]);
    }
}

fn shade_meadow(k: &RowConsts, lo: &[f32], hi: &[f32], out: [&mut [f32]; 3]) {
    let [red, green, blue] = out;
    let n = lo.len().min(hi.len()).min(red.len()).min(green.len()).min(blue.len());
    let fine = 1.8 + 0.6 * k.near;
    let bright = 0.95 + 0.06 * k.near;
    for i in 0..n {
        let (lo, hi) = (lo[i], hi[i]);
        let lush = smoothstep(-0.3, 0.3, lo);
        let c = mix([148.0, 156.0, 74.0], [72.0, 126.0, 50.0], lush);
        let c = scale(c, bright + 0.3 * lo + fine * hi);
        (red[i], green[i], blue[i]) = (c[0], c[1], c[2]);
    }
}

/// Groups of shapes keyed by depth; flattened back to front (stable for equal depths).
#[derive(Default)]
struct Layers {
    groups: Vec<(f32, Vec<Shape>)>,
}

impl Layers {
    /// Starts a group at `depth` and returns it to push shapes into.
    fn open(&mut self, depth: f32) -> &mut Vec<Shape> {
        self.groups.push((depth, Vec::new()));
        let last = self.groups.len() - 1;
        &mut self.groups[last].1
    }
    fn flatten_into(mut self, out: &mut Vec<Shape>) {
        self.groups.sort_by(|a, b| a.0.total_cmp(&b.0));
        for (_, g) in self.groups {
            out.extend(g);
        }
    }
}

/// For each band of `BAND_ROWS` rows, the indices of the shapes that touch it, in order.
fn bucket_shapes(shapes: &[Shape], height: usize) -> Vec<Vec<u32>> {
    let bands = height.div_ceil(BAND_ROWS);
    let mut out = vec![Vec::new(); bands];
    for (i, s) in shapes.iter().enumerate() {
        let top = (s.bbox[1] - 1.0).floor().max(0.0) as usize / BAND_ROWS;
        let bottom = (((s.bbox[3] + 1.0).ceil().max(0.0) as usize) / BAND_ROWS).min(bands.saturating_sub(1));
        if s.bbox[3] + 1.0 < 0.0 || top >= bands {
            continue;
        }
        for list in &mut out[top..=bottom] {
            list.push(i as u32);
        }
    }
    out
}

/// A flower: a petal disc with a yellow centre once it is big enough to show one.
fn push_flower(out: &mut Vec<Shape>, x: f32, y: f32, r: f32, c: Rgb) {
    if r > 3.0 {
        for &(dx, dy) in &PETALS {
            out.push(Shape::disc(x + dx * r * 0.55, y + dy * r * 0.45, r * 0.5, c).lit(0.35).grain(4.0));
        }
        out.push(Shape::disc(x, y, r * 0.3, [225.0, 170.0, 40.0]).lit(0.4).grain(5.0));
    } else {
        out.push(Shape::disc(x, y, r, c).lit(0.3).grain(3.0));
    }
}

/// Unit offsets of five petals around a flower centre (cos/sin of 90 + k*72 degrees).
const PETALS: [(f32, f32); 5] = [(0.0, -1.0), (0.951, -0.309), (0.588, 0.809), (-0.588, 0.809), (-0.951, -0.309)];

/// A deciduous or conifer tree standing on `(x, base)`, `size` tall-ish.
fn push_tree(out: &mut Vec<Shape>, rng: &mut Rng, x: f32, base: f32, size: f32) {
    let trunk_w = (size * 0.08).max(0.6);
    let conifer = rng.chance(0.4);
    let bark = [70.0, 52.0, 38.0];
    let green = [rng.range(35.0, 70.0), rng.range(70.0, 105.0), rng.range(30.0, 50.0)];
    if conifer {
        out.push(Shape::rect(x - trunk_w, base - size * 0.3, x + trunk_w, base, bark).vgrad(0.9, 0.6));
        let tiers = 3;
        for k in 0..tiers {
            let f = k as f32 / tiers as f32;
            let wdt = size * 0.42 * (1.0 - 0.25 * f);
            let yb = base - size * (0.2 + 0.28 * f);
            let yt = yb - size * 0.55;
            out.push(
                Shape::poly(&[[x - wdt, yb], [x + wdt, yb], [x, yt]], scale(green, 0.8 + 0.1 * f)).vgrad(1.1, 0.75),
            );
        }
    } else {
        out.push(Shape::rect(x - trunk_w, base - size * 0.55, x + trunk_w, base, bark).vgrad(0.9, 0.6));
        let blobs = 4 + rng.below(4);
        for _ in 0..blobs {
            let bx = x + rng.range(-0.3, 0.3) * size;
            let by = base - size * rng.range(0.6, 0.95);
            let r = size * rng.range(0.22, 0.36);
            out.push(Shape::disc(bx, by, r, scale(green, rng.range(0.9, 1.15))).lit(0.45).grain(6.0));
        }
    }
}

/// A house with a pitched roof, windows and a door; `size` is the wall height.
fn push_house(out: &mut Vec<Shape>, rng: &mut Rng, x: f32, base: f32, size: f32) {
    let w = size * 1.5;
    let depth = size * 0.9;
    let (x0, x1) = (x - w * 0.5, x + w * 0.5);
    let top = base - size;
    let wall = [rng.range(215.0, 235.0), rng.range(205.0, 225.0), rng.range(180.0, 200.0)];
    let roof = [rng.range(120.0, 160.0), rng.range(50.0, 70.0), rng.range(40.0, 55.0)];
    // Side wall receding to the right, then the front.
    out.push(Shape::poly(
        &[[x1, top], [x1 + depth * 0.5, top - depth * 0.18], [x1 + depth * 0.5, base - depth * 0.12], [x1, base]],
        scale(wall, 0.72),
    ));
    out.push(
        Shape::poly(
            &[
                [x1 - 1.0, top + 0.5],
                [x1 + depth * 0.5, top - depth * 0.18],
                [x1 + depth * 0.5 - size * 0.35, top - size * 0.62],
                [x - size * 0.05, top - size * 0.62],
            ],
            scale(roof, 0.8),
        )
        .vgrad(0.9, 1.1),
    );
    out.push(Shape::rect(x0, top, x1, base, wall).vgrad(1.05, 0.9).grain(5.0));
    // Clapboard siding.
    let boards = 14;
    for k in 1..boards {
        let y = top + size * k as f32 / boards as f32;
        out.push(Shape::rect(x0, y - size * 0.006, x1, y + size * 0.006, scale(wall, 0.7)).alpha(0.6).grain(3.0));
    }
    let (ex0, ex1, apex) = (x0 - size * 0.08, x1 + size * 0.08, top - size * 0.62);
    out.push(Shape::poly(&[[ex0, top + 1.0], [ex1, top + 1.0], [x, apex]], roof).vgrad(1.1, 0.85).grain(6.0));
    // Rows of roof tiles.
    let rows = 9;
    for k in 1..rows {
        let f = k as f32 / rows as f32;
        let y = lerp(top, apex, f);
        let (a, b) = (lerp(ex0, x, f) + size * 0.01, lerp(ex1, x, f) - size * 0.01);
        out.push(Shape::line(a, y, b, y, (size * 0.012).max(0.6), scale(roof, 0.6)).alpha(0.7).grain(4.0));
    }
    // Chimney.
    out.push(Shape::rect(x1 - w * 0.25, top - size * 0.7, x1 - w * 0.15, top - size * 0.25, [120.0, 70.0, 60.0]));
    // Door.
    let dw = size * 0.22;
    out.push(Shape::rect(x - dw * 0.5, base - size * 0.5, x + dw * 0.5, base, [90.0, 60.0, 40.0]).vgrad(1.0, 0.7));
    out.push(Shape::disc(x + dw * 0.3, base - size * 0.25, (size * 0.02).max(0.5), [220.0, 190.0, 80.0]));
    // Windows with frames and mullions.
    for &wx in &[x0 + w * 0.2, x1 - w * 0.2] {
        let (ww, wh) = (size * 0.26, size * 0.3);
        let wy = top + size * 0.22;
        let fr = (size * 0.025).max(0.7);
        out.push(
            Shape::rect(wx - ww * 0.5 - fr, wy - fr, wx + ww * 0.5 + fr, wy + wh + fr, [245.0, 245.0, 240.0])
                .grain(2.0),
        );
        out.push(Shape::rect(wx - ww * 0.5, wy, wx + ww * 0.5, wy + wh, [50.0, 70.0, 95.0]).vgrad(1.6, 0.8));
        out.push(Shape::rect(wx - fr * 0.5, wy, wx + fr * 0.5, wy + wh, [245.0, 245.0, 240.0]));
        out.push(Shape::rect(
            wx - ww * 0.5,
            wy + wh * 0.5 - fr * 0.5,
            wx + ww * 0.5,
            wy + wh * 0.5 + fr * 0.5,
            [245.0, 245.0, 240.0],
        ));
    }
}

/// A wooden sign on two posts with a headline, body lines and fine print.
fn push_sign(out: &mut Vec<Shape>, rng: &mut Rng, x: f32, y: f32, w: f32, h: f32) {
    let post = [100.0, 78.0, 56.0];
    let pw = w * 0.03;
    for px in [x + w * 0.15, x + w * 0.85] {
        out.push(Shape::rect(px - pw, y + h * 0.5, px + pw, y + h * 1.9, post).vgrad(1.0, 0.7));
    }
    let border = (w * 0.012).max(1.0);
    out.push(Shape::rect(x, y, x + w, y + h, [70.0, 52.0, 36.0]).grain(4.0));
    out.push(
        Shape::rect(x + border, y + border, x + w - border, y + h - border, [236.0, 228.0, 206.0])
            .vgrad(1.05, 0.92)
            .grain(4.0),
    );
    let ink = [30.0, 34.0, 46.0];
    let alphabet = rng.next_u64();
    let pad = w * 0.05;
    let (tx0, tx1) = (x + pad, x + w - pad);
    let mut ty = y + pad;
    let head = h * 0.2;
    push_text_line(out, rng, Script { alphabet, gh: head, color: [150.0, 30.0, 30.0] }, tx0, tx1, ty);
    ty += head * 1.5;
    let body = h * 0.07;
    for _ in 0..3 {
        push_text_line(out, rng, Script { alphabet, gh: body, color: ink }, tx0, tx1, ty);
        ty += body * 1.6;
    }
    // Fine print: a fixed size in pixels, so it only resolves at full resolution.
    let fine = 6.0f32.max(h * 0.02);
    while ty + fine < y + h - pad * 0.6 {
        push_text_line(out, rng, Script { alphabet, gh: fine, color: ink }, tx0, tx1, ty);
        ty += fine * 1.7;
    }
}

// ---------------------------------------------------------------------------
// The manuscript page behind book_page
// ---------------------------------------------------------------------------

struct Page {
    w: usize,
    wf: f32,
    hf: f32,
    seed32: u32,
    /// Blotchy tone of the parchment and its fine, slightly horizontal fibres.
    paper: Field,
    fibre: Field,
    /// Spacing of the faint vertical chain lines, in pixels.
    chain: f32,
    grain: GrainTable,
    shapes: Vec<Shape>,
    band_shapes: Vec<Vec<u32>>,
    /// The words, drawn over the shapes.
    text: text::TextLayout,
}

struct PageScratch {
    paper: Sampler,
    fibre: Sampler,
    fp: Vec<f32>,
    ff: Vec<f32>,
}

impl Page {
    fn new(w: usize, h: usize, page: u32) -> Page {
        let (wf, hf) = (w as f32, h as f32);
        let big = wf.max(hf);
        let seed = mix64(0x7e55_e4a0_0000_0000 ^ page as u64);
        let mut rng = Rng::new(seed);
        let paper = Field::new(rng.next_u64(), 0.25 * big, 0.01 * big, 1.0, 0.6);
        let fibre = Field::new(rng.next_u64(), 0.004 * big, 2.0, 4.0, 0.8);
        let mut p = Page {
            w,
            wf,
            hf,
            seed32: seed as u32,
            paper,
            fibre,
            chain: (0.035 * wf).max(4.0),
            grain: GrainTable::new(seed),
            shapes: Vec::new(),
            band_shapes: Vec::new(),
            text: text::layout(w as u32, h as u32, page),
        };
        p.shapes = p.layout(&mut rng, page);
        p.band_shapes = bucket_shapes(&p.shapes, h);
        p
    }

    fn scratch(&self) -> PageScratch {
        PageScratch {
            paper: self.paper.sampler(self.w),
            fibre: self.fibre.sampler(self.w),
            fp: vec![0.0; self.w],
            ff: vec![0.0; self.w],
        }
    }

    fn render_band(&self, s: &mut PageScratch, y0: usize, band: &mut [u8]) {
        let stride = self.w * 3;
        let rows = band.len() / stride;
        let base = [234.0, 217.0, 176.0];
        let dark = [186.0, 148.0, 96.0];
        let inv_chain = 1.0 / self.chain;
        for (r, row) in band.chunks_exact_mut(stride).enumerate() {
            let y = y0 + r;
            s.paper.fill(&self.paper, y, 0, self.w, &mut s.fp);
            s.fibre.fill(&self.fibre, y, 0, self.w, &mut s.ff);
            let yf = y as f32 + 0.5;
            let ey = (yf.min(self.hf - yf) / (0.05 * self.hf)).min(1.0);
            let grains = self.grain.row(y);
            for (x, (((p, &t), &f), &g)) in row.chunks_exact_mut(3).zip(&s.fp).zip(&s.ff).zip(grains).enumerate() {
                let xf = x as f32 + 0.5;
                // Darkened, handled edges.
                let ex = (xf.min(self.wf - xf) / (0.05 * self.wf)).min(1.0);
                let worn = 1.0 - ex * ey;
                let stain = smoothstep(0.2, 0.55, t) * 0.3;
                let c = mix(base, dark, stain + 0.55 * worn * worn);
                let cl = xf * inv_chain;
                let chain = 1.0 - 0.025 * smoothstep(0.06, 0.0, (cl - (cl as i32) as f32 - 0.5).abs());
                let c = scale(c, (0.98 + 0.12 * t + 0.12 * f) * chain);
                let n = g * 4.0 + 0.5;
                p[0] = (c[0] + n) as u8;
                p[1] = (c[1] + n) as u8;
                p[2] = (c[2] + n * 0.8) as u8;
            }
        }
        if let Some(list) = self.band_shapes.get(y0 / BAND_ROWS) {
            for &i in list {
                if let Some(shape) = self.shapes.get(i as usize) {
                    shape.draw(band, self.w, y0, rows, self.seed32);
                }
            }
        }
        self.text.draw(band, self.w, y0, rows, self.seed32);
    }

    /// The shapes under the words: border, stains, miniature, initial, page number.
    fn layout(&self, rng: &mut Rng, page: u32) -> Vec<Shape> {
        let (wf, hf) = (self.wf, self.hf);
        let mut out = Vec::new();
        let (rubric, ink) = (text::RUBRIC, text::INK);
        let [x0, y0, x1, y1] = self.text.block;
        // Double ruled border.
        let lw = (wf * 0.0025).max(1.0);
        for (k, inset) in [0.0f32, 0.012].iter().enumerate() {
            let i = inset * wf;
            let (a, b, c, d) = (x0 - 0.02 * wf + i, y0 - 0.02 * wf + i, x1 + 0.02 * wf - i, y1 + 0.02 * wf - i);
            let lwk = if k == 0 { lw * 1.6 } else { lw * 0.8 };
            out.push(Shape::rect(a, b, c, b + lwk, rubric).grain(4.0));
            out.push(Shape::rect(a, d - lwk, c, d, rubric).grain(4.0));
            out.push(Shape::rect(a, b, a + lwk, d, rubric).grain(4.0));
            out.push(Shape::rect(c - lwk, b, c, d, rubric).grain(4.0));
        }
        // Foxing and a faint water stain.
        for _ in 0..(3 + rng.below(12)) {
            let r = wf * rng.range(0.002, 0.008);
            out.push(
                Shape::disc(rng.unit() * wf, rng.unit() * hf, r, [150.0, 100.0, 60.0])
                    .alpha(rng.range(0.1, 0.3))
                    .grain(6.0),
            );
        }
        if rng.chance(0.6) {
            let (cx, cy, r) = (rng.unit() * wf, rng.unit() * hf, wf * rng.range(0.05, 0.15));
            out.push(Shape::ellipse(cx, cy, r, r * rng.range(0.6, 1.0), [170.0, 125.0, 70.0]).alpha(0.12).grain(8.0));
            out.push(
                Shape::ellipse(cx, cy, r * 0.93, r * 0.93 * rng.range(0.6, 1.0), [225.0, 205.0, 165.0])
                    .alpha(0.1)
                    .grain(4.0),
            );
        }
        // The miniature and the initial, where the text layout left room for them.
        let [bx, by, bw, bh] = self.text.figure;
        push_illustration(&mut out, rng, bx, by, bw, bh);
        if let Some([ix, iy, side]) = self.text.initial {
            // A rubricated square with a lozenge and a boss: an ornament, not a letter,
            // so that OCR finds only the words the OCR files list.
            let (cx, cy, r) = (ix + side * 0.5, iy + side * 0.5, side * 0.36);
            out.push(Shape::rect(ix, iy, ix + side, iy + side, rubric).grain(5.0));
            let lozenge = [[cx, cy - r], [cx + r, cy], [cx, cy + r], [cx - r, cy]];
            out.push(Shape::poly(&lozenge, [240.0, 220.0, 160.0]).grain(4.0));
            out.push(Shape::disc(cx, cy, r * 0.3, [200.0, 150.0, 40.0]).lit(0.3).grain(4.0));
        }
        // Page number at the foot.
        push_number(&mut out, page, wf * 0.5, hf * 0.91, hf * 0.025, ink);
        out
    }
}

/// A framed miniature: sky, sun, mountains and a field, with a rubric frame.
fn push_illustration(out: &mut Vec<Shape>, rng: &mut Rng, x: f32, y: f32, w: f32, h: f32) {
    let f = (w.min(h) * 0.03).max(1.5);
    out.push(Shape::rect(x, y, x + w, y + h, [120.0, 40.0, 32.0]).grain(5.0));
    let (ix0, iy0, ix1, iy1) = (x + f, y + f, x + w - f, y + h - f);
    out.push(Shape::rect(ix0, iy0, ix1, iy1, [90.0, 130.0, 185.0]).vgrad(0.8, 1.2).grain(5.0));
    let iw = ix1 - ix0;
    let ih = iy1 - iy0;
    out.push(Shape::disc(ix0 + iw * rng.range(0.6, 0.85), iy0 + ih * 0.25, ih * 0.12, [235.0, 190.0, 60.0]).grain(4.0));
    for k in 0..4 {
        let cx = ix0 + iw * (0.1 + 0.27 * k as f32 + rng.range(-0.05, 0.05));
        let half = iw * rng.range(0.15, 0.25);
        let top = iy0 + ih * rng.range(0.3, 0.5);
        let base = iy0 + ih * 0.75;
        let pts = [[(cx - half).max(ix0), base], [(cx + half).min(ix1), base], [cx, top]];
        out.push(Shape::poly(&pts, [110.0 - 10.0 * k as f32, 100.0, 120.0]).vgrad(1.2, 0.8).grain(5.0));
    }
    out.push(Shape::rect(ix0, iy0 + ih * 0.75, ix1, iy1, [90.0, 125.0, 60.0]).vgrad(1.0, 0.8).grain(6.0));
    // A little tower.
    let tx = ix0 + iw * rng.range(0.2, 0.8);
    let tw = iw * 0.05;
    out.push(Shape::rect(tx - tw, iy0 + ih * 0.5, tx + tw, iy0 + ih * 0.8, [200.0, 190.0, 170.0]).grain(5.0));
    out.push(Shape::poly(
        &[[tx - tw * 1.4, iy0 + ih * 0.5], [tx + tw * 1.4, iy0 + ih * 0.5], [tx, iy0 + ih * 0.36]],
        [150.0, 40.0, 35.0],
    ));
    out.push(Shape::rect(tx - tw * 0.3, iy0 + ih * 0.6, tx + tw * 0.3, iy0 + ih * 0.68, [40.0, 30.0, 25.0]));
}

#[cfg(test)]
mod tests {
    use super::*;

    fn luma(p: &Pixels, x: u32, y: u32) -> f64 {
        let i = (y as usize * p.width() as usize + x as usize) * 3;
        let d = p.data();
        0.299 * d[i] as f64 + 0.587 * d[i + 1] as f64 + 0.114 * d[i + 2] as f64
    }

    /// Standard deviation of luma in the `size`-pixel square at `(x0, y0)`.
    fn window_std(p: &Pixels, x0: u32, y0: u32, size: u32) -> f64 {
        let (mut s, mut s2) = (0.0, 0.0);
        for y in y0..y0 + size {
            for x in x0..x0 + size {
                let v = luma(p, x, y);
                s += v;
                s2 += v * v;
            }
        }
        let n = (size * size) as f64;
        (s2 / n - (s / n).powi(2)).max(0.0).sqrt()
    }

    /// Mean absolute luma difference between horizontal neighbours in a window:
    /// how much pixel-scale detail there is.
    fn window_gradient(p: &Pixels, x0: u32, y0: u32, size: u32) -> f64 {
        let mut s = 0.0;
        for y in y0..y0 + size {
            for x in x0..x0 + size - 1 {
                s += (luma(p, x + 1, y) - luma(p, x, y)).abs();
            }
        }
        s / (size * (size - 1)) as f64
    }

    /// Luma means of a `n` x `n` grid of blocks covering the image.
    fn block_means(p: &Pixels, n: u32) -> Vec<f64> {
        let (bw, bh) = (p.width() / n, p.height() / n);
        let mut out = Vec::new();
        for by in 0..n {
            for bx in 0..n {
                let mut s = 0.0;
                for y in by * bh..(by + 1) * bh {
                    for x in bx * bw..(bx + 1) * bw {
                        s += luma(p, x, y);
                    }
                }
                out.push(s / (bw * bh) as f64);
            }
        }
        out
    }

    fn std_dev(v: &[f64]) -> f64 {
        let m = v.iter().sum::<f64>() / v.len() as f64;
        (v.iter().map(|x| (x - m).powi(2)).sum::<f64>() / v.len() as f64).sqrt()
    }

    #[test]
    fn photo_like_is_deterministic_for_a_seed() {
        let a = photo_like(300, 200, 42);
        let b = photo_like(300, 200, 42);
        assert_eq!((a.width(), a.height(), a.layout()), (300, 200, Layout::Rgb));
        assert!(a == b);
    }

    #[test]
    fn photo_like_differs_between_seeds() {
        let a = photo_like(300, 200, 1);
        let b = photo_like(300, 200, 2);
        let differing = a.data().iter().zip(b.data()).filter(|(x, y)| x != y).count();
        assert!(differing > a.data().len() / 2, "only {differing} bytes differ");
    }

    #[test]
    fn photo_like_has_detail_in_every_window_at_full_resolution() {
        for seed in [1u64, 7] {
            let p = photo_like(640, 480, seed);
            let mut stds = Vec::new();
            let mut grads = Vec::new();
            for by in 0..7 {
                for bx in 0..10 {
                    stds.push(window_std(&p, bx * 64, by * 64 + 16, 64));
                    grads.push(window_gradient(&p, bx * 64, by * 64 + 16, 64));
                }
            }
            stds.sort_by(|a, b| a.total_cmp(b));
            grads.sort_by(|a, b| a.total_cmp(b));
            // No 64x64 window is flat, and typical windows have real texture and edges,
            // not just grain (grain alone gives a mean neighbour difference of about 2.3).
            assert!(stds[0] > 4.0, "seed {seed}: flattest window std {}", stds[0]);
            assert!(stds[stds.len() / 2] > 15.0, "seed {seed}: median window std {}", stds[stds.len() / 2]);
            assert!(
                grads[grads.len() / 2] > 4.5,
                "seed {seed}: median neighbour difference {}",
                grads[grads.len() / 2]
            );
        }
    }

    #[test]
    fn photo_like_has_large_scale_structure() {
        let p = photo_like(640, 480, 3);
        // Sky, mountains and ground: 4x4 block means vary widely...
        let means = block_means(&p, 4);
        assert!(std_dev(&means) > 8.0, "block means {means:?}");
        // ...and the top of the picture (sky) is bluer than the bottom (ground).
        let d = p.data();
        let (mut top_b, mut bottom_b) = (0.0, 0.0);
        for x in 0..640usize {
            top_b += d[(10 * 640 + x) * 3 + 2] as f64 - d[(10 * 640 + x) * 3] as f64;
            bottom_b += d[(470 * 640 + x) * 3 + 2] as f64 - d[(470 * 640 + x) * 3] as f64;
        }
        assert!(top_b > bottom_b + 640.0 * 40.0, "top {top_b} bottom {bottom_b}");
    }

    #[test]
    fn photo_like_handles_tiny_and_empty_sizes() {
        for (w, h) in [(0u32, 0u32), (0, 5), (5, 0), (1, 1), (2, 3), (7, 1), (1, 40)] {
            let p = photo_like(w, h, 9);
            assert_eq!((p.width(), p.height()), (w, h));
            assert_eq!(p.data().len(), w as usize * h as usize * 3);
            let b = book_page(w, h, 3);
            assert_eq!(b.data().len(), w as usize * h as usize * 3);
        }
    }

    #[test]
    fn validator_image_matches_the_validator_colours_at_square_centres() {
        let p = validator_image();
        assert_eq!((p.width(), p.height(), p.layout()), (1000, 1000, Layout::Rgb));
        // (column, row, ValidationInfo().colorInfo[column][row]) from iiif-validator 1.0.5.
        let known: [(u32, u32, [u8; 3]); 7] = [
            (0, 0, [61, 170, 126]),
            (3, 7, [85, 29, 156]),
            (9, 9, [161, 119, 182]),
            (5, 2, [107, 194, 147]),
            (7, 0, [72, 172, 227]),
            (2, 8, [204, 105, 137]),
            (0, 9, [65, 246, 84]),
        ];
        for (col, row, rgb) in known {
            for (dx, dy) in [(50, 50), (0, 0), (99, 99)] {
                let (x, y) = (col * 100 + dx, row * 100 + dy);
                let i = (y as usize * 1000 + x as usize) * 3;
                assert_eq!(&p.data()[i..i + 3], &rgb, "square ({col}, {row}) at ({x}, {y})");
            }
        }
    }

    #[test]
    fn validator_image_has_exactly_a_hundred_distinct_colours() {
        let p = validator_image();
        let mut seen = std::collections::HashSet::new();
        for px in p.data().chunks_exact(3) {
            seen.insert([px[0], px[1], px[2]]);
        }
        assert_eq!(seen.len(), 100);
    }

    #[test]
    fn book_pages_are_deterministic_and_differ_by_page_number() {
        let a = book_page(400, 600, 1);
        assert!(a == book_page(400, 600, 1));
        for other in [2u32, 3, 10] {
            let b = book_page(400, 600, other);
            let differing = a.data().iter().zip(b.data()).filter(|(x, y)| x != y).count();
            assert!(differing > a.data().len() / 4, "page {other}: only {differing} bytes differ");
        }
    }

    #[test]
    fn book_page_has_parchment_margins_dark_text_and_a_page_number() {
        let (w, h) = (400u32, 600u32);
        let p = book_page(w, h, 12);
        // Parchment: the top margin is light and warm.
        let top = p.crop(w / 4, 10, w / 2, 10);
        let n = (top.width() * top.height()) as f64;
        let (mut r, mut b) = (0.0, 0.0);
        for px in top.data().chunks_exact(3) {
            r += px[0] as f64;
            b += px[2] as f64;
        }
        assert!(r / n > 170.0 && r > b * 1.15, "margin r {} b {}", r / n, b / n);
        // Text block: plenty of dark ink.
        let dark = |c: &Pixels| {
            c.data().chunks_exact(3).filter(|px| (px[0] as u32 + px[1] as u32 + px[2] as u32) < 300).count()
        };
        let body = p.crop(w / 8, h / 10, w * 3 / 4, h * 3 / 4);
        assert!(dark(&body) > (body.width() * body.height()) as usize / 20);
        // Page number at the foot, centred.
        let foot = p.crop(w / 2 - 30, (h as f32 * 0.905) as u32, 60, (h as f32 * 0.035) as u32);
        assert!(dark(&foot) > 20, "no page number drawn");
    }

    #[test]
    fn every_word_box_is_exactly_its_ink_with_parchment_around_it() {
        for (w, h, pages) in [(400u32, 600u32, 1..=6), (1000, 1500, 3..=4)] {
            for page in pages {
                let p = book_page(w, h, page);
                let words = book_page_words(w, h, page);
                assert!(words.len() > 20, "{w}x{h} page {page}: {} words", words.len());
                let dark = |x: u32, y: u32| luma(&p, x, y) < 110.0;
                let paper = |x: u32, y: u32| luma(&p, x, y) > 130.0;
                for wd in &words {
                    let (x0, y0, x1, y1) = (wd.x, wd.y, wd.x + wd.width, wd.y + wd.height);
                    assert!(x0 > 0 && y0 > 0 && x1 < w && y1 < h, "{wd:?} off the page");
                    // Ink on every edge of the box: it is the tight box of the drawn word...
                    assert!((y0..y1).any(|y| dark(x0, y)) && (y0..y1).any(|y| dark(x1 - 1, y)), "{wd:?} sides");
                    assert!((x0..x1).any(|x| dark(x, y0)) && (x0..x1).any(|x| dark(x, y1 - 1)), "{wd:?} top, foot");
                    // ...and the page colour just outside it.
                    assert!(
                        (y0..y1).all(|y| paper(x0 - 1, y) && paper(x1, y)),
                        "{w}x{h} page {page}: {wd:?} left, right"
                    );
                    assert!(
                        (x0..x1).all(|x| paper(x, y0 - 1) && paper(x, y1)),
                        "{w}x{h} page {page}: {wd:?} above, below"
                    );
                }
            }
        }
    }

    #[test]
    fn row_sampler_matches_direct_gradient_noise() {
        // Fine cells (the per-pixel path), wide cells (the per-cell path), offsets.
        let field = Field::new(5, 40.0, 2.0, 1.5, 0.8);
        let width = 173;
        let mut sampler = field.sampler(width);
        let mut row = vec![0.0; width];
        for y in [0usize, 1, 2, 3, 17, 18, 60, 200] {
            sampler.fill(&field, y, 3, 170, &mut row);
            for (x, &got) in row.iter().enumerate().take(170).skip(3) {
                let mut v = 0.0;
                for o in &field.octaves {
                    let (xx, yy) = (x + o.ox, y + o.oy);
                    let (i, j) = ((xx / o.sx) as i64, (yy / o.sy) as i64);
                    let fx = ((xx % o.sx) as f32 + 0.5) / o.sx as f32;
                    let fy = ((yy % o.sy) as f32 + 0.5) / o.sy as f32;
                    let dot = |di: i64, dj: i64| {
                        let g = gradient(o.seed, i + di, j + dj);
                        g[0] * (fx - di as f32) + g[1] * (fy - dj as f32)
                    };
                    let (wx, wy) = (fade(fx), fade(fy));
                    let top = lerp(dot(0, 0), dot(1, 0), wx);
                    let bottom = lerp(dot(0, 1), dot(1, 1), wx);
                    v += o.amp * lerp(top, bottom, wy);
                }
                assert!((got - v).abs() < 1e-4, "({x}, {y}): {got} vs {v}");
            }
        }
    }

    #[test]
    fn fbm_fields_have_the_target_spread() {
        for (gain, aspect) in [(0.5f32, 1.0f32), (0.75, 1.0), (0.6, 3.0), (1.0, 1.0)] {
            let f = Field::new(42, 64.0, 2.0, aspect, gain);
            let mut s = f.sampler(512);
            let mut row = vec![0.0; 512];
            let (mut sum, mut sum2, mut n) = (0.0f64, 0.0f64, 0.0f64);
            for y in 0..512 {
                s.fill(&f, y, 0, 512, &mut row);
                for &v in &row {
                    sum += v as f64;
                    sum2 += (v * v) as f64;
                    n += 1.0;
                }
            }
            let mean = sum / n;
            let std = (sum2 / n - mean * mean).sqrt();
            eprintln!("gain {gain} aspect {aspect}: mean {mean:.3} std {std:.3}");
            assert!(mean.abs() < 0.05 && (0.2..0.3).contains(&std), "mean {mean} std {std}");
        }
    }

    #[test]
    fn validator_table_holds_a_hundred_distinct_colours() {
        let mut all: Vec<[u8; 3]> = VALIDATOR_COLOURS.iter().flatten().copied().collect();
        all.sort();
        all.dedup();
        assert_eq!(all.len(), 100);
    }
}
