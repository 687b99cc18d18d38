//! Archival JPEG 2000 through the service: a decoded area yields every tile
//! inside it (eager tiling), and tiles survive a restart in the disk tier
//! and are served with no decode.

mod common;

use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

use common::*;
use http::StatusCode;
use tessera::codec::jp2;
use tessera::service::App;

/// A lossless, untiled 1024×1024 RGB JPEG 2000 (4 levels) named `u.jp2`.
fn untiled(dir: &Path) {
    let px = tessera::samples::generate::photo_like(1024, 1024, 11);
    let input = jp2::EncodeInput::from_pixels(&px);
    let params = jp2::EncodeParams { tile_size: None, levels: 4, lossless: true, ..Default::default() };
    std::fs::write(dir.join("u.jp2"), jp2::encode(&input, &params).unwrap()).unwrap();
}

fn tile(x: u32, y: u32, w: u32, out: u32) -> String {
    format!("/iiif/2/u.jp2/{x},{y},{w},{w}/{out},/0/default.jpg")
}

async fn metric(app: &Arc<App>, name: &str) -> u64 {
    let m = String::from_utf8(get(app, "/metrics").await.into_body().to_vec()).unwrap();
    metric_value(&m, name).map_or(0, |v| v as u64)
}

/// Waits (at most 10 s) until `name` reaches `at_least`.
async fn wait_for(app: &Arc<App>, name: &str, at_least: u64) -> u64 {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let v = metric(app, name).await;
        if v >= at_least || Instant::now() > deadline {
            return v;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

const UNITS: &str = "[cache]\ndecoded_unit = 512\ndecoded_ahead = 0\n[output]\ntile_size = 256\n";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_decoded_area_serves_every_tile_inside_it_with_no_other_decode() {
    let d = tempfile::tempdir().unwrap();
    untiled(d.path());
    let app = app(d.path(), UNITS);
    assert_eq!(get(&app, &tile(0, 0, 256, 256)).await.status(), StatusCode::OK);
    assert_eq!(app.metrics.decodes.get(), 1);
    // The 512² unit holds three more tiles of the 256 grid.
    assert!(wait_for(&app, "tessera_eager_tiles_total", 3).await >= 3);
    let direct = common::app(d.path(), "[cache]\ndecoded_max_bytes = 0\neager_tiles = false\n");
    for (x, y) in [(256, 0), (0, 256), (256, 256)] {
        let r = get(&app, &tile(x, y, 256, 256)).await;
        assert_eq!(r.status(), StatusCode::OK);
        let want = get(&direct, &tile(x, y, 256, 256)).await;
        assert_eq!(decode_any(r.body()).data(), decode_any(want.body()).data(), "tile ({x}, {y}) as decoded alone");
    }
    assert_eq!(app.metrics.decodes.get(), 1, "the neighbours came from the one decode");
    // A coarser level: the whole image at 1/4 is one unit holding one tile.
    get(&app, &tile(0, 0, 1024, 256)).await;
    assert_eq!(app.metrics.decodes.get(), 2);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn on_a_gpu_a_units_tiles_are_transformed_in_one_batch_and_match_the_cpu() {
    let d = tempfile::tempdir().unwrap();
    untiled(d.path());
    // One 256² tile (65,536 pixels) is below the GPU's threshold; the three
    // neighbours the unit yields, together, are above it.
    let app = app(d.path(), &format!("{UNITS}[transform]\nbackend = \"gpu\"\ngpu_min_pixels = 100000\n"));
    if app.backend.name() != "gpu" {
        skip_missing_unless_set("TESSERA_REQUIRE_GPU", "a GPU adapter", "Debian: mesa-vulkan-drivers");
        return;
    }
    assert_eq!(get(&app, &tile(0, 0, 256, 256)).await.status(), StatusCode::OK);
    assert_eq!(app.metrics.gpu_jobs.get(), 0, "one tile alone stays on the CPU");
    assert!(wait_for(&app, "tessera_eager_tiles_total", 3).await >= 3);
    assert_eq!(app.metrics.gpu_jobs.get(), 3, "the unit's three other tiles, as one batch");
    assert_eq!(app.metrics.gpu_fallbacks.get(), 0);
    // A fixed crossover, shown for every kind of job.
    let m = String::from_utf8(get(&app, "/metrics").await.into_body().to_vec()).unwrap();
    for kind in ["resize", "copy", "rotate"] {
        assert!(m.contains(&format!("tessera_gpu_crossover_pixels{{kind=\"{kind}\"}} 100000")), "{kind}: {m}");
    }
    assert!(m.contains("tessera_gpu_crossover_measuring 0"), "{m}");
    let cpu = common::app(d.path(), "[cache]\ndecoded_max_bytes = 0\neager_tiles = false\n");
    for (x, y) in [(256, 0), (0, 256), (256, 256)] {
        let r = get(&app, &tile(x, y, 256, 256)).await;
        assert_eq!(r.status(), StatusCode::OK);
        let want = get(&cpu, &tile(x, y, 256, 256)).await;
        assert_eq!(r.body(), want.body(), "tile ({x}, {y}): the GPU batch's bytes and the CPU's");
    }
    assert_eq!(app.metrics.decodes.get(), 1, "the neighbours came from the cache");
    // The batch uploaded the unit once and it stays on the device: another
    // size of a region inside it is resized there, with nothing uploaded.
    assert_eq!(metric(&app, "tessera_gpu_resident_uploads_total").await, 1);
    assert_eq!(metric(&app, "tessera_gpu_resident_units").await, 1);
    let r = get(&app, &tile(0, 0, 512, 300)).await;
    assert_eq!(r.status(), StatusCode::OK);
    assert_eq!(r.body(), get(&cpu, &tile(0, 0, 512, 300)).await.body(), "a resize read from the resident unit");
    assert_eq!(app.metrics.gpu_jobs.get(), 4);
    assert_eq!(metric(&app, "tessera_gpu_resident_uploads_total").await, 1, "nothing uploaded again");
    assert!(metric(&app, "tessera_gpu_resident_hits_total").await >= 1);
    assert_eq!(app.metrics.decodes.get(), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn eager_tiling_can_be_turned_off() {
    let d = tempfile::tempdir().unwrap();
    untiled(d.path());
    let app = app(d.path(), "[cache]\ndecoded_unit = 512\neager_tiles = false\n[output]\ntile_size = 256\n");
    get(&app, &tile(0, 0, 256, 256)).await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(metric(&app, "tessera_eager_tiles_total").await, 0);
}

/// An app over `images` with its disk tier in `tiles`, once the folder is
/// free (a dropped app's writer lets go of it when its queue is written).
fn app_with_tier(images: &Path, tiles: &Path) -> Arc<App> {
    let toml = UNITS.replace("[cache]\n", &format!("[cache]\ndisk_dir = {:?}\n", tiles.display().to_string()));
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let a = common::app(images, &toml);
        if a.tier.is_some() || Instant::now() > deadline {
            return a;
        }
        drop(a);
        std::thread::sleep(Duration::from_millis(20));
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tiles_survive_a_restart_and_come_back_with_no_decode() {
    let d = tempfile::tempdir().unwrap();
    let tiles = tempfile::tempdir().unwrap();
    untiled(d.path());
    let urls = [tile(0, 0, 256, 256), tile(512, 512, 256, 256), tile(0, 0, 1024, 256), tile(0, 0, 512, 256)];
    let first = app_with_tier(d.path(), tiles.path());
    assert!(first.tier.is_some());
    let mut bodies = Vec::new();
    for u in &urls {
        let r = get(&first, u).await;
        assert_eq!(r.status(), StatusCode::OK, "{u}");
        bodies.push(r.into_body());
    }
    // Every tile rendered, and those encoded eagerly, reach the disk.
    let rendered = first.metrics.decodes.get();
    assert!(rendered >= 3);
    assert!(wait_for(&first, "tessera_tier_writes_total", urls.len() as u64).await >= urls.len() as u64);
    drop(first);

    let second = app_with_tier(d.path(), tiles.path());
    assert!(second.tier.is_some(), "the restarted server took the folder");
    for (u, want) in urls.iter().zip(&bodies) {
        let r = get(&second, u).await;
        assert_eq!(r.status(), StatusCode::OK);
        assert_eq!(r.body(), want, "{u} byte for byte");
    }
    assert_eq!(second.metrics.decodes.get(), 0, "no decode after the restart");
    assert_eq!(metric(&second, "tessera_tier_hits_total").await, urls.len() as u64);
    // A neighbour the first server encoded eagerly, never asked for there.
    get(&second, &tile(256, 0, 256, 256)).await;
    assert_eq!(second.metrics.decodes.get(), 0);
}

#[tokio::test]
async fn a_second_server_on_a_folder_in_use_runs_without_the_tier() {
    let d = tempfile::tempdir().unwrap();
    let tiles = tempfile::tempdir().unwrap();
    untiled(d.path());
    let toml = format!("[cache]\ndisk_dir = {:?}\n", tiles.path().display().to_string());
    let first = common::app(d.path(), &toml);
    let second = common::app(d.path(), &toml);
    assert!(first.tier.is_some());
    assert!(second.tier.is_none());
    assert_eq!(get(&second, &tile(0, 0, 256, 256)).await.status(), StatusCode::OK);
}
