//! The single-flight gate: one computation per key at a time, however many
//! callers ask; every caller of a flight gets its result (success or
//! error), and a flight knows whether anyone still waits for it
//! ([`Wanted`]). Used for renders (`service`) and for fetches from an HTTP
//! origin (`source::http`). It depends on nothing else in the crate.

use std::collections::HashMap;
use std::hash::Hash;
use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex};

use tokio::sync::watch;

/// Runs one computation per key at a time; concurrent callers with the same
/// key share its result (success or error).
pub struct SingleFlight<K, V> {
    flights: Mutex<HashMap<K, Flight<V>>>,
}

/// A flight under way: where its result will appear, and who waits for it.
type Flight<V> = (watch::Receiver<Option<V>>, Wanted);

/// Whether anyone still waits for a flight's result: the callers of
/// [`SingleFlight::run`] count themselves in while they wait, and out when
/// they return or are dropped (a client that hung up drops its request).
/// A computation checks it before costly work that nobody else would reuse.
#[derive(Clone, Default)]
pub struct Wanted(Arc<std::sync::atomic::AtomicUsize>);

impl Wanted {
    /// At least one caller still waits.
    pub fn is_wanted(&self) -> bool {
        self.0.load(Ordering::Acquire) > 0
    }

    /// A count of `n` waiting callers, for tests of what consumes it.
    #[cfg(test)]
    pub(crate) fn waiting(n: usize) -> Wanted {
        Wanted(Arc::new(std::sync::atomic::AtomicUsize::new(n)))
    }

    fn join(&self) -> Waiting {
        self.0.fetch_add(1, Ordering::AcqRel);
        Waiting(self.clone())
    }
}

/// One caller counted in [`Wanted`] until dropped.
struct Waiting(Wanted);

impl Drop for Waiting {
    fn drop(&mut self) {
        self.0 .0.fetch_sub(1, Ordering::AcqRel);
    }
}

impl<K: Eq + Hash + Clone + Send + 'static, V: Clone + Send + Sync + 'static> Default for SingleFlight<K, V> {
    fn default() -> Self {
        SingleFlight { flights: Mutex::new(HashMap::new()) }
    }
}

impl<K: Eq + Hash + Clone + Send + 'static, V: Clone + Send + Sync + 'static> SingleFlight<K, V> {
    /// Returns the result of `make` for `key`, running it only if no identical
    /// flight is under way. The computation runs in its own task, so it
    /// completes (and feeds its waiters) even if the first caller goes away.
    /// The bool is true for the caller whose call started the flight; the
    /// value is `None` only if the computation panicked.
    pub async fn run<F, Fut>(self: &Arc<Self>, key: K, make: F) -> (Option<V>, bool)
    where
        F: FnOnce() -> Fut,
        Fut: std::future::Future<Output = V> + Send + 'static,
    {
        self.run_wanted(key, |_| make()).await
    }

    /// [`run`](Self::run), with `make` given the flight's [`Wanted`], so the
    /// computation can skip work once every caller has gone.
    pub async fn run_wanted<F, Fut>(self: &Arc<Self>, key: K, make: F) -> (Option<V>, bool)
    where
        F: FnOnce(Wanted) -> Fut,
        Fut: std::future::Future<Output = V> + Send + 'static,
    {
        let (mut rx, leader, _waiting) = {
            let mut map = self.flights.lock().unwrap_or_else(|p| p.into_inner());
            match map.get(&key) {
                Some((rx, wanted)) => (rx.clone(), false, wanted.join()),
                None => {
                    let (tx, rx) = watch::channel(None);
                    let wanted = Wanted::default();
                    let waiting = wanted.join();
                    map.insert(key.clone(), (rx.clone(), wanted.clone()));
                    let fut = make(wanted);
                    let me = self.clone();
                    let k = key.clone();
                    tokio::spawn(async move {
                        let v = fut.await;
                        // Remove the flight before publishing, so a caller
                        // arriving after this point starts afresh (and finds
                        // the cache filled by `fut` if it succeeded).
                        me.flights.lock().unwrap_or_else(|p| p.into_inner()).remove(&k);
                        let _ = tx.send(Some(v));
                    });
                    (rx, true, waiting)
                }
            }
        };
        loop {
            if let Some(v) = rx.borrow_and_update().clone() {
                return (Some(v), leader);
            }
            if rx.changed().await.is_err() {
                // The flight's task ended without publishing (it panicked).
                return (rx.borrow().clone(), leader);
            }
        }
    }

    /// Flights under way (for /metrics).
    pub fn in_flight(&self) -> usize {
        self.flights.lock().map(|m| m.len()).unwrap_or(0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::AtomicUsize;
    use std::time::Duration;

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn sixty_four_identical_calls_run_one_computation() {
        let sf: Arc<SingleFlight<String, Result<u32, String>>> = Arc::new(SingleFlight::default());
        let runs = Arc::new(AtomicUsize::new(0));
        let mut tasks = vec![];
        for _ in 0..64 {
            let sf = sf.clone();
            let runs = runs.clone();
            tasks.push(tokio::spawn(async move {
                sf.run("k".to_string(), move || async move {
                    runs.fetch_add(1, Ordering::SeqCst);
                    tokio::time::sleep(Duration::from_millis(100)).await;
                    Ok(42)
                })
                .await
            }));
        }
        let mut leaders = 0;
        for t in tasks {
            let (v, leader) = t.await.unwrap();
            assert_eq!(v, Some(Ok(42)));
            leaders += leader as usize;
        }
        assert_eq!(runs.load(Ordering::SeqCst), 1);
        assert_eq!(leaders, 1);
        assert_eq!(sf.in_flight(), 0);
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn every_waiter_of_a_failed_flight_gets_the_error() {
        let sf: Arc<SingleFlight<String, Result<u32, String>>> = Arc::new(SingleFlight::default());
        let runs = Arc::new(AtomicUsize::new(0));
        let mut tasks = vec![];
        for _ in 0..16 {
            let sf = sf.clone();
            let runs = runs.clone();
            tasks.push(tokio::spawn(async move {
                sf.run("k".to_string(), move || async move {
                    runs.fetch_add(1, Ordering::SeqCst);
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    Err::<u32, _>("corrupt".to_string())
                })
                .await
                .0
            }));
        }
        for t in tasks {
            assert_eq!(t.await.unwrap(), Some(Err("corrupt".to_string())));
        }
        assert_eq!(runs.load(Ordering::SeqCst), 1);
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_flight_whose_every_caller_has_gone_is_no_longer_wanted() {
        let sf: Arc<SingleFlight<String, bool>> = Arc::new(SingleFlight::default());
        let (seen_tx, seen_rx) = tokio::sync::oneshot::channel::<Wanted>();
        let (go_tx, go_rx) = tokio::sync::oneshot::channel::<()>();
        let sf2 = sf.clone();
        let caller = tokio::spawn(async move {
            sf2.run_wanted("k".to_string(), move |w| async move {
                let _ = seen_tx.send(w.clone());
                let _ = go_rx.await;
                w.is_wanted()
            })
            .await
        });
        let wanted = seen_rx.await.unwrap();
        assert!(wanted.is_wanted(), "its caller waits");
        // A second caller joins, then both go away (a client hanging up
        // drops its request future).
        let sf3 = sf.clone();
        let second = tokio::spawn(async move { sf3.run("k".to_string(), || async { true }).await });
        tokio::time::sleep(Duration::from_millis(20)).await;
        assert!(wanted.is_wanted());
        caller.abort();
        second.abort();
        let _ = caller.await;
        let _ = second.await;
        assert!(!wanted.is_wanted(), "nobody waits any more");
        let _ = go_tx.send(());
    }
}
