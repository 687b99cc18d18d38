//! Codecs: recognising a source's format, reading its header, decoding a
//! region at a reduced scale, and encoding output images.
//!
//! Codecs know nothing of HTTP or IIIF: they take bytes and rectangles and
//! return [`Pixels`] or a [`CodecError`]. The pipeline maps errors to statuses.
//!
//! The bytes are one slice of the whole file. Some of it may not be there
//! yet (a remote master read by range, `source::ranged`): the codecs that
//! read at random (TIFF, JPEG 2000) say which byte ranges they are about to
//! read through [`Need`] first, and read nothing else. JPEG and PNG need the
//! whole file.

pub mod colour;
pub mod encode;
// OpenJPEG through openjpeg-sys; the unsafe code lives in jp2::ffi and jp2::encode.
pub mod jp2;
#[allow(unsafe_code)] // libjpeg-turbo through turbojpeg-sys.
pub mod jpeg;
pub mod png;
pub mod tiff;

use crate::model::{ImageShape, Rect, SourceFacts};
use crate::pixels::{Layout, Pixels};

/// A decodable source format.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum SourceFormat {
    Jpeg,
    Png,
    Jp2,
    Tiff,
}

impl SourceFormat {
    pub fn name(self) -> &'static str {
        match self {
            SourceFormat::Jpeg => "jpeg",
            SourceFormat::Png => "png",
            SourceFormat::Jp2 => "jp2",
            SourceFormat::Tiff => "tiff",
        }
    }
}

/// Makes byte ranges of a codec's input readable before the codec reads
/// them. A file on disk has every byte ([`Present`]); a remote master read
/// by range fetches the ranges it lacks, all of one call together (so a
/// decode that names its chunks first waits for one round trip, not one per
/// chunk). Ranges are `(start, end)` byte offsets, end exclusive, and may
/// reach past the end of the input (they are clipped).
pub trait Need: Sync {
    fn need(&self, ranges: &[(u64, u64)]) -> Result<(), CodecError>;

    /// Whether reads may have to be fetched (then codecs read in small
    /// pieces: OpenJPEG's stream buffer, for one, would otherwise pull 64 KiB
    /// to read a 12-byte tile-part header).
    fn is_remote(&self) -> bool {
        false
    }
}

/// Input that is all there (a file, a buffer).
pub struct Present;

impl Need for Present {
    fn need(&self, _ranges: &[(u64, u64)]) -> Result<(), CodecError> {
        Ok(())
    }
}

/// Why a decode failed, in terms the pipeline can map to a status.
#[derive(Clone, Debug, thiserror::Error)]
pub enum CodecError {
    /// Not a format this server reads.
    #[error("unrecognised source format")]
    UnknownFormat,
    /// A format we recognise but a variant we do not decode (CMYK, >4 components...).
    #[error("unsupported source: {0}")]
    Unsupported(String),
    /// Truncated, corrupt, or lying about itself.
    #[error("corrupt source: {0}")]
    Corrupt(String),
    /// Decoding would exceed the configured pixel limit.
    #[error("decode of {pixels} pixels exceeds the limit of {limit}")]
    TooLarge { pixels: u64, limit: u64 },
    /// Encoding failed.
    #[error("encode failed: {0}")]
    Encode(String),
    /// The source file changed (or shrank under its memory map) while it was
    /// read: the result is thrown away and the request may be retried.
    #[error("source changed while it was read")]
    SourceChanged,
    /// Bytes of the source could not be had (a remote origin failed, timed
    /// out or answered wrongly): nothing is wrong with the image itself.
    #[error("source bytes unavailable: {detail}")]
    Unavailable { timeout: bool, detail: String },
}

/// Header facts about a source image, read without decoding pixels.
#[derive(Clone, Debug, PartialEq)]
pub struct ImageInfo {
    pub format: SourceFormat,
    pub width: u32,
    pub height: u32,
    /// The layout the decoder produces.
    pub layout: Layout,
    /// Native reduction factors, ascending from 1.
    pub scale_factors: Vec<u32>,
    /// The codestream tile size, for tiled JPEG 2000.
    pub native_tile: Option<(u32, u32)>,
    /// A TIFF's pages and where their chunks lie (read once, at probe).
    pub tiff: Option<std::sync::Arc<tiff::Pyramid>>,
    /// The embedded ICC profile the decoded pixels are converted from, when
    /// they need converting to sRGB (see [`colour::judge`]).
    pub icc: Option<std::sync::Arc<[u8]>>,
}

impl ImageInfo {
    /// Size and native tiles, for info.json.
    pub fn shape(&self) -> ImageShape {
        ImageShape {
            width: self.width,
            height: self.height,
            native_tile: self.native_tile,
            native_tile_cut: self.format == SourceFormat::Jp2,
        }
    }

    pub fn facts(&self) -> SourceFacts {
        SourceFacts { width: self.width, height: self.height, scale_factors: self.scale_factors.clone() }
    }
}

/// Recognises a source format by its magic bytes.
pub fn sniff(data: &[u8]) -> Option<SourceFormat> {
    if data.starts_with(&[0xFF, 0xD8, 0xFF]) {
        Some(SourceFormat::Jpeg)
    } else if data.starts_with(b"\x89PNG\r\n\x1a\n") {
        Some(SourceFormat::Png)
    } else if jp2::sniff(data).is_some() {
        Some(SourceFormat::Jp2)
    } else if tiff::sniff(data) {
        Some(SourceFormat::Tiff)
    } else {
        None
    }
}

/// Bytes read first to recognise a format (the longest signature).
pub const SNIFF_LEN: u64 = 12;

/// Reads the header of a source.
pub fn probe(data: &[u8]) -> Result<ImageInfo, CodecError> {
    probe_with(data, &Present)
}

/// Reads the header of a source whose bytes come through `need`: only the
/// headers are read (a TIFF's directory chain, a JPEG 2000 main header).
pub fn probe_with(data: &[u8], need: &dyn Need) -> Result<ImageInfo, CodecError> {
    need.need(&[(0, SNIFF_LEN)])?;
    match sniff(data).ok_or(CodecError::UnknownFormat)? {
        SourceFormat::Jpeg => whole(data, need).and_then(jpeg::probe),
        SourceFormat::Png => whole(data, need).and_then(png::probe),
        SourceFormat::Jp2 => jp2_probe(data, need),
        SourceFormat::Tiff => tiff::probe_with(data, need),
    }
}

/// All of `data`, once `need` has it.
fn whole<'a>(data: &'a [u8], need: &dyn Need) -> Result<&'a [u8], CodecError> {
    need.need(&[(0, data.len() as u64)])?;
    Ok(data)
}

/// Decodes `region` (full-resolution pixels) at 1/`scale`, returning exactly
/// `region.at_scale(scale, ..)` pixels.
pub fn decode(data: &[u8], info: &ImageInfo, region: Rect, scale: u32, max_pixels: u64) -> Result<Pixels, CodecError> {
    decode_with(data, &Present, info, region, scale, max_pixels)
}

/// [`decode`] from bytes that come through `need`.
pub fn decode_with(
    data: &[u8],
    need: &dyn Need,
    info: &ImageInfo,
    region: Rect,
    scale: u32,
    max_pixels: u64,
) -> Result<Pixels, CodecError> {
    let want = region.at_scale(scale, info.width, info.height);
    let px = want.w as u64 * want.h as u64;
    if px > max_pixels {
        return Err(CodecError::TooLarge { pixels: px, limit: max_pixels });
    }
    let out = match info.format {
        SourceFormat::Jpeg => jpeg::decode(whole(data, need)?, info, region, scale, max_pixels)?,
        SourceFormat::Png => {
            let full = png::decode(whole(data, need)?, max_pixels)?;
            crop_to(full, want)?
        }
        SourceFormat::Jp2 => {
            // OpenJPEG maps an area's origin up (ceil) on the reduced grid;
            // the planner maps it down (floor). Aligning the origin to the
            // scale makes both agree exactly.
            let s = scale.max(1);
            let (x, y) = (region.x / s * s, region.y / s * s);
            let area = jp2::DecodeArea { x, y, w: region.x + region.w - x, h: region.y + region.h - y };
            let reduce = s.trailing_zeros();
            jp2::decode_with(data, need, area, reduce, max_pixels).map_err(jp2_error)?
        }
        SourceFormat::Tiff => {
            let pyramid = info.tiff.as_deref().ok_or(CodecError::UnknownFormat)?;
            tiff::decode_with(data, need, pyramid, want, scale, max_pixels)?
        }
    };
    let out = match &info.icc {
        Some(icc) => colour::to_srgb(out, icc),
        None => out,
    };
    if out.width() != want.w || out.height() != want.h {
        // Decoders may round differently at the far edge; settle on the planned size.
        return fit_exact(out, want.w, want.h);
    }
    Ok(out)
}

/// Makes readable together what decodes of `regions` (full-resolution
/// pixels) at 1/`scale` will read, so that a remote master costs one or two
/// waits for a request's decodes rather than one per decode. Does nothing
/// for input that is all there.
pub fn prefetch(
    data: &[u8],
    need: &dyn Need,
    info: &ImageInfo,
    regions: &[Rect],
    scale: u32,
) -> Result<(), CodecError> {
    if !need.is_remote() || regions.is_empty() {
        return Ok(());
    }
    match info.format {
        SourceFormat::Jp2 => {
            let areas: Vec<jp2::DecodeArea> =
                regions.iter().map(|r| jp2::DecodeArea { x: r.x, y: r.y, w: r.w, h: r.h }).collect();
            jp2::prefetch(data, need, &areas, scale.max(1).trailing_zeros()).map_err(jp2_error)
        }
        SourceFormat::Tiff => {
            let Some(pyramid) = info.tiff.as_deref() else { return Ok(()) };
            let areas: Vec<Rect> = regions.iter().map(|r| r.at_scale(scale, info.width, info.height)).collect();
            tiff::prefetch(need, pyramid, &areas, scale)
        }
        SourceFormat::Jpeg | SourceFormat::Png => whole(data, need).map(|_| ()),
    }
}

fn jp2_probe(data: &[u8], need: &dyn Need) -> Result<ImageInfo, CodecError> {
    let h = jp2::probe_with(data, need).map_err(jp2_error)?;
    let layout = match (h.components, h.has_alpha) {
        (1, _) => Layout::Gray,
        (2, _) => Layout::GrayAlpha,
        (3, _) => Layout::Rgb,
        (4, _) => Layout::Rgba,
        (n, _) => return Err(CodecError::Unsupported(format!("{n} components"))),
    };
    let levels = h.levels.clamp(1, 31);
    let scale_factors = (0..levels).map(|l| 1u32 << l).collect();
    // The decoded-tile cache assumes the tile grid starts at the image origin.
    let tiled = h.tiles_x * h.tiles_y > 1 && h.x_offset == 0 && h.y_offset == 0;
    Ok(ImageInfo {
        format: SourceFormat::Jp2,
        width: h.width,
        height: h.height,
        layout,
        scale_factors,
        native_tile: tiled.then_some((h.tile_width, h.tile_height)),
        tiff: None,
        icc: colour::judge(h.icc, layout),
    })
}

pub(crate) fn jp2_error(e: jp2::Jp2Error) -> CodecError {
    let detail = e.detail().map(str::to_string).unwrap_or_else(|| e.to_string());
    match e {
        jp2::Jp2Error::Input(e) => e,
        jp2::Jp2Error::Unsupported(m) => CodecError::Unsupported(m),
        jp2::Jp2Error::TooLarge { pixels, limit } => CodecError::TooLarge { pixels, limit },
        // A header whose decode would need more codec memory than allowed.
        jp2::Jp2Error::CodecLimit { what, needed, limit } => {
            CodecError::Unsupported(format!("{what}: needs {needed} bytes, limit {limit}"))
        }
        _ => CodecError::Corrupt(detail),
    }
}

fn crop_to(full: Pixels, r: Rect) -> Result<Pixels, CodecError> {
    if r.x + r.w > full.width() || r.y + r.h > full.height() {
        return Err(CodecError::Corrupt("decoded image smaller than its header".into()));
    }
    Ok(full.crop(r.x, r.y, r.w, r.h))
}

/// Pads (by edge replication) or crops a decoded buffer to exactly `w × h`.
fn fit_exact(p: Pixels, w: u32, h: u32) -> Result<Pixels, CodecError> {
    if p.width() == 0 || p.height() == 0 {
        return Err(CodecError::Corrupt("decoder returned an empty image".into()));
    }
    let c = p.layout().channels();
    let mut out = Vec::with_capacity(w as usize * h as usize * c);
    for y in 0..h {
        let sy = y.min(p.height() - 1) as usize;
        let row = &p.data()[sy * p.stride()..(sy + 1) * p.stride()];
        for x in 0..w {
            let sx = x.min(p.width() - 1) as usize;
            out.extend_from_slice(&row[sx * c..sx * c + c]);
        }
    }
    Pixels::new(w, h, p.layout(), out).map_err(|e| CodecError::Corrupt(e.to_string()))
}
