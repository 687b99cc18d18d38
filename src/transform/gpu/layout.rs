//! The layout of one job, computed before anything is submitted: output
//! sizes, the resize coefficients, where each parameter block and table
//! sits in the input buffer, the bands of rows the vertical pass reads, the
//! buffer sizes and the dispatch counts, each checked against the adapter's
//! limits (a job beyond them is refused, not attempted).

use super::*;

pub(super) struct JobLayout {
    pub(super) src_w: u32,
    pub(super) src_h: u32,
    pub(super) out_w: u32,
    pub(super) out_h: u32,
    pub(super) in_c: u32,
    pub(super) out_c: u32,
    pub(super) out_layout: Layout,
    pub(super) final_w: u32,
    pub(super) final_h: u32,
    pub(super) quarter: u32,
    pub(super) mirror: bool,
    pub(super) quality: GpuQuality,
    pub(super) alpha: bool,
    pub(super) v: Option<Coeffs>,
    pub(super) h: Option<Coeffs>,
    /// Bytes per input row in the buffer holding the input (the row's
    /// pixels, or a resident unit's wider rows).
    pub(super) in_stride: u32,
    /// Where the input is read from.
    pub(super) at: SrcAt,
    /// The input's first byte past the last alignment boundary at or
    /// before it: bindings start at that boundary, and the shaders add
    /// this to every offset they read (`src_base` = binding start − input).
    pub(super) phase: u64,
    /// The raw input bound whole (when no vertical pass reads it in bands),
    /// from the boundary before the input.
    pub(super) raw: Section,
    /// Bytes per resize_v output row (padded to a word).
    pub(super) v_stride: u32,
    /// Bytes written by resize_v and resize_h.
    pub(super) v_len: u64,
    pub(super) h_len: u64,
    /// resize_v dispatches, one per band of output rows (band offsets from
    /// the boundary before the input).
    pub(super) v_dispatch: Vec<VDispatch>,
    pub(super) params_h: Section,
    pub(super) params_p: Section,
    pub(super) tables_v: Option<(Section, Section)>,
    pub(super) tables_h: Option<(Section, Section)>,
    pub(super) input: Section,
    pub(super) upload_len: u64,
    pub(super) work: [u64; 2],
    pub(super) out_bytes: u64,
    pub(super) out_len4: u64,
    pub(super) groups_h: Option<(u32, u32)>,
    pub(super) groups_p: (u32, u32),
    /// The rotation pass, when the job turns by an arbitrary angle: its
    /// parameters, output bytes (packed words) and workgroups.
    pub(super) rotate: Option<RotatePass>,
}

#[derive(Clone, Copy, Debug)]
pub(super) struct RotatePass {
    pub(super) cos: f32,
    pub(super) sin: f32,
    pub(super) transparent: bool,
    pub(super) params: Section,
    pub(super) len: u64,
    pub(super) groups: (u32, u32),
}

impl JobLayout {
    /// Bytes of the buffers the job holds while it runs (upload, input,
    /// work, readback; the pool's size classes round them up).
    pub(super) fn device_bytes(&self) -> u64 {
        2 * self.upload_len + self.work[0] + self.work[1] + self.out_len4
    }

    /// The job's output from its read-back bytes.
    pub(super) fn output(&self, data: Vec<u8>) -> Result<Pixels, GpuError> {
        Pixels::new(self.final_w, self.final_h, self.out_layout, data)
            .map_err(|e| GpuError::Device(format!("readback: {e}")))
    }
}

/// The resize of one job, decided as fast_image_resize 6.1 decides it for
/// the CPU path (`Resizer::resize_typed` and `do_convolution`): which passes
/// run and their tables, and the rectangle of the source they read.
pub(super) struct ResizePlan {
    /// Vertical and horizontal tables, their first taps counted from `rect`.
    pub(super) v: Option<Coeffs>,
    pub(super) h: Option<Coeffs>,
    /// (x, y, width, height) of the source the passes read: with a
    /// horizontal pass, from its first tap to its last; without one, the
    /// crop's own columns (then whole numbers); rows likewise.
    pub(super) rect: (u32, u32, u32, u32),
}

/// Plans the resize of a `src_w × src_h` image's `crop` (a sub-pixel
/// rectangle, or the whole image) to `out_w × out_h`.
///
/// As on the CPU: a crop equal to the whole image counts as none; a pass
/// runs only where the size changes or the crop's edge falls between
/// pixels; with neither, the result is a copy of the crop. A crop that
/// fast_image_resize would refuse (outside the image) is refused here too,
/// so the CPU path handles it the same way.
pub(super) fn resize_plan(
    src_w: u32,
    src_h: u32,
    crop: Option<crate::transform::resize::SrcCrop>,
    out_w: u32,
    out_h: u32,
) -> Result<ResizePlan, GpuError> {
    let (fw, fh) = (f64::from(src_w), f64::from(src_h));
    let crop = crate::transform::resize::effective_crop(crop, src_w, src_h);
    let (left, top, cw, ch) = crop.unwrap_or((0.0, 0.0, fw, fh));
    if !(left >= 0.0 && top >= 0.0 && left < fw && top < fh && left + cw <= fw && top + ch <= fh) {
        return Err(GpuError::Unsupported("source crop outside the image".into()));
    }
    let (sw, sh) = match crop {
        Some(c) => (c.2.ceil() as u32, c.3.ceil() as u32),
        None => (src_w, src_h),
    };
    let filter = match crate::transform::resize::filter_for(sw, sh, out_w, out_h) {
        FilterType::Lanczos3 => Filter::Lanczos3,
        FilterType::CatmullRom => Filter::CatmullRom,
        other => return Err(GpuError::Unsupported(format!("filter {other:?}"))),
    };
    let need_h = f64::from(out_w) != cw || left != left.round();
    let need_v = f64::from(out_h) != ch || top != top.round();
    let mut h = need_h.then(|| coefficients(src_w, left, left + cw, out_w, filter));
    let mut v = need_v.then(|| coefficients(src_h, top, top + ch, out_h, filter));
    // The span a pass reads, and its taps shifted to start there.
    let span = |c: &mut Option<Coeffs>, start: f64, size: u32| -> (u32, u32) {
        match c {
            Some(c) => {
                let first = c.bounds.iter().map(|b| b[0]).min().unwrap_or(0);
                let end = c.bounds.iter().map(|b| b[0] + b[1]).max().unwrap_or(first);
                c.bounds.iter_mut().for_each(|b| b[0] -= first);
                (first, end.saturating_sub(first).max(1))
            }
            None => (start as u32, size),
        }
    };
    let (x, w) = span(&mut h, left, out_w);
    let (y, hh) = span(&mut v, top, out_h);
    Ok(ResizePlan { v, h, rect: (x, y, w, hh) })
}

/// The input a job reads: its size and layout, the bytes between its rows
/// in the buffer that holds it, and which buffer that is.
#[derive(Clone, Copy, Debug)]
pub(super) struct SrcView {
    pub(super) w: u32,
    pub(super) h: u32,
    pub(super) layout: Layout,
    pub(super) stride: u64,
    pub(super) at: SrcAt,
}

/// Where a job's input lies on the device.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum SrcAt {
    /// Uploaded with the job, after its parameters and tables, rows packed.
    Upload,
    /// Inside a resident unit's buffer (`super::resident`): the byte
    /// offset of the input's first pixel and the buffer's size.
    Resident { origin: u64, buffer_len: u64 },
}

impl SrcView {
    /// A whole image, uploaded with the job.
    pub(super) fn upload(p: &Pixels) -> SrcView {
        SrcView { w: p.width(), h: p.height(), layout: p.layout(), stride: p.stride() as u64, at: SrcAt::Upload }
    }

    /// Bytes from the first pixel to the end of the last row's pixels.
    fn len(&self) -> u64 {
        let row = u64::from(self.w) * self.layout.channels() as u64;
        (u64::from(self.h).saturating_sub(1)).saturating_mul(self.stride).saturating_add(row)
    }
}

impl JobLayout {
    /// Offset in the buffer holding the input of the alignment boundary at
    /// or before the input (bindings of the input start from there).
    pub(super) fn src_base_offset(&self) -> u64 {
        match self.at {
            SrcAt::Upload => self.input.0,
            SrcAt::Resident { origin, .. } => origin - self.phase,
        }
    }

    /// `Params.src_base` for a binding `rel` bytes after that boundary.
    pub(super) fn src_base(&self, rel: u64) -> u32 {
        rel.wrapping_sub(self.phase) as u32
    }
}

impl Gpu {
    pub(super) fn layout(&self, src: &SrcView, job: &GpuJob, rp: ResizePlan) -> Result<JobLayout, GpuError> {
        let (src_w, src_h) = (src.w, src.h);
        let (out_w, out_h) = (job.out_w, job.out_h);
        if src_w == 0 || src_h == 0 || out_w == 0 || out_h == 0 {
            return Err(GpuError::Unsupported("empty image".into()));
        }
        let layout = src.layout;
        let in_c = layout.channels() as u32;
        let arbitrary = job.arbitrary;
        // A transparent background gives the rotated image alpha.
        let turned = match arbitrary {
            Some(a) if a.transparent => layout.with_alpha(),
            _ => layout,
        };
        let out_layout = match job.quality {
            GpuQuality::Keep => turned,
            GpuQuality::Gray | GpuQuality::Bitonal => {
                if turned.has_alpha() {
                    Layout::GrayAlpha
                } else {
                    Layout::Gray
                }
            }
        };
        let out_c = out_layout.channels() as u32;
        let q = u32::from(job.quarter_turns % 4);
        let (final_w, final_h) = match arbitrary {
            Some(a) => crate::transform::rotate::arbitrary_size(out_w, out_h, a.degrees),
            None if q % 2 == 1 => (out_h, out_w),
            None => (out_w, out_h),
        };

        // The passes and tables come from `resize_plan`, over the part of
        // the source they read: `src` is that part (cut out and uploaded,
        // or a rectangle of a resident unit).
        let ResizePlan { v, h, .. } = rp;
        for c in v.iter().chain(h.iter()) {
            if c.precision == 0 {
                return Err(GpuError::Unsupported("degenerate resize coefficients".into()));
            }
        }

        let l = &self.limits;
        let max_bind = l.max_storage_buffer_binding_size;
        let max_groups = l.max_compute_workgroups_per_dimension;
        let align = self.align;
        let row_bytes = u64::from(src_w) * u64::from(in_c);
        let in_stride = src.stride;
        if in_stride < row_bytes {
            return Err(GpuError::Unsupported("input rows overlap".into()));
        }
        let in_len4 = round_up(src.len().max(4), 4).ok_or_else(too_big)?;
        let v_stride = round_up(row_bytes, 4).ok_or_else(too_big)?;
        // What the input's bindings may cover, from the alignment boundary
        // at or before the input: the uploaded input, or up to the end of
        // the resident buffer.
        let (phase, end) = match src.at {
            SrcAt::Upload => (0, in_len4),
            SrcAt::Resident { origin, buffer_len } => {
                let phase = origin % align;
                if origin.checked_add(src.len()).is_none_or(|e| e > buffer_len) {
                    return Err(GpuError::Unsupported("input outside its resident unit".into()));
                }
                (phase, buffer_len - (origin - phase))
            }
        };
        let raw_len = round_up(phase + src.len(), 4).ok_or_else(too_big)?.min(end);
        let raw = (0, raw_len);
        let bands = match &v {
            Some(c) => v_bands(c, in_stride, phase, end, max_bind, align, max_groups.saturating_mul(RESIZE_WG))?,
            None => Vec::new(),
        };

        // Upload layout: parameter blocks, coefficient tables, input.
        let mut off = 0u64;
        let mut take = |len: u64| -> Result<(u64, u64), GpuError> {
            let start = off;
            let len4 = round_up(len.max(4), 4).ok_or_else(too_big)?;
            off = round_up(start.checked_add(len4).ok_or_else(too_big)?, align).ok_or_else(too_big)?;
            Ok((start, len4))
        };
        let mut params_v = Vec::with_capacity(bands.len());
        for _ in &bands {
            params_v.push(take(PARAMS_BYTES)?);
        }
        let params_h = take(PARAMS_BYTES)?;
        let params_p = take(PARAMS_BYTES)?;
        let params_r = match arbitrary {
            Some(_) => Some(take(PARAMS_BYTES)?),
            None => None,
        };
        let mut tables = |c: &Option<Coeffs>| -> Result<Option<(Section, Section)>, GpuError> {
            match c {
                None => Ok(None),
                Some(c) => {
                    let b = take(c.bounds.len() as u64 * 8)?;
                    let k = take(c.values.len() as u64 * 4)?;
                    Ok(Some((b, k)))
                }
            }
        };
        let tables_v = tables(&v)?;
        let tables_h = tables(&h)?;
        let input = match src.at {
            SrcAt::Upload => take(in_len4)?,
            SrcAt::Resident { .. } => (off, 0),
        };
        let upload_len = off.max(4);

        // Work buffers: stages alternate A, B, A.
        // resize_v writes raw rows padded to whole words; resize_h packed RGBA.
        let v_len = v_stride * u64::from(out_h);
        let h_len = u64::from(out_w) * u64::from(out_h) * 4;
        let mut stage_sizes = Vec::with_capacity(3);
        if v.is_some() {
            stage_sizes.push(v_len);
        }
        if h.is_some() {
            stage_sizes.push(h_len);
        }
        let rot_len = u64::from(final_w) * u64::from(final_h) * 4;
        if arbitrary.is_some() {
            stage_sizes.push(rot_len);
        }
        let out_bytes = u64::from(final_w) * u64::from(final_h) * u64::from(out_c);
        let out_len4 = round_up(out_bytes, 4).ok_or_else(too_big)?;
        stage_sizes.push(out_len4);
        let mut work = [0u64; 2];
        for (i, s) in stage_sizes.iter().enumerate() {
            work[i % 2] = work[i % 2].max(*s);
        }

        // Limits. With a vertical pass the input is bound in bands; without
        // one, resize_h or orient_quality binds it whole.
        let input_binding = if v.is_some() { 0 } else { raw.1 };
        let biggest_binding = input_binding.max(work[0]).max(work[1]);
        if biggest_binding > max_bind {
            return Err(GpuError::Unsupported(format!(
                "binding of {biggest_binding} bytes exceeds max_storage_buffer_binding_size {max_bind}"
            )));
        }
        if upload_len > l.max_buffer_size || work[0] > l.max_buffer_size {
            return Err(GpuError::Unsupported(format!("buffer exceeds max_buffer_size {}", l.max_buffer_size)));
        }
        if out_bytes > u64::from(u32::MAX) || end >= u64::from(u32::MAX) || v_len >= u64::from(u32::MAX) {
            return Err(GpuError::Unsupported("image too large for 32-bit indexing".into()));
        }
        let groups_2d = |w: u32, h: u32| -> Result<(u32, u32), GpuError> {
            let g = (w.div_ceil(RESIZE_WG), h.div_ceil(RESIZE_WG));
            if g.0 > max_groups || g.1 > max_groups {
                Err(GpuError::Unsupported(format!("{w}x{h} needs more than {max_groups} workgroups per dimension")))
            } else {
                Ok(g)
            }
        };
        let row_words = (v_stride / 4) as u32;
        let mut v_dispatch = Vec::with_capacity(bands.len());
        for (band, params) in bands.iter().zip(params_v) {
            let groups = groups_2d(row_words, band.rows)?;
            v_dispatch.push(VDispatch { band: *band, params, groups });
        }
        let groups_h = if h.is_some() { Some(groups_2d(out_w, out_h)?) } else { None };
        // One invocation per four output pixels.
        let rotate = match (arbitrary, params_r) {
            (Some(a), Some(params)) => {
                let t = a.degrees.to_radians();
                Some(RotatePass {
                    cos: t.cos() as f32,
                    sin: t.sin() as f32,
                    transparent: a.transparent,
                    params,
                    len: rot_len,
                    groups: groups_2d(final_w, final_h)?,
                })
            }
            _ => None,
        };
        let invocations = (u64::from(final_w) * u64::from(final_h)).div_ceil(4);
        let total = invocations.div_ceil(u64::from(PACK_WG));
        let gx = total.min(u64::from(max_groups)).max(1);
        let gy = total.div_ceil(gx).max(1);
        if gy > u64::from(max_groups) {
            return Err(GpuError::Unsupported("output needs too many workgroups".into()));
        }
        let groups_p = (gx as u32, gy as u32);

        Ok(JobLayout {
            src_w,
            src_h,
            out_w,
            out_h,
            in_c,
            out_c,
            out_layout,
            final_w,
            final_h,
            quarter: q,
            mirror: job.mirror,
            quality: job.quality,
            alpha: layout.has_alpha(),
            v,
            h,
            in_stride: u32::try_from(in_stride).map_err(|_| too_big())?,
            at: src.at,
            phase,
            raw,
            v_stride: v_stride as u32,
            v_len,
            h_len,
            v_dispatch,
            params_h,
            params_p,
            tables_v,
            tables_h,
            input,
            upload_len,
            work,
            out_bytes,
            out_len4,
            groups_h,
            groups_p,
            rotate,
        })
    }

    /// Parameter blocks and coefficient tables, laid out as `plan` says.
    pub(super) fn header(&self, plan: &JobLayout) -> Vec<u8> {
        let mut h = vec![0u8; plan.input.0 as usize];
        let mut put_params = |at: u64, words: [u32; 16]| {
            for (i, w) in words.iter().enumerate() {
                let o = at as usize + i * 4;
                if let Some(d) = h.get_mut(o..o + 4) {
                    d.copy_from_slice(&w.to_le_bytes());
                }
            }
        };
        const PREMULTIPLY: u32 = 1;
        const UNPREMULTIPLY: u32 = 2;
        const MIRROR: u32 = 4;
        const GRAY_OUT: u32 = 8;
        let alpha = plan.alpha;
        // Vertical pass: reads the raw input.
        if let Some(c) = &plan.v {
            let mut flags = 0;
            if alpha {
                flags |= PREMULTIPLY;
                if plan.h.is_none() {
                    flags |= UNPREMULTIPLY;
                }
            }
            for d in &plan.v_dispatch {
                let b = &d.band;
                let dims = [plan.src_w, plan.src_h, plan.src_w, b.row0 + b.rows];
                let mut words = params_block(dims, plan.in_c, [plan.in_stride, plan.v_stride], flags, c);
                words[14] = plan.src_base(b.offset);
                words[15] = b.row0;
                put_params(d.params.0, words);
            }
        }
        // Horizontal pass: reads the vertical pass's output, or the raw input.
        if let Some(c) = &plan.h {
            let (src_h, stride, mut flags) = match plan.v {
                Some(_) => (plan.out_h, plan.v_stride, 0),
                None => (plan.src_h, plan.in_stride, if alpha { PREMULTIPLY } else { 0 }),
            };
            if alpha {
                flags |= UNPREMULTIPLY;
            }
            let dims = [plan.src_w, src_h, plan.out_w, plan.out_h];
            let mut words = params_block(dims, plan.in_c, [stride, 0], flags, c);
            if plan.v.is_none() {
                words[14] = plan.src_base(plan.raw.0);
            }
            put_params(plan.params_h.0, words);
        }
        const TRANSPARENT: u32 = 16;
        // The resized image: packed words from resize_h, raw rows from
        // resize_v, or the raw input (then from its origin).
        let (src_c, src_stride, src_base) = match (&plan.v, &plan.h) {
            (_, Some(_)) => (0, 0, 0),
            (Some(_), None) => (plan.in_c, plan.v_stride, 0),
            (None, None) => (plan.in_c, plan.in_stride, plan.src_base(plan.raw.0)),
        };
        // Rotation by any angle: reads the resized image, mirrored on the
        // way; writes packed words for the pass below.
        if let Some(r) = &plan.rotate {
            let mut words = [0u32; 16];
            words[0] = plan.out_w;
            words[1] = plan.out_h;
            words[2] = plan.final_w;
            words[3] = plan.final_h;
            words[4] = src_c;
            words[5] = if plan.mirror { MIRROR } else { 0 } | if r.transparent { TRANSPARENT } else { 0 };
            words[6] = r.cos.to_bits();
            words[7] = r.sin.to_bits();
            words[12] = src_stride;
            words[14] = src_base;
            put_params(r.params.0, words);
        }
        let mut flags = 0;
        if plan.mirror && plan.rotate.is_none() {
            flags |= MIRROR;
        }
        if plan.out_c <= 2 {
            flags |= GRAY_OUT;
        }
        // Keep on a gray layout also takes the gray path: luma(g, g, g) == g.
        let quality = match plan.quality {
            GpuQuality::Keep => 0,
            GpuQuality::Gray => 1,
            GpuQuality::Bitonal => 2,
        };
        // orient_quality reads the rotated image (packed words), or the
        // resized one.
        let mut words = [0u32; 16];
        if plan.rotate.is_some() {
            words[..4].copy_from_slice(&[plan.final_w, plan.final_h, plan.final_w, plan.final_h]);
        } else {
            words[..4].copy_from_slice(&[plan.out_w, plan.out_h, plan.out_w, plan.out_h]);
            words[4] = src_c;
            words[12] = src_stride;
            words[14] = src_base;
        }
        words[5] = flags;
        words[8] = if plan.rotate.is_some() { 0 } else { plan.quarter };
        words[9] = quality;
        words[10] = plan.out_c;
        words[11] = plan.out_bytes as u32;
        put_params(plan.params_p.0, words);
        // Coefficient tables.
        let mut put_tables = |c: &Option<Coeffs>, t: Option<(Section, Section)>| {
            if let (Some(c), Some(((bo, _), (ko, _)))) = (c, t) {
                for (i, b) in c.bounds.iter().enumerate() {
                    let o = bo as usize + i * 8;
                    if let Some(d) = h.get_mut(o..o + 8) {
                        d[..4].copy_from_slice(&b[0].to_le_bytes());
                        d[4..].copy_from_slice(&b[1].to_le_bytes());
                    }
                }
                for (i, k) in c.values.iter().enumerate() {
                    let o = ko as usize + i * 4;
                    if let Some(d) = h.get_mut(o..o + 4) {
                        d.copy_from_slice(&k.to_le_bytes());
                    }
                }
            }
        };
        put_tables(&plan.v, plan.tables_v);
        put_tables(&plan.h, plan.tables_h);
        h
    }
}

/// A resize pass's `Params` (shaders/common.wgsl): `dims` = src w, h, dst w, h;
/// `strides` = source and destination bytes per row.
pub(super) fn params_block(dims: [u32; 4], src_c: u32, strides: [u32; 2], flags: u32, c: &Coeffs) -> [u32; 16] {
    let mut w = [0u32; 16];
    w[..4].copy_from_slice(&dims);
    w[4] = src_c;
    w[5] = flags;
    w[6] = c.precision;
    w[7] = c.window;
    w[12] = strides[0];
    w[13] = strides[1];
    w
}

pub(super) fn too_big() -> GpuError {
    GpuError::Unsupported("size overflow".into())
}

pub(super) fn round_up(v: u64, to: u64) -> Option<u64> {
    v.checked_add(to - 1).map(|x| x / to * to)
}

/// (offset, length) inside the upload/input buffer.
pub(super) type Section = (u64, u64);

/// A band of resize_v output rows and the input bytes it reads.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) struct Band {
    pub(super) row0: u32,
    pub(super) rows: u32,
    /// Byte range of the input bound for this band (offset from the
    /// alignment boundary at or before the input, aligned for binding).
    pub(super) offset: u64,
    pub(super) len: u64,
}

pub(super) struct VDispatch {
    pub(super) band: Band,
    pub(super) params: Section,
    pub(super) groups: (u32, u32),
}

/// Splits resize_v's output rows into bands whose input rows fit one storage
/// binding (`max_bind` bytes, offsets aligned to `align`) and one dispatch
/// (`max_rows`). Usually one band covering everything. Offsets count from
/// the alignment boundary at or before the input, which starts `phase`
/// bytes after it; bindings end by `end`.
pub(super) fn v_bands(
    c: &Coeffs,
    stride: u64,
    phase: u64,
    end: u64,
    max_bind: u64,
    align: u64,
    max_rows: u32,
) -> Result<Vec<Band>, GpuError> {
    // Bytes a run of output rows reads: from its lowest first row to its
    // highest last row, plus the one word resize_v may read past a row end.
    let span = |b: &[u32; 2]| {
        let lo = phase + u64::from(b[0]) * stride;
        let hi = phase + (u64::from(b[0]) + u64::from(b[1])) * stride;
        (lo, round_up(hi, 4).map_or(end, |h| h.saturating_add(4)).min(end))
    };
    let mut bands = Vec::new();
    let mut y = 0usize;
    let n = c.bounds.len();
    while y < n {
        let (mut lo, mut hi) = span(&c.bounds[y]);
        let mut end = y;
        while end < n && end - y < max_rows as usize {
            let (l, h) = span(&c.bounds[end]);
            let (nl, nh) = (lo.min(l), hi.max(h));
            if nh - nl / align * align > max_bind {
                break;
            }
            (lo, hi) = (nl, nh);
            end += 1;
        }
        if end == y {
            return Err(GpuError::Unsupported(format!(
                "one output row reads more than max_storage_buffer_binding_size {max_bind} bytes"
            )));
        }
        let offset = lo / align * align;
        bands.push(Band {
            row0: y as u32,
            rows: (end - y) as u32,
            offset,
            len: round_up(hi - offset, 4).unwrap_or(hi - offset),
        });
        y = end;
    }
    Ok(bands)
}
