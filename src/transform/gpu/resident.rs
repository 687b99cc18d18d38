//! Decoded units kept on the device while they are hot: upload once, cut
//! many. A unit (a decoded codestream tile, a whole JPEG level: an
//! `Arc<Pixels>` the decoded cache holds) is copied to a device buffer the
//! first time a job reads from it ([`Gpu::apply_in`]); every later job on
//! the same unit binds a rectangle of that buffer instead of uploading its
//! own part.
//!
//! An entry lives while the unit does: it holds only a `Weak` to the
//! pixels, so once the decoded cache drops a unit (and no request holds
//! it) the entry is stale and is removed at the next look-up. The set is
//! bounded in bytes (`transform.gpu_resident_bytes`); beyond it the least
//! recently used units go first. A unit larger than the bound, or than the
//! adapter's largest buffer, is never resident: its jobs upload their parts
//! as any other job does.
//!
//! Buffers leaving the set are dropped, never destroyed: a submission that
//! is still reading one keeps it alive until it completes.

use std::sync::{Arc, Weak};

use super::*;

/// Resident-set figures (for /metrics and tests).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct ResidentStats {
    /// Units resident now, and their bytes on the device.
    pub units: usize,
    pub bytes: u64,
    /// The bound on those bytes (0: nothing is kept).
    pub max_bytes: u64,
    /// Jobs that found their unit resident already, and units uploaded.
    pub hits: u64,
    pub uploads: u64,
    /// Units dropped to make room (not those whose pixels went away).
    pub evictions: u64,
}

#[derive(Default)]
pub(super) struct ResidentSet {
    /// Keyed by the unit's address, which the `Weak` keeps from being
    /// reused while the entry exists.
    entries: HashMap<usize, Entry>,
    /// Units being uploaded now: a concurrent job on one of them uploads
    /// its own part rather than the whole unit a second time.
    uploading: std::collections::HashSet<usize>,
    bytes: u64,
    clock: u64,
    hits: u64,
    uploads: u64,
    evictions: u64,
}

struct Entry {
    unit: Weak<Pixels>,
    buffer: wgpu::Buffer,
    bytes: u64,
    used: u64,
}

impl ResidentSet {
    /// Removes the entries whose units are gone.
    fn sweep(&mut self) {
        let before = self.entries.len();
        if before == 0 {
            return;
        }
        let mut freed = 0;
        self.entries.retain(|_, e| {
            let alive = e.unit.strong_count() > 0;
            if !alive {
                freed += e.bytes;
            }
            alive
        });
        self.bytes -= freed;
    }

    /// Drops least recently used entries until `need` more bytes fit in `max`.
    fn make_room(&mut self, need: u64, max: u64) {
        while self.bytes + need > max {
            let Some((&key, _)) = self.entries.iter().min_by_key(|(_, e)| e.used) else { break };
            if let Some(e) = self.entries.remove(&key) {
                self.bytes -= e.bytes;
                self.evictions += 1;
            }
        }
    }
}

/// Where the unit's pixels are on the device.
pub(super) enum Placed {
    Resident(wgpu::Buffer),
    /// Not kept (too large for the bound or the adapter, residency off,
    /// not worth uploading for these jobs, or being uploaded by another).
    NotKept,
}

/// Removes a unit from the set's uploads in progress, however the upload ends.
struct Uploading<'a> {
    gpu: &'a Gpu,
    key: usize,
}

impl Drop for Uploading<'_> {
    fn drop(&mut self) {
        if let Ok(mut set) = self.gpu.resident.lock() {
            set.uploading.remove(&self.key);
        }
    }
}

impl Gpu {
    /// The unit's device buffer: found (counting `jobs` hits), or, when
    /// `may_upload`, uploaded now and kept.
    pub(super) fn place(&self, unit: &Arc<Pixels>, jobs: u64, may_upload: bool) -> Result<Placed, GpuError> {
        let key = Arc::as_ptr(unit) as usize;
        let len = round_up((unit.byte_len() as u64).max(4), 4).ok_or_else(too_big)?;
        // Shaders index a bound range with u32 offsets.
        let fits = len <= self.limits.max_buffer_size && len < u64::from(u32::MAX);
        if self.resident_max == 0 || len > self.resident_max || !fits {
            return Ok(Placed::NotKept);
        }
        {
            let Ok(mut set) = self.resident.lock() else { return Ok(Placed::NotKept) };
            set.sweep();
            set.clock += 1;
            let now = set.clock;
            let found = match set.entries.get_mut(&key) {
                Some(e) if e.unit.upgrade().is_some_and(|u| Arc::ptr_eq(&u, unit)) => {
                    e.used = now;
                    Some(e.buffer.clone())
                }
                _ => None,
            };
            if let Some(b) = found {
                set.hits += jobs;
                return Ok(Placed::Resident(b));
            }
            if !may_upload || !set.uploading.insert(key) {
                return Ok(Placed::NotKept);
            }
        }
        let _uploading = Uploading { gpu: self, key };
        let buffer = self.upload_unit(unit, len)?;
        let Ok(mut set) = self.resident.lock() else { return Ok(Placed::Resident(buffer)) };
        // Another job may have uploaded it meanwhile: keep one.
        if let Some(old) = set.entries.remove(&key) {
            set.bytes -= old.bytes;
        }
        set.make_room(len, self.resident_max);
        set.clock += 1;
        let used = set.clock;
        set.entries.insert(key, Entry { unit: Arc::downgrade(unit), buffer: buffer.clone(), bytes: len, used });
        set.bytes += len;
        set.uploads += 1;
        Ok(Placed::Resident(buffer))
    }

    /// A device buffer holding `unit`'s bytes (padded to a word), written
    /// through the queue: in place before the next submission.
    fn upload_unit(&self, unit: &Pixels, len: u64) -> Result<wgpu::Buffer, GpuError> {
        let scopes = Scopes::push(&self.device);
        let buffer = self.device.create_buffer(&wgpu::BufferDescriptor {
            label: Some("tessera resident unit"),
            size: len,
            usage: wgpu::BufferUsages::STORAGE | wgpu::BufferUsages::COPY_DST,
            mapped_at_creation: false,
        });
        let data = unit.data();
        let whole = data.len() / 4 * 4;
        if whole > 0 {
            self.queue.write_buffer(&buffer, 0, &data[..whole]);
        }
        if whole < data.len() {
            let mut tail = [0u8; 4];
            tail[..data.len() - whole].copy_from_slice(&data[whole..]);
            self.queue.write_buffer(&buffer, whole as u64, &tail);
        }
        scopes.pop()?;
        Ok(buffer)
    }

    /// Resident-set figures.
    pub fn resident_stats(&self) -> ResidentStats {
        match self.resident.lock() {
            Ok(mut set) => {
                set.sweep();
                ResidentStats {
                    units: set.entries.len(),
                    bytes: set.bytes,
                    max_bytes: self.resident_max,
                    hits: set.hits,
                    uploads: set.uploads,
                    evictions: set.evictions,
                }
            }
            Err(_) => ResidentStats { max_bytes: self.resident_max, ..ResidentStats::default() },
        }
    }

    /// Jobs that each read a rectangle `(x, y, w, h)` of `unit`, as
    /// [`Gpu::apply_batch`] runs them on the cut rectangles (the same
    /// pixels; the same grouping into submissions), but with the unit
    /// uploaded once and kept resident while it is hot. The unit is
    /// uploaded only when the jobs read at least half of it (a unit's
    /// tiles, as eager tiling asks), so a lone small region never pays for
    /// moving a whole large unit; once resident, any job reads it there. A
    /// unit that is not resident is cut on the CPU and its parts uploaded.
    /// A rectangle outside the unit fails its job alone.
    pub fn apply_in(&self, unit: &Arc<Pixels>, jobs: &[(Rect4, GpuJob)]) -> Vec<Result<Pixels, GpuError>> {
        if self.lost.load(Ordering::Acquire) {
            return jobs.iter().map(|_| Err(GpuError::Lost)).collect();
        }
        let read: u64 =
            jobs.iter().filter(|(r, _)| inside(unit, *r)).map(|((_, _, w, h), _)| u64::from(*w) * u64::from(*h)).sum();
        let whole = u64::from(unit.width()) * u64::from(unit.height());
        let buffer = match self.place(unit, jobs.len() as u64, read.saturating_mul(2) >= whole) {
            Ok(Placed::Resident(b)) => b,
            Ok(Placed::NotKept) => return self.apply_cut(unit, jobs),
            Err(e) => return jobs.iter().map(|_| Err(e.clone())).collect(),
        };
        let mut results: Vec<Option<Result<Pixels, GpuError>>> = jobs.iter().map(|_| None).collect();
        let mut group: Vec<(usize, JobLayout)> = Vec::new();
        let mut bytes = 0u64;
        for (i, (rect, job)) in jobs.iter().enumerate() {
            let plan = match self.prepare_in(unit, buffer.size(), *rect, job) {
                Ok(plan) => plan,
                Err(e) => {
                    results[i] = Some(Err(e));
                    continue;
                }
            };
            let size = plan.device_bytes();
            if !group.is_empty() && bytes + size > BATCH_DEVICE_BYTES {
                self.submit_resident(&buffer, std::mem::take(&mut group), &mut results);
                bytes = 0;
            }
            bytes += size;
            group.push((i, plan));
        }
        if !group.is_empty() {
            self.submit_resident(&buffer, group, &mut results);
        }
        results.into_iter().map(|r| r.unwrap_or_else(|| Err(GpuError::Device("job not run".into())))).collect()
    }

    /// [`Gpu::apply_in`] for a unit that is not kept: the rectangles cut
    /// on the CPU, then one batch.
    fn apply_cut(&self, unit: &Pixels, jobs: &[(Rect4, GpuJob)]) -> Vec<Result<Pixels, GpuError>> {
        let parts: Vec<Option<Pixels>> = jobs
            .iter()
            .map(|((x, y, w, h), _)| inside(unit, (*x, *y, *w, *h)).then(|| unit.crop(*x, *y, *w, *h)))
            .collect();
        let batch: Vec<(&Pixels, GpuJob)> =
            parts.iter().zip(jobs).filter_map(|(p, (_, job))| p.as_ref().map(|p| (p, *job))).collect();
        let mut done = self.apply_batch(&batch).into_iter();
        parts
            .iter()
            .map(|p| match p {
                Some(_) => done.next().unwrap_or_else(|| Err(GpuError::Device("job not run".into()))),
                None => Err(GpuError::Unsupported("rectangle outside its unit".into())),
            })
            .collect()
    }

    /// A job on rectangle `rect` of a resident unit laid out: the resize
    /// planned over the rectangle, then only the rows and columns its taps
    /// read bound from the unit's buffer.
    fn prepare_in(&self, unit: &Pixels, buffer_len: u64, rect: Rect4, job: &GpuJob) -> Result<JobLayout, GpuError> {
        let (rx, ry, rw, rh) = rect;
        if !inside(unit, rect) {
            return Err(GpuError::Unsupported("rectangle outside its unit".into()));
        }
        if job.out_w == 0 || job.out_h == 0 || rw == 0 || rh == 0 {
            return Err(GpuError::Unsupported("empty image".into()));
        }
        let rp = resize_plan(rw, rh, job.crop, job.out_w, job.out_h)?;
        let (x, y, w, h) = rp.rect;
        let c = unit.layout().channels() as u64;
        let stride = unit.stride() as u64;
        let origin = u64::from(ry + y) * stride + u64::from(rx + x) * c;
        let view = SrcView { w, h, layout: unit.layout(), stride, at: SrcAt::Resident { origin, buffer_len } };
        self.layout(&view, job, rp)
    }

    /// One submission of jobs reading the resident `buffer`.
    fn submit_resident(
        &self,
        buffer: &wgpu::Buffer,
        group: Vec<(usize, JobLayout)>,
        results: &mut [Option<Result<Pixels, GpuError>>],
    ) {
        let inputs: Vec<(Src<'_>, &JobLayout)> = group.iter().map(|(_, plan)| (Src::Resident(buffer), plan)).collect();
        for ((i, _), out) in group.iter().zip(self.run_outputs(&inputs)) {
            results[*i] = Some(out);
        }
    }
}

/// A rectangle (x, y, width, height) of a unit, in its pixels.
pub type Rect4 = (u32, u32, u32, u32);

fn inside(unit: &Pixels, (x, y, w, h): Rect4) -> bool {
    u64::from(x) + u64::from(w) <= u64::from(unit.width()) && u64::from(y) + u64::from(h) <= u64::from(unit.height())
}
