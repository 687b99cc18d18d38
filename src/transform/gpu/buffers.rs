//! The buffer pool: buffers of four kinds (upload, input, work, readback)
//! in power-of-two size classes, kept idle up to a bound per class and in
//! bytes, so steady-state jobs create no new buffers.

use super::*;

/// Buffer pool figures (for tests and metrics).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct BufferPoolStats {
    /// Buffers idle in the pool now.
    pub idle_buffers: usize,
    /// Bytes held by idle buffers.
    pub idle_bytes: u64,
    /// Buffers created since the [`Gpu`] was made.
    pub created: u64,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub(super) enum Kind {
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
    pub(super) fn usage(self) -> wgpu::BufferUsages {
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
pub(super) struct BufferPool {
    pub(super) idle: HashMap<(Kind, u64), Vec<wgpu::Buffer>>,
    pub(super) idle_bytes: u64,
}

impl Gpu {
    /// A pooled buffer of `kind` holding at least `len` bytes.
    pub(super) fn take(&self, kind: Kind, len: u64) -> Result<wgpu::Buffer, GpuError> {
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
    pub(super) fn give(&self, kind: Kind, buf: wgpu::Buffer) {
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
    pub(super) fn size_class(&self, len: u64) -> Result<u64, GpuError> {
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
