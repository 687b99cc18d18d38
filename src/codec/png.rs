//! PNG decoding with the `png` crate: every bit depth and colour type is
//! expanded to 8-bit Gray, GrayAlpha, Rgb or Rgba (16-bit samples rounded to
//! the nearest 8-bit value); an `iCCP` profile is kept for `colour`. PNG has no random access, so
//! the whole image is decoded and the caller crops; the pixel limit is checked
//! against the header before any allocation.

use std::io::Cursor;

use super::{CodecError, ImageInfo, SourceFormat};
use crate::pixels::{Layout, Pixels};

fn reader(data: &[u8]) -> Result<png::Reader<Cursor<&[u8]>>, CodecError> {
    let mut dec = png::Decoder::new(Cursor::new(data));
    // 16-bit samples are kept here and rounded to 8 bits in `decode`
    // (STRIP_16 would truncate: 0x64E5 is 100.5 of 255 and must give 101).
    dec.set_transformations(png::Transformations::EXPAND);
    let r = dec.read_info().map_err(|e| CodecError::Corrupt(e.to_string()))?;
    // png 0.18.1 panics expanding a palette whose length is not a multiple
    // of 3 (image-rs/image-png#694; found by our fuzzing:
    // tests/fuzz/codec_decode-png-plte-length). Such a PLTE is invalid.
    if r.info().palette.as_ref().is_some_and(|p| p.len() % 3 != 0 || p.len() > 768) {
        return Err(CodecError::Corrupt("PNG palette length is not a multiple of 3 (at most 256 entries)".into()));
    }
    Ok(r)
}

fn layout_of(ct: png::ColorType) -> Result<Layout, CodecError> {
    Ok(match ct {
        png::ColorType::Grayscale => Layout::Gray,
        png::ColorType::GrayscaleAlpha => Layout::GrayAlpha,
        png::ColorType::Rgb => Layout::Rgb,
        png::ColorType::Rgba => Layout::Rgba,
        png::ColorType::Indexed => return Err(CodecError::Unsupported("unexpanded palette PNG".into())),
    })
}

/// Reads a PNG header.
pub fn probe(data: &[u8]) -> Result<ImageInfo, CodecError> {
    let r = reader(data)?;
    let info = r.info();
    let (width, height) = (info.width, info.height);
    let (ct, _) = r.output_color_type();
    let layout = layout_of(ct)?;
    Ok(ImageInfo {
        format: SourceFormat::Png,
        width,
        height,
        layout,
        scale_factors: vec![1],
        native_tile: None,
        tiff: None,
        icc: super::colour::judge(info.icc_profile.as_ref().map(|p| p.to_vec()), layout),
    })
}

/// Decodes the whole PNG, refusing images above `max_pixels`.
pub fn decode(data: &[u8], max_pixels: u64) -> Result<Pixels, CodecError> {
    let mut r = reader(data)?;
    let (w, h) = (r.info().width, r.info().height);
    let px = w as u64 * h as u64;
    if px > max_pixels {
        return Err(CodecError::TooLarge { pixels: px, limit: max_pixels });
    }
    let (ct, depth) = r.output_color_type();
    if depth != png::BitDepth::Eight && depth != png::BitDepth::Sixteen {
        return Err(CodecError::Unsupported(format!("PNG output depth {depth:?}")));
    }
    let layout = layout_of(ct)?;
    let size = r.output_buffer_size().ok_or_else(|| CodecError::Corrupt("PNG too large".into()))?;
    let mut buf = vec![0u8; size];
    let frame = r.next_frame(&mut buf).map_err(|e| CodecError::Corrupt(e.to_string()))?;
    buf.truncate(frame.buffer_size());
    if depth == png::BitDepth::Sixteen {
        // Big-endian 16-bit samples, rounded to the nearest 8-bit value.
        buf = buf.chunks_exact(2).map(|b| super::tiff::to_8_bits(u16::from_be_bytes([b[0], b[1]]))).collect();
    }
    Pixels::new(frame.width, frame.height, layout, buf).map_err(|e| CodecError::Corrupt(e.to_string()))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::codec::encode;
    use crate::model::Format;

    #[test]
    fn round_trips_each_layout() {
        for layout in [Layout::Gray, Layout::GrayAlpha, Layout::Rgb, Layout::Rgba] {
            let n = 7 * 5 * layout.channels();
            let p = Pixels::new(7, 5, layout, (0..n).map(|i| (i * 7 % 251) as u8).collect()).unwrap();
            let bytes = encode::encode(&p, Format::Png, 85).unwrap();
            let info = probe(&bytes).unwrap();
            assert_eq!((info.width, info.height, info.layout), (7, 5, layout));
            assert_eq!(decode(&bytes, u64::MAX).unwrap(), p);
        }
    }

    #[test]
    fn sixteen_bit_samples_round_to_nearest_and_alpha_is_kept() {
        // Gray + alpha, 16 bits: 25829 = 100.502 × 257 must give 101 (the
        // high byte alone would give 100), 65535 gives 255.
        let mut bytes = Vec::new();
        {
            let mut enc = png::Encoder::new(&mut bytes, 2, 1);
            enc.set_color(png::ColorType::GrayscaleAlpha);
            enc.set_depth(png::BitDepth::Sixteen);
            let mut w = enc.write_header().unwrap();
            let samples: [u16; 4] = [25829, 65535, 0, 32896];
            let data: Vec<u8> = samples.iter().flat_map(|v| v.to_be_bytes()).collect();
            w.write_image_data(&data).unwrap();
        }
        let info = probe(&bytes).unwrap();
        assert_eq!(info.layout, Layout::GrayAlpha);
        let p = decode(&bytes, u64::MAX).unwrap();
        assert_eq!(p.data(), &[101, 255, 0, 128]);
    }

    #[test]
    fn truncated_png_is_an_error() {
        let p = Pixels::filled(40, 40, Layout::Rgb, &[1, 2, 3]);
        let bytes = encode::encode(&p, Format::Png, 85).unwrap();
        for cut in [8, 20, 33, bytes.len() - 13] {
            let r = probe(&bytes[..cut]).and_then(|_| decode(&bytes[..cut], u64::MAX));
            assert!(r.is_err(), "cut at {cut}");
        }
    }

    #[test]
    fn pixel_limit_is_checked_from_the_header() {
        let p = Pixels::filled(40, 40, Layout::Gray, &[9]);
        let bytes = encode::encode(&p, Format::Png, 85).unwrap();
        assert!(matches!(decode(&bytes, 1000), Err(CodecError::TooLarge { .. })));
    }
}
