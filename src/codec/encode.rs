//! Output encoders: JPEG through libjpeg-turbo (the `turbojpeg` crate), PNG
//! through `png` at its fast setting, GIF through the `image` crate's encoder
//! at quantiser speed [`GIF_SPEED`], TIFF (uncompressed) through the `image`
//! crate, and WebP, lossy or lossless, through libwebp (the `webp` crate).
//! JPEG has no alpha: transparent pixels are composited on white first.
//!
//! Nothing here bounds the cost of an encode: the planner does, before any
//! decode (`plan::Limits::max_output_bytes` for uncompressed TIFF,
//! `plan::Limits::max_gif_pixels` for GIF's quantiser).

use std::io::Cursor;

use super::CodecError;
use crate::model::Format;
use crate::pixels::{Layout, Pixels};

/// How lossy formats are written.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Options {
    /// JPEG and lossy WebP quality, 1..=100.
    pub quality: u8,
    /// WebP lossless rather than lossy.
    pub webp_lossless: bool,
}

/// Encodes pixels in `format` at `quality` (1..=100; WebP lossy).
pub fn encode(p: &Pixels, format: Format, quality: u8) -> Result<Vec<u8>, CodecError> {
    encode_with(p, format, &Options { quality, webp_lossless: false })
}

/// Encodes pixels in `format` with `options`.
pub fn encode_with(p: &Pixels, format: Format, options: &Options) -> Result<Vec<u8>, CodecError> {
    match format {
        Format::Jpg => encode_jpeg(p, options.quality),
        Format::Png => encode_png(p),
        Format::Gif => encode_gif(p),
        Format::Webp => encode_webp(p, options),
        Format::Tif => encode_tiff(p),
    }
}

/// WebP through libwebp: RGB, or RGBA when there is alpha (gray expands).
fn encode_webp(p: &Pixels, options: &Options) -> Result<Vec<u8>, CodecError> {
    let expanded;
    let (data, alpha) = match p.layout() {
        Layout::Rgb => (p.data(), false),
        Layout::Rgba => (p.data(), true),
        Layout::Gray => {
            expanded = p.data().iter().flat_map(|&v| [v, v, v]).collect::<Vec<u8>>();
            (expanded.as_slice(), false)
        }
        Layout::GrayAlpha => {
            expanded = p.data().chunks_exact(2).flat_map(|px| [px[0], px[0], px[0], px[1]]).collect::<Vec<u8>>();
            (expanded.as_slice(), true)
        }
    };
    // libwebp's limit is 16383 a side; the planner's limits are below it by
    // default, but a configuration may raise them.
    if p.width() > 16383 || p.height() > 16383 {
        return Err(CodecError::Encode("WebP images are at most 16383 pixels a side".into()));
    }
    let layout = if alpha { webp::PixelLayout::Rgba } else { webp::PixelLayout::Rgb };
    let enc = webp::Encoder::new(data, layout, p.width(), p.height());
    let mem = if options.webp_lossless { enc.encode_lossless() } else { enc.encode(options.quality as f32) };
    if mem.is_empty() {
        return Err(CodecError::Encode("WebP encoder failed".into()));
    }
    Ok(mem.to_vec())
}

/// NeuQuant's sampling factor for images of more than 256 colours (1..=30:
/// 1 learns from every pixel, 10 from one in ten). The `image` crate's
/// default is 1: a 2000×2000 photo took 5.8 s at 1, 1.1 s at 10 and 0.6 s at
/// 30 (mapping every pixel to the palette is the floor), for files within 1%
/// of each other. The `gif` crate documents 10 as a good compromise.
pub const GIF_SPEED: i32 = 10;

/// GIF through the `image` crate's encoder at [`GIF_SPEED`]. Gray expands to
/// RGB (an image of at most 256 grays skips the quantiser); a pixel with zero
/// alpha becomes the transparent index, any other alpha is opaque.
fn encode_gif(p: &Pixels) -> Result<Vec<u8>, CodecError> {
    use image::codecs::gif::GifEncoder;
    use image::ExtendedColorType;
    let expanded;
    let (data, colour) = match p.layout() {
        Layout::Rgb => (p.data(), ExtendedColorType::Rgb8),
        Layout::Rgba => (p.data(), ExtendedColorType::Rgba8),
        Layout::Gray => {
            expanded = p.data().iter().flat_map(|&v| [v, v, v]).collect::<Vec<u8>>();
            (expanded.as_slice(), ExtendedColorType::Rgb8)
        }
        Layout::GrayAlpha => {
            expanded = p.data().chunks_exact(2).flat_map(|px| [px[0], px[0], px[0], px[1]]).collect::<Vec<u8>>();
            (expanded.as_slice(), ExtendedColorType::Rgba8)
        }
    };
    let mut out = Vec::new();
    GifEncoder::new_with_speed(&mut out, GIF_SPEED)
        .encode(data, p.width(), p.height(), colour)
        .map_err(|e| CodecError::Encode(e.to_string()))?;
    Ok(out)
}

/// Composites alpha over white, dropping the alpha channel.
pub fn flatten_on_white(p: &Pixels) -> Pixels {
    let (layout, c) = match p.layout() {
        Layout::GrayAlpha => (Layout::Gray, 1),
        Layout::Rgba => (Layout::Rgb, 3),
        _ => return p.clone(),
    };
    let mut out = Vec::with_capacity(p.width() as usize * p.height() as usize * c);
    for px in p.data().chunks_exact(c + 1) {
        let a = px[c] as u32;
        for &v in &px[..c] {
            out.push(((v as u32 * a + 255 * (255 - a) + 127) / 255) as u8);
        }
    }
    Pixels::new(p.width(), p.height(), layout, out).unwrap_or_else(|_| p.clone())
}

fn encode_jpeg(p: &Pixels, quality: u8) -> Result<Vec<u8>, CodecError> {
    let flat;
    let p = if p.layout().has_alpha() {
        flat = flatten_on_white(p);
        &flat
    } else {
        p
    };
    let (format, subsamp) = match p.layout() {
        Layout::Gray => (turbojpeg::PixelFormat::GRAY, turbojpeg::Subsamp::Gray),
        _ => (turbojpeg::PixelFormat::RGB, turbojpeg::Subsamp::Sub2x2),
    };
    let image = turbojpeg::Image {
        pixels: p.data(),
        width: p.width() as usize,
        pitch: p.stride(),
        height: p.height() as usize,
        format,
    };
    let mut c = turbojpeg::Compressor::new().map_err(|e| CodecError::Encode(e.to_string()))?;
    c.set_quality(quality.clamp(1, 100) as i32).map_err(|e| CodecError::Encode(e.to_string()))?;
    c.set_subsamp(subsamp).map_err(|e| CodecError::Encode(e.to_string()))?;
    c.compress_to_vec(image).map_err(|e| CodecError::Encode(e.to_string()))
}

fn encode_png(p: &Pixels) -> Result<Vec<u8>, CodecError> {
    let mut out = Vec::with_capacity(p.byte_len() / 2 + 1024);
    let mut enc = png::Encoder::new(Cursor::new(&mut out), p.width(), p.height());
    enc.set_color(match p.layout() {
        Layout::Gray => png::ColorType::Grayscale,
        Layout::GrayAlpha => png::ColorType::GrayscaleAlpha,
        Layout::Rgb => png::ColorType::Rgb,
        Layout::Rgba => png::ColorType::Rgba,
    });
    enc.set_depth(png::BitDepth::Eight);
    enc.set_compression(png::Compression::Fast);
    let mut w = enc.write_header().map_err(|e| CodecError::Encode(e.to_string()))?;
    w.write_image_data(p.data()).map_err(|e| CodecError::Encode(e.to_string()))?;
    w.finish().map_err(|e| CodecError::Encode(e.to_string()))?;
    Ok(out)
}

fn encode_tiff(p: &Pixels) -> Result<Vec<u8>, CodecError> {
    use image::{DynamicImage, ImageBuffer, ImageFormat};
    let (w, h, d) = (p.width(), p.height(), p.data().to_vec());
    let bad = || CodecError::Encode("buffer size mismatch".into());
    let img = match p.layout() {
        Layout::Gray => DynamicImage::ImageLuma8(ImageBuffer::from_raw(w, h, d).ok_or_else(bad)?),
        Layout::GrayAlpha => DynamicImage::ImageLumaA8(ImageBuffer::from_raw(w, h, d).ok_or_else(bad)?),
        Layout::Rgb => DynamicImage::ImageRgb8(ImageBuffer::from_raw(w, h, d).ok_or_else(bad)?),
        Layout::Rgba => DynamicImage::ImageRgba8(ImageBuffer::from_raw(w, h, d).ok_or_else(bad)?),
    };
    // The TIFF encoder has no gray+alpha.
    let img = if p.layout() == Layout::GrayAlpha { DynamicImage::ImageRgba8(img.to_rgba8()) } else { img };
    let mut out = Cursor::new(Vec::new());
    img.write_to(&mut out, ImageFormat::Tiff).map_err(|e| CodecError::Encode(e.to_string()))?;
    Ok(out.into_inner())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Decodes a WebP with libwebp into 8-bit RGBA.
    fn webp_rgba(bytes: &[u8]) -> (u32, u32, Vec<u8>) {
        let img = webp::Decoder::new(bytes).decode().expect("a WebP");
        let (w, h) = (img.width(), img.height());
        let data =
            if img.is_alpha() { img.to_vec() } else { img.chunks(3).flat_map(|p| [p[0], p[1], p[2], 255]).collect() };
        (w, h, data)
    }

    #[test]
    fn webp_is_lossy_by_default_and_exact_when_lossless_and_keeps_alpha() {
        let photo = crate::samples::generate::photo_like(256, 192, 5);
        let lossy = encode(&photo, Format::Webp, 85).unwrap();
        let lossless = encode_with(&photo, Format::Webp, &Options { quality: 85, webp_lossless: true }).unwrap();
        assert!(lossy.len() * 2 < lossless.len(), "{} against {}", lossy.len(), lossless.len());
        let rgba = |p: &Pixels| p.data().chunks(3).flat_map(|c| [c[0], c[1], c[2], 255]).collect::<Vec<u8>>();
        let (w, h, exact) = webp_rgba(&lossless);
        assert_eq!((w, h), (256, 192));
        assert_eq!(exact, rgba(&photo));
        let (_, _, near) = webp_rgba(&lossy);
        let mse =
            near.iter().zip(rgba(&photo)).map(|(a, b)| (*a as f64 - b as f64).powi(2)).sum::<f64>() / near.len() as f64;
        let db = 10.0 * (255.0f64 * 255.0 / mse).log10();
        assert!(db > 30.0, "lossy WebP at 85: {db:.1} dB");
        // Gray + alpha keeps its alpha through both.
        let ga = Pixels::new(2, 1, Layout::GrayAlpha, vec![10, 0, 200, 255]).unwrap();
        for options in [Options { quality: 85, webp_lossless: false }, Options { quality: 85, webp_lossless: true }] {
            let (_, _, px) = webp_rgba(&encode_with(&ga, Format::Webp, &options).unwrap());
            assert_eq!((px[3], px[7]), (0, 255), "{options:?}");
        }
    }

    #[test]
    fn every_format_encodes_every_layout_with_its_magic_bytes() {
        for layout in [Layout::Gray, Layout::GrayAlpha, Layout::Rgb, Layout::Rgba] {
            let p = Pixels::filled(9, 4, layout, &[200, 100, 50, 128]);
            for f in Format::ALL {
                let b = encode(&p, f, 80).unwrap_or_else(|e| panic!("{f:?} {layout:?}: {e}"));
                let magic: &[u8] = match f {
                    Format::Jpg => b"\xFF\xD8\xFF",
                    Format::Png => b"\x89PNG",
                    Format::Gif => b"GIF8",
                    Format::Tif => b"II*\0",
                    Format::Webp => b"RIFF",
                };
                assert!(b.starts_with(magic), "{f:?} {layout:?}");
            }
        }
    }

    #[test]
    fn gif_keeps_the_size_the_colours_and_full_transparency() {
        // Few colours: an exact palette; alpha 0 is transparent, other alpha opaque.
        let p = Pixels::new(3, 1, Layout::Rgba, vec![10, 20, 30, 255, 0, 0, 0, 0, 200, 100, 50, 128]).unwrap();
        let b = encode(&p, Format::Gif, 80).unwrap();
        assert!(b.starts_with(b"GIF89a") && b.ends_with(&[0x3B]), "header and trailer");
        let img = image::load_from_memory(&b).unwrap().to_rgba8();
        assert_eq!(img.dimensions(), (3, 1));
        assert_eq!(img.get_pixel(0, 0).0, [10, 20, 30, 255]);
        assert_eq!(img.get_pixel(1, 0).0[3], 0);
        assert_eq!(img.get_pixel(2, 0).0, [200, 100, 50, 255]);
        let g = Pixels::new(2, 1, Layout::GrayAlpha, vec![77, 255, 0, 0]).unwrap();
        let img = image::load_from_memory(&encode(&g, Format::Gif, 80).unwrap()).unwrap().to_rgba8();
        assert_eq!((img.get_pixel(0, 0).0, img.get_pixel(1, 0).0[3]), ([77, 77, 77, 255], 0));
        // Many colours go through the quantiser; the size is kept.
        let mut d = Vec::new();
        for y in 0..64u32 {
            for x in 0..96u32 {
                d.extend_from_slice(&[(x * 2) as u8, (y * 4) as u8, ((x + y) * 3) as u8]);
            }
        }
        let many = Pixels::new(96, 64, Layout::Rgb, d).unwrap();
        let img = image::load_from_memory(&encode(&many, Format::Gif, 80).unwrap()).unwrap();
        assert_eq!((img.width(), img.height()), (96, 64));
    }

    #[test]
    fn transparent_pixels_flatten_to_white() {
        let p = Pixels::new(2, 1, Layout::Rgba, vec![0, 0, 0, 0, 10, 20, 30, 255]).unwrap();
        assert_eq!(flatten_on_white(&p).data(), &[255, 255, 255, 10, 20, 30]);
    }
}
