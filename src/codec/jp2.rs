//! JPEG 2000 (JP2 files and raw J2K codestreams) for Tessera, over OpenJPEG.
//!
//! This module owns:
//!
//! * **all** of Tessera's `unsafe` code for OpenJPEG (the `openjpeg-sys` crate,
//!   OpenJPEG 2.5.3): RAII guards for codec, stream and image handles, the
//!   in-memory input stream over a `&[u8]` (normally a memory map, never copied
//!   as a whole by this module), the output stream into a `Vec<u8>`, and the
//!   message handlers. Every `unsafe` block carries a `// SAFETY:` comment;
//! * a small pure-Rust parser of the JP2 boxes and the codestream main header.
//!   It answers [`probe`] without OpenJPEG (about a microsecond) and it is the
//!   gate that keeps hostile headers away from OpenJPEG's per-tile allocations
//!   (see [`MAX_CODEC_MEMORY`]);
//! * region decoding at a reduced resolution ([`decode`]) and the conversion of
//!   OpenJPEG's 32-bit sample planes into 8-bit interleaved [`Pixels`]
//!   (sub-sampled components upsampled, more than 8 bits scaled, signed
//!   samples offset, sYCC converted to RGB);
//! * an encoder ([`encode`]) used for sample images and test fixtures.
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

use crate::pixels::{Layout, Pixels};

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
    let header = Header::parse(data)?;
    header.check_supported()?;
    header.check_codec_memory(MAX_CODEC_MEMORY)?;
    Ok(header.info())
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
    decode_with_limit(data, area, reduce, max_pixels, MAX_CODEC_MEMORY)
}

/// Progression orders of the encoder.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Progression {
    Lrcp,
    Rlcp,
    Rpcl,
    Pcrl,
    Cprl,
}

/// Encoder settings.
#[derive(Clone, Debug, PartialEq)]
pub struct EncodeParams {
    /// Tile size; `None` writes one tile.
    pub tile_size: Option<(u32, u32)>,
    /// Resolution levels (decomposition levels + 1). Lowered to what the tile
    /// size allows (OpenJPEG needs tiles of at least `2^(levels-1)` each way)
    /// and to OpenJPEG's maximum of 32; 0 counts as 1.
    pub levels: u32,
    /// Reversible 5/3 wavelet and no truncation of the last layer (exact);
    /// otherwise the irreversible 9/7 wavelet.
    pub lossless: bool,
    /// Compression ratio of the final layer of a lossy image (e.g. 20.0);
    /// `None` keeps every coding pass. With `lossless`, the ratio of the
    /// next-to-last layer (default 10) when there are several layers.
    pub rate: Option<f32>,
    /// Quality layers (1 to 100); each earlier layer has twice the ratio of the
    /// next.
    pub layers: u32,
    pub progression: Progression,
    /// Precinct sizes (powers of two, at least 2) indexed by reduction as in
    /// [`Jp2Info::precinct_sizes`]: entry 0 for the full resolution; levels past
    /// the list halve the last entry (down to 2).
    pub precincts: Option<Vec<(u32, u32)>>,
    pub container: Container,
}

impl Default for EncodeParams {
    fn default() -> Self {
        EncodeParams {
            tile_size: None,
            levels: 6,
            lossless: true,
            rate: None,
            layers: 1,
            progression: Progression::Lrcp,
            precincts: None,
            container: Container::Jp2,
        }
    }
}

/// Interleaved samples to encode.
#[derive(Clone, Copy, Debug)]
pub struct EncodeInput<'a> {
    pub width: u32,
    pub height: u32,
    /// 1 gray, 2 gray + alpha, 3 RGB, 4 RGBA.
    pub components: u32,
    /// Bits per sample: 1..=8 with [`Samples::U8`], 1..=16 with [`Samples::U16`];
    /// every sample must fit.
    pub precision: u32,
    pub samples: Samples<'a>,
}

/// Interleaved sample storage, `width * height * components` long.
#[derive(Clone, Copy, Debug)]
pub enum Samples<'a> {
    U8(&'a [u8]),
    U16(&'a [u16]),
}

/// Encodes to a JP2 file or a raw codestream in memory. RGB(A) uses the
/// multi-component transform; the 2nd (gray) or 4th (RGB) component is marked
/// as alpha: in a JP2 by a channel definition box (OpenJPEG writes one when
/// exactly one component is flagged alpha), in a raw codestream only by the
/// component count, which is how [`decode`] reads it back. Runs on the calling
/// thread unless `openjpeg-sys` is built with its `threads` feature, in which
/// case OpenJPEG's pool uses all available cores (decoding always uses one).
pub fn encode(input: &EncodeInput, params: &EncodeParams) -> Result<Vec<u8>, Jp2Error> {
    let n = input.components;
    if !(1..=4).contains(&n) {
        return Err(Jp2Error::InvalidInput(format!("{n} components (1 to 4 supported)")));
    }
    if input.width == 0 || input.height == 0 {
        return Err(Jp2Error::InvalidInput("empty image".into()));
    }
    let max_prec = match input.samples {
        Samples::U8(_) => 8,
        Samples::U16(_) => 16,
    };
    if !(1..=max_prec).contains(&input.precision) {
        return Err(Jp2Error::InvalidInput(format!("precision {} with {max_prec}-bit samples", input.precision)));
    }
    let pixels = input.width as usize * input.height as usize;
    let expected = pixels.checked_mul(n as usize);
    let len = match input.samples {
        Samples::U8(s) => s.len(),
        Samples::U16(s) => s.len(),
    };
    if expected != Some(len) {
        return Err(Jp2Error::InvalidInput(format!("{len} samples for {}x{}x{n}", input.width, input.height)));
    }
    let max = (1u32 << input.precision) - 1;
    let fits = match input.samples {
        Samples::U8(s) => s.iter().all(|&v| u32::from(v) <= max),
        Samples::U16(s) => s.iter().all(|&v| u32::from(v) <= max),
    };
    if !fits {
        return Err(Jp2Error::InvalidInput(format!("a sample exceeds {} bits", input.precision)));
    }
    let n = n as usize;
    let mut planes: Vec<EncodePlane> = (0..n)
        .map(|c| EncodePlane {
            dx: 1,
            dy: 1,
            precision: input.precision,
            signed: false,
            alpha: (n == 2 || n == 4) && c == n - 1,
            data: Vec::with_capacity(pixels),
        })
        .collect();
    match input.samples {
        Samples::U8(s) => deinterleave(s, &mut planes),
        Samples::U16(s) => deinterleave(s, &mut planes),
    }
    let colour = if n <= 2 { opj::COLOR_SPACE::OPJ_CLRSPC_GRAY } else { opj::COLOR_SPACE::OPJ_CLRSPC_SRGB };
    encode_planes(input.width, input.height, &planes, colour, n >= 3, params)
}

fn deinterleave<T: Copy + Into<i32>>(samples: &[T], planes: &mut [EncodePlane]) {
    let n = planes.len();
    for px in samples.chunks_exact(n) {
        for (plane, &v) in planes.iter_mut().zip(px) {
            plane.data.push(v.into());
        }
    }
}

// ---------------------------------------------------------------------------
// Header parsing (pure Rust)
// ---------------------------------------------------------------------------

#[derive(Clone, Debug)]
struct CompHeader {
    precision: u32,
    signed: bool,
    dx: u32,
    dy: u32,
    coding: Coding,
}

/// Coding style of one component (COD, overridden by COC).
#[derive(Clone, Debug, PartialEq, Eq)]
struct Coding {
    decompositions: u32,
    /// log2 of the code-block size.
    cblk_w: u32,
    cblk_h: u32,
    /// log2 precinct sizes by resolution index (0 = lowest), if defined.
    precincts: Option<Vec<(u32, u32)>>,
}

impl Coding {
    fn precinct_exp(&self, res: usize) -> (u32, u32) {
        match &self.precincts {
            Some(p) => p.get(res).copied().unwrap_or((15, 15)),
            None => (15, 15),
        }
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum ColourSpec {
    /// Raw codestream: nothing declared.
    None,
    /// JP2 enumerated colour space.
    Enumerated(u32),
    /// JP2 ICC profile (restricted or any).
    Icc,
    /// JP2 colour specification method we do not know.
    Method(u8),
}

#[derive(Clone, Debug)]
struct Header {
    container: Container,
    x0: u32,
    y0: u32,
    x1: u32,
    y1: u32,
    tx0: u32,
    ty0: u32,
    tdx: u32,
    tdy: u32,
    comps: Vec<CompHeader>,
    layers: u32,
    colour: ColourSpec,
    /// Channels marked opacity/premultiplied opacity by a JP2 `cdef` box.
    cdef_alpha: Option<usize>,
    palette: bool,
}

struct Reader<'a> {
    data: &'a [u8],
}

impl<'a> Reader<'a> {
    fn bytes(&self, at: usize, n: usize) -> Result<&'a [u8], Jp2Error> {
        at.checked_add(n).and_then(|end| self.data.get(at..end)).ok_or_else(|| Jp2Error::truncated("header ends early"))
    }
    fn u8(&self, at: usize) -> Result<u8, Jp2Error> {
        Ok(self.bytes(at, 1)?[0])
    }
    fn u16(&self, at: usize) -> Result<u16, Jp2Error> {
        let b = self.bytes(at, 2)?;
        Ok(u16::from_be_bytes([b[0], b[1]]))
    }
    fn u32(&self, at: usize) -> Result<u32, Jp2Error> {
        let b = self.bytes(at, 4)?;
        Ok(u32::from_be_bytes([b[0], b[1], b[2], b[3]]))
    }
    fn u64(&self, at: usize) -> Result<u64, Jp2Error> {
        let b = self.bytes(at, 8)?;
        let mut a = [0u8; 8];
        a.copy_from_slice(b);
        Ok(u64::from_be_bytes(a))
    }
}

/// One ISO base media box: type, content range.
struct JBox {
    kind: [u8; 4],
    start: usize,
    end: usize,
}

/// Reads the box at `pos` within `[pos, limit)`.
fn read_box(r: &Reader, pos: usize, limit: usize) -> Result<JBox, Jp2Error> {
    let lbox = r.u32(pos)?;
    let kind_bytes = r.bytes(pos + 4, 4)?;
    let kind = [kind_bytes[0], kind_bytes[1], kind_bytes[2], kind_bytes[3]];
    let (header, len) = match lbox {
        0 => (8usize, (limit - pos) as u64),
        1 => (16usize, r.u64(pos + 8)?),
        n => (8usize, u64::from(n)),
    };
    if len < header as u64 {
        return Err(Jp2Error::corrupt("box length smaller than its header"));
    }
    let end = (pos as u64).saturating_add(len);
    let end = if end <= limit as u64 {
        end as usize
    } else if &kind == b"jp2c" {
        // A cut codestream still has its main header; decoding reports the cut.
        limit
    } else {
        return Err(Jp2Error::truncated("box runs past the end of its container"));
    };
    Ok(JBox { kind, start: pos + header, end })
}

impl Header {
    fn parse(data: &[u8]) -> Result<Header, Jp2Error> {
        let container = sniff(data).ok_or_else(|| Jp2Error::corrupt("not a JP2 file or J2K codestream"))?;
        let r = Reader { data };
        let mut colour = ColourSpec::None;
        let mut cdef_alpha = None;
        let mut palette = false;
        let codestream_at = match container {
            Container::J2k => 0,
            Container::Jp2 => {
                let mut pos = 0usize;
                let mut found = None;
                let mut saw_colour = false;
                while pos < data.len() {
                    let b = read_box(&r, pos, data.len())?;
                    match &b.kind {
                        b"jp2h" => {
                            let mut sub = b.start;
                            while sub < b.end {
                                let s = read_box(&r, sub, b.end)?;
                                match &s.kind {
                                    b"colr" if !saw_colour => {
                                        // The first colour specification wins (15444-1 I.5.3.3).
                                        saw_colour = true;
                                        let meth = r.u8(s.start)?;
                                        colour = match meth {
                                            1 => ColourSpec::Enumerated(r.u32(s.start + 3)?),
                                            2 | 3 => ColourSpec::Icc,
                                            m => ColourSpec::Method(m),
                                        };
                                    }
                                    b"cdef" => {
                                        let n = usize::from(r.u16(s.start)?);
                                        let mut alpha = 0;
                                        for i in 0..n {
                                            let typ = r.u16(s.start + 2 + 6 * i + 2)?;
                                            if typ == 1 || typ == 2 {
                                                alpha += 1;
                                            }
                                        }
                                        cdef_alpha = Some(alpha);
                                    }
                                    b"pclr" => palette = true,
                                    _ => {}
                                }
                                sub = s.end;
                            }
                        }
                        b"jp2c" => {
                            found = Some(b.start);
                            break;
                        }
                        _ => {}
                    }
                    pos = b.end;
                }
                found.ok_or_else(|| Jp2Error::truncated("no codestream box"))?
            }
        };
        let mut h = Self::parse_codestream(&r, codestream_at, container)?;
        h.colour = colour;
        h.cdef_alpha = cdef_alpha;
        h.palette = palette;
        Ok(h)
    }

    fn parse_codestream(r: &Reader, at: usize, container: Container) -> Result<Header, Jp2Error> {
        if r.u16(at)? != 0xFF4F || r.u16(at + 2)? != 0xFF51 {
            return Err(Jp2Error::corrupt("codestream does not start with SOC, SIZ"));
        }
        let lsiz = usize::from(r.u16(at + 4)?);
        let x1 = r.u32(at + 8)?;
        let y1 = r.u32(at + 12)?;
        let x0 = r.u32(at + 16)?;
        let y0 = r.u32(at + 20)?;
        let tdx = r.u32(at + 24)?;
        let tdy = r.u32(at + 28)?;
        let tx0 = r.u32(at + 32)?;
        let ty0 = r.u32(at + 36)?;
        let ncomp = usize::from(r.u16(at + 40)?);
        if ncomp == 0 || ncomp > 16384 || lsiz != 38 + 3 * ncomp {
            return Err(Jp2Error::corrupt("bad SIZ component count"));
        }
        if x1 <= x0 || y1 <= y0 || tdx == 0 || tdy == 0 || tx0 > x0 || ty0 > y0 {
            return Err(Jp2Error::corrupt("bad SIZ geometry"));
        }
        if u64::from(tx0) + u64::from(tdx) <= u64::from(x0) || u64::from(ty0) + u64::from(tdy) <= u64::from(y0) {
            return Err(Jp2Error::corrupt("first tile misses the image"));
        }
        let tiles_x = (u64::from(x1 - tx0)).div_ceil(u64::from(tdx));
        let tiles_y = (u64::from(y1 - ty0)).div_ceil(u64::from(tdy));
        if tiles_x * tiles_y > 65535 {
            return Err(Jp2Error::corrupt("more than 65535 tiles"));
        }
        let mut comps = Vec::with_capacity(ncomp.min(16));
        for i in 0..ncomp {
            let ssiz = r.u8(at + 42 + 3 * i)?;
            let dx = u32::from(r.u8(at + 43 + 3 * i)?);
            let dy = u32::from(r.u8(at + 44 + 3 * i)?);
            if dx == 0 || dy == 0 || (ssiz & 0x7F) > 37 {
                return Err(Jp2Error::corrupt("bad SIZ component"));
            }
            comps.push(CompHeader {
                precision: u32::from(ssiz & 0x7F) + 1,
                signed: ssiz & 0x80 != 0,
                dx,
                dy,
                coding: Coding { decompositions: 0, cblk_w: 6, cblk_h: 6, precincts: None },
            });
        }

        // Main header markers up to the first SOT.
        let mut pos = at + 4 + lsiz;
        let mut cod: Option<(Coding, u32)> = None;
        let mut coc: Vec<(usize, Coding)> = Vec::new();
        loop {
            let marker = r.u16(pos)?;
            if marker == 0xFF90 || marker == 0xFFD9 {
                break;
            }
            if marker < 0xFF30 {
                return Err(Jp2Error::corrupt("bad marker in main header"));
            }
            let len = usize::from(r.u16(pos + 2)?);
            if len < 2 {
                return Err(Jp2Error::corrupt("bad marker segment length"));
            }
            let seg = pos + 4;
            let seg_end = pos + 2 + len;
            r.bytes(pos + 2, len)?;
            match marker {
                0xFF52 => {
                    // COD: Scod, SGcod (progression, layers, MCT), SPcod.
                    let scod = r.u8(seg)?;
                    let layers = u32::from(r.u16(seg + 2)?);
                    if layers == 0 {
                        return Err(Jp2Error::corrupt("zero layers"));
                    }
                    let coding = parse_spcod(r, seg + 5, seg_end, scod & 1 != 0)?;
                    cod = Some((coding, layers));
                }
                0xFF53 => {
                    // COC: Ccoc, Scoc, SPcoc.
                    let (comp, next) = if ncomp < 257 {
                        (usize::from(r.u8(seg)?), seg + 1)
                    } else {
                        (usize::from(r.u16(seg)?), seg + 2)
                    };
                    if comp >= ncomp {
                        return Err(Jp2Error::corrupt("COC for a missing component"));
                    }
                    let scoc = r.u8(next)?;
                    coc.push((comp, parse_spcod(r, next + 1, seg_end, scoc & 1 != 0)?));
                }
                _ => {}
            }
            pos = seg_end;
        }
        let (default, layers) = cod.ok_or_else(|| Jp2Error::corrupt("no COD marker"))?;
        for c in comps.iter_mut() {
            c.coding = default.clone();
        }
        for (i, coding) in coc {
            if let Some(c) = comps.get_mut(i) {
                c.coding = coding;
            }
        }
        Ok(Header {
            container,
            x0,
            y0,
            x1,
            y1,
            tx0,
            ty0,
            tdx,
            tdy,
            comps,
            layers,
            colour: ColourSpec::None,
            cdef_alpha: None,
            palette: false,
        })
    }

    fn width(&self) -> u32 {
        self.x1 - self.x0
    }

    fn height(&self) -> u32 {
        self.y1 - self.y0
    }

    fn tiles(&self) -> (u32, u32) {
        let tw = (self.x1 - self.tx0).div_ceil(self.tdx);
        let th = (self.y1 - self.ty0).div_ceil(self.tdy);
        (tw, th)
    }

    /// Resolution levels usable for every component.
    fn levels(&self) -> u32 {
        self.comps.iter().map(|c| c.coding.decompositions + 1).min().unwrap_or(1)
    }

    fn info(&self) -> Jp2Info {
        let (tiles_x, tiles_y) = self.tiles();
        let (tile_width, tile_height) =
            if tiles_x == 1 && tiles_y == 1 { (self.width(), self.height()) } else { (self.tdx, self.tdy) };
        let first = self.comps.first();
        let precinct_sizes = match first.and_then(|c| c.coding.precincts.as_ref()) {
            Some(p) => p.iter().rev().map(|&(w, h)| (1u32 << w, 1u32 << h)).collect(),
            None => Vec::new(),
        };
        let n = self.comps.len();
        // As decoded: the component count decides, except that a palette
        // expands one component, leaving only the channel definition to tell.
        let has_alpha = if self.palette { self.cdef_alpha.unwrap_or(0) > 0 } else { n == 2 || n == 4 };
        Jp2Info {
            width: self.width(),
            height: self.height(),
            components: n as u32,
            bit_depth: self.comps.iter().map(|c| c.precision).max().unwrap_or(0),
            signed: self.comps.iter().any(|c| c.signed),
            levels: self.levels(),
            tile_width,
            tile_height,
            tiles_x,
            tiles_y,
            precinct_sizes,
            layers: self.layers,
            has_alpha,
            has_icc: self.colour == ColourSpec::Icc,
            container: self.container,
            x_offset: self.x0,
            y_offset: self.y0,
        }
    }

    fn check_supported(&self) -> Result<(), Jp2Error> {
        let n = self.comps.len();
        if n > 4 && !self.palette {
            return Err(Jp2Error::Unsupported(format!("{n} components")));
        }
        if self.comps.iter().any(|c| c.precision > 16) {
            return Err(Jp2Error::Unsupported("more than 16 bits per sample".into()));
        }
        if self.x1 > i32::MAX as u32 || self.y1 > i32::MAX as u32 {
            return Err(Jp2Error::Unsupported("image coordinates beyond 2^31".into()));
        }
        match self.colour {
            ColourSpec::None | ColourSpec::Icc => Ok(()),
            ColourSpec::Enumerated(16..=18) => Ok(()),
            ColourSpec::Enumerated(12) => Err(Jp2Error::Unsupported("CMYK colour space".into())),
            ColourSpec::Enumerated(14) => Err(Jp2Error::Unsupported("CIELab colour space".into())),
            ColourSpec::Enumerated(24) => Err(Jp2Error::Unsupported("e-sYCC colour space".into())),
            ColourSpec::Enumerated(e) => Err(Jp2Error::Unsupported(format!("JP2 colour space {e}"))),
            ColourSpec::Method(m) => Err(Jp2Error::Unsupported(format!("JP2 colour method {m}"))),
        }
    }

    /// Estimated OpenJPEG memory: per-tile header tables, plus code-block and
    /// precinct bookkeeping for one full tile at all resolutions (OpenJPEG
    /// reuses one tile decoder, so the largest tile counts, not their sum).
    ///
    /// Every product and sum saturates at `u64::MAX`, so a hostile header
    /// (a 2^31-pixel tile with 1×1 precincts, say) gives an estimate over any
    /// limit and a refusal, never a wrapped small number.
    fn codec_memory(&self) -> (u64, u64) {
        let (tw, th) = self.tiles();
        let ncomp = self.comps.len() as u64;
        let per_tile = TILE_HEADER_BYTES.saturating_add(ncomp.saturating_mul(TILE_COMPONENT_HEADER_BYTES));
        let tables = u64::from(tw).saturating_mul(u64::from(th)).saturating_mul(per_tile);
        let tile_w = u64::from(self.tdx.min(self.width()));
        let tile_h = u64::from(self.tdy.min(self.height()));
        let mut tile = 0u64;
        for c in &self.comps {
            let cw = tile_w.div_ceil(u64::from(c.dx));
            let ch = tile_h.div_ceil(u64::from(c.dy));
            let nres = c.coding.decompositions + 1;
            for res in 0..nres {
                let shift = nres - 1 - res;
                let rw = ceil_pow2(cw, shift);
                let rh = ceil_pow2(ch, shift);
                let (ppx, ppy) = c.coding.precinct_exp(res as usize);
                let (bands, bw, bh, cbx, cby) = if res == 0 {
                    (1u64, rw, rh, c.coding.cblk_w.min(ppx), c.coding.cblk_h.min(ppy))
                } else {
                    (
                        3u64,
                        rw.div_ceil(2),
                        rh.div_ceil(2),
                        c.coding.cblk_w.min(ppx.saturating_sub(1)),
                        c.coding.cblk_h.min(ppy.saturating_sub(1)),
                    )
                };
                let blocks = ceil_pow2(bw, cbx).saturating_add(1).saturating_mul(ceil_pow2(bh, cby).saturating_add(1));
                let precincts =
                    ceil_pow2(rw, ppx).saturating_add(1).saturating_mul(ceil_pow2(rh, ppy).saturating_add(1));
                let bytes = blocks
                    .saturating_mul(CODE_BLOCK_BYTES)
                    .saturating_add(precincts.saturating_mul(PRECINCT_BYTES))
                    .saturating_mul(bands);
                tile = tile.saturating_add(bytes);
            }
        }
        (tables, tile)
    }

    fn check_codec_memory(&self, limit: u64) -> Result<(), Jp2Error> {
        let (tables, tile) = self.codec_memory();
        if tables > limit {
            return Err(Jp2Error::CodecLimit { what: "tile table", needed: tables, limit });
        }
        let total = tables.saturating_add(tile);
        if total > limit {
            return Err(Jp2Error::CodecLimit { what: "tile bookkeeping", needed: total, limit });
        }
        Ok(())
    }
}

/// SPcod / SPcoc: decomposition levels, code-block size and style, transform,
/// then precinct sizes when `precincts` (Scod bit 0).
fn parse_spcod(r: &Reader, at: usize, end: usize, precincts: bool) -> Result<Coding, Jp2Error> {
    if at + 5 > end {
        return Err(Jp2Error::corrupt("coding style segment too short"));
    }
    let decompositions = u32::from(r.u8(at)?);
    let xcb = u32::from(r.u8(at + 1)?);
    let ycb = u32::from(r.u8(at + 2)?);
    if decompositions > 32 || xcb > 8 || ycb > 8 || xcb + ycb > 8 {
        return Err(Jp2Error::corrupt("bad coding style"));
    }
    let sizes = if precincts {
        let n = decompositions as usize + 1;
        if at + 5 + n > end {
            return Err(Jp2Error::corrupt("coding style too short for its precincts"));
        }
        let bytes = r.bytes(at + 5, n)?;
        let v: Vec<(u32, u32)> = bytes.iter().map(|&b| (u32::from(b & 0x0F), u32::from(b >> 4))).collect();
        // Only the lowest resolution may have 1-sample precincts.
        if v.iter().skip(1).any(|&(w, h)| w == 0 || h == 0) {
            return Err(Jp2Error::corrupt("bad precinct size"));
        }
        Some(v)
    } else {
        None
    };
    Ok(Coding { decompositions, cblk_w: xcb + 2, cblk_h: ycb + 2, precincts: sizes })
}

/// `ceil(v / 2^shift)`.
fn ceil_pow2(v: u64, shift: u32) -> u64 {
    if shift >= 64 {
        return u64::from(v > 0);
    }
    v.div_ceil(1u64 << shift)
}

// ---------------------------------------------------------------------------
// OpenJPEG handles and streams (all the unsafe code)
// ---------------------------------------------------------------------------

/// A heap value whose address is handed to OpenJPEG as callback user data.
/// It is owned through a raw pointer so that no Rust reference to it exists
/// while OpenJPEG works with the pointer.
struct CallbackData<T> {
    ptr: NonNull<T>,
    _owns: PhantomData<T>,
}

impl<T> CallbackData<T> {
    fn new(value: T) -> Self {
        CallbackData { ptr: NonNull::from(Box::leak(Box::new(value))), _owns: PhantomData }
    }

    fn as_user_data(&self) -> *mut c_void {
        self.ptr.as_ptr().cast()
    }

    /// Access between OpenJPEG calls.
    fn get_mut(&mut self) -> &mut T {
        // SAFETY: the pointer came from `Box::leak` and stays valid until drop;
        // OpenJPEG only dereferences it inside calls that this module makes and
        // that have returned before any `get_mut`, and `&mut self` rules out a
        // second Rust reference.
        unsafe { self.ptr.as_mut() }
    }
}

impl<T> Drop for CallbackData<T> {
    fn drop(&mut self) {
        // SAFETY: the pointer came from `Box::leak` and is freed only here; the
        // codec and stream that used it are declared after it wherever both
        // live in one scope or struct, so they are destroyed first.
        drop(unsafe { Box::from_raw(self.ptr.as_ptr()) });
    }
}

/// OpenJPEG's error messages, kept for logs.
#[derive(Default)]
struct Messages {
    text: String,
}

const MAX_MESSAGE_TEXT: usize = 600;

/// Error handler: appends OpenJPEG's message to the `Messages` in user data.
unsafe extern "C" fn on_error(msg: *const c_char, user: *mut c_void) {
    if msg.is_null() || user.is_null() {
        return;
    }
    // SAFETY: OpenJPEG passes a NUL-terminated message (a 512-byte buffer it
    // terminates itself), valid during this call.
    let text = unsafe { CStr::from_ptr(msg) }.to_string_lossy();
    // SAFETY: `user` is the `Messages` registered with this codec, which
    // outlives the codec; no Rust reference to it is live while OpenJPEG runs.
    let messages = unsafe { &mut *user.cast::<Messages>() };
    let text = text.trim();
    if messages.text.len() + text.len() + 2 <= MAX_MESSAGE_TEXT {
        if !messages.text.is_empty() {
            messages.text.push_str("; ");
        }
        messages.text.push_str(text);
    }
}

/// The bytes OpenJPEG reads from, and the reader's position.
struct MemSource<'a> {
    data: &'a [u8],
    pos: usize,
    /// A read or skip was attempted at the end of the data.
    hit_end: bool,
}

/// `opj_stream_read_fn`: copies up to `n` bytes, returns the count, or
/// `(size_t)-1` at the end (never 0 for a non-empty request: OpenJPEG would
/// loop forever).
unsafe extern "C" fn source_read(buf: *mut c_void, n: usize, user: *mut c_void) -> usize {
    // SAFETY: `user` is the `MemSource` registered with this stream, which
    // outlives the stream; no Rust reference to it is live while OpenJPEG runs.
    let src = unsafe { &mut *user.cast::<MemSource>() };
    let remaining = src.data.get(src.pos..).unwrap_or(&[]);
    if remaining.is_empty() {
        src.hit_end = true;
        return usize::MAX;
    }
    let k = n.min(remaining.len());
    if k > 0 {
        // SAFETY: OpenJPEG's `buf` has room for `n >= k` bytes; the source
        // slice holds at least `k` bytes; OpenJPEG's buffer never aliases the
        // caller's data. This copy is the only place OpenJPEG's input is read:
        // if the slice is a memory map whose file shrinks, a faulting read
        // is turned into zeros by source::mmap's handler (and the decode is
        // then thrown away by the caller); if the file is rewritten, OpenJPEG
        // sees corrupt input in its own buffers, which it validates.
        unsafe { ptr::copy_nonoverlapping(remaining.as_ptr(), buf.cast::<u8>(), k) };
    }
    src.pos += k;
    k
}

/// `opj_stream_skip_fn`: advances by up to `n` bytes and returns how many were
/// skipped (a count, not the new position), or -1 at the end.
unsafe extern "C" fn source_skip(n: i64, user: *mut c_void) -> i64 {
    // SAFETY: as in `source_read`.
    let src = unsafe { &mut *user.cast::<MemSource>() };
    let remaining = src.data.len().saturating_sub(src.pos);
    if n < 0 {
        return -1;
    }
    if remaining == 0 {
        src.hit_end = true;
        return -1;
    }
    let k = (n as u64).min(remaining as u64) as usize;
    src.pos += k;
    k as i64
}

/// `opj_stream_seek_fn`: absolute; refuses positions past the end (OpenJPEG
/// would otherwise trip an assertion later).
unsafe extern "C" fn source_seek(to: i64, user: *mut c_void) -> opj::OPJ_BOOL {
    // SAFETY: as in `source_read`.
    let src = unsafe { &mut *user.cast::<MemSource>() };
    match usize::try_from(to) {
        Ok(p) if p <= src.data.len() => {
            src.pos = p;
            1
        }
        _ => {
            src.hit_end = true;
            0
        }
    }
}

/// Where the encoder writes: a growable buffer with a cursor (the JP2 writer
/// seeks back to fill in the codestream box length).
#[derive(Default)]
struct VecSink {
    buf: Vec<u8>,
    pos: usize,
}

impl VecSink {
    fn ensure_len(&mut self, len: usize) -> bool {
        if len > self.buf.len() {
            if self.buf.try_reserve(len - self.buf.len()).is_err() {
                return false;
            }
            self.buf.resize(len, 0);
        }
        true
    }
}

/// `opj_stream_write_fn`: writes at the cursor, returns `n` or `(size_t)-1`.
unsafe extern "C" fn sink_write(buf: *mut c_void, n: usize, user: *mut c_void) -> usize {
    // SAFETY: `user` is the `VecSink` registered with this stream, which
    // outlives the stream; no Rust reference to it is live while OpenJPEG runs.
    let sink = unsafe { &mut *user.cast::<VecSink>() };
    if n == 0 {
        return 0;
    }
    let Some(end) = sink.pos.checked_add(n) else { return usize::MAX };
    if !sink.ensure_len(end) {
        return usize::MAX;
    }
    // SAFETY: OpenJPEG passes `n` readable bytes at `buf`, valid for this call.
    let bytes = unsafe { std::slice::from_raw_parts(buf.cast::<u8>(), n) };
    match sink.buf.get_mut(sink.pos..end) {
        Some(dst) => dst.copy_from_slice(bytes),
        None => return usize::MAX,
    }
    sink.pos = end;
    n
}

/// `opj_stream_skip_fn` for output: moves the cursor forward (zero-filling).
unsafe extern "C" fn sink_skip(n: i64, user: *mut c_void) -> i64 {
    // SAFETY: as in `sink_write`.
    let sink = unsafe { &mut *user.cast::<VecSink>() };
    let Ok(k) = usize::try_from(n) else { return -1 };
    let Some(end) = sink.pos.checked_add(k) else { return -1 };
    if !sink.ensure_len(end) {
        return -1;
    }
    sink.pos = end;
    n
}

/// `opj_stream_seek_fn` for output: absolute.
unsafe extern "C" fn sink_seek(to: i64, user: *mut c_void) -> opj::OPJ_BOOL {
    // SAFETY: as in `sink_write`.
    let sink = unsafe { &mut *user.cast::<VecSink>() };
    let Ok(p) = usize::try_from(to) else { return 0 };
    if !sink.ensure_len(p) {
        return 0;
    }
    sink.pos = p;
    1
}

/// Owns an `opj_codec_t`.
struct CodecGuard(NonNull<opj::opj_codec_t>);

impl CodecGuard {
    fn decoder(container: Container, messages: &CallbackData<Messages>) -> Result<Self, Jp2Error> {
        // SAFETY: plain constructor; a null result is handled.
        let raw = unsafe { opj::opj_create_decompress(codec_format(container)) };
        let codec = CodecGuard(NonNull::new(raw).ok_or_else(|| Jp2Error::codec("cannot create decoder"))?);
        codec.set_handlers(messages);
        Ok(codec)
    }

    fn encoder(container: Container, messages: &CallbackData<Messages>) -> Result<Self, Jp2Error> {
        // SAFETY: plain constructor; a null result is handled.
        let raw = unsafe { opj::opj_create_compress(codec_format(container)) };
        let codec = CodecGuard(NonNull::new(raw).ok_or_else(|| Jp2Error::codec("cannot create encoder"))?);
        codec.set_handlers(messages);
        Ok(codec)
    }

    fn ptr(&self) -> *mut opj::opj_codec_t {
        self.0.as_ptr()
    }

    /// Info and warning handlers are left null, so OpenJPEG skips formatting
    /// them and prints nothing; errors go to `messages`.
    fn set_handlers(&self, messages: &CallbackData<Messages>) {
        // SAFETY: valid codec; null handlers are allowed (messages dropped);
        // the `Messages` outlives the codec (declared before it everywhere).
        unsafe {
            opj::opj_set_info_handler(self.ptr(), None, ptr::null_mut());
            opj::opj_set_warning_handler(self.ptr(), None, ptr::null_mut());
            opj::opj_set_error_handler(self.ptr(), Some(on_error), messages.as_user_data());
        }
    }

    fn set_threads(&self, threads: i32) {
        // SAFETY: valid codec, called before any decoding or encoding. Without
        // the `threads` feature OpenJPEG has no thread support and this is a
        // no-op; with it, 0 replaces a pool that OPJ_NUM_THREADS may have created.
        unsafe {
            if opj::opj_has_thread_support() != 0 {
                opj::opj_codec_set_threads(self.ptr(), threads);
            }
        }
    }
}

impl Drop for CodecGuard {
    fn drop(&mut self) {
        // SAFETY: we own the codec; it is destroyed exactly once.
        unsafe { opj::opj_destroy_codec(self.ptr()) }
    }
}

fn codec_format(container: Container) -> opj::CODEC_FORMAT {
    match container {
        Container::Jp2 => opj::CODEC_FORMAT::OPJ_CODEC_JP2,
        Container::J2k => opj::CODEC_FORMAT::OPJ_CODEC_J2K,
    }
}

/// Owns an `opj_stream_t`.
struct StreamGuard(NonNull<opj::opj_stream_t>);

impl StreamGuard {
    fn input(source: &CallbackData<MemSource>, len: usize) -> Result<Self, Jp2Error> {
        // SAFETY: plain constructor; a null result is handled.
        let raw = unsafe { opj::opj_stream_create(STREAM_BUFFER, 1) };
        let stream = StreamGuard(NonNull::new(raw).ok_or_else(|| Jp2Error::codec("cannot create stream"))?);
        // SAFETY: valid stream; the callbacks match OpenJPEG's prototypes; the
        // user data outlives the stream and is not freed by OpenJPEG (no free
        // function).
        unsafe {
            opj::opj_stream_set_read_function(stream.ptr(), Some(source_read));
            opj::opj_stream_set_skip_function(stream.ptr(), Some(source_skip));
            opj::opj_stream_set_seek_function(stream.ptr(), Some(source_seek));
            opj::opj_stream_set_user_data(stream.ptr(), source.as_user_data(), None);
            opj::opj_stream_set_user_data_length(stream.ptr(), len as u64);
        }
        Ok(stream)
    }

    fn output(sink: &CallbackData<VecSink>) -> Result<Self, Jp2Error> {
        // SAFETY: plain constructor; a null result is handled.
        let raw = unsafe { opj::opj_stream_create(OUTPUT_BUFFER, 0) };
        let stream = StreamGuard(NonNull::new(raw).ok_or_else(|| Jp2Error::codec("cannot create stream"))?);
        // SAFETY: as in `input`.
        unsafe {
            opj::opj_stream_set_write_function(stream.ptr(), Some(sink_write));
            opj::opj_stream_set_skip_function(stream.ptr(), Some(sink_skip));
            opj::opj_stream_set_seek_function(stream.ptr(), Some(sink_seek));
            opj::opj_stream_set_user_data(stream.ptr(), sink.as_user_data(), None);
        }
        Ok(stream)
    }

    fn ptr(&self) -> *mut opj::opj_stream_t {
        self.0.as_ptr()
    }
}

impl Drop for StreamGuard {
    fn drop(&mut self) {
        // SAFETY: we own the stream; it is destroyed exactly once. It does not
        // own its user data (no free function was given).
        unsafe { opj::opj_stream_destroy(self.ptr()) }
    }
}

/// Owns an `opj_image_t` (possibly null).
struct ImageGuard(*mut opj::opj_image_t);

impl ImageGuard {
    fn get(&self) -> Option<&opj::opj_image_t> {
        // SAFETY: when non-null the image came from OpenJPEG and stays valid
        // until drop; no OpenJPEG call runs while the reference lives (the
        // borrow of `self` prevents mutation through this guard).
        unsafe { self.0.as_ref() }
    }

    fn components(&self) -> &[opj::opj_image_comp_t] {
        match self.get() {
            Some(img) if !img.comps.is_null() => {
                // SAFETY: OpenJPEG allocates `numcomps` components at `comps`.
                unsafe { std::slice::from_raw_parts(img.comps, img.numcomps as usize) }
            }
            _ => &[],
        }
    }
}

impl Drop for ImageGuard {
    fn drop(&mut self) {
        if !self.0.is_null() {
            // SAFETY: we own the image; it is destroyed exactly once.
            unsafe { opj::opj_image_destroy(self.0) }
        }
    }
}

/// A decoder over `data` whose header has been read. Field order is drop
/// order: image, stream and codec go before the callback data they point to.
struct DecodeSession<'a> {
    image: ImageGuard,
    stream: StreamGuard,
    codec: CodecGuard,
    source: CallbackData<MemSource<'a>>,
    messages: CallbackData<Messages>,
}

impl<'a> DecodeSession<'a> {
    fn open(data: &'a [u8], container: Container) -> Result<Self, Jp2Error> {
        let messages = CallbackData::new(Messages::default());
        let source = CallbackData::new(MemSource { data, pos: 0, hit_end: false });
        let codec = CodecGuard::decoder(container, &messages)?;
        // SAFETY: `opj_dparameters_t` is a plain C struct for which all-zero is
        // a valid value; OpenJPEG then fills in its defaults.
        let mut params: opj::opj_dparameters_t = unsafe { std::mem::zeroed() };
        // SAFETY: valid pointers to the parameters and codec.
        let ok = unsafe {
            opj::opj_set_default_decoder_parameters(&mut params);
            opj::opj_setup_decoder(codec.ptr(), &mut params)
        };
        if ok == 0 {
            return Err(Jp2Error::codec("decoder setup failed"));
        }
        codec.set_threads(0);
        let stream = StreamGuard::input(&source, data.len())?;
        let mut raw: *mut opj::opj_image_t = ptr::null_mut();
        // SAFETY: valid stream and codec; OpenJPEG stores a new image (or null)
        // in `raw`, which the guard owns from here on.
        let ok = unsafe { opj::opj_read_header(stream.ptr(), codec.ptr(), &mut raw) };
        let image = ImageGuard(raw);
        let mut session = DecodeSession { image, stream, codec, source, messages };
        if ok == 0 || session.image.get().is_none() {
            return Err(session.failure());
        }
        Ok(session)
    }

    fn set_reduce(&mut self, reduce: u32) -> Result<(), Jp2Error> {
        // SAFETY: valid codec with its header read.
        let ok = unsafe { opj::opj_set_decoded_resolution_factor(self.codec.ptr(), reduce) };
        if ok == 0 {
            return Err(self.failure());
        }
        Ok(())
    }

    fn set_area(&mut self, x0: u32, y0: u32, x1: u32, y1: u32) -> Result<(), Jp2Error> {
        let c = |v: u32| i32::try_from(v).map_err(|_| Jp2Error::Unsupported("image coordinates beyond 2^31".into()));
        let (x0, y0, x1, y1) = (c(x0)?, c(y0)?, c(x1)?, c(y1)?);
        // SAFETY: valid codec and the image returned by its header read.
        let ok = unsafe { opj::opj_set_decode_area(self.codec.ptr(), self.image.0, x0, y0, x1, y1) };
        if ok == 0 {
            return Err(self.failure());
        }
        Ok(())
    }

    fn decode(&mut self) -> Result<(), Jp2Error> {
        // SAFETY: valid codec, stream and image; the stream's user data (the
        // source) is alive and not referenced from Rust during the call.
        let ok = unsafe { opj::opj_decode(self.codec.ptr(), self.stream.ptr(), self.image.0) };
        if ok == 0 {
            return Err(self.failure());
        }
        Ok(())
    }

    /// Turns OpenJPEG's failure into an error, keeping its message as detail.
    fn failure(&mut self) -> Jp2Error {
        let detail = std::mem::take(&mut self.messages.get_mut().text);
        let hit_end = self.source.get_mut().hit_end;
        let lower = detail.to_ascii_lowercase();
        const TRUNCATION: [&str; 5] = ["too short", "stream length", "truncat", "end of", "stream error"];
        if hit_end || TRUNCATION.iter().any(|t| lower.contains(t)) {
            Jp2Error::Truncated { detail }
        } else if lower.contains("memory") {
            Jp2Error::Codec { detail }
        } else {
            Jp2Error::Corrupt { detail }
        }
    }
}

// ---------------------------------------------------------------------------
// Decoding
// ---------------------------------------------------------------------------

fn decode_with_limit(
    data: &[u8],
    area: DecodeArea,
    reduce: u32,
    max_pixels: u64,
    codec_limit: u64,
) -> Result<Pixels, Jp2Error> {
    let header = Header::parse(data)?;
    header.check_supported()?;

    // The area, in reference-grid coordinates.
    if area.w == 0 || area.h == 0 {
        return Err(Jp2Error::InvalidRegion);
    }
    let inside = |start: u32, len: u32, size: u32| start.checked_add(len).is_some_and(|end| end <= size);
    if !inside(area.x, area.w, header.width()) || !inside(area.y, area.h, header.height()) {
        return Err(Jp2Error::InvalidRegion);
    }
    let levels = header.levels();
    if reduce >= levels {
        return Err(Jp2Error::InvalidReduce { reduce, levels });
    }
    let ax0 = u64::from(header.x0) + u64::from(area.x);
    let ay0 = u64::from(header.y0) + u64::from(area.y);
    let ax1 = ax0 + u64::from(area.w);
    let ay1 = ay0 + u64::from(area.h);
    let out = Rect {
        x0: ceil_pow2(ax0, reduce),
        y0: ceil_pow2(ay0, reduce),
        w: (ceil_pow2(ax1, reduce) - ceil_pow2(ax0, reduce)) as usize,
        h: (ceil_pow2(ay1, reduce) - ceil_pow2(ay0, reduce)) as usize,
    };
    if out.w == 0 || out.h == 0 {
        return Err(Jp2Error::InvalidRegion);
    }
    let pixels = out.w as u64 * out.h as u64;
    if pixels > max_pixels {
        return Err(Jp2Error::TooLarge { pixels, limit: max_pixels });
    }
    header.check_codec_memory(codec_limit)?;

    // Sub-sampled components: widen the decoded area to their sampling grid at
    // this reduction so that each has samples over the whole output.
    let max_dx = header.comps.iter().map(|c| u64::from(c.dx)).max().unwrap_or(1);
    let max_dy = header.comps.iter().map(|c| u64::from(c.dy)).max().unwrap_or(1);
    let widen = |lo: u64, hi: u64, step: u64, min: u32, max: u32| -> (u32, u32) {
        if step <= 1 {
            return (lo as u32, hi as u32);
        }
        let l = (lo / step * step).max(u64::from(min));
        let h = hi.div_ceil(step).saturating_mul(step).min(u64::from(max));
        (l as u32, h as u32)
    };
    let step_x = max_dx << reduce;
    let step_y = max_dy << reduce;
    let (dx0, dx1) = widen(ax0, ax1, step_x, header.x0, header.x1);
    let (dy0, dy1) = widen(ay0, ay1, step_y, header.y0, header.y1);

    let mut session = DecodeSession::open(data, header.container)?;
    session.set_reduce(reduce)?;
    session.set_area(dx0, dy0, dx1, dy1)?;
    session.decode()?;

    let image = session.image.get().ok_or_else(|| Jp2Error::corrupt("no image"))?;
    let colour_space = image.color_space;
    let comps = session.image.components();
    if comps.is_empty() || comps.len() > 4 {
        return Err(Jp2Error::Unsupported(format!("{} decoded components", comps.len())));
    }
    if colour_space == opj::COLOR_SPACE::OPJ_CLRSPC_CMYK || colour_space == opj::COLOR_SPACE::OPJ_CLRSPC_EYCC {
        return Err(Jp2Error::Unsupported("colour space".into()));
    }
    let mut planes = Vec::with_capacity(comps.len());
    for comp in comps {
        if comp.dx == 0 || comp.dy == 0 || comp.prec == 0 || comp.prec > 16 {
            return Err(Jp2Error::corrupt("bad decoded component"));
        }
        let (dx, dy) = (u64::from(comp.dx), u64::from(comp.dy));
        // The geometry OpenJPEG promises for this component; refuse anything else.
        let cx0 = ceil_pow2(u64::from(dx0).div_ceil(dx), reduce);
        let cx1 = ceil_pow2(u64::from(dx1).div_ceil(dx), reduce);
        let cy0 = ceil_pow2(u64::from(dy0).div_ceil(dy), reduce);
        let cy1 = ceil_pow2(u64::from(dy1).div_ceil(dy), reduce);
        let (w, h) = (comp.w as usize, comp.h as usize);
        if w as u64 != cx1 - cx0 || h as u64 != cy1 - cy0 || w == 0 || h == 0 || comp.data.is_null() {
            return Err(Jp2Error::corrupt("decoded component has unexpected geometry"));
        }
        let len = w.checked_mul(h).ok_or_else(|| Jp2Error::corrupt("component too large"))?;
        // SAFETY: after a successful `opj_decode`, OpenJPEG has allocated
        // `w * h` samples at `data` for each component of the image it filled
        // (w and h are the sizes it set for the decoded area); the slice lives
        // no longer than `session`, and no OpenJPEG call runs meanwhile.
        let samples = unsafe { std::slice::from_raw_parts(comp.data, len) };
        planes.push(Plane {
            data: samples,
            w,
            h,
            x0: cx0,
            y0: cy0,
            dx,
            dy,
            precision: comp.prec,
            signed: comp.sgnd != 0,
            alpha: comp.alpha != 0,
        });
    }
    // Channel definition: alpha components last, colour ones in order.
    if planes.iter().any(|p| p.alpha) {
        planes.sort_by_key(|p| p.alpha);
    }
    let sycc = colour_space == opj::COLOR_SPACE::OPJ_CLRSPC_SYCC
        || (header.colour == ColourSpec::None && planes.len() == 3 && planes[1].dx > 1 && planes[0].dx == planes[0].dy);
    planes_to_pixels(&planes, sycc && planes.len() >= 3, out)
}

/// Output rectangle in absolute coordinates of the reduced reference grid.
#[derive(Clone, Copy, Debug)]
struct Rect {
    x0: u64,
    y0: u64,
    w: usize,
    h: usize,
}

/// One decoded component: `w * h` samples whose first one sits at (x0, y0) in
/// absolute coordinates of the component's reduced grid; output pixel (u, v)
/// of the reduced reference grid takes the sample at (u / dx, v / dy).
struct Plane<'a> {
    data: &'a [i32],
    w: usize,
    h: usize,
    x0: u64,
    y0: u64,
    dx: u64,
    dy: u64,
    precision: u32,
    signed: bool,
    alpha: bool,
}

/// 8-bit samples from a component of `precision` bits (unsigned domain):
/// `round(v * 255 / (2^precision - 1))`, exact for bit-replicated values
/// (e.g. 16-bit `v8 * 257` gives back `v8`).
fn scale_table(precision: u32) -> &'static [u8] {
    static TABLES: [OnceLock<Box<[u8]>>; 17] = [const { OnceLock::new() }; 17];
    let p = precision.clamp(1, 16);
    TABLES[p as usize].get_or_init(|| {
        let max = (1u64 << p) - 1;
        (0..=max).map(|v| ((v * 255 * 2 + max) / (2 * max)) as u8).collect()
    })
}

fn planes_to_pixels(planes: &[Plane], sycc: bool, out: Rect) -> Result<Pixels, Jp2Error> {
    let n = planes.len();
    let layout = match n {
        1 => Layout::Gray,
        2 => Layout::GrayAlpha,
        3 => Layout::Rgb,
        4 => Layout::Rgba,
        _ => return Err(Jp2Error::Unsupported(format!("{n} components"))),
    };
    let total = out.w.checked_mul(out.h).and_then(|p| p.checked_mul(n)).ok_or(Jp2Error::InvalidRegion)?;
    if total == 0 {
        return Err(Jp2Error::InvalidRegion);
    }
    let consistent = |p: &Plane| {
        p.w > 0 && p.h > 0 && p.dx > 0 && p.dy > 0 && (1..=16).contains(&p.precision) && p.data.len() >= p.w * p.h
    };
    if !planes.iter().all(consistent) {
        return Err(Jp2Error::corrupt("inconsistent decoded component"));
    }
    let mut buf = vec![0u8; total];

    let direct = !sycc
        && planes.iter().all(|p| {
            p.dx == 1
                && p.dy == 1
                && p.precision == 8
                && !p.signed
                && p.x0 == out.x0
                && p.y0 == out.y0
                && p.w == out.w
                && p.h == out.h
                && p.data.len() == out.w * out.h
        });
    if direct {
        interleave_8bit(planes, &mut buf);
    } else {
        convert_general(planes, sycc, out, &mut buf)?;
    }
    Pixels::new(out.w as u32, out.h as u32, layout, buf).map_err(|e| Jp2Error::codec(e.to_string()))
}

#[inline(always)]
fn clamp8(v: i32) -> u8 {
    v.clamp(0, 255) as u8
}

/// The common case: unsigned 8-bit planes covering exactly the output.
fn interleave_8bit(planes: &[Plane], out: &mut [u8]) {
    match planes {
        [g] => {
            for (o, &v) in out.iter_mut().zip(g.data) {
                *o = clamp8(v);
            }
        }
        [g, a] => {
            for ((o, &g), &a) in out.chunks_exact_mut(2).zip(g.data).zip(a.data) {
                if let [o0, o1] = o {
                    *o0 = clamp8(g);
                    *o1 = clamp8(a);
                }
            }
        }
        [r, g, b] => {
            for (((o, &r), &g), &b) in out.chunks_exact_mut(3).zip(r.data).zip(g.data).zip(b.data) {
                if let [o0, o1, o2] = o {
                    *o0 = clamp8(r);
                    *o1 = clamp8(g);
                    *o2 = clamp8(b);
                }
            }
        }
        [r, g, b, a] => {
            for ((((o, &r), &g), &b), &a) in out.chunks_exact_mut(4).zip(r.data).zip(g.data).zip(b.data).zip(a.data) {
                if let [o0, o1, o2, o3] = o {
                    *o0 = clamp8(r);
                    *o1 = clamp8(g);
                    *o2 = clamp8(b);
                    *o3 = clamp8(a);
                }
            }
        }
        _ => {}
    }
}

/// Everything else, row by row: upsample (sample repetition), offset signed
/// samples, convert sYCC, scale to 8 bits.
fn convert_general(planes: &[Plane], sycc: bool, out: Rect, buf: &mut [u8]) -> Result<(), Jp2Error> {
    let n = planes.len();
    // Column of each plane's row for every output column.
    let columns: Vec<Vec<u32>> = planes
        .iter()
        .map(|p| {
            let last = p.x0 + p.w as u64 - 1;
            (0..out.w as u64).map(|i| ((out.x0 + i) / p.dx).clamp(p.x0, last).wrapping_sub(p.x0) as u32).collect()
        })
        .collect();
    let mut rows: Vec<Vec<i32>> = vec![vec![0i32; out.w]; n];
    let precision: Vec<u32> = planes.iter().map(|p| p.precision).collect();
    if sycc && (precision[1] != precision[0] || precision[2] != precision[0]) {
        return Err(Jp2Error::Unsupported("sYCC with unequal precisions".into()));
    }
    let tables: Vec<&'static [u8]> = precision.iter().map(|&p| scale_table(p)).collect();

    for (oy, out_row) in buf.chunks_exact_mut(out.w * n).enumerate() {
        for (c, p) in planes.iter().enumerate() {
            let last = p.y0 + p.h as u64 - 1;
            let ry = ((out.y0 + oy as u64) / p.dy).clamp(p.y0, last) - p.y0;
            let start = ry as usize * p.w;
            let src = p.data.get(start..start + p.w).ok_or_else(|| Jp2Error::corrupt("short component"))?;
            let offset = if p.signed { 1i32 << (p.precision - 1) } else { 0 };
            let max = ((1u32 << p.precision) - 1) as i32;
            let row = &mut rows[c];
            for (d, &col) in row.iter_mut().zip(&columns[c]) {
                let v = src.get(col as usize).copied().unwrap_or(0);
                *d = (v + offset).clamp(0, max);
            }
        }
        if sycc {
            sycc_to_rgb_row(&mut rows, precision[0]);
        }
        for (c, row) in rows.iter().enumerate() {
            let table = tables[c];
            let dst = out_row.iter_mut().skip(c).step_by(n);
            if precision[c] == 8 {
                for (d, &v) in dst.zip(row) {
                    *d = v as u8;
                }
            } else {
                for (d, &v) in dst.zip(row) {
                    *d = table.get(v as usize).copied().unwrap_or(255);
                }
            }
        }
    }
    Ok(())
}

/// sYCC to RGB in place on the first three rows (same formulas as OpenJPEG's
/// `opj_decompress`), in the unsigned domain of `precision` bits.
fn sycc_to_rgb_row(rows: &mut [Vec<i32>], precision: u32) {
    let offset = 1i32 << (precision - 1);
    let max = ((1u32 << precision) - 1) as i32;
    if let [y, cb, cr, ..] = rows {
        for ((y, cb), cr) in y.iter_mut().zip(cb.iter_mut()).zip(cr.iter_mut()) {
            let (yy, b, r) = (*y, *cb - offset, *cr - offset);
            let red = yy + (1.402 * r as f32) as i32;
            let green = yy - (0.344 * b as f32 + 0.714 * r as f32) as i32;
            let blue = yy + (1.772 * b as f32) as i32;
            *y = red.clamp(0, max);
            *cb = green.clamp(0, max);
            *cr = blue.clamp(0, max);
        }
    }
}

// ---------------------------------------------------------------------------
// Encoding
// ---------------------------------------------------------------------------

/// One component to encode: `ceil(width / dx) * ceil(height / dy)` samples.
struct EncodePlane {
    dx: u32,
    dy: u32,
    precision: u32,
    signed: bool,
    alpha: bool,
    data: Vec<i32>,
}

fn encode_planes(
    width: u32,
    height: u32,
    planes: &[EncodePlane],
    colour: opj::COLOR_SPACE,
    mct: bool,
    params: &EncodeParams,
) -> Result<Vec<u8>, Jp2Error> {
    if planes.is_empty() || planes.len() > 4 {
        return Err(Jp2Error::InvalidInput("1 to 4 components".into()));
    }
    if width > i32::MAX as u32 || height > i32::MAX as u32 {
        return Err(Jp2Error::InvalidInput("image too large".into()));
    }
    if !(1..=100).contains(&params.layers) {
        return Err(Jp2Error::InvalidInput("layers must be 1 to 100".into()));
    }
    if let Some(rate) = params.rate {
        if !(rate.is_finite() && rate >= 1.0) {
            return Err(Jp2Error::InvalidInput("rate must be a ratio of at least 1".into()));
        }
    }
    let (tile_w, tile_h) = match params.tile_size {
        Some((w, h)) => {
            if w == 0 || h == 0 || w > i32::MAX as u32 || h > i32::MAX as u32 {
                return Err(Jp2Error::InvalidInput("bad tile size".into()));
            }
            (w, h)
        }
        None => (width, height),
    };
    let precincts = match &params.precincts {
        Some(p) => {
            if p.is_empty() || p.len() > 33 {
                return Err(Jp2Error::InvalidInput("1 to 33 precinct sizes".into()));
            }
            if p.iter().any(|&(w, h)| {
                !w.is_power_of_two() || !h.is_power_of_two() || w < 2 || h < 2 || w > 1 << 15 || h > 1 << 15
            }) {
                return Err(Jp2Error::InvalidInput("precinct sizes must be powers of two from 2 to 32768".into()));
            }
            Some(p.as_slice())
        }
        None => None,
    };
    let mut levels = params.levels.clamp(1, 32);
    while levels > 1 && (tile_w.min(tile_h) >> (levels - 1)) == 0 {
        levels -= 1;
    }

    let mut cmpt: Vec<opj::opj_image_cmptparm_t> = Vec::with_capacity(planes.len());
    for p in planes {
        if p.dx == 0 || p.dy == 0 || p.dx > 255 || p.dy > 255 || !(1..=16).contains(&p.precision) {
            return Err(Jp2Error::InvalidInput("bad component".into()));
        }
        let w = width.div_ceil(p.dx);
        let h = height.div_ceil(p.dy);
        if p.data.len() != w as usize * h as usize {
            return Err(Jp2Error::InvalidInput("component sample count".into()));
        }
        cmpt.push(opj::opj_image_cmptparm_t {
            dx: p.dx,
            dy: p.dy,
            w,
            h,
            x0: 0,
            y0: 0,
            prec: p.precision,
            bpp: p.precision,
            sgnd: u32::from(p.signed),
        });
    }

    // SAFETY: `cmpt` holds `planes.len()` initialised parameter structs, read
    // (not kept) by OpenJPEG; a null result is handled.
    let image = ImageGuard(unsafe { opj::opj_image_create(cmpt.len() as u32, cmpt.as_mut_ptr(), colour) });
    if image.0.is_null() {
        return Err(Jp2Error::codec("cannot allocate image"));
    }
    {
        // SAFETY: the image is non-null, owned by `image`, and no OpenJPEG call
        // runs while this exclusive reference lives.
        let img = unsafe { &mut *image.0 };
        img.x0 = 0;
        img.y0 = 0;
        img.x1 = width;
        img.y1 = height;
        if img.comps.is_null() || img.numcomps as usize != planes.len() {
            return Err(Jp2Error::codec("cannot allocate image"));
        }
        // SAFETY: OpenJPEG allocated `numcomps` components at `comps`.
        let comps = unsafe { std::slice::from_raw_parts_mut(img.comps, planes.len()) };
        for (comp, plane) in comps.iter_mut().zip(planes) {
            if comp.data.is_null() || comp.w as usize * comp.h as usize != plane.data.len() {
                return Err(Jp2Error::codec("cannot allocate image"));
            }
            // SAFETY: `opj_image_create` allocated `w * h` samples for the
            // component (checked equal to the plane's length above).
            let dst = unsafe { std::slice::from_raw_parts_mut(comp.data, plane.data.len()) };
            dst.copy_from_slice(&plane.data);
            comp.alpha = u16::from(plane.alpha);
        }
    }

    // SAFETY: `opj_cparameters_t` is a plain C struct for which all-zero is a
    // valid value; OpenJPEG then fills in its defaults. Boxed: it is ~30 KiB.
    let mut cp: Box<opj::opj_cparameters_t> = Box::new(unsafe { std::mem::zeroed() });
    // SAFETY: valid pointer to the parameters.
    unsafe { opj::opj_set_default_encoder_parameters(&mut *cp) };
    if params.tile_size.is_some() {
        cp.tile_size_on = 1;
        cp.cp_tx0 = 0;
        cp.cp_ty0 = 0;
        cp.cp_tdx = tile_w as i32;
        cp.cp_tdy = tile_h as i32;
    }
    cp.numresolution = levels as i32;
    cp.irreversible = i32::from(!params.lossless);
    cp.tcp_mct = i8::from(mct) as c_char;
    cp.prog_order = match params.progression {
        Progression::Lrcp => opj::PROG_ORDER::OPJ_LRCP,
        Progression::Rlcp => opj::PROG_ORDER::OPJ_RLCP,
        Progression::Rpcl => opj::PROG_ORDER::OPJ_RPCL,
        Progression::Pcrl => opj::PROG_ORDER::OPJ_PCRL,
        Progression::Cprl => opj::PROG_ORDER::OPJ_CPRL,
    };
    let layers = params.layers as usize;
    cp.tcp_numlayers = layers as i32;
    cp.cp_disto_alloc = 1;
    for i in 0..layers {
        let doublings = (layers - 1 - i) as i32;
        cp.tcp_rates[i] = if params.lossless {
            if i + 1 == layers {
                0.0
            } else {
                params.rate.unwrap_or(10.0) * 2f32.powi(doublings - 1)
            }
        } else {
            match params.rate {
                Some(r) => r * 2f32.powi(doublings),
                None => 0.0,
            }
        };
    }
    if let Some(p) = precincts {
        cp.csty |= 0x01;
        cp.res_spec = p.len() as i32;
        for (i, &(w, h)) in p.iter().enumerate() {
            cp.prcw_init[i] = w as i32;
            cp.prch_init[i] = h as i32;
        }
    }

    let mut messages = CallbackData::new(Messages::default());
    let mut sink = CallbackData::new(VecSink::default());
    let codec = CodecGuard::encoder(params.container, &messages)?;
    // SAFETY: valid codec, parameters and image; OpenJPEG copies what it needs.
    let ok = unsafe { opj::opj_setup_encoder(codec.ptr(), &mut *cp, image.0) };
    if ok == 0 {
        return Err(Jp2Error::codec(std::mem::take(&mut messages.get_mut().text)));
    }
    codec.set_threads(std::thread::available_parallelism().map_or(1, |n| n.get()) as i32);
    let stream = StreamGuard::output(&sink)?;
    // SAFETY: valid codec, image and stream; the sink behind the stream is
    // alive and not referenced from Rust during these calls.
    let ok = unsafe {
        opj::opj_start_compress(codec.ptr(), image.0, stream.ptr()) != 0
            && opj::opj_encode(codec.ptr(), stream.ptr()) != 0
            && opj::opj_end_compress(codec.ptr(), stream.ptr()) != 0
    };
    drop(stream);
    drop(codec);
    if !ok {
        return Err(Jp2Error::codec(std::mem::take(&mut messages.get_mut().text)));
    }
    Ok(std::mem::take(&mut sink.get_mut().buf))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::OnceLock;

    /// Tiny deterministic generator (xorshift64).
    struct XorShift(u64);

    impl XorShift {
        fn next(&mut self) -> u64 {
            let mut x = self.0;
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            self.0 = x;
            x
        }
        fn below(&mut self, n: usize) -> usize {
            (self.next() % n as u64) as usize
        }
    }

    fn hash(x: u64) -> u64 {
        let mut h = x.wrapping_mul(0x9E37_79B9_7F4A_7C15);
        h ^= h >> 29;
        h = h.wrapping_mul(0xBF58_476D_1CE4_E5B9);
        h ^ (h >> 32)
    }

    /// Photo-like test content: a few sines plus hash noise, in [0, 1].
    fn sample(x: u32, y: u32, c: u32) -> f32 {
        let (fx, fy, fc) = (x as f32, y as f32, c as f32);
        let v = 0.5
            + 0.22 * (fx * 0.043 + fc).sin()
            + 0.15 * (fy * 0.031 + fx * 0.007 * (fc + 1.0)).sin()
            + 0.06 * ((fx + fy) * 0.21).sin();
        let noise = (hash(u64::from(x) | u64::from(y) << 24 | u64::from(c) << 48) % 1000) as f32 / 1000.0 - 0.5;
        (v + 0.08 * noise).clamp(0.0, 1.0)
    }

    fn image8(w: u32, h: u32, n: u32) -> Vec<u8> {
        let mut v = Vec::with_capacity((w * h * n) as usize);
        for y in 0..h {
            for x in 0..w {
                for c in 0..n {
                    v.push((sample(x, y, c) * 255.0).round() as u8);
                }
            }
        }
        v
    }

    fn image16(w: u32, h: u32, n: u32) -> Vec<u16> {
        let mut v = Vec::with_capacity((w * h * n) as usize);
        for y in 0..h {
            for x in 0..w {
                for c in 0..n {
                    v.push((sample(x, y, c) * 65535.0).round() as u16);
                }
            }
        }
        v
    }

    fn layout_of(n: u32) -> Layout {
        match n {
            1 => Layout::Gray,
            2 => Layout::GrayAlpha,
            3 => Layout::Rgb,
            _ => Layout::Rgba,
        }
    }

    fn to8(v: u16) -> u8 {
        ((u32::from(v) * 255 * 2 + 65535) / (2 * 65535)) as u8
    }

    struct Fixture {
        name: &'static str,
        data: Vec<u8>,
        width: u32,
        height: u32,
        components: u32,
        precision: u32,
        params: EncodeParams,
        /// The source as 8-bit pixels (16-bit scaled like the decoder does).
        expected: Pixels,
    }

    fn params() -> EncodeParams {
        EncodeParams::default()
    }

    fn fixture(name: &'static str, w: u32, h: u32, n: u32, precision: u32, params: EncodeParams) -> Fixture {
        let (data, expected) = if precision > 8 {
            let src = image16(w, h, n);
            let input = EncodeInput { width: w, height: h, components: n, precision, samples: Samples::U16(&src) };
            let data = encode(&input, &params).expect("encode");
            let expected = src.iter().map(|&v| to8(v)).collect();
            (data, expected)
        } else {
            let src = image8(w, h, n);
            let input = EncodeInput { width: w, height: h, components: n, precision, samples: Samples::U8(&src) };
            (encode(&input, &params).expect("encode"), src)
        };
        let expected = Pixels::new(w, h, layout_of(n), expected).expect("pixels");
        Fixture { name, data, width: w, height: h, components: n, precision, params, expected }
    }

    fn fixtures() -> &'static [Fixture] {
        static FIXTURES: OnceLock<Vec<Fixture>> = OnceLock::new();
        FIXTURES.get_or_init(|| {
            vec![
                fixture(
                    "rgb_tiled_lrcp",
                    300,
                    200,
                    3,
                    8,
                    EncodeParams { tile_size: Some((64, 64)), levels: 4, ..params() },
                ),
                fixture(
                    "rgb_untiled_precincts_rpcl",
                    257,
                    193,
                    3,
                    8,
                    EncodeParams {
                        levels: 5,
                        progression: Progression::Rpcl,
                        precincts: Some(vec![(64, 64), (32, 32)]),
                        ..params()
                    },
                ),
                fixture(
                    "rgb_lossy_tiled_rpcl_layers",
                    320,
                    240,
                    3,
                    8,
                    EncodeParams {
                        tile_size: Some((128, 128)),
                        levels: 5,
                        lossless: false,
                        rate: Some(12.0),
                        layers: 3,
                        progression: Progression::Rpcl,
                        precincts: Some(vec![(128, 128)]),
                        ..params()
                    },
                ),
                fixture(
                    "gray_tiled",
                    200,
                    150,
                    1,
                    8,
                    EncodeParams { tile_size: Some((64, 48)), levels: 3, ..params() },
                ),
                fixture("gray16_untiled", 160, 120, 1, 16, EncodeParams { levels: 4, ..params() }),
                fixture(
                    "rgb16_lossy_tiled",
                    150,
                    100,
                    3,
                    16,
                    EncodeParams { tile_size: Some((64, 64)), levels: 3, lossless: false, rate: Some(8.0), ..params() },
                ),
                fixture("rgba_tiled", 130, 90, 4, 8, EncodeParams { tile_size: Some((64, 64)), levels: 3, ..params() }),
                fixture("gray_alpha_untiled", 50, 40, 2, 8, EncodeParams { levels: 3, ..params() }),
                fixture(
                    "odd_1025x751_tiled",
                    1025,
                    751,
                    3,
                    8,
                    EncodeParams { tile_size: Some((256, 256)), levels: 6, ..params() },
                ),
                fixture(
                    "tall_60x4000_tiled",
                    60,
                    4000,
                    1,
                    8,
                    EncodeParams { tile_size: Some((64, 512)), levels: 6, progression: Progression::Rpcl, ..params() },
                ),
                fixture("tall_60x4000_untiled", 60, 4000, 1, 8, EncodeParams { levels: 6, ..params() }),
                fixture("tiny_1x1_rgb", 1, 1, 3, 8, params()),
                fixture("tiny_3x2_gray", 3, 2, 1, 8, params()),
                fixture(
                    "raw_j2k_rgb_tiled_rpcl",
                    128,
                    96,
                    3,
                    8,
                    EncodeParams {
                        tile_size: Some((32, 32)),
                        levels: 3,
                        progression: Progression::Rpcl,
                        container: Container::J2k,
                        ..params()
                    },
                ),
                fixture(
                    "raw_j2k_gray_lossy_untiled",
                    96,
                    80,
                    1,
                    8,
                    EncodeParams { levels: 4, lossless: false, rate: Some(6.0), container: Container::J2k, ..params() },
                ),
            ]
        })
    }

    fn expected_levels(f: &Fixture) -> u32 {
        let (tw, th) = f.params.tile_size.unwrap_or((f.width, f.height));
        let mut l = f.params.levels.clamp(1, 32);
        while l > 1 && (tw.min(th) >> (l - 1)) == 0 {
            l -= 1;
        }
        l
    }

    fn full(info: &Jp2Info) -> DecodeArea {
        DecodeArea { x: 0, y: 0, w: info.width, h: info.height }
    }

    fn area(x: u32, y: u32, w: u32, h: u32) -> DecodeArea {
        DecodeArea { x, y, w, h }
    }

    /// Regions worth checking: corners, odd offsets, tile-crossing, thin strips.
    fn regions(f: &Fixture, info: &Jp2Info) -> Vec<DecodeArea> {
        let (w, h) = (f.width, f.height);
        let mut v = vec![
            area(0, 0, w, h),
            area(0, 0, 1, 1),
            area(w - 1, h - 1, 1, 1),
            area(w / 3, h / 4, w.div_ceil(2), h.div_ceil(2)),
        ];
        if w > 2 && h > 2 {
            v.push(area(1, 1, w - 2, h - 2));
        }
        v.push(area(w / 2, 0, w - w / 2, 1));
        v.push(area(0, h / 2, 1, h - h / 2));
        let (tw, th) = (info.tile_width, info.tile_height);
        if info.tiles_x > 1 && info.tiles_y > 1 {
            v.push(area(tw - 5, th - 3, 10.min(w - (tw - 5)), 7.min(h - (th - 3))));
            v.push(area(tw + 3, th + 1, 5, 9.min(h - th - 1)));
        }
        v.retain(|a| a.w > 0 && a.h > 0 && a.x + a.w <= w && a.y + a.h <= h);
        v
    }

    fn max_abs_diff(a: &Pixels, b: &Pixels) -> u8 {
        assert_eq!((a.width(), a.height(), a.layout()), (b.width(), b.height(), b.layout()));
        a.data().iter().zip(b.data()).map(|(x, y)| x.abs_diff(*y)).max().unwrap_or(0)
    }

    fn psnr(a: &Pixels, b: &Pixels) -> f64 {
        let mse: f64 = a.data().iter().zip(b.data()).map(|(x, y)| (f64::from(*x) - f64::from(*y)).powi(2)).sum::<f64>()
            / a.data().len() as f64;
        if mse == 0.0 {
            f64::INFINITY
        } else {
            10.0 * (255.0f64 * 255.0 / mse).log10()
        }
    }

    #[test]
    fn sniff_recognises_jp2_and_raw_codestreams_only() {
        let f = &fixtures()[0];
        assert_eq!(sniff(&f.data), Some(Container::Jp2));
        let j2k = fixtures().iter().find(|f| f.params.container == Container::J2k).unwrap();
        assert_eq!(sniff(&j2k.data), Some(Container::J2k));
        assert_eq!(sniff(b"\xFF\xD8\xFF\xE0 not jpeg 2000"), None);
        assert_eq!(sniff(b""), None);
        assert_eq!(sniff(&f.data[..8]), None);
    }

    #[test]
    fn probe_reports_the_header_fields_of_every_fixture() {
        for f in fixtures() {
            let info = probe(&f.data).unwrap_or_else(|e| panic!("{}: {e:?}", f.name));
            let levels = expected_levels(f);
            assert_eq!((info.width, info.height), (f.width, f.height), "{}", f.name);
            assert_eq!(info.components, f.components, "{}", f.name);
            assert_eq!(info.bit_depth, f.precision, "{}", f.name);
            assert!(!info.signed, "{}", f.name);
            assert_eq!(info.levels, levels, "{}", f.name);
            assert_eq!(info.layers, f.params.layers, "{}", f.name);
            assert_eq!(info.container, f.params.container, "{}", f.name);
            assert_eq!(info.has_alpha, f.components == 2 || f.components == 4, "{}", f.name);
            assert!(!info.has_icc, "{}", f.name);
            assert_eq!((info.x_offset, info.y_offset), (0, 0));
            match f.params.tile_size {
                Some((tw, th)) => {
                    assert_eq!((info.tile_width, info.tile_height), (tw, th), "{}", f.name);
                    assert_eq!(
                        (info.tiles_x, info.tiles_y),
                        (f.width.div_ceil(tw), f.height.div_ceil(th)),
                        "{}",
                        f.name
                    );
                }
                None => {
                    assert_eq!((info.tile_width, info.tile_height), (f.width, f.height), "{}", f.name);
                    assert_eq!((info.tiles_x, info.tiles_y), (1, 1), "{}", f.name);
                }
            }
            match &f.params.precincts {
                Some(p) => {
                    let mut want = Vec::new();
                    for r in 0..levels as usize {
                        let (w, h) = match p.get(r) {
                            Some(&s) => s,
                            None => {
                                let (lw, lh) = p[p.len() - 1];
                                let k = r - (p.len() - 1);
                                ((lw >> k).max(2), (lh >> k).max(2))
                            }
                        };
                        want.push((w, h));
                    }
                    assert_eq!(info.precinct_sizes, want, "{}", f.name);
                }
                None => assert!(info.precinct_sizes.is_empty(), "{}", f.name),
            }
        }
    }

    #[test]
    fn full_decode_reproduces_the_source_exactly_when_lossless_and_closely_when_lossy() {
        for f in fixtures() {
            let info = probe(&f.data).unwrap();
            let px = decode(&f.data, full(&info), 0, u64::MAX).unwrap_or_else(|e| panic!("{}: {e:?}", f.name));
            assert_eq!(px.layout(), layout_of(f.components), "{}", f.name);
            if f.params.lossless {
                assert!(px == f.expected, "{}: lossless decode differs by {}", f.name, max_abs_diff(&px, &f.expected));
            } else {
                let q = psnr(&px, &f.expected);
                assert!(q > 30.0, "{}: PSNR {q:.1} dB", f.name);
            }
        }
    }

    #[test]
    fn region_at_full_resolution_equals_the_same_rectangle_of_a_full_decode() {
        for f in fixtures() {
            let info = probe(&f.data).unwrap();
            let whole = decode(&f.data, full(&info), 0, u64::MAX).unwrap();
            for a in regions(f, &info) {
                let px = decode(&f.data, a, 0, u64::MAX).unwrap_or_else(|e| panic!("{} {a:?}: {e:?}", f.name));
                let want = whole.crop(a.x, a.y, a.w, a.h);
                assert!(px == want, "{} {a:?}: differs by {}", f.name, max_abs_diff(&px, &want));
            }
        }
    }

    #[test]
    fn region_at_each_reduction_equals_the_mapped_rectangle_of_a_reduced_full_decode() {
        for f in fixtures() {
            let info = probe(&f.data).unwrap();
            for r in 1..info.levels {
                let whole =
                    decode(&f.data, full(&info), r, u64::MAX).unwrap_or_else(|e| panic!("{} r{r}: {e:?}", f.name));
                assert_eq!((whole.width(), whole.height()), info.reduced_size(r), "{} r{r}", f.name);
                assert_eq!(
                    (whole.width(), whole.height()),
                    (f.width.div_ceil(1 << r), f.height.div_ceil(1 << r)),
                    "{} r{r}",
                    f.name
                );
                for a in regions(f, &info) {
                    let m = info.reduced_area(a, r);
                    let got = decode(&f.data, a, r, u64::MAX);
                    if m.w == 0 || m.h == 0 {
                        assert!(matches!(got, Err(Jp2Error::InvalidRegion)), "{} r{r} {a:?}: {got:?}", f.name);
                        continue;
                    }
                    let px = got.unwrap_or_else(|e| panic!("{} r{r} {a:?}: {e:?}", f.name));
                    let want = whole.crop(m.x, m.y, m.w, m.h);
                    assert!(px == want, "{} r{r} {a:?}: differs by {}", f.name, max_abs_diff(&px, &want));
                }
            }
        }
    }

    #[test]
    fn adjacent_areas_at_a_reduction_tile_the_reduced_image_exactly() {
        let f = fixtures().iter().find(|f| f.name == "odd_1025x751_tiled").unwrap();
        let info = probe(&f.data).unwrap();
        let r = 2;
        let whole = decode(&f.data, full(&info), r, u64::MAX).unwrap();
        let (mut covered_w, mut covered_h) = (0, 0);
        for (i, x) in (0..f.width).step_by(300).enumerate() {
            let w = 300.min(f.width - x);
            let m = info.reduced_area(area(x, 0, w, 1), r);
            assert_eq!(m.x, covered_w, "column tile {i}");
            covered_w += m.w;
        }
        for y in (0..f.height).step_by(200) {
            let h = 200.min(f.height - y);
            let m = info.reduced_area(area(0, y, 1, h), r);
            assert_eq!(m.y, covered_h);
            covered_h += m.h;
        }
        assert_eq!((covered_w, covered_h), (whole.width(), whole.height()));
    }

    #[test]
    fn sixteen_bit_samples_are_scaled_to_eight_bits_by_rounding() {
        // Bit-replicated values come back exactly; others round to nearest.
        let (w, h) = (64u32, 32u32);
        let src: Vec<u16> =
            (0..w * h).map(|i| if i < 256 { (i as u16) * 257 } else { (hash(u64::from(i)) & 0xFFFF) as u16 }).collect();
        let input = EncodeInput { width: w, height: h, components: 1, precision: 16, samples: Samples::U16(&src) };
        let data = encode(&input, &EncodeParams { levels: 3, ..params() }).unwrap();
        let info = probe(&data).unwrap();
        assert_eq!(info.bit_depth, 16);
        let px = decode(&data, full(&info), 0, u64::MAX).unwrap();
        for (i, (&got, &v)) in px.data().iter().zip(&src).enumerate() {
            let want = (f64::from(v) * 255.0 / 65535.0).round() as u8;
            assert_eq!(got, want, "sample {i} = {v}");
            if i < 256 {
                assert_eq!(got as usize, i);
            }
        }
    }

    #[test]
    fn low_precision_samples_are_stretched_to_the_full_8_bit_range() {
        let src: Vec<u8> = (0..64).map(|i| (i % 16) as u8).collect();
        let input = EncodeInput { width: 8, height: 8, components: 1, precision: 4, samples: Samples::U8(&src) };
        let data = encode(&input, &EncodeParams { levels: 2, ..params() }).unwrap();
        let info = probe(&data).unwrap();
        assert_eq!(info.bit_depth, 4);
        let px = decode(&data, full(&info), 0, u64::MAX).unwrap();
        for (&got, &v) in px.data().iter().zip(&src) {
            assert_eq!(got, v * 17);
        }
    }

    #[test]
    fn small_area_of_a_tiled_image_decodes_from_the_buffer() {
        // The jpeg2k crate's memory stream returned positions from its skip
        // callback, so this failed with "Stream too short".
        let f = fixtures().iter().find(|f| f.name == "odd_1025x751_tiled").unwrap();
        let info = probe(&f.data).unwrap();
        assert!(info.tiles_x * info.tiles_y > 4);
        for a in [area(600, 520, 16, 16), area(1000, 700, 25, 51), area(250, 250, 12, 12)] {
            let px = decode(&f.data, a, 0, u64::MAX).unwrap();
            assert!(px == f.expected.crop(a.x, a.y, a.w, a.h), "{a:?}");
        }
    }

    #[test]
    fn area_outside_the_image_or_empty_is_an_invalid_region() {
        let f = &fixtures()[0];
        for a in [
            area(0, 0, 0, 10),
            area(0, 0, 10, 0),
            area(299, 0, 2, 1),
            area(0, 199, 1, 2),
            area(u32::MAX, 0, 2, 2),
            area(300, 0, 1, 1),
        ] {
            assert!(matches!(decode(&f.data, a, 0, u64::MAX), Err(Jp2Error::InvalidRegion)), "{a:?}");
        }
        // One pixel at an odd column vanishes at reduce 1.
        assert!(matches!(decode(&f.data, area(1, 1, 1, 1), 1, u64::MAX), Err(Jp2Error::InvalidRegion)));
    }

    #[test]
    fn reduction_beyond_the_available_levels_is_refused() {
        let f = &fixtures()[0];
        let info = probe(&f.data).unwrap();
        assert!(decode(&f.data, full(&info), info.levels - 1, u64::MAX).is_ok());
        match decode(&f.data, full(&info), info.levels, u64::MAX) {
            Err(Jp2Error::InvalidReduce { reduce, levels }) => assert_eq!((reduce, levels), (info.levels, info.levels)),
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn output_over_max_pixels_is_refused_before_decoding() {
        let f = &fixtures()[0];
        match decode(&f.data, area(0, 0, 300, 200), 0, 59_999) {
            Err(Jp2Error::TooLarge { pixels, limit }) => assert_eq!((pixels, limit), (60_000, 59_999)),
            other => panic!("{other:?}"),
        }
        assert!(decode(&f.data, area(0, 0, 300, 200), 1, 15_000).is_ok());
        // Checked before decoding: fails the same on a header-only stream.
        let cut = &f.data[..f.data.len() / 2];
        assert!(matches!(decode(cut, area(0, 0, 300, 200), 0, 10), Err(Jp2Error::TooLarge { .. })));
    }

    #[test]
    fn rgba_and_gray_alpha_keep_their_alpha_channel() {
        for name in ["rgba_tiled", "gray_alpha_untiled"] {
            let f = fixtures().iter().find(|f| f.name == name).unwrap();
            let info = probe(&f.data).unwrap();
            assert!(info.has_alpha);
            let px = decode(&f.data, area(3, 5, 20, 11), 0, u64::MAX).unwrap();
            assert!(px.layout().has_alpha());
            assert!(px == f.expected.crop(3, 5, 20, 11));
        }
    }

    /// sYCC 4:2:0 planes for `w x h`, lossless, with the RGB the decoder must produce.
    fn sycc_420(w: u32, h: u32, container: Container, declare: bool) -> (Vec<u8>, Pixels) {
        let (cw, ch) = (w.div_ceil(2), h.div_ceil(2));
        let y: Vec<i32> = (0..h).flat_map(|y| (0..w).map(move |x| (sample(x, y, 0) * 255.0) as i32)).collect();
        let cb: Vec<i32> =
            (0..ch).flat_map(|y| (0..cw).map(move |x| (sample(x * 2, y * 2, 1) * 255.0) as i32)).collect();
        let cr: Vec<i32> =
            (0..ch).flat_map(|y| (0..cw).map(move |x| (sample(x * 2, y * 2, 2) * 255.0) as i32)).collect();
        let plane = |dx, data: &Vec<i32>| EncodePlane {
            dx,
            dy: dx,
            precision: 8,
            signed: false,
            alpha: false,
            data: data.clone(),
        };
        let planes = [plane(1, &y), plane(2, &cb), plane(2, &cr)];
        let colour = if declare { opj::COLOR_SPACE::OPJ_CLRSPC_SYCC } else { opj::COLOR_SPACE::OPJ_CLRSPC_UNSPECIFIED };
        let params = EncodeParams { levels: 3, tile_size: Some((32, 32)), container, ..params() };
        let data = encode_planes(w, h, &planes, colour, false, &params).unwrap();
        let mut rgb = Vec::new();
        for yy in 0..h as usize {
            for xx in 0..w as usize {
                let ci = (yy / 2) * cw as usize + xx / 2;
                let mut rows = vec![vec![y[yy * w as usize + xx]], vec![cb[ci]], vec![cr[ci]]];
                sycc_to_rgb_row(&mut rows, 8);
                rgb.extend(rows.iter().map(|r| r[0] as u8));
            }
        }
        (data, Pixels::new(w, h, Layout::Rgb, rgb).unwrap())
    }

    #[test]
    fn subsampled_sycc_is_upsampled_and_converted_to_rgb() {
        for (container, declare) in [(Container::Jp2, true), (Container::J2k, false)] {
            let (data, want) = sycc_420(75, 49, container, declare);
            let info = probe(&data).unwrap();
            assert_eq!(info.components, 3);
            let px = decode(&data, full(&info), 0, u64::MAX).unwrap();
            assert_eq!(px.layout(), Layout::Rgb);
            assert!(px == want, "{container:?}: differs by {}", max_abs_diff(&px, &want));
            for r in 0..info.levels {
                let whole = decode(&data, full(&info), r, u64::MAX).unwrap();
                assert_eq!((whole.width(), whole.height()), info.reduced_size(r));
                for a in
                    [area(1, 1, 7, 5), area(33, 17, 30, 31), area(74, 48, 1, 1), area(0, 0, 75, 49), area(31, 0, 3, 49)]
                {
                    let m = info.reduced_area(a, r);
                    if m.w == 0 || m.h == 0 {
                        continue;
                    }
                    let px = decode(&data, a, r, u64::MAX).unwrap();
                    assert!(px == whole.crop(m.x, m.y, m.w, m.h), "{container:?} r{r} {a:?}");
                }
            }
        }
    }

    #[test]
    fn signed_components_are_offset_into_the_unsigned_range() {
        let data: Vec<i32> = vec![-128, -1, 0, 127];
        let planes =
            [Plane { data: &data, w: 4, h: 1, x0: 0, y0: 0, dx: 1, dy: 1, precision: 8, signed: true, alpha: false }];
        let px = planes_to_pixels(&planes, false, Rect { x0: 0, y0: 0, w: 4, h: 1 }).unwrap();
        assert_eq!(px.data(), &[0, 127, 128, 255]);
        // And through the codec.
        let enc = [EncodePlane { dx: 1, dy: 1, precision: 8, signed: true, alpha: false, data: data.clone() }];
        let file = encode_planes(
            4,
            1,
            &enc,
            opj::COLOR_SPACE::OPJ_CLRSPC_GRAY,
            false,
            &EncodeParams { levels: 1, ..params() },
        )
        .unwrap();
        let info = probe(&file).unwrap();
        assert!(info.signed);
        assert_eq!(decode(&file, full(&info), 0, u64::MAX).unwrap().data(), &[0, 127, 128, 255]);
    }

    #[test]
    fn conversion_upsamples_by_repetition_relative_to_absolute_coordinates() {
        // A 2x-subsampled plane whose first sample is at absolute column 3
        // (reference columns 6..8) seen from an output starting at column 7.
        let data: Vec<i32> = vec![10, 20, 30, 40];
        let luma = vec![0i32; 5];
        let planes = [
            Plane { data: &luma, w: 5, h: 1, x0: 7, y0: 0, dx: 1, dy: 1, precision: 8, signed: false, alpha: false },
            Plane { data: &data, w: 4, h: 1, x0: 3, y0: 0, dx: 2, dy: 1, precision: 8, signed: false, alpha: false },
        ];
        let px = planes_to_pixels(&planes, false, Rect { x0: 7, y0: 0, w: 5, h: 1 }).unwrap();
        let alpha: Vec<u8> = px.data().chunks(2).map(|p| p[1]).collect();
        assert_eq!(alpha, vec![10, 20, 20, 30, 30]);
    }

    #[test]
    fn truncated_data_is_an_error_never_a_panic() {
        for name in
            ["rgb_tiled_lrcp", "rgb_untiled_precincts_rpcl", "raw_j2k_rgb_tiled_rpcl", "rgb_lossy_tiled_rpcl_layers"]
        {
            let f = fixtures().iter().find(|f| f.name == name).unwrap();
            let len = f.data.len();
            let mut cuts: Vec<usize> = (0..300.min(len)).collect();
            cuts.extend((300..len).step_by((len / 120).max(1)));
            cuts.push(len - 1);
            cuts.push(len - 2);
            let mut errors = 0;
            for &cut in &cuts {
                let data = &f.data[..cut];
                let probed = probe(data);
                let a = area(0, 0, f.width, f.height);
                match decode(data, a, 0, u64::MAX) {
                    Ok(px) => {
                        assert!(probed.is_ok());
                        assert_eq!((px.width(), px.height()), (f.width, f.height));
                    }
                    Err(e) => {
                        errors += 1;
                        assert!(
                            matches!(e, Jp2Error::Truncated { .. } | Jp2Error::Corrupt { .. }),
                            "{name} cut at {cut}: {e:?}"
                        );
                    }
                }
                let _ = decode(data, area(f.width / 2, f.height / 2, 9, 9), 1, u64::MAX);
            }
            // Only cuts in the last bytes (EOC) may still decode.
            assert!(errors + 2 >= cuts.len(), "{name}: {errors} errors for {} cuts", cuts.len());
        }
    }

    #[test]
    fn truncation_inside_the_data_is_reported_as_truncated() {
        let f = fixtures().iter().find(|f| f.name == "rgb_tiled_lrcp").unwrap();
        let data = &f.data[..f.data.len() * 2 / 3];
        let e = decode(data, area(0, 0, f.width, f.height), 0, u64::MAX).unwrap_err();
        assert!(matches!(e, Jp2Error::Truncated { .. }), "{e:?}");
        assert_eq!(e.to_string(), "JPEG 2000 data is truncated");
    }

    #[test]
    fn random_byte_flips_give_errors_or_pixels_never_a_panic() {
        let mut rng = XorShift(0x5EED_1234_ABCD_0001);
        let small = [
            fixture("flip_rgb_tiled", 64, 48, 3, 8, EncodeParams { tile_size: Some((32, 32)), levels: 3, ..params() }),
            fixture(
                "flip_lossy_rpcl",
                64,
                48,
                3,
                8,
                EncodeParams {
                    levels: 4,
                    lossless: false,
                    rate: Some(10.0),
                    layers: 2,
                    progression: Progression::Rpcl,
                    precincts: Some(vec![(32, 32)]),
                    ..params()
                },
            ),
            fixture(
                "flip_j2k_gray16",
                40,
                30,
                1,
                16,
                EncodeParams { tile_size: Some((16, 16)), levels: 2, container: Container::J2k, ..params() },
            ),
        ];
        let (mut ok, mut err) = (0, 0);
        for f in &small {
            for variant in 0..120 {
                let mut data = f.data.clone();
                let flips = 1 + rng.below(4);
                for _ in 0..flips {
                    // Bias towards the headers, where a flip changes the most.
                    let at = if variant % 2 == 0 { rng.below(data.len().min(260)) } else { rng.below(data.len()) };
                    data[at] ^= 1 << rng.below(8);
                }
                let _ = probe(&data);
                for (a, r) in [(area(0, 0, f.width, f.height), 0), (area(5, 7, 20, 13), 1)] {
                    match decode(&data, a, r, 1 << 22) {
                        Ok(px) => {
                            ok += 1;
                            assert!(px.width() > 0 && px.height() > 0);
                        }
                        Err(_) => err += 1,
                    }
                }
            }
        }
        assert!(ok > 0 && err > 0, "ok {ok}, err {err}");
    }

    /// A header as `parse_codestream` would accept it: one untiled component
    /// of `side × side` with 1×1 precincts (PPx = PPy = 0) at every level.
    fn header_with_unit_precincts(side: u32, decompositions: u32) -> Header {
        let coding =
            Coding { decompositions, cblk_w: 6, cblk_h: 6, precincts: Some(vec![(0, 0); decompositions as usize + 1]) };
        Header {
            container: Container::J2k,
            x0: 0,
            y0: 0,
            x1: side,
            y1: side,
            tx0: 0,
            ty0: 0,
            tdx: side,
            tdy: side,
            comps: vec![CompHeader { precision: 8, signed: false, dx: 1, dy: 1, coding }],
            layers: 1,
            colour: ColourSpec::None,
            cdef_alpha: None,
            palette: false,
        }
    }

    #[test]
    fn codec_memory_estimate_saturates_instead_of_wrapping() {
        // 2^31-1 square with 1×1 precincts: about 2^62 code-blocks and as many
        // precincts at resolution 0, times 400 and 200 bytes: beyond u64.
        // Unchecked, this wrapped to a small number (or panicked with
        // overflow checks on).
        let side = i32::MAX as u32;
        let hostile = header_with_unit_precincts(side, 0);
        let blocks = (u128::from(side) + 1) * (u128::from(side) + 1);
        assert!(blocks * u128::from(CODE_BLOCK_BYTES) > u128::from(u64::MAX), "the product must wrap u64");
        let (tables, tile) = hostile.codec_memory();
        assert_eq!(tile, u64::MAX);
        assert!(tables < MAX_CODEC_MEMORY);
        let e = hostile.check_codec_memory(MAX_CODEC_MEMORY).unwrap_err();
        assert!(matches!(e, Jp2Error::CodecLimit { what: "tile bookkeeping", needed: u64::MAX, .. }), "{e:?}");
        // With levels too, and many components (every sum saturates).
        let mut many = header_with_unit_precincts(side, 32);
        many.comps = vec![many.comps[0].clone(); 16384];
        assert_eq!(many.codec_memory().1, u64::MAX);
        assert!(many.check_codec_memory(MAX_CODEC_MEMORY).is_err());
        // A small image with the same coding is still admitted.
        assert!(header_with_unit_precincts(64, 2).check_codec_memory(MAX_CODEC_MEMORY).is_ok());
    }

    /// A small untiled codestream with its SIZ patched to claim `size x size`
    /// pixels in tiles of `tile` (untiled when `tile == size`).
    fn patched_siz(size: u32, tile: u32) -> Vec<u8> {
        let src = image8(64, 64, 1);
        let input = EncodeInput { width: 64, height: 64, components: 1, precision: 8, samples: Samples::U8(&src) };
        let mut data = encode(&input, &EncodeParams { levels: 3, container: Container::J2k, ..params() }).unwrap();
        for (at, v) in [(8, size), (12, size), (24, tile), (28, tile)] {
            data[at..at + 4].copy_from_slice(&v.to_be_bytes());
        }
        data
    }

    #[test]
    fn hostile_header_claiming_100000_square_is_refused_or_fails_cleanly() {
        let untiled = patched_siz(100_000, 100_000);
        let info_err = probe(&untiled).unwrap_err();
        assert!(matches!(info_err, Jp2Error::CodecLimit { .. }), "{info_err:?}");
        let started = std::time::Instant::now();
        let e = decode(&untiled, area(0, 0, 64, 64), 0, 1 << 20).unwrap_err();
        assert!(matches!(e, Jp2Error::CodecLimit { .. }), "{e:?}");
        assert!(started.elapsed().as_millis() < 100);

        // Tiled 1024: admitted (9604 tiles); OpenJPEG then fails on the
        // mismatched data, or decodes garbage, but stays within bounds.
        let tiled = patched_siz(100_000, 1024);
        let info = probe(&tiled).unwrap();
        assert_eq!((info.width, info.tiles_x, info.tiles_y), (100_000, 98, 98));
        let _ = decode(&tiled, area(0, 0, 64, 64), 0, 1 << 20);
        let _ = decode(&tiled, area(50_000, 50_000, 64, 64), 2, 1 << 20);

        // Too many tiles for the standard.
        assert!(matches!(probe(&patched_siz(100_000, 64)), Err(Jp2Error::Corrupt { .. })));
        // Coordinates OpenJPEG cannot address.
        assert!(matches!(probe(&patched_siz(3_000_000_000, 1 << 30)), Err(Jp2Error::Unsupported(_))));
    }

    /// Peak resident memory of this process, in KiB (Linux).
    fn peak_rss_kib() -> Option<u64> {
        let status = std::fs::read_to_string("/proc/self/status").ok()?;
        let line = status.lines().find(|l| l.starts_with("VmHWM:"))?;
        line.split_whitespace().nth(1)?.parse().ok()
    }

    #[test]
    #[ignore = "run in a child process by hostile_header_decode_stays_within_a_small_memory_peak"]
    fn hostile_memory_child() {
        let Some(mode) = std::env::var_os("TESSERA_JP2_MEMORY_CHILD") else { return };
        let limit = if mode == "nolimit" { u64::MAX } else { MAX_CODEC_MEMORY };
        let before = peak_rss_kib().unwrap_or(0);
        for data in [patched_siz(100_000, 100_000), patched_siz(100_000, 1024)] {
            let r = decode_with_limit(&data, area(0, 0, 64, 64), 0, 1 << 20, limit);
            println!("RESULT={:?}", r.map(|p| (p.width(), p.height())));
        }
        println!("PEAK_BEFORE_KIB={before}");
        println!("PEAK_KIB={}", peak_rss_kib().unwrap_or(0));
    }

    #[test]
    fn hostile_header_decode_stays_within_a_small_memory_peak() {
        if peak_rss_kib().is_none() {
            return; // not Linux
        }
        let crate_path = module_path!().split_once("::").map_or("", |(_, rest)| rest);
        let name = format!("{crate_path}::hostile_memory_child");
        let out = std::process::Command::new(std::env::current_exe().unwrap())
            .args([name.as_str(), "--exact", "--ignored", "--nocapture", "--test-threads=1"])
            .env("TESSERA_JP2_MEMORY_CHILD", "limit")
            .output()
            .unwrap();
        let stdout = String::from_utf8_lossy(&out.stdout);
        let peak: u64 = stdout
            .lines()
            .find_map(|l| l.strip_prefix("PEAK_KIB="))
            .and_then(|v| v.trim().parse().ok())
            .unwrap_or_else(|| panic!("child said: {stdout}"));
        // The tiled variant's 9604 tile headers cost ~70 MB inside OpenJPEG;
        // the untiled one is refused before OpenJPEG allocates anything.
        assert!(peak < 200 * 1024, "peak RSS {peak} KiB\n{stdout}");
    }

    #[test]
    fn memory_stream_callbacks_follow_openjpeg_semantics() {
        let bytes: Vec<u8> = (0..10).collect();
        let mut src = MemSource { data: &bytes, pos: 0, hit_end: false };
        let user = (&mut src as *mut MemSource).cast::<c_void>();
        let mut buf = [0u8; 8];
        // SAFETY (test): `user` points at `src` for the duration of these
        // calls and `buf` has room for the requested bytes.
        unsafe {
            assert_eq!(source_read(buf.as_mut_ptr().cast(), 4, user), 4);
            assert_eq!(&buf[..4], &[0, 1, 2, 3]);
            assert_eq!(source_skip(3, user), 3, "skip returns a count");
            assert_eq!(source_read(buf.as_mut_ptr().cast(), 8, user), 3, "short read at the end");
            assert_eq!(&buf[..3], &[7, 8, 9]);
            assert_eq!(source_read(buf.as_mut_ptr().cast(), 8, user), usize::MAX, "-1 at the end, never 0");
            assert_eq!(source_skip(1, user), -1);
            assert_eq!(source_seek(2, user), 1);
            assert_eq!(source_skip(100, user), 8, "skip stops at the end");
            assert_eq!(source_seek(10, user), 1, "seek to the end is allowed");
            assert_eq!(source_seek(11, user), 0, "seek past the end is refused");
            assert_eq!(source_seek(-1, user), 0);
        }
        assert!(src.hit_end);

        let mut sink = VecSink::default();
        let user = (&mut sink as *mut VecSink).cast::<c_void>();
        let mut data = *b"abcdef";
        // SAFETY (test): as above.
        unsafe {
            assert_eq!(sink_skip(2, user), 2);
            assert_eq!(sink_write(data.as_mut_ptr().cast(), 6, user), 6);
            assert_eq!(sink_seek(0, user), 1);
            assert_eq!(sink_write(data.as_mut_ptr().cast(), 2, user), 2);
        }
        assert_eq!(sink.buf, b"ababcdef");
    }

    #[test]
    fn decoding_from_several_threads_at_once_gives_identical_results() {
        let f = fixtures().iter().find(|f| f.name == "rgb_lossy_tiled_rpcl_layers").unwrap();
        let want = decode(&f.data, area(10, 20, 200, 150), 1, u64::MAX).unwrap();
        std::thread::scope(|s| {
            let handles: Vec<_> = (0..4)
                .map(|_| {
                    s.spawn(|| {
                        (0..5)
                            .map(|_| decode(&f.data, area(10, 20, 200, 150), 1, u64::MAX).unwrap())
                            .collect::<Vec<_>>()
                    })
                })
                .collect();
            for h in handles {
                for px in h.join().unwrap() {
                    assert!(px == want);
                }
            }
        });
    }

    #[test]
    fn encoder_rejects_inconsistent_input() {
        let px = [0u8, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 200];
        let good = EncodeInput { width: 2, height: 2, components: 3, precision: 8, samples: Samples::U8(&px) };
        assert!(encode(&good, &params()).is_ok());
        let bad = [
            EncodeInput { components: 5, ..good },
            EncodeInput { components: 0, ..good },
            EncodeInput { width: 3, ..good },
            EncodeInput { precision: 9, ..good },
            EncodeInput { width: 0, ..good },
            EncodeInput { precision: 4, ..good },
        ];
        for input in &bad {
            assert!(matches!(encode(input, &params()), Err(Jp2Error::InvalidInput(_))), "{input:?}");
        }
        for p in [
            EncodeParams { layers: 0, ..params() },
            EncodeParams { precincts: Some(vec![(48, 64)]), ..params() },
            EncodeParams { tile_size: Some((0, 8)), ..params() },
            EncodeParams { lossless: false, rate: Some(0.5), ..params() },
        ] {
            assert!(matches!(encode(&good, &p), Err(Jp2Error::InvalidInput(_))), "{p:?}");
        }
    }

    #[test]
    fn lossy_encoding_follows_the_requested_rate() {
        let (w, h) = (256u32, 256u32);
        let src = image8(w, h, 3);
        let input = EncodeInput { width: w, height: h, components: 3, precision: 8, samples: Samples::U8(&src) };
        let lossless = encode(&input, &params()).unwrap();
        let lossy = encode(&input, &EncodeParams { lossless: false, rate: Some(20.0), ..params() }).unwrap();
        let raw = (w * h * 3) as usize;
        assert!(lossy.len() < raw / 15, "{} bytes", lossy.len());
        assert!(lossy.len() < lossless.len() / 2);
    }

    #[test]
    fn errors_never_mention_paths_or_openjpeg_text() {
        let f = fixtures().iter().find(|f| f.name == "rgb_tiled_lrcp").unwrap();
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("secret-name.jp2");
        std::fs::write(&path, &f.data[..f.data.len() / 2]).unwrap();
        let data = std::fs::read(&path).unwrap();
        let e = decode(&data, area(0, 0, f.width, f.height), 0, u64::MAX).unwrap_err();
        let text = e.to_string();
        assert!(!text.contains("secret-name") && !text.contains('/'), "{text}");
        assert!(e.detail().is_some_and(|d| !d.is_empty()), "{e:?}");
        let mut flipped = f.data.clone();
        flipped[60] ^= 0xFF;
        if let Err(e) = decode(&flipped, area(0, 0, 8, 8), 0, u64::MAX) {
            assert!(!e.to_string().contains('/'));
        }
    }
}
