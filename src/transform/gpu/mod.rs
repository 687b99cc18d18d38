//! The GPU transform backend: resize, mirror, quarter turns and quality on a
//! wgpu compute device, matching the CPU path ([`super::resize`],
//! [`super::rotate`], [`super::quality`]) bit for bit in the normal case.
//!
//! How it matches the CPU: the resize coefficients are computed here, on the
//! CPU, exactly as fast_image_resize 6.1 computes them for
//! `ResizeAlg::Convolution` (same filter, kernel stretched by the scale factor
//! when shrinking, weights normalised per output sample, then quantised to i16
//! with the same precision rule). The shaders (`shaders/*.wgsl`) then do the
//! same integer arithmetic: a vertical pass followed by a horizontal one with a
//! byte clamp in between (fast_image_resize's order for u8 images), alpha
//! premultiplied before and divided after, Rec. 601 fixed-point luma.
//!
//! One [`Gpu::apply`] is one queue submission: upload → (vertical pass) →
//! (horizontal pass) → mirror/turn/quality/pack pass → copy to a readback
//! buffer, then one map. Buffers come from a small pool keyed by kind and
//! power-of-two size class, so steady-state requests create no new buffers.
//! An input larger than the adapter's storage-binding limit is read by the
//! vertical pass in bands of rows.
//!
//! [`Gpu::apply_batch`] records many jobs (the tiles one decoded area
//! yields) into one submission and waits once. [`Gpu::apply_in`] does the
//! same for rectangles of one decoded unit, which it uploads once and keeps
//! on the device while the unit is hot (`resident`).
//!
//! Failures (no adapter, out of memory, a lost device, a job beyond the
//! adapter's limits) are returned as [`GpuError`]; the caller runs the CPU path
//! instead. Nothing here panics or logs.
//!
//! A job may resize a sub-pixel crop of its input (what a decode at a
//! reduced scale snapped outward): the tables are fast_image_resize's for
//! that crop, and only the rows and columns they read are uploaded.
//!
//! A rotation by any angle runs as its own pass (`shaders/rotate.wgsl`,
//! bilinear in f32 where `rotate::arbitrary` works in f64: within one
//! level, but for the odd pixel at the image's very edge, see there).
//!
//! This file holds the public face ([`Gpu`], [`GpuJob`], [`GpuError`]) and
//! the device set-up (adapter choice, pipelines, error scopes). The rest is
//! split by step: `layout` (a job's sizes, tables and dispatches, checked
//! against the adapter's limits before anything runs), `submit` (record,
//! submit, read back), `buffers` (the pool), `resident` (decoded units
//! kept on the device) and `coeffs` (the resize weights, as
//! fast_image_resize computes them).

use std::collections::HashMap;
use std::num::NonZeroU64;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{mpsc, Arc, Mutex};
use std::time::Duration;

use fast_image_resize::FilterType;

use crate::pixels::{Layout, Pixels};

mod buffers;
mod coeffs;
mod layout;
mod resident;
mod submit;
#[cfg(test)]
mod tests;

use buffers::*;
use coeffs::*;
use layout::*;
use submit::Src;

pub use buffers::BufferPoolStats;
pub use resident::{Rect4, ResidentStats};

const COMMON_WGSL: &str = include_str!("../../../shaders/common.wgsl");
const RESIZE_V_WGSL: &str = include_str!("../../../shaders/resize_v.wgsl");
const RESIZE_H_WGSL: &str = include_str!("../../../shaders/resize_h.wgsl");
const ORIENT_QUALITY_WGSL: &str = include_str!("../../../shaders/orient_quality.wgsl");
const ROTATE_WGSL: &str = include_str!("../../../shaders/rotate.wgsl");

/// Workgroup edge of the resize passes (`@workgroup_size(16, 16)`).
const RESIZE_WG: u32 = 16;
/// Workgroup size of the orient/quality pass (`@workgroup_size(256)`).
const PACK_WG: u32 = 256;
/// Bytes of one `Params` block in the shaders.
const PARAMS_BYTES: u64 = 64;
/// Smallest pooled buffer.
const MIN_CLASS: u64 = 4096;
/// Idle buffers kept per (kind, size class): enough for a batch of tiles
/// (`Gpu::apply_batch`) to find its buffers again the next time.
const MAX_IDLE_PER_CLASS: usize = 64;
/// Idle bytes kept in the pool in all; beyond this, returned buffers are freed.
const MAX_IDLE_BYTES: u64 = 1 << 30;
/// Longest wait for one job before the device is considered hung.
const JOB_TIMEOUT: Duration = Duration::from_secs(120);

/// What to do to one image.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct GpuJob {
    /// Size of the resize output, before rotation.
    pub out_w: u32,
    pub out_h: u32,
    /// The sub-pixel source rectangle to resize (the whole image if `None`),
    /// as the CPU path's `resize::resize_from` takes it: what a reduced
    /// decode snapped outward (`plan::Plan::src_crop`).
    pub crop: Option<crate::transform::resize::SrcCrop>,
    /// Flip left-right after resizing (before turning), as IIIF `!`.
    pub mirror: bool,
    /// Clockwise quarter turns, 0..=3 (taken modulo 4); ignored when
    /// `arbitrary` is set.
    pub quarter_turns: u8,
    pub quality: GpuQuality,
    /// A rotation by any angle instead of quarter turns, as
    /// `rotate::arbitrary` does it (after the mirror, before quality).
    pub arbitrary: Option<Arbitrary>,
}

/// A clockwise rotation by any angle, into the bounding box.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Arbitrary {
    pub degrees: f64,
    /// Background: transparent (output gains alpha) or white.
    pub transparent: bool,
}

/// Quality conversion done on the GPU.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum GpuQuality {
    /// `default` / `color`: pixels unchanged.
    Keep,
    /// Rec. 601 luma; output Gray or GrayAlpha.
    Gray,
    /// Luma thresholded at 128; output Gray or GrayAlpha.
    Bitonal,
}

impl GpuJob {
    /// A resize to `out_w × out_h` of the whole input and nothing else; the
    /// other steps are set with struct update syntax.
    pub fn resize_to(out_w: u32, out_h: u32) -> GpuJob {
        GpuJob { out_w, out_h, crop: None, mirror: false, quarter_turns: 0, quality: GpuQuality::Keep, arbitrary: None }
    }

    /// The same job on the CPU path, step for step (resize, mirror, turn,
    /// quality): the output the GPU must match, for tests and benches.
    pub fn run_on_cpu(&self, p: Pixels) -> Pixels {
        use crate::model::Quality;
        use crate::transform::{quality, resize, rotate};
        let r = resize::resize_from(p, self.crop, self.out_w, self.out_h);
        let r = if self.mirror { rotate::mirror(&r) } else { r };
        let r = match (self.arbitrary, self.quarter_turns % 4) {
            (Some(a), _) => rotate::arbitrary(&r, a.degrees, a.transparent),
            (None, 0) => r,
            (None, q) => rotate::quarter(&r, q),
        };
        let q = match self.quality {
            GpuQuality::Keep => Quality::Default,
            GpuQuality::Gray => Quality::Gray,
            GpuQuality::Bitonal => Quality::Bitonal,
        };
        quality::apply(r, q)
    }
}

/// Why the GPU could not do a job. Every variant means: use the CPU.
#[derive(Clone, Debug, thiserror::Error)]
pub enum GpuError {
    #[error("no usable GPU adapter: {0}")]
    NoAdapter(String),
    #[error("GPU device error: {0}")]
    Device(String),
    #[error("GPU out of memory")]
    OutOfMemory,
    #[error("GPU device lost")]
    Lost,
    #[error("job not supported on the GPU: {0}")]
    Unsupported(String),
}

/// How to choose an adapter.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct GpuOptions {
    /// false: only a hardware (non-`Cpu`) adapter will do. true: a software
    /// rasteriser such as lavapipe is acceptable (tests, CI).
    pub allow_software: bool,
    /// Bytes of device memory decoded units may hold while hot
    /// ([`Gpu::apply_in`]); 0 keeps none.
    pub resident_bytes: u64,
}

/// A GPU device with the transform pipelines built. Create once, share behind
/// an `Arc`; `apply` may be called from many threads at once.
pub struct Gpu {
    device: wgpu::Device,
    queue: wgpu::Queue,
    info: wgpu::AdapterInfo,
    limits: wgpu::Limits,
    /// Offset alignment of every binding inside the input buffer.
    align: u64,
    resize_layout: wgpu::BindGroupLayout,
    pack_layout: wgpu::BindGroupLayout,
    resize_v: wgpu::ComputePipeline,
    resize_h: wgpu::ComputePipeline,
    pack: wgpu::ComputePipeline,
    rotate: wgpu::ComputePipeline,
    pool: Mutex<BufferPool>,
    created: AtomicU64,
    resident: Mutex<resident::ResidentSet>,
    resident_max: u64,
    lost: Arc<AtomicBool>,
    uncaptured: Arc<AtomicU64>,
}

impl std::fmt::Debug for Gpu {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Gpu").field("adapter", &self.adapter_description()).finish()
    }
}

fn device_rank(t: wgpu::DeviceType) -> u8 {
    match t {
        wgpu::DeviceType::DiscreteGpu => 0,
        wgpu::DeviceType::IntegratedGpu => 1,
        wgpu::DeviceType::VirtualGpu => 2,
        wgpu::DeviceType::Other => 3,
        wgpu::DeviceType::Cpu => 4,
    }
}

fn storage_entry(binding: u32, read_only: bool) -> wgpu::BindGroupLayoutEntry {
    wgpu::BindGroupLayoutEntry {
        binding,
        visibility: wgpu::ShaderStages::COMPUTE,
        ty: wgpu::BindingType::Buffer {
            ty: wgpu::BufferBindingType::Storage { read_only },
            has_dynamic_offset: false,
            min_binding_size: None,
        },
        count: None,
    }
}

fn uniform_entry(binding: u32) -> wgpu::BindGroupLayoutEntry {
    wgpu::BindGroupLayoutEntry {
        binding,
        visibility: wgpu::ShaderStages::COMPUTE,
        ty: wgpu::BindingType::Buffer {
            ty: wgpu::BufferBindingType::Uniform,
            has_dynamic_offset: false,
            min_binding_size: NonZeroU64::new(PARAMS_BYTES),
        },
        count: None,
    }
}

fn scope_error(e: wgpu::Error) -> GpuError {
    match e {
        wgpu::Error::OutOfMemory { .. } => GpuError::OutOfMemory,
        other => GpuError::Device(other.to_string()),
    }
}

/// Error scopes for one block of work (thread-local in wgpu, so concurrent
/// jobs on other threads don't see each other's errors).
struct Scopes {
    oom: wgpu::ErrorScopeGuard,
    validation: wgpu::ErrorScopeGuard,
    internal: wgpu::ErrorScopeGuard,
}

impl Scopes {
    fn push(device: &wgpu::Device) -> Scopes {
        Scopes {
            oom: device.push_error_scope(wgpu::ErrorFilter::OutOfMemory),
            validation: device.push_error_scope(wgpu::ErrorFilter::Validation),
            internal: device.push_error_scope(wgpu::ErrorFilter::Internal),
        }
    }

    /// Pops all three (innermost first); the first error found wins, OOM first.
    fn pop(self) -> Result<(), GpuError> {
        let internal = pollster::block_on(self.internal.pop());
        let validation = pollster::block_on(self.validation.pop());
        let oom = pollster::block_on(self.oom.pop());
        match (oom, validation, internal) {
            (Some(e), _, _) | (None, Some(e), _) | (None, None, Some(e)) => Err(scope_error(e)),
            (None, None, None) => Ok(()),
        }
    }
}

impl Gpu {
    /// Opens an adapter and device and builds the pipelines. Blocking.
    pub fn new(opts: &GpuOptions) -> Result<Gpu, GpuError> {
        let instance = wgpu::Instance::new(wgpu::InstanceDescriptor::new_without_display_handle_from_env());
        let backends = wgpu::Backends::all().with_env();
        let mut adapters: Vec<wgpu::Adapter> = pollster::block_on(instance.enumerate_adapters(backends))
            .into_iter()
            .filter(|a| {
                a.get_downlevel_capabilities().flags.contains(wgpu::DownlevelFlags::COMPUTE_SHADERS)
                    && (opts.allow_software || a.get_info().device_type != wgpu::DeviceType::Cpu)
            })
            .collect();
        adapters.sort_by_key(|a| device_rank(a.get_info().device_type));
        let adapter = match adapters.into_iter().next() {
            Some(a) => a,
            None if opts.allow_software => {
                let req = wgpu::RequestAdapterOptions {
                    power_preference: wgpu::PowerPreference::HighPerformance,
                    force_fallback_adapter: true,
                    ..Default::default()
                };
                pollster::block_on(instance.request_adapter(&req)).map_err(|e| GpuError::NoAdapter(e.to_string()))?
            }
            None => return Err(GpuError::NoAdapter("no hardware adapter with compute shaders".into())),
        };
        let info = adapter.get_info();
        let desc = wgpu::DeviceDescriptor {
            label: Some("tessera transform"),
            required_features: wgpu::Features::empty(),
            required_limits: adapter.limits(),
            experimental_features: wgpu::ExperimentalFeatures::default(),
            memory_hints: wgpu::MemoryHints::Performance,
            trace: wgpu::Trace::Off,
        };
        let (device, queue) =
            pollster::block_on(adapter.request_device(&desc)).map_err(|e| GpuError::Device(e.to_string()))?;

        // The default handler panics; count and log instead. Every call a
        // job makes runs inside its own error scopes, so this sees only
        // what escapes them (the pool's trimming, say), never a job's error.
        let uncaptured = Arc::new(AtomicU64::new(0));
        let counter = Arc::clone(&uncaptured);
        device.on_uncaptured_error(Arc::new(move |e: wgpu::Error| {
            if counter.fetch_add(1, Ordering::Relaxed) < 16 {
                tracing::warn!(error = %e, "GPU error outside any job");
            }
        }));
        let lost = Arc::new(AtomicBool::new(false));
        let flag = Arc::clone(&lost);
        device.set_device_lost_callback(move |_reason, _msg| flag.store(true, Ordering::Release));

        let scopes = Scopes::push(&device);
        let resize_layout = device.create_bind_group_layout(&wgpu::BindGroupLayoutDescriptor {
            label: Some("tessera resize"),
            entries: &[
                uniform_entry(0),
                storage_entry(1, true),
                storage_entry(2, true),
                storage_entry(3, true),
                storage_entry(4, false),
            ],
        });
        let pack_layout = device.create_bind_group_layout(&wgpu::BindGroupLayoutDescriptor {
            label: Some("tessera orient+quality"),
            entries: &[uniform_entry(0), storage_entry(1, true), storage_entry(2, false)],
        });
        let pipeline = |name: &str, body: &str, layout: &wgpu::BindGroupLayout| {
            let source = format!("{COMMON_WGSL}\n{body}");
            let module = device.create_shader_module(wgpu::ShaderModuleDescriptor {
                label: Some(name),
                source: wgpu::ShaderSource::Wgsl(source.into()),
            });
            let pl = device.create_pipeline_layout(&wgpu::PipelineLayoutDescriptor {
                label: Some(name),
                bind_group_layouts: &[Some(layout)],
                immediate_size: 0,
            });
            device.create_compute_pipeline(&wgpu::ComputePipelineDescriptor {
                label: Some(name),
                layout: Some(&pl),
                module: &module,
                entry_point: Some("main"),
                compilation_options: wgpu::PipelineCompilationOptions::default(),
                cache: None,
            })
        };
        let resize_v = pipeline("resize_v", RESIZE_V_WGSL, &resize_layout);
        let resize_h = pipeline("resize_h", RESIZE_H_WGSL, &resize_layout);
        let pack = pipeline("orient_quality", ORIENT_QUALITY_WGSL, &pack_layout);
        let rotate = pipeline("rotate", ROTATE_WGSL, &pack_layout);
        scopes.pop()?;

        let limits = device.limits();
        let align = u64::from(limits.min_storage_buffer_offset_alignment)
            .max(u64::from(limits.min_uniform_buffer_offset_alignment))
            .max(PARAMS_BYTES);
        Ok(Gpu {
            device,
            queue,
            info,
            limits,
            align,
            resize_layout,
            pack_layout,
            resize_v,
            resize_h,
            pack,
            rotate,
            pool: Mutex::new(BufferPool::default()),
            created: AtomicU64::new(0),
            resident: Mutex::new(resident::ResidentSet::default()),
            resident_max: opts.resident_bytes,
            lost,
            uncaptured,
        })
    }

    /// Adapter name, backend and device type, e.g.
    /// `llvmpipe (LLVM 15.0.6, 256 bits) (Vulkan, Cpu; Mesa 22.3.6)`.
    pub fn adapter_description(&self) -> String {
        let i = &self.info;
        let driver = [i.driver.as_str(), i.driver_info.as_str()]
            .iter()
            .filter(|s| !s.is_empty())
            .copied()
            .collect::<Vec<_>>()
            .join(" ");
        if driver.is_empty() {
            format!("{} ({:?}, {:?})", i.name, i.backend, i.device_type)
        } else {
            format!("{} ({:?}, {:?}; {})", i.name, i.backend, i.device_type, driver)
        }
    }

    /// Whether the adapter is a software rasteriser (lavapipe, WARP, ...).
    pub fn is_software(&self) -> bool {
        self.info.device_type == wgpu::DeviceType::Cpu
    }

    /// Buffer pool figures.
    pub fn pool_stats(&self) -> BufferPoolStats {
        let (idle_buffers, idle_bytes) = match self.pool.lock() {
            Ok(p) => (p.idle.values().map(Vec::len).sum(), p.idle_bytes),
            Err(_) => (0, 0),
        };
        BufferPoolStats { idle_buffers, idle_bytes, created: self.created.load(Ordering::Relaxed) }
    }

    /// Frees every idle pooled buffer (e.g. under memory pressure, or after a
    /// burst of unusually large jobs). Buffers in use are not affected.
    pub fn trim_pool(&self) {
        let idle = match self.pool.lock() {
            Ok(mut p) => {
                p.idle_bytes = 0;
                std::mem::take(&mut p.idle)
            }
            Err(_) => return,
        };
        for b in idle.into_values().flatten() {
            b.destroy();
        }
    }

    /// Resizes to `out_w × out_h`, then mirrors, turns and converts quality, as
    /// the CPU path does, in one submission with one readback.
    pub fn apply(&self, p: &Pixels, job: &GpuJob) -> Result<Pixels, GpuError> {
        if self.lost.load(Ordering::Acquire) {
            return Err(GpuError::Lost);
        }
        let prepared = self.prepare(p, job)?;
        let out = self.run(Src::Upload(prepared.src(p)), &prepared.plan);
        self.checked(out).and_then(|data| prepared.plan.output(data))
    }

    /// Many jobs at once, as one decoded area cut into many tiles asks:
    /// recorded into one submission, waited for once, read back each (the
    /// submission and the wait are most of a small job's cost on a real
    /// GPU). Result `i` is job `i`'s, as [`Gpu::apply`] would give it: a job
    /// the GPU cannot do fails alone; a device error fails every job of the
    /// submission. Jobs are grouped into submissions of at most
    /// [`BATCH_DEVICE_BYTES`] of buffers.
    pub fn apply_batch(&self, jobs: &[(&Pixels, GpuJob)]) -> Vec<Result<Pixels, GpuError>> {
        let mut results: Vec<Option<Result<Pixels, GpuError>>> = jobs.iter().map(|_| None).collect();
        // Jobs are prepared (their input parts cut out) one submission at a
        // time, so host memory holds one submission's parts, not the batch's.
        let mut group: Vec<(usize, Prepared)> = Vec::new();
        let mut bytes = 0u64;
        for (i, (p, job)) in jobs.iter().enumerate() {
            if self.lost.load(Ordering::Acquire) {
                results[i] = Some(Err(GpuError::Lost));
                continue;
            }
            let prepared = match self.prepare(p, job) {
                Ok(prepared) => prepared,
                Err(e) => {
                    results[i] = Some(Err(e));
                    continue;
                }
            };
            // At least one job a submission, however large.
            let size = prepared.plan.device_bytes();
            if !group.is_empty() && bytes + size > BATCH_DEVICE_BYTES {
                self.submit_group(jobs, std::mem::take(&mut group), &mut results);
                bytes = 0;
            }
            bytes += size;
            group.push((i, prepared));
        }
        if !group.is_empty() {
            self.submit_group(jobs, group, &mut results);
        }
        results.into_iter().map(|r| r.unwrap_or_else(|| Err(GpuError::Device("job not run".into())))).collect()
    }

    /// One submission of [`Gpu::apply_batch`]: its results into `results`.
    fn submit_group(
        &self,
        jobs: &[(&Pixels, GpuJob)],
        group: Vec<(usize, Prepared)>,
        results: &mut [Option<Result<Pixels, GpuError>>],
    ) {
        let inputs: Vec<(Src<'_>, &JobLayout)> =
            group.iter().map(|(i, prepared)| (Src::Upload(prepared.src(jobs[*i].0)), &prepared.plan)).collect();
        for ((i, _), out) in group.iter().zip(self.run_outputs(&inputs)) {
            results[*i] = Some(out);
        }
    }

    /// Runs jobs as one submission ([`Gpu::run_many`]) and builds their
    /// outputs; a device lost during the submission fails all of them.
    fn run_outputs(&self, inputs: &[(Src<'_>, &JobLayout)]) -> Vec<Result<Pixels, GpuError>> {
        let outs = self.run_many(inputs);
        let device = self.checked(Ok(())).err();
        inputs
            .iter()
            .zip(outs)
            .map(|((_, plan), out)| match &device {
                Some(e) => Err(e.clone()),
                None => out.and_then(|data| plan.output(data)),
            })
            .collect()
    }

    /// Checks a job before anything runs: its resize plan, the part of the
    /// input it reads (cut out on the CPU, which costs less than moving the
    /// rest to the device) and its layout against the adapter's limits.
    fn prepare(&self, p: &Pixels, job: &GpuJob) -> Result<Prepared, GpuError> {
        if job.out_w == 0 || job.out_h == 0 || p.width() == 0 || p.height() == 0 {
            return Err(GpuError::Unsupported("empty image".into()));
        }
        let rp = resize_plan(p.width(), p.height(), job.crop, job.out_w, job.out_h)?;
        let (x, y, w, h) = rp.rect;
        let part = ((x, y, w, h) != (0, 0, p.width(), p.height())).then(|| p.crop(x, y, w, h));
        let plan = self.layout(&SrcView::upload(part.as_ref().unwrap_or(p)), job, rp)?;
        Ok(Prepared { part, plan })
    }

    /// `out`, unless the device was lost meanwhile. A job's own errors come
    /// from its error scopes (thread-local, around every call it makes:
    /// recording, submission, mapping, readback), so an error of another
    /// thread's job never fails this one.
    fn checked<T>(&self, out: Result<T, GpuError>) -> Result<T, GpuError> {
        if self.lost.load(Ordering::Acquire) {
            return Err(GpuError::Lost);
        }
        out
    }

    /// Device errors raised outside any job's scopes (none are expected:
    /// every call a job makes is scoped), counted since start.
    pub fn uncaptured_errors(&self) -> u64 {
        self.uncaptured.load(Ordering::Relaxed)
    }
}

/// Bytes of device buffers one batch submission may hold at once.
const BATCH_DEVICE_BYTES: u64 = 512 << 20;

/// A job checked and laid out, with the part of its input it reads when
/// that is not the whole input.
struct Prepared {
    part: Option<Pixels>,
    plan: JobLayout,
}

impl Prepared {
    fn src<'a>(&'a self, whole: &'a Pixels) -> &'a Pixels {
        self.part.as_ref().unwrap_or(whole)
    }
}
