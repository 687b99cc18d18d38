//! HTTP handlers of the Presentation API: the collection, manifests,
//! sequences and canvases built by [`crate::presentation`] from the item
//! catalogue, with JSON-LD negotiation, ETag/304 and the CORS policy of the
//! Image API; the files an item lists (`/iiif/{item}/file/{path}`: its
//! non-image renderings, OCR files and page images); the Content Search 1.0
//! services of search-enabled items (`/iiif/{item}/search?q=…`,
//! `/iiif/{item}/autocomplete?q=…`), answered from the item's index
//! (`presentation::indexes`); and the catalogue reload.

use std::sync::Arc;

use bytes::Bytes;
use http::header::{self, HeaderMap, HeaderValue};
use http::{Response, StatusCode};

use crate::error::{Error, Result};
use crate::presentation::catalogue::{Image, Item};
use crate::presentation::item_base_url;
use crate::presentation::live::{Loaded, ReloadReport};
use crate::presentation::manifest::{self, Ctx};
use crate::presentation::search;
use crate::presentation::PresentationError;
use crate::service::{decode_identifier, App};
use crate::web::base_url::base_url;
use crate::web::headers::{add_vary, not_modified, wants_json_ld};

const JSONLD: &str = "application/ld+json;profile=\"http://iiif.io/api/presentation/2/context.json\"";
const SEARCH_JSONLD: &str = "application/ld+json;profile=\"http://iiif.io/api/search/1/context.json\"";

/// A Presentation API resource named by the path after `/iiif/`.
#[derive(Debug, PartialEq)]
pub enum Resource<'a> {
    Collection,
    Manifest(&'a str),
    Sequence(&'a str),
    Canvas(&'a str, &'a str),
    Search(&'a str),
    Autocomplete(&'a str),
    File(&'a str, &'a str),
}

/// Recognises `/iiif/collection`, `/iiif/{item}/manifest`,
/// `/iiif/{item}/sequence/default`, `/iiif/{item}/canvas/{n}`,
/// `/iiif/{item}/search`, `/iiif/{item}/autocomplete` and
/// `/iiif/{item}/file/{path}`.
pub fn route(path: &str) -> Option<Resource<'_>> {
    let rest = path.strip_prefix("/iiif/")?;
    let segs: Vec<&str> = rest.split('/').collect();
    match segs.as_slice() {
        ["collection"] => Some(Resource::Collection),
        [item, "manifest"] => Some(Resource::Manifest(item)),
        [item, "sequence", "default"] => Some(Resource::Sequence(item)),
        [item, "canvas", n] => Some(Resource::Canvas(item, n)),
        [item, "search"] => Some(Resource::Search(item)),
        [item, "autocomplete"] => Some(Resource::Autocomplete(item)),
        [item, "file", file] => Some(Resource::File(item, file)),
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

/// Answers a Presentation API or search request (`query` is the URL's
/// query string, which only the search services read).
pub fn handle(app: &Arc<App>, res: Resource<'_>, headers: &HeaderMap, query: Option<&str>) -> Result<Response<Bytes>> {
    let cfg = &app.cfg.presentation;
    let Some(live) = app.catalogue.as_ref().filter(|_| cfg.enabled) else {
        return Err(Error::not_found_msg("No such manifest"));
    };
    let loaded = live.current();
    let cat = &loaded.catalogue;
    let base = base_url(&app.cfg.server.public_base_url, headers);
    let image_base = cfg.image_service_base(&base, &app.cfg.server.prefix_v2);
    let dims = |id: &str| app.dims_now(id);
    let checksum = |img: &Image| checksum(app, img);
    let ctx = Ctx { base: &base, image_service_base: &image_base, cfg, dims: &dims, checksum: &checksum };
    let item_of = |raw: &str| -> Result<&Item> {
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
        Resource::Search(raw) | Resource::Autocomplete(raw) => {
            let item = item_of(raw)?;
            let autocomplete = matches!(res, Resource::Autocomplete(_));
            return search(app, &loaded, item, &ctx, autocomplete, query.unwrap_or(""), headers);
        }
        Resource::File(raw, file) => return item_file(item_of(raw)?, &decode_identifier(file)?, headers),
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

/// The MD5 of a canvas's image file when `canvas_checksum` is on (read
/// once per file and kept).
fn checksum(app: &App, img: &Image) -> Option<String> {
    app.catalogue.as_ref()?.checksums.md5(&img.path)
}

/// Builds, on a thread of its own, the search index of every search-enabled
/// item (so the first search finds it ready) and then the checksums that
/// manifests show (so the first manifest does not wait for them). A request
/// that comes first does the work itself (once, whoever asks).
pub fn prepare_catalogue_in_background(app: &Arc<App>) {
    let Some(live) = app.catalogue.as_ref().filter(|_| app.cfg.presentation.enabled) else { return };
    let loaded = live.current();
    let app = app.clone();
    let spawned = std::thread::Builder::new().name("tessera-catalogue".into()).spawn(move || {
        // Canvas sizes do not depend on the base URL.
        let image_base = app.cfg.presentation.image_service_base("", &app.cfg.server.prefix_v2);
        let dims = |id: &str| app.dims_now(id);
        let no_checksum = |_: &Image| None;
        let ctx = Ctx {
            base: "",
            image_service_base: &image_base,
            cfg: &app.cfg.presentation,
            dims: &dims,
            checksum: &no_checksum,
        };
        let items = loaded.catalogue.items();
        for item in items.iter().filter(|i| i.enabled && i.search_enabled) {
            loaded.indexes.get_or_build(item, || canvas_sizes(item, &ctx));
        }
        if let (true, Some(live)) = (app.cfg.presentation.canvas_checksum, app.catalogue.as_ref()) {
            for item in items.iter().filter(|i| i.has_manifest()) {
                for img in &item.images {
                    live.checksums.md5(&img.path);
                }
            }
        }
    });
    if let Err(e) = spawned {
        tracing::warn!(error = %e, "search indexes and checksums will be made on first request");
    }
}

/// Reads the catalogue again, puts it in service and prepares its indexes
/// in the background. Blocking. None when presentation is off.
pub fn reload_catalogue(app: &Arc<App>) -> Option<ReloadReport> {
    let live = app.catalogue.as_ref().filter(|_| app.cfg.presentation.enabled)?;
    let report = live.reload();
    prepare_catalogue_in_background(app);
    Some(report)
}

/// A file the item lists: a page image, a non-image rendering or an OCR
/// file; nothing else in the item folder is reachable.
fn item_file(item: &Item, file: &str, headers: &HeaderMap) -> Result<Response<Bytes>> {
    let not_found = || Error::not_found_msg("No such file in this item");
    if !item.has_manifest() {
        return Err(not_found());
    }
    let mime = if let Some(r) = item.renderings.iter().find(|r| r.file == file) {
        r.mime.clone()
    } else if let Some(img) = item.images.iter().find(|i| i.file == file) {
        img.mime.clone()
    } else if let Some(ocr) = item.images.iter().filter_map(|i| i.ocr.as_ref()).find(|o| o.file == file) {
        manifest::ocr_mime(ocr.format).to_string()
    } else {
        return Err(not_found());
    };
    let path = item.dir.join(file);
    let meta = std::fs::metadata(&path).map_err(|_| not_found())?;
    if meta.len() > MAX_ITEM_FILE_BYTES {
        return Err(Error::with_status(StatusCode::PAYLOAD_TOO_LARGE, "This file is too large to be served here"));
    }
    let modified = meta.modified().ok();
    let stamp = modified.and_then(|m| m.duration_since(std::time::UNIX_EPOCH).ok()).map_or(0, |d| d.as_nanos());
    let etag = format!("\"f{:x}-{:x}\"", meta.len(), stamp);
    let mut r = if not_modified(headers, &etag, modified) {
        let mut r = Response::new(Bytes::new());
        *r.status_mut() = StatusCode::NOT_MODIFIED;
        r
    } else {
        let body = std::fs::read(&path).map_err(|e| Error::internal(format!("reading an item file: {e}")))?;
        Response::new(Bytes::from(body))
    };
    let h = r.headers_mut();
    if let Ok(v) = HeaderValue::from_str(&mime) {
        h.insert(header::CONTENT_TYPE, v);
    }
    if let Ok(v) = HeaderValue::from_str(&etag) {
        h.insert(header::ETAG, v);
    }
    if let Some(m) = modified {
        if let Ok(v) = HeaderValue::from_str(&httpdate::fmt_http_date(m)) {
            h.insert(header::LAST_MODIFIED, v);
        }
    }
    h.insert(header::CACHE_CONTROL, HeaderValue::from_static("public, max-age=300"));
    h.insert(header::X_CONTENT_TYPE_OPTIONS, HeaderValue::from_static("nosniff"));
    Ok(r)
}

/// Item files larger than this are not served (1 GiB: they would be read
/// into memory whole).
pub const MAX_ITEM_FILE_BYTES: u64 = 1 << 30;

/// The canvas sizes of an item as its manifest gives them; an item that has
/// no manifest has no canvases to search.
fn canvas_sizes(item: &Item, ctx: &Ctx) -> Vec<(u32, u32)> {
    manifest::canvas_sizes(item, ctx).unwrap_or_else(|_| vec![(0, 0); item.images.len()])
}

/// A search or autocomplete request against one item's index.
fn search(
    app: &Arc<App>,
    loaded: &Loaded,
    item: &Item,
    ctx: &Ctx,
    autocomplete: bool,
    query: &str,
    headers: &HeaderMap,
) -> Result<Response<Bytes>> {
    if !item.enabled || !item.search_enabled {
        return Err(Error::not_found_msg("No search service for this item"));
    }
    let params: Vec<(String, String)> = form_urlencoded::parse(query.as_bytes()).into_owned().collect();
    let param = |k: &str| params.iter().find(|(n, _)| n == k).map(|(_, v)| v.as_str());
    let ignored: Vec<&str> = search::IGNORED_PARAMS.iter().copied().filter(|k| param(k).is_some()).collect();
    let q = param("q").unwrap_or("");
    let index = loaded.indexes.get_or_build(item, || canvas_sizes(item, ctx));
    let service = format!("{}/search", item_base_url(ctx.base, &item.id));
    let with_q = |url: &str, q: &str| {
        let mut s = form_urlencoded::Serializer::new(String::new());
        s.append_pair("q", q);
        format!("{url}?{}", s.finish())
    };
    let doc = if autocomplete {
        let min = match param("min") {
            None => 1,
            Some(m) => m.parse().map_err(|_| Error::bad_request("min must be a whole number"))?,
        };
        let terms = index.autocomplete(q, min);
        let id = with_q(&format!("{}/autocomplete", item_base_url(ctx.base, &item.id)), q);
        search::term_list(&terms, &id, &|t| with_q(&service, t), &ignored)
    } else {
        let page = match param("page") {
            None => 0,
            Some(p) => p.parse().map_err(|_| Error::bad_request("page must be a whole number"))?,
        };
        let results = index.search(q, page);
        let page_url =
            |n: usize| if n == 0 { with_q(&service, q) } else { format!("{}&page={n}", with_q(&service, q)) };
        let canvas = |n: usize| manifest::canvas_url(ctx.base, &item.id, n);
        search::response(&results, &service, &page_url, &canvas, &ignored)
    };
    let body = serde_json::to_vec_pretty(&doc).map_err(|e| Error::internal(e.to_string()))?;
    let mut r = Response::new(Bytes::from(body));
    let h = r.headers_mut();
    let ct = if wants_json_ld(headers) { SEARCH_JSONLD } else { "application/json" };
    h.insert(header::CONTENT_TYPE, HeaderValue::from_static(ct));
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
