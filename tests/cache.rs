//! The tile cache through the service: one render per tile under a stampede,
//! zero decodes when serving from cache, invalidation on change and delete,
//! failed renders shared and never cached, and the admin endpoints.

mod common;

use std::time::Duration;

use common::*;
use http::{Method, StatusCode};
use tessera::codec::encode;
use tessera::iiif::Format;

const TOKEN: &str = "test-token-0123456789";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sixty_four_identical_concurrent_requests_cause_one_decode() {
    let d = image_dir();
    let app = app(d.path(), "");
    let mut tasks = Vec::new();
    for _ in 0..64 {
        let app = app.clone();
        tasks.push(tokio::spawn(async move { get(&app, "/iiif/2/photo/full/700,/0/default.png").await }));
    }
    let mut bodies = Vec::new();
    for t in tasks {
        let r = t.await.unwrap();
        assert_eq!(r.status(), StatusCode::OK);
        bodies.push(r.into_body());
    }
    assert!(bodies.windows(2).all(|w| w[0] == w[1]), "every waiter gets the same bytes");
    assert_eq!(app.metrics.decodes.get(), 1);
}

#[tokio::test]
async fn cached_tiles_are_served_with_zero_decodes() {
    let d = image_dir();
    let app = app(d.path(), "");
    let first = get(&app, "/iiif/2/photo/0,0,512,512/256,/0/default.jpg").await;
    assert_eq!(app.metrics.decodes.get(), 1);
    for _ in 0..20 {
        let again = get(&app, "/iiif/2/photo/0,0,512,512/256,/0/default.jpg").await;
        assert_eq!(again.body(), first.body());
    }
    // An equivalent URL (same canonical form) is the same cache entry.
    get(&app, "/iiif/2/photo.jpg/0,0,512,512/256,/360/default.jpg").await;
    assert_eq!(app.metrics.decodes.get(), 1, "no decode while serving from cache");
    let m = String::from_utf8(get(&app, "/metrics").await.body().to_vec()).unwrap();
    assert!(m.contains("tessera_cache_hits_total 21"), "{m}");
    assert!(m.contains("tessera_decodes_total 1"));
}

#[tokio::test]
async fn a_changed_source_is_never_served_from_cache() {
    let d = image_dir();
    let app = app(d.path(), "");
    let p = "/iiif/2/photo/full/100,/0/default.png";
    let before = get(&app, p).await;
    std::thread::sleep(Duration::from_millis(20));
    let other = tessera::transform::quality::to_gray(picture(1200, 800));
    std::fs::write(d.path().join("photo.jpg"), encode::encode(&other, Format::Jpg, 90).unwrap()).unwrap();
    let after = get(&app, p).await;
    assert_eq!(after.status(), StatusCode::OK);
    assert_ne!(before.body(), after.body());
    assert_ne!(before.headers()["etag"], after.headers()["etag"]);
    assert!(
        decode_any(after.body()).layout().is_gray() || {
            let px = decode_any(after.body());
            px.data().chunks(3).all(|c| c[0].abs_diff(c[1]) <= 3 && c[1].abs_diff(c[2]) <= 3)
        }
    );
}

#[tokio::test]
async fn a_deleted_source_gives_404_even_when_cached() {
    let d = image_dir();
    let app = app(d.path(), "");
    let p = "/iiif/2/photo/full/100,/0/default.jpg";
    assert_eq!(get(&app, p).await.status(), StatusCode::OK);
    std::fs::remove_file(d.path().join("photo.jpg")).unwrap();
    assert_eq!(get(&app, p).await.status(), StatusCode::NOT_FOUND);
    assert_eq!(get(&app, "/iiif/2/photo/info.json").await.status(), StatusCode::NOT_FOUND);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failed_render_reaches_every_waiter_and_is_not_cached() {
    let d = image_dir();
    let app = app(d.path(), "");
    let p = "/iiif/2/truncated.png/full/full/0/default.png";
    let mut tasks = Vec::new();
    for _ in 0..16 {
        let app = app.clone();
        tasks.push(tokio::spawn(async move { get(&app, p).await.status() }));
    }
    for t in tasks {
        assert_eq!(t.await.unwrap(), StatusCode::UNPROCESSABLE_ENTITY);
    }
    assert_eq!(app.tiles.len(), 0, "nothing cached");
    assert_eq!(get(&app, p).await.status(), StatusCode::UNPROCESSABLE_ENTITY, "tried again, not served from cache");
}

#[tokio::test]
async fn the_byte_bound_holds_under_many_distinct_tiles() {
    let d = image_dir();
    let app = app(d.path(), "[cache]\nmax_bytes = 300000");
    for i in 0..40 {
        let r = get(&app, &format!("/iiif/2/photo/{},0,256,256/256,/0/default.png", i * 20)).await;
        assert_eq!(r.status(), StatusCode::OK);
    }
    assert!(app.tiles.bytes() <= 300_000, "{} bytes cached", app.tiles.bytes());
    assert!(app.tiles.stats().evictions.load(std::sync::atomic::Ordering::Relaxed) > 0);
}

fn admin_app(d: &std::path::Path) -> std::sync::Arc<tessera::service::App> {
    app(d, &format!("[admin]\nenabled = true\ntoken = \"{TOKEN}\"\nwarm_max_tiles = 50"))
}

#[tokio::test]
async fn admin_is_off_by_default_and_needs_the_token() {
    let d = image_dir();
    let off = app(d.path(), "");
    assert_eq!(call(&off, Method::POST, "/admin/purge", &[]).await.status(), StatusCode::NOT_FOUND);
    let on = admin_app(d.path());
    assert_eq!(call(&on, Method::POST, "/admin/purge", &[]).await.status(), StatusCode::UNAUTHORIZED);
    let wrong = call(&on, Method::POST, "/admin/purge", &[("authorization", "Bearer nope-nope-nope-nope")]).await;
    assert_eq!(wrong.status(), StatusCode::UNAUTHORIZED);
    let auth = format!("Bearer {TOKEN}");
    assert_eq!(call(&on, Method::POST, "/admin/purge", &[("authorization", &auth)]).await.status(), StatusCode::OK);
    assert_eq!(
        call(&on, Method::GET, "/admin/purge", &[("authorization", &auth)]).await.status(),
        StatusCode::METHOD_NOT_ALLOWED
    );
}

#[tokio::test]
async fn purge_drops_one_identifier_and_the_next_request_renders_again() {
    let d = image_dir();
    let app = admin_app(d.path());
    let auth = format!("Bearer {TOKEN}");
    get(&app, "/iiif/2/photo/full/64,/0/default.jpg").await;
    get(&app, "/iiif/2/gray/full/64,/0/default.jpg").await;
    assert_eq!(app.metrics.decodes.get(), 2);
    let r = call(&app, Method::POST, "/admin/purge/photo", &[("authorization", &auth)]).await;
    let v: serde_json::Value = serde_json::from_slice(r.body()).unwrap();
    assert_eq!(v["purged_tiles"], 1);
    get(&app, "/iiif/2/photo/full/64,/0/default.jpg").await;
    get(&app, "/iiif/2/gray/full/64,/0/default.jpg").await;
    assert_eq!(app.metrics.decodes.get(), 3, "only the purged image rendered again");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn warm_renders_the_first_levels_in_the_background_and_reports_progress() {
    let d = image_dir();
    let app = admin_app(d.path());
    let auth = format!("Bearer {TOKEN}");
    let r = call(&app, Method::POST, "/admin/warm/photo", &[("authorization", &auth)]).await;
    assert_eq!(r.status(), StatusCode::ACCEPTED);
    let total = serde_json::from_slice::<serde_json::Value>(r.body()).unwrap()["total"].as_u64().unwrap();
    assert!(total > 1);
    let mut state = serde_json::Value::Null;
    for _ in 0..200 {
        let s = call(&app, Method::GET, "/admin/warm/photo", &[("authorization", &auth)]).await;
        state = serde_json::from_slice(s.body()).unwrap();
        if state["state"] == "done" {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert_eq!(state["state"], "done", "{state}");
    assert_eq!(state["done"].as_u64(), Some(total));
    assert_eq!(state["failed"], 0);
    let decodes = app.metrics.decodes.get();
    // The coarsest level of a 1200×800 image with 512 tiles is one `full` tile.
    let r = get(&app, "/iiif/2/photo/full/300,/0/default.jpg").await;
    assert_eq!(r.status(), StatusCode::OK);
    assert_eq!(app.metrics.decodes.get(), decodes, "warmed tile came from the cache");
    assert_eq!(
        call(&app, Method::POST, "/admin/warm/nope", &[("authorization", &auth)]).await.status(),
        StatusCode::NOT_FOUND
    );
}

#[tokio::test]
async fn a_large_jpeg_is_decoded_once_per_scale_and_its_tiles_match_direct_decoding() {
    let d = image_dir();
    // photo.jpg is 1200 × 800: "large" with the threshold at 1, direct at 0.
    let pyramid = app(d.path(), "[cache]\ndecoded_jpeg_min_pixels = 1\nmax_bytes = 0\n");
    let direct = app(d.path(), "[cache]\ndecoded_jpeg_min_pixels = 0\nmax_bytes = 0\n");
    let mut tiles = Vec::new();
    for (x, y) in [(0, 0), (256, 0), (512, 256), (768, 512), (1024, 512)] {
        tiles.push(format!("/iiif/2/photo/{x},{y},256,256/256,/0/default.png"));
    }
    for (x, y) in [(0, 0), (512, 0), (512, 512)] {
        tiles.push(format!("/iiif/2/photo/{x},{y},512,512/128,/0/default.png"));
    }
    tiles.push("/iiif/2/photo/1024,512,176,288/44,/0/default.png".into());
    tiles.push("/iiif/2/photo/512,0,512,512/256,/0/default.png".into());
    for t in &tiles {
        let a = get(&pyramid, t).await;
        let b = get(&direct, t).await;
        assert_eq!(a.status(), StatusCode::OK, "{t}");
        let (pa, pb) = (decode_any(a.body()), decode_any(b.body()));
        assert_eq!((pa.width(), pa.height()), (pb.width(), pb.height()), "{t}");
        let q = psnr(pa.data(), pb.data());
        assert!(q >= 40.0, "{t}: {q:.1} dB against a direct crop decode");
    }
    // Scale 1 (5 tiles), scale 4 (4 tiles) and scale 2 (1 tile): one decode each.
    assert_eq!(pyramid.metrics.decodes.get(), 3, "one whole-image decode per scale");
    assert_eq!(direct.metrics.decodes.get(), tiles.len() as u64);
}
