//! The shared vocabulary of the layers: rectangles in source pixels, what a
//! source's header tells the planner and info.json, the output operations
//! (formats, qualities, rotation), and the limits on one request. It depends on nothing else in the crate, so the codecs, the
//! IIIF grammar and the planner all speak it without depending on each
//! other (`plan` and `iiif` re-export these names).

/// What the planner needs to know of a source (all from its header).
#[derive(Clone, Debug, PartialEq)]
pub struct SourceFacts {
    pub width: u32,
    pub height: u32,
    /// Reduction factors the decoder can produce natively, ascending, starting
    /// with 1 (JPEG DCT scaling: 1, 2, 4, 8; JPEG 2000: 2^0 .. 2^(levels-1)).
    pub scale_factors: Vec<u32>,
}

/// The shape of a source as info.json describes it: its size, and its own
/// tiles when it has them (a tiled JPEG 2000's codestream tiles).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ImageShape {
    pub width: u32,
    pub height: u32,
    pub native_tile: Option<(u32, u32)>,
    /// Whether a request for part of a native tile is cut from one decode
    /// of the whole tile, kept (a JPEG 2000's codestream tiles, in the
    /// decoded-unit cache), so that smaller tiles cost no more decoding;
    /// false where each request decodes its own chunks (a TIFF's tiles).
    pub native_tile_cut: bool,
}

/// Limits on what one request may produce or decode (the `[limits]` section
/// of the configuration, deserialised as is).
#[derive(Clone, Copy, Debug, PartialEq, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Limits {
    pub max_width: u32,
    pub max_height: u32,
    pub max_area: u64,
    /// Largest allowed ratio of output to region size on either axis (1.0 = no upscaling).
    pub max_upscale: f64,
    /// Largest number of pixels one request may decode.
    pub max_decode_pixels: u64,
    /// Largest body of an uncompressed output format (TIFF), in bytes,
    /// estimated as canvas width × height × `plan::UNCOMPRESSED_BYTES_PER_PIXEL`.
    pub max_output_bytes: u64,
    /// Largest GIF canvas, in pixels (GIF's quantiser is slow).
    pub max_gif_pixels: u64,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            max_width: 10_000,
            max_height: 10_000,
            max_area: 50_000_000,
            max_upscale: 4.0,
            max_decode_pixels: 200_000_000,
            max_output_bytes: 64 << 20,
            max_gif_pixels: 1_000_000,
        }
    }
}

/// An axis-aligned rectangle in source pixels.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct Rect {
    pub x: u32,
    pub y: u32,
    pub w: u32,
    pub h: u32,
}

impl Rect {
    /// The rectangle on the grid of an image reduced by `scale` (corners mapped
    /// outward: floor for the origin, ceil for the far edge), clipped to the
    /// reduced image `(ceil(width/scale), ceil(height/scale))`.
    pub fn at_scale(&self, scale: u32, full_w: u32, full_h: u32) -> Rect {
        let s = scale.max(1) as u64;
        let max_x = (full_w as u64).div_ceil(s);
        let max_y = (full_h as u64).div_ceil(s);
        let x0 = self.x as u64 / s;
        let y0 = self.y as u64 / s;
        let x1 = ((self.x as u64 + self.w as u64).div_ceil(s)).min(max_x).max(x0 + 1);
        let y1 = ((self.y as u64 + self.h as u64).div_ceil(s)).min(max_y).max(y0 + 1);
        Rect { x: x0 as u32, y: y0 as u32, w: (x1 - x0) as u32, h: (y1 - y0) as u32 }
    }
}

/// Output format.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Format {
    Jpg,
    Png,
    Gif,
    Tif,
    Webp,
}

impl Format {
    pub fn extension(self) -> &'static str {
        match self {
            Format::Jpg => "jpg",
            Format::Png => "png",
            Format::Gif => "gif",
            Format::Tif => "tif",
            Format::Webp => "webp",
        }
    }
    pub fn media_type(self) -> &'static str {
        match self {
            Format::Jpg => "image/jpeg",
            Format::Png => "image/png",
            Format::Gif => "image/gif",
            Format::Tif => "image/tiff",
            Format::Webp => "image/webp",
        }
    }
    /// Whether the format can carry transparency (for arbitrary rotation).
    pub fn has_alpha(self) -> bool {
        matches!(self, Format::Png | Format::Gif | Format::Tif | Format::Webp)
    }
    pub const ALL: [Format; 5] = [Format::Jpg, Format::Png, Format::Gif, Format::Tif, Format::Webp];
}

/// Rotation in degrees clockwise, after an optional horizontal mirror.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Rotation {
    pub mirror: bool,
    /// In [0, 360).
    pub degrees: f64,
}

impl Rotation {
    pub const NONE: Rotation = Rotation { mirror: false, degrees: 0.0 };

    /// The rotation as a multiple of 90 (0..=3), if it is one.
    pub fn quarter_turns(&self) -> Option<u8> {
        let d = self.degrees;
        (0..4u8).find(|&q| (d - 90.0 * q as f64).abs() < 1e-9)
    }
}

/// Output quality.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Quality {
    Default,
    Color,
    Gray,
    Bitonal,
}

impl Quality {
    pub fn as_str(self) -> &'static str {
        match self {
            Quality::Default => "default",
            Quality::Color => "color",
            Quality::Gray => "gray",
            Quality::Bitonal => "bitonal",
        }
    }
    pub const ALL: [Quality; 4] = [Quality::Default, Quality::Color, Quality::Gray, Quality::Bitonal];
}
