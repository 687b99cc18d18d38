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
//! Failures (no adapter, out of memory, a lost device, a job beyond the
//! adapter's limits) are returned as [`GpuError`]; the caller runs the CPU path
//! instead. Nothing here panics or logs.
//!
//! Arbitrary (non-quarter) rotation is not done here: leave it to the CPU.

use std::collections::HashMap;
use std::num::NonZeroU64;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{mpsc, Arc, Mutex};
use std::time::Duration;

use fast_image_resize::FilterType;

use crate::pixels::{Layout, Pixels};

const COMMON_WGSL: &str = include_str!("../../shaders/common.wgsl");
const RESIZE_V_WGSL: &str = include_str!("../../shaders/resize_v.wgsl");
const RESIZE_H_WGSL: &str = include_str!("../../shaders/resize_h.wgsl");
const ORIENT_QUALITY_WGSL: &str = include_str!("../../shaders/orient_quality.wgsl");

/// Workgroup edge of the resize passes (`@workgroup_size(16, 16)`).
const RESIZE_WG: u32 = 16;
/// Workgroup size of the orient/quality pass (`@workgroup_size(256)`).
const PACK_WG: u32 = 256;
/// Bytes of one `Params` block in the shaders.
const PARAMS_BYTES: u64 = 64;
/// Smallest pooled buffer.
const MIN_CLASS: u64 = 4096;
/// Idle buffers kept per (kind, size class).
const MAX_IDLE_PER_CLASS: usize = 2;
/// Idle bytes kept in the pool in all; beyond this, returned buffers are freed.
const MAX_IDLE_BYTES: u64 = 1 << 30;
/// Longest wait for one job before the device is considered hung.
const JOB_TIMEOUT: Duration = Duration::from_secs(120);

/// What to do to one image.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct GpuJob {
    /// Size of the resize output, before rotation.
    pub out_w: u32,
    pub out_h: u32,
    /// Flip left-right after resizing (before turning), as IIIF `!`.
    pub mirror: bool,
    /// Clockwise quarter turns, 0..=3 (taken modulo 4).
    pub quarter_turns: u8,
    pub quality: GpuQuality,
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

/// Why the GPU could not do a job. Every variant means: use the CPU.
#[derive(Debug, thiserror::Error)]
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
}

/// Buffer pool figures (for tests and metrics).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct PoolStats {
    /// Buffers idle in the pool now.
    pub idle_buffers: usize,
    /// Bytes held by idle buffers.
    pub idle_bytes: u64,
    /// Buffers created since the [`Gpu`] was made.
    pub created: u64,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
enum Kind {
    /// MAP_WRITE | COPY_SRC; kept mapped while idle.
    Upload,
    /// UNIFORM | STORAGE | COPY_DST: parameters, coefficients, input pixels.
    Input,
    /// STORAGE | COPY_SRC: intermediate and output images.
    Work,
    /// MAP_READ | COPY_DST.
    Readback,
}

impl Kind {
    fn usage(self) -> wgpu::BufferUsages {
        use wgpu::BufferUsages as U;
        match self {
            Kind::Upload => U::MAP_WRITE | U::COPY_SRC,
            Kind::Input => U::UNIFORM | U::STORAGE | U::COPY_DST,
            Kind::Work => U::STORAGE | U::COPY_SRC,
            Kind::Readback => U::MAP_READ | U::COPY_DST,
        }
    }
}

#[derive(Default)]
struct Pool {
    idle: HashMap<(Kind, u64), Vec<wgpu::Buffer>>,
    idle_bytes: u64,
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
    pool: Mutex<Pool>,
    created: AtomicU64,
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

        // The default handler panics; count instead (every job runs inside
        // error scopes, so this only catches what escapes them).
        let uncaptured = Arc::new(AtomicU64::new(0));
        let counter = Arc::clone(&uncaptured);
        device.on_uncaptured_error(Arc::new(move |_e: wgpu::Error| {
            counter.fetch_add(1, Ordering::Relaxed);
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
            pool: Mutex::new(Pool::default()),
            created: AtomicU64::new(0),
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
    pub fn pool_stats(&self) -> PoolStats {
        let (idle_buffers, idle_bytes) = match self.pool.lock() {
            Ok(p) => (p.idle.values().map(Vec::len).sum(), p.idle_bytes),
            Err(_) => (0, 0),
        };
        PoolStats { idle_buffers, idle_bytes, created: self.created.load(Ordering::Relaxed) }
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
        let plan = self.plan(p, job)?;
        let before = self.uncaptured.load(Ordering::Relaxed);
        let out = self.run(p, &plan);
        if self.lost.load(Ordering::Acquire) {
            return Err(GpuError::Lost);
        }
        if out.is_ok() && self.uncaptured.load(Ordering::Relaxed) != before {
            return Err(GpuError::Device("uncaptured GPU error during the job".into()));
        }
        let data = out?;
        Pixels::new(plan.final_w, plan.final_h, plan.out_layout, data)
            .map_err(|e| GpuError::Device(format!("readback: {e}")))
    }

    fn plan(&self, p: &Pixels, job: &GpuJob) -> Result<Plan, GpuError> {
        let (src_w, src_h) = (p.width(), p.height());
        let (out_w, out_h) = (job.out_w, job.out_h);
        if src_w == 0 || src_h == 0 || out_w == 0 || out_h == 0 {
            return Err(GpuError::Unsupported("empty image".into()));
        }
        let layout = p.layout();
        let in_c = layout.channels() as u32;
        let out_layout = match job.quality {
            GpuQuality::Keep => layout,
            GpuQuality::Gray | GpuQuality::Bitonal => {
                if layout.has_alpha() {
                    Layout::GrayAlpha
                } else {
                    Layout::Gray
                }
            }
        };
        let out_c = out_layout.channels() as u32;
        let q = u32::from(job.quarter_turns % 4);
        let (final_w, final_h) = if q % 2 == 1 { (out_h, out_w) } else { (out_w, out_h) };

        let resizing = src_w != out_w || src_h != out_h;
        let (v, h) = if resizing {
            let filter = match super::resize::filter_for(src_w, src_h, out_w, out_h) {
                FilterType::Lanczos3 => Filter::Lanczos3,
                FilterType::CatmullRom => Filter::CatmullRom,
                other => return Err(GpuError::Unsupported(format!("filter {other:?}"))),
            };
            let v = (src_h != out_h).then(|| coefficients(src_h, out_h, filter));
            let h = (src_w != out_w).then(|| coefficients(src_w, out_w, filter));
            (v, h)
        } else {
            (None, None)
        };
        for c in v.iter().chain(h.iter()) {
            if c.precision == 0 {
                return Err(GpuError::Unsupported("degenerate resize coefficients".into()));
            }
        }

        let l = &self.limits;
        let max_bind = l.max_storage_buffer_binding_size;
        let max_groups = l.max_compute_workgroups_per_dimension;
        let align = self.align;
        let in_stride = u64::from(src_w) * u64::from(in_c);
        let in_len4 = round_up((p.byte_len() as u64).max(4), 4).ok_or_else(too_big)?;
        let v_stride = round_up(in_stride, 4).ok_or_else(too_big)?;
        let bands = match &v {
            Some(c) => v_bands(c, in_stride, in_len4, max_bind, align, max_groups.saturating_mul(RESIZE_WG))?,
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
        let input = take(in_len4)?;
        let upload_len = off;

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
        let out_bytes = u64::from(out_w) * u64::from(out_h) * u64::from(out_c);
        let out_len4 = round_up(out_bytes, 4).ok_or_else(too_big)?;
        stage_sizes.push(out_len4);
        let mut work = [0u64; 2];
        for (i, s) in stage_sizes.iter().enumerate() {
            work[i % 2] = work[i % 2].max(*s);
        }

        // Limits. With a vertical pass the input is bound in bands; without
        // one, resize_h or orient_quality binds it whole.
        let input_binding = if v.is_some() { 0 } else { input.1 };
        let biggest_binding = input_binding.max(work[0]).max(work[1]);
        if biggest_binding > max_bind {
            return Err(GpuError::Unsupported(format!(
                "binding of {biggest_binding} bytes exceeds max_storage_buffer_binding_size {max_bind}"
            )));
        }
        if upload_len > l.max_buffer_size || work[0] > l.max_buffer_size {
            return Err(GpuError::Unsupported(format!("buffer exceeds max_buffer_size {}", l.max_buffer_size)));
        }
        if out_bytes > u64::from(u32::MAX) || input.1 >= u64::from(u32::MAX) || v_len >= u64::from(u32::MAX) {
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
        let invocations = (u64::from(out_w) * u64::from(out_h)).div_ceil(4);
        let total = invocations.div_ceil(u64::from(PACK_WG));
        let gx = total.min(u64::from(max_groups)).max(1);
        let gy = total.div_ceil(gx).max(1);
        if gy > u64::from(max_groups) {
            return Err(GpuError::Unsupported("output needs too many workgroups".into()));
        }
        let groups_p = (gx as u32, gy as u32);

        Ok(Plan {
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
            in_stride: in_stride as u32,
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
        })
    }

    fn run(&self, p: &Pixels, plan: &Plan) -> Result<Vec<u8>, GpuError> {
        let scopes = Scopes::push(&self.device);
        let built = self.encode(p, plan);
        let scoped = scopes.pop();
        let (bufs, index) = match (built, scoped) {
            (Ok(b), Ok(())) => b,
            (Err(e), _) | (Ok(_), Err(e)) => return Err(e),
        };
        let data = self.finish(plan, bufs, index)?;
        Ok(data)
    }

    /// Fills the upload buffer, records the passes and submits them.
    fn encode(&self, p: &Pixels, plan: &Plan) -> Result<(JobBuffers, wgpu::SubmissionIndex), GpuError> {
        let upload = self.take(Kind::Upload, plan.upload_len)?;
        {
            let mut view = upload
                .get_mapped_range_mut(0..plan.upload_len)
                .map_err(|e| GpuError::Device(format!("upload map: {e}")))?;
            let header = self.header(plan);
            view.slice(0..header.len()).copy_from_slice(&header);
            let start = plan.input.0 as usize;
            view.slice(start..start + p.byte_len()).copy_from_slice(p.data());
        }
        upload.unmap();
        let input = self.take(Kind::Input, plan.upload_len)?;
        let work_a = self.take(Kind::Work, plan.work[0])?;
        let work_b = if plan.work[1] > 0 { Some(self.take(Kind::Work, plan.work[1])?) } else { None };
        let readback = self.take(Kind::Readback, plan.out_len4)?;

        let mut enc =
            self.device.create_command_encoder(&wgpu::CommandEncoderDescriptor { label: Some("tessera job") });
        enc.copy_buffer_to_buffer(&upload, 0, &input, 0, plan.upload_len);
        let last = self.record(&mut enc, plan, &input, [Some(&work_a), work_b.as_ref()])?;
        enc.copy_buffer_to_buffer(last, 0, &readback, 0, plan.out_len4);
        let index = self.queue.submit([enc.finish()]);
        Ok((JobBuffers { upload, input, work_a, work_b, readback }, index))
    }

    /// Records the compute passes; returns the buffer holding the output.
    fn record<'a>(
        &self,
        enc: &mut wgpu::CommandEncoder,
        plan: &Plan,
        input: &'a wgpu::Buffer,
        work: [Option<&'a wgpu::Buffer>; 2],
    ) -> Result<&'a wgpu::Buffer, GpuError> {
        // Stages write to work[0], work[1], work[0] in turn.
        let mut stage = 0usize;
        let mut next_target = || {
            let t = work[stage % 2].ok_or_else(|| GpuError::Device("no work buffer".into()));
            stage += 1;
            t
        };
        // The image the next stage reads: None = the raw input section.
        let mut current: Option<(&wgpu::Buffer, u64)> = None;
        let mut pass =
            enc.begin_compute_pass(&wgpu::ComputePassDescriptor { label: Some("tessera"), timestamp_writes: None });
        let mut resize = |pipeline, params, src, (bounds, coeffs): (Section, Section), dst, (gx, gy)| {
            let bg = self.device.create_bind_group(&wgpu::BindGroupDescriptor {
                label: None,
                layout: &self.resize_layout,
                entries: &[
                    wgpu::BindGroupEntry { binding: 0, resource: binding(input, params) },
                    wgpu::BindGroupEntry { binding: 1, resource: src },
                    wgpu::BindGroupEntry { binding: 2, resource: binding(input, bounds) },
                    wgpu::BindGroupEntry { binding: 3, resource: binding(input, coeffs) },
                    wgpu::BindGroupEntry { binding: 4, resource: dst },
                ],
            });
            pass.set_pipeline(pipeline);
            pass.set_bind_group(0, &bg, &[]);
            pass.dispatch_workgroups(gx, gy, 1);
        };
        if let Some(tables) = plan.tables_v {
            let target = next_target()?;
            for d in &plan.v_dispatch {
                let src = (plan.input.0 + d.band.offset, d.band.len);
                resize(
                    &self.resize_v,
                    d.params,
                    binding(input, src),
                    tables,
                    binding(target, (0, plan.v_len)),
                    d.groups,
                );
            }
            current = Some((target, plan.v_len));
        }
        if let (Some(tables), Some(groups)) = (plan.tables_h, plan.groups_h) {
            let target = next_target()?;
            let src = match current {
                None => binding(input, plan.input),
                Some((b, len)) => binding(b, (0, len)),
            };
            resize(&self.resize_h, plan.params_h, src, tables, binding(target, (0, plan.h_len)), groups);
            current = Some((target, plan.h_len));
        }
        let target = next_target()?;
        let src = match current {
            None => binding(input, plan.input),
            Some((b, len)) => binding(b, (0, len)),
        };
        let bg = self.device.create_bind_group(&wgpu::BindGroupDescriptor {
            label: None,
            layout: &self.pack_layout,
            entries: &[
                wgpu::BindGroupEntry { binding: 0, resource: binding(input, plan.params_p) },
                wgpu::BindGroupEntry { binding: 1, resource: src },
                wgpu::BindGroupEntry { binding: 2, resource: binding(target, (0, plan.out_len4)) },
            ],
        });
        pass.set_pipeline(&self.pack);
        pass.set_bind_group(0, &bg, &[]);
        pass.dispatch_workgroups(plan.groups_p.0, plan.groups_p.1, 1);
        Ok(target)
    }

    /// Waits for the job, reads the output, returns the buffers to the pool.
    fn finish(&self, plan: &Plan, bufs: JobBuffers, index: wgpu::SubmissionIndex) -> Result<Vec<u8>, GpuError> {
        let (tx, rx) = mpsc::channel::<(Kind, bool)>();
        let tx_up = tx.clone();
        // Re-map the upload buffer so that it goes back to the pool ready to write.
        bufs.upload.map_async(wgpu::MapMode::Write, .., move |r| {
            let _ = tx_up.send((Kind::Upload, r.is_ok()));
        });
        bufs.readback.map_async(wgpu::MapMode::Read, 0..plan.out_len4, move |r| {
            let _ = tx.send((Kind::Readback, r.is_ok()));
        });
        let wait = wgpu::PollType::Wait { submission_index: Some(index), timeout: Some(JOB_TIMEOUT) };
        self.device.poll(wait).map_err(|e| match e {
            wgpu::PollError::Timeout => GpuError::Device("job timed out".into()),
            other => GpuError::Device(other.to_string()),
        })?;
        let (mut upload_ok, mut readback_ok) = (None, None);
        for _ in 0..64 {
            while let Ok((kind, ok)) = rx.try_recv() {
                match kind {
                    Kind::Readback => readback_ok = Some(ok),
                    _ => upload_ok = Some(ok),
                }
            }
            if upload_ok.is_some() && readback_ok.is_some() {
                break;
            }
            // The callbacks run inside poll; another thread's poll may also run them.
            if self.device.poll(wgpu::PollType::Poll).is_err() {
                break;
            }
            std::thread::yield_now();
        }
        if self.lost.load(Ordering::Acquire) {
            return Err(GpuError::Lost);
        }
        if readback_ok != Some(true) {
            return Err(GpuError::Device("readback map failed".into()));
        }
        let data = {
            let view = bufs
                .readback
                .get_mapped_range(0..plan.out_len4)
                .map_err(|e| GpuError::Device(format!("readback view: {e}")))?;
            view.get(..plan.out_bytes as usize)
                .map(<[u8]>::to_vec)
                .ok_or_else(|| GpuError::Device("short readback".into()))?
        };
        bufs.readback.unmap();
        self.give(Kind::Readback, bufs.readback);
        if upload_ok == Some(true) {
            self.give(Kind::Upload, bufs.upload);
        }
        self.give(Kind::Input, bufs.input);
        self.give(Kind::Work, bufs.work_a);
        if let Some(b) = bufs.work_b {
            self.give(Kind::Work, b);
        }
        Ok(data)
    }

    /// Parameter blocks and coefficient tables, laid out as `plan` says.
    fn header(&self, plan: &Plan) -> Vec<u8> {
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
                words[14] = b.offset as u32;
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
            put_params(plan.params_h.0, params_block(dims, plan.in_c, [stride, 0], flags, c));
        }
        let mut flags = 0;
        if plan.mirror {
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
        // The resized image: packed words from resize_h, raw rows from
        // resize_v, or the raw input.
        let (src_c, src_stride) = match (&plan.v, &plan.h) {
            (_, Some(_)) => (0, 0),
            (Some(_), None) => (plan.in_c, plan.v_stride),
            (None, None) => (plan.in_c, plan.in_stride),
        };
        let mut words = [0u32; 16];
        words[0] = plan.out_w;
        words[1] = plan.out_h;
        words[2] = plan.out_w;
        words[3] = plan.out_h;
        words[4] = src_c;
        words[12] = src_stride;
        words[5] = flags;
        words[8] = plan.quarter;
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

    /// A pooled buffer of `kind` holding at least `len` bytes.
    fn take(&self, kind: Kind, len: u64) -> Result<wgpu::Buffer, GpuError> {
        let class = self.size_class(len)?;
        if let Ok(mut pool) = self.pool.lock() {
            if let Some(b) = pool.idle.get_mut(&(kind, class)).and_then(Vec::pop) {
                pool.idle_bytes = pool.idle_bytes.saturating_sub(class);
                return Ok(b);
            }
        }
        self.created.fetch_add(1, Ordering::Relaxed);
        Ok(self.device.create_buffer(&wgpu::BufferDescriptor {
            label: Some("tessera pool"),
            size: class,
            usage: kind.usage(),
            mapped_at_creation: kind == Kind::Upload,
        }))
    }

    /// Returns a buffer to the pool, or frees it when the pool is full.
    fn give(&self, kind: Kind, buf: wgpu::Buffer) {
        let class = buf.size();
        if let Ok(mut pool) = self.pool.lock() {
            if pool.idle_bytes.saturating_add(class) <= MAX_IDLE_BYTES {
                let list = pool.idle.entry((kind, class)).or_default();
                if list.len() < MAX_IDLE_PER_CLASS {
                    list.push(buf);
                    pool.idle_bytes += class;
                    return;
                }
            }
        }
        buf.destroy();
    }

    /// Power of two at least `len` (and [`MIN_CLASS`]); where that exceeds the
    /// device's maximum buffer size, `len` rounded up to 256.
    fn size_class(&self, len: u64) -> Result<u64, GpuError> {
        let max = self.limits.max_buffer_size;
        let pow = len.max(MIN_CLASS).checked_next_power_of_two();
        match pow {
            Some(c) if c <= max => Ok(c),
            _ => match round_up(len, 256) {
                Some(c) if c <= max => Ok(c),
                _ => Err(GpuError::Unsupported(format!("buffer of {len} bytes exceeds max_buffer_size {max}"))),
            },
        }
    }
}

fn binding(buf: &wgpu::Buffer, (offset, len): Section) -> wgpu::BindingResource<'_> {
    wgpu::BindingResource::Buffer(wgpu::BufferBinding { buffer: buf, offset, size: NonZeroU64::new(len) })
}

/// A resize pass's `Params` (shaders/common.wgsl): `dims` = src w, h, dst w, h;
/// `strides` = source and destination bytes per row.
fn params_block(dims: [u32; 4], src_c: u32, strides: [u32; 2], flags: u32, c: &Coeffs) -> [u32; 16] {
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

fn too_big() -> GpuError {
    GpuError::Unsupported("size overflow".into())
}

fn round_up(v: u64, to: u64) -> Option<u64> {
    v.checked_add(to - 1).map(|x| x / to * to)
}

/// (offset, length) inside the upload/input buffer.
type Section = (u64, u64);

/// A band of resize_v output rows and the input bytes it reads.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct Band {
    row0: u32,
    rows: u32,
    /// Byte range of the input bound for this band (offset from the input's
    /// start, aligned for binding).
    offset: u64,
    len: u64,
}

struct VDispatch {
    band: Band,
    params: Section,
    groups: (u32, u32),
}

/// Splits resize_v's output rows into bands whose input rows fit one storage
/// binding (`max_bind` bytes, offsets aligned to `align`) and one dispatch
/// (`max_rows`). Usually one band covering everything.
fn v_bands(
    c: &Coeffs,
    stride: u64,
    input_len: u64,
    max_bind: u64,
    align: u64,
    max_rows: u32,
) -> Result<Vec<Band>, GpuError> {
    // Bytes a run of output rows reads: from its lowest first row to its
    // highest last row, plus the one word resize_v may read past a row end.
    let span = |b: &[u32; 2]| {
        let lo = u64::from(b[0]) * stride;
        let hi = (u64::from(b[0]) + u64::from(b[1])) * stride;
        (lo, round_up(hi, 4).map_or(input_len, |h| h.saturating_add(4)).min(input_len))
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

struct JobBuffers {
    upload: wgpu::Buffer,
    input: wgpu::Buffer,
    work_a: wgpu::Buffer,
    work_b: Option<wgpu::Buffer>,
    readback: wgpu::Buffer,
}

struct Plan {
    src_w: u32,
    src_h: u32,
    out_w: u32,
    out_h: u32,
    in_c: u32,
    out_c: u32,
    out_layout: Layout,
    final_w: u32,
    final_h: u32,
    quarter: u32,
    mirror: bool,
    quality: GpuQuality,
    alpha: bool,
    v: Option<Coeffs>,
    h: Option<Coeffs>,
    /// Bytes per input row.
    in_stride: u32,
    /// Bytes per resize_v output row (padded to a word).
    v_stride: u32,
    /// Bytes written by resize_v and resize_h.
    v_len: u64,
    h_len: u64,
    /// resize_v dispatches, one per band of output rows.
    v_dispatch: Vec<VDispatch>,
    params_h: Section,
    params_p: Section,
    tables_v: Option<(Section, Section)>,
    tables_h: Option<(Section, Section)>,
    input: Section,
    upload_len: u64,
    work: [u64; 2],
    out_bytes: u64,
    out_len4: u64,
    groups_h: Option<(u32, u32)>,
    groups_p: (u32, u32),
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Filter {
    Lanczos3,
    CatmullRom,
}

impl Filter {
    /// fast_image_resize 6.1 `convolution::filters`: function and support.
    fn func(self) -> (fn(f64) -> f64, f64) {
        match self {
            Filter::Lanczos3 => (lanczos3, 3.0),
            Filter::CatmullRom => (catmull_rom, 2.0),
        }
    }
}

fn sinc(mut x: f64) -> f64 {
    if x == 0.0 {
        1.0
    } else {
        x *= std::f64::consts::PI;
        x.sin() / x
    }
}

fn lanczos3(x: f64) -> f64 {
    if (-3.0..3.0).contains(&x) {
        sinc(x) * sinc(x / 3.)
    } else {
        0.0
    }
}

fn catmull_rom(mut x: f64) -> f64 {
    const A: f64 = -0.5;
    x = x.abs();
    if x < 1.0 {
        ((A + 2.) * x - (A + 3.)) * x * x + 1.
    } else if x < 2.0 {
        (((x - 5.) * x + 8.) * x - 4.) * A
    } else {
        0.0
    }
}

/// One pass's fixed-point coefficients.
#[derive(Debug)]
struct Coeffs {
    /// (first input sample, number of taps) per output sample.
    bounds: Vec<[u32; 2]>,
    /// `window` i16 values (widened) per output sample, zero-padded.
    values: Vec<i32>,
    window: u32,
    precision: u32,
}

/// fast_image_resize 6.1 `precompute_coefficients` (no crop, adaptive kernel)
/// followed by `Normalizer16::new`.
fn coefficients(in_size: u32, out_size: u32, filter: Filter) -> Coeffs {
    let (func, support) = filter.func();
    let scale = f64::from(in_size) / f64::from(out_size);
    let filter_scale = scale.max(1.0);
    let radius = support * filter_scale;
    let window = radius.ceil() as usize * 2 + 1;
    let recip = 1.0 / filter_scale;
    let mut values: Vec<f64> = Vec::with_capacity(window * out_size as usize);
    let mut bounds: Vec<[u32; 2]> = Vec::with_capacity(out_size as usize);
    for out_x in 0..out_size {
        let in_center = (f64::from(out_x) + 0.5) * scale;
        let x_min = (in_center - radius).floor().max(0.) as u32;
        let x_max = (in_center + radius).ceil().min(f64::from(in_size)) as u32;
        let cur = values.len();
        let mut ww = 0.0;
        let center = in_center - 0.5;
        let mut start = x_min;
        let mut end = x_max;
        for x in x_min..x_max {
            let w = func((f64::from(x) - center) * recip);
            if x == start && w == 0. {
                start += 1;
            } else {
                values.push(w);
                ww += w;
            }
        }
        for &c in values.iter().rev() {
            if end <= start || c != 0. {
                break;
            }
            end -= 1;
        }
        if ww != 0.0 {
            values[cur..].iter_mut().for_each(|w| *w /= ww);
        }
        values.resize(cur + window, 0.);
        bounds.push([start, end - start]);
    }
    // Normalizer16: the largest precision at which the biggest weight still
    // fits an i16 (PRECISION_BITS = 22, MAX_COEFFS_PRECISION = 15).
    let max_weight = values.iter().copied().fold(f64::NEG_INFINITY, f64::max).max(0.0);
    let mut precision = 0u32;
    for cur in 0..22u32 {
        precision = cur;
        let next = (max_weight * f64::from(1u32 << (cur + 1))).round() as i32;
        if next >= 1 << 15 {
            break;
        }
    }
    let scale_i = f64::from(1u32 << precision);
    let mut fixed = vec![0i32; values.len()];
    for (o, b) in bounds.iter().enumerate() {
        let base = o * window;
        for k in 0..b[1] as usize {
            fixed[base + k] = i32::from((values[base + k] * scale_i).round() as i16);
        }
    }
    Coeffs { bounds, values: fixed, window: window as u32, precision }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::iiif::Quality;
    use crate::transform::{quality, resize, rotate};
    use std::sync::OnceLock;

    const SKIP: &str = "SKIPPED: no GPU adapter (install mesa-vulkan-drivers)";

    fn no_gpu(e: &str) {
        if std::env::var("TESSERA_REQUIRE_GPU").as_deref() == Ok("1") {
            panic!("TESSERA_REQUIRE_GPU=1 but no GPU: {e}");
        }
        println!("{SKIP} ({e})");
    }

    fn open() -> Result<Gpu, GpuError> {
        Gpu::new(&GpuOptions { allow_software: true })
    }

    /// The device shared by the tests, or None (after printing the skip line)
    /// when there is no adapter and TESSERA_REQUIRE_GPU=1 is not set. Any
    /// other failure to open the device (e.g. a shader that doesn't compile)
    /// fails the test.
    fn gpu() -> Option<&'static Gpu> {
        static GPU: OnceLock<Result<Gpu, GpuError>> = OnceLock::new();
        match GPU.get_or_init(open) {
            Ok(g) => Some(g),
            Err(GpuError::NoAdapter(e)) => {
                no_gpu(e);
                None
            }
            Err(e) => panic!("GPU adapter found but unusable: {e}"),
        }
    }

    /// Gradients, a hard-edged disc, a checker band, and seeded noise.
    fn structured(w: u32, h: u32, layout: Layout, seed: u32) -> Pixels {
        let c = layout.channels();
        let mut state = seed.wrapping_mul(2654435761).wrapping_add(12345);
        let mut rnd = move || {
            state ^= state << 13;
            state ^= state >> 17;
            state ^= state << 5;
            state
        };
        let mut d = Vec::with_capacity(w as usize * h as usize * c);
        let (cx, cy, r) = (w as f32 * 0.6, h as f32 * 0.4, (w.min(h) as f32) * 0.3);
        for y in 0..h {
            for x in 0..w {
                let gx = (x * 255 / w.max(2).saturating_sub(1).max(1)) as i32;
                let gy = (y * 255 / h.max(2).saturating_sub(1).max(1)) as i32;
                let inside = (x as f32 - cx).powi(2) + (y as f32 - cy).powi(2) < r * r;
                let checker = ((x / 3 + y / 5) % 2 == 0) && y > h / 2;
                let n = (rnd() % 41) as i32 - 20;
                let mut px = [gx, gy, 255 - (gx + gy) / 2, 255 - gy];
                if inside {
                    px = [250, 20, 40, 200];
                }
                if checker {
                    px[0] = 255 - px[0];
                    px[1] = 0;
                    px[3] = if (x + y) % 7 == 0 { 0 } else { px[3] };
                }
                let px = px.map(|v| (v + n).clamp(0, 255) as u8);
                match layout {
                    Layout::Gray => d.push(px[0]),
                    Layout::GrayAlpha => d.extend_from_slice(&[px[0], px[3]]),
                    Layout::Rgb => d.extend_from_slice(&px[..3]),
                    Layout::Rgba => d.extend_from_slice(&px),
                }
            }
        }
        Pixels::new(w, h, layout, d).unwrap()
    }

    fn cpu(p: &Pixels, job: &GpuJob) -> Pixels {
        let r = resize::resize(p.clone(), job.out_w, job.out_h);
        let r = if job.mirror { rotate::mirror(&r) } else { r };
        let r = match job.quarter_turns % 4 {
            0 => r,
            q => rotate::quarter(&r, q),
        };
        let q = match job.quality {
            GpuQuality::Keep => Quality::Default,
            GpuQuality::Gray => Quality::Gray,
            GpuQuality::Bitonal => Quality::Bitonal,
        };
        quality::apply(r, q)
    }

    /// (max abs difference, count of differing samples).
    fn diff(a: &Pixels, b: &Pixels) -> (u8, usize) {
        let mut max = 0u8;
        let mut n = 0;
        for (x, y) in a.data().iter().zip(b.data()) {
            let d = x.abs_diff(*y);
            if d > 0 {
                n += 1;
            }
            max = max.max(d);
        }
        (max, n)
    }

    /// Compares one job against the CPU path.
    ///
    /// Bound: the arithmetic is the CPU's integer arithmetic, so Keep and Gray
    /// must be within a max abs diff of 2 per sample (in practice 0). Bitonal
    /// outputs only 0 or 255, so a one-step luma difference at the threshold
    /// flips a pixel; at most 0.5% of bitonal samples may differ (in practice 0).
    fn check(g: &Gpu, p: &Pixels, job: &GpuJob) {
        let want = cpu(p, job);
        let got = g.apply(p, job).unwrap_or_else(|e| panic!("{job:?} on {p:?}: {e}"));
        assert_eq!(
            (got.width(), got.height(), got.layout()),
            (want.width(), want.height(), want.layout()),
            "{job:?} on {p:?}"
        );
        let (max, n) = diff(&got, &want);
        match job.quality {
            GpuQuality::Bitonal => {
                assert!(
                    n * 200 <= want.byte_len(),
                    "{job:?} on {p:?}: {n} of {} bitonal samples differ",
                    want.byte_len()
                )
            }
            _ => assert!(max <= 2, "{job:?} on {p:?}: max diff {max} ({n} samples differ)"),
        }
    }

    const LAYOUTS: [Layout; 4] = [Layout::Gray, Layout::GrayAlpha, Layout::Rgb, Layout::Rgba];

    #[test]
    fn gpu_is_send_and_sync() {
        fn assert_send_sync<T: Send + Sync>() {}
        assert_send_sync::<Gpu>();
    }

    #[test]
    fn coefficients_match_fast_image_resize_on_an_impulse() {
        // A single bright column resized on the CPU reproduces each output
        // column's weight; our fixed-point table must give the same bytes.
        for (src, dst) in [(40u32, 13u32), (13, 40), (100, 27), (5, 3)] {
            let filter = match resize::filter_for(src, 1, dst, 1) {
                FilterType::Lanczos3 => Filter::Lanczos3,
                _ => Filter::CatmullRom,
            };
            let c = coefficients(src, dst, filter);
            for hot in [0, src / 2, src - 1] {
                let mut d = vec![0u8; src as usize];
                d[hot as usize] = 200;
                let p = Pixels::new(src, 1, Layout::Gray, d.clone()).unwrap();
                let want = resize::resize(p, dst, 1);
                for (o, b) in c.bounds.iter().enumerate() {
                    let mut acc = 1i32 << (c.precision - 1);
                    for k in 0..b[1] {
                        acc += i32::from(d[(b[0] + k) as usize]) * c.values[o * c.window as usize + k as usize];
                    }
                    let v = (acc >> c.precision).clamp(0, 255) as u8;
                    assert_eq!(v, want.data()[o], "{src}->{dst} hot {hot} out {o}");
                }
            }
        }
    }

    #[test]
    fn resize_matches_the_cpu_for_every_layout_and_scale() {
        let Some(g) = gpu() else { return };
        let cases: [((u32, u32), (u32, u32)); 8] = [
            ((333, 217), (166, 108)), // about 2x down, odd sizes
            ((333, 217), (90, 59)),   // 3.7x down
            ((256, 192), (32, 24)),   // 8x down
            ((120, 90), (240, 180)),  // 2x up
            ((1, 1), (3, 5)),         // tiny up
            ((97, 61), (97, 30)),     // only the height changes
            ((97, 61), (40, 61)),     // only the width changes
            ((64, 48), (90, 20)),     // up in one direction, down in the other
        ];
        for (i, ((sw, sh), (ow, oh))) in cases.into_iter().enumerate() {
            for layout in LAYOUTS {
                let p = structured(sw, sh, layout, i as u32 + 1);
                let job = GpuJob { out_w: ow, out_h: oh, mirror: false, quarter_turns: 0, quality: GpuQuality::Keep };
                check(g, &p, &job);
            }
        }
    }

    #[test]
    fn mirror_and_quarter_turns_match_the_cpu_with_and_without_resize() {
        let Some(g) = gpu() else { return };
        for layout in LAYOUTS {
            let p = structured(75, 41, layout, 7);
            for (ow, oh) in [(75, 41), (30, 17)] {
                for mirror in [false, true] {
                    for q in 0..4u8 {
                        let job = GpuJob { out_w: ow, out_h: oh, mirror, quarter_turns: q, quality: GpuQuality::Keep };
                        check(g, &p, &job);
                    }
                }
            }
        }
    }

    #[test]
    fn gray_and_bitonal_match_the_cpu_for_every_layout() {
        let Some(g) = gpu() else { return };
        for layout in LAYOUTS {
            let p = structured(151, 99, layout, 11);
            for quality in [GpuQuality::Gray, GpuQuality::Bitonal] {
                for (ow, oh, mirror, q) in
                    [(151, 99, false, 0), (50, 33, true, 1), (300, 198, false, 3), (41, 99, true, 2)]
                {
                    let job = GpuJob { out_w: ow, out_h: oh, mirror, quarter_turns: q, quality };
                    check(g, &p, &job);
                }
            }
        }
    }

    #[test]
    fn the_full_table_matches_the_cpu_on_an_odd_sized_image() {
        let Some(g) = gpu() else { return };
        for layout in LAYOUTS {
            let p = structured(37, 23, layout, 3);
            for (ow, oh) in [(37, 23), (18, 11), (10, 6), (74, 46), (3, 5)] {
                for mirror in [false, true] {
                    for q in 0..4u8 {
                        for quality in [GpuQuality::Keep, GpuQuality::Gray, GpuQuality::Bitonal] {
                            check(g, &p, &GpuJob { out_w: ow, out_h: oh, mirror, quarter_turns: q, quality });
                        }
                    }
                }
            }
        }
    }

    #[test]
    fn output_is_bit_exact_on_a_photo_sized_downscale() {
        let Some(g) = gpu() else { return };
        let p = structured(1024, 768, Layout::Rgb, 5);
        let job = GpuJob { out_w: 256, out_h: 192, mirror: false, quarter_turns: 0, quality: GpuQuality::Keep };
        let got = g.apply(&p, &job).unwrap();
        let (max, n) = diff(&got, &cpu(&p, &job));
        assert_eq!((max, n), (0, 0), "max diff {max}, {n} samples differ");
    }

    #[test]
    fn a_hundred_sequential_jobs_create_no_new_buffers_and_keep_the_pool_bounded() {
        // A device of its own, so that concurrent tests don't touch its pool.
        let Some(g) = own_gpu() else { return };
        let a = structured(200, 150, Layout::Rgb, 1);
        let b = structured(90, 60, Layout::Rgba, 2);
        let ja = GpuJob { out_w: 100, out_h: 75, mirror: false, quarter_turns: 1, quality: GpuQuality::Keep };
        let jb = GpuJob { out_w: 45, out_h: 30, mirror: true, quarter_turns: 0, quality: GpuQuality::Gray };
        // Warm up both shapes; then 100 more calls must create nothing.
        g.apply(&a, &ja).unwrap();
        g.apply(&b, &jb).unwrap();
        let warm = g.pool_stats();
        // One job holds at most 5 buffers (upload, input, 2 work, readback).
        assert!(warm.created <= 10, "{warm:?}");
        for i in 0..100 {
            let (p, j) = if i % 2 == 0 { (&a, &ja) } else { (&b, &jb) };
            g.apply(p, j).unwrap();
        }
        let after = g.pool_stats();
        assert_eq!(after.created, warm.created, "{warm:?} -> {after:?}");
        assert!(after.idle_buffers <= 10, "{after:?}");
        assert!(after.idle_bytes <= MAX_IDLE_BYTES);
        let per_class = g.pool.lock().unwrap().idle.values().map(Vec::len).max().unwrap_or(0);
        assert!(per_class <= MAX_IDLE_PER_CLASS);
    }

    fn own_gpu() -> Option<Gpu> {
        match open() {
            Ok(g) => Some(g),
            Err(GpuError::NoAdapter(e)) => {
                no_gpu(&e);
                None
            }
            Err(e) => panic!("GPU adapter found but unusable: {e}"),
        }
    }

    #[test]
    fn bands_cover_every_output_row_within_the_binding_limit() {
        let c = coefficients(1000, 125, Filter::Lanczos3);
        let stride = 999u64 * 3;
        let len = round_up(stride * 1000, 4).unwrap();
        for max_bind in [160 * 1024u64, 400 * 1024, 1 << 30] {
            let bands = v_bands(&c, stride, len, max_bind, 256, 1 << 20).unwrap();
            let mut next = 0;
            for b in &bands {
                assert_eq!(b.row0, next);
                assert!(b.len <= max_bind && b.offset % 256 == 0 && b.offset + b.len <= len, "{b:?}");
                for y in b.row0..b.row0 + b.rows {
                    let [start, n] = c.bounds[y as usize];
                    assert!(u64::from(start) * stride >= b.offset);
                    assert!(((u64::from(start + n) * stride).min(len)) <= b.offset + b.len);
                }
                next = b.row0 + b.rows;
            }
            assert_eq!(next, 125);
            if max_bind == 1 << 30 {
                assert_eq!(bands.len(), 1);
            } else {
                assert!(bands.len() > 1);
            }
        }
        // A single row that cannot fit is refused.
        assert!(matches!(v_bands(&c, stride, len, 64 * 1024, 256, 1 << 20), Err(GpuError::Unsupported(_))));
    }

    #[test]
    fn an_input_beyond_the_binding_limit_is_resized_in_bands_and_still_matches() {
        let Some(mut g) = own_gpu() else { return };
        // Pretend the adapter binds at most 64 KiB: the input (~190 KB) then
        // needs several bands.
        g.limits.max_storage_buffer_binding_size = 64 * 1024;
        for layout in [Layout::Rgb, Layout::GrayAlpha, Layout::Rgba] {
            let p = structured(301, 211, layout, 9);
            for (ow, oh) in [(75, 52), (100, 50)] {
                let job = GpuJob { out_w: ow, out_h: oh, mirror: true, quarter_turns: 1, quality: GpuQuality::Keep };
                check(&g, &p, &job);
            }
            // Without a vertical pass the input must be bound whole: refused.
            if p.byte_len() > 64 * 1024 {
                let job = GpuJob { out_w: 150, out_h: 211, mirror: false, quarter_turns: 0, quality: GpuQuality::Keep };
                assert!(matches!(g.apply(&p, &job), Err(GpuError::Unsupported(_))));
            }
        }
    }

    #[test]
    fn a_destroyed_device_makes_apply_fail_without_panicking() {
        let Some(g) = own_gpu() else { return };
        let p = structured(64, 48, Layout::Rgb, 4);
        let job = GpuJob { out_w: 32, out_h: 24, mirror: false, quarter_turns: 0, quality: GpuQuality::Keep };
        assert!(g.apply(&p, &job).is_ok());
        g.device.destroy();
        assert!(g.apply(&p, &job).is_err());
        assert!(g.apply(&p, &job).is_err());
    }

    #[test]
    fn trim_pool_releases_idle_buffers() {
        let Some(g) = own_gpu() else { return };
        let p = structured(64, 48, Layout::Rgba, 4);
        let job = GpuJob { out_w: 32, out_h: 24, mirror: false, quarter_turns: 0, quality: GpuQuality::Keep };
        g.apply(&p, &job).unwrap();
        assert!(g.pool_stats().idle_buffers > 0);
        g.trim_pool();
        assert_eq!((g.pool_stats().idle_buffers, g.pool_stats().idle_bytes), (0, 0));
        assert!(g.apply(&p, &job).is_ok());
    }

    #[test]
    fn jobs_beyond_the_adapter_limits_are_refused_not_attempted() {
        let Some(g) = gpu() else { return };
        let p = Pixels::filled(4, 4, Layout::Rgb, &[1, 2, 3]);
        let wide = g.limits.max_compute_workgroups_per_dimension.saturating_mul(RESIZE_WG).saturating_add(RESIZE_WG);
        let job = GpuJob { out_w: wide, out_h: 1, mirror: false, quarter_turns: 0, quality: GpuQuality::Keep };
        assert!(matches!(g.apply(&p, &job), Err(GpuError::Unsupported(_))));
        let job = GpuJob { out_w: 0, out_h: 4, mirror: false, quarter_turns: 0, quality: GpuQuality::Keep };
        assert!(matches!(g.apply(&p, &job), Err(GpuError::Unsupported(_))));
    }

    #[test]
    fn concurrent_jobs_from_several_threads_all_match_the_cpu() {
        let Some(g) = gpu() else { return };
        std::thread::scope(|s| {
            for t in 0..4u32 {
                s.spawn(move || {
                    let layout = LAYOUTS[t as usize];
                    let p = structured(120 + t, 80 + t, layout, t);
                    for q in 0..4u8 {
                        let job = GpuJob {
                            out_w: 50 + t,
                            out_h: 33,
                            mirror: q % 2 == 1,
                            quarter_turns: q,
                            quality: GpuQuality::Keep,
                        };
                        check(g, &p, &job);
                    }
                });
            }
        });
    }

    #[test]
    fn adapter_description_names_the_backend() {
        let Some(g) = gpu() else { return };
        let d = g.adapter_description();
        assert!(!d.is_empty());
        assert!(d.contains(&format!("{:?}", g.info.backend)), "{d}");
    }
}
