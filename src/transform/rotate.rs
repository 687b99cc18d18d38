//! Mirroring, exact quarter turns, and arbitrary rotation (bilinear sampling
//! into the bounding box, background transparent when the output format has
//! alpha and white otherwise). Rotation is clockwise, as IIIF specifies.

use crate::pixels::{Layout, Pixels};

/// Flips left–right.
pub fn mirror(p: &Pixels) -> Pixels {
    let c = p.layout().channels();
    let stride = p.stride();
    let mut out = Vec::with_capacity(p.byte_len());
    for row in p.data().chunks_exact(stride.max(1)) {
        for px in row.chunks_exact(c).rev() {
            out.extend_from_slice(px);
        }
    }
    Pixels::new(p.width(), p.height(), p.layout(), out).unwrap_or_else(|_| p.clone())
}

/// Rotates clockwise by `q` quarter turns (1, 2 or 3).
pub fn quarter(p: &Pixels, q: u8) -> Pixels {
    let (w, h) = (p.width() as usize, p.height() as usize);
    let c = p.layout().channels();
    let src = p.data();
    let (ow, oh) = if q % 2 == 1 { (h, w) } else { (w, h) };
    let mut out = vec![0u8; src.len()];
    for y in 0..oh {
        for x in 0..ow {
            // The source pixel that lands at (x, y).
            let (sx, sy) = match q % 4 {
                1 => (y, h - 1 - x),
                2 => (w - 1 - x, h - 1 - y),
                3 => (w - 1 - y, x),
                _ => (x, y),
            };
            let si = (sy * w + sx) * c;
            let di = (y * ow + x) * c;
            out[di..di + c].copy_from_slice(&src[si..si + c]);
        }
    }
    Pixels::new(ow as u32, oh as u32, p.layout(), out).unwrap_or_else(|_| p.clone())
}

/// The bounding box of a `width × height` image turned by `degrees`, as
/// [`arbitrary`] sizes its output.
pub fn arbitrary_size(width: u32, height: u32, degrees: f64) -> (u32, u32) {
    let (w, h) = (f64::from(width), f64::from(height));
    let t = degrees.to_radians();
    let (s, co) = (t.sin(), t.cos());
    let ow = (w * co.abs() + h * s.abs()).round().max(1.0) as u32;
    let oh = (w * s.abs() + h * co.abs()).round().max(1.0) as u32;
    (ow, oh)
}

/// Rotates clockwise by `degrees`, into the bounding box of the rotated image.
pub fn arbitrary(p: &Pixels, degrees: f64, transparent: bool) -> Pixels {
    let (w, h) = (p.width() as f64, p.height() as f64);
    let t = degrees.to_radians();
    let (s, co) = (t.sin(), t.cos());
    let (ow, oh) = arbitrary_size(p.width(), p.height(), degrees);
    let out_layout = if transparent { p.layout().with_alpha() } else { p.layout() };
    let sc = p.layout().channels();
    let oc = out_layout.channels();
    let bg: [u8; 4] = if transparent { [0, 0, 0, 0] } else { [255, 255, 255, 255] };
    let mut out = vec![0u8; ow as usize * oh as usize * oc];
    let (cx, cy) = (w / 2.0, h / 2.0);
    let (ocx, ocy) = (ow as f64 / 2.0, oh as f64 / 2.0);
    let src = p.data();
    let (iw, ih) = (p.width() as i64, p.height() as i64);
    let fetch = |x: i64, y: i64, ch: usize| -> Option<f64> {
        if x < 0 || y < 0 || x >= iw || y >= ih {
            None
        } else {
            Some(src[((y * iw + x) as usize) * sc + ch] as f64)
        }
    };
    for oy in 0..oh {
        for ox in 0..ow {
            // Inverse-rotate the output pixel centre into the source.
            let dx = ox as f64 + 0.5 - ocx;
            let dy = oy as f64 + 0.5 - ocy;
            let sx = dx * co + dy * s + cx - 0.5;
            let sy = -dx * s + dy * co + cy - 0.5;
            let di = (oy as usize * ow as usize + ox as usize) * oc;
            let x0 = sx.floor() as i64;
            let y0 = sy.floor() as i64;
            let (fx, fy) = (sx - x0 as f64, sy - y0 as f64);
            // Coverage: the weight of the four taps that fall inside the image.
            let inside = |x: i64, y: i64| x >= 0 && y >= 0 && x < iw && y < ih;
            let weights = [(1.0 - fx) * (1.0 - fy), fx * (1.0 - fy), (1.0 - fx) * fy, fx * fy];
            let taps = [(x0, y0), (x0 + 1, y0), (x0, y0 + 1), (x0 + 1, y0 + 1)];
            let cover: f64 = taps.iter().zip(weights).filter(|(t, _)| inside(t.0, t.1)).map(|(_, w)| w).sum();
            if cover <= 1e-6 {
                out[di..di + oc].copy_from_slice(&bg[..oc]);
                continue;
            }
            let colour_channels = if p.layout().has_alpha() { sc - 1 } else { sc };
            let src_alpha = |x, y| if p.layout().has_alpha() { fetch(x, y, sc - 1).unwrap_or(0.0) } else { 255.0 };
            // Premultiplied bilinear over the taps inside the image.
            let mut alpha = 0.0;
            let mut acc = [0.0f64; 3];
            for ((tx, ty), wgt) in taps.iter().zip(weights) {
                if !inside(*tx, *ty) {
                    continue;
                }
                let a = src_alpha(*tx, *ty) * wgt;
                alpha += a;
                for (ch, slot) in acc.iter_mut().enumerate().take(colour_channels) {
                    *slot += fetch(*tx, *ty, ch).unwrap_or(0.0) * a;
                }
            }
            let a_out = alpha; // 0..255, includes coverage
            for ch in 0..colour_channels {
                let v = if alpha > 0.0 { acc[ch] / alpha } else { 0.0 };
                out[di + ch] = if transparent {
                    v.round().clamp(0.0, 255.0) as u8
                } else {
                    // Composite over the white background by coverage.
                    (v * a_out / 255.0 + 255.0 * (1.0 - a_out / 255.0)).round().clamp(0.0, 255.0) as u8
                };
            }
            if out_layout.has_alpha() {
                // Over white the result is opaque; over nothing it keeps coverage.
                out[di + oc - 1] = if transparent { a_out.round().clamp(0.0, 255.0) as u8 } else { 255 };
            }
        }
    }
    Pixels::new(ow, oh, out_layout, out).unwrap_or_else(|_| Pixels::filled(ow, oh, Layout::Rgb, &bg))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn numbered(w: u32, h: u32) -> Pixels {
        Pixels::new(w, h, Layout::Gray, (0..w * h).map(|i| i as u8).collect()).unwrap()
    }

    #[test]
    fn mirror_flips_rows() {
        assert_eq!(mirror(&numbered(3, 2)).data(), &[2, 1, 0, 5, 4, 3]);
    }

    #[test]
    fn quarter_turns_rotate_clockwise() {
        // 0 1 2
        // 3 4 5
        let p = numbered(3, 2);
        let r = quarter(&p, 1);
        assert_eq!((r.width(), r.height()), (2, 3));
        assert_eq!(r.data(), &[3, 0, 4, 1, 5, 2]);
        assert_eq!(quarter(&p, 2).data(), &[5, 4, 3, 2, 1, 0]);
        assert_eq!(quarter(&p, 3).data(), &[2, 5, 1, 4, 0, 3]);
    }

    #[test]
    fn four_quarter_turns_are_the_identity() {
        let p = numbered(5, 3);
        let r = quarter(&quarter(&quarter(&quarter(&p, 1), 1), 1), 1);
        assert_eq!(r, p);
    }

    #[test]
    fn arbitrary_rotation_fills_corners_with_the_background() {
        let p = Pixels::filled(100, 100, Layout::Rgb, &[0, 0, 0]);
        let white = arbitrary(&p, 45.0, false);
        assert_eq!((white.width(), white.height()), (141, 141));
        assert_eq!(&white.data()[..3], &[255, 255, 255]);
        let centre = (70 * 141 + 70) * 3;
        assert_eq!(&white.data()[centre..centre + 3], &[0, 0, 0]);
        let clear = arbitrary(&p, 45.0, true);
        assert_eq!(clear.layout(), Layout::Rgba);
        assert_eq!(clear.data()[3], 0);
        assert_eq!(clear.data()[(70 * 141 + 70) * 4 + 3], 255);
    }
}
