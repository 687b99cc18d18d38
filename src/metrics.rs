//! Metrics in Prometheus text format: requests by endpoint and status,
//! latency histograms per pipeline stage, decodes, cache and pool state.

use std::sync::atomic::Ordering;
use std::time::Duration;

use prometheus::{
    Encoder, HistogramOpts, HistogramVec, IntCounter, IntCounterVec, IntGauge, Opts, Registry, TextEncoder,
};

use crate::cache::TileCache;
use crate::pool::Pool;

/// Pipeline stages with a latency histogram.
#[derive(Clone, Copy, Debug)]
pub enum Stage {
    Source,
    Decode,
    Transform,
    Encode,
    /// From a render job's submission to a worker taking it.
    Queue,
    /// One tile encoded ahead of demand by eager tiling (cut, transform and
    /// encode; its transform and encode also count in their own stages).
    Eager,
    Total,
}

impl Stage {
    const ALL: [Stage; 7] =
        [Stage::Source, Stage::Decode, Stage::Transform, Stage::Encode, Stage::Queue, Stage::Eager, Stage::Total];

    fn label(self) -> &'static str {
        match self {
            Stage::Source => "source",
            Stage::Decode => "decode",
            Stage::Transform => "transform",
            Stage::Encode => "encode",
            Stage::Queue => "queue",
            Stage::Eager => "eager",
            Stage::Total => "total",
        }
    }
}

pub struct Metrics {
    registry: Registry,
    requests: IntCounterVec,
    stages: HistogramVec,
    /// The children of `stages`, one per [`Stage`], resolved once: a label
    /// lookup per observation is measurable on the hot path.
    stage_children: Vec<prometheus::Histogram>,
    /// `requests` for ("image", 200) and ("image", 304), resolved once.
    image_200: IntCounter,
    image_304: IntCounter,
    pub decodes: IntCounter,
    /// Codestream-tile decodes started ahead of demand.
    pub decodes_ahead: IntCounter,
    /// Tiles answered with a source's stored JPEG tile (no decode, no encode).
    pub passthrough: IntCounter,
    pub gpu_jobs: IntCounter,
    pub gpu_fallbacks: IntCounter,
    /// Reads thrown away because the source file changed under them.
    pub sources_changed: IntCounter,
    /// Per image request that waited on a remote master's origin: how many
    /// of its reads waited (each one round trip or more).
    pub origin_waits: prometheus::Histogram,
    /// Image requests read afresh once because their source changed (or a
    /// remote master was given up) while read.
    pub changed_retries: IntCounter,
    /// Tiles encoded into the caches by eager tiling.
    pub eager_tiles: IntCounter,
    /// Queued renders not started because every client waiting had gone.
    pub jobs_abandoned: IntCounter,
    /// Connections open now.
    pub connections_open: IntGauge,
    /// Connections answered 503 and closed because the cap was reached.
    pub connections_refused: IntCounter,
    /// Connections closed for sending no complete request in time, or for idling.
    pub connections_timed_out: IntCounter,
    /// 1 when the transform backend is a GPU.
    pub gpu_backend: IntGauge,
    cache_hits: IntGauge,
    cache_misses: IntGauge,
    cache_evictions: IntGauge,
    cache_bytes: IntGauge,
    cache_entries: IntGauge,
    cache_capacity: IntGauge,
    in_flight: IntGauge,
    queue_len: IntGauge,
    running: IntGauge,
    rejected: IntGauge,
    background_queue_len: IntGauge,
    background_dropped: IntGauge,
}

impl Metrics {
    pub fn new() -> Result<Self, prometheus::Error> {
        let registry = Registry::new_custom(Some("tessera".into()), None)?;
        let requests = IntCounterVec::new(
            Opts::new("http_requests_total", "HTTP requests by endpoint and status"),
            &["endpoint", "status"],
        )?;
        let stages = HistogramVec::new(
            HistogramOpts::new("stage_seconds", "Latency of each pipeline stage").buckets(vec![
                0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0,
            ]),
            &["stage"],
        )?;
        let decodes = IntCounter::new("decodes_total", "Source decodes performed")?;
        let decodes_ahead =
            IntCounter::new("decodes_ahead_total", "Codestream-tile decodes started ahead of demand on idle workers")?;
        let passthrough = IntCounter::new(
            "passthrough_total",
            "Tiles answered with a stored JPEG tile of the source, with no decode or encode",
        )?;
        let gpu_jobs = IntCounter::new("gpu_jobs_total", "Transforms (resize, turn, quality) run on the GPU")?;
        let gpu_fallbacks = IntCounter::new("gpu_fallbacks_total", "GPU transforms that fell back to the CPU")?;
        let sources_changed =
            IntCounter::new("sources_changed_total", "Reads thrown away because the source file changed under them")?;
        let origin_waits = prometheus::Histogram::with_opts(
            HistogramOpts::new(
                "origin_waits_per_request",
                "Reads that waited on a remote master's origin, per image request that waited",
            )
            .buckets(vec![1.0, 2.0, 3.0, 4.0, 6.0, 8.0, 16.0]),
        )?;
        let changed_retries = IntCounter::new(
            "source_changed_retries_total",
            "Image requests read afresh once because their source changed while read",
        )?;
        let eager_tiles =
            IntCounter::new("eager_tiles_total", "Tiles encoded ahead of demand from a decoded area (eager tiling)")?;
        let jobs_abandoned = IntCounter::new(
            "jobs_abandoned_total",
            "Queued renders not started because every waiting client had gone",
        )?;
        let connections_refused = IntCounter::new(
            "connections_refused_total",
            "Connections answered 503 because the connection cap was reached",
        )?;
        let connections_timed_out = IntCounter::new(
            "connections_timed_out_total",
            "Connections closed for not sending a request in time or for idling",
        )?;
        let g = |n: &str, h: &str| IntGauge::new(n, h);
        let connections_open = g("connections_open", "Client connections open now")?;
        let gpu_backend = g("gpu_backend", "1 when transforms run on a GPU")?;
        let stage_children = Stage::ALL.iter().map(|s| stages.with_label_values(&[s.label()])).collect();
        let image_200 = requests.with_label_values(&["image", "200"]);
        let image_304 = requests.with_label_values(&["image", "304"]);
        let m = Metrics {
            stage_children,
            image_200,
            image_304,
            cache_hits: g("cache_hits_total", "Tile cache hits")?,
            cache_misses: g("cache_misses_total", "Tile cache misses")?,
            cache_evictions: g("cache_evictions_total", "Tile cache evictions")?,
            cache_bytes: g("cache_bytes", "Bytes held by the tile cache")?,
            cache_entries: g("cache_entries", "Entries in the tile cache")?,
            cache_capacity: g("cache_capacity_bytes", "Byte bound of the tile cache")?,
            in_flight: g("renders_in_flight", "Distinct renders under way")?,
            queue_len: g("queue_length", "Renders waiting for a worker")?,
            running: g("workers_busy", "Workers rendering now")?,
            rejected: g("queue_rejections_total", "Requests refused with 503 because the queue was full")?,
            background_queue_len: g("background_queue_length", "Eager-tiling jobs waiting for an idle worker")?,
            background_dropped: g(
                "background_dropped_total",
                "Eager-tiling jobs dropped because their queue was full",
            )?,
            registry,
            requests,
            stages,
            decodes,
            decodes_ahead,
            passthrough,
            gpu_jobs,
            gpu_fallbacks,
            sources_changed,
            changed_retries,
            origin_waits,
            jobs_abandoned,
            eager_tiles,
            connections_open,
            connections_refused,
            connections_timed_out,
            gpu_backend,
        };
        m.registry.register(Box::new(m.requests.clone()))?;
        m.registry.register(Box::new(m.stages.clone()))?;
        m.registry.register(Box::new(m.decodes.clone()))?;
        m.registry.register(Box::new(m.decodes_ahead.clone()))?;
        m.registry.register(Box::new(m.passthrough.clone()))?;
        m.registry.register(Box::new(m.gpu_jobs.clone()))?;
        m.registry.register(Box::new(m.gpu_fallbacks.clone()))?;
        m.registry.register(Box::new(m.sources_changed.clone()))?;
        m.registry.register(Box::new(m.changed_retries.clone()))?;
        m.registry.register(Box::new(m.origin_waits.clone()))?;
        m.registry.register(Box::new(m.jobs_abandoned.clone()))?;
        m.registry.register(Box::new(m.eager_tiles.clone()))?;
        m.registry.register(Box::new(m.connections_open.clone()))?;
        m.registry.register(Box::new(m.connections_refused.clone()))?;
        m.registry.register(Box::new(m.connections_timed_out.clone()))?;
        m.registry.register(Box::new(m.gpu_backend.clone()))?;
        for gauge in [
            &m.cache_hits,
            &m.cache_misses,
            &m.cache_evictions,
            &m.cache_bytes,
            &m.cache_entries,
            &m.cache_capacity,
            &m.in_flight,
            &m.queue_len,
            &m.running,
            &m.rejected,
            &m.background_queue_len,
            &m.background_dropped,
        ] {
            m.registry.register(Box::new(gauge.clone()))?;
        }
        Ok(m)
    }

    pub fn request(&self, endpoint: &str, status: u16) {
        match (endpoint, status) {
            ("image", 200) => self.image_200.inc(),
            ("image", 304) => self.image_304.inc(),
            _ => match http::StatusCode::from_u16(status) {
                Ok(s) => self.requests.with_label_values(&[endpoint, s.as_str()]).inc(),
                Err(_) => self.requests.with_label_values(&[endpoint, &status.to_string()]).inc(),
            },
        }
    }

    pub fn observe(&self, stage: Stage, d: Duration) {
        match self.stage_children.get(stage as usize) {
            Some(h) => h.observe(d.as_secs_f64()),
            None => self.stages.with_label_values(&[stage.label()]).observe(d.as_secs_f64()),
        }
    }

    /// Renders the text exposition, sampling gauges first.
    pub fn render(&self, cache: &TileCache, pool: &Pool, in_flight: usize) -> String {
        let s = cache.stats();
        self.cache_hits.set(s.hits.load(Ordering::Relaxed) as i64);
        self.cache_misses.set(s.misses.load(Ordering::Relaxed) as i64);
        self.cache_evictions.set(s.evictions.load(Ordering::Relaxed) as i64);
        self.cache_bytes.set(cache.bytes() as i64);
        self.cache_entries.set(cache.len() as i64);
        self.cache_capacity.set(cache.capacity() as i64);
        self.in_flight.set(in_flight as i64);
        let p = pool.stats();
        self.queue_len.set(p.queued.load(Ordering::Relaxed) as i64);
        self.running.set(p.running.load(Ordering::Relaxed) as i64);
        self.rejected.set(p.rejected.load(Ordering::Relaxed) as i64);
        self.background_queue_len.set(p.background_queued.load(Ordering::Relaxed) as i64);
        self.background_dropped.set(p.background_dropped.load(Ordering::Relaxed) as i64);
        let mut buf = Vec::new();
        let _ = TextEncoder::new().encode(&self.registry.gather(), &mut buf);
        String::from_utf8(buf).unwrap_or_default()
    }
}

/// Appends `(name, help, value)` counters in Prometheus text format.
fn write_counters(out: &mut String, counters: &[(&str, &str, &std::sync::atomic::AtomicU64)]) {
    use std::fmt::Write;
    for (name, help, v) in counters {
        let _ = writeln!(out, "# HELP {name} {help}\n# TYPE {name} counter\n{name} {}", v.load(Ordering::Relaxed));
    }
}

/// Appends the HTTP source's counters (Prometheus text format).
pub fn render_http_source(out: &mut String, h: &crate::source::http::HttpSource) {
    use std::fmt::Write;
    let s = &h.stats;
    let counters = [
        ("tessera_source_downloads_total", "Images downloaded from the HTTP origin", &s.downloads),
        ("tessera_source_download_bytes_total", "Bytes downloaded from the HTTP origin", &s.bytes),
        ("tessera_source_not_modified_total", "Revalidations answered 304 by the origin", &s.not_modified),
        ("tessera_source_refusals_total", "401/403 answers from the origin", &s.refusals),
        ("tessera_source_errors_total", "Failed exchanges with the origin", &s.errors),
        ("tessera_source_ranged_opens_total", "Images opened for reading by range", &s.ranged_opens),
        ("tessera_source_range_requests_total", "Range requests sent to the origin", &s.range.requests),
        ("tessera_source_range_bytes_total", "Bytes received in range answers", &s.range.bytes),
        ("tessera_source_block_hits_total", "Blocks of remote images found present when read", &s.range.block_hits),
        (
            "tessera_source_block_misses_total",
            "Blocks of remote images fetched (or waited for) when read",
            &s.range.block_misses,
        ),
        (
            "tessera_source_range_changed_total",
            "Remote images found changed at the origin while read by range",
            &s.range.changed,
        ),
        (
            "tessera_source_range_errors_total",
            "Failed range requests (timeouts, resets, short bodies, 5xx)",
            &s.range.errors,
        ),
    ];
    write_counters(out, &counters);
    let _ = writeln!(
        out,
        "# HELP tessera_source_stored_bytes Bytes of fetched images kept on disk\n# TYPE tessera_source_stored_bytes gauge\ntessera_source_stored_bytes {}",
        h.stored_bytes()
    );
    let _ = writeln!(
        out,
        "# HELP tessera_source_memory_bytes Bytes of blocks kept in memory (the source folder refused them)\n# TYPE tessera_source_memory_bytes gauge\ntessera_source_memory_bytes {}",
        h.memory_bytes()
    );
}

/// Appends the S3 source's counters (Prometheus text format).
pub fn render_s3_source(out: &mut String, s3: &crate::source::s3::S3Source) {
    use std::fmt::Write;
    let s = &s3.stats;
    let counters = [
        ("tessera_s3_opens_total", "Images opened from the S3 store", &s.opens),
        ("tessera_s3_not_modified_total", "Revalidations the S3 store answered not modified", &s.not_modified),
        ("tessera_s3_errors_total", "Failed opens and revalidations", &s.errors),
        ("tessera_s3_range_requests_total", "Ranged GETs sent to the S3 store", &s.range.requests),
        ("tessera_s3_range_bytes_total", "Bytes received in ranged GETs", &s.range.bytes),
        ("tessera_s3_block_hits_total", "Blocks of S3 images found present when read", &s.range.block_hits),
        (
            "tessera_s3_block_misses_total",
            "Blocks of S3 images fetched (or waited for) when read",
            &s.range.block_misses,
        ),
        ("tessera_s3_changed_total", "S3 images found changed while read", &s.range.changed),
        ("tessera_s3_range_errors_total", "Failed ranged GETs", &s.range.errors),
    ];
    write_counters(out, &counters);
    let _ = writeln!(
        out,
        "# HELP tessera_s3_stored_bytes Bytes of S3 image blocks kept on disk\n# TYPE tessera_s3_stored_bytes gauge\ntessera_s3_stored_bytes {}",
        s3.stored_bytes()
    );
    let _ = writeln!(
        out,
        "# HELP tessera_s3_memory_bytes Bytes of S3 image blocks kept in memory (the folder refused them)\n# TYPE tessera_s3_memory_bytes gauge\ntessera_s3_memory_bytes {}",
        s3.memory_bytes()
    );
}

/// Appends the GPU backend's figures (Prometheus text format): the
/// crossover of each kind of job (`+Inf`: none goes to the GPU), whether it
/// is still being measured, the decoded units kept on the device, and
/// device errors outside any job.
pub fn render_gpu(out: &mut String, backend: &crate::transform::Backend) {
    use crate::transform::{crossover, JobKind};
    use std::fmt::Write;
    let crate::transform::Backend::Gpu { gpu, crossover: c } = backend else { return };
    let _ = writeln!(
        out,
        "# HELP tessera_gpu_crossover_pixels Smallest transform job (input pixels) sent to the GPU, by kind of job; +Inf: none\n# TYPE tessera_gpu_crossover_pixels gauge"
    );
    for kind in JobKind::ALL {
        let min = c.min_pixels(kind);
        let shown = if min == crossover::NEVER { "+Inf".to_string() } else { min.to_string() };
        let _ = writeln!(out, "tessera_gpu_crossover_pixels{{kind=\"{}\"}} {shown}", kind.label());
    }
    let measuring = (c.origin() == crossover::Origin::Measuring) as u8;
    let _ = writeln!(
        out,
        "# HELP tessera_gpu_crossover_measuring 1 while the crossover is being measured (every job on the CPU meanwhile)\n# TYPE tessera_gpu_crossover_measuring gauge\ntessera_gpu_crossover_measuring {measuring}"
    );
    let r = gpu.resident_stats();
    let resident = [
        ("tessera_gpu_resident_bytes", "gauge", "Device memory held by decoded units kept on the GPU", r.bytes),
        ("tessera_gpu_resident_max_bytes", "gauge", "Bound on that memory (transform.gpu_resident_bytes)", r.max_bytes),
        ("tessera_gpu_resident_units", "gauge", "Decoded units kept on the GPU", r.units as u64),
        (
            "tessera_gpu_resident_hits_total",
            "counter",
            "GPU jobs that found their decoded unit on the device already",
            r.hits,
        ),
        ("tessera_gpu_resident_uploads_total", "counter", "Decoded units uploaded to stay on the device", r.uploads),
        (
            "tessera_gpu_resident_evictions_total",
            "counter",
            "Decoded units dropped from the device to make room",
            r.evictions,
        ),
    ];
    for (name, kind, help, v) in resident {
        let _ = writeln!(out, "# HELP {name} {help}\n# TYPE {name} {kind}\n{name} {v}");
    }
    let _ = writeln!(
        out,
        "# HELP tessera_gpu_uncaptured_errors_total GPU device errors raised outside any job\n# TYPE tessera_gpu_uncaptured_errors_total counter\ntessera_gpu_uncaptured_errors_total {}",
        gpu.uncaptured_errors()
    );
}
