//! OpenJPEG's 32-bit component planes to 8-bit interleaved [`Pixels`]:
//! sub-sampled components upsampled, precisions other than 8 scaled, signed
//! samples offset, sYCC converted to RGB, cut to the output rectangle.

use super::*;

/// Output rectangle in absolute coordinates of the reduced reference grid.
#[derive(Clone, Copy, Debug)]
pub(super) struct OutputRect {
    pub(super) x0: u64,
    pub(super) y0: u64,
    pub(super) w: usize,
    pub(super) h: usize,
}

/// One decoded component: `w * h` samples whose first one sits at (x0, y0) in
/// absolute coordinates of the component's reduced grid; output pixel (u, v)
/// of the reduced reference grid takes the sample at (u / dx, v / dy).
pub(super) struct Plane<'a> {
    pub(super) data: &'a [i32],
    pub(super) w: usize,
    pub(super) h: usize,
    pub(super) x0: u64,
    pub(super) y0: u64,
    pub(super) dx: u64,
    pub(super) dy: u64,
    pub(super) precision: u32,
    pub(super) signed: bool,
    pub(super) alpha: bool,
}

/// 8-bit samples from a component of `precision` bits (unsigned domain):
/// `round(v * 255 / (2^precision - 1))`, exact for bit-replicated values
/// (e.g. 16-bit `v8 * 257` gives back `v8`).
pub(super) fn scale_table(precision: u32) -> &'static [u8] {
    static TABLES: [OnceLock<Box<[u8]>>; 17] = [const { OnceLock::new() }; 17];
    let p = precision.clamp(1, 16);
    TABLES[p as usize].get_or_init(|| {
        let max = (1u64 << p) - 1;
        (0..=max).map(|v| ((v * 255 * 2 + max) / (2 * max)) as u8).collect()
    })
}

pub(super) fn planes_to_pixels(planes: &[Plane], sycc: bool, out: OutputRect) -> Result<Pixels, Jp2Error> {
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
pub(super) fn clamp8(v: i32) -> u8 {
    v.clamp(0, 255) as u8
}

/// The common case: unsigned 8-bit planes covering exactly the output.
pub(super) fn interleave_8bit(planes: &[Plane], out: &mut [u8]) {
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
pub(super) fn convert_general(planes: &[Plane], sycc: bool, out: OutputRect, buf: &mut [u8]) -> Result<(), Jp2Error> {
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
pub(super) fn sycc_to_rgb_row(rows: &mut [Vec<i32>], precision: u32) {
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
