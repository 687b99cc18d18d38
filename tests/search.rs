//! IIIF Content Search 1.0 through the service: an item whose pages carry
//! ALTO (in 1/10 mm, on a page of a different size than the canvas) and
//! hOCR is searched for words, phrases across lines and folded spellings;
//! boxes land on the right canvas at the right place; paging, autocomplete,
//! ignored parameters and refusals; the OCR and other files an item lists,
//! served at the manifest's links; and a catalogue reload that brings a
//! changed OCR file into search without a restart; and real OCR output
//! (Debian's tesseract reading a rendered page) parsed and searched.

mod common;

use std::path::Path;

use common::*;
use http::{Method, StatusCode};
use serde_json::Value;
use tessera::codec::encode;
use tessera::iiif::Format;

/// Two pages of 600×900: page 1 with ALTO in mm10 on a 300×450 mm page
/// (3000×4500 units, so one unit is a fifth of a canvas pixel), page 2 with
/// hOCR on a 1200×1800 page (half scale). Search enabled on `book`, not on
/// `quiet`.
fn catalogue(root: &Path) {
    for (name, search) in [("book", true), ("quiet", false)] {
        let item = root.join("items").join(name);
        std::fs::create_dir_all(&item).unwrap();
        for n in 1..=2 {
            let page = tessera::samples::generate::book_page(600, 900, n);
            std::fs::write(item.join(format!("p{n}.jpg")), encode::encode(&page, Format::Jpg, 85).unwrap()).unwrap();
        }
        std::fs::write(item.join("p1.alto.xml"), ALTO).unwrap();
        std::fs::write(item.join("p2.hocr"), HOCR).unwrap();
        std::fs::write(
            item.join("item.toml"),
            format!(
                "[metadata]\n\"dc.title\" = \"{name}\"\n\"dspace.iiif.enabled\" = true\n\"iiif.search.enabled\" = {search}\n\n\
                 [[bitstreams]]\nfile = \"p1.jpg\"\nocr = \"p1.alto.xml\"\n\n\
                 [[bitstreams]]\nfile = \"p2.jpg\"\nocr = \"p2.hocr\"\n"
            ),
        )
        .unwrap();
    }
}

const ALTO: &str = r#"<?xml version="1.0" encoding="UTF-8"?>
<alto xmlns="http://www.loc.gov/standards/alto/ns-v4#">
  <Description><MeasurementUnit>mm10</MeasurementUnit></Description>
  <Layout><Page ID="p1" WIDTH="3000" HEIGHT="4500"><PrintSpace><TextBlock ID="b1">
    <TextLine ID="l1" HPOS="500" VPOS="1000" WIDTH="2000" HEIGHT="100">
      <String CONTENT="Hours" HPOS="500" VPOS="1000" WIDTH="500" HEIGHT="100"/><SP/>
      <String CONTENT="of" HPOS="1100" VPOS="1000" WIDTH="200" HEIGHT="100"/><SP/>
      <String CONTENT="the" HPOS="1400" VPOS="1000" WIDTH="300" HEIGHT="100"/><SP/>
      <String CONTENT="Virgin" HPOS="1800" VPOS="1000" WIDTH="700" HEIGHT="100"/>
    </TextLine>
    <TextLine ID="l2" HPOS="500" VPOS="1200" WIDTH="2000" HEIGHT="100">
      <String CONTENT="Matins" HPOS="500" VPOS="1200" WIDTH="600" HEIGHT="100"/><SP/>
      <String CONTENT="d&apos;été" HPOS="1200" VPOS="1200" WIDTH="500" HEIGHT="100"/>
    </TextLine>
  </TextBlock></PrintSpace></Page></Layout>
</alto>"#;

const HOCR: &str = r#"<?xml version="1.0" encoding="UTF-8"?>
<!DOCTYPE html PUBLIC "-//W3C//DTD XHTML 1.0 Transitional//EN" "http://www.w3.org/TR/xhtml1/DTD/xhtml1-transitional.dtd">
<html xmlns="http://www.w3.org/1999/xhtml"><head><title></title></head><body>
<div class="ocr_page" id="page_1" title="image &quot;p2.jpg&quot;; bbox 0 0 1200 1800">
 <span class="ocr_line" id="line_1" title="bbox 200 400 1000 460">
  <span class="ocrx_word" id="w1" title="bbox 200 400 400 460; x_wconf 95">Virgin</span>
  <span class="ocrx_word" id="w2" title="bbox 440 400 600 460; x_wconf 93">and</span>
  <span class="ocrx_word" id="w3" title="bbox 640 400 1000 460; x_wconf 91">Hours</span>
 </span>
</div></body></html>"#;

fn setup() -> (tempfile::TempDir, std::sync::Arc<tessera::service::App>) {
    let d = tempfile::tempdir().unwrap();
    catalogue(d.path());
    let a = app_with_catalogue(d.path());
    (d, a)
}

async fn search(app: &std::sync::Arc<tessera::service::App>, path: &str) -> Value {
    let r = get(app, path).await;
    assert_eq!(r.status(), StatusCode::OK, "{path}: {}", String::from_utf8_lossy(r.body()));
    assert_eq!(r.headers()["access-control-allow-origin"], "*");
    serde_json::from_slice(r.body()).unwrap()
}

const CANVAS: &str = "http://127.0.0.1:8182/iiif/book/canvas";

#[tokio::test]
async fn a_word_is_found_on_each_canvas_with_boxes_scaled_to_the_canvas() {
    let (_d, app) = setup();
    let doc = search(&app, "/iiif/book/search?q=hours").await;
    assert_eq!(doc["@type"], "sc:AnnotationList");
    assert_eq!(doc["within"]["total"], 2);
    let on: Vec<&str> = doc["resources"].as_array().unwrap().iter().map(|r| r["on"].as_str().unwrap()).collect();
    // ALTO mm10 on 3000 units → 600 px: ×0.2. hOCR 1200 px → 600 px: ×0.5.
    assert_eq!(on, vec![format!("{CANVAS}/0#xywh=100,200,100,20"), format!("{CANVAS}/1#xywh=320,200,180,30")]);
    let hits = doc["hits"].as_array().unwrap();
    assert_eq!(hits[0]["match"], "Hours");
    assert_eq!(hits[0]["after"], "of the Virgin Matins d'été");
    assert_eq!(hits[1]["before"], "Virgin and");
    assert_eq!(doc["resources"][0]["resource"]["chars"], "Hours");
}

#[tokio::test]
async fn a_phrase_across_a_line_break_gives_one_hit_with_a_box_per_line() {
    let (_d, app) = setup();
    let doc = search(&app, "/iiif/book/search?q=%22virgin+matins%22").await;
    let hits = doc["hits"].as_array().unwrap();
    assert_eq!(hits.len(), 1);
    assert_eq!(hits[0]["annotations"].as_array().unwrap().len(), 2);
    assert_eq!(doc["resources"][0]["on"], format!("{CANVAS}/0#xywh=360,200,140,20"));
    assert_eq!(doc["resources"][1]["on"], format!("{CANVAS}/0#xywh=100,240,120,20"));
}

#[tokio::test]
async fn case_and_diacritics_do_not_matter_and_several_words_find_each() {
    let (_d, app) = setup();
    assert_eq!(search(&app, "/iiif/book/search?q=D%27ETE").await["within"]["total"], 1);
    assert_eq!(search(&app, "/iiif/book/search?q=matins+and").await["within"]["total"], 2);
    let none = search(&app, "/iiif/book/search?q=unicorn").await;
    assert_eq!(none["within"]["total"], 0);
    assert_eq!(none["resources"], Value::Array(vec![]));
}

#[tokio::test]
async fn unsupported_parameters_are_listed_as_ignored() {
    let (_d, app) = setup();
    let doc = search(&app, "/iiif/book/search?q=hours&motivation=painting&user=x").await;
    assert_eq!(doc["ignored"], serde_json::json!(["motivation", "user"]));
    assert!(search(&app, "/iiif/book/search?q=hours").await.get("ignored").is_none());
}

#[tokio::test]
async fn autocomplete_lists_terms_with_their_counts_and_search_urls() {
    let (_d, app) = setup();
    let doc = search(&app, "/iiif/book/autocomplete?q=Ho").await;
    assert_eq!(doc["@type"], "search:TermList");
    assert_eq!(
        doc["terms"],
        serde_json::json!([{"match": "hours", "url": "http://127.0.0.1:8182/iiif/book/search?q=hours", "count": 2}])
    );
    let doc = search(&app, "/iiif/book/autocomplete?q=v&min=3").await;
    assert_eq!(doc["terms"], Value::Array(vec![]));
}

#[tokio::test]
async fn items_without_search_unknown_items_and_bad_parameters_are_refused() {
    let (_d, app) = setup();
    assert_eq!(get(&app, "/iiif/quiet/search?q=hours").await.status(), StatusCode::NOT_FOUND);
    assert_eq!(get(&app, "/iiif/nothing/search?q=hours").await.status(), StatusCode::NOT_FOUND);
    assert_eq!(get(&app, "/iiif/book/search?q=hours&page=x").await.status(), StatusCode::BAD_REQUEST);
    assert_eq!(get(&app, "/iiif/book/autocomplete?q=h&min=-1").await.status(), StatusCode::BAD_REQUEST);
}

#[tokio::test]
async fn the_manifest_search_service_answers() {
    let (_d, app) = setup();
    let m = search(&app, "/iiif/book/manifest").await;
    let id = m["service"]["@id"].as_str().unwrap();
    let path = id.strip_prefix("http://127.0.0.1:8182").unwrap();
    assert!(!path.contains('?'), "Mirador appends ?q= to the service id");
    let doc = search(&app, &format!("{path}?q=virgin")).await;
    assert_eq!(doc["within"]["total"], 2);
}

#[tokio::test]
async fn the_manifest_announces_autocomplete_and_it_answers() {
    let (_d, app) = setup();
    let m = search(&app, "/iiif/book/manifest").await;
    assert_eq!(m["service"]["profile"], "http://iiif.io/api/search/1/search");
    let auto = &m["service"]["service"];
    assert_eq!(auto["profile"], "http://iiif.io/api/search/1/autocomplete");
    let path = auto["@id"].as_str().unwrap().strip_prefix("http://127.0.0.1:8182").unwrap();
    let doc = search(&app, &format!("{path}?q=virg")).await;
    assert_eq!(doc["terms"][0]["match"], "virgin");
}

#[tokio::test]
async fn ocr_files_are_served_at_their_see_also_links_and_nothing_else_in_the_folder_is() {
    let (d, app) = setup();
    let m = search(&app, "/iiif/book/manifest").await;
    let canvases = m["sequences"][0]["canvases"].as_array().unwrap();
    for (canvas, file, format) in
        [(&canvases[0], "p1.alto.xml", "application/xml"), (&canvases[1], "p2.hocr", "text/vnd.hocr+html")]
    {
        let link = &canvas["seeAlso"];
        assert_eq!(link["format"], format);
        let path = link["@id"].as_str().unwrap().strip_prefix("http://127.0.0.1:8182").unwrap();
        let r = get(&app, path).await;
        assert_eq!(r.status(), StatusCode::OK, "{path}");
        assert_eq!(r.headers()["content-type"], format);
        assert_eq!(r.body().as_ref(), std::fs::read(d.path().join("items/book").join(file)).unwrap());
        let etag = r.headers()["etag"].to_str().unwrap().to_string();
        let again = call(&app, Method::GET, path, &[("if-none-match", &etag)]).await;
        assert_eq!(again.status(), StatusCode::NOT_MODIFIED);
    }
    // The page image is listed; the item file, other folders and traversal are not.
    assert_eq!(get(&app, "/iiif/book/file/p1.jpg").await.headers()["content-type"], "image/jpeg");
    for path in ["/iiif/book/file/item.toml", "/iiif/book/file/..%2Fquiet%2Fp1.jpg", "/iiif/quiet/file/p1.alto.xml%2F"]
    {
        let r = get(&app, path).await;
        assert_eq!(r.status(), StatusCode::NOT_FOUND, "{path}");
        assert!(!String::from_utf8_lossy(r.body()).contains(d.path().to_str().unwrap()), "no path in the answer");
    }
}

#[tokio::test]
async fn canvas_metadata_gives_the_md5_of_each_page_file() {
    let (d, app) = setup();
    let m = search(&app, "/iiif/book/manifest").await;
    let md = m["sequences"][0]["canvases"][1]["metadata"].as_array().unwrap();
    let value = |label: &str| md.iter().find(|p| p["label"] == label).map(|p| p["value"].clone());
    let bytes = std::fs::read(d.path().join("items/book/p2.jpg")).unwrap();
    assert_eq!(value("File name"), Some(Value::from("p2.jpg")));
    assert_eq!(value("MIME type"), Some(Value::from("image/jpeg")));
    assert_eq!(value("Size"), Some(Value::from(format!("{} bytes", bytes.len()))));
    let md5 = std::process::Command::new("md5sum").arg(d.path().join("items/book/p2.jpg")).output();
    match md5 {
        Ok(out) if out.status.success() => {
            let want = String::from_utf8_lossy(&out.stdout).split_whitespace().next().unwrap().to_string();
            assert_eq!(value("Checksum (MD5)"), Some(Value::from(want)));
        }
        _ => skip_missing("md5sum", "install coreutils"),
    }
}

const ADMIN: &str = "a-long-enough-admin-token";

#[tokio::test]
async fn an_admin_reload_brings_edited_ocr_and_new_items_into_service() {
    let d = tempfile::tempdir().unwrap();
    catalogue(d.path());
    let cat = d.path().join("items");
    let app = app(
        d.path(),
        &format!(
            "[presentation]\ncatalogue_root = {:?}\n[admin]\nenabled = true\ntoken = \"{ADMIN}\"",
            cat.to_str().unwrap()
        ),
    );
    assert_eq!(search(&app, "/iiif/book/search?q=unicorn").await["within"]["total"], 0);
    // The librarian corrects page 2's OCR and adds an item.
    let hocr = std::fs::read_to_string(cat.join("book/p2.hocr")).unwrap().replace(">and<", ">unicorn<");
    std::fs::write(cat.join("book/p2.hocr"), hocr).unwrap();
    std::fs::create_dir_all(cat.join("new")).unwrap();
    std::fs::copy(cat.join("book/p1.jpg"), cat.join("new/p.jpg")).unwrap();
    std::fs::write(
        cat.join("new/item.toml"),
        "[metadata]\n\"dspace.iiif.enabled\" = true\n[[bitstreams]]\nfile = \"p.jpg\"\n",
    )
    .unwrap();
    assert_eq!(get(&app, "/iiif/new/manifest").await.status(), StatusCode::NOT_FOUND, "not before the reload");
    assert_eq!(call(&app, Method::POST, "/admin/reload", &[]).await.status(), StatusCode::UNAUTHORIZED);
    let auth = format!("Bearer {ADMIN}");
    let r = call(&app, Method::POST, "/admin/reload", &[("authorization", &auth)]).await;
    assert_eq!(r.status(), StatusCode::OK);
    let report: Value = serde_json::from_slice(r.body()).unwrap();
    assert_eq!(report, serde_json::json!({"items": 3, "manifests": 3, "skipped": [], "problems": 0}));
    assert_eq!(get(&app, "/iiif/new/manifest").await.status(), StatusCode::OK);
    let doc = search(&app, "/iiif/book/search?q=unicorn").await;
    assert_eq!(doc["within"]["total"], 1);
    assert_eq!(doc["resources"][0]["on"], format!("{CANVAS}/1#xywh=220,200,80,30"));
    // Manifest ids do not move across a reload.
    assert_eq!(search(&app, "/iiif/book/manifest").await["@id"], "http://127.0.0.1:8182/iiif/book/manifest");
}

/// Intersection over union of two boxes `(x, y, w, h)`.
fn iou(a: (u32, u32, u32, u32), b: (u32, u32, u32, u32)) -> f64 {
    let (ax1, ay1, bx1, by1) = (a.0 + a.2, a.1 + a.3, b.0 + b.2, b.1 + b.3);
    let iw = ax1.min(bx1).saturating_sub(a.0.max(b.0)) as f64;
    let ih = ay1.min(by1).saturating_sub(a.1.max(b.1)) as f64;
    let inter = iw * ih;
    inter / ((a.2 * a.3) as f64 + (b.2 * b.3) as f64 - inter)
}

/// Realism: Debian's tesseract reads a rendered book page and writes hOCR
/// and ALTO as real OCR engines do. Both are recognised and parse; the
/// words tesseract read right sit on the words drawn (most boxes overlap
/// the drawn box by more than half); and such a word is found by search at
/// its drawn place.
#[test]
fn tesseract_hocr_and_alto_of_a_rendered_page_parse_and_fit_the_drawn_words() {
    use tessera::presentation::ocr::{self, OcrFormat};
    use tessera::presentation::search::{MemoryIndex, SearchBackend};
    let has_tesseract =
        std::process::Command::new("tesseract").arg("--version").output().map(|o| o.status.success()).unwrap_or(false);
    if !has_tesseract {
        skip_missing("tesseract", "scripts/deps.sh test installs tesseract-ocr and tesseract-ocr-eng");
        return;
    }
    let (w, h) = (1200, 1800);
    // The English page if there is one (the colophon), else page 1.
    let n = (1..=6).find(|&n| tessera::samples::generate::book_page_text(w, h, n).lang == "en").unwrap_or(1);
    let drawn = tessera::samples::generate::book_page_words(w, h, n);
    let d = tempfile::tempdir().unwrap();
    let png = d.path().join("page.png");
    let page = tessera::samples::generate::book_page(w, h, n);
    std::fs::write(&png, encode::encode(&page, Format::Png, 0).unwrap()).unwrap();
    let out = std::process::Command::new("tesseract")
        .arg(&png)
        .arg(d.path().join("out"))
        .args(["-l", "eng", "hocr", "alto"])
        .env("OMP_THREAD_LIMIT", "1")
        .output()
        .unwrap();
    assert!(out.status.success(), "tesseract failed: {}", String::from_utf8_lossy(&out.stderr));
    let hocr = std::fs::read(d.path().join("out.hocr")).unwrap();
    let alto = std::fs::read(d.path().join("out.xml")).unwrap();
    assert_eq!(ocr::sniff(&hocr), Some(OcrFormat::Hocr));
    assert_eq!(ocr::sniff(&alto), Some(OcrFormat::Alto));
    let from_hocr = ocr::parse(&hocr, w, h).unwrap();
    let from_alto = ocr::parse(&alto, w, h).unwrap();
    assert!(from_hocr.len() >= drawn.len() / 2, "tesseract found {} words of {}", from_hocr.len(), drawn.len());
    let texts = |ws: &[ocr::Word]| ws.iter().map(|w| w.text.clone()).collect::<Vec<_>>();
    assert_eq!(texts(&from_hocr), texts(&from_alto), "the same words through hOCR and ALTO");

    // Words read right, and how well their boxes sit on the drawn ones.
    let mut read_right = Vec::new();
    for word in &from_hocr {
        let best = drawn
            .iter()
            .filter(|d| d.text == word.text)
            .map(|d| (iou((word.x, word.y, word.w, word.h), (d.x, d.y, d.width, d.height)), d))
            .max_by(|a, b| a.0.total_cmp(&b.0));
        if let Some((score, d)) = best {
            read_right.push((score, word.clone(), d.clone()));
        }
    }
    let fitting = read_right.iter().filter(|(s, ..)| *s >= 0.5).count();
    println!(
        "page {n}: {} words drawn, {} read, {} read right, {fitting} of those on their drawn box",
        drawn.len(),
        from_hocr.len(),
        read_right.len()
    );
    assert!(read_right.len() >= 10, "tesseract read too few words right to judge: {}", read_right.len());
    assert!(fitting * 10 >= read_right.len() * 8, "only {fitting} of {} boxes fit the drawn words", read_right.len());

    // Search over tesseract's words finds a well-read word where it is drawn.
    let (_, word, at) = read_right
        .iter()
        .filter(|(s, w, _)| *s >= 0.5 && w.text.chars().all(char::is_alphabetic) && w.text.len() >= 4)
        .max_by(|a, b| a.0.total_cmp(&b.0))
        .expect("a well-read word");
    let index = MemoryIndex::new(vec![from_alto]);
    let results = index.search(&word.text, 0);
    let boxes: Vec<(u32, u32, u32, u32)> =
        results.hits.iter().flat_map(|h| &h.boxes).map(|b| (b.x, b.y, b.w, b.h)).collect();
    assert!(
        boxes.iter().any(|b| iou(*b, (at.x, at.y, at.width, at.height)) >= 0.5),
        "searching {:?} gave {boxes:?}, the word is drawn at {:?}",
        word.text,
        (at.x, at.y, at.width, at.height)
    );
}
