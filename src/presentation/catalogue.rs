//! The item catalogue on disk: one folder per item under a catalogue root,
//! each holding `item.toml` (or `item.json`) with Dublin Core and DSpace IIIF
//! metadata, optional bundles and an ordered list of image bitstreams; an
//! optional `catalogue.toml` at the root gives item-level defaults. Owns
//! parsing, field validation, item-id safety, the inheritance rules
//! (catalogue → item → bundle → bitstream) and the Image API identifier of
//! every bitstream. A bad item is reported and skipped; loading never panics.
//! The format is documented in `docs/ITEMS.md`.

use std::collections::BTreeMap;
use std::fmt;
use std::fs;
use std::io;
use std::path::{Component, Path, PathBuf};

use serde::de::{self, Deserializer, MapAccess, SeqAccess, Visitor};
use serde::Deserialize;

use super::ocr::{self, OcrFormat};
use super::{RESERVED_ITEM_IDS, VIEWING_HINTS};

/// The item file, TOML form.
pub const ITEM_TOML: &str = "item.toml";
/// The item file, JSON form.
pub const ITEM_JSON: &str = "item.json";
/// Optional catalogue-wide defaults at the catalogue root.
pub const CATALOGUE_TOML: &str = "catalogue.toml";
/// Item files larger than this are refused.
pub const MAX_ITEM_FILE_BYTES: u64 = 4 << 20;
/// Separator of table-of-contents levels in `iiif.toc`.
pub const TOC_SEPARATOR: &str = "|||";

/// `dspace.iiif.enabled`.
pub const F_ENABLED: &str = "dspace.iiif.enabled";
/// `iiif.label`.
pub const F_LABEL: &str = "iiif.label";
/// `iiif.description`.
pub const F_DESCRIPTION: &str = "iiif.description";
/// `iiif.canvas.naming`.
pub const F_CANVAS_NAMING: &str = "iiif.canvas.naming";
/// `iiif.viewing.hint`.
pub const F_VIEWING_HINT: &str = "iiif.viewing.hint";
/// `iiif.image.width`.
pub const F_WIDTH: &str = "iiif.image.width";
/// `iiif.image.height`.
pub const F_HEIGHT: &str = "iiif.image.height";
/// `iiif.toc`.
pub const F_TOC: &str = "iiif.toc";
/// `iiif.search.enabled`.
pub const F_SEARCH: &str = "iiif.search.enabled";

const KNOWN_IIIF_FIELDS: [&str; 9] =
    [F_ENABLED, F_LABEL, F_DESCRIPTION, F_CANVAS_NAMING, F_VIEWING_HINT, F_WIDTH, F_HEIGHT, F_TOC, F_SEARCH];

/// Bundles whose files never become canvases or renderings, whatever their
/// type (compared without case): DSpace's licence, metadata, thumbnail,
/// extracted-text and other-content bundles.
pub const NON_IIIF_BUNDLES: [&str; 7] =
    ["LICENSE", "METADATA", "CC-LICENSE", "THUMBNAIL", "BRANDED_PREVIEW", "TEXT", "OtherContent"];

/// How many leading bytes of an OCR file are read at load to tell its format.
pub const OCR_SNIFF_BYTES: usize = 64 << 10;

/// The key under which the `toml` crate hands a TOML date-time to serde.
const TOML_DATETIME_KEY: &str = "$__toml_private_datetime";

// ---------------------------------------------------------------------------
// Metadata values

/// One metadata value: a string, a number, a boolean or a list of strings.
#[derive(Clone, Debug, PartialEq)]
pub enum MetaValue {
    Text(String),
    Integer(i64),
    Float(f64),
    Bool(bool),
    List(Vec<String>),
}

impl MetaValue {
    /// Every value as text (a list gives its entries; blank ones are dropped).
    pub fn values(&self) -> Vec<String> {
        let all = match self {
            MetaValue::Text(s) => vec![s.clone()],
            MetaValue::Integer(i) => vec![i.to_string()],
            MetaValue::Float(f) => vec![f.to_string()],
            MetaValue::Bool(b) => vec![b.to_string()],
            MetaValue::List(l) => l.clone(),
        };
        all.into_iter().map(|s| s.trim().to_string()).filter(|s| !s.is_empty()).collect()
    }

    /// The first non-blank value as text.
    pub fn first(&self) -> Option<String> {
        self.values().into_iter().next()
    }

    fn as_bool(&self) -> Option<bool> {
        match self {
            MetaValue::Bool(b) => Some(*b),
            MetaValue::Text(s) => match s.trim().to_ascii_lowercase().as_str() {
                "true" | "yes" => Some(true),
                "false" | "no" => Some(false),
                _ => None,
            },
            _ => None,
        }
    }

    fn as_dimension(&self) -> Option<u32> {
        match self {
            MetaValue::Integer(i) => u32::try_from(*i).ok().filter(|v| *v > 0),
            MetaValue::Text(s) => s.trim().parse::<u32>().ok().filter(|v| *v > 0),
            _ => None,
        }
    }

    /// A single textual value (numbers are accepted as their text).
    fn as_single_text(&self) -> Option<String> {
        match self {
            MetaValue::List(_) | MetaValue::Bool(_) => None,
            other => other.first(),
        }
    }

    /// The value as shown in error messages.
    fn describe(&self) -> String {
        match self {
            MetaValue::Text(s) => format!("{s:?}"),
            MetaValue::Integer(i) => i.to_string(),
            MetaValue::Float(f) => f.to_string(),
            MetaValue::Bool(b) => b.to_string(),
            MetaValue::List(l) => format!("a list of {}", l.len()),
        }
    }
}

impl<'de> Deserialize<'de> for MetaValue {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        d.deserialize_any(MetaVisitor { in_list: false })
    }
}

struct MetaVisitor {
    in_list: bool,
}

impl<'de> Visitor<'de> for MetaVisitor {
    type Value = MetaValue;

    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        if self.in_list {
            f.write_str("a list entry: a string (or a number, true/false, a date)")
        } else {
            f.write_str("a metadata value: a string, a number, true/false or a list of strings")
        }
    }
    fn visit_bool<E: de::Error>(self, v: bool) -> Result<MetaValue, E> {
        Ok(MetaValue::Bool(v))
    }
    fn visit_i64<E: de::Error>(self, v: i64) -> Result<MetaValue, E> {
        Ok(MetaValue::Integer(v))
    }
    fn visit_u64<E: de::Error>(self, v: u64) -> Result<MetaValue, E> {
        match i64::try_from(v) {
            Ok(i) => Ok(MetaValue::Integer(i)),
            Err(_) => Ok(MetaValue::Text(v.to_string())),
        }
    }
    fn visit_f64<E: de::Error>(self, v: f64) -> Result<MetaValue, E> {
        Ok(MetaValue::Float(v))
    }
    fn visit_str<E: de::Error>(self, v: &str) -> Result<MetaValue, E> {
        Ok(MetaValue::Text(v.to_string()))
    }
    fn visit_string<E: de::Error>(self, v: String) -> Result<MetaValue, E> {
        Ok(MetaValue::Text(v))
    }
    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<MetaValue, A::Error> {
        if self.in_list {
            return Err(de::Error::custom("a list inside a list is not a metadata value"));
        }
        let mut out = Vec::new();
        while let Some(ListEntry(v)) = seq.next_element::<ListEntry>()? {
            out.push(v);
        }
        Ok(MetaValue::List(out))
    }
    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<MetaValue, A::Error> {
        // A TOML date-time (`"dc.date.issued" = 1480-03-01`, unquoted) reaches
        // serde as a one-entry map; keep it as its text.
        let key: Option<String> = map.next_key()?;
        if key.as_deref() == Some(TOML_DATETIME_KEY) {
            let text: String = map.next_value()?;
            return Ok(MetaValue::Text(text));
        }
        Err(de::Error::custom(
            "a table is not a metadata value (expected a string, a number, true/false or a list of strings)",
        ))
    }
}

struct ListEntry(String);

impl<'de> Deserialize<'de> for ListEntry {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        match d.deserialize_any(MetaVisitor { in_list: true })? {
            MetaValue::List(_) => Err(de::Error::custom("a list inside a list is not a metadata value")),
            v => Ok(ListEntry(v.values().into_iter().next().unwrap_or_default())),
        }
    }
}

/// The metadata of one level (catalogue defaults, item, bundle or
/// bitstream): field name → value.
#[derive(Clone, Debug, Default, PartialEq, Deserialize)]
#[serde(transparent)]
pub struct Metadata(BTreeMap<String, MetaValue>);

impl Metadata {
    /// The raw value of `field`.
    pub fn get(&self, field: &str) -> Option<&MetaValue> {
        self.0.get(field)
    }
    /// Every non-blank value of `field` as text (empty when absent).
    pub fn values(&self, field: &str) -> Vec<String> {
        self.0.get(field).map(MetaValue::values).unwrap_or_default()
    }
    /// The first non-blank value of `field`.
    pub fn first(&self, field: &str) -> Option<String> {
        self.0.get(field).and_then(MetaValue::first)
    }
    /// All fields, sorted by name.
    pub fn iter(&self) -> impl Iterator<Item = (&str, &MetaValue)> {
        self.0.iter().map(|(k, v)| (k.as_str(), v))
    }
    /// Sets a field (for building items in code).
    pub fn insert(&mut self, field: &str, value: MetaValue) {
        self.0.insert(field.to_string(), value);
    }
    fn text(&self, field: &str) -> Option<String> {
        self.0.get(field).and_then(MetaValue::as_single_text)
    }
    fn flag(&self, field: &str) -> Option<bool> {
        self.0.get(field).and_then(MetaValue::as_bool)
    }
}

/// True for `schema.element` or `schema.element.qualifier` (letters, digits,
/// `_` and `-` in each part).
pub fn is_field_name(s: &str) -> bool {
    let parts: Vec<&str> = s.split('.').collect();
    (2..=3).contains(&parts.len())
        && parts.iter().all(|p| !p.is_empty() && p.chars().all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-'))
}

// ---------------------------------------------------------------------------
// Files as written by the librarian

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct ItemFile {
    #[serde(default)]
    metadata: Metadata,
    #[serde(default)]
    bundles: Vec<BundleFile>,
    #[serde(default)]
    bitstreams: Vec<BitstreamFile>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct BundleFile {
    #[serde(default = "original")]
    name: String,
    #[serde(default)]
    metadata: Metadata,
    #[serde(default)]
    bitstreams: Vec<BitstreamFile>,
}

fn original() -> String {
    "ORIGINAL".to_string()
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct BitstreamFile {
    file: String,
    /// The page's OCR (ALTO, hOCR or MiniOCR), relative to the item folder.
    #[serde(default)]
    ocr: Option<String>,
    #[serde(default)]
    metadata: Metadata,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct CatalogueFile {
    label: Option<String>,
    description: Option<String>,
    #[serde(default)]
    metadata: Metadata,
}

// ---------------------------------------------------------------------------
// The loaded catalogue

/// A bundle as written (its bitstreams in file order, included or not).
#[derive(Clone, Debug)]
pub struct Bundle {
    pub name: String,
    pub metadata: Metadata,
    pub bitstreams: Vec<Bitstream>,
}

/// A bitstream as written, with its Image API identifier.
#[derive(Clone, Debug)]
pub struct Bitstream {
    /// Path relative to the item folder, `/`-separated.
    pub file: String,
    /// Image API identifier: the path relative to the image root.
    pub identifier: String,
    /// MIME type, from the file name's extension ([`mime_type`]).
    pub mime: String,
    /// Size in bytes when the catalogue was loaded.
    pub bytes: u64,
    pub metadata: Metadata,
}

/// A page's OCR file.
#[derive(Clone, Debug)]
pub struct OcrFile {
    /// Path relative to the item folder, `/`-separated.
    pub file: String,
    /// The file on disk.
    pub path: PathBuf,
    /// Its format, told by content when the catalogue loaded (None: not
    /// recognised in its first [`OCR_SNIFF_BYTES`]).
    pub format: Option<OcrFormat>,
}

/// A file of the item that is not an image (a PDF, an EPUB, a text), listed
/// in the manifest's `rendering` and never turned into a canvas.
#[derive(Clone, Debug)]
pub struct Rendering {
    /// Path relative to the item folder, `/`-separated.
    pub file: String,
    /// `iiif.label`, else the file name.
    pub label: String,
    /// MIME type, from the extension.
    pub mime: String,
}

/// One image of an item's manifest (one canvas), with the inherited
/// settings resolved. Bitstreams set (or in a bundle set)
/// `dspace.iiif.enabled = false` are not images.
#[derive(Clone, Debug)]
pub struct Image {
    /// Image API identifier (not escaped), e.g. `items/book/page-1.jpg`.
    pub identifier: String,
    /// Path relative to the item folder, `/`-separated.
    pub file: String,
    /// The file on disk.
    pub path: PathBuf,
    /// The file name (last part of the path).
    pub file_name: String,
    /// MIME type, from the extension (always `image/…`).
    pub mime: String,
    /// Size in bytes when the catalogue was loaded.
    pub bytes: u64,
    /// Index of the bundle in [`Item::bundles`].
    pub bundle: usize,
    /// The bitstream's own `iiif.label`.
    pub label: Option<String>,
    /// The bitstream's own `iiif.description`.
    pub description: Option<String>,
    /// `iiif.canvas.naming` (bitstream, else bundle, else item).
    pub canvas_naming: Option<String>,
    /// `iiif.image.width` × `iiif.image.height` (bitstream, else bundle, else item).
    pub size: Option<(u32, u32)>,
    /// Table-of-contents positions: each a path of range labels, outermost
    /// first, including the bundle level when several bundles hold images.
    pub toc: Vec<Vec<String>>,
    /// The same positions without the bundle level (for
    /// `presentation.exclude_toc_bundle`).
    pub toc_without_bundle: Vec<Vec<String>>,
    /// The bitstream's own metadata (for `metadata_bitstream`).
    pub metadata: Metadata,
    /// The page's OCR file (ALTO, hOCR or MiniOCR), if any: a path under the
    /// item folder, checked to exist when the catalogue loads.
    pub ocr: Option<OcrFile>,
}

/// One item of the catalogue.
#[derive(Clone, Debug)]
pub struct Item {
    /// The folder name: the `{item}` of the Presentation URLs.
    pub id: String,
    /// The item folder.
    pub dir: PathBuf,
    /// The item file read (`item.toml` or `item.json`).
    pub source: PathBuf,
    /// Item-level metadata, catalogue defaults filled in.
    pub metadata: Metadata,
    /// Bundles as written (bitstreams listed without bundles form one
    /// bundle named ORIGINAL).
    pub bundles: Vec<Bundle>,
    /// Effective `dspace.iiif.enabled` of the item (absent = false).
    pub enabled: bool,
    /// The item's `iiif.viewing.hint`, if any (lower case).
    pub viewing_hint: Option<String>,
    /// Effective `iiif.search.enabled` (absent = false).
    pub search_enabled: bool,
    /// The canvases, in order: the `image/*` bitstreams of the bundles that
    /// are not in [`NON_IIIF_BUNDLES`], unless disabled.
    pub images: Vec<Image>,
    /// The other files of those bundles (PDFs and the like), in order.
    pub renderings: Vec<Rendering>,
}

impl Item {
    /// `iiif.label`, else the first `dc.title`, else the id.
    pub fn label(&self) -> String {
        self.metadata.text(F_LABEL).or_else(|| self.metadata.first("dc.title")).unwrap_or_else(|| self.id.clone())
    }

    /// Enabled and with at least one image: gets a manifest.
    pub fn has_manifest(&self) -> bool {
        self.enabled && !self.images.is_empty()
    }
}

/// The catalogue's folder under the image root when none is configured
/// (`serve --images DIR` puts it at `DIR/items`, as the samples have it).
pub const CONVENTIONAL_FOLDER: &str = "items";

/// The items of a catalogue root, sorted by id.
#[derive(Clone, Debug, Default)]
pub struct Catalogue {
    root: PathBuf,
    label: Option<String>,
    description: Option<String>,
    items: Vec<Item>,
}

/// A problem found while loading; the item concerned (if any) is skipped.
#[derive(Debug, thiserror::Error)]
pub enum CatalogueError {
    /// The catalogue root cannot be read (nothing is loaded).
    #[error("catalogue root {}: {source}", path.display())]
    Root {
        path: PathBuf,
        #[source]
        source: io::Error,
    },
    /// The catalogue root is not inside the image root (nothing is loaded).
    #[error(
        "catalogue root {} is not inside the image root {}: images could not be served",
        catalogue.display(),
        image_root.display()
    )]
    OutsideImageRoot { catalogue: PathBuf, image_root: PathBuf },
    /// `catalogue.toml` is unreadable or invalid (loading goes on without defaults).
    #[error("{}: {message}; loading items without catalogue defaults", path.display())]
    Defaults { path: PathBuf, message: String },
    /// A folder whose name is not a safe item id.
    #[error("{}: not a usable item id ({why}); skipped", path.display())]
    UnsafeId { path: PathBuf, why: &'static str },
    /// The item file cannot be read.
    #[error("item {item}: {}: {source}; skipped", path.display())]
    Io {
        item: String,
        path: PathBuf,
        #[source]
        source: io::Error,
    },
    /// The item file is not valid TOML/JSON for the format.
    #[error("item {item}: {}: {message}; skipped", path.display())]
    Parse { item: String, path: PathBuf, message: String },
    /// The item file parses but breaks a rule of the format.
    #[error("item {item}: {message}; skipped")]
    Invalid { item: String, message: String },
}

impl CatalogueError {
    /// The id of the item skipped, if the error concerns one.
    pub fn item_id(&self) -> Option<&str> {
        match self {
            CatalogueError::Io { item, .. }
            | CatalogueError::Parse { item, .. }
            | CatalogueError::Invalid { item, .. } => Some(item),
            _ => None,
        }
    }
}

/// Checks that `id` is a safe item folder name; the reason otherwise.
pub fn check_item_id(id: &str) -> Result<(), &'static str> {
    if id.is_empty() {
        return Err("empty name");
    }
    if id.starts_with('.') {
        return Err("hidden or relative name (starts with a dot)");
    }
    if id.contains("..") {
        return Err("contains ..");
    }
    if id.contains('/') || id.contains('\\') {
        return Err("contains a slash");
    }
    if id.chars().any(char::is_control) {
        return Err("contains a control character");
    }
    if id.trim() != id {
        return Err("starts or ends with white space");
    }
    if id.len() > 200 {
        return Err("longer than 200 bytes");
    }
    if RESERVED_ITEM_IDS.contains(&id) {
        return Err("reserved: it would clash with /iiif/2, /iiif/3 or /iiif/collection");
    }
    Ok(())
}

impl Catalogue {
    /// Loads every item folder under `catalogue_root`. Image identifiers are
    /// paths relative to `image_root`, which must contain the catalogue.
    /// Bad items are reported in the error list and skipped.
    pub fn load(catalogue_root: &Path, image_root: &Path) -> (Catalogue, Vec<CatalogueError>) {
        let mut errors = Vec::new();
        let mut cat = Catalogue { root: catalogue_root.to_path_buf(), ..Default::default() };
        let entries = match fs::read_dir(catalogue_root) {
            Ok(e) => e,
            Err(source) => {
                errors.push(CatalogueError::Root { path: catalogue_root.to_path_buf(), source });
                return (cat, errors);
            }
        };
        let prefix = match relative_prefix(catalogue_root, image_root) {
            Ok(p) => p,
            Err(e) => {
                errors.push(e);
                return (cat, errors);
            }
        };
        let defaults = match read_catalogue_file(&catalogue_root.join(CATALOGUE_TOML)) {
            Ok(Some(c)) => c,
            Ok(None) => CatalogueFile::default(),
            Err(e) => {
                errors.push(e);
                CatalogueFile::default()
            }
        };
        cat.label = defaults.label.clone().filter(|s| !s.trim().is_empty());
        cat.description = defaults.description.clone().filter(|s| !s.trim().is_empty());

        let mut dirs: Vec<(PathBuf, Option<String>)> = Vec::new();
        for entry in entries {
            let entry = match entry {
                Ok(e) => e,
                Err(source) => {
                    errors.push(CatalogueError::Root { path: catalogue_root.to_path_buf(), source });
                    continue;
                }
            };
            let path = entry.path();
            // Plain files (catalogue.toml, READMEs, .DS_Store) are not items.
            if !fs::metadata(&path).map(|m| m.is_dir()).unwrap_or(false) {
                continue;
            }
            dirs.push((path, entry.file_name().to_str().map(str::to_string)));
        }
        dirs.sort();
        for (path, name) in dirs {
            let Some(id) = name else {
                errors.push(CatalogueError::UnsafeId { path, why: "not valid UTF-8" });
                continue;
            };
            if let Err(why) = check_item_id(&id) {
                errors.push(CatalogueError::UnsafeId { path, why });
                continue;
            }
            match load_item(&path, &id, &prefix, &defaults.metadata) {
                Ok(item) => cat.items.push(item),
                Err(e) => errors.push(e),
            }
        }
        cat.items.sort_by(|a, b| a.id.cmp(&b.id));
        (cat, errors)
    }

    /// An empty catalogue (presentation disabled, or for tests).
    pub fn empty(root: &Path) -> Catalogue {
        Catalogue { root: root.to_path_buf(), ..Default::default() }
    }

    /// All items loaded, sorted by id (enabled or not).
    pub fn items(&self) -> &[Item] {
        &self.items
    }

    /// The item with this id (None for unknown or unsafe ids).
    pub fn item(&self, id: &str) -> Option<&Item> {
        check_item_id(id).ok()?;
        self.items.binary_search_by(|i| i.id.as_str().cmp(id)).ok().map(|n| &self.items[n])
    }

    /// The catalogue root it was loaded from.
    pub fn root(&self) -> &Path {
        &self.root
    }

    /// `label` from `catalogue.toml`.
    pub fn label(&self) -> Option<&str> {
        self.label.as_deref()
    }

    /// `description` from `catalogue.toml`.
    pub fn description(&self) -> Option<&str> {
        self.description.as_deref()
    }
}

/// The catalogue root relative to the image root, `/`-separated ("" when
/// they are the same folder).
fn relative_prefix(catalogue_root: &Path, image_root: &Path) -> Result<String, CatalogueError> {
    let outside = || CatalogueError::OutsideImageRoot {
        catalogue: catalogue_root.to_path_buf(),
        image_root: image_root.to_path_buf(),
    };
    let rel = match lexical_absolute(catalogue_root).strip_prefix(lexical_absolute(image_root)) {
        Ok(rel) => rel.to_path_buf(),
        Err(_) => {
            // Perhaps a symlink or a different spelling of the same folders.
            let c = fs::canonicalize(catalogue_root)
                .map_err(|source| CatalogueError::Root { path: catalogue_root.to_path_buf(), source })?;
            let i = fs::canonicalize(image_root).map_err(|_| outside())?;
            c.strip_prefix(&i).map_err(|_| outside())?.to_path_buf()
        }
    };
    let mut parts = Vec::new();
    for comp in rel.components() {
        match comp {
            Component::Normal(s) => parts.push(s.to_str().ok_or_else(outside)?.to_string()),
            _ => return Err(outside()),
        }
    }
    Ok(parts.join("/"))
}

fn lexical_absolute(p: &Path) -> PathBuf {
    let joined = if p.is_absolute() {
        p.to_path_buf()
    } else {
        std::env::current_dir().map(|d| d.join(p)).unwrap_or_else(|_| p.to_path_buf())
    };
    let mut out = PathBuf::new();
    for comp in joined.components() {
        match comp {
            Component::CurDir => {}
            Component::ParentDir => {
                out.pop();
            }
            other => out.push(other.as_os_str()),
        }
    }
    out
}

fn read_catalogue_file(path: &Path) -> Result<Option<CatalogueFile>, CatalogueError> {
    if !path.exists() {
        return Ok(None);
    }
    let bad = |message: String| CatalogueError::Defaults { path: path.to_path_buf(), message };
    let text = read_limited(path).map_err(|e| bad(e.to_string()))?;
    let file: CatalogueFile = toml::from_str(&text).map_err(|e| bad(toml_error(&text, &e)))?;
    check_metadata(&file.metadata, Level::Catalogue).map_err(|m| bad(format!("[metadata]: {m}")))?;
    Ok(Some(file))
}

fn read_limited(path: &Path) -> io::Result<String> {
    let len = fs::metadata(path)?.len();
    if len > MAX_ITEM_FILE_BYTES {
        return Err(io::Error::new(
            io::ErrorKind::InvalidData,
            format!("file is {len} bytes, more than the {MAX_ITEM_FILE_BYTES} allowed"),
        ));
    }
    fs::read_to_string(path)
}

/// A TOML error as one log line: "line L, column C: message".
fn toml_error(text: &str, e: &toml::de::Error) -> String {
    let message = e.message().trim().replace('\n', "; ");
    match e.span() {
        Some(span) => {
            let before = text.get(..span.start).unwrap_or(text);
            let line = before.matches('\n').count() + 1;
            let column = before.rsplit('\n').next().map_or(0, |l| l.chars().count()) + 1;
            format!("line {line}, column {column}: {message}")
        }
        None => message,
    }
}

fn load_item(dir: &Path, id: &str, prefix: &str, defaults: &Metadata) -> Result<Item, CatalogueError> {
    let invalid = |message: String| CatalogueError::Invalid { item: id.to_string(), message };
    let toml_path = dir.join(ITEM_TOML);
    let json_path = dir.join(ITEM_JSON);
    let (path, is_toml) = match (toml_path.is_file(), json_path.is_file()) {
        (true, true) => return Err(invalid(format!("both {ITEM_TOML} and {ITEM_JSON} exist; keep one"))),
        (false, false) => return Err(invalid(format!("no {ITEM_TOML} or {ITEM_JSON} in {}", dir.display()))),
        (true, false) => (toml_path, true),
        (false, true) => (json_path, false),
    };
    let text = read_limited(&path).map_err(|source| CatalogueError::Io {
        item: id.to_string(),
        path: path.clone(),
        source,
    })?;
    let parsed: Result<ItemFile, String> = if is_toml {
        toml::from_str(&text).map_err(|e| toml_error(&text, &e))
    } else {
        serde_json::from_str(&text).map_err(|e| e.to_string())
    };
    let file = parsed.map_err(|message| CatalogueError::Parse { item: id.to_string(), path: path.clone(), message })?;
    build_item(dir, id, prefix, defaults, file, path).map_err(invalid)
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Level {
    Catalogue,
    Item,
    Bundle,
    Bitstream,
}

impl Level {
    fn name(self) -> &'static str {
        match self {
            Level::Catalogue => "the catalogue defaults",
            Level::Item => "the item",
            Level::Bundle => "a bundle",
            Level::Bitstream => "a bitstream",
        }
    }
}

/// Checks field names, value types and the level each IIIF field may be set at.
fn check_metadata(meta: &Metadata, level: Level) -> Result<(), String> {
    for (key, v) in meta.iter() {
        if !is_field_name(key) {
            return Err(format!(
                "\"{key}\" is not a metadata field name (expected schema.element or schema.element.qualifier, \
                 e.g. \"dc.title\")"
            ));
        }
        let require = |ok: bool, what: &str| -> Result<(), String> {
            if ok {
                Ok(())
            } else {
                Err(format!("\"{key}\" must be {what}, not {}", v.describe()))
            }
        };
        match key {
            F_ENABLED | F_SEARCH => require(v.as_bool().is_some(), "true or false")?,
            F_LABEL | F_DESCRIPTION | F_CANVAS_NAMING => require(v.as_single_text().is_some(), "one non-empty string")?,
            F_WIDTH | F_HEIGHT => require(v.as_dimension().is_some(), "a positive whole number of pixels")?,
            F_VIEWING_HINT => {
                let ok = v.as_single_text().is_some_and(|h| VIEWING_HINTS.contains(&h.to_ascii_lowercase().as_str()));
                if !ok {
                    return Err(format!(
                        "\"{key}\" must be \"individuals\", \"paged\" or \"continuous\", not {:?}",
                        v.values().join(", ")
                    ));
                }
            }
            F_TOC => {
                if level == Level::Bundle {
                    require(v.as_single_text().is_some(), "one non-empty string on a bundle")?
                } else {
                    require(
                        !v.values().is_empty() && !matches!(v, MetaValue::Bool(_)),
                        "a string or a list of strings",
                    )?
                }
            }
            k if k.starts_with("iiif.") || k.starts_with("dspace.iiif.") => {
                return Err(format!("unknown IIIF field \"{key}\" (known: {})", KNOWN_IIIF_FIELDS.join(", ")));
            }
            _ => {}
        }
        let allowed = match key {
            F_VIEWING_HINT | F_SEARCH => matches!(level, Level::Catalogue | Level::Item),
            F_TOC => matches!(level, Level::Bundle | Level::Bitstream),
            _ => true,
        };
        if !allowed {
            let where_ = if key == F_TOC { "bundles and bitstreams" } else { "the item (or the catalogue defaults)" };
            return Err(format!("\"{key}\" is set on {} but belongs on {where_}", level.name()));
        }
    }
    Ok(())
}

/// `iiif.image.width` and `iiif.image.height` of one level: both or neither.
fn size_of(meta: &Metadata) -> Result<Option<(u32, u32)>, String> {
    let w = meta.get(F_WIDTH).and_then(MetaValue::as_dimension);
    let h = meta.get(F_HEIGHT).and_then(MetaValue::as_dimension);
    match (w, h) {
        (Some(w), Some(h)) => Ok(Some((w, h))),
        (None, None) => Ok(None),
        _ => Err(format!("\"{F_WIDTH}\" and \"{F_HEIGHT}\" must be given together")),
    }
}

fn split_toc(s: &str) -> Vec<String> {
    s.split(TOC_SEPARATOR).map(str::trim).filter(|p| !p.is_empty()).map(str::to_string).collect()
}

/// Checks a bitstream's `file` and returns it `/`-normalised.
fn check_file(file: &str) -> Result<String, String> {
    let why = if file.trim().is_empty() {
        Some("is empty")
    } else if file.contains('\\') {
        Some("uses \\ (use / between folders)")
    } else if file.starts_with('/') {
        Some("must be relative to the item folder")
    } else if file.chars().any(char::is_control) {
        Some("contains a control character")
    } else if file.split('/').any(|c| c.is_empty() || c == "." || c == "..") {
        Some("may not contain empty, . or .. parts")
    } else {
        None
    };
    match why {
        Some(w) => Err(format!("bitstream file {file:?} {w}")),
        None => Ok(file.to_string()),
    }
}

fn build_item(
    dir: &Path,
    id: &str,
    prefix: &str,
    defaults: &Metadata,
    file: ItemFile,
    source: PathBuf,
) -> Result<Item, String> {
    if !file.bundles.is_empty() && !file.bitstreams.is_empty() {
        return Err("use either [[bitstreams]] or [[bundles]] (with [[bundles.bitstreams]]), not both".to_string());
    }
    let bundle_files = if file.bundles.is_empty() {
        vec![BundleFile { name: original(), metadata: Metadata::default(), bitstreams: file.bitstreams }]
    } else {
        file.bundles
    };
    check_metadata(&file.metadata, Level::Item).map_err(|m| format!("[metadata]: {m}"))?;
    let mut metadata = file.metadata;
    for (k, v) in defaults.iter() {
        metadata.0.entry(k.to_string()).or_insert_with(|| v.clone());
    }
    let item_size = size_of(&metadata).map_err(|m| format!("[metadata]: {m}"))?;
    let enabled = metadata.flag(F_ENABLED).unwrap_or(false);
    let viewing_hint = metadata.text(F_VIEWING_HINT).map(|h| h.to_ascii_lowercase());
    let search_enabled = metadata.flag(F_SEARCH).unwrap_or(false);
    let item_naming = metadata.text(F_CANVAS_NAMING);

    let mut bundles = Vec::new();
    let mut renderings = Vec::new();
    // Per bundle: the images it contributes (before TOC resolution).
    let mut images_by_bundle: Vec<Vec<Image>> = Vec::new();
    for (bi, bf) in bundle_files.into_iter().enumerate() {
        let where_b = format!("bundle {} ({})", bi + 1, bf.name);
        if bf.name.trim().is_empty() {
            return Err(format!("{where_b}: name is empty"));
        }
        check_metadata(&bf.metadata, Level::Bundle).map_err(|m| format!("{where_b}: {m}"))?;
        let b_size = size_of(&bf.metadata).map_err(|m| format!("{where_b}: {m}"))?.or(item_size);
        // The item's own flag decides whether it has a manifest at all; below
        // it, false leaves a bundle's or bitstream's images out.
        let b_enabled = bf.metadata.flag(F_ENABLED).unwrap_or(true);
        let b_naming = bf.metadata.text(F_CANVAS_NAMING).or_else(|| item_naming.clone());
        let iiif_bundle = !NON_IIIF_BUNDLES.iter().any(|n| n.eq_ignore_ascii_case(bf.name.trim()));
        let mut bitstreams = Vec::new();
        let mut images = Vec::new();
        for bs in bf.bitstreams {
            let where_s = format!("{where_b}, bitstream {:?}", bs.file);
            let rel = check_file(&bs.file).map_err(|m| format!("{where_b}: {m}"))?;
            let on_disk = dir.join(&rel);
            let bytes = match fs::metadata(&on_disk) {
                Ok(m) if m.is_file() => m.len(),
                _ => return Err(format!("{where_s}: file {} not found", on_disk.display())),
            };
            check_metadata(&bs.metadata, Level::Bitstream).map_err(|m| format!("{where_s}: {m}"))?;
            let ocr = match &bs.ocr {
                None => None,
                Some(f) => {
                    let rel = check_file(f).map_err(|m| format!("{where_s}, ocr: {m}"))?;
                    let path = dir.join(&rel);
                    if !fs::metadata(&path).map(|m| m.is_file()).unwrap_or(false) {
                        return Err(format!("{where_s}: OCR file {} not found", path.display()));
                    }
                    let format = sniff_ocr(&path);
                    Some(OcrFile { file: rel, path, format })
                }
            };
            let size = size_of(&bs.metadata).map_err(|m| format!("{where_s}: {m}"))?.or(b_size);
            let identifier = if prefix.is_empty() { format!("{id}/{rel}") } else { format!("{prefix}/{id}/{rel}") };
            let mime = mime_type(&rel);
            let file_name = rel.rsplit('/').next().unwrap_or(&rel).to_string();
            let is_image = mime.starts_with("image/");
            if iiif_bundle && is_image && bs.metadata.flag(F_ENABLED).unwrap_or(b_enabled) {
                images.push(Image {
                    identifier: identifier.clone(),
                    file: rel.clone(),
                    path: on_disk.clone(),
                    file_name,
                    mime: mime.clone(),
                    bytes,
                    bundle: bi,
                    label: bs.metadata.text(F_LABEL),
                    description: bs.metadata.text(F_DESCRIPTION),
                    canvas_naming: bs.metadata.text(F_CANVAS_NAMING).or_else(|| b_naming.clone()),
                    size,
                    toc: Vec::new(),
                    toc_without_bundle: Vec::new(),
                    metadata: bs.metadata.clone(),
                    ocr,
                });
            } else if iiif_bundle && !is_image {
                let label = bs.metadata.text(F_LABEL).unwrap_or(file_name);
                renderings.push(Rendering { file: rel.clone(), label, mime: mime.clone() });
            }
            bitstreams.push(Bitstream { file: rel, identifier, mime, bytes, metadata: bs.metadata });
        }
        bundles.push(Bundle { name: bf.name, metadata: bf.metadata, bitstreams });
        images_by_bundle.push(images);
    }

    // Table of contents, as DSpace: a bitstream's iiif.toc opens a range; the
    // bitstreams after it without iiif.toc continue that range. A bundle's
    // iiif.toc is a prefix for its bitstreams; when several bundles have
    // images, the bundle's label (iiif.label, else its name) is one more level.
    // `toc_without_bundle` is the same without that last level.
    let multi = images_by_bundle.iter().filter(|v| !v.is_empty()).count() > 1;
    let mut images = Vec::new();
    for (bi, mut list) in images_by_bundle.into_iter().enumerate() {
        let b = &bundles[bi];
        let bundle_toc = b.metadata.text(F_TOC).map(|t| split_toc(&t)).unwrap_or_default();
        let mut with_label = bundle_toc.clone();
        if multi {
            with_label.push(b.metadata.text(F_LABEL).unwrap_or_else(|| b.name.clone()));
        }
        let tocs = resolve_tocs(&list, &with_label);
        let tocs_without = resolve_tocs(&list, &bundle_toc);
        for ((img, toc), without) in list.iter_mut().zip(tocs).zip(tocs_without) {
            img.toc = toc;
            img.toc_without_bundle = without;
        }
        images.extend(list);
    }

    Ok(Item {
        id: id.to_string(),
        dir: dir.to_path_buf(),
        source,
        metadata,
        bundles,
        enabled,
        viewing_hint,
        search_enabled,
        images,
        renderings,
    })
}

/// The TOC positions of a bundle's images under the prefix `bprefix`: an
/// image's own `iiif.toc` opens ranges, images without one continue the
/// ranges above (or sit in the prefix's range).
fn resolve_tocs(images: &[Image], bprefix: &[String]) -> Vec<Vec<Vec<String>>> {
    let mut last: Option<Vec<Vec<String>>> = None;
    images
        .iter()
        .map(|img| {
            let own: Vec<Vec<String>> =
                img.metadata.values(F_TOC).iter().map(|t| split_toc(t)).filter(|p| !p.is_empty()).collect();
            if own.is_empty() {
                last.clone().unwrap_or_else(|| if bprefix.is_empty() { Vec::new() } else { vec![bprefix.to_vec()] })
            } else {
                let paths: Vec<Vec<String>> = own.into_iter().map(|p| [bprefix.to_vec(), p].concat()).collect();
                last = Some(paths.clone());
                paths
            }
        })
        .collect()
}

/// The MIME type of a file, by its extension: `mime_guess`'s table, with the
/// JPEG 2000 family (which it does not know) added. Unknown: octet-stream.
pub fn mime_type(file: &str) -> String {
    let ext = file.rsplit_once('.').map(|(_, e)| e.to_ascii_lowercase()).unwrap_or_default();
    match ext.as_str() {
        "jp2" | "j2k" | "j2c" | "jpc" | "jpf" | "jpx" => "image/jp2".to_string(),
        "jph" | "jhc" => "image/jph".to_string(),
        _ => mime_guess::from_ext(&ext).first_raw().unwrap_or("application/octet-stream").to_string(),
    }
}

/// The format of an OCR file, told from its first [`OCR_SNIFF_BYTES`]; None
/// when it cannot be read or is not recognised (search logs it when it
/// indexes the page).
fn sniff_ocr(path: &Path) -> Option<OcrFormat> {
    use std::io::Read;
    let mut head = Vec::with_capacity(OCR_SNIFF_BYTES);
    fs::File::open(path).ok()?.take(OCR_SNIFF_BYTES as u64).read_to_end(&mut head).ok()?;
    ocr::sniff(&head)
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    /// Writes `files` (path → content) under a fresh temp dir.
    pub(crate) fn tree(files: &[(&str, &str)]) -> tempfile::TempDir {
        let t = tempfile::tempdir().unwrap();
        for (p, content) in files {
            let path = t.path().join(p);
            fs::create_dir_all(path.parent().unwrap()).unwrap();
            fs::write(path, content).unwrap();
        }
        t
    }

    /// A catalogue at `<tmp>/items` inside the image root `<tmp>`.
    pub(crate) fn load(files: &[(&str, &str)]) -> (tempfile::TempDir, Catalogue, Vec<CatalogueError>) {
        let t = tree(files);
        let (c, e) = Catalogue::load(&t.path().join("items"), t.path());
        (t, c, e)
    }

    const BOOK: &str = r#"
[metadata]
"dc.title" = "The Book of Hours"
"dc.contributor.author" = ["Anonymous", "Workshop of X"]
"dc.date.issued" = "1480"
"dspace.iiif.enabled" = true
"iiif.viewing.hint" = "paged"
"iiif.canvas.naming" = "Folio"

[[bundles]]
name = "ORIGINAL"
metadata = { "iiif.label" = "Main images" }

  [[bundles.bitstreams]]
  file = "page-1.jpg"
  metadata = { "iiif.label" = "Cover", "iiif.toc" = "Front matter", "iiif.image.width" = 2000, "iiif.image.height" = 3000 }

  [[bundles.bitstreams]]
  file = "page-2.jpg"
"#;

    #[test]
    fn loads_a_toml_item_with_bundles_and_identifiers_relative_to_the_image_root() {
        let (_t, c, e) =
            load(&[("items/book/item.toml", BOOK), ("items/book/page-1.jpg", "x"), ("items/book/page-2.jpg", "x")]);
        assert!(e.is_empty(), "{e:?}");
        let item = c.item("book").unwrap();
        assert!(item.enabled && item.has_manifest());
        assert_eq!(item.label(), "The Book of Hours");
        assert_eq!(item.viewing_hint.as_deref(), Some("paged"));
        assert_eq!(item.images.len(), 2);
        assert_eq!(item.images[0].identifier, "items/book/page-1.jpg");
        assert_eq!(item.images[0].label.as_deref(), Some("Cover"));
        assert_eq!(item.images[0].size, Some((2000, 3000)));
        assert_eq!(item.images[1].size, None);
        assert_eq!(item.metadata.values("dc.contributor.author"), vec!["Anonymous", "Workshop of X"]);
        assert_eq!(item.bundles[0].name, "ORIGINAL");
    }

    #[test]
    fn loads_a_json_item_with_bitstreams_directly_under_the_item() {
        let json = r#"{"metadata": {"dc.title": "Map", "dspace.iiif.enabled": "true", "dc.date.issued": 1890},
                       "bitstreams": [{"file": "scans/map.jp2", "metadata": {"iiif.image.width": "4000", "iiif.image.height": "3000"}}]}"#;
        let (_t, c, e) = load(&[("items/map/item.json", json), ("items/map/scans/map.jp2", "x")]);
        assert!(e.is_empty(), "{e:?}");
        let item = c.item("map").unwrap();
        assert!(item.enabled);
        assert_eq!(item.images[0].identifier, "items/map/scans/map.jp2");
        assert_eq!(item.images[0].size, Some((4000, 3000)));
        assert_eq!(item.metadata.first("dc.date.issued").as_deref(), Some("1890"));
    }

    #[test]
    fn identifiers_have_no_prefix_when_the_catalogue_is_the_image_root() {
        let t = tree(&[("a/item.toml", "[[bitstreams]]\nfile = \"p.jpg\"\n"), ("a/p.jpg", "x")]);
        let (c, e) = Catalogue::load(t.path(), t.path());
        assert!(e.is_empty(), "{e:?}");
        assert_eq!(c.item("a").unwrap().images[0].identifier, "a/p.jpg");
    }

    #[test]
    fn a_catalogue_outside_the_image_root_loads_nothing() {
        let t = tree(&[("cat/a/item.toml", "[[bitstreams]]\nfile = \"p.jpg\"\n"), ("cat/a/p.jpg", "x"), ("img/x", "")]);
        let (c, e) = Catalogue::load(&t.path().join("cat"), &t.path().join("img"));
        assert!(c.items().is_empty());
        assert!(matches!(e.as_slice(), [CatalogueError::OutsideImageRoot { .. }]), "{e:?}");
    }

    #[test]
    fn a_missing_catalogue_root_is_an_error_not_a_panic() {
        let t = tempfile::tempdir().unwrap();
        let (c, e) = Catalogue::load(&t.path().join("nope"), t.path());
        assert!(c.items().is_empty());
        assert!(matches!(e.as_slice(), [CatalogueError::Root { .. }]), "{e:?}");
    }

    #[test]
    fn bad_items_are_reported_and_skipped_while_the_others_load() {
        let ok = "[metadata]\n\"dspace.iiif.enabled\" = true\n[[bitstreams]]\nfile = \"p.jpg\"\n";
        let (_t, c, e) = load(&[
            ("items/good/item.toml", ok),
            ("items/good/p.jpg", "x"),
            ("items/syntax/item.toml", "[metadata\n"),
            ("items/json/item.json", "{\"metadata\": "),
            ("items/unknown-key/item.toml", "titel = \"x\"\n"),
            ("items/missing-file/item.toml", ok),
            ("items/no-item-file/readme.txt", "x"),
            ("items/both/item.toml", ok),
            ("items/both/item.json", "{}"),
            ("items/both/p.jpg", "x"),
            ("items/bad-type/item.toml", "[metadata]\n\"dspace.iiif.enabled\" = \"maybe\"\n"),
            ("items/bad-hint/item.toml", "[metadata]\n\"iiif.viewing.hint\" = \"book\"\n"),
            ("items/typo-field/item.toml", "[metadata]\n\"iiif.viewinghint\" = \"paged\"\n"),
            ("items/not-a-field/item.toml", "[metadata]\n\"title\" = \"x\"\n"),
            ("items/table-value/item.toml", "[metadata]\n\"dc.title\" = { a = 1 }\n"),
            ("items/nested-list/item.toml", "[metadata]\n\"dc.title\" = [[\"a\"]]\n"),
            ("items/half-size/item.toml", "[metadata]\n\"iiif.image.width\" = 10\n"),
            ("items/zero-size/item.toml", "[metadata]\n\"iiif.image.width\" = 0\n\"iiif.image.height\" = 0\n"),
            ("items/escape/item.toml", "[[bitstreams]]\nfile = \"../good/p.jpg\"\n"),
            ("items/absolute/item.toml", "[[bitstreams]]\nfile = \"/etc/passwd\"\n"),
            ("items/mixed/item.toml", "[[bitstreams]]\nfile = \"p.jpg\"\n[[bundles]]\nname = \"X\"\n"),
            ("items/toc-on-item/item.toml", "[metadata]\n\"iiif.toc\" = \"A\"\n"),
            (
                "items/hint-on-bitstream/item.toml",
                "[[bitstreams]]\nfile = \"p.jpg\"\nmetadata = { \"iiif.viewing.hint\" = \"paged\" }\n",
            ),
            ("items/hint-on-bitstream/p.jpg", "x"),
            ("items/nul-byte/item.toml", "\u{0}"),
        ]);
        let ids: Vec<&str> = c.items().iter().map(|i| i.id.as_str()).collect();
        assert_eq!(ids, vec!["good"]);
        let mut failed: Vec<&str> = e.iter().filter_map(|e| e.item_id()).collect();
        failed.sort();
        let mut want = vec![
            "absolute",
            "bad-hint",
            "bad-type",
            "both",
            "escape",
            "hint-on-bitstream",
            "json",
            "half-size",
            "missing-file",
            "mixed",
            "nested-list",
            "no-item-file",
            "not-a-field",
            "nul-byte",
            "syntax",
            "table-value",
            "toc-on-item",
            "typo-field",
            "unknown-key",
            "zero-size",
        ];
        want.sort();
        assert_eq!(failed, want, "{e:#?}");
        for err in &e {
            let msg = err.to_string();
            println!("{msg}");
            assert!(msg.contains("skipped"), "{msg}");
            assert!(!msg.contains('\n'), "one line: {msg}");
        }
        let typo = e.iter().find(|e| e.item_id() == Some("typo-field")).unwrap().to_string();
        assert!(typo.contains("iiif.viewinghint") && typo.contains("iiif.viewing.hint"), "{typo}");
    }

    #[test]
    fn an_item_file_that_is_not_utf8_is_reported() {
        let t = tree(&[("items/a/p.jpg", "x")]);
        fs::write(t.path().join("items/a/item.toml"), b"[metadata]\n\"dc.title\" = \"\xff\"\n").unwrap();
        let (c, e) = Catalogue::load(&t.path().join("items"), t.path());
        assert!(c.items().is_empty());
        assert!(matches!(e.as_slice(), [CatalogueError::Io { .. }]), "{e:?}");
    }

    #[test]
    fn unsafe_item_ids_are_rejected() {
        for bad in ["", ".", "..", ".hidden", "a..b", "a/b", "a\\b", "tab\there", " pad", "2", "3", "collection"] {
            assert!(check_item_id(bad).is_err(), "{bad:?}");
        }
        for good in ["book-of-hours", "Book_1", "1480.psalter", "livre d'heures", "é"] {
            assert!(check_item_id(good).is_ok(), "{good:?}");
        }
        let ok = "[[bitstreams]]\nfile = \"p.jpg\"\n";
        let (_t, c, e) = load(&[
            ("items/.git/item.toml", ok),
            ("items/.git/p.jpg", "x"),
            ("items/2/item.toml", ok),
            ("items/2/p.jpg", "x"),
        ]);
        assert!(c.items().is_empty());
        assert_eq!(e.iter().filter(|e| matches!(e, CatalogueError::UnsafeId { .. })).count(), 2, "{e:?}");
        assert!(c.item("../items/2").is_none() && c.item("").is_none());
    }

    #[test]
    fn plain_files_in_the_catalogue_root_are_not_items() {
        let (_t, c, e) = load(&[("items/README.md", "x"), ("items/.DS_Store", "x")]);
        assert!(c.items().is_empty() && e.is_empty(), "{e:?}");
    }

    #[test]
    fn iiif_fields_inherit_item_to_bundle_to_bitstream() {
        let toml = r#"
[metadata]
"dspace.iiif.enabled" = true
"iiif.canvas.naming" = "Page"
"iiif.image.width" = 100
"iiif.image.height" = 200
[[bundles]]
name = "A"
metadata = { "iiif.canvas.naming" = "Plate", "iiif.image.width" = 300, "iiif.image.height" = 400 }
  [[bundles.bitstreams]]
  file = "a1.jpg"
  [[bundles.bitstreams]]
  file = "a2.jpg"
  metadata = { "iiif.canvas.naming" = "Folio", "iiif.image.width" = 500, "iiif.image.height" = 600 }
  [[bundles.bitstreams]]
  file = "a3.jpg"
  metadata = { "dspace.iiif.enabled" = false }
[[bundles]]
name = "B"
  [[bundles.bitstreams]]
  file = "b1.jpg"
[[bundles]]
name = "C"
metadata = { "dspace.iiif.enabled" = false }
  [[bundles.bitstreams]]
  file = "c1.jpg"
  [[bundles.bitstreams]]
  file = "c2.jpg"
  metadata = { "dspace.iiif.enabled" = true }
"#;
        let mut files = vec![("items/x/item.toml", toml)];
        for f in ["a1", "a2", "a3", "b1", "c1", "c2"] {
            files.push((Box::leak(format!("items/x/{f}.jpg").into_boxed_str()), "x"));
        }
        let (_t, c, e) = load(&files);
        assert!(e.is_empty(), "{e:?}");
        let item = c.item("x").unwrap();
        type Row<'a> = (&'a str, Option<&'a str>, Option<(u32, u32)>);
        let got: Vec<Row> =
            item.images.iter().map(|i| (i.file_name.as_str(), i.canvas_naming.as_deref(), i.size)).collect();
        assert_eq!(
            got,
            vec![
                ("a1.jpg", Some("Plate"), Some((300, 400))),
                ("a2.jpg", Some("Folio"), Some((500, 600))),
                ("b1.jpg", Some("Page"), Some((100, 200))),
                ("c2.jpg", Some("Page"), Some((100, 200))),
            ]
        );
        // Every bitstream is still listed in its bundle.
        assert_eq!(item.bundles.iter().map(|b| b.bitstreams.len()).sum::<usize>(), 6);
    }

    #[test]
    fn iiif_labels_are_not_inherited() {
        let toml = "[metadata]\n\"iiif.label\" = \"Item\"\n[[bundles]]\nname = \"B\"\nmetadata = { \"iiif.label\" = \"Bundle\", \"iiif.description\" = \"d\" }\n[[bundles.bitstreams]]\nfile = \"p.jpg\"\n";
        let (_t, c, _) = load(&[("items/x/item.toml", toml), ("items/x/p.jpg", "x")]);
        let img = &c.item("x").unwrap().images[0];
        assert_eq!((img.label.as_deref(), img.description.as_deref()), (None, None));
        assert_eq!(c.item("x").unwrap().label(), "Item");
    }

    #[test]
    fn enabled_is_false_when_absent_unless_the_catalogue_defaults_say_so() {
        let item = "[[bitstreams]]\nfile = \"p.jpg\"\n";
        let off = "[metadata]\n\"dspace.iiif.enabled\" = false\n[[bitstreams]]\nfile = \"p.jpg\"\n";
        let files =
            [("items/a/item.toml", item), ("items/a/p.jpg", "x"), ("items/b/item.toml", off), ("items/b/p.jpg", "x")];
        let (_t, c, e) = load(&files);
        assert!(e.is_empty(), "{e:?}");
        assert!(!c.item("a").unwrap().enabled && !c.item("b").unwrap().enabled);

        let mut with_defaults = files.to_vec();
        let defaults = "label = \"Special collections\"\n[metadata]\n\"dspace.iiif.enabled\" = true\n\"dc.rights\" = \"Public domain\"\n";
        with_defaults.push(("items/catalogue.toml", defaults));
        let (_t, c, e) = load(&with_defaults);
        assert!(e.is_empty(), "{e:?}");
        assert!(c.item("a").unwrap().enabled, "default applies");
        assert!(!c.item("b").unwrap().enabled, "the item's own value wins");
        assert_eq!(c.item("a").unwrap().metadata.first("dc.rights").as_deref(), Some("Public domain"));
        assert_eq!(c.label(), Some("Special collections"));
    }

    #[test]
    fn a_bad_catalogue_file_is_reported_and_items_still_load() {
        let (_t, c, e) = load(&[
            ("items/catalogue.toml", "[metadata]\n\"iiif.toc\" = \"x\"\n"),
            ("items/a/item.toml", "[[bitstreams]]\nfile = \"p.jpg\"\n"),
            ("items/a/p.jpg", "x"),
        ]);
        assert_eq!(c.items().len(), 1);
        assert!(matches!(e.as_slice(), [CatalogueError::Defaults { .. }]), "{e:?}");
    }

    #[test]
    fn toc_levels_split_and_continue_over_following_bitstreams() {
        let toml = r#"
[[bitstreams]]
file = "0.jpg"
[[bitstreams]]
file = "1.jpg"
metadata = { "iiif.toc" = "Part I|||Chapter 1" }
[[bitstreams]]
file = "2.jpg"
[[bitstreams]]
file = "3.jpg"
metadata = { "iiif.toc" = ["Part I ||| Chapter 2", "Illustrations"] }
[[bitstreams]]
file = "4.jpg"
metadata = { "iiif.toc" = "|||" }
"#;
        let mut files = vec![("items/x/item.toml", toml)];
        for f in ["0", "1", "2", "3", "4"] {
            files.push((Box::leak(format!("items/x/{f}.jpg").into_boxed_str()), "x"));
        }
        let (_t, c, e) = load(&files);
        assert!(e.is_empty(), "{e:?}");
        let tocs: Vec<Vec<Vec<String>>> = c.item("x").unwrap().images.iter().map(|i| i.toc.clone()).collect();
        let p = |s: &[&str]| s.iter().map(|x| x.to_string()).collect::<Vec<_>>();
        assert_eq!(tocs[0], Vec::<Vec<String>>::new());
        assert_eq!(tocs[1], vec![p(&["Part I", "Chapter 1"])]);
        assert_eq!(tocs[2], vec![p(&["Part I", "Chapter 1"])], "continues the range above");
        assert_eq!(tocs[3], vec![p(&["Part I", "Chapter 2"]), p(&["Illustrations"])]);
        assert_eq!(tocs[4], tocs[3], "an empty toc continues too");
    }

    #[test]
    fn several_bundles_add_a_bundle_level_to_the_toc() {
        let toml = r#"
[[bundles]]
name = "ORIGINAL"
metadata = { "iiif.label" = "Main images" }
  [[bundles.bitstreams]]
  file = "a.jpg"
  [[bundles.bitstreams]]
  file = "b.jpg"
  metadata = { "iiif.toc" = "Ch 1" }
[[bundles]]
name = "SUPPLEMENT"
metadata = { "iiif.toc" = "Appendix" }
  [[bundles.bitstreams]]
  file = "c.jpg"
"#;
        let (_t, c, e) =
            load(&[("items/x/item.toml", toml), ("items/x/a.jpg", ""), ("items/x/b.jpg", ""), ("items/x/c.jpg", "")]);
        assert!(e.is_empty(), "{e:?}");
        let tocs: Vec<Vec<Vec<String>>> = c.item("x").unwrap().images.iter().map(|i| i.toc.clone()).collect();
        assert_eq!(tocs[0], vec![vec!["Main images".to_string()]]);
        assert_eq!(tocs[1], vec![vec!["Main images".to_string(), "Ch 1".to_string()]]);
        assert_eq!(tocs[2], vec![vec!["Appendix".to_string(), "SUPPLEMENT".to_string()]]);
    }

    #[test]
    fn metadata_values_accept_strings_numbers_booleans_lists_and_toml_dates() {
        let toml = "[metadata]\n\"dc.date.issued\" = 1480-03-01\n\"dc.format.extent\" = 2.5\n\"dc.subject\" = [\"Prayer\", 1480, true]\n\"dspace.iiif.enabled\" = \"Yes\"\n\"dc.title\" = \"  \"\n";
        let (_t, c, e) = load(&[("items/x/item.toml", toml)]);
        assert!(e.is_empty(), "{e:?}");
        let m = &c.item("x").unwrap().metadata;
        assert_eq!(m.first("dc.date.issued").as_deref(), Some("1480-03-01"));
        assert_eq!(m.first("dc.format.extent").as_deref(), Some("2.5"));
        assert_eq!(m.values("dc.subject"), vec!["Prayer", "1480", "true"]);
        assert_eq!(m.first("dc.title"), None, "blank values count as absent");
        assert!(c.item("x").unwrap().enabled);
        assert_eq!(c.item("x").unwrap().label(), "x", "falls back to the id");
    }

    #[test]
    fn field_names_are_schema_element_qualifier() {
        for good in ["dc.title", "dc.contributor.author", "dspace.iiif.enabled", "local.my_field-2"] {
            assert!(is_field_name(good), "{good}");
        }
        for bad in ["title", "dc.", ".dc", "a.b.c.d", "dc.ti tle", "dc.*"] {
            assert!(!is_field_name(bad), "{bad}");
        }
    }
}
