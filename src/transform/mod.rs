//! The transform stage: scale, mirror and rotate, then quality, in the order
//! the IIIF Image API defines. Each step is a pure function over [`Pixels`];
//! nothing here knows of HTTP, files or codecs.

pub mod crossover;
pub mod gpu;
pub mod quality;
pub mod resize;
pub mod rotate;

use std::sync::Arc;

use crate::model::{Format, Quality, Rotation};
use crate::pixels::Pixels;

pub use crossover::{Crossover, JobKind, MinPixels};

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
pub enum Backend {
    Cpu,
    /// A GPU, taking the jobs at or above their kind's crossover.
    Gpu {
        gpu: Arc<gpu::Gpu>,
        crossover: Arc<Crossover>,
    },
}

impl Backend {
    /// Chooses from `transform.backend`: "cpu"; "gpu" (any adapter, software
    /// included; falls back to the CPU with a warning if none exists); "auto"
    /// (hardware adapters only). Decoded units may hold `resident_bytes` of
    /// device memory while hot ([`apply_in`]). With a GPU and `min_pixels` =
    /// [`MinPixels::Measure`], the crossover is measured on a thread of its
    /// own ([`crossover::measure`]) while the server starts; every job runs
    /// on the CPU until it is known. The choice and its reason are logged.
    pub fn choose(kind: &str, min_pixels: MinPixels, resident_bytes: u64) -> Backend {
        if kind == "cpu" {
            tracing::info!("transform backend: CPU (transform.backend = cpu)");
            return Backend::Cpu;
        }
        // A machine without a hardware adapter gets none later: look once
        // a process (an app built again, as tests do, asks again).
        static NO_HARDWARE: std::sync::OnceLock<String> = std::sync::OnceLock::new();
        if kind != "gpu" {
            if let Some(reason) = NO_HARDWARE.get() {
                tracing::info!(%reason, "transform backend: CPU (no hardware GPU)");
                return Backend::Cpu;
            }
        }
        let opts = gpu::GpuOptions { allow_software: kind == "gpu", resident_bytes };
        match gpu::Gpu::new(&opts) {
            Ok(g) => {
                let g = Arc::new(g);
                let crossover = match min_pixels {
                    MinPixels::Pixels(n) => {
                        tracing::info!(adapter = %g.adapter_description(), software = g.is_software(), min_pixels = n, "transform backend: GPU above a fixed size");
                        Arc::new(Crossover::fixed(n))
                    }
                    MinPixels::Measure => {
                        tracing::info!(adapter = %g.adapter_description(), software = g.is_software(), "transform backend: GPU found; measuring where it beats the CPU (the CPU takes every job meanwhile)");
                        let c = Arc::new(Crossover::measuring());
                        spawn_measure(Arc::clone(&g), Arc::clone(&c));
                        c
                    }
                };
                Backend::Gpu { gpu: g, crossover }
            }
            Err(e) => {
                if kind == "gpu" {
                    tracing::warn!(error = %e, "transform.backend = gpu but no adapter: using the CPU");
                } else {
                    tracing::info!(reason = %e, "transform backend: CPU (no hardware GPU)");
                    if matches!(e, gpu::GpuError::NoAdapter(_)) {
                        let _ = NO_HARDWARE.set(e.to_string());
                    }
                }
                Backend::Cpu
            }
        }
    }

    /// A GPU backend taking every job of at least `min_pixels` (tests, benches).
    pub fn gpu_fixed(gpu: Arc<gpu::Gpu>, min_pixels: u64) -> Backend {
        Backend::Gpu { gpu, crossover: Arc::new(Crossover::fixed(min_pixels)) }
    }

    pub fn name(&self) -> &'static str {
        match self {
            Backend::Cpu => "cpu",
            Backend::Gpu { .. } => "gpu",
        }
    }

    /// The crossover in use, with a GPU.
    pub fn crossover(&self) -> Option<&Crossover> {
        match self {
            Backend::Cpu => None,
            Backend::Gpu { crossover, .. } => Some(crossover),
        }
    }
}

/// Measures both crossovers on a thread of its own and publishes them. A
/// measurement that cannot start, or panics, publishes "never" for both,
/// so the backend never stays "measuring".
fn spawn_measure(gpu: Arc<gpu::Gpu>, crossover: Arc<Crossover>) {
    /// Publishes "never" unless the measurement published first.
    struct Never(Arc<Crossover>);
    impl Drop for Never {
        fn drop(&mut self) {
            if self.0.origin() == crossover::Origin::Measuring {
                self.0.set_measured_all(crossover::NEVER, crossover::NEVER, crossover::NEVER);
            }
        }
    }
    let guard = Never(Arc::clone(&crossover));
    let run = move || {
        let _guard = guard;
        let resize = crossover::measure(&gpu, JobKind::Resize, crossover::SERIES_BUDGET);
        let copy = crossover::measure(&gpu, JobKind::Copy, crossover::SERIES_BUDGET);
        let rotate = crossover::measure(&gpu, JobKind::Rotate, crossover::SERIES_BUDGET);
        let (r, c, t) = (resize.crossover(), copy.crossover(), rotate.crossover());
        // The measurement's large buffers would stay idle in the pool (on
        // lavapipe that is host memory: 200 MiB of RSS): give them back.
        gpu.trim_pool();
        crossover.set_measured_all(r, c, t);
        let shown = |n: u64| if n == crossover::NEVER { "never".to_string() } else { format!("{n} px") };
        if [r, c, t].iter().all(|n| *n == crossover::NEVER) {
            tracing::info!(resize = %resize.summary(), copy = %copy.summary(), rotate = %rotate.summary(), "GPU crossover measured: the GPU is not faster than the CPU at any size measured; every transform stays on the CPU");
        } else {
            tracing::info!(resize_from = %shown(r), copy_from = %shown(c), rotate_from = %shown(t), resize = %resize.summary(), copy = %copy.summary(), rotate = %rotate.summary(), "GPU crossover measured: jobs from these input sizes go to the GPU");
        }
    };
    // On failure the closure, and the guard in it, is dropped: "never".
    if let Err(e) = std::thread::Builder::new().name("tessera-crossover".into()).spawn(run) {
        tracing::warn!(error = %e, "could not start the GPU crossover measurement; every transform stays on the CPU");
    }
}

/// The kind of `spec` on a `width × height` input: a turn by an arbitrary
/// angle; a resize pass; or a copy (mirror, quarter turns, quality).
fn job_kind(width: u32, height: u32, spec: &TransformSpec) -> JobKind {
    if spec.rotation.quarter_turns().is_none() {
        return JobKind::Rotate;
    }
    let cropped = resize::effective_crop(spec.src_crop, width, height).is_some();
    if cropped || (spec.width, spec.height) != (width, height) {
        JobKind::Resize
    } else {
        JobKind::Copy
    }
}

/// [`apply`] for many rectangles `(x, y, w, h)` of one decoded unit at
/// once, as a unit the decoded cache holds is cut into tiles or regions.
/// On a GPU the jobs go in one batch (one submission, one
/// wait) reading the unit where it stays on the device while hot
/// ([`gpu::Gpu::apply_in`]: the next jobs on it upload nothing), when
/// their pixels together reach the crossover of their kind, which a batch
/// of small tiles does where one tile would not (resize and copy jobs are
/// counted apart, each against its own crossover); the rest, and any job
/// the GPU fails, are cut and run on the CPU. Result `i` is item `i`'s. A
/// rectangle outside the unit fails the call before any work.
pub fn apply_in(
    unit: &Arc<Pixels>,
    items: &[(gpu::Rect4, TransformSpec)],
    backend: &Backend,
) -> Result<Vec<(Pixels, Ran)>, OutsideUnit> {
    let fits = |&((x, y, w, h), _): &(gpu::Rect4, TransformSpec)| {
        u64::from(x) + u64::from(w) <= u64::from(unit.width())
            && u64::from(y) + u64::from(h) <= u64::from(unit.height())
    };
    if !items.iter().all(fits) {
        return Err(OutsideUnit);
    }
    let on_cpu = |(x, y, w, h): gpu::Rect4, spec: &TransformSpec| apply_cpu(unit.crop(x, y, w, h), spec);
    let Backend::Gpu { gpu, crossover } = backend else {
        return Ok(items.iter().map(|(r, spec)| (on_cpu(*r, spec), Ran::Cpu)).collect());
    };
    let dims: Vec<(u32, u32, &TransformSpec)> = items.iter().map(|((_, _, w, h), spec)| (*w, *h, spec)).collect();
    let jobs = route(&dims, crossover);
    if jobs.iter().all(Option::is_none) {
        return Ok(items.iter().map(|(r, spec)| (on_cpu(*r, spec), Ran::Cpu)).collect());
    }
    let batch: Vec<(gpu::Rect4, gpu::GpuJob)> =
        items.iter().zip(&jobs).filter_map(|((r, _), j)| j.map(|j| (*r, j))).collect();
    let done = gpu.apply_in(unit, &batch);
    Ok(merge(&jobs, done, |i| on_cpu(items[i].0, &items[i].1)))
}

/// A rectangle asked of a decoded unit lies outside it.
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
#[error("rectangle outside its decoded unit")]
pub struct OutsideUnit;

/// Which items go to the GPU: the jobs of each kind, when the
/// pixels of that kind's jobs together reach its crossover.
fn route(items: &[(u32, u32, &TransformSpec)], crossover: &Crossover) -> Vec<Option<gpu::GpuJob>> {
    let kinds: Vec<JobKind> = items.iter().map(|(w, h, spec)| job_kind(*w, *h, spec)).collect();
    let mut jobs: Vec<Option<gpu::GpuJob>> = items.iter().map(|(_, _, spec)| gpu_job(spec)).collect();
    for kind in JobKind::ALL {
        let pixels: u64 = items
            .iter()
            .zip(&jobs)
            .zip(&kinds)
            .filter(|((_, j), k)| j.is_some() && **k == kind)
            .map(|(((w, h, _), _), _)| u64::from(*w) * u64::from(*h))
            .sum();
        if !crossover.takes(kind, pixels) {
            jobs.iter_mut().zip(&kinds).filter(|(_, k)| **k == kind).for_each(|(j, _)| *j = None);
        }
    }
    jobs
}

/// The results of a batch: item `i` from the GPU's results in order when
/// it had a job there and that job succeeded, else from `cpu(i)`. One
/// warning a batch for the jobs the GPU failed.
fn merge(
    jobs: &[Option<gpu::GpuJob>],
    done: Vec<Result<Pixels, gpu::GpuError>>,
    mut cpu: impl FnMut(usize) -> Pixels,
) -> Vec<(Pixels, Ran)> {
    let mut done = done.into_iter();
    let mut failed: Option<(gpu::GpuError, usize)> = None;
    let mut out = Vec::with_capacity(jobs.len());
    for (i, job) in jobs.iter().enumerate() {
        let got = match job.map(|_| done.next()) {
            None => (cpu(i), Ran::Cpu),
            Some(Some(Ok(p))) => (p, Ran::Gpu),
            Some(Some(Err(e))) => {
                match &mut failed {
                    Some((_, n)) => *n += 1,
                    None => failed = Some((e, 1)),
                }
                (cpu(i), Ran::GpuFellBack)
            }
            Some(None) => (cpu(i), Ran::GpuFellBack),
        };
        out.push(got);
    }
    // One line a batch: a device error fails every job of a submission.
    if let Some((e, jobs)) = failed {
        tracing::warn!(error = %e, jobs, "GPU batch transform failed; using the CPU");
    }
    out
}

/// The GPU job for `spec`: every job (quarter turns, or any angle with
/// the background its format asks for).
fn gpu_job(spec: &TransformSpec) -> Option<gpu::GpuJob> {
    let (quarter_turns, arbitrary) = match spec.rotation.quarter_turns() {
        Some(q) => (q, None),
        None => (0, Some(gpu::Arbitrary { degrees: spec.rotation.degrees, transparent: spec.format.has_alpha() })),
    };
    Some(gpu::GpuJob {
        out_w: spec.width,
        out_h: spec.height,
        crop: spec.src_crop,
        mirror: spec.rotation.mirror,
        quarter_turns,
        quality: match spec.quality {
            Quality::Gray => gpu::GpuQuality::Gray,
            Quality::Bitonal => gpu::GpuQuality::Bitonal,
            Quality::Default | Quality::Color => gpu::GpuQuality::Keep,
        },
        arbitrary,
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
/// one and the input reaches the crossover of its kind ([`crossover`]:
/// resize, copy or rotation by any angle; any reduce level and sub-pixel
/// source crop); else on the CPU.
/// A GPU job that fails (device lost, out of memory, over the adapter's
/// limits) is redone on the CPU; it never fails the request.
pub fn apply(p: Pixels, spec: &TransformSpec, backend: &Backend) -> (Pixels, Ran) {
    if let Backend::Gpu { gpu, crossover } = backend {
        let big = crossover.takes(job_kind(p.width(), p.height(), spec), p.width() as u64 * p.height() as u64);
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
