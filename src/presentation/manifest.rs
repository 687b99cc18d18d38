//! Presentation API 2.1.1 JSON-LD for catalogue items: manifest, sequence,
//! canvas and the collection of enabled items. Pure functions of an
//! [`Item`], the `[presentation]` configuration and a size-probing callback;
//! owns the URL layout under `{base}/iiif/`, canvas naming and sizing, the
//! table of contents as `sc:Range`s, the links DSpace gives (`related`,
//! `rendering` for non-image files, `seeAlso` for OCR), per-canvas file
//! metadata and the Content Search 1.0 service link.
//!
//! URLs: `{base}/iiif/{item}/manifest`, `/sequence/default`, `/canvas/{n}`
//! (n counts from 0), `/annotation/{n}`, `/range/r0` (the top range) and
//! `/range/r0-{i}-{j}…` (nested ranges), `/file/{path}` (a file the item
//! lists), `/search`, `/autocomplete`; `{base}/iiif/collection`. Item ids,
//! file paths and image identifiers are percent-encoded as one path segment
//! (`/` → `%2F`).

use std::cell::OnceCell;

use serde_json::{json, Map, Value};

use super::catalogue::{Catalogue, Image, Item, Metadata, OcrFile};
use super::ocr::OcrFormat;
use super::{
    collection_url, encode_segment, item_base_url, manifest_url, CanvasSizeRule, PresentationCfg, PresentationError,
    DEFAULT_SEARCH_TEMPLATE, FALLBACK_CANVAS_SIZE,
};

/// `@context` of Presentation 2 resources.
pub const PRESENTATION_CONTEXT: &str = "http://iiif.io/api/presentation/2/context.json";
/// `@context` of Image API 2 services.
pub const IMAGE_CONTEXT: &str = "http://iiif.io/api/image/2/context.json";
/// Compliance profile announced for image services.
pub const IMAGE_PROFILE: &str = "http://iiif.io/api/image/2/level2.json";
/// `@context` of the Content Search API 1 service.
pub const SEARCH_CONTEXT: &str = "http://iiif.io/api/search/1/context.json";
/// Profile of the Content Search API 1 service.
pub const SEARCH_PROFILE: &str = "http://iiif.io/api/search/1/search";
/// Profile of the Content Search API 1 autocomplete service.
pub const AUTOCOMPLETE_PROFILE: &str = "http://iiif.io/api/search/1/autocomplete";
/// Profile announced for ALTO `seeAlso` links.
pub const ALTO_PROFILE: &str = "http://www.loc.gov/standards/alto/";
/// Profile announced for hOCR `seeAlso` links.
pub const HOCR_PROFILE: &str = "http://kba.cloud/hocr-spec/1.2/";
/// Keys of the file facts shown in each canvas's metadata (after the
/// `metadata_bitstream` fields), in order; `presentation.labels` may
/// relabel them.
pub const CANVAS_FACT_KEYS: [&str; 5] = ["file.name", "file.format", "file.mimetype", "file.size", "file.checksum"];
/// Width of thumbnails (pixels; less for narrower images).
pub const THUMBNAIL_WIDTH: u32 = 200;
/// Label of the top range of the table of contents.
pub const TOC_LABEL: &str = "Table of Contents";
/// Label of the collection when `catalogue.toml` gives none.
pub const DEFAULT_COLLECTION_LABEL: &str = "Tessera catalogue";

/// What the builders need besides the item.
pub struct Ctx<'a> {
    /// Public base URL of this server, e.g. `http://127.0.0.1:8182` (a trailing `/` is ignored).
    pub base: &'a str,
    /// Image API base of the image services, e.g. `http://127.0.0.1:8182/iiif/2`.
    pub image_service_base: &'a str,
    pub cfg: &'a PresentationCfg,
    /// Real size of an image, by identifier (unescaped); None if unknown.
    pub dims: &'a dyn Fn(&str) -> Option<(u32, u32)>,
    /// MD5 of an image file (lower-case hex); None if unknown or not wanted.
    pub checksum: &'a dyn Fn(&Image) -> Option<String>,
}

/// `{base}/iiif/{item}/file/{path}`: a file the item lists (a bitstream or
/// an OCR file), by its path in the item folder.
pub fn file_url(base: &str, item_id: &str, file: &str) -> String {
    format!("{}/file/{}", item_base_url(base, item_id), encode_segment(file))
}

/// `{base}/iiif/{item}/sequence/default`.
pub fn sequence_url(base: &str, item_id: &str) -> String {
    format!("{}/sequence/default", item_base_url(base, item_id))
}

/// `{base}/iiif/{item}/canvas/{n}` (n from 0).
pub fn canvas_url(base: &str, item_id: &str, n: usize) -> String {
    format!("{}/canvas/{n}", item_base_url(base, item_id))
}

/// The size of every canvas of an item, as its manifest gives them (search
/// maps OCR boxes onto these).
pub fn canvas_sizes(item: &Item, ctx: &Ctx) -> Result<Vec<(u32, u32)>, PresentationError> {
    let b = Builder::new(item, ctx)?;
    Ok((0..item.images.len()).map(|n| b.size(n)).collect())
}

/// The manifest of an enabled item with images.
pub fn manifest(item: &Item, ctx: &Ctx) -> Result<Value, PresentationError> {
    let b = Builder::new(item, ctx)?;
    let mut m = Map::new();
    m.insert("@context".into(), json!(PRESENTATION_CONTEXT));
    m.insert("@id".into(), json!(manifest_url(ctx.base, &item.id)));
    m.insert("@type".into(), json!("sc:Manifest"));
    m.insert("label".into(), json!(item.label()));
    let pairs = metadata_pairs(&item.metadata, &ctx.cfg.metadata_item, ctx.cfg);
    if !pairs.is_empty() {
        m.insert("metadata".into(), Value::Array(pairs));
    }
    let description = item.metadata.first(super::catalogue::F_DESCRIPTION).map(Value::String).or_else(|| {
        let d = item.metadata.values("dc.description");
        (!d.is_empty()).then(|| one_or_many(d))
    });
    if let Some(d) = description {
        m.insert("description".into(), d);
    }
    let license = item.metadata.first("dc.rights.uri").or_else(|| non_empty(&ctx.cfg.license_uri));
    if let Some(l) = license {
        m.insert("license".into(), json!(l));
    }
    if let Some(a) = non_empty(&ctx.cfg.attribution) {
        m.insert("attribution".into(), json!(a));
    }
    if let Some(l) = non_empty(&ctx.cfg.logo) {
        m.insert("logo".into(), json!(l));
    }
    if let Some(related) = b.related() {
        m.insert("related".into(), related);
    }
    if !item.renderings.is_empty() {
        let r: Vec<Value> = item
            .renderings
            .iter()
            .map(|r| json!({"@id": file_url(ctx.base, &item.id, &r.file), "label": r.label, "format": r.mime}))
            .collect();
        m.insert("rendering".into(), Value::Array(r));
    }
    m.insert("viewingHint".into(), json!(b.viewing_hint()));
    let (w, h) = b.size(0);
    m.insert("thumbnail".into(), b.thumbnail(&item.images[0], w, h));
    m.insert("sequences".into(), json!([b.sequence(false)]));
    let ranges = b.structures();
    if !ranges.is_empty() {
        m.insert("structures".into(), Value::Array(ranges));
    }
    if item.search_enabled {
        m.insert("service".into(), b.search_service());
    }
    Ok(Value::Object(m))
}

/// The default sequence, dereferenced (with `@context`).
pub fn sequence(item: &Item, ctx: &Ctx) -> Result<Value, PresentationError> {
    Ok(Builder::new(item, ctx)?.sequence(true))
}

/// Canvas `n` (counting from 0), dereferenced (with `@context`).
pub fn canvas(item: &Item, n: usize, ctx: &Ctx) -> Result<Value, PresentationError> {
    let b = Builder::new(item, ctx)?;
    if n >= item.images.len() {
        return Err(PresentationError::NoSuchCanvas { item: item.id.clone(), index: n, count: item.images.len() });
    }
    Ok(b.canvas(n, true))
}

/// The collection of every item that has a manifest (enabled, with images).
pub fn collection(cat: &Catalogue, ctx: &Ctx) -> Value {
    let manifests: Vec<Value> = cat
        .items()
        .iter()
        .filter(|i| i.has_manifest())
        .map(|i| json!({"@id": manifest_url(ctx.base, &i.id), "@type": "sc:Manifest", "label": i.label()}))
        .collect();
    let mut c = Map::new();
    c.insert("@context".into(), json!(PRESENTATION_CONTEXT));
    c.insert("@id".into(), json!(collection_url(ctx.base)));
    c.insert("@type".into(), json!("sc:Collection"));
    c.insert("label".into(), json!(cat.label().unwrap_or(DEFAULT_COLLECTION_LABEL)));
    if let Some(d) = cat.description() {
        c.insert("description".into(), json!(d));
    }
    if let Some(a) = non_empty(&ctx.cfg.attribution) {
        c.insert("attribution".into(), json!(a));
    }
    if let Some(l) = non_empty(&ctx.cfg.logo) {
        c.insert("logo".into(), json!(l));
    }
    c.insert("manifests".into(), Value::Array(manifests));
    Value::Object(c)
}

fn non_empty(s: &str) -> Option<String> {
    let t = s.trim();
    (!t.is_empty()).then(|| t.to_string())
}

fn one_or_many(mut v: Vec<String>) -> Value {
    if v.len() == 1 {
        Value::String(v.remove(0))
    } else {
        json!(v)
    }
}

/// The label of a metadata key: `presentation.labels` when it names the
/// key, else the built-in English one.
pub fn label_of<'a>(cfg: &'a PresentationCfg, key: &'a str) -> &'a str {
    cfg.labels.get(key).map(String::as_str).unwrap_or_else(|| field_label(key))
}

/// English labels for common Dublin Core fields and the canvas file facts;
/// others show their name.
pub fn field_label(field: &str) -> &str {
    match field {
        "file.name" => "File name",
        "file.format" => "Format",
        "file.mimetype" => "MIME type",
        "file.size" => "Size",
        "file.checksum" => "Checksum (MD5)",
        "dc.title" => "Title",
        "dc.title.alternative" => "Alternative title",
        "dc.contributor" => "Contributor",
        "dc.contributor.author" => "Author",
        "dc.contributor.editor" => "Editor",
        "dc.contributor.illustrator" => "Illustrator",
        "dc.creator" => "Creator",
        "dc.date" => "Date",
        "dc.date.issued" => "Date issued",
        "dc.date.created" => "Date created",
        "dc.description" => "Description",
        "dc.description.abstract" => "Abstract",
        "dc.format" => "Format",
        "dc.format.extent" => "Extent",
        "dc.format.medium" => "Medium",
        "dc.identifier" => "Identifier",
        "dc.identifier.uri" => "URI",
        "dc.language" | "dc.language.iso" => "Language",
        "dc.publisher" => "Publisher",
        "dc.relation.ispartof" => "Part of",
        "dc.rights" => "Rights",
        "dc.rights.uri" => "Rights URI",
        "dc.source" => "Source",
        "dc.subject" => "Subject",
        "dc.coverage.spatial" => "Place",
        "dc.coverage.temporal" => "Period",
        "dc.type" => "Type",
        other => other,
    }
}

/// `metadata` pairs for the listed fields that have values.
fn metadata_pairs(meta: &Metadata, fields: &[String], cfg: &PresentationCfg) -> Vec<Value> {
    fields
        .iter()
        .filter_map(|f| {
            let v = meta.values(f);
            (!v.is_empty()).then(|| json!({"label": label_of(cfg, f), "value": one_or_many(v)}))
        })
        .collect()
}

/// A format name people know, by MIME type.
fn format_name(mime: &str) -> &str {
    match mime {
        "image/jpeg" => "JPEG",
        "image/jp2" => "JPEG 2000",
        "image/jph" => "High-throughput JPEG 2000",
        "image/png" => "PNG",
        "image/tiff" => "TIFF",
        "image/gif" => "GIF",
        "image/webp" => "WebP",
        other => other,
    }
}

/// The MIME type an OCR file is served and announced with.
pub fn ocr_mime(format: Option<OcrFormat>) -> &'static str {
    match format {
        Some(OcrFormat::Alto | OcrFormat::MiniOcr) => "application/xml",
        Some(OcrFormat::Hocr) => "text/vnd.hocr+html",
        None => "application/octet-stream",
    }
}

/// `seeAlso` of a canvas with OCR: the file, its format and its profile.
fn ocr_link(base: &str, item_id: &str, ocr: &OcrFile) -> Value {
    let format = ocr_mime(ocr.format);
    let (profile, label) = match ocr.format {
        Some(OcrFormat::Alto) => (Some(ALTO_PROFILE), "ALTO OCR"),
        Some(OcrFormat::Hocr) => (Some(HOCR_PROFILE), "hOCR"),
        Some(OcrFormat::MiniOcr) => (None, "MiniOCR"),
        None => (None, "OCR"),
    };
    let mut m = Map::new();
    m.insert("@id".into(), json!(file_url(base, item_id, &ocr.file)));
    m.insert("format".into(), json!(format));
    if let Some(p) = profile {
        m.insert("profile".into(), json!(p));
    }
    m.insert("label".into(), json!(label));
    Value::Object(m)
}

struct Builder<'a> {
    item: &'a Item,
    ctx: &'a Ctx<'a>,
    img_base: &'a str,
    rule: CanvasSizeRule,
    first: OnceCell<(u32, u32)>,
}

impl<'a> Builder<'a> {
    fn new(item: &'a Item, ctx: &'a Ctx<'a>) -> Result<Self, PresentationError> {
        if !item.enabled {
            return Err(PresentationError::NotEnabled { item: item.id.clone() });
        }
        if item.images.is_empty() {
            return Err(PresentationError::NoImages { item: item.id.clone() });
        }
        Ok(Builder {
            item,
            ctx,
            img_base: ctx.image_service_base.trim_end_matches('/'),
            rule: ctx.cfg.canvas_size_rule()?,
            first: OnceCell::new(),
        })
    }

    fn probe(&self, identifier: &str) -> Option<(u32, u32)> {
        (self.ctx.dims)(identifier).filter(|(w, h)| *w > 0 && *h > 0)
    }

    /// The first image's real size (its metadata, then the fallback, if it
    /// cannot be probed). Probed at most once per builder.
    fn first_size(&self) -> (u32, u32) {
        *self.first.get_or_init(|| {
            let f = &self.item.images[0];
            self.probe(&f.identifier).or(f.size).unwrap_or(FALLBACK_CANVAS_SIZE)
        })
    }

    /// Canvas size: `iiif.image.*` metadata, else the configured rule.
    fn size(&self, n: usize) -> (u32, u32) {
        let img = &self.item.images[n];
        if let Some(s) = img.size {
            return s;
        }
        match self.rule {
            CanvasSizeRule::Fixed(w, h) => (w, h),
            CanvasSizeRule::FirstImage => self.first_size(),
            CanvasSizeRule::EachImage => self.probe(&img.identifier).unwrap_or_else(|| self.first_size()),
        }
    }

    fn viewing_hint(&self) -> String {
        self.item.viewing_hint.clone().unwrap_or_else(|| self.ctx.cfg.document_viewing_hint.clone())
    }

    fn label(&self, n: usize) -> String {
        let img = &self.item.images[n];
        if let Some(l) = &img.label {
            return l.clone();
        }
        let prefix = img.canvas_naming.as_deref().unwrap_or(&self.ctx.cfg.canvas_naming);
        format!("{prefix} {}", n + 1)
    }

    /// `related`: the item's page in the repository, when configured.
    fn related(&self) -> Option<Value> {
        let t = self.ctx.cfg.related_url.as_str();
        if t.is_empty() {
            return None;
        }
        let url =
            t.replace("{base}", self.ctx.base.trim_end_matches('/')).replace("{item}", &encode_segment(&self.item.id));
        Some(json!({"@id": url, "format": "text/html", "label": "Item page"}))
    }

    /// The canvas's file facts, after its `metadata_bitstream` fields.
    fn file_facts(&self, img: &Image) -> Vec<Value> {
        let cfg = self.ctx.cfg;
        let pair = |key: &str, value: String| json!({"label": label_of(cfg, key), "value": value});
        let mut v = vec![
            pair("file.name", img.file_name.clone()),
            pair("file.format", format_name(&img.mime).to_string()),
            pair("file.mimetype", img.mime.clone()),
            pair("file.size", format!("{} bytes", img.bytes)),
        ];
        if cfg.canvas_checksum {
            if let Some(md5) = (self.ctx.checksum)(img) {
                v.push(pair("file.checksum", md5));
            }
        }
        v
    }

    fn service_id(&self, img: &Image) -> String {
        format!("{}/{}", self.img_base, encode_segment(&img.identifier))
    }

    fn service(&self, img: &Image) -> Value {
        json!({"@context": IMAGE_CONTEXT, "@id": self.service_id(img), "profile": IMAGE_PROFILE})
    }

    fn thumbnail(&self, img: &Image, w: u32, h: u32) -> Value {
        let tw = THUMBNAIL_WIDTH.min(w).max(1);
        let th = ((u64::from(h) * u64::from(tw) + u64::from(w) / 2) / u64::from(w)).max(1);
        json!({
            "@id": format!("{}/full/{tw},/0/default.jpg", self.service_id(img)),
            "@type": "dctypes:Image",
            "format": "image/jpeg",
            "width": tw,
            "height": th,
            "service": self.service(img),
        })
    }

    fn canvas(&self, n: usize, with_context: bool) -> Value {
        let img = &self.item.images[n];
        let id = canvas_url(self.ctx.base, &self.item.id, n);
        let (w, h) = self.size(n);
        let mut c = Map::new();
        if with_context {
            c.insert("@context".into(), json!(PRESENTATION_CONTEXT));
        }
        c.insert("@id".into(), json!(id));
        c.insert("@type".into(), json!("sc:Canvas"));
        c.insert("label".into(), json!(self.label(n)));
        c.insert("width".into(), json!(w));
        c.insert("height".into(), json!(h));
        if let Some(d) = &img.description {
            c.insert("description".into(), json!(d));
        }
        let mut pairs = metadata_pairs(&img.metadata, &self.ctx.cfg.metadata_bitstream, self.ctx.cfg);
        pairs.extend(self.file_facts(img));
        c.insert("metadata".into(), Value::Array(pairs));
        c.insert("thumbnail".into(), self.thumbnail(img, w, h));
        if let Some(ocr) = &img.ocr {
            c.insert("seeAlso".into(), ocr_link(self.ctx.base, &self.item.id, ocr));
        }
        c.insert(
            "images".into(),
            json!([{
                "@id": format!("{}/annotation/{n}", item_base_url(self.ctx.base, &self.item.id)),
                "@type": "oa:Annotation",
                "motivation": "sc:painting",
                "on": id,
                "resource": {
                    "@id": format!("{}/full/full/0/default.jpg", self.service_id(img)),
                    "@type": "dctypes:Image",
                    "format": "image/jpeg",
                    "width": w,
                    "height": h,
                    "service": self.service(img),
                },
            }]),
        );
        Value::Object(c)
    }

    fn sequence(&self, with_context: bool) -> Value {
        let canvases: Vec<Value> = (0..self.item.images.len()).map(|n| self.canvas(n, false)).collect();
        let mut s = Map::new();
        if with_context {
            s.insert("@context".into(), json!(PRESENTATION_CONTEXT));
        }
        s.insert("@id".into(), json!(sequence_url(self.ctx.base, &self.item.id)));
        s.insert("@type".into(), json!("sc:Sequence"));
        s.insert("label".into(), json!("Current Page Order"));
        s.insert("viewingHint".into(), json!(self.viewing_hint()));
        s.insert("canvases".into(), Value::Array(canvases));
        Value::Object(s)
    }

    /// `structures`: a top range (viewingHint "top") and one range per
    /// distinct TOC path, nested by `|||`; empty when no image has a TOC.
    fn structures(&self) -> Vec<Value> {
        struct Node {
            label: String,
            id: String,
            children: Vec<usize>,
            canvases: Vec<usize>,
        }
        let range_base = format!("{}/range/", item_base_url(self.ctx.base, &self.item.id));
        let mut nodes =
            vec![Node { label: TOC_LABEL.to_string(), id: "r0".into(), children: vec![], canvases: vec![] }];
        for (n, img) in self.item.images.iter().enumerate() {
            let toc = if self.ctx.cfg.exclude_toc_bundle { &img.toc_without_bundle } else { &img.toc };
            if toc.is_empty() {
                nodes[0].canvases.push(n);
                continue;
            }
            for path in toc {
                let mut cur = 0;
                for label in path {
                    let found = nodes[cur].children.iter().copied().find(|&c| nodes[c].label == *label);
                    cur = match found {
                        Some(c) => c,
                        None => {
                            let id = format!("{}-{}", nodes[cur].id, nodes[cur].children.len());
                            nodes.push(Node { label: label.clone(), id, children: vec![], canvases: vec![] });
                            let new = nodes.len() - 1;
                            nodes[cur].children.push(new);
                            new
                        }
                    };
                }
                if !nodes[cur].canvases.contains(&n) {
                    nodes[cur].canvases.push(n);
                }
            }
        }
        if nodes.len() == 1 {
            return Vec::new();
        }
        // Depth-first, parents before children.
        let mut order = Vec::new();
        let mut stack = vec![0usize];
        while let Some(i) = stack.pop() {
            order.push(i);
            stack.extend(nodes[i].children.iter().rev().copied());
        }
        order
            .into_iter()
            .map(|i| {
                let node = &nodes[i];
                let mut r = Map::new();
                r.insert("@id".into(), json!(format!("{range_base}{}", node.id)));
                r.insert("@type".into(), json!("sc:Range"));
                r.insert("label".into(), json!(node.label));
                if i == 0 {
                    r.insert("viewingHint".into(), json!("top"));
                }
                if !node.children.is_empty() {
                    let ids: Vec<String> =
                        node.children.iter().map(|&c| format!("{range_base}{}", nodes[c].id)).collect();
                    r.insert("ranges".into(), json!(ids));
                }
                if !node.canvases.is_empty() {
                    let ids: Vec<String> =
                        node.canvases.iter().map(|&n| canvas_url(self.ctx.base, &self.item.id, n)).collect();
                    r.insert("canvases".into(), json!(ids));
                }
                Value::Object(r)
            })
            .collect()
    }

    fn search_service(&self) -> Value {
        let template = match self.ctx.cfg.search_service_url.as_str() {
            "" => DEFAULT_SEARCH_TEMPLATE,
            t => t,
        };
        let id = template
            .replace("{base}", self.ctx.base.trim_end_matches('/'))
            .replace("{item}", &encode_segment(&self.item.id));
        let mut s = Map::new();
        s.insert("@context".into(), json!(SEARCH_CONTEXT));
        s.insert("@id".into(), json!(id));
        s.insert("profile".into(), json!(SEARCH_PROFILE));
        s.insert("label".into(), json!("Search within this item"));
        // Tessera's own search answers autocomplete too; an outside one may not.
        if template == DEFAULT_SEARCH_TEMPLATE {
            s.insert(
                "service".into(),
                json!({
                    "@id": format!("{}/autocomplete", item_base_url(self.ctx.base, &self.item.id)),
                    "profile": AUTOCOMPLETE_PROFILE,
                    "label": "Autocomplete words in this item",
                }),
            );
        }
        Value::Object(s)
    }
}

#[cfg(test)]
mod tests {
    use std::cell::RefCell;
    use std::path::{Path, PathBuf};
    use std::process::Command;

    use super::super::catalogue::tests::{load, tree};
    use super::*;

    const BASE: &str = "http://127.0.0.1:8182";
    const IMG: &str = "http://127.0.0.1:8182/iiif/2";

    fn no_dims(_: &str) -> Option<(u32, u32)> {
        None
    }

    fn no_checksum(_: &Image) -> Option<String> {
        None
    }

    fn ctx<'a>(cfg: &'a PresentationCfg, dims: &'a dyn Fn(&str) -> Option<(u32, u32)>) -> Ctx<'a> {
        Ctx { base: BASE, image_service_base: IMG, cfg, dims, checksum: &no_checksum }
    }

    /// An enabled item `book` with `n` pages `p{i}.jpg`; `meta` is added to
    /// the item's [metadata], `bs_meta(i)` gives each bitstream's inline table.
    fn book(meta: &str, n: usize, bs_meta: impl Fn(usize) -> String) -> (tempfile::TempDir, Catalogue) {
        let mut toml = format!("[metadata]\n\"dspace.iiif.enabled\" = true\n{meta}\n");
        let mut files: Vec<(String, String)> = Vec::new();
        for i in 0..n {
            toml.push_str(&format!("[[bitstreams]]\nfile = \"p{i}.jpg\"\nmetadata = {{ {} }}\n", bs_meta(i)));
            files.push((format!("items/book/p{i}.jpg"), "x".into()));
        }
        files.push(("items/book/item.toml".into(), toml));
        let refs: Vec<(&str, &str)> = files.iter().map(|(a, b)| (a.as_str(), b.as_str())).collect();
        let (t, c, e) = load(&refs);
        assert!(e.is_empty(), "{e:?}");
        (t, c)
    }

    fn canvases(m: &Value) -> &Vec<Value> {
        m["sequences"][0]["canvases"].as_array().unwrap()
    }

    #[test]
    fn manifest_has_the_required_presentation_2_shape() {
        let meta = "\"dc.title\" = \"The Book of Hours\"\n\"dc.contributor.author\" = [\"Anonymous\", \"Workshop\"]\n\
                    \"dc.date.issued\" = \"1480\"\n\"dc.description\" = \"A prayer book.\"\n\"dc.rights\" = \"Public domain\"\n\
                    \"dc.rights.uri\" = \"https://creativecommons.org/publicdomain/mark/1.0/\"";
        let (_t, c) = book(meta, 2, |_| "\"iiif.image.width\" = 2000, \"iiif.image.height\" = 3000".into());
        let cfg = PresentationCfg {
            attribution: "Tessera Library".into(),
            logo: "https://x.org/logo.png".into(),
            ..Default::default()
        };
        let m = manifest(c.item("book").unwrap(), &ctx(&cfg, &no_dims)).unwrap();
        assert_eq!(m["@context"], PRESENTATION_CONTEXT);
        assert_eq!(m["@id"], "http://127.0.0.1:8182/iiif/book/manifest");
        assert_eq!(m["@type"], "sc:Manifest");
        assert_eq!(m["label"], "The Book of Hours");
        assert_eq!(m["description"], "A prayer book.");
        assert_eq!(m["license"], "https://creativecommons.org/publicdomain/mark/1.0/");
        assert_eq!(m["attribution"], "Tessera Library");
        assert_eq!(m["logo"], "https://x.org/logo.png");
        assert_eq!(m["viewingHint"], "individuals");
        assert_eq!(
            m["metadata"],
            json!([
                {"label": "Title", "value": "The Book of Hours"},
                {"label": "Author", "value": ["Anonymous", "Workshop"]},
                {"label": "Date issued", "value": "1480"},
                {"label": "Rights", "value": "Public domain"},
            ])
        );
        let seq = &m["sequences"][0];
        assert_eq!(seq["@id"], "http://127.0.0.1:8182/iiif/book/sequence/default");
        assert_eq!(seq["@type"], "sc:Sequence");
        let cv = &canvases(&m)[1];
        assert_eq!(cv["@id"], "http://127.0.0.1:8182/iiif/book/canvas/1");
        assert_eq!(cv["@type"], "sc:Canvas");
        assert_eq!((cv["width"].as_u64(), cv["height"].as_u64()), (Some(2000), Some(3000)));
        let anno = &cv["images"][0];
        assert_eq!(anno["@type"], "oa:Annotation");
        assert_eq!(anno["motivation"], "sc:painting");
        assert_eq!(anno["on"], cv["@id"]);
        let res = &anno["resource"];
        assert_eq!(res["@id"], "http://127.0.0.1:8182/iiif/2/items%2Fbook%2Fp1.jpg/full/full/0/default.jpg");
        assert_eq!(res["@type"], "dctypes:Image");
        assert_eq!(res["format"], "image/jpeg");
        assert_eq!((res["width"].as_u64(), res["height"].as_u64()), (Some(2000), Some(3000)));
        assert_eq!(
            res["service"],
            json!({"@context": IMAGE_CONTEXT, "@id": "http://127.0.0.1:8182/iiif/2/items%2Fbook%2Fp1.jpg", "profile": IMAGE_PROFILE})
        );
        let th = &m["thumbnail"];
        assert_eq!(th["@id"], "http://127.0.0.1:8182/iiif/2/items%2Fbook%2Fp0.jpg/full/200,/0/default.jpg");
        assert_eq!((th["width"].as_u64(), th["height"].as_u64()), (Some(200), Some(300)));
        assert_eq!(th["service"]["@id"], "http://127.0.0.1:8182/iiif/2/items%2Fbook%2Fp0.jpg");
        assert!(m.get("structures").is_none() && m.get("service").is_none());
    }

    #[test]
    fn config_license_applies_only_when_the_item_has_no_rights_uri() {
        let (_t, c) = book("", 1, |_| String::new());
        let cfg =
            PresentationCfg { license_uri: "https://rightsstatements.org/vocab/InC/1.0/".into(), ..Default::default() };
        let m = manifest(c.item("book").unwrap(), &ctx(&cfg, &no_dims)).unwrap();
        assert_eq!(m["license"], "https://rightsstatements.org/vocab/InC/1.0/");
        let m = manifest(c.item("book").unwrap(), &ctx(&PresentationCfg::default(), &no_dims)).unwrap();
        assert!(m.get("license").is_none() && m.get("attribution").is_none() && m.get("logo").is_none());
    }

    #[test]
    fn iiif_label_and_description_win_over_dublin_core() {
        let meta = "\"dc.title\" = \"T\"\n\"iiif.label\" = \"Shown\"\n\"dc.description\" = [\"a\", \"b\"]";
        let (_t, c) = book(meta, 1, |_| String::new());
        let m = manifest(c.item("book").unwrap(), &ctx(&PresentationCfg::default(), &no_dims)).unwrap();
        assert_eq!(m["label"], "Shown");
        assert_eq!(m["description"], json!(["a", "b"]));
        let (_t, c) = book("\"iiif.description\" = \"I\"\n\"dc.description\" = \"D\"", 1, |_| String::new());
        let m = manifest(c.item("book").unwrap(), &ctx(&PresentationCfg::default(), &no_dims)).unwrap();
        assert_eq!((m["label"].as_str(), m["description"].as_str()), (Some("book"), Some("I")));
    }

    #[test]
    fn canvas_labels_use_iiif_label_then_naming_prefix_then_page_n() {
        let (_t, c) = book("\"iiif.canvas.naming\" = \"Folio\"", 3, |i| {
            if i == 1 {
                "\"iiif.label\" = \"Frontispiece\"".into()
            } else {
                String::new()
            }
        });
        let m = manifest(c.item("book").unwrap(), &ctx(&PresentationCfg::default(), &no_dims)).unwrap();
        let labels: Vec<&str> = canvases(&m).iter().map(|c| c["label"].as_str().unwrap()).collect();
        assert_eq!(labels, vec!["Folio 1", "Frontispiece", "Folio 3"]);
        let (_t, c) = book("", 2, |_| String::new());
        let m = manifest(c.item("book").unwrap(), &ctx(&PresentationCfg::default(), &no_dims)).unwrap();
        let labels: Vec<&str> = canvases(&m).iter().map(|c| c["label"].as_str().unwrap()).collect();
        assert_eq!(labels, vec!["Page 1", "Page 2"]);
        let cfg = PresentationCfg { canvas_naming: "Seite".into(), ..Default::default() };
        let m = manifest(c.item("book").unwrap(), &ctx(&cfg, &no_dims)).unwrap();
        assert_eq!(canvases(&m)[1]["label"], "Seite 2");
    }

    #[test]
    fn viewing_hint_comes_from_the_item_else_the_configured_default() {
        let (_t, c) = book("\"iiif.viewing.hint\" = \"Paged\"", 1, |_| String::new());
        let m = manifest(c.item("book").unwrap(), &ctx(&PresentationCfg::default(), &no_dims)).unwrap();
        assert_eq!(
            (m["viewingHint"].as_str(), m["sequences"][0]["viewingHint"].as_str()),
            (Some("paged"), Some("paged"))
        );
        let (_t, c) = book("", 1, |_| String::new());
        let cfg = PresentationCfg { document_viewing_hint: "continuous".into(), ..Default::default() };
        let m = manifest(c.item("book").unwrap(), &ctx(&cfg, &no_dims)).unwrap();
        assert_eq!(m["viewingHint"], "continuous");
    }

    #[test]
    fn toc_becomes_nested_ranges_under_a_top_range() {
        let (_t, c) = book("", 5, |i| match i {
            1 => "\"iiif.toc\" = \"Part I|||Chapter 1\"".into(),
            3 => "\"iiif.toc\" = [\"Part I|||Chapter 2\", \"Illustrations\"]".into(),
            _ => String::new(),
        });
        let m = manifest(c.item("book").unwrap(), &ctx(&PresentationCfg::default(), &no_dims)).unwrap();
        let r = |s: &str| format!("http://127.0.0.1:8182/iiif/book/range/{s}");
        let cv = |n: usize| format!("http://127.0.0.1:8182/iiif/book/canvas/{n}");
        assert_eq!(
            m["structures"],
            json!([
                {"@id": r("r0"), "@type": "sc:Range", "label": "Table of Contents", "viewingHint": "top",
                 "ranges": [r("r0-0"), r("r0-1")], "canvases": [cv(0)]},
                {"@id": r("r0-0"), "@type": "sc:Range", "label": "Part I", "ranges": [r("r0-0-0"), r("r0-0-1")]},
                {"@id": r("r0-0-0"), "@type": "sc:Range", "label": "Chapter 1", "canvases": [cv(1), cv(2)]},
                {"@id": r("r0-0-1"), "@type": "sc:Range", "label": "Chapter 2", "canvases": [cv(3), cv(4)]},
                {"@id": r("r0-1"), "@type": "sc:Range", "label": "Illustrations", "canvases": [cv(3), cv(4)]},
            ])
        );
    }

    #[test]
    fn canvas_sizes_follow_the_three_dspace_behaviours() {
        // Page 0 has metadata 100×200; pages 1 and 2 have none.
        let (_t, c) = book("", 3, |i| {
            if i == 0 {
                "\"iiif.image.width\" = 100, \"iiif.image.height\" = 200".into()
            } else {
                String::new()
            }
        });
        let item = c.item("book").unwrap();
        let probed = RefCell::new(Vec::new());
        let dims = |id: &str| {
            probed.borrow_mut().push(id.to_string());
            match id {
                "items/book/p0.jpg" => Some((1000, 2000)),
                "items/book/p1.jpg" => Some((1100, 2100)),
                _ => None,
            }
        };
        let sizes = |m: &Value| -> Vec<(u64, u64)> {
            canvases(m).iter().map(|c| (c["width"].as_u64().unwrap(), c["height"].as_u64().unwrap())).collect()
        };
        // Absent: the first image's real size for every canvas without metadata; probed once.
        let cfg = PresentationCfg::default();
        let m = manifest(item, &ctx(&cfg, &dims)).unwrap();
        assert_eq!(sizes(&m), vec![(100, 200), (1000, 2000), (1000, 2000)]);
        assert_eq!(*probed.borrow(), vec!["items/book/p0.jpg"]);
        // Positive: that size, nothing probed.
        probed.borrow_mut().clear();
        let cfg = PresentationCfg {
            canvas_default_width: Some(2200),
            canvas_default_height: Some(1600),
            ..Default::default()
        };
        assert_eq!(sizes(&manifest(item, &ctx(&cfg, &dims)).unwrap()), vec![(100, 200), (2200, 1600), (2200, 1600)]);
        assert!(probed.borrow().is_empty());
        // -1: each image's real size; an image that cannot be probed gets the first image's.
        let cfg =
            PresentationCfg { canvas_default_width: Some(-1), canvas_default_height: Some(-1), ..Default::default() };
        assert_eq!(sizes(&manifest(item, &ctx(&cfg, &dims)).unwrap()), vec![(100, 200), (1100, 2100), (1000, 2000)]);
        // Nothing probes: the first image's metadata, else DSpace's fallback.
        let cfg = PresentationCfg::default();
        assert_eq!(sizes(&manifest(item, &ctx(&cfg, &no_dims)).unwrap()), vec![(100, 200), (100, 200), (100, 200)]);
        let (_t, c) = book("", 1, |_| String::new());
        let m = manifest(c.item("book").unwrap(), &ctx(&cfg, &no_dims)).unwrap();
        assert_eq!(sizes(&m), vec![(FALLBACK_CANVAS_SIZE.0 as u64, FALLBACK_CANVAS_SIZE.1 as u64)]);
        // A bad pairing of defaults is a configuration error, not a panic.
        let cfg = PresentationCfg { canvas_default_width: Some(-1), ..Default::default() };
        assert!(matches!(manifest(item, &ctx(&cfg, &no_dims)), Err(PresentationError::Config { .. })));
    }

    #[test]
    fn search_service_is_present_only_when_enabled() {
        let (_t, c) = book("\"iiif.search.enabled\" = true", 1, |_| String::new());
        let m = manifest(c.item("book").unwrap(), &ctx(&PresentationCfg::default(), &no_dims)).unwrap();
        assert_eq!(
            m["service"],
            json!({"@context": "http://iiif.io/api/search/1/context.json",
                   "@id": "http://127.0.0.1:8182/iiif/book/search",
                   "profile": "http://iiif.io/api/search/1/search",
                   "label": "Search within this item",
                   "service": {"@id": "http://127.0.0.1:8182/iiif/book/autocomplete",
                               "profile": "http://iiif.io/api/search/1/autocomplete",
                               "label": "Autocomplete words in this item"}})
        );
        // Another search server: its id, and no autocomplete Tessera cannot vouch for.
        let cfg = PresentationCfg {
            search_service_url: "https://search.example.org/{item}/search".into(),
            ..Default::default()
        };
        let m = manifest(c.item("book").unwrap(), &ctx(&cfg, &no_dims)).unwrap();
        assert_eq!(m["service"]["@id"], "https://search.example.org/book/search");
        assert!(m["service"].get("service").is_none());
        let (_t, c) = book("\"iiif.search.enabled\" = false", 1, |_| String::new());
        let m = manifest(c.item("book").unwrap(), &ctx(&PresentationCfg::default(), &no_dims)).unwrap();
        assert!(m.get("service").is_none());
    }

    /// An item with a PDF and a text beside its two pages, a thumbnail
    /// bundle, and OCR on the second page.
    fn item_with_other_files() -> (tempfile::TempDir, Catalogue) {
        let toml = r#"
[metadata]
"dspace.iiif.enabled" = true
[[bundles]]
name = "ORIGINAL"
  [[bundles.bitstreams]]
  file = "p1.jp2"
  [[bundles.bitstreams]]
  file = "book.pdf"
  metadata = { "iiif.label" = "The whole book" }
  [[bundles.bitstreams]]
  file = "p2.tif"
  ocr = "ocr/p2.xml"
  [[bundles.bitstreams]]
  file = "notes.txt"
[[bundles]]
name = "THUMBNAIL"
  [[bundles.bitstreams]]
  file = "p1.jpg"
"#;
        let (t, c, e) = load(&[
            ("items/book/item.toml", toml),
            ("items/book/p1.jp2", "x"),
            ("items/book/p2.tif", "xy"),
            ("items/book/book.pdf", "%PDF"),
            ("items/book/notes.txt", "n"),
            ("items/book/p1.jpg", "x"),
            ("items/book/ocr/p2.xml", ALTO_HEAD),
        ]);
        assert!(e.is_empty(), "{e:?}");
        (t, c)
    }

    #[test]
    fn only_image_files_become_canvases_and_other_files_are_renderings() {
        let (_t, c) = item_with_other_files();
        let m = manifest(c.item("book").unwrap(), &ctx(&PresentationCfg::default(), &no_dims)).unwrap();
        let ids: Vec<&str> =
            canvases(&m).iter().map(|c| c["images"][0]["resource"]["service"]["@id"].as_str().unwrap()).collect();
        // The thumbnail bundle's JPEG is not a page; the PDF and the text are not images.
        assert_eq!(
            ids,
            vec![
                "http://127.0.0.1:8182/iiif/2/items%2Fbook%2Fp1.jp2",
                "http://127.0.0.1:8182/iiif/2/items%2Fbook%2Fp2.tif"
            ]
        );
        assert_eq!(
            m["rendering"],
            json!([
                {"@id": "http://127.0.0.1:8182/iiif/book/file/book.pdf", "label": "The whole book", "format": "application/pdf"},
                {"@id": "http://127.0.0.1:8182/iiif/book/file/notes.txt", "label": "notes.txt", "format": "text/plain"},
            ])
        );
    }

    #[test]
    fn canvases_show_file_facts_with_configurable_labels() {
        let (_t, c) = item_with_other_files();
        let md5 = |img: &Image| (img.file == "p2.tif").then(|| "0123456789abcdef0123456789abcdef".to_string());
        let cfg = PresentationCfg::default();
        let cx = Ctx { base: BASE, image_service_base: IMG, cfg: &cfg, dims: &no_dims, checksum: &md5 };
        let m = manifest(c.item("book").unwrap(), &cx).unwrap();
        assert_eq!(
            canvases(&m)[1]["metadata"],
            json!([
                {"label": "File name", "value": "p2.tif"},
                {"label": "Format", "value": "TIFF"},
                {"label": "MIME type", "value": "image/tiff"},
                {"label": "Size", "value": "2 bytes"},
                {"label": "Checksum (MD5)", "value": "0123456789abcdef0123456789abcdef"},
            ])
        );
        assert_eq!(canvases(&m)[0]["metadata"][1]["value"], "JPEG 2000");
        assert_eq!(canvases(&m)[0]["metadata"].as_array().unwrap().len(), 4, "no checksum known: none shown");
        // Translated labels, and the checksum turned off.
        let cfg = PresentationCfg {
            labels: [("file.name".to_string(), "Nom du fichier".to_string())].into(),
            canvas_checksum: false,
            ..Default::default()
        };
        let cx = Ctx { base: BASE, image_service_base: IMG, cfg: &cfg, dims: &no_dims, checksum: &md5 };
        let m = manifest(c.item("book").unwrap(), &cx).unwrap();
        let md = canvases(&m)[1]["metadata"].as_array().unwrap();
        assert_eq!((md[0]["label"].as_str(), md.len()), (Some("Nom du fichier"), 4));
    }

    #[test]
    fn ocr_files_are_linked_from_their_canvas_with_format_and_profile() {
        let (_t, c) = item_with_other_files();
        let m = manifest(c.item("book").unwrap(), &ctx(&PresentationCfg::default(), &no_dims)).unwrap();
        assert!(canvases(&m)[0].get("seeAlso").is_none());
        assert_eq!(
            canvases(&m)[1]["seeAlso"],
            json!({"@id": "http://127.0.0.1:8182/iiif/book/file/ocr%2Fp2.xml", "format": "application/xml",
                   "profile": "http://www.loc.gov/standards/alto/", "label": "ALTO OCR"})
        );
    }

    #[test]
    fn related_links_the_item_page_when_configured() {
        let (_t, c) = book("", 1, |_| String::new());
        let m = manifest(c.item("book").unwrap(), &ctx(&PresentationCfg::default(), &no_dims)).unwrap();
        assert!(m.get("related").is_none());
        let cfg = PresentationCfg { related_url: "https://repo.example.org/items/{item}".into(), ..Default::default() };
        let m = manifest(c.item("book").unwrap(), &ctx(&cfg, &no_dims)).unwrap();
        assert_eq!(
            m["related"],
            json!({"@id": "https://repo.example.org/items/book", "format": "text/html", "label": "Item page"})
        );
    }

    #[test]
    fn exclude_toc_bundle_leaves_the_bundle_level_out_of_the_ranges() {
        let toml = "[metadata]\n\"dspace.iiif.enabled\" = true\n\
                    [[bundles]]\nname = \"A\"\n[[bundles.bitstreams]]\nfile = \"a.jpg\"\nmetadata = { \"iiif.toc\" = \"Part I\" }\n\
                    [[bundles]]\nname = \"B\"\n[[bundles.bitstreams]]\nfile = \"b.jpg\"\n";
        let (_t, c, e) = load(&[("items/x/item.toml", toml), ("items/x/a.jpg", "x"), ("items/x/b.jpg", "x")]);
        assert!(e.is_empty(), "{e:?}");
        let labels = |cfg: &PresentationCfg| -> Vec<String> {
            let m = manifest(c.item("x").unwrap(), &ctx(cfg, &no_dims)).unwrap();
            m["structures"].as_array().unwrap().iter().map(|r| r["label"].as_str().unwrap().to_string()).collect()
        };
        assert_eq!(labels(&PresentationCfg::default()), vec!["Table of Contents", "A", "Part I", "B"]);
        let cfg = PresentationCfg { exclude_toc_bundle: true, ..Default::default() };
        assert_eq!(labels(&cfg), vec!["Table of Contents", "Part I"]);
    }

    #[test]
    fn items_not_enabled_or_without_images_are_refused() {
        let (_t, c, e) = load(&[
            ("items/off/item.toml", "[[bitstreams]]\nfile = \"p.jpg\"\n"),
            ("items/off/p.jpg", "x"),
            ("items/empty/item.toml", "[metadata]\n\"dspace.iiif.enabled\" = true\n"),
        ]);
        assert!(e.is_empty(), "{e:?}");
        let cfg = PresentationCfg::default();
        let cx = ctx(&cfg, &no_dims);
        let off = c.item("off").unwrap();
        assert!(matches!(manifest(off, &cx), Err(PresentationError::NotEnabled { .. })));
        assert!(matches!(sequence(off, &cx), Err(PresentationError::NotEnabled { .. })));
        assert!(matches!(canvas(off, 0, &cx), Err(PresentationError::NotEnabled { .. })));
        assert!(matches!(manifest(c.item("empty").unwrap(), &cx), Err(PresentationError::NoImages { .. })));
    }

    #[test]
    fn sequence_and_canvas_dereference_with_context_and_canvases_count_from_zero() {
        let (_t, c) = book("", 2, |_| String::new());
        let item = c.item("book").unwrap();
        let cfg = PresentationCfg::default();
        let cx = ctx(&cfg, &no_dims);
        let s = sequence(item, &cx).unwrap();
        assert_eq!(s["@context"], PRESENTATION_CONTEXT);
        assert_eq!(s["canvases"].as_array().unwrap().len(), 2);
        let c0 = canvas(item, 0, &cx).unwrap();
        assert_eq!(c0["@context"], PRESENTATION_CONTEXT);
        assert_eq!(c0["@id"], canvas_url(BASE, "book", 0));
        let mut embedded = s["canvases"][0].clone();
        embedded.as_object_mut().unwrap().insert("@context".into(), json!(PRESENTATION_CONTEXT));
        assert_eq!(c0, embedded, "the dereferenced canvas equals the embedded one");
        assert!(matches!(canvas(item, 2, &cx), Err(PresentationError::NoSuchCanvas { index: 2, count: 2, .. })));
    }

    #[test]
    fn canvas_metadata_lists_the_configured_bitstream_fields() {
        let (_t, c) = book("", 2, |i| {
            if i == 0 {
                "\"dc.description\" = \"Recto\", \"iiif.description\" = \"Gilded\", \"dc.format\" = \"x\"".into()
            } else {
                String::new()
            }
        });
        let m = manifest(c.item("book").unwrap(), &ctx(&PresentationCfg::default(), &no_dims)).unwrap();
        let labels = |n: usize| -> Vec<String> {
            let md = canvases(&m)[n]["metadata"].as_array().unwrap();
            md.iter().map(|p| p["label"].as_str().unwrap().to_string()).collect()
        };
        assert_eq!(canvases(&m)[0]["metadata"][0], json!({"label": "Description", "value": "Recto"}));
        assert_eq!(labels(0), ["Description", "File name", "Format", "MIME type", "Size"]);
        assert_eq!(canvases(&m)[0]["description"], "Gilded");
        assert_eq!(labels(1), ["File name", "Format", "MIME type", "Size"], "the file facts only");
    }

    #[test]
    fn collection_lists_only_items_with_manifests() {
        let on =
            "[metadata]\n\"dspace.iiif.enabled\" = true\n\"dc.title\" = \"On\"\n[[bitstreams]]\nfile = \"p.jpg\"\n";
        let (_t, c, e) = load(&[
            ("items/b-on/item.toml", on),
            ("items/b-on/p.jpg", "x"),
            ("items/a-on/item.toml", on),
            ("items/a-on/p.jpg", "x"),
            ("items/off/item.toml", "[[bitstreams]]\nfile = \"p.jpg\"\n"),
            ("items/off/p.jpg", "x"),
            ("items/no-images/item.toml", "[metadata]\n\"dspace.iiif.enabled\" = true\n"),
        ]);
        assert!(e.is_empty(), "{e:?}");
        let cfg = PresentationCfg::default();
        let col = collection(&c, &ctx(&cfg, &no_dims));
        assert_eq!(col["@id"], "http://127.0.0.1:8182/iiif/collection");
        assert_eq!(col["@type"], "sc:Collection");
        assert_eq!(col["label"], DEFAULT_COLLECTION_LABEL);
        assert_eq!(
            col["manifests"],
            json!([
                {"@id": "http://127.0.0.1:8182/iiif/a-on/manifest", "@type": "sc:Manifest", "label": "On"},
                {"@id": "http://127.0.0.1:8182/iiif/b-on/manifest", "@type": "sc:Manifest", "label": "On"},
            ])
        );
    }

    #[test]
    fn item_ids_and_identifiers_are_escaped_in_every_url() {
        let toml = "[metadata]\n\"dspace.iiif.enabled\" = true\n\"iiif.search.enabled\" = true\n\
                    [[bitstreams]]\nfile = \"sub dir/f#1.jpg\"\nmetadata = { \"iiif.toc\" = \"A\" }\n";
        let (_t, c, e) =
            load(&[("items/livre d'heures/item.toml", toml), ("items/livre d'heures/sub dir/f#1.jpg", "x")]);
        assert!(e.is_empty(), "{e:?}");
        let item = c.item("livre d'heures").unwrap();
        assert_eq!(item.images[0].identifier, "items/livre d'heures/sub dir/f#1.jpg");
        let cfg = PresentationCfg::default();
        let seen = RefCell::new(String::new());
        let dims = |id: &str| {
            *seen.borrow_mut() = id.to_string();
            Some((10, 10))
        };
        let m = manifest(
            item,
            &Ctx {
                base: "http://h/",
                image_service_base: "http://h/iiif/2/",
                cfg: &cfg,
                dims: &dims,
                checksum: &no_checksum,
            },
        )
        .unwrap();
        assert_eq!(*seen.borrow(), "items/livre d'heures/sub dir/f#1.jpg", "dims get the unescaped identifier");
        let it = "http://h/iiif/livre%20d%27heures";
        assert_eq!(m["@id"], format!("{it}/manifest"));
        assert_eq!(m["service"]["@id"], format!("{it}/search"));
        assert_eq!(m["structures"][1]["@id"], format!("{it}/range/r0-0"));
        let cv = &canvases(&m)[0];
        assert_eq!(cv["@id"], format!("{it}/canvas/0"));
        assert_eq!(cv["images"][0]["@id"], format!("{it}/annotation/0"));
        assert_eq!(
            cv["images"][0]["resource"]["service"]["@id"],
            "http://h/iiif/2/items%2Flivre%20d%27heures%2Fsub%20dir%2Ff%231.jpg"
        );
        assert_eq!(
            cv["thumbnail"]["@id"],
            "http://h/iiif/2/items%2Flivre%20d%27heures%2Fsub%20dir%2Ff%231.jpg/full/10,/0/default.jpg"
        );
    }

    // ---- the external validator -------------------------------------------

    /// Enough of an ALTO file for its format to be told.
    const ALTO_HEAD: &str = "<?xml version=\"1.0\"?><alto xmlns=\"http://www.loc.gov/standards/alto/ns-v4#\"></alto>";
    /// Enough of an hOCR file for its format to be told.
    const HOCR_HEAD: &str = "<html><body><div class=\"ocr_page\" title=\"bbox 0 0 100 100\"></div></body></html>";

    fn write_json(dir: &Path, name: &str, v: &Value) -> PathBuf {
        let p = dir.join(name);
        std::fs::write(&p, serde_json::to_string_pretty(v).unwrap()).unwrap();
        p
    }

    /// A varied catalogue for validation: every feature at least once.
    fn validation_samples(out: &Path) -> Vec<PathBuf> {
        let full = r#"
[metadata]
"dc.title" = "The Book of Hours"
"dc.contributor.author" = ["Anonymous", "Workshop of the Master"]
"dc.date.issued" = "1480"
"dc.description" = "A Flemish book of hours."
"dc.rights" = "Public domain"
"dc.rights.uri" = "https://creativecommons.org/publicdomain/mark/1.0/"
"dspace.iiif.enabled" = true
"iiif.viewing.hint" = "paged"
"iiif.canvas.naming" = "Folio"
"iiif.search.enabled" = true

[[bundles]]
name = "ORIGINAL"
metadata = { "iiif.label" = "Main images" }
  [[bundles.bitstreams]]
  file = "page-1.jpg"
  metadata = { "iiif.label" = "Cover", "iiif.toc" = "Front matter", "iiif.image.width" = 2000, "iiif.image.height" = 3000, "dc.description" = "Binding" }
  [[bundles.bitstreams]]
  file = "page-2.jpg"
  metadata = { "iiif.toc" = "Part I|||Calendar" }
  ocr = "page-2.alto.xml"
  [[bundles.bitstreams]]
  file = "page-3.jpg"
  ocr = "page-3.hocr"
  [[bundles.bitstreams]]
  file = "book.pdf"
  metadata = { "iiif.label" = "The whole book (PDF)" }
[[bundles]]
name = "PLATES"
  [[bundles.bitstreams]]
  file = "plates/plate 1.jpg"
  metadata = { "iiif.description" = "A miniature", "iiif.toc" = ["Miniatures", "Part I|||Hours of the Virgin"] }
"#;
        let plain = "[metadata]\n\"dspace.iiif.enabled\" = true\n[[bitstreams]]\nfile = \"a.jpg\"\n";
        let t = tree(&[
            ("items/book-of-hours/item.toml", full),
            ("items/book-of-hours/page-1.jpg", "x"),
            ("items/book-of-hours/page-2.jpg", "x"),
            ("items/book-of-hours/page-3.jpg", "x"),
            ("items/book-of-hours/page-2.alto.xml", ALTO_HEAD),
            ("items/book-of-hours/page-3.hocr", HOCR_HEAD),
            ("items/book-of-hours/book.pdf", "%PDF-1.4"),
            ("items/book-of-hours/plates/plate 1.jpg", "x"),
            ("items/plain/item.toml", plain),
            ("items/plain/a.jpg", "x"),
            ("items/off/item.toml", "[[bitstreams]]\nfile = \"a.jpg\"\n"),
            ("items/off/a.jpg", "x"),
        ]);
        let (cat, e) = Catalogue::load(&t.path().join("items"), t.path());
        assert!(e.is_empty(), "{e:?}");
        let dims = |_: &str| Some((1200u32, 1800u32));
        let md5 = |_: &Image| Some("9e107d9d372bb6826bd81d3542a419d6".to_string());
        let mut files = Vec::new();
        for cfg in [
            PresentationCfg {
                logo: "https://library.example.org/logo.png".into(),
                attribution: "Provided by the Tessera Library".into(),
                license_uri: "https://rightsstatements.org/vocab/NoC-US/1.0/".into(),
                metadata_bitstream: vec!["dc.description".into()],
                related_url: "https://repository.example.org/items/{item}".into(),
                ..Default::default()
            },
            PresentationCfg { canvas_default_width: Some(-1), canvas_default_height: Some(-1), ..Default::default() },
        ] {
            let n = files.len();
            let cx = Ctx { base: BASE, image_service_base: IMG, cfg: &cfg, dims: &dims, checksum: &md5 };
            for item in cat.items().iter().filter(|i| i.has_manifest()) {
                let m = manifest(item, &cx).unwrap();
                files.push(write_json(out, &format!("{n}-{}.json", item.id), &m));
            }
            files.push(write_json(out, &format!("{n}-collection.json"), &collection(&cat, &cx)));
        }
        files
    }

    #[test]
    fn manifests_pass_the_presentation_validator() {
        let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("../shared/tools/prezi_validate.py");
        let python = match std::env::var("TESSERA_PREZI_VALIDATOR") {
            Ok(p) if !p.is_empty() => p,
            _ => {
                if std::env::var("CI").as_deref() == Ok("true") {
                    panic!("CI=true but TESSERA_PREZI_VALIDATOR (a python with iiif-prezi and pyld) is not set");
                }
                println!(
                    "SKIPPED: set TESSERA_PREZI_VALIDATOR to a python with iiif-prezi and pyld to validate manifests"
                );
                return;
            }
        };
        assert!(script.is_file(), "validator script not found at {}", script.display());
        let out = tempfile::tempdir().unwrap();
        let files = validation_samples(out.path());
        assert!(files.len() >= 6);
        let script_text = std::fs::read_to_string(&script).unwrap();
        let mut cmd = Command::new(&python);
        if script_text.contains("search/1/context.json") {
            cmd.arg(&script);
        } else {
            // The script resolves JSON-LD contexts offline from a table that
            // lacks the Content Search 1 context (announced by search-enabled
            // manifests): run it with the terms of that context that
            // manifests use added to its table.
            let ctx_file = out.path().join("search_1.json");
            std::fs::write(&ctx_file, SEARCH_1_CONTEXT).unwrap();
            cmd.arg("-c").arg(WITH_SEARCH_CONTEXT).arg(&script).arg(&ctx_file);
        }
        let run = cmd.args(["--version", "2.1"]).args(&files).output().unwrap();
        let text = format!("{}{}", String::from_utf8_lossy(&run.stdout), String::from_utf8_lossy(&run.stderr));
        println!("{text}");
        assert!(run.status.success(), "validator failed:\n{text}");
        assert_eq!(text.matches("PASS ").count(), files.len(), "{text}");
    }

    /// The terms of the Content Search 1 JSON-LD context
    /// (http://iiif.io/api/search/1/context.json) that manifests and search
    /// responses use.
    const SEARCH_1_CONTEXT: &str = r#"{
  "@context": {
    "search": "http://iiif.io/api/search/1#",
    "ignored": {"@id": "search:ignored", "@container": "@set", "@type": "xsd:string"},
    "match": {"@id": "search:match"},
    "before": {"@id": "search:before"},
    "after": {"@id": "search:after"},
    "count": {"@id": "search:count"},
    "hits": {"@id": "search:hasHitList", "@container": "@list", "@type": "@id"},
    "terms": {"@id": "search:hasTermList", "@container": "@list", "@type": "@id"},
    "annotations": {"@id": "search:refines", "@container": "@set", "@type": "@id"},
    "selectors": {"@id": "search:hasSelector", "@container": "@set", "@type": "@id"}
  }
}"#;

    /// `python -c` program: args SCRIPT CONTEXT_FILE ARGS...; loads the
    /// validator script as a module, maps the search context to the file, runs it.
    const WITH_SEARCH_CONTEXT: &str = "import importlib.util, sys\n\
script, ctx = sys.argv[1], sys.argv[2]\n\
spec = importlib.util.spec_from_file_location('prezi_validate', script)\n\
mod = importlib.util.module_from_spec(spec)\n\
spec.loader.exec_module(mod)\n\
for scheme in ('http', 'https'):\n    mod.LOCAL[scheme + '://iiif.io/api/search/1/context.json'] = ctx\n\
sys.argv = [script] + sys.argv[3:]\n\
mod.main()\n";

    /// Writes the validation samples to $TESSERA_PREZI_DUMP (for looking at them by hand).
    #[test]
    fn dump_samples_when_asked() {
        if let Ok(dir) = std::env::var("TESSERA_PREZI_DUMP") {
            std::fs::create_dir_all(&dir).unwrap();
            for f in validation_samples(Path::new(&dir)) {
                println!("{}", f.display());
            }
        }
    }
}
