//! Output limits through the service, in process: a request whose output
//! (the canvas after rotation, an uncompressed body, a GIF) would break a
//! limit is refused by the planner before any decode, quickly; a `max` size
//! shrinks to fit instead.

mod common;

use std::time::{Duration, Instant};

use common::*;
use http::StatusCode;

/// photo.jpg is 1200×800. These limits make each case below small.
const LIMITS: &str = "[limits]\nmax_width = 1000\nmax_height = 1000\nmax_area = 600000\n\
                      max_output_bytes = 1000000\nmax_gif_pixels = 100000";

async fn decodes(app: &std::sync::Arc<tessera::service::App>) -> u64 {
    let r = get(app, "/metrics").await;
    assert_eq!(r.status(), StatusCode::OK);
    let text = String::from_utf8_lossy(r.body()).to_string();
    text.lines()
        .find_map(|l| l.strip_prefix("tessera_decodes_total "))
        .and_then(|v| v.trim().parse::<f64>().ok())
        .map(|v| v as u64)
        .unwrap_or_else(|| panic!("no tessera_decodes_total in /metrics:\n{text}"))
}

/// Width and height of a PNG, TIFF or GIF body.
fn dimensions(body: &[u8]) -> (u32, u32) {
    if body.starts_with(b"\x89PNG") {
        let p = decode_any(body);
        return (p.width(), p.height());
    }
    let img = image::load_from_memory(body).unwrap_or_else(|e| panic!("{e}"));
    (img.width(), img.height())
}

#[tokio::test]
async fn oversized_outputs_are_refused_before_any_decode_in_under_100_ms() {
    let d = image_dir();
    let app = app(d.path(), LIMITS);
    // The header is read once (a probe, not a decode) before timing.
    assert_eq!(get(&app, "/iiif/3/photo.jpg/info.json").await.status(), StatusCode::OK);
    let before = decodes(&app).await;
    let cases = [
        // 900×600 fits; its 30° canvas is 1079 wide (max_width 1000).
        ("/iiif/2/photo.jpg/full/900,/30/default.jpg", StatusCode::BAD_REQUEST),
        // 800×533 fits; its 45° canvas is 943² = 889 kpx (max_area 600 k).
        ("/iiif/3/photo.jpg/full/800,533/45/default.png", StatusCode::BAD_REQUEST),
        // An uncompressed TIFF of 700×467×4 = 1.3 MB (max_output_bytes 1 MB).
        ("/iiif/2/photo.jpg/full/700,/0/default.tif", StatusCode::PAYLOAD_TOO_LARGE),
        // 450×300×4 = 540 kB, but its 30° canvas (540×485) makes 1.05 MB.
        ("/iiif/3/photo.jpg/full/450,300/30/default.tif", StatusCode::PAYLOAD_TOO_LARGE),
        // GIF: 400×267 = 107 kpx (max_gif_pixels 100 k).
        ("/iiif/2/photo.jpg/full/400,/0/default.gif", StatusCode::PAYLOAD_TOO_LARGE),
        // GIF: 300×200 = 60 kpx, but 354² = 125 kpx at 45°.
        ("/iiif/3/photo.jpg/full/300,200/45/default.gif", StatusCode::PAYLOAD_TOO_LARGE),
    ];
    for (path, status) in cases {
        // Twice: a refusal is never cached, and is as quick the second time.
        for _ in 0..2 {
            let t = Instant::now();
            let r = get(&app, path).await;
            let took = t.elapsed();
            assert_eq!(r.status(), status, "{path}: {}", String::from_utf8_lossy(r.body()));
            assert!(took < Duration::from_millis(100), "{path} took {took:?}");
            let body = String::from_utf8_lossy(r.body()).to_string();
            assert!(!body.contains(d.path().to_str().unwrap()), "{path}: {body}");
        }
    }
    assert_eq!(decodes(&app).await, before, "a refused request decoded");
    // The counter does count: one small render decodes.
    assert_eq!(get(&app, "/iiif/2/photo.jpg/full/100,/0/default.jpg").await.status(), StatusCode::OK);
    assert!(decodes(&app).await > before);
}

#[tokio::test]
async fn max_sizes_shrink_until_the_rotated_canvas_and_the_format_budget_fit() {
    let d = image_dir();
    let app = app(d.path(), LIMITS);
    for (path, budget_px) in [
        // ^max at 30° (the reported request's shape): bounded by the TIFF byte budget.
        ("/iiif/3/photo.jpg/full/^max/30/default.tif", 1_000_000 / 4),
        ("/iiif/2/photo.jpg/full/max/30/default.tif", 1_000_000 / 4),
        // By max_area.
        ("/iiif/3/photo.jpg/full/^max/30/default.png", 600_000),
        ("/iiif/2/photo.jpg/full/max/90/default.png", 600_000),
        // By max_gif_pixels.
        ("/iiif/3/photo.jpg/full/max/45/default.gif", 100_000),
        ("/iiif/2/photo.jpg/full/max/0/default.gif", 100_000),
    ] {
        let r = get(&app, path).await;
        assert_eq!(r.status(), StatusCode::OK, "{path}: {}", String::from_utf8_lossy(r.body()));
        let (w, h) = dimensions(r.body());
        assert!(w <= 1000 && h <= 1000, "{path}: {w}×{h}");
        let px = w as u64 * h as u64;
        assert!(px <= budget_px, "{path}: {w}×{h}");
        // As large as allowed, give or take rounding.
        assert!(px * 100 >= budget_px * 97, "{path}: {w}×{h} is needlessly small");
        if path.ends_with(".tif") {
            assert!(r.body().len() <= 1_000_000 + 4096, "{path}: {} bytes", r.body().len());
        }
        // The canonical link names the size chosen, which plans the same.
        let link = r.headers()["link"].to_str().unwrap().to_string();
        let canonical = link.split('>').next().unwrap().trim_start_matches('<');
        let canonical_path = canonical.trim_start_matches("http://127.0.0.1:8182");
        assert!(!canonical_path.contains("max/"), "{link}");
        let again = get(&app, canonical_path).await;
        assert_eq!(again.status(), StatusCode::OK, "{canonical_path}");
        assert_eq!(again.body(), r.body(), "{canonical_path}");
    }
}
