//! Resizing with `fast_image_resize` (SIMD convolution): Lanczos3 when
//! shrinking, Catmull-Rom when enlarging. Alpha is premultiplied during the
//! convolution so transparent pixels don't bleed colour.

use fast_image_resize::images::{Image, ImageRef};
use fast_image_resize::{FilterType, PixelType, ResizeAlg, ResizeOptions, Resizer};

use crate::pixels::{Layout, Pixels};

fn pixel_type(l: Layout) -> PixelType {
    match l {
        Layout::Gray => PixelType::U8,
        Layout::GrayAlpha => PixelType::U8x2,
        Layout::Rgb => PixelType::U8x3,
        Layout::Rgba => PixelType::U8x4,
    }
}

/// The filter used for a given direction of scaling.
pub fn filter_for(src_w: u32, src_h: u32, dst_w: u32, dst_h: u32) -> FilterType {
    if dst_w <= src_w && dst_h <= src_h {
        FilterType::Lanczos3
    } else {
        FilterType::CatmullRom
    }
}

/// Resizes to exactly `w × h`. Returns the input unchanged when sizes match.
pub fn resize(p: Pixels, w: u32, h: u32) -> Pixels {
    resize_from(p, None, w, h)
}

/// A sub-pixel source rectangle (left, top, width, height) in the input's pixels.
pub type SrcCrop = (f64, f64, f64, f64);

/// Resizes the `crop` rectangle of the input (the whole input if `None`) to
/// exactly `w × h`. A fractional crop keeps the content where it belongs when
/// the input was decoded at a reduced scale and so snapped outward to whole
/// reduced pixels.
pub fn resize_from(p: Pixels, crop: Option<SrcCrop>, w: u32, h: u32) -> Pixels {
    let crop = effective_crop(crop, p.width(), p.height());
    if crop.is_none() && p.width() == w && p.height() == h {
        return p;
    }
    let layout = p.layout();
    let pt = pixel_type(layout);
    let (sw, sh) = crop.map(|c| (c.2.ceil() as u32, c.3.ceil() as u32)).unwrap_or((p.width(), p.height()));
    let filter = filter_for(sw, sh, w, h);
    let src = match ImageRef::new(p.width(), p.height(), p.data(), pt) {
        Ok(s) => s,
        Err(_) => return nearest(&p, w, h),
    };
    let mut dst = Image::new(w, h, pt);
    let mut opts = ResizeOptions::new().resize_alg(ResizeAlg::Convolution(filter)).use_alpha(layout.has_alpha());
    if let Some((l, t, cw, ch)) = crop {
        opts = opts.crop(l, t, cw, ch);
    }
    if Resizer::new().resize(&src, &mut dst, &opts).is_err() {
        return nearest(&p, w, h);
    }
    Pixels::new(w, h, layout, dst.into_vec()).unwrap_or_else(|_| nearest(&p, w, h))
}

/// The crop that applies to a `width × height` input: none when it is the
/// whole input or empty. The GPU backend decides with this too.
pub fn effective_crop(crop: Option<SrcCrop>, width: u32, height: u32) -> Option<SrcCrop> {
    crop.filter(|c| {
        let whole = c.0.abs() < 1e-9
            && c.1.abs() < 1e-9
            && (c.2 - f64::from(width)).abs() < 1e-9
            && (c.3 - f64::from(height)).abs() < 1e-9;
        !whole && c.2 > 0.0 && c.3 > 0.0
    })
}

/// Nearest-neighbour fallback (never expected to run; keeps the stage total).
fn nearest(p: &Pixels, w: u32, h: u32) -> Pixels {
    let c = p.layout().channels();
    let mut out = Vec::with_capacity(w as usize * h as usize * c);
    for y in 0..h {
        let sy = ((y as u64 * p.height() as u64) / h.max(1) as u64) as usize;
        for x in 0..w {
            let sx = ((x as u64 * p.width() as u64) / w.max(1) as u64) as usize;
            let i = (sy * p.width() as usize + sx) * c;
            out.extend_from_slice(&p.data()[i..i + c]);
        }
    }
    Pixels::new(w, h, p.layout(), out).unwrap_or_else(|_| Pixels::filled(w, h, p.layout(), &[0; 4]))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_flat_image_stays_flat_at_any_size() {
        let p = Pixels::filled(100, 60, Layout::Rgb, &[10, 200, 30]);
        for (w, h) in [(50, 30), (7, 3), (300, 180), (1, 1)] {
            let r = resize(p.clone(), w, h);
            assert_eq!((r.width(), r.height()), (w, h));
            assert!(r.data().chunks(3).all(|px| px == [10, 200, 30]), "{w}x{h}");
        }
    }

    #[test]
    fn a_fractional_crop_shifts_content_by_sub_pixels() {
        // A ramp: value = 10 * x. Cropping from x = 2.5 and halving the width
        // samples the ramp at 2.5 + (i + 0.5) * 2 − 0.5 ... centres 3.5, 5.5, ...
        let mut d = vec![];
        for _y in 0..4 {
            for x in 0..20u8 {
                d.push(x * 10);
            }
        }
        let p = Pixels::new(20, 4, Layout::Gray, d).unwrap();
        let r = resize_from(p, Some((2.5, 0.0, 16.0, 4.0)), 8, 4);
        assert_eq!(r.width(), 8);
        // Centre of output pixel 3 lies at source x = 2.5 + 3.5 * 2 = 9.5 → value 90 (pixel centres at x + 0.5).
        assert!((r.data()[3] as i32 - 90).abs() <= 3, "{:?}", &r.data()[..8]);
    }

    #[test]
    fn downscale_by_two_averages_neighbours() {
        // Alternating columns of 0 and 200 average to about 100.
        let mut d = vec![];
        for _y in 0..64 {
            for x in 0..64 {
                d.push(if x % 2 == 0 { 0 } else { 200 });
            }
        }
        let p = Pixels::new(64, 64, Layout::Gray, d).unwrap();
        let r = resize(p, 32, 32);
        let mean = r.data().iter().map(|&v| v as u32).sum::<u32>() / (32 * 32);
        assert!((95..=105).contains(&mean), "mean {mean}");
    }
}
