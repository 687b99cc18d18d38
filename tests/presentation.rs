//! Presentation API through the service and a real server: manifests,
//! sequences, canvases and the collection from an item catalogue; JSON-LD
//! negotiation, ETag/304, CORS; the viewer page; and the offline
//! Presentation 2.1 validator on live URLs.

mod common;

use std::path::Path;
use std::process::Command;

use common::*;
use http::{Method, StatusCode};
use serde_json::Value;
use tessera::codec::encode;
use tessera::iiif::Format;

fn catalogue(root: &Path) {
    let item = root.join("items/test-book");
    std::fs::create_dir_all(&item).unwrap();
    for n in 1..=3 {
        let page = tessera::samples::generate::book_page(600, 900, n);
        std::fs::write(item.join(format!("page-{n}.jpg")), encode::encode(&page, Format::Jpg, 85).unwrap()).unwrap();
    }
    std::fs::write(
        item.join("item.toml"),
        r#"[metadata]
"dc.title" = "Test book"
"dc.contributor.author" = ["A. Scribe"]
"dc.date.issued" = "1480"
"dspace.iiif.enabled" = true
"iiif.viewing.hint" = "paged"
"iiif.canvas.naming" = "Page"
"iiif.search.enabled" = true

[[bitstreams]]
file = "page-1.jpg"
metadata = { "iiif.label" = "Cover", "iiif.toc" = "Front" }

[[bitstreams]]
file = "page-2.jpg"
metadata = { "iiif.toc" = "Part I|||Chapter 1" }

[[bitstreams]]
file = "page-3.jpg"
"#,
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

fn setup() -> (tempfile::TempDir, std::sync::Arc<tessera::service::App>) {
    let d = tempfile::tempdir().unwrap();
    catalogue(d.path());
    let a = app_with_catalogue(d.path());
    (d, a)
}

fn json(b: &[u8]) -> Value {
    serde_json::from_slice(b).unwrap()
}

#[tokio::test]
async fn a_manifest_has_canvases_with_image_services_that_resolve() {
    let (_d, app) = setup();
    let r = get(&app, "/iiif/test-book/manifest").await;
    assert_eq!(r.status(), StatusCode::OK);
    assert_eq!(r.headers()["content-type"], "application/json");
    assert_eq!(r.headers()["access-control-allow-origin"], "*");
    let m = json(r.body());
    assert_eq!(m["@id"], "http://127.0.0.1:8182/iiif/test-book/manifest");
    assert_eq!(m["@type"], "sc:Manifest");
    assert_eq!(m["viewingHint"], "paged");
    let canvases = m["sequences"][0]["canvases"].as_array().unwrap();
    assert_eq!(canvases.len(), 3);
    assert_eq!(canvases[0]["label"], "Cover");
    assert_eq!(canvases[1]["label"], "Page 2");
    assert_eq!((canvases[0]["width"].as_u64(), canvases[0]["height"].as_u64()), (Some(600), Some(900)));
    let service = canvases[2]["images"][0]["resource"]["service"]["@id"].as_str().unwrap();
    let path = service.strip_prefix("http://127.0.0.1:8182").unwrap();
    let info = get(&app, &format!("{path}/info.json")).await;
    assert_eq!(info.status(), StatusCode::OK, "{path}");
    assert_eq!(json(info.body())["@id"], service);
    assert!(m["structures"].as_array().map(|s| s.len() >= 2).unwrap_or(false), "ranges from iiif.toc");
    assert!(m["service"].is_object() || m["service"].is_array(), "search service announced");
}

#[tokio::test]
async fn json_ld_is_negotiated_and_etags_give_304() {
    let (_d, app) = setup();
    let r = call(&app, Method::GET, "/iiif/test-book/manifest", &[("accept", "application/ld+json")]).await;
    assert_eq!(
        r.headers()["content-type"],
        "application/ld+json;profile=\"http://iiif.io/api/presentation/2/context.json\""
    );
    let etag = r.headers()["etag"].to_str().unwrap().to_string();
    let again = call(&app, Method::GET, "/iiif/test-book/manifest", &[("if-none-match", &etag)]).await;
    assert_eq!(again.status(), StatusCode::NOT_MODIFIED);
}

#[tokio::test]
async fn items_not_enabled_unknown_items_and_missing_canvases_are_404() {
    let (_d, app) = setup();
    for p in [
        "/iiif/hidden/manifest",
        "/iiif/nope/manifest",
        "/iiif/test-book/canvas/99",
        "/iiif/test-book/canvas/x",
        "/viewer/hidden",
        "/iiif/..%2Fx/manifest",
    ] {
        assert_eq!(get(&app, p).await.status(), StatusCode::NOT_FOUND, "{p}");
    }
}

#[tokio::test]
async fn sequence_canvas_and_collection_dereference() {
    let (_d, app) = setup();
    let s = json(get(&app, "/iiif/test-book/sequence/default").await.body());
    assert_eq!(s["@type"], "sc:Sequence");
    let c = json(get(&app, "/iiif/test-book/canvas/0").await.body());
    assert_eq!(c["@type"], "sc:Canvas");
    assert_eq!(c["@id"], "http://127.0.0.1:8182/iiif/test-book/canvas/0");
    let col = json(get(&app, "/iiif/collection").await.body());
    let ids: Vec<&str> = col["manifests"].as_array().unwrap().iter().map(|m| m["@id"].as_str().unwrap()).collect();
    assert_eq!(ids, vec!["http://127.0.0.1:8182/iiif/test-book/manifest"]);
}

#[tokio::test]
async fn the_viewer_page_opens_mirador_on_the_manifest_and_the_home_page_links_both_manifest_versions() {
    let (_d, app) = setup();
    let r = get(&app, "/viewer/test-book").await;
    assert_eq!(r.status(), StatusCode::OK);
    let html = String::from_utf8(r.body().to_vec()).unwrap();
    assert!(html.contains("Mirador.viewer"));
    assert!(html.contains("/iiif/test-book/manifest"));
    let home = String::from_utf8(get(&app, "/").await.body().to_vec()).unwrap();
    assert!(home.contains("/viewer/test-book"));
    // The home page links both versions of the manifest and collection,
    // and each link answers.
    for link in [
        "/iiif/test-book/manifest",
        "/iiif/presentation/3/test-book/manifest",
        "/iiif/collection",
        "/iiif/presentation/3/collection",
    ] {
        assert!(home.contains(&format!("href=\"{link}\"")), "{link} not on the home page");
        assert_eq!(get(&app, link).await.status(), StatusCode::OK, "{link}");
    }
}

#[test]
fn live_manifests_pass_the_presentation_validator_and_id_equals_url() {
    let python = match std::env::var("TESSERA_PREZI_VALIDATOR") {
        Ok(p) if !p.is_empty() => p,
        _ => {
            return skip_missing(
                "the Presentation validator (TESSERA_PREZI_VALIDATOR)",
                "scripts/test.sh installs iiif-prezi and sets TESSERA_PREZI_VALIDATOR",
            );
        }
    };
    let script = repo_path("../shared/tools/prezi_validate.py");
    assert!(script.is_file(), "the offline validator is expected at {}", script.display());
    let d = tempfile::tempdir().unwrap();
    catalogue(d.path());
    // No search service here: the offline validator has no Search API context.
    let toml = d.path().join("items/test-book/item.toml");
    let t = std::fs::read_to_string(&toml).unwrap().replace("\"iiif.search.enabled\" = true", "");
    std::fs::write(&toml, t).unwrap();
    let cat = d.path().join("items");
    let s = Server::start(d.path(), &[("TESSERA_PRESENTATION__CATALOGUE_ROOT", cat.to_str().unwrap())]);
    for path in ["/iiif/test-book/manifest", "/iiif/collection"] {
        let url = format!("{}{path}", s.base());
        let out = Command::new(&python).arg(&script).args(["--version", "2.1", &url]).output().unwrap();
        let log = String::from_utf8_lossy(&out.stdout).to_string() + &String::from_utf8_lossy(&out.stderr);
        assert!(out.status.success(), "{url}:\n{log}");
    }
}
