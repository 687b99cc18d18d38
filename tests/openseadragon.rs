//! OpenSeadragon 6 on Deep Zoom and Zoomify, end to end: a real `tessera
//! serve` on loopback and `tests/e2e/openseadragon.mjs` driving Debian's
//! headless chromium (playwright-core) on a page of another origin. For each
//! protocol OpenSeadragon 6.1.1 opens the image (the `.dzi` itself; for
//! Zoomify the page reads ImageProperties.xml, as OpenSeadragon does not),
//! draws the home view, zooms to full resolution, and every tile it asked
//! for must have been answered 200 with CORS, tiles of the top level among
//! them. That those tiles are the IIIF tiles of the same region, pixel for
//! pixel, is tests/deepzoom.rs's part.
//!
//! `scripts/e2e-setup.sh` installs chromium and the npm packages (into
//! target/tools/e2e). Without node, the packages or the browser the test
//! says `SKIPPED: …` and passes; under CI (`CI` set) that is a failure.
//! Screenshots and request logs: target/test-artifacts/openseadragon/.
//!
//! Environment: TESSERA_NODE (node binary, default `node`), TESSERA_E2E_MODULES
//! (node_modules with openseadragon and playwright-core, default
//! target/tools/e2e/node_modules), TESSERA_CHROMIUM (default /usr/bin/chromium).

mod common;

use std::process::{Command, Stdio};
use std::time::Duration;

use common::{e2e_prerequisites, picture, repo_path, wait_for_script, E2e, Server};
use tessera::codec::encode;
use tessera::iiif::Format;

/// The script's own limit; the test allows a margin over it.
const SCRIPT_TIMEOUT_S: u64 = 150;

const ID: &str = "chart.jpg";

/// What the test needs, or None (SKIPPED) when something is missing;
/// panics under CI.
fn prerequisites() -> Option<E2e> {
    e2e_prerequisites("openseadragon", "openseadragon/build/openseadragon/openseadragon.min.js")
}

#[test]
fn openseadragon_opens_the_dzi_and_the_zoomify_descriptor_and_every_tile_to_full_resolution_is_served() {
    let Some(e2e) = prerequisites() else { return };
    let images = tempfile::tempdir().unwrap();
    // Odd sizes: edge tiles, and a Zoomify tier rounded down.
    std::fs::write(images.path().join(ID), encode::encode(&picture(2301, 1533), Format::Jpg, 90).unwrap()).unwrap();
    let server = Server::start(images.path(), &[]);

    let out = repo_path("target/test-artifacts/openseadragon");
    let _ = std::fs::remove_dir_all(&out);
    std::fs::create_dir_all(&out).unwrap();
    let log_path = out.join("node.log");
    let log = std::fs::File::create(&log_path).unwrap();
    let mut child = Command::new(&e2e.node)
        .arg(repo_path("tests/e2e/openseadragon.mjs"))
        .arg(server.base())
        .arg(ID)
        .arg(&out)
        .args(["--timeout", &SCRIPT_TIMEOUT_S.to_string(), "--modules"])
        .arg(&e2e.modules)
        .arg("--chromium")
        .arg(&e2e.chromium)
        .stdin(Stdio::null())
        .stdout(log.try_clone().unwrap())
        .stderr(log)
        .spawn()
        .expect("spawn node");
    let status = wait_for_script(&mut child, Duration::from_secs(SCRIPT_TIMEOUT_S + 45));
    let text = std::fs::read_to_string(&log_path).unwrap_or_default();
    let shown: Vec<&str> = text.lines().filter(|l| !l.contains("GL Driver Message")).collect();
    println!("{}", shown.join("\n"));
    match status {
        Some(s) if s.success() => {}
        Some(s) => panic!("openseadragon.mjs failed ({s}); artifacts in {}", out.display()),
        None => {
            panic!("openseadragon.mjs did not finish within {} s; log: {}", SCRIPT_TIMEOUT_S + 45, log_path.display())
        }
    }
    for f in ["dzi-home.png", "dzi-full.png", "zoomify-home.png", "zoomify-full.png", "report.json", "requests.json"] {
        assert!(out.join(f).is_file(), "{f} missing in {}", out.display());
    }
    let report: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(out.join("report.json")).unwrap()).unwrap();
    assert_eq!(report["ok"], true);
    for kind in ["dzi", "zoomify"] {
        let p = &report["protocols"][kind];
        assert_eq!((p["source"]["width"].as_u64(), p["source"]["height"].as_u64()), (Some(2301), Some(1533)), "{kind}");
        assert!(p["topLevelTiles"].as_u64().unwrap_or(0) > 0, "{kind}: {p}");
    }
}
