//! The access log: one line per request through `tracing` (target
//! `access`), and the request id every response carries.
//!
//! A request id is the client's `X-Request-Id` when it is sane (1 to 128
//! visible ASCII characters), else a new one: 16 hex digits from a process
//! seed and a counter (unique within a process, unguessable across them).
//! It is echoed in the response, so a client, a balancer and Tessera's log
//! name a request alike.
//!
//! The line is written after the answer is built: client address, method,
//! path and query, status, body bytes, duration, the tier that answered
//! (`cache::Tier`, set by the service as a response extension; "-" for
//! answers that are not images), referer and user agent. In text it is the
//! combined log format from its first byte, then duration, tier and id; in
//! JSON its fields are the record's.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::OnceLock;
use std::time::Duration;

use bytes::Bytes;
use http::{HeaderMap, HeaderValue, Method, Response, Uri};

use crate::cache::Tier;

/// The `tracing` target of access lines (filter them with `access=info`).
pub const TARGET: &str = crate::logging::ACCESS_TARGET;

/// The response header that carries the request id.
pub const REQUEST_ID: &str = "x-request-id";

/// The request's id: the client's, when sane, else a new one.
pub fn request_id(headers: &HeaderMap) -> HeaderValue {
    if let Some(v) = headers.get(REQUEST_ID) {
        let b = v.as_bytes();
        if (1..=128).contains(&b.len()) && b.iter().all(|c| c.is_ascii_graphic()) {
            return v.clone();
        }
    }
    static SEED: OnceLock<u64> = OnceLock::new();
    static NEXT: AtomicU64 = AtomicU64::new(0);
    let seed = *SEED.get_or_init(rand::random::<u64>);
    // A bijective mix of seed + counter: ids never repeat within a process.
    let mut x = seed.wrapping_add(NEXT.fetch_add(1, Ordering::Relaxed).wrapping_mul(0x9E37_79B9_7F4A_7C15));
    x = (x ^ (x >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    x = (x ^ (x >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    x ^= x >> 31;
    let mut hex = [0u8; 16];
    for (i, c) in hex.iter_mut().enumerate() {
        *c = b"0123456789abcdef"[(x >> (60 - 4 * i) & 0xf) as usize];
    }
    HeaderValue::from_bytes(&hex).unwrap_or_else(|_| HeaderValue::from_static("-"))
}

/// What one access line says.
pub struct Entry<'a> {
    pub peer: SocketAddr,
    pub method: &'a Method,
    pub uri: &'a Uri,
    /// The request's protocol, as the combined log format's request line
    /// names it.
    pub version: http::Version,
    pub request_headers: &'a HeaderMap,
    pub elapsed: Duration,
    pub id: &'a HeaderValue,
}

/// The protocol as a request line writes it (`HTTP/2.0`, as Apache and
/// nginx log an HTTP/2 request).
fn protocol(v: http::Version) -> &'static str {
    match v {
        http::Version::HTTP_09 => "HTTP/0.9",
        http::Version::HTTP_10 => "HTTP/1.0",
        http::Version::HTTP_2 => "HTTP/2.0",
        http::Version::HTTP_3 => "HTTP/3.0",
        _ => "HTTP/1.1",
    }
}

/// Writes the access line for `response`. `json` picks the field form.
///
/// The line is one `tracing` event. Its text is put together by hand
/// (integers through `itoa`, the time and address digit by digit) in a
/// buffer each thread keeps: through `core::fmt` with a dozen arguments a
/// line cost nearly as many instructions as the rest of a cached tile's
/// answer (docs/bench/access-log.md).
pub fn log(e: &Entry<'_>, response: &Response<Bytes>, json: bool) {
    // Filtered out (`log.level`, RUST_LOG): nothing to format.
    if !tracing::enabled!(target: TARGET, tracing::Level::INFO) {
        return;
    }
    let status = response.status().as_u16();
    let bytes = response.body().len();
    let tier = response.extensions().get::<Tier>().map_or("-", |t| t.as_str());
    let path = e.uri.path_and_query().map_or("/", |p| p.as_str());
    let header =
        |name: http::header::HeaderName| e.request_headers.get(name).and_then(|v| v.to_str().ok()).unwrap_or("-");
    let id = e.id.to_str().unwrap_or("-");
    let mut ip = [0u8; 48];
    let client = ip_text(e.peer.ip(), &mut ip);
    let (referer, agent) = (header(http::header::REFERER), header(http::header::USER_AGENT));
    let us = micros(e.elapsed);
    thread_local!(static LINE: std::cell::RefCell<String> = std::cell::RefCell::new(String::with_capacity(512)));
    // `try_`: a line is never worth a panic (a thread being torn down).
    let _ = LINE.try_with(|cell| {
        let Ok(mut line) = cell.try_borrow_mut() else { return };
        let line = &mut *line;
        line.clear();
        let mut num = itoa::Buffer::new();
        if json {
            // The record's members, written here as the JSON formatter
            // would write ten fields, and handed over as one field it copies
            // as they are (`logging::RAW_JSON_FIELDS`).
            for (name, value) in [("client", client), ("method", e.method.as_str()), ("path", path)] {
                json_member(line, name, |l| crate::logging::push_json_string(l, value));
            }
            json_member(line, "status", |l| l.push_str(num.format(status)));
            json_member(line, "bytes", |l| l.push_str(num.format(bytes)));
            json_member(line, "duration_ms", |l| push_millis(l, us));
            for (name, value) in [("tier", tier), ("request_id", id), ("referer", referer), ("user_agent", agent)] {
                json_member(line, name, |l| crate::logging::push_json_string(l, value));
            }
            tracing::info!(target: TARGET, fields_json = line.as_str());
            return;
        }
        for part in [client, " - - ["] {
            line.push_str(part);
        }
        push_clf_time(line, std::time::SystemTime::now());
        for part in ["] \"", e.method.as_str(), " ", path, " ", protocol(e.version), "\" ", num.format(status), " "] {
            line.push_str(part);
        }
        line.push_str(num.format(bytes));
        for part in [" \"", referer, "\" \"", agent, "\" "] {
            line.push_str(part);
        }
        push_millis(line, us);
        for part in ["ms tier=", tier, " id=", id] {
            line.push_str(part);
        }
        // The line is the message: the text format writes it as it is.
        tracing::info!(target: TARGET, message = line.as_str());
    });
}

/// Appends `,"name":` (no comma first) and the value `write` appends.
fn json_member(line: &mut String, name: &str, write: impl FnOnce(&mut String)) {
    if !line.is_empty() {
        line.push(',');
    }
    line.push('"');
    line.push_str(name);
    line.push_str("\":");
    write(line);
}

/// Milliseconds with three decimals (`12.345`), from whole microseconds:
/// the same text in both formats, and a JSON number.
fn push_millis(line: &mut String, us: u64) {
    line.push_str(itoa::Buffer::new().format(us / 1000));
    let mut frac = *b".000";
    crate::logging::digits(&mut frac[1..], us % 1000);
    line.push_str(std::str::from_utf8(&frac).unwrap_or(".000"));
}

/// Whole microseconds.
fn micros(d: Duration) -> u64 {
    d.as_micros().min(u128::from(u64::MAX)) as u64
}

/// The address as text, in `buf`: IPv4 digit by digit, IPv6 through its
/// `Display`.
fn ip_text(ip: std::net::IpAddr, buf: &mut [u8; 48]) -> &str {
    use std::io::Write as _;
    let mut at = 0;
    match ip {
        std::net::IpAddr::V4(v4) => {
            let mut num = itoa::Buffer::new();
            for (i, octet) in v4.octets().into_iter().enumerate() {
                if i > 0 {
                    buf[at] = b'.';
                    at += 1;
                }
                let d = num.format(octet).as_bytes();
                buf[at..at + d.len()].copy_from_slice(d);
                at += d.len();
            }
        }
        std::net::IpAddr::V6(v6) => {
            let mut cursor = std::io::Cursor::new(&mut buf[..]);
            if write!(cursor, "{v6}").is_ok() {
                at = cursor.position() as usize;
            }
        }
    }
    std::str::from_utf8(&buf[..at]).unwrap_or("-")
}

/// Appends a time as the common log format writes it, in UTC:
/// `27/Nov/2026:12:45:19 +0000`.
fn push_clf_time(out: &mut String, t: std::time::SystemTime) {
    const MONTHS: [&str; 12] = ["Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec"];
    let secs = t.duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_secs());
    let (days, rem) = ((secs / 86_400) as i64, secs % 86_400);
    let (year, month, day) = crate::logging::civil_date(days);
    let mut b = *b"00/Jan/0000:00:00:00 +0000";
    crate::logging::digits(&mut b[0..2], u64::from(day));
    let name = MONTHS.get((month as usize).saturating_sub(1)).copied().unwrap_or("Jan");
    b[3..6].copy_from_slice(name.as_bytes());
    crate::logging::digits(&mut b[7..11], year.clamp(0, 9999) as u64);
    crate::logging::digits(&mut b[12..14], rem / 3600);
    crate::logging::digits(&mut b[15..17], rem / 60 % 60);
    crate::logging::digits(&mut b[18..20], rem % 60);
    out.push_str(std::str::from_utf8(&b).unwrap_or("01/Jan/1970:00:00:00 +0000"));
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn times_are_written_as_the_common_log_format_writes_them() {
        let at = |s: u64| {
            let mut out = String::new();
            push_clf_time(&mut out, std::time::UNIX_EPOCH + Duration::from_secs(s));
            out
        };
        assert_eq!(at(0), "01/Jan/1970:00:00:00 +0000");
        assert_eq!(at(951_782_400), "29/Feb/2000:00:00:00 +0000");
        // 2026-11-27T12:45:19Z
        assert_eq!(at(1_795_783_519), "27/Nov/2026:12:45:19 +0000");
    }

    #[test]
    fn addresses_are_written_as_their_display_writes_them() {
        for ip in ["127.0.0.1", "0.0.0.0", "255.255.255.255", "10.20.3.4", "::1", "2001:db8::ff00:42:8329"] {
            let ip: std::net::IpAddr = ip.parse().unwrap();
            let mut buf = [0u8; 48];
            assert_eq!(ip_text(ip, &mut buf), ip.to_string());
        }
    }

    #[test]
    fn a_sane_client_id_is_kept_and_anything_else_gets_a_new_unique_one() {
        let mut h = HeaderMap::new();
        h.insert(REQUEST_ID, HeaderValue::from_static("abc-123"));
        assert_eq!(request_id(&h), "abc-123");
        let mut h = HeaderMap::new();
        h.insert(REQUEST_ID, HeaderValue::from_static("has space"));
        let fresh = request_id(&h);
        assert_eq!(fresh.len(), 16);
        assert!(fresh.as_bytes().iter().all(|c| c.is_ascii_digit() || (b'a'..=b'f').contains(c)), "{fresh:?}");
        let ids: std::collections::HashSet<_> = (0..1000).map(|_| request_id(&HeaderMap::new())).collect();
        assert_eq!(ids.len(), 1000);
        let long = "x".repeat(129);
        let mut h = HeaderMap::new();
        h.insert(REQUEST_ID, HeaderValue::from_str(&long).unwrap());
        assert_eq!(request_id(&h).len(), 16);
    }

    /// The lines `log` writes for one hostile request, in each format.
    fn lines_of(json: bool) -> String {
        lines_of_version(json, http::Version::HTTP_11)
    }

    fn lines_of_version(json: bool, version: http::Version) -> String {
        #[derive(Clone, Default)]
        struct Out(std::sync::Arc<std::sync::Mutex<Vec<u8>>>);
        impl std::io::Write for Out {
            fn write(&mut self, b: &[u8]) -> std::io::Result<usize> {
                self.0.lock().unwrap().extend_from_slice(b);
                Ok(b.len())
            }
            fn flush(&mut self) -> std::io::Result<()> {
                Ok(())
            }
        }
        let out = Out::default();
        let w = out.clone();
        let fmt = tracing_subscriber::fmt().with_writer(move || w.clone());
        let subscriber: Box<dyn tracing::Subscriber + Send + Sync> = if json {
            Box::new(fmt.event_format(crate::logging::JsonLines).finish())
        } else {
            Box::new(fmt.event_format(crate::logging::TextLines { ansi: false }).finish())
        };
        let mut headers = HeaderMap::new();
        headers.insert(http::header::USER_AGENT, HeaderValue::from_static("probe \"quoted\" \\ agent/1.0"));
        let uri: Uri = "/iiif/2/a%22b/info.json?q=1".parse().unwrap();
        let id = HeaderValue::from_static("abc-1");
        let entry = Entry {
            peer: "10.0.0.7:4000".parse().unwrap(),
            method: &Method::GET,
            uri: &uri,
            version,
            request_headers: &headers,
            elapsed: Duration::from_micros(1234),
            id: &id,
        };
        let mut response = Response::new(Bytes::from_static(b"abc"));
        *response.status_mut() = http::StatusCode::NOT_FOUND;
        response.extensions_mut().insert(Tier::Hot);
        tracing::subscriber::with_default(subscriber, || log(&entry, &response, json));
        let text = String::from_utf8(out.0.lock().unwrap().clone()).unwrap();
        text
    }

    #[test]
    fn a_json_access_record_has_every_field_typed_and_hostile_text_escaped() {
        let text = lines_of(true);
        assert_eq!(text.lines().count(), 1, "{text}");
        let r: serde_json::Value = serde_json::from_str(text.trim_end()).unwrap_or_else(|e| panic!("{e}: {text}"));
        assert_eq!((r["level"].as_str(), r["target"].as_str()), (Some("INFO"), Some(TARGET)));
        let f = &r["fields"];
        let want = serde_json::json!({
            "client": "10.0.0.7", "method": "GET", "path": "/iiif/2/a%22b/info.json?q=1", "status": 404,
            "bytes": 3, "duration_ms": 1.234, "tier": "hot", "request_id": "abc-1", "referer": "-",
            "user_agent": "probe \"quoted\" \\ agent/1.0",
        });
        assert_eq!(f, &want);
    }

    #[test]
    fn a_text_access_line_is_the_combined_log_format_then_duration_tier_and_id() {
        let text = lines_of(false);
        let line = text.trim_end();
        let (head, rest) = line.split_once(" [").unwrap();
        assert_eq!(head, "10.0.0.7 - -");
        let (_, rest) = rest.split_once("] ").unwrap();
        assert_eq!(
            rest,
            "\"GET /iiif/2/a%22b/info.json?q=1 HTTP/1.1\" 404 3 \"-\" \"probe \"quoted\" \\ agent/1.0\" 1.234ms tier=hot id=abc-1"
        );
    }

    #[test]
    fn the_request_line_names_the_protocol_the_client_spoke() {
        for (version, name) in [
            (http::Version::HTTP_10, "HTTP/1.0"),
            (http::Version::HTTP_11, "HTTP/1.1"),
            (http::Version::HTTP_2, "HTTP/2.0"),
        ] {
            let text = lines_of_version(false, version);
            assert!(text.contains(&format!("info.json?q=1 {name}\" 404 ")), "{text}");
        }
    }
}
