//! Quality conversion: `gray` (Rec. 601 luma) and `bitonal` (luma thresholded
//! at the middle); `default` and `color` leave pixels as they are.

use crate::model::Quality;
use crate::pixels::{Layout, Pixels};

/// Rec. 601 luma in fixed point (weights sum to 65536).
#[inline]
pub fn luma(r: u8, g: u8, b: u8) -> u8 {
    ((19595 * r as u32 + 38470 * g as u32 + 7471 * b as u32 + 32768) >> 16) as u8
}

/// The bitonal threshold: luma at or above it is white.
pub const BITONAL_THRESHOLD: u8 = 128;

pub fn apply(p: Pixels, q: Quality) -> Pixels {
    match q {
        Quality::Default | Quality::Color => p,
        Quality::Gray => to_gray(p),
        Quality::Bitonal => {
            let mut g = to_gray(p);
            let c = g.layout().channels();
            for px in g.data_mut().chunks_exact_mut(c) {
                px[0] = if px[0] >= BITONAL_THRESHOLD { 255 } else { 0 };
            }
            g
        }
    }
}

/// Converts to Gray or GrayAlpha.
pub fn to_gray(p: Pixels) -> Pixels {
    let (w, h) = (p.width(), p.height());
    match p.layout() {
        Layout::Gray | Layout::GrayAlpha => p,
        Layout::Rgb => {
            let d: Vec<u8> = p.data().chunks_exact(3).map(|c| luma(c[0], c[1], c[2])).collect();
            Pixels::new(w, h, Layout::Gray, d).unwrap_or(p)
        }
        Layout::Rgba => {
            let mut d = Vec::with_capacity(w as usize * h as usize * 2);
            for c in p.data().chunks_exact(4) {
                d.push(luma(c[0], c[1], c[2]));
                d.push(c[3]);
            }
            Pixels::new(w, h, Layout::GrayAlpha, d).unwrap_or(p)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn gray_weights_green_most_and_keeps_alpha() {
        let p = Pixels::new(3, 1, Layout::Rgba, vec![255, 0, 0, 9, 0, 255, 0, 8, 0, 0, 255, 7]).unwrap();
        let g = apply(p, Quality::Gray);
        assert_eq!(g.layout(), Layout::GrayAlpha);
        assert_eq!(g.data(), &[76, 9, 150, 8, 29, 7]);
    }

    #[test]
    fn bitonal_is_only_black_and_white() {
        let p = Pixels::new(3, 1, Layout::Rgb, vec![10, 10, 10, 127, 128, 129, 250, 250, 250]).unwrap();
        let b = apply(p, Quality::Bitonal);
        assert_eq!(b.data(), &[0, 255, 255]);
    }

    #[test]
    fn default_and_color_leave_pixels_alone() {
        let p = Pixels::filled(2, 2, Layout::Rgb, &[1, 2, 3]);
        assert_eq!(apply(p.clone(), Quality::Color), p);
        assert_eq!(apply(p.clone(), Quality::Default), p);
    }
}
