//! OCR word boxes for IIIF Content Search: recognises ALTO (v2–v4), hOCR and
//! MiniOCR documents by content ([`sniff`]) and reads one page of them into
//! words with boxes in canvas pixels and running line numbers ([`parse`]).
//!
//! Pure: bytes in, words out; no file or network I/O. XML is read with
//! `quick-xml`, which never expands external entities (or any entity beyond
//! the five predefined ones and character references); input size, word
//! count and nesting depth are bounded ([`MAX_OCR_BYTES`], [`MAX_WORDS`],
//! [`MAX_DEPTH`]). Documents must be UTF-8 (a BOM is allowed).
//!
//! Choices made here:
//! - Only the first page of a document is read (ALTO `Page`, hOCR
//!   `ocr_page`, MiniOCR `p`); words of later pages are ignored.
//! - ALTO hyphenation: both parts of a word split over two lines
//!   (`SUBS_TYPE="HypPart1"` / `"HypPart2"`) carry the full word
//!   (`SUBS_CONTENT`) as their text, each with its own box and line, so a
//!   search for the full word finds both halves. Without `SUBS_CONTENT` each
//!   part keeps its `CONTENT`. `HYP` elements are not words. hOCR and
//!   MiniOCR words are taken as written.
//! - Page size: boxes are scaled by canvas size / page size. Without a page
//!   size (ALTO `Page` lacking `WIDTH` or `HEIGHT`, hOCR `ocr_page` without
//!   `bbox`, MiniOCR `p` without `wh`), pixel coordinates (ALTO `pixel` or
//!   no `MeasurementUnit`, hOCR, absolute MiniOCR) are taken as canvas
//!   pixels, and ALTO in `mm10` or `inch1200` is an error. A page size that
//!   is given but is not two positive numbers is an error.
//! - Words whose box is missing or not numeric, whose text is empty after
//!   trimming, or whose box has no area once clamped to the canvas are
//!   dropped. Runs of white space inside a word's text become one space.
//! - Line numbers count from 0 in document order, one per line element that
//!   kept a word, with no gaps.
//! - Entity references other than the five XML ones and character references
//!   (e.g. `&nbsp;` in HTML hOCR) are kept as written.
//! - hOCR may be XHTML or HTML: HTML void elements (`<meta>`, `<br>`, ...)
//!   need no end tag, unquoted attributes are accepted, and an end tag closes
//!   the elements left open inside it. A document that ends with elements
//!   still open is refused as truncated, in every format.

use std::borrow::Cow;

use quick_xml::escape::resolve_xml_entity;
use quick_xml::events::{BytesRef, BytesStart, Event};
use quick_xml::{Reader, XmlVersion};

/// Largest OCR document accepted, in bytes; larger input is refused before
/// parsing.
pub const MAX_OCR_BYTES: usize = 64 << 20;

/// Most words accepted on one page.
pub const MAX_WORDS: usize = 1_000_000;

/// Deepest element nesting accepted (real OCR documents nest fewer than 20
/// levels).
pub const MAX_DEPTH: usize = 256;

/// The OCR formats [`parse`] reads.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum OcrFormat {
    /// ALTO XML, root `alto` (v2–v4 namespaces, or none).
    Alto,
    /// hOCR: XHTML or HTML with `ocr_page` / `ocrx_word` classes.
    Hocr,
    /// MiniOCR (as read by solr-ocrhighlighting): root `ocr`.
    MiniOcr,
}

/// A word and its box in canvas pixel coordinates.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct Word {
    /// The word as written, trimmed (white space inside folded to one space).
    pub text: String,
    /// Left edge.
    pub x: u32,
    /// Top edge.
    pub y: u32,
    /// Width (> 0).
    pub w: u32,
    /// Height (> 0).
    pub h: u32,
    /// Line number in reading order, from 0 without gaps: consecutive words
    /// with the same number are on one line.
    pub line: u32,
}

/// Why an OCR document could not be read. Display texts are fixed strings
/// and numbers: they never quote the document.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum OcrError {
    /// Not ALTO, hOCR or MiniOCR (or not UTF-8 XML at all).
    #[error("not an OCR document (expected ALTO, hOCR or MiniOCR XML in UTF-8)")]
    NotOcr,
    /// The XML is not well formed or is truncated.
    #[error("malformed OCR XML near byte {offset}")]
    Malformed {
        /// Byte offset where the problem was found.
        offset: u64,
    },
    /// ALTO in physical units without the page size needed to scale it.
    #[error("OCR page size is missing: ALTO coordinates in {unit} need the Page WIDTH and HEIGHT")]
    MissingPageSize {
        /// `mm10`, `inch1200` or `an unknown unit`.
        unit: &'static str,
    },
    /// A page size is given but is not two positive numbers.
    #[error("OCR page size is invalid (two positive numbers expected)")]
    InvalidPageSize,
    /// The input is larger than [`MAX_OCR_BYTES`].
    #[error("OCR document too large: {size} bytes (the limit is {limit})")]
    TooLarge {
        /// Size of the input.
        size: usize,
        /// [`MAX_OCR_BYTES`].
        limit: usize,
    },
    /// The page has more than [`MAX_WORDS`] words.
    #[error("OCR page has too many words (the limit is {limit})")]
    TooManyWords {
        /// [`MAX_WORDS`].
        limit: usize,
    },
    /// Elements nest deeper than [`MAX_DEPTH`].
    #[error("OCR document nested too deeply (the limit is {limit} levels)")]
    TooDeep {
        /// [`MAX_DEPTH`].
        limit: usize,
    },
}

const UTF8_BOM: &[u8] = b"\xEF\xBB\xBF";

/// Classes of hOCR elements that start a line.
const HOCR_LINE_CLASSES: [&str; 5] = ["ocr_line", "ocrx_line", "ocr_caption", "ocr_textfloat", "ocr_header"];

/// HTML elements that have no end tag.
const HTML_VOID: [&str; 14] =
    ["area", "base", "br", "col", "embed", "hr", "img", "input", "link", "meta", "param", "source", "track", "wbr"];

/// The format of `data`, judged by its content: the root element after any
/// BOM, XML declaration, comments, processing instructions and doctype.
/// ALTO: root `alto` in an ALTO namespace (`http://www.loc.gov/standards/alto/…`,
/// the v1 `http://schema.ccs-gmbh.com/ALTO`) or in none. hOCR: root `html`
/// with an element of class `ocr_page` or `ocrx_word`. MiniOCR: root `ocr`
/// whose first child element (if any) is `p`, `b`, `l` or `w`.
pub fn sniff(data: &[u8]) -> Option<OcrFormat> {
    let data = strip_bom(data);
    let mut r = xml_reader(data, true);
    let root = loop {
        match r.read_event() {
            Ok(Event::Start(e)) => break (e, false),
            Ok(Event::Empty(e)) => break (e, true),
            Ok(Event::Text(t)) if is_xml_space(&t) => {}
            Ok(Event::Decl(_) | Event::Comment(_) | Event::DocType(_) | Event::PI(_)) => {}
            _ => return None,
        }
    };
    let (root, empty) = root;
    let local = root.local_name();
    let local = local.as_ref();
    if local == "alto" {
        return alto_namespace_ok(&root).then_some(OcrFormat::Alto);
    }
    if local == "ocr" {
        if empty {
            return Some(OcrFormat::MiniOcr);
        }
        return loop {
            match r.read_event() {
                Ok(Event::Start(e) | Event::Empty(e)) => {
                    let n = e.local_name();
                    break matches!(n.as_ref(), "p" | "b" | "l" | "w").then_some(OcrFormat::MiniOcr);
                }
                Ok(Event::Text(t)) if is_xml_space(&t) => {}
                Ok(Event::Comment(_) | Event::PI(_)) => {}
                Ok(Event::End(_) | Event::Eof) => break Some(OcrFormat::MiniOcr),
                _ => break None,
            }
        };
    }
    if !local.eq_ignore_ascii_case("html") {
        return None;
    }
    if hocr_has_ocr_class(&root) {
        return Some(OcrFormat::Hocr);
    }
    if empty {
        return None;
    }
    let mut depth = 1usize;
    loop {
        match r.read_event() {
            Ok(Event::Start(e)) => {
                if hocr_has_ocr_class(&e) {
                    return Some(OcrFormat::Hocr);
                }
                depth += 1;
                if depth > MAX_DEPTH {
                    return None;
                }
            }
            Ok(Event::Empty(e)) => {
                if hocr_has_ocr_class(&e) {
                    return Some(OcrFormat::Hocr);
                }
            }
            Ok(Event::End(_)) => depth = depth.saturating_sub(1),
            Ok(Event::Eof) | Err(_) => return None,
            Ok(_) => {}
        }
    }
}

/// Reads the words of the first page of an ALTO, hOCR or MiniOCR document
/// (see [`sniff`]) with their boxes scaled to a `canvas_w` × `canvas_h`
/// canvas and clamped to it, in document order.
pub fn parse(data: &[u8], canvas_w: u32, canvas_h: u32) -> Result<Vec<Word>, OcrError> {
    if data.len() > MAX_OCR_BYTES {
        return Err(OcrError::TooLarge { size: data.len(), limit: MAX_OCR_BYTES });
    }
    let data = strip_bom(data);
    let canvas = (canvas_w, canvas_h);
    match sniff(data).ok_or(OcrError::NotOcr)? {
        OcrFormat::Alto => parse_alto(data, canvas),
        OcrFormat::Hocr => parse_hocr(data, canvas),
        OcrFormat::MiniOcr => parse_miniocr(data, canvas),
    }
}

// ---------------------------------------------------------------- ALTO

/// Where the reader is relative to the first page element.
#[derive(Clone, Copy, PartialEq, Eq)]
enum PageState {
    Before,
    /// Inside the first page, which opened at this depth.
    In(usize),
    After,
}

impl PageState {
    /// Called when a page element opens at `depth` (`empty`: `<Page/>`).
    /// True when it is the first page.
    fn open(&mut self, depth: usize, empty: bool) -> bool {
        if *self != PageState::Before {
            return false;
        }
        *self = if empty { PageState::After } else { PageState::In(depth) };
        true
    }

    /// Called when an element that opened at `depth` closes.
    fn close(&mut self, depth: usize) {
        if *self == PageState::In(depth) {
            *self = PageState::After;
        }
    }

    fn done(self) -> bool {
        self == PageState::After
    }
}

fn parse_alto(data: &[u8], canvas: (u32, u32)) -> Result<Vec<Word>, OcrError> {
    let mut r = xml_reader(data, false);
    let mut words = Collector::default();
    let mut depth = 0usize;
    let mut page = PageState::Before;
    let mut page_size: Option<(f64, f64)> = None;
    // The MeasurementUnit text, and the depth of that element while open.
    let mut unit: Option<String> = None;
    let mut unit_open: Option<usize> = None;
    loop {
        let ev = r.read_event().map_err(|_| malformed_at(r.error_position()))?;
        let (e, empty) = match ev {
            Event::Start(e) => {
                depth += 1;
                if depth > MAX_DEPTH {
                    return Err(OcrError::TooDeep { limit: MAX_DEPTH });
                }
                (e, false)
            }
            Event::Empty(e) => (e, true),
            Event::End(e) => {
                match e.local_name().as_ref() {
                    "TextLine" => words.line_break(),
                    "MeasurementUnit" if unit_open == Some(depth) => unit_open = None,
                    _ => {}
                }
                page.close(depth);
                depth = depth.saturating_sub(1);
                continue;
            }
            Event::Text(t) => {
                if let (Some(_), Some(u)) = (unit_open, unit.as_mut()) {
                    push_capped(u, &t);
                }
                continue;
            }
            Event::CData(t) => {
                if let (Some(_), Some(u)) = (unit_open, unit.as_mut()) {
                    push_capped(u, &t);
                }
                continue;
            }
            Event::GeneralRef(g) => {
                if let (Some(_), Some(u)) = (unit_open, unit.as_mut()) {
                    let mut s = String::new();
                    push_ref(&mut s, &g);
                    push_capped(u, &s);
                }
                continue;
            }
            Event::Eof => break,
            _ => continue,
        };
        match e.local_name().as_ref() {
            "MeasurementUnit" if unit.is_none() => {
                unit = Some(String::new());
                if !empty {
                    unit_open = Some(depth);
                }
            }
            // The first page only (`open` is false for later ones).
            "Page" if page.open(depth, empty) => {
                let (mut w, mut h) = (None, None);
                each_attr(&e, false, |k, v| match k {
                    "WIDTH" => w = Some(v.into_owned()),
                    "HEIGHT" => h = Some(v.into_owned()),
                    _ => {}
                })
                .map_err(|_| malformed_at(r.buffer_position()))?;
                if let (Some(w), Some(h)) = (w, h) {
                    page_size = Some(page_size_of(&w, &h)?);
                }
            }
            "TextLine" => {
                words.line_break();
                if empty {
                    words.line_break();
                }
            }
            "String" if !page.done() => {
                let mut a = AltoString::default();
                each_attr(&e, false, |k, v| {
                    let slot = match k {
                        "CONTENT" => &mut a.content,
                        "HPOS" => &mut a.hpos,
                        "VPOS" => &mut a.vpos,
                        "WIDTH" => &mut a.width,
                        "HEIGHT" => &mut a.height,
                        "SUBS_TYPE" => &mut a.subs_type,
                        "SUBS_CONTENT" => &mut a.subs_content,
                        _ => return,
                    };
                    *slot = Some(v.into_owned());
                })
                .map_err(|_| malformed_at(r.buffer_position()))?;
                a.push_to(&mut words)?;
            }
            _ => {}
        }
    }
    if depth != 0 {
        return Err(malformed_at(r.buffer_position()));
    }
    let scale = match page_size {
        Some((w, h)) => Scale::page(0.0, 0.0, w, h, canvas)?,
        None => {
            let unit = unit.as_deref().map(str::trim).unwrap_or("");
            if unit.is_empty() || unit.eq_ignore_ascii_case("pixel") {
                Scale::IDENTITY
            } else if unit.eq_ignore_ascii_case("mm10") {
                return Err(OcrError::MissingPageSize { unit: "mm10" });
            } else if unit.eq_ignore_ascii_case("inch1200") {
                return Err(OcrError::MissingPageSize { unit: "inch1200" });
            } else {
                return Err(OcrError::MissingPageSize { unit: "an unknown unit" });
            }
        }
    };
    Ok(words.finish(scale, canvas))
}

/// The attributes of an ALTO `String` that matter here.
#[derive(Default)]
struct AltoString {
    content: Option<String>,
    hpos: Option<String>,
    vpos: Option<String>,
    width: Option<String>,
    height: Option<String>,
    subs_type: Option<String>,
    subs_content: Option<String>,
}

impl AltoString {
    fn push_to(self, words: &mut Collector) -> Result<(), OcrError> {
        let hyphenated = matches!(self.subs_type.as_deref().map(str::trim), Some("HypPart1" | "HypPart2"));
        let text = match (hyphenated, self.subs_content) {
            (true, Some(full)) if !full.trim().is_empty() => full,
            _ => self.content.unwrap_or_default(),
        };
        let num = |v: &Option<String>| v.as_deref().and_then(parse_number);
        let (Some(x), Some(y), Some(w), Some(h)) =
            (num(&self.hpos), num(&self.vpos), num(&self.width), num(&self.height))
        else {
            return Ok(());
        };
        words.push(&text, [x, y, x + w, y + h], false)
    }
}

// ---------------------------------------------------------------- hOCR

/// What an open hOCR element is.
#[derive(Clone, Copy, PartialEq, Eq)]
enum HocrKind {
    /// The first `ocr_page`.
    Page,
    Line,
    /// The `ocrx_word` being read.
    Word,
    Other,
}

struct Frame {
    /// Lower-case element name.
    name: String,
    kind: HocrKind,
}

/// An `ocrx_word` being read.
struct OpenWord {
    text: String,
    bbox: Option<[f64; 4]>,
}

struct HocrState {
    words: Collector,
    page: PageState,
    /// `bbox` of the first `ocr_page`.
    page_box: Option<[f64; 4]>,
    word: Option<OpenWord>,
}

impl HocrState {
    /// An element opened: decides what it is and acts on it.
    fn open(&mut self, e: &BytesStart<'_>, depth: usize, empty: bool) -> Result<HocrKind, OcrError> {
        let mut class = None;
        let mut title = None;
        each_attr(e, true, |k, v| {
            if k.eq_ignore_ascii_case("class") {
                class = Some(v.into_owned());
            } else if k.eq_ignore_ascii_case("title") {
                title = Some(v.into_owned());
            }
        })
        .ok(); // Broken HTML attributes: keep what was read.
        let Some(class) = class else {
            return Ok(HocrKind::Other);
        };
        let has = |c: &str| class.split_ascii_whitespace().any(|t| t == c);
        if has("ocrx_word") {
            if self.word.is_some() || self.page.done() {
                return Ok(HocrKind::Other);
            }
            let bbox = title.as_deref().and_then(hocr_bbox).and_then(|b| b.ok());
            self.word = Some(OpenWord { text: String::new(), bbox });
            return Ok(HocrKind::Word);
        }
        if has("ocr_page") {
            if !self.page.open(depth, empty) {
                return Ok(HocrKind::Other);
            }
            self.page_box = match title.as_deref().and_then(hocr_bbox) {
                Some(Ok(b)) => Some(b),
                Some(Err(())) => return Err(OcrError::InvalidPageSize),
                None => None,
            };
            return Ok(HocrKind::Page);
        }
        if HOCR_LINE_CLASSES.iter().any(|c| has(c)) {
            self.words.line_break();
            return Ok(HocrKind::Line);
        }
        Ok(HocrKind::Other)
    }

    /// An element of this kind, opened at `depth`, closed.
    fn close(&mut self, kind: HocrKind, depth: usize) -> Result<(), OcrError> {
        match kind {
            HocrKind::Page => self.page.close(depth),
            HocrKind::Line => self.words.line_break(),
            HocrKind::Word => {
                if let Some(OpenWord { text, bbox: Some(b) }) = self.word.take() {
                    self.words.push(&text, b, false)?;
                }
            }
            HocrKind::Other => {}
        }
        Ok(())
    }

    fn text(&mut self, s: &str) {
        if let Some(w) = self.word.as_mut() {
            w.text.push_str(s);
        }
    }
}

fn parse_hocr(data: &[u8], canvas: (u32, u32)) -> Result<Vec<Word>, OcrError> {
    let mut r = xml_reader(data, true);
    let mut st = HocrState { words: Collector::default(), page: PageState::Before, page_box: None, word: None };
    let mut stack: Vec<Frame> = Vec::new();
    loop {
        let ev = r.read_event().map_err(|_| malformed_at(r.error_position()))?;
        match ev {
            Event::Start(e) => {
                let name = e.local_name().as_ref().to_ascii_lowercase();
                if HTML_VOID.contains(&name.as_str()) {
                    let kind = st.open(&e, stack.len() + 1, true)?;
                    st.close(kind, stack.len() + 1)?;
                    continue;
                }
                if stack.len() >= MAX_DEPTH {
                    return Err(OcrError::TooDeep { limit: MAX_DEPTH });
                }
                let kind = st.open(&e, stack.len() + 1, false)?;
                stack.push(Frame { name, kind });
            }
            Event::Empty(e) => {
                let kind = st.open(&e, stack.len() + 1, true)?;
                st.close(kind, stack.len() + 1)?;
            }
            Event::End(e) => {
                let name = e.local_name().as_ref().to_ascii_lowercase();
                // An end tag closes the elements left open inside it; a stray
                // one (no such element open) is ignored, as browsers do.
                if let Some(i) = stack.iter().rposition(|f| f.name == name) {
                    while stack.len() > i {
                        let depth = stack.len();
                        if let Some(f) = stack.pop() {
                            st.close(f.kind, depth)?;
                        }
                    }
                }
            }
            Event::Text(t) => st.text(&t),
            Event::CData(t) => st.text(&t),
            Event::GeneralRef(g) => {
                if let Some(w) = st.word.as_mut() {
                    push_ref(&mut w.text, &g);
                }
            }
            Event::Eof => break,
            _ => {}
        }
    }
    if !stack.is_empty() {
        return Err(malformed_at(r.buffer_position()));
    }
    let scale = match st.page_box {
        Some([x0, y0, x1, y1]) => Scale::page(x0, y0, x1 - x0, y1 - y0, canvas)?,
        None => Scale::IDENTITY,
    };
    Ok(st.words.finish(scale, canvas))
}

/// The `bbox x0 y0 x1 y1` property of an hOCR `title`: None when absent,
/// Err when present but not four numbers.
fn hocr_bbox(title: &str) -> Option<Result<[f64; 4], ()>> {
    // Properties are `;`-separated; a quoted value (`image "a;b.png"`) may
    // hold a `;`.
    let mut in_quotes = false;
    let props = title.split(|c: char| {
        if c == '"' {
            in_quotes = !in_quotes;
        }
        c == ';' && !in_quotes
    });
    for prop in props {
        let mut it = prop.split_ascii_whitespace();
        if it.next() != Some("bbox") {
            continue;
        }
        let mut b = [0.0; 4];
        for v in b.iter_mut() {
            match it.next().and_then(parse_number) {
                Some(n) => *v = n,
                None => return Some(Err(())),
            }
        }
        return Some(Ok(b));
    }
    None
}

/// True when the element's class names an hOCR page or word.
fn hocr_has_ocr_class(e: &BytesStart<'_>) -> bool {
    let mut found = false;
    let _ = each_attr(e, true, |k, v| {
        if k.eq_ignore_ascii_case("class") {
            found |= v.split_ascii_whitespace().any(|t| t == "ocr_page" || t == "ocrx_word");
        }
    });
    found
}

// ---------------------------------------------------------------- MiniOCR

fn parse_miniocr(data: &[u8], canvas: (u32, u32)) -> Result<Vec<Word>, OcrError> {
    let mut r = xml_reader(data, false);
    let mut words = Collector::default();
    let mut depth = 0usize;
    let mut page = PageState::Before;
    let mut page_size: Option<(f64, f64)> = None;
    // The `<w>` being read: its depth, text and `x` attribute.
    let mut word: Option<(usize, String, Option<String>)> = None;
    loop {
        let ev = r.read_event().map_err(|_| malformed_at(r.error_position()))?;
        let (e, empty) = match ev {
            Event::Start(e) => {
                depth += 1;
                if depth > MAX_DEPTH {
                    return Err(OcrError::TooDeep { limit: MAX_DEPTH });
                }
                (e, false)
            }
            Event::Empty(e) => (e, true),
            Event::End(e) => {
                match e.local_name().as_ref() {
                    "l" => words.line_break(),
                    "w" if word.as_ref().is_some_and(|w| w.0 == depth) => {
                        if let Some((_, text, x)) = word.take() {
                            push_mini_word(&mut words, &text, x.as_deref())?;
                        }
                    }
                    _ => {}
                }
                page.close(depth);
                depth = depth.saturating_sub(1);
                continue;
            }
            Event::Text(t) => {
                if let Some(w) = word.as_mut() {
                    w.1.push_str(&t);
                }
                continue;
            }
            Event::CData(t) => {
                if let Some(w) = word.as_mut() {
                    w.1.push_str(&t);
                }
                continue;
            }
            Event::GeneralRef(g) => {
                if let Some(w) = word.as_mut() {
                    push_ref(&mut w.1, &g);
                }
                continue;
            }
            Event::Eof => break,
            _ => continue,
        };
        match e.local_name().as_ref() {
            // The first page only (`open` is false for later ones).
            "p" if page.open(depth, empty) => {
                let mut wh = None;
                each_attr(&e, false, |k, v| {
                    if k == "wh" {
                        wh = Some(v.into_owned());
                    }
                })
                .map_err(|_| malformed_at(r.buffer_position()))?;
                if let Some(wh) = wh {
                    let mut it = wh.split(|c: char| c.is_ascii_whitespace() || c == ',').filter(|s| !s.is_empty());
                    let (w, h) = (it.next().unwrap_or(""), it.next().unwrap_or(""));
                    if it.next().is_some() {
                        return Err(OcrError::InvalidPageSize);
                    }
                    page_size = Some(page_size_of(w, h)?);
                }
            }
            "l" => {
                words.line_break();
                if empty {
                    words.line_break();
                }
            }
            "w" if word.is_none() && !page.done() => {
                let mut x = None;
                each_attr(&e, false, |k, v| {
                    if k == "x" {
                        x = Some(v.into_owned());
                    }
                })
                .map_err(|_| malformed_at(r.buffer_position()))?;
                if !empty {
                    word = Some((depth, String::new(), x));
                }
                // `<w x=".."/>` has no text: nothing to index.
            }
            _ => {}
        }
    }
    if depth != 0 {
        return Err(malformed_at(r.buffer_position()));
    }
    let scale = match page_size {
        Some((w, h)) => Scale::page(0.0, 0.0, w, h, canvas)?,
        None => Scale::IDENTITY,
    };
    Ok(words.finish(scale, canvas))
}

/// A MiniOCR word: `x="x y w h"`, relative (0..1 of the canvas) when all four
/// values are ≤ 1 and one has a decimal point, else absolute.
fn push_mini_word(words: &mut Collector, text: &str, x: Option<&str>) -> Result<(), OcrError> {
    let Some(x) = x else {
        return Ok(());
    };
    let parts: Vec<&str> = x.split(|c: char| c.is_ascii_whitespace() || c == ',').filter(|s| !s.is_empty()).collect();
    let [a, b, c, d] = parts.as_slice() else {
        return Ok(());
    };
    let (Some(x), Some(y), Some(w), Some(h)) = (parse_number(a), parse_number(b), parse_number(c), parse_number(d))
    else {
        return Ok(());
    };
    let relative = [x, y, w, h].iter().all(|v| *v <= 1.0) && parts.iter().any(|p| p.contains('.'));
    words.push(text, [x, y, x + w, y + h], relative)
}

// ---------------------------------------------------------------- shared

/// A word as read, in the document's units (or 0..1 when `relative`).
struct RawWord {
    text: String,
    /// x0, y0, x1, y1.
    bbox: [f64; 4],
    relative: bool,
    line: u32,
}

/// Collects words and numbers lines.
#[derive(Default)]
struct Collector {
    words: Vec<RawWord>,
    line: u32,
    /// Whether a word has the current line number.
    line_used: bool,
}

impl Collector {
    /// A line starts or ends: the next word goes on a new line.
    fn line_break(&mut self) {
        if self.line_used {
            self.line = self.line.saturating_add(1);
            self.line_used = false;
        }
    }

    fn push(&mut self, text: &str, bbox: [f64; 4], relative: bool) -> Result<(), OcrError> {
        let text = fold_space(text);
        if text.is_empty() || bbox.iter().any(|v| !v.is_finite()) {
            return Ok(());
        }
        if self.words.len() >= MAX_WORDS {
            return Err(OcrError::TooManyWords { limit: MAX_WORDS });
        }
        self.words.push(RawWord { text, bbox, relative, line: self.line });
        self.line_used = true;
        Ok(())
    }

    /// Scales and clamps to the canvas, drops empty boxes and renumbers the
    /// lines that kept a word from 0.
    fn finish(self, page: Scale, (cw, ch): (u32, u32)) -> Vec<Word> {
        let relative = Scale { ox: 0.0, oy: 0.0, sx: f64::from(cw), sy: f64::from(ch) };
        let mut out = Vec::with_capacity(self.words.len());
        let mut last_line = None;
        let mut line = 0u32;
        for raw in self.words {
            let s = if raw.relative { relative } else { page };
            let [x0, y0, x1, y1] = raw.bbox;
            let (Some((x, w)), Some((y, h))) = (span(x0, x1, s.ox, s.sx, cw), span(y0, y1, s.oy, s.sy, ch)) else {
                continue;
            };
            match last_line {
                Some(l) if l == raw.line => {}
                Some(_) => line += 1,
                None => {}
            }
            last_line = Some(raw.line);
            out.push(Word { text: raw.text, x, y, w, h, line });
        }
        out
    }
}

/// canvas = (value − o) × s.
#[derive(Clone, Copy)]
struct Scale {
    ox: f64,
    oy: f64,
    sx: f64,
    sy: f64,
}

impl Scale {
    const IDENTITY: Scale = Scale { ox: 0.0, oy: 0.0, sx: 1.0, sy: 1.0 };

    /// A page at (x0, y0) of size w × h onto the canvas.
    fn page(x0: f64, y0: f64, w: f64, h: f64, (cw, ch): (u32, u32)) -> Result<Scale, OcrError> {
        if !(w.is_finite() && h.is_finite() && w > 0.0 && h > 0.0) {
            return Err(OcrError::InvalidPageSize);
        }
        Ok(Scale { ox: x0, oy: y0, sx: f64::from(cw) / w, sy: f64::from(ch) / h })
    }
}

/// One axis of a box on the canvas: edges rounded to the nearest pixel and
/// clamped to 0..=limit; None when nothing is left.
fn span(a: f64, b: f64, o: f64, s: f64, limit: u32) -> Option<(u32, u32)> {
    let max = f64::from(limit);
    let lo = ((a - o) * s).round();
    let hi = ((b - o) * s).round();
    if lo.is_nan() || hi.is_nan() {
        return None;
    }
    let (lo, hi) = (lo.clamp(0.0, max), hi.clamp(0.0, max));
    if hi <= lo {
        return None;
    }
    // Both are whole numbers in 0..=u32::MAX here.
    Some((lo as u32, (hi - lo) as u32))
}

/// Two page-size strings as positive numbers.
fn page_size_of(w: &str, h: &str) -> Result<(f64, f64), OcrError> {
    match (parse_number(w), parse_number(h)) {
        (Some(w), Some(h)) if w > 0.0 && h > 0.0 => Ok((w, h)),
        _ => Err(OcrError::InvalidPageSize),
    }
}

/// A finite decimal number (integer or float, as OCR tools write them).
fn parse_number(s: &str) -> Option<f64> {
    let s = s.trim();
    // Rust also accepts "inf", "NaN" and "infinity"; OCR numbers are digits.
    if !s.bytes().all(|b| b.is_ascii_digit() || matches!(b, b'.' | b'-' | b'+' | b'e' | b'E')) {
        return None;
    }
    s.parse::<f64>().ok().filter(|v| v.is_finite())
}

/// Trims and folds runs of white space into one space.
fn fold_space(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for part in s.split_whitespace() {
        if !out.is_empty() {
            out.push(' ');
        }
        out.push_str(part);
    }
    out
}

/// Appends the text of an entity or character reference: the five XML
/// entities and character references are resolved, anything else is kept
/// as written (it is never expanded).
fn push_ref(out: &mut String, r: &BytesRef<'_>) {
    match r.resolve_char_ref() {
        Ok(Some(c)) => out.push(c),
        Ok(None) => match resolve_xml_entity(r) {
            Some(s) => out.push_str(s),
            None => {
                out.push('&');
                out.push_str(r);
                out.push(';');
            }
        },
        Err(_) => out.push(char::REPLACEMENT_CHARACTER),
    }
}

/// Appends at most a few dozen characters (for short values like units).
fn push_capped(out: &mut String, s: &str) {
    for c in s.chars() {
        if out.len() >= 32 {
            return;
        }
        out.push(c);
    }
}

/// Calls `f(local name, value)` for each attribute, values with entities
/// and character references resolved (left as written if that fails). In
/// `html` mode unquoted and valueless attributes are accepted.
fn each_attr(e: &BytesStart<'_>, html: bool, mut f: impl FnMut(&str, Cow<'_, str>)) -> Result<(), ()> {
    let attrs = if html { e.html_attributes() } else { e.attributes() };
    for a in attrs {
        let a = a.map_err(|_| ())?;
        let value = a.normalized_value(XmlVersion::Implicit1_0).unwrap_or_else(|_| a.value.clone());
        let key = a.key.local_name();
        f(key.as_ref(), value);
    }
    Ok(())
}

/// True when the root `alto` element is in an ALTO namespace or in none.
fn alto_namespace_ok(root: &BytesStart<'_>) -> bool {
    let name = root.name();
    let wanted = match name.prefix() {
        Some(p) => format!("xmlns:{}", p.as_ref()),
        None => "xmlns".to_string(),
    };
    let mut ns: Option<String> = None;
    if each_attr_qualified(root, |k, v| {
        if k == wanted {
            ns = Some(v.into_owned());
        }
    })
    .is_err()
    {
        return false;
    }
    match ns {
        None => name.prefix().is_none(),
        Some(ns) => {
            let ns = ns.trim();
            ns.starts_with("http://www.loc.gov/standards/alto/") || ns == "http://schema.ccs-gmbh.com/ALTO"
        }
    }
}

/// As [`each_attr`] with the full attribute name (`xmlns:alto`).
fn each_attr_qualified(e: &BytesStart<'_>, mut f: impl FnMut(&str, Cow<'_, str>)) -> Result<(), ()> {
    for a in e.attributes() {
        let a = a.map_err(|_| ())?;
        let value = a.normalized_value(XmlVersion::Implicit1_0).unwrap_or_else(|_| a.value.clone());
        f(a.key.as_ref(), value);
    }
    Ok(())
}

/// A reader over UTF-8 input. `lenient` (sniffing and hOCR, which may be
/// HTML): end tags need not match, a lone `&` is text.
fn xml_reader(data: &[u8], lenient: bool) -> Reader<&[u8]> {
    let mut r = Reader::from_reader(data);
    let c = r.config_mut();
    c.trim_text(false);
    c.expand_empty_elements = false;
    if lenient {
        c.check_end_names = false;
        c.allow_unmatched_ends = true;
        c.allow_dangling_amp = true;
    }
    r
}

fn strip_bom(data: &[u8]) -> &[u8] {
    data.strip_prefix(UTF8_BOM).unwrap_or(data)
}

fn is_xml_space(s: &str) -> bool {
    s.bytes().all(|b| matches!(b, b' ' | b'\t' | b'\r' | b'\n'))
}

fn malformed_at(offset: u64) -> OcrError {
    OcrError::Malformed { offset }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::rngs::SmallRng;
    use rand::{Rng, SeedableRng};

    fn w(text: &str, x: u32, y: u32, ww: u32, h: u32, line: u32) -> Word {
        Word { text: text.to_string(), x, y, w: ww, h, line }
    }

    const ALTO_V2_PIXEL: &str = r#"<?xml version="1.0" encoding="UTF-8"?>
<alto xmlns="http://www.loc.gov/standards/alto/ns-v2#" xmlns:xlink="http://www.w3.org/1999/xlink">
  <Description><MeasurementUnit>pixel</MeasurementUnit></Description>
  <Layout>
    <Page ID="P1" WIDTH="1000" HEIGHT="1500" PHYSICAL_IMG_NR="1">
      <PrintSpace HPOS="0" VPOS="0" WIDTH="1000" HEIGHT="1500">
        <TextBlock ID="B1" HPOS="100" VPOS="100" WIDTH="400" HEIGHT="100">
          <TextLine ID="L1" HPOS="100" VPOS="100" WIDTH="400" HEIGHT="40">
            <String ID="S1" CONTENT="Hello" HPOS="100" VPOS="100" WIDTH="150" HEIGHT="40" WC="0.9"/>
            <SP WIDTH="10" HPOS="250" VPOS="100"/>
            <String ID="S2" CONTENT="AT&amp;T&#x2019;s" HPOS="260" VPOS="102" WIDTH="120.5" HEIGHT="38"/>
          </TextLine>
          <TextLine ID="L2" HPOS="100" VPOS="160" WIDTH="200" HEIGHT="40">
            <String ID="S3" CONTENT="world" HPOS="100" VPOS="160" WIDTH="200" HEIGHT="40">
              <ALTERNATIVE>word</ALTERNATIVE>
            </String>
          </TextLine>
        </TextBlock>
      </PrintSpace>
    </Page>
  </Layout>
</alto>
"#;

    const ALTO_V4_MM10: &str = r#"<?xml version="1.0" encoding="UTF-8"?>
<alto xmlns="http://www.loc.gov/standards/alto/ns-v4#" xmlns:xsi="http://www.w3.org/2001/XMLSchema-instance"
      xsi:schemaLocation="http://www.loc.gov/standards/alto/ns-v4# http://www.loc.gov/standards/alto/v4/alto-4-2.xsd">
  <Description>
    <MeasurementUnit>mm10</MeasurementUnit>
    <sourceImageInformation><fileName>p1.tif</fileName></sourceImageInformation>
  </Description>
  <Layout>
    <Page ID="P1" PHYSICAL_IMG_NR="1" WIDTH="2100" HEIGHT="2970.0">
      <PrintSpace>
        <TextBlock ID="B1">
          <TextLine ID="L1">
            <String CONTENT="Title" HPOS="100" VPOS="200" WIDTH="50.5" HEIGHT="30"/>
            <SP/>
            <String CONTENT="page" HPOS="160.25" VPOS="200" WIDTH="40" HEIGHT="30"/>
          </TextLine>
        </TextBlock>
      </PrintSpace>
    </Page>
  </Layout>
</alto>
"#;

    const ALTO_V3_INCH1200: &str = r#"<alto xmlns="http://www.loc.gov/standards/alto/ns-v3#">
  <Description><MeasurementUnit> inch1200 </MeasurementUnit></Description>
  <Layout><Page WIDTH="9600" HEIGHT="13200"><PrintSpace><TextBlock><TextLine>
    <String CONTENT="inch" HPOS="1200" VPOS="2400" WIDTH="2400" HEIGHT="600"/>
  </TextLine></TextBlock></PrintSpace></Page></Layout>
</alto>"#;

    const HOCR: &str = r#"<?xml version="1.0" encoding="UTF-8"?>
<!DOCTYPE html PUBLIC "-//W3C//DTD XHTML 1.0 Transitional//EN"
    "http://www.w3.org/TR/xhtml1/DTD/xhtml1-transitional.dtd">
<html xmlns="http://www.w3.org/1999/xhtml" xml:lang="en" lang="en">
 <head>
  <title></title>
  <meta http-equiv="Content-Type" content="text/html;charset=utf-8"/>
  <meta name='ocr-system' content='tesseract 5.3.0' />
  <meta name='ocr-capabilities' content='ocr_page ocr_carea ocr_par ocr_line ocrx_word ocrp_wconf'/>
 </head>
 <body>
  <div class='ocr_page' id='page_1' title='image "scan;1.png"; bbox 0 0 1000 800; ppageno 0; scan_res 300 300'>
   <div class='ocr_carea' id='block_1_1' title="bbox 100 100 900 300">
    <p class='ocr_par' id='par_1_1' lang='eng' title="bbox 100 100 900 300">
     <span class='ocr_line' id='line_1_1' title="bbox 100 100 900 140; baseline 0 -8; x_size 40">
      <span class='ocrx_word' id='word_1_1' title='bbox 100 100 250 140; x_wconf 96'>Tom</span>
      <span class='ocrx_word' id='word_1_2' title='bbox 260 100 400 140; x_wconf 95'><strong>&amp;</strong></span>
      <span class='ocrx_word' id='word_1_3' title='bbox 410 100 600 140; x_wconf 91'><em>Jerry</em>&#x2019;s</span>
     </span>
     <span class='ocr_caption' id='line_1_2' title="bbox 100 200 900 240">
      <span class='ocrx_word' id='word_1_4' title='bbox 100 200 300 240; x_wconf 90'>
        caption
      </span>
      <span class='ocrx_word' id='word_1_5' title='bbox 320 200 330 240'> </span>
     </span>
     <span class='ocr_textfloat' id='line_1_3' title="bbox 100 250 900 290">
      <span class='ocrx_word' id='word_1_6' title='bbox 100 250 200 290'>float</span>
     </span>
    </p>
   </div>
  </div>
 </body>
</html>
"#;

    const MINI_ABSOLUTE: &str = r#"<?xml version="1.0" encoding="UTF-8"?>
<ocr><p xml:id="page_1" wh="500 1000"><b>
  <l><w x="50 100 100 20">alpha</w> <w x="160 100 80 20">be&amp;ta</w></l>
  <l><w x="50 140 120 20">gamma</w></l>
</b></p></ocr>"#;

    const MINI_RELATIVE: &str = r#"<ocr><p xml:id="page_1"><b>
  <l><w x="0.1 0.25 0.2 0.05">alpha</w><w x="0.35 0.25 0.1 0.05">beta</w></l>
  <l><w x="0.1 0.5 0 0.05">empty</w><w x=".8 0.5 0.5 0.05">edge</w></l>
</b></p></ocr>"#;

    #[test]
    fn alto_v2_pixel_boxes_are_scaled_to_the_canvas() {
        let words = parse(ALTO_V2_PIXEL.as_bytes(), 2000, 3000).unwrap();
        assert_eq!(
            words,
            vec![
                w("Hello", 200, 200, 300, 80, 0),
                // 260..380.5 × 2 = 520..761.
                w("AT&T\u{2019}s", 520, 204, 241, 76, 0),
                w("world", 200, 320, 400, 80, 1),
            ]
        );
    }

    #[test]
    fn alto_mm10_boxes_are_scaled_to_the_canvas() {
        let words = parse(ALTO_V4_MM10.as_bytes(), 4200, 5940).unwrap();
        // 100..150.5 mm10 × 2 = 200..301; 160.25..200.25 × 2 = 320.5..400.5 → 321..401.
        assert_eq!(words, vec![w("Title", 200, 400, 101, 60, 0), w("page", 321, 400, 80, 60, 0)]);
    }

    #[test]
    fn alto_inch1200_boxes_are_scaled_to_the_canvas() {
        let words = parse(ALTO_V3_INCH1200.as_bytes(), 2400, 3300).unwrap();
        assert_eq!(words, vec![w("inch", 300, 600, 600, 150, 0)]);
    }

    #[test]
    fn alto_pixel_without_page_size_is_taken_as_canvas_pixels() {
        let doc = r#"<alto xmlns="http://www.loc.gov/standards/alto/ns-v3#"><Layout><Page><PrintSpace><TextBlock>
            <TextLine><String CONTENT="as-is" HPOS="10" VPOS="20" WIDTH="30" HEIGHT="40"/></TextLine>
            </TextBlock></PrintSpace></Page></Layout></alto>"#;
        assert_eq!(parse(doc.as_bytes(), 500, 500).unwrap(), vec![w("as-is", 10, 20, 30, 40, 0)]);
    }

    #[test]
    fn alto_physical_units_without_page_size_are_refused() {
        for (unit, name) in [("mm10", "mm10"), ("inch1200", "inch1200"), ("furlong", "an unknown unit")] {
            let doc = format!(
                r#"<alto xmlns="http://www.loc.gov/standards/alto/ns-v4#"><Description><MeasurementUnit>{unit}</MeasurementUnit></Description>
                <Layout><Page ID="p"><PrintSpace><TextLine><String CONTENT="x" HPOS="1" VPOS="1" WIDTH="1" HEIGHT="1"/></TextLine></PrintSpace></Page></Layout></alto>"#
            );
            let e = parse(doc.as_bytes(), 100, 100).unwrap_err();
            assert_eq!(e, OcrError::MissingPageSize { unit: name });
            assert!(e.to_string().contains(name), "{e}");
        }
    }

    #[test]
    fn invalid_page_sizes_are_refused() {
        let alto = |w: &str, h: &str| {
            format!(
                r#"<alto xmlns="http://www.loc.gov/standards/alto/ns-v2#"><Layout><Page WIDTH="{w}" HEIGHT="{h}"/></Layout></alto>"#
            )
        };
        for (pw, ph) in [("0", "100"), ("100", "-5"), ("abc", "100"), ("inf", "100"), ("NaN", "1"), ("", "1")] {
            assert_eq!(parse(alto(pw, ph).as_bytes(), 10, 10), Err(OcrError::InvalidPageSize), "{pw} {ph}");
        }
        let hocr = r#"<html><body><div class="ocr_page" title="bbox 0 0 0 800"></div></body></html>"#;
        assert_eq!(parse(hocr.as_bytes(), 10, 10), Err(OcrError::InvalidPageSize));
        let hocr = r#"<html><body><div class="ocr_page" title="bbox 0 0 wide 800"></div></body></html>"#;
        assert_eq!(parse(hocr.as_bytes(), 10, 10), Err(OcrError::InvalidPageSize));
        let mini = r#"<ocr><p wh="100"><l><w x="1 1 1 1">a</w></l></p></ocr>"#;
        assert_eq!(parse(mini.as_bytes(), 10, 10), Err(OcrError::InvalidPageSize));
        let mini = r#"<ocr><p wh="100 0"/></ocr>"#;
        assert_eq!(parse(mini.as_bytes(), 10, 10), Err(OcrError::InvalidPageSize));
    }

    #[test]
    fn alto_hyphenated_words_carry_the_full_word_on_both_parts() {
        let doc = r#"<alto xmlns="http://www.loc.gov/standards/alto/ns-v4#"><Layout><Page WIDTH="100" HEIGHT="100"><PrintSpace><TextBlock>
            <TextLine>
              <String CONTENT="the" HPOS="0" VPOS="10" WIDTH="20" HEIGHT="10"/><SP/>
              <String CONTENT="Con" SUBS_TYPE="HypPart1" SUBS_CONTENT="Content" HPOS="30" VPOS="10" WIDTH="30" HEIGHT="10"/>
              <HYP CONTENT="-" HPOS="60" VPOS="10" WIDTH="5" HEIGHT="10"/>
            </TextLine>
            <TextLine>
              <String CONTENT="tent" SUBS_TYPE="HypPart2" SUBS_CONTENT="Content" HPOS="0" VPOS="30" WIDTH="40" HEIGHT="10"/><SP/>
              <String CONTENT="here" HPOS="50" VPOS="30" WIDTH="40" HEIGHT="10"/>
              <String CONTENT="lone" SUBS_TYPE="HypPart1" HPOS="90" VPOS="30" WIDTH="10" HEIGHT="10"/>
            </TextLine>
            </TextBlock></PrintSpace></Page></Layout></alto>"#;
        assert_eq!(
            parse(doc.as_bytes(), 100, 100).unwrap(),
            vec![
                w("the", 0, 10, 20, 10, 0),
                w("Content", 30, 10, 30, 10, 0),
                w("Content", 0, 30, 40, 10, 1),
                w("here", 50, 30, 40, 10, 1),
                // No SUBS_CONTENT: the part as written.
                w("lone", 90, 30, 10, 10, 1),
            ]
        );
    }

    #[test]
    fn alto_prefixed_namespace_and_only_the_first_page_are_read() {
        let doc = r#"<a:alto xmlns:a="http://www.loc.gov/standards/alto/ns-v3#"><a:Layout>
            <a:Page WIDTH="10" HEIGHT="10"><a:TextLine><a:String CONTENT="one" HPOS="1" VPOS="1" WIDTH="2" HEIGHT="2"/></a:TextLine></a:Page>
            <a:Page WIDTH="10" HEIGHT="10"><a:TextLine><a:String CONTENT="two" HPOS="1" VPOS="1" WIDTH="2" HEIGHT="2"/></a:TextLine></a:Page>
            </a:Layout></a:alto>"#;
        assert_eq!(sniff(doc.as_bytes()), Some(OcrFormat::Alto));
        assert_eq!(parse(doc.as_bytes(), 20, 20).unwrap(), vec![w("one", 2, 2, 4, 4, 0)]);
    }

    #[test]
    fn hocr_boxes_are_scaled_and_nested_text_and_entities_decoded() {
        let words = parse(HOCR.as_bytes(), 2000, 1600).unwrap();
        assert_eq!(
            words,
            vec![
                w("Tom", 200, 200, 300, 80, 0),
                w("&", 520, 200, 280, 80, 0),
                w("Jerry\u{2019}s", 820, 200, 380, 80, 0),
                w("caption", 200, 400, 400, 80, 1),
                w("float", 200, 500, 200, 80, 2),
            ]
        );
    }

    #[test]
    fn hocr_page_bbox_offset_and_missing_page_size() {
        // The page bbox starts at (100, 50): word boxes are page-relative.
        let doc = r#"<html><body><div class="ocr_page" title="bbox 100 50 600 550">
            <span class="ocrx_word" title="bbox 100 50 200 100">a</span></div></body></html>"#;
        assert_eq!(parse(doc.as_bytes(), 1000, 1000).unwrap(), vec![w("a", 0, 0, 200, 100, 0)]);
        // No bbox on the page: pixels of the canvas.
        let doc = r#"<html><body><div class="ocr_page" title="image 'x.png'">
            <span class="ocrx_word" title="bbox 10 20 30 40;x_wconf 3">b</span></div></body></html>"#;
        assert_eq!(parse(doc.as_bytes(), 1000, 1000).unwrap(), vec![w("b", 10, 20, 20, 20, 0)]);
    }

    #[test]
    fn html_hocr_with_void_elements_and_unquoted_attributes_parses() {
        let doc = "<!DOCTYPE html>\n<html><head><meta charset=utf-8><title>x & y</title></head>\
            <body><div class=ocr_page title='bbox 0 0 100 100'><p class=ocr_par><span class=ocr_line>\
            <span class=ocrx_word title='bbox 10 10 20 20'>one<br></span>\
            <span class='ocrx_word' title='bbox 30 10 40 20'>two</span></span>\
            <span class=ocr_line><span class=ocrx_word title='bbox 10 30 20 40'>three</span></span>\
            </div></body></html>";
        assert_eq!(sniff(doc.as_bytes()), Some(OcrFormat::Hocr));
        assert_eq!(
            parse(doc.as_bytes(), 100, 100).unwrap(),
            vec![w("one", 10, 10, 10, 10, 0), w("two", 30, 10, 10, 10, 0), w("three", 10, 30, 10, 10, 1)]
        );
    }

    #[test]
    fn miniocr_absolute_boxes_are_scaled_by_the_page_size() {
        let words = parse(MINI_ABSOLUTE.as_bytes(), 1000, 2000).unwrap();
        assert_eq!(
            words,
            vec![w("alpha", 100, 200, 200, 40, 0), w("be&ta", 320, 200, 160, 40, 0), w("gamma", 100, 280, 240, 40, 1),]
        );
    }

    #[test]
    fn miniocr_absolute_boxes_without_page_size_are_canvas_pixels() {
        let doc = MINI_ABSOLUTE.replace(r#" wh="500 1000""#, "");
        assert_eq!(parse(doc.as_bytes(), 1000, 2000).unwrap()[0], w("alpha", 50, 100, 100, 20, 0));
    }

    #[test]
    fn miniocr_relative_boxes_are_fractions_of_the_canvas() {
        let words = parse(MINI_RELATIVE.as_bytes(), 1000, 2000).unwrap();
        assert_eq!(
            words,
            vec![
                w("alpha", 100, 500, 200, 100, 0),
                w("beta", 350, 500, 100, 100, 0),
                // `empty` has no width; `edge` is clamped at the right edge.
                w("edge", 800, 1000, 200, 100, 1),
            ]
        );
    }

    #[test]
    fn boxes_are_clamped_and_empty_words_dropped() {
        let doc = r#"<ocr><p><l>
            <w x="-10 -10 30 30">clamped</w>
            <w x="2000 10 30 30">outside</w>
            <w x="10 10 30 30">   </w>
            <w x="10 10 30 30"/>
            <w x="1 2 3">short</w>
            <w x="a b c d">letters</w>
            <w>nobox</w>
            <w x="90 90 30 30">corner</w>
            </l></p></ocr>"#;
        assert_eq!(
            parse(doc.as_bytes(), 100, 100).unwrap(),
            vec![w("clamped", 0, 0, 20, 20, 0), w("corner", 90, 90, 10, 10, 0)]
        );
        // A zero-sized canvas keeps nothing.
        assert_eq!(parse(doc.as_bytes(), 0, 0).unwrap(), vec![]);
    }

    #[test]
    fn lines_are_numbered_from_zero_without_gaps() {
        // Empty lines and lines whose words are all dropped take no number;
        // white space inside a word folds to one space.
        let doc = r#"<ocr><p>
            <l><w x="1 1 1 1">a</w><w x="3 1 1 1">b</w></l>
            <l></l><l/>
            <l><w x="500 500 1 1">gone</w></l>
            <l><w x="1 3 1 1">c
               d</w></l>
            <w x="1 5 1 1">loose</w>
            <l><w x="1 7 1 1">e</w></l>
            </p></ocr>"#;
        let words = parse(doc.as_bytes(), 10, 10).unwrap();
        let got: Vec<(&str, u32)> = words.iter().map(|w| (w.text.as_str(), w.line)).collect();
        assert_eq!(got, vec![("a", 0), ("b", 0), ("c d", 1), ("loose", 2), ("e", 3)]);
    }

    #[test]
    fn sniffing_recognises_each_format() {
        assert_eq!(sniff(ALTO_V2_PIXEL.as_bytes()), Some(OcrFormat::Alto));
        assert_eq!(sniff(ALTO_V3_INCH1200.as_bytes()), Some(OcrFormat::Alto));
        assert_eq!(sniff(ALTO_V4_MM10.as_bytes()), Some(OcrFormat::Alto));
        assert_eq!(sniff(HOCR.as_bytes()), Some(OcrFormat::Hocr));
        assert_eq!(sniff(MINI_ABSOLUTE.as_bytes()), Some(OcrFormat::MiniOcr));
        assert_eq!(sniff(MINI_RELATIVE.as_bytes()), Some(OcrFormat::MiniOcr));
        assert_eq!(sniff(b"<ocr/>"), Some(OcrFormat::MiniOcr));
        assert_eq!(sniff(b"<alto/>"), Some(OcrFormat::Alto));
        // BOM, declaration, comments, processing instruction and doctype are skipped.
        let doc = format!(
            "\u{feff}<?xml version=\"1.0\"?>\n<!-- made by hand -->\n<?xml-stylesheet href=\"a.xsl\"?>\
             <!DOCTYPE ocr [<!ENTITY e \"x\">]>\n<!-- again -->\n{}",
            MINI_RELATIVE
        );
        assert_eq!(sniff(doc.as_bytes()), Some(OcrFormat::MiniOcr));
        assert_eq!(parse(doc.as_bytes(), 1000, 2000).unwrap().len(), 3);
    }

    #[test]
    fn sniffing_refuses_what_is_not_ocr() {
        let not_ocr: [&[u8]; 14] = [
            b"",
            b"   \n",
            b"{\"words\": [\"<alto/>\"]}",
            b"plain text about <alto/> documents",
            b"\x00\x01\x02\xff",
            b"\xff\xfe<\x00a\x00l\x00t\x00o\x00/\x00>\x00",
            b"<alto xmlns=\"http://example.org/not-alto\"/>",
            b"<x:alto xmlns:x=\"http://example.org/not-alto\"/>",
            b"<x:alto/>",
            b"<html><body><p class=\"ocr_par\">no page or word</p></body></html>",
            b"<html/>",
            b"<ocr><page/></ocr>",
            b"<ocr>text first<w x=\"1 1 1 1\">a</w></ocr>",
            b"<svg xmlns=\"http://www.w3.org/2000/svg\"><text>ocr_page</text></svg>",
        ];
        for d in not_ocr {
            assert_eq!(sniff(d), None, "{:?}", String::from_utf8_lossy(d));
            assert_eq!(parse(d, 100, 100), Err(OcrError::NotOcr), "{:?}", String::from_utf8_lossy(d));
        }
    }

    #[test]
    fn truncated_documents_are_errors() {
        for (doc, close) in [
            (ALTO_V2_PIXEL, "</alto>"),
            (ALTO_V4_MM10, "</alto>"),
            (HOCR, "</html>"),
            (MINI_ABSOLUTE, "</ocr>"),
            (MINI_RELATIVE, "</ocr>"),
        ] {
            let end = doc.rfind(close).unwrap();
            for cut in 0..end {
                let r = parse(&doc.as_bytes()[..cut], 1000, 1000);
                assert!(r.is_err(), "cut at {cut} of {close}: {r:?}");
            }
            // The whole document, and without its trailing newline, is fine.
            parse(doc.as_bytes(), 1000, 1000).unwrap();
            parse(doc.trim_end().as_bytes(), 1000, 1000).unwrap();
        }
    }

    #[test]
    fn malformed_xml_is_an_error_that_does_not_quote_the_document() {
        let cases: [&[u8]; 7] = [
            b"<alto xmlns=\"http://www.loc.gov/standards/alto/ns-v4#\"><Layout></Page></alto>",
            b"<alto><Layout><Page WIDTH=\"1\" WIDTH=\"2\"/></Layout></alto>",
            b"<alto><Layout><String CONTENT=\"secret\" HPOS=1/></Layout></alto>",
            b"<ocr><p><l><w x=\"1 1 1 1\">secret</l></w></p></ocr>",
            b"<ocr><p><w x=\"1 1 1 1\">secret \xff\xfe</w></p></ocr>",
            b"<ocr><p><w x=\"1 1 1 1\">a & b</w></p></ocr>",
            b"<html><body><div class=\"ocr_page\"><span class=\"ocrx_word\" title=\"bbox 1 1 2 2\">secret</span></div>",
        ];
        for d in cases {
            let e = parse(d, 100, 100).unwrap_err();
            assert!(matches!(e, OcrError::Malformed { .. }), "{:?}: {e:?}", String::from_utf8_lossy(d));
            assert!(!e.to_string().contains("secret"), "{e}");
        }
    }

    #[test]
    fn entities_are_decoded_but_never_expanded() {
        // Internal entity declarations are not expanded (no entity bombs):
        // the reference stays as written.
        let doc = r#"<?xml version="1.0"?>
<!DOCTYPE ocr [<!ENTITY lol "lollollollollollollollol"><!ENTITY ext SYSTEM "file:///etc/passwd">]>
<ocr><p><l><w x="1 1 1 1">&lol;</w><w x="2 1 1 1">&ext;</w><w x="3 1 1 1">&lt;&#65;&#x42;&quot;&gt;</w></l></p></ocr>"#;
        let got: Vec<String> = parse(doc.as_bytes(), 10, 10).unwrap().into_iter().map(|w| w.text).collect();
        assert_eq!(got, vec!["&lol;", "&ext;", "<AB\">"]);
        // In attributes too.
        let doc = r#"<alto><Layout><Page WIDTH="10" HEIGHT="10"><TextLine>
            <String CONTENT="&quot;Q&amp;A&quot; &#233;t&#xE9;" HPOS="1" VPOS="1" WIDTH="1" HEIGHT="1"/></TextLine></Page></Layout></alto>"#;
        assert_eq!(parse(doc.as_bytes(), 10, 10).unwrap()[0].text, "\"Q&A\" été");
    }

    #[test]
    fn a_page_over_the_word_limit_is_refused() {
        let word = r#"<w x="1 1 1 1">a</w>"#;
        let mut doc = String::with_capacity((MAX_WORDS + 1) * word.len() + 64);
        doc.push_str("<ocr><p><l>");
        for _ in 0..=MAX_WORDS {
            doc.push_str(word);
        }
        doc.push_str("</l></p></ocr>");
        assert!(doc.len() <= MAX_OCR_BYTES);
        assert_eq!(parse(doc.as_bytes(), 10, 10), Err(OcrError::TooManyWords { limit: MAX_WORDS }));
    }

    #[test]
    fn input_over_the_byte_limit_is_refused_before_parsing() {
        let data = vec![b' '; MAX_OCR_BYTES + 1];
        let e = parse(&data, 10, 10).unwrap_err();
        assert_eq!(e, OcrError::TooLarge { size: MAX_OCR_BYTES + 1, limit: MAX_OCR_BYTES });
    }

    #[test]
    fn deep_nesting_is_refused() {
        let deep = |open: &str, close: &str, head: &str, tail: &str| {
            format!("{head}{}{}{tail}", open.repeat(MAX_DEPTH + 10), close.repeat(MAX_DEPTH + 10))
        };
        let mini = deep("<b>", "</b>", "<ocr>", "</ocr>");
        assert_eq!(parse(mini.as_bytes(), 10, 10), Err(OcrError::TooDeep { limit: MAX_DEPTH }));
        let alto = deep("<TextBlock>", "</TextBlock>", "<alto>", "</alto>");
        assert_eq!(parse(alto.as_bytes(), 10, 10), Err(OcrError::TooDeep { limit: MAX_DEPTH }));
        let hocr = deep("<div>", "</div>", "<html><body><div class='ocr_page'>", "</div></body></html>");
        assert_eq!(parse(hocr.as_bytes(), 10, 10), Err(OcrError::TooDeep { limit: MAX_DEPTH }));
    }

    #[test]
    fn random_byte_flips_never_panic() {
        let mut rng = SmallRng::seed_from_u64(0x0c5e_a4c4);
        for doc in [ALTO_V2_PIXEL, ALTO_V4_MM10, ALTO_V3_INCH1200, HOCR, MINI_ABSOLUTE, MINI_RELATIVE] {
            for _ in 0..1500 {
                let mut d = doc.as_bytes().to_vec();
                for _ in 0..rng.random_range(1..=6) {
                    let i = rng.random_range(0..d.len());
                    d[i] = match rng.random_range(0..4) {
                        0 => rng.random(),
                        1 => b"<>/&;\"'= .-0123456789#x"[rng.random_range(0..23)],
                        2 => d[i] ^ (1 << rng.random_range(0..8)),
                        _ => b' ',
                    };
                }
                if rng.random_bool(0.2) {
                    d.truncate(rng.random_range(0..d.len()));
                }
                let _ = sniff(&d);
                let (cw, ch) = (rng.random_range(0..3000), rng.random_range(0..3000));
                if let Ok(words) = parse(&d, cw, ch) {
                    for w in words {
                        assert!(!w.text.is_empty() && w.w > 0 && w.h > 0);
                        assert!(w.x + w.w <= cw && w.y + w.h <= ch, "{w:?} on {cw}×{ch}");
                    }
                }
            }
        }
    }

    #[test]
    fn error_texts_are_fixed_strings_and_numbers() {
        let all = [
            OcrError::NotOcr,
            OcrError::Malformed { offset: 7 },
            OcrError::MissingPageSize { unit: "mm10" },
            OcrError::InvalidPageSize,
            OcrError::TooLarge { size: 9, limit: 8 },
            OcrError::TooManyWords { limit: MAX_WORDS },
            OcrError::TooDeep { limit: MAX_DEPTH },
        ];
        for e in all {
            let s = e.to_string();
            assert!(s.starts_with("OCR ") || s.starts_with("not an OCR") || s.starts_with("malformed OCR"), "{s}");
        }
    }
}
