//! The prefix of an untiled, resolution-first codestream that holds every
//! packet a reduced decode needs.
//!
//! OpenJPEG reads a whole tile-part before decoding any of it, so a decode
//! of an untiled master at 1/8 reads all of it, though in a resolution-first
//! progression (RPCL, RLCP) the packets of the low resolutions come first.
//! When the tile-part header lists its packet lengths (PLT markers, which
//! archival encoders write), the end of resolution `R` is known: the tile
//! data's start plus the lengths of the packets of resolutions `0..=R`, whose
//! count follows from the header (layers × precincts of each component at
//! each resolution). OpenJPEG parses every packet header of a tile-part,
//! even of the packets it skips, so the bytes after the prefix are read as
//! empty packets (a zero header byte, with the SOP and EPH markers the
//! codestream uses; each real packet is at least that long): it then
//! decodes exactly what it decodes from the whole file at that reduction.
//! For a master read by range, the home view of a 12000×9000 image then
//! costs a few percent of its bytes.
//!
//! Only the safe case is taken: one tile in one tile-part, resolution-first
//! order with no POC, PLT present and no tile-part header marker that could
//! change the packet count, and the PLT's packet count equal to the count
//! computed from the header. Anything else returns `None` (the whole
//! tile-part is read, as before).

use super::*;

/// Byte ranges `[start, end)`.
type Ranges = Vec<(u64, u64)>;

/// Where a tile-part's packet data starts, and its packets' lengths.
type PacketIndex = (u64, Vec<u64>);

/// Tile-part header bytes read first; grows fourfold up to [`MAX_TILE_HEADER`].
const FIRST_READ: u64 = 16 << 10;
/// A tile-part header's first read (a remote master rounds it up to a block).
const HEAD_READ: u64 = 2048;
/// Largest tile-part header read (a PLT of a few million packets).
const MAX_TILE_HEADER: u64 = 16 << 20;

/// Where the packets a decode at `reduce` needs end in the one tile-part
/// of an untiled codestream, and where that tile-part ends, if the
/// codestream allows (see the module doc). The bytes read to learn it come
/// through `need`.
pub(super) fn resolution_prefix(
    header: &Header,
    data: &[u8],
    need: &dyn Need,
    reduce: u32,
) -> Result<Option<(u64, u64)>, Jp2Error> {
    let resolution_first = header.progression == 1 || header.progression == 2;
    let Some(sot) = header.first_sot else { return Ok(None) };
    if header.tiles() != (1, 1) || !resolution_first || header.poc {
        return Ok(None);
    }
    let len = data.len() as u64;
    let mut want = FIRST_READ;
    let parsed = loop {
        let end = sot.saturating_add(want).min(len);
        need.need(&[(sot, end)]).map_err(Jp2Error::Input)?;
        match parse_tile_part_header(&data[..end as usize], sot as usize, 0) {
            Err(Jp2Error::Truncated { .. }) if end < len && want < MAX_TILE_HEADER => want *= 4,
            Err(Jp2Error::Truncated { .. }) => return Ok(None),
            Err(e) => return Err(e),
            Ok(p) => break p,
        }
    };
    let Some((data_start, lengths)) = parsed else { return Ok(None) };
    let r = Reader { data };
    let psot = u64::from(r.u32(sot as usize + 6)?);
    if psot == 0 {
        // "To the end of the codestream": no end to stop the filler at.
        return Ok(None);
    }
    let tile_part_end = sot.saturating_add(psot).min(len);
    let bounds = (header.x0, header.y0, header.x1, header.y1);
    let Some((needed, total)) = packet_counts(header, bounds, reduce) else { return Ok(None) };
    if lengths.len() as u64 != total {
        // The header's model of the packets is not this file's: read it all.
        return Ok(None);
    }
    let body: u64 = lengths.iter().take(needed as usize).sum();
    Ok(Some((data_start.saturating_add(body).min(tile_part_end), tile_part_end)))
}

/// The tile-part header at `sot`: where its data starts and its packet
/// lengths (PLT, in order), or `None` when it is not the one tile-part of
/// tile 0 with PLT and nothing that changes the packets.
fn parse_tile_part_header(data: &[u8], sot: usize, want_tile: u32) -> Result<Option<PacketIndex>, Jp2Error> {
    let r = Reader { data };
    if r.u16(sot)? != 0xFF90 || r.u16(sot + 2)? != 10 {
        return Ok(None);
    }
    let (tile, tnsot) = (r.u16(sot + 4)?, r.u8(sot + 11)?);
    if u32::from(tile) != want_tile || tnsot != 1 {
        return Ok(None);
    }
    let mut pos = sot + 12;
    let mut lengths = Vec::new();
    let mut saw_plt = false;
    let mut plt_segments = 0u8;
    loop {
        let marker = r.u16(pos)?;
        if marker == 0xFF93 {
            return Ok(saw_plt.then_some(((pos + 2) as u64, lengths)));
        }
        let seg_len = usize::from(r.u16(pos + 2)?);
        if marker < 0xFF30 || seg_len < 2 {
            return Err(Jp2Error::corrupt("bad marker in tile-part header"));
        }
        let body = r.bytes(pos + 4, seg_len - 2)?;
        match marker {
            0xFF58 => {
                // PLT: Zplt, then lengths of 7 bits a byte, high bit = more.
                // Segments out of order would join lengths wrongly: give up.
                if body.first().copied() != Some(plt_segments) {
                    return Ok(None);
                }
                plt_segments = plt_segments.wrapping_add(1);
                saw_plt = true;
                let mut v = 0u64;
                for &b in body.get(1..).unwrap_or(&[]) {
                    v = (v << 7) | u64::from(b & 0x7F);
                    if b & 0x80 == 0 {
                        lengths.push(v);
                        v = 0;
                    } else if v > u64::from(u32::MAX) {
                        return Err(Jp2Error::corrupt("PLT length overflows"));
                    }
                }
            }
            // COD, COC, POC, PPT: the packets are not the main header's.
            0xFF52 | 0xFF53 | 0xFF5F | 0xFF61 => return Ok(None),
            _ => {}
        }
        pos += 2 + seg_len;
    }
}

/// Packets of the resolutions a decode at `reduce` reads, and of all
/// resolutions, for the one tile of the image: layers × precincts, summed
/// over components and resolutions. `None` if it cannot be counted.
fn packet_counts(h: &Header, (x0, y0, x1, y1): (u32, u32, u32, u32), reduce: u32) -> Option<(u64, u64)> {
    let max_res = h.comps.iter().map(|c| c.coding.decompositions + 1).max()?;
    let top = max_res.checked_sub(1 + reduce)?;
    let layers = u64::from(h.layers);
    let (mut needed, mut total) = (0u64, 0u64);
    for c in &h.comps {
        let nres = c.coding.decompositions + 1;
        let cx0 = u64::from(x0).div_ceil(u64::from(c.dx));
        let cx1 = u64::from(x1).div_ceil(u64::from(c.dx));
        let cy0 = u64::from(y0).div_ceil(u64::from(c.dy));
        let cy1 = u64::from(y1).div_ceil(u64::from(c.dy));
        for res in 0..nres {
            let shift = nres - 1 - res;
            let (rx0, rx1) = (ceil_pow2(cx0, shift), ceil_pow2(cx1, shift));
            let (ry0, ry1) = (ceil_pow2(cy0, shift), ceil_pow2(cy1, shift));
            let (ppx, ppy) = c.coding.precinct_exp(res as usize);
            let across = if rx1 > rx0 { ceil_pow2(rx1, ppx) - (rx0 >> ppx) } else { 0 };
            let down = if ry1 > ry0 { ceil_pow2(ry1, ppy) - (ry0 >> ppy) } else { 0 };
            let packets = across.checked_mul(down)?.checked_mul(layers)?;
            total = total.checked_add(packets)?;
            if res <= top {
                needed = needed.checked_add(packets)?;
            }
        }
    }
    Some((needed, total))
}

/// For a tiled resolution-first codestream with a TLM index: of each
/// tile-part `(tile, start, end)` a decode at `reduce` reads, the bytes it
/// needs (`start..prefix`) and those it can do without (`prefix..end`, the
/// packets of finer resolutions, which OpenJPEG only skips over). Their
/// tile-part headers are read first, all together. A tile-part that is not
/// the one tile-part of its tile with PLT and a matching packet count is
/// needed whole.
pub(super) fn tile_prefixes(
    header: &Header,
    data: &[u8],
    need: &dyn Need,
    parts: &[(u32, u64, u64)],
    reduce: u32,
) -> Result<(Ranges, Ranges), Jp2Error> {
    let resolution_first = header.progression == 1 || header.progression == 2;
    let whole = || (parts.iter().map(|&(_, a, b)| (a, b)).collect(), Vec::new());
    if !resolution_first || header.poc || reduce == 0 {
        return Ok(whole());
    }
    let len = data.len() as u64;
    let (cols, _) = header.tiles();
    // Each tile-part's header: its first bytes, then four times more for
    // those whose header runs past them, each round asked together.
    let mut reads: Vec<u64> = vec![HEAD_READ; parts.len()];
    let mut parsed: Vec<Option<Option<PacketIndex>>> = vec![None; parts.len()];
    loop {
        let pending: Vec<usize> = (0..parts.len()).filter(|&i| parsed[i].is_none()).collect();
        if pending.is_empty() {
            break;
        }
        let ranges: Vec<(u64, u64)> = pending
            .iter()
            .map(|&i| (parts[i].1, parts[i].1.saturating_add(reads[i]).min(parts[i].2).min(len)))
            .collect();
        need.need(&ranges).map_err(Jp2Error::Input)?;
        for (&i, &(start, end)) in pending.iter().zip(&ranges) {
            parsed[i] = match parse_tile_part_header(&data[..end as usize], start as usize, parts[i].0) {
                Err(Jp2Error::Truncated { .. }) if end < parts[i].2.min(len) && reads[i] < MAX_TILE_HEADER => {
                    reads[i] *= 4;
                    None
                }
                Ok(p) => Some(p),
                // Not the simple case, or damaged: read whole.
                Err(_) => Some(None),
            };
        }
    }
    let (mut needed, mut spare) = (Vec::new(), Vec::new());
    for (&(tile, start, end), head) in parts.iter().zip(parsed) {
        let end = end.min(len);
        let prefix = match head.flatten() {
            Some((data_start, lengths)) => {
                let (p, q) = (tile % cols, tile / cols);
                let tx0 = header.tx0.saturating_add(p.saturating_mul(header.tdx)).max(header.x0);
                let ty0 = header.ty0.saturating_add(q.saturating_mul(header.tdy)).max(header.y0);
                let tx1 = header.tx0.saturating_add((p + 1).saturating_mul(header.tdx)).min(header.x1);
                let ty1 = header.ty0.saturating_add((q + 1).saturating_mul(header.tdy)).min(header.y1);
                match packet_counts(header, (tx0, ty0, tx1, ty1), reduce) {
                    Some((n, total)) if lengths.len() as u64 == total => {
                        Some(data_start.saturating_add(lengths.iter().take(n as usize).sum::<u64>()).min(end))
                    }
                    _ => None,
                }
            }
            None => None,
        };
        match prefix {
            Some(p) => {
                needed.push((start, p));
                if p < end {
                    spare.push((p, end));
                }
            }
            None => needed.push((start, end)),
        }
    }
    Ok((needed, spare))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// SOT for tile 0 (one tile-part of `psot` bytes), then `markers`, then SOD.
    fn tile_part(markers: &[u8]) -> Vec<u8> {
        let mut v = vec![0xFF, 0x90, 0x00, 0x0A, 0x00, 0x00, 0x00, 0x00, 0x10, 0x00, 0x00, 0x01];
        v.extend_from_slice(markers);
        v.extend_from_slice(&[0xFF, 0x93]);
        v
    }

    #[test]
    fn plt_lengths_are_read_seven_bits_a_byte_and_the_data_starts_after_sod() {
        // Zplt 0, then 5, 200 (0x81 0x48), 3.
        let v = tile_part(&[0xFF, 0x58, 0x00, 0x07, 0x00, 0x05, 0x81, 0x48, 0x03]);
        let (start, lengths) = parse_tile_part_header(&v, 0, 0).unwrap().unwrap();
        assert_eq!(lengths, vec![5, 200, 3]);
        assert_eq!(start, v.len() as u64);
    }

    #[test]
    fn hostile_tile_part_headers_give_no_packet_lengths_and_never_panic() {
        let lengths = |markers: &[u8]| match parse_tile_part_header(&tile_part(markers), 0, 0) {
            Ok(Some((_, l))) => Ok(Some(l)),
            Ok(None) => Ok(None),
            Err(e) => Err(e),
        };
        // A PLT without its Zplt byte, and one whose only length never ends.
        assert_eq!(lengths(&[0xFF, 0x58, 0x00, 0x02]).unwrap(), None);
        // PLT segments out of order (Zplt 1 first).
        assert_eq!(lengths(&[0xFF, 0x58, 0x00, 0x04, 0x01, 0x05]).unwrap(), None);
        assert_eq!(lengths(&[0xFF, 0x58, 0x00, 0x04, 0x00, 0x81]).unwrap(), Some(vec![]));
        // A COD in the tile-part header: its packets are not the main header's.
        assert_eq!(lengths(&[0xFF, 0x52, 0x00, 0x02]).unwrap(), None);
        assert!(matches!(lengths(&[0x12, 0x34, 0x00, 0x02]), Err(Jp2Error::Corrupt { .. })));
        assert!(matches!(lengths(&[0xFF, 0x58, 0xFF, 0xFF, 0x00]), Err(Jp2Error::Truncated { .. })));
        let v = tile_part(&[]);
        assert!(matches!(parse_tile_part_header(&v, 0, 1), Ok(None)), "another tile's tile-part");
        assert!(matches!(parse_tile_part_header(&v[..5], 0, 0), Err(Jp2Error::Truncated { .. })));
    }
}
