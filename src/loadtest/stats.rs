//! The figures of a run: one [`Recorder`] takes every finished request
//! (latency histograms overall and per scale factor, counts by status and by
//! error kind, a per-second time series, warm-up kept apart) and turns into
//! the serde-serialisable [`Report`], which also renders the text summary.
//! In views mode a [`ViewRecorder`] also takes each view's time, from its
//! first tile asked to its last answered.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::time::Duration;

use hdrhistogram::Histogram;
use serde::Serialize;

use super::LoadtestError;

/// Latencies are recorded in microseconds, from 1 µs to one hour (longer
/// values are clamped to an hour), 3 significant digits.
const MAX_LATENCY_US: u64 = 3_600_000_000;

/// How a request ended.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Outcome {
    /// An HTTP answer, body read fully (`bytes` of body).
    Answered { status: u16, bytes: u64 },
    /// No answer: "timeout", "connect: connection refused", ...
    Failed(String),
}

/// One finished request.
#[derive(Clone, Debug)]
pub struct Sample {
    pub scale_factor: u32,
    /// From the send time (closed loop) or the scheduled send time (open loop).
    pub latency: Duration,
    /// Completion time since the end of the warm-up; `None` for a warm-up request.
    pub at: Option<Duration>,
    pub outcome: Outcome,
}

impl Outcome {
    /// The error kind, or `None` for a 2xx answer.
    pub fn error_kind(&self) -> Option<String> {
        match self {
            Outcome::Answered { status, .. } if (200..300).contains(status) => None,
            Outcome::Answered { status, .. } => Some(format!("http {status}")),
            Outcome::Failed(kind) => Some(kind.clone()),
        }
    }
}

fn histogram() -> Result<Histogram<u64>, LoadtestError> {
    Histogram::new_with_bounds(1, MAX_LATENCY_US, 3).map_err(|e| LoadtestError::Stats(e.to_string()))
}

fn record(h: &mut Histogram<u64>, d: Duration) {
    let us = u64::try_from(d.as_micros()).unwrap_or(u64::MAX).clamp(1, MAX_LATENCY_US);
    // In range by construction; saturating_record cannot fail either way.
    h.saturating_record(us);
}

struct LevelAcc {
    hist: Histogram<u64>,
    requests: u64,
    errors: u64,
    bytes: u64,
}

#[derive(Clone, Default)]
struct SecondAcc {
    requests: u64,
    errors: u64,
    bytes: u64,
    lat_sum_us: u64,
    lat_max_us: u64,
}

/// Accumulates samples; see the module doc.
pub struct Recorder {
    hist: Histogram<u64>,
    levels: BTreeMap<u32, LevelAcc>,
    status: BTreeMap<u16, u64>,
    errors: BTreeMap<String, u64>,
    series: Vec<SecondAcc>,
    requests: u64,
    error_count: u64,
    bytes: u64,
    warmup_requests: u64,
    warmup_errors: u64,
}

impl Recorder {
    pub fn new() -> Result<Recorder, LoadtestError> {
        Ok(Recorder {
            hist: histogram()?,
            levels: BTreeMap::new(),
            status: BTreeMap::new(),
            errors: BTreeMap::new(),
            series: Vec::new(),
            requests: 0,
            error_count: 0,
            bytes: 0,
            warmup_requests: 0,
            warmup_errors: 0,
        })
    }

    pub fn add(&mut self, s: &Sample) -> Result<(), LoadtestError> {
        let err = s.outcome.error_kind();
        let Some(at) = s.at else {
            self.warmup_requests += 1;
            self.warmup_errors += err.is_some() as u64;
            return Ok(());
        };
        self.requests += 1;
        let bytes = match &s.outcome {
            Outcome::Answered { status, bytes } => {
                *self.status.entry(*status).or_default() += 1;
                // Latency of every answer, whatever its status; failures
                // without an answer are counted, not timed.
                record(&mut self.hist, s.latency);
                *bytes
            }
            Outcome::Failed(_) => 0,
        };
        self.bytes += bytes;
        if let Some(kind) = &err {
            self.error_count += 1;
            *self.errors.entry(kind.clone()).or_default() += 1;
        }
        let level = match self.levels.entry(s.scale_factor) {
            std::collections::btree_map::Entry::Occupied(e) => e.into_mut(),
            std::collections::btree_map::Entry::Vacant(e) => {
                e.insert(LevelAcc { hist: histogram()?, requests: 0, errors: 0, bytes: 0 })
            }
        };
        level.requests += 1;
        level.errors += err.is_some() as u64;
        level.bytes += bytes;
        if matches!(s.outcome, Outcome::Answered { .. }) {
            record(&mut level.hist, s.latency);
        }
        let sec = at.as_secs() as usize;
        if sec >= self.series.len() {
            self.series.resize(sec + 1, SecondAcc::default());
        }
        if let Some(b) = self.series.get_mut(sec) {
            let us = u64::try_from(s.latency.as_micros()).unwrap_or(u64::MAX);
            b.requests += 1;
            b.errors += err.is_some() as u64;
            b.bytes += bytes;
            b.lat_sum_us = b.lat_sum_us.saturating_add(us);
            b.lat_max_us = b.lat_max_us.max(us);
        }
        Ok(())
    }

    /// The report of a run measured over `elapsed` (from the end of the
    /// warm-up to the last answer).
    pub fn into_report(self, config: RunConfig, elapsed: Duration, stopped_by: &str) -> Report {
        let secs = elapsed.as_secs_f64();
        let per_s = |n: u64| if secs > 0.0 { n as f64 / secs } else { 0.0 };
        let series = self
            .series
            .iter()
            .enumerate()
            .map(|(i, b)| SecondReport {
                t_s: i as u64,
                span_s: (secs - i as f64).clamp(0.0, 1.0),
                requests: b.requests,
                errors: b.errors,
                bytes: b.bytes,
                mean_ms: if b.requests > 0 { b.lat_sum_us as f64 / b.requests as f64 / 1000.0 } else { 0.0 },
                max_ms: b.lat_max_us as f64 / 1000.0,
            })
            .collect();
        let mut distribution = Vec::new();
        if !self.hist.is_empty() {
            for p in DISTRIBUTION_PERCENTILES {
                distribution.push(Quantile { percentile: p, latency_ms: ms(self.hist.value_at_quantile(p / 100.0)) });
            }
        }
        Report {
            tool: "tessera loadtest",
            version: env!("CARGO_PKG_VERSION"),
            config,
            stopped_by: stopped_by.to_string(),
            elapsed_s: secs,
            requests: self.requests,
            ok: self.requests - self.error_count,
            errors: self.error_count,
            bytes: self.bytes,
            requests_per_s: per_s(self.requests),
            bytes_per_s: per_s(self.bytes),
            latency_ms: LatencySummary::of(&self.hist),
            status: self.status.iter().map(|(k, v)| (k.to_string(), *v)).collect(),
            errors_by_kind: self.errors,
            levels: self
                .levels
                .iter()
                .rev()
                .map(|(sf, l)| LevelReport {
                    scale_factor: *sf,
                    requests: l.requests,
                    errors: l.errors,
                    bytes: l.bytes,
                    latency_ms: LatencySummary::of(&l.hist),
                })
                .collect(),
            series,
            distribution,
            warmup: WarmupReport { requests: self.warmup_requests, errors: self.warmup_errors },
            sent_total: self.requests + self.warmup_requests,
            views: None,
        }
    }
}

/// One view of a session, done: every tile it newly shows answered.
#[derive(Clone, Debug)]
pub struct ViewSample {
    pub kind: super::session::ViewKind,
    pub tiles: usize,
    /// From the first tile asked to the last answered.
    pub latency: Duration,
    /// Tiles that failed (no answer or an error status).
    pub errors: usize,
    /// Started after the warm-up.
    pub measured: bool,
}

/// Per-view times, overall and by kind of view.
pub struct ViewRecorder {
    all: Histogram<u64>,
    by_kind: BTreeMap<super::session::ViewKind, Histogram<u64>>,
    views: u64,
    tiles: u64,
    with_errors: u64,
    warmup: u64,
}

impl ViewRecorder {
    pub fn new() -> Result<ViewRecorder, LoadtestError> {
        Ok(ViewRecorder { all: histogram()?, by_kind: BTreeMap::new(), views: 0, tiles: 0, with_errors: 0, warmup: 0 })
    }

    pub fn add(&mut self, v: &ViewSample) -> Result<(), LoadtestError> {
        if !v.measured {
            self.warmup += 1;
            return Ok(());
        }
        self.views += 1;
        self.tiles += v.tiles as u64;
        self.with_errors += (v.errors > 0) as u64;
        record(&mut self.all, v.latency);
        let h = match self.by_kind.entry(v.kind) {
            std::collections::btree_map::Entry::Occupied(e) => e.into_mut(),
            std::collections::btree_map::Entry::Vacant(e) => e.insert(histogram()?),
        };
        record(h, v.latency);
        Ok(())
    }

    pub fn into_report(self) -> ViewReport {
        ViewReport {
            views: self.views,
            tiles: self.tiles,
            views_with_errors: self.with_errors,
            warmup_views: self.warmup,
            latency_ms: LatencySummary::of(&self.all),
            by_kind: self.by_kind.iter().map(|(k, h)| (k.name().to_string(), LatencySummary::of(h))).collect(),
        }
    }
}

/// Views mode: how long a viewer waited for each view to be whole.
#[derive(Clone, Debug, Serialize)]
pub struct ViewReport {
    pub views: u64,
    pub tiles: u64,
    pub views_with_errors: u64,
    pub warmup_views: u64,
    pub latency_ms: LatencySummary,
    /// "home", "zoom", "pan".
    pub by_kind: BTreeMap<String, LatencySummary>,
}

const DISTRIBUTION_PERCENTILES: [f64; 21] = [
    0.0, 10.0, 20.0, 30.0, 40.0, 50.0, 60.0, 70.0, 80.0, 90.0, 95.0, 97.5, 99.0, 99.5, 99.75, 99.9, 99.95, 99.99,
    99.995, 99.999, 100.0,
];

fn ms(us: u64) -> f64 {
    us as f64 / 1000.0
}

/// Latency figures in milliseconds (all 0 when nothing was answered).
#[derive(Clone, Debug, Default, PartialEq, Serialize)]
pub struct LatencySummary {
    pub min: f64,
    pub mean: f64,
    pub p50: f64,
    pub p90: f64,
    pub p99: f64,
    pub p999: f64,
    pub max: f64,
}

impl LatencySummary {
    fn of(h: &Histogram<u64>) -> LatencySummary {
        if h.is_empty() {
            return LatencySummary::default();
        }
        LatencySummary {
            min: ms(h.min()),
            mean: h.mean() / 1000.0,
            p50: ms(h.value_at_quantile(0.50)),
            p90: ms(h.value_at_quantile(0.90)),
            p99: ms(h.value_at_quantile(0.99)),
            p999: ms(h.value_at_quantile(0.999)),
            max: ms(h.max()),
        }
    }
}

/// The options a run was made with, as recorded in the report.
#[derive(Clone, Debug, Serialize)]
pub struct RunConfig {
    pub targets: Vec<String>,
    /// "session", "sweep" or "views".
    pub mode: String,
    /// "closed" (N viewers) or "open" (fixed rate).
    pub loop_kind: String,
    pub concurrency: usize,
    pub per_viewer: usize,
    pub rate: Option<f64>,
    /// Views mode: seconds between views.
    pub think_s: f64,
    pub duration_s: f64,
    pub max_requests: Option<u64>,
    pub warmup_s: f64,
    pub timeout_s: f64,
    pub seed: u64,
    pub viewport: String,
    pub pans: u32,
    /// `--tile-size`, when it replaced info.json's tiles.
    pub tile_size: Option<u32>,
    pub threads: usize,
}

#[derive(Clone, Debug, Serialize)]
pub struct LevelReport {
    pub scale_factor: u32,
    pub requests: u64,
    pub errors: u64,
    pub bytes: u64,
    pub latency_ms: LatencySummary,
}

/// One second of the measured part of the run (by completion time).
#[derive(Clone, Debug, Serialize)]
pub struct SecondReport {
    pub t_s: u64,
    /// How much of this second the run covered (the last one may be partial).
    pub span_s: f64,
    pub requests: u64,
    pub errors: u64,
    pub bytes: u64,
    pub mean_ms: f64,
    pub max_ms: f64,
}

#[derive(Clone, Debug, Serialize)]
pub struct Quantile {
    pub percentile: f64,
    pub latency_ms: f64,
}

#[derive(Clone, Debug, Serialize)]
pub struct WarmupReport {
    pub requests: u64,
    pub errors: u64,
}

/// Everything a run measured; `--json` writes it as is.
#[derive(Clone, Debug, Serialize)]
pub struct Report {
    pub tool: &'static str,
    pub version: &'static str,
    pub config: RunConfig,
    /// "duration", "requests", "sweep complete" or "no requests".
    pub stopped_by: String,
    /// Measured wall time: end of warm-up to the last answer.
    pub elapsed_s: f64,
    /// Requests measured (warm-up excluded), answered or not.
    pub requests: u64,
    pub ok: u64,
    pub errors: u64,
    /// Body bytes received (measured part).
    pub bytes: u64,
    pub requests_per_s: f64,
    pub bytes_per_s: f64,
    pub latency_ms: LatencySummary,
    /// Answers by HTTP status.
    pub status: BTreeMap<String, u64>,
    /// Errors: "http 404", "timeout", "connect: connection refused", ...
    pub errors_by_kind: BTreeMap<String, u64>,
    /// Per level, coarsest (largest scale factor) first.
    pub levels: Vec<LevelReport>,
    pub series: Vec<SecondReport>,
    /// Latency at fixed percentiles, for plots.
    pub distribution: Vec<Quantile>,
    pub warmup: WarmupReport,
    /// Every request sent, warm-up included.
    pub sent_total: u64,
    /// Views mode: time per view.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub views: Option<ViewReport>,
}

fn human_bytes(b: f64) -> String {
    const UNITS: [&str; 5] = ["B", "KiB", "MiB", "GiB", "TiB"];
    let mut v = b;
    let mut u = 0;
    while v >= 1024.0 && u + 1 < UNITS.len() {
        v /= 1024.0;
        u += 1;
    }
    format!("{v:.1} {}", UNITS[u])
}

impl Report {
    /// The human summary printed at the end of a run.
    pub fn text(&self) -> String {
        let mut s = String::new();
        let c = &self.config;
        let how = match c.rate {
            Some(r) => format!("open loop at {r} req/s ({} viewers)", c.concurrency),
            None => format!("closed loop, {} viewers × {} in flight", c.concurrency, c.per_viewer),
        };
        let _ = writeln!(s, "tessera loadtest: {} mode, {how}, stopped by {}", c.mode, self.stopped_by);
        for t in &c.targets {
            let _ = writeln!(s, "  target   {t}");
        }
        let _ = writeln!(
            s,
            "  requests {} in {:.2} s ({} ok, {} errors); warm-up {} more ({:.1} s, not counted)",
            self.requests, self.elapsed_s, self.ok, self.errors, self.warmup.requests, c.warmup_s
        );
        let _ = writeln!(
            s,
            "  rate     {:.1} req/s, {}/s ({} in all)",
            self.requests_per_s,
            human_bytes(self.bytes_per_s),
            human_bytes(self.bytes as f64)
        );
        let l = &self.latency_ms;
        let _ = writeln!(
            s,
            "  latency  p50 {:.2} ms  p90 {:.2} ms  p99 {:.2} ms  p99.9 {:.2} ms  max {:.2} ms  (mean {:.2} ms)",
            l.p50, l.p90, l.p99, l.p999, l.max, l.mean
        );
        if let Some(v) = &self.views {
            let l = &v.latency_ms;
            let _ = writeln!(
                s,
                "  views    {} views ({} tiles, {} with errors): p50 {:.1} ms  p90 {:.1} ms  p99 {:.1} ms  max {:.1} ms",
                v.views, v.tiles, v.views_with_errors, l.p50, l.p90, l.p99, l.max
            );
            for (k, l) in &v.by_kind {
                let _ = writeln!(s, "    {k:>5}  p50 {:.1} ms  p90 {:.1} ms  max {:.1} ms", l.p50, l.p90, l.max);
            }
        }
        let st: Vec<String> = self.status.iter().map(|(k, v)| format!("{k}×{v}")).collect();
        let _ = writeln!(s, "  status   {}", if st.is_empty() { "none".into() } else { st.join(" ") });
        if !self.errors_by_kind.is_empty() {
            let e: Vec<String> = self.errors_by_kind.iter().map(|(k, v)| format!("{k}×{v}")).collect();
            let _ = writeln!(s, "  errors   {}", e.join(", "));
        }
        if !self.levels.is_empty() {
            let _ = writeln!(s, "  per level:");
            let _ = writeln!(
                s,
                "    {:>5} {:>9} {:>7} {:>11} {:>9} {:>9} {:>9} {:>9}",
                "sf", "requests", "errors", "bytes", "p50 ms", "p90 ms", "p99 ms", "max ms"
            );
            for v in &self.levels {
                let _ = writeln!(
                    s,
                    "    {:>5} {:>9} {:>7} {:>11} {:>9.2} {:>9.2} {:>9.2} {:>9.2}",
                    v.scale_factor,
                    v.requests,
                    v.errors,
                    human_bytes(v.bytes as f64),
                    v.latency_ms.p50,
                    v.latency_ms.p90,
                    v.latency_ms.p99,
                    v.latency_ms.max
                );
            }
        }
        s
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn config() -> RunConfig {
        RunConfig {
            targets: vec!["http://127.0.0.1:1/iiif/2/x/info.json".into()],
            mode: "session".into(),
            loop_kind: "closed".into(),
            concurrency: 2,
            per_viewer: 1,
            rate: None,
            think_s: 0.0,
            duration_s: 10.0,
            max_requests: None,
            warmup_s: 0.0,
            timeout_s: 30.0,
            seed: 0,
            viewport: "1024x768".into(),
            pans: 4,
            tile_size: None,
            threads: 2,
        }
    }

    fn ok(sf: u32, ms: u64, at_s: u64) -> Sample {
        Sample {
            scale_factor: sf,
            latency: Duration::from_millis(ms),
            at: Some(Duration::from_secs(at_s)),
            outcome: Outcome::Answered { status: 200, bytes: 1000 },
        }
    }

    #[test]
    fn percentiles_of_known_samples() {
        let mut r = Recorder::new().unwrap();
        for i in 1..=1000 {
            r.add(&ok(1, i, 0)).unwrap();
        }
        let rep = r.into_report(config(), Duration::from_secs(2), "requests");
        let l = &rep.latency_ms;
        let near = |a: f64, b: f64| (a - b).abs() <= b * 0.002 + 0.001;
        assert!(near(l.p50, 500.0), "{l:?}");
        assert!(near(l.p90, 900.0), "{l:?}");
        assert!(near(l.p99, 990.0), "{l:?}");
        assert!(near(l.p999, 999.0), "{l:?}");
        assert!(near(l.max, 1000.0), "{l:?}");
        assert!(near(l.min, 1.0), "{l:?}");
        assert_eq!(rep.requests, 1000);
        assert!((rep.requests_per_s - 500.0).abs() < 1e-9);
        assert!((rep.bytes_per_s - 500_000.0).abs() < 1e-6);
        assert_eq!(rep.distribution.first().map(|q| q.percentile), Some(0.0));
        assert!(rep.distribution.windows(2).all(|w| w[0].latency_ms <= w[1].latency_ms));
    }

    #[test]
    fn errors_levels_series_and_warmup() {
        let mut r = Recorder::new().unwrap();
        r.add(&ok(4, 10, 0)).unwrap();
        r.add(&ok(1, 20, 0)).unwrap();
        r.add(&ok(1, 30, 1)).unwrap();
        let mut e = ok(1, 5, 1);
        e.outcome = Outcome::Answered { status: 404, bytes: 50 };
        r.add(&e).unwrap();
        let mut t = ok(2, 30_000, 2);
        t.outcome = Outcome::Failed("timeout".into());
        r.add(&t).unwrap();
        let mut w = ok(8, 1, 0);
        w.at = None;
        r.add(&w).unwrap();
        let rep = r.into_report(config(), Duration::from_millis(2500), "duration");
        assert_eq!((rep.requests, rep.ok, rep.errors), (5, 3, 2));
        assert_eq!((rep.warmup.requests, rep.sent_total), (1, 6));
        assert_eq!(rep.status.get("200"), Some(&3));
        assert_eq!(rep.status.get("404"), Some(&1));
        assert_eq!(rep.errors_by_kind.get("http 404"), Some(&1));
        assert_eq!(rep.errors_by_kind.get("timeout"), Some(&1));
        assert_eq!(rep.bytes, 3050);
        let sfs: Vec<u32> = rep.levels.iter().map(|l| l.scale_factor).collect();
        assert_eq!(sfs, [4, 2, 1]);
        assert_eq!(rep.levels[2].requests, 3);
        assert_eq!(rep.levels[1].errors, 1);
        assert_eq!(rep.series.len(), 3);
        assert_eq!(rep.series[1].requests, 2);
        assert_eq!(rep.series[2].span_s, 0.5);
        // A timeout is counted but not timed.
        assert!(rep.latency_ms.max < 1000.0);
        assert!(rep.text().contains("timeout×1"));
    }

    #[test]
    fn json_report_shape() {
        let mut r = Recorder::new().unwrap();
        r.add(&ok(2, 12, 0)).unwrap();
        let v = serde_json::to_value(r.into_report(config(), Duration::from_secs(1), "requests")).unwrap();
        for key in [
            "tool",
            "config",
            "stopped_by",
            "elapsed_s",
            "requests",
            "ok",
            "errors",
            "bytes",
            "requests_per_s",
            "bytes_per_s",
            "latency_ms",
            "status",
            "errors_by_kind",
            "levels",
            "series",
            "distribution",
            "warmup",
            "sent_total",
        ] {
            assert!(v.get(key).is_some(), "missing {key}");
        }
        for key in ["p50", "p90", "p99", "p999", "max", "mean", "min"] {
            assert!(v["latency_ms"][key].is_number(), "latency_ms.{key}");
        }
        assert_eq!(v["levels"][0]["scale_factor"], 2);
        assert_eq!(v["status"]["200"], 1);
        assert_eq!(v["config"]["loop_kind"], "closed");
        assert!(v["config"]["rate"].is_null());
        assert_eq!(v["series"][0]["requests"], 1);
    }

    #[test]
    fn absurd_latencies_are_clamped_not_lost() {
        let mut r = Recorder::new().unwrap();
        r.add(&ok(1, 10_000_000_000, 0)).unwrap();
        let mut zero = ok(1, 0, 0);
        zero.latency = Duration::ZERO;
        r.add(&zero).unwrap();
        let rep = r.into_report(config(), Duration::from_secs(1), "requests");
        assert_eq!(rep.requests, 2);
        assert!(rep.latency_ms.max >= 3_600_000.0 * 0.999);
    }
}
