//! The public base URL of a request: from configuration, or from the Host
//! header and the `X-Forwarded-Proto`, `X-Forwarded-Host` and
//! `X-Forwarded-Prefix` headers a reverse proxy sets.

use http::header::{HeaderName, HOST};
use http::HeaderMap;

const X_FORWARDED_PROTO: HeaderName = HeaderName::from_static("x-forwarded-proto");
const X_FORWARDED_HOST: HeaderName = HeaderName::from_static("x-forwarded-host");
const X_FORWARDED_PREFIX: HeaderName = HeaderName::from_static("x-forwarded-prefix");

/// Appends to `out` everything [`base_url`] derives the base from — the raw
/// headers it reads, or nothing when the base is configured — so two
/// requests with equal appended text have equal base URLs, without building
/// either. Returns false if a header is not visible ASCII (no key then).
/// Keep in step with [`base_url`].
pub fn append_inputs(configured: &str, headers: &HeaderMap, out: &mut String) -> bool {
    if !configured.is_empty() {
        return true;
    }
    // One pass over the request's few headers, keeping the first of each
    // (as `HeaderMap::get` would), rather than four hashed lookups.
    let names = [&X_FORWARDED_PROTO, &X_FORWARDED_HOST, &HOST, &X_FORWARDED_PREFIX];
    let mut found: [Option<&http::HeaderValue>; 4] = [None; 4];
    for (name, value) in headers {
        if let Some(i) = names.iter().position(|n| *n == name) {
            found[i].get_or_insert(value);
        }
    }
    for v in found {
        out.push('\n');
        if let Some(v) = v {
            match v.to_str() {
                Ok(v) => out.push_str(v),
                Err(_) => return false,
            }
        }
    }
    true
}

fn first(headers: &HeaderMap, name: &str) -> Option<String> {
    let v = headers.get(name)?.to_str().ok()?;
    let v = v.split(',').next()?.trim();
    (!v.is_empty()).then(|| v.to_string())
}

fn safe_host(h: &str) -> bool {
    h.len() <= 255 && h.chars().all(|c| c.is_ascii_alphanumeric() || ".-:[]_".contains(c))
}

fn safe_prefix(p: &str) -> bool {
    p.len() <= 255 && p.starts_with('/') && p.chars().all(|c| c.is_ascii_alphanumeric() || "/-._~%".contains(c))
}

/// Scheme, host and any proxy prefix, without a trailing slash
/// (e.g. `https://images.example.org/proxy`).
pub fn base_url(configured: &str, headers: &HeaderMap) -> String {
    if !configured.is_empty() {
        return configured.trim_end_matches('/').to_string();
    }
    let scheme = match first(headers, X_FORWARDED_PROTO.as_str()).as_deref() {
        Some("https") => "https",
        _ => "http",
    };
    let host = first(headers, X_FORWARDED_HOST.as_str())
        .or_else(|| first(headers, HOST.as_str()))
        .filter(|h| safe_host(h))
        .unwrap_or_else(|| "localhost".to_string());
    let prefix = first(headers, X_FORWARDED_PREFIX.as_str())
        .filter(|p| safe_prefix(p))
        .map(|p| p.trim_end_matches('/').to_string())
        .unwrap_or_default();
    format!("{scheme}://{host}{prefix}")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn h(pairs: &[(&'static str, &'static str)]) -> HeaderMap {
        let mut m = HeaderMap::new();
        for (k, v) in pairs {
            m.insert(*k, v.parse().unwrap());
        }
        m
    }

    #[test]
    fn configured_base_wins() {
        assert_eq!(base_url("https://img.example.org/", &h(&[("host", "x")])), "https://img.example.org");
    }

    #[test]
    fn host_header_gives_http_base() {
        assert_eq!(base_url("", &h(&[("host", "127.0.0.1:8182")])), "http://127.0.0.1:8182");
    }

    #[test]
    fn forwarded_headers_are_honoured() {
        let m = h(&[
            ("host", "internal:8182"),
            ("x-forwarded-proto", "https"),
            ("x-forwarded-host", "images.example.org"),
            ("x-forwarded-prefix", "/cantaloupe/"),
        ]);
        assert_eq!(base_url("", &m), "https://images.example.org/cantaloupe");
    }

    #[test]
    fn hostile_host_values_are_ignored() {
        let m = h(&[("host", "evil.com/\"><script>")]);
        assert_eq!(base_url("", &m), "http://localhost");
    }
}
