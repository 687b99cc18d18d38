//! Presentation API 2.1.1 JSON-LD for catalogue items: manifest, sequence,
//! canvas and the collection of enabled items. Pure functions of an
//! [`Item`], the `[presentation]` configuration and a size-probing callback;
//! owns the URL layout under `{base}/iiif/`, canvas naming and sizing, the
//! table of contents as `sc:Range`s and the search service link.
//!
//! URLs: `{base}/iiif/{item}/manifest`, `/sequence/default`, `/canvas/{n}`
//! (n counts from 0), `/annotation/{n}`, `/range/r0` (the top range) and
//! `/range/r0-{i}-{j}…` (nested ranges); `{base}/iiif/collection`. Item ids and
//! image identifiers are percent-encoded as one path segment (`/` → `%2F`).

use std::cell::OnceCell;

use serde_json::{json, Map, Value};

use super::catalogue::{Catalogue, Image, Item, Metadata};
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
/// `@context` of the Search API 0 service.
pub const SEARCH_CONTEXT: &str = "http://iiif.io/api/search/0/context.json";
/// Profile of the Search API 0 service.
pub const SEARCH_PROFILE: &str = "http://iiif.io/api/search/0/search";
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
    let pairs = metadata_pairs(&item.metadata, &ctx.cfg.metadata_item);
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

/// English labels for common Dublin Core fields; others show their name.
pub fn field_label(field: &str) -> &str {
    match field {
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
fn metadata_pairs(meta: &Metadata, fields: &[String]) -> Vec<Value> {
    fields
        .iter()
        .filter_map(|f| {
            let v = meta.values(f);
            (!v.is_empty()).then(|| json!({"label": field_label(f), "value": one_or_many(v)}))
        })
        .collect()
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
        match &img.canvas_naming {
            Some(prefix) => format!("{prefix} {}", n + 1),
            None => img.file_name.clone(),
        }
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
        let pairs = metadata_pairs(&img.metadata, &self.ctx.cfg.metadata_bitstream);
        if !pairs.is_empty() {
            c.insert("metadata".into(), Value::Array(pairs));
        }
        c.insert("thumbnail".into(), self.thumbnail(img, w, h));
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
            if img.toc.is_empty() {
                nodes[0].canvases.push(n);
                continue;
            }
            for path in &img.toc {
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
        json!({
            "@context": SEARCH_CONTEXT,
            "@id": id,
            "profile": SEARCH_PROFILE,
            "label": "Search within this item",
        })
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

    fn ctx<'a>(cfg: &'a PresentationCfg, dims: &'a dyn Fn(&str) -> Option<(u32, u32)>) -> Ctx<'a> {
        Ctx { base: BASE, image_service_base: IMG, cfg, dims }
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
    fn canvas_labels_use_iiif_label_then_naming_prefix_then_file_name() {
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
        assert_eq!(labels, vec!["p0.jpg", "p1.jpg"]);
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
            json!({"@context": SEARCH_CONTEXT, "@id": "http://127.0.0.1:8182/iiif/book/search", "profile": SEARCH_PROFILE,
                   "label": "Search within this item"})
        );
        let cfg = PresentationCfg {
            search_service_url: "https://search.example.org/{item}?base={base}".into(),
            ..Default::default()
        };
        let m = manifest(c.item("book").unwrap(), &ctx(&cfg, &no_dims)).unwrap();
        assert_eq!(m["service"]["@id"], "https://search.example.org/book?base=http://127.0.0.1:8182");
        let (_t, c) = book("\"iiif.search.enabled\" = false", 1, |_| String::new());
        let m = manifest(c.item("book").unwrap(), &ctx(&PresentationCfg::default(), &no_dims)).unwrap();
        assert!(m.get("service").is_none());
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
        assert_eq!(canvases(&m)[0]["metadata"], json!([{"label": "Description", "value": "Recto"}]));
        assert_eq!(canvases(&m)[0]["description"], "Gilded");
        assert!(canvases(&m)[1].get("metadata").is_none());
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
        let m =
            manifest(item, &Ctx { base: "http://h/", image_service_base: "http://h/iiif/2/", cfg: &cfg, dims: &dims })
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
  [[bundles.bitstreams]]
  file = "page-3.jpg"
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
            ("items/book-of-hours/plates/plate 1.jpg", "x"),
            ("items/plain/item.toml", plain),
            ("items/plain/a.jpg", "x"),
            ("items/off/item.toml", "[[bitstreams]]\nfile = \"a.jpg\"\n"),
            ("items/off/a.jpg", "x"),
        ]);
        let (cat, e) = Catalogue::load(&t.path().join("items"), t.path());
        assert!(e.is_empty(), "{e:?}");
        let dims = |_: &str| Some((1200u32, 1800u32));
        let mut files = Vec::new();
        for cfg in [
            PresentationCfg {
                logo: "https://library.example.org/logo.png".into(),
                attribution: "Provided by the Tessera Library".into(),
                license_uri: "https://rightsstatements.org/vocab/NoC-US/1.0/".into(),
                metadata_bitstream: vec!["dc.description".into()],
                ..Default::default()
            },
            PresentationCfg { canvas_default_width: Some(-1), canvas_default_height: Some(-1), ..Default::default() },
        ] {
            let n = files.len();
            let cx = Ctx { base: BASE, image_service_base: IMG, cfg: &cfg, dims: &dims };
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
        if script_text.contains("search/0/context.json") {
            cmd.arg(&script);
        } else {
            // The script resolves JSON-LD contexts offline from a table that
            // lacks the Search API 0 context (announced by search-enabled
            // manifests): run it with that context (IIIF/api
            // source/api/search/0/context.json) added to its table.
            let ctx_file = out.path().join("search_0.json");
            std::fs::write(&ctx_file, SEARCH_0_CONTEXT).unwrap();
            cmd.arg("-c").arg(WITH_SEARCH_CONTEXT).arg(&script).arg(&ctx_file);
        }
        let run = cmd.args(["--version", "2.1"]).args(&files).output().unwrap();
        let text = format!("{}{}", String::from_utf8_lossy(&run.stdout), String::from_utf8_lossy(&run.stderr));
        println!("{text}");
        assert!(run.status.success(), "validator failed:\n{text}");
        assert_eq!(text.matches("PASS ").count(), files.len(), "{text}");
    }

    /// The Search API 0 JSON-LD context, as published at
    /// http://iiif.io/api/search/0/context.json.
    const SEARCH_0_CONTEXT: &str = r#"{
  "@context": {
    "search": "http://iiif.io/api/search/0#",
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
for scheme in ('http', 'https'):\n    mod.LOCAL[scheme + '://iiif.io/api/search/0/context.json'] = ctx\n\
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
