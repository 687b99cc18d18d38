//! Presentation API 3.0 JSON-LD for catalogue items: the manifest, a
//! dereferenced canvas and the collection of enabled items, built from the
//! same catalogue, `[presentation]` configuration and [`Ctx`] as the 2.1.1
//! documents of [`super::manifest`] (which stay as they are). Owns the 3.0
//! URL layout (`{base}/iiif/presentation/3/{item}/manifest` and
//! `{base}/iiif/presentation/3/collection`), language maps, the Image API
//! 3.0 service of each image (with the 2.1.1 one as an `ImageService2`
//! alternative), `rights` (only the URIs 3.0 allows) and `requiredStatement`,
//! `behavior`, `viewingDirection`, `navDate`, `homepage` and the Search 1.0
//! service as `SearchService1`.
//!
//! Canvas sizes, labels and metadata, the table of contents, renderings,
//! OCR links and the search service id are taken from the 2.1.1 manifest of
//! the same item, so both versions always agree. Canvas, annotation and
//! range ids are the 2.1.1 ones: a Content Search answer's `on` names the
//! same canvases in both versions, and the canvas URL answers 3.0 when asked
//! with the 3.0 profile.

use serde_json::{json, Map, Value};

use super::catalogue::{Catalogue, Item};
use super::manifest::{self, label_of, Ctx, CANVAS_FACT_KEYS, DEFAULT_COLLECTION_LABEL, TOC_LABEL};
use super::{encode_segment, item_base_url, PresentationCfg, PresentationError};

/// `@context` of Presentation 3 resources.
pub const PRESENTATION3_CONTEXT: &str = "http://iiif.io/api/presentation/3/context.json";
/// Path prefix of the 3.0 resources of their own (under `{base}`).
pub const PREFIX: &str = "/iiif/presentation/3";
/// Compliance profile of the Image API 3.0 services (Tessera's level).
pub const IMAGE3_PROFILE: &str = "level2";
/// `type` of the Content Search 1.0 service in a 3.0 document.
pub const SEARCH1_TYPE: &str = "SearchService1";
/// `type` of the Content Search 1.0 autocomplete service in a 3.0 document.
pub const AUTOCOMPLETE1_TYPE: &str = "AutoCompleteService1";
/// Language of the built-in metadata labels.
const LABEL_LANGUAGE: &str = "en";
/// Language key of values whose language is not known.
const NO_LANGUAGE: &str = "none";

/// `{base}/iiif/presentation/3/{item}/manifest`: where the 3.0 manifest of
/// an item always is (whatever a bare 2.1 URL answers).
pub fn manifest3_url(base: &str, item_id: &str) -> String {
    format!("{}{PREFIX}/{}/manifest", base.trim_end_matches('/'), encode_segment(item_id))
}

/// `{base}/iiif/presentation/3/collection`.
pub fn collection3_url(base: &str) -> String {
    format!("{}{PREFIX}/collection", base.trim_end_matches('/'))
}

/// The Image API 3.0 base of the image services: `base` + `prefix_v3` when
/// the images are Tessera's own; None when `image_server_url` names another
/// server, whose 3.0 base is not known (its 2.x service is given alone).
pub fn image_service_base_v3(cfg: &PresentationCfg, base: &str, prefix_v3: &str) -> Option<String> {
    cfg.image_server_url
        .is_empty()
        .then(|| format!("{}{}", base.trim_end_matches('/'), prefix_v3.trim_end_matches('/')))
}

/// A language map of one or more strings.
fn lang(language: &str, values: Vec<String>) -> Value {
    json!({ language: values })
}

fn none(value: impl Into<String>) -> Value {
    lang(NO_LANGUAGE, vec![value.into()])
}

/// A 2.1 `label`/`value`/`description` (a string or a list of strings) as
/// a language map of unknown language.
fn none_of(v: &Value) -> Value {
    let values = match v {
        Value::Array(a) => a.iter().filter_map(Value::as_str).map(str::to_string).collect(),
        Value::String(s) => vec![s.clone()],
        other => vec![other.to_string()],
    };
    lang(NO_LANGUAGE, values)
}

/// The language of a metadata label: English for the built-in labels, not
/// known for those `presentation.labels` gives and for bare field names.
fn label_language(cfg: &PresentationCfg, key: &str) -> &'static str {
    if cfg.labels.contains_key(key) || manifest::field_label(key) == key {
        NO_LANGUAGE
    } else {
        LABEL_LANGUAGE
    }
}

/// A 2.1 `metadata` list as 3.0 label/value language maps; `keys` are the
/// metadata keys the list may come from (to tell each label's language).
fn metadata3(pairs: &Value, keys: &[&str], cfg: &PresentationCfg) -> Vec<Value> {
    let Some(pairs) = pairs.as_array() else { return Vec::new() };
    pairs
        .iter()
        .map(|p| {
            let label = p["label"].as_str().unwrap_or_default();
            let language =
                keys.iter().find(|k| label_of(cfg, k) == label).map_or(NO_LANGUAGE, |k| label_language(cfg, k));
            json!({"label": lang(language, vec![label.to_string()]), "value": none_of(&p["value"])})
        })
        .collect()
}

/// Whether Presentation 3.0 allows `uri` as `rights`: a Creative Commons
/// licence or public-domain URI, or a RightsStatements.org statement.
pub fn is_allowed_rights_uri(uri: &str) -> bool {
    let rest = uri.strip_prefix("http://").or_else(|| uri.strip_prefix("https://")).unwrap_or("");
    ["creativecommons.org/licenses/", "creativecommons.org/publicdomain/", "rightsstatements.org/vocab/"]
        .iter()
        .any(|p| rest.strip_prefix(p).is_some_and(|r| !r.is_empty()))
}

/// `navDate` from a date such as `1480`, `1480-03` or `1480-03-25` (or an
/// RFC 3339 date-time, whose date is kept): midnight UTC of its first day.
pub fn nav_date(s: &str) -> Option<String> {
    let s = s.trim();
    let date = match s.find('T') {
        Some(10) => &s[..10],
        Some(_) => return None,
        None => s,
    };
    let parts: Vec<&str> = date.split('-').collect();
    let num = |p: &str, len: usize| (p.len() == len && p.bytes().all(|b| b.is_ascii_digit())).then(|| p.parse::<u32>());
    let year = num(parts.first()?, 4)?.ok()?;
    let month = match parts.get(1) {
        Some(m) => num(m, 2)?.ok().filter(|m| (1..=12).contains(m))?,
        None => 1,
    };
    let day = match parts.get(2) {
        Some(d) => num(d, 2)?.ok().filter(|d| *d >= 1 && *d <= days_in_month(year, month))?,
        None => 1,
    };
    if parts.len() > 3 {
        return None;
    }
    Some(format!("{year:04}-{month:02}-{day:02}T00:00:00Z"))
}

fn days_in_month(year: u32, month: u32) -> u32 {
    match month {
        2 if (year.is_multiple_of(4) && !year.is_multiple_of(100)) || year.is_multiple_of(400) => 29,
        2 => 28,
        4 | 6 | 9 | 11 => 30,
        _ => 31,
    }
}

/// Languages written right to left (ISO 639-1 and -3 codes), whose paged
/// items are read from right to left.
const RTL_LANGUAGES: [&str; 14] =
    ["ar", "ara", "he", "heb", "fa", "fas", "per", "ur", "urd", "yi", "yid", "syr", "dv", "div"];

/// `viewingDirection`: right to left when the item's `dc.language.iso` (or
/// `dc.language`) is a right-to-left language, else left to right.
fn viewing_direction(item: &Item) -> &'static str {
    let mut langs = item.metadata.values("dc.language.iso");
    langs.extend(item.metadata.values("dc.language"));
    let rtl = langs.first().is_some_and(|l| {
        let primary = l.split(['-', '_']).next().unwrap_or("").to_ascii_lowercase();
        RTL_LANGUAGES.contains(&primary.as_str())
    });
    if rtl {
        "right-to-left"
    } else {
        "left-to-right"
    }
}

/// The 3.0 resource `type` of a file offered as a rendering.
fn rendering_type(mime: &str) -> &'static str {
    match mime.split('/').next().unwrap_or("") {
        "image" => "Image",
        "audio" => "Sound",
        "video" => "Video",
        "text" => "Text",
        _ if mime == "application/pdf" || mime.contains("epub") || mime.contains("word") => "Text",
        _ => "Dataset",
    }
}

/// The manifest of an enabled item with images. `image_v3` is the Image
/// API 3.0 base of the image services ([`image_service_base_v3`]).
pub fn manifest(item: &Item, ctx: &Ctx, image_v3: Option<&str>) -> Result<Value, PresentationError> {
    let v2 = manifest::manifest(item, ctx)?;
    let b = Builder { item, ctx, image_v3: image_v3.map(|s| s.trim_end_matches('/')) };
    let cfg = ctx.cfg;
    let mut m = Map::new();
    m.insert("@context".into(), json!(PRESENTATION3_CONTEXT));
    m.insert("id".into(), json!(manifest3_url(ctx.base, &item.id)));
    m.insert("type".into(), json!("Manifest"));
    m.insert("label".into(), none(item.label()));
    let keys: Vec<&str> = cfg.metadata_item.iter().map(String::as_str).collect();
    let metadata = metadata3(&v2["metadata"], &keys, cfg);
    if !metadata.is_empty() {
        m.insert("metadata".into(), Value::Array(metadata));
    }
    if let Some(d) = v2.get("description") {
        m.insert("summary".into(), none_of(d));
    }
    let licence = v2["license"].as_str();
    if let Some(r) = licence.filter(|l| is_allowed_rights_uri(l)) {
        m.insert("rights".into(), json!(r));
    }
    if let Some(rs) = b.required_statement(licence.filter(|l| !is_allowed_rights_uri(l))) {
        m.insert("requiredStatement".into(), rs);
    }
    if let Some(p) = b.provider() {
        m.insert("provider".into(), p);
    }
    if let Some(related) = v2.get("related") {
        m.insert(
            "homepage".into(),
            json!([{
                "id": related["@id"],
                "type": "Text",
                "label": lang(LABEL_LANGUAGE, vec![related["label"].as_str().unwrap_or("Item page").to_string()]),
                "format": "text/html",
            }]),
        );
    }
    if let Some(r) = v2["rendering"].as_array() {
        let r: Vec<Value> = r
            .iter()
            .map(|r| {
                let format = r["format"].as_str().unwrap_or("application/octet-stream");
                json!({"id": r["@id"], "type": rendering_type(format), "label": none_of(&r["label"]), "format": format})
            })
            .collect();
        m.insert("rendering".into(), Value::Array(r));
    }
    if let Some(hint) = v2["viewingHint"].as_str() {
        m.insert("behavior".into(), json!([hint]));
    }
    m.insert("viewingDirection".into(), json!(viewing_direction(item)));
    if let Some(d) = item.metadata.first("dc.date.issued").and_then(|d| nav_date(&d)) {
        m.insert("navDate".into(), json!(d));
    }
    let canvases = v2["sequences"][0]["canvases"].as_array().map(Vec::as_slice).unwrap_or_default();
    if let Some(first) = canvases.first() {
        m.insert("thumbnail".into(), json!([b.thumbnail(0, &first["thumbnail"])]));
    }
    let items: Vec<Value> = canvases.iter().enumerate().map(|(n, c)| b.canvas(n, c, false)).collect();
    m.insert("items".into(), Value::Array(items));
    let ranges = structures(&v2["structures"], canvases);
    if !ranges.is_empty() {
        m.insert("structures".into(), Value::Array(ranges));
    }
    if let Some(s) = v2.get("service") {
        m.insert("service".into(), json!([search_service(s)]));
    }
    m.insert("partOf".into(), json!([{"id": collection3_url(ctx.base), "type": "Collection"}]));
    Ok(Value::Object(m))
}

/// Canvas `n` (counting from 0), dereferenced (with `@context`).
pub fn canvas(item: &Item, n: usize, ctx: &Ctx, image_v3: Option<&str>) -> Result<Value, PresentationError> {
    let v2 = manifest::canvas(item, n, ctx)?;
    let b = Builder { item, ctx, image_v3: image_v3.map(|s| s.trim_end_matches('/')) };
    Ok(b.canvas(n, &v2, true))
}

/// The collection of every item that has a manifest (enabled, with images),
/// in catalogue order, each pointing at its 3.0 manifest.
pub fn collection(cat: &Catalogue, ctx: &Ctx) -> Value {
    let manifests: Vec<Value> = cat
        .items()
        .iter()
        .filter(|i| i.has_manifest())
        .map(|i| json!({"id": manifest3_url(ctx.base, &i.id), "type": "Manifest", "label": none(i.label())}))
        .collect();
    let mut c = Map::new();
    c.insert("@context".into(), json!(PRESENTATION3_CONTEXT));
    c.insert("id".into(), json!(collection3_url(ctx.base)));
    c.insert("type".into(), json!("Collection"));
    c.insert("label".into(), none(cat.label().unwrap_or(DEFAULT_COLLECTION_LABEL)));
    if let Some(d) = cat.description() {
        c.insert("summary".into(), none(d));
    }
    let attribution = ctx.cfg.attribution.trim();
    if !attribution.is_empty() {
        c.insert(
            "requiredStatement".into(),
            json!({"label": lang(LABEL_LANGUAGE, vec!["Attribution".into()]), "value": none(attribution)}),
        );
    }
    c.insert("items".into(), Value::Array(manifests));
    Value::Object(c)
}

/// The Content Search 1.0 service of a 2.1 manifest, typed for 3.0.
fn search_service(s: &Value) -> Value {
    let mut out = json!({
        "id": s["@id"],
        "type": SEARCH1_TYPE,
        "profile": s["profile"],
        "label": lang(LABEL_LANGUAGE, vec![s["label"].as_str().unwrap_or("Search").to_string()]),
    });
    if let Some(a) = s.get("service") {
        out["service"] = json!([{"id": a["@id"], "type": AUTOCOMPLETE1_TYPE, "profile": a["profile"]}]);
    }
    out
}

/// The 2.1 `structures` as 3.0 Ranges: each range's `items` are its
/// canvases and sub-ranges together, in the order of their first canvas.
/// The top range ("Table of Contents") holds the others, nested.
fn structures(v2: &Value, canvases: &[Value]) -> Vec<Value> {
    match v2.as_array() {
        Some(ranges) if !ranges.is_empty() => vec![range3(&ranges[0], ranges, canvases, 0).1],
        _ => Vec::new(),
    }
}

/// One 2.1 range as a 3.0 Range, with its sub-ranges nested; also the
/// index of its first canvas (to order it among its siblings).
fn range3(r: &Value, ranges: &[Value], canvases: &[Value], depth: usize) -> (usize, Value) {
    let canvas_index = |id: &str| canvases.iter().position(|c| c["@id"] == id).unwrap_or(usize::MAX);
    let mut items: Vec<(usize, Value)> = Vec::new();
    for id in r["canvases"].as_array().into_iter().flatten().filter_map(Value::as_str) {
        items.push((canvas_index(id), json!({"id": id, "type": "Canvas"})));
    }
    // The ranges form a tree (ids are paths); the depth bound keeps a
    // malformed one from recursing for ever.
    if depth < 64 {
        for id in r["ranges"].as_array().into_iter().flatten().filter_map(Value::as_str) {
            if let Some(child) = ranges.iter().find(|c| c["@id"] == id) {
                items.push(range3(child, ranges, canvases, depth + 1));
            }
        }
    }
    items.sort_by_key(|(first, _)| *first);
    let first = items.first().map_or(usize::MAX, |(f, _)| *f);
    let label = r["label"].as_str().unwrap_or(TOC_LABEL).to_string();
    let range = json!({
        "id": r["@id"],
        "type": "Range",
        "label": none(label),
        "items": items.into_iter().map(|(_, v)| v).collect::<Vec<_>>(),
    });
    (first, range)
}

struct Builder<'a> {
    item: &'a Item,
    ctx: &'a Ctx<'a>,
    image_v3: Option<&'a str>,
}

impl Builder<'_> {
    fn required_statement(&self, other_licence: Option<&str>) -> Option<Value> {
        let attribution = self.ctx.cfg.attribution.trim();
        let mut values: Vec<String> = Vec::new();
        if !attribution.is_empty() {
            values.push(attribution.to_string());
        }
        values.extend(self.item.metadata.values("dc.rights"));
        // A licence URI that `rights` may not hold is still the item's licence.
        values.extend(other_licence.map(str::to_string));
        if values.is_empty() {
            return None;
        }
        let label = if attribution.is_empty() { "Rights" } else { "Attribution" };
        Some(json!({"label": lang(LABEL_LANGUAGE, vec![label.into()]), "value": lang(NO_LANGUAGE, values)}))
    }

    /// `provider` with the configured logo (3.0 has logos only there).
    fn provider(&self) -> Option<Value> {
        let logo = self.ctx.cfg.logo.trim();
        if logo.is_empty() {
            return None;
        }
        let attribution = self.ctx.cfg.attribution.trim();
        let name = if attribution.is_empty() { DEFAULT_COLLECTION_LABEL } else { attribution };
        let mut logo_res = json!({"id": logo, "type": "Image"});
        let mime = super::catalogue::mime_type(logo);
        if mime.starts_with("image/") {
            logo_res["format"] = json!(mime);
        }
        Some(json!([{
            "id": format!("{}/", self.ctx.base.trim_end_matches('/')),
            "type": "Agent",
            "label": none(name),
            "logo": [logo_res],
        }]))
    }

    fn v2_service_id(&self, n: usize) -> String {
        let base = self.ctx.image_service_base.trim_end_matches('/');
        format!("{base}/{}", encode_segment(&self.item.images[n].identifier))
    }

    fn v3_service_id(&self, n: usize) -> Option<String> {
        self.image_v3.map(|b| format!("{b}/{}", encode_segment(&self.item.images[n].identifier)))
    }

    /// The image services of image `n`: Image API 3.0 first (when known),
    /// then the 2.1.1 one as an alternative.
    fn services(&self, n: usize) -> Value {
        let mut s = Vec::new();
        if let Some(id) = self.v3_service_id(n) {
            s.push(json!({"id": id, "type": "ImageService3", "profile": IMAGE3_PROFILE}));
        }
        s.push(json!({"@id": self.v2_service_id(n), "@type": "ImageService2", "profile": manifest::IMAGE_PROFILE}));
        Value::Array(s)
    }

    /// An image URL of image `n`: Image API 3.0 when known, else 2.x.
    fn image_url(&self, n: usize, size3: &str, size2: &str) -> String {
        match self.v3_service_id(n) {
            Some(id) => format!("{id}/full/{size3}/0/default.jpg"),
            None => format!("{}/full/{size2}/0/default.jpg", self.v2_service_id(n)),
        }
    }

    fn thumbnail(&self, n: usize, v2: &Value) -> Value {
        let (tw, th) = (v2["width"].as_u64().unwrap_or(1), v2["height"].as_u64().unwrap_or(1));
        let size = format!("{tw},");
        json!({
            "id": self.image_url(n, &size, &size),
            "type": "Image",
            "format": "image/jpeg",
            "width": tw,
            "height": th,
            "service": self.services(n),
        })
    }

    /// Canvas `n` from its 2.1 form: the same id, label, size, metadata,
    /// thumbnail and OCR link; one painting annotation of the image.
    fn canvas(&self, n: usize, v2: &Value, with_context: bool) -> Value {
        let cfg = self.ctx.cfg;
        let id = v2["@id"].as_str().unwrap_or_default().to_string();
        let (w, h) = (v2["width"].as_u64().unwrap_or(1), v2["height"].as_u64().unwrap_or(1));
        let mut c = Map::new();
        if with_context {
            c.insert("@context".into(), json!(PRESENTATION3_CONTEXT));
        }
        c.insert("id".into(), json!(id));
        c.insert("type".into(), json!("Canvas"));
        c.insert("label".into(), none_of(&v2["label"]));
        c.insert("width".into(), json!(w));
        c.insert("height".into(), json!(h));
        if let Some(d) = v2.get("description") {
            c.insert("summary".into(), none_of(d));
        }
        let mut keys: Vec<&str> = cfg.metadata_bitstream.iter().map(String::as_str).collect();
        keys.extend(CANVAS_FACT_KEYS);
        let metadata = metadata3(&v2["metadata"], &keys, cfg);
        if !metadata.is_empty() {
            c.insert("metadata".into(), Value::Array(metadata));
        }
        c.insert("thumbnail".into(), json!([self.thumbnail(n, &v2["thumbnail"])]));
        if let Some(s) = v2.get("seeAlso") {
            let mut link = json!({
                "id": s["@id"],
                "type": "Dataset",
                "label": lang(LABEL_LANGUAGE, vec![s["label"].as_str().unwrap_or("OCR").to_string()]),
                "format": s["format"],
            });
            if let Some(p) = s.get("profile") {
                link["profile"] = p.clone();
            }
            c.insert("seeAlso".into(), json!([link]));
        }
        let item_base = item_base_url(self.ctx.base, &self.item.id);
        c.insert(
            "items".into(),
            json!([{
                "id": format!("{id}/page/0"),
                "type": "AnnotationPage",
                "items": [{
                    "id": format!("{item_base}/annotation/{n}"),
                    "type": "Annotation",
                    "motivation": "painting",
                    "target": id,
                    "body": {
                        "id": self.image_url(n, "max", "full"),
                        "type": "Image",
                        "format": "image/jpeg",
                        "width": w,
                        "height": h,
                        "service": self.services(n),
                    },
                }],
            }]),
        );
        Value::Object(c)
    }
}

#[cfg(test)]
mod tests {
    use super::super::catalogue::tests::load;
    use super::super::catalogue::Image;
    use super::*;

    const BASE: &str = "http://127.0.0.1:8182";
    const IMG: &str = "http://127.0.0.1:8182/iiif/2";
    const IMG3: &str = "http://127.0.0.1:8182/iiif/3";

    fn no_dims(_: &str) -> Option<(u32, u32)> {
        None
    }

    fn no_checksum(_: &Image) -> Option<String> {
        None
    }

    fn ctx(cfg: &PresentationCfg) -> Ctx<'_> {
        Ctx { base: BASE, image_service_base: IMG, cfg, dims: &no_dims, checksum: &no_checksum }
    }

    #[test]
    fn nav_date_accepts_years_months_days_and_date_times_only() {
        assert_eq!(nav_date("1480").as_deref(), Some("1480-01-01T00:00:00Z"));
        assert_eq!(nav_date("1480-03").as_deref(), Some("1480-03-01T00:00:00Z"));
        assert_eq!(nav_date(" 2000-02-29 ").as_deref(), Some("2000-02-29T00:00:00Z"));
        assert_eq!(nav_date("2021-05-04T10:00:00Z").as_deref(), Some("2021-05-04T00:00:00Z"));
        for bad in ["c. 1480", "1900-02-29", "1480-13", "148", "1480-3-1", "1480-01-01-01", "", "14th century"] {
            assert_eq!(nav_date(bad), None, "{bad}");
        }
    }

    #[test]
    fn rights_takes_only_creative_commons_and_rightsstatements_uris() {
        assert!(is_allowed_rights_uri("http://creativecommons.org/licenses/by/4.0/"));
        assert!(is_allowed_rights_uri("https://creativecommons.org/publicdomain/mark/1.0/"));
        assert!(is_allowed_rights_uri("http://rightsstatements.org/vocab/InC/1.0/"));
        assert!(!is_allowed_rights_uri("https://example.org/licence"));
        assert!(!is_allowed_rights_uri("https://creativecommons.org/"));
        assert!(!is_allowed_rights_uri("urn:x"));
    }

    #[test]
    fn ranges_hold_canvases_and_sub_ranges_in_canvas_order() {
        let toml = "[metadata]\n\"dspace.iiif.enabled\" = true\n\
                    [[bitstreams]]\nfile = \"a.jpg\"\n\
                    [[bitstreams]]\nfile = \"b.jpg\"\nmetadata = { \"iiif.toc\" = \"Part I|||Chapter 1\" }\n\
                    [[bitstreams]]\nfile = \"c.jpg\"\nmetadata = { \"iiif.toc\" = \"Part I\" }\n";
        let (_t, c, e) = load(&[
            ("items/x/item.toml", toml),
            ("items/x/a.jpg", "x"),
            ("items/x/b.jpg", "x"),
            ("items/x/c.jpg", "x"),
        ]);
        assert!(e.is_empty(), "{e:?}");
        let cfg = PresentationCfg::default();
        let m = manifest(c.item("x").unwrap(), &ctx(&cfg), Some(IMG3)).unwrap();
        let canvas = |n: usize| m["items"][n]["id"].clone();
        let top = &m["structures"][0];
        assert_eq!(m["structures"].as_array().unwrap().len(), 1);
        assert_eq!(top["label"], json!({"none": [TOC_LABEL]}));
        assert_eq!(top["items"][0], json!({"id": canvas(0), "type": "Canvas"}));
        let part = &top["items"][1];
        assert_eq!((part["type"].as_str(), &part["label"]), (Some("Range"), &json!({"none": ["Part I"]})));
        assert_eq!(part["items"][0]["label"], json!({"none": ["Chapter 1"]}));
        assert_eq!(part["items"][0]["items"], json!([{"id": canvas(1), "type": "Canvas"}]));
        assert_eq!(part["items"][1], json!({"id": canvas(2), "type": "Canvas"}));
    }

    #[test]
    fn another_image_server_gets_only_its_image_service_2() {
        let toml = "[metadata]\n\"dspace.iiif.enabled\" = true\n[[bitstreams]]\nfile = \"a.jpg\"\n";
        let (_t, c, e) = load(&[("items/x/item.toml", toml), ("items/x/a.jpg", "x")]);
        assert!(e.is_empty(), "{e:?}");
        let cfg = PresentationCfg { image_server_url: "https://img.example.org/iiif/2".into(), ..Default::default() };
        assert_eq!(image_service_base_v3(&cfg, BASE, "/iiif/3"), None);
        let img = "https://img.example.org/iiif/2";
        let cx = Ctx { base: BASE, image_service_base: img, cfg: &cfg, dims: &no_dims, checksum: &no_checksum };
        let m = manifest(c.item("x").unwrap(), &cx, None).unwrap();
        let body = &m["items"][0]["items"][0]["items"][0]["body"];
        assert_eq!(body["service"].as_array().unwrap().len(), 1);
        assert_eq!(body["service"][0]["@type"], "ImageService2");
        assert_eq!(body["id"], format!("{img}/items%2Fx%2Fa.jpg/full/full/0/default.jpg"));
    }
}
