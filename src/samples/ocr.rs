//! OCR files for the sample book: ALTO v4 and hOCR documents written from a page's
//! known words ([`PageText`]), so the sample item has something for IIIF Content
//! Search to find. The boxes are the exact ink boxes of the drawn words, in pixels
//! of the page image.

use std::fmt::Write;

use quick_xml::escape::{escape, partial_escape};

use super::generate::{PageText, PageWord};

/// The words of `text` grouped by line, in order.
fn lines(text: &PageText) -> Vec<&[PageWord]> {
    text.words.chunk_by(|a, b| a.line == b.line).collect()
}

/// The union of the boxes of `words`: `[x0, y0, x1, y1]` (ends exclusive).
fn union(words: &[PageWord]) -> [u32; 4] {
    words.iter().fold([u32::MAX, u32::MAX, 0, 0], |[a, b, c, d], w| {
        [a.min(w.x), b.min(w.y), c.max(w.x + w.width), d.max(w.y + w.height)]
    })
}

/// An ALTO v4 document of the page (`MeasurementUnit` pixel, `Page` as large as the
/// image): one `TextBlock`, a `TextLine` per line, a `String` per word with its
/// exact box, and an `SP` between the words of a line. `image` is the page image's
/// file name.
pub fn alto(text: &PageText, image: &str) -> String {
    let mut s = String::with_capacity(200 + text.words.len() * 140);
    let (w, h, p) = (text.width, text.height, text.page);
    s.push_str("<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n");
    s.push_str(
        "<alto xmlns=\"http://www.loc.gov/standards/alto/ns-v4#\" \
         xmlns:xsi=\"http://www.w3.org/2001/XMLSchema-instance\" \
         xsi:schemaLocation=\"http://www.loc.gov/standards/alto/ns-v4# \
         http://www.loc.gov/standards/alto/v4/alto-4-2.xsd\">\n",
    );
    s.push_str("  <Description>\n    <MeasurementUnit>pixel</MeasurementUnit>\n");
    let _ = writeln!(
        s,
        "    <sourceImageInformation>\n      <fileName>{}</fileName>\n    </sourceImageInformation>",
        partial_escape(image)
    );
    s.push_str("  </Description>\n  <Layout>\n");
    let _ = writeln!(s, "    <Page ID=\"P{p}\" PHYSICAL_IMG_NR=\"{p}\" WIDTH=\"{w}\" HEIGHT=\"{h}\">");
    let _ = writeln!(s, "      <PrintSpace HPOS=\"0\" VPOS=\"0\" WIDTH=\"{w}\" HEIGHT=\"{h}\">");
    if !text.words.is_empty() {
        let [x0, y0, x1, y1] = union(&text.words);
        let _ = writeln!(
            s,
            "        <TextBlock ID=\"P{p}_TB1\" HPOS=\"{x0}\" VPOS=\"{y0}\" WIDTH=\"{}\" HEIGHT=\"{}\" LANG=\"{}\">",
            x1 - x0,
            y1 - y0,
            text.lang
        );
        let mut n = 0;
        for (l, line) in lines(text).into_iter().enumerate() {
            let [x0, y0, x1, y1] = union(line);
            let _ = writeln!(
                s,
                "          <TextLine ID=\"P{p}_TL{}\" HPOS=\"{x0}\" VPOS=\"{y0}\" WIDTH=\"{}\" HEIGHT=\"{}\">",
                l + 1,
                x1 - x0,
                y1 - y0
            );
            for (k, word) in line.iter().enumerate() {
                if k > 0 {
                    let prev = &line[k - 1];
                    let end = prev.x + prev.width;
                    let _ = writeln!(
                        s,
                        "            <SP WIDTH=\"{}\" HPOS=\"{end}\" VPOS=\"{y0}\"/>",
                        word.x.saturating_sub(end)
                    );
                }
                n += 1;
                let _ = writeln!(
                    s,
                    "            <String ID=\"P{p}_S{n}\" CONTENT=\"{}\" HPOS=\"{}\" VPOS=\"{}\" WIDTH=\"{}\" HEIGHT=\"{}\"/>",
                    escape(word.text.as_str()),
                    word.x,
                    word.y,
                    word.width,
                    word.height
                );
            }
            s.push_str("          </TextLine>\n");
        }
        s.push_str("        </TextBlock>\n");
    }
    s.push_str("      </PrintSpace>\n    </Page>\n  </Layout>\n</alto>\n");
    s
}

/// An hOCR document of the page (XHTML, as Tesseract writes it): an `ocr_page` with
/// `bbox 0 0 width height`, one `ocr_carea` and `ocr_par`, an `ocr_line` per line
/// and an `ocrx_word` per word with its exact box (`bbox x0 y0 x1 y1`, ends
/// exclusive). `image` is the page image's file name.
pub fn hocr(text: &PageText, image: &str) -> String {
    let mut s = String::with_capacity(600 + text.words.len() * 110);
    let (w, h, p, lang) = (text.width, text.height, text.page, text.lang);
    s.push_str("<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n");
    s.push_str(
        "<!DOCTYPE html PUBLIC \"-//W3C//DTD XHTML 1.0 Transitional//EN\" \
         \"http://www.w3.org/TR/xhtml1/DTD/xhtml1-transitional.dtd\">\n",
    );
    let _ = writeln!(s, "<html xmlns=\"http://www.w3.org/1999/xhtml\" xml:lang=\"{lang}\" lang=\"{lang}\">");
    let _ = writeln!(s, " <head>\n  <title>{}</title>", partial_escape(image));
    s.push_str("  <meta http-equiv=\"Content-Type\" content=\"text/html;charset=utf-8\"/>\n");
    s.push_str("  <meta name=\"ocr-system\" content=\"Tessera sample generator\"/>\n");
    s.push_str("  <meta name=\"ocr-capabilities\" content=\"ocr_page ocr_carea ocr_par ocr_line ocrx_word\"/>\n");
    s.push_str(" </head>\n <body>\n");
    // The image name goes in quotes inside the title: escape it for both.
    let quoted = image.replace('\\', "\\\\").replace('"', "\\\"");
    let _ = writeln!(
        s,
        "  <div class=\"ocr_page\" id=\"page_{p}\" title=\"bbox 0 0 {w} {h}; image {}; ppageno {}\">",
        escape(format!("\"{quoted}\"")),
        p.saturating_sub(1)
    );
    if !text.words.is_empty() {
        let [x0, y0, x1, y1] = union(&text.words);
        let _ = writeln!(s, "   <div class=\"ocr_carea\" id=\"block_{p}_1\" title=\"bbox {x0} {y0} {x1} {y1}\">");
        let _ = writeln!(
            s,
            "    <p class=\"ocr_par\" id=\"par_{p}_1\" lang=\"{lang}\" title=\"bbox {x0} {y0} {x1} {y1}\">"
        );
        let mut n = 0;
        for (l, line) in lines(text).into_iter().enumerate() {
            let [x0, y0, x1, y1] = union(line);
            let _ = writeln!(
                s,
                "     <span class=\"ocr_line\" id=\"line_{p}_{}\" title=\"bbox {x0} {y0} {x1} {y1}\">",
                l + 1
            );
            for word in line {
                n += 1;
                let _ = writeln!(
                    s,
                    "      <span class=\"ocrx_word\" id=\"word_{p}_{n}\" title=\"bbox {} {} {} {}; x_wconf 100\">{}</span>",
                    word.x,
                    word.y,
                    word.x + word.width,
                    word.y + word.height,
                    partial_escape(word.text.as_str())
                );
            }
            s.push_str("     </span>\n");
        }
        s.push_str("    </p>\n   </div>\n");
    }
    s.push_str("  </div>\n </body>\n</html>\n");
    s
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::samples::generate::book_page_text;
    use quick_xml::events::{BytesStart, Event};
    use quick_xml::{Reader, XmlVersion};
    use std::collections::HashMap;

    /// One element start (or empty element) of a document: name and attributes,
    /// unescaped, and the text directly inside it.
    #[derive(Debug, Default)]
    struct El {
        name: String,
        attrs: HashMap<String, String>,
        text: String,
    }

    /// Parses `doc` with end-name checks on: panics unless it is well-formed XML
    /// with a single root. Returns every element in document order.
    fn elements(doc: &str) -> Vec<El> {
        let mut r = Reader::from_str(doc);
        r.config_mut().check_end_names = true;
        let mut out: Vec<El> = Vec::new();
        let mut open: Vec<usize> = Vec::new();
        let mut roots = 0;
        let start = |e: &BytesStart<'_>| El {
            name: e.name().into_inner().to_string(),
            attrs: e
                .attributes()
                .map(|a| {
                    let a = a.unwrap();
                    let v = a.normalized_value(XmlVersion::Implicit1_0).unwrap().into_owned();
                    (a.key.into_inner().to_string(), v)
                })
                .collect(),
            text: String::new(),
        };
        loop {
            match r.read_event().unwrap() {
                Event::Start(e) => {
                    roots += usize::from(open.is_empty());
                    out.push(start(&e));
                    open.push(out.len() - 1);
                }
                Event::Empty(e) => {
                    roots += usize::from(open.is_empty());
                    out.push(start(&e));
                }
                Event::End(_) => {
                    open.pop().expect("an end tag without a start");
                }
                Event::Text(t) => {
                    let t = t.xml_content(XmlVersion::Implicit1_0);
                    if let Some(&i) = open.last() {
                        out[i].text.push_str(&t);
                    } else {
                        assert!(t.trim().is_empty(), "text outside the root: {t:?}");
                    }
                }
                Event::GeneralRef(g) => {
                    let t = quick_xml::escape::resolve_predefined_entity(&g).expect("a predefined entity");
                    if let Some(&i) = open.last() {
                        out[i].text.push_str(t);
                    }
                }
                Event::Eof => break,
                _ => {}
            }
        }
        assert!(open.is_empty(), "unclosed elements");
        assert_eq!(roots, 1, "one root element");
        out
    }

    fn num(e: &El, k: &str) -> u32 {
        e.attrs.get(k).unwrap_or_else(|| panic!("{} has no {k}", e.name)).parse().unwrap()
    }

    fn bbox(title: &str) -> [u32; 4] {
        let prop = title.split(';').map(str::trim).find(|p| p.starts_with("bbox ")).expect("a bbox");
        let v: Vec<u32> = prop[5..].split_whitespace().map(|n| n.parse().unwrap()).collect();
        [v[0], v[1], v[2], v[3]]
    }

    #[test]
    fn alto_is_well_formed_and_lists_exactly_the_layouts_words_and_boxes() {
        for page in 1..=6 {
            let text = book_page_text(2000, 3000, page);
            let doc = alto(&text, &format!("page-{page}.jpg"));
            let els = elements(&doc);
            assert_eq!(els[0].name, "alto");
            assert_eq!(els[0].attrs["xmlns"], "http://www.loc.gov/standards/alto/ns-v4#");
            let unit = els.iter().find(|e| e.name == "MeasurementUnit").unwrap();
            assert_eq!(unit.text, "pixel");
            let pg = els.iter().find(|e| e.name == "Page").unwrap();
            assert_eq!((num(pg, "WIDTH"), num(pg, "HEIGHT")), (2000, 3000));
            assert_eq!(els.iter().filter(|e| e.name == "TextBlock").count(), 1);
            let strings: Vec<&El> = els.iter().filter(|e| e.name == "String").collect();
            assert_eq!(strings.len(), text.words.len(), "page {page}");
            assert_eq!(doc.matches("<String ").count(), text.words.len());
            for (s, w) in strings.iter().zip(&text.words) {
                assert_eq!(s.attrs["CONTENT"], w.text);
                let b = [num(s, "HPOS"), num(s, "VPOS"), num(s, "WIDTH"), num(s, "HEIGHT")];
                assert_eq!(b, [w.x, w.y, w.width, w.height], "{}", w.text);
            }
            let lines = text.words.last().unwrap().line as usize + 1;
            assert_eq!(els.iter().filter(|e| e.name == "TextLine").count(), lines);
            assert_eq!(els.iter().filter(|e| e.name == "SP").count(), text.words.len() - lines);
        }
    }

    #[test]
    fn alto_escapes_xml_special_characters_in_content() {
        let text = book_page_text(2000, 3000, 1);
        assert!(text.words.iter().any(|w| w.text == "&"));
        let doc = alto(&text, "a<b>&\"c'.jpg");
        assert!(doc.contains("CONTENT=\"&amp;\""));
        let els = elements(&doc);
        assert_eq!(els.iter().find(|e| e.name == "fileName").unwrap().text, "a<b>&\"c'.jpg");
        let mut odd = text.clone();
        odd.words[0].text = "<\"x'&y>".to_string();
        let els = elements(&alto(&odd, "p.jpg"));
        assert_eq!(els.iter().find(|e| e.name == "String").unwrap().attrs["CONTENT"], "<\"x'&y>");
    }

    #[test]
    fn hocr_is_well_formed_and_lists_exactly_the_layouts_words_and_boxes() {
        let text = book_page_text(2000, 3000, 6);
        let doc = hocr(&text, "page-6.jpg");
        let els = elements(&doc);
        assert_eq!(els[0].name, "html");
        let class = |e: &El, c: &str| e.attrs.get("class").is_some_and(|v| v.split_whitespace().any(|x| x == c));
        let page: Vec<&El> = els.iter().filter(|e| class(e, "ocr_page")).collect();
        assert_eq!(page.len(), 1);
        assert_eq!(bbox(&page[0].attrs["title"]), [0, 0, 2000, 3000]);
        assert!(page[0].attrs["title"].contains("image \"page-6.jpg\""));
        let words: Vec<&El> = els.iter().filter(|e| class(e, "ocrx_word")).collect();
        assert_eq!(words.len(), text.words.len());
        assert!(text.words.iter().any(|w| w.text == "&") && text.words.iter().any(|w| w.text.contains('\'')));
        for (e, w) in words.iter().zip(&text.words) {
            assert_eq!(e.text, w.text);
            assert_eq!(bbox(&e.attrs["title"]), [w.x, w.y, w.x + w.width, w.y + w.height]);
        }
        let lines = text.words.last().unwrap().line as usize + 1;
        assert_eq!(els.iter().filter(|e| class(e, "ocr_line")).count(), lines);
        assert_eq!(doc.matches("class=\"ocrx_word\"").count(), text.words.len());
    }

    #[test]
    fn empty_pages_give_well_formed_documents_without_words() {
        let text = book_page_text(10, 10, 1);
        assert!(text.words.is_empty());
        assert!(elements(&alto(&text, "p.jpg")).iter().all(|e| e.name != "String"));
        assert!(elements(&hocr(&text, "p.jpg")).iter().all(|e| e.attrs.get("class").is_none_or(|c| c != "ocrx_word")));
    }
}
