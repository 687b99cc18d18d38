//! TIFF sources: plain (striped or tiled) and pyramidal TIFF, the format of
//! IIPImage installations, read from the memory map.
//!
//! [`probe`] reads the directory chain once with the `tiff` crate (IFD
//! parsing, tag types, byte order, BigTIFF) into a [`Pyramid`]: every page
//! that is the full image reduced by a power of two becomes a native scale
//! (a thumbnail, label or macro page of another size is ignored), with its
//! chunk grid and where each chunk's bytes lie. Reduced pages stored as
//! SubIFDs of the first page (`vips tiffsave --subifd`, OME-TIFF) count too
//! when they are JPEG-compressed, the kind whose chunks Tessera reads
//! itself; other SubIFD pages are left out (the `tiff` crate decodes only
//! pages of the main chain), and their scales are reduced from a larger page. [`decode`] then decodes only
//! the chunks (tiles or strips) of the one page that serves the asked scale
//! and that the region touches:
//! - JPEG chunks go to libjpeg-turbo (`codec::jpeg`) with the page's
//!   JPEGTables merged in; it is several times faster than the `tiff`
//!   crate's own JPEG path and handles YCbCr sub-sampling itself;
//! - deflate, LZW, PackBits and uncompressed chunks go to the `tiff` crate
//!   (`Decoder::read_chunk` by index, over a cursor on the mapped bytes).
//!
//! [`stored_jpeg`] is the passthrough: a request that is exactly one stored
//! JPEG tile gets that tile's bytes (tables merged) with no decode or encode.
//!
//! 16-bit samples become 8-bit with rounding (v/257 to nearest), 1-bit
//! bilevel pages (deflate, LZW, CCITT group 4) become gray, either
//! photometric sense. CMYK pages (ink set CMYK, with or without alpha)
//! become sRGB through the file's CMYK profile, or the device formula
//! without one (`colour::cmyk_to_srgb`). Planar (separate) pages are read a
//! plane at a time and interleaved. Palette pages (1, 2, 4 or 8-bit
//! indices), which the `tiff` crate does not decode, are inflated here
//! (none, PackBits, LZW through weezl, deflate through flate2) and looked
//! up. CMYK in JPEG chunks, planar JPEG, predictors on palette pages and
//! floating point are refused as unsupported.

use std::io::{Read, Seek, SeekFrom};
use std::sync::Mutex;

use tiff::decoder::{Decoder, DecodingResult, IfdDecoder, Limits};
use tiff::tags::{PhotometricInterpretation, PlanarConfiguration, Tag};
use tiff::ColorType;

use super::{CodecError, ImageInfo, Need, Present, SourceFormat};
use crate::model::Rect;
use crate::pixels::{Layout, Pixels};

/// Pages read at most (a pyramid of a 2^20-pixel image has 21 levels).
const MAX_PAGES: usize = 64;

/// The TIFF compression code of JPEG ("new-style", TIFF technical note 2).
const JPEG: u16 = 7;

/// The InkSet tag (which the `tiff` crate does not name).
const INK_SET: u16 = 332;

/// The native scales of a TIFF: one page per power-of-two reduction.
#[derive(Clone, Debug, PartialEq)]
pub struct Pyramid {
    /// Ascending by factor; the first is the full image (factor 1).
    pub pages: Vec<Page>,
    /// The embedded ICC profile of the full-resolution page, if any.
    pub icc: Option<Vec<u8>>,
}

/// One page (IFD) of a TIFF, as far as decoding it needs.
#[derive(Clone, Debug, PartialEq)]
pub struct Page {
    /// Position in the IFD chain; `None` for a SubIFD page (JPEG only,
    /// whose chunks never go through the `tiff` crate).
    pub ifd: Option<usize>,
    /// Reduction against the full image (1, 2, 4, ...).
    pub factor: u32,
    pub width: u32,
    pub height: u32,
    /// Tile size, or (width, rows per strip) for a striped page.
    pub chunk_w: u32,
    pub chunk_h: u32,
    pub tiled: bool,
    pub compression: u16,
    pub samples: Samples,
    /// Planar (separate): each sample in chunks of its own, plane after plane.
    pub planar: bool,
    /// Byte ranges of the chunks in the file, in chunk order.
    pub offsets: Vec<u64>,
    pub byte_counts: Vec<u64>,
    /// The JPEGTables tag: quantisation and Huffman tables the chunks share.
    pub jpeg_tables: Option<Vec<u8>>,
    /// A palette page's colours, 8-bit RGB triples by index (its samples
    /// are indices, decoded by [`palette_chunk`]).
    pub palette: Option<Vec<u8>>,
}

/// How a page's samples map to [`Layout`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Samples {
    /// The decoded layout (RGB, or RGBA with alpha, for CMYK).
    pub layout: Layout,
    /// 1, 8 or 16.
    pub bits: u8,
    /// Stored as CMYK (four inks, then alpha if `layout` has it).
    pub cmyk: bool,
}

impl Samples {
    /// Pages that decode to the same colours (their bit depths may differ).
    fn same_colour(&self, other: &Samples) -> bool {
        self.layout == other.layout && self.cmyk == other.cmyk
    }

    /// Samples a pixel as stored.
    fn stored(&self) -> usize {
        self.layout.channels() + self.cmyk as usize
    }
}

impl Page {
    fn columns(&self) -> u32 {
        self.width.div_ceil(self.chunk_w.max(1))
    }

    fn rows(&self) -> u32 {
        self.height.div_ceil(self.chunk_h.max(1))
    }

    /// Chunks on the page (in each plane, for a planar page).
    fn chunks(&self) -> usize {
        self.columns() as usize * self.rows() as usize
    }

    /// The chunk tables cover every chunk (of every plane).
    fn check_chunks(&self) -> Result<(), CodecError> {
        let planes = if self.planar { self.samples.stored() } else { 1 };
        let chunks = self.chunks() * planes;
        if self.offsets.len() < chunks || self.byte_counts.len() < chunks {
            return Err(CodecError::Corrupt("TIFF has fewer chunk offsets than chunks".into()));
        }
        Ok(())
    }
}

impl Pyramid {
    /// The page for 1/`scale`: the one whose factor equals it.
    pub fn page(&self, scale: u32) -> Option<&Page> {
        self.pages.iter().find(|p| p.factor == scale)
    }
}

fn corrupt(e: impl std::fmt::Display) -> CodecError {
    CodecError::Corrupt(format!("TIFF: {e}"))
}

fn tag_error(tag: &str, e: impl std::fmt::Display) -> CodecError {
    CodecError::Corrupt(format!("TIFF tag {tag}: {e}"))
}

fn limits() -> Limits {
    // Tag arrays up to 16 MiB (chunk offsets of a very large page), chunk
    // buffers up to 512 MiB (the pixel limit is checked before any decode).
    let mut l = Limits::default();
    l.ifd_value_size = 16 << 20;
    l.decoding_buffer_size = 512 << 20;
    l
}

fn decoder<'a>(input: Input<'a>) -> Result<Decoder<Input<'a>>, CodecError> {
    Ok(Decoder::new(input).map_err(corrupt)?.with_limits(limits()))
}

/// What the `tiff` crate reads from: the file's bytes, each read first made
/// readable through [`Need`] (the directory chain of a remote master is
/// fetched as it is walked). A `need` that fails is kept in `failed`, so
/// the caller reports it rather than the crate's I/O error.
struct Input<'a> {
    data: &'a [u8],
    pos: u64,
    need: &'a dyn Need,
    failed: &'a Mutex<Option<CodecError>>,
}

impl Read for Input<'_> {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        let start = self.pos.min(self.data.len() as u64) as usize;
        let n = buf.len().min(self.data.len() - start);
        if let Err(e) = self.need.need(&[(start as u64, (start + n) as u64)]) {
            let text = e.to_string();
            *self.failed.lock().unwrap_or_else(|p| p.into_inner()) = Some(e);
            return Err(std::io::Error::other(text));
        }
        buf[..n].copy_from_slice(&self.data[start..start + n]);
        self.pos = (start + n) as u64;
        Ok(n)
    }
}

impl Seek for Input<'_> {
    fn seek(&mut self, to: SeekFrom) -> std::io::Result<u64> {
        let len = self.data.len() as i128;
        let at = match to {
            SeekFrom::Start(p) => i128::from(p),
            SeekFrom::End(d) => len + i128::from(d),
            SeekFrom::Current(d) => i128::from(self.pos) + i128::from(d),
        };
        self.pos = u64::try_from(at).map_err(|_| std::io::Error::other("seek before the start"))?;
        Ok(self.pos)
    }
}

/// The error of a read through [`Input`]: the failed `need`'s if there was one.
fn settle<T>(r: Result<T, CodecError>, failed: &Mutex<Option<CodecError>>) -> Result<T, CodecError> {
    r.map_err(|e| failed.lock().unwrap_or_else(|p| p.into_inner()).take().unwrap_or(e))
}

/// Whether `data` starts like a TIFF or BigTIFF.
pub fn sniff(data: &[u8]) -> bool {
    data.starts_with(b"II*\0") || data.starts_with(b"MM\0*") || data.starts_with(b"II+\0") || data.starts_with(b"MM\0+")
}

/// Reads the directory chain: size, layout, native scales.
pub fn probe(data: &[u8]) -> Result<ImageInfo, CodecError> {
    probe_with(data, &Present)
}

/// [`probe`] of bytes that come through `need`: only the directories and
/// the tag arrays they point to are read.
pub fn probe_with(data: &[u8], need: &dyn Need) -> Result<ImageInfo, CodecError> {
    let failed = Mutex::new(None);
    let pyramid = settle(read_pyramid(Input { data, pos: 0, need, failed: &failed }), &failed)?;
    let Some(full) = pyramid.pages.first() else {
        return Err(CodecError::Corrupt("TIFF has no pages".into()));
    };
    Ok(ImageInfo {
        format: SourceFormat::Tiff,
        width: full.width,
        height: full.height,
        layout: full.samples.layout,
        scale_factors: pyramid.pages.iter().map(|p| p.factor).collect(),
        native_tile: full.tiled.then_some((full.chunk_w, full.chunk_h)),
        icc: super::colour::judge(pyramid.icc.clone(), full.samples.layout),
        tiff: Some(std::sync::Arc::new(pyramid)),
    })
}

fn read_pyramid(input: Input<'_>) -> Result<Pyramid, CodecError> {
    let mut d = decoder(input)?;
    let full = read_page(&mut d, 0, 1)?;
    let icc = d.get_tag_u8_vec(Tag::IccProfile).ok();
    let sub_ifds = d.find_tag(Tag::SubIfd).ok().flatten().and_then(|v| v.into_ifd_vec().ok()).unwrap_or_default();
    let (w, h) = (full.width, full.height);
    let mut pages = vec![full];
    let mut ifd = 0;
    while d.more_images() && ifd + 1 < MAX_PAGES {
        ifd += 1;
        if d.next_image().is_err() {
            break; // A broken later page costs its scale, not the image.
        }
        let Ok((pw, ph)) = d.dimensions() else { continue };
        let Some(factor) = reduction((w, h), (pw, ph)) else { continue };
        if pages.iter().any(|p| p.factor == factor) {
            continue;
        }
        match read_page(&mut d, ifd, factor) {
            Ok(p) if p.samples.same_colour(&pages[0].samples) => pages.push(p),
            _ => continue,
        }
    }
    for ptr in sub_ifds.into_iter().take(MAX_PAGES) {
        let Ok(dir) = d.read_directory(ptr) else { continue };
        let mut tags = d.read_directory_tags(&dir);
        match jpeg_sub_page(&mut tags, (w, h)) {
            Some(p) if p.samples.same_colour(&pages[0].samples) && !pages.iter().any(|q| q.factor == p.factor) => {
                pages.push(p)
            }
            _ => continue,
        }
    }
    pages.sort_by_key(|p| p.factor);
    Ok(Pyramid { pages, icc })
}

/// The power of two that reduces `full` to `page` (within a pixel of
/// w/2^k and h/2^k, either rounding), if any.
fn reduction((w, h): (u32, u32), (pw, ph): (u32, u32)) -> Option<u32> {
    (1..=20u32).map(|k| 1u32 << k).find(|&f| {
        let near = |full: u32, page: u32| page.abs_diff(full / f) <= 1 || page.abs_diff(full.div_ceil(f)) <= 1;
        near(w, pw) && near(h, ph)
    })
}

/// A SubIFD page that is a reduction of the full image stored as 8-bit
/// gray or RGB/YCbCr JPEG chunks; `None` for anything else.
fn jpeg_sub_page(tags: &mut IfdDecoder<'_>, full: (u32, u32)) -> Option<Page> {
    let mut get = |tag: Tag| tags.find_tag_unsigned::<u32>(tag).ok().flatten();
    let (width, height) = (get(Tag::ImageWidth)?, get(Tag::ImageLength)?);
    let factor = reduction(full, (width, height))?;
    let compression = get(Tag::Compression)?;
    let photometric = get(Tag::PhotometricInterpretation)?;
    let planar = get(Tag::PlanarConfiguration).unwrap_or(1);
    let spp = get(Tag::SamplesPerPixel).unwrap_or(1);
    let layout = match (photometric, spp) {
        (1, 1) => Layout::Gray,
        (2 | 6, 3) => Layout::Rgb,
        _ => return None,
    };
    let bits = tags.find_tag_unsigned_vec::<u16>(Tag::BitsPerSample).ok().flatten().unwrap_or_else(|| vec![1]);
    if compression != JPEG as u32 || planar != 1 || bits.iter().any(|&b| b != 8) {
        return None;
    }
    let (chunk_w, chunk_h, tiled, offsets, byte_counts) = chunk_table(tags, width, height).ok()?;
    let page = Page {
        ifd: None,
        factor,
        width,
        height,
        chunk_w,
        chunk_h,
        tiled,
        compression: JPEG,
        samples: Samples { layout, bits: 8, cmyk: false },
        planar: false,
        offsets,
        byte_counts,
        jpeg_tables: tags.get_tag_u8_vec(Tag::JPEGTables).ok(),
        palette: None,
    };
    page.check_chunks().ok()?;
    Some(page)
}

type ChunkTable = (u32, u32, bool, Vec<u64>, Vec<u64>);

/// A page's chunk grid: chunk width and height, tiled, and the chunks'
/// offsets and byte counts.
fn chunk_table(t: &mut IfdDecoder<'_>, width: u32, height: u32) -> Result<ChunkTable, CodecError> {
    let tiled = t.find_tag(Tag::TileWidth).map_err(|e| tag_error("TileWidth", e))?.is_some();
    let table = if tiled {
        let tw = t.get_tag_u32(Tag::TileWidth).map_err(|e| tag_error("TileWidth", e))?;
        let th = t.get_tag_u32(Tag::TileLength).map_err(|e| tag_error("TileLength", e))?;
        (
            tw,
            th,
            true,
            t.get_tag_u64_vec(Tag::TileOffsets).map_err(|e| tag_error("TileOffsets", e))?,
            t.get_tag_u64_vec(Tag::TileByteCounts).map_err(|e| tag_error("TileByteCounts", e))?,
        )
    } else {
        let rows = t
            .find_tag_unsigned::<u32>(Tag::RowsPerStrip)
            .map_err(|e| tag_error("RowsPerStrip", e))?
            .unwrap_or(height)
            .min(height);
        (
            width,
            rows,
            false,
            t.get_tag_u64_vec(Tag::StripOffsets).map_err(|e| tag_error("StripOffsets", e))?,
            t.get_tag_u64_vec(Tag::StripByteCounts).map_err(|e| tag_error("StripByteCounts", e))?,
        )
    };
    if table.0 == 0 || table.1 == 0 {
        return Err(CodecError::Corrupt("TIFF chunk of no size".into()));
    }
    Ok(table)
}

fn read_page(d: &mut Decoder<Input<'_>>, ifd: usize, factor: u32) -> Result<Page, CodecError> {
    let (width, height) = d.dimensions().map_err(corrupt)?;
    if width == 0 || height == 0 {
        return Err(CodecError::Corrupt("TIFF page has no size".into()));
    }
    let compression =
        d.find_tag_unsigned::<u16>(Tag::Compression).map_err(|e| tag_error("Compression", e))?.unwrap_or(1);
    let planar = d
        .find_tag_unsigned::<u16>(Tag::PlanarConfiguration)
        .map_err(|e| tag_error("PlanarConfiguration", e))?
        .unwrap_or(1)
        == PlanarConfiguration::Planar.to_u16();
    if planar && compression == JPEG {
        return Err(CodecError::Unsupported("planar (separate) JPEG in TIFF".into()));
    }
    let photometric = d
        .find_tag_unsigned::<u16>(Tag::PhotometricInterpretation)
        .map_err(|e| tag_error("PhotometricInterpretation", e))?;
    let (samples, palette) = if photometric == Some(PhotometricInterpretation::RGBPalette.to_u16()) {
        let (samples, colours) = palette(d, compression)?;
        (samples, Some(colours))
    } else {
        (samples(d, compression, photometric)?, None)
    };
    let ptr = d.ifd_pointer().ok_or_else(|| CodecError::Corrupt("TIFF page without a directory".into()))?;
    let dir = d.read_directory(ptr).map_err(corrupt)?;
    let mut tags = d.read_directory_tags(&dir);
    let (chunk_w, chunk_h, tiled, offsets, byte_counts) = chunk_table(&mut tags, width, height)?;
    let jpeg_tables = if compression == JPEG { tags.get_tag_u8_vec(Tag::JPEGTables).ok() } else { None };
    let page = Page {
        ifd: Some(ifd),
        factor,
        width,
        height,
        chunk_w,
        chunk_h,
        tiled,
        compression,
        samples,
        // One index a pixel: a planar palette page is stored as a chunky one.
        planar: planar && palette.is_none(),
        offsets,
        byte_counts,
        jpeg_tables,
        palette,
    };
    page.check_chunks()?;
    Ok(page)
}

fn samples(d: &mut Decoder<Input<'_>>, compression: u16, photometric: Option<u16>) -> Result<Samples, CodecError> {
    let ct = d.colortype().map_err(|e| CodecError::Unsupported(format!("TIFF colour type: {e}")))?;
    // MinIsWhite is inverted by the `tiff` crate as it decodes; a JPEG
    // chunk of a MinIsWhite page is refused (JPEG stores what it shows).
    if compression == JPEG && photometric == Some(PhotometricInterpretation::WhiteIsZero.to_u16()) {
        return Err(CodecError::Unsupported("MinIsWhite JPEG in TIFF".into()));
    }
    let (layout, bits, cmyk) = match ct {
        ColorType::Gray(b) => (Layout::Gray, b, false),
        ColorType::GrayA(b) => (Layout::GrayAlpha, b, false),
        ColorType::RGB(b) => (Layout::Rgb, b, false),
        ColorType::RGBA(b) => (Layout::Rgba, b, false),
        // libjpeg-turbo turns a JPEG's YCbCr into RGB.
        ColorType::YCbCr(8) if compression == JPEG => (Layout::Rgb, 8, false),
        ColorType::CMYK(b) | ColorType::CMYKA(b) if compression != JPEG => {
            // Ink set 1 (the default) is CMYK; 2 is any other four inks.
            let inks = d.find_tag_unsigned::<u16>(Tag::Unknown(INK_SET)).map_err(|e| tag_error("InkSet", e))?;
            if inks.is_some_and(|i| i != 1) {
                return Err(CodecError::Unsupported("TIFF inks other than CMYK".into()));
            }
            (if matches!(ct, ColorType::CMYKA(_)) { Layout::Rgba } else { Layout::Rgb }, b, true)
        }
        other => return Err(CodecError::Unsupported(format!("TIFF colour type {other:?}"))),
    };
    // One value a sample (or one for all): unsigned integers only.
    let formats = d.find_tag_unsigned_vec::<u16>(Tag::SampleFormat).map_err(|e| tag_error("SampleFormat", e))?;
    if formats.is_some_and(|f| f.iter().any(|&v| v != 1)) {
        return Err(CodecError::Unsupported("TIFF samples that are not unsigned integers".into()));
    }
    let supported = match bits {
        8 => true,
        16 => compression != JPEG,
        1 => compression != JPEG && layout == Layout::Gray,
        _ => false,
    };
    if !supported {
        return Err(CodecError::Unsupported(format!("{bits}-bit TIFF samples of this kind")));
    }
    Ok(Samples { layout, bits, cmyk })
}

/// Decodes `want` (a rectangle on the 1/`scale` grid) from the page for that
/// scale. Pixels beyond the page's edge (a reduced page a pixel smaller
/// than the planner's grid) are left for the caller to fill.
pub fn decode(data: &[u8], pyramid: &Pyramid, want: Rect, scale: u32, max_pixels: u64) -> Result<Pixels, CodecError> {
    decode_with(data, &Present, pyramid, want, scale, max_pixels)
}

/// [`decode`] of bytes that come through `need`: the chunks the region
/// touches are asked for together before any is read.
pub fn decode_with(
    data: &[u8],
    need: &dyn Need,
    pyramid: &Pyramid,
    want: Rect,
    scale: u32,
    max_pixels: u64,
) -> Result<Pixels, CodecError> {
    let failed = Mutex::new(None);
    settle(decode_chunks(data, need, &failed, pyramid, want, scale, max_pixels), &failed)
}

/// Makes readable together the chunks that decodes of `areas` (on the
/// 1/`scale` grid) will read.
pub fn prefetch(need: &dyn Need, pyramid: &Pyramid, areas: &[Rect], scale: u32) -> Result<(), CodecError> {
    let Some(page) = pyramid.page(scale) else { return Ok(()) };
    let mut ranges = Vec::new();
    for a in areas {
        let x1 = (a.x + a.w).min(page.width);
        let y1 = (a.y + a.h).min(page.height);
        if a.x < x1 && a.y < y1 {
            ranges.extend(chunk_ranges(page, Rect { x: a.x, y: a.y, w: x1 - a.x, h: y1 - a.y }));
        }
    }
    need.need(&ranges)
}

/// The byte ranges of the chunks of `page` that `area` (on the page's
/// grid, not empty) touches.
fn chunk_ranges(page: &Page, area: Rect) -> Vec<(u64, u64)> {
    let (x1, y1) = (area.x + area.w, area.y + area.h);
    let mut ranges = Vec::new();
    for row in area.y / page.chunk_h..=(y1 - 1) / page.chunk_h {
        for col in area.x / page.chunk_w..=(x1 - 1) / page.chunk_w {
            let index = (row * page.columns() + col) as usize;
            if let (Some(&off), Some(&len)) = (page.offsets.get(index), page.byte_counts.get(index)) {
                ranges.push((off, off.saturating_add(len)));
            }
        }
    }
    ranges
}

fn decode_chunks(
    data: &[u8],
    need: &dyn Need,
    failed: &Mutex<Option<CodecError>>,
    pyramid: &Pyramid,
    want: Rect,
    scale: u32,
    max_pixels: u64,
) -> Result<Pixels, CodecError> {
    let page = pyramid.page(scale).ok_or_else(|| CodecError::Unsupported(format!("TIFF has no page at 1/{scale}")))?;
    let chunk_px = page.chunk_w as u64 * page.chunk_h as u64;
    if chunk_px > max_pixels {
        return Err(CodecError::TooLarge { pixels: chunk_px, limit: max_pixels });
    }
    let x1 = (want.x + want.w).min(page.width);
    let y1 = (want.y + want.h).min(page.height);
    if want.x >= x1 || want.y >= y1 {
        return Err(CodecError::Corrupt("region outside the TIFF page".into()));
    }
    let area = Rect { x: want.x, y: want.y, w: x1 - want.x, h: y1 - want.y };
    if need.is_remote() {
        // Only a remote input has anything to fetch: no list for a file.
        need.need(&chunk_ranges(page, area))?;
    }
    let layout = page.samples.layout;
    let c = layout.channels();
    let mut out = vec![0u8; area.w as usize * area.h as usize * c];
    let mut reader = None;
    for row in area.y / page.chunk_h..=(y1 - 1) / page.chunk_h {
        for col in area.x / page.chunk_w..=(x1 - 1) / page.chunk_w {
            let index = row * page.columns() + col;
            let chunk = if page.compression == JPEG {
                jpeg_chunk(data, page, index as usize, max_pixels)?
            } else if let Some(colours) = &page.palette {
                palette_chunk(data, page, colours, index)?
            } else {
                let d = match &mut reader {
                    Some(d) => d,
                    None => {
                        let ifd = page.ifd.ok_or_else(|| CodecError::Unsupported("TIFF SubIFD page".into()))?;
                        let mut d = decoder(Input { data, pos: 0, need, failed })?;
                        d.seek_to_image(ifd).map_err(corrupt)?;
                        reader.insert(d)
                    }
                };
                other_chunk(d, page, index, pyramid.icc.as_deref())?
            };
            // Where the chunk sits on the page, and what of it the area takes.
            let (cx, cy) = (col * page.chunk_w, row * page.chunk_h);
            let (sx0, sy0) = (area.x.max(cx), area.y.max(cy));
            let sx1 = x1.min(cx + chunk.width()).min(cx + page.chunk_w);
            let sy1 = y1.min(cy + chunk.height()).min(cy + page.chunk_h);
            if sx0 >= sx1 || sy0 >= sy1 {
                return Err(CodecError::Corrupt("TIFF chunk smaller than its place".into()));
            }
            let n = (sx1 - sx0) as usize * c;
            for y in sy0..sy1 {
                let src = ((y - cy) as usize * chunk.width() as usize + (sx0 - cx) as usize) * c;
                let dst = ((y - area.y) as usize * area.w as usize + (sx0 - area.x) as usize) * c;
                out[dst..dst + n].copy_from_slice(&chunk.data()[src..src + n]);
            }
        }
    }
    Pixels::new(area.w, area.h, layout, out).map_err(|e| CodecError::Corrupt(e.to_string()))
}

/// The bytes of chunk `index`, bounds-checked against the file.
fn chunk_bytes<'a>(data: &'a [u8], page: &Page, index: usize) -> Result<&'a [u8], CodecError> {
    let (Some(&off), Some(&len)) = (page.offsets.get(index), page.byte_counts.get(index)) else {
        return Err(CodecError::Corrupt("TIFF chunk index out of range".into()));
    };
    let end = off.checked_add(len).filter(|&e| e <= data.len() as u64);
    match end {
        Some(end) if len > 0 => Ok(&data[off as usize..end as usize]),
        _ => Err(CodecError::Corrupt("TIFF chunk beyond the end of the file".into())),
    }
}

/// One JPEG chunk as a self-contained JPEG: the page's tables merged in
/// (the tables' stream without its end marker, then the chunk's without its
/// start marker), or the chunk alone when it carries its own tables.
fn merged_jpeg(data: &[u8], page: &Page, index: usize) -> Result<Vec<u8>, CodecError> {
    let chunk = chunk_bytes(data, page, index)?;
    if !chunk.starts_with(&[0xFF, 0xD8]) {
        return Err(CodecError::Corrupt("TIFF JPEG chunk without a start marker".into()));
    }
    match page.jpeg_tables.as_deref() {
        Some(t) if t.len() > 4 && t.starts_with(&[0xFF, 0xD8]) && t.ends_with(&[0xFF, 0xD9]) => {
            let mut out = Vec::with_capacity(t.len() + chunk.len());
            out.extend_from_slice(&t[..t.len() - 2]);
            out.extend_from_slice(&chunk[2..]);
            Ok(out)
        }
        _ => Ok(chunk.to_vec()),
    }
}

fn jpeg_chunk(data: &[u8], page: &Page, index: usize, max_pixels: u64) -> Result<Pixels, CodecError> {
    let jpeg = merged_jpeg(data, page, index)?;
    let info = super::jpeg::probe(&jpeg)?;
    if info.layout != page.samples.layout {
        return Err(CodecError::Corrupt("TIFF JPEG chunk differs from its page in colour".into()));
    }
    let whole = Rect { x: 0, y: 0, w: info.width, h: info.height };
    super::jpeg::decode(&jpeg, &info, whole, 1, max_pixels)
}

/// Chunk `index` of `page` (deflate, LZW, PackBits, CCITT or none) as
/// pixels of the page's layout: a planar page's planes interleaved, CMYK
/// turned into sRGB (through `icc` when it is a CMYK profile).
fn other_chunk(d: &mut Decoder<Input<'_>>, page: &Page, index: u32, icc: Option<&[u8]>) -> Result<Pixels, CodecError> {
    let s = page.samples;
    // The `tiff` crate returns a chunk's data without the padding of the
    // last column and row of tiles or the last strip.
    let (col, row) = (index % page.columns(), index / page.columns());
    let w = page.chunk_w.min(page.width - col * page.chunk_w);
    let h = page.chunk_h.min(page.height - row * page.chunk_h);
    let n = w as usize * h as usize;
    let stored = s.stored();
    let px = if page.planar {
        // Plane p's chunk of this place is chunk p × (chunks a plane) + index.
        let mut px = vec![0u8; n * stored];
        for plane in 0..stored {
            let chunk = index as usize + plane * page.chunks();
            let v = samples_8(d.read_chunk(chunk as u32).map_err(corrupt)?, s.bits, w, h, n)?;
            for (out, v) in px.chunks_exact_mut(stored).zip(v) {
                out[plane] = v;
            }
        }
        px
    } else {
        samples_8(d.read_chunk(index).map_err(corrupt)?, s.bits, w, h, n * stored)?
    };
    let px = if s.cmyk { cmyk_pixels(&px, s.layout, icc) } else { px };
    Pixels::new(w, h, s.layout, px).map_err(|e| corrupt(e.to_string()))
}

/// A chunk's samples as 8-bit values, the first `len` of them.
fn samples_8(result: DecodingResult, bits: u8, w: u32, h: u32, len: usize) -> Result<Vec<u8>, CodecError> {
    let mut v = match (result, bits) {
        (DecodingResult::U8(v), 8) => v,
        (DecodingResult::U16(v), 16) => v.into_iter().map(to_8_bits).collect(),
        (DecodingResult::U8(v), 1) => unpack_bits(&v, w, h),
        _ => return Err(CodecError::Unsupported("TIFF sample type".into())),
    };
    if v.len() < len {
        return Err(CodecError::Corrupt("TIFF chunk shorter than its size".into()));
    }
    v.truncate(len);
    Ok(v)
}

/// CMYK (or CMYK and alpha) samples as RGB (or RGBA), 0 being no ink.
fn cmyk_pixels(px: &[u8], layout: Layout, icc: Option<&[u8]>) -> Vec<u8> {
    if !layout.has_alpha() {
        return super::colour::cmyk_to_srgb(px, icc, false);
    }
    let inks: Vec<u8> = px.chunks_exact(5).flat_map(|p| [p[0], p[1], p[2], p[3]]).collect();
    let rgb = super::colour::cmyk_to_srgb(&inks, icc, false);
    rgb.chunks_exact(3).zip(px.chunks_exact(5)).flat_map(|(c, p)| [c[0], c[1], c[2], p[4]]).collect()
}

/// TIFF compression codes a palette page may use (the chunks are inflated
/// here: the `tiff` crate decodes no palette page).
const NONE: u16 = 1;
const LZW: u16 = 5;
const DEFLATE: u16 = 8;
const DEFLATE_OLD: u16 = 32946;
const PACKBITS: u16 = 32773;

/// A palette page's samples (RGB out) and its colour map as 8-bit RGB
/// triples: 1, 2, 4 or 8-bit indices, one sample a pixel, uncompressed,
/// PackBits, LZW or deflate, no predictor.
fn palette(d: &mut Decoder<Input<'_>>, compression: u16) -> Result<(Samples, Vec<u8>), CodecError> {
    let unsupported = |what: &str| Err(CodecError::Unsupported(format!("palette TIFF {what}")));
    let bits = d.find_tag_unsigned::<u16>(Tag::BitsPerSample).map_err(|e| tag_error("BitsPerSample", e))?.unwrap_or(1);
    let spp = d.find_tag_unsigned::<u16>(Tag::SamplesPerPixel).map_err(|e| tag_error("SamplesPerPixel", e))?;
    let predictor = d.find_tag_unsigned::<u16>(Tag::Predictor).map_err(|e| tag_error("Predictor", e))?;
    if !matches!(bits, 1 | 2 | 4 | 8) || spp.is_some_and(|n| n != 1) {
        return unsupported("with these samples");
    }
    if !matches!(compression, NONE | LZW | DEFLATE | DEFLATE_OLD | PACKBITS) || predictor.is_some_and(|p| p != 1) {
        return unsupported("with this compression");
    }
    let map = d.get_tag_u16_vec(Tag::ColorMap).map_err(|e| tag_error("ColorMap", e))?;
    let n = 1usize << bits;
    if map.len() < 3 * n {
        return Err(CodecError::Corrupt("TIFF colour map shorter than its indices".into()));
    }
    // Stored as all reds, all greens, all blues, 16 bits each, written as
    // v × 256 by most writers: the high byte, as libtiff reads it (and the
    // value itself from old writers that stored 8-bit values, all < 256).
    let eight_bit = map[..3 * n].iter().all(|&v| v < 256);
    let to_8 = |v: u16| if eight_bit { v as u8 } else { (v >> 8) as u8 };
    let colours = (0..n).flat_map(|i| [map[i], map[n + i], map[2 * n + i]].map(to_8)).collect();
    Ok((Samples { layout: Layout::Rgb, bits: bits as u8, cmyk: false }, colours))
}

/// Chunk `index` of a palette page as RGB pixels: inflated, its indices
/// unpacked and looked up.
fn palette_chunk(data: &[u8], page: &Page, colours: &[u8], index: u32) -> Result<Pixels, CodecError> {
    let (col, row) = (index % page.columns(), index / page.columns());
    let w = page.chunk_w.min(page.width - col * page.chunk_w);
    let h = page.chunk_h.min(page.height - row * page.chunk_h);
    // Tiles are stored whole (padded); a strip holds its own rows.
    let rows = if page.tiled { page.chunk_h } else { h };
    let row_bytes = (page.chunk_w as usize * page.samples.bits as usize).div_ceil(8);
    let want = row_bytes * rows as usize;
    let raw = inflate(chunk_bytes(data, page, index as usize)?, page.compression, want)?;
    if raw.len() < row_bytes * h as usize {
        return Err(CodecError::Corrupt("TIFF chunk shorter than its size".into()));
    }
    let bits = page.samples.bits as usize;
    let mut px = Vec::with_capacity(w as usize * h as usize * 3);
    for line in raw.chunks(row_bytes).take(h as usize) {
        for x in 0..w as usize {
            let bit = x * bits;
            let i = (line[bit / 8] >> (8 - bits - bit % 8)) as usize & ((1 << bits) - 1);
            px.extend_from_slice(&colours[i * 3..i * 3 + 3]);
        }
    }
    Pixels::new(w, h, Layout::Rgb, px).map_err(|e| corrupt(e.to_string()))
}

/// A chunk's bytes decompressed, at most `want` of them (a chunk that would
/// inflate beyond its size is cut there, never grown without bound).
fn inflate(chunk: &[u8], compression: u16, want: usize) -> Result<Vec<u8>, CodecError> {
    use std::io::Read;
    let mut out = Vec::with_capacity(want);
    match compression {
        NONE => out.extend_from_slice(&chunk[..chunk.len().min(want)]),
        PACKBITS => unpack_packbits(chunk, want, &mut out),
        LZW => {
            let mut d = weezl::decode::Decoder::with_tiff_size_switch(weezl::BitOrder::Msb, 8);
            out.resize(want, 0);
            let (mut read, mut written) = (0, 0);
            while written < want {
                let r = d.decode_bytes(&chunk[read..], &mut out[written..]);
                read += r.consumed_in;
                written += r.consumed_out;
                match r.status {
                    Ok(weezl::LzwStatus::Ok) if r.consumed_in + r.consumed_out > 0 => {}
                    Ok(_) => break,
                    // A damaged tail after the data the chunk needs is
                    // common and harmless; short output is caught below.
                    Err(e) if written == 0 => return Err(corrupt(format!("LZW: {e}"))),
                    Err(_) => break,
                }
            }
            out.truncate(written);
        }
        _ => {
            flate2::read::ZlibDecoder::new(chunk)
                .take(want as u64)
                .read_to_end(&mut out)
                .map_err(|e| corrupt(format!("deflate: {e}")))?;
        }
    }
    Ok(out)
}

/// PackBits (Apple's run-length code, TIFF compression 32773).
fn unpack_packbits(mut src: &[u8], want: usize, out: &mut Vec<u8>) {
    while out.len() < want {
        let Some((&n, rest)) = src.split_first() else { break };
        src = rest;
        match n as i8 {
            // n + 1 literal bytes.
            0..=127 => {
                let take = (n as usize + 1).min(src.len());
                out.extend_from_slice(&src[..take]);
                src = &src[take..];
            }
            // The next byte 1 - n times.
            -127..=-1 => {
                let Some((&b, rest)) = src.split_first() else { break };
                src = rest;
                out.extend(std::iter::repeat_n(b, (1 - n as i8 as isize) as usize));
            }
            // -128: no operation.
            _ => {}
        }
    }
    out.truncate(want);
}

/// A 16-bit sample to 8 bits, to nearest: round(v × 255 / 65535) = round(v / 257).
pub fn to_8_bits(v: u16) -> u8 {
    ((v as u32 + 128) / 257) as u8
}

/// 1-bit rows (each padded to a byte, most significant bit first) to 8-bit
/// gray: 1 is white (the `tiff` crate has already inverted MinIsWhite).
fn unpack_bits(packed: &[u8], w: u32, h: u32) -> Vec<u8> {
    let row_bytes = w.div_ceil(8) as usize;
    let mut out = Vec::with_capacity(w as usize * h as usize);
    for row in packed.chunks(row_bytes).take(h as usize) {
        for x in 0..w as usize {
            let bit = row.get(x / 8).is_some_and(|b| b & (0x80 >> (x % 8)) != 0);
            out.push(if bit { 255 } else { 0 });
        }
    }
    out
}

/// The passthrough: when `want` (on the 1/`scale` grid) is exactly one
/// whole JPEG tile of the page for that scale, that tile as a complete
/// JPEG (tables merged), with no decode and no encode. `None` when it is
/// not (another size, an edge tile with padding, not JPEG, more than three
/// samples), and the caller decodes.
pub fn stored_jpeg(data: &[u8], pyramid: &Pyramid, want: Rect, scale: u32) -> Option<Vec<u8>> {
    stored_jpeg_with(data, &Present, pyramid, want, scale)
}

/// [`stored_jpeg`] of bytes that come through `need` (`None` too when the
/// chunk cannot be had: the decode that follows reports why).
pub fn stored_jpeg_with(data: &[u8], need: &dyn Need, pyramid: &Pyramid, want: Rect, scale: u32) -> Option<Vec<u8>> {
    let page = pyramid.page(scale)?;
    let (tw, th) = (page.chunk_w, page.chunk_h);
    let whole_tile = want.w == tw && want.h == th && want.x.is_multiple_of(tw) && want.y.is_multiple_of(th);
    let inside = want.x + tw <= page.width && want.y + th <= page.height;
    if !page.tiled || page.compression != JPEG || page.samples.bits != 8 || !whole_tile || !inside {
        return None;
    }
    if !matches!(page.samples.layout, Layout::Gray | Layout::Rgb) {
        return None;
    }
    let index = (want.y / th) * page.columns() + want.x / tw;
    if need.is_remote() {
        need.need(&chunk_ranges(page, Rect { x: want.x, y: want.y, w: tw, h: th })).ok()?;
    }
    let jpeg = merged_jpeg(data, page, index as usize).ok()?;
    // The stream must say what the page says: a tile of exactly this size.
    (jpeg_size(&jpeg)? == (tw, th)).then_some(jpeg)
}

/// The frame size of a JPEG stream (its first SOFn marker).
fn jpeg_size(jpeg: &[u8]) -> Option<(u32, u32)> {
    let mut i = 2;
    while i + 9 <= jpeg.len() {
        if jpeg[i] != 0xFF {
            return None;
        }
        let marker = jpeg[i + 1];
        let len = u16::from_be_bytes([jpeg[i + 2], jpeg[i + 3]]) as usize;
        // SOF0..SOF15 but DHT (C4), JPG (C8) and DAC (CC).
        if (0xC0..=0xCF).contains(&marker) && !matches!(marker, 0xC4 | 0xC8 | 0xCC) {
            let h = u16::from_be_bytes([jpeg[i + 5], jpeg[i + 6]]) as u32;
            let w = u16::from_be_bytes([jpeg[i + 7], jpeg[i + 8]]) as u32;
            return Some((w, h));
        }
        if marker == 0xDA || len < 2 {
            return None;
        }
        i += 2 + len;
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sixteen_bit_samples_round_to_the_nearest_eight_bit_value() {
        for k in 0..=255u16 {
            assert_eq!(to_8_bits(k * 257), k as u8);
        }
        for v in (0..=u16::MAX).step_by(7) {
            let exact = v as f64 * 255.0 / 65535.0;
            assert_eq!(to_8_bits(v), exact.round() as u8, "{v}");
        }
    }

    /// A one-chunk uncompressed palette page of `w × h` over `data`.
    fn palette_page(w: u32, h: u32, bits: u8, compression: u16, len: usize, colours: Vec<u8>) -> Page {
        Page {
            ifd: Some(0),
            factor: 1,
            width: w,
            height: h,
            chunk_w: w,
            chunk_h: h,
            tiled: false,
            compression,
            samples: Samples { layout: Layout::Rgb, bits, cmyk: false },
            planar: false,
            offsets: vec![0],
            byte_counts: vec![len as u64],
            jpeg_tables: None,
            palette: Some(colours),
        }
    }

    #[test]
    fn sub_byte_palette_indices_unpack_most_significant_first_with_row_padding() {
        // Colour i is (i, 2i, 3i).
        let colours = |n: usize| (0..n).flat_map(|i| [i as u8, 2 * i as u8, 3 * i as u8]).collect::<Vec<u8>>();
        // 4-bit, 3 pixels a row (two bytes, the last nibble padding): 1 2 3 / 15 0 7.
        let data = [0x12, 0x30, 0xF0, 0x70];
        let page = palette_page(3, 2, 4, NONE, data.len(), colours(16));
        let px = palette_chunk(&data, &page, page.palette.as_deref().unwrap(), 0).unwrap();
        assert_eq!(px.data(), &[1, 2, 3, 2, 4, 6, 3, 6, 9, 15, 30, 45, 0, 0, 0, 7, 14, 21]);
        // 2-bit, 5 pixels a row: 0 1 2 3 | 1 (then padding).
        let data = [0b0001_1011, 0b0100_0000];
        let page = palette_page(5, 1, 2, NONE, data.len(), colours(4));
        let px = palette_chunk(&data, &page, page.palette.as_deref().unwrap(), 0).unwrap();
        assert_eq!(px.data(), &[0, 0, 0, 1, 2, 3, 2, 4, 6, 3, 6, 9, 1, 2, 3]);
    }

    #[test]
    fn packbits_runs_and_literals_expand_and_stop_at_the_size() {
        // Literal of 3, run of 4 × 0xAA, no-op, literal of 1.
        let src = [2, 1, 2, 3, 0xFD, 0xAA, 0x80, 0, 9];
        let mut out = Vec::new();
        unpack_packbits(&src, 100, &mut out);
        assert_eq!(out, [1, 2, 3, 0xAA, 0xAA, 0xAA, 0xAA, 9]);
        // Never more than asked, however long the runs.
        let mut out = Vec::new();
        unpack_packbits(&[0x81, 7, 0x81, 7, 0x81, 7], 5, &mut out);
        assert_eq!(out, [7; 5]);
        // A palette chunk that is shorter than its rows is refused.
        let page = palette_page(4, 4, 8, PACKBITS, 2, vec![0; 768]);
        assert!(palette_chunk(&[0xFD, 1], &page, page.palette.as_deref().unwrap(), 0).is_err());
    }

    #[test]
    fn bilevel_rows_unpack_most_significant_bit_first_with_row_padding() {
        // 10 pixels a row: two bytes a row, the last 6 bits padding.
        let packed = [0b1010_0000, 0b1100_0000, 0b0000_0000, 0b0100_0000];
        let px = unpack_bits(&packed, 10, 2);
        assert_eq!(&px[..10], &[255, 0, 255, 0, 0, 0, 0, 0, 255, 255]);
        assert_eq!(&px[10..], &[0, 0, 0, 0, 0, 0, 0, 0, 0, 255]);
    }

    #[test]
    fn the_frame_size_is_read_from_the_first_sof_after_other_segments() {
        // SOI, a DQT of 4 bytes, SOF0 of 64 × 32.
        let jpeg = [
            0xFF, 0xD8, 0xFF, 0xDB, 0x00, 0x04, 0x00, 0x00, 0xFF, 0xC0, 0x00, 0x0B, 0x08, 0x00, 0x20, 0x00, 0x40, 0x01,
        ];
        assert_eq!(jpeg_size(&jpeg), Some((64, 32)));
        assert_eq!(jpeg_size(&[0xFF, 0xD8, 0xFF, 0xDA, 0x00, 0x02]), None);
        assert_eq!(jpeg_size(&[0xFF, 0xD8, 0x00]), None);
    }
}
