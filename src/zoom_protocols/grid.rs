//! The arithmetic Deep Zoom and Zoomify share (pure): a tile given in the
//! pixels of a level that is the full image scaled by 1/scale (a power of
//! two) becomes an Image API request, a region of the full-resolution
//! image and an output size, computed as an IIIF tile of that region is
//! (`ceil(region / scale)` on each axis, as info.json's `scaleFactors`
//! and the viewers that read it do). So a Deep Zoom or Zoomify tile whose
//! region is an IIIF tile's is the same request, with the same canonical
//! form and cache entry.

use crate::model::Rect;

/// A zoom-protocol tile as an Image API request.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct IiifTile {
    /// The region, in full-resolution pixels, inside the image.
    pub region: Rect,
    /// The output width and height.
    pub width: u32,
    pub height: u32,
}

impl IiifTile {
    /// The Image API region parameter: `x,y,w,h`.
    pub fn region_param(&self) -> String {
        let r = self.region;
        format!("{},{},{},{}", r.x, r.y, r.w, r.h)
    }

    /// The Image API 2.1 size parameter: `w,h` (the planner's canonical
    /// form turns it into `w,` when that names the same size).
    pub fn size_param(&self) -> String {
        format!("{},{}", self.width, self.height)
    }
}

/// The tile covering the level pixels `[x0, x1) × [y0, y1)` of an image of
/// `width × height` seen at 1/`scale`; the level rectangle is clipped to
/// the image. `None` when it holds no pixel of the image.
pub fn at_scale(width: u32, height: u32, scale: u64, x0: u64, y0: u64, x1: u64, y1: u64) -> Option<IiifTile> {
    let scale = scale.max(1);
    let (w, h) = (u64::from(width), u64::from(height));
    let rx = x0.checked_mul(scale)?;
    let ry = y0.checked_mul(scale)?;
    if x1 <= x0 || y1 <= y0 || rx >= w || ry >= h {
        return None;
    }
    let rx1 = x1.saturating_mul(scale).min(w);
    let ry1 = y1.saturating_mul(scale).min(h);
    let (rw, rh) = (rx1 - rx, ry1 - ry);
    // Every value is at most the image's width or height, so fits a u32.
    let region = Rect { x: rx as u32, y: ry as u32, w: rw as u32, h: rh as u32 };
    Some(IiifTile { region, width: rw.div_ceil(scale) as u32, height: rh.div_ceil(scale) as u32 })
}

/// `ceil(log2(n))` for `n ≥ 1` (0 for 0 and 1): the number of halvings
/// that bring `n` down to one pixel.
pub fn ceil_log2(n: u32) -> u32 {
    if n <= 1 {
        0
    } else {
        32 - (n - 1).leading_zeros()
    }
}

/// Parses a decimal number of ASCII digits only (no sign, no spaces), at
/// most nine digits so that it fits a `u32` with room to spare.
pub fn number(s: &str) -> Option<u32> {
    if s.is_empty() || s.len() > 9 || !s.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    s.parse().ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_level_tile_maps_to_the_iiif_tile_of_its_region_and_size() {
        // 1200 × 800 at 1/2: the level is 600 × 400; tile (1, 0) of 256.
        let t = at_scale(1200, 800, 2, 256, 0, 512, 256).unwrap();
        assert_eq!(t.region, Rect { x: 512, y: 0, w: 512, h: 512 });
        assert_eq!((t.width, t.height), (256, 256));
        assert_eq!((t.region_param(), t.size_param()), ("512,0,512,512".to_string(), "256,256".to_string()));
    }

    #[test]
    fn edge_tiles_are_clipped_and_their_size_rounds_up_as_iiif_does() {
        // 1001 wide at 1/2: the last column's region is 1001 - 512 = 489
        // pixels, its width ceil(489 / 2) = 245.
        let t = at_scale(1001, 700, 2, 256, 256, 512, 512).unwrap();
        assert_eq!(t.region, Rect { x: 512, y: 512, w: 489, h: 188 });
        assert_eq!((t.width, t.height), (245, 94));
    }

    #[test]
    fn a_tile_outside_the_image_or_empty_is_none() {
        assert_eq!(at_scale(1000, 1000, 4, 250, 0, 300, 10), None);
        assert_eq!(at_scale(1000, 1000, 1, 10, 10, 10, 20), None);
        assert_eq!(at_scale(1000, 1000, 1 << 40, 1 << 30, 0, 1 << 31, 1), None, "overflow is outside");
    }

    #[test]
    fn ceil_log2_counts_halvings_to_one_pixel() {
        for n in 1..5000u32 {
            let l = ceil_log2(n);
            assert!(1u64 << l >= u64::from(n), "{n}");
            assert!(l == 0 || (1u64 << (l - 1)) < u64::from(n), "{n}");
        }
        assert_eq!(ceil_log2(u32::MAX), 32);
    }

    #[test]
    fn numbers_are_plain_digits_only() {
        assert_eq!(number("0"), Some(0));
        assert_eq!(number("0012"), Some(12));
        for bad in ["", "+1", "-1", " 1", "1 ", "1e3", "0x10", "1234567890", "١"] {
            assert_eq!(number(bad), None, "{bad:?}");
        }
    }
}
