//! Routing: a request head to the handler of its resource (health,
//! metrics, the home page and viewer, manifests, admin, the Image API's
//! redirect, info.json and image, and Deep Zoom and Zoomify), then the headers every answer shares
//! (CORS, `HEAD` bodies) and the request metrics. The handlers live with
//! their resource (`service` for the Image API, `pages`, `manifests`,
//! `admin`, `zoom_protocols`); this module is the only one that knows them all.

use std::sync::Arc;
use std::time::Instant;

use bytes::Bytes;
use http::header::{self, HeaderValue};
use http::{Method, Response, StatusCode};

use crate::error::Error;
use crate::iiif::ApiVersion;
use crate::metrics::Stage;
use crate::service::{empty, error_response, text, App, Head};

/// A route, decided from the path alone (`DeepZoom` and `Zoomify` hold the
/// path after `/dzi/` and `/zoomify/`).
#[derive(Debug, PartialEq)]
enum Route<'a> {
    Health,
    Metrics,
    Home,
    Viewer(&'a str),
    Static(&'a str),
    Presentation(crate::manifests::Resource<'a>),
    Redirect { v: ApiVersion, raw_id: &'a str },
    Info { v: ApiVersion, raw_id: &'a str },
    Image { v: ApiVersion, raw_id: &'a str, params: [&'a str; 4] },
    DeepZoom(&'a str),
    Zoomify(&'a str),
    NotFound,
}

fn route<'a>(path: &'a str, p2: &str, p3: &str) -> Route<'a> {
    match path {
        "/health" => return Route::Health,
        "/metrics" => return Route::Metrics,
        "/" => return Route::Home,
        _ => {}
    }
    let (v, rest) = if let Some(r) = path.strip_prefix(p2).and_then(|r| r.strip_prefix('/')) {
        (ApiVersion::V2, r)
    } else if let Some(r) = path.strip_prefix(p3).and_then(|r| r.strip_prefix('/')) {
        (ApiVersion::V3, r)
    } else if let Some(item) = path.strip_prefix("/viewer/").filter(|i| !i.is_empty() && !i.contains('/')) {
        return Route::Viewer(item);
    } else if let Some(f) = path.strip_prefix("/static/") {
        return Route::Static(f);
    } else if let Some(res) = crate::manifests::route(path) {
        return Route::Presentation(res);
    } else if let Some(rest) = path.strip_prefix("/dzi/") {
        return Route::DeepZoom(rest);
    } else if let Some(rest) = path.strip_prefix("/zoomify/") {
        return Route::Zoomify(rest);
    } else {
        return Route::NotFound;
    };
    // At most five segments; no allocation (this runs on every request).
    let mut segs = [""; 5];
    let mut n = 0;
    for s in rest.split('/') {
        if n == segs.len() {
            return Route::NotFound;
        }
        segs[n] = s;
        n += 1;
    }
    match &segs[..n] {
        [id] if !id.is_empty() => Route::Redirect { v, raw_id: id },
        [id, "info.json"] if !id.is_empty() => Route::Info { v, raw_id: id },
        [id, r, s, rot, qf] if !id.is_empty() => Route::Image { v, raw_id: id, params: [r, s, rot, qf] },
        _ => Route::NotFound,
    }
}

fn endpoint_name(r: &Route) -> &'static str {
    match r {
        Route::Health => "health",
        Route::Metrics => "metrics",
        Route::Home => "home",
        Route::Viewer(_) | Route::Static(_) => "viewer",
        Route::Presentation(_) => "presentation",
        Route::Redirect { .. } => "redirect",
        Route::Info { .. } => "info",
        Route::Image { .. } => "image",
        Route::DeepZoom(_) => "deepzoom",
        Route::Zoomify(_) => "zoomify",
        Route::NotFound => "other",
    }
}

impl App {
    /// Answers one request.
    pub async fn handle(self: &Arc<Self>, head: Head<'_>) -> Response<Bytes> {
        let start = Instant::now();
        let path = head.uri.path();
        let r = route(path, &self.cfg.server.prefix_v2, &self.cfg.server.prefix_v3);
        let endpoint = endpoint_name(&r);
        if let Some(rest) = path.strip_prefix("/admin").filter(|r| r.is_empty() || r.starts_with('/')) {
            let resp = crate::admin::handle(self, head.method, rest, head.headers).await;
            self.metrics.request("admin", resp.status().as_u16());
            return resp;
        }
        let mut resp = if head.method == Method::OPTIONS {
            let mut resp = empty(StatusCode::NO_CONTENT);
            self.cors.preflight(head.headers, resp.headers_mut());
            resp.headers_mut().insert(header::ALLOW, HeaderValue::from_static("GET, HEAD, OPTIONS"));
            resp
        } else if head.method != Method::GET && head.method != Method::HEAD {
            let mut resp = error_response(&Error::method_not_allowed());
            resp.headers_mut().insert(header::ALLOW, HeaderValue::from_static("GET, HEAD, OPTIONS"));
            resp
        } else {
            let result = match r {
                Route::Health if self.draining.load(std::sync::atomic::Ordering::Relaxed) => {
                    Ok(text(StatusCode::SERVICE_UNAVAILABLE, "draining\n"))
                }
                Route::Health => Ok(text(StatusCode::OK, "ok\n")),
                Route::Metrics => Ok(self.metrics_response()),
                // These read files (a folder listing, the viewer bundle,
                // image headers for canvas sizes): off the reactor.
                Route::Home => {
                    let a = self.clone();
                    off_reactor(move || Ok(crate::pages::home(&a))).await
                }
                Route::Viewer(item) => crate::pages::viewer(self, item),
                Route::Static(f) => {
                    let (a, f) = (self.clone(), f.to_string());
                    off_reactor(move || crate::pages::static_file(&a, &f)).await
                }
                Route::Presentation(_) => {
                    let (a, path, headers) = (self.clone(), path.to_string(), head.headers.clone());
                    let query = head.uri.query().map(str::to_string);
                    off_reactor(move || match crate::manifests::route(&path) {
                        Some(res) => crate::manifests::handle(&a, res, &headers, query.as_deref()),
                        None => Err(Error::not_found_msg("Not found")),
                    })
                    .await
                }
                Route::Redirect { v, raw_id } => self.redirect(v, raw_id, head.headers).await,
                Route::Info { v, raw_id } => self.info(v, raw_id, head.headers).await,
                Route::Image { v, raw_id, params } => self.image(v, raw_id, params, path, head.headers).await,
                Route::DeepZoom(rest) => self.deepzoom(rest, path, head.headers).await,
                Route::Zoomify(rest) => self.zoomify(rest, path, head.headers).await,
                Route::NotFound => Err(Error::not_found_msg("Not found")),
            };
            result.unwrap_or_else(|e| {
                // A damaged source (422) is the operator's to mend, as a
                // server error is: both are warnings.
                if e.status().is_server_error() || e.status() == StatusCode::UNPROCESSABLE_ENTITY {
                    tracing::warn!(path, status = e.status().as_u16(), error = ?e, "request failed");
                } else {
                    tracing::debug!(path, status = e.status().as_u16(), error = ?e, "request refused");
                }
                error_response(&e)
            })
        };
        // Hot answers carry the constant CORS headers already.
        let has_cors = self.cors.is_constant() && resp.headers().contains_key(header::ACCESS_CONTROL_ALLOW_ORIGIN);
        if head.method != Method::OPTIONS && !has_cors {
            self.cors.apply(head.headers, resp.headers_mut());
        }
        if head.method == Method::HEAD {
            *resp.body_mut() = Bytes::new();
        }
        self.metrics.request(endpoint, resp.status().as_u16());
        if endpoint == "image" {
            self.metrics.observe(Stage::Total, start.elapsed());
        }
        resp
    }

    fn metrics_response(&self) -> Response<Bytes> {
        let mut body = self.metrics.render(&self.tiles, &self.pool, self.flights.in_flight());
        crate::metrics::render_gpu(&mut body, &self.backend);
        if let Some(h) = self.sources.http() {
            crate::metrics::render_http_source(&mut body, h);
        }
        if let Some(s) = self.sources.s3() {
            crate::metrics::render_s3_source(&mut body, s);
        }
        if let Some(t) = &self.tier {
            t.render_metrics(&mut body);
        }
        if let Some(s) = &self.shared {
            s.render_metrics(&mut body);
        }
        let mut r = Response::new(Bytes::from(body));
        r.headers_mut().insert(header::CONTENT_TYPE, HeaderValue::from_static("text/plain; version=0.0.4"));
        r
    }
}

/// Runs a handler that does blocking I/O on tokio's blocking threads.
async fn off_reactor<F>(f: F) -> crate::error::Result<Response<Bytes>>
where
    F: FnOnce() -> crate::error::Result<Response<Bytes>> + Send + 'static,
{
    tokio::task::spawn_blocking(f).await.unwrap_or_else(|_| Err(Error::internal("handler panicked")))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn routes_are_decided_from_the_path() {
        let r = |p| route(p, "/iiif/2", "/iiif/3");
        assert_eq!(r("/iiif/2/abc"), Route::Redirect { v: ApiVersion::V2, raw_id: "abc" });
        assert_eq!(r("/iiif/2/abc/info.json"), Route::Info { v: ApiVersion::V2, raw_id: "abc" });
        assert_eq!(r("/iiif/3/abc/info.json"), Route::Info { v: ApiVersion::V3, raw_id: "abc" });
        assert_eq!(
            r("/iiif/2/a%2Fb/full/max/0/default.jpg"),
            Route::Image { v: ApiVersion::V2, raw_id: "a%2Fb", params: ["full", "max", "0", "default.jpg"] }
        );
        assert_eq!(r("/iiif/2/a/b/info.json"), Route::NotFound, "unescaped slash in identifier");
        assert_eq!(r("/iiif/2/a/b/full/max/0/default.jpg"), Route::NotFound);
        assert_eq!(r("/iiif/2/"), Route::NotFound);
        assert_eq!(r("/iiif/2"), Route::NotFound);
        assert_eq!(r("/iiif/22/x"), Route::NotFound);
        assert_eq!(r("/health"), Route::Health);
        assert_eq!(r("/dzi/abc.dzi"), Route::DeepZoom("abc.dzi"));
        assert_eq!(r("/dzi/abc_files/3/0_1.jpg"), Route::DeepZoom("abc_files/3/0_1.jpg"));
        assert_eq!(r("/zoomify/abc/ImageProperties.xml"), Route::Zoomify("abc/ImageProperties.xml"));
        assert_eq!(r("/dzi"), Route::NotFound);
        assert_eq!(r("/zoomify"), Route::NotFound);
    }
}
