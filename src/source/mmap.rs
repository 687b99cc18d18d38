//! Memory-mapping source files, made safe against files that change under
//! the mapping, with a plain read as the fallback.
//!
//! This module holds the `unsafe` of the source layer: the map itself and a
//! `SIGBUS` handler.
//!
//! # The hazard
//! A mapped file that another process truncates (`truncate`, `cp` over it,
//! `rsync --inplace`, a re-ingest, a stale NFS handle) turns every read of a
//! page past its new end into a `SIGBUS`, which kills the process. A file
//! rewritten in place changes the bytes under a `&[u8]` while a decoder reads
//! them.
//!
//! # What Tessera does
//! - **Faults are recovered.** Every mapping is registered in a fixed table
//!   ([`REGISTRY`]) that a `SIGBUS` handler can read without locks or
//!   allocation. When a read faults inside a registered mapping, the handler
//!   maps one anonymous zero page over the faulting page (`MAP_FIXED`), marks
//!   the mapping as faulted, and returns: the read resumes and sees zeros. A
//!   fault outside every registered mapping is passed to the handler that was
//!   there before (Rust's stack-overflow handler), or to the default action.
//! - **A faulted or changed source fails its request.** Whoever decodes from
//!   a source calls [`Bytes::faulted`] (through `Source::intact`, which also
//!   `fstat`s the file) after the decode: a decode that met a fault, or whose
//!   file changed while it ran, is reported as an error of that one request
//!   (503, retry), its pixels are dropped and never cached, and the source is
//!   opened again by the next request (its version changed, or the faulted
//!   mapping is dropped from the open-source cache).
//! - **Decoders never trust bytes twice.** OpenJPEG reads through our stream
//!   callbacks, which copy from the map into its own buffers: a rewrite is
//!   corrupt input to it, no worse than a hostile file. TurboJPEG re-parses
//!   the header during decompression and sizes its writes from it, so the
//!   JPEG codec decodes from a private copy of the bytes (see
//!   `codec::jpeg::decode`). The pure-Rust header readers are bounds-checked.
//!
//! Mapping a zero page from a signal handler uses `mmap`, which POSIX does not
//! list as async-signal-safe; on Linux it is a plain system call that takes no
//! user-space lock, which is what matters here. Where the handler cannot be
//! installed, or the table is full, the file is read into memory instead
//! (`source.mmap = false` forces that for every file).

use std::fs::File;
use std::io::{self, Read};
use std::ops::Deref;
#[cfg(target_os = "linux")]
use std::sync::atomic::AtomicBool;
use std::sync::atomic::{AtomicUsize, Ordering};

/// The bytes of a source file: mapped, or read into memory.
pub enum Bytes {
    Mapped(Mapping),
    Owned(Vec<u8>),
}

impl Deref for Bytes {
    type Target = [u8];
    fn deref(&self) -> &[u8] {
        match self {
            Bytes::Mapped(m) => &m.map,
            Bytes::Owned(v) => v,
        }
    }
}

impl Bytes {
    pub fn is_mapped(&self) -> bool {
        matches!(self, Bytes::Mapped(_))
    }

    /// Whether a read of this mapping has ever faulted (the file shrank
    /// under it): its bytes are then partly zeros and must not be used.
    pub fn faulted(&self) -> bool {
        match self {
            Bytes::Mapped(m) => registry::faulted(m.slot),
            Bytes::Owned(_) => false,
        }
    }
}

/// A registered memory map: unregistered before it is unmapped.
pub struct Mapping {
    map: memmap2::Mmap,
    slot: usize,
}

impl Drop for Mapping {
    fn drop(&mut self) {
        // The map is unmapped after this (field drop); nobody reads it any
        // more, since we are its last owner, so no fault can race with this.
        registry::release(self.slot);
    }
}

/// How many mappings can be open at once; past that, files are read.
const SLOTS: usize = 16_384;

/// Mappings read by the `SIGBUS` handler: lock-free, allocation-free.
static REGISTRY: registry::Table = registry::Table::new();

/// Maps `file` (of length `len`) if `use_mmap`, else — or if mapping or
/// registering fails — reads it. Empty files are read (a zero-length map is
/// an error on Linux).
pub fn load(file: &mut File, len: u64, use_mmap: bool) -> io::Result<Bytes> {
    if use_mmap && len > 0 && registry::install() {
        if let Some(slot) = registry::claim() {
            // SAFETY: the map is read-only and private to this process. A
            // file truncated under it faults on read; the registered handler
            // turns that fault into zeros and a flag that fails the request
            // (see the module doc). A file rewritten in place changes bytes
            // under readers, which every decoder here tolerates as corrupt
            // input (the JPEG decoder reads from a private copy).
            match unsafe { memmap2::MmapOptions::new().map(&*file) } {
                Ok(map) => {
                    #[cfg(unix)]
                    let _ = map.advise(memmap2::Advice::Random);
                    registry::publish(slot, map.as_ptr() as usize, map.len());
                    return Ok(Bytes::Mapped(Mapping { map, slot }));
                }
                Err(_) => registry::release(slot),
            }
        }
    }
    let mut v = Vec::with_capacity(len.min(1 << 30) as usize);
    file.read_to_end(&mut v)?;
    Ok(Bytes::Owned(v))
}

/// How many mappings are registered now.
pub fn mapped_count() -> usize {
    REGISTRY.used.load(Ordering::Relaxed)
}

#[cfg(target_os = "linux")]
mod registry {
    //! The table of mappings and the `SIGBUS` handler that reads it.
    use super::*;
    use std::sync::Once;

    pub struct Slot {
        /// 0 free, 1 claimed (being filled or emptied), 2 published.
        state: AtomicUsize,
        start: AtomicUsize,
        len: AtomicUsize,
        faulted: AtomicBool,
    }

    pub struct Table {
        slots: [Slot; SLOTS],
        pub used: AtomicUsize,
    }

    impl Table {
        pub const fn new() -> Table {
            Table {
                slots: [const {
                    Slot {
                        state: AtomicUsize::new(0),
                        start: AtomicUsize::new(0),
                        len: AtomicUsize::new(0),
                        faulted: AtomicBool::new(false),
                    }
                }; SLOTS],
                used: AtomicUsize::new(0),
            }
        }
    }

    /// A free slot, claimed; `None` when the table is full.
    pub fn claim() -> Option<usize> {
        // Start the search at a rotating point so claims spread out.
        static NEXT: AtomicUsize = AtomicUsize::new(0);
        let from = NEXT.fetch_add(1, Ordering::Relaxed);
        for i in 0..SLOTS {
            let n = (from + i) % SLOTS;
            let s = &REGISTRY.slots[n];
            if s.state.compare_exchange(0, 1, Ordering::AcqRel, Ordering::Relaxed).is_ok() {
                s.faulted.store(false, Ordering::Relaxed);
                REGISTRY.used.fetch_add(1, Ordering::Relaxed);
                return Some(n);
            }
        }
        None
    }

    /// Makes a claimed slot visible to the handler.
    pub fn publish(n: usize, start: usize, len: usize) {
        let s = &REGISTRY.slots[n];
        s.start.store(start, Ordering::Release);
        s.len.store(len, Ordering::Release);
        s.state.store(2, Ordering::Release);
    }

    /// Frees a slot (its mapping is about to be unmapped, or never was).
    pub fn release(n: usize) {
        let s = &REGISTRY.slots[n];
        s.state.store(1, Ordering::Release);
        s.len.store(0, Ordering::Release);
        s.start.store(0, Ordering::Release);
        s.state.store(0, Ordering::Release);
        REGISTRY.used.fetch_sub(1, Ordering::Relaxed);
    }

    pub fn faulted(n: usize) -> bool {
        REGISTRY.slots[n].faulted.load(Ordering::Acquire)
    }

    static INSTALL: Once = Once::new();
    static INSTALLED: AtomicBool = AtomicBool::new(false);
    static PAGE: AtomicUsize = AtomicUsize::new(4096);
    /// The `sigaction` that was in place before ours, to chain to.
    static PREVIOUS: std::sync::OnceLock<libc::sigaction> = std::sync::OnceLock::new();

    /// Installs the handler once; whether it is in place.
    pub fn install() -> bool {
        INSTALL.call_once(|| {
            // SAFETY: sysconf has no preconditions.
            let page = unsafe { libc::sysconf(libc::_SC_PAGESIZE) };
            if page > 0 {
                PAGE.store(page as usize, Ordering::Relaxed);
            }
            // SAFETY: a zeroed sigaction is a valid "no handler" value to be
            // filled in; `on_sigbus` has the SA_SIGINFO prototype; `old` is
            // written by the kernel before we read it. PREVIOUS is set here,
            // once, before the handler that reads it is installed.
            unsafe {
                let mut old: libc::sigaction = std::mem::zeroed();
                if libc::sigaction(libc::SIGBUS, std::ptr::null(), &mut old) != 0 {
                    return;
                }
                let _ = PREVIOUS.set(old);
                let mut sa: libc::sigaction = std::mem::zeroed();
                sa.sa_sigaction = on_sigbus as *const () as usize;
                sa.sa_flags = libc::SA_SIGINFO | libc::SA_ONSTACK | libc::SA_NODEFER;
                libc::sigemptyset(&mut sa.sa_mask);
                if libc::sigaction(libc::SIGBUS, &sa, std::ptr::null_mut()) == 0 {
                    INSTALLED.store(true, Ordering::Release);
                }
            }
        });
        INSTALLED.load(Ordering::Acquire)
    }

    /// The `SIGBUS` handler. Async-signal-safe apart from `mmap` (see the
    /// module doc): atomics, arithmetic and system calls only.
    extern "C" fn on_sigbus(sig: libc::c_int, info: *mut libc::siginfo_t, ctx: *mut libc::c_void) {
        // SAFETY: the kernel passes a valid siginfo for an SA_SIGINFO handler.
        let addr = unsafe { (*info).si_addr() } as usize;
        let page = PAGE.load(Ordering::Relaxed);
        for s in REGISTRY.slots.iter() {
            if s.state.load(Ordering::Acquire) != 2 {
                continue;
            }
            let (start, len) = (s.start.load(Ordering::Acquire), s.len.load(Ordering::Acquire));
            if len == 0 || addr < start || addr - start >= len {
                continue;
            }
            let at = addr & !(page - 1);
            // SAFETY: `at` is the page holding the faulting address, inside a
            // live mapping of ours (the faulting thread holds it, so it cannot
            // be unmapped meanwhile). Replacing that page with a private
            // zero page changes only what our own readers see.
            let r = unsafe {
                libc::mmap(
                    at as *mut libc::c_void,
                    page,
                    libc::PROT_READ,
                    libc::MAP_PRIVATE | libc::MAP_ANONYMOUS | libc::MAP_FIXED,
                    -1,
                    0,
                )
            };
            if r != libc::MAP_FAILED {
                s.faulted.store(true, Ordering::Release);
                return;
            }
            break;
        }
        // Not ours (or the page could not be replaced): what was there before.
        // (`OnceLock::get` is one atomic load: fine in a signal handler.)
        match PREVIOUS.get() {
            Some(p) if p.sa_sigaction != libc::SIG_DFL && p.sa_sigaction != libc::SIG_IGN => {
                if p.sa_flags & libc::SA_SIGINFO != 0 {
                    // SAFETY: the previous handler was installed with SA_SIGINFO,
                    // so it has this prototype.
                    let f: extern "C" fn(libc::c_int, *mut libc::siginfo_t, *mut libc::c_void) =
                        unsafe { std::mem::transmute(p.sa_sigaction) };
                    f(sig, info, ctx);
                } else {
                    // SAFETY: a plain handler's prototype.
                    let f: extern "C" fn(libc::c_int) = unsafe { std::mem::transmute(p.sa_sigaction) };
                    f(sig);
                }
            }
            _ => {
                // Restore the default action; returning re-runs the faulting
                // read, which now ends the process as it would have anyway.
                // SAFETY: a zeroed sigaction with SIG_DFL is valid.
                unsafe {
                    let mut sa: libc::sigaction = std::mem::zeroed();
                    sa.sa_sigaction = libc::SIG_DFL;
                    libc::sigaction(libc::SIGBUS, &sa, std::ptr::null_mut());
                }
            }
        }
    }
}

#[cfg(not(target_os = "linux"))]
mod registry {
    //! Elsewhere no handler: files are read, never mapped.
    use super::*;

    pub struct Table {
        pub used: AtomicUsize,
    }
    impl Table {
        pub const fn new() -> Table {
            Table { used: AtomicUsize::new(0) }
        }
    }
    pub fn install() -> bool {
        false
    }
    pub fn claim() -> Option<usize> {
        None
    }
    pub fn publish(_: usize, _: usize, _: usize) {}
    pub fn release(_: usize) {}
    pub fn faulted(_: usize) -> bool {
        false
    }
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

    #[test]
    fn a_file_truncated_under_its_mapping_reads_zeros_and_is_flagged_instead_of_killing_the_process() {
        let page = 4096 * 4;
        let mut f = tempfile::tempfile().unwrap();
        f.write_all(&vec![7u8; page * 4]).unwrap();
        let m = load(&mut f.try_clone().unwrap(), (page * 4) as u64, true).unwrap();
        assert!(m.is_mapped());
        assert!(!m.faulted());
        f.set_len(page as u64).unwrap();
        // The first page is still in the file; the last is past its end.
        assert_eq!(m[0], 7);
        let past: u64 = m[page * 3..].iter().map(|&b| b as u64).sum();
        assert_eq!(past, 0, "pages past the end read as zeros");
        assert!(m.faulted(), "the mapping is flagged");
        // Other mappings are not.
        let mut g = tempfile::tempfile().unwrap();
        g.write_all(b"other").unwrap();
        let n = load(&mut g, 5, true).unwrap();
        assert!(n.is_mapped() && !n.faulted());
    }
}
