//! The public base URL of a request: from configuration, or from the Host
//! header and the `X-Forwarded-Proto`, `X-Forwarded-Host` and
//! `X-Forwarded-Prefix` headers a reverse proxy sets.

use http::HeaderMap;

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
    let scheme = match first(headers, "x-forwarded-proto").as_deref() {
        Some("https") => "https",
        _ => "http",
    };
    let host = first(headers, "x-forwarded-host")
        .or_else(|| first(headers, "host"))
        .filter(|h| safe_host(h))
        .unwrap_or_else(|| "localhost".to_string());
    let prefix = first(headers, "x-forwarded-prefix")
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
