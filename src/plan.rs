//! The planner: a pure function from (source facts, parsed request, limits) to
//! a [`Plan`] — the source rectangle, the reduce factor to decode at, the output
//! size, and the canonical form of the request (used for the `Link` header, the
//! ETag and the cache key).
//!
//! Architecture invariant: planning does no I/O and allocates nothing large.
//! Every size limit is checked here, before any pixel is decoded.

use crate::error::{Error, Result};
use crate::iiif::{fmt_number, ApiVersion, Format, ImageRequest, Quality, Region, Rotation, SizeKind};

/// What the planner needs to know of a source (all from its header).
#[derive(Clone, Debug, PartialEq)]
pub struct SourceFacts {
    pub width: u32,
    pub height: u32,
    /// Reduction factors the decoder can produce natively, ascending, starting
    /// with 1 (JPEG DCT scaling: 1, 2, 4, 8; JPEG 2000: 2^0 .. 2^(levels-1)).
    pub scale_factors: Vec<u32>,
}

/// Limits on what one request may produce or decode.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Limits {
    pub max_width: u32,
    pub max_height: u32,
    pub max_area: u64,
    /// Largest allowed ratio of output to region size on either axis (1.0 = no upscaling).
    pub max_upscale: f64,
    /// Largest number of pixels one request may decode.
    pub max_decode_pixels: u64,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            max_width: 10_000,
            max_height: 10_000,
            max_area: 50_000_000,
            max_upscale: 4.0,
            max_decode_pixels: 200_000_000,
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

    let scale = choose_scale(&src.scale_factors, region, sw, sh);
    let decoded = region.at_scale(scale, src.width, src.height);
    let decode_px = decoded.w as u64 * decoded.h as u64;
    if decode_px > limits.max_decode_pixels {
        return Err(Error::bad_request(
            "The requested region is too large to decode at this size; request a smaller size",
        ));
    }

    let (out_w, out_h) = rotated_size(sw, sh, req.rotation);
    if out_w as u64 * out_h as u64 > limits.max_area.saturating_mul(2) {
        return Err(Error::bad_request("Rotated output exceeds the maximum area"));
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
            let f = fit_factor(rw, rh, limits).min(cap);
            if f == 1.0 {
                (rw, rh)
            } else {
                let w = ((rw as f64 * f).floor() as u32).max(1);
                let h = ((rh as f64 * f).floor() as u32).max(1);
                (w, h)
            }
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

/// The factor (≤ or ≥ 1) that makes `rw × rh` just fit the size limits.
fn fit_factor(rw: u32, rh: u32, limits: &Limits) -> f64 {
    let fw = limits.max_width as f64 / rw as f64;
    let fh = limits.max_height as f64 / rh as f64;
    let fa = (limits.max_area as f64 / (rw as f64 * rh as f64)).sqrt();
    fw.min(fh).min(fa)
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

fn rotated_size(w: u32, h: u32, rot: Rotation) -> (u32, u32) {
    match rot.quarter_turns() {
        Some(0) | Some(2) => (w, h),
        Some(_) => (h, w),
        None => {
            let t = rot.degrees.to_radians();
            let (s, c) = (t.sin().abs(), t.cos().abs());
            let bw = (w as f64 * c + h as f64 * s).round().max(1.0);
            let bh = (w as f64 * s + h as f64 * c).round().max(1.0);
            (bw.min(u32::MAX as f64) as u32, bh.min(u32::MAX as f64) as u32)
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

    #[test]
    fn v3_canonical_uses_max_and_w_h() {
        let src = facts(1000, 800, &[1]);
        assert_eq!(p3(&src, "full/max/0/default.jpg").unwrap().canonical, "full/max/0/default.jpg");
        assert_eq!(p3(&src, "full/500,/0/default.jpg").unwrap().canonical, "full/500,400/0/default.jpg");
    }
}
