//! Deep Zoom (DZI) and Zoomify, the HTTP side: `/dzi/…` and `/zoomify/…`
//! answered by translating each tile into the Image API 2.1 request of the
//! same region and size and answering that through `service::App::image`,
//! so these tiles share everything IIIF tiles have (the hot path, the
//! memory cache, single flight, the disk and shared tiers, the decoded
//! units, eager tiling, ETags and conditional GET, errors); with the same
//! tile size and no overlap a Deep Zoom tile *is* the IIIF tile of its
//! region. The descriptors (`.dzi`, `ImageProperties.xml`) are built from
//! the image's info.json facts, read through `App::info` so that a source's
//! access rules apply to them as to info.json.
//!
//! The pure parts: `grid` (level tile → region and size), `deepzoom` and
//! `zoomify` (paths, levels or tiers, descriptors).

pub mod deepzoom;
pub mod grid;
pub mod zoomify;

use std::sync::Arc;

use bytes::Bytes;
use http::header::{self, HeaderMap, HeaderValue};
use http::{Response, StatusCode};

use crate::error::{Error, Result};
use crate::iiif::{info, ApiVersion};
use crate::model::Format;
use crate::service::{decode_identifier, empty, App};
use crate::web::headers::{add_vary, not_modified};
use deepzoom::DziPath;
use grid::IiifTile;
use zoomify::ZoomifyPath;

/// The descriptors' media type.
const XML: &str = "application/xml; charset=utf-8";

/// What the zoom protocols need of an image's header.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct Facts {
    width: u32,
    height: u32,
    /// The tile size info.json advertises, when its tiles are square.
    iiif_tile: Option<u32>,
}

/// A descriptor's facts and the validators of the info.json they came from.
struct Described {
    facts: Facts,
    info_headers: HeaderMap,
}

impl App {
    /// `/dzi/{rest}`: a `.dzi` descriptor or a tile.
    pub(crate) async fn deepzoom(
        self: &Arc<Self>,
        rest: &str,
        path: &str,
        headers: &HeaderMap,
    ) -> Result<Response<Bytes>> {
        if !self.cfg.deepzoom.enabled {
            return Err(Error::not_found_msg("Not found"));
        }
        match deepzoom::parse(rest)? {
            DziPath::Descriptor { raw_id } => {
                let d = self.described(raw_id, headers).await?;
                let body = self.dzi_geometry(&d.facts).descriptor(Format::Jpg);
                descriptor_response(body, &d.info_headers, headers)
            }
            DziPath::Tile { raw_id, level, col, row, format } => {
                // A tile asked before is answered from the hot path (keyed
                // by this URL) before any geometry is worked out.
                if let Some(r) = self.hot_key(path, headers).and_then(|k| self.hot_hit(&k, headers)) {
                    return Ok(r);
                }
                let facts = self.zoom_facts(raw_id, headers).await?;
                let tile = self.dzi_geometry(&facts).tile(level, col, row)?;
                self.zoom_tile(raw_id, &tile, format, path, headers).await
            }
        }
    }

    /// `/zoomify/{rest}`: ImageProperties.xml or a tile.
    pub(crate) async fn zoomify(
        self: &Arc<Self>,
        rest: &str,
        path: &str,
        headers: &HeaderMap,
    ) -> Result<Response<Bytes>> {
        if !self.cfg.zoomify.enabled {
            return Err(Error::not_found_msg("Not found"));
        }
        match zoomify::parse(rest)? {
            ZoomifyPath::Properties { raw_id } => {
                let d = self.described(raw_id, headers).await?;
                let body =
                    zoomify::Pyramid::new(d.facts.width, d.facts.height, self.cfg.zoomify.tile_size).properties();
                descriptor_response(body, &d.info_headers, headers)
            }
            ZoomifyPath::Tile { raw_id, group, z, x, y } => {
                if let Some(r) = self.hot_key(path, headers).and_then(|k| self.hot_hit(&k, headers)) {
                    return Ok(r);
                }
                let facts = self.zoom_facts(raw_id, headers).await?;
                let pyramid = zoomify::Pyramid::new(facts.width, facts.height, self.cfg.zoomify.tile_size);
                let tile = pyramid.tile(group, z, x, y)?;
                self.zoom_tile(raw_id, &tile, Format::Jpg, path, headers).await
            }
        }
    }

    /// The Deep Zoom geometry of an image: `deepzoom.tile_size`, or (0)
    /// the tile size its info.json advertises.
    fn dzi_geometry(&self, f: &Facts) -> deepzoom::Geometry {
        let c = &self.cfg.deepzoom;
        let tile = match c.tile_size {
            0 => f.iiif_tile.unwrap_or(self.cfg.output.tile_size),
            t => t,
        };
        deepzoom::Geometry { width: f.width, height: f.height, tile, overlap: c.overlap }
    }

    /// Answers a zoom-protocol tile as the Image API 2.1 request of its
    /// region and size. `path` (the client's own) keys the hot path.
    async fn zoom_tile(
        self: &Arc<Self>,
        raw_id: &str,
        tile: &IiifTile,
        format: Format,
        path: &str,
        headers: &HeaderMap,
    ) -> Result<Response<Bytes>> {
        let (region, size) = (tile.region_param(), tile.size_param());
        let quality = match format {
            Format::Png => "default.png",
            _ => "default.jpg",
        };
        self.image(ApiVersion::V2, raw_id, [&region, &size, "0", quality], path, headers).await
    }

    /// An image's size and advertised tile for a tile request: from the
    /// header cache when the source is public and its header was read
    /// (no allocation of a document), else as info.json gives it to this
    /// client.
    async fn zoom_facts(self: &Arc<Self>, raw_id: &str, headers: &HeaderMap) -> Result<Facts> {
        let id = decode_identifier(raw_id)?;
        if let Some(located) = self.sources.peek(&id).filter(|l| !l.is_restricted()) {
            if let Some(i) = self.infos.get(&located.cache_key(), located.version) {
                let t = info::tiling(&i.shape(), self.cfg.output.tile_sizes(), &self.limits);
                return Ok(Facts { width: i.width, height: i.height, iiif_tile: square(t.tile_w, t.tile_h) });
            }
        }
        Ok(self.described(raw_id, headers).await?.facts)
    }

    /// The facts of an image as its info.json gives them to this client
    /// (its credentials forwarded, its conditional headers not: a
    /// descriptor has validators of its own), with that answer's headers.
    async fn described(self: &Arc<Self>, raw_id: &str, headers: &HeaderMap) -> Result<Described> {
        let mut plain = headers.clone();
        for h in [header::IF_NONE_MATCH, header::IF_MODIFIED_SINCE, header::ACCEPT] {
            plain.remove(h);
        }
        let resp = self.info(ApiVersion::V2, raw_id, &plain).await?;
        if resp.status() != StatusCode::OK {
            return Err(Error::internal(format!("info.json answered {}", resp.status())));
        }
        let doc: serde_json::Value =
            serde_json::from_slice(resp.body()).map_err(|e| Error::internal(format!("info.json unreadable: {e}")))?;
        let facts = facts_of(&doc).ok_or_else(|| Error::internal("info.json without width, height or tiles"))?;
        Ok(Described { facts, info_headers: resp.headers().clone() })
    }
}

/// `Some(side)` for square tiles.
fn square(w: u32, h: u32) -> Option<u32> {
    (w == h).then_some(w)
}

/// Width, height and the advertised tile of an Image API 2 info.json.
fn facts_of(doc: &serde_json::Value) -> Option<Facts> {
    let num = |v: &serde_json::Value| v.as_u64().and_then(|n| u32::try_from(n).ok());
    let width = num(&doc["width"])?;
    let height = num(&doc["height"])?;
    let tile = &doc["tiles"][0];
    let iiif_tile = match (num(&tile["width"]), tile.get("height").map(num)) {
        (Some(w), None) => Some(w),
        (Some(w), Some(Some(h))) => square(w, h),
        _ => None,
    };
    Some(Facts { width, height, iiif_tile })
}

/// A descriptor with validators of its own: an ETag over its body and the
/// info.json's (so the source's version and the settings behind it), and
/// the info.json's Last-Modified, Cache-Control and, for a restricted
/// source, `Vary`.
fn descriptor_response(body: String, info_headers: &HeaderMap, headers: &HeaderMap) -> Result<Response<Bytes>> {
    let info_etag = info_headers.get(header::ETAG).map(|v| v.as_bytes()).unwrap_or_default();
    let etag = format!("\"z{:016x}\"", crate::source::fnv1a(&[info_etag, body.as_bytes()]));
    let etag_value = HeaderValue::from_str(&etag).map_err(|_| Error::internal("unrepresentable ETag"))?;
    let modified = info_headers
        .get(header::LAST_MODIFIED)
        .and_then(|v| v.to_str().ok())
        .and_then(|s| httpdate::parse_http_date(s).ok());
    let mut r = if not_modified(headers, &etag, modified) {
        empty(StatusCode::NOT_MODIFIED)
    } else {
        let mut r = Response::new(Bytes::from(body));
        r.headers_mut().insert(header::CONTENT_TYPE, HeaderValue::from_static(XML));
        r
    };
    let h = r.headers_mut();
    h.insert(header::ETAG, etag_value);
    for name in [header::LAST_MODIFIED, header::CACHE_CONTROL] {
        if let Some(v) = info_headers.get(&name) {
            h.insert(name, v.clone());
        }
    }
    let private =
        info_headers.get(header::CACHE_CONTROL).and_then(|v| v.to_str().ok()).is_some_and(|v| v.starts_with("private"));
    if private {
        add_vary(h, &["Authorization", "Cookie"]);
    }
    Ok(r)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn facts_are_read_from_an_info_json() {
        let doc = json!({"width": 1200, "height": 800, "tiles": [{"width": 512, "scaleFactors": [1, 2, 4]}]});
        assert_eq!(facts_of(&doc), Some(Facts { width: 1200, height: 800, iiif_tile: Some(512) }));
        let doc = json!({"width": 1200, "height": 800, "tiles": [{"width": 512, "height": 256}]});
        assert_eq!(facts_of(&doc).unwrap().iiif_tile, None, "non-square tiles are not a Deep Zoom tile size");
        assert_eq!(facts_of(&json!({"width": 1200})), None);
    }

    #[test]
    fn a_descriptor_answers_304_to_its_own_etag_only() {
        let mut info = HeaderMap::new();
        info.insert(header::ETAG, HeaderValue::from_static("\"i1\""));
        info.insert(header::CACHE_CONTROL, HeaderValue::from_static("public, max-age=60"));
        let r = descriptor_response("<x/>".into(), &info, &HeaderMap::new()).unwrap();
        assert_eq!(r.status(), StatusCode::OK);
        assert_eq!(r.headers()[header::CONTENT_TYPE], XML);
        assert_eq!(r.headers()[header::CACHE_CONTROL], "public, max-age=60");
        let etag = r.headers()[header::ETAG].clone();
        assert_ne!(etag, "\"i1\"");
        let mut cond = HeaderMap::new();
        cond.insert(header::IF_NONE_MATCH, etag.clone());
        let again = descriptor_response("<x/>".into(), &info, &cond).unwrap();
        assert_eq!(again.status(), StatusCode::NOT_MODIFIED);
        assert!(again.body().is_empty());
        let changed = descriptor_response("<y/>".into(), &info, &cond).unwrap();
        assert_eq!(changed.status(), StatusCode::OK, "another body is another ETag");
    }
}
