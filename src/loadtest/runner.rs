//! Replaying requests: the HTTP client (hyper-util legacy client, http/1.1
//! keep-alive, one connection pool per virtual viewer), the closed loop (N
//! viewers, each waiting for its answers), the open loop (a fixed schedule,
//! latency from the scheduled send time so a slow server cannot hide queued
//! requests), warm-up, the duration and request-count bounds, and the live
//! progress bar. Every finished request goes to one [`Recorder`].

use std::collections::VecDeque;
use std::io::IsTerminal;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use http::Uri;
use http_body_util::{BodyExt, Empty};
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::client::legacy::Client;
use hyper_util::rt::TokioExecutor;
use indicatif::{ProgressBar, ProgressStyle};
use tokio::sync::{mpsc, Semaphore};
use tokio::task::JoinSet;
use tokio::time::Instant;

use super::session::{scheduled_offset, ImagePlan, Req, SessionGen, Source, SweepQueue, ViewGen, Viewport};
use super::stats::{Outcome, Recorder, Sample, ViewRecorder, ViewSample};
use super::{LoadtestError, Mode};

pub type HttpClient = Client<HttpConnector, Empty<Bytes>>;

/// A client whose pool keeps up to `conns` idle keep-alive connections.
pub fn new_client(conns: usize, timeout: Duration) -> HttpClient {
    let mut c = HttpConnector::new();
    c.set_nodelay(true);
    c.set_connect_timeout(Some(timeout));
    Client::builder(TokioExecutor::new())
        .pool_max_idle_per_host(conns.max(1))
        .pool_idle_timeout(Duration::from_secs(90))
        .build(c)
}

fn request(uri: Uri) -> Result<http::Request<Empty<Bytes>>, String> {
    http::Request::get(uri)
        .header(http::header::USER_AGENT, concat!("tessera-loadtest/", env!("CARGO_PKG_VERSION")))
        .body(Empty::new())
        .map_err(|e| format!("request: {e}"))
}

/// A short name for a failed request: "connect: connection refused",
/// "io: connection reset by peer", "http: incomplete message", ...
fn classify(e: &hyper_util::client::legacy::Error) -> String {
    let prefix = if e.is_connect() { "connect" } else { "io" };
    let mut cur: Option<&(dyn std::error::Error + 'static)> = Some(e);
    while let Some(x) = cur {
        if let Some(io) = x.downcast_ref::<std::io::Error>() {
            return format!("{prefix}: {}", io.kind());
        }
        if let Some(h) = x.downcast_ref::<hyper::Error>() {
            let what = if h.is_incomplete_message() {
                "incomplete message"
            } else if h.is_parse() {
                "bad response"
            } else if h.is_canceled() {
                "canceled"
            } else if h.is_closed() {
                "connection closed"
            } else if h.is_timeout() {
                "timeout"
            } else {
                "protocol error"
            };
            return format!("http: {what}");
        }
        cur = x.source();
    }
    if e.is_connect() {
        "connect: failed".into()
    } else {
        "request failed".into()
    }
}

/// GETs `uri` and reads the body fully: (status, body bytes).
pub async fn fetch_count(client: &HttpClient, uri: Uri) -> Result<(u16, u64), String> {
    let resp = client.request(request(uri)?).await.map_err(|e| classify(&e))?;
    let status = resp.status().as_u16();
    let mut body = resp.into_body();
    let mut n = 0u64;
    while let Some(frame) = body.frame().await {
        let frame = frame.map_err(|e| {
            if e.is_incomplete_message() {
                "body: incomplete".to_string()
            } else {
                "body: error".to_string()
            }
        })?;
        if let Some(d) = frame.data_ref() {
            n += d.len() as u64;
        }
    }
    Ok((status, n))
}

/// GETs `uri` and keeps the body (up to `max` bytes): (status, body).
pub async fn fetch_body(client: &HttpClient, uri: Uri, max: usize) -> Result<(u16, Vec<u8>), String> {
    let resp = client.request(request(uri)?).await.map_err(|e| classify(&e))?;
    let status = resp.status().as_u16();
    let mut body = resp.into_body();
    let mut out = Vec::new();
    while let Some(frame) = body.frame().await {
        let frame = frame.map_err(|e| format!("reading the body: {e}"))?;
        if let Some(d) = frame.data_ref() {
            if out.len() + d.len() > max {
                return Err(format!("body larger than {max} bytes"));
            }
            out.extend_from_slice(d);
        }
    }
    Ok((status, out))
}

/// One request with the per-request timeout (connect, answer and body).
async fn timed(client: &HttpClient, uri: Uri, timeout: Duration) -> Outcome {
    match tokio::time::timeout(timeout, fetch_count(client, uri)).await {
        Err(_) => Outcome::Failed("timeout".into()),
        Ok(Err(kind)) => Outcome::Failed(kind),
        Ok(Ok((status, bytes))) => Outcome::Answered { status, bytes },
    }
}

/// What a run does, from the options.
#[derive(Clone, Debug)]
pub struct Settings {
    pub mode: Mode,
    pub viewers: usize,
    pub per_viewer: usize,
    pub rate: Option<f64>,
    /// Views mode: the pause after each view.
    pub think: Duration,
    /// Views mode: sessions per viewer (`None`: until the duration ends).
    pub sessions: Option<u64>,
    pub warmup: Duration,
    pub duration: Duration,
    pub max_requests: Option<u64>,
    pub timeout: Duration,
    pub seed: u64,
    pub viewport: Viewport,
    pub pans: u32,
    pub max_in_flight: usize,
    pub progress: bool,
}

/// What a run returns: the samples, the measured time, why it stopped.
pub struct RunResult {
    pub recorder: Recorder,
    /// Views mode: the views' times.
    pub views: Option<ViewRecorder>,
    pub elapsed: Duration,
    pub stopped_by: &'static str,
}

struct Shared {
    bases: Vec<String>,
    measure_from: Instant,
    deadline: Instant,
    max_requests: Option<u64>,
    claimed: AtomicU64,
    hit_max: AtomicBool,
    exhausted: AtomicBool,
    timeout: Duration,
    done: AtomicU64,
    errors: AtomicU64,
}

impl Shared {
    /// Takes one of the measured requests the run may send.
    fn claim(&self) -> bool {
        match self.max_requests {
            None => true,
            Some(max) => {
                let ok = self.claimed.fetch_add(1, Ordering::Relaxed) < max;
                if !ok {
                    self.hit_max.store(true, Ordering::Relaxed);
                }
                ok
            }
        }
    }

    fn uri(&self, r: &Req) -> Option<Uri> {
        let base = self.bases.get(r.image)?;
        format!("{base}/{}", r.path).parse().ok()
    }

    /// Sends `req` (due at `due`), counts it live, hands it to the recorder;
    /// whether it failed.
    async fn send(&self, client: &HttpClient, req: Req, due: Instant, tx: &mpsc::UnboundedSender<Sample>) -> bool {
        let outcome = match self.uri(&req) {
            Some(u) => timed(client, u, self.timeout).await,
            None => Outcome::Failed("invalid URL".into()),
        };
        let end = Instant::now();
        self.done.fetch_add(1, Ordering::Relaxed);
        let failed = outcome.error_kind().is_some();
        if failed {
            self.errors.fetch_add(1, Ordering::Relaxed);
        }
        let at = (due >= self.measure_from).then(|| end.saturating_duration_since(self.measure_from));
        let _ = tx.send(Sample {
            scale_factor: req.scale_factor,
            latency: end.saturating_duration_since(due),
            at,
            outcome,
        });
        failed
    }
}

/// Runs the load against `images` and collects every sample.
pub async fn run(images: Arc<Vec<ImagePlan>>, s: &Settings) -> Result<RunResult, LoadtestError> {
    let origin = Instant::now();
    let sh = Arc::new(Shared {
        bases: images.iter().map(|p| p.spec.id.clone()).collect(),
        measure_from: origin + s.warmup,
        deadline: origin + s.warmup + s.duration,
        max_requests: s.max_requests,
        claimed: AtomicU64::new(0),
        hit_max: AtomicBool::new(false),
        exhausted: AtomicBool::new(false),
        timeout: s.timeout,
        done: AtomicU64::new(0),
        errors: AtomicU64::new(0),
    });
    let sweep = (s.mode == Mode::Sweep).then(|| Arc::new(SweepQueue::new(&images)));
    let sources: Vec<Source> = (0..s.viewers)
        .map(|v| match &sweep {
            Some(q) => Source::Sweep(q.clone()),
            None => Source::Sessions(SessionGen::new(images.clone(), s.seed, v as u64, s.viewport, s.pans)),
        })
        .collect();
    let (tx, mut rx) = mpsc::unbounded_channel::<Sample>();
    let collector = tokio::spawn(async move {
        let mut rec = Recorder::new()?;
        while let Some(sample) = rx.recv().await {
            rec.add(&sample)?;
        }
        Ok::<Recorder, LoadtestError>(rec)
    });
    let bar = progress_bar(s, sh.clone(), origin);
    let mut views = None;
    match s.rate {
        None if s.mode == Mode::Views => views = Some(views_loop(&sh, &images, s, tx).await?),
        None => closed_loop(&sh, sources, s, tx).await,
        Some(rate) => open_loop(&sh, sources, s, rate, origin, tx).await,
    }
    let end = Instant::now();
    if let Some((bar, ticker)) = bar {
        ticker.abort();
        bar.finish_and_clear();
    }
    let recorder = collector.await.map_err(|e| LoadtestError::Stats(format!("collector: {e}")))??;
    let stopped_by = if sh.exhausted.load(Ordering::Relaxed) && s.mode == Mode::Views {
        "sessions complete"
    } else if sh.exhausted.load(Ordering::Relaxed) {
        "sweep complete"
    } else if sh.hit_max.load(Ordering::Relaxed) {
        "requests"
    } else {
        "duration"
    };
    Ok(RunResult { recorder, views, elapsed: end.saturating_duration_since(sh.measure_from), stopped_by })
}

/// N viewers, each with its own connection pool and `per_viewer` requests
/// in flight, sending the next request when an answer is in.
async fn closed_loop(sh: &Arc<Shared>, sources: Vec<Source>, s: &Settings, tx: mpsc::UnboundedSender<Sample>) {
    let mut tasks = JoinSet::new();
    for src in sources {
        let client = new_client(s.per_viewer, s.timeout);
        let src = Arc::new(Mutex::new(src));
        for _ in 0..s.per_viewer.max(1) {
            let (sh, client, src, tx) = (sh.clone(), client.clone(), src.clone(), tx.clone());
            tasks.spawn(async move {
                loop {
                    let now = Instant::now();
                    if now >= sh.deadline || sh.hit_max.load(Ordering::Relaxed) {
                        break;
                    }
                    if now >= sh.measure_from && !sh.claim() {
                        break;
                    }
                    let next = match src.lock() {
                        Ok(mut g) => g.next_req(),
                        Err(_) => None,
                    };
                    let Some(req) = next else {
                        sh.exhausted.store(true, Ordering::Relaxed);
                        break;
                    };
                    let _ = sh.send(&client, req, now, &tx).await;
                }
            });
        }
    }
    drop(tx);
    while tasks.join_next().await.is_some() {}
}

/// Views mode: each viewer asks every new tile of a view at once (at most
/// `per_viewer` in flight, on its own pool), times the view until its last
/// answer, then waits `think` before the next gesture.
async fn views_loop(
    sh: &Arc<Shared>,
    images: &Arc<Vec<ImagePlan>>,
    s: &Settings,
    tx: mpsc::UnboundedSender<Sample>,
) -> Result<ViewRecorder, LoadtestError> {
    use futures_util::StreamExt;
    let (vtx, mut vrx) = mpsc::unbounded_channel::<ViewSample>();
    let collector = tokio::spawn(async move {
        let mut rec = ViewRecorder::new()?;
        while let Some(v) = vrx.recv().await {
            rec.add(&v)?;
        }
        Ok::<ViewRecorder, LoadtestError>(rec)
    });
    let mut tasks = JoinSet::new();
    for v in 0..s.viewers {
        let client = new_client(s.per_viewer, s.timeout);
        let mut gen = ViewGen::new(images.clone(), s.seed, v as u64, s.viewport, s.pans, s.sessions);
        let (sh, tx, vtx, in_flight, think) = (sh.clone(), tx.clone(), vtx.clone(), s.per_viewer.max(1), s.think);
        tasks.spawn(async move {
            loop {
                let start = Instant::now();
                if start >= sh.deadline {
                    break;
                }
                let Some(view) = gen.next_view() else {
                    sh.exhausted.store(true, Ordering::Relaxed);
                    break;
                };
                let tiles = view.reqs.len();
                let failed: Vec<bool> = futures_util::stream::iter(view.reqs)
                    .map(|req| sh.send(&client, req, Instant::now(), &tx))
                    .buffer_unordered(in_flight)
                    .collect()
                    .await;
                let end = Instant::now();
                let _ = vtx.send(ViewSample {
                    kind: view.kind,
                    tiles,
                    latency: end.saturating_duration_since(start),
                    errors: failed.iter().filter(|f| **f).count(),
                    measured: start >= sh.measure_from,
                });
                if !think.is_zero() {
                    tokio::time::sleep_until((end + think).min(sh.deadline)).await;
                }
            }
        });
    }
    drop((tx, vtx));
    while tasks.join_next().await.is_some() {}
    collector.await.map_err(|e| LoadtestError::Stats(format!("view collector: {e}")))?
}

/// Requests sent on a fixed schedule (`rate` per second from the start),
/// whatever the answers do; viewers' request streams are interleaved, each
/// through its viewer's pool (which opens more connections when needed), at
/// most `max_in_flight` at once. Latency counts from the scheduled time.
async fn open_loop(
    sh: &Arc<Shared>,
    mut sources: Vec<Source>,
    s: &Settings,
    rate: f64,
    origin: Instant,
    tx: mpsc::UnboundedSender<Sample>,
) {
    let clients: Vec<HttpClient> = (0..sources.len()).map(|_| new_client(s.per_viewer, s.timeout)).collect();
    let limit = Arc::new(Semaphore::new(s.max_in_flight.max(1)));
    let mut tasks = JoinSet::new();
    let mut i = 0u64;
    loop {
        let due = origin + scheduled_offset(rate, i);
        if due >= sh.deadline {
            break;
        }
        if due >= sh.measure_from && !sh.claim() {
            break;
        }
        let v = (i % sources.len().max(1) as u64) as usize;
        let (Some(src), Some(client)) = (sources.get_mut(v), clients.get(v)) else {
            break;
        };
        let Some(req) = src.next_req() else {
            sh.exhausted.store(true, Ordering::Relaxed);
            break;
        };
        tokio::time::sleep_until(due).await;
        let (sh2, client, tx, permit) = (sh.clone(), client.clone(), tx.clone(), limit.clone().acquire_owned());
        tasks.spawn(async move {
            let _permit = permit.await;
            let _ = sh2.send(&client, req, due, &tx).await;
        });
        while tasks.try_join_next().is_some() {}
        i += 1;
    }
    drop(tx);
    while tasks.join_next().await.is_some() {}
}

/// The live bar on stderr (time through the run, requests, current req/s,
/// errors); none when `progress` is off or stderr is not a terminal.
fn progress_bar(s: &Settings, sh: Arc<Shared>, origin: Instant) -> Option<(ProgressBar, tokio::task::JoinHandle<()>)> {
    if !s.progress || !std::io::stderr().is_terminal() {
        return None;
    }
    let total = (s.warmup + s.duration).as_millis().max(1) as u64;
    let bar = ProgressBar::new(total);
    if let Ok(style) = ProgressStyle::with_template("{spinner} [{elapsed_precise}] {wide_bar} {msg}") {
        bar.set_style(style);
    }
    let b = bar.clone();
    let max = s.max_requests;
    let ticker = tokio::spawn(async move {
        let mut window: VecDeque<(Instant, u64)> = VecDeque::new();
        let mut tick = tokio::time::interval(Duration::from_millis(200));
        loop {
            tick.tick().await;
            let now = Instant::now();
            let done = sh.done.load(Ordering::Relaxed);
            window.push_back((now, done));
            while window.len() > 6 {
                window.pop_front();
            }
            let rate = match window.front() {
                Some(&(t0, d0)) if now > t0 => (done - d0) as f64 / (now - t0).as_secs_f64(),
                _ => 0.0,
            };
            let phase = if now < sh.measure_from { " (warm-up)" } else { "" };
            let of = max.map(|m| format!("/{m}")).unwrap_or_default();
            b.set_position((now.saturating_duration_since(origin).as_millis() as u64).min(total));
            b.set_message(format!(
                "{done}{of} req  {rate:.0} req/s  {} errors{phase}",
                sh.errors.load(Ordering::Relaxed)
            ));
        }
    });
    Some((bar, ticker))
}
