//! The planner: a pure function from (source facts, parsed request, limits) to
//! a [`Plan`] — the source rectangle, the reduce factor to decode at, the output
//! size, and the canonical form of the request (used for the `Link` header, the
//! ETag and the cache key).
//!
//! Architecture invariant: planning does no I/O and allocates nothing large.
//! Every size limit is checked here, before any pixel is decoded.
//!
//! Limits bound the *output canvas*, the image after rotation (for an
//! arbitrary angle, the bounding box of the rotated size), not only the size
//! parameter:
//!
//! * `max_width`, `max_height` and `max_area` (published in info.json) apply
//!   to the size and to the canvas. A size beyond them is answered `400`.
//! * `max_output_bytes` bounds the body of a format that is not compressed
//!   (TIFF: width × height × 4, RGBA being the worst case the planner cannot
//!   rule out without the source's channels). Beyond it: `413`.
//! * `max_gif_pixels` bounds GIF's canvas (its colour quantiser is the
//!   slowest encoder by far), and GIF's own 65535 limit per side. Beyond it:
//!   `413`.
//!
//! `max` and `^max` never fail on these: they mean "as large as this server
//! gives", so the size shrinks (aspect ratio kept) until the rotated canvas
//! and the format's bound fit. The canonical form then names the size chosen.

use http::StatusCode;

use crate::error::{Error, Result};
use crate::iiif::{fmt_number, ApiVersion, Format, ImageRequest, Quality, Region, Rotation, SizeKind};
pub use crate::model::{Limits, Rect, SourceFacts};

/// Bytes per canvas pixel of an uncompressed TIFF in the worst case (RGBA:
/// a source with alpha, an arbitrary rotation's transparent corners, or
/// gray with alpha, which the TIFF encoder writes as RGBA).
pub const UNCOMPRESSED_BYTES_PER_PIXEL: u64 = 4;

/// The largest side a GIF can have (its dimensions are 16-bit).
pub const GIF_MAX_SIDE: u32 = u16::MAX as u32;

/// Everything the renderer needs, decided before any pixel is touched.
#[derive(Clone, Debug, PartialEq)]
pub struct Plan {
    /// The region in full-resolution source pixels.
    pub region: Rect,
    /// Decode at 1/scale (one of the source's scale factors).
    pub scale: u32,
    /// The region on the reduced grid: what the decoder returns.
    pub decoded: Rect,
    /// Size after scaling, before rotation.
    pub scaled_w: u32,
    pub scaled_h: u32,
    pub rotation: Rotation,
    pub quality: Quality,
    pub format: Format,
    /// Final output size, after rotation.
    pub out_w: u32,
    pub out_h: u32,
    /// `{region}/{size}/{rotation}/{quality}.{format}` in canonical form.
    pub canonical: String,
}

impl Plan {
    /// The exact region inside the decoded pixels (left, top, width, height),
    /// in reduced pixels; `None` at scale 1, where it is the whole buffer.
    pub fn src_crop(&self) -> Option<(f64, f64, f64, f64)> {
        if self.scale <= 1 {
            return None;
        }
        let s = self.scale as f64;
        let left = self.region.x as f64 / s - self.decoded.x as f64;
        let top = self.region.y as f64 / s - self.decoded.y as f64;
        let w = (self.region.w as f64 / s).min(self.decoded.w as f64 - left);
        let h = (self.region.h as f64 / s).min(self.decoded.h as f64 - top);
        Some((left, top, w, h))
    }
}

/// Plans a request. Pure: no I/O.
pub fn plan(src: &SourceFacts, req: &ImageRequest, limits: &Limits, version: ApiVersion) -> Result<Plan> {
    if src.width == 0 || src.height == 0 {
        return Err(Error::undecodable("source reports a zero dimension"));
    }
    let region = resolve_region(src, &req.region)?;
    let (sw, sh) = resolve_size(region, req, limits)?;
    // The canvas after rotation, and the format's own bound.
    let (out_w, out_h) = rotated_size(sw, sh, req.rotation);
    if let Some(fault) = output_fault(out_w, out_h, req.format, limits) {
        return Err(fault.error());
    }

    let scale = choose_scale(&src.scale_factors, region, sw, sh);
    let decoded = region.at_scale(scale, src.width, src.height);
    let decode_px = decoded.w as u64 * decoded.h as u64;
    if decode_px > limits.max_decode_pixels {
        return Err(Error::bad_request(
            "The requested region is too large to decode at this size; request a smaller size",
        ));
    }

    let canonical = canonical(src, region, sw, sh, req, version);
    Ok(Plan {
        region,
        scale,
        decoded,
        scaled_w: sw,
        scaled_h: sh,
        rotation: req.rotation,
        quality: req.quality,
        format: req.format,
        out_w,
        out_h,
        canonical,
    })
}

fn resolve_region(src: &SourceFacts, region: &Region) -> Result<Rect> {
    let (w, h) = (src.width, src.height);
    let outside = || Error::bad_request("The requested region lies outside the image");
    match *region {
        Region::Full => Ok(Rect { x: 0, y: 0, w, h }),
        Region::Square => {
            let side = w.min(h);
            Ok(Rect { x: (w - side) / 2, y: (h - side) / 2, w: side, h: side })
        }
        Region::Pixels { x, y, w: rw, h: rh } => {
            if x >= w || y >= h || rw == 0 || rh == 0 {
                return Err(outside());
            }
            Ok(Rect { x, y, w: rw.min(w - x), h: rh.min(h - y) })
        }
        Region::Percent { x, y, w: pw, h: ph } => {
            let fx = |p: f64| ((p / 100.0) * w as f64).round().clamp(0.0, w as f64) as u32;
            let fy = |p: f64| ((p / 100.0) * h as f64).round().clamp(0.0, h as f64) as u32;
            let (x0, y0) = (fx(x), fy(y));
            if x0 >= w || y0 >= h {
                return Err(outside());
            }
            let x1 = fx(x + pw).max(x0 + 1);
            let y1 = fy(y + ph).max(y0 + 1);
            Ok(Rect { x: x0, y: y0, w: x1 - x0, h: y1 - y0 })
        }
    }
}

fn scaled_dim(other_req: u32, this_region: u32, other_region: u32) -> u32 {
    let v = (this_region as f64 * other_req as f64 / other_region as f64).round();
    (v as u64).clamp(1, u32::MAX as u64) as u32
}

fn resolve_size(region: Rect, req: &ImageRequest, limits: &Limits) -> Result<(u32, u32)> {
    let (rw, rh) = (region.w, region.h);
    let upscale_ok = req.size.upscale;
    let (w, h) = match req.size.kind {
        SizeKind::Full => (rw, rh),
        SizeKind::Max => {
            // 2.x `max` and 3.0 `max`: the region's size, shrunk to the limits.
            // 3.0 `^max`: as large as the limits allow.
            let cap = if upscale_ok { limits.max_upscale.max(1.0) } else { 1.0 };
            max_size(rw, rh, cap, req, limits)?
        }
        SizeKind::Width(w) => (w, scaled_dim(w, rh, rw)),
        SizeKind::Height(h) => (scaled_dim(h, rw, rh), h),
        SizeKind::Percent(p) => {
            let w = (rw as f64 * p / 100.0).round();
            let h = (rh as f64 * p / 100.0).round();
            if w < 1.0 || h < 1.0 {
                return Err(Error::bad_request("Requested size is zero pixels"));
            }
            if w > u32::MAX as f64 || h > u32::MAX as f64 {
                return Err(Error::bad_request("Requested size exceeds the server's limits"));
            }
            (w as u32, h as u32)
        }
        SizeKind::Exact(w, h) => (w, h),
        SizeKind::BestFit(bw, bh) => {
            let (mut bw, mut bh) = (bw, bh);
            if !upscale_ok {
                bw = bw.min(rw);
                bh = bh.min(rh);
            }
            if rw as u64 * bh as u64 >= rh as u64 * bw as u64 {
                (bw, scaled_dim(bw, rh, rw).min(bh))
            } else {
                (scaled_dim(bh, rw, rh).min(bw), bh)
            }
        }
    };
    if w == 0 || h == 0 {
        return Err(Error::bad_request("Requested size is zero pixels"));
    }
    if w > rw || h > rh {
        if !upscale_ok {
            return Err(Error::bad_request("Scaling above the region's size requires ^"));
        }
        let ratio = (w as f64 / rw as f64).max(h as f64 / rh as f64);
        if ratio > limits.max_upscale + 1e-9 {
            return Err(Error::bad_request("Requested upscaling exceeds the server's limit"));
        }
    }
    if w > limits.max_width || h > limits.max_height || w as u64 * h as u64 > limits.max_area {
        return Err(Error::bad_request("Requested size exceeds the server's maxWidth, maxHeight or maxArea"));
    }
    Ok((w, h))
}

/// Why an output canvas is refused.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Fault {
    /// Beyond `max_width`, `max_height` or `max_area`.
    Canvas,
    /// An uncompressed body beyond `max_output_bytes`.
    Bytes,
    /// A GIF beyond `max_gif_pixels` or 65535 on a side.
    Gif,
}

impl Fault {
    fn error(self) -> Error {
        match self {
            Fault::Canvas => Error::bad_request("The rotated image would exceed the server's maxWidth, maxHeight or maxArea"),
            Fault::Bytes => Error::with_status(
                StatusCode::PAYLOAD_TOO_LARGE,
                "An uncompressed TIFF of this size would exceed the server's output limit; request a smaller size or another format",
            ),
            Fault::Gif => Error::with_status(
                StatusCode::PAYLOAD_TOO_LARGE,
                "A GIF of this size would exceed the server's GIF limit; request a smaller size or another format",
            ),
        }
    }
}

/// What is wrong with an output canvas of `w × h` (after rotation) in
/// `format`, if anything.
fn output_fault(w: u32, h: u32, format: Format, l: &Limits) -> Option<Fault> {
    let px = w as u64 * h as u64;
    if w > l.max_width || h > l.max_height || px > l.max_area {
        return Some(Fault::Canvas);
    }
    match format {
        Format::Tif if px.saturating_mul(UNCOMPRESSED_BYTES_PER_PIXEL) > l.max_output_bytes => Some(Fault::Bytes),
        Format::Gif if w > GIF_MAX_SIDE || h > GIF_MAX_SIDE || px > l.max_gif_pixels => Some(Fault::Gif),
        _ => None,
    }
}

/// `max` / `^max`: the region's size times the largest factor (at most
/// `cap`) whose size, rotated canvas and format bound all fit the limits,
/// the aspect ratio kept. Shrinks past rounding (a canvas side rounds up by
/// half a pixel) by at least one pixel of the long side per step.
fn max_size(rw: u32, rh: u32, cap: f64, req: &ImageRequest, l: &Limits) -> Result<(u32, u32)> {
    let (rwf, rhf) = (rw as f64, rh as f64);
    // The canvas of the region at factor 1, unrounded.
    let (cw, ch) = canvas(rwf, rhf, req.rotation);
    let (mut side_w, mut side_h, mut area) = (l.max_width as f64, l.max_height as f64, l.max_area as f64);
    match req.format {
        Format::Tif => area = area.min((l.max_output_bytes / UNCOMPRESSED_BYTES_PER_PIXEL) as f64),
        Format::Gif => {
            side_w = side_w.min(GIF_MAX_SIDE as f64);
            side_h = side_h.min(GIF_MAX_SIDE as f64);
            area = area.min(l.max_gif_pixels as f64);
        }
        _ => {}
    }
    let mut f = cap
        .min(l.max_width as f64 / rwf)
        .min(l.max_height as f64 / rhf)
        .min((l.max_area as f64 / (rwf * rhf)).sqrt())
        .min(side_w / cw)
        .min(side_h / ch)
        .min((area / (cw * ch)).sqrt());
    let mut fault = Fault::Canvas;
    // Each step takes at least a pixel off the long side; a few suffice.
    for _ in 0..64 {
        if f.is_nan() || f <= 0.0 {
            break;
        }
        let w = ((rwf * f).floor().min(u32::MAX as f64) as u32).max(1);
        let h = ((rhf * f).floor().min(u32::MAX as f64) as u32).max(1);
        let (ow, oh) = rotated_size(w, h, req.rotation);
        let size_fits = w <= l.max_width && h <= l.max_height && w as u64 * h as u64 <= l.max_area;
        match (size_fits, output_fault(ow, oh, req.format, l)) {
            (true, None) => return Ok((w, h)),
            (_, Some(x)) => fault = x,
            (false, None) => fault = Fault::Canvas,
        }
        if w == 1 && h == 1 {
            break;
        }
        let over = [
            ow as f64 / side_w,
            oh as f64 / side_h,
            (ow as f64 * oh as f64 / area).sqrt(),
            w as f64 / l.max_width as f64,
            h as f64 / l.max_height as f64,
            (w as f64 * h as f64 / l.max_area as f64).sqrt(),
        ]
        .into_iter()
        .fold(1.0, f64::max);
        let one_pixel_less = if rw >= rh { (w as f64 - 1.0) / rwf } else { (h as f64 - 1.0) / rhf };
        f = (f / over).min(one_pixel_less);
    }
    Err(fault.error())
}

/// The largest native reduction whose pixels still cover the output size on
/// both axes, so the final resize never upscales from a reduced level.
fn choose_scale(factors: &[u32], region: Rect, out_w: u32, out_h: u32) -> u32 {
    let mut best = 1;
    for &s in factors {
        if s == 0 {
            continue;
        }
        let s64 = s as u64;
        if region.w as u64 >= out_w as u64 * s64 && region.h as u64 >= out_h as u64 * s64 && s > best {
            best = s;
        }
    }
    best
}

/// The size after rotation: swapped by odd quarter turns, the bounding box
/// of the rotated rectangle for other angles (as `transform::rotate`
/// computes it).
fn rotated_size(w: u32, h: u32, rot: Rotation) -> (u32, u32) {
    match rot.quarter_turns() {
        Some(0) | Some(2) => (w, h),
        Some(_) => (h, w),
        None => {
            let (bw, bh) = canvas(w as f64, h as f64, rot);
            let side = |v: f64| v.round().max(1.0).min(u32::MAX as f64) as u32;
            (side(bw), side(bh))
        }
    }
}

/// The unrounded canvas of a `w × h` image after `rot`.
fn canvas(w: f64, h: f64, rot: Rotation) -> (f64, f64) {
    match rot.quarter_turns() {
        Some(0) | Some(2) => (w, h),
        Some(_) => (h, w),
        None => {
            let t = rot.degrees.to_radians();
            let (s, c) = (t.sin().abs(), t.cos().abs());
            (w * c + h * s, w * s + h * c)
        }
    }
}

fn canonical(src: &SourceFacts, r: Rect, w: u32, h: u32, req: &ImageRequest, v: ApiVersion) -> String {
    let full = r.x == 0 && r.y == 0 && r.w == src.width && r.h == src.height;
    let region = if full { "full".to_string() } else { format!("{},{},{},{}", r.x, r.y, r.w, r.h) };
    let size = match v {
        ApiVersion::V2 => {
            if (w, h) == (r.w, r.h) {
                "full".to_string()
            } else if scaled_dim(w, r.h, r.w) == h {
                format!("{w},")
            } else {
                format!("{w},{h}")
            }
        }
        ApiVersion::V3 => {
            let up = if w > r.w || h > r.h { "^" } else { "" };
            if (w, h) == (r.w, r.h) {
                "max".to_string()
            } else {
                format!("{up}{w},{h}")
            }
        }
    };
    let mirror = if req.rotation.mirror { "!" } else { "" };
    format!(
        "{region}/{size}/{mirror}{}/{}.{}",
        fmt_number(req.rotation.degrees),
        req.quality.as_str(),
        req.format.extension()
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::iiif::{v2, v3};
    use http::StatusCode;

    fn facts(w: u32, h: u32, f: &[u32]) -> SourceFacts {
        SourceFacts { width: w, height: h, scale_factors: f.to_vec() }
    }
    fn p2(src: &SourceFacts, url: &str) -> Result<Plan> {
        let s: Vec<&str> = url.split('/').collect();
        let req = v2::parse(s[0], s[1], s[2], s[3])?;
        plan(src, &req, &Limits::default(), ApiVersion::V2)
    }
    fn p3(src: &SourceFacts, url: &str) -> Result<Plan> {
        let s: Vec<&str> = url.split('/').collect();
        let req = v3::parse(s[0], s[1], s[2], s[3])?;
        plan(src, &req, &Limits::default(), ApiVersion::V3)
    }

    #[test]
    fn full_request_keeps_the_whole_image_at_scale_one() {
        let p = p2(&facts(1000, 800, &[1, 2, 4, 8]), "full/full/0/default.jpg").unwrap();
        assert_eq!(p.region, Rect { x: 0, y: 0, w: 1000, h: 800 });
        assert_eq!((p.scaled_w, p.scaled_h, p.scale), (1000, 800, 1));
        assert_eq!(p.canonical, "full/full/0/default.jpg");
    }

    #[test]
    fn square_region_is_centred_on_the_long_axis() {
        let p = p2(&facts(1000, 600, &[1]), "square/full/0/default.jpg").unwrap();
        assert_eq!(p.region, Rect { x: 200, y: 0, w: 600, h: 600 });
        let p = p2(&facts(600, 1000, &[1]), "square/full/0/default.jpg").unwrap();
        assert_eq!(p.region, Rect { x: 0, y: 200, w: 600, h: 600 });
    }

    #[test]
    fn pixel_region_is_clipped_at_the_image_edge() {
        let p = p2(&facts(1000, 800, &[1]), "900,700,500,500/full/0/default.jpg").unwrap();
        assert_eq!(p.region, Rect { x: 900, y: 700, w: 100, h: 100 });
        assert_eq!(p.canonical, "900,700,100,100/full/0/default.jpg");
    }

    #[test]
    fn region_wholly_outside_the_image_is_400() {
        let e = p2(&facts(1000, 800, &[1]), "1000,0,10,10/full/0/default.jpg").unwrap_err();
        assert_eq!(e.status(), StatusCode::BAD_REQUEST);
        let e = p2(&facts(1000, 800, &[1]), "0,800,10,10/full/0/default.jpg").unwrap_err();
        assert_eq!(e.status(), StatusCode::BAD_REQUEST);
    }

    #[test]
    fn percent_region_maps_to_pixels() {
        let p = p2(&facts(1000, 800, &[1]), "pct:10,10,50,50/full/0/default.jpg").unwrap();
        assert_eq!(p.region, Rect { x: 100, y: 80, w: 500, h: 400 });
        let p = p2(&facts(1000, 800, &[1]), "pct:90,90,50,50/full/0/default.jpg").unwrap();
        assert_eq!(p.region, Rect { x: 900, y: 720, w: 100, h: 80 });
    }

    #[test]
    fn width_only_size_keeps_the_aspect_ratio() {
        let p = p2(&facts(1000, 800, &[1]), "full/500,/0/default.jpg").unwrap();
        assert_eq!((p.scaled_w, p.scaled_h), (500, 400));
        assert_eq!(p.canonical, "full/500,/0/default.jpg");
        let p = p2(&facts(1000, 800, &[1]), "full/,200/0/default.jpg").unwrap();
        assert_eq!((p.scaled_w, p.scaled_h), (250, 200));
        assert_eq!(p.canonical, "full/250,/0/default.jpg");
    }

    #[test]
    fn mirador_edge_tile_gets_the_size_it_expects() {
        let src = facts(4000, 3000, &[1, 2, 4, 8]);
        let p = p2(&src, "2048,0,1952,2048/244,/0/default.jpg").unwrap();
        assert_eq!((p.scaled_w, p.scaled_h), (244, 256));
        assert_eq!(p.scale, 8, "1952/244 and 2048/256 are both exactly 8");
    }

    #[test]
    fn percent_size_scales_both_axes_and_zero_result_is_400() {
        let p = p2(&facts(1000, 800, &[1]), "full/pct:25/0/default.jpg").unwrap();
        assert_eq!((p.scaled_w, p.scaled_h), (250, 200));
        let e = p2(&facts(1000, 800, &[1]), "full/pct:0.01/0/default.jpg").unwrap_err();
        assert_eq!(e.status(), StatusCode::BAD_REQUEST);
    }

    #[test]
    fn exact_size_may_distort_and_is_canonical_as_w_h() {
        let p = p2(&facts(1000, 800, &[1]), "full/100,100/0/default.jpg").unwrap();
        assert_eq!((p.scaled_w, p.scaled_h), (100, 100));
        assert_eq!(p.canonical, "full/100,100/0/default.jpg");
    }

    #[test]
    fn best_fit_keeps_inside_the_box() {
        let p = p2(&facts(1000, 800, &[1]), "full/!500,500/0/default.jpg").unwrap();
        assert_eq!((p.scaled_w, p.scaled_h), (500, 400));
        let p = p2(&facts(800, 1000, &[1]), "full/!500,500/0/default.jpg").unwrap();
        assert_eq!((p.scaled_w, p.scaled_h), (400, 500));
    }

    #[test]
    fn upscaling_is_allowed_to_the_limit_in_v2_and_needs_caret_in_v3() {
        let src = facts(100, 100, &[1]);
        assert_eq!(p2(&src, "full/300,/0/default.jpg").unwrap().scaled_w, 300);
        let e = p2(&src, "full/500,/0/default.jpg").unwrap_err();
        assert_eq!(e.status(), StatusCode::BAD_REQUEST, "beyond max_upscale 4");
        let e = p3(&src, "full/300,/0/default.jpg").unwrap_err();
        assert_eq!(e.status(), StatusCode::BAD_REQUEST);
        assert_eq!(p3(&src, "full/^300,/0/default.jpg").unwrap().scaled_w, 300);
    }

    #[test]
    fn size_beyond_limits_is_400_but_max_shrinks_to_fit() {
        let src = facts(20_000, 10_000, &[1, 2, 4, 8, 16]);
        let e = p2(&src, "full/full/0/default.jpg").unwrap_err();
        assert_eq!(e.status(), StatusCode::BAD_REQUEST);
        let p = p2(&src, "full/max/0/default.jpg").unwrap();
        assert!(p.scaled_w <= 10_000 && p.scaled_h <= 10_000);
        assert!(p.scaled_w as u64 * p.scaled_h as u64 <= 50_000_000);
        assert_eq!(p.scaled_w, 2 * p.scaled_h);
    }

    #[test]
    fn reduce_factor_is_the_coarsest_level_that_still_covers_the_output() {
        let src = facts(8000, 6000, &[1, 2, 4, 8, 16, 32]);
        assert_eq!(p2(&src, "full/1000,/0/default.jpg").unwrap().scale, 8);
        assert_eq!(p2(&src, "full/1001,/0/default.jpg").unwrap().scale, 4);
        assert_eq!(p2(&src, "0,0,1024,1024/256,/0/default.jpg").unwrap().scale, 4);
        assert_eq!(p2(&src, "0,0,1024,1024/512,/0/default.jpg").unwrap().scale, 2);
        assert_eq!(p2(&src, "0,0,512,512/512,/0/default.jpg").unwrap().scale, 1);
        assert_eq!(p2(&src, "full/10,/0/default.jpg").unwrap().scale, 32);
    }

    #[test]
    fn decoded_rect_maps_region_corners_outward_on_the_reduced_grid() {
        let r = Rect { x: 3, y: 5, w: 10, h: 10 };
        assert_eq!(r.at_scale(4, 100, 100), Rect { x: 0, y: 1, w: 4, h: 3 });
        let edge = Rect { x: 96, y: 0, w: 5, h: 5 };
        assert_eq!(edge.at_scale(8, 101, 101), Rect { x: 12, y: 0, w: 1, h: 1 });
    }

    #[test]
    fn src_crop_is_the_exact_region_on_the_reduced_grid() {
        let src = facts(8000, 6000, &[1, 2, 4, 8]);
        let p = p2(&src, "489,374,298,475/59,/0/default.jpg").unwrap();
        assert_eq!(p.scale, 4);
        let (l, t, w, h) = p.src_crop().unwrap();
        assert!((l - 0.25).abs() < 1e-9 && (t - 0.5).abs() < 1e-9, "{l} {t}");
        assert!((w - 74.5).abs() < 1e-9 && (h - 118.75).abs() < 1e-9, "{w} {h}");
        assert_eq!(p2(&src, "0,0,512,512/512,/0/default.jpg").unwrap().src_crop(), None);
    }

    #[test]
    fn quarter_rotations_swap_dimensions_and_arbitrary_ones_take_the_bounding_box() {
        let src = facts(200, 100, &[1]);
        let p = p2(&src, "full/full/90/default.jpg").unwrap();
        assert_eq!((p.out_w, p.out_h), (100, 200));
        let p = p2(&src, "full/full/!180/default.png").unwrap();
        assert_eq!((p.out_w, p.out_h), (200, 100));
        assert_eq!(p.canonical, "full/full/!180/default.png");
        let p = p2(&src, "full/full/45/default.png").unwrap();
        assert_eq!((p.out_w, p.out_h), (212, 212));
        let p = p2(&src, "full/full/22.5/gray.jpg").unwrap();
        assert_eq!(p.canonical, "full/full/22.5/gray.jpg");
    }

    #[test]
    fn decode_limit_rejects_huge_regions_before_decoding() {
        let src = facts(100_000, 100_000, &[1]);
        let e = p2(&src, "full/100,/0/default.jpg").unwrap_err();
        assert_eq!(e.status(), StatusCode::BAD_REQUEST);
        // With reduction levels, the same request is cheap.
        let src = facts(100_000, 100_000, &[1, 2, 4, 8, 16, 32, 64, 128]);
        assert_eq!(p2(&src, "full/100,/0/default.jpg").unwrap().scale, 128);
    }

    fn p3_with(src: &SourceFacts, url: &str, limits: &Limits) -> Result<Plan> {
        let s: Vec<&str> = url.split('/').collect();
        let req = v3::parse(s[0], s[1], s[2], s[3])?;
        plan(src, &req, limits, ApiVersion::V3)
    }
    fn p2_with(src: &SourceFacts, url: &str, limits: &Limits) -> Result<Plan> {
        let s: Vec<&str> = url.split('/').collect();
        let req = v2::parse(s[0], s[1], s[2], s[3])?;
        plan(src, &req, limits, ApiVersion::V2)
    }
    /// The output canvas fits every limit that applies to its format.
    fn assert_fits(p: &Plan, l: &Limits) {
        let px = p.out_w as u64 * p.out_h as u64;
        assert!(p.out_w <= l.max_width && p.out_h <= l.max_height && px <= l.max_area, "{p:?}");
        assert!(p.scaled_w <= l.max_width && p.scaled_h <= l.max_height, "{p:?}");
        assert!(p.scaled_w as u64 * p.scaled_h as u64 <= l.max_area, "{p:?}");
        if p.format == Format::Tif {
            assert!(px * UNCOMPRESSED_BYTES_PER_PIXEL <= l.max_output_bytes, "{p:?}");
        }
        if p.format == Format::Gif {
            assert!(px <= l.max_gif_pixels && p.out_w <= GIF_MAX_SIDE && p.out_h <= GIF_MAX_SIDE, "{p:?}");
        }
    }

    #[test]
    fn the_landscape_case_max_at_30_degrees_fits_the_limits_instead_of_doubling_them() {
        // The reported request: landscape.jpg (6000×4000), ^max at 30°, gave
        // a 10387×9330 RGBA canvas (97 Mpx, a 388 MB TIFF).
        let src = facts(6000, 4000, &[1, 2, 4, 8]);
        let l = Limits::default();
        for url in ["full/^max/30/default.tif", "full/^max/30/default.png", "full/max/30/default.jpg"] {
            let p = p3(&src, url).unwrap();
            assert_fits(&p, &l);
            assert_eq!(p.out_w, rotated_size(p.scaled_w, p.scaled_h, p.rotation).0);
        }
        // As large as allowed, not needlessly small: PNG is bound by maxArea.
        let p = p3(&src, "full/^max/30/default.png").unwrap();
        assert!(p.out_w as u64 * p.out_h as u64 > 49_000_000, "{p:?}");
        // TIFF by the byte budget (64 MiB = 16.7 Mpx of RGBA).
        let p = p3(&src, "full/^max/30/default.tif").unwrap();
        let px = p.out_w as u64 * p.out_h as u64;
        assert!(px * 4 > (64 << 20) * 99 / 100 && px * 4 <= 64 << 20, "{p:?}");
        // The aspect ratio is kept.
        assert!((p.scaled_w as f64 / p.scaled_h as f64 - 1.5).abs() < 0.01, "{p:?}");
    }

    #[test]
    fn an_explicit_size_whose_rotated_canvas_breaks_a_limit_is_400() {
        let src = facts(10_000, 10_000, &[1, 2, 4, 8, 16]);
        // 7000² = 49 Mpx fits maxArea; its 30° canvas (9562², 91 Mpx) does not.
        let e = p2(&src, "full/7000,/30/default.jpg").unwrap_err();
        assert_eq!(e.status(), StatusCode::BAD_REQUEST);
        let e = p3(&src, "full/7000,7000/45/default.png").unwrap_err();
        assert_eq!(e.status(), StatusCode::BAD_REQUEST);
        assert!(p2(&src, "full/5000,/30/default.jpg").is_ok());
        // Width alone: 1000×500 at 10° is 1072 wide.
        let l = Limits { max_width: 1000, max_height: 1000, max_area: 1_000_000, ..Limits::default() };
        let src = facts(1000, 500, &[1]);
        let e = p2_with(&src, "full/full/10/default.jpg", &l).unwrap_err();
        assert_eq!(e.status(), StatusCode::BAD_REQUEST);
        assert!(p2_with(&src, "full/full/0/default.jpg", &l).is_ok());
        // v2 max shrinks instead.
        let p = p2_with(&src, "full/max/10/default.jpg", &l).unwrap();
        assert_fits(&p, &l);
        assert_eq!(p.out_w, 1000);
    }

    #[test]
    fn quarter_turns_must_fit_unequal_width_and_height_limits() {
        let l = Limits { max_width: 800, max_height: 400, ..Limits::default() };
        let src = facts(800, 400, &[1]);
        assert!(p3_with(&src, "full/max/0/default.jpg", &l).is_ok());
        let e = p3_with(&src, "full/800,400/90/default.jpg", &l).unwrap_err();
        assert_eq!(e.status(), StatusCode::BAD_REQUEST);
        let p = p3_with(&src, "full/max/90/default.jpg", &l).unwrap();
        assert_eq!((p.scaled_w, p.scaled_h, p.out_w, p.out_h), (400, 200, 200, 400));
        assert_eq!(p.canonical, "full/400,200/90/default.jpg");
    }

    #[test]
    fn uncompressed_tiff_beyond_the_byte_budget_is_413_and_max_shrinks_to_it() {
        let src = facts(10_000, 8_000, &[1, 2, 4, 8, 16]);
        // 5000×4000×4 = 80 MB > 64 MiB.
        let e = p2(&src, "full/5000,/0/default.tif").unwrap_err();
        assert_eq!(e.status(), StatusCode::PAYLOAD_TOO_LARGE);
        assert!(!e.public_message().contains('/'), "{}", e.public_message());
        // The same size in a compressed format, and a smaller TIFF, are fine.
        assert!(p2(&src, "full/5000,/0/default.jpg").is_ok());
        assert!(p2(&src, "full/4000,/0/default.tif").is_ok());
        // Rotation counts: 4000×3200 at 45° is a 5091² canvas, 104 MB.
        let e = p2(&src, "full/4000,/45/default.tif").unwrap_err();
        assert_eq!(e.status(), StatusCode::PAYLOAD_TOO_LARGE);
        let l = Limits::default();
        for url in ["full/max/0/default.tif", "full/max/45/default.tif", "full/max/!270/gray.tif"] {
            assert_fits(&p2(&src, url).unwrap(), &l);
        }
        // A smaller budget, configured.
        let l = Limits { max_output_bytes: 1 << 20, ..Limits::default() };
        let e = p3_with(&src, "full/600,/0/default.tif", &l).unwrap_err();
        assert_eq!(e.status(), StatusCode::PAYLOAD_TOO_LARGE);
        let p = p3_with(&src, "full/max/0/default.tif", &l).unwrap();
        assert_fits(&p, &l);
        assert_eq!((p.scaled_w, p.scaled_h), (572, 457));
    }

    #[test]
    fn gif_beyond_its_pixel_bound_is_413_and_max_shrinks_to_it() {
        let src = facts(10_000, 8_000, &[1, 2, 4, 8, 16]);
        // 1250×1000 = 1.25 Mpx > 1 Mpx.
        let e = p2(&src, "full/1250,/0/default.gif").unwrap_err();
        assert_eq!(e.status(), StatusCode::PAYLOAD_TOO_LARGE);
        assert!(p2(&src, "full/1250,/0/default.png").is_ok());
        assert!(p2(&src, "full/1000,/0/default.gif").is_ok());
        let l = Limits::default();
        for url in ["full/max/0/default.gif", "full/max/30/bitonal.gif", "square/max/90/default.gif"] {
            let p = p2(&src, url).unwrap();
            assert_fits(&p, &l);
            assert!(p.out_w as u64 * p.out_h as u64 > 970_000, "{p:?}");
        }
        // GIF's 16-bit sides, whatever the configured limits.
        let l = Limits {
            max_width: 100_000,
            max_height: 100_000,
            max_area: 10_000_000_000,
            max_gif_pixels: 10_000_000_000,
            ..Limits::default()
        };
        let src = facts(70_000, 100, &[1]);
        let w = p3_with(&src, "full/max/0/default.gif", &l).unwrap().out_w;
        assert!((GIF_MAX_SIDE - 1..=GIF_MAX_SIDE).contains(&w), "{w}");
        let e = p3_with(&src, "full/70000,/0/default.gif", &l).unwrap_err();
        assert_eq!(e.status(), StatusCode::PAYLOAD_TOO_LARGE);
    }

    #[test]
    fn max_always_finds_a_size_that_fits_and_its_canonical_form_plans_the_same() {
        let limit_sets = [
            Limits::default(),
            Limits { max_width: 1, max_height: 1, max_area: 1, ..Limits::default() },
            Limits {
                max_width: 3,
                max_height: 7,
                max_area: 10,
                max_output_bytes: 4,
                max_gif_pixels: 1,
                ..Limits::default()
            },
            Limits {
                max_width: 513,
                max_height: 257,
                max_area: 70_001,
                max_output_bytes: 99_999,
                max_gif_pixels: 5_003,
                ..Limits::default()
            },
        ];
        let sizes =
            [(1, 1), (2, 1), (1, 3), (7, 5), (640, 480), (1, 10_000), (10_000, 3), (6000, 4000), (40_000, 30_000)];
        let angles = ["0", "90", "!180", "270", "1", "30", "45", "89.9", "135", "200.5", "359"];
        let formats = ["jpg", "png", "gif", "tif", "webp"];
        let mut planned = 0;
        for l in &limit_sets {
            for &(w, h) in &sizes {
                let src = facts(w, h, &[1, 2, 4, 8, 16, 32, 64]);
                for a in angles {
                    for f in formats {
                        for size in ["max", "^max"] {
                            let url = format!("full/{size}/{a}/default.{f}");
                            let p = p3_with(&src, &url, l).unwrap_or_else(|e| panic!("{url} {w}x{h} {l:?}: {e:?}"));
                            assert_fits(&p, l);
                            let again = p3_with(&src, &p.canonical, l).unwrap();
                            assert_eq!((again.out_w, again.out_h, &again.canonical), (p.out_w, p.out_h, &p.canonical));
                            planned += 1;
                        }
                    }
                }
            }
        }
        assert_eq!(planned, 4 * 9 * 11 * 5 * 2);
    }

    #[test]
    fn v3_canonical_uses_max_and_w_h() {
        let src = facts(1000, 800, &[1]);
        assert_eq!(p3(&src, "full/max/0/default.jpg").unwrap().canonical, "full/max/0/default.jpg");
        assert_eq!(p3(&src, "full/500,/0/default.jpg").unwrap().canonical, "full/500,400/0/default.jpg");
    }
}
