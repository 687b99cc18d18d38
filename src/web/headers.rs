//! The response-header rules every handler shares, written once: the
//! conditional GET (`If-None-Match` before `If-Modified-Since`, as RFC 9110
//! orders them), the single merged `Vary` line, and JSON-LD negotiation.
//! They know nothing of IIIF or of the state of the server.

use std::time::{SystemTime, UNIX_EPOCH};

use http::header::{self, HeaderMap, HeaderValue};

/// Adds fields to `Vary`, keeping one header line and each field once
/// (compared without case), so the result does not depend on which handler
/// or policy added its fields first.
pub fn add_vary(resp: &mut HeaderMap, fields: &[&str]) {
    for field in fields {
        let merged = match resp.get(header::VARY).and_then(|v| v.to_str().ok()) {
            Some(cur) if cur.split(',').any(|f| f.trim().eq_ignore_ascii_case(field)) => continue,
            Some(cur) => format!("{cur}, {field}"),
            None => field.to_string(),
        };
        if let Ok(v) = HeaderValue::from_str(&merged) {
            resp.insert(header::VARY, v);
        }
    }
}

/// The request's If-None-Match against `etag` (weak comparison, as RFC 9110
/// asks for If-None-Match); `None` when the header is absent.
pub fn etag_matches(h: &HeaderMap, etag: &str) -> Option<bool> {
    let inm = h.get(header::IF_NONE_MATCH)?.to_str().ok()?;
    Some(inm.split(',').map(str::trim).any(|t| t == "*" || t == etag || t.strip_prefix("W/") == Some(etag)))
}

/// Whether a conditional GET is answered 304: If-None-Match decides when
/// present; otherwise If-Modified-Since against `modified`, when the
/// resource has a modification time.
pub fn not_modified(h: &HeaderMap, etag: &str, modified: Option<SystemTime>) -> bool {
    if let Some(m) = etag_matches(h, etag) {
        return m;
    }
    let (Some(modified), Some(ims)) = (modified, h.get(header::IF_MODIFIED_SINCE).and_then(|v| v.to_str().ok())) else {
        return false;
    };
    let Ok(since) = httpdate::parse_http_date(ims) else {
        return false;
    };
    // HTTP dates have whole seconds.
    let m = modified.duration_since(UNIX_EPOCH).map(|d| d.as_secs()).unwrap_or(u64::MAX);
    let s = since.duration_since(UNIX_EPOCH).map(|d| d.as_secs()).unwrap_or(0);
    m <= s
}

/// Whether the request asks for JSON-LD (`Accept: application/ld+json`).
pub fn wants_json_ld(h: &HeaderMap) -> bool {
    h.get(header::ACCEPT).and_then(|a| a.to_str().ok()).is_some_and(|a| a.contains("application/ld+json"))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    fn with(name: header::HeaderName, value: &str) -> HeaderMap {
        let mut h = HeaderMap::new();
        h.insert(name, HeaderValue::from_str(value).unwrap());
        h
    }

    #[test]
    fn vary_is_one_line_whatever_the_order_fields_are_added_in() {
        let mut a = HeaderMap::new();
        add_vary(&mut a, &["Accept"]);
        add_vary(&mut a, &["Origin", "accept"]);
        let mut b = HeaderMap::new();
        add_vary(&mut b, &["Origin"]);
        add_vary(&mut b, &["Accept", "Origin"]);
        assert_eq!(a.get_all(header::VARY).iter().count(), 1);
        let set = |h: &HeaderMap| {
            let mut v: Vec<String> =
                h[header::VARY].to_str().unwrap().split(',').map(|f| f.trim().to_ascii_lowercase()).collect();
            v.sort();
            v
        };
        assert_eq!(set(&a), vec!["accept", "origin"]);
        assert_eq!(set(&a), set(&b));
    }

    #[test]
    fn if_none_match_matches_strong_weak_listed_and_star() {
        let tag = "\"abc\"";
        assert_eq!(etag_matches(&HeaderMap::new(), tag), None);
        assert_eq!(etag_matches(&with(header::IF_NONE_MATCH, "\"abc\""), tag), Some(true));
        assert_eq!(etag_matches(&with(header::IF_NONE_MATCH, "W/\"abc\""), tag), Some(true));
        assert_eq!(etag_matches(&with(header::IF_NONE_MATCH, "\"x\", \"abc\""), tag), Some(true));
        assert_eq!(etag_matches(&with(header::IF_NONE_MATCH, "*"), tag), Some(true));
        assert_eq!(etag_matches(&with(header::IF_NONE_MATCH, "\"abd\""), tag), Some(false));
    }

    #[test]
    fn if_none_match_takes_precedence_over_if_modified_since() {
        let modified = UNIX_EPOCH + Duration::from_secs(1_700_000_000);
        let mut h = with(header::IF_NONE_MATCH, "\"other\"");
        h.insert(header::IF_MODIFIED_SINCE, HeaderValue::from_str(&httpdate::fmt_http_date(modified)).unwrap());
        assert!(!not_modified(&h, "\"abc\"", Some(modified)));
    }

    #[test]
    fn if_modified_since_compares_whole_seconds_and_needs_a_time() {
        let modified = UNIX_EPOCH + Duration::from_millis(1_700_000_000_400);
        let at = |secs: u64| {
            let t = UNIX_EPOCH + Duration::from_secs(secs);
            with(header::IF_MODIFIED_SINCE, &httpdate::fmt_http_date(t))
        };
        assert!(not_modified(&at(1_700_000_000), "\"e\"", Some(modified)));
        assert!(!not_modified(&at(1_699_999_999), "\"e\"", Some(modified)));
        assert!(!not_modified(&at(1_700_000_000), "\"e\"", None));
        assert!(!not_modified(&with(header::IF_MODIFIED_SINCE, "not a date"), "\"e\"", Some(modified)));
    }

    #[test]
    fn json_ld_is_wanted_only_when_accept_names_it() {
        assert!(wants_json_ld(&with(header::ACCEPT, "application/ld+json, */*")));
        assert!(!wants_json_ld(&with(header::ACCEPT, "application/json")));
        assert!(!wants_json_ld(&HeaderMap::new()));
    }
}
