//! Presentation API 3.0 through the service: manifests, canvases and the
//! collection built from an item catalogue, at their own URLs and by
//! content negotiation on the 2.1 ones; `presentation.default_version`;
//! 2.1.1 answers unchanged; the spec's MUSTs checked here and the models of
//! PyPI `iiif-prezi3` (installed in a venv under target/tools when missing).

mod common;

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::{Arc, Mutex};

use common::*;
use http::{Method, StatusCode};
use serde_json::Value;
use tessera::codec::encode;
use tessera::iiif::Format;
use tessera::service::App;

const HOST: &str = "http://127.0.0.1:8182";
const P2: &str = "application/ld+json;profile=\"http://iiif.io/api/presentation/2/context.json\"";
const P3: &str = "application/ld+json;profile=\"http://iiif.io/api/presentation/3/context.json\"";

// What the DSpace-like item's item.toml says (written by `catalogue`).
const BOOK: &str = "test-book";
const TITLE: &str = "Test book";
const AUTHORS: [&str; 2] = ["A. Scribe", "B. Limner"];
const DATE: &str = "1480-03-25";
const DESCRIPTION: &str = "A small book of hours.";
const RIGHTS: &str = "Public domain in the EU";
const RIGHTS_URI: &str = "http://creativecommons.org/publicdomain/mark/1.0/";
const HINT: &str = "paged";
const PAGE_LABELS: [&str; 3] = ["Cover", "Page 2", "Page 3"];
const TOC: [&str; 2] = ["Front", "Part I|||Chapter 1"];
const PDF_LABEL: &str = "The whole book (PDF)";
/// The OCR of page 2 (an ALTO file with one word).
const ALTO: &str = "page-2.alto.xml";
const ALTO_TEXT: &str = r#"<?xml version="1.0" encoding="UTF-8"?>
<alto xmlns="http://www.loc.gov/standards/alto/ns-v4#"><Layout><Page WIDTH="600" HEIGHT="900">
<PrintSpace><TextBlock><TextLine><String CONTENT="virgin" HPOS="10" VPOS="20" WIDTH="80" HEIGHT="20"/></TextLine></TextBlock></PrintSpace>
</Page></Layout></alto>"#;
/// An item whose licence URI is not one that `rights` may hold.
const OTHER: &str = "z-other";
const OTHER_URI: &str = "https://example.org/terms-of-use";
/// Configured in the test apps: the item's page in the repository.
const RELATED: &str = "https://repository.example.org/items/{item}";

fn catalogue(root: &Path) {
    let item = root.join("items").join(BOOK);
    std::fs::create_dir_all(&item).unwrap();
    for n in 1..=3 {
        let page = tessera::samples::generate::book_page(600, 900, n);
        std::fs::write(item.join(format!("page-{n}.jpg")), encode::encode(&page, Format::Jpg, 85).unwrap()).unwrap();
    }
    std::fs::write(item.join("book.pdf"), "%PDF-1.4\n").unwrap();
    std::fs::write(item.join(ALTO), ALTO_TEXT).unwrap();
    let toml = format!(
        r#"[metadata]
"dc.title" = "{TITLE}"
"dc.contributor.author" = ["{a0}", "{a1}"]
"dc.date.issued" = "{DATE}"
"dc.description" = "{DESCRIPTION}"
"dc.rights" = "{RIGHTS}"
"dc.rights.uri" = "{RIGHTS_URI}"
"dspace.iiif.enabled" = true
"iiif.viewing.hint" = "{HINT}"
"iiif.canvas.naming" = "Page"
"iiif.search.enabled" = true

[[bitstreams]]
file = "page-1.jpg"
metadata = {{ "iiif.label" = "{l0}", "iiif.toc" = "{t0}" }}

[[bitstreams]]
file = "page-2.jpg"
metadata = {{ "iiif.toc" = "{t1}" }}
ocr = "{ALTO}"

[[bitstreams]]
file = "page-3.jpg"

[[bitstreams]]
file = "book.pdf"
metadata = {{ "iiif.label" = "{PDF_LABEL}" }}
"#,
        a0 = AUTHORS[0],
        a1 = AUTHORS[1],
        l0 = PAGE_LABELS[0],
        t0 = TOC[0],
        t1 = TOC[1],
    );
    std::fs::write(item.join("item.toml"), toml).unwrap();
    let other = root.join("items").join(OTHER);
    std::fs::create_dir_all(&other).unwrap();
    std::fs::copy(item.join("page-1.jpg"), other.join("p.jpg")).unwrap();
    std::fs::write(
        other.join("item.toml"),
        format!(
            "[metadata]\n\"dspace.iiif.enabled\" = true\n\"dc.rights.uri\" = \"{OTHER_URI}\"\n\"dc.date.issued\" = \"about 1500\"\n\n[[bitstreams]]\nfile = \"p.jpg\"\n"
        ),
    )
    .unwrap();
    let plain = root.join("items/a-plain");
    std::fs::create_dir_all(&plain).unwrap();
    std::fs::copy(item.join("page-2.jpg"), plain.join("a.jpg")).unwrap();
    std::fs::write(
        plain.join("item.toml"),
        "[metadata]\n\"dspace.iiif.enabled\" = true\n[[bitstreams]]\nfile = \"a.jpg\"\n",
    )
    .unwrap();
    let hidden = root.join("items/hidden");
    std::fs::create_dir_all(&hidden).unwrap();
    std::fs::copy(item.join("page-1.jpg"), hidden.join("p.jpg")).unwrap();
    std::fs::write(
        hidden.join("item.toml"),
        "[metadata]\n\"dc.title\" = \"Hidden\"\n\n[[bitstreams]]\nfile = \"p.jpg\"\n",
    )
    .unwrap();
}

/// The ids of the items that have manifests, in catalogue order (by id).
fn enabled_items() -> Vec<&'static str> {
    let mut ids = vec![BOOK, OTHER, "a-plain"];
    ids.sort();
    ids
}

fn setup_with(extra: &str) -> (tempfile::TempDir, Arc<App>) {
    let d = tempfile::tempdir().unwrap();
    catalogue(d.path());
    let cat = d.path().join("items");
    let toml =
        format!("[presentation]\ncatalogue_root = {:?}\nrelated_url = {RELATED:?}\n{extra}", cat.to_str().unwrap());
    let a = app(d.path(), &toml);
    (d, a)
}

fn setup() -> (tempfile::TempDir, Arc<App>) {
    setup_with("")
}

fn json(b: &[u8]) -> Value {
    serde_json::from_slice(b).unwrap()
}

/// The path of a URL of this app.
fn path_of(url: &str) -> &str {
    url.strip_prefix(HOST).unwrap_or_else(|| panic!("{url} is not a URL of the app"))
}

async fn get_json(app: &Arc<App>, url_or_path: &str) -> Value {
    let path = url_or_path.strip_prefix(HOST).unwrap_or(url_or_path);
    let r = get(app, path).await;
    assert_eq!(r.status(), StatusCode::OK, "{path}");
    json(r.body())
}

fn manifest3_path(item: &str) -> String {
    format!("/iiif/presentation/3/{item}/manifest")
}

// ---- the spec's MUSTs, checked here --------------------------------------

fn is_http_uri(s: &str) -> bool {
    reqwest::Url::parse(s).is_ok_and(|u| matches!(u.scheme(), "http" | "https") && u.host().is_some())
}

/// A language map: an object of language keys, each with a list of strings.
fn assert_language_map(v: &Value, at: &str) {
    let m = v.as_object().unwrap_or_else(|| panic!("{at}: not a language map: {v}"));
    assert!(!m.is_empty(), "{at}: empty language map");
    for (k, vals) in m {
        assert!(!k.is_empty(), "{at}: empty language key");
        let a = vals.as_array().unwrap_or_else(|| panic!("{at}.{k}: not a list: {vals}"));
        assert!(!a.is_empty() && a.iter().all(Value::is_string), "{at}.{k}: not a list of strings: {vals}");
    }
}

/// Every resource (an object with an id) has a type and an HTTP(S) id;
/// labels, summaries, metadata and required statements are language maps.
/// Older services keep `@id`/`@type`, as 3.0 asks.
fn assert_resources_well_formed(v: &Value, at: &str) {
    match v {
        Value::Object(m) => {
            for (id_key, type_key) in [("id", "type"), ("@id", "@type")] {
                if let Some(id) = m.get(id_key) {
                    let id = id.as_str().unwrap_or_else(|| panic!("{at}.{id_key} is not a string"));
                    assert!(is_http_uri(id), "{at}.{id_key} {id:?} is not an HTTP(S) URI");
                    assert!(m.get(type_key).is_some_and(Value::is_string), "{at} ({id}) has no {type_key}");
                }
            }
            for key in ["label", "summary"] {
                if let Some(l) = m.get(key) {
                    assert_language_map(l, &format!("{at}.{key}"));
                }
            }
            if let Some(md) = m.get("metadata") {
                for (i, pair) in md.as_array().expect("metadata is a list").iter().enumerate() {
                    assert_language_map(&pair["label"], &format!("{at}.metadata[{i}].label"));
                    assert_language_map(&pair["value"], &format!("{at}.metadata[{i}].value"));
                }
            }
            if let Some(rs) = m.get("requiredStatement") {
                assert_language_map(&rs["label"], &format!("{at}.requiredStatement.label"));
                assert_language_map(&rs["value"], &format!("{at}.requiredStatement.value"));
            }
            for (k, child) in m {
                if k != "metadata" {
                    assert_resources_well_formed(child, &format!("{at}.{k}"));
                }
            }
        }
        Value::Array(a) => {
            for (i, child) in a.iter().enumerate() {
                assert_resources_well_formed(child, &format!("{at}[{i}]"));
            }
        }
        _ => {}
    }
}

/// A manifest's MUSTs: context, id, type, label, items of canvases with
/// sizes, each painted by one annotation targeting it; ranges that name
/// only its canvases. Returns the canvases.
fn assert_manifest_musts(m: &Value, url: &str) -> Vec<Value> {
    assert_eq!(m["@context"], "http://iiif.io/api/presentation/3/context.json", "{url}");
    assert_eq!(m["id"], url);
    assert_eq!(m["type"], "Manifest");
    assert_resources_well_formed(m, url);
    assert_language_map(&m["label"], &format!("{url} label"));
    let canvases = m["items"].as_array().expect("items").clone();
    assert!(!canvases.is_empty(), "{url}: a manifest has at least one canvas");
    for c in &canvases {
        assert_eq!(c["type"], "Canvas");
        let id = c["id"].as_str().unwrap();
        assert!(c["width"].as_u64().is_some_and(|w| w > 0) && c["height"].as_u64().is_some_and(|h| h > 0), "{id}");
        let pages = c["items"].as_array().expect("canvas items");
        assert_eq!(pages.len(), 1, "{id}");
        assert_eq!(pages[0]["type"], "AnnotationPage");
        let annos = pages[0]["items"].as_array().expect("annotation page items");
        assert_eq!(annos.len(), 1, "{id}");
        let a = &annos[0];
        assert_eq!((a["type"].as_str(), a["motivation"].as_str()), (Some("Annotation"), Some("painting")), "{id}");
        assert_eq!(a["target"], c["id"], "the painting annotation targets its canvas");
        assert_eq!(a["body"]["type"], "Image", "{id}");
        assert_eq!((&a["body"]["width"], &a["body"]["height"]), (&c["width"], &c["height"]), "{id}");
    }
    let canvas_ids: Vec<&Value> = canvases.iter().map(|c| &c["id"]).collect();
    fn walk<'a>(r: &'a Value, out: &mut Vec<&'a Value>) {
        for i in r["items"].as_array().into_iter().flatten() {
            match i["type"].as_str() {
                Some("Canvas") => out.push(&i["id"]),
                Some("Range") => walk(i, out),
                other => panic!("a range holds a {other:?}"),
            }
        }
    }
    for r in m["structures"].as_array().into_iter().flatten() {
        assert_eq!(r["type"], "Range");
        let mut named = Vec::new();
        walk(r, &mut named);
        assert!(named.iter().all(|id| canvas_ids.contains(id)), "{url}: a range names a canvas not in items");
    }
    if let Some(b) = m.get("behavior") {
        let ok = [
            "auto-advance",
            "no-auto-advance",
            "repeat",
            "no-repeat",
            "unordered",
            "individuals",
            "continuous",
            "paged",
        ];
        assert!(b.as_array().unwrap().iter().all(|v| ok.contains(&v.as_str().unwrap())), "{url}: behavior {b}");
    }
    canvases
}

// ---- iiif-prezi3 -----------------------------------------------------------

/// Checks each JSON file against the iiif-prezi3 model of its `type`.
const PREZI3_CHECK: &str = r#"
import json, sys, warnings
warnings.simplefilter('ignore')
from iiif_prezi3 import Manifest, Collection, Canvas
failed = 0
for path in sys.argv[1:]:
    with open(path) as fh:
        doc = json.load(fh)
    cls = {'Manifest': Manifest, 'Collection': Collection, 'Canvas': Canvas}[doc['type']]
    try:
        cls(**doc)
        print('PASS ' + path)
    except Exception as e:
        failed += 1
        print('FAIL ' + path + ': ' + str(e))
sys.exit(failed)
"#;

/// A python with iiif-prezi3: the venv under target/tools, made here when
/// missing (once per test binary). None (SKIPPED) when pip cannot install
/// it; under CI, that is a failure.
fn prezi3_python() -> Option<PathBuf> {
    static LOCK: Mutex<()> = Mutex::new(());
    let _one_at_a_time = LOCK.lock().unwrap_or_else(|e| e.into_inner());
    let venv = repo_path("target/tools/prezi3");
    let python = venv.join("bin/python");
    let ready =
        |p: &Path| Command::new(p).args(["-c", "import iiif_prezi3"]).output().is_ok_and(|o| o.status.success());
    if ready(&python) {
        return Some(python);
    }
    std::fs::create_dir_all(venv.parent().unwrap()).unwrap();
    let made = Command::new("python3").arg("-m").arg("venv").arg(&venv).output();
    let installed = made.is_ok_and(|o| o.status.success())
        && Command::new(venv.join("bin/pip"))
            .args(["install", "-q", "--disable-pip-version-check", "iiif-prezi3==3.1.1"])
            .output()
            .is_ok_and(|o| o.status.success());
    if installed && ready(&python) {
        Some(python)
    } else {
        skip_missing("iiif-prezi3 (PyPI)", &format!("pip could not install it into {}", venv.display()));
        None
    }
}

fn prezi3_validate(python: &Path, files: &[PathBuf]) {
    let out = Command::new(python).arg("-c").arg(PREZI3_CHECK).args(files).output().unwrap();
    let log = String::from_utf8_lossy(&out.stdout).to_string() + &String::from_utf8_lossy(&out.stderr);
    println!("{log}");
    assert!(out.status.success(), "iiif-prezi3 refused:\n{log}");
    assert_eq!(log.matches("PASS ").count(), files.len(), "{log}");
}

// ---- tests -------------------------------------------------------------------

#[tokio::test]
async fn every_3_0_manifest_and_the_collection_pass_the_spec_musts_and_iiif_prezi3() {
    let (_d, app) = setup_with(
        "attribution = \"Provided by the Tessera Library\"\nlogo = \"https://library.example.org/logo.png\"",
    );
    let col_url = format!("{HOST}/iiif/presentation/3/collection");
    let col = get_json(&app, &col_url).await;
    assert_eq!(col["@context"], "http://iiif.io/api/presentation/3/context.json");
    assert_eq!((col["id"].as_str(), col["type"].as_str()), (Some(col_url.as_str()), Some("Collection")));
    assert_resources_well_formed(&col, "collection");
    let entries = col["items"].as_array().unwrap();
    let expected: Vec<String> = enabled_items().iter().map(|i| format!("{HOST}{}", manifest3_path(i))).collect();
    let listed: Vec<&str> = entries.iter().map(|m| m["id"].as_str().unwrap()).collect();
    assert_eq!(listed, expected, "the collection lists every enabled item, in catalogue order");
    assert!(entries.iter().all(|m| m["type"] == "Manifest"));
    let out = tempfile::tempdir().unwrap();
    let mut files = vec![out.path().join("collection.json")];
    std::fs::write(&files[0], col.to_string()).unwrap();
    for (n, entry) in entries.iter().enumerate() {
        let url = entry["id"].as_str().unwrap();
        let m = get_json(&app, url).await;
        assert_manifest_musts(&m, url);
        assert_eq!(m["label"], entry["label"], "the collection gives each manifest's label");
        let f = out.path().join(format!("manifest-{n}.json"));
        std::fs::write(&f, m.to_string()).unwrap();
        files.push(f);
    }
    let r = call(&app, Method::GET, &format!("/iiif/{BOOK}/canvas/1"), &[("accept", P3)]).await;
    let canvas = json(r.body());
    assert_eq!(canvas["type"], "Canvas", "the canvas URL answers 3.0 when asked");
    assert_resources_well_formed(&canvas, "canvas");
    let f = out.path().join("canvas.json");
    std::fs::write(&f, canvas.to_string()).unwrap();
    files.push(f);
    let Some(python) = prezi3_python() else { return };
    prezi3_validate(&python, &files);
}

#[tokio::test]
async fn the_image_services_of_3_0_canvases_resolve_to_image_api_3_and_2_info_documents() {
    let (_d, app) = setup();
    for item in enabled_items() {
        let m = get_json(&app, &manifest3_path(item)).await;
        let mut bodies: Vec<Value> =
            m["items"].as_array().unwrap().iter().map(|c| c["items"][0]["items"][0]["body"].clone()).collect();
        bodies.push(m["thumbnail"][0].clone());
        for body in bodies {
            let services = body["service"].as_array().unwrap();
            let v3 = services.iter().find(|s| s["type"] == "ImageService3").expect("an ImageService3");
            let id = v3["id"].as_str().unwrap();
            let info = get_json(&app, &format!("{}/info.json", path_of(id))).await;
            assert_eq!((info["id"].as_str(), info["type"].as_str()), (Some(id), Some("ImageService3")));
            assert_eq!(info["profile"], v3["profile"]);
            let img = get(&app, path_of(body["id"].as_str().unwrap())).await;
            assert_eq!(img.status(), StatusCode::OK, "{}", body["id"]);
            let v2 = services.iter().find(|s| s["@type"] == "ImageService2").expect("the 2.1.1 service too");
            let id2 = v2["@id"].as_str().unwrap();
            let info2 = get_json(&app, &format!("{}/info.json", path_of(id2))).await;
            assert_eq!(info2["@id"], id2);
            assert_eq!(
                (info["width"].clone(), info["height"].clone()),
                (info2["width"].clone(), info2["height"].clone())
            );
        }
    }
}

#[tokio::test]
async fn the_2_1_answers_are_byte_for_byte_those_of_the_2_1_builder_with_or_without_the_2_profile() {
    let (d, app) = setup();
    let cfg = &app.cfg.presentation;
    let (cat, errors) = tessera::presentation::Catalogue::load(&d.path().join("items"), d.path());
    assert!(errors.is_empty(), "{errors:?}");
    let image_base = cfg.image_service_base(HOST, &app.cfg.server.prefix_v2);
    let dims = |id: &str| app.dims_now(id);
    let no_checksum = |_: &tessera::presentation::catalogue::Image| None;
    let ctx = tessera::presentation::Ctx {
        base: HOST,
        image_service_base: &image_base,
        cfg,
        dims: &dims,
        checksum: &no_checksum,
    };
    for path in [format!("/iiif/{BOOK}/manifest"), format!("/iiif/{BOOK}/canvas/0"), "/iiif/collection".to_string()] {
        let bare = get(&app, &path).await;
        let asked = call(&app, Method::GET, &path, &[("accept", P2)]).await;
        assert_eq!(bare.status(), StatusCode::OK, "{path}");
        assert_eq!(bare.body(), asked.body(), "{path}: the 2 profile and no profile give the same bytes");
        assert_eq!(bare.headers()["etag"], asked.headers()["etag"], "{path}");
        assert_eq!(json(bare.body())["@context"], "http://iiif.io/api/presentation/2/context.json", "{path}");
    }
    // What the 2.1 builder makes, pretty-printed as the handler sends it
    // (canvas checksums aside: the builder here is given none).
    let built = tessera::presentation::manifest::collection(&cat, &ctx);
    let served = get(&app, "/iiif/collection").await;
    assert_eq!(served.body().as_ref(), serde_json::to_vec_pretty(&built).unwrap().as_slice());
    let mut served_m = json(get(&app, &format!("/iiif/{BOOK}/manifest")).await.body());
    let mut built_m = tessera::presentation::manifest::manifest(cat.item(BOOK).unwrap(), &ctx).unwrap();
    for m in [&mut served_m, &mut built_m] {
        for c in m["sequences"][0]["canvases"].as_array_mut().unwrap() {
            let md = c["metadata"].as_array_mut().unwrap();
            md.retain(|p| p["label"] != tessera::presentation::manifest::field_label("file.checksum"));
        }
    }
    assert_eq!(served_m, built_m);
}

#[tokio::test]
async fn each_accept_value_answers_its_version_and_content_type_with_vary_accept_and_cors() {
    let (_d, app) = setup();
    let cases: [(Option<&str>, u8, &str); 5] = [
        (None, 2, "application/json"),
        (Some("application/json"), 2, "application/json"),
        (Some("application/ld+json"), 2, P2),
        (Some(P2), 2, P2),
        (Some(P3), 3, P3),
    ];
    for path in [format!("/iiif/{BOOK}/manifest"), "/iiif/collection".into(), format!("/iiif/{BOOK}/canvas/2")] {
        for (accept, version, ct) in cases {
            let headers: Vec<(&str, &str)> = accept.map(|a| ("accept", a)).into_iter().collect();
            let r = call(&app, Method::GET, &path, &headers).await;
            assert_eq!(r.status(), StatusCode::OK, "{path} {accept:?}");
            assert_eq!(r.headers()["content-type"], ct, "{path} {accept:?}");
            let vary = r.headers()["vary"].to_str().unwrap();
            assert!(vary.split(',').any(|v| v.trim() == "Accept"), "{path} {accept:?}: Vary {vary}");
            assert_eq!(r.headers()["access-control-allow-origin"], "*", "{path} {accept:?}");
            let doc = json(r.body());
            let context = format!("http://iiif.io/api/presentation/{version}/context.json");
            assert_eq!(doc["@context"], context, "{path} {accept:?}");
        }
    }
    // The 3.0 URLs answer 3.0 whatever is asked.
    for path in [manifest3_path(BOOK), "/iiif/presentation/3/collection".into()] {
        for (accept, ct) in [(None, "application/json"), (Some("application/ld+json"), P3), (Some(P2), P3)] {
            let headers: Vec<(&str, &str)> = accept.map(|a| ("accept", a)).into_iter().collect();
            let r = call(&app, Method::GET, &path, &headers).await;
            assert_eq!(r.headers()["content-type"], ct, "{path} {accept:?}");
            assert_eq!(json(r.body())["@context"], "http://iiif.io/api/presentation/3/context.json");
            assert_eq!(r.headers()["access-control-allow-origin"], "*");
        }
    }
    // The sequence has no 3.0 form.
    let r = call(&app, Method::GET, &format!("/iiif/{BOOK}/sequence/default"), &[("accept", P3)]).await;
    assert_eq!(json(r.body())["@type"], "sc:Sequence");
}

#[tokio::test]
async fn default_version_3_0_makes_the_bare_2_1_urls_answer_3_0() {
    let (_d, app) = setup_with("default_version = \"3.0\"");
    for path in [format!("/iiif/{BOOK}/manifest"), "/iiif/collection".into(), format!("/iiif/{BOOK}/canvas/0")] {
        let bare = get(&app, &path).await;
        assert_eq!(bare.headers()["content-type"], "application/json");
        assert_eq!(json(bare.body())["@context"], "http://iiif.io/api/presentation/3/context.json", "{path}");
        let ld = call(&app, Method::GET, &path, &[("accept", "application/ld+json")]).await;
        assert_eq!(ld.headers()["content-type"], P3, "{path}");
        let asked2 = call(&app, Method::GET, &path, &[("accept", P2)]).await;
        assert_eq!(asked2.headers()["content-type"], P2, "{path}");
        assert_eq!(json(asked2.body())["@context"], "http://iiif.io/api/presentation/2/context.json", "{path}");
    }
    // Its id is where 3.0 is always answered.
    let m = json(get(&app, &format!("/iiif/{BOOK}/manifest")).await.body());
    assert_eq!(m["id"], format!("{HOST}{}", manifest3_path(BOOK)));
}

#[tokio::test]
async fn each_version_has_its_own_etag_and_304s() {
    let (_d, app) = setup();
    let path = format!("/iiif/{BOOK}/manifest");
    let v2 = get(&app, &path).await;
    let v3 = call(&app, Method::GET, &path, &[("accept", P3)]).await;
    let (e2, e3) = (v2.headers()["etag"].to_str().unwrap(), v3.headers()["etag"].to_str().unwrap());
    assert_ne!(e2, e3);
    let again = call(&app, Method::GET, &path, &[("accept", P3), ("if-none-match", e3)]).await;
    assert_eq!(again.status(), StatusCode::NOT_MODIFIED);
    let own = call(&app, Method::GET, &manifest3_path(BOOK), &[("if-none-match", e3)]).await;
    assert_eq!(own.status(), StatusCode::NOT_MODIFIED, "the same document at its own URL has the same ETag");
    let other = call(&app, Method::GET, &path, &[("if-none-match", e3)]).await;
    assert_eq!(other.status(), StatusCode::OK, "the 2.1 answer does not match the 3.0 ETag");
}

#[tokio::test]
async fn a_dspace_like_item_maps_to_the_3_0_properties() {
    let (_d, app) = setup();
    let url = format!("{HOST}{}", manifest3_path(BOOK));
    let m = get_json(&app, &url).await;
    let canvases = assert_manifest_musts(&m, &url);
    assert_eq!(m["label"], serde_json::json!({"none": [TITLE]}));
    assert_eq!(m["summary"], serde_json::json!({"none": [DESCRIPTION]}));
    let md = m["metadata"].as_array().unwrap();
    let value_of = |v: &str| md.iter().find(|p| p["value"]["none"].as_array().unwrap().iter().any(|x| x == v)).cloned();
    assert_eq!(value_of(TITLE).unwrap()["label"], serde_json::json!({"en": ["Title"]}));
    assert_eq!(value_of(AUTHORS[0]).unwrap()["value"], serde_json::json!({"none": AUTHORS}));
    assert!(value_of(DATE).is_some() && value_of(RIGHTS).is_some(), "{md:?}");
    assert_eq!(m["rights"], RIGHTS_URI);
    let rs = &m["requiredStatement"]["value"]["none"];
    assert!(rs.as_array().unwrap().iter().any(|v| v == RIGHTS), "{rs}");
    assert_eq!(m["behavior"], serde_json::json!([HINT]));
    assert_eq!(m["viewingDirection"], "left-to-right");
    assert_eq!(m["navDate"], format!("{DATE}T00:00:00Z"));
    assert_eq!(m["homepage"][0]["id"], RELATED.replace("{item}", BOOK));
    assert_eq!(
        (m["homepage"][0]["type"].as_str(), m["homepage"][0]["format"].as_str()),
        (Some("Text"), Some("text/html"))
    );
    let rendering = &m["rendering"][0];
    assert_eq!(rendering["label"], serde_json::json!({"none": [PDF_LABEL]}));
    assert_eq!((rendering["type"].as_str(), rendering["format"].as_str()), (Some("Text"), Some("application/pdf")));
    let pdf = get(&app, path_of(rendering["id"].as_str().unwrap())).await;
    assert_eq!(pdf.status(), StatusCode::OK);
    // Canvases in item.toml's order, labelled as it says.
    let labels: Vec<&Value> = canvases.iter().map(|c| &c["label"]["none"][0]).collect();
    assert_eq!(labels, PAGE_LABELS);
    assert_eq!(m["thumbnail"][0]["service"][0]["id"], canvases[0]["items"][0]["items"][0]["body"]["service"][0]["id"]);
    // The table of contents: one top range holding "Front" (page 1) and
    // "Part I" > "Chapter 1" (page 2, and page 3: a bitstream without
    // iiif.toc continues the range above, as in DSpace).
    let top = &m["structures"][0];
    let front = &top["items"][0];
    assert_eq!(front["label"], serde_json::json!({"none": [TOC[0]]}));
    assert_eq!(front["items"], serde_json::json!([{"id": canvases[0]["id"], "type": "Canvas"}]));
    let (part, chapter) = TOC[1].split_once("|||").unwrap();
    assert_eq!(top["items"][1]["label"], serde_json::json!({"none": [part]}));
    let ch = &top["items"][1]["items"][0];
    assert_eq!(ch["label"], serde_json::json!({"none": [chapter]}));
    let in_chapter =
        serde_json::json!([{"id": canvases[1]["id"], "type": "Canvas"}, {"id": canvases[2]["id"], "type": "Canvas"}]);
    assert_eq!(ch["items"], in_chapter);
    assert_eq!(top["items"].as_array().unwrap().len(), 2);
    // Page 2's OCR as seeAlso, served.
    let see_also = &canvases[1]["seeAlso"][0];
    assert_eq!(see_also["id"], format!("{HOST}/iiif/{BOOK}/file/{ALTO}"));
    assert_eq!(
        (see_also["type"].as_str(), see_also["profile"].as_str()),
        (Some("Dataset"), Some("http://www.loc.gov/standards/alto/"))
    );
    assert_eq!(get(&app, path_of(see_also["id"].as_str().unwrap())).await.status(), StatusCode::OK);
    assert!(canvases[0].get("seeAlso").is_none());
    assert_eq!(m["partOf"][0]["id"], format!("{HOST}/iiif/presentation/3/collection"));
    // Search 1.0, as 2.1 announces it, and it answers.
    let search = &m["service"][0];
    assert_eq!(search["type"], "SearchService1");
    assert_eq!(search["profile"], "http://iiif.io/api/search/1/search");
    let search_id = search["id"].as_str().unwrap();
    assert_eq!(search_id, format!("{HOST}/iiif/{BOOK}/search"));
    assert_eq!(search["service"][0]["type"], "AutoCompleteService1");
    let answer = get(&app, &format!("{}?q=virgin", path_of(search_id))).await;
    assert_eq!(answer.status(), StatusCode::OK);
    let hits = json(answer.body());
    let on = hits["resources"][0]["on"].as_str().unwrap_or_default();
    assert!(
        on.starts_with(&format!("{}#xywh=", canvases[1]["id"].as_str().unwrap())),
        "a hit names the 3.0 canvas: {hits}"
    );
    // An item whose licence URI 3.0 does not allow as `rights`, and whose
    // date is no date: the URI goes to requiredStatement; no navDate.
    let other = get_json(&app, &manifest3_path(OTHER)).await;
    assert!(other.get("rights").is_none() && other.get("navDate").is_none(), "{other}");
    assert_eq!(other["requiredStatement"]["value"], serde_json::json!({"none": [OTHER_URI]}));
    assert_eq!(other["label"], serde_json::json!({"none": [OTHER]}));
    assert!(other.get("structures").is_none() && other.get("service").is_none());
}

#[tokio::test]
async fn items_not_enabled_and_unknown_items_have_no_3_0_manifest() {
    let (_d, app) = setup();
    for p in ["/iiif/presentation/3/hidden/manifest", "/iiif/presentation/3/nope/manifest", "/iiif/presentation/3/x"] {
        assert_eq!(get(&app, p).await.status(), StatusCode::NOT_FOUND, "{p}");
    }
    let r = call(&app, Method::GET, "/iiif/hidden/manifest", &[("accept", P3)]).await;
    assert_eq!(r.status(), StatusCode::NOT_FOUND);
}
