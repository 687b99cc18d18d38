//! Mirador 3 end to end: a real `tessera serve` on loopback, a generated
//! three-page catalogue item, and `tests/e2e/mirador.mjs` driving Debian's
//! headless chromium (playwright-core) on a page of another origin that opens
//! the item's manifest in Mirador 3.4.3. The script checks CORS on the
//! manifest, info.json and tiles, that the viewer draws pixels, and that
//! zooming in asks scale-factor-1 tiles; or, with `--expect-blocked`, that a
//! server allowing another origin gets nothing drawn; or, with `--search`,
//! that a word searched through Mirador's search panel lists its hits, takes
//! the viewer to the first hit's page and highlights the hit's box there.
//!
//! `scripts/e2e-setup.sh` installs chromium and the npm packages (into
//! target/tools/e2e). Without node, the packages or the browser the tests say
//! `SKIPPED: …` and pass; under CI (`CI` set) that is a failure.
//! Screenshots and request logs: target/test-artifacts/mirador/{allowed,listed-origin,blocked,viewer-page}/.
//!
//! Environment: TESSERA_NODE (node binary, default `node`), TESSERA_E2E_MODULES
//! (node_modules with mirador and playwright-core, default
//! target/tools/e2e/node_modules), TESSERA_CHROMIUM (default /usr/bin/chromium).

mod common;

use std::path::Path;
use std::process::{Command, Stdio};
use std::sync::Mutex;
use std::time::Duration;

use common::{e2e_prerequisites, repo_path, wait_for_script, E2e, Server};
use tessera::codec::encode;
use tessera::iiif::Format;

const ITEM: &str = "test-book";
/// The script's own limit; the test allows a margin over it.
const SCRIPT_TIMEOUT_S: u64 = 120;

/// One browser at a time: the machines running the suite have few cores.
static BROWSER: Mutex<()> = Mutex::new(());

/// What the end-to-end test needs, or None (SKIPPED) when something is
/// missing; panics under CI.
fn prerequisites() -> Option<E2e> {
    e2e_prerequisites("mirador", "mirador/dist/mirador.min.js")
}

/// An image root with one catalogue item: three generated book pages.
fn catalogue() -> tempfile::TempDir {
    let d = tempfile::tempdir().unwrap();
    let item = d.path().join("items").join(ITEM);
    std::fs::create_dir_all(&item).unwrap();
    for n in 1..=3 {
        let page = tessera::samples::generate::book_page(1200, 1800, n);
        std::fs::write(item.join(format!("page-{n}.jpg")), encode::encode(&page, Format::Jpg, 85).unwrap()).unwrap();
    }
    std::fs::write(
        item.join("item.toml"),
        r#"[metadata]
"dc.title" = "Test book"
"dc.contributor.author" = "Tessera tests"
"dspace.iiif.enabled" = true
"iiif.viewing.hint" = "paged"
"iiif.canvas.naming" = "Folio"

[[bitstreams]]
file = "page-1.jpg"
metadata = { "iiif.label" = "Cover", "iiif.toc" = "Front matter" }

[[bitstreams]]
file = "page-2.jpg"
metadata = { "iiif.toc" = "Part I" }

[[bitstreams]]
file = "page-3.jpg"
"#,
    )
    .unwrap();
    d
}

/// An image root with a searchable item: three generated book pages with
/// their ALTO (the words drawn on them, exact boxes), one page per view.
fn searchable_catalogue() -> tempfile::TempDir {
    let d = tempfile::tempdir().unwrap();
    let item = d.path().join("items").join(ITEM);
    std::fs::create_dir_all(&item).unwrap();
    let mut toml = String::from(
        "[metadata]\n\"dc.title\" = \"Searchable book\"\n\"dspace.iiif.enabled\" = true\n\"iiif.search.enabled\" = true\n",
    );
    for n in 1..=3 {
        let page = tessera::samples::generate::book_page(PAGE.0, PAGE.1, n);
        std::fs::write(item.join(format!("page-{n}.jpg")), encode::encode(&page, Format::Jpg, 85).unwrap()).unwrap();
        let text = tessera::samples::generate::book_page_text(PAGE.0, PAGE.1, n);
        std::fs::write(item.join(format!("page-{n}.xml")), tessera::samples::ocr::alto(&text, "page.jpg")).unwrap();
        toml.push_str(&format!("\n[[bitstreams]]\nfile = \"page-{n}.jpg\"\nocr = \"page-{n}.xml\"\n"));
    }
    std::fs::write(item.join("item.toml"), toml).unwrap();
    d
}

/// The size of the generated pages (the canvases have it too).
const PAGE: (u32, u32) = (1200, 1800);

/// A word of page 2 that page 1 does not have (so Mirador must change
/// page), and where its first occurrence is: `(word, "1#xywh=x,y,w,h")`.
fn word_only_from_page_two() -> (String, String) {
    use tessera::samples::generate::book_page_words;
    // As search folds: letters only, any case.
    let fold = |s: &str| s.chars().filter(|c| c.is_alphabetic()).collect::<String>().to_lowercase();
    let mut seen: Vec<String> = book_page_words(PAGE.0, PAGE.1, 1).iter().map(|w| fold(&w.text)).collect();
    for w in book_page_words(PAGE.0, PAGE.1, 2) {
        let f = fold(&w.text);
        if w.text.len() >= 4 && w.text.chars().all(char::is_alphabetic) && !seen.contains(&f) {
            // Its first occurrence: no earlier word of page 2 folds to it.
            return (w.text.clone(), format!("1#xywh={},{},{},{}", w.x, w.y, w.width, w.height));
        }
        seen.push(f);
    }
    panic!("page 2 has no word that page 1 lacks")
}

fn start(images: &Path, e2e: &E2e, cors: Option<&str>) -> Server {
    let catalogue_root = images.join("items").display().to_string();
    let static_dir = e2e.modules.join("mirador/dist").display().to_string();
    let mut env = vec![
        ("TESSERA_PRESENTATION__CATALOGUE_ROOT", catalogue_root.as_str()),
        ("TESSERA_VIEWER__STATIC_DIR", static_dir.as_str()),
    ];
    if let Some(origins) = cors {
        env.push(("TESSERA_CORS__ALLOWED_ORIGINS", origins));
    }
    Server::start(images, &env)
}

/// Runs mirador.mjs against `server`; panics with its log unless it passes.
fn run_script(e2e: &E2e, server: &Server, artifacts: &str, extra: &[&str]) {
    let out = repo_path("target/test-artifacts/mirador").join(artifacts);
    let _ = std::fs::remove_dir_all(&out);
    std::fs::create_dir_all(&out).unwrap();
    let log_path = out.join("node.log");
    let log = std::fs::File::create(&log_path).unwrap();
    let timeout = SCRIPT_TIMEOUT_S.to_string();
    let mut cmd = Command::new(&e2e.node);
    cmd.arg(repo_path("tests/e2e/mirador.mjs"))
        .arg(server.base())
        .arg(ITEM)
        .arg(&out)
        .args(["--timeout", &timeout, "--modules"])
        .arg(&e2e.modules)
        .arg("--chromium")
        .arg(&e2e.chromium)
        .args(extra)
        .stdin(Stdio::null())
        .stdout(log.try_clone().unwrap())
        .stderr(log);
    let mut child = cmd.spawn().expect("spawn node");
    let status = wait_for_script(&mut child, Duration::from_secs(SCRIPT_TIMEOUT_S + 45));
    let text = std::fs::read_to_string(&log_path).unwrap_or_default();
    // Keep the browser's chatter (DBus, GPU stalls) out of the test's output.
    let shown: Vec<&str> = text.lines().filter(|l| !l.contains("GL Driver Message")).collect();
    println!("{}", shown.join("\n"));
    match status {
        Some(s) if s.success() => {}
        Some(s) => panic!(
            "mirador.mjs failed ({s}); artifacts in {}:\n{}",
            out.display(),
            shown.iter().rev().take(40).rev().cloned().collect::<Vec<_>>().join("\n")
        ),
        None => panic!("mirador.mjs did not finish within {} s; log: {}", SCRIPT_TIMEOUT_S + 45, log_path.display()),
    }
}

/// Default CORS ("*"): the manifest, info.json and tiles load in Mirador,
/// pixels are drawn, and zooming in asks and gets scale-factor-1 tiles.
#[test]
fn mirador_shows_and_zooms_an_item_from_another_origin() {
    let Some(e2e) = prerequisites() else { return };
    let images = catalogue();
    let server = start(images.path(), &e2e, None);
    let _one = BROWSER.lock().unwrap_or_else(|e| e.into_inner());
    run_script(&e2e, &server, "allowed", &[]);
    let out = repo_path("target/test-artifacts/mirador/allowed");
    for f in ["before-zoom.png", "after-zoom.png", "report.json", "requests.json"] {
        assert!(out.join(f).is_file(), "{f} missing in {}", out.display());
    }
}

/// `cors.allowed_origins` listing the page's origin: it is echoed back with
/// `Vary: Origin`, and Mirador works the same.
#[test]
fn mirador_works_with_a_listed_origin() {
    let Some(e2e) = prerequisites() else { return };
    let images = catalogue();
    let _one = BROWSER.lock().unwrap_or_else(|e| e.into_inner());
    let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
    let origins = format!("[\"http://127.0.0.1:{port}\"]");
    let server = start(images.path(), &e2e, Some(&origins));
    run_script(&e2e, &server, "listed-origin", &["--strict-origin", "--page-port", &port.to_string()]);
}

/// `cors.allowed_origins` naming another origin: Tessera's answers carry no
/// Allow-Origin for the page, Mirador cannot read the manifest, nothing is drawn.
#[test]
fn mirador_gets_nothing_when_its_origin_is_not_allowed() {
    let Some(e2e) = prerequisites() else { return };
    let images = catalogue();
    let server = start(images.path(), &e2e, Some("[\"https://viewer.example.org\"]"));
    let _one = BROWSER.lock().unwrap_or_else(|e| e.into_inner());
    run_script(&e2e, &server, "blocked", &["--expect-blocked"]);
    assert!(repo_path("target/test-artifacts/mirador/blocked/blocked.png").is_file());
}

/// Tessera's own `/viewer/{item}` page (same origin, Mirador served from
/// `/static/` out of `viewer.static_dir`) shows and zooms the item.
#[test]
fn tessera_viewer_page_shows_and_zooms_the_item() {
    let Some(e2e) = prerequisites() else { return };
    let images = catalogue();
    let server = start(images.path(), &e2e, None);
    let _one = BROWSER.lock().unwrap_or_else(|e| e.into_inner());
    run_script(&e2e, &server, "viewer-page", &["--viewer-page"]);
}

/// Content Search in Mirador: a word typed in the search panel is found
/// (request answered with CORS), the hit list shows, the viewer goes to
/// page 2 where the word first appears, and the yellow highlight of the
/// selected hit is drawn where the word's box is.
#[test]
fn mirador_search_panel_finds_a_word_and_highlights_it_on_its_page() {
    let Some(e2e) = prerequisites() else { return };
    let images = searchable_catalogue();
    let server = start(images.path(), &e2e, None);
    let (word, hit) = word_only_from_page_two();
    let _one = BROWSER.lock().unwrap_or_else(|e| e.into_inner());
    run_script(&e2e, &server, "search", &["--search", &word, "--expect-hit", &hit]);
    assert!(repo_path("target/test-artifacts/mirador/search/search.png").is_file());
}
