//! The server: hyper 1.x serving [`App`](crate::service::App) over HTTP/1.1 and h2c,
//! with graceful shutdown and the connection limits that keep slow, silent
//! or greedy clients from exhausting the server. Everything IIIF-specific
//! lives in `service`.
//!
//! Each connection is watched ([`Watch`]): it must send a complete request
//! head within `server.header_read_timeout` of opening (the HTTP/1.1 or h2c
//! detection included), and it is closed once idle (no request being
//! answered) for `server.keep_alive_timeout`. Past `server.max_connections`
//! a new connection is answered 503 and closed at once, so `accept()` keeps
//! working. HTTP/2 connections are pinged and bounded in concurrent streams.
//! Forwarded headers (`X-Forwarded-*`, `Forwarded`) are removed from requests
//! whose peer is not a configured trusted proxy ([`trust`]).

use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use http_body_util::Full;
use hyper::body::Incoming;
use hyper::service::service_fn;
use hyper::{Request, Response};
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use hyper_util::server::conn::auto;
use tokio::io::AsyncWriteExt;
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{mpsc, watch, Notify, Semaphore};

use crate::config::Server as ServerCfg;
use crate::service::{App, Head};
use crate::web::{access, trust};

/// What a connection over the cap is told before it is closed.
const TOO_MANY: &[u8] = b"HTTP/1.1 503 Service Unavailable\r\ncontent-type: text/plain; charset=utf-8\r\n\
retry-after: 1\r\nconnection: close\r\ncontent-length: 41\r\n\r\nToo many connections, try again shortly\r\n";

/// Serves `app` on `listener` until `shutdown` resolves, then lets open
/// connections finish (up to 10 s).
pub async fn serve(
    app: Arc<App>,
    listener: TcpListener,
    shutdown: impl std::future::Future<Output = ()>,
) -> std::io::Result<()> {
    let cfg = &app.cfg.server;
    let limits = Arc::new(ConnLimits::from(cfg));
    let trusted = Arc::new(trust::TrustedProxies::parse(&cfg.trusted_proxies).map_err(std::io::Error::other)?);
    let mut builder = auto::Builder::new(TokioExecutor::new());
    builder.http1().keep_alive(true).timer(TokioTimer::new()).header_read_timeout(limits.header_read);
    builder
        .http2()
        .timer(TokioTimer::new())
        .max_concurrent_streams(cfg.http2_max_concurrent_streams)
        .keep_alive_interval((cfg.http2_keep_alive_interval > 0).then(|| secs(cfg.http2_keep_alive_interval)))
        .keep_alive_timeout(secs(cfg.http2_keep_alive_timeout.max(1)));
    let slots = Arc::new(Semaphore::new(cfg.max_connections.max(1)));
    // Every connection task holds a clone of `alive`; when all are gone after
    // shutdown, `drained` resolves.
    let (alive, mut drained) = mpsc::channel::<()>(1);
    let (stop_tx, stop_rx) = watch::channel(false);
    tokio::pin!(shutdown);
    // When shutdown comes with a drain: until then, /health says "draining"
    // while everything else is still served.
    let mut drain_until: Option<Instant> = None;
    loop {
        tokio::select! {
            accepted = listener.accept() => {
                let (stream, peer): (TcpStream, SocketAddr) = match accepted {
                    Ok(s) => s,
                    Err(e) => {
                        // Out of file descriptors and the like: back off briefly.
                        tracing::warn!(error = %e, "accept failed");
                        tokio::time::sleep(Duration::from_millis(50)).await;
                        continue;
                    }
                };
                let Ok(permit) = slots.clone().try_acquire_owned() else {
                    app.metrics.connections_refused.inc();
                    tokio::spawn(refuse(stream));
                    continue;
                };
                let _ = stream.set_nodelay(true);
                let watch = Arc::new(Watch::new());
                let svc = {
                    let (app, watch) = (app.clone(), watch.clone());
                    let trusted_peer = trusted.contains(peer.ip());
                    service_fn(move |req: Request<Incoming>| {
                        let app = app.clone();
                        let busy = watch.busy();
                        async move {
                            let r = respond(&app, req, peer, trusted_peer).await;
                            drop(busy);
                            Ok::<_, Infallible>(r)
                        }
                    })
                };
                let conn = builder.serve_connection(TokioIo::new(stream), svc).into_owned();
                let (app, limits, alive, mut stop) = (app.clone(), limits.clone(), alive.clone(), stop_rx.clone());
                tokio::spawn(async move {
                    let _permit = permit;
                    let _alive = alive;
                    app.metrics.connections_open.inc();
                    tokio::pin!(conn);
                    let mut stopping = false;
                    loop {
                        let deadline = watch.deadline(&limits);
                        tokio::select! {
                            _ = conn.as_mut() => break,
                            _ = watch.changed.notified() => {}
                            _ = sleep_until(deadline) => {
                                if watch.deadline(&limits).is_some_and(|d| d <= Instant::now()) {
                                    app.metrics.connections_timed_out.inc();
                                    break; // dropping the connection closes it
                                }
                            }
                            r = stop.changed(), if !stopping => {
                                if r.is_err() || *stop.borrow() {
                                    stopping = true;
                                    // A connection that has not sent its
                                    // first request yet (accepted a moment
                                    // ago; its request may be on the wire)
                                    // is not cut: it gets its answer, with
                                    // "Connection: close", or its header
                                    // timeout. The others end after the
                                    // answer under way, or now if idle.
                                    if watch.has_served() || watch.busy.load(Ordering::Acquire) > 0 {
                                        conn.as_mut().graceful_shutdown();
                                    }
                                }
                            }
                        }
                    }
                    app.metrics.connections_open.dec();
                });
            }
            _ = &mut shutdown, if drain_until.is_none() => {
                if cfg.drain_secs == 0 {
                    break;
                }
                app.draining.store(true, std::sync::atomic::Ordering::Relaxed);
                tracing::info!(seconds = cfg.drain_secs, "draining: /health answers 503 before the listener closes");
                drain_until = Some(Instant::now() + secs(cfg.drain_secs));
            }
            _ = sleep_until(drain_until) => break,
        }
    }
    drop(listener);
    let _ = stop_tx.send(true);
    drop(alive);
    tokio::select! {
        _ = drained.recv() => {}
        _ = tokio::time::sleep(Duration::from_secs(10)) => {
            tracing::warn!("connections still open after 10 s; closing");
        }
    }
    Ok(())
}

fn secs(s: u64) -> Duration {
    Duration::from_secs(s)
}

async fn sleep_until(deadline: Option<Instant>) {
    match deadline {
        Some(d) => tokio::time::sleep_until(d.into()).await,
        None => std::future::pending().await,
    }
}

/// Tells a connection over the cap to come back later, and closes it.
async fn refuse(mut stream: TcpStream) {
    let _ = tokio::time::timeout(Duration::from_secs(1), async {
        let _ = stream.write_all(TOO_MANY).await;
        let _ = stream.shutdown().await;
    })
    .await;
}

/// The connection timeouts, from `[server]`.
struct ConnLimits {
    header_read: Duration,
    keep_alive: Duration,
}

impl From<&ServerCfg> for ConnLimits {
    fn from(c: &ServerCfg) -> Self {
        ConnLimits { header_read: secs(c.header_read_timeout.max(1)), keep_alive: secs(c.keep_alive_timeout.max(1)) }
    }
}

/// One connection's activity: requests being answered, and when the last
/// one ended. Its deadline is `header_read` after opening until a first
/// request arrives, then `keep_alive` after each answer, and none while a
/// request is being answered.
struct Watch {
    opened: Instant,
    busy: AtomicUsize,
    /// Milliseconds after `opened` when the last request ended; `u64::MAX`
    /// while none has.
    idle_since_ms: AtomicU64,
    changed: Notify,
}

impl Watch {
    fn new() -> Self {
        Watch {
            opened: Instant::now(),
            busy: AtomicUsize::new(0),
            idle_since_ms: AtomicU64::new(u64::MAX),
            changed: Notify::new(),
        }
    }

    fn busy(self: &Arc<Self>) -> Busy {
        self.busy.fetch_add(1, Ordering::AcqRel);
        self.changed.notify_one();
        Busy(self.clone())
    }

    /// Whether a request has been answered on it.
    fn has_served(&self) -> bool {
        self.idle_since_ms.load(Ordering::Acquire) != u64::MAX
    }

    fn deadline(&self, l: &ConnLimits) -> Option<Instant> {
        if self.busy.load(Ordering::Acquire) > 0 {
            return None;
        }
        match self.idle_since_ms.load(Ordering::Acquire) {
            u64::MAX => Some(self.opened + l.header_read),
            ms => Some(self.opened + Duration::from_millis(ms) + l.keep_alive),
        }
    }
}

/// A request being answered on a watched connection.
struct Busy(Arc<Watch>);

impl Drop for Busy {
    fn drop(&mut self) {
        let w = &self.0;
        w.idle_since_ms.store(w.opened.elapsed().as_millis() as u64, Ordering::Release);
        w.busy.fetch_sub(1, Ordering::AcqRel);
        w.changed.notify_one();
    }
}

async fn respond(
    app: &Arc<App>,
    req: Request<Incoming>,
    peer: SocketAddr,
    trusted_peer: bool,
) -> Response<Full<Bytes>> {
    let started = Instant::now();
    let (mut parts, _body) = req.into_parts();
    if !trusted_peer {
        trust::strip_forwarded(&mut parts.headers);
    }
    let id = access::request_id(&parts.headers);
    let mut resp = app.handle(Head { method: &parts.method, uri: &parts.uri, headers: &parts.headers }).await;
    if app.cfg.log.access {
        let entry = access::Entry {
            peer,
            method: &parts.method,
            uri: &parts.uri,
            version: parts.version,
            request_headers: &parts.headers,
            elapsed: started.elapsed(),
            id: &id,
        };
        access::log(&entry, &resp, app.cfg.log.format == "json");
    }
    resp.headers_mut().insert(access::REQUEST_ID, id);
    // Draining: HTTP/1.1 clients are told to close the connection after
    // this answer, so that their next request opens a new one (which the
    // next process takes from a handed-over socket, or a balancer sends
    // elsewhere) instead of racing the close of an idle connection.
    if parts.version < http::Version::HTTP_2 && app.draining.load(Ordering::Relaxed) {
        resp.headers_mut().insert(http::header::CONNECTION, http::HeaderValue::from_static("close"));
    }
    resp.map(Full::new)
}

/// Raises the soft limit on open files to the hard limit (a server's
/// connections each need one), and returns the limit now in force.
#[allow(unsafe_code)] // getrlimit/setrlimit on a local struct.
pub fn raise_open_files_limit() -> Option<u64> {
    #[cfg(unix)]
    {
        let mut l = libc::rlimit { rlim_cur: 0, rlim_max: 0 };
        // SAFETY: getrlimit/setrlimit write or read the struct we pass.
        unsafe {
            if libc::getrlimit(libc::RLIMIT_NOFILE, &mut l) != 0 {
                return None;
            }
            if l.rlim_cur < l.rlim_max {
                let want = libc::rlimit { rlim_cur: l.rlim_max, rlim_max: l.rlim_max };
                if libc::setrlimit(libc::RLIMIT_NOFILE, &want) == 0 {
                    l = want;
                }
            }
        }
        #[allow(clippy::unnecessary_cast)] // rlim_t is not u64 on every target
        Some(l.rlim_cur as u64)
    }
    #[cfg(not(unix))]
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    fn limits() -> ConnLimits {
        ConnLimits { header_read: Duration::from_secs(10), keep_alive: Duration::from_secs(30) }
    }

    #[test]
    fn a_new_connection_must_send_a_request_within_the_header_timeout() {
        let w = Arc::new(Watch::new());
        assert_eq!(w.deadline(&limits()), Some(w.opened + Duration::from_secs(10)));
    }

    #[test]
    fn a_connection_answering_a_request_has_no_deadline_and_idles_after() {
        let w = Arc::new(Watch::new());
        let b = w.busy();
        assert_eq!(w.deadline(&limits()), None);
        drop(b);
        let d = w.deadline(&limits()).unwrap();
        assert!(d >= w.opened + Duration::from_secs(30), "keep-alive timeout counts from the answer");
    }

    #[test]
    #[allow(clippy::unnecessary_cast)] // rlim_t is not u64 on every target
    #[allow(unsafe_code)] // getrlimit, to check the result.
    fn the_open_files_limit_is_raised_to_the_hard_limit() {
        let now = raise_open_files_limit().unwrap();
        let mut l = libc::rlimit { rlim_cur: 0, rlim_max: 0 };
        // SAFETY: getrlimit writes the struct.
        assert_eq!(unsafe { libc::getrlimit(libc::RLIMIT_NOFILE, &mut l) }, 0);
        assert_eq!(now, l.rlim_cur as u64);
        assert_eq!(l.rlim_cur, l.rlim_max);
    }
}
