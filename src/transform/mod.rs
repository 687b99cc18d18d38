//! The transform stage: scale, mirror and rotate, then quality, in the order
//! the IIIF Image API defines. Each step is a pure function over [`Pixels`];
//! nothing here knows of HTTP, files or codecs.

pub mod quality;
pub mod resize;
pub mod rotate;

use crate::iiif::{Format, Quality, Rotation};
use crate::pixels::Pixels;

/// The transform part of a plan.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct TransformSpec {
    pub width: u32,
    pub height: u32,
    pub rotation: Rotation,
    pub quality: Quality,
    /// Decides the background of arbitrary rotations (transparent or white).
    pub format: Format,
    /// The exact source region inside the decoded pixels, when decoding at a
    /// reduced scale snapped it outward (see `plan::Plan::src_crop`).
    pub src_crop: Option<resize::SrcCrop>,
}

/// Applies scaling, mirroring, rotation and quality on the CPU.
pub fn apply_cpu(p: Pixels, spec: &TransformSpec) -> Pixels {
    let p = resize::resize_from(p, spec.src_crop, spec.width, spec.height);
    let p = if spec.rotation.mirror { rotate::mirror(&p) } else { p };
    let p = match spec.rotation.quarter_turns() {
        Some(0) => p,
        Some(q) => rotate::quarter(&p, q),
        None => rotate::arbitrary(&p, spec.rotation.degrees, spec.format.has_alpha()),
    };
    quality::apply(p, spec.quality)
}
