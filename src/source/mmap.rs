//! Memory-mapping source files, with a plain read as the fallback.
//!
//! This is the only `unsafe` of the source layer. A memory map is unsound in
//! Rust's model if another process truncates or rewrites the file while it is
//! mapped (reads could fault or change under us). Tessera treats source files
//! as immutable while they are served — the same stance ripgrep takes — and
//! offers `source.mmap = false` for stores where files are rewritten in place.

use std::fs::File;
use std::io::{self, Read};
use std::ops::Deref;

/// The bytes of a source file: mapped, or read into memory.
pub enum Bytes {
    Mapped(memmap2::Mmap),
    Owned(Vec<u8>),
}

impl Deref for Bytes {
    type Target = [u8];
    fn deref(&self) -> &[u8] {
        match self {
            Bytes::Mapped(m) => m,
            Bytes::Owned(v) => v,
        }
    }
}

impl Bytes {
    pub fn is_mapped(&self) -> bool {
        matches!(self, Bytes::Mapped(_))
    }
}

/// Maps `file` (of length `len`) if `use_mmap`, else — or if mapping fails —
/// reads it. Empty files are read (a zero-length map is an error on Linux).
pub fn load(file: &mut File, len: u64, use_mmap: bool) -> io::Result<Bytes> {
    if use_mmap && len > 0 {
        // SAFETY: the map is read-only and private to this process. The
        // remaining hazard — the file being truncated or modified by another
        // process while mapped — is excluded by the documented contract above
        // (sources are immutable while served; `source.mmap = false` for
        // stores that rewrite files in place). A change of size or mtime also
        // changes the source version, so a rewritten file gets a new mapping.
        if let Ok(m) = unsafe { memmap2::MmapOptions::new().map(&*file) } {
            #[cfg(unix)]
            let _ = m.advise(memmap2::Advice::Random);
            return Ok(Bytes::Mapped(m));
        }
    }
    let mut v = Vec::with_capacity(len.min(1 << 30) as usize);
    file.read_to_end(&mut v)?;
    Ok(Bytes::Owned(v))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write;

    #[test]
    fn mapped_and_read_files_give_the_same_bytes() {
        let mut f = tempfile::tempfile().unwrap();
        f.write_all(b"hello tiles").unwrap();
        let m = load(&mut f.try_clone().unwrap(), 11, true).unwrap();
        assert!(m.is_mapped());
        assert_eq!(&*m, b"hello tiles");
        let mut f2 = f.try_clone().unwrap();
        std::io::Seek::seek(&mut f2, std::io::SeekFrom::Start(0)).unwrap();
        let r = load(&mut f2, 11, false).unwrap();
        assert!(!r.is_mapped());
        assert_eq!(&*r, b"hello tiles");
    }

    #[test]
    fn empty_files_fall_back_to_reading() {
        let mut f = tempfile::tempfile().unwrap();
        let b = load(&mut f, 0, true).unwrap();
        assert!(b.is_empty());
    }
}
