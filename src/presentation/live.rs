//! The catalogue in service. It is loaded at start and replaced whole by a
//! reload (`POST /admin/reload`, or SIGHUP), so a librarian's edit to an
//! item file shows without a restart. Each load carries its own search
//! indexes (rebuilt after a reload, in the background or by the first
//! search). The MD5 checksums shown in canvas metadata are kept across
//! reloads, keyed by the file's path, size and modification time, so an
//! unchanged file is read once per process.
//!
//! Blocking (loading reads item files, checksums read images): callers run
//! it off the reactor.
//!
//! Architecture Invariant: a request holds one [`Loaded`] for its whole life,
//! so a manifest and the search answers it leads to never mix two loads.

use std::collections::HashMap;
use std::io::Read;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, RwLock};
use std::time::SystemTime;

use md5::{Digest, Md5};

use super::catalogue::{Catalogue, CatalogueError};
use super::indexes::Indexes;

/// One load of the catalogue and what is derived from it.
pub struct Loaded {
    pub catalogue: Catalogue,
    /// The search indexes of this load's items.
    pub indexes: Indexes,
}

impl Loaded {
    fn new(catalogue: Catalogue) -> Arc<Loaded> {
        Arc::new(Loaded { catalogue, indexes: Indexes::default() })
    }
}

/// What a reload found, for the operator (no file paths: those are logged).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ReloadReport {
    /// Items loaded (enabled or not).
    pub items: usize,
    /// Items that have a manifest.
    pub manifests: usize,
    /// Ids of the items skipped for errors.
    pub skipped: Vec<String>,
    /// Problems logged (skipped items, unreadable defaults, unsafe folder names).
    pub problems: usize,
}

/// The catalogue in service.
pub struct LiveCatalogue {
    catalogue_root: PathBuf,
    image_root: PathBuf,
    current: RwLock<Arc<Loaded>>,
    /// One reload at a time (two at once would read the tree twice for nothing).
    reloading: Mutex<()>,
    /// MD5 of image files, kept across reloads.
    pub checksums: Checksums,
}

impl LiveCatalogue {
    /// Loads the catalogue; problems are logged and the bad items skipped.
    pub fn load(catalogue_root: &Path, image_root: &Path) -> LiveCatalogue {
        let (cat, errors) = Catalogue::load(catalogue_root, image_root);
        log_errors(&errors, image_root);
        LiveCatalogue {
            catalogue_root: catalogue_root.to_path_buf(),
            image_root: image_root.to_path_buf(),
            current: RwLock::new(Loaded::new(cat)),
            reloading: Mutex::new(()),
            checksums: Checksums::default(),
        }
    }

    /// The load in service now.
    pub fn current(&self) -> Arc<Loaded> {
        match self.current.read() {
            Ok(g) => g.clone(),
            Err(p) => p.into_inner().clone(),
        }
    }

    /// Reads the catalogue again and puts it in service. Requests already
    /// running keep the load they started with.
    pub fn reload(&self) -> ReloadReport {
        let _one = self.reloading.lock().unwrap_or_else(|p| p.into_inner());
        let (cat, errors) = Catalogue::load(&self.catalogue_root, &self.image_root);
        log_errors(&errors, &self.image_root);
        let report = ReloadReport {
            items: cat.items().len(),
            manifests: cat.items().iter().filter(|i| i.has_manifest()).count(),
            skipped: errors.iter().filter_map(|e| e.item_id().map(str::to_string)).collect(),
            problems: errors.len(),
        };
        let fresh = Loaded::new(cat);
        match self.current.write() {
            Ok(mut g) => *g = fresh,
            Err(p) => *p.into_inner() = fresh,
        }
        tracing::info!(
            items = report.items,
            manifests = report.manifests,
            problems = report.problems,
            "catalogue reloaded"
        );
        report
    }
}

/// Warns of each error, but for the one that is no error: no `items`
/// folder under the image root, the conventional place a catalogue follows
/// the images to (`serve --images DIR` on a folder of plain images). That
/// one is said once, at info level.
fn log_errors(errors: &[CatalogueError], image_root: &Path) {
    for e in errors {
        if let CatalogueError::Root { path, source } = e {
            if source.kind() == std::io::ErrorKind::NotFound
                && *path == image_root.join(super::catalogue::CONVENTIONAL_FOLDER)
            {
                tracing::info!(folder = %path.display(), "no item catalogue (no manifests to serve)");
                continue;
            }
        }
        tracing::warn!(error = %e, "catalogue");
    }
}

/// MD5 checksums of files, by path, size and modification time; kept in a
/// file when given one, so that a restart does not read every image again.
#[derive(Default)]
pub struct Checksums {
    /// Per file: the size and modification time its checksum was read at.
    /// A changed file replaces its entry (one entry a file, however often
    /// it changes).
    known: Mutex<HashMap<PathBuf, (u64, SystemTime, String)>>,
    /// Where each checksum computed is appended (one JSON line).
    store: Option<PathBuf>,
}

/// One line of the checksum file.
#[derive(serde::Serialize, serde::Deserialize)]
struct StoredSum {
    path: String,
    len: u64,
    /// Modification time: seconds and nanoseconds since the Unix epoch.
    mtime: (u64, u32),
    md5: String,
}

impl Checksums {
    /// Checksums kept in `file` (JSON lines, appended as they are computed):
    /// those it holds are known at once, to be used while their file keeps
    /// its size and modification time. A torn or foreign line is skipped; a
    /// file grown to more than twice its live entries is rewritten. Whoever
    /// calls this must be the only writer of `file` (the server keeps it in
    /// its disk tier's folder, whose lock it holds).
    pub fn kept_in(file: PathBuf) -> Checksums {
        let mut known = HashMap::new();
        let mut lines = 0usize;
        if let Ok(text) = std::fs::read_to_string(&file) {
            for line in text.lines() {
                lines += 1;
                let Ok(s) = serde_json::from_str::<StoredSum>(line) else { continue };
                let mtime = SystemTime::UNIX_EPOCH + std::time::Duration::new(s.mtime.0, s.mtime.1);
                known.insert(PathBuf::from(s.path), (s.len, mtime, s.md5));
            }
        }
        if lines > 2 * known.len() + 64 {
            rewrite_store(&file, &known);
        }
        Checksums { known: Mutex::new(known), store: Some(file) }
    }

    /// The MD5 of the file at `path` (lower-case hex), read once while the
    /// file keeps its size and modification time; None if it cannot be read.
    pub fn md5(&self, path: &Path) -> Option<String> {
        let meta = std::fs::metadata(path).ok()?;
        let (len, modified) = (meta.len(), meta.modified().ok()?);
        let known = self.known.lock().ok().and_then(|m| m.get(path).cloned());
        if let Some((l, t, hex)) = known {
            if (l, t) == (len, modified) {
                return Some(hex);
            }
        }
        let hex = md5_of_file(path).map_err(|e| tracing::warn!(error = %e, "checksum not computed")).ok()?;
        if let Ok(mut m) = self.known.lock() {
            m.insert(path.to_path_buf(), (len, modified, hex.clone()));
        }
        if let Some(store) = &self.store {
            append_to_store(store, path, len, modified, &hex);
        }
        Some(hex)
    }

    /// How many checksums are known.
    pub fn len(&self) -> usize {
        self.known.lock().map(|m| m.len()).unwrap_or(0)
    }

    /// Whether none is known yet.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

fn stored_line(path: &Path, len: u64, modified: SystemTime, md5: &str) -> Option<String> {
    let since = modified.duration_since(SystemTime::UNIX_EPOCH).ok()?;
    // A path that is not UTF-8 is not kept (it is read again after a restart).
    let path = path.to_str()?.to_string();
    let s = StoredSum { path, len, mtime: (since.as_secs(), since.subsec_nanos()), md5: md5.to_string() };
    serde_json::to_string(&s).ok().map(|l| l + "\n")
}

/// Appends one checksum; a failure costs only a read after the next start.
fn append_to_store(store: &Path, path: &Path, len: u64, modified: SystemTime, md5: &str) {
    use std::io::Write;
    let Some(line) = stored_line(path, len, modified, md5) else { return };
    let written = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(store)
        .and_then(|mut f| f.write_all(line.as_bytes()));
    if let Err(e) = written {
        tracing::debug!(error = %e, "checksum not kept on disk");
    }
}

/// Writes the live entries to a new file that replaces `store` at once.
fn rewrite_store(store: &Path, known: &HashMap<PathBuf, (u64, SystemTime, String)>) {
    let body: String = known.iter().filter_map(|(p, (l, t, h))| stored_line(p, *l, *t, h)).collect();
    let tmp = store.with_extension("tmp");
    if std::fs::write(&tmp, body).and_then(|_| std::fs::rename(&tmp, store)).is_err() {
        let _ = std::fs::remove_file(&tmp);
    }
}

fn md5_of_file(path: &Path) -> std::io::Result<String> {
    let mut f = std::fs::File::open(path)?;
    let mut h = Md5::new();
    let mut buf = vec![0u8; 1 << 20];
    loop {
        let n = f.read(&mut buf)?;
        if n == 0 {
            break;
        }
        h.update(&buf[..n]);
    }
    Ok(h.finalize().iter().map(|b| format!("{b:02x}")).collect())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::presentation::catalogue::tests::tree;
    use std::io::Write;

    const ITEM: &str = "[metadata]\n\"dspace.iiif.enabled\" = true\n[[bitstreams]]\nfile = \"p.jpg\"\n";

    #[test]
    fn md5_matches_the_reference_digest_and_is_recomputed_when_the_file_changes() {
        let t = tree(&[("f.txt", "The quick brown fox jumps over the lazy dog")]);
        let sums = Checksums::default();
        let p = t.path().join("f.txt");
        assert_eq!(sums.md5(&p).as_deref(), Some("9e107d9d372bb6826bd81d3542a419d6"));
        assert_eq!(sums.len(), 1);
        std::fs::write(&p, "").unwrap();
        assert_eq!(sums.md5(&p).as_deref(), Some("d41d8cd98f00b204e9800998ecf8427e"), "new size: read again");
        assert_eq!(sums.len(), 1, "the changed file's old checksum is not kept beside the new");
        assert_eq!(sums.md5(&t.path().join("missing")), None);
    }

    #[test]
    fn checksums_kept_in_a_file_are_known_after_a_restart_until_their_image_changes() {
        let t = tree(&[("a.jpg", "first image"), ("b.jpg", "second image")]);
        let store = t.path().join("checksums.jsonl");
        let (a, b) = (t.path().join("a.jpg"), t.path().join("b.jpg"));
        let first = Checksums::kept_in(store.clone());
        let (sum_a, sum_b) = (first.md5(&a).unwrap(), first.md5(&b).unwrap());
        drop(first);
        // After a restart: known without reading the images. Shown by
        // making the image unreadable while keeping its size and time: a
        // read would fail; the kept checksum answers.
        let restarted = Checksums::kept_in(store.clone());
        assert_eq!(restarted.len(), 2);
        let meta = std::fs::metadata(&a).unwrap();
        std::fs::write(&a, "FIRST IMAGE").unwrap(); // same length
        std::fs::File::options().write(true).open(&a).unwrap().set_modified(meta.modified().unwrap()).unwrap();
        assert_eq!(restarted.md5(&a), Some(sum_a.clone()), "kept: same size and time");
        // A changed image (new time) is read again, and that is kept too.
        std::fs::write(&b, "changed").unwrap();
        let new_b = restarted.md5(&b).unwrap();
        assert_ne!(new_b, sum_b);
        let again = Checksums::kept_in(store.clone());
        assert_eq!(again.md5(&b), Some(new_b));
        // A torn last line (a crash mid-append) is skipped, the rest kept.
        std::fs::OpenOptions::new().append(true).open(&store).unwrap().write_all(b"{\"path\": \"/x").unwrap();
        assert_eq!(Checksums::kept_in(store.clone()).len(), 2);
    }

    #[test]
    fn a_checksum_file_grown_with_stale_lines_is_rewritten_with_the_live_ones() {
        let t = tree(&[("a.jpg", "image")]);
        let store = t.path().join("checksums.jsonl");
        let a = t.path().join("a.jpg");
        let sums = Checksums::kept_in(store.clone());
        for i in 0..100u32 {
            std::fs::write(&a, format!("version {i}")).unwrap();
            let t0 = SystemTime::UNIX_EPOCH + std::time::Duration::from_secs(1_000_000 + u64::from(i));
            std::fs::File::options().write(true).open(&a).unwrap().set_modified(t0).unwrap();
            sums.md5(&a).unwrap();
        }
        let lines = |p: &Path| std::fs::read_to_string(p).unwrap().lines().count();
        assert_eq!(lines(&store), 100);
        let reopened = Checksums::kept_in(store.clone());
        assert_eq!(reopened.len(), 1);
        assert_eq!(lines(&store), 1, "rewritten with the one live entry");
        assert!(reopened.md5(&a).is_some());
    }

    #[test]
    fn reload_puts_a_new_load_in_service_and_leaves_held_loads_alone() {
        let t = tree(&[("items/a/item.toml", ITEM), ("items/a/p.jpg", "x")]);
        let live = LiveCatalogue::load(&t.path().join("items"), t.path());
        let before = live.current();
        assert_eq!(before.catalogue.items().len(), 1);
        std::fs::create_dir_all(t.path().join("items/b")).unwrap();
        std::fs::write(t.path().join("items/b/item.toml"), ITEM).unwrap();
        std::fs::write(t.path().join("items/b/p.jpg"), "x").unwrap();
        std::fs::create_dir_all(t.path().join("items/bad")).unwrap();
        std::fs::write(t.path().join("items/bad/item.toml"), "[[bitstreams]]\nfile = \"missing.jpg\"\n").unwrap();
        let report = live.reload();
        assert_eq!(report, ReloadReport { items: 2, manifests: 2, skipped: vec!["bad".into()], problems: 1 });
        assert_eq!(live.current().catalogue.items().len(), 2);
        assert_eq!(before.catalogue.items().len(), 1, "a load already held is unchanged");
    }
}
