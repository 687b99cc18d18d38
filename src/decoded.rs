//! The decoded-tile cache for tiled JPEG 2000: a viewer asks for all the
//! small IIIF tiles inside one codestream tile, one after another, and a
//! region decode costs nearly as much as the whole codestream tile (OpenJPEG
//! has no random access inside a tile). So Tessera decodes each codestream
//! tile once at the needed resolution, keeps the pixels in a byte-bounded
//! cache, and cuts neighbouring IIIF tiles from them.
//!
//! A large JPEG is the same problem in one piece: it has no random access at
//! all (a crop decode still entropy-decodes every row above the crop), so a
//! sweep of its tiles decodes most of the image again and again. A JPEG of
//! at least `jpeg_min_pixels` is treated as one tile covering the whole
//! image: decoded once per DCT scale (1, 1/2, 1/4, 1/8) — a reduced-resolution
//! pyramid built level by level as requests need it — and neighbouring IIIF
//! tiles are cut from it. A level larger than half the cache's bound is not
//! decoded whole, and neither is one the cache turned away once (the cache
//! is sharded, so its largest entry is smaller than the bound): such
//! requests decode their crop directly, as before.
//!
//! Runs on the worker pool (it blocks): concurrent requests needing the same
//! codestream tile wait for one decode instead of repeating it.

use std::collections::HashMap;
use std::sync::{Arc, Condvar, Mutex};

use quick_cache::sync::Cache;
use quick_cache::Weighter;

use crate::codec::{self, jp2, CodecError, ImageInfo, SourceFormat};
use crate::pixels::Pixels;
use crate::plan::Rect;
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

#[derive(Clone)]
struct ByBytes;
impl Weighter<TileId, Arc<Pixels>> for ByBytes {
    fn weight(&self, _k: &TileId, v: &Arc<Pixels>) -> u64 {
        v.byte_len() as u64 + 64
    }
}

type Slot = Arc<(Mutex<Option<Result<Arc<Pixels>, String>>>, Condvar)>;

/// Decoded codestream tiles, bounded in bytes.
pub struct DecodedTiles {
    cache: Cache<TileId, Arc<Pixels>, ByBytes>,
    pending: Mutex<HashMap<TileId, Slot>>,
    /// Use the tile path only when a request touches at most this many tiles.
    pub max_tiles_per_request: u32,
    /// JPEGs with at least this many pixels are decoded whole per scale and
    /// kept (0 = never).
    pub jpeg_min_pixels: u64,
    max_bytes: u64,
    /// Whole-JPEG levels the cache did not keep when offered: decoding them
    /// whole again for each tile would cost more than a crop decode.
    refused: Mutex<std::collections::HashSet<TileId>>,
}

impl DecodedTiles {
    pub fn new(max_bytes: u64) -> Self {
        DecodedTiles {
            cache: Cache::with_weighter((max_bytes / 1_000_000).clamp(16, 100_000) as usize, max_bytes, ByBytes),
            pending: Mutex::new(HashMap::new()),
            max_tiles_per_request: 4,
            jpeg_min_pixels: 0,
            max_bytes,
            refused: Mutex::new(Default::default()),
        }
    }

    /// Enables whole-image caching of JPEGs of at least `pixels` pixels.
    pub fn with_jpeg_min_pixels(mut self, pixels: u64) -> Self {
        self.jpeg_min_pixels = pixels;
        self
    }

    /// Whether a JPEG's whole image at 1/`scale` is worth decoding and
    /// keeping: a large image, and a level that fits half the bound.
    fn keeps_whole_jpeg(&self, info: &ImageInfo, scale: u32, max_pixels: u64) -> bool {
        if self.jpeg_min_pixels == 0 || (info.width as u64 * info.height as u64) < self.jpeg_min_pixels {
            return false;
        }
        let s = scale.max(1) as u64;
        let px = (info.width as u64).div_ceil(s) * (info.height as u64).div_ceil(s);
        px <= max_pixels && px * info.layout.channels() as u64 <= self.max_bytes / 2
    }

    pub fn bytes(&self) -> u64 {
        self.cache.weight()
    }

    pub fn purge(&self, file: &str) {
        self.cache.retain(|k, _| k.file != file);
    }

    pub fn purge_all(&self) {
        self.cache.clear();
    }

    /// The decoded pixels of `region` at 1/`scale` (the planner's
    /// `region.at_scale` rectangle), cut from cached codestream tiles; `None`
    /// when the tile path does not apply (untiled, or too many tiles).
    #[allow(clippy::too_many_arguments)]
    pub fn decode(
        &self,
        data: &[u8],
        info: &ImageInfo,
        file: &str,
        version: SourceVersion,
        region: Rect,
        scale: u32,
        max_pixels: u64,
        decodes: &dyn Fn(),
    ) -> Option<Result<Pixels, CodecError>> {
        if scale == 0 {
            return None;
        }
        let whole = info.format == SourceFormat::Jpeg;
        let (tw, th) = if whole {
            if !self.keeps_whole_jpeg(info, scale, max_pixels) {
                return None;
            }
            let id = TileId { file: file.to_string(), version, reduce: scale.trailing_zeros(), col: 0, row: 0 };
            if self.refused.lock().unwrap_or_else(|e| e.into_inner()).contains(&id) {
                return None;
            }
            // One tile at the origin: its mapping onto the reduced grid is exact.
            (info.width, info.height)
        } else {
            let (tw, th) = info.native_tile?;
            if tw == 0 || th == 0 || tw % scale != 0 || th % scale != 0 {
                return None;
            }
            (tw, th)
        };
        let (c0, c1) = (region.x / tw, (region.x + region.w - 1) / tw);
        let (r0, r1) = (region.y / th, (region.y + region.h - 1) / th);
        if (c1 - c0 + 1) * (r1 - r0 + 1) > self.max_tiles_per_request {
            return None;
        }
        let want = region.at_scale(scale, info.width, info.height);
        let reduce = scale.trailing_zeros();
        let mut out: Option<Vec<u8>> = None;
        let mut layout = info.layout;
        for row in r0..=r1 {
            for col in c0..=c1 {
                let id = TileId { file: file.to_string(), version, reduce, col, row };
                let full = Rect {
                    x: col * tw,
                    y: row * th,
                    w: tw.min(info.width - col * tw),
                    h: th.min(info.height - row * th),
                };
                let run = || {
                    if whole {
                        codec::decode(data, info, full, scale, max_pixels)
                    } else {
                        let area = jp2::DecodeArea { x: full.x, y: full.y, w: full.w, h: full.h };
                        jp2::decode(data, area, reduce, max_pixels).map_err(codec::jp2_error)
                    }
                };
                let tile = match self.get_or_decode(id, &run, decodes) {
                    Ok(t) => t,
                    Err(e) => return Some(Err(e)),
                };
                layout = tile.layout();
                let buf =
                    out.get_or_insert_with(|| vec![0u8; want.w as usize * want.h as usize * tile.layout().channels()]);
                let c = tile.layout().channels();
                // The tile's rectangle on the reduced grid (its origin is a
                // multiple of the scale, so the mapping is exact).
                let tr = full.at_scale(scale, info.width, info.height);
                let (x0, x1) = (want.x.max(tr.x), (want.x + want.w).min(tr.x + tile.width()));
                let (y0, y1) = (want.y.max(tr.y), (want.y + want.h).min(tr.y + tile.height()));
                if x0 >= x1 || y0 >= y1 {
                    continue;
                }
                let n = (x1 - x0) as usize * c;
                for y in y0..y1 {
                    let src = ((y - tr.y) as usize * tile.width() as usize + (x0 - tr.x) as usize) * c;
                    let dst = ((y - want.y) as usize * want.w as usize + (x0 - want.x) as usize) * c;
                    buf[dst..dst + n].copy_from_slice(&tile.data()[src..src + n]);
                }
            }
        }
        let buf = out?;
        Some(Pixels::new(want.w, want.h, layout, buf).map_err(|e| CodecError::Corrupt(e.to_string())))
    }

    fn get_or_decode(
        &self,
        id: TileId,
        run: &dyn Fn() -> Result<Pixels, CodecError>,
        decodes: &dyn Fn(),
    ) -> Result<Arc<Pixels>, CodecError> {
        if let Some(t) = self.cache.get(&id) {
            return Ok(t);
        }
        let (slot, leader) = {
            let mut p = self.pending.lock().unwrap_or_else(|e| e.into_inner());
            match p.get(&id) {
                Some(s) => (s.clone(), false),
                None => {
                    let s: Slot = Arc::new((Mutex::new(None), Condvar::new()));
                    p.insert(id.clone(), s.clone());
                    (s, true)
                }
            }
        };
        if !leader {
            let (m, cv) = &*slot;
            let mut g = m.lock().unwrap_or_else(|e| e.into_inner());
            while g.is_none() {
                g = cv.wait(g).unwrap_or_else(|e| e.into_inner());
            }
            return match g.as_ref() {
                Some(Ok(t)) => Ok(t.clone()),
                Some(Err(e)) => Err(CodecError::Corrupt(e.clone())),
                None => Err(CodecError::Corrupt("tile decode vanished".into())),
            };
        }
        decodes();
        let result = run().map(Arc::new).map_err(|e| e.to_string());
        if let Ok(t) = &result {
            self.cache.insert(id.clone(), t.clone());
            if self.cache.peek(&id).is_none() {
                let mut r = self.refused.lock().unwrap_or_else(|e| e.into_inner());
                if r.len() >= 10_000 {
                    r.clear();
                }
                r.insert(id.clone());
            }
        }
        self.pending.lock().unwrap_or_else(|e| e.into_inner()).remove(&id);
        let (m, cv) = &*slot;
        *m.lock().unwrap_or_else(|e| e.into_inner()) = Some(result.clone());
        cv.notify_all();
        result.map_err(CodecError::Corrupt)
    }
}
