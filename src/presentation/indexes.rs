//! The search indexes of the catalogue's items: one [`MemoryIndex`] (behind
//! the [`SearchBackend`] trait) per item, built from its canvases' OCR files
//! by a thread at start or by the first search of the item, whichever comes
//! first, then kept for the life of the loaded catalogue. Two requests that need the same index at once build it
//! once. Blocking (it reads files): callers run it off the reactor.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, OnceLock};

use super::catalogue::Item;
use super::ocr::{self, Word, MAX_OCR_BYTES};
use super::search::{MemoryIndex, SearchBackend};

/// An item's index once built; shared by everyone waiting for it.
type Slot = Arc<OnceLock<Arc<dyn SearchBackend>>>;

/// The built indexes, by item id.
#[derive(Default)]
pub struct Indexes {
    items: Mutex<HashMap<String, Slot>>,
}

impl Indexes {
    /// The index of `item`, whose canvases have the sizes `sizes` gives
    /// (asked only when the index is built).
    pub fn get_or_build(&self, item: &Item, sizes: impl FnOnce() -> Vec<(u32, u32)>) -> Arc<dyn SearchBackend> {
        let cell = match self.items.lock() {
            Ok(mut m) => m.entry(item.id.clone()).or_default().clone(),
            // A poisoned map (a panic while holding it) only costs caching.
            Err(_) => Arc::new(OnceLock::new()),
        };
        cell.get_or_init(|| Arc::new(build(item, &sizes())) as Arc<dyn SearchBackend>).clone()
    }
}

/// Reads and indexes every canvas's OCR. A file that cannot be read or
/// parsed leaves its canvas without words and is logged: one bad page does
/// not hide the rest of the item.
pub fn build(item: &Item, sizes: &[(u32, u32)]) -> MemoryIndex {
    let canvases = item
        .images
        .iter()
        .enumerate()
        .map(|(n, img)| {
            let (Some(path), Some(&(w, h))) = (img.ocr.as_ref().map(|o| &o.path), sizes.get(n)) else {
                return Vec::new();
            };
            read_words(path, w, h).unwrap_or_else(|e| {
                tracing::warn!(item = %item.id, canvas = n, file = %path.display(), error = %e, "OCR file skipped");
                Vec::new()
            })
        })
        .collect();
    let index = MemoryIndex::new(canvases);
    tracing::info!(item = %item.id, words = index.word_count(), "search index built");
    index
}

fn read_words(path: &std::path::Path, w: u32, h: u32) -> Result<Vec<Word>, String> {
    let len = std::fs::metadata(path).map_err(|e| e.to_string())?.len();
    if len > MAX_OCR_BYTES as u64 {
        return Err(format!("{len} bytes, over the limit of {MAX_OCR_BYTES}"));
    }
    let data = std::fs::read(path).map_err(|e| e.to_string())?;
    ocr::parse(&data, w, h).map_err(|e| e.to_string())
}
