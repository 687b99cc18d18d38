//! JPEG decoding with libjpeg-turbo 3 (the `turbojpeg-sys` bindings): header
//! probe, DCT-domain scaling (1/2, 1/4, 1/8) and partial decompression of a
//! cropping region, so a small output from a large JPEG decodes only what it
//! needs at the coarsest scale that serves it.
//!
//! All of this module's `unsafe` is the TurboJPEG C API; each call documents
//! why it is sound. A handle is owned by [`Handle`] and destroyed on drop.

use std::ffi::CStr;
use std::os::raw::c_int;

use turbojpeg_sys as tj;

use super::{CodecError, ImageInfo, SourceFormat};
use crate::model::Rect;
use crate::pixels::{Layout, Pixels};

/// Native DCT reduction factors offered to the planner.
pub const SCALE_FACTORS: [u32; 4] = [1, 2, 4, 8];

/// An owned TurboJPEG decompressor handle.
struct Handle(tj::tjhandle);

impl Handle {
    fn decompressor() -> Result<Self, CodecError> {
        // SAFETY: tj3Init has no preconditions; a null return is handled.
        let h = unsafe { tj::tj3Init(tj::TJINIT_TJINIT_DECOMPRESS as c_int) };
        if h.is_null() {
            return Err(CodecError::Corrupt("could not initialise the JPEG decoder".into()));
        }
        Ok(Handle(h))
    }

    fn error(&self) -> String {
        // SAFETY: the handle is valid; tj3GetErrorStr returns a pointer to a
        // NUL-terminated string owned by the handle (or a static one), which we
        // copy before the handle can change it.
        unsafe {
            let p = tj::tj3GetErrorStr(self.0);
            if p.is_null() {
                "unknown JPEG error".into()
            } else {
                CStr::from_ptr(p).to_string_lossy().into_owned()
            }
        }
    }

    fn get(&self, param: tj::TJPARAM) -> c_int {
        // SAFETY: valid handle; tj3Get only reads a parameter.
        unsafe { tj::tj3Get(self.0, param as c_int) }
    }

    fn set(&self, param: tj::TJPARAM, value: c_int) -> Result<(), CodecError> {
        // SAFETY: valid handle; tj3Set validates its arguments.
        if unsafe { tj::tj3Set(self.0, param as c_int, value) } != 0 {
            return Err(CodecError::Corrupt(self.error()));
        }
        Ok(())
    }

    /// Reads the header of `data` into the handle's state.
    fn read_header(&self, data: &[u8]) -> Result<Header, CodecError> {
        // SAFETY: `data` is a valid slice for its whole length for the duration
        // of the call; TurboJPEG reads at most `data.len()` bytes. If it is a
        // memory map whose file shrinks, a faulting read is turned into zeros
        // by source::mmap's handler; a header read only parses what it reads.
        let rc = unsafe { tj::tj3DecompressHeader(self.0, data.as_ptr(), data.len() as tj::size_t) };
        if rc != 0 {
            return Err(CodecError::Corrupt(self.error()));
        }
        let width = self.get(tj::TJPARAM_TJPARAM_JPEGWIDTH);
        let height = self.get(tj::TJPARAM_TJPARAM_JPEGHEIGHT);
        let colorspace = self.get(tj::TJPARAM_TJPARAM_COLORSPACE);
        let subsamp = self.get(tj::TJPARAM_TJPARAM_SUBSAMP);
        let lossless = self.get(tj::TJPARAM_TJPARAM_LOSSLESS) == 1;
        let precision = self.get(tj::TJPARAM_TJPARAM_PRECISION);
        if width <= 0 || height <= 0 {
            return Err(CodecError::Corrupt("JPEG header has no size".into()));
        }
        if precision != 8 {
            return Err(CodecError::Unsupported(format!("{precision}-bit JPEG")));
        }
        let (layout, cmyk) = match colorspace as tj::TJCS {
            tj::TJCS_TJCS_GRAY => (Layout::Gray, false),
            tj::TJCS_TJCS_RGB | tj::TJCS_TJCS_YCbCr => (Layout::Rgb, false),
            // Decoded as CMYK and converted to RGB (see `decode`).
            tj::TJCS_TJCS_CMYK | tj::TJCS_TJCS_YCCK => (Layout::Rgb, true),
            _ => return Err(CodecError::Unsupported("JPEG colour space".into())),
        };
        Ok(Header { width: width as u32, height: height as u32, layout, subsamp, lossless, cmyk })
    }
}

impl Drop for Handle {
    fn drop(&mut self) {
        // SAFETY: the handle came from tj3Init and is destroyed exactly once.
        unsafe { tj::tj3Destroy(self.0) }
    }
}

struct Header {
    width: u32,
    height: u32,
    layout: Layout,
    subsamp: c_int,
    lossless: bool,
    /// Four components, CMYK or YCCK: decoded as CMYK, then converted.
    cmyk: bool,
}

/// Reads a JPEG header.
pub fn probe(data: &[u8]) -> Result<ImageInfo, CodecError> {
    let h = Handle::decompressor()?;
    let hdr = h.read_header(data)?;
    Ok(ImageInfo {
        format: SourceFormat::Jpeg,
        width: hdr.width,
        height: hdr.height,
        layout: hdr.layout,
        scale_factors: if hdr.lossless { vec![1] } else { SCALE_FACTORS.to_vec() },
        native_tile: None,
        tiff: None,
        // A CMYK JPEG's profile is applied as it is decoded (`decode`).
        icc: if hdr.cmyk { None } else { super::colour::judge(icc_profile(data), hdr.layout) },
    })
}

/// The ICC profile of a JPEG: its APP2 `ICC_PROFILE` segments, joined in
/// their sequence order (a profile over 64 KB spans several). `None` when
/// there is none or the segments do not make a whole profile.
pub fn icc_profile(data: &[u8]) -> Option<Vec<u8>> {
    const TAG: &[u8] = b"ICC_PROFILE\0";
    let mut parts: Vec<(u8, &[u8])> = Vec::new();
    let mut count = 0u8;
    let mut i = 2;
    while i + 4 <= data.len() && data[i] == 0xFF {
        let marker = data[i + 1];
        if marker == 0xDA || marker == 0xD9 {
            break; // Start of scan: the headers are over.
        }
        if marker == 0xFF || (0xD0..=0xD7).contains(&marker) || marker == 0x01 {
            i += 1;
            continue;
        }
        let len = u16::from_be_bytes([data[i + 2], data[i + 3]]) as usize;
        let end = (i + 2 + len).min(data.len());
        let body = &data[(i + 4).min(end)..end];
        if marker == 0xE2 && body.len() > TAG.len() + 2 && body.starts_with(TAG) {
            let (seq, n) = (body[TAG.len()], body[TAG.len() + 1]);
            count = n;
            parts.push((seq, &body[TAG.len() + 2..]));
        }
        if len < 2 {
            break;
        }
        i += 2 + len;
    }
    if parts.is_empty() || parts.len() != count as usize {
        return None;
    }
    parts.sort_by_key(|(seq, _)| *seq);
    if parts.iter().enumerate().any(|(k, (seq, _))| *seq as usize != k + 1) {
        return None;
    }
    Some(parts.into_iter().flat_map(|(_, p)| p.iter().copied()).collect())
}

/// Whether the JPEG has an Adobe APP14 segment (before its first scan).
fn has_adobe_marker(data: &[u8]) -> bool {
    let mut i = 2;
    while i + 4 <= data.len() && data[i] == 0xFF {
        let marker = data[i + 1];
        if marker == 0xDA || marker == 0xD9 {
            return false;
        }
        let len = u16::from_be_bytes([data[i + 2], data[i + 3]]) as usize;
        if marker == 0xEE && data.get(i + 4..i + 9) == Some(b"Adobe") {
            return true;
        }
        if len < 2 {
            return false;
        }
        i += 2 + len;
    }
    false
}

/// The MCU width in pixels for a TurboJPEG sub-sampling code.
fn mcu_width(subsamp: c_int) -> u32 {
    match subsamp as tj::TJSAMP {
        tj::TJSAMP_TJSAMP_422 | tj::TJSAMP_TJSAMP_420 => 16,
        tj::TJSAMP_TJSAMP_411 | tj::TJSAMP_TJSAMP_441 => 32,
        _ => 8,
    }
}

/// Decodes `region` (full-resolution coordinates) at 1/`scale`.
/// Returns `region.at_scale(scale)` pixels (the planner's grid).
pub fn decode(data: &[u8], info: &ImageInfo, region: Rect, scale: u32, max_pixels: u64) -> Result<Pixels, CodecError> {
    // `data` may be a memory map that another process rewrites while we
    // decode (source::mmap). TurboJPEG parses the header again inside
    // tj3Decompress8 and sizes its writes from that parse, so a header that
    // changed after our check would overrun `buf`. Decoding from a private
    // copy makes the header checked here the header decoded (a memcpy of the
    // file: about 1 ms per 10 MB, against tens of milliseconds of decode).
    let copy = data.to_vec();
    let data = &copy[..];
    let h = Handle::decompressor()?;
    let hdr = h.read_header(data)?;
    if hdr.width != info.width || hdr.height != info.height {
        return Err(CodecError::Corrupt("JPEG changed between probe and decode".into()));
    }
    let scale = if hdr.lossless { 1 } else { scale };
    if !SCALE_FACTORS.contains(&scale) {
        return Err(CodecError::Unsupported(format!("JPEG scale 1/{scale}")));
    }
    // Scaled image size as libjpeg computes it: ceil(dim / scale).
    let sw = hdr.width.div_ceil(scale);
    let sh = hdr.height.div_ceil(scale);
    let want = region.at_scale(scale, hdr.width, hdr.height);

    // The cropping region's x must sit on an iMCU boundary of the scaled image.
    let imcu = (mcu_width(hdr.subsamp) / scale).max(1);
    let crop_x = want.x / imcu * imcu;
    let crop_w = (want.x + want.w - crop_x).min(sw - crop_x);
    let whole = crop_x == 0 && want.y == 0 && crop_w == sw && want.h == sh;

    let pixels = crop_w as u64 * want.h as u64;
    if pixels > max_pixels {
        return Err(CodecError::TooLarge { pixels, limit: max_pixels });
    }
    // Bound libjpeg-turbo's own work memory too (covers hostile headers with
    // huge progressive coefficient buffers).
    h.set(tj::TJPARAM_TJPARAM_MAXMEMORY, 1024)?;
    h.set(tj::TJPARAM_TJPARAM_STOPONWARNING, 0)?;

    if scale != 1 {
        let f = tj::tjscalingfactor { num: 1, denom: scale as c_int };
        // SAFETY: valid handle; the factor is one of 1/2, 1/4, 1/8, which
        // TurboJPEG supports.
        if unsafe { tj::tj3SetScalingFactor(h.0, f) } != 0 {
            return Err(CodecError::Corrupt(h.error()));
        }
    }
    if !whole {
        let r = tj::tjregion { x: crop_x as c_int, y: want.y as c_int, w: crop_w as c_int, h: want.h as c_int };
        // SAFETY: valid handle; the region lies within the scaled image and x
        // is aligned to the scaled iMCU width, as tj3SetCroppingRegion requires.
        if unsafe { tj::tj3SetCroppingRegion(h.0, r) } != 0 {
            return Err(CodecError::Corrupt(h.error()));
        }
    }

    let (pf, c) = match hdr.layout {
        Layout::Gray => (tj::TJPF_TJPF_GRAY, 1),
        _ if hdr.cmyk => (tj::TJPF_TJPF_CMYK, 4),
        _ => (tj::TJPF_TJPF_RGB, 3),
    };
    let pitch = crop_w as usize * c;
    let mut buf = vec![0u8; pitch * want.h as usize];
    // SAFETY: `buf` holds exactly `crop_w × want.h` pixels of `pf` at `pitch`
    // bytes per row, which is the size TurboJPEG writes for the cropping region
    // set above (or for the whole scaled image when no crop is set, in which
    // case crop_w = sw and want.h = sh). `data` is our private copy, valid
    // for its length and identical to the bytes whose header was read above.
    let rc = unsafe {
        tj::tj3Decompress8(h.0, data.as_ptr(), data.len() as tj::size_t, buf.as_mut_ptr(), pitch as c_int, pf as c_int)
    };
    if rc != 0 {
        // Warnings (e.g. premature end of data) still produce an image; only
        // fatal errors are failures.
        // SAFETY: valid handle.
        let severity = unsafe { tj::tj3GetErrorCode(h.0) };
        if severity == tj::TJERR_TJERR_FATAL as c_int {
            return Err(CodecError::Corrupt(h.error()));
        }
    }
    let (layout, buf) = if hdr.cmyk {
        // Adobe's APP14 marks the inverted CMYK that Photoshop (and every
        // writer since) stores; the embedded profile, if any, is CMYK.
        (Layout::Rgb, super::colour::cmyk_to_srgb(&buf, icc_profile(data).as_deref(), has_adobe_marker(data)))
    } else {
        (hdr.layout, buf)
    };
    let out = Pixels::new(crop_w, want.h, layout, buf).map_err(|e| CodecError::Corrupt(e.to_string()))?;
    let dx = want.x - crop_x;
    Ok(if dx == 0 && crop_w == want.w { out } else { out.crop(dx, 0, want.w, want.h) })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::codec::encode;
    use crate::model::Format;

    fn gradient(w: u32, h: u32) -> Pixels {
        let mut d = Vec::with_capacity((w * h * 3) as usize);
        for y in 0..h {
            for x in 0..w {
                d.extend_from_slice(&[(x * 255 / w) as u8, (y * 255 / h) as u8, ((x + y) % 256) as u8]);
            }
        }
        Pixels::new(w, h, Layout::Rgb, d).unwrap()
    }

    fn jpeg_of(p: &Pixels) -> Vec<u8> {
        encode::encode(p, Format::Jpg, 95).unwrap()
    }

    #[test]
    fn probe_reads_size_and_offers_dct_scales() {
        let j = jpeg_of(&gradient(301, 199));
        let info = probe(&j).unwrap();
        assert_eq!((info.width, info.height), (301, 199));
        assert_eq!(info.scale_factors, vec![1, 2, 4, 8]);
        assert_eq!(info.layout, Layout::Rgb);
    }

    #[test]
    fn cropped_and_scaled_decodes_have_the_planned_size_at_every_offset() {
        let j = jpeg_of(&gradient(301, 199));
        let info = probe(&j).unwrap();
        for scale in [1, 2, 4, 8] {
            for (x, y, w, h) in [(0, 0, 301, 199), (17, 33, 100, 50), (299, 190, 2, 9), (5, 5, 1, 1)] {
                let r = Rect { x, y, w, h };
                let want = r.at_scale(scale, 301, 199);
                let p = decode(&j, &info, r, scale, u64::MAX).unwrap();
                assert_eq!((p.width(), p.height()), (want.w, want.h), "scale {scale} rect {r:?}");
            }
        }
    }

    #[test]
    fn cropped_decode_matches_the_same_rectangle_of_a_full_decode() {
        let j = jpeg_of(&gradient(256, 128));
        let info = probe(&j).unwrap();
        let full = decode(&j, &info, Rect { x: 0, y: 0, w: 256, h: 128 }, 1, u64::MAX).unwrap();
        let r = Rect { x: 37, y: 20, w: 64, h: 40 };
        let part = decode(&j, &info, r, 1, u64::MAX).unwrap();
        let cut = full.crop(37, 20, 64, 40);
        let diff = part.data().iter().zip(cut.data()).map(|(a, b)| a.abs_diff(*b)).max().unwrap();
        assert!(diff <= 2, "max diff {diff}");
    }

    #[test]
    fn truncated_and_garbage_jpegs_are_errors_not_panics() {
        let j = jpeg_of(&gradient(64, 64));
        for cut in [0, 2, 10, 100, j.len() / 2] {
            if let Ok(info) = probe(&j[..cut]) {
                let _ = decode(&j[..cut], &info, Rect { x: 0, y: 0, w: 64, h: 64 }, 1, u64::MAX);
            }
        }
        assert!(probe(b"\xFF\xD8\xFFgarbage").is_err());
    }

    #[test]
    fn decode_refuses_more_pixels_than_the_limit() {
        let j = jpeg_of(&gradient(64, 64));
        let info = probe(&j).unwrap();
        let e = decode(&j, &info, Rect { x: 0, y: 0, w: 64, h: 64 }, 1, 100).unwrap_err();
        assert!(matches!(e, CodecError::TooLarge { .. }));
    }
}
