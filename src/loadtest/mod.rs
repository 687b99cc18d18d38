//! `tessera loadtest`: replays the tile requests deep-zoom viewers
//! (OpenSeadragon, Mirador) make against any IIIF Image API 2 or 3 server,
//! and reports throughput, latency percentiles (overall and per scale
//! factor), errors by kind and a per-second series, as text, JSON, SVG or
//! HTML. This file owns the options, the error type and the run: checks,
//! its own tokio runtime, the report and the exit code.
//!
//! [`target`] fetches and reads info.json (loopback only unless
//! `--allow-remote`), [`session`] computes the request sequences (pure,
//! seeded), [`runner`] sends them (closed or open loop), [`stats`] turns the
//! samples into a [`stats::Report`], [`report_svg`] draws it.

pub mod report_svg;
pub mod runner;
pub mod session;
pub mod stats;
pub mod target;

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use session::{ImagePlan, Viewport};

/// What goes wrong before or around a run (HTTP errors during the run are
/// figures, not errors). Messages are for the user.
#[derive(Debug, thiserror::Error)]
pub enum LoadtestError {
    #[error("{0}: only http:// is supported (this tool has no TLS client); test the server on plain http")]
    Https(String),
    #[error(
        "{what}: host {host} is not loopback; loadtest only targets 127.0.0.0/8, ::1 or localhost \
         unless --allow-remote is given (load only servers you run or may test)"
    )]
    NotLoopback { what: String, host: String },
    #[error("invalid URL {url}: {reason}")]
    BadUrl { url: String, reason: String },
    #[error("cannot fetch {url}: {reason}")]
    Fetch { url: String, reason: String },
    #[error("{url} is not a usable IIIF info.json: {reason}")]
    BadInfo { url: String, reason: String },
    #[error("invalid option: {0}")]
    BadOption(String),
    #[error("starting the async runtime: {0}")]
    Runtime(std::io::Error),
    #[error("writing {path}: {source}")]
    Write { path: PathBuf, source: std::io::Error },
    #[error("statistics: {0}")]
    Stats(String),
}

/// How requests are chosen.
#[derive(clap::ValueEnum, Clone, Copy, Debug, PartialEq, Eq)]
pub enum Mode {
    /// Viewer sessions back to back: home view, zoom-ins toward a random
    /// point down to scale factor 1, a few pans; then a new point.
    Session,
    /// Every distinct tile of every level once, coarse to fine, shared by
    /// all viewers; stops when all are done (cold-cache benchmarks).
    Sweep,
    /// Sessions view by view: each viewer asks all the new tiles of a view
    /// at once (--per-viewer connections, 6 by default, as a browser) and
    /// times the view until its last tile is in, then waits --think seconds
    /// before the next gesture. Reports per-view p50/p90/max.
    Views,
}

impl Mode {
    fn name(self) -> &'static str {
        match self {
            Mode::Session => "session",
            Mode::Sweep => "sweep",
            Mode::Views => "views",
        }
    }
}

/// `tessera loadtest URL... [options]`
#[derive(clap::Args, Debug, Clone)]
#[command(
    about = "Replay the tile requests of deep-zoom viewers against IIIF Image API 2/3 servers and report latency and throughput",
    long_about = "Replay the tile requests OpenSeadragon/Mirador make for deep-zoom sessions against one or more \
IIIF Image API 2 or 3 servers (any server, given its info.json URLs), and report requests/s, bytes/s, latency \
percentiles (overall and per scale factor) and errors.\n\n\
Closed loop (default): --concurrency virtual viewers, each on its own keep-alive connection, sending its next \
request when the previous answer is in (--per-viewer for more in flight). Open loop (--rate R): R requests per \
second on a fixed schedule whatever the server does; latency counts from the scheduled send time, so queueing is \
not hidden (no coordinated omission).\n\n\
A run stops at --duration seconds after the warm-up, at --requests measured requests, or when a --mode sweep \
is complete, whichever comes first. Requests sent during --warmup are not in the figures.\n\n\
Only http:// and, unless --allow-remote, only loopback hosts (127.0.0.0/8, ::1, localhost), for the URL given \
and for the image id its info.json names.\n\n\
Exit status: 0 when the run completed (HTTP errors are reported, not fatal), 1 with --fail-on-errors when any \
request failed, 2 for bad options, a refused target or an unreadable info.json."
)]
pub struct Options {
    /// info.json URLs, e.g. http://127.0.0.1:8182/iiif/3/large/info.json.
    #[arg(required = true, value_name = "URL")]
    pub urls: Vec<String>,
    /// Virtual viewers (closed loop: concurrent sessions, one connection each; open loop: interleaved request streams).
    #[arg(short = 'c', long, default_value_t = 4, value_name = "N")]
    pub concurrency: usize,
    /// Requests each viewer keeps in flight in the closed loop (a browser uses a few)
    /// [default: 1; 6 in views mode].
    #[arg(long, value_name = "K")]
    pub per_viewer: Option<usize>,
    /// Views mode: sessions per viewer, then it stops (the run ends when all have) [default: no end].
    #[arg(long, value_name = "N")]
    pub sessions: Option<u64>,
    /// Views mode: seconds a viewer looks at a view before the next gesture.
    #[arg(long, default_value_t = 0.0, value_name = "SECS")]
    pub think: f64,
    /// Measured seconds, after the warm-up.
    #[arg(short = 'd', long, default_value_t = 10.0, value_name = "SECS")]
    pub duration: f64,
    /// Stop after this many measured requests (the duration still bounds the run).
    #[arg(short = 'n', long, value_name = "N")]
    pub requests: Option<u64>,
    /// Open loop: send this many requests per second on a fixed schedule.
    #[arg(long, value_name = "R")]
    pub rate: Option<f64>,
    /// Open loop: most requests in flight at once (later ones wait, and the wait counts as latency).
    #[arg(long, default_value_t = 1024, value_name = "N")]
    pub max_in_flight: usize,
    /// Seconds of load before measuring [default: 1 in session mode, 0 in sweep mode].
    #[arg(long, value_name = "SECS")]
    pub warmup: Option<f64>,
    /// How requests are chosen.
    #[arg(long, value_enum, default_value_t = Mode::Session)]
    pub mode: Mode,
    /// The viewer's canvas in screen pixels, WIDTHxHEIGHT.
    #[arg(long, default_value = "1024x768", value_name = "WxH")]
    pub viewport: Viewport,
    /// Ask PX×PX tiles at scale factors 1, 2, 4, … (to the level that fits one tile)
    /// instead of info.json's tiles: identical requests for servers that advertise different tiles.
    #[arg(long, value_name = "PX")]
    pub tile_size: Option<u32>,
    /// Pans (half a viewport each, random direction) at the finest level in each session.
    #[arg(long, default_value_t = 4, value_name = "N")]
    pub pans: u32,
    /// Seed of the random zoom points and image choices (same seed, same requests).
    #[arg(long, default_value_t = 1)]
    pub seed: u64,
    /// Per-request timeout in seconds (connect, answer and body); counted as an error "timeout".
    #[arg(long, default_value_t = 30.0, value_name = "SECS")]
    pub timeout: f64,
    /// Worker threads of the client's runtime.
    #[arg(long, default_value_t = 2, value_name = "N")]
    pub threads: usize,
    /// Write the report as JSON to FILE.
    #[arg(long, value_name = "FILE")]
    pub json: Option<PathBuf>,
    /// Write an SVG with the latency distribution and throughput over time to FILE.
    #[arg(long, value_name = "FILE")]
    pub svg: Option<PathBuf>,
    /// Write an HTML report (summary, per-level table, the SVG charts) to FILE.
    #[arg(long, value_name = "FILE")]
    pub html: Option<PathBuf>,
    /// No progress bar (it is also hidden when stderr is not a terminal).
    #[arg(short = 'q', long)]
    pub quiet: bool,
    /// Allow hosts other than loopback (only servers you run or may load).
    #[arg(long)]
    pub allow_remote: bool,
    /// Exit with status 1 when any measured request failed (for CI).
    #[arg(long)]
    pub fail_on_errors: bool,
}

fn secs(v: f64, name: &str, allow_zero: bool) -> Result<Duration, LoadtestError> {
    let ok = v.is_finite() && (v > 0.0 || (allow_zero && v == 0.0)) && v <= 7.0 * 86_400.0;
    if !ok {
        let want = if allow_zero { "0 or more" } else { "more than 0" };
        return Err(LoadtestError::BadOption(format!("--{name} {v}: seconds must be {want} (and at most a week)")));
    }
    Ok(Duration::from_secs_f64(v))
}

/// Checks the options and turns them into run settings.
pub fn settings(o: &Options) -> Result<runner::Settings, LoadtestError> {
    let count = |v: usize, name: &str, max: usize| {
        if v == 0 || v > max {
            Err(LoadtestError::BadOption(format!("--{name} {v}: must be from 1 to {max}")))
        } else {
            Ok(v)
        }
    };
    count(o.concurrency, "concurrency", 100_000)?;
    let per_viewer = o.per_viewer.unwrap_or(if o.mode == Mode::Views { 6 } else { 1 });
    count(per_viewer, "per-viewer", 1_000)?;
    if o.sessions == Some(0) {
        return Err(LoadtestError::BadOption("--sessions 0: must be at least 1".into()));
    }
    if o.mode == Mode::Views && o.rate.is_some() {
        return Err(LoadtestError::BadOption(
            "--rate: views mode is a closed loop (viewers wait for their views)".into(),
        ));
    }
    count(o.threads, "threads", 1_024)?;
    count(o.max_in_flight, "max-in-flight", 1_000_000)?;
    if matches!(o.tile_size, Some(t) if t == 0 || t > 65_536) {
        return Err(LoadtestError::BadOption("--tile-size: must be from 1 to 65536 pixels".into()));
    }
    if o.requests == Some(0) {
        return Err(LoadtestError::BadOption("--requests 0: must be at least 1".into()));
    }
    if let Some(r) = o.rate {
        if !(r.is_finite() && r > 0.0 && r <= 10_000_000.0) {
            return Err(LoadtestError::BadOption(format!("--rate {r}: must be more than 0 requests per second")));
        }
    }
    let default_warmup = if o.mode == Mode::Sweep { 0.0 } else { 1.0 };
    Ok(runner::Settings {
        mode: o.mode,
        viewers: o.concurrency,
        per_viewer,
        rate: o.rate,
        think: secs(o.think, "think", true)?,
        sessions: o.sessions,
        warmup: secs(o.warmup.unwrap_or(default_warmup), "warmup", true)?,
        duration: secs(o.duration, "duration", false)?,
        max_requests: o.requests,
        timeout: secs(o.timeout, "timeout", false)?,
        seed: o.seed,
        viewport: o.viewport,
        pans: o.pans,
        max_in_flight: o.max_in_flight,
        progress: !o.quiet,
    })
}

fn write(path: &Path, text: &str) -> Result<(), LoadtestError> {
    std::fs::write(path, text).map_err(|source| LoadtestError::Write { path: path.to_path_buf(), source })
}

/// Runs the load test; returns the process exit code (see `--help`).
pub fn run(opts: Options) -> i32 {
    match run_inner(&opts) {
        Ok(report) => {
            let failed = opts.fail_on_errors && report.errors > 0;
            if failed {
                eprintln!("tessera loadtest: {} requests failed (--fail-on-errors)", report.errors);
            }
            if let Err(e) = write_reports(&opts, &report) {
                eprintln!("tessera loadtest: error: {e}");
                return 2;
            }
            i32::from(failed)
        }
        Err(e) => {
            eprintln!("tessera loadtest: error: {e}");
            2
        }
    }
}

fn write_reports(opts: &Options, report: &stats::Report) -> Result<(), LoadtestError> {
    if let Some(p) = &opts.json {
        let text = serde_json::to_string_pretty(report).map_err(|e| LoadtestError::Stats(e.to_string()))?;
        write(p, &(text + "\n"))?;
    }
    if let Some(p) = &opts.svg {
        write(p, &report_svg::svg(report))?;
    }
    if let Some(p) = &opts.html {
        write(p, &report_svg::html(report))?;
    }
    Ok(())
}

fn run_inner(opts: &Options) -> Result<stats::Report, LoadtestError> {
    let s = settings(opts)?;
    // Refuse bad targets before starting anything.
    for u in &opts.urls {
        target::check_url(u, &format!("URL {u}"), opts.allow_remote)?;
    }
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(opts.threads)
        .enable_all()
        .build()
        .map_err(LoadtestError::Runtime)?;
    rt.block_on(async {
        let mut plans = Vec::new();
        for u in &opts.urls {
            let mut spec = target::load(u, opts.allow_remote, s.timeout).await?;
            if let Some(px) = opts.tile_size {
                spec = spec.with_tile_size(px);
            }
            plans.push(ImagePlan::new(spec));
        }
        let images = Arc::new(plans);
        let done = runner::run(images, &s).await?;
        let config = stats::RunConfig {
            targets: opts.urls.clone(),
            mode: opts.mode.name().into(),
            loop_kind: if opts.rate.is_some() { "open" } else { "closed" }.into(),
            concurrency: opts.concurrency,
            per_viewer: s.per_viewer,
            rate: opts.rate,
            think_s: s.think.as_secs_f64(),
            duration_s: s.duration.as_secs_f64(),
            max_requests: opts.requests,
            warmup_s: s.warmup.as_secs_f64(),
            timeout_s: s.timeout.as_secs_f64(),
            seed: opts.seed,
            viewport: format!("{}x{}", s.viewport.width, s.viewport.height),
            pans: opts.pans,
            tile_size: opts.tile_size,
            threads: opts.threads,
        };
        let mut report = done.recorder.into_report(config, done.elapsed, done.stopped_by);
        report.views = done.views.map(stats::ViewRecorder::into_report);
        print!("{}", report.text());
        Ok(report)
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::Parser;

    #[derive(Parser)]
    struct Cli {
        #[command(flatten)]
        o: Options,
    }

    fn parse(args: &[&str]) -> Result<Options, clap::Error> {
        Cli::try_parse_from(std::iter::once("loadtest").chain(args.iter().copied())).map(|c| c.o)
    }

    #[test]
    fn options_and_defaults() {
        let o = parse(&["http://127.0.0.1:1/iiif/2/a/info.json"]).unwrap();
        let s = settings(&o).unwrap();
        assert_eq!((s.viewers, s.per_viewer, s.rate), (4, 1, None));
        assert_eq!(s.duration, Duration::from_secs(10));
        assert_eq!(s.warmup, Duration::from_secs(1));
        assert_eq!(s.viewport, Viewport { width: 1024, height: 768 });
        let o =
            parse(&["u", "--mode", "sweep", "-c", "2", "--rate", "50", "-n", "10", "--viewport", "800x600"]).unwrap();
        let s = settings(&o).unwrap();
        assert_eq!(s.warmup, Duration::ZERO, "no warm-up by default in a sweep");
        assert_eq!((s.viewers, s.rate, s.max_requests), (2, Some(50.0), Some(10)));
        let s = settings(&parse(&["u", "--mode", "views", "--think", "1"]).unwrap()).unwrap();
        assert_eq!((s.per_viewer, s.think), (6, Duration::from_secs(1)), "a browser's 6 connections by default");
        assert!(settings(&parse(&["u", "--mode", "views", "--rate", "5"]).unwrap()).is_err());
        assert!(settings(&parse(&["u", "--think=-1"]).unwrap()).is_err());
        assert!(parse(&[]).is_err(), "a URL is required");
        assert!(parse(&["u", "--viewport", "big"]).is_err());
        for bad in [&["u", "-c", "0"][..], &["u", "--rate", "0"], &["u", "--duration=-1"], &["u", "-n", "0"]] {
            assert!(settings(&parse(bad).unwrap()).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn remote_and_https_targets_are_refused_before_any_io() {
        let o = parse(&["http://192.0.2.1/iiif/2/a/info.json", "-q"]).unwrap();
        assert_eq!(run(o), 2);
        let e = run_inner(&parse(&["http://192.0.2.1/iiif/2/a/info.json"]).unwrap()).unwrap_err();
        assert!(e.to_string().contains("loopback"), "{e}");
        let e = run_inner(&parse(&["https://127.0.0.1/iiif/2/a/info.json"]).unwrap()).unwrap_err();
        assert!(e.to_string().contains("only http://"), "{e}");
    }

    #[test]
    fn an_unreachable_info_json_is_an_error() {
        // A port nothing listens on (bound, then closed).
        let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
        let o = parse(&[&format!("http://127.0.0.1:{port}/iiif/2/a/info.json"), "-q", "--timeout", "5"]).unwrap();
        let e = run_inner(&o).unwrap_err();
        assert!(matches!(e, LoadtestError::Fetch { .. }), "{e}");
    }
}
