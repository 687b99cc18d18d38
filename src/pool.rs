//! The bounded worker pool that runs CPU-heavy work (decode, transform,
//! encode) off the async reactor.
//!
//! Architecture invariant: image work never runs on a tokio worker thread.
//! The queue in front of the workers is bounded; when it is full, `submit`
//! fails at once and the request is answered 503 with `Retry-After`.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::mpsc::{sync_channel, Receiver, SyncSender, TrySendError};
use std::sync::{Arc, Mutex};
use std::thread;

use tokio::sync::oneshot;

type Job = Box<dyn FnOnce() + Send + 'static>;

/// A fixed set of threads fed by a bounded queue.
pub struct Pool {
    tx: SyncSender<Job>,
    stats: Arc<PoolStats>,
    workers: usize,
}

/// Counters for /metrics.
#[derive(Default)]
pub struct PoolStats {
    pub queued: AtomicUsize,
    pub running: AtomicUsize,
    pub rejected: AtomicUsize,
    pub completed: AtomicUsize,
}

/// The queue was full.
#[derive(Debug)]
pub struct Full;

impl Pool {
    /// Starts `workers` threads behind a queue of `queue` jobs.
    pub fn new(workers: usize, queue: usize) -> std::io::Result<Pool> {
        let workers = workers.max(1);
        let (tx, rx) = sync_channel::<Job>(queue.max(1));
        let rx = Arc::new(Mutex::new(rx));
        let stats = Arc::new(PoolStats::default());
        for i in 0..workers {
            let rx = rx.clone();
            let stats = stats.clone();
            thread::Builder::new().name(format!("tessera-worker-{i}")).spawn(move || worker(rx, stats))?;
        }
        Ok(Pool { tx, stats, workers })
    }

    pub fn workers(&self) -> usize {
        self.workers
    }

    pub fn stats(&self) -> &PoolStats {
        &self.stats
    }

    /// Whether a worker would take a job submitted now without it waiting
    /// behind others (the queued and running jobs are fewer than the
    /// workers). A hint: other threads submit concurrently.
    pub fn has_idle_worker(&self) -> bool {
        let busy = self.stats.queued.load(Ordering::Relaxed) + self.stats.running.load(Ordering::Relaxed);
        busy < self.workers
    }

    /// Queues `f`; resolves with its result. Fails at once if the queue is full.
    pub fn submit<T, F>(&self, f: F) -> Result<oneshot::Receiver<T>, Full>
    where
        T: Send + 'static,
        F: FnOnce() -> T + Send + 'static,
    {
        let (otx, orx) = oneshot::channel();
        let job: Job = Box::new(move || {
            let _ = otx.send(f());
        });
        self.stats.queued.fetch_add(1, Ordering::Relaxed);
        match self.tx.try_send(job) {
            Ok(()) => Ok(orx),
            Err(TrySendError::Full(_)) | Err(TrySendError::Disconnected(_)) => {
                self.stats.queued.fetch_sub(1, Ordering::Relaxed);
                self.stats.rejected.fetch_add(1, Ordering::Relaxed);
                Err(Full)
            }
        }
    }
}

fn worker(rx: Arc<Mutex<Receiver<Job>>>, stats: Arc<PoolStats>) {
    loop {
        let job = {
            let Ok(guard) = rx.lock() else { return };
            match guard.recv() {
                Ok(j) => j,
                Err(_) => return,
            }
        };
        // Counted running before it leaves the queue, so `has_idle_worker`
        // never sees it in neither.
        stats.running.fetch_add(1, Ordering::Relaxed);
        stats.queued.fetch_sub(1, Ordering::Relaxed);
        // A panic in a codec must not take the worker down with it.
        let _ = std::panic::catch_unwind(std::panic::AssertUnwindSafe(job));
        stats.running.fetch_sub(1, Ordering::Relaxed);
        stats.completed.fetch_add(1, Ordering::Relaxed);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Barrier;

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
        let gate = Arc::new(Barrier::new(2));
        let g = gate.clone();
        let _busy = pool.submit(move || {
            g.wait();
        });
        // Wait until the worker has taken the first job off the queue.
        while pool.stats().running.load(Ordering::SeqCst) == 0 {
            tokio::task::yield_now().await;
        }
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
}
