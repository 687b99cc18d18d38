//! The IIIF Image API request model, independent of the API version.
//!
//! The version-specific grammars (`v2`, `v3`) parse URL segments into these
//! types; everything downstream (the planner, the cache key, the renderer) sees
//! only these. Parsing is pure: no I/O, no knowledge of the image.

pub mod info;
pub mod v2;
pub mod v3;

pub use crate::model::{Format, Quality, Rotation};
use std::fmt;

/// The API version a request came in through; it decides the grammar, the
/// info.json shape and the canonical URL form.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum ApiVersion {
    V2,
    V3,
}

/// The region of the source image to cut.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum Region {
    Full,
    Square,
    /// Pixels: x, y, w, h (w, h > 0).
    Pixels {
        x: u32,
        y: u32,
        w: u32,
        h: u32,
    },
    /// Percent of the full image: x, y, w, h (w, h > 0).
    Percent {
        x: f64,
        y: f64,
        w: f64,
        h: f64,
    },
}

/// How the region is scaled.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum SizeKind {
    /// The region's own size (2.x `full`).
    Full,
    /// The largest size allowed by the server's limits (`max`).
    Max,
    /// Scale to this width, keeping the aspect ratio.
    Width(u32),
    /// Scale to this height, keeping the aspect ratio.
    Height(u32),
    /// Scale by this percentage (> 0).
    Percent(f64),
    /// Exactly w × h (may distort).
    Exact(u32, u32),
    /// The largest size that fits inside w × h, keeping the aspect ratio.
    BestFit(u32, u32),
}

/// A size request: its kind and whether scaling above the region's size is
/// allowed (always in 2.x; only with `^` in 3.0).
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Size {
    pub kind: SizeKind,
    pub upscale: bool,
}

/// What a format extension in a URL means to this server.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum FormatLookup {
    Supported(Format),
    /// A format the IIIF spec names that this server does not produce (→ 415).
    KnownUnsupported,
    /// Not an image format at all (→ 400).
    Unknown,
}

pub fn lookup_format(ext: &str) -> FormatLookup {
    match ext {
        "jpg" => FormatLookup::Supported(Format::Jpg),
        "png" => FormatLookup::Supported(Format::Png),
        "gif" => FormatLookup::Supported(Format::Gif),
        "tif" => FormatLookup::Supported(Format::Tif),
        "webp" => FormatLookup::Supported(Format::Webp),
        "jp2" | "pdf" => FormatLookup::KnownUnsupported,
        _ => FormatLookup::Unknown,
    }
}

/// A parsed image request, version-neutral.
#[derive(Clone, Debug, PartialEq)]
pub struct ImageRequest {
    pub region: Region,
    pub size: Size,
    pub rotation: Rotation,
    pub quality: Quality,
    pub format: Format,
}

/// Formats a float the IIIF way: integers without a decimal point, others
/// without trailing zeros.
pub fn fmt_number(v: f64) -> String {
    if v.fract() == 0.0 && v.abs() < 1e15 {
        format!("{}", v as i64)
    } else {
        let s = format!("{v:.6}");
        s.trim_end_matches('0').trim_end_matches('.').to_string()
    }
}

/// Parses a non-negative decimal number as IIIF URLs write them: digits with
/// an optional fraction; no sign, exponent, `inf` or `nan`.
pub(crate) fn parse_decimal(s: &str) -> Option<f64> {
    if s.is_empty() || s.len() > 32 {
        return None;
    }
    let mut seen_dot = false;
    let mut digits = 0;
    for c in s.chars() {
        match c {
            '0'..='9' => digits += 1,
            '.' if !seen_dot => seen_dot = true,
            _ => return None,
        }
    }
    if digits == 0 {
        return None;
    }
    s.parse::<f64>().ok().filter(|v| v.is_finite())
}

/// Parses a non-negative integer: ASCII digits only, fits in u32.
pub(crate) fn parse_uint(s: &str) -> Option<u32> {
    if s.is_empty() || s.len() > 10 || !s.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    s.parse::<u32>().ok()
}

impl fmt::Display for Quality {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn numbers_are_formatted_without_trailing_zeros() {
        assert_eq!(fmt_number(90.0), "90");
        assert_eq!(fmt_number(22.5), "22.5");
        assert_eq!(fmt_number(0.125), "0.125");
    }

    #[test]
    fn decimals_reject_signs_exponents_and_words() {
        assert_eq!(parse_decimal("12.5"), Some(12.5));
        assert_eq!(parse_decimal(".5"), Some(0.5));
        for bad in ["", "-1", "+1", "1e3", "nan", "inf", "1.2.3", ".", "1,0"] {
            assert_eq!(parse_decimal(bad), None, "{bad}");
        }
    }

    #[test]
    fn integers_reject_anything_but_digits_and_overflow() {
        assert_eq!(parse_uint("0"), Some(0));
        assert_eq!(parse_uint("4294967295"), Some(u32::MAX));
        for bad in ["", "-1", "1.0", "4294967296", "99999999999", " 1", "0x10"] {
            assert_eq!(parse_uint(bad), None, "{bad}");
        }
    }

    #[test]
    fn quarter_turns_are_recognised() {
        let r = |d| Rotation { mirror: false, degrees: d };
        assert_eq!(r(0.0).quarter_turns(), Some(0));
        assert_eq!(r(270.0).quarter_turns(), Some(3));
        assert_eq!(r(45.0).quarter_turns(), None);
    }
}
