//! Sources: turning an identifier into the bytes of an image file, safely.
//!
//! [`Sources`] is the kind configured: files under a root ([`Resolver`]) or
//! images fetched over HTTP into a local folder ([`http::HttpSource`]).
//! Either way the result is a [`Located`] file that is memory-mapped.
//!
//! [`Resolver`] maps identifiers to paths under the image root the way
//! Cantaloupe's FilesystemSource does (`root + prefix + identifier + suffix`),
//! then tries the known image extensions, so `photo` finds `photo.jpg`.
//!
//! Architecture invariant: an identifier can never name a file outside the
//! image root. Traversal (`..`), absolute paths, backslashes and NUL are
//! refused before the file system is touched, and the resolved path is
//! canonicalised and checked to lie under the canonical root (symlinks too).

pub mod http;
#[allow(unsafe_code)] // The map and its SIGBUS handler.
pub mod mmap;
pub mod ranged;
pub mod s3;

use std::fs::File;
use std::path::{Component, Path, PathBuf};
use std::sync::Arc;
use std::time::{SystemTime, UNIX_EPOCH};

use crate::error::{Error, Result};

/// Extensions tried, in order, when the identifier has none on disk.
pub const EXTENSIONS: [&str; 8] = ["jp2", "j2k", "jpx", "jpg", "jpeg", "png", "tif", "tiff"];

/// The identity of a source file's content: it changes when the file does.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct SourceVersion {
    pub len: u64,
    pub mtime_ns: u128,
}

impl SourceVersion {
    /// A short stable hash (for ETags and cache keys).
    pub fn tag(&self) -> u64 {
        fnv1a(&[&self.len.to_le_bytes()[..], &self.mtime_ns.to_le_bytes()[..]])
    }
}

/// FNV-1a over several byte slices: small, stable across runs and builds.
pub fn fnv1a(parts: &[&[u8]]) -> u64 {
    let mut h: u64 = 0xcbf29ce484222325;
    for p in parts {
        for &b in *p {
            h ^= b as u64;
            h = h.wrapping_mul(0x100000001b3);
        }
        h ^= 0xff;
        h = h.wrapping_mul(0x100000001b3);
    }
    h
}

/// An opened source: its bytes (usually a memory map) and version.
pub struct Source {
    pub bytes: mmap::Bytes,
    pub version: SourceVersion,
    pub modified: SystemTime,
    /// The open file, for [`Source::unchanged`]; `None` for fetched copies.
    file: Option<File>,
    /// Link count and change time at open (see [`Source::unchanged`]).
    links_ctime: (u64, i64, i64),
    /// For a remote master read by range: where missing bytes come from.
    remote: Option<Arc<ranged::Remote>>,
}

/// The image's bytes (for decode jobs that hold the source).
impl AsRef<[u8]> for Source {
    fn as_ref(&self) -> &[u8] {
        &self.bytes
    }
}

impl Source {
    /// Whether the open file is still the one served, by one `fstat` (no
    /// path walk: about a third of an `lstat` here). Any write changes its
    /// size or mtime; deleting it, or renaming another file over its path,
    /// drops its link count; renaming it changes its ctime. What this cannot
    /// see is a parent folder renamed: callers re-resolve the path now and
    /// then as well (`service::HOT_PATH_RECHECK`). `None` = unknown.
    pub fn unchanged(&self) -> Option<bool> {
        let meta = self.file.as_ref()?.metadata().ok()?;
        Some(version_of(&meta) == self.version && links_ctime(&meta) == self.links_ctime)
    }

    /// Whether what was read from this source so far can be trusted: no read
    /// of its mapping faulted (the file shrank under it) and the file is the
    /// one opened (one `fstat`). Checked after every decode and header read;
    /// see [`mmap`] for why.
    pub fn intact(&self) -> bool {
        !self.bytes.faulted() && self.unchanged() != Some(false) && !self.remote.as_ref().is_some_and(|r| r.changed())
    }
}

/// A file has every byte; a remote master fetches the ranges it lacks.
impl crate::codec::Need for Source {
    fn need(&self, ranges: &[(u64, u64)]) -> std::result::Result<(), crate::codec::CodecError> {
        match &self.remote {
            Some(r) => r.need(ranges),
            None => Ok(()),
        }
    }

    fn is_remote(&self) -> bool {
        self.remote.is_some()
    }
}

/// Bytes in memory are all there.
impl crate::codec::Need for Vec<u8> {
    fn need(&self, _ranges: &[(u64, u64)]) -> std::result::Result<(), crate::codec::CodecError> {
        Ok(())
    }
}

/// The bytes a decoder reads, and whether they still held once it was done.
/// Decoders make each range readable first ([`crate::codec::Need`]).
pub trait SourceBytes: AsRef<[u8]> + crate::codec::Need + Send + Sync {
    /// False when the reads may have seen a file changing under them: the
    /// result must then be thrown away (see [`Source::intact`]).
    fn intact(&self) -> bool {
        true
    }
}

impl SourceBytes for Source {
    fn intact(&self) -> bool {
        Source::intact(self)
    }
}

/// Bytes in memory never change under a reader.
impl SourceBytes for Vec<u8> {}

#[cfg(unix)]
fn links_ctime(meta: &std::fs::Metadata) -> (u64, i64, i64) {
    use std::os::unix::fs::MetadataExt;
    (meta.nlink(), meta.ctime(), meta.ctime_nsec())
}

#[cfg(not(unix))]
fn links_ctime(_meta: &std::fs::Metadata) -> (u64, i64, i64) {
    (0, 0, 0)
}

/// Where a source lives and what it is now, without opening it.
#[derive(Clone, Debug)]
pub struct Located {
    /// The local file (for an HTTP source, its copy in the source folder).
    pub path: PathBuf,
    pub version: SourceVersion,
    pub modified: SystemTime,
    pub origin: Origin,
    /// For an HTTP image read by range: its remote (`path` is its sparse file).
    pub remote: Option<Arc<ranged::Remote>>,
}

/// A modification time, unless it is the epoch that stands for "unknown"
/// (an origin that sent no Last-Modified).
pub fn known_time(t: SystemTime) -> Option<SystemTime> {
    Some(t).filter(|m| *m > SystemTime::UNIX_EPOCH)
}

/// Where a located file came from.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Origin {
    /// A file under the image root.
    File,
    /// A copy of `url` (an HTTP URL, or `s3://bucket/key` for the S3
    /// source); `restricted` when the origin refuses anonymous requests for
    /// it (responses must then be private).
    Http { url: Arc<str>, restricted: bool },
}

impl Located {
    /// Whether responses for this source must not be shared between clients.
    pub fn is_restricted(&self) -> bool {
        matches!(self.origin, Origin::Http { restricted: true, .. })
    }

    /// The modification time, when the source has one (an origin that sent
    /// no Last-Modified has none).
    pub fn modified_time(&self) -> Option<SystemTime> {
        known_time(self.modified)
    }

    /// The key caches use for this file: its canonical path, so different
    /// identifiers naming one file (with and without extension) share it;
    /// for a copy fetched from an HTTP origin, its URL, since the copy's path
    /// changes with every run and the disk tier outlives runs.
    pub fn cache_key(&self) -> String {
        match &self.origin {
            Origin::File => self.path.to_string_lossy().into_owned(),
            Origin::Http { url, .. } => format!("http:{url}"),
        }
    }

    /// Opens (maps) the file.
    pub fn open(&self, use_mmap: bool) -> Result<Arc<Source>> {
        if let Some(remote) = &self.remote {
            // Its own file (sparse, or in memory), wherever its entry went.
            let mut f = remote.reopen().map_err(|_| Error::source_changed())?;
            let meta = f.metadata().map_err(|_| Error::source_changed())?;
            // A sparse file must be mapped: a copy read now would freeze its
            // holes as zeros.
            let bytes = mmap::load(&mut f, remote.len(), true)
                .map_err(|e| Error::internal(format!("mapping a remote source: {e}")))?;
            if !bytes.is_mapped() || meta.len() != remote.len() {
                return Err(Error::internal("remote source could not be mapped"));
            }
            return Ok(Arc::new(Source {
                bytes,
                version: self.version,
                modified: self.modified,
                file: None,
                links_ctime: (0, 0, 0),
                remote: Some(remote.clone()),
            }));
        }
        // A fetched copy evicted between locate and open is a retry (503),
        // not a missing image.
        let gone = || match self.origin {
            Origin::File => Error::not_found(),
            Origin::Http { .. } => Error::source_changed(),
        };
        let mut f = File::open(&self.path).map_err(|_| gone())?;
        let meta = f.metadata().map_err(|_| gone())?;
        let bytes =
            mmap::load(&mut f, meta.len(), use_mmap).map_err(|e| Error::internal(format!("reading source: {e}")))?;
        let links = links_ctime(&meta);
        let version = match self.origin {
            Origin::File => version_of(&meta),
            // Fetched files are written once under a new name and never
            // modified, so the origin's version holds while the length does.
            Origin::Http { .. } if meta.len() == self.version.len => self.version,
            Origin::Http { .. } => return Err(Error::internal("fetched source changed on disk")),
        };
        let file = matches!(self.origin, Origin::File).then_some(f);
        Ok(Arc::new(Source { bytes, version, modified: self.modified, file, links_ctime: links, remote: None }))
    }
}

fn version_of(meta: &std::fs::Metadata) -> SourceVersion {
    let mtime_ns =
        meta.modified().ok().and_then(|t| t.duration_since(UNIX_EPOCH).ok()).map(|d| d.as_nanos()).unwrap_or(0);
    SourceVersion { len: meta.len(), mtime_ns }
}

/// Maps identifiers to files under a root.
#[derive(Clone, Debug)]
pub struct Resolver {
    root: PathBuf,
    prefix: String,
    suffix: String,
    /// identifier → canonical path, so a hot identifier costs one `lstat`
    /// per request instead of a `realpath` per candidate extension. Entries
    /// are re-checked on every use (a deleted file, or one turned into a
    /// symlink, is resolved afresh).
    memo: Arc<std::sync::Mutex<std::collections::HashMap<String, PathBuf>>>,
}

/// Identifiers remembered before the memo is cleared.
const MEMO_LIMIT: usize = 65_536;

impl Resolver {
    /// `root` must exist; it is canonicalised once here.
    pub fn new(root: &Path, prefix: &str, suffix: &str) -> std::io::Result<Self> {
        Ok(Resolver {
            root: root.canonicalize()?,
            prefix: prefix.to_string(),
            suffix: suffix.to_string(),
            memo: Default::default(),
        })
    }

    pub fn root(&self) -> &Path {
        &self.root
    }

    /// Finds the file for an identifier (already percent-decoded once).
    pub fn locate(&self, identifier: &str) -> Result<Located> {
        let remembered = self.memo.lock().ok().and_then(|m| m.get(identifier).cloned());
        if let Some(path) = remembered {
            // Still a regular file (not replaced by a symlink)? Then the
            // canonical path still holds, and this stat gives the version.
            if let Ok(meta) = std::fs::symlink_metadata(&path) {
                if meta.is_file() {
                    let modified = meta.modified().unwrap_or(UNIX_EPOCH);
                    return Ok(Located {
                        path,
                        version: version_of(&meta),
                        modified,
                        origin: Origin::File,
                        remote: None,
                    });
                }
            }
            if let Ok(mut m) = self.memo.lock() {
                m.remove(identifier);
            }
        }
        let found = self.resolve(identifier)?;
        if let Ok(mut m) = self.memo.lock() {
            if m.len() >= MEMO_LIMIT {
                m.clear();
            }
            m.insert(identifier.to_string(), found.path.clone());
        }
        Ok(found)
    }

    /// Resolves without the memo: checks, candidates, canonicalisation.
    fn resolve(&self, identifier: &str) -> Result<Located> {
        if !is_safe_identifier(identifier) {
            return Err(Error::not_found());
        }
        let base = format!("{}{}{}", self.prefix, identifier, self.suffix);
        if !is_safe_relative(&base) {
            return Err(Error::not_found());
        }
        let direct = self.root.join(&base);
        // The folder is canonicalised once; each candidate name in it costs
        // one `stat`, and only the file found is canonicalised (it may be a
        // link), so an unknown identifier costs one canonicalisation, not one
        // per extension.
        let (Some(parent), Some(name)) = (direct.parent(), direct.file_name()) else {
            return Err(Error::not_found());
        };
        let Ok(folder) = parent.canonicalize() else {
            return Err(Error::not_found());
        };
        if !folder.starts_with(&self.root) {
            return Err(Error::not_found());
        }
        let name = name.to_string_lossy();
        let names = std::iter::once(name.to_string()).chain(EXTENSIONS.iter().map(|ext| format!("{name}.{ext}")));
        for n in names {
            let candidate = folder.join(n);
            if !std::fs::metadata(&candidate).is_ok_and(|m| m.is_file()) {
                continue;
            }
            let Ok(canon) = candidate.canonicalize() else { continue };
            if !canon.starts_with(&self.root) {
                return Err(Error::not_found());
            }
            // Stat the canonical path itself: the version is that file's.
            let Ok(meta) = std::fs::metadata(&canon) else { continue };
            if !meta.is_file() {
                continue;
            }
            let modified = meta.modified().unwrap_or(UNIX_EPOCH);
            return Ok(Located {
                path: canon,
                version: version_of(&meta),
                modified,
                origin: Origin::File,
                remote: None,
            });
        }
        Err(Error::not_found())
    }
}

/// The configured kind of source.
pub enum Sources {
    Files(Resolver),
    Http(Arc<http::HttpSource>),
    S3(Arc<s3::S3Source>),
}

impl Sources {
    /// Builds the source kind `cfg` names.
    pub fn from_config(cfg: &crate::config::SourceCfg) -> std::result::Result<Sources, String> {
        match cfg.kind {
            crate::config::SourceKind::Filesystem => Resolver::new(&cfg.root, &cfg.lookup_prefix, &cfg.lookup_suffix)
                .map(Sources::Files)
                .map_err(|e| format!("image root {}: {e}", cfg.root.display())),
            crate::config::SourceKind::Http => Ok(Sources::Http(Arc::new(http::HttpSource::new(&cfg.http)?))),
            crate::config::SourceKind::S3 => Ok(Sources::S3(Arc::new(s3::S3Source::new(&cfg.s3)?))),
        }
    }

    /// Finds the source of an identifier for a request with these headers
    /// (an HTTP source may forward its credentials to the origin).
    pub async fn locate(&self, id: &str, headers: &::http::HeaderMap) -> Result<Located> {
        match self {
            Sources::Files(r) => r.locate(id),
            Sources::Http(h) => h.locate(id, headers).await,
            Sources::S3(s) => s.locate(id).await,
        }
    }

    /// The source of an identifier as known now, without network I/O (an
    /// HTTP source answers only for images already fetched).
    pub fn peek(&self, id: &str) -> Option<Located> {
        match self {
            Sources::Files(r) => r.locate(id).ok(),
            Sources::Http(h) => h.peek(id),
            Sources::S3(s) => s.peek(id),
        }
    }

    /// Whether `l` still holds without asking anyone but the local file
    /// system: the file is unchanged (one `lstat`), or the fetched copy is
    /// fresh and public. Returns its modification time if so.
    pub fn is_current(&self, l: &Located) -> Option<SystemTime> {
        match &l.origin {
            Origin::File => {
                let meta = std::fs::symlink_metadata(&l.path).ok().filter(|m| m.is_file())?;
                (version_of(&meta) == l.version).then(|| meta.modified().unwrap_or(UNIX_EPOCH))
            }
            Origin::Http { url, restricted } => match self {
                Sources::Http(h) if !restricted && h.is_current(url, l.version) => Some(l.modified),
                Sources::S3(s) if s.is_current(url, l.version) => Some(l.modified),
                _ => None,
            },
        }
    }

    /// The image root, for a file source.
    pub fn root(&self) -> Option<&Path> {
        match self {
            Sources::Files(r) => Some(r.root()),
            Sources::Http(_) | Sources::S3(_) => None,
        }
    }

    /// The HTTP source, if that is the kind.
    pub fn http(&self) -> Option<&http::HttpSource> {
        match self {
            Sources::Http(h) => Some(h),
            Sources::Files(_) | Sources::S3(_) => None,
        }
    }

    /// The S3 source, if that is the kind.
    pub fn s3(&self) -> Option<&s3::S3Source> {
        match self {
            Sources::S3(s) => Some(s),
            Sources::Files(_) | Sources::Http(_) => None,
        }
    }
}

/// Rejects identifiers that could escape the root or confuse the file system.
pub fn is_safe_identifier(id: &str) -> bool {
    !id.is_empty()
        && id.len() <= 1024
        && !id.contains('\0')
        && !id.contains('\\')
        && !id.starts_with('/')
        && !id.chars().any(|c| c.is_control())
}

fn is_safe_relative(p: &str) -> bool {
    let path = Path::new(p);
    !path.is_absolute() && path.components().all(|c| matches!(c, Component::Normal(_)))
}

#[cfg(test)]
mod tests {
    use super::*;
    use ::http::StatusCode;

    #[test]
    fn a_fetched_copy_is_keyed_by_its_url_whatever_run_folder_holds_it() {
        let at = |path: &str| Located {
            path: PathBuf::from(path),
            version: SourceVersion { len: 1, mtime_ns: 2 },
            modified: SystemTime::UNIX_EPOCH,
            origin: Origin::Http { url: "https://repo.example/bits/7/content".into(), restricted: false },
            remote: None,
        };
        let (a, b) = (at("/tmp/tessera-run-aaaa/1.img"), at("/tmp/tessera-run-bbbb/9.img"));
        assert_eq!(a.cache_key(), b.cache_key(), "the disk tier must find it after a restart");
        assert_eq!(a.cache_key(), "http:https://repo.example/bits/7/content");
        let local = Located { origin: Origin::File, ..at("/srv/images/a.jp2") };
        assert_eq!(local.cache_key(), "/srv/images/a.jp2");
    }

    fn tree() -> (tempfile::TempDir, Resolver) {
        let d = tempfile::tempdir().unwrap();
        std::fs::create_dir_all(d.path().join("root/sub")).unwrap();
        std::fs::write(d.path().join("root/a.jpg"), b"x").unwrap();
        std::fs::write(d.path().join("root/sub/b.png"), b"y").unwrap();
        std::fs::write(d.path().join("secret.jpg"), b"z").unwrap();
        let r = Resolver::new(&d.path().join("root"), "", "").unwrap();
        (d, r)
    }

    #[test]
    fn identifiers_resolve_with_and_without_their_extension() {
        let (_d, r) = tree();
        assert!(r.locate("a.jpg").unwrap().path.ends_with("a.jpg"));
        assert!(r.locate("a").unwrap().path.ends_with("a.jpg"));
        assert!(r.locate("sub/b").unwrap().path.ends_with("b.png"));
    }

    #[test]
    fn traversal_absolute_and_nul_identifiers_are_404() {
        let (_d, r) = tree();
        for bad in [
            "../secret.jpg",
            "../secret",
            "/etc/passwd",
            "sub/../../secret.jpg",
            "a\0",
            "..",
            "",
            "sub\\..\\x",
            "./a.jpg",
        ] {
            assert_eq!(r.locate(bad).unwrap_err().status(), StatusCode::NOT_FOUND, "{bad:?}");
        }
    }

    #[test]
    fn symlinks_leaving_the_root_are_404() {
        let (d, r) = tree();
        #[cfg(unix)]
        {
            std::os::unix::fs::symlink(d.path().join("secret.jpg"), d.path().join("root/link.jpg")).unwrap();
            assert_eq!(r.locate("link.jpg").unwrap_err().status(), StatusCode::NOT_FOUND);
        }
    }

    #[test]
    fn directories_and_missing_files_are_404() {
        let (_d, r) = tree();
        assert_eq!(r.locate("sub").unwrap_err().status(), StatusCode::NOT_FOUND);
        assert_eq!(r.locate("nope").unwrap_err().status(), StatusCode::NOT_FOUND);
    }

    #[test]
    fn a_remembered_identifier_still_sees_deletion_and_symlink_swaps() {
        let (d, r) = tree();
        assert!(r.locate("a").is_ok());
        std::fs::remove_file(d.path().join("root/a.jpg")).unwrap();
        assert_eq!(r.locate("a").unwrap_err().status(), StatusCode::NOT_FOUND);
        #[cfg(unix)]
        {
            std::os::unix::fs::symlink(d.path().join("secret.jpg"), d.path().join("root/a.jpg")).unwrap();
            assert_eq!(r.locate("a").unwrap_err().status(), StatusCode::NOT_FOUND, "symlink out of the root");
        }
    }

    #[test]
    fn an_open_source_sees_writes_deletion_replacement_and_renames() {
        let (d, r) = tree();
        let open = || r.locate("a").unwrap().open(true).unwrap();
        let s = open();
        assert_eq!(s.unchanged(), Some(true));
        std::fs::write(d.path().join("root/a.jpg"), b"longer content").unwrap();
        assert_eq!(s.unchanged(), Some(false), "written in place");
        let s = open();
        std::fs::write(d.path().join("root/other.jpg"), b"other").unwrap();
        std::fs::rename(d.path().join("root/other.jpg"), d.path().join("root/a.jpg")).unwrap();
        assert_eq!(s.unchanged(), Some(false), "another file renamed over it");
        let s = open();
        std::fs::rename(d.path().join("root/a.jpg"), d.path().join("root/moved.jpg")).unwrap();
        assert_eq!(s.unchanged(), Some(false), "renamed away");
        std::fs::rename(d.path().join("root/moved.jpg"), d.path().join("root/a.jpg")).unwrap();
        let s = open();
        std::fs::remove_file(d.path().join("root/a.jpg")).unwrap();
        assert_eq!(s.unchanged(), Some(false), "deleted");
    }

    #[test]
    fn version_changes_when_the_file_changes() {
        let (d, r) = tree();
        let v1 = r.locate("a").unwrap().version;
        std::fs::write(d.path().join("root/a.jpg"), b"longer").unwrap();
        let v2 = r.locate("a").unwrap().version;
        assert_ne!(v1, v2);
        assert_ne!(v1.tag(), v2.tag());
    }
}
