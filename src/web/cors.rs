//! The CORS policy, applied alike to images, info.json, manifests and errors.
//!
//! `*` (the default) answers every origin with exactly `*`. A list echoes a
//! listed `Origin` with `Vary: Origin` (and credentials if configured) and
//! sends nothing for other origins, so browsers refuse them. Preflight
//! `OPTIONS` is answered for any path, including requests that will carry an
//! `Authorization` header.

use http::header::{HeaderMap, HeaderValue};

use crate::config::Cors as CorsCfg;
use crate::web::headers::add_vary;

#[derive(Clone, Debug)]
pub struct CorsPolicy {
    any: bool,
    origins: Vec<String>,
    credentials: bool,
    max_age: u64,
}

pub const EXPOSE: &str = "Link, ETag, Content-Length, Content-Type, Last-Modified, Retry-After";

impl CorsPolicy {
    pub fn from_config(c: &CorsCfg) -> Self {
        CorsPolicy {
            any: c.allowed_origins.iter().any(|o| o == "*"),
            origins: c
                .allowed_origins
                .iter()
                .filter(|o| *o != "*")
                .map(|o| o.trim_end_matches('/').to_string())
                .collect(),
            credentials: c.allow_credentials,
            max_age: c.max_age,
        }
    }

    /// Whether [`CorsPolicy::apply`] adds the same headers whatever the
    /// request (the `*` policy), so they can be stored with a response.
    pub fn is_constant(&self) -> bool {
        self.any
    }

    /// The value of Access-Control-Allow-Origin for a request, if any.
    fn allow_origin(&self, origin: Option<&HeaderValue>) -> Option<HeaderValue> {
        if self.any {
            return Some(HeaderValue::from_static("*"));
        }
        let o = origin?.to_str().ok()?;
        self.origins.iter().any(|a| a == o).then(|| HeaderValue::from_str(o).ok()).flatten()
    }

    /// Adds the CORS headers of an actual (non-preflight) response.
    pub fn apply(&self, req: &HeaderMap, resp: &mut HeaderMap) {
        if !self.any {
            add_vary(resp, &["Origin"]);
        }
        if let Some(v) = self.allow_origin(req.get(http::header::ORIGIN)) {
            resp.insert(http::header::ACCESS_CONTROL_ALLOW_ORIGIN, v);
            resp.insert(http::header::ACCESS_CONTROL_EXPOSE_HEADERS, HeaderValue::from_static(EXPOSE));
            if self.credentials && !self.any {
                resp.insert(http::header::ACCESS_CONTROL_ALLOW_CREDENTIALS, HeaderValue::from_static("true"));
            }
        }
    }

    /// Adds the headers of a preflight answer.
    pub fn preflight(&self, req: &HeaderMap, resp: &mut HeaderMap) {
        self.apply(req, resp);
        if !resp.contains_key(http::header::ACCESS_CONTROL_ALLOW_ORIGIN) {
            return;
        }
        resp.insert(http::header::ACCESS_CONTROL_ALLOW_METHODS, HeaderValue::from_static("GET, HEAD, OPTIONS"));
        let allow_headers = req
            .get(http::header::ACCESS_CONTROL_REQUEST_HEADERS)
            .filter(|v| {
                v.to_str().map(|s| s.chars().all(|c| c.is_ascii_alphanumeric() || ", -_".contains(c))).unwrap_or(false)
            })
            .cloned()
            .unwrap_or_else(|| {
                HeaderValue::from_static("Authorization, Accept, Content-Type, Range, If-None-Match, If-Modified-Since")
            });
        resp.insert(http::header::ACCESS_CONTROL_ALLOW_HEADERS, allow_headers);
        if let Ok(v) = HeaderValue::from_str(&self.max_age.to_string()) {
            resp.insert(http::header::ACCESS_CONTROL_MAX_AGE, v);
        }
    }
}
