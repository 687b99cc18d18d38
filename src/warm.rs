//! The progress of warm jobs (`POST /admin/warm/{id}`): kept in the shared
//! state, driven and reported by `admin`.

use std::collections::HashMap;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

use serde_json::json;

/// Progress of one warm job.
#[derive(Default)]
pub struct WarmJob {
    pub total: AtomicUsize,
    pub done: AtomicUsize,
    pub failed: AtomicUsize,
    pub finished: std::sync::atomic::AtomicBool,
}

impl WarmJob {
    pub(crate) fn status(&self, id: &str) -> serde_json::Value {
        let finished = self.finished.load(Ordering::Relaxed);
        json!({
            "identifier": id,
            "state": if finished { "done" } else { "running" },
            "total": self.total.load(Ordering::Relaxed),
            "done": self.done.load(Ordering::Relaxed),
            "failed": self.failed.load(Ordering::Relaxed),
        })
    }
}

/// The warm jobs started since the server began.
#[derive(Default)]
pub struct WarmJobs {
    pub(crate) jobs: Mutex<HashMap<String, Arc<WarmJob>>>,
}
