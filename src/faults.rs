//! Faults injected on purpose, for the soak test (`tests/soak.rs`) only: a
//! pool worker that panics inside a job, and a pool that refuses a job as
//! if its queue were full. Compiled in only with the `fault-injection`
//! cargo feature, which no release build or package enables; without it
//! every check here is a constant `false` and the optimiser removes it.
//!
//! With the feature, the rates come from the environment at the first
//! check, in jobs per thousand: `TESSERA_FAULT_WORKER_PANICS` and
//! `TESSERA_FAULT_POOL_REFUSALS` (unset or 0: never). The draws come from
//! a fixed-seed generator shared by the process, so a run's faults depend
//! on the order of jobs only.

/// Whether the job a worker is about to run should panic instead.
#[inline]
pub fn worker_should_panic() -> bool {
    imp::draw(imp::Kind::Panic)
}

/// Whether the pool should refuse the job being submitted (the request
/// then gets what a full queue gives: 503 with Retry-After).
#[inline]
pub fn pool_should_refuse() -> bool {
    imp::draw(imp::Kind::Refuse)
}

/// Panics, as an injected fault: called by a pool job when
/// [`worker_should_panic`] said so. The pool catches it like any panic of
/// a codec.
#[cfg(feature = "fault-injection")]
pub fn injected_panic() -> ! {
    std::panic::panic_any("injected worker panic (fault-injection)")
}

#[cfg(not(feature = "fault-injection"))]
mod imp {
    pub enum Kind {
        Panic,
        Refuse,
    }

    #[inline(always)]
    pub fn draw(_kind: Kind) -> bool {
        false
    }
}

#[cfg(feature = "fault-injection")]
mod imp {
    use std::sync::atomic::{AtomicU64, Ordering};
    use std::sync::OnceLock;

    pub enum Kind {
        Panic,
        Refuse,
    }

    /// Per-thousand rates: (panics, refusals).
    fn rates() -> (u64, u64) {
        static RATES: OnceLock<(u64, u64)> = OnceLock::new();
        *RATES.get_or_init(|| {
            let read = |name: &str| std::env::var(name).ok().and_then(|v| v.parse::<u64>().ok()).unwrap_or(0).min(1000);
            (read("TESSERA_FAULT_WORKER_PANICS"), read("TESSERA_FAULT_POOL_REFUSALS"))
        })
    }

    /// splitmix64 over a shared counter.
    fn next() -> u64 {
        static STATE: AtomicU64 = AtomicU64::new(0x005E_ED0F_FA17);
        let mut z = STATE.fetch_add(0x9E37_79B9_7F4A_7C15, Ordering::Relaxed).wrapping_add(0x9E37_79B9_7F4A_7C15);
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    pub fn draw(kind: Kind) -> bool {
        let (panics, refusals) = rates();
        let rate = match kind {
            Kind::Panic => panics,
            Kind::Refuse => refusals,
        };
        rate > 0 && next() % 1000 < rate
    }
}
