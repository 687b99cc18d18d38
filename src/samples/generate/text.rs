//! Real words on the sample book's pages, and where each of them is.
//!
//! [`layout`] is a pure function of (width, height, page): it places the page's
//! ruled text block, its miniature, its rubricated initial and, line by line, the
//! words of a short book-of-hours text (Latin; the colophon in English), drawn in the
//! public-domain 8×8 glyphs of `font8x8` scaled up by an integer factor. The page
//! renderer draws exactly those glyphs ([`TextLayout::draw`]) and the OCR writers
//! (`samples::ocr`) list exactly those words, so every word's box is known to the
//! pixel: [`book_page_words`] is the public view of it.

use super::{grain, mix64, Rgb, Rng};
use font8x8::legacy::BASIC_LEGACY;

/// One word drawn on a book page: its text and the tight box of its ink, in pixels
/// of the page image (`x`, `y` top left; the box covers `x..x + width`, `y..y + height`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PageWord {
    pub text: String,
    /// The word's line: 0 for the first line that holds words, counting down the page.
    pub line: u32,
    pub x: u32,
    pub y: u32,
    pub width: u32,
    pub height: u32,
}

/// The words of one book page, as [`super::book_page`] draws them.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PageText {
    /// The page image's size and page number, as given.
    pub width: u32,
    pub height: u32,
    pub page: u32,
    /// Language of the page's text (BCP 47): "la" or "en".
    pub lang: &'static str,
    /// Glyph scale: each 8×8 glyph covers `8 * scale` pixels square.
    pub scale: u32,
    /// The words in reading order (line by line, left to right).
    pub words: Vec<PageWord>,
}

/// The words of `book_page(width, height, page)` with their boxes, in reading order.
pub fn book_page_text(width: u32, height: u32, page: u32) -> PageText {
    let l = layout(width, height, page);
    PageText {
        width,
        height,
        page,
        lang: l.lang,
        scale: l.scale,
        words: l.lines.into_iter().flat_map(|line| line.words).collect(),
    }
}

/// The words of `book_page(width, height, page)` with their boxes, in reading order.
pub fn book_page_words(width: u32, height: u32, page: u32) -> Vec<PageWord> {
    book_page_text(width, height, page).words
}

/// Black-brown writing ink and the red of rubrics (headings, initials, the border).
pub(super) const INK: Rgb = [42.0, 32.0, 26.0];
pub(super) const RUBRIC: Rgb = [150.0, 35.0, 30.0];

/// Everything of a page that the text flows around, and the text itself.
pub(super) struct TextLayout {
    /// The ruled text block: `[x0, y0, x1, y1]`.
    pub(super) block: [f32; 4],
    /// The miniature: `[x, y, w, h]`.
    pub(super) figure: [f32; 4],
    /// The rubricated initial square before the first paragraph: `[x, y, side]`.
    pub(super) initial: Option<[f32; 3]>,
    scale: u32,
    lang: &'static str,
    lines: Vec<TextLine>,
}

struct TextLine {
    /// Top row of the line's glyph cells (each `8 * scale` high).
    top: u32,
    rubric: bool,
    /// Left column of each glyph cell, and its ASCII code.
    glyphs: Vec<(u32, u8)>,
    words: Vec<PageWord>,
}

/// The layout of page `page` at `width`×`height`.
pub(super) fn layout(width: u32, height: u32, page: u32) -> TextLayout {
    let (wf, hf) = (width as f32, height as f32);
    // Margins: wider on the gutter side, which alternates with the page number.
    let even = page & 1 == 0;
    let gutter = if even { 0.14 } else { 0.09 };
    let outer = if even { 0.09 } else { 0.14 };
    let (x0, x1) = (wf * gutter, wf * (1.0 - outer));
    let (y0, y1) = (hf * 0.08, hf * 0.86);
    // The miniature: position and size vary by page.
    let mut rng = Rng::new(mix64(0xb00c_0f40_0125_0000 ^ page as u64));
    let mut bw = (x1 - x0) * rng.range(0.45, 1.0);
    if bw > (x1 - x0) * 0.75 {
        bw = x1 - x0;
    }
    let bh = (y1 - y0) * rng.range(0.2, 0.35);
    let bx = if bw > (x1 - x0) * 0.8 || rng.chance(0.5) { x0 } else { x1 - bw };
    let by = match rng.below(3) {
        0 => y0,
        1 => y0 + (y1 - y0) * 0.35,
        _ => y1 - bh,
    };
    // Lines: glyphs about half the ruled line height, at an integer scale.
    let rule = hf * 0.024;
    let scale = ((rule * 0.5 / 8.0).floor() as u32).max(1);
    let cell = 8 * scale;
    let pitch = rule.max(cell as f32 * 1.25);
    let gap = wf * 0.02;
    let (full_left, full_right) = (x0.ceil() as u32, x1.floor() as u32);
    let text = corpus(page);
    let blocks: Vec<(bool, Vec<&str>)> =
        text.blocks.iter().map(|&(rubric, s)| (rubric, s.split_ascii_whitespace().collect())).collect();
    let first_paragraph = blocks.iter().position(|b| !b.0);
    let mut initial: Option<[f32; 3]> = None;
    let mut lines = Vec::new();
    let (mut bi, mut wi) = (0usize, 0usize);
    let mut y = y0 + pitch * 0.2;
    while bi < blocks.len() {
        let top = (y + (pitch - cell as f32) * 0.5).round().max(0.0) as u32;
        if top as f32 + cell as f32 > y1 {
            break;
        }
        // Flow around the miniature.
        let (mut la, lb) = if y + pitch > by - gap && y < by + bh + gap {
            if bw >= x1 - x0 {
                y += pitch;
                continue;
            } else if bx <= x0 {
                (bx + bw + gap, x1)
            } else {
                (x0, bx - gap)
            }
        } else {
            (x0, x1)
        };
        // The first paragraph opens with a rubricated initial two lines high.
        if Some(bi) == first_paragraph && wi == 0 && initial.is_none() {
            let side = pitch * 1.75;
            if lb - la > side * 4.0 {
                initial = Some([la, y, side]);
            }
        }
        if let Some([ix, iy, side]) = initial {
            if y < iy + side && y + pitch > iy && ix < lb {
                la = la.max(ix + side * 1.2);
            }
        }
        let (left, right) = (la.ceil().max(0.0) as u32, lb.floor().max(0.0) as u32);
        let (rubric, words) = (blocks[bi].0, &blocks[bi].1);
        let line = lines.len() as u32;
        let mut placed = TextLine { top, rubric, glyphs: Vec::new(), words: Vec::new() };
        let mut x = left;
        while let Some(word) = words.get(wi) {
            let n = word.len() as u32;
            if x + n * cell > right {
                if placed.words.is_empty() && left <= full_left && right >= full_right {
                    // Wider than the text block: left out (not drawn, not in the OCR).
                    wi += 1;
                    continue;
                }
                break;
            }
            if let Some(b) = place_word(word, x, top, scale, line) {
                placed.glyphs.extend(word.bytes().enumerate().map(|(k, c)| (x + k as u32 * cell, c)));
                placed.words.push(b);
            }
            x += (n + 1) * cell;
            wi += 1;
        }
        if !placed.words.is_empty() {
            lines.push(placed);
        }
        if wi >= words.len() {
            // Each heading and paragraph starts on a new line.
            bi += 1;
            wi = 0;
        }
        y += pitch;
    }
    TextLayout { block: [x0, y0, x1, y1], figure: [bx, by, bw, bh], initial, scale, lang: text.lang, lines }
}

/// The ink box of `word` drawn with its first glyph cell at (`x`, `top`); None when
/// it has no ink (the corpus has no such word).
fn place_word(word: &str, x: u32, top: u32, scale: u32, line: u32) -> Option<PageWord> {
    let (mut c0, mut c1, mut r0, mut r1) = (u32::MAX, 0u32, u32::MAX, 0u32);
    for (k, c) in word.bytes().enumerate() {
        for (r, &bits) in glyph(c).iter().enumerate() {
            if bits == 0 {
                continue;
            }
            let (first, last) = (bits.trailing_zeros(), 7 - bits.leading_zeros());
            c0 = c0.min(k as u32 * 8 + first);
            c1 = c1.max(k as u32 * 8 + last + 1);
            r0 = r0.min(r as u32);
            r1 = r1.max(r as u32 + 1);
        }
    }
    (c0 < c1).then(|| PageWord {
        text: word.to_string(),
        line,
        x: x + c0 * scale,
        y: top + r0 * scale,
        width: (c1 - c0) * scale,
        height: (r1 - r0) * scale,
    })
}

/// The 8×8 glyph of an ASCII code: one byte per row, top first, bit 0 leftmost.
fn glyph(c: u8) -> [u8; 8] {
    BASIC_LEGACY.get(c as usize).copied().unwrap_or([0; 8])
}

impl TextLayout {
    /// Draws the glyphs of rows `y0..y0 + rows` into `band` (RGB, `width` pixels a row):
    /// opaque ink (or rubric red for headings) with a little grain.
    pub(super) fn draw(&self, band: &mut [u8], width: usize, y0: usize, rows: usize, seed: u32) {
        let s = self.scale as usize;
        let cell = 8 * s;
        for line in &self.lines {
            let top = line.top as usize;
            let (ya, yb) = (top.max(y0), (top + cell).min(y0 + rows));
            let color = if line.rubric { RUBRIC } else { INK };
            for y in ya..yb {
                let r = (y - top) / s;
                let row = &mut band[(y - y0) * width * 3..(y - y0 + 1) * width * 3];
                for &(gx, c) in &line.glyphs {
                    let bits = glyph(c)[r];
                    for col in 0..8 {
                        if bits & (1 << col) == 0 {
                            continue;
                        }
                        let xa = gx as usize + col * s;
                        for x in xa..(xa + s).min(width) {
                            let g = grain(seed ^ 0x1c0f_fee5, x, y) * 6.0;
                            for (dst, &k) in row[x * 3..x * 3 + 3].iter_mut().zip(&color) {
                                *dst = (k + g).clamp(0.0, 255.0) as u8;
                            }
                        }
                    }
                }
            }
        }
    }
}

/// A page's text: headings (rubric) and paragraphs, each starting on a new line.
pub(super) struct Corpus {
    pub(super) lang: &'static str,
    /// `(rubric, text)`: words are separated by spaces; printable ASCII only.
    pub(super) blocks: &'static [(bool, &'static str)],
}

/// The text of `page`: pages 1 to 6 of the sample book, then the same again.
pub(super) fn corpus(page: u32) -> &'static Corpus {
    &CORPUS[(page.wrapping_sub(1) % CORPUS.len() as u32) as usize]
}

pub(super) const CORPUS: [Corpus; 6] = [
    // 1: the front matter.
    Corpus {
        lang: "la",
        blocks: &[
            (true, "Horae Beatae Mariae Virginis"),
            (
                false,
                "Incipiunt horae beatae Mariae virginis secundum usum Romanum, cum calendario, \
                 sequentiis evangeliorum, horis de cruce et de sancto spiritu, septem psalmis \
                 poenitentialibus cum litaniis, et officio mortuorum.",
            ),
            (true, "A Book of Hours"),
            (
                false,
                "The Hours of the Virgin & other devotions, after the use of Rome: the calendar, \
                 the gospel lessons, Matins and Lauds, the penitential psalms and the Office of \
                 the Dead.",
            ),
            (false, "Ad maiorem Dei gloriam."),
        ],
    },
    // 2: the calendar, January.
    Corpus {
        lang: "la",
        blocks: &[
            (true, "Kalendarium"),
            (true, "Ianuarius habet dies XXXI, luna XXX."),
            (false, "A Kal. Circumcisio Domini."),
            (false, "b IV Non. Octava sancti Stephani."),
            (false, "c III Non. Octava sancti Ioannis."),
            (false, "d II Non. Octava Innocentium."),
            (false, "e Nonis. Vigilia Epiphaniae."),
            (false, "f VIII Id. Epiphania Domini."),
            (false, "c IV Id. Pauli primi eremitae."),
            (false, "f Idibus. Octava Epiphaniae. Hilarii episcopi."),
            (false, "g XIX Kal. Felicis in Pincis."),
            (false, "A XVIII Kal. Mauri abbatis."),
            (false, "b XVII Kal. Marcelli papae."),
            (false, "c XVI Kal. Antonii abbatis."),
            (false, "d XV Kal. Priscae virginis."),
            (false, "f XIII Kal. Fabiani et Sebastiani."),
            (false, "g XII Kal. Agnetis virginis."),
            (false, "A XI Kal. Vincentii martyris."),
            (false, "d VIII Kal. Conversio sancti Pauli."),
            (false, "g V Kal. Agnetis secundo."),
        ],
    },
    // 3: the gospel lessons.
    Corpus {
        lang: "la",
        blocks: &[
            (true, "Initium sancti Evangelii secundum Ioannem."),
            (
                false,
                "In principio erat Verbum, et Verbum erat apud Deum, et Deus erat Verbum. Hoc \
                 erat in principio apud Deum. Omnia per ipsum facta sunt, et sine ipso factum est \
                 nihil quod factum est. In ipso vita erat, et vita erat lux hominum; et lux in \
                 tenebris lucet, et tenebrae eam non comprehenderunt. Fuit homo missus a Deo, cui \
                 nomen erat Ioannes. Hic venit in testimonium, ut testimonium perhiberet de \
                 lumine. Deo gratias.",
            ),
            (true, "Sequentia sancti Evangelii secundum Lucam."),
            (
                false,
                "In illo tempore missus est angelus Gabriel a Deo in civitatem Galilaeae, cui \
                 nomen Nazareth, ad virginem desponsatam viro, cui nomen erat Ioseph, de domo \
                 David, et nomen virginis Maria. Et ingressus angelus ad eam dixit: Ave gratia \
                 plena, Dominus tecum, benedicta tu in mulieribus.",
            ),
        ],
    },
    // 4: the Hours of the Virgin, Matins.
    Corpus {
        lang: "la",
        blocks: &[
            (true, "Hours of the Virgin"),
            (true, "Matins. Ad matutinum."),
            (
                false,
                "Domine labia mea aperies. Et os meum annuntiabit laudem tuam. Deus in \
                 adiutorium meum intende. Domine ad adiuvandum me festina. Gloria Patri et Filio \
                 et Spiritui Sancto. Sicut erat in principio, et nunc et semper, et in saecula \
                 saeculorum. Amen. Alleluia.",
            ),
            (true, "Invitatorium."),
            (
                false,
                "Ave Maria, gratia plena, Dominus tecum. Venite, exsultemus Domino, iubilemus Deo \
                 salutari nostro; praeoccupemus faciem eius in confessione, et in psalmis \
                 iubilemus ei. Ave Maria.",
            ),
            (true, "Hymnus."),
            (
                false,
                "Quem terra, pontus, aethera colunt, adorant, praedicant, trinam regentem \
                 machinam, claustrum Mariae baiulat. Cui luna, sol et omnia deserviunt per \
                 tempora, perfusa caeli gratia gestant puellae viscera.",
            ),
            (true, "Psalmus VIII."),
            (
                false,
                "Domine, Dominus noster, quam admirabile est nomen tuum in universa terra! \
                 Quoniam elevata est magnificentia tua super caelos. Ex ore infantium et \
                 lactentium perfecisti laudem propter inimicos tuos, ut destruas inimicum et \
                 ultorem.",
            ),
        ],
    },
    // 5: the penitential psalms.
    Corpus {
        lang: "la",
        blocks: &[
            (true, "Septem psalmi poenitentiales."),
            (
                false,
                "Domine, ne in furore tuo arguas me, neque in ira tua corripias me. Miserere mei, \
                 Domine, quoniam infirmus sum; sana me, Domine, quoniam conturbata sunt ossa mea. \
                 Et anima mea turbata est valde; sed tu, Domine, usquequo? Convertere, Domine, et \
                 eripe animam meam; salvum me fac propter misericordiam tuam.",
            ),
            (true, "Psalmus L."),
            (
                false,
                "Miserere mei, Deus, secundum magnam misericordiam tuam; et secundum \
                 multitudinem miserationum tuarum, dele iniquitatem meam. Amplius lava me ab \
                 iniquitate mea, et a peccato meo munda me. Quoniam iniquitatem meam ego \
                 cognosco, et peccatum meum contra me est semper.",
            ),
            (true, "Psalmus CXXIX."),
            (
                false,
                "De profundis clamavi ad te, Domine; Domine, exaudi vocem meam. Fiant aures tuae \
                 intendentes in vocem deprecationis meae. Si iniquitates observaveris, Domine, \
                 Domine, quis sustinebit? Quia apud te propitiatio est, et propter legem tuam \
                 sustinui te, Domine.",
            ),
        ],
    },
    // 6: the colophon, in English.
    Corpus {
        lang: "en",
        blocks: &[
            (true, "Explicit."),
            (
                false,
                "Here end the Hours of Our Lady & the Office of the Dead, after the use of Rome. \
                 Written out by the Tessera sample generator in the year of grace 2026, that \
                 readers might have words to search. Pray for the scribe's soul. Deo gratias. \
                 Amen.",
            ),
        ],
    },
];

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn corpus_is_printable_ascii_that_the_font_draws() {
        for c in &CORPUS {
            for &(_, s) in c.blocks {
                for b in s.bytes() {
                    assert!(b == b' ' || b.is_ascii_graphic(), "{b:#x} in {s:?}");
                    assert!(b == b' ' || glyph(b) != [0; 8], "{:?} has no glyph", b as char);
                }
            }
        }
    }

    #[test]
    fn layout_is_a_pure_function_of_size_and_page() {
        for page in 1..=6 {
            let a = book_page_text(2000, 3000, page);
            assert_eq!(a, book_page_text(2000, 3000, page));
            assert!(a.words.len() > 20, "page {page}: {} words", a.words.len());
        }
        assert_ne!(book_page_words(2000, 3000, 1), book_page_words(2000, 3000, 2));
        assert_ne!(book_page_words(2000, 3000, 1), book_page_words(1000, 1500, 1));
    }

    #[test]
    fn words_are_in_reading_order_inside_the_text_block_and_never_overlap() {
        for (w, h) in [(2000u32, 3000u32), (600, 900), (400, 600), (1200, 1800)] {
            for page in 1..=6 {
                let l = layout(w, h, page);
                let [x0, y0, x1, y1] = l.block;
                let [fx, fy, fw, fh] = l.figure;
                let words: Vec<&PageWord> = l.lines.iter().flat_map(|line| &line.words).collect();
                assert!(!words.is_empty(), "{w}x{h} page {page}");
                for (i, wd) in words.iter().enumerate() {
                    let (a, b, c, d) = (wd.x as f32, wd.y as f32, (wd.x + wd.width) as f32, (wd.y + wd.height) as f32);
                    assert!(wd.width > 0 && wd.height > 0);
                    assert!(a >= x0 && c <= x1 && b >= y0 && d <= y1, "{w}x{h} page {page}: {wd:?} outside the block");
                    assert!(c <= fx || a >= fx + fw || d <= fy || b >= fy + fh, "{wd:?} on the miniature");
                    if let Some([ix, iy, side]) = l.initial {
                        assert!(a >= ix + side || d <= iy || b >= iy + side, "{wd:?} on the initial");
                    }
                    if let Some(next) = words.get(i + 1) {
                        assert!(
                            next.line == wd.line + 1 && next.y > wd.y + wd.height / 2
                                || next.line == wd.line && next.x > wd.x + wd.width,
                            "{wd:?} then {next:?}"
                        );
                    }
                }
                // The lines hold the words in order, numbered from 0.
                for (n, line) in l.lines.iter().enumerate() {
                    assert!(line.words.iter().all(|wd| wd.line == n as u32));
                }
            }
        }
    }

    #[test]
    fn the_sample_pages_are_drawn_at_scale_four_and_show_the_known_phrases() {
        let t = book_page_text(2000, 3000, 4);
        assert_eq!((t.scale, t.lang), (4, "la"));
        let text: Vec<&str> = t.words.iter().map(|w| w.text.as_str()).collect();
        let joined = text.join(" ");
        for phrase in
            ["Hours of the Virgin", "Matins.", "Domine labia mea aperies.", "Deus in adiutorium meum intende."]
        {
            assert!(joined.contains(phrase), "{phrase:?} not in {joined:?}");
        }
        // "Domine" in the 8x8 font: 'D' starts at its column 0, 'e' ends with its
        // column 5, a capital is 7 rows high: the box is 5 cells and 6 columns wide.
        let d = t.words.iter().find(|w| w.text == "Domine").unwrap();
        assert_eq!((d.width, d.height), ((5 * 8 + 6) * 4, 7 * 4));
        assert_eq!(book_page_text(2000, 3000, 6).lang, "en");
    }

    #[test]
    fn tiny_pages_lay_out_no_words() {
        for (w, h) in [(0u32, 0u32), (1, 1), (7, 1), (1, 40), (40, 1), (3, 200)] {
            for page in 1..=6 {
                let l = layout(w, h, page);
                for wd in l.lines.iter().flat_map(|line| &line.words) {
                    assert!(wd.x + wd.width <= w && wd.y + wd.height <= h);
                }
            }
        }
    }
}
