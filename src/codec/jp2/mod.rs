//! JPEG 2000 (JP2 files and raw J2K codestreams) for Tessera, over OpenJPEG.
//!
//! The public face is here: [`sniff`], [`probe`], [`decode`], their types and
//! [`Jp2Error`]. The work is split by responsibility:
//!
//! * `header`: a small pure-Rust parser of the JP2 boxes and the codestream
//!   main header. It answers [`probe`] without OpenJPEG (about a microsecond)
//!   and it is the gate that keeps hostile headers away from OpenJPEG's
//!   per-tile allocations (see [`MAX_CODEC_MEMORY`]);
//! * `ffi`: **all** of the decoder's `unsafe` code for OpenJPEG (the
//!   `openjpeg-sys` crate, OpenJPEG 2.5.3): RAII guards for codec, stream and
//!   image handles, the in-memory input stream over a `&[u8]` (normally a
//!   memory map, never copied as a whole by this module), the output stream
//!   into a `Vec<u8>`, and the message handlers. Every `unsafe` block carries a
//!   `// SAFETY:` comment;
//! * `decode`: region decoding at a reduced resolution (the driver behind
//!   [`decode`]), in safe code over `ffi`;
//! * `planes`: the conversion of OpenJPEG's 32-bit sample planes into 8-bit
//!   interleaved [`Pixels`] (sub-sampled components upsampled, more than 8 bits
//!   scaled, signed samples offset, sYCC converted to RGB);
//! * `encode`: an encoder ([`encode`]) used for sample images and test
//!   fixtures; it drives OpenJPEG's compressor directly, so it is the other
//!   place with `unsafe`.
//!
//! OpenJPEG behaviour this module relies on (checked against the 2.5.3 source):
//!
//! * Stream callbacks: `read` returns the number of bytes copied, or
//!   `(size_t)-1` at the end of the data; returning `0` for a non-empty
//!   request makes OpenJPEG's read loop spin forever. `skip` returns the number
//!   of bytes skipped (a *count*, not a position), `-1` at the end. `seek` is
//!   absolute and must refuse positions past the end: OpenJPEG records the new
//!   offset without checking and later `assert`s that it lies within the user
//!   data length. The vendored C code is now built with `NDEBUG`
//!   (`.cargo/config.toml`), so no `assert` can abort the process, but the
//!   callbacks still keep every invariant those asserts checked. The user
//!   data length must be set, or every "bytes left" check reads zero.
//! * Allocation: the sample buffers follow the decoded area, but the header
//!   reader allocates and fills about 8.8 KiB plus 1.1 KiB per component for
//!   **every tile** of the image, and decoding a tile allocates code-block and
//!   precinct bookkeeping for the **whole tile at every resolution**, whatever
//!   the area and the reduction. Both are estimated from the header here and
//!   refused above [`MAX_CODEC_MEMORY`].
//! * `opj_get_cstr_info` copies the precinct sizes with a byte count instead of
//!   an element count (only the first one or two resolutions come out right),
//!   which is one reason [`probe`] parses the COD/COC markers itself.

#![deny(unsafe_op_in_unsafe_fn)]

use std::ffi::{c_char, c_void, CStr};
use std::marker::PhantomData;
use std::ptr::{self, NonNull};
use std::sync::OnceLock;

use openjpeg_sys as opj;

use crate::codec::{CodecError, Need, Present};
use crate::pixels::{Layout, Pixels};

mod decode;
#[allow(unsafe_code)] // OpenJPEG's compressor, driven directly.
mod encode;
#[allow(unsafe_code)] // OpenJPEG's handles, streams and callbacks.
mod ffi;
mod header;
mod planes;
mod prefix;
#[cfg(test)]
#[allow(unsafe_code)] // Calls the stream callbacks directly.
mod tests;

use decode::*;
use ffi::*;
use header::*;
use planes::*;

pub use encode::{encode, EncodeInput, EncodeParams, Progression, Samples};
#[cfg(test)]
use encode::{encode_marked, encode_planes, EncodePlane};

/// Upper bound on the codec memory that the header implies: OpenJPEG's per-tile
/// header tables plus the code-block/precinct bookkeeping of one full tile.
/// Images beyond it (a hostile header claiming an untiled 100000x100000 image,
/// say, or 65535 tiles of 16384 components) are refused with
/// [`Jp2Error::CodecLimit`] before OpenJPEG sees them. 256 MiB admits an untiled
/// RGB image of roughly 45000x45000 with 64x64 code-blocks, and tiled RGB images
/// of any size up to about 22000 tiles (e.g. 75000x75000 in 512x512 tiles).
pub const MAX_CODEC_MEMORY: u64 = 256 << 20;

/// OpenJPEG's internal read buffer. Reads at least this large go straight into
/// their destination; smaller ones are served from this buffer.
const STREAM_BUFFER: usize = 64 << 10;

/// OpenJPEG's stream buffer over a remote input: a tile-part header read
/// then costs the block holding it, not 64 KiB (reads larger than the buffer
/// go straight to the caller's buffer, so tile data is not read twice).
const REMOTE_STREAM_BUFFER: usize = 1 << 10;
/// OpenJPEG's internal write buffer for encoding.
const OUTPUT_BUFFER: usize = 1 << 20;

// Sizes measured from the OpenJPEG 2.5.3 structs (x86_64), used only to
// estimate codec memory from a header.
// Per tile: opj_tcp_t 5696, codestream index 56 + 100 marker slots 2400,
// MCT/MCC records 560, malloc overhead.
const TILE_HEADER_BYTES: u64 = 8_800;
const TILE_COMPONENT_HEADER_BYTES: u64 = 1_080 + 16; // opj_tccp_t
const CODE_BLOCK_BYTES: u64 = 400; // opj_tcd_cblk_dec_t + 10 segments + tag-tree nodes
const PRECINCT_BYTES: u64 = 200; // opj_tcd_precinct_t + two tag trees

// ---------------------------------------------------------------------------
// Public types
// ---------------------------------------------------------------------------

/// Errors of this module. Display texts are fixed strings plus numbers: they
/// never contain file paths or OpenJPEG's own words; OpenJPEG's error message,
/// when there was one, is kept in `detail` (see [`Jp2Error::detail`]) for logs.
#[derive(Debug, thiserror::Error)]
pub enum Jp2Error {
    /// The data ends before the decoder got what it needed.
    #[error("JPEG 2000 data is truncated")]
    Truncated { detail: String },
    /// The data is not valid JPEG 2000, or OpenJPEG failed to decode it.
    #[error("JPEG 2000 data is corrupt")]
    Corrupt { detail: String },
    /// Valid JPEG 2000 that Tessera cannot turn into 8-bit gray/RGB(A).
    #[error("unsupported JPEG 2000 image: {0}")]
    Unsupported(String),
    /// The decoded region would have more pixels than the caller allows.
    #[error("decoded region of {pixels} pixels exceeds the limit of {limit}")]
    TooLarge { pixels: u64, limit: u64 },
    /// The header implies more codec memory than [`MAX_CODEC_MEMORY`].
    #[error("JPEG 2000 {what} would need about {needed} bytes of codec memory, over the limit of {limit}")]
    CodecLimit { what: &'static str, needed: u64, limit: u64 },
    /// The area is empty, lies (partly) outside the image, or vanishes at the
    /// requested reduction.
    #[error("region lies outside the image or is empty")]
    InvalidRegion,
    /// The reduction needs more resolution levels than the image has.
    #[error("reduction {reduce} is not available: the image has {levels} resolution levels")]
    InvalidReduce { reduce: u32, levels: u32 },
    /// Encoder input or parameters are inconsistent.
    #[error("invalid JPEG 2000 encoder input: {0}")]
    InvalidInput(String),
    /// OpenJPEG failed for a reason unrelated to the data (allocation, setup, encoding).
    #[error("JPEG 2000 codec failure")]
    Codec { detail: String },
    /// The input's bytes could not be had (see [`Need`]).
    #[error("JPEG 2000 input unavailable: {0}")]
    Input(CodecError),
}

impl Jp2Error {
    /// OpenJPEG's error message or the parser's reason, for logs only.
    pub fn detail(&self) -> Option<&str> {
        match self {
            Jp2Error::Truncated { detail } | Jp2Error::Corrupt { detail } | Jp2Error::Codec { detail } => {
                Some(detail.as_str())
            }
            _ => None,
        }
    }

    fn corrupt(detail: impl Into<String>) -> Self {
        Jp2Error::Corrupt { detail: detail.into() }
    }

    fn truncated(detail: impl Into<String>) -> Self {
        Jp2Error::Truncated { detail: detail.into() }
    }

    fn codec(detail: impl Into<String>) -> Self {
        Jp2Error::Codec { detail: detail.into() }
    }
}

/// The two JPEG 2000 containers OpenJPEG reads and writes.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Container {
    /// A JP2 file: boxes around a codestream.
    Jp2,
    /// A raw codestream (`.j2k`, `.j2c`, `.jpc`).
    J2k,
}

/// What [`probe`] reads from the headers.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Jp2Info {
    /// Image size on the reference grid (Xsiz - XOsiz, Ysiz - YOsiz).
    pub width: u32,
    pub height: u32,
    /// Components in the codestream (a JP2 palette, rare, expands them at decode).
    pub components: u32,
    /// Largest component precision, in bits.
    pub bit_depth: u32,
    /// Whether any component is signed.
    pub signed: bool,
    /// Number of resolution levels (decomposition levels + 1, the smallest over
    /// components); the largest usable `reduce` is `levels - 1`.
    pub levels: u32,
    /// Nominal tile size; an untiled image is one tile the size of the image.
    pub tile_width: u32,
    pub tile_height: u32,
    pub tiles_x: u32,
    pub tiles_y: u32,
    /// Precinct size (width, height) in samples of each resolution, indexed by
    /// reduction: entry `r` belongs to the image decoded at `reduce = r`
    /// (entry 0 = full resolution). Empty when the codestream does not define
    /// precincts (the default is one precinct of 2^15 per resolution).
    pub precinct_sizes: Vec<(u32, u32)>,
    /// Quality layers.
    pub layers: u32,
    /// Whether decoding gives an alpha channel (2 or 4 components; for a
    /// palette image, whether the JP2 channel definition names one).
    pub has_alpha: bool,
    /// Whether the JP2 colour specification is an ICC profile.
    pub has_icc: bool,
    /// That profile's bytes (filled by [`probe`]).
    pub icc: Option<Vec<u8>>,
    pub container: Container,
    /// Image offset on the reference grid (XOsiz, YOsiz). Only needed to map
    /// areas at a reduced resolution (see [`Jp2Info::reduced_area`]).
    pub x_offset: u32,
    pub y_offset: u32,
}

impl Jp2Info {
    /// Size of the whole image decoded at `reduce`.
    pub fn reduced_size(&self, reduce: u32) -> (u32, u32) {
        let area = DecodeArea { x: 0, y: 0, w: self.width, h: self.height };
        let r = self.reduced_area(area, reduce);
        (r.w, r.h)
    }

    /// Where the output of `decode(area, reduce)` lies inside the whole image
    /// decoded at `reduce`, and its size (see [`decode`] for the geometry).
    pub fn reduced_area(&self, area: DecodeArea, reduce: u32) -> DecodeArea {
        let ox = u64::from(self.x_offset);
        let oy = u64::from(self.y_offset);
        let x0 = ox + u64::from(area.x);
        let y0 = oy + u64::from(area.y);
        let x1 = x0 + u64::from(area.w);
        let y1 = y0 + u64::from(area.h);
        let sat = |v: u64| u32::try_from(v).unwrap_or(u32::MAX);
        DecodeArea {
            x: sat(ceil_pow2(x0, reduce) - ceil_pow2(ox, reduce)),
            y: sat(ceil_pow2(y0, reduce) - ceil_pow2(oy, reduce)),
            w: sat(ceil_pow2(x1, reduce) - ceil_pow2(x0, reduce)),
            h: sat(ceil_pow2(y1, reduce) - ceil_pow2(y0, reduce)),
        }
    }
}

/// A rectangle in full-resolution image coordinates: (0, 0) is the top-left
/// pixel of the image, whatever the codestream's image offset.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct DecodeArea {
    pub x: u32,
    pub y: u32,
    pub w: u32,
    pub h: u32,
}

/// Recognises a JP2 signature box or a raw codestream (SOC marker then SIZ).
pub fn sniff(data: &[u8]) -> Option<Container> {
    const JP2_SIGNATURE: [u8; 12] = [0, 0, 0, 12, b'j', b'P', b' ', b' ', 0x0D, 0x0A, 0x87, 0x0A];
    if data.starts_with(&JP2_SIGNATURE) {
        Some(Container::Jp2)
    } else if data.starts_with(&[0xFF, 0x4F, 0xFF, 0x51]) {
        Some(Container::J2k)
    } else {
        None
    }
}

/// Reads the JP2 boxes and the codestream main header (up to the first tile),
/// never pixel data, without OpenJPEG. Besides the structural checks it refuses
/// what [`decode`] would refuse from the header alone: more than 4 components,
/// more than 16 bits, colour spaces other than gray/sRGB/sYCC/ICC
/// ([`Jp2Error::Unsupported`]) and headers implying more codec memory than
/// [`MAX_CODEC_MEMORY`] ([`Jp2Error::CodecLimit`]). Markers in tile-part
/// headers (which may override the coding style per tile) are not read.
pub fn probe(data: &[u8]) -> Result<Jp2Info, Jp2Error> {
    probe_with(data, &Present)
}

/// [`probe`] of bytes that come through `need`: only a prefix holding the
/// boxes before the codestream and its main header is read (see
/// [`HEADER_PREFIX`]).
pub fn probe_with(data: &[u8], need: &dyn Need) -> Result<Jp2Info, Jp2Error> {
    let (header, prefix) = parse_header_prefix(data, need)?;
    header.check_supported()?;
    header.check_codec_memory(MAX_CODEC_MEMORY)?;
    let mut info = header.info();
    info.icc = header.icc(&data[..prefix]).map(<[u8]>::to_vec);
    Ok(info)
}

/// The first prefix read for a header; it grows fourfold while the header
/// runs past it. 64 KiB holds the main header (with a TLM index of a few
/// thousand tile-parts) of nearly every file.
pub const HEADER_PREFIX: usize = 64 << 10;

/// The header, parsed from the shortest prefix (64 KiB, then ×4) that holds
/// it, and that prefix's length. A header is the same whatever follows it.
fn parse_header_prefix(data: &[u8], need: &dyn Need) -> Result<(Header, usize), Jp2Error> {
    // A remote input starts from its first block (every block is at least
    // 4 KiB): most headers fit, and no more is fetched for nothing.
    let first = if need.is_remote() { 4096 } else { HEADER_PREFIX };
    let mut n = first.min(data.len());
    loop {
        need.need(&[(0, n as u64)]).map_err(Jp2Error::Input)?;
        match Header::parse(&data[..n]) {
            Err(Jp2Error::Truncated { .. }) if n < data.len() => n = n.saturating_mul(4).min(data.len()),
            r => return r.map(|h| (h, n)),
        }
    }
}

fn parse_header(data: &[u8], need: &dyn Need) -> Result<Header, Jp2Error> {
    parse_header_prefix(data, need).map(|(h, _)| h)
}

/// Decodes `area` (full-resolution image coordinates) at resolution `reduce`
/// with one thread, from `data` (read in place: only the tile-parts that
/// intersect the area are copied, by OpenJPEG, and untiled images are one
/// tile-part).
///
/// Geometry: let (X0, Y0) be the image offset on the reference grid (zero for
/// almost every file) and `d = 2^reduce`. The area covers reference columns
/// `[X0 + x, X0 + x + w)`; the output covers columns
/// `[ceil((X0 + x) / d), ceil((X0 + x + w) / d))` of the reduced grid, so its
/// width is `ceil((X0 + x + w) / d) - ceil((X0 + x) / d)` (likewise for rows).
/// The whole image decoded at `reduce` starts at column `ceil(X0 / d)`, so the
/// output lies at `ceil((X0 + x) / d) - ceil(X0 / d)` inside it;
/// [`Jp2Info::reduced_area`] computes both. This is OpenJPEG's own geometry:
/// tiling adjacent areas at one reduction tiles the reduced image exactly, and
/// the output equals the same rectangle cut from a decode of the whole image at
/// that reduction. Sub-sampled components are decoded over an area widened to
/// their sampling grid and upsampled by sample repetition, then cut to the
/// output rectangle.
///
/// Errors: [`Jp2Error::InvalidRegion`] when the area is empty, leaves the image,
/// or vanishes at this reduction (e.g. one pixel at an odd column at
/// `reduce = 1`); [`Jp2Error::InvalidReduce`] when `reduce >= levels`;
/// [`Jp2Error::TooLarge`] when the output has more than `max_pixels` pixels,
/// checked before any decoding; [`Jp2Error::CodecLimit`] as for [`probe`].
///
/// Output: 1 component gives `Gray`, 2 `GrayAlpha`, 3 `Rgb`, 4 `Rgba` (a JP2
/// channel definition may say which component is alpha; it is put last).
pub fn decode(data: &[u8], area: DecodeArea, reduce: u32, max_pixels: u64) -> Result<Pixels, Jp2Error> {
    decode_with_limit(data, &Present, area, reduce, max_pixels, MAX_CODEC_MEMORY)
}

/// Makes readable, in as few waits as possible, what decodes of `areas` at
/// `reduce` will read from a remote input: the resolution prefix of an
/// untiled file, or the tile-parts (their resolution prefixes) of a tiled
/// one with a TLM index; nothing otherwise (the decodes then fetch as they
/// read). Two batched waits at most: the tile-part headers, then the data.
pub fn prefetch(data: &[u8], need: &dyn Need, areas: &[DecodeArea], reduce: u32) -> Result<(), Jp2Error> {
    let header = parse_header(data, need)?;
    if header.tiles() == (1, 1) {
        if reduce > 0 {
            if let Some((end, _)) = prefix::resolution_prefix(&header, data, need, reduce)? {
                need.need(&[(0, end)]).map_err(Jp2Error::Input)?;
            }
        }
        return Ok(());
    }
    let mut parts: Vec<(u32, u64, u64)> = Vec::new();
    for a in areas {
        let (x0, y0) = (header.x0.saturating_add(a.x), header.y0.saturating_add(a.y));
        let (x1, y1) = (x0.saturating_add(a.w), y0.saturating_add(a.h));
        parts.extend(header.tile_parts_in(x0, y0, x1, y1).unwrap_or_default());
    }
    parts.sort_unstable_by_key(|p| p.1);
    parts.dedup();
    if parts.is_empty() {
        return Ok(());
    }
    let (needed, _) = prefix::tile_prefixes(&header, data, need, &parts, reduce)?;
    need.need(&needed).map_err(Jp2Error::Input)
}

/// [`decode`] of bytes that come through `need`: OpenJPEG's reads ask for
/// their ranges as they go.
pub fn decode_with(
    data: &[u8],
    need: &dyn Need,
    area: DecodeArea,
    reduce: u32,
    max_pixels: u64,
) -> Result<Pixels, Jp2Error> {
    decode_with_limit(data, need, area, reduce, max_pixels, MAX_CODEC_MEMORY)
}
