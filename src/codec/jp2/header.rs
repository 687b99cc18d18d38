//! The JP2 box and codestream main-header parser (pure Rust, no OpenJPEG):
//! image and tile geometry, components, coding style and precincts, the
//! colour specification, and the estimate of OpenJPEG's memory that
//! [`super::MAX_CODEC_MEMORY`] bounds.

use super::*;

#[derive(Clone, Debug)]
pub(super) struct CompHeader {
    pub(super) precision: u32,
    pub(super) signed: bool,
    pub(super) dx: u32,
    pub(super) dy: u32,
    pub(super) coding: Coding,
}

/// Coding style of one component (COD, overridden by COC).
#[derive(Clone, Debug, PartialEq, Eq)]
pub(super) struct Coding {
    pub(super) decompositions: u32,
    /// log2 of the code-block size.
    pub(super) cblk_w: u32,
    pub(super) cblk_h: u32,
    /// log2 precinct sizes by resolution index (0 = lowest), if defined.
    pub(super) precincts: Option<Vec<(u32, u32)>>,
}

impl Coding {
    pub(super) fn precinct_exp(&self, res: usize) -> (u32, u32) {
        match &self.precincts {
            Some(p) => p.get(res).copied().unwrap_or((15, 15)),
            None => (15, 15),
        }
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum ColourSpec {
    /// Raw codestream: nothing declared.
    None,
    /// JP2 enumerated colour space.
    Enumerated(u32),
    /// JP2 ICC profile (restricted or any): its byte range in the file.
    Icc(usize, usize),
    /// JP2 colour specification method we do not know.
    Method(u8),
}

#[derive(Clone, Debug)]
pub(super) struct Header {
    pub(super) container: Container,
    pub(super) x0: u32,
    pub(super) y0: u32,
    pub(super) x1: u32,
    pub(super) y1: u32,
    pub(super) tx0: u32,
    pub(super) ty0: u32,
    pub(super) tdx: u32,
    pub(super) tdy: u32,
    pub(super) comps: Vec<CompHeader>,
    pub(super) layers: u32,
    pub(super) colour: ColourSpec,
    /// Channels marked opacity/premultiplied opacity by a JP2 `cdef` box.
    pub(super) cdef_alpha: Option<usize>,
    pub(super) palette: bool,
    /// The tile-parts a TLM index in the main header lists: (tile, byte
    /// range in the data), in codestream order; empty without a (usable) TLM.
    pub(super) tile_parts: Vec<(u32, u64, u64)>,
    /// Progression order (COD's SGcod), and whether a POC marker changes it.
    pub(super) progression: u8,
    /// A POC marker changes the progression, or a PPM marker moves the
    /// packet headers into the main header: packet-level reading is off.
    pub(super) poc: bool,
    /// COD's Scod: packets start with SOP markers, packet headers end with
    /// EPH markers.
    pub(super) sop: bool,
    pub(super) eph: bool,
    /// Where the first tile-part (SOT) starts, if the main header ends in one.
    pub(super) first_sot: Option<u64>,
}

pub(super) struct Reader<'a> {
    pub(super) data: &'a [u8],
}

impl<'a> Reader<'a> {
    pub(super) fn bytes(&self, at: usize, n: usize) -> Result<&'a [u8], Jp2Error> {
        at.checked_add(n).and_then(|end| self.data.get(at..end)).ok_or_else(|| Jp2Error::truncated("header ends early"))
    }
    pub(super) fn u8(&self, at: usize) -> Result<u8, Jp2Error> {
        Ok(self.bytes(at, 1)?[0])
    }
    pub(super) fn u16(&self, at: usize) -> Result<u16, Jp2Error> {
        let b = self.bytes(at, 2)?;
        Ok(u16::from_be_bytes([b[0], b[1]]))
    }
    pub(super) fn u32(&self, at: usize) -> Result<u32, Jp2Error> {
        let b = self.bytes(at, 4)?;
        Ok(u32::from_be_bytes([b[0], b[1], b[2], b[3]]))
    }
    pub(super) fn u64(&self, at: usize) -> Result<u64, Jp2Error> {
        let b = self.bytes(at, 8)?;
        let mut a = [0u8; 8];
        a.copy_from_slice(b);
        Ok(u64::from_be_bytes(a))
    }
}

/// One ISO base media box: type, content range.
pub(super) struct JBox {
    pub(super) kind: [u8; 4],
    pub(super) start: usize,
    pub(super) end: usize,
}

/// Reads the box at `pos` within `[pos, limit)`.
pub(super) fn read_box(r: &Reader, pos: usize, limit: usize) -> Result<JBox, Jp2Error> {
    let lbox = r.u32(pos)?;
    let kind_bytes = r.bytes(pos + 4, 4)?;
    let kind = [kind_bytes[0], kind_bytes[1], kind_bytes[2], kind_bytes[3]];
    let (header, len) = match lbox {
        0 => (8usize, (limit - pos) as u64),
        1 => (16usize, r.u64(pos + 8)?),
        n => (8usize, u64::from(n)),
    };
    if len < header as u64 {
        return Err(Jp2Error::corrupt("box length smaller than its header"));
    }
    let end = (pos as u64).saturating_add(len);
    let end = if end <= limit as u64 {
        end as usize
    } else if &kind == b"jp2c" {
        // A cut codestream still has its main header; decoding reports the cut.
        limit
    } else {
        return Err(Jp2Error::truncated("box runs past the end of its container"));
    };
    Ok(JBox { kind, start: pos + header, end })
}

impl Header {
    pub(super) fn parse(data: &[u8]) -> Result<Header, Jp2Error> {
        let container = sniff(data).ok_or_else(|| Jp2Error::corrupt("not a JP2 file or J2K codestream"))?;
        let r = Reader { data };
        let mut colour = ColourSpec::None;
        let mut cdef_alpha = None;
        let mut palette = false;
        let codestream_at = match container {
            Container::J2k => 0,
            Container::Jp2 => {
                let mut pos = 0usize;
                let mut found = None;
                let mut saw_colour = false;
                while pos < data.len() {
                    let b = read_box(&r, pos, data.len())?;
                    match &b.kind {
                        b"jp2h" => {
                            let mut sub = b.start;
                            while sub < b.end {
                                let s = read_box(&r, sub, b.end)?;
                                match &s.kind {
                                    b"colr" if !saw_colour => {
                                        // The first colour specification wins (15444-1 I.5.3.3).
                                        saw_colour = true;
                                        let meth = r.u8(s.start)?;
                                        colour = match meth {
                                            1 => ColourSpec::Enumerated(r.u32(s.start + 3)?),
                                            2 | 3 => ColourSpec::Icc(s.start + 3, s.end),
                                            m => ColourSpec::Method(m),
                                        };
                                    }
                                    b"cdef" => {
                                        let n = usize::from(r.u16(s.start)?);
                                        let mut alpha = 0;
                                        for i in 0..n {
                                            let typ = r.u16(s.start + 2 + 6 * i + 2)?;
                                            if typ == 1 || typ == 2 {
                                                alpha += 1;
                                            }
                                        }
                                        cdef_alpha = Some(alpha);
                                    }
                                    b"pclr" => palette = true,
                                    _ => {}
                                }
                                sub = s.end;
                            }
                        }
                        b"jp2c" => {
                            found = Some(b.start);
                            break;
                        }
                        _ => {}
                    }
                    pos = b.end;
                }
                found.ok_or_else(|| Jp2Error::truncated("no codestream box"))?
            }
        };
        let mut h = Self::parse_codestream(&r, codestream_at, container)?;
        h.colour = colour;
        h.cdef_alpha = cdef_alpha;
        h.palette = palette;
        Ok(h)
    }

    pub(super) fn parse_codestream(r: &Reader, at: usize, container: Container) -> Result<Header, Jp2Error> {
        if r.u16(at)? != 0xFF4F || r.u16(at + 2)? != 0xFF51 {
            return Err(Jp2Error::corrupt("codestream does not start with SOC, SIZ"));
        }
        let lsiz = usize::from(r.u16(at + 4)?);
        let x1 = r.u32(at + 8)?;
        let y1 = r.u32(at + 12)?;
        let x0 = r.u32(at + 16)?;
        let y0 = r.u32(at + 20)?;
        let tdx = r.u32(at + 24)?;
        let tdy = r.u32(at + 28)?;
        let tx0 = r.u32(at + 32)?;
        let ty0 = r.u32(at + 36)?;
        let ncomp = usize::from(r.u16(at + 40)?);
        if ncomp == 0 || ncomp > 16384 || lsiz != 38 + 3 * ncomp {
            return Err(Jp2Error::corrupt("bad SIZ component count"));
        }
        if x1 <= x0 || y1 <= y0 || tdx == 0 || tdy == 0 || tx0 > x0 || ty0 > y0 {
            return Err(Jp2Error::corrupt("bad SIZ geometry"));
        }
        if u64::from(tx0) + u64::from(tdx) <= u64::from(x0) || u64::from(ty0) + u64::from(tdy) <= u64::from(y0) {
            return Err(Jp2Error::corrupt("first tile misses the image"));
        }
        let tiles_x = (u64::from(x1 - tx0)).div_ceil(u64::from(tdx));
        let tiles_y = (u64::from(y1 - ty0)).div_ceil(u64::from(tdy));
        if tiles_x * tiles_y > 65535 {
            return Err(Jp2Error::corrupt("more than 65535 tiles"));
        }
        let mut comps = Vec::with_capacity(ncomp.min(16));
        for i in 0..ncomp {
            let ssiz = r.u8(at + 42 + 3 * i)?;
            let dx = u32::from(r.u8(at + 43 + 3 * i)?);
            let dy = u32::from(r.u8(at + 44 + 3 * i)?);
            if dx == 0 || dy == 0 || (ssiz & 0x7F) > 37 {
                return Err(Jp2Error::corrupt("bad SIZ component"));
            }
            comps.push(CompHeader {
                precision: u32::from(ssiz & 0x7F) + 1,
                signed: ssiz & 0x80 != 0,
                dx,
                dy,
                coding: Coding { decompositions: 0, cblk_w: 6, cblk_h: 6, precincts: None },
            });
        }

        // Main header markers up to the first SOT.
        let mut pos = at + 4 + lsiz;
        let mut cod: Option<(Coding, u32)> = None;
        let mut coc: Vec<(usize, Coding)> = Vec::new();
        // TLM entries (tile or None when implicit, tile-part length), and
        // whether every TLM segment could be read.
        let mut tlm: Vec<(Option<u32>, u64)> = Vec::new();
        let mut tlm_ok = true;
        let mut progression = 0u8;
        let mut poc = false;
        let (mut sop, mut eph) = (false, false);
        let first_sot;
        loop {
            let marker = r.u16(pos)?;
            if marker == 0xFF90 || marker == 0xFFD9 {
                first_sot = (marker == 0xFF90).then_some(pos as u64);
                break;
            }
            if marker < 0xFF30 {
                return Err(Jp2Error::corrupt("bad marker in main header"));
            }
            let len = usize::from(r.u16(pos + 2)?);
            if len < 2 {
                return Err(Jp2Error::corrupt("bad marker segment length"));
            }
            let seg = pos + 4;
            let seg_end = pos + 2 + len;
            r.bytes(pos + 2, len)?;
            match marker {
                0xFF52 => {
                    // COD: Scod, SGcod (progression, layers, MCT), SPcod.
                    let scod = r.u8(seg)?;
                    (sop, eph) = (scod & 0x02 != 0, scod & 0x04 != 0);
                    progression = r.u8(seg + 1)?;
                    let layers = u32::from(r.u16(seg + 2)?);
                    if layers == 0 {
                        return Err(Jp2Error::corrupt("zero layers"));
                    }
                    let coding = parse_spcod(r, seg + 5, seg_end, scod & 1 != 0)?;
                    cod = Some((coding, layers));
                }
                0xFF53 => {
                    // COC: Ccoc, Scoc, SPcoc.
                    let (comp, next) = if ncomp < 257 {
                        (usize::from(r.u8(seg)?), seg + 1)
                    } else {
                        (usize::from(r.u16(seg)?), seg + 2)
                    };
                    if comp >= ncomp {
                        return Err(Jp2Error::corrupt("COC for a missing component"));
                    }
                    let scoc = r.u8(next)?;
                    coc.push((comp, parse_spcod(r, next + 1, seg_end, scoc & 1 != 0)?));
                }
                0xFF5F | 0xFF60 => poc = true,
                0xFF55 => {
                    // TLM: Ztlm, Stlm, then (Ttlm, Ptlm) pairs.
                    let stlm = r.u8(seg + 1)?;
                    let st = usize::from((stlm >> 4) & 3);
                    let sp = if stlm & 0x40 != 0 { 4 } else { 2 };
                    let entry = st + sp;
                    let body = seg_end.saturating_sub(seg + 2);
                    if st == 3 || !body.is_multiple_of(entry) {
                        tlm_ok = false;
                    } else {
                        for i in 0..body / entry {
                            let at = seg + 2 + i * entry;
                            let tile = match st {
                                0 => None,
                                1 => Some(u32::from(r.u8(at)?)),
                                _ => Some(u32::from(r.u16(at)?)),
                            };
                            let len = if sp == 2 { u64::from(r.u16(at + st)?) } else { u64::from(r.u32(at + st)?) };
                            tlm.push((tile, len));
                        }
                    }
                }
                _ => {}
            }
            pos = seg_end;
        }
        // Tile-parts from the first SOT on, each where the one before ends.
        let mut tile_parts = Vec::new();
        if tlm_ok {
            let mut at = pos as u64;
            for (i, &(tile, len)) in tlm.iter().enumerate() {
                if len < 14 {
                    tile_parts.clear();
                    break;
                }
                tile_parts.push((tile.unwrap_or(i as u32), at, at + len));
                at += len;
            }
        }
        let (default, layers) = cod.ok_or_else(|| Jp2Error::corrupt("no COD marker"))?;
        for c in comps.iter_mut() {
            c.coding = default.clone();
        }
        for (i, coding) in coc {
            if let Some(c) = comps.get_mut(i) {
                c.coding = coding;
            }
        }
        Ok(Header {
            container,
            x0,
            y0,
            x1,
            y1,
            tx0,
            ty0,
            tdx,
            tdy,
            comps,
            layers,
            colour: ColourSpec::None,
            cdef_alpha: None,
            palette: false,
            tile_parts,
            progression,
            poc,
            sop,
            eph,
            first_sot,
        })
    }

    /// The tile-parts `(tile, start, end)` of the tiles that the
    /// reference-grid rectangle `[x0, x1) × [y0, y1)` touches, from the TLM
    /// index; `None` without one.
    pub(super) fn tile_parts_in(&self, x0: u32, y0: u32, x1: u32, y1: u32) -> Option<Vec<(u32, u64, u64)>> {
        if self.tile_parts.is_empty() || x1 <= x0 || y1 <= y0 {
            return None;
        }
        let (cols, _) = self.tiles();
        let c0 = (x0.max(self.tx0) - self.tx0) / self.tdx;
        let c1 = (x1 - 1).saturating_sub(self.tx0) / self.tdx;
        let r0 = (y0.max(self.ty0) - self.ty0) / self.tdy;
        let r1 = (y1 - 1).saturating_sub(self.ty0) / self.tdy;
        let wanted = |t: u32| {
            let (c, r) = (t % cols, t / cols);
            (c0..=c1).contains(&c) && (r0..=r1).contains(&r)
        };
        Some(self.tile_parts.iter().filter(|(t, _, _)| wanted(*t)).copied().collect())
    }

    /// One empty packet as this codestream writes packets (SOP segment, a
    /// zero header byte, EPH): what stands in for packets a decode skips.
    pub(super) fn empty_packet(&self) -> Vec<u8> {
        let mut p = Vec::with_capacity(9);
        if self.sop {
            p.extend_from_slice(&[0xFF, 0x91, 0x00, 0x04, 0x00, 0x00]);
        }
        p.push(0);
        if self.eph {
            p.extend_from_slice(&[0xFF, 0x92]);
        }
        p
    }

    /// The bytes of the embedded ICC profile, if the colour specification is one.
    pub(super) fn icc<'a>(&self, data: &'a [u8]) -> Option<&'a [u8]> {
        match self.colour {
            ColourSpec::Icc(start, end) if start < end => data.get(start..end),
            _ => None,
        }
    }

    pub(super) fn width(&self) -> u32 {
        self.x1 - self.x0
    }

    pub(super) fn height(&self) -> u32 {
        self.y1 - self.y0
    }

    pub(super) fn tiles(&self) -> (u32, u32) {
        let tw = (self.x1 - self.tx0).div_ceil(self.tdx);
        let th = (self.y1 - self.ty0).div_ceil(self.tdy);
        (tw, th)
    }

    /// Resolution levels usable for every component.
    pub(super) fn levels(&self) -> u32 {
        self.comps.iter().map(|c| c.coding.decompositions + 1).min().unwrap_or(1)
    }

    pub(super) fn info(&self) -> Jp2Info {
        let (tiles_x, tiles_y) = self.tiles();
        let (tile_width, tile_height) =
            if tiles_x == 1 && tiles_y == 1 { (self.width(), self.height()) } else { (self.tdx, self.tdy) };
        let first = self.comps.first();
        let precinct_sizes = match first.and_then(|c| c.coding.precincts.as_ref()) {
            Some(p) => p.iter().rev().map(|&(w, h)| (1u32 << w, 1u32 << h)).collect(),
            None => Vec::new(),
        };
        let n = self.comps.len();
        // As decoded: the component count decides, except that a palette
        // expands one component, leaving only the channel definition to tell.
        let has_alpha = if self.palette { self.cdef_alpha.unwrap_or(0) > 0 } else { n == 2 || n == 4 };
        Jp2Info {
            width: self.width(),
            height: self.height(),
            components: n as u32,
            bit_depth: self.comps.iter().map(|c| c.precision).max().unwrap_or(0),
            signed: self.comps.iter().any(|c| c.signed),
            levels: self.levels(),
            tile_width,
            tile_height,
            tiles_x,
            tiles_y,
            precinct_sizes,
            layers: self.layers,
            has_alpha,
            has_icc: matches!(self.colour, ColourSpec::Icc(..)),
            icc: None,
            container: self.container,
            x_offset: self.x0,
            y_offset: self.y0,
        }
    }

    pub(super) fn check_supported(&self) -> Result<(), Jp2Error> {
        let n = self.comps.len();
        if n > 4 && !self.palette {
            return Err(Jp2Error::Unsupported(format!("{n} components")));
        }
        if self.comps.iter().any(|c| c.precision > 16) {
            return Err(Jp2Error::Unsupported("more than 16 bits per sample".into()));
        }
        if self.x1 > i32::MAX as u32 || self.y1 > i32::MAX as u32 {
            return Err(Jp2Error::Unsupported("image coordinates beyond 2^31".into()));
        }
        match self.colour {
            ColourSpec::None | ColourSpec::Icc(..) => Ok(()),
            ColourSpec::Enumerated(16..=18) => Ok(()),
            ColourSpec::Enumerated(12) => Err(Jp2Error::Unsupported("CMYK colour space".into())),
            ColourSpec::Enumerated(14) => Err(Jp2Error::Unsupported("CIELab colour space".into())),
            ColourSpec::Enumerated(24) => Err(Jp2Error::Unsupported("e-sYCC colour space".into())),
            ColourSpec::Enumerated(e) => Err(Jp2Error::Unsupported(format!("JP2 colour space {e}"))),
            ColourSpec::Method(m) => Err(Jp2Error::Unsupported(format!("JP2 colour method {m}"))),
        }
    }

    /// Estimated OpenJPEG memory: per-tile header tables, plus code-block and
    /// precinct bookkeeping for one full tile at all resolutions (OpenJPEG
    /// reuses one tile decoder, so the largest tile counts, not their sum).
    ///
    /// Every product and sum saturates at `u64::MAX`, so a hostile header
    /// (a 2^31-pixel tile with 1×1 precincts, say) gives an estimate over any
    /// limit and a refusal, never a wrapped small number.
    pub(super) fn codec_memory(&self) -> (u64, u64) {
        let (tw, th) = self.tiles();
        let ncomp = self.comps.len() as u64;
        let per_tile = TILE_HEADER_BYTES.saturating_add(ncomp.saturating_mul(TILE_COMPONENT_HEADER_BYTES));
        let tables = u64::from(tw).saturating_mul(u64::from(th)).saturating_mul(per_tile);
        let tile_w = u64::from(self.tdx.min(self.width()));
        let tile_h = u64::from(self.tdy.min(self.height()));
        let mut tile = 0u64;
        for c in &self.comps {
            let cw = tile_w.div_ceil(u64::from(c.dx));
            let ch = tile_h.div_ceil(u64::from(c.dy));
            let nres = c.coding.decompositions + 1;
            for res in 0..nres {
                let shift = nres - 1 - res;
                let rw = ceil_pow2(cw, shift);
                let rh = ceil_pow2(ch, shift);
                let (ppx, ppy) = c.coding.precinct_exp(res as usize);
                let (bands, bw, bh, cbx, cby) = if res == 0 {
                    (1u64, rw, rh, c.coding.cblk_w.min(ppx), c.coding.cblk_h.min(ppy))
                } else {
                    (
                        3u64,
                        rw.div_ceil(2),
                        rh.div_ceil(2),
                        c.coding.cblk_w.min(ppx.saturating_sub(1)),
                        c.coding.cblk_h.min(ppy.saturating_sub(1)),
                    )
                };
                let blocks = ceil_pow2(bw, cbx).saturating_add(1).saturating_mul(ceil_pow2(bh, cby).saturating_add(1));
                let precincts =
                    ceil_pow2(rw, ppx).saturating_add(1).saturating_mul(ceil_pow2(rh, ppy).saturating_add(1));
                let bytes = blocks
                    .saturating_mul(CODE_BLOCK_BYTES)
                    .saturating_add(precincts.saturating_mul(PRECINCT_BYTES))
                    .saturating_mul(bands);
                tile = tile.saturating_add(bytes);
            }
        }
        (tables, tile)
    }

    pub(super) fn check_codec_memory(&self, limit: u64) -> Result<(), Jp2Error> {
        let (tables, tile) = self.codec_memory();
        if tables > limit {
            return Err(Jp2Error::CodecLimit { what: "tile table", needed: tables, limit });
        }
        let total = tables.saturating_add(tile);
        if total > limit {
            return Err(Jp2Error::CodecLimit { what: "tile bookkeeping", needed: total, limit });
        }
        Ok(())
    }
}

/// SPcod / SPcoc: decomposition levels, code-block size and style, transform,
/// then precinct sizes when `precincts` (Scod bit 0).
pub(super) fn parse_spcod(r: &Reader, at: usize, end: usize, precincts: bool) -> Result<Coding, Jp2Error> {
    if at + 5 > end {
        return Err(Jp2Error::corrupt("coding style segment too short"));
    }
    let decompositions = u32::from(r.u8(at)?);
    let xcb = u32::from(r.u8(at + 1)?);
    let ycb = u32::from(r.u8(at + 2)?);
    if decompositions > 32 || xcb > 8 || ycb > 8 || xcb + ycb > 8 {
        return Err(Jp2Error::corrupt("bad coding style"));
    }
    let sizes = if precincts {
        let n = decompositions as usize + 1;
        if at + 5 + n > end {
            return Err(Jp2Error::corrupt("coding style too short for its precincts"));
        }
        let bytes = r.bytes(at + 5, n)?;
        let v: Vec<(u32, u32)> = bytes.iter().map(|&b| (u32::from(b & 0x0F), u32::from(b >> 4))).collect();
        // Only the lowest resolution may have 1-sample precincts.
        if v.iter().skip(1).any(|&(w, h)| w == 0 || h == 0) {
            return Err(Jp2Error::corrupt("bad precinct size"));
        }
        Some(v)
    } else {
        None
    };
    Ok(Coding { decompositions, cblk_w: xcb + 2, cblk_h: ycb + 2, precincts: sizes })
}

/// `ceil(v / 2^shift)`.
pub(super) fn ceil_pow2(v: u64, shift: u32) -> u64 {
    if shift >= 64 {
        return u64::from(v > 0);
    }
    v.div_ceil(1u64 << shift)
}
