//! The bounded worker pool that runs CPU-heavy work (decode, transform,
//! encode) off the async reactor.
//!
//! Architecture invariant: image work never runs on a tokio worker thread.
//! The queue in front of the workers is bounded; when it is full, `submit`
//! fails at once and the request is answered 503 with `Retry-After`.
//!
//! Two classes of work share the workers. *Requests* (`submit`) are the
//! work a client waits for. *Background* work (`submit_background`: eager
//! tiling, which encodes the tiles of a decoded area before anyone asks for
//! them) runs only when no request job is queued, from its own bounded
//! queue, and is dropped, never queued without bound, when that is full. So
//! a first request never waits behind a long queue of eager work: at most
//! the background jobs already running (a few milliseconds each) are ahead
//! of it.

use std::collections::VecDeque;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Condvar, Mutex};
use std::thread;

use tokio::sync::oneshot;

/// A queued job. It gets the [`Done`] of its run and drops it as soon as
/// its work is over, before it hands the result on: from then the worker
/// counts as free, though its thread is still on its way back to the queue.
type Job = Box<dyn for<'a> FnOnce(Done<'a>) + Send + 'static>;

/// A job's run, counted in [`PoolStats::running`] until dropped (also by a
/// panic's unwinding).
struct Done<'a> {
    stats: &'a PoolStats,
    background: bool,
}

impl Drop for Done<'_> {
    fn drop(&mut self) {
        self.stats.running.fetch_sub(1, Ordering::Relaxed);
        if self.background {
            self.stats.background_running.fetch_sub(1, Ordering::Relaxed);
        }
        self.stats.completed.fetch_add(1, Ordering::Relaxed);
    }
}

/// A fixed set of threads fed by two bounded queues.
pub struct Pool {
    shared: Arc<Shared>,
    stats: Arc<PoolStats>,
    workers: usize,
}

struct Queues {
    requests: VecDeque<Job>,
    background: VecDeque<Job>,
    closed: bool,
}

struct Shared {
    queues: Mutex<Queues>,
    ready: Condvar,
    capacity: usize,
    background_capacity: usize,
}

/// Counters for /metrics.
#[derive(Default)]
pub struct PoolStats {
    /// Request jobs waiting for a worker.
    pub queued: AtomicUsize,
    /// Jobs (of either class) on a worker now.
    pub running: AtomicUsize,
    pub rejected: AtomicUsize,
    pub completed: AtomicUsize,
    /// Background jobs waiting for a worker.
    pub background_queued: AtomicUsize,
    /// Background jobs on a worker now (also counted in `running`).
    pub background_running: AtomicUsize,
    /// Background jobs dropped because their queue was full.
    pub background_dropped: AtomicUsize,
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum Class {
    Short,
    Request,
    Background,
}

/// The queue was full.
#[derive(Debug)]
pub struct Full;

impl Pool {
    /// Starts `workers` threads behind a queue of `queue` request jobs (and
    /// as many background jobs).
    pub fn new(workers: usize, queue: usize) -> std::io::Result<Pool> {
        Pool::with_background(workers, queue, queue)
    }

    /// [`Pool::new`] with its own bound for the background queue.
    pub fn with_background(workers: usize, queue: usize, background: usize) -> std::io::Result<Pool> {
        let workers = workers.max(1);
        let shared = Arc::new(Shared {
            queues: Mutex::new(Queues { requests: VecDeque::new(), background: VecDeque::new(), closed: false }),
            ready: Condvar::new(),
            capacity: queue.max(1),
            background_capacity: background,
        });
        let stats = Arc::new(PoolStats::default());
        for i in 0..workers {
            let (shared, stats) = (shared.clone(), stats.clone());
            thread::Builder::new().name(format!("tessera-worker-{i}")).spawn(move || worker(&shared, &stats))?;
        }
        Ok(Pool { shared, stats, workers })
    }

    pub fn workers(&self) -> usize {
        self.workers
    }

    pub fn stats(&self) -> &PoolStats {
        &self.stats
    }

    /// Whether a worker would take a request job submitted now without it
    /// waiting behind other request work (the queued and running request
    /// jobs are fewer than the workers; background jobs yield to it). A
    /// hint: other threads submit concurrently.
    pub fn has_idle_worker(&self) -> bool {
        let running = self.stats.running.load(Ordering::Relaxed);
        let background = self.stats.background_running.load(Ordering::Relaxed);
        let busy = self.stats.queued.load(Ordering::Relaxed) + running.saturating_sub(background);
        busy < self.workers
    }

    /// Queues `f` as request work; resolves with its result. Fails at once
    /// if the queue is full.
    pub fn submit<T, F>(&self, f: F) -> Result<oneshot::Receiver<T>, Full>
    where
        T: Send + 'static,
        F: FnOnce() -> T + Send + 'static,
    {
        self.submit_as(Class::Request, f)
    }

    /// Queues `f` as request work ahead of the request jobs already queued:
    /// for short jobs (cutting a tile from decoded pixels and encoding it,
    /// a few milliseconds) that would otherwise wait behind whole decodes.
    pub fn submit_short<T, F>(&self, f: F) -> Result<oneshot::Receiver<T>, Full>
    where
        T: Send + 'static,
        F: FnOnce() -> T + Send + 'static,
    {
        self.submit_as(Class::Short, f)
    }

    fn submit_as<T, F>(&self, class: Class, f: F) -> Result<oneshot::Receiver<T>, Full>
    where
        T: Send + 'static,
        F: FnOnce() -> T + Send + 'static,
    {
        if crate::faults::pool_should_refuse() {
            self.stats.rejected.fetch_add(1, Ordering::Relaxed);
            return Err(Full);
        }
        let (otx, orx) = oneshot::channel();
        let job: Job = Box::new(move |done: Done<'_>| {
            #[cfg(feature = "fault-injection")]
            if crate::faults::worker_should_panic() {
                crate::faults::injected_panic();
            }
            let out = f();
            // Free before the caller hears of it: the caller may at once
            // ask whether a worker is idle (a decode ahead, say).
            drop(done);
            let _ = otx.send(out);
        });
        if self.push_at(job, class) {
            Ok(orx)
        } else {
            self.stats.rejected.fetch_add(1, Ordering::Relaxed);
            Err(Full)
        }
    }

    /// Queues `f` as background work, run only while no request job waits.
    /// Fails at once (and counts a drop) if the background queue is full.
    pub fn submit_background<F>(&self, f: F) -> Result<(), Full>
    where
        F: FnOnce() + Send + 'static,
    {
        if self.push_at(Box::new(move |_done: Done<'_>| f()), Class::Background) {
            Ok(())
        } else {
            self.stats.background_dropped.fetch_add(1, Ordering::Relaxed);
            Err(Full)
        }
    }

    fn push_at(&self, job: Job, class: Class) -> bool {
        let mut q = self.shared.queues.lock().unwrap_or_else(|e| e.into_inner());
        if class == Class::Background {
            if q.background.len() >= self.shared.background_capacity {
                return false;
            }
            q.background.push_back(job);
            self.stats.background_queued.fetch_add(1, Ordering::Relaxed);
        } else {
            if q.requests.len() >= self.shared.capacity {
                return false;
            }
            if class == Class::Short {
                q.requests.push_front(job);
            } else {
                q.requests.push_back(job);
            }
            self.stats.queued.fetch_add(1, Ordering::Relaxed);
        }
        drop(q);
        self.shared.ready.notify_one();
        true
    }
}

impl Drop for Pool {
    fn drop(&mut self) {
        self.shared.queues.lock().unwrap_or_else(|e| e.into_inner()).closed = true;
        self.shared.ready.notify_all();
    }
}

fn worker(shared: &Shared, stats: &PoolStats) {
    loop {
        let (job, background) = {
            let mut q = shared.queues.lock().unwrap_or_else(|e| e.into_inner());
            loop {
                // Counted running before it leaves the queue, so
                // `has_idle_worker` never sees it in neither.
                if let Some(j) = q.requests.pop_front() {
                    stats.running.fetch_add(1, Ordering::Relaxed);
                    stats.queued.fetch_sub(1, Ordering::Relaxed);
                    break (j, false);
                }
                if let Some(j) = q.background.pop_front() {
                    stats.background_running.fetch_add(1, Ordering::Relaxed);
                    stats.running.fetch_add(1, Ordering::Relaxed);
                    stats.background_queued.fetch_sub(1, Ordering::Relaxed);
                    break (j, true);
                }
                if q.closed {
                    return;
                }
                q = shared.ready.wait(q).unwrap_or_else(|e| e.into_inner());
            }
        };
        // A panic in a codec must not take the worker down with it (its
        // `Done` is dropped by the unwinding).
        let done = Done { stats, background };
        let _ = std::panic::catch_unwind(std::panic::AssertUnwindSafe(move || job(done)));
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Barrier;

    /// Occupies one worker until the returned barrier is waited on, and
    /// returns once that worker has taken the job off the queue.
    async fn hold_one_worker(pool: &Pool) -> Arc<Barrier> {
        let gate = Arc::new(Barrier::new(2));
        let g = gate.clone();
        let _busy = pool.submit(move || {
            g.wait();
        });
        while pool.stats().running.load(Ordering::SeqCst) == 0 {
            tokio::task::yield_now().await;
        }
        gate
    }

    #[tokio::test]
    async fn jobs_run_off_the_caller_and_return_results() {
        let pool = Pool::new(2, 4).unwrap();
        let rx = pool.submit(|| thread::current().name().map(str::to_string)).unwrap();
        let name = rx.await.unwrap().unwrap();
        assert!(name.starts_with("tessera-worker-"));
    }

    #[tokio::test]
    async fn a_full_queue_rejects_at_once() {
        let pool = Pool::new(1, 1).unwrap();
        let gate = hold_one_worker(&pool).await;
        let _queued = pool.submit(|| ()).unwrap();
        assert!(pool.submit(|| ()).is_err(), "queue of one is full");
        assert_eq!(pool.stats().rejected.load(Ordering::SeqCst), 1);
        gate.wait();
    }

    #[tokio::test]
    async fn a_panicking_job_does_not_kill_the_worker() {
        let pool = Pool::new(1, 4).unwrap();
        let rx = pool.submit(|| -> u32 { panic!("boom") }).unwrap();
        assert!(rx.await.is_err(), "sender dropped by the panic");
        assert_eq!(pool.submit(|| 7).unwrap().await.unwrap(), 7);
    }

    #[tokio::test]
    async fn a_worker_counts_as_free_by_the_time_its_result_arrives() {
        // A request's header probe, then its decode: the decode's caller
        // asks at once whether a worker is idle for a decode ahead. The
        // probe's worker must not still count as running then.
        let pool = Pool::new(1, 4).unwrap();
        for i in 0..200u32 {
            assert_eq!(pool.submit(move || i).unwrap().await.unwrap(), i);
            assert_eq!(pool.stats().running.load(Ordering::Relaxed), 0, "run {i}");
            assert!(pool.has_idle_worker(), "run {i}");
        }
        // A panicking job is not counted running either, once it is over.
        assert!(pool.submit(|| -> u32 { panic!("boom") }).unwrap().await.is_err());
        let t = std::time::Instant::now();
        while pool.stats().running.load(Ordering::Relaxed) > 0 && t.elapsed().as_secs() < 10 {
            tokio::task::yield_now().await;
        }
        assert_eq!(pool.stats().running.load(Ordering::Relaxed), 0);
        assert_eq!(pool.stats().completed.load(Ordering::Relaxed), 201);
    }

    #[tokio::test]
    async fn request_jobs_run_before_queued_background_jobs() {
        let pool = Pool::new(1, 8).unwrap();
        let gate = hold_one_worker(&pool).await;
        let order = Arc::new(Mutex::new(Vec::new()));
        for i in 0..3 {
            let o = order.clone();
            pool.submit_background(move || o.lock().unwrap().push(format!("background {i}"))).unwrap();
        }
        let o = order.clone();
        let last = pool.submit(move || o.lock().unwrap().push("request".to_string())).unwrap();
        gate.wait();
        last.await.unwrap();
        // The request job, queued after the background ones, ran first.
        let o = order.clone();
        pool.submit(move || drop(o)).unwrap().await.unwrap();
        while pool.stats().background_queued.load(Ordering::SeqCst) > 0 || order.lock().unwrap().len() < 4 {
            tokio::task::yield_now().await;
        }
        assert_eq!(order.lock().unwrap()[0], "request");
        assert_eq!(order.lock().unwrap().len(), 4);
    }

    #[tokio::test]
    async fn a_full_background_queue_drops_and_counts() {
        let pool = Pool::with_background(1, 4, 1).unwrap();
        let gate = hold_one_worker(&pool).await;
        assert!(pool.submit_background(|| ()).is_ok());
        assert!(pool.submit_background(|| ()).is_err(), "background queue of one is full");
        assert_eq!(pool.stats().background_dropped.load(Ordering::SeqCst), 1);
        // Request work is still admitted.
        let rx = pool.submit(|| 3).unwrap();
        gate.wait();
        assert_eq!(rx.await.unwrap(), 3);
    }

    #[tokio::test]
    async fn short_jobs_go_ahead_of_queued_request_jobs() {
        let pool = Pool::new(1, 8).unwrap();
        let gate = hold_one_worker(&pool).await;
        let order = Arc::new(Mutex::new(Vec::new()));
        let o = order.clone();
        let long = pool.submit(move || o.lock().unwrap().push("decode")).unwrap();
        let o = order.clone();
        let short = pool.submit_short(move || o.lock().unwrap().push("cut")).unwrap();
        gate.wait();
        short.await.unwrap();
        long.await.unwrap();
        assert_eq!(*order.lock().unwrap(), vec!["cut", "decode"]);
    }
}
