//! The region decode behind [`super::decode`]: checks the area, the
//! reduction and the limits against the parsed header before OpenJPEG runs,
//! widens the area for sub-sampled components, decodes through the `ffi`
//! session, and hands the component planes to `planes`.

use super::prefix;
use super::*;

pub(super) fn decode_with_limit(
    data: &[u8],
    need: &dyn Need,
    area: DecodeArea,
    reduce: u32,
    max_pixels: u64,
    codec_limit: u64,
) -> Result<Pixels, Jp2Error> {
    let header = parse_header(data, need)?;
    header.check_supported()?;

    // The area, in reference-grid coordinates.
    if area.w == 0 || area.h == 0 {
        return Err(Jp2Error::InvalidRegion);
    }
    let inside = |start: u32, len: u32, size: u32| start.checked_add(len).is_some_and(|end| end <= size);
    if !inside(area.x, area.w, header.width()) || !inside(area.y, area.h, header.height()) {
        return Err(Jp2Error::InvalidRegion);
    }
    let levels = header.levels();
    if reduce >= levels {
        return Err(Jp2Error::InvalidReduce { reduce, levels });
    }
    let ax0 = u64::from(header.x0) + u64::from(area.x);
    let ay0 = u64::from(header.y0) + u64::from(area.y);
    let ax1 = ax0 + u64::from(area.w);
    let ay1 = ay0 + u64::from(area.h);
    let out = OutputRect {
        x0: ceil_pow2(ax0, reduce),
        y0: ceil_pow2(ay0, reduce),
        w: (ceil_pow2(ax1, reduce) - ceil_pow2(ax0, reduce)) as usize,
        h: (ceil_pow2(ay1, reduce) - ceil_pow2(ay0, reduce)) as usize,
    };
    if out.w == 0 || out.h == 0 {
        return Err(Jp2Error::InvalidRegion);
    }
    let pixels = out.w as u64 * out.h as u64;
    if pixels > max_pixels {
        return Err(Jp2Error::TooLarge { pixels, limit: max_pixels });
    }
    header.check_codec_memory(codec_limit)?;

    // Sub-sampled components: widen the decoded area to their sampling grid at
    // this reduction so that each has samples over the whole output.
    let max_dx = header.comps.iter().map(|c| u64::from(c.dx)).max().unwrap_or(1);
    let max_dy = header.comps.iter().map(|c| u64::from(c.dy)).max().unwrap_or(1);
    let widen = |lo: u64, hi: u64, step: u64, min: u32, max: u32| -> (u32, u32) {
        if step <= 1 {
            return (lo as u32, hi as u32);
        }
        let l = (lo / step * step).max(u64::from(min));
        let h = hi.div_ceil(step).saturating_mul(step).min(u64::from(max));
        (l as u32, h as u32)
    };
    let step_x = max_dx << reduce;
    let step_y = max_dy << reduce;
    let (dx0, dx1) = widen(ax0, ax1, step_x, header.x0, header.x1);
    let (dy0, dy1) = widen(ay0, ay1, step_y, header.y0, header.y1);

    // In a resolution-first file, only the packets of the resolutions
    // decoded are read (the rest is read as empty packets): from a remote
    // master, the others are never fetched nor paged in (its sparse file's
    // holes stay holes); from a file, never copied (a reduced decode of a
    // lossless master otherwise reads all of each tile-part it touches).
    let mut spare = Vec::new();
    if need.is_remote() || reduce > 0 {
        let untiled = header.tiles() == (1, 1);
        let cut = if untiled && reduce > 0 {
            // An untiled resolution-first master: only the prefix holding
            // the resolutions decoded, asked in one piece.
            prefix::resolution_prefix(&header, data, need, reduce)?
        } else {
            None
        };
        if let Some((end, tile_part_end)) = cut {
            need.need(&[(0, end)]).map_err(Jp2Error::Input)?;
            if end < tile_part_end {
                spare.push((end, tile_part_end));
            }
        } else if let Some(parts) = header.tile_parts_in(dx0, dy0, dx1, dy1) {
            // Every tile-part the area needs (of each, in a resolution-first
            // file, only the resolutions decoded), asked together: one round
            // trip for a master read by range, before OpenJPEG reads them.
            let (needed, unused) = prefix::tile_prefixes(&header, data, need, &parts, reduce)?;
            need.need(&needed).map_err(Jp2Error::Input)?;
            spare = unused;
        }
    }
    let filler = if spare.is_empty() { Vec::new() } else { header.empty_packet() };
    let mut session = DecodeSession::open(data, need, header.container, spare, filler)?;
    session.set_reduce(reduce)?;
    session.set_area(dx0, dy0, dx1, dy1)?;
    session.decode()?;

    let image = session.image.get().ok_or_else(|| Jp2Error::corrupt("no image"))?;
    let colour_space = image.color_space;
    let comps = session.image.components();
    if comps.is_empty() || comps.len() > 4 {
        return Err(Jp2Error::Unsupported(format!("{} decoded components", comps.len())));
    }
    if colour_space == opj::COLOR_SPACE::OPJ_CLRSPC_CMYK || colour_space == opj::COLOR_SPACE::OPJ_CLRSPC_EYCC {
        return Err(Jp2Error::Unsupported("colour space".into()));
    }
    let mut planes = Vec::with_capacity(comps.len());
    for (i, comp) in comps.iter().enumerate() {
        if comp.dx == 0 || comp.dy == 0 || comp.prec == 0 || comp.prec > 16 {
            return Err(Jp2Error::corrupt("bad decoded component"));
        }
        let (dx, dy) = (u64::from(comp.dx), u64::from(comp.dy));
        // The geometry OpenJPEG promises for this component; refuse anything else.
        let cx0 = ceil_pow2(u64::from(dx0).div_ceil(dx), reduce);
        let cx1 = ceil_pow2(u64::from(dx1).div_ceil(dx), reduce);
        let cy0 = ceil_pow2(u64::from(dy0).div_ceil(dy), reduce);
        let cy1 = ceil_pow2(u64::from(dy1).div_ceil(dy), reduce);
        let (w, h) = (comp.w as usize, comp.h as usize);
        if w as u64 != cx1 - cx0 || h as u64 != cy1 - cy0 || w == 0 || h == 0 || comp.data.is_null() {
            return Err(Jp2Error::corrupt("decoded component has unexpected geometry"));
        }
        let samples = session.image.samples(i).ok_or_else(|| Jp2Error::corrupt("component too large"))?;
        planes.push(Plane {
            data: samples,
            w,
            h,
            x0: cx0,
            y0: cy0,
            dx,
            dy,
            precision: comp.prec,
            signed: comp.sgnd != 0,
            alpha: comp.alpha != 0,
        });
    }
    // Channel definition: alpha components last, colour ones in order.
    if planes.iter().any(|p| p.alpha) {
        planes.sort_by_key(|p| p.alpha);
    }
    let sycc = colour_space == opj::COLOR_SPACE::OPJ_CLRSPC_SYCC
        || (header.colour == ColourSpec::None && planes.len() == 3 && planes[1].dx > 1 && planes[0].dx == planes[0].dy);
    planes_to_pixels(&planes, sycc && planes.len() >= 3, out)
}
