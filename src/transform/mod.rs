//! The transform stage: scale, mirror and rotate, then quality, in the order
//! the IIIF Image API defines. Each step is a pure function over [`Pixels`];
//! nothing here knows of HTTP, files or codecs.

pub mod gpu;
pub mod quality;
pub mod resize;
pub mod rotate;

use crate::model::{Format, Quality, Rotation};
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

/// The transform backend chosen at start.
// One per process, held by the app: the size of its GPU variant costs nothing.
#[allow(clippy::large_enum_variant)]
pub enum Backend {
    Cpu,
    Gpu { gpu: gpu::Gpu, min_pixels: u64 },
}

impl Backend {
    /// Chooses from `transform.backend`: "cpu"; "gpu" (any adapter, software
    /// included; falls back to the CPU with a warning if none exists); "auto"
    /// (hardware adapters only).
    pub fn choose(kind: &str, min_pixels: u64) -> Backend {
        if kind == "cpu" {
            return Backend::Cpu;
        }
        let opts = gpu::GpuOptions { allow_software: kind == "gpu" };
        match gpu::Gpu::new(&opts) {
            Ok(g) => {
                tracing::info!(adapter = %g.adapter_description(), software = g.is_software(), "transform backend: GPU");
                Backend::Gpu { gpu: g, min_pixels }
            }
            Err(e) => {
                if kind == "gpu" {
                    tracing::warn!(error = %e, "transform.backend = gpu but no adapter: using the CPU");
                } else {
                    tracing::info!(reason = %e, "transform backend: CPU (no hardware GPU)");
                }
                Backend::Cpu
            }
        }
    }

    pub fn name(&self) -> &'static str {
        match self {
            Backend::Cpu => "cpu",
            Backend::Gpu { .. } => "gpu",
        }
    }
}

/// [`apply`] for many images at once, as one decoded area cut into tiles
/// asks. On a GPU the quarter-turn jobs go in one batch (one submission,
/// one wait: [`gpu::Gpu::apply_batch`]) when their pixels together reach
/// `min_pixels`, which a batch of small tiles does where one tile would
/// not; the rest, and any job the GPU fails, run on the CPU. Result `i` is
/// item `i`'s.
pub fn apply_batch(items: Vec<(Pixels, TransformSpec)>, backend: &Backend) -> Vec<(Pixels, Ran)> {
    let Backend::Gpu { gpu, min_pixels } = backend else {
        return items.into_iter().map(|(p, spec)| (apply_cpu(p, &spec), Ran::Cpu)).collect();
    };
    let jobs: Vec<Option<gpu::GpuJob>> = items.iter().map(|(_, spec)| gpu_job(spec)).collect();
    let pixels: u64 = items
        .iter()
        .zip(&jobs)
        .filter(|(_, j)| j.is_some())
        .map(|((p, _), _)| p.width() as u64 * p.height() as u64)
        .sum();
    if pixels < *min_pixels {
        return items.into_iter().map(|(p, spec)| (apply_cpu(p, &spec), Ran::Cpu)).collect();
    }
    let batch: Vec<(&Pixels, gpu::GpuJob)> =
        items.iter().zip(&jobs).filter_map(|((p, _), j)| j.map(|j| (p, j))).collect();
    let mut done = gpu.apply_batch(&batch).into_iter();
    let mut failed: Option<(gpu::GpuError, usize)> = None;
    let out = items
        .into_iter()
        .zip(jobs)
        .map(|((p, spec), job)| match job.map(|_| done.next()) {
            None => (apply_cpu(p, &spec), Ran::Cpu),
            Some(Some(Ok(out))) => (out, Ran::Gpu),
            Some(Some(Err(e))) => {
                match &mut failed {
                    Some((_, n)) => *n += 1,
                    None => failed = Some((e, 1)),
                }
                (apply_cpu(p, &spec), Ran::GpuFellBack)
            }
            Some(None) => (apply_cpu(p, &spec), Ran::GpuFellBack),
        })
        .collect();
    // One line a batch: a device error fails every job of a submission.
    if let Some((e, jobs)) = failed {
        tracing::warn!(error = %e, jobs, "GPU batch transform failed; using the CPU");
    }
    out
}

/// The GPU job for `spec`, when the GPU does that kind (quarter turns).
fn gpu_job(spec: &TransformSpec) -> Option<gpu::GpuJob> {
    let q = spec.rotation.quarter_turns()?;
    Some(gpu::GpuJob {
        out_w: spec.width,
        out_h: spec.height,
        crop: spec.src_crop,
        mirror: spec.rotation.mirror,
        quarter_turns: q,
        quality: match spec.quality {
            Quality::Gray => gpu::GpuQuality::Gray,
            Quality::Bitonal => gpu::GpuQuality::Bitonal,
            Quality::Default | Quality::Color => gpu::GpuQuality::Keep,
        },
    })
}

/// Where a transform ran.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Ran {
    Cpu,
    Gpu,
    /// The GPU job failed and the CPU did it.
    GpuFellBack,
}

/// Applies the transform on the chosen backend: on the GPU when there is
/// one, the rotation is a quarter turn (any reduce level and sub-pixel
/// source crop), and the input has at least `min_pixels`; else on the CPU.
/// A GPU job that fails (device lost, out of memory, over the adapter's
/// limits) is redone on the CPU; it never fails the request.
pub fn apply(p: Pixels, spec: &TransformSpec, backend: &Backend) -> (Pixels, Ran) {
    if let Backend::Gpu { gpu, min_pixels } = backend {
        let big = (p.width() as u64 * p.height() as u64) >= *min_pixels;
        if let (true, Some(job)) = (big, gpu_job(spec)) {
            match gpu.apply(&p, &job) {
                Ok(out) => return (out, Ran::Gpu),
                Err(e) => {
                    tracing::warn!(error = %e, "GPU transform failed; using the CPU");
                    return (apply_cpu(p, spec), Ran::GpuFellBack);
                }
            }
        }
    }
    (apply_cpu(p, spec), Ran::Cpu)
}
