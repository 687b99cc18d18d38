//! Human-facing pages: the home page listing items and images, the Mirador
//! viewer page of an item, and the static files the viewer needs (Mirador's
//! bundle, installed from npm at set-up).

use bytes::Bytes;
use http::header::{self, HeaderValue};
use http::{Response, StatusCode};
use percent_encoding::{utf8_percent_encode, AsciiSet, NON_ALPHANUMERIC};

/// Unreserved characters stay as they are in links.
const SEGMENT: &AsciiSet = &NON_ALPHANUMERIC.remove(b'-').remove(b'.').remove(b'_').remove(b'~');

use crate::error::{Error, Result};
use crate::service::{decode_identifier, App};

pub fn html_escape(s: &str) -> String {
    s.replace('&', "&amp;").replace('<', "&lt;").replace('>', "&gt;").replace('"', "&quot;").replace('\'', "&#39;")
}

fn html(body: String) -> Response<Bytes> {
    let mut r = Response::new(Bytes::from(body));
    r.headers_mut().insert(header::CONTENT_TYPE, HeaderValue::from_static("text/html; charset=utf-8"));
    r
}

/// `/`: the items (with viewer and manifest links) and the loose images
/// (with their info.json and, where those protocols are on, their Deep
/// Zoom and Zoomify descriptors).
pub fn home(app: &App) -> Response<Bytes> {
    let mut out = String::from(
        "<!doctype html><meta charset=utf-8><title>Tessera</title>\
         <style>body{font:16px system-ui,sans-serif;max-width:60rem;margin:2rem auto;padding:0 1rem}</style>\
         <h1>Tessera IIIF image server</h1>",
    );
    if let Some(live) = app.catalogue.as_ref().filter(|_| app.cfg.presentation.enabled) {
        let loaded = live.current();
        out.push_str("<h2>Items</h2><ul>");
        for item in loaded.catalogue.items().iter().filter(|i| i.has_manifest()) {
            let id = utf8_percent_encode(&item.id, SEGMENT).to_string();
            out.push_str(&format!(
                "<li><a href=\"/viewer/{id}\">{}</a> · <a href=\"/iiif/{id}/manifest\">manifest 2.1</a> · \
                 <a href=\"/iiif/presentation/3/{id}/manifest\">manifest 3.0</a></li>",
                html_escape(&item.label())
            ));
        }
        out.push_str(
            "</ul><p><a href=\"/iiif/collection\">Collection 2.1</a> · \
             <a href=\"/iiif/presentation/3/collection\">Collection 3.0</a></p>",
        );
    }
    let listing = app.sources.root().map(std::fs::read_dir);
    let mut names: Vec<String> = listing
        .and_then(|r| r.ok())
        .map(|d| {
            d.filter_map(|e| e.ok())
                .filter(|e| e.file_type().map(|t| t.is_file()).unwrap_or(false))
                .filter_map(|e| e.file_name().into_string().ok())
                .filter(|n| !n.starts_with('.') && !n.ends_with(".partial"))
                .collect()
        })
        .unwrap_or_default();
    names.sort();
    let p = &app.cfg.server.prefix_v2;
    out.push_str("<h2>Images</h2><ul>");
    for n in names {
        let id = utf8_percent_encode(&n, SEGMENT).to_string();
        out.push_str(&format!(
            "<li>{}: <a href=\"{p}/{id}/info.json\">info.json</a> · <a href=\"{p}/{id}/full/!800,800/0/default.jpg\">view</a>",
            html_escape(&n)
        ));
        if app.cfg.deepzoom.enabled {
            out.push_str(&format!(" · <a href=\"/dzi/{id}.dzi\">Deep Zoom</a>"));
        }
        if app.cfg.zoomify.enabled {
            out.push_str(&format!(" · <a href=\"/zoomify/{id}/ImageProperties.xml\">Zoomify</a>"));
        }
        out.push_str("</li>");
    }
    out.push_str("</ul>");
    html(out)
}

/// The Mirador script URL: the local copy if installed, else the configured fallback.
fn mirador_url(app: &App) -> String {
    let v = &app.cfg.viewer;
    if v.mirador_url.starts_with("/static/") {
        let file = v.mirador_url.trim_start_matches("/static/");
        if !v.static_dir.join(file).is_file() && !v.fallback_url.is_empty() {
            return v.fallback_url.clone();
        }
    }
    v.mirador_url.clone()
}

/// `/viewer/{item}`: Mirador 3 on the item's manifest.
pub fn viewer(app: &App, raw_item: &str) -> Result<Response<Bytes>> {
    let item = decode_identifier(raw_item)?;
    let live = app.catalogue.as_ref().filter(|_| app.cfg.presentation.enabled).ok_or_else(Error::not_found)?;
    let loaded = live.current();
    let it = loaded
        .catalogue
        .item(&item)
        .filter(|i| i.has_manifest())
        .ok_or_else(|| Error::not_found_msg("No such item"))?;
    let manifest = format!("/iiif/{}/manifest", utf8_percent_encode(&it.id, SEGMENT));
    let script = html_escape(&mirador_url(app));
    let title = html_escape(&it.label());
    let manifest_js = serde_json::to_string(&manifest).unwrap_or_default();
    Ok(html(format!(
        "<!doctype html><meta charset=utf-8><title>{title} — Tessera</title>\
         <style>html,body{{margin:0;height:100%}}#viewer{{position:absolute;inset:0}}</style>\
         <div id=viewer></div><script src=\"{script}\"></script>\
         <script>window.miradorInstance = Mirador.viewer({{id:'viewer',\
         windows:[{{manifestId: new URL({manifest_js}, location.href).href}}],\
         osdConfig:{{crossOriginPolicy:'Anonymous'}}}});</script>"
    )))
}

/// `/static/{file}`: files of the viewer bundle (a flat folder; names only).
pub fn static_file(app: &App, name: &str) -> Result<Response<Bytes>> {
    let ok = !name.is_empty()
        && !name.starts_with('.')
        && name.chars().all(|c| c.is_ascii_alphanumeric() || "._-".contains(c));
    if !ok {
        return Err(Error::not_found());
    }
    let ct = match name.rsplit('.').next() {
        Some("js") => "text/javascript; charset=utf-8",
        Some("css") => "text/css; charset=utf-8",
        Some("map") | Some("json") => "application/json",
        _ => return Err(Error::not_found()),
    };
    let body = std::fs::read(app.cfg.viewer.static_dir.join(name)).map_err(|_| Error::not_found_msg("Not found"))?;
    let mut r = Response::new(Bytes::from(body));
    *r.status_mut() = StatusCode::OK;
    r.headers_mut().insert(header::CONTENT_TYPE, HeaderValue::from_static(ct));
    r.headers_mut().insert(header::CACHE_CONTROL, HeaderValue::from_static("public, max-age=86400"));
    Ok(r)
}
