//! OpenJPEG through `openjpeg-sys`: the RAII guards of codec, stream and
//! image handles, the stream callbacks over a byte slice (read) and a
//! `Vec<u8>` (write), the message handlers, and a decode session. This file
//! holds the decoder's `unsafe` code; each block says why it is sound.

use super::*;

/// A heap value whose address is handed to OpenJPEG as callback user data.
/// It is owned through a raw pointer so that no Rust reference to it exists
/// while OpenJPEG works with the pointer.
pub(super) struct CallbackData<T> {
    pub(super) ptr: NonNull<T>,
    pub(super) _owns: PhantomData<T>,
}

impl<T> CallbackData<T> {
    pub(super) fn new(value: T) -> Self {
        CallbackData { ptr: NonNull::from(Box::leak(Box::new(value))), _owns: PhantomData }
    }

    pub(super) fn as_user_data(&self) -> *mut c_void {
        self.ptr.as_ptr().cast()
    }

    /// Access between OpenJPEG calls.
    pub(super) fn get_mut(&mut self) -> &mut T {
        // SAFETY: the pointer came from `Box::leak` and stays valid until drop;
        // OpenJPEG only dereferences it inside calls that this module makes and
        // that have returned before any `get_mut`, and `&mut self` rules out a
        // second Rust reference.
        unsafe { self.ptr.as_mut() }
    }
}

impl<T> Drop for CallbackData<T> {
    fn drop(&mut self) {
        // SAFETY: the pointer came from `Box::leak` and is freed only here; the
        // codec and stream that used it are declared after it wherever both
        // live in one scope or struct, so they are destroyed first.
        drop(unsafe { Box::from_raw(self.ptr.as_ptr()) });
    }
}

/// OpenJPEG's error messages, kept for logs.
#[derive(Default)]
pub(super) struct Messages {
    pub(super) text: String,
}

pub(super) const MAX_MESSAGE_TEXT: usize = 600;

/// Error handler: appends OpenJPEG's message to the `Messages` in user data.
pub(super) unsafe extern "C" fn on_error(msg: *const c_char, user: *mut c_void) {
    if msg.is_null() || user.is_null() {
        return;
    }
    // SAFETY: OpenJPEG passes a NUL-terminated message (a 512-byte buffer it
    // terminates itself), valid during this call.
    let text = unsafe { CStr::from_ptr(msg) }.to_string_lossy();
    // SAFETY: `user` is the `Messages` registered with this codec, which
    // outlives the codec; no Rust reference to it is live while OpenJPEG runs.
    let messages = unsafe { &mut *user.cast::<Messages>() };
    let text = text.trim();
    if messages.text.len() + text.len() + 2 <= MAX_MESSAGE_TEXT {
        if !messages.text.is_empty() {
            messages.text.push_str("; ");
        }
        messages.text.push_str(text);
    }
}

/// The bytes OpenJPEG reads from, and the reader's position.
pub(super) struct MemSource<'a> {
    pub(super) data: &'a [u8],
    pub(super) pos: usize,
    /// A read or skip was attempted at the end of the data.
    pub(super) hit_end: bool,
    /// Makes each range readable before it is copied (a remote master read
    /// by range fetches it here).
    pub(super) need: &'a dyn crate::codec::Need,
    /// Why `need` failed, if it did: the decode's error then.
    pub(super) failed: Option<crate::codec::CodecError>,
    /// Sorted, disjoint byte ranges read as `filler` repeated from each
    /// range's start instead of fetched: the packets of resolutions finer
    /// than the decode's, which OpenJPEG parses and skips, read as empty
    /// packets (see `prefix`).
    pub(super) spare: Vec<(u64, u64)>,
    pub(super) filler: Vec<u8>,
}

impl MemSource<'_> {
    /// The parts of `[start, end)` that are not spare, in order.
    fn unspared(&self, start: u64, end: u64) -> Vec<(u64, u64)> {
        let mut wanted = Vec::new();
        let mut at = start;
        for &(a, b) in &self.spare {
            if b <= at || a >= end {
                continue;
            }
            if a > at {
                wanted.push((at, a));
            }
            at = at.max(b);
        }
        if at < end {
            wanted.push((at, end));
        }
        wanted
    }

    /// Makes `[start, end)` readable: fetched, except where spare.
    fn need_unless_spare(&self, start: u64, end: u64) -> Result<(), crate::codec::CodecError> {
        if self.spare.is_empty() {
            return self.need.need(&[(start, end)]);
        }
        let wanted = self.unspared(start, end);
        if wanted.is_empty() {
            Ok(())
        } else {
            self.need.need(&wanted)
        }
    }

    /// Writes bytes `[start, start + out.len())` of the input into `out`:
    /// the data where it is not spare, the filler where it is. Spare bytes
    /// are never read from the data: for a memory-mapped sparse file (a
    /// master read by range) reading them would fault in every page of the
    /// skipped packets (the whole file's worth of zero pages for a reduced
    /// view), and for a local file it would copy what is thrown away.
    fn read_into(&self, out: &mut [u8], start: u64) {
        let end = start + out.len() as u64;
        if self.spare.is_empty() {
            out.copy_from_slice(&self.data[start as usize..end as usize]);
            return;
        }
        for (a, b) in self.unspared(start, end) {
            out[(a - start) as usize..(b - start) as usize].copy_from_slice(&self.data[a as usize..b as usize]);
        }
        self.fill_spare(out, start);
    }

    /// Writes the filler over the spare parts of `buf`, which holds bytes
    /// `[start, start + len)` (zeros if there is no filler).
    fn fill_spare(&self, buf: &mut [u8], start: u64) {
        let end = start + buf.len() as u64;
        for &(a, b) in &self.spare {
            let (lo, hi) = (a.max(start), b.min(end));
            if lo >= hi {
                continue;
            }
            let out = &mut buf[(lo - start) as usize..(hi - start) as usize];
            if self.filler.is_empty() {
                out.fill(0);
                continue;
            }
            fill_periodic(out, &self.filler, ((lo - a) % self.filler.len() as u64) as usize);
        }
    }
}

/// Fills `out` with `pattern` repeated, starting at `pattern[phase]`: a
/// few copies, doubling (a tile-part's spare megabytes are filled at memory
/// speed, not byte by byte).
pub(super) fn fill_periodic(out: &mut [u8], pattern: &[u8], phase: usize) {
    let n = pattern.len();
    if n == 0 || out.is_empty() {
        return;
    }
    let phase = phase % n;
    // Up to the first whole period.
    let head = (n - phase).min(out.len());
    out[..head].copy_from_slice(&pattern[phase..phase + head]);
    let body = &mut out[head..];
    let first = n.min(body.len());
    body[..first].copy_from_slice(&pattern[..first]);
    // Whole periods copy themselves, doubling.
    let mut done = first;
    while done < body.len() {
        let k = done.min(body.len() - done);
        body.copy_within(..k, done);
        done += k;
    }
}

/// `opj_stream_read_fn`: copies up to `n` bytes, returns the count, or
/// `(size_t)-1` at the end (never 0 for a non-empty request: OpenJPEG would
/// loop forever).
pub(super) unsafe extern "C" fn source_read(buf: *mut c_void, n: usize, user: *mut c_void) -> usize {
    // SAFETY: `user` is the `MemSource` registered with this stream, which
    // outlives the stream; no Rust reference to it is live while OpenJPEG runs.
    let src = unsafe { &mut *user.cast::<MemSource>() };
    let remaining = src.data.get(src.pos..).unwrap_or(&[]);
    if remaining.is_empty() {
        src.hit_end = true;
        return usize::MAX;
    }
    let k = n.min(remaining.len());
    if let Err(e) = src.need_unless_spare(src.pos as u64, (src.pos + k) as u64) {
        src.failed = Some(e);
        return usize::MAX;
    }
    if k > 0 {
        // SAFETY: OpenJPEG's `buf` has room for `n >= k` bytes, which it owns
        // and does not touch during this callback; it never aliases the
        // caller's data.
        let out = unsafe { std::slice::from_raw_parts_mut(buf.cast::<u8>(), k) };
        // This copy is the only place OpenJPEG's input is read: if the data
        // is a memory map whose file shrinks, a faulting read is turned into
        // zeros by source::mmap's handler (and the decode is then thrown away
        // by the caller); if the file is rewritten, OpenJPEG sees corrupt
        // input in its own buffers, which it validates.
        src.read_into(out, src.pos as u64);
    }
    src.pos += k;
    k
}

/// `opj_stream_skip_fn`: advances by up to `n` bytes and returns how many were
/// skipped (a count, not the new position), or -1 at the end.
pub(super) unsafe extern "C" fn source_skip(n: i64, user: *mut c_void) -> i64 {
    // SAFETY: as in `source_read`.
    let src = unsafe { &mut *user.cast::<MemSource>() };
    let remaining = src.data.len().saturating_sub(src.pos);
    if n < 0 {
        return -1;
    }
    if remaining == 0 {
        src.hit_end = true;
        return -1;
    }
    let k = (n as u64).min(remaining as u64) as usize;
    src.pos += k;
    k as i64
}

/// `opj_stream_seek_fn`: absolute; refuses positions past the end (OpenJPEG
/// would otherwise trip an assertion later).
pub(super) unsafe extern "C" fn source_seek(to: i64, user: *mut c_void) -> opj::OPJ_BOOL {
    // SAFETY: as in `source_read`.
    let src = unsafe { &mut *user.cast::<MemSource>() };
    match usize::try_from(to) {
        Ok(p) if p <= src.data.len() => {
            src.pos = p;
            1
        }
        _ => {
            src.hit_end = true;
            0
        }
    }
}

/// Where the encoder writes: a growable buffer with a cursor (the JP2 writer
/// seeks back to fill in the codestream box length).
#[derive(Default)]
pub(super) struct VecSink {
    pub(super) buf: Vec<u8>,
    pub(super) pos: usize,
}

impl VecSink {
    pub(super) fn ensure_len(&mut self, len: usize) -> bool {
        if len > self.buf.len() {
            if self.buf.try_reserve(len - self.buf.len()).is_err() {
                return false;
            }
            self.buf.resize(len, 0);
        }
        true
    }
}

/// `opj_stream_write_fn`: writes at the cursor, returns `n` or `(size_t)-1`.
pub(super) unsafe extern "C" fn sink_write(buf: *mut c_void, n: usize, user: *mut c_void) -> usize {
    // SAFETY: `user` is the `VecSink` registered with this stream, which
    // outlives the stream; no Rust reference to it is live while OpenJPEG runs.
    let sink = unsafe { &mut *user.cast::<VecSink>() };
    if n == 0 {
        return 0;
    }
    let Some(end) = sink.pos.checked_add(n) else { return usize::MAX };
    if !sink.ensure_len(end) {
        return usize::MAX;
    }
    // SAFETY: OpenJPEG passes `n` readable bytes at `buf`, valid for this call.
    let bytes = unsafe { std::slice::from_raw_parts(buf.cast::<u8>(), n) };
    match sink.buf.get_mut(sink.pos..end) {
        Some(dst) => dst.copy_from_slice(bytes),
        None => return usize::MAX,
    }
    sink.pos = end;
    n
}

/// `opj_stream_skip_fn` for output: moves the cursor forward (zero-filling).
pub(super) unsafe extern "C" fn sink_skip(n: i64, user: *mut c_void) -> i64 {
    // SAFETY: as in `sink_write`.
    let sink = unsafe { &mut *user.cast::<VecSink>() };
    let Ok(k) = usize::try_from(n) else { return -1 };
    let Some(end) = sink.pos.checked_add(k) else { return -1 };
    if !sink.ensure_len(end) {
        return -1;
    }
    sink.pos = end;
    n
}

/// `opj_stream_seek_fn` for output: absolute.
pub(super) unsafe extern "C" fn sink_seek(to: i64, user: *mut c_void) -> opj::OPJ_BOOL {
    // SAFETY: as in `sink_write`.
    let sink = unsafe { &mut *user.cast::<VecSink>() };
    let Ok(p) = usize::try_from(to) else { return 0 };
    if !sink.ensure_len(p) {
        return 0;
    }
    sink.pos = p;
    1
}

/// Owns an `opj_codec_t`.
pub(super) struct CodecGuard(pub(super) NonNull<opj::opj_codec_t>);

impl CodecGuard {
    pub(super) fn decoder(container: Container, messages: &CallbackData<Messages>) -> Result<Self, Jp2Error> {
        // SAFETY: plain constructor; a null result is handled.
        let raw = unsafe { opj::opj_create_decompress(codec_format(container)) };
        let codec = CodecGuard(NonNull::new(raw).ok_or_else(|| Jp2Error::codec("cannot create decoder"))?);
        codec.set_handlers(messages);
        Ok(codec)
    }

    pub(super) fn encoder(container: Container, messages: &CallbackData<Messages>) -> Result<Self, Jp2Error> {
        // SAFETY: plain constructor; a null result is handled.
        let raw = unsafe { opj::opj_create_compress(codec_format(container)) };
        let codec = CodecGuard(NonNull::new(raw).ok_or_else(|| Jp2Error::codec("cannot create encoder"))?);
        codec.set_handlers(messages);
        Ok(codec)
    }

    pub(super) fn ptr(&self) -> *mut opj::opj_codec_t {
        self.0.as_ptr()
    }

    /// Info and warning handlers are left null, so OpenJPEG skips formatting
    /// them and prints nothing; errors go to `messages`.
    pub(super) fn set_handlers(&self, messages: &CallbackData<Messages>) {
        // SAFETY: valid codec; null handlers are allowed (messages dropped);
        // the `Messages` outlives the codec (declared before it everywhere).
        unsafe {
            opj::opj_set_info_handler(self.ptr(), None, ptr::null_mut());
            opj::opj_set_warning_handler(self.ptr(), None, ptr::null_mut());
            opj::opj_set_error_handler(self.ptr(), Some(on_error), messages.as_user_data());
        }
    }

    pub(super) fn set_threads(&self, threads: i32) {
        // SAFETY: valid codec, called before any decoding or encoding. Without
        // the `threads` feature OpenJPEG has no thread support and this is a
        // no-op; with it, 0 replaces a pool that OPJ_NUM_THREADS may have created.
        unsafe {
            if opj::opj_has_thread_support() != 0 {
                opj::opj_codec_set_threads(self.ptr(), threads);
            }
        }
    }
}

impl Drop for CodecGuard {
    fn drop(&mut self) {
        // SAFETY: we own the codec; it is destroyed exactly once.
        unsafe { opj::opj_destroy_codec(self.ptr()) }
    }
}

pub(super) fn codec_format(container: Container) -> opj::CODEC_FORMAT {
    match container {
        Container::Jp2 => opj::CODEC_FORMAT::OPJ_CODEC_JP2,
        Container::J2k => opj::CODEC_FORMAT::OPJ_CODEC_J2K,
    }
}

/// Owns an `opj_stream_t`.
pub(super) struct StreamGuard(pub(super) NonNull<opj::opj_stream_t>);

impl StreamGuard {
    pub(super) fn input(source: &CallbackData<MemSource>, len: usize, buffer: usize) -> Result<Self, Jp2Error> {
        // SAFETY: plain constructor; a null result is handled.
        let raw = unsafe { opj::opj_stream_create(buffer, 1) };
        let stream = StreamGuard(NonNull::new(raw).ok_or_else(|| Jp2Error::codec("cannot create stream"))?);
        // SAFETY: valid stream; the callbacks match OpenJPEG's prototypes; the
        // user data outlives the stream and is not freed by OpenJPEG (no free
        // function).
        unsafe {
            opj::opj_stream_set_read_function(stream.ptr(), Some(source_read));
            opj::opj_stream_set_skip_function(stream.ptr(), Some(source_skip));
            opj::opj_stream_set_seek_function(stream.ptr(), Some(source_seek));
            opj::opj_stream_set_user_data(stream.ptr(), source.as_user_data(), None);
            opj::opj_stream_set_user_data_length(stream.ptr(), len as u64);
        }
        Ok(stream)
    }

    pub(super) fn output(sink: &CallbackData<VecSink>) -> Result<Self, Jp2Error> {
        // SAFETY: plain constructor; a null result is handled.
        let raw = unsafe { opj::opj_stream_create(OUTPUT_BUFFER, 0) };
        let stream = StreamGuard(NonNull::new(raw).ok_or_else(|| Jp2Error::codec("cannot create stream"))?);
        // SAFETY: as in `input`.
        unsafe {
            opj::opj_stream_set_write_function(stream.ptr(), Some(sink_write));
            opj::opj_stream_set_skip_function(stream.ptr(), Some(sink_skip));
            opj::opj_stream_set_seek_function(stream.ptr(), Some(sink_seek));
            opj::opj_stream_set_user_data(stream.ptr(), sink.as_user_data(), None);
        }
        Ok(stream)
    }

    pub(super) fn ptr(&self) -> *mut opj::opj_stream_t {
        self.0.as_ptr()
    }
}

impl Drop for StreamGuard {
    fn drop(&mut self) {
        // SAFETY: we own the stream; it is destroyed exactly once. It does not
        // own its user data (no free function was given).
        unsafe { opj::opj_stream_destroy(self.ptr()) }
    }
}

/// Owns an `opj_image_t` (possibly null).
pub(super) struct ImageGuard(pub(super) *mut opj::opj_image_t);

impl ImageGuard {
    pub(super) fn get(&self) -> Option<&opj::opj_image_t> {
        // SAFETY: when non-null the image came from OpenJPEG and stays valid
        // until drop; no OpenJPEG call runs while the reference lives (the
        // borrow of `self` prevents mutation through this guard).
        unsafe { self.0.as_ref() }
    }

    pub(super) fn components(&self) -> &[opj::opj_image_comp_t] {
        match self.get() {
            Some(img) if !img.comps.is_null() => {
                // SAFETY: OpenJPEG allocates `numcomps` components at `comps`.
                unsafe { std::slice::from_raw_parts(img.comps, img.numcomps as usize) }
            }
            _ => &[],
        }
    }

    /// The samples of component `index` after a successful decode: its
    /// `w * h` values, or `None` when it has none or their count overflows.
    pub(super) fn samples(&self, index: usize) -> Option<&[i32]> {
        let comp = self.components().get(index)?;
        if comp.data.is_null() {
            return None;
        }
        let len = (comp.w as usize).checked_mul(comp.h as usize)?;
        // SAFETY: after a successful `opj_decode`, OpenJPEG has allocated
        // `w * h` samples at `data` for each component of the image it filled
        // (w and h are the sizes it set for the decoded area). The slice
        // borrows `self`, so it lives no longer than the image, and no
        // OpenJPEG call can change the image meanwhile.
        Some(unsafe { std::slice::from_raw_parts(comp.data, len) })
    }
}

impl Drop for ImageGuard {
    fn drop(&mut self) {
        if !self.0.is_null() {
            // SAFETY: we own the image; it is destroyed exactly once.
            unsafe { opj::opj_image_destroy(self.0) }
        }
    }
}

/// A decoder over `data` whose header has been read. Field order is drop
/// order: image, stream and codec go before the callback data they point to.
pub(super) struct DecodeSession<'a> {
    pub(super) image: ImageGuard,
    pub(super) stream: StreamGuard,
    pub(super) codec: CodecGuard,
    pub(super) source: CallbackData<MemSource<'a>>,
    pub(super) messages: CallbackData<Messages>,
}

impl<'a> DecodeSession<'a> {
    /// `spare` and `filler`: see [`MemSource`].
    pub(super) fn open(
        data: &'a [u8],
        need: &'a dyn crate::codec::Need,
        container: Container,
        spare: Vec<(u64, u64)>,
        filler: Vec<u8>,
    ) -> Result<Self, Jp2Error> {
        let messages = CallbackData::new(Messages::default());
        let source = CallbackData::new(MemSource { data, pos: 0, hit_end: false, need, failed: None, spare, filler });
        let codec = CodecGuard::decoder(container, &messages)?;
        // SAFETY: `opj_dparameters_t` is a plain C struct for which all-zero is
        // a valid value; OpenJPEG then fills in its defaults.
        let mut params: opj::opj_dparameters_t = unsafe { std::mem::zeroed() };
        // SAFETY: valid pointers to the parameters and codec.
        let ok = unsafe {
            opj::opj_set_default_decoder_parameters(&mut params);
            opj::opj_setup_decoder(codec.ptr(), &mut params)
        };
        if ok == 0 {
            return Err(Jp2Error::codec("decoder setup failed"));
        }
        codec.set_threads(0);
        // A remote input is read in small pieces: each read may be a fetch.
        let buffer = if need.is_remote() { REMOTE_STREAM_BUFFER } else { STREAM_BUFFER };
        let stream = StreamGuard::input(&source, data.len(), buffer)?;
        let mut raw: *mut opj::opj_image_t = ptr::null_mut();
        // SAFETY: valid stream and codec; OpenJPEG stores a new image (or null)
        // in `raw`, which the guard owns from here on.
        let ok = unsafe { opj::opj_read_header(stream.ptr(), codec.ptr(), &mut raw) };
        let image = ImageGuard(raw);
        let mut session = DecodeSession { image, stream, codec, source, messages };
        if ok == 0 || session.image.get().is_none() {
            return Err(session.failure());
        }
        Ok(session)
    }

    pub(super) fn set_reduce(&mut self, reduce: u32) -> Result<(), Jp2Error> {
        // SAFETY: valid codec with its header read.
        let ok = unsafe { opj::opj_set_decoded_resolution_factor(self.codec.ptr(), reduce) };
        if ok == 0 {
            return Err(self.failure());
        }
        Ok(())
    }

    pub(super) fn set_area(&mut self, x0: u32, y0: u32, x1: u32, y1: u32) -> Result<(), Jp2Error> {
        let c = |v: u32| i32::try_from(v).map_err(|_| Jp2Error::Unsupported("image coordinates beyond 2^31".into()));
        let (x0, y0, x1, y1) = (c(x0)?, c(y0)?, c(x1)?, c(y1)?);
        // SAFETY: valid codec and the image returned by its header read.
        let ok = unsafe { opj::opj_set_decode_area(self.codec.ptr(), self.image.0, x0, y0, x1, y1) };
        if ok == 0 {
            return Err(self.failure());
        }
        Ok(())
    }

    pub(super) fn decode(&mut self) -> Result<(), Jp2Error> {
        // SAFETY: valid codec, stream and image; the stream's user data (the
        // source) is alive and not referenced from Rust during the call.
        let ok = unsafe { opj::opj_decode(self.codec.ptr(), self.stream.ptr(), self.image.0) };
        if ok == 0 {
            return Err(self.failure());
        }
        Ok(())
    }

    /// Turns OpenJPEG's failure into an error, keeping its message as detail.
    pub(super) fn failure(&mut self) -> Jp2Error {
        let detail = std::mem::take(&mut self.messages.get_mut().text);
        if let Some(e) = self.source.get_mut().failed.take() {
            return Jp2Error::Input(e);
        }
        let hit_end = self.source.get_mut().hit_end;
        let lower = detail.to_ascii_lowercase();
        const TRUNCATION: [&str; 5] = ["too short", "stream length", "truncat", "end of", "stream error"];
        if hit_end || TRUNCATION.iter().any(|t| lower.contains(t)) {
            Jp2Error::Truncated { detail }
        } else if lower.contains("memory") {
            Jp2Error::Codec { detail }
        } else {
            Jp2Error::Corrupt { detail }
        }
    }
}
