//! The resize coefficients, computed on the CPU exactly as
//! fast_image_resize 6.1 computes them for `ResizeAlg::Convolution`, so the
//! shaders' integer arithmetic gives the CPU path's bytes.

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum Filter {
    Lanczos3,
    CatmullRom,
}

impl Filter {
    /// fast_image_resize 6.1 `convolution::filters`: function and support.
    pub(super) fn func(self) -> (fn(f64) -> f64, f64) {
        match self {
            Filter::Lanczos3 => (lanczos3, 3.0),
            Filter::CatmullRom => (catmull_rom, 2.0),
        }
    }
}

pub(super) fn sinc(mut x: f64) -> f64 {
    if x == 0.0 {
        1.0
    } else {
        x *= std::f64::consts::PI;
        x.sin() / x
    }
}

pub(super) fn lanczos3(x: f64) -> f64 {
    if (-3.0..3.0).contains(&x) {
        sinc(x) * sinc(x / 3.)
    } else {
        0.0
    }
}

pub(super) fn catmull_rom(mut x: f64) -> f64 {
    pub(super) const A: f64 = -0.5;
    x = x.abs();
    if x < 1.0 {
        ((A + 2.) * x - (A + 3.)) * x * x + 1.
    } else if x < 2.0 {
        (((x - 5.) * x + 8.) * x - 4.) * A
    } else {
        0.0
    }
}

/// One pass's fixed-point coefficients.
#[derive(Debug)]
pub(super) struct Coeffs {
    /// (first input sample, number of taps) per output sample.
    pub(super) bounds: Vec<[u32; 2]>,
    /// `window` i16 values (widened) per output sample, zero-padded.
    pub(super) values: Vec<i32>,
    pub(super) window: u32,
    pub(super) precision: u32,
}

/// fast_image_resize 6.1 `precompute_coefficients` (adaptive kernel) over
/// the source span `in0..in1` (a crop, fractional or not; `0..in_size` for
/// none) followed by `Normalizer16::new`. Sample positions are absolute: the
/// taps of an output sample near the crop's edge reach the pixels beyond it,
/// up to the image's own edge.
pub(super) fn coefficients(in_size: u32, in0: f64, in1: f64, out_size: u32, filter: Filter) -> Coeffs {
    let (func, support) = filter.func();
    let scale = (in1 - in0) / f64::from(out_size);
    let filter_scale = scale.max(1.0);
    let radius = support * filter_scale;
    let window = radius.ceil() as usize * 2 + 1;
    let recip = 1.0 / filter_scale;
    let mut values: Vec<f64> = Vec::with_capacity(window * out_size as usize);
    let mut bounds: Vec<[u32; 2]> = Vec::with_capacity(out_size as usize);
    for out_x in 0..out_size {
        let in_center = in0 + (f64::from(out_x) + 0.5) * scale;
        let x_min = (in_center - radius).floor().max(0.) as u32;
        let x_max = (in_center + radius).ceil().min(f64::from(in_size)) as u32;
        let cur = values.len();
        let mut ww = 0.0;
        let center = in_center - 0.5;
        let mut start = x_min;
        let mut end = x_max;
        for x in x_min..x_max {
            let w = func((f64::from(x) - center) * recip);
            if x == start && w == 0. {
                start += 1;
            } else {
                values.push(w);
                ww += w;
            }
        }
        for &c in values.iter().rev() {
            if end <= start || c != 0. {
                break;
            }
            end -= 1;
        }
        if ww != 0.0 {
            values[cur..].iter_mut().for_each(|w| *w /= ww);
        }
        values.resize(cur + window, 0.);
        bounds.push([start, end.saturating_sub(start)]);
    }
    // Normalizer16: the largest precision at which the biggest weight still
    // fits an i16 (PRECISION_BITS = 22, MAX_COEFFS_PRECISION = 15).
    let max_weight = values.iter().copied().fold(f64::NEG_INFINITY, f64::max).max(0.0);
    let mut precision = 0u32;
    for cur in 0..22u32 {
        precision = cur;
        let next = (max_weight * f64::from(1u32 << (cur + 1))).round() as i32;
        if next >= 1 << 15 {
            break;
        }
    }
    let scale_i = f64::from(1u32 << precision);
    let mut fixed = vec![0i32; values.len()];
    for (o, b) in bounds.iter().enumerate() {
        let base = o * window;
        for k in 0..b[1] as usize {
            fixed[base + k] = i32::from((values[base + k] * scale_i).round() as i16);
        }
    }
    Coeffs { bounds, values: fixed, window: window as u32, precision }
}
