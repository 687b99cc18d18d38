//! IIIF Content Search 1.0 inside one item, over the OCR word boxes of its
//! canvases: the text folding (Unicode word boundaries, lower case, no
//! diacritics), the embedded index behind the [`SearchBackend`] trait, and
//! the two documents the API defines: the search response (an
//! `sc:AnnotationList` with `hits`, what Mirador 3 reads) and the
//! autocomplete `search:TermList`.
//!
//! Pure: the index is built from words already read (`ocr::parse`), and the
//! documents from a query and URLs; reading files and HTTP live in
//! `manifests`.
//!
//! Query language: words match whole words after folding ("Éte" finds
//! "ete", "ÉTÉ" and "été"); several words find each of them; words in double
//! quotes find the phrase (consecutive words, across line breaks). Hits are
//! ordered by canvas, then by reading order.

use std::collections::HashMap;

use serde_json::{json, Value};
use unicode_normalization::char::is_combining_mark;
use unicode_normalization::UnicodeNormalization;
use unicode_segmentation::UnicodeSegmentation;

use super::ocr::Word;

/// `@context` of Search 1.0 documents.
pub const SEARCH_CONTEXT: &str = "http://iiif.io/api/search/1/context.json";
/// Profile of the Search 1.0 search service.
pub const SEARCH_PROFILE: &str = "http://iiif.io/api/search/1/search";
/// Profile of the Search 1.0 autocomplete service.
pub const AUTOCOMPLETE_PROFILE: &str = "http://iiif.io/api/search/1/autocomplete";
/// `@context` of Presentation 2 resources (the annotations).
const PRESENTATION_CONTEXT: &str = "http://iiif.io/api/presentation/2/context.json";

/// Hits per page of a search response.
pub const HITS_PER_PAGE: usize = 100;
/// Terms in one autocomplete answer at most.
pub const MAX_TERMS: usize = 50;
/// Words of context on each side of a hit.
const CONTEXT_WORDS: usize = 6;
/// Longest query considered (characters); the rest is ignored.
pub const MAX_QUERY_CHARS: usize = 1000;
/// Most words or phrases in one query.
const MAX_QUERY_TERMS: usize = 32;

/// Folds a word for matching: canonical decomposition, combining marks
/// dropped, lower case.
pub fn fold(word: &str) -> String {
    word.nfd().filter(|c| !is_combining_mark(*c)).flat_map(char::to_lowercase).collect()
}

/// The folded tokens of a text, by Unicode word boundaries (UAX #29).
pub fn tokens(text: &str) -> Vec<String> {
    text.unicode_words().map(fold).filter(|t| !t.is_empty()).collect()
}

/// A query: the phrases it asks for, each a list of folded tokens (a plain
/// word is a phrase of one).
pub fn parse_query(q: &str) -> Vec<Vec<String>> {
    let q: String = q.chars().take(MAX_QUERY_CHARS).collect();
    let mut phrases = Vec::new();
    for (i, part) in q.split('"').enumerate() {
        if i % 2 == 1 {
            // Inside quotes (an unclosed quote runs to the end).
            let p = tokens(part);
            if !p.is_empty() {
                phrases.push(p);
            }
        } else {
            phrases.extend(tokens(part).into_iter().map(|t| vec![t]));
        }
    }
    let mut seen = Vec::new();
    phrases.retain(|p| {
        let new = !seen.contains(p);
        if new {
            seen.push(p.clone());
        }
        new
    });
    phrases.truncate(MAX_QUERY_TERMS);
    phrases
}

/// The words of one canvas, with their folded tokens in reading order.
#[derive(Debug, Default)]
struct CanvasText {
    words: Vec<Word>,
    /// (folded token, index of its word in `words`).
    tokens: Vec<(String, u32)>,
}

/// One occurrence: canvas, position of the first token, token count.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
struct Occurrence {
    canvas: u32,
    start: u32,
    len: u32,
}

/// A box on a canvas and the text it covers.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct HitBox {
    pub canvas: usize,
    pub x: u32,
    pub y: u32,
    pub w: u32,
    pub h: u32,
    pub text: String,
}

/// One hit: its boxes (one per line it spans) and its words in context.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Hit {
    pub boxes: Vec<HitBox>,
    pub matched: String,
    pub before: String,
    pub after: String,
}

/// One page of results.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Results {
    pub hits: Vec<Hit>,
    /// Hits in all pages.
    pub total_hits: usize,
    /// Boxes (annotations) in all pages, and before this page.
    pub total_boxes: usize,
    pub boxes_before: usize,
    pub page: usize,
    pub pages: usize,
}

/// An autocomplete term: the folded word and how often it occurs.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Term {
    pub text: String,
    pub count: usize,
}

/// What answers searches inside an item. The embedded [`MemoryIndex`] is the
/// one implementation; a shared search server would be another.
pub trait SearchBackend: Send + Sync {
    /// The hits of `query`, page `page` (from 0) of [`HITS_PER_PAGE`].
    fn search(&self, query: &str, page: usize) -> Results;
    /// Terms starting with `prefix` (folded) that occur at least `min` times,
    /// most frequent first.
    fn autocomplete(&self, prefix: &str, min: usize) -> Vec<Term>;
}

/// An in-memory index of one item: per canvas, its words and tokens; per
/// token, where it occurs. Built in one pass; queries touch only the
/// postings of their first token per phrase.
#[derive(Debug, Default)]
pub struct MemoryIndex {
    canvases: Vec<CanvasText>,
    /// Folded token → (canvas, position) in reading order.
    postings: HashMap<String, Vec<(u32, u32)>>,
    /// Folded tokens and their counts, sorted, for autocomplete.
    terms: Vec<(String, usize)>,
}

impl MemoryIndex {
    /// Indexes canvases' words; `canvases[n]` holds canvas n's words (empty
    /// for a canvas without OCR).
    pub fn new(canvases: Vec<Vec<Word>>) -> MemoryIndex {
        let mut postings: HashMap<String, Vec<(u32, u32)>> = HashMap::new();
        let mut texts = Vec::with_capacity(canvases.len());
        for (c, words) in canvases.into_iter().enumerate() {
            let mut toks = Vec::new();
            for (w, word) in words.iter().enumerate() {
                for t in tokens(&word.text) {
                    postings.entry(t.clone()).or_default().push((c as u32, toks.len() as u32));
                    toks.push((t, w as u32));
                }
            }
            texts.push(CanvasText { words, tokens: toks });
        }
        let mut terms: Vec<(String, usize)> = postings.iter().map(|(t, p)| (t.clone(), p.len())).collect();
        terms.sort();
        MemoryIndex { canvases: texts, postings, terms }
    }

    /// Words indexed in all.
    pub fn word_count(&self) -> usize {
        self.canvases.iter().map(|c| c.words.len()).sum()
    }

    fn occurrences(&self, phrases: &[Vec<String>]) -> Vec<Occurrence> {
        let mut out = Vec::new();
        for phrase in phrases {
            let Some(first) = phrase.first() else { continue };
            let Some(list) = self.postings.get(first) else { continue };
            for &(c, pos) in list {
                let toks = &self.canvases[c as usize].tokens;
                let rest_matches = phrase
                    .iter()
                    .enumerate()
                    .skip(1)
                    .all(|(i, t)| toks.get(pos as usize + i).is_some_and(|(tok, _)| tok == t));
                if rest_matches {
                    out.push(Occurrence { canvas: c, start: pos, len: phrase.len() as u32 });
                }
            }
        }
        out.sort();
        // Two phrases matching at one place give one hit (the longer).
        out.dedup_by(|later, kept| {
            let same = later.canvas == kept.canvas && later.start == kept.start;
            if same {
                kept.len = kept.len.max(later.len);
            }
            same
        });
        out
    }

    /// The words an occurrence covers, as indexes into its canvas's words.
    fn word_range(&self, o: Occurrence) -> (usize, usize) {
        let toks = &self.canvases[o.canvas as usize].tokens;
        let first = toks[o.start as usize].1 as usize;
        let last = toks[(o.start + o.len - 1) as usize].1 as usize;
        (first, last)
    }

    /// Boxes of an occurrence: one per line, the union of its words there.
    fn boxes(&self, o: Occurrence) -> Vec<HitBox> {
        let words = &self.canvases[o.canvas as usize].words;
        let (first, last) = self.word_range(o);
        let mut out: Vec<(u32, HitBox)> = Vec::new();
        for w in &words[first..=last] {
            match out.last_mut() {
                Some((line, b)) if *line == w.line => {
                    let (x1, y1) = ((b.x + b.w).max(w.x + w.w), (b.y + b.h).max(w.y + w.h));
                    b.x = b.x.min(w.x);
                    b.y = b.y.min(w.y);
                    b.w = x1 - b.x;
                    b.h = y1 - b.y;
                    b.text.push(' ');
                    b.text.push_str(&w.text);
                }
                _ => out.push((
                    w.line,
                    HitBox { canvas: o.canvas as usize, x: w.x, y: w.y, w: w.w, h: w.h, text: w.text.clone() },
                )),
            }
        }
        out.into_iter().map(|(_, b)| b).collect()
    }

    /// How many boxes [`MemoryIndex::boxes`] gives, without building them.
    fn box_count(&self, o: Occurrence) -> usize {
        let words = &self.canvases[o.canvas as usize].words;
        let (first, last) = self.word_range(o);
        1 + words[first..=last].windows(2).filter(|p| p[0].line != p[1].line).count()
    }

    fn hit(&self, o: Occurrence) -> Hit {
        let words = &self.canvases[o.canvas as usize].words;
        let (first, last) = self.word_range(o);
        let join = |ws: &[Word]| ws.iter().map(|w| w.text.as_str()).collect::<Vec<_>>().join(" ");
        Hit {
            boxes: self.boxes(o),
            matched: join(&words[first..=last]),
            before: join(&words[first.saturating_sub(CONTEXT_WORDS)..first]),
            after: join(&words[last + 1..(last + 1 + CONTEXT_WORDS).min(words.len())]),
        }
    }
}

impl SearchBackend for MemoryIndex {
    fn search(&self, query: &str, page: usize) -> Results {
        let occ = self.occurrences(&parse_query(query));
        let total_hits = occ.len();
        let pages = total_hits.div_ceil(HITS_PER_PAGE).max(1);
        let page = page.min(pages - 1);
        let start = page * HITS_PER_PAGE;
        let lines = |o: &Occurrence| self.box_count(*o);
        let total_boxes = occ.iter().map(lines).sum();
        let boxes_before = occ[..start.min(total_hits)].iter().map(lines).sum();
        let hits = occ.iter().skip(start).take(HITS_PER_PAGE).map(|o| self.hit(*o)).collect();
        Results { hits, total_hits, total_boxes, boxes_before, page, pages }
    }

    fn autocomplete(&self, prefix: &str, min: usize) -> Vec<Term> {
        let p = fold(prefix.trim());
        if p.is_empty() {
            return Vec::new();
        }
        let from = self.terms.partition_point(|(t, _)| t.as_str() < p.as_str());
        let mut out: Vec<Term> = self.terms[from..]
            .iter()
            .take_while(|(t, _)| t.starts_with(&p))
            .filter(|(_, n)| *n >= min.max(1))
            .map(|(t, n)| Term { text: t.clone(), count: *n })
            .collect();
        out.sort_by(|a, b| b.count.cmp(&a.count).then_with(|| a.text.cmp(&b.text)));
        out.truncate(MAX_TERMS);
        out
    }
}

/// Parameters a search request may carry that this server ignores, as the
/// API asks to report them.
pub const IGNORED_PARAMS: [&str; 3] = ["motivation", "date", "user"];

/// The search response document for one page.
///
/// `service` is the search service's URL (no query); `page_url(n)` the URL
/// of page `n` of this query; `canvas_url(n)` the `@id` of canvas `n`.
pub fn response(
    r: &Results,
    service: &str,
    page_url: &dyn Fn(usize) -> String,
    canvas_url: &dyn Fn(usize) -> String,
    ignored: &[&str],
) -> Value {
    let mut resources = Vec::new();
    let mut hits = Vec::new();
    let mut n = r.boxes_before;
    for h in &r.hits {
        let mut ids = Vec::new();
        for b in &h.boxes {
            let id = format!("{service}/annotation/{n}");
            n += 1;
            resources.push(json!({
                "@id": id,
                "@type": "oa:Annotation",
                "motivation": "sc:painting",
                "resource": {"@type": "cnt:ContentAsText", "chars": b.text},
                // The plain string form: Mirador 3 cannot read the object form.
                "on": format!("{}#xywh={},{},{},{}", canvas_url(b.canvas), b.x, b.y, b.w, b.h),
            }));
            ids.push(Value::String(id));
        }
        hits.push(json!({
            "@type": "search:Hit",
            "annotations": ids,
            "match": h.matched,
            "before": h.before,
            "after": h.after,
        }));
    }
    let mut doc = json!({
        "@context": [PRESENTATION_CONTEXT, SEARCH_CONTEXT],
        "@id": page_url(r.page),
        "@type": "sc:AnnotationList",
        "within": {
            "@type": "sc:Layer",
            "total": r.total_boxes,
            "first": page_url(0),
            "last": page_url(r.pages - 1),
        },
        "startIndex": r.boxes_before,
        "resources": resources,
        "hits": hits,
    });
    if r.page + 1 < r.pages {
        doc["next"] = json!(page_url(r.page + 1));
    }
    if r.page > 0 {
        doc["prev"] = json!(page_url(r.page - 1));
    }
    if !ignored.is_empty() {
        doc["ignored"] = json!(ignored);
    }
    doc
}

/// The autocomplete document: `search_url(term)` is the search URL for a
/// term, `id` this request's URL.
pub fn term_list(terms: &[Term], id: &str, search_url: &dyn Fn(&str) -> String, ignored: &[&str]) -> Value {
    let list: Vec<Value> =
        terms.iter().map(|t| json!({"match": t.text, "url": search_url(&t.text), "count": t.count})).collect();
    let mut doc = json!({
        "@context": SEARCH_CONTEXT,
        "@id": id,
        "@type": "search:TermList",
        "terms": list,
    });
    if !ignored.is_empty() {
        doc["ignored"] = json!(ignored);
    }
    doc
}

#[cfg(test)]
mod tests {
    use super::*;

    fn word(text: &str, x: u32, line: u32) -> Word {
        Word { text: text.into(), x, y: line * 20, w: 10 * text.chars().count() as u32, h: 16, line }
    }

    /// Canvas 0: "The Hours of the Virgin," / "Matins. Été"; canvas 1: "the end".
    fn index() -> MemoryIndex {
        MemoryIndex::new(vec![
            vec![
                word("The", 0, 0),
                word("Hours", 40, 0),
                word("of", 100, 0),
                word("the", 130, 0),
                word("Virgin,", 170, 0),
                word("Matins.", 0, 1),
                word("Été", 80, 1),
            ],
            vec![],
            vec![word("the", 0, 0), word("end", 40, 0)],
        ])
    }

    #[test]
    fn folding_drops_case_and_diacritics_and_splits_on_word_boundaries() {
        assert_eq!(fold("ÉTÉ"), "ete");
        assert_eq!(fold("Straße"), "straße");
        assert_eq!(tokens("Virgin, (Matins.) l'été"), vec!["virgin", "matins", "l'ete"]);
        assert_eq!(tokens("— … ,"), Vec::<String>::new());
    }

    #[test]
    fn queries_split_into_words_and_quoted_phrases() {
        assert_eq!(parse_query("hours virgin"), vec![vec!["hours".to_string()], vec!["virgin".to_string()]]);
        assert_eq!(
            parse_query("\"of the Virgin\" matins"),
            vec![vec!["of".to_string(), "the".into(), "virgin".into()], vec!["matins".to_string()]]
        );
        assert_eq!(parse_query("the THE"), vec![vec!["the".to_string()]], "repeated terms count once");
        assert!(parse_query("  \"\" ").is_empty());
    }

    #[test]
    fn a_word_matches_every_occurrence_in_canvas_and_reading_order() {
        let r = index().search("the", 0);
        assert_eq!(r.total_hits, 3);
        let at: Vec<(usize, u32)> = r.hits.iter().map(|h| (h.boxes[0].canvas, h.boxes[0].x)).collect();
        assert_eq!(at, vec![(0, 0), (0, 130), (2, 0)]);
        assert_eq!(r.hits[1].before, "The Hours of");
        assert_eq!(r.hits[1].after, "Virgin, Matins. Été");
    }

    #[test]
    fn diacritics_and_case_do_not_matter() {
        let r = index().search("ete", 0);
        assert_eq!(r.total_hits, 1);
        assert_eq!(r.hits[0].matched, "Été");
        assert_eq!(index().search("ÉTÉ", 0).total_hits, 1);
    }

    #[test]
    fn a_phrase_across_a_line_break_gives_one_hit_with_a_box_per_line() {
        let r = index().search("\"virgin matins\"", 0);
        assert_eq!(r.total_hits, 1);
        let h = &r.hits[0];
        assert_eq!(h.matched, "Virgin, Matins.");
        assert_eq!(h.boxes.len(), 2);
        assert_eq!((h.boxes[0].x, h.boxes[0].y), (170, 0));
        assert_eq!((h.boxes[1].x, h.boxes[1].y), (0, 20));
        assert_eq!(r.total_boxes, 2);
    }

    #[test]
    fn a_phrase_on_one_line_is_one_box_spanning_its_words() {
        let r = index().search("\"hours of the\"", 0);
        assert_eq!(r.hits.len(), 1);
        let b = &r.hits[0].boxes;
        assert_eq!(b.len(), 1);
        assert_eq!((b[0].x, b[0].w), (40, 130 + 30 - 40));
        assert_eq!(b[0].text, "Hours of the");
    }

    #[test]
    fn several_words_find_each_and_an_absent_word_finds_nothing() {
        assert_eq!(index().search("hours end", 0).total_hits, 2);
        let r = index().search("unicorn", 0);
        assert_eq!((r.total_hits, r.pages, r.hits.len()), (0, 1, 0));
    }

    #[test]
    fn results_are_paged_with_boxes_counted_before_each_page() {
        let words: Vec<Word> = (0..250).map(|i| word("ora", i * 12, i)).collect();
        let idx = MemoryIndex::new(vec![words]);
        let p0 = idx.search("ora", 0);
        let p2 = idx.search("ora", 2);
        assert_eq!((p0.total_hits, p0.pages, p0.hits.len()), (250, 3, HITS_PER_PAGE));
        assert_eq!((p2.page, p2.boxes_before, p2.hits.len()), (2, 200, 50));
        assert_eq!(idx.search("ora", 99).page, 2, "a page past the end is the last page");
    }

    #[test]
    fn autocomplete_lists_folded_terms_by_prefix_and_frequency() {
        let idx = index();
        let t = idx.autocomplete("TH", 1);
        assert_eq!(t, vec![Term { text: "the".into(), count: 3 }]);
        assert_eq!(idx.autocomplete("h", 2), vec![]);
        assert_eq!(idx.autocomplete("", 1), vec![]);
        let t = idx.autocomplete("e", 1);
        assert_eq!(t.iter().map(|t| t.text.as_str()).collect::<Vec<_>>(), vec!["end", "ete"]);
    }

    #[test]
    fn the_response_has_what_mirador_reads() {
        let idx = index();
        let r = idx.search("\"virgin matins\" end", 0);
        let doc = response(
            &r,
            "http://h/iiif/book/search",
            &|p| format!("http://h/iiif/book/search?q=x&page={p}"),
            &|n| format!("http://h/iiif/book/canvas/{n}"),
            &["user"],
        );
        assert_eq!(doc["@type"], "sc:AnnotationList");
        assert_eq!(doc["within"]["total"], 3);
        assert_eq!(doc["startIndex"], 0);
        assert!(doc.get("next").is_none() && doc.get("prev").is_none());
        let res = doc["resources"].as_array().unwrap();
        assert_eq!(res.len(), 3);
        assert_eq!(res[0]["motivation"], "sc:painting");
        assert_eq!(res[0]["on"], "http://h/iiif/book/canvas/0#xywh=170,0,70,16");
        assert_eq!(res[2]["on"], "http://h/iiif/book/canvas/2#xywh=40,0,30,16");
        let hits = doc["hits"].as_array().unwrap();
        assert_eq!(hits.len(), 2);
        assert_eq!(hits[0]["annotations"], json!([res[0]["@id"], res[1]["@id"]]));
        assert_eq!(hits[0]["match"], "Virgin, Matins.");
        assert_eq!(hits[1]["before"], "the");
        assert_eq!(doc["ignored"], json!(["user"]));
    }

    #[test]
    fn the_term_list_links_each_term_to_its_search() {
        let terms = index().autocomplete("v", 1);
        let doc = term_list(&terms, "http://h/a?q=v", &|t| format!("http://h/s?q={t}"), &[]);
        assert_eq!(doc["@type"], "search:TermList");
        assert_eq!(doc["terms"], json!([{"match": "virgin", "url": "http://h/s?q=virgin", "count": 1}]));
        assert!(doc.get("ignored").is_none());
    }
}
