//! IIIF Presentation API 2.1.1 and 3.0: the `[presentation]` configuration, the
//! error type shared by the manifest builders, and the URL helpers. The item
//! catalogue on disk lives in [`catalogue`], the 2.1.1 JSON-LD builders
//! (manifest, sequence, canvas, collection) in [`manifest`], the 3.0 ones in
//! [`manifest3`]. Pure logic: no HTTP here;
//! the format is documented in `docs/ITEMS.md`.

pub mod catalogue;
pub mod indexes;
pub mod live;
pub mod manifest;
pub mod manifest3;
pub mod ocr;
pub mod search;

use std::collections::BTreeMap;
use std::path::PathBuf;

use percent_encoding::{utf8_percent_encode, AsciiSet, NON_ALPHANUMERIC};
use serde::Deserialize;

pub use catalogue::{Catalogue, CatalogueError, Item};
pub use manifest::Ctx;

/// The viewing hints an item (or `document_viewing_hint`) may give.
pub const VIEWING_HINTS: [&str; 3] = ["individuals", "paged", "continuous"];

/// Item ids that would clash with other routes under `{base}/iiif/`:
/// `/iiif/2/manifest` is an Image API 2 URL and `/iiif/3/...` an Image API 3
/// one (the default `server.prefix_v2` / `prefix_v3`); `collection` names the
/// collection. Items with these ids are refused at load.
pub const RESERVED_ITEM_IDS: [&str; 3] = ["2", "3", "collection"];

/// Canvas size used when nothing better is known (no `iiif.image.*`
/// metadata and the image could not be probed): DSpace's fallback.
pub const FALLBACK_CANVAS_SIZE: (u32, u32) = (2200, 1600);

/// The `[presentation]` section (DSpace `iiif.cfg` equivalents in
/// `docs/ITEMS.md`).
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PresentationCfg {
    /// Serve manifests at all (DSpace `iiif.enabled`).
    pub enabled: bool,
    /// Folder holding one sub-folder per item.
    pub catalogue_root: PathBuf,
    /// Image API base URL of the images; "" = Tessera itself.
    pub image_server_url: String,
    /// Viewing hint of items without `iiif.viewing.hint`.
    pub document_viewing_hint: String,
    /// Logo URL; "" = none.
    pub logo: String,
    /// Item fields shown as manifest `metadata` pairs.
    pub metadata_item: Vec<String>,
    /// Bitstream fields shown as canvas `metadata` pairs.
    pub metadata_bitstream: Vec<String>,
    /// Licence of items without `dc.rights.uri`; "" = none.
    pub license_uri: String,
    /// Attribution statement; "" = none.
    pub attribution: String,
    /// None: the first image's real size; Some(n > 0): n; Some(-1): each image's real size.
    pub canvas_default_width: Option<i64>,
    /// As `canvas_default_width`; both must be of the same kind.
    pub canvas_default_height: Option<i64>,
    /// Template of the search service `@id` (`{base}`, `{item}`); "" = `{base}/iiif/{item}/search`.
    pub search_service_url: String,
    /// Prefix of canvas labels: "{canvas_naming} {n}" for canvases without
    /// `iiif.label` or `iiif.canvas.naming`.
    pub canvas_naming: String,
    /// Template of the item's page in the repository (`related`), with
    /// `{item}` (and `{base}`); "" = none.
    pub related_url: String,
    /// Leave the bundle level out of the table of contents of items whose
    /// images come from several bundles.
    pub exclude_toc_bundle: bool,
    /// Show each image file's MD5 checksum in its canvas metadata (read once
    /// per file and kept; turn off for very large collections).
    pub canvas_checksum: bool,
    /// Metadata labels by key: a field name (`dc.title`) or one of
    /// [`manifest::CANVAS_FACT_KEYS`]; overrides the built-in English labels.
    pub labels: BTreeMap<String, String>,
    /// The Presentation version a manifest, collection or canvas URL of
    /// 2.1 answers when the request's `Accept` names no profile:
    /// [`VERSION_2`] or [`VERSION_3`].
    #[serde(default = "default_version", deserialize_with = "version_text")]
    pub default_version: String,
}

/// `presentation.default_version` for Presentation 2.1.1 (the default, as DSpace).
pub const VERSION_2: &str = "2.1.1";
/// `presentation.default_version` for Presentation 3.0.
pub const VERSION_3: &str = "3.0";

fn default_version() -> String {
    VERSION_2.to_string()
}

/// A version as text, also when an environment variable made a number of
/// it (`TESSERA_PRESENTATION__DEFAULT_VERSION=3.0`).
fn version_text<'de, D: serde::Deserializer<'de>>(d: D) -> Result<String, D::Error> {
    struct V;
    impl serde::de::Visitor<'_> for V {
        type Value = String;
        fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
            f.write_str("a version such as \"2.1.1\" or \"3.0\"")
        }
        fn visit_str<E: serde::de::Error>(self, v: &str) -> Result<String, E> {
            Ok(v.to_string())
        }
        fn visit_f64<E: serde::de::Error>(self, v: f64) -> Result<String, E> {
            Ok(format!("{v:?}"))
        }
        fn visit_i64<E: serde::de::Error>(self, v: i64) -> Result<String, E> {
            Ok(v.to_string())
        }
        fn visit_u64<E: serde::de::Error>(self, v: u64) -> Result<String, E> {
            Ok(v.to_string())
        }
    }
    d.deserialize_any(V)
}

impl Default for PresentationCfg {
    /// The values of the documented `[presentation]` block.
    fn default() -> Self {
        PresentationCfg {
            enabled: true,
            catalogue_root: PathBuf::from("samples/generated/items"),
            image_server_url: String::new(),
            document_viewing_hint: "individuals".to_string(),
            logo: String::new(),
            metadata_item: ["dc.title", "dc.contributor.author", "dc.date.issued", "dc.rights"]
                .iter()
                .map(|s| s.to_string())
                .collect(),
            metadata_bitstream: vec!["dc.description".to_string()],
            license_uri: String::new(),
            attribution: String::new(),
            canvas_default_width: None,
            canvas_default_height: None,
            search_service_url: DEFAULT_SEARCH_TEMPLATE.to_string(),
            canvas_naming: "Page".to_string(),
            related_url: String::new(),
            exclude_toc_bundle: false,
            canvas_checksum: true,
            labels: BTreeMap::new(),
            default_version: default_version(),
        }
    }
}

/// Search service template used when `search_service_url` is "".
pub const DEFAULT_SEARCH_TEMPLATE: &str = "{base}/iiif/{item}/search";

/// How canvases lacking `iiif.image.width` / `iiif.image.height` get a size.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum CanvasSizeRule {
    /// Both defaults absent: the first image's real size, for every canvas.
    FirstImage,
    /// Both defaults positive: this size.
    Fixed(u32, u32),
    /// Both defaults -1: each image's real size.
    EachImage,
}

impl PresentationCfg {
    /// Checks every key; the error names the key (`presentation.KEY`).
    pub fn validate(&self) -> Result<(), PresentationError> {
        if self.catalogue_root.as_os_str().is_empty() {
            return Err(cfg_err("catalogue_root", "must not be empty"));
        }
        if !VIEWING_HINTS.contains(&self.document_viewing_hint.as_str()) {
            return Err(cfg_err("document_viewing_hint", "must be \"individuals\", \"paged\" or \"continuous\""));
        }
        for (key, v) in [("image_server_url", &self.image_server_url), ("logo", &self.logo)] {
            if !v.is_empty() && !is_http_url(v) {
                return Err(cfg_err(key, "must be empty or an http:// or https:// URL"));
            }
        }
        if !self.license_uri.is_empty() && !has_uri_scheme(&self.license_uri) {
            return Err(cfg_err(
                "license_uri",
                "must be empty or an absolute URI (e.g. https://creativecommons.org/...)",
            ));
        }
        for (key, list) in [("metadata_item", &self.metadata_item), ("metadata_bitstream", &self.metadata_bitstream)] {
            for f in list.iter() {
                if !catalogue::is_field_name(f) {
                    return Err(cfg_err(
                        key,
                        &format!("{f:?} is not a metadata field name (schema.element or schema.element.qualifier)"),
                    ));
                }
            }
        }
        let t = &self.search_service_url;
        if !t.is_empty() {
            if !t.contains("{item}") {
                return Err(cfg_err("search_service_url", "must contain {item} (or be empty for the default)"));
            }
            if !(t.starts_with("{base}") || is_http_url(t)) {
                return Err(cfg_err("search_service_url", "must start with {base}, http:// or https://"));
            }
            if t.contains('?') || t.contains('#') {
                return Err(cfg_err(
                    "search_service_url",
                    "must not contain ? or # (viewers append ?q=… to the service id)",
                ));
            }
        }
        let r = &self.related_url;
        if !r.is_empty() && !(r.contains("{item}") && (r.starts_with("{base}") || is_http_url(r))) {
            return Err(cfg_err(
                "related_url",
                "must be empty or a URL template with {item}, starting with {base}, http:// or https://",
            ));
        }
        if self.canvas_naming.trim().is_empty() {
            return Err(cfg_err("canvas_naming", "must not be empty"));
        }
        for (key, label) in &self.labels {
            if !(catalogue::is_field_name(key) || manifest::CANVAS_FACT_KEYS.contains(&key.as_str())) {
                return Err(cfg_err(
                    "labels",
                    &format!(
                        "{key:?} is neither a metadata field name nor one of {}",
                        manifest::CANVAS_FACT_KEYS.join(", ")
                    ),
                ));
            }
            if label.trim().is_empty() {
                return Err(cfg_err("labels", &format!("the label of {key:?} is empty")));
            }
        }
        if ![VERSION_2, VERSION_3].contains(&self.default_version.as_str()) {
            return Err(cfg_err(
                "default_version",
                &format!("must be \"{VERSION_2}\" or \"{VERSION_3}\", not {:?}", self.default_version),
            ));
        }
        self.canvas_size_rule()?;
        Ok(())
    }

    /// Whether a bare manifest URL answers Presentation 3.0.
    pub fn defaults_to_v3(&self) -> bool {
        self.default_version == VERSION_3
    }

    /// The canvas size behaviour chosen by `canvas_default_width` / `_height`.
    pub fn canvas_size_rule(&self) -> Result<CanvasSizeRule, PresentationError> {
        const WHY: &str = "canvas_default_width and canvas_default_height must both be absent (first image's size), \
                           both -1 (each image's size) or both positive";
        match (self.canvas_default_width, self.canvas_default_height) {
            (None, None) => Ok(CanvasSizeRule::FirstImage),
            (Some(-1), Some(-1)) => Ok(CanvasSizeRule::EachImage),
            (Some(w), Some(h)) if w > 0 && h > 0 => match (u32::try_from(w), u32::try_from(h)) {
                (Ok(w), Ok(h)) => Ok(CanvasSizeRule::Fixed(w, h)),
                _ => Err(cfg_err("canvas_default_width", "is too large")),
            },
            (Some(_), _) => Err(cfg_err("canvas_default_width", WHY)),
            (None, Some(_)) => Err(cfg_err("canvas_default_height", WHY)),
        }
    }

    /// The Image API base for image services: `image_server_url` when set,
    /// else `base` + `prefix_v2` (Tessera itself). No trailing slash.
    pub fn image_service_base(&self, base: &str, prefix_v2: &str) -> String {
        if self.image_server_url.is_empty() {
            format!("{}{}", base.trim_end_matches('/'), prefix_v2.trim_end_matches('/'))
        } else {
            self.image_server_url.trim_end_matches('/').to_string()
        }
    }
}

/// Errors building Presentation resources (and configuration errors).
#[derive(Debug, thiserror::Error)]
pub enum PresentationError {
    /// The item exists but `dspace.iiif.enabled` is not true (→ 404).
    #[error("item {item:?} is not enabled for IIIF (dspace.iiif.enabled is not true)")]
    NotEnabled { item: String },
    /// The item is enabled but has no image to show (→ 404).
    #[error("item {item:?} has no IIIF images")]
    NoImages { item: String },
    /// Canvas index out of range (→ 404).
    #[error("item {item:?} has no canvas {index} (it has {count}, numbered from 0)")]
    NoSuchCanvas { item: String, index: usize, count: usize },
    /// A `[presentation]` key has a bad value.
    #[error("configuration: invalid value for key `presentation.{key}`: {why}")]
    Config { key: &'static str, why: String },
}

fn cfg_err(key: &'static str, why: &str) -> PresentationError {
    PresentationError::Config { key, why: why.to_string() }
}

fn is_http_url(s: &str) -> bool {
    (s.starts_with("http://") && s.len() > 7) || (s.starts_with("https://") && s.len() > 8)
}

fn has_uri_scheme(s: &str) -> bool {
    match s.split_once(':') {
        Some((scheme, rest)) => {
            !rest.is_empty()
                && scheme.chars().next().is_some_and(|c| c.is_ascii_alphabetic())
                && scheme.chars().all(|c| c.is_ascii_alphanumeric() || matches!(c, '+' | '-' | '.'))
        }
        None => false,
    }
}

/// Everything but RFC 3986 unreserved characters is escaped: `/` → `%2F`.
const SEGMENT: &AsciiSet = &NON_ALPHANUMERIC.remove(b'-').remove(b'.').remove(b'_').remove(b'~');

/// Percent-encodes one URL path segment (an item id or an image identifier).
pub fn encode_segment(s: &str) -> String {
    utf8_percent_encode(s, SEGMENT).to_string()
}

/// `{base}/iiif/{item}`: the prefix of every Presentation URL of an item.
pub fn item_base_url(base: &str, item_id: &str) -> String {
    format!("{}/iiif/{}", base.trim_end_matches('/'), encode_segment(item_id))
}

/// `{base}/iiif/{item}/manifest`.
pub fn manifest_url(base: &str, item_id: &str) -> String {
    format!("{}/manifest", item_base_url(base, item_id))
}

/// `{base}/iiif/collection`.
pub fn collection_url(base: &str) -> String {
    format!("{}/iiif/collection", base.trim_end_matches('/'))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn default_config_is_valid() {
        PresentationCfg::default().validate().unwrap();
        assert_eq!(PresentationCfg::default().canvas_size_rule().unwrap(), CanvasSizeRule::FirstImage);
    }

    #[test]
    fn documented_toml_block_parses_into_the_defaults() {
        let doc = include_str!("../../docs/ITEMS.md");
        let start = doc.find("```toml\n[presentation]").unwrap() + "```toml\n".len();
        let block = &doc[start..];
        let block = &block[..block.find("```").unwrap()];
        #[derive(Deserialize)]
        struct Wrap {
            presentation: PresentationCfg,
        }
        let w: Wrap = toml::from_str(block).unwrap();
        let d = PresentationCfg::default();
        w.presentation.validate().unwrap();
        assert_eq!(format!("{:?}", w.presentation), format!("{d:?}"));
    }

    #[test]
    fn unknown_config_keys_are_refused() {
        let e = toml::from_str::<PresentationCfg>(
            "enabled = true\ncatalogue_root = \"x\"\nimage_server_url = \"\"\ndocument_viewing_hint = \"paged\"\n\
             logo = \"\"\nmetadata_item = []\nmetadata_bitstream = []\nlicense_uri = \"\"\nattribution = \"\"\n\
             search_service_url = \"\"\ncanvas_default_widht = 3\n",
        )
        .unwrap_err();
        assert!(e.to_string().contains("canvas_default_widht"), "{e}");
    }

    #[test]
    fn canvas_default_sizes_must_agree_in_kind() {
        let mut c =
            PresentationCfg { canvas_default_width: Some(-1), canvas_default_height: Some(-1), ..Default::default() };
        assert_eq!(c.canvas_size_rule().unwrap(), CanvasSizeRule::EachImage);
        c.canvas_default_width = Some(2200);
        c.canvas_default_height = Some(1600);
        assert_eq!(c.canvas_size_rule().unwrap(), CanvasSizeRule::Fixed(2200, 1600));
        for (w, h) in
            [(Some(-1), None), (None, Some(5)), (Some(0), Some(0)), (Some(-1), Some(100)), (Some(-2), Some(-2))]
        {
            c.canvas_default_width = w;
            c.canvas_default_height = h;
            let e = c.validate().unwrap_err().to_string();
            assert!(e.contains("presentation.canvas_default_"), "{e}");
        }
    }

    #[test]
    fn bad_config_values_name_their_key() {
        let cases: Vec<(PresentationCfg, &str)> = vec![
            (PresentationCfg { document_viewing_hint: "book".into(), ..Default::default() }, "document_viewing_hint"),
            (PresentationCfg { logo: "logo.png".into(), ..Default::default() }, "logo"),
            (PresentationCfg { image_server_url: "ftp://x".into(), ..Default::default() }, "image_server_url"),
            (PresentationCfg { license_uri: "cc-by".into(), ..Default::default() }, "license_uri"),
            (PresentationCfg { metadata_item: vec!["title".into()], ..Default::default() }, "metadata_item"),
            (PresentationCfg { metadata_bitstream: vec!["dc..x".into()], ..Default::default() }, "metadata_bitstream"),
            (
                PresentationCfg { search_service_url: "{base}/search".into(), ..Default::default() },
                "search_service_url",
            ),
            (PresentationCfg { catalogue_root: PathBuf::new(), ..Default::default() }, "catalogue_root"),
            (
                PresentationCfg { search_service_url: "{base}/s/{item}?x=1".into(), ..Default::default() },
                "search_service_url",
            ),
            (PresentationCfg { related_url: "/items/{item}".into(), ..Default::default() }, "related_url"),
            (PresentationCfg { related_url: "https://repo.example.org/".into(), ..Default::default() }, "related_url"),
            (PresentationCfg { canvas_naming: " ".into(), ..Default::default() }, "canvas_naming"),
            (PresentationCfg { labels: [("title".into(), "Titre".into())].into(), ..Default::default() }, "labels"),
            (PresentationCfg { labels: [("dc.title".into(), "".into())].into(), ..Default::default() }, "labels"),
            (PresentationCfg { default_version: "3".into(), ..Default::default() }, "default_version"),
            (PresentationCfg { default_version: "2.1".into(), ..Default::default() }, "default_version"),
        ];
        for (c, key) in cases {
            let e = c.validate().unwrap_err().to_string();
            assert!(e.contains(&format!("presentation.{key}")), "{e}");
        }
    }

    #[test]
    fn image_service_base_is_tessera_unless_configured() {
        let mut c = PresentationCfg::default();
        assert_eq!(c.image_service_base("http://h:1/", "/iiif/2"), "http://h:1/iiif/2");
        c.image_server_url = "https://img.example.org/iiif/2/".into();
        assert_eq!(c.image_service_base("http://h:1", "/iiif/2"), "https://img.example.org/iiif/2");
    }

    #[test]
    fn segments_are_percent_encoded_slashes_included() {
        assert_eq!(encode_segment("items/book of hours/p-1.jpg"), "items%2Fbook%20of%20hours%2Fp-1.jpg");
        assert_eq!(encode_segment("a~b_c.d"), "a~b_c.d");
        assert_eq!(encode_segment("é?#%"), "%C3%A9%3F%23%25");
        assert_eq!(manifest_url("http://h/", "my book"), "http://h/iiif/my%20book/manifest");
        assert_eq!(collection_url("http://h"), "http://h/iiif/collection");
    }
}
