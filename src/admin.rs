//! Admin endpoints under `/admin`, off by default and guarded by a bearer
//! token from config:
//!
//! - `POST /admin/purge` — drop every cached tile and header;
//! - `POST /admin/purge/{identifier}` — drop one image's tiles and header;
//! - `POST /admin/warm/{identifier}` — render, in the background, the tiles a
//!   viewer asks for first (coarsest levels first, up to `admin.warm_max_tiles`);
//! - `GET /admin/warm[/{identifier}]` — the progress of warm jobs;
//! - `POST /admin/reload` — read the item catalogue again (as SIGHUP does)
//!   and answer what it found.
//!
//! Warming goes through the same prepare → fetch path as client requests, so
//! it fills exactly the keys clients will hit.

use std::sync::atomic::Ordering;
use std::sync::Arc;

use bytes::Bytes;
use http::header::{self, HeaderMap, HeaderValue};
use http::{Method, Response, StatusCode};
use serde_json::json;

use crate::error::{Error, Result};
use crate::iiif::{self, ApiVersion};
use crate::service::{decode_identifier, error_response, App};
use crate::tile_walk;
use crate::warm::WarmJob;

fn json_response(status: StatusCode, v: serde_json::Value) -> Response<Bytes> {
    let mut r = Response::new(Bytes::from(v.to_string()));
    *r.status_mut() = status;
    r.headers_mut().insert(header::CONTENT_TYPE, HeaderValue::from_static("application/json"));
    r.headers_mut().insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    r
}

/// Compares in time that depends on the length of `given` (the client's,
/// which it knows) and on nothing else: not on where the first difference
/// lies, nor on the length of `want`. Every byte of `given` is compared with
/// the byte of `want` at the same position (the bytes of `want` repeat
/// cyclically past its end, so no branch depends on its length), and the
/// length difference is folded into the same accumulator. An empty `want`
/// matches only an empty `given`.
fn token_matches(given: &[u8], want: &[u8]) -> bool {
    let n = want.len().max(1);
    // Nonzero when the lengths differ (or `want` is empty and `given` not).
    let mut diff = (given.len() ^ want.len()) as u64 | (want.is_empty() && !given.is_empty()) as u64;
    for (i, &a) in given.iter().enumerate() {
        let b = want.get(i % n).copied().unwrap_or(0);
        diff |= u64::from(a ^ b);
    }
    std::hint::black_box(diff) == 0
}

fn authorised(app: &App, headers: &HeaderMap) -> bool {
    let want = app.cfg.admin.token.as_bytes();
    let Some(given) = headers.get(header::AUTHORIZATION).and_then(|v| v.to_str().ok()) else { return false };
    let Some(given) = given.strip_prefix("Bearer ") else { return false };
    !want.is_empty() && token_matches(given.trim().as_bytes(), want)
}

/// Handles `/admin...`; `rest` is the path after `/admin`.
pub async fn handle(app: &Arc<App>, method: &Method, rest: &str, headers: &HeaderMap) -> Response<Bytes> {
    if !app.cfg.admin.enabled {
        return error_response(&Error::not_found_msg("Not found"));
    }
    if !authorised(app, headers) {
        let mut r = error_response(&Error::with_status(StatusCode::UNAUTHORIZED, "Admin token required"));
        r.headers_mut().insert(header::WWW_AUTHENTICATE, HeaderValue::from_static("Bearer realm=\"tessera-admin\""));
        return r;
    }
    match route(app, method, rest).await {
        Ok(r) => r,
        Err(e) => error_response(&e),
    }
}

async fn route(app: &Arc<App>, method: &Method, rest: &str) -> Result<Response<Bytes>> {
    let segs: Vec<&str> = rest.trim_start_matches('/').split('/').collect();
    match (method, segs.as_slice()) {
        (&Method::POST, ["purge"]) => {
            let n = app.purge_all();
            tracing::info!(tiles = n, "admin: purged all");
            Ok(json_response(StatusCode::OK, json!({"purged_tiles": n})))
        }
        (&Method::POST, ["purge", raw]) => {
            let id = decode_identifier(raw)?;
            let n = app.purge(&id);
            tracing::info!(identifier = %id, tiles = n, "admin: purged");
            Ok(json_response(StatusCode::OK, json!({"identifier": id, "purged_tiles": n})))
        }
        (&Method::POST, ["warm", raw]) => {
            let id = decode_identifier(raw)?;
            let job = start_warm(app, &id).await?;
            Ok(json_response(StatusCode::ACCEPTED, job.status(&id)))
        }
        (&Method::GET, ["warm", raw]) => {
            let id = decode_identifier(raw)?;
            let jobs = app.warm.jobs.lock().unwrap_or_else(|p| p.into_inner());
            let job = jobs.get(&id).ok_or_else(|| Error::not_found_msg("No warm job for this identifier"))?;
            Ok(json_response(StatusCode::OK, job.status(&id)))
        }
        (&Method::GET, ["warm"]) => {
            let jobs = app.warm.jobs.lock().unwrap_or_else(|p| p.into_inner());
            let all: Vec<_> = jobs.iter().map(|(id, j)| j.status(id)).collect();
            Ok(json_response(StatusCode::OK, json!({ "jobs": all })))
        }
        (&Method::POST, ["reload"]) => {
            let a = app.clone();
            let report = tokio::task::spawn_blocking(move || crate::manifests::reload_catalogue(&a))
                .await
                .map_err(|_| Error::internal("catalogue reload panicked"))?
                .ok_or_else(|| Error::not_found_msg("Presentation is disabled: there is no catalogue to reload"))?;
            tracing::info!(items = report.items, problems = report.problems, "admin: catalogue reloaded");
            Ok(json_response(
                StatusCode::OK,
                json!({"items": report.items, "manifests": report.manifests, "skipped": report.skipped, "problems": report.problems}),
            ))
        }
        (_, ["purge"] | ["purge", _] | ["warm"] | ["warm", _] | ["reload"]) => Err(Error::method_not_allowed()),
        _ => Err(Error::not_found_msg("Not found")),
    }
}

async fn start_warm(app: &Arc<App>, id: &str) -> Result<Arc<WarmJob>> {
    // Resolve now so an unknown identifier is a 404, not a failed job.
    let info = app.header_of(id).await?;
    let tiling = iiif::info::tiling(&info.shape(), app.cfg.output.tile_sizes(), &app.limits);
    let tiles = tile_walk::first_levels(
        info.width,
        info.height,
        tiling.tile_w,
        tiling.tile_h,
        &tiling.scale_factors,
        app.cfg.admin.warm_max_tiles,
    );
    let job = Arc::new(WarmJob::default());
    job.total.store(tiles.len(), Ordering::Relaxed);
    app.warm.jobs.lock().unwrap_or_else(|p| p.into_inner()).insert(id.to_string(), job.clone());
    tracing::info!(identifier = %id, tiles = tiles.len(), "admin: warming");
    let (app, id, j) = (app.clone(), id.to_string(), job.clone());
    tokio::spawn(async move {
        let step = (tiles.len() / 10).max(1);
        for (i, t) in tiles.iter().enumerate() {
            let ok = match iiif::v2::parse(&t.region, &t.size, "0", "default.jpg") {
                Ok(req) => match app.prepare(ApiVersion::V2, &id, &req, &http::HeaderMap::new()).await {
                    Ok(p) => app.tile(ApiVersion::V2, p).await.is_ok(),
                    Err(_) => false,
                },
                Err(_) => false,
            };
            let ctr = if ok { &j.done } else { &j.failed };
            ctr.fetch_add(1, Ordering::Relaxed);
            if (i + 1) % step == 0 {
                tracing::info!(identifier = %id, done = i + 1, total = tiles.len(), "admin: warming progress");
            }
        }
        j.finished.store(true, Ordering::Relaxed);
        tracing::info!(identifier = %id, done = j.done.load(Ordering::Relaxed), failed = j.failed.load(Ordering::Relaxed), "admin: warm finished");
    });
    Ok(job)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn token_comparison_needs_an_exact_match() {
        assert!(token_matches(b"secret-token", b"secret-token"));
        assert!(!token_matches(b"secret-tokeN", b"secret-token"));
        assert!(!token_matches(b"secret", b"secret-token"));
    }

    #[test]
    fn token_comparison_refuses_every_length_mismatch_and_prefix() {
        let want = b"secret-token";
        // A prefix, an extension, and the token repeated (the cyclic index
        // must not make a repetition match).
        assert!(!token_matches(b"", want));
        assert!(!token_matches(b"secret-toke", want));
        assert!(!token_matches(b"secret-token-", want));
        assert!(!token_matches(b"secret-tokensecret-token", want));
        // A length that differs by a multiple of 256 (the accumulator is not a u8).
        let long = [b'a'; 256 + 12];
        assert!(!token_matches(&long[..268], &long[..12]));
        // Differences at either end.
        assert!(!token_matches(b"Secret-token", want));
        assert!(!token_matches(b"secret-tokeN", want));
        // An empty expected token matches only an empty token.
        assert!(token_matches(b"", b""));
        assert!(!token_matches(b"x", b""));
        assert!(token_matches(want, want));
    }
}
