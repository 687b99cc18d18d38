//! Log output: the process's `tracing` subscriber (filter, batched writer
//! thread, text or JSON lines) and both line formats.
//!
//! Lines are written by hand ([`TextLines`], [`JsonLines`]) straight into
//! the subscriber's reused line buffer: each field is written as it is
//! visited, with no map of values, no allocation per field and no
//! serializer. JSON lines have the shape of `tracing-subscriber`'s JSON
//! layer, so collectors read either alike:
//! `{"timestamp":"2026-11-27T14:25:01.123456Z","level":"INFO","fields":{…},"target":"access"}`.
//! Text lines are `2026-11-27T14:25:01.123456Z  INFO message key=value`,
//! as the subscriber's own text format without target, except the access
//! log's, which are the access line alone (it carries its own time), so
//! that tools reading the combined log format read them as they are.
//! Span fields are not written (Tessera's events carry what they need).
//!
//! Lines go out in batches ([`Batch`]): gathered under a lock and handed
//! to `tracing-appender`'s writer thread a batch at a time, so the thread
//! wakes a few times a second rather than once per request. The access
//! line, one per request, is what all this is for: through the
//! subscriber's own formats and a hand-over per line it cost 16–20 % of
//! the hot-tile rate (docs/bench/access-log.md).

use std::fmt::{self, Write as _};
use std::sync::{mpsc, Arc, Mutex, PoisonError};
use std::time::Duration;

use tracing::field::{Field, Visit};
use tracing::{Event, Level, Subscriber};
use tracing_appender::non_blocking::{NonBlocking, NonBlockingBuilder, WorkerGuard};
use tracing_subscriber::fmt::format::Writer;
use tracing_subscriber::fmt::{FmtContext, FormatEvent, FormatFields};
use tracing_subscriber::registry::LookupSpan;

/// The `tracing` target of access lines (`web::access` writes them; filter
/// them with `access=info`). Text lines of this target are the line alone.
pub const ACCESS_TARGET: &str = "access";

/// Bytes of log lines the writer thread gathers before a `write`.
const LOG_BUFFER: usize = 64 * 1024;
/// Bytes of lines gathered before they are handed to the writer thread.
const BATCH_BYTES: usize = 32 * 1024;
/// The longest a line waits in a batch before it is handed over.
const BATCH_WAIT: Duration = Duration::from_millis(100);
/// Batches the writer thread may have waiting (8 MiB at most); beyond
/// that, batches are dropped rather than a request kept waiting.
const BATCHES_WAITING: usize = 256;

/// Sets the process's subscriber: filtered by `log.level` (RUST_LOG wins),
/// text or JSON lines, to standard output or appended to `log.file`. Lines
/// are gathered in batches and handed to a writer thread
/// (`tracing-appender`'s non-blocking writer), so no request waits for a
/// `write`; a line reaches its file within [`BATCH_WAIT`]. The returned
/// guard hands over the last batch and flushes the writer when the server
/// ends (keep it until then).
pub fn init(log: &crate::config::Log) -> Result<LogGuard, String> {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .or_else(|_| tracing_subscriber::EnvFilter::try_new(&log.level))
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    let (out, terminal): (Box<dyn std::io::Write + Send>, bool) = if log.file.is_empty() {
        (Box::new(std::io::stdout()), std::io::IsTerminal::is_terminal(&std::io::stdout()))
    } else {
        let f = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&log.file)
            .map_err(|e| format!("log.file {}: {e}", log.file))?;
        (Box::new(f), false)
    };
    let (batch, guard) = batched(std::io::BufWriter::with_capacity(LOG_BUFFER, out))?;
    let fmt = tracing_subscriber::fmt().with_env_filter(filter).with_writer(batch);
    let _ = if log.format == "json" {
        fmt.event_format(JsonLines).try_init()
    } else {
        fmt.event_format(TextLines { ansi: terminal }).try_init()
    };
    Ok(guard)
}

/// The batched writer over `out`: the [`Batch`] lines are written to, and
/// the guard of its two threads (the batch thread, which hands lines over
/// every [`BATCH_WAIT`], and `tracing-appender`'s writer thread).
fn batched(out: impl std::io::Write + Send + 'static) -> Result<(Arc<Batch>, LogGuard), String> {
    // The writer thread writes every batch waiting in its channel, then
    // flushes: behind a buffer, a burst is one `write`.
    let (writer, worker) = NonBlockingBuilder::default()
        .buffered_lines_limit(BATCHES_WAITING)
        .lossy(true)
        .thread_name("tessera-log")
        .finish(out);
    let batch = Arc::new(Batch::new(writer));
    let (stop, stopped) = mpsc::channel::<()>();
    let timed = batch.clone();
    let flusher = std::thread::Builder::new()
        .name("tessera-log-batch".into())
        .spawn(move || {
            // Wakes every BATCH_WAIT until the guard drops its sender.
            while let Err(mpsc::RecvTimeoutError::Timeout) = stopped.recv_timeout(BATCH_WAIT) {
                timed.hand_over();
            }
            timed.hand_over();
        })
        .map_err(|e| format!("log batch thread: {e}"))?;
    Ok((batch, LogGuard { stop: Some(stop), flusher: Some(flusher), _worker: worker }))
}

/// Keeps the log's threads; dropping it hands over the last batch, then
/// lets the writer thread write everything and flush.
pub struct LogGuard {
    stop: Option<mpsc::Sender<()>>,
    flusher: Option<std::thread::JoinHandle<()>>,
    /// Dropped after `drop` below has run: flushes and joins the writer.
    _worker: WorkerGuard,
}

impl Drop for LogGuard {
    fn drop(&mut self) {
        drop(self.stop.take());
        if let Some(f) = self.flusher.take() {
            let _ = f.join();
        }
    }
}

/// Log lines gathered for the writer thread. Each formatted line arrives
/// as one `write` (the subscriber formats a whole line, then writes it);
/// a batch is handed over when it passes [`BATCH_BYTES`] or when the batch
/// thread finds lines waiting (every [`BATCH_WAIT`]). The lock is held for
/// a line's copy, and for the hand-over, which copies the batch into the
/// writer's channel and never blocks (a full channel drops the batch).
pub struct Batch {
    pending: Mutex<(Vec<u8>, NonBlocking)>,
}

impl Batch {
    fn new(out: NonBlocking) -> Self {
        Batch { pending: Mutex::new((Vec::with_capacity(BATCH_BYTES + 4096), out)) }
    }

    /// Hands what is waiting to the writer thread.
    fn hand_over(&self) {
        let mut guard = self.pending.lock().unwrap_or_else(PoisonError::into_inner);
        let (lines, out) = &mut *guard;
        send(lines, out);
    }
}

/// Hands `lines` to the writer thread's channel (never blocking: a full
/// channel drops them) and empties it, keeping its capacity.
fn send(lines: &mut Vec<u8>, out: &mut NonBlocking) {
    if !lines.is_empty() {
        let _ = std::io::Write::write_all(out, lines);
        lines.clear();
    }
}

impl std::io::Write for &Batch {
    fn write(&mut self, line: &[u8]) -> std::io::Result<usize> {
        let mut guard = self.pending.lock().unwrap_or_else(PoisonError::into_inner);
        let (lines, out) = &mut *guard;
        lines.extend_from_slice(line);
        if lines.len() >= BATCH_BYTES {
            send(lines, out);
        }
        Ok(line.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

/// Text lines (see the module comment); `ansi` colours the level.
pub struct TextLines {
    pub ansi: bool,
}

impl<S, N> FormatEvent<S, N> for TextLines
where
    S: Subscriber + for<'a> LookupSpan<'a>,
    N: for<'a> FormatFields<'a> + 'static,
{
    fn format_event(&self, _ctx: &FmtContext<'_, S, N>, mut w: Writer<'_>, event: &Event<'_>) -> fmt::Result {
        write_text_line(&mut w, std::time::SystemTime::now(), event, self.ansi)
    }
}

fn write_text_line(w: &mut impl fmt::Write, now: std::time::SystemTime, event: &Event<'_>, ansi: bool) -> fmt::Result {
    let meta = event.metadata();
    if meta.target() != ACCESS_TARGET {
        write_rfc3339(w, now)?;
        let (level, colour) = match *meta.level() {
            Level::ERROR => ("ERROR", "31"),
            Level::WARN => (" WARN", "33"),
            Level::INFO => (" INFO", "32"),
            Level::DEBUG => ("DEBUG", "34"),
            Level::TRACE => ("TRACE", "35"),
        };
        if ansi {
            for part in [" \x1b[", colour, "m", level, "\x1b[0m "] {
                w.write_str(part)?;
            }
        } else {
            for part in [" ", level, " "] {
                w.write_str(part)?;
            }
        }
    }
    let mut fields = TextFields(Items::new(w, " "));
    event.record(&mut fields);
    fields.0.result?;
    w.write_char('\n')
}

/// The items of one line as its fields are visited: a separator between
/// them, and the first write error (later items are then skipped).
struct Items<'w, W: fmt::Write> {
    w: &'w mut W,
    sep: &'static str,
    first: bool,
    result: fmt::Result,
}

impl<'w, W: fmt::Write> Items<'w, W> {
    fn new(w: &'w mut W, sep: &'static str) -> Self {
        Items { w, sep, first: true, result: Ok(()) }
    }

    /// Writes the separator (none before the first item), then the item.
    fn item(&mut self, write: impl FnOnce(&mut W) -> fmt::Result) {
        if self.result.is_err() {
            return;
        }
        let sep = if std::mem::take(&mut self.first) { "" } else { self.sep };
        self.result = self.w.write_str(sep).and_then(|_| write(self.w));
    }
}

/// Writes each visited field of a text line: the message as it is, others
/// as `name=value` (strings quoted), separated by spaces.
struct TextFields<'w, W: fmt::Write>(Items<'w, W>);

impl<W: fmt::Write> TextFields<'_, W> {
    fn field(&mut self, field: &Field, value: impl FnOnce(&mut W) -> fmt::Result) {
        let name = field.name();
        self.0.item(|w| {
            if name != "message" {
                w.write_str(name)?;
                w.write_char('=')?;
            }
            value(w)
        });
    }
}

impl<W: fmt::Write> Visit for TextFields<'_, W> {
    fn record_str(&mut self, field: &Field, value: &str) {
        if field.name() == "message" {
            self.field(field, |w| w.write_str(value));
        } else {
            self.field(field, |w| write!(w, "{value:?}"));
        }
    }
    fn record_u64(&mut self, field: &Field, value: u64) {
        self.field(field, |w| w.write_str(itoa::Buffer::new().format(value)));
    }
    fn record_i64(&mut self, field: &Field, value: i64) {
        self.field(field, |w| w.write_str(itoa::Buffer::new().format(value)));
    }
    fn record_bool(&mut self, field: &Field, value: bool) {
        self.field(field, |w| w.write_str(if value { "true" } else { "false" }));
    }
    fn record_debug(&mut self, field: &Field, value: &dyn fmt::Debug) {
        self.field(field, |w| write!(w, "{value:?}"));
    }
}

/// One JSON object per event, written by hand (see the module comment).
pub struct JsonLines;

impl<S, N> FormatEvent<S, N> for JsonLines
where
    S: Subscriber + for<'a> LookupSpan<'a>,
    N: for<'a> FormatFields<'a> + 'static,
{
    fn format_event(&self, _ctx: &FmtContext<'_, S, N>, mut w: Writer<'_>, event: &Event<'_>) -> fmt::Result {
        let now = std::time::SystemTime::now();
        // The line is put together in a `String` of this thread's and
        // copied out once: the subscriber's `Writer` is a `dyn fmt::Write`,
        // and a dynamic call for every piece of every field cost more than
        // the copy.
        thread_local!(static LINE: std::cell::RefCell<String> = std::cell::RefCell::new(String::with_capacity(1024)));
        let mut direct = None;
        let result = LINE.try_with(|cell| match cell.try_borrow_mut() {
            Ok(mut line) => {
                line.clear();
                let result = write_json_line(&mut *line, now, event).and_then(|_| w.write_str(&line));
                if line.capacity() > 64 * 1024 {
                    *line = String::with_capacity(1024);
                }
                result
            }
            // An event logged while this thread formats one (from a
            // field's `Debug`): written directly.
            Err(_) => {
                direct = Some(());
                Ok(())
            }
        });
        match (result, direct) {
            (Ok(r), None) => r,
            _ => write_json_line(&mut w, now, event),
        }
    }
}

fn write_json_line(w: &mut impl fmt::Write, now: std::time::SystemTime, event: &Event<'_>) -> fmt::Result {
    let meta = event.metadata();
    w.write_str("{\"timestamp\":\"")?;
    write_rfc3339(w, now)?;
    w.write_str("\",\"level\":\"")?;
    w.write_str(meta.level().as_str())?;
    w.write_str("\",\"fields\":{")?;
    let mut fields = Fields(Items::new(w, ","));
    event.record(&mut fields);
    fields.0.result?;
    w.write_str("},\"target\":")?;
    write_string(w, meta.target())?;
    w.write_str("}\n")
}

/// The name of a field whose value is JSON object members already
/// (`"a":1,"b":"c"`): a JSON line writes them into its `fields` as they
/// are. The access log builds its record so (`web::access`), which costs
/// about half of ten fields visited one by one. Its writer must pass valid
/// members; text lines write the value as any other string.
pub const RAW_JSON_FIELDS: &str = "fields_json";

/// Appends `s` to `out` as a JSON string, quoted and escaped.
pub fn push_json_string(out: &mut String, s: &str) {
    // Writing to a `String` cannot fail.
    let _ = write_string(out, s);
}

/// Writes each visited field as `"name":value` into the line.
struct Fields<'w, W: fmt::Write>(Items<'w, W>);

impl<W: fmt::Write> Fields<'_, W> {
    fn field(&mut self, field: &Field, value: impl FnOnce(&mut W) -> fmt::Result) {
        self.0.item(|w| {
            write_string(w, field.name())?;
            w.write_char(':')?;
            value(w)
        });
    }
}

impl<W: fmt::Write> Visit for Fields<'_, W> {
    fn record_str(&mut self, field: &Field, value: &str) {
        if field.name() == RAW_JSON_FIELDS {
            if !value.is_empty() {
                self.0.item(|w| w.write_str(value));
            }
            return;
        }
        self.field(field, |w| write_string(w, value));
    }
    fn record_u64(&mut self, field: &Field, value: u64) {
        self.field(field, |w| w.write_str(itoa::Buffer::new().format(value)));
    }
    fn record_i64(&mut self, field: &Field, value: i64) {
        self.field(field, |w| w.write_str(itoa::Buffer::new().format(value)));
    }
    fn record_bool(&mut self, field: &Field, value: bool) {
        self.field(field, |w| w.write_str(if value { "true" } else { "false" }));
    }
    fn record_f64(&mut self, field: &Field, value: f64) {
        // JSON has no NaN or infinity.
        // Shortest round-trip digits (ryu), as serde_json writes them.
        self.field(field, |w| {
            if value.is_finite() {
                w.write_str(ryu::Buffer::new().format_finite(value))
            } else {
                w.write_str("null")
            }
        });
    }
    fn record_debug(&mut self, field: &Field, value: &dyn fmt::Debug) {
        self.field(field, |w| {
            w.write_char('"')?;
            write!(Escaped(w), "{value:?}")?;
            w.write_char('"')
        });
    }
}

/// A JSON string, quoted and escaped.
fn write_string(w: &mut impl fmt::Write, s: &str) -> fmt::Result {
    w.write_char('"')?;
    Escaped(w).write_str(s)?;
    w.write_char('"')
}

/// Escapes what goes through it for the inside of a JSON string: quote,
/// backslash and control characters; everything else (UTF-8 included) as is.
struct Escaped<'a, W: fmt::Write>(&'a mut W);

impl<W: fmt::Write> fmt::Write for Escaped<'_, W> {
    fn write_str(&mut self, s: &str) -> fmt::Result {
        let special = |b: &u8| *b < 0x20 || *b == b'"' || *b == b'\\';
        // Most text needs nothing: one check (without early exit, so the
        // compiler can check many bytes at a time), one write.
        if !s.as_bytes().iter().fold(false, |any, b| any | special(b)) {
            return self.0.write_str(s);
        }
        let mut plain = 0;
        for (i, b) in s.bytes().enumerate() {
            if !special(&b) {
                continue;
            }
            self.0.write_str(&s[plain..i])?;
            match b {
                b'"' => self.0.write_str("\\\"")?,
                b'\\' => self.0.write_str("\\\\")?,
                b'\n' => self.0.write_str("\\n")?,
                b'\r' => self.0.write_str("\\r")?,
                b'\t' => self.0.write_str("\\t")?,
                _ => write!(self.0, "\\u{b:04x}")?,
            }
            plain = i + 1;
        }
        self.0.write_str(&s[plain..])
    }
}

/// `t` in UTC as RFC 3339 with microseconds: `2026-11-27T14:25:01.123456Z`.
fn write_rfc3339(w: &mut impl fmt::Write, t: std::time::SystemTime) -> fmt::Result {
    let d = t.duration_since(std::time::UNIX_EPOCH).unwrap_or_default();
    let secs = d.as_secs();
    let (year, month, day) = civil_date((secs / 86_400) as i64);
    let rem = secs % 86_400;
    let mut b = *b"0000-00-00T00:00:00.000000Z";
    digits(&mut b[0..4], year.clamp(0, 9999) as u64);
    digits(&mut b[5..7], u64::from(month));
    digits(&mut b[8..10], u64::from(day));
    digits(&mut b[11..13], rem / 3600);
    digits(&mut b[14..16], rem / 60 % 60);
    digits(&mut b[17..19], rem % 60);
    digits(&mut b[20..26], u64::from(d.subsec_micros()));
    w.write_str(std::str::from_utf8(&b).map_err(|_| fmt::Error)?)
}

/// Writes `v` into `out` as decimal digits, zero-padded to its length
/// (higher digits beyond it dropped).
pub fn digits(out: &mut [u8], mut v: u64) {
    for c in out.iter_mut().rev() {
        *c = b'0' + (v % 10) as u8;
        v /= 10;
    }
}

/// The civil (proleptic Gregorian) date of a day counted from 1970-01-01:
/// (year, month 1–12, day 1–31). H. Hinnant's `civil_from_days`.
pub fn civil_date(days: i64) -> (i64, u32, u32) {
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let month = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    (yoe + era * 400 + i64::from(month <= 2), month, day)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::{Arc, Mutex};
    use tracing_subscriber::fmt::MakeWriter;

    #[test]
    fn civil_dates_of_known_days() {
        assert_eq!(civil_date(0), (1970, 1, 1));
        assert_eq!(civil_date(11_016), (2000, 2, 29));
        assert_eq!(civil_date(20_784), (2026, 11, 27));
        assert_eq!(civil_date(-1), (1969, 12, 31));
    }

    #[test]
    fn timestamps_are_rfc3339_utc_with_microseconds() {
        let mut s = String::new();
        let t = std::time::UNIX_EPOCH + std::time::Duration::new(1_795_783_519, 123_456_789);
        write_rfc3339(&mut s, t).unwrap();
        assert_eq!(s, "2026-11-27T12:45:19.123456Z");
    }

    #[derive(Clone, Default)]
    struct Lines(Arc<Mutex<Vec<u8>>>);

    impl std::io::Write for Lines {
        fn write(&mut self, b: &[u8]) -> std::io::Result<usize> {
            self.0.lock().map_err(|_| std::io::Error::other("poisoned"))?.extend_from_slice(b);
            Ok(b.len())
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }

    impl<'a> MakeWriter<'a> for Lines {
        type Writer = Lines;
        fn make_writer(&'a self) -> Lines {
            self.clone()
        }
    }

    #[test]
    fn every_field_kind_and_hostile_text_make_valid_json_lines_of_the_json_layers_shape() {
        let out = Lines::default();
        let subscriber = tracing_subscriber::fmt().with_writer(out.clone()).event_format(JsonLines).finish();
        tracing::subscriber::with_default(subscriber, || {
            tracing::info!(
                target: "access",
                path = "/iiif/2/a\"b\\c\n\u{1}é/info.json",
                status = 200u64,
                delta = -3i64,
                duration_ms = 1.25f64,
                nan = f64::NAN,
                hot = true,
                peer = ?std::net::Ipv4Addr::LOCALHOST,
                "served {}", "it"
            );
            tracing::warn!("second");
        });
        let text = String::from_utf8(out.0.lock().unwrap().clone()).unwrap();
        let lines: Vec<serde_json::Value> = text.lines().map(|l| serde_json::from_str(l).unwrap()).collect();
        assert_eq!(lines.len(), 2);
        let (a, f) = (&lines[0], &lines[0]["fields"]);
        assert_eq!((a["level"].as_str(), a["target"].as_str()), (Some("INFO"), Some("access")));
        assert_eq!(f["path"], "/iiif/2/a\"b\\c\n\u{1}é/info.json");
        assert_eq!((f["status"].as_u64(), f["delta"].as_i64()), (Some(200), Some(-3)));
        assert_eq!((f["duration_ms"].as_f64(), f["hot"].as_bool()), (Some(1.25), Some(true)));
        assert!(f["nan"].is_null());
        assert_eq!((f["peer"].as_str(), f["message"].as_str()), (Some("127.0.0.1"), Some("served it")));
        let ts = a["timestamp"].as_str().unwrap();
        assert!(ts.len() == 27 && ts.ends_with('Z') && ts.as_bytes()[10] == b'T', "{ts}");
        assert_eq!(
            (lines[1]["level"].as_str(), lines[1]["fields"]["message"].as_str()),
            (Some("WARN"), Some("second"))
        );
    }

    #[test]
    fn text_lines_carry_time_level_and_fields_and_access_lines_are_the_line_alone() {
        let out = Lines::default();
        let subscriber =
            tracing_subscriber::fmt().with_writer(out.clone()).event_format(TextLines { ansi: false }).finish();
        tracing::subscriber::with_default(subscriber, || {
            tracing::warn!(key = "a b", n = 3u64, flag = true, "refused {}", "it");
            tracing::info!(target: "access", message = "127.0.0.1 - - [27/Nov/2026:12:45:19 +0000] \"GET / HTTP/1.1\" 200 2");
        });
        let text = String::from_utf8(out.0.lock().unwrap().clone()).unwrap();
        let lines: Vec<&str> = text.lines().collect();
        assert_eq!(lines.len(), 2, "{text:?}");
        let (ts, rest) = lines[0].split_at(27);
        assert!(ts.ends_with('Z') && ts.as_bytes()[10] == b'T', "{ts}");
        assert_eq!(rest, "  WARN refused it key=\"a b\" n=3 flag=true");
        assert_eq!(lines[1], "127.0.0.1 - - [27/Nov/2026:12:45:19 +0000] \"GET / HTTP/1.1\" 200 2");
    }

    #[test]
    fn batched_lines_reach_the_writer_whole_in_order_within_the_wait_and_all_at_the_end() {
        use std::io::Write as _;
        let out = Lines::default();
        let (batch, guard) = batched(out.clone()).unwrap();
        (&*batch).write_all(b"first\n").unwrap();
        // Fewer bytes than a batch: handed over by the batch thread.
        let deadline = std::time::Instant::now() + BATCH_WAIT * 30;
        while out.0.lock().unwrap().is_empty() && std::time::Instant::now() < deadline {
            std::thread::sleep(BATCH_WAIT / 4);
        }
        assert_eq!(out.0.lock().unwrap().as_slice(), b"first\n");
        // More than a batch from several threads, then the guard dropped:
        // every line arrives, whole, each thread's in its order.
        std::thread::scope(|scope| {
            for t in 0..4 {
                let batch = &batch;
                scope.spawn(move || {
                    for i in 0..2000 {
                        (&**batch).write_all(format!("t{t} line {i:05} {}\n", "x".repeat(40)).as_bytes()).unwrap();
                    }
                });
            }
        });
        drop(guard);
        let text = String::from_utf8(out.0.lock().unwrap().clone()).unwrap();
        let lines: Vec<&str> = text.lines().skip(1).collect();
        assert_eq!(lines.len(), 8000);
        for t in 0..4 {
            let mine: Vec<usize> =
                lines.iter().filter(|l| l.starts_with(&format!("t{t} "))).map(|l| l[8..13].parse().unwrap()).collect();
            assert_eq!(mine, (0..2000).collect::<Vec<_>>());
        }
    }
}
