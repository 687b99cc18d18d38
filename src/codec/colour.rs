//! Colour management: pixels decoded from a source with an embedded ICC
//! profile (Adobe RGB, ProPhoto, a camera's or a scanner's profile, a gray
//! gamma) are converted to sRGB, what browsers and viewers assume of an
//! untagged image, with Little CMS 2 (the `lcms2` crate). Output images
//! carry no profile, so sRGB is what they mean.
//!
//! - [`judge`] runs once per source, at probe: it keeps a profile only when
//!   a conversion is needed and possible (a valid profile of the pixels'
//!   colour space that is not sRGB itself); otherwise the pixels pass as
//!   they are, as before colour management.
//! - [`cmyk_to_srgb`] turns a CMYK JPEG's samples into sRGB, through its
//!   CMYK profile when it has one.
//! - [`to_srgb`] runs after each decode. Transforms are built once per
//!   profile and layout and shared by every worker (`NO_CACHE` transforms
//!   are thread-safe); at most [`MAX_TRANSFORMS`] are kept.
//!
//! The intent is perceptual, as Pillow's `ImageCms` and most viewers use
//! by default; for matrix-shaper profiles (Adobe RGB, ProPhoto, sRGB) it
//! is the colorimetric conversion.

use std::collections::HashMap;
use std::hash::{Hash, Hasher};
use std::sync::{Arc, Mutex, OnceLock};

use lcms2::{CIExyY, ColorSpaceSignature, DisallowCache, Flags, GlobalContext, InfoType, Intent, Locale, PixelFormat};
use lcms2::{Profile, ToneCurve, Transform};

use crate::pixels::{Layout, Pixels};

/// Transforms kept at most; past that the map starts again (a server sees
/// a handful of distinct profiles).
pub const MAX_TRANSFORMS: usize = 64;

/// Profiles larger than this are ignored (real ones are a few KB to 1 MB).
const MAX_PROFILE_BYTES: usize = 4 << 20;

type Shared = Transform<u8, u8, GlobalContext, DisallowCache>;

/// What a transform takes: pixels of a layout (to the same layout in
/// sRGB), or CMYK samples (to RGB), plain or inverted (Adobe).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
enum Input {
    Pixels(Layout),
    Cmyk { inverted: bool },
}

type Key = (u64, Input);

fn transforms() -> &'static Mutex<HashMap<Key, Option<Arc<Shared>>>> {
    static MAP: OnceLock<Mutex<HashMap<Key, Option<Arc<Shared>>>>> = OnceLock::new();
    MAP.get_or_init(|| Mutex::new(HashMap::new()))
}

fn key(icc: &[u8], input: Input) -> Key {
    let mut h = std::collections::hash_map::DefaultHasher::new();
    icc.hash(&mut h);
    (h.finish(), input)
}

/// The profile to convert from, or `None` when the pixels should pass as
/// they are: no profile, sRGB already, unreadable, too large, or of
/// another colour space than the pixels (an RGB profile on a gray image).
pub fn judge(icc: Option<Vec<u8>>, layout: Layout) -> Option<Arc<[u8]>> {
    let icc = icc.filter(|p| !p.is_empty() && p.len() <= MAX_PROFILE_BYTES)?;
    transform(&icc, Input::Pixels(layout))?;
    Some(icc.into())
}

/// The shared transform for `icc` and `input`, built on first use.
fn transform(icc: &[u8], input: Input) -> Option<Arc<Shared>> {
    let k = key(icc, input);
    let map = transforms();
    if let Some(t) = map.lock().unwrap_or_else(|e| e.into_inner()).get(&k) {
        return t.clone();
    }
    let built = match input {
        Input::Pixels(layout) => build(icc, layout),
        Input::Cmyk { inverted } => build_cmyk(icc, inverted),
    }
    .map(Arc::new);
    let mut m = map.lock().unwrap_or_else(|e| e.into_inner());
    if m.len() >= MAX_TRANSFORMS {
        m.clear();
    }
    m.insert(k, built.clone());
    built
}

fn build(icc: &[u8], layout: Layout) -> Option<Shared> {
    let input = Profile::new_icc(icc).ok()?;
    let description = input.info(InfoType::Description, Locale::none()).unwrap_or_default();
    if description.trim_start().starts_with("sRGB") {
        return None;
    }
    let gray = layout.is_gray();
    match (input.color_space(), gray) {
        (ColorSpaceSignature::RgbData, false) | (ColorSpaceSignature::GrayData, true) => {}
        _ => return None,
    }
    let (output, format) = match layout {
        Layout::Gray => (srgb_gray()?, PixelFormat::GRAY_8),
        Layout::GrayAlpha => (srgb_gray()?, PixelFormat::GRAYA_8),
        Layout::Rgb => (Profile::new_srgb(), PixelFormat::RGB_8),
        Layout::Rgba => (Profile::new_srgb(), PixelFormat::RGBA_8),
    };
    let flags = if layout.has_alpha() { Flags::NO_CACHE | Flags::COPY_ALPHA } else { Flags::NO_CACHE };
    Transform::new_flags_context(GlobalContext::new(), &input, format, &output, format, Intent::Perceptual, flags).ok()
}

fn build_cmyk(icc: &[u8], inverted: bool) -> Option<Shared> {
    let input = Profile::new_icc(icc).ok()?;
    if input.color_space() != ColorSpaceSignature::CmykData {
        return None;
    }
    let format = if inverted { PixelFormat::CMYK_8_REV } else { PixelFormat::CMYK_8 };
    let ctx = GlobalContext::new();
    Transform::new_flags_context(
        ctx,
        &input,
        format,
        &Profile::new_srgb(),
        PixelFormat::RGB_8,
        Intent::Perceptual,
        Flags::NO_CACHE,
    )
    .ok()
}

/// CMYK samples (four a pixel, inverted when `inverted`, as Adobe stores
/// them) to sRGB RGB: through `icc` when it is a usable CMYK profile, else
/// the device conversion every viewer falls back to, R = (1 - C)(1 - K).
pub fn cmyk_to_srgb(cmyk: &[u8], icc: Option<&[u8]>, inverted: bool) -> Vec<u8> {
    let n = cmyk.len() / 4;
    let mut rgb = vec![0u8; n * 3];
    let t = icc.filter(|p| p.len() <= MAX_PROFILE_BYTES).and_then(|p| transform(p, Input::Cmyk { inverted }));
    if let Some(t) = t {
        t.transform_pixels(&cmyk[..n * 4], &mut rgb);
        return rgb;
    }
    for (px, out) in cmyk.chunks_exact(4).zip(rgb.chunks_exact_mut(3)) {
        // Ink amounts, 255 = full ink.
        let ink = |v: u8| if inverted { 255 - v } else { v };
        let white_k = 255 - ink(px[3]) as u32;
        for c in 0..3 {
            out[c] = (((255 - ink(px[c]) as u32) * white_k + 127) / 255) as u8;
        }
    }
    rgb
}

/// A gray profile with sRGB's white point and tone curve: gray stays gray.
fn srgb_gray() -> Option<Profile> {
    let d65 = CIExyY { x: 0.3127, y: 0.3290, Y: 1.0 };
    // IEC 61966-2-1: Y = ((X + 0.055) / 1.055)^2.4 above 0.04045, X / 12.92 below.
    let curve = ToneCurve::new_parametric(4, &[2.4, 1.0 / 1.055, 0.055 / 1.055, 1.0 / 12.92, 0.04045]).ok()?;
    Profile::new_gray(&d65, &curve).ok()
}

/// Converts decoded pixels from `icc` (as [`judge`] kept it) to sRGB, in
/// place. Pixels whose layout the profile does not fit pass unchanged.
pub fn to_srgb(mut px: Pixels, icc: &[u8]) -> Pixels {
    if let Some(t) = transform(icc, Input::Pixels(px.layout())) {
        t.transform_in_place(px.data_mut());
    }
    px
}

#[cfg(test)]
mod tests {
    use super::*;

    /// An RGB matrix-shaper profile with sRGB's curve and wider (Adobe RGB
    /// 1998) primaries, made with Little CMS itself.
    fn wide_rgb() -> Vec<u8> {
        let d65 = CIExyY { x: 0.3127, y: 0.3290, Y: 1.0 };
        let primaries = lcms2::CIExyYTRIPLE {
            Red: CIExyY { x: 0.64, y: 0.33, Y: 1.0 },
            Green: CIExyY { x: 0.21, y: 0.71, Y: 1.0 },
            Blue: CIExyY { x: 0.15, y: 0.06, Y: 1.0 },
        };
        let curve = ToneCurve::new(2.2);
        let p = Profile::new_rgb(&d65, &primaries, &[&curve, &curve, &curve]).unwrap();
        p.icc().unwrap()
    }

    #[test]
    fn cmyk_without_a_profile_converts_by_ink_either_way_round() {
        // No ink is white, full K is black, full C is cyan (no red).
        let plain = [0, 0, 0, 0, 0, 0, 0, 255, 255, 0, 0, 0];
        assert_eq!(cmyk_to_srgb(&plain, None, false), vec![255, 255, 255, 0, 0, 0, 0, 255, 255]);
        let inverted: Vec<u8> = plain.iter().map(|v| 255 - v).collect();
        assert_eq!(cmyk_to_srgb(&inverted, None, true), vec![255, 255, 255, 0, 0, 0, 0, 255, 255]);
        // Half cyan and half black: 127/255 × 127/255 of white in red.
        assert_eq!(cmyk_to_srgb(&[128, 0, 0, 128], None, false), vec![63, 127, 127]);
    }

    #[test]
    fn an_srgb_profile_or_a_broken_one_is_not_kept_and_pixels_pass_as_they_are() {
        let srgb = Profile::new_srgb().icc().unwrap();
        assert!(judge(Some(srgb), Layout::Rgb).is_none());
        assert!(judge(Some(b"not a profile".to_vec()), Layout::Rgb).is_none());
        assert!(judge(None, Layout::Rgb).is_none());
        // An RGB profile does not describe gray pixels.
        assert!(judge(Some(wide_rgb()), Layout::Gray).is_none());
    }

    #[test]
    fn a_wide_gamut_green_becomes_a_more_saturated_srgb_green_and_alpha_is_kept() {
        let icc = judge(Some(wide_rgb()), Layout::Rgba).expect("kept");
        let px = Pixels::new(2, 1, Layout::Rgba, vec![0, 200, 0, 77, 128, 128, 128, 255]).unwrap();
        let out = to_srgb(px, &icc);
        let d = out.data();
        // Wide green is outside sRGB: clipped towards pure green, red and
        // blue at zero; neutral gray stays neutral; alpha untouched.
        assert_eq!((d[0], d[2], d[3]), (0, 0, 77), "{d:?}");
        assert!(d[1] > 200, "{d:?}");
        assert!(d[4].abs_diff(d[5]) <= 1 && d[5].abs_diff(d[6]) <= 1, "{d:?}");
        assert_eq!(d[7], 255);
    }
}
