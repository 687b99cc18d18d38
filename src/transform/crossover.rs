//! Where the GPU starts to pay: the smallest job, in input pixels, from
//! which the GPU transform beats the CPU one on this machine, measured at
//! start rather than guessed (`transform.gpu_min_pixels = "measure"`), or
//! fixed by the operator (a number).
//!
//! Three kinds of job cost differently and get a crossover each:
//! - **resize** jobs (a resize pass runs: a reduced decode's sub-pixel crop,
//!   a size that is not the decoded one), where the GPU's arithmetic can
//!   outrun the CPU's convolution once the image is large enough;
//! - **copy** jobs (only mirror, quarter turns and quality), where the CPU
//!   does one pass over memory and the GPU pays the transfers for no
//!   arithmetic: it seldom wins;
//! - **rotate** jobs (a turn by an angle that is not a quarter: bilinear
//!   sampling of every output pixel, which the CPU path does in scalar f64
//!   on one core).
//!
//! [`measure`] times both paths on synthetic RGB images of growing sides
//! (128² … 4096², the same job on each path, the median of three runs after
//! one untimed GPU run that fills the buffer pool), within a time budget;
//! [`decide`] (pure) takes the smallest measured size from which the GPU is
//! faster by a margin at that size *and every larger one measured*, so a
//! request of any size is never slower on the GPU than on the CPU by the
//! measurement. A series stops early when the GPU loses at three sizes in
//! a row without closing in on the CPU, or when the next size would overrun the
//! budget. Until the measurement ends every job runs on the CPU.
//! Stopping early can only miss a crossover above the sizes measured, so
//! the error it risks is keeping work on the CPU, never sending a job to a
//! GPU that is slower for it.
//!
//! Architecture invariant: the thresholds only route work. A job the GPU
//! takes gives the CPU's pixels (bit-identical on lavapipe, ≤ 2 levels
//! elsewhere), so a wrong crossover costs time, never correctness.

use std::sync::atomic::{AtomicU64, AtomicU8, Ordering};
use std::time::{Duration, Instant};

use crate::pixels::{Layout, Pixels};

use super::gpu::{Arbitrary, Gpu, GpuError, GpuJob};

/// No job of this kind goes to the GPU.
pub const NEVER: u64 = u64::MAX;

/// Sides measured, smallest first (RGB squares).
const SIDES: [u32; 6] = [128, 256, 512, 1024, 2048, 4096];
/// Timed runs a size and path; the median is kept.
const RUNS: usize = 3;
/// The GPU must take at most this share of the CPU's time to count as
/// faster (noise between runs is of this order on a loaded machine).
const MARGIN: f64 = 0.9;
/// Wall time one series (resize or copy) may take.
pub const SERIES_BUDGET: Duration = Duration::from_secs(3);

/// The kind of a job, for the crossover that applies to it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum JobKind {
    /// A resize pass runs.
    Resize,
    /// Only mirror, quarter turns and quality.
    Copy,
    /// A turn by an arbitrary angle (bilinear into the bounding box).
    Rotate,
}

impl JobKind {
    pub const ALL: [JobKind; 3] = [JobKind::Resize, JobKind::Copy, JobKind::Rotate];

    pub fn label(self) -> &'static str {
        match self {
            JobKind::Resize => "resize",
            JobKind::Copy => "copy",
            JobKind::Rotate => "rotate",
        }
    }
}

/// Where the thresholds come from.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Origin {
    /// Set by the operator (`transform.gpu_min_pixels` a number).
    Fixed,
    /// Being measured; every job runs on the CPU meanwhile.
    Measuring,
    /// Measured at start.
    Measured,
}

/// The minimum input pixels from which each kind of job goes to the GPU.
/// Shared between the measuring thread and the workers.
#[derive(Debug)]
pub struct Crossover {
    resize: AtomicU64,
    copy: AtomicU64,
    rotate: AtomicU64,
    origin: AtomicU8,
}

impl Crossover {
    /// One threshold for both kinds, set by the operator.
    pub fn fixed(min_pixels: u64) -> Crossover {
        Crossover {
            resize: AtomicU64::new(min_pixels),
            copy: AtomicU64::new(min_pixels),
            rotate: AtomicU64::new(min_pixels),
            origin: AtomicU8::new(Origin::Fixed as u8),
        }
    }

    /// Nothing on the GPU until [`Crossover::set_measured`].
    pub fn measuring() -> Crossover {
        Crossover {
            resize: AtomicU64::new(NEVER),
            copy: AtomicU64::new(NEVER),
            rotate: AtomicU64::new(NEVER),
            origin: AtomicU8::new(Origin::Measuring as u8),
        }
    }

    /// Publishes measured crossovers for resize and copy jobs; rotations
    /// stay on the CPU (tests).
    pub fn set_measured(&self, resize: u64, copy: u64) {
        self.set_measured_all(resize, copy, NEVER);
    }

    /// Publishes the measured crossover of every kind.
    pub fn set_measured_all(&self, resize: u64, copy: u64, rotate: u64) {
        self.resize.store(resize, Ordering::Relaxed);
        self.copy.store(copy, Ordering::Relaxed);
        self.rotate.store(rotate, Ordering::Relaxed);
        self.origin.store(Origin::Measured as u8, Ordering::Release);
    }

    /// The smallest input (in pixels) of `kind` that goes to the GPU;
    /// [`NEVER`] for none.
    pub fn min_pixels(&self, kind: JobKind) -> u64 {
        match kind {
            JobKind::Resize => self.resize.load(Ordering::Relaxed),
            JobKind::Copy => self.copy.load(Ordering::Relaxed),
            JobKind::Rotate => self.rotate.load(Ordering::Relaxed),
        }
    }

    /// Whether a job of `kind` with `pixels` input pixels goes to the GPU.
    pub fn takes(&self, kind: JobKind, pixels: u64) -> bool {
        let min = self.min_pixels(kind);
        min != NEVER && pixels >= min
    }

    pub fn origin(&self) -> Origin {
        match self.origin.load(Ordering::Acquire) {
            0 => Origin::Fixed,
            1 => Origin::Measuring,
            _ => Origin::Measured,
        }
    }
}

/// `transform.gpu_min_pixels`: `"measure"` or a number of input pixels.
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Deserialize)]
#[serde(try_from = "RawMinPixels")]
pub enum MinPixels {
    /// Measure the crossover at start ([`measure`]).
    Measure,
    /// Jobs of at least this many input pixels go to the GPU, both kinds.
    Pixels(u64),
}

#[derive(serde::Deserialize)]
#[serde(untagged)]
enum RawMinPixels {
    Number(u64),
    Word(String),
}

impl TryFrom<RawMinPixels> for MinPixels {
    type Error = String;

    fn try_from(raw: RawMinPixels) -> Result<MinPixels, String> {
        match raw {
            RawMinPixels::Number(n) => Ok(MinPixels::Pixels(n)),
            RawMinPixels::Word(w) if w == "measure" => Ok(MinPixels::Measure),
            RawMinPixels::Word(w) => match w.parse::<u64>() {
                Ok(n) => Ok(MinPixels::Pixels(n)),
                Err(_) => Err(format!("expected \"measure\" or a number of pixels, found {w:?}")),
            },
        }
    }
}

/// One size measured on both paths.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Sample {
    /// Input pixels of the job.
    pub pixels: u64,
    pub cpu: Duration,
    pub gpu: Duration,
}

impl Sample {
    fn gpu_wins(&self) -> bool {
        self.gpu.as_secs_f64() <= self.cpu.as_secs_f64() * MARGIN
    }

    fn ratio(&self) -> f64 {
        self.gpu.as_secs_f64() / self.cpu.as_secs_f64().max(1e-9)
    }
}

/// The crossover a series of samples shows: the pixels of the smallest
/// sample from which the GPU wins at that sample and at every larger one;
/// [`NEVER`] when it does not win at the largest. Samples need not be
/// sorted.
pub fn decide(samples: &[Sample]) -> u64 {
    let mut sorted: Vec<&Sample> = samples.iter().collect();
    sorted.sort_by_key(|s| s.pixels);
    let mut threshold = NEVER;
    for s in sorted.iter().rev() {
        if !s.gpu_wins() {
            break;
        }
        threshold = s.pixels;
    }
    threshold
}

/// What one series measured.
#[derive(Clone, Debug, PartialEq)]
pub struct Series {
    pub kind: JobKind,
    pub samples: Vec<Sample>,
    /// Why it stopped before the largest side, if it did.
    pub stopped: Option<String>,
    /// The GPU failed a job (a device error, not a refusal of a size
    /// beyond the adapter's limits, which costs nothing and falls back).
    pub failed: bool,
}

impl Series {
    /// The crossover the series shows ([`decide`]); none when the GPU
    /// failed a job: jobs of that size would pay for the GPU and then the CPU.
    pub fn crossover(&self) -> u64 {
        if self.failed {
            NEVER
        } else {
            decide(&self.samples)
        }
    }

    /// `128²: cpu 0.3 ms, gpu 2.1 ms; 256²: …`, for the start-up log.
    pub fn summary(&self) -> String {
        let mut parts: Vec<String> = self
            .samples
            .iter()
            .map(|s| {
                let side = (s.pixels as f64).sqrt().round() as u64;
                format!("{side}²: cpu {:.2} ms, gpu {:.2} ms", ms(s.cpu), ms(s.gpu))
            })
            .collect();
        if let Some(why) = &self.stopped {
            parts.push(format!("stopped: {why}"));
        }
        parts.join("; ")
    }
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1e3
}

/// Times both paths on growing sizes of `kind` within `budget`.
pub fn measure(gpu: &Gpu, kind: JobKind, budget: Duration) -> Series {
    let start = Instant::now();
    let mut samples: Vec<Sample> = Vec::new();
    let mut stopped = None;
    let mut failed_job = false;
    for side in SIDES {
        let took = Instant::now();
        let input = synthetic(side);
        let job = job_for(kind, side);
        // One untimed run: the first job of a size creates its buffers.
        if let Err(e) = gpu.apply(&input, &job) {
            failed_job = !matches!(e, GpuError::Unsupported(_));
            stopped = Some(format!("the GPU refused {side}²: {e}"));
            break;
        }
        let mut cpu = Vec::with_capacity(RUNS);
        let mut gpu_times = Vec::with_capacity(RUNS);
        let mut failed = None;
        for _ in 0..RUNS {
            let owned = input.clone();
            let t = Instant::now();
            let out = job.run_on_cpu(owned);
            cpu.push(t.elapsed());
            drop(out);
            let t = Instant::now();
            match gpu.apply(&input, &job) {
                Ok(out) => {
                    gpu_times.push(t.elapsed());
                    drop(out);
                }
                Err(e) => {
                    failed = Some(e);
                    break;
                }
            }
        }
        if let Some(e) = failed {
            failed_job = !matches!(e, GpuError::Unsupported(_));
            stopped = Some(format!("the GPU failed at {side}²: {e}"));
            break;
        }
        let sample = Sample { pixels: u64::from(side) * u64::from(side), cpu: median(cpu), gpu: median(gpu_times) };
        samples.push(sample);
        // Losing at three sizes in a row with a ratio no better than two
        // sizes ago: a GPU's fixed cost would have shrunk against the CPU's
        // growing one by now, so larger sizes will not turn it round.
        if let [a, b, c] = samples[samples.len().saturating_sub(3)..] {
            if !(a.gpu_wins() || b.gpu_wins() || c.gpu_wins()) && c.ratio() >= a.ratio() * 0.9 {
                stopped = Some(format!("the GPU takes {:.1}× the CPU's time and is not closing in", c.ratio()));
                break;
            }
        }
        // The next side has four times the pixels: about four times the time.
        let next = took.elapsed() * 4;
        if side != SIDES[SIDES.len() - 1] && start.elapsed() + next > budget {
            stopped = Some(format!("the next size would exceed the {} s budget", budget.as_secs_f64()));
            break;
        }
    }
    Series { kind, samples, stopped, failed: failed_job }
}

fn median(mut v: Vec<Duration>) -> Duration {
    v.sort();
    v.get(v.len() / 2).copied().unwrap_or(Duration::MAX)
}

/// The job measured for `kind` on a `side²` input: a downscale by two (one
/// resolution level), a quarter turn, or a turn by 30° over white, each at
/// the same size otherwise.
fn job_for(kind: JobKind, side: u32) -> GpuJob {
    let (out, quarter_turns, arbitrary) = match kind {
        JobKind::Resize => ((side / 2).max(1), 0, None),
        JobKind::Copy => (side, 1, None),
        JobKind::Rotate => (side, 0, Some(Arbitrary { degrees: 30.0, transparent: false })),
    };
    GpuJob { quarter_turns, arbitrary, ..GpuJob::resize_to(out, out) }
}

/// A `side²` RGB image with gradients and noise. The resize costs the same
/// whatever the content; noise keeps it from being a trivial case for any
/// path.
fn synthetic(side: u32) -> Pixels {
    let n = side as usize * side as usize;
    let mut data = Vec::with_capacity(n * 3);
    let mut state: u32 = 0x9e37_79b9;
    for y in 0..side {
        for x in 0..side {
            state = state.wrapping_mul(1_664_525).wrapping_add(1_013_904_223);
            let noise = (state >> 27) as u8;
            let gx = (x * 255 / side.max(1)) as u8;
            let gy = (y * 255 / side.max(1)) as u8;
            data.extend_from_slice(&[gx ^ noise, gy.wrapping_add(noise), gx / 2 + gy / 2]);
        }
    }
    Pixels::new(side, side, Layout::Rgb, data)
        .unwrap_or_else(|_| Pixels::filled(side, side, Layout::Rgb, &[128, 128, 128]))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn s(side: u64, cpu_ms: f64, gpu_ms: f64) -> Sample {
        Sample {
            pixels: side * side,
            cpu: Duration::from_secs_f64(cpu_ms / 1e3),
            gpu: Duration::from_secs_f64(gpu_ms / 1e3),
        }
    }

    #[test]
    fn the_crossover_is_the_smallest_size_from_which_the_gpu_always_wins() {
        let samples = [s(128, 0.1, 0.5), s(256, 0.4, 0.6), s(512, 1.6, 0.9), s(1024, 6.0, 2.0), s(2048, 25.0, 6.0)];
        assert_eq!(decide(&samples), 512 * 512);
    }

    #[test]
    fn a_gpu_that_never_wins_gets_no_job() {
        let samples = [s(128, 0.1, 5.0), s(256, 0.4, 8.0), s(512, 1.6, 60.0)];
        assert_eq!(decide(&samples), NEVER);
        let c = Crossover::fixed(0);
        c.set_measured(decide(&samples), NEVER);
        assert!(!c.takes(JobKind::Resize, u64::MAX - 1));
        assert!(!c.takes(JobKind::Copy, 1 << 40));
    }

    #[test]
    fn a_win_below_a_loss_does_not_count() {
        // Faster at 256² by chance, slower at 512² and 1024²: a request of
        // 1024² must not go to the GPU, so neither may one of 256².
        let samples = [s(256, 1.0, 0.5), s(512, 2.0, 3.0), s(1024, 6.0, 4.0), s(2048, 25.0, 8.0)];
        assert_eq!(decide(&samples), 1024 * 1024);
        let samples = [s(256, 1.0, 0.5), s(512, 2.0, 3.0)];
        assert_eq!(decide(&samples), NEVER);
    }

    #[test]
    fn a_gpu_barely_ahead_within_the_margin_does_not_count() {
        assert_eq!(decide(&[s(1024, 10.0, 9.5)]), NEVER);
        assert_eq!(decide(&[s(1024, 10.0, 8.9)]), 1024 * 1024);
    }

    #[test]
    fn samples_in_any_order_give_the_same_crossover() {
        let samples = [s(2048, 25.0, 6.0), s(256, 0.4, 0.6), s(1024, 6.0, 2.0), s(512, 1.6, 0.9)];
        assert_eq!(decide(&samples), 512 * 512);
        assert_eq!(decide(&[]), NEVER);
    }

    #[test]
    fn nothing_goes_to_the_gpu_while_measuring_and_a_fixed_threshold_applies_to_both_kinds() {
        let c = Crossover::measuring();
        assert_eq!(c.origin(), Origin::Measuring);
        assert!(!c.takes(JobKind::Resize, 1 << 30));
        c.set_measured(1 << 20, NEVER);
        assert_eq!(c.origin(), Origin::Measured);
        assert!(c.takes(JobKind::Resize, 1 << 20));
        assert!(!c.takes(JobKind::Resize, (1 << 20) - 1));
        assert!(!c.takes(JobKind::Copy, 1 << 30));
        let f = Crossover::fixed(100);
        assert_eq!(f.origin(), Origin::Fixed);
        assert!(f.takes(JobKind::Copy, 100) && f.takes(JobKind::Resize, 100) && !f.takes(JobKind::Copy, 99));
    }

    #[test]
    fn a_series_whose_gpu_failed_a_job_sends_nothing_to_it() {
        let samples = vec![s(128, 1.0, 0.2), s(256, 4.0, 0.5)];
        let ok = Series { kind: JobKind::Resize, samples: samples.clone(), stopped: None, failed: false };
        assert_eq!(ok.crossover(), 128 * 128);
        let failed = Series { kind: JobKind::Resize, samples, stopped: Some("device lost".into()), failed: true };
        assert_eq!(failed.crossover(), NEVER);
        assert!(failed.summary().contains("stopped: device lost"), "{}", failed.summary());
    }

    #[test]
    fn the_measured_jobs_are_a_level_down_or_a_quarter_turn() {
        let r = job_for(JobKind::Resize, 1024);
        assert_eq!((r.out_w, r.out_h, r.quarter_turns), (512, 512, 0));
        let c = job_for(JobKind::Copy, 1024);
        assert_eq!((c.out_w, c.out_h, c.quarter_turns), (1024, 1024, 1));
        let p = synthetic(64);
        assert_eq!((p.width(), p.height(), p.layout()), (64, 64, Layout::Rgb));
    }
}
