//! HTTP handlers of the Presentation API: the collection, manifests,
//! sequences and canvases built by [`crate::presentation`] from the item
//! catalogue, with JSON-LD negotiation, ETag/304 and the CORS policy of the
//! Image API.

use std::sync::Arc;

use bytes::Bytes;
use http::header::{self, HeaderMap, HeaderValue};
use http::{Response, StatusCode};

use crate::error::{Error, Result};
use crate::presentation::manifest::{self, Ctx};
use crate::presentation::PresentationError;
use crate::service::{decode_identifier, App};
use crate::web::base_url::base_url;
use crate::web::headers::{add_vary, not_modified, wants_json_ld};

const JSONLD: &str = "application/ld+json;profile=\"http://iiif.io/api/presentation/2/context.json\"";

/// A Presentation API resource named by the path after `/iiif/`.
#[derive(Debug, PartialEq)]
pub enum Resource<'a> {
    Collection,
    Manifest(&'a str),
    Sequence(&'a str),
    Canvas(&'a str, &'a str),
}

/// Recognises `/iiif/collection`, `/iiif/{item}/manifest`,
/// `/iiif/{item}/sequence/default` and `/iiif/{item}/canvas/{n}`.
pub fn route(path: &str) -> Option<Resource<'_>> {
    let rest = path.strip_prefix("/iiif/")?;
    let segs: Vec<&str> = rest.split('/').collect();
    match segs.as_slice() {
        ["collection"] => Some(Resource::Collection),
        [item, "manifest"] => Some(Resource::Manifest(item)),
        [item, "sequence", "default"] => Some(Resource::Sequence(item)),
        [item, "canvas", n] => Some(Resource::Canvas(item, n)),
        _ => None,
    }
}

fn map_err(e: PresentationError) -> Error {
    match e {
        PresentationError::NotEnabled { .. }
        | PresentationError::NoImages { .. }
        | PresentationError::NoSuchCanvas { .. } => Error::not_found_msg("No such manifest"),
        other => Error::internal(other.to_string()),
    }
}

/// Answers a Presentation API request.
pub fn handle(app: &Arc<App>, res: Resource<'_>, headers: &HeaderMap) -> Result<Response<Bytes>> {
    let cfg = &app.cfg.presentation;
    let Some(cat) = app.catalogue.as_ref().filter(|_| cfg.enabled) else {
        return Err(Error::not_found_msg("No such manifest"));
    };
    let base = base_url(&app.cfg.server.public_base_url, headers);
    let image_base = cfg.image_service_base(&base, &app.cfg.server.prefix_v2);
    let dims = |id: &str| app.dims_now(id);
    let ctx = Ctx { base: &base, image_service_base: &image_base, cfg, dims: &dims };
    let item_of = |raw: &str| -> Result<&crate::presentation::catalogue::Item> {
        let id = decode_identifier(raw)?;
        cat.item(&id).ok_or_else(|| Error::not_found_msg("No such manifest"))
    };
    let doc = match res {
        Resource::Collection => manifest::collection(cat, &ctx),
        Resource::Manifest(raw) => manifest::manifest(item_of(raw)?, &ctx).map_err(map_err)?,
        Resource::Sequence(raw) => manifest::sequence(item_of(raw)?, &ctx).map_err(map_err)?,
        Resource::Canvas(raw, n) => {
            let n: usize = n.parse().map_err(|_| Error::not_found_msg("No such canvas"))?;
            manifest::canvas(item_of(raw)?, n, &ctx).map_err(map_err)?
        }
    };
    let body = serde_json::to_vec_pretty(&doc).map_err(|e| Error::internal(e.to_string()))?;
    let etag = format!("\"p{:016x}\"", crate::source::fnv1a(&[&body]));
    let wants_ld = wants_json_ld(headers);
    let mut r = if not_modified(headers, &etag, None) {
        let mut r = Response::new(Bytes::new());
        *r.status_mut() = StatusCode::NOT_MODIFIED;
        r
    } else {
        Response::new(Bytes::from(body))
    };
    let h = r.headers_mut();
    h.insert(header::CONTENT_TYPE, HeaderValue::from_static(if wants_ld { JSONLD } else { "application/json" }));
    if let Ok(v) = HeaderValue::from_str(&etag) {
        h.insert(header::ETAG, v);
    }
    h.insert(header::CACHE_CONTROL, HeaderValue::from_static("public, max-age=300"));
    add_vary(h, &["Accept"]);
    if app.cfg.server.public_base_url.is_empty() {
        add_vary(h, &["Host", "X-Forwarded-Host", "X-Forwarded-Proto", "X-Forwarded-Prefix"]);
    }
    Ok(r)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn presentation_paths_are_recognised() {
        assert_eq!(route("/iiif/collection"), Some(Resource::Collection));
        assert_eq!(route("/iiif/book/manifest"), Some(Resource::Manifest("book")));
        assert_eq!(route("/iiif/book/sequence/default"), Some(Resource::Sequence("book")));
        assert_eq!(route("/iiif/book/canvas/3"), Some(Resource::Canvas("book", "3")));
        assert_eq!(route("/iiif/book/other"), None);
        assert_eq!(route("/iiif/2/x/info.json"), None);
    }
}
