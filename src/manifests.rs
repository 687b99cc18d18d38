//! HTTP handlers of the Presentation API: the collection, manifests,
//! sequences and canvases built by [`crate::presentation`] from the item
//! catalogue, in 2.1.1 and 3.0 (`/iiif/presentation/3/…`, or the 2.1 URLs
//! asked with the 3.0 profile; `presentation.default_version` decides what
//! a request without a profile gets), with JSON-LD negotiation, ETag/304 and
//! the CORS policy of the Image API; the files an item lists (`/iiif/{item}/file/{path}`: its
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
use crate::presentation::manifest3;
use crate::presentation::search;
use crate::presentation::PresentationError;
use crate::service::{decode_identifier, App};
use crate::web::base_url::base_url;
use crate::web::headers::{add_vary, not_modified, wants_json_ld};

const JSONLD: &str = "application/ld+json;profile=\"http://iiif.io/api/presentation/2/context.json\"";
const JSONLD3: &str = "application/ld+json;profile=\"http://iiif.io/api/presentation/3/context.json\"";
const SEARCH_JSONLD: &str = "application/ld+json;profile=\"http://iiif.io/api/search/1/context.json\"";

/// A Presentation API resource named by the path after `/iiif/`.
#[derive(Debug, PartialEq)]
pub enum Resource<'a> {
    Collection,
    Manifest(&'a str),
    /// The 3.0 collection at its own URL (`/iiif/presentation/3/collection`).
    Collection3,
    /// An item's 3.0 manifest at its own URL (`/iiif/presentation/3/{item}/manifest`).
    Manifest3(&'a str),
    Sequence(&'a str),
    Canvas(&'a str, &'a str),
    Search(&'a str),
    Autocomplete(&'a str),
    File(&'a str, &'a str),
}

/// Recognises `/iiif/collection`, `/iiif/{item}/manifest`,
/// `/iiif/{item}/sequence/default`, `/iiif/{item}/canvas/{n}`,
/// `/iiif/{item}/search`, `/iiif/{item}/autocomplete` and
/// `/iiif/{item}/file/{path}`; and the 3.0 documents'
/// `/iiif/presentation/3/collection` and `/iiif/presentation/3/{item}/manifest`.
///
/// The 3.0 URLs are not `/iiif/3/…`: the router gives the Image API
/// prefixes (`server.prefix_v2`, `prefix_v3`: `/iiif/2`, `/iiif/3`) every
/// path under them before it asks here. Nor can they clash with an item's
/// 2.1 URLs: those have `manifest`, `canvas`, `sequence`, `file`, … as
/// their second segment, never `3`.
pub fn route(path: &str) -> Option<Resource<'_>> {
    if let Some(rest) = path.strip_prefix(manifest3::PREFIX).and_then(|r| r.strip_prefix('/')) {
        let segs: Vec<&str> = rest.split('/').collect();
        return match segs.as_slice() {
            ["collection"] => Some(Resource::Collection3),
            [item, "manifest"] => Some(Resource::Manifest3(item)),
            _ => None,
        };
    }
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

/// The Presentation version a request asks for by the `profile` of its
/// `Accept` (2 or 3, the highest `q` winning, the first listed on a tie);
/// None when it names neither.
pub fn asked_version(headers: &HeaderMap) -> Option<u8> {
    let accept = headers.get_all(header::ACCEPT).iter().filter_map(|v| v.to_str().ok()).collect::<Vec<_>>().join(",");
    let mut best: Option<(f32, u8)> = None;
    for range in accept.split(',') {
        let mut q = 1.0f32;
        let mut version = None;
        for param in range.split(';').skip(1) {
            let Some((k, v)) = param.split_once('=') else { continue };
            let v = v.trim().trim_matches('"');
            match k.trim().to_ascii_lowercase().as_str() {
                "q" => q = v.parse().unwrap_or(0.0),
                "profile" if v.contains("iiif.io/api/presentation/3/") => version = Some(3),
                "profile" if v.contains("iiif.io/api/presentation/2/") => version = Some(2),
                _ => {}
            }
        }
        if let Some(v) = version.filter(|_| q > 0.0) {
            if best.is_none_or(|(bq, _)| q > bq) {
                best = Some((q, v));
            }
        }
    }
    best.map(|(_, v)| v)
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
    // The 2.1 URLs of the resources 3.0 has too answer the version asked
    // for, else the configured one; the 3.0 URLs always answer 3.0.
    let v3 = match res {
        Resource::Collection3 | Resource::Manifest3(_) => true,
        Resource::Collection | Resource::Manifest(_) | Resource::Canvas(..) => {
            asked_version(headers).map_or(cfg.defaults_to_v3(), |v| v == 3)
        }
        _ => false,
    };
    let image_v3 = manifest3::image_service_base_v3(cfg, &base, &app.cfg.server.prefix_v3);
    let image_v3 = image_v3.as_deref();
    let doc = match res {
        Resource::Collection | Resource::Collection3 if v3 => manifest3::collection(cat, &ctx),
        Resource::Collection | Resource::Collection3 => manifest::collection(cat, &ctx),
        Resource::Manifest(raw) | Resource::Manifest3(raw) => {
            let item = item_of(raw)?;
            if v3 { manifest3::manifest(item, &ctx, image_v3) } else { manifest::manifest(item, &ctx) }
                .map_err(map_err)?
        }
        Resource::Sequence(raw) => manifest::sequence(item_of(raw)?, &ctx).map_err(map_err)?,
        Resource::Canvas(raw, n) => {
            let n: usize = n.parse().map_err(|_| Error::not_found_msg("No such canvas"))?;
            if v3 {
                manifest3::canvas(item_of(raw)?, n, &ctx, image_v3).map_err(map_err)?
            } else {
                manifest::canvas(item_of(raw)?, n, &ctx).map_err(map_err)?
            }
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
    let ct = match (wants_ld, v3) {
        (true, true) => JSONLD3,
        (true, false) => JSONLD,
        (false, _) => "application/json",
    };
    h.insert(header::CONTENT_TYPE, HeaderValue::from_static(ct));
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
        assert_eq!(route("/iiif/presentation/3/collection"), Some(Resource::Collection3));
        assert_eq!(route("/iiif/presentation/3/book/manifest"), Some(Resource::Manifest3("book")));
        assert_eq!(route("/iiif/presentation/3/book/canvas/0"), None);
        assert_eq!(route("/iiif/presentation/manifest"), Some(Resource::Manifest("presentation")));
    }

    fn accept(v: &str) -> HeaderMap {
        let mut h = HeaderMap::new();
        h.insert(header::ACCEPT, HeaderValue::from_str(v).unwrap());
        h
    }

    #[test]
    fn the_presentation_version_is_read_from_the_accept_profile() {
        let p = |v: u8| format!("application/ld+json;profile=\"http://iiif.io/api/presentation/{v}/context.json\"");
        assert_eq!(asked_version(&HeaderMap::new()), None);
        assert_eq!(asked_version(&accept("application/ld+json")), None);
        assert_eq!(asked_version(&accept("application/json")), None);
        assert_eq!(asked_version(&accept(&p(3))), Some(3));
        assert_eq!(asked_version(&accept(&p(2))), Some(2));
        assert_eq!(asked_version(&accept(&format!("{}, {};q=0.9", p(3), p(2)))), Some(3));
        assert_eq!(asked_version(&accept(&format!("{};q=0.5, {}", p(3), p(2)))), Some(2));
        assert_eq!(asked_version(&accept(&format!("{};q=0", p(3)))), None);
        assert_eq!(
            asked_version(&accept("application/ld+json; profile=http://iiif.io/api/presentation/3/context.json")),
            Some(3)
        );
    }
}
