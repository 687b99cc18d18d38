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
//! answers that are not images), referer and user agent. In text it starts
//! in the combined log format; in JSON its fields are the record's.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::OnceLock;
use std::time::Duration;

use bytes::Bytes;
use http::{HeaderMap, HeaderValue, Method, Response, Uri};

use crate::cache::Tier;

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
    HeaderValue::from_str(&format!("{x:016x}")).unwrap_or_else(|_| HeaderValue::from_static("-"))
}

/// What one access line says.
pub struct Entry<'a> {
    pub peer: SocketAddr,
    pub method: &'a Method,
    pub uri: &'a Uri,
    pub request_headers: &'a HeaderMap,
    pub elapsed: Duration,
    pub id: &'a HeaderValue,
}

/// Writes the access line for `response`. `json` picks the field form.
pub fn log(e: &Entry<'_>, response: &Response<Bytes>, json: bool) {
    // Filtered out (`log.level`, RUST_LOG): nothing to format.
    if !tracing::enabled!(target: "access", tracing::Level::INFO) {
        return;
    }
    let status = response.status().as_u16();
    let bytes = response.body().len();
    let tier = response.extensions().get::<Tier>().map_or("-", |t| t.as_str());
    let path = e.uri.path_and_query().map_or("/", |p| p.as_str());
    let header =
        |name: http::header::HeaderName| e.request_headers.get(name).and_then(|v| v.to_str().ok()).unwrap_or("-");
    let id = e.id.to_str().unwrap_or("-");
    let ms = e.elapsed.as_secs_f64() * 1000.0;
    if json {
        tracing::info!(
            target: "access",
            client = %e.peer.ip(),
            method = %e.method,
            path,
            status,
            bytes,
            duration_ms = ms,
            tier,
            request_id = id,
            referer = header(http::header::REFERER),
            user_agent = header(http::header::USER_AGENT),
        );
    } else {
        let time = clf_time(std::time::SystemTime::now());
        tracing::info!(
            target: "access",
            "{} - - [{}] \"{} {} HTTP/1.1\" {} {} \"{}\" \"{}\" {:.3}ms tier={} id={}",
            e.peer.ip(),
            time,
            e.method,
            path,
            status,
            bytes,
            header(http::header::REFERER),
            header(http::header::USER_AGENT),
            ms,
            tier,
            id
        );
    }
}

/// A time as the common log format writes it, in UTC: `27/Nov/2026:12:45:19 +0000`.
fn clf_time(t: std::time::SystemTime) -> String {
    const MONTHS: [&str; 12] = ["Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec"];
    let secs = t.duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_secs());
    let (days, rem) = ((secs / 86_400) as i64, secs % 86_400);
    let (year, month, day) = crate::logging::civil_date(days);
    let name = MONTHS.get((month as usize).saturating_sub(1)).copied().unwrap_or("Jan");
    format!("{day:02}/{name}/{year}:{:02}:{:02}:{:02} +0000", rem / 3600, rem / 60 % 60, rem % 60)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn times_are_written_as_the_common_log_format_writes_them() {
        let at = |s: u64| clf_time(std::time::UNIX_EPOCH + Duration::from_secs(s));
        assert_eq!(at(0), "01/Jan/1970:00:00:00 +0000");
        assert_eq!(at(951_782_400), "29/Feb/2000:00:00:00 +0000");
        // 2026-11-27T12:45:19Z
        assert_eq!(at(1_795_783_519), "27/Nov/2026:12:45:19 +0000");
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
        let ids: std::collections::HashSet<_> = (0..1000).map(|_| request_id(&HeaderMap::new())).collect();
        assert_eq!(ids.len(), 1000);
        let long = "x".repeat(129);
        let mut h = HeaderMap::new();
        h.insert(REQUEST_ID, HeaderValue::from_str(&long).unwrap());
        assert_eq!(request_id(&h).len(), 16);
    }
}
