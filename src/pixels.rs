//! The pixel buffer that travels between the decode, transform and encode stages.
//!
//! Codecs produce a [`Pixels`]; transforms consume and produce them; encoders
//! consume them. It is deliberately minimal: 8 bits per sample, interleaved,
//! tightly packed rows, one of four layouts. Codecs convert anything richer
//! (16-bit, planar, sub-sampled) into this form at their edge.

use std::fmt;

/// Sample layout of a [`Pixels`] buffer. Always 8 bits per sample, interleaved.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Layout {
    /// One gray sample per pixel.
    Gray,
    /// Gray then alpha.
    GrayAlpha,
    /// Red, green, blue.
    Rgb,
    /// Red, green, blue, alpha.
    Rgba,
}

impl Layout {
    /// Samples per pixel.
    pub const fn channels(self) -> usize {
        match self {
            Layout::Gray => 1,
            Layout::GrayAlpha => 2,
            Layout::Rgb => 3,
            Layout::Rgba => 4,
        }
    }

    /// Whether the layout carries an alpha channel.
    pub const fn has_alpha(self) -> bool {
        matches!(self, Layout::GrayAlpha | Layout::Rgba)
    }

    /// Whether the layout is gray (with or without alpha).
    pub const fn is_gray(self) -> bool {
        matches!(self, Layout::Gray | Layout::GrayAlpha)
    }

    /// The layout with an alpha channel added (unchanged if it has one).
    pub const fn with_alpha(self) -> Layout {
        match self {
            Layout::Gray | Layout::GrayAlpha => Layout::GrayAlpha,
            Layout::Rgb | Layout::Rgba => Layout::Rgba,
        }
    }
}

/// An 8-bit interleaved image: `data.len() == width * height * layout.channels()`.
#[derive(Clone, PartialEq, Eq)]
pub struct Pixels {
    width: u32,
    height: u32,
    layout: Layout,
    data: Vec<u8>,
}

/// The buffer length did not match `width * height * channels`.
#[derive(Debug, thiserror::Error)]
#[error("pixel buffer of {len} bytes does not hold {width}x{height} {layout:?}")]
pub struct BadBuffer {
    pub width: u32,
    pub height: u32,
    pub layout: Layout,
    pub len: usize,
}

impl Pixels {
    /// Wraps a buffer, checking its length.
    pub fn new(width: u32, height: u32, layout: Layout, data: Vec<u8>) -> Result<Self, BadBuffer> {
        let expected = (width as usize).checked_mul(height as usize).and_then(|n| n.checked_mul(layout.channels()));
        if expected != Some(data.len()) {
            return Err(BadBuffer { width, height, layout, len: data.len() });
        }
        Ok(Pixels { width, height, layout, data })
    }

    /// A buffer filled with one pixel value (`fill.len()` must equal the channel count;
    /// missing samples are zero, extra ones ignored).
    pub fn filled(width: u32, height: u32, layout: Layout, fill: &[u8]) -> Self {
        let c = layout.channels();
        let mut px = [0u8; 4];
        for (d, s) in px.iter_mut().zip(fill.iter()).take(c) {
            *d = *s;
        }
        let n = width as usize * height as usize;
        let mut data = Vec::with_capacity(n * c);
        for _ in 0..n {
            data.extend_from_slice(&px[..c]);
        }
        Pixels { width, height, layout, data }
    }

    pub fn width(&self) -> u32 {
        self.width
    }
    pub fn height(&self) -> u32 {
        self.height
    }
    pub fn layout(&self) -> Layout {
        self.layout
    }
    pub fn data(&self) -> &[u8] {
        &self.data
    }
    pub fn data_mut(&mut self) -> &mut [u8] {
        &mut self.data
    }
    pub fn into_data(self) -> Vec<u8> {
        self.data
    }
    /// Bytes per row.
    pub fn stride(&self) -> usize {
        self.width as usize * self.layout.channels()
    }
    /// Total bytes held.
    pub fn byte_len(&self) -> usize {
        self.data.len()
    }

    /// Copies out the rectangle `(x, y, w, h)`, clipped to the image.
    pub fn crop(&self, x: u32, y: u32, w: u32, h: u32) -> Pixels {
        let x = x.min(self.width);
        let y = y.min(self.height);
        let w = w.min(self.width - x);
        let h = h.min(self.height - y);
        if x == 0 && y == 0 && w == self.width && h == self.height {
            return self.clone();
        }
        let c = self.layout.channels();
        let stride = self.stride();
        let row = w as usize * c;
        let mut out = Vec::with_capacity(row * h as usize);
        for r in y..y + h {
            let start = r as usize * stride + x as usize * c;
            out.extend_from_slice(&self.data[start..start + row]);
        }
        Pixels { width: w, height: h, layout: self.layout, data: out }
    }
}

impl fmt::Debug for Pixels {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Pixels({}x{} {:?})", self.width, self.height, self.layout)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn new_rejects_a_buffer_of_the_wrong_length() {
        assert!(Pixels::new(2, 2, Layout::Rgb, vec![0; 11]).is_err());
        assert!(Pixels::new(2, 2, Layout::Rgb, vec![0; 12]).is_ok());
    }

    #[test]
    fn crop_copies_the_requested_rectangle_and_clips_at_the_edge() {
        let data: Vec<u8> = (0..16).collect();
        let p = Pixels::new(4, 4, Layout::Gray, data).unwrap();
        let c = p.crop(1, 2, 2, 2);
        assert_eq!((c.width(), c.height()), (2, 2));
        assert_eq!(c.data(), &[9, 10, 13, 14]);
        let e = p.crop(3, 3, 10, 10);
        assert_eq!(e.data(), &[15]);
    }
}
