//! The IIIF Image API service: the shared state ([`App`]) and the handlers
//! of info.json, images and the base-URI redirect, which run the pipeline
//! top-down: parse → resolve source → plan → cache → tier → (pool: decode →
//! transform → encode) → respond.
//!
//! `App::handle` (in `router`) takes the request head only (method, URI,
//! headers) and returns a complete response, so it is tested without
//! sockets; `server` puts it behind hyper.

use std::sync::Arc;
use std::time::{Instant, UNIX_EPOCH};

use bytes::Bytes;
use http::header::{self, HeaderMap, HeaderValue};
use http::{Response, StatusCode};
use percent_encoding::{percent_decode_str, utf8_percent_encode, AsciiSet, NON_ALPHANUMERIC};

use crate::cache::{Encoded, Tier, TileKey};
use crate::codec::{self, CodecError, ImageInfo};
use crate::error::{Error, Result};
use crate::iiif::{self, info, ApiVersion};
use crate::metrics::Stage;
pub use crate::pipeline::Prepared;
use crate::plan::{self};
use crate::render::{self};
use crate::source::{Located, Source};
pub use crate::state::{App, Head, HotBytes, HotEntry, EAGER_MAX_UNITS, HOT_KEY_MAX, HOT_MAX_BYTES, HOT_PATH_RECHECK};
use crate::web::base_url::{self, base_url};
use crate::web::headers::{add_vary, not_modified, wants_json_ld};

/// Characters escaped in identifiers of canonical URLs (RFC 3986 unreserved kept).
const ID_ESCAPE: &AsciiSet = &NON_ALPHANUMERIC.remove(b'-').remove(b'.').remove(b'_').remove(b'~');

const JSONLD_V2: &str = "application/ld+json;profile=\"http://iiif.io/api/image/2/context.json\"";
const JSONLD_V3: &str = "application/ld+json;profile=\"http://iiif.io/api/image/3/context.json\"";
const PROFILE_V2: &str = "http://iiif.io/api/image/2/level2.json";
const PROFILE_V3: &str = "http://iiif.io/api/image/3/level2.json";

impl App {
    fn prefix(&self, v: ApiVersion) -> &str {
        match v {
            ApiVersion::V2 => &self.cfg.server.prefix_v2,
            ApiVersion::V3 => &self.cfg.server.prefix_v3,
        }
    }

    /// The image's base URI as the client addressed it.
    fn image_base(&self, v: ApiVersion, raw_id: &str, headers: &HeaderMap) -> String {
        format!("{}{}/{}", base_url(&self.cfg.server.public_base_url, headers), self.prefix(v), raw_id)
    }

    pub(crate) async fn redirect(&self, v: ApiVersion, raw_id: &str, headers: &HeaderMap) -> Result<Response<Bytes>> {
        let id = decode_identifier(raw_id)?;
        self.sources.locate(&id, headers).await?;
        let loc = format!("{}/info.json", self.image_base(v, raw_id, headers));
        let mut r = empty(StatusCode::SEE_OTHER);
        r.headers_mut().insert(header::LOCATION, header_value(&loc)?);
        Ok(r)
    }

    /// Resolves the identifier, opens the source and reads its header
    /// (cached by identifier and version). Header reads run on the pool.
    /// `headers` are the client's (an HTTP source forwards its credentials).
    async fn source_and_info(&self, id: &str, headers: &HeaderMap) -> Result<(Located, Arc<Source>, Arc<ImageInfo>)> {
        let t = Instant::now();
        let located = self.sources.locate(id, headers).await?;
        let skey = (located.path.clone(), located.version);
        let source = match self.opened.get(&skey) {
            Some(s) => s,
            None => {
                let s = located.open(self.cfg.source.mmap)?;
                if s.version != located.version {
                    // Changed between stat and open: treat as a new version next time.
                    return Err(Error::with_status(StatusCode::SERVICE_UNAVAILABLE, "Source is changing, retry"));
                }
                self.opened.insert(skey, s.clone());
                s
            }
        };
        self.metrics.observe(Stage::Source, t.elapsed());
        let file_key = located.cache_key();
        if let Some(i) = self.infos.get(&file_key, located.version) {
            return Ok((located, source, i));
        }
        let src = source.clone();
        let rx = self
            .pool
            .submit(move || {
                codec::probe_with(&src.bytes, &*src).and_then(|i| {
                    if src.intact() {
                        Ok(i)
                    } else {
                        Err(CodecError::SourceChanged)
                    }
                })
            })
            .map_err(|_| Error::overloaded(self.cfg.server.retry_after))?;
        let info = match rx.await.map_err(|_| Error::internal("header probe panicked"))? {
            Ok(i) => i,
            Err(e) => {
                self.forget_if_changed(&located, &source);
                return Err(render::codec_error(e));
            }
        };
        let info = Arc::new(info);
        self.infos.insert(&file_key, located.version, info.clone());
        Ok((located, source, info))
    }

    /// Drops an open source from the `opened` cache if it faulted or its file
    /// changed, so the next request maps the file afresh.
    pub(crate) fn forget_if_changed(&self, located: &Located, source: &Arc<Source>) {
        if !source.intact() {
            self.opened.remove(&(located.path.clone(), located.version));
            self.metrics.sources_changed.inc();
        }
    }

    /// The cache key of the file an identifier names (the identifier itself
    /// if it no longer resolves).
    pub fn file_key(&self, id: &str) -> String {
        self.sources.peek(id).map(|l| l.cache_key()).unwrap_or_else(|| id.to_string())
    }

    /// Width and height of an image, for manifests: from the info cache, or
    /// read from the header now. Blocking (it may open and map the file):
    /// the router runs the manifest handler on a blocking thread. An HTTP
    /// source answers only for images it has already fetched.
    pub fn dims_now(&self, id: &str) -> Option<(u32, u32)> {
        let located = self.sources.peek(id)?;
        let key = located.cache_key();
        if let Some(i) = self.infos.get(&key, located.version) {
            return Some((i.width, i.height));
        }
        let src = located.open(self.cfg.source.mmap).ok()?;
        let info = Arc::new(codec::probe_with(&src.bytes, &*src).ok()?);
        self.infos.insert(&key, located.version, info.clone());
        Some((info.width, info.height))
    }

    /// The header facts of an identifier (cached), as an anonymous client
    /// would get them.
    pub async fn header_of(&self, id: &str) -> Result<Arc<ImageInfo>> {
        Ok(self.source_and_info(id, &HeaderMap::new()).await?.2)
    }

    pub(crate) async fn info(&self, v: ApiVersion, raw_id: &str, headers: &HeaderMap) -> Result<Response<Bytes>> {
        let id = decode_identifier(raw_id)?;
        let (located, _src, info) = self.source_and_info(&id, headers).await?;
        let base = self.image_base(v, raw_id, headers);
        let etag = format!("\"i{:016x}-{:016x}\"", located.version.tag(), crate::source::fnv1a(&[base.as_bytes()]));
        if not_modified(headers, &etag, located.modified_time()) {
            let mut r = empty(StatusCode::NOT_MODIFIED);
            self.validators(r.headers_mut(), &etag, &located, self.cfg.http.info_max_age);
            return Ok(r);
        }
        let tiling = info::tiling(&info.shape(), self.cfg.output.tile_sizes(), &self.limits);
        let doc = info::build(v, &base, &info.shape(), &tiling, &self.limits);
        let body = serde_json::to_vec_pretty(&doc).map_err(|e| Error::internal(e.to_string()))?;
        let ct = match (wants_json_ld(headers), v) {
            (true, ApiVersion::V2) => JSONLD_V2,
            (true, ApiVersion::V3) => JSONLD_V3,
            (false, _) => "application/json",
        };
        let mut r = Response::new(Bytes::from(body));
        let h = r.headers_mut();
        h.insert(header::CONTENT_TYPE, HeaderValue::from_static(ct));
        h.insert(header::LINK, header_value(&format!("<{}>;rel=\"profile\"", profile_uri(v)))?);
        add_vary(h, &["Accept"]);
        self.vary_forwarded(h);
        self.validators(h, &etag, &located, self.cfg.http.info_max_age);
        Ok(r)
    }

    pub(crate) async fn image(
        self: &Arc<Self>,
        v: ApiVersion,
        raw_id: &str,
        params: [&str; 4],
        path: &str,
        headers: &HeaderMap,
    ) -> Result<Response<Bytes>> {
        // 0. The hot path: a request seen before whose file is unchanged and
        //    whose tile is still cached. Its key is the path (version,
        //    identifier, parameters) and the inputs of the base URL, which
        //    the cached Link header carries.
        let hot_key = self.hot_key(path, headers);
        if let Some(r) = hot_key.as_deref().and_then(|k| self.hot_hit(k, headers)) {
            return Ok(r);
        }
        // 1. Parse (pure).
        let req = match v {
            ApiVersion::V2 => iiif::v2::parse(params[0], params[1], params[2], params[3])?,
            ApiVersion::V3 => iiif::v3::parse(params[0], params[1], params[2], params[3])?,
        };
        let id = decode_identifier(raw_id)?;
        // A source that changed (or was given up: a remote master whose
        // folder filled) while read is read afresh once before a 503.
        match self.image_once(v, &id, &req, headers, hot_key.as_deref()).await {
            Err(e) if e.is_source_changed() => {
                self.metrics.changed_retries.inc();
                self.image_once(v, &id, &req, headers, hot_key.as_deref()).await
            }
            r => r,
        }
    }

    /// Steps 2–6 of [`Self::image`] for a parsed request.
    async fn image_once(
        self: &Arc<Self>,
        v: ApiVersion,
        id: &str,
        req: &iiif::ImageRequest,
        headers: &HeaderMap,
        hot_key: Option<&str>,
    ) -> Result<Response<Bytes>> {
        let id = id.to_string();
        // 2–3. Resolve the source and its header; plan.
        let prepared = self.prepare(v, &id, req, headers).await?;
        // 4. Validators: answer 304 without rendering.
        let etag = format!(
            "\"{:016x}-{:016x}\"",
            prepared.located.version.tag(),
            crate::source::fnv1a(&[prepared.plan.canonical.as_bytes(), &[v as u8]])
        );
        let canonical_link = format!(
            "<{}{}/{}/{}>;rel=\"canonical\", <{}>;rel=\"profile\"",
            base_url(&self.cfg.server.public_base_url, headers),
            self.prefix(v),
            utf8_percent_encode(&id, ID_ESCAPE),
            prepared.plan.canonical,
            profile_uri(v)
        );
        if not_modified(headers, &etag, prepared.located.modified_time()) {
            let mut r = empty(StatusCode::NOT_MODIFIED);
            r.headers_mut().insert(header::LINK, header_value(&canonical_link)?);
            self.validators(r.headers_mut(), &etag, &prepared.located, self.cfg.http.image_max_age);
            return Ok(r);
        }
        // 5. Cache, with one render per key.
        let located = prepared.located.clone();
        let source = Arc::downgrade(&prepared.source);
        let key = self.tile_key(v, &prepared);
        let (encoded, tier) = self.tile(v, prepared).await?;
        // 6. Respond.
        let mut r = Response::new(encoded.body.clone());
        self.mark_tier(&mut r, tier);
        let h = r.headers_mut();
        h.insert(header::CONTENT_TYPE, HeaderValue::from_static(encoded.media_type));
        h.insert(header::LINK, header_value(&canonical_link)?);
        self.vary_forwarded(h);
        self.validators(h, &etag, &located, self.cfg.http.image_max_age);
        if let (false, Some(etag)) = (located.is_restricted(), h.get(header::ETAG)) {
            let mut headers = HeaderMap::with_capacity(h.len() + 2);
            headers.extend(h.iter().map(|(k, v)| (k.clone(), v.clone())));
            if self.cors.is_constant() {
                self.cors.apply(&HeaderMap::new(), &mut headers);
            }
            let entry = HotEntry {
                located,
                source,
                checked_ms: std::sync::atomic::AtomicU64::new(self.now_ms()),
                key,
                etag: etag.clone(),
                headers,
            };
            if let Some(k) = hot_key.filter(|k| k.len() <= HOT_KEY_MAX) {
                self.hot.insert(k.to_string(), Arc::new(entry));
            }
        }
        Ok(r)
    }

    /// The hot path's key of a request to `path`: the path and the inputs
    /// of the base URL (None when those cannot be keyed).
    pub(crate) fn hot_key(&self, path: &str, headers: &HeaderMap) -> Option<String> {
        let mut key = String::with_capacity(path.len() + 64);
        key.push_str(path);
        base_url::append_inputs(&self.cfg.server.public_base_url, headers, &mut key).then_some(key)
    }

    /// The hot path's answer for `hot_key`, marked as such, if it has one.
    pub(crate) fn hot_hit(&self, hot_key: &str, headers: &HeaderMap) -> Option<Response<Bytes>> {
        let mut r = self.hot_answer(hot_key, headers)?;
        self.mark_tier(&mut r, Tier::Hot);
        Some(r)
    }

    /// Answers from the hot path, if the request was seen, its file is
    /// unchanged and its tile is cached.
    fn hot_answer(&self, hot_key: &str, headers: &HeaderMap) -> Option<Response<Bytes>> {
        let e = self.hot.get(hot_key)?;
        let Some(modified) = self.still_current(&e) else {
            self.hot.remove(hot_key);
            return None;
        };
        let conditional =
            headers.contains_key(header::IF_NONE_MATCH) || headers.contains_key(header::IF_MODIFIED_SINCE);
        if conditional && not_modified(headers, e.etag.to_str().ok()?, crate::source::known_time(modified)) {
            let mut r = empty(StatusCode::NOT_MODIFIED);
            *r.headers_mut() = e.headers.clone();
            r.headers_mut().remove(header::CONTENT_TYPE);
            return Some(r);
        }
        let enc = self.tiles.get(&e.key)?;
        let mut r = Response::new(enc.body.clone());
        *r.headers_mut() = e.headers.clone();
        Some(r)
    }

    fn now_ms(&self) -> u64 {
        self.clock.elapsed().as_millis() as u64
    }

    /// Whether a hot entry's source is unchanged: one `fstat` of its open
    /// file while that is at hand and the path was re-resolved within
    /// [`HOT_PATH_RECHECK`]; else the source's own check (`lstat`, or an
    /// HTTP copy's freshness). Returns its modification time.
    fn still_current(&self, e: &HotEntry) -> Option<std::time::SystemTime> {
        use std::sync::atomic::Ordering::Relaxed;
        let now = self.now_ms();
        if now.saturating_sub(e.checked_ms.load(Relaxed)) < HOT_PATH_RECHECK.as_millis() as u64 {
            if let Some(unchanged) = e.source.upgrade().and_then(|s| s.unchanged()) {
                return unchanged.then_some(e.located.modified);
            }
        }
        let m = self.sources.is_current(&e.located)?;
        e.checked_ms.store(now, Relaxed);
        Some(m)
    }

    pub(crate) fn tile_key(&self, v: ApiVersion, p: &Prepared) -> TileKey {
        TileKey {
            // Keyed by the file, so every identifier naming it shares entries.
            file: p.located.cache_key(),
            version: p.located.version,
            canonical: format!("{}:{}", v as u8, p.plan.canonical),
        }
    }

    /// Resolves, reads the header and plans a parsed request.
    pub async fn prepare(
        &self,
        v: ApiVersion,
        id: &str,
        req: &iiif::ImageRequest,
        headers: &HeaderMap,
    ) -> Result<Prepared> {
        let (located, source, info) = self.source_and_info(id, headers).await?;
        let plan = plan::plan(&info.facts(), req, &self.limits, v)?;
        Ok(Prepared { located, source, info, plan })
    }

    /// Tells the access log which tier answered (a response extension);
    /// with the log off, nothing is allocated for it.
    fn mark_tier(&self, r: &mut Response<Bytes>, tier: Tier) {
        if self.cfg.log.access {
            r.extensions_mut().insert(tier);
        }
    }

    /// The encoded image of a prepared request: from the memory cache, or
    /// through the rest of the pipeline (`pipeline::run`) once, however
    /// many identical requests wait for it.
    pub async fn tile(self: &Arc<Self>, v: ApiVersion, p: Prepared) -> Result<(Arc<Encoded>, Tier)> {
        let key = self.tile_key(v, &p);
        if let Some(e) = self.tiles.get(&key) {
            return Ok((e, Tier::Memory));
        }
        let app = self.clone();
        let k = key.clone();
        let (res, leader) = self
            .flights
            .run_wanted(key, move |wanted| async move { crate::pipeline::run(&app, v, k, p, wanted).await })
            .await;
        match res {
            Some(Ok((tile, tier))) => Ok((tile, if leader { tier } else { Tier::Coalesced })),
            Some(Err(e)) => Err(e),
            None => Err(Error::internal("render task failed")),
        }
    }

    /// ETag, Last-Modified and Cache-Control; a restricted source's
    /// responses are private (no shared cache may keep them).
    fn validators(&self, h: &mut HeaderMap, etag: &str, located: &Located, max_age: u64) {
        if let Ok(v) = HeaderValue::from_str(etag) {
            h.insert(header::ETAG, v);
        }
        if located.modified > UNIX_EPOCH {
            if let Ok(v) = HeaderValue::from_str(&httpdate::fmt_http_date(located.modified)) {
                h.insert(header::LAST_MODIFIED, v);
            }
        }
        let scope = if located.is_restricted() { "private" } else { "public" };
        if let Ok(v) = HeaderValue::from_str(&format!("{scope}, max-age={max_age}")) {
            h.insert(header::CACHE_CONTROL, v);
        }
        if located.is_restricted() {
            add_vary(h, &["Accept", "Authorization", "Cookie"]);
        }
    }

    /// Names the forwarded headers in `Vary` when the base URL is taken from
    /// them (no `public_base_url`, and trusted proxies configured; from
    /// other peers they are removed, see `web::trust`): the `@id` and the
    /// canonical `Link` then depend on them.
    fn vary_forwarded(&self, h: &mut HeaderMap) {
        if self.cfg.server.public_base_url.is_empty() && !self.cfg.server.trusted_proxies.is_empty() {
            add_vary(h, &["X-Forwarded-Host", "X-Forwarded-Proto", "X-Forwarded-Prefix"]);
        }
    }
}

fn profile_uri(v: ApiVersion) -> &'static str {
    match v {
        ApiVersion::V2 => PROFILE_V2,
        ApiVersion::V3 => PROFILE_V3,
    }
}

/// Percent-decodes an identifier once. Invalid UTF-8 → 404.
pub fn decode_identifier(raw: &str) -> Result<String> {
    let id = percent_decode_str(raw).decode_utf8().map_err(|_| Error::not_found())?;
    if id.is_empty() {
        return Err(Error::not_found());
    }
    Ok(id.into_owned())
}

fn header_value(s: &str) -> Result<HeaderValue> {
    HeaderValue::from_str(s).map_err(|_| Error::bad_request("Invalid characters in the request"))
}

pub(crate) fn empty(status: StatusCode) -> Response<Bytes> {
    let mut r = Response::new(Bytes::new());
    *r.status_mut() = status;
    r
}

pub(crate) fn text(status: StatusCode, body: &'static str) -> Response<Bytes> {
    let mut r = Response::new(Bytes::from_static(body.as_bytes()));
    *r.status_mut() = status;
    r.headers_mut().insert(header::CONTENT_TYPE, HeaderValue::from_static("text/plain; charset=utf-8"));
    r
}

/// A short plain-text error: status and public message only.
pub fn error_response(e: &Error) -> Response<Bytes> {
    let mut r = Response::new(Bytes::from(format!("{}\n", e.public_message())));
    *r.status_mut() = e.status();
    let h = r.headers_mut();
    h.insert(header::CONTENT_TYPE, HeaderValue::from_static("text/plain; charset=utf-8"));
    h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    if let Some(s) = e.retry_after() {
        if let Ok(v) = HeaderValue::from_str(&s.to_string()) {
            h.insert(header::RETRY_AFTER, v);
        }
    }
    r
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn identifiers_are_decoded_once() {
        assert_eq!(decode_identifier("a%2Fb").unwrap(), "a/b");
        assert_eq!(decode_identifier("a%252F").unwrap(), "a%2F");
        assert_eq!(decode_identifier("%2D").unwrap(), "-");
        assert!(decode_identifier("%FF").is_err());
    }
}
