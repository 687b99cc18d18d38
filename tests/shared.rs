//! Several instances sharing one Redis tier: real `tessera serve` processes
//! and a real `redis-server` (Debian's), each started on loopback by the
//! test and stopped by it. A tile one instance rendered is served by
//! another with no decode; a purge on one reaches the others within a
//! second; two instances asked the same tile at once render it once; and
//! with Redis stopped, requests still succeed while the breaker opens.
//!
//! Without `redis-server` the tests say `SKIPPED: …` and pass; under CI
//! (`CI` set) that is a failure (scripts/deps.sh test installs it).

mod common;

use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

use common::*;
use tessera::codec::encode;
use tessera::iiif::Format;

const TOKEN: &str = "shared-tier-admin-token";

/// An instance using `redis` as its shared tier, with no disk tier (so
/// what it does not render itself comes from Redis) and admin on.
fn instance(images: &Path, redis: &Redis, extra: &[(&str, &str)]) -> Server {
    let url = redis.url();
    let mut env = vec![
        ("TESSERA_CACHE__SHARED__KIND", "redis"),
        ("TESSERA_CACHE__SHARED__URL", url.as_str()),
        ("TESSERA_CACHE__DISK_MAX_BYTES", "0"),
        ("TESSERA_ADMIN__ENABLED", "true"),
        ("TESSERA_ADMIN__TOKEN", TOKEN),
        ("TESSERA_CACHE__EAGER_TILES", "false"),
    ];
    env.extend_from_slice(extra);
    Server::start(images, &env)
}

fn metric(server: &Server, name: &str) -> f64 {
    let r = http_get(server.addr, "/metrics", &[]).unwrap();
    metric_value(&String::from_utf8_lossy(&r.body), name).unwrap_or(0.0)
}

fn tile(server: &Server, path: &str) -> Vec<u8> {
    let r = http_get(server.addr, path, &[]).unwrap();
    assert_eq!(r.status, 200, "{path} on {}: {}", server.addr, String::from_utf8_lossy(&r.body));
    r.body
}

/// Polls `f` until it is true or `limit` passes; whether it became true.
fn within(limit: Duration, mut f: impl FnMut() -> bool) -> bool {
    let deadline = Instant::now() + limit;
    while Instant::now() < deadline {
        if f() {
            return true;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    f()
}

const TILE: &str = "/iiif/2/photo.jpg/0,0,512,512/256,/0/default.jpg";

#[test]
fn a_tile_one_instance_rendered_is_served_by_another_with_no_decode() {
    let Some(redis) = Redis::start() else { return };
    let images = image_dir();
    let (a, b) = (instance(images.path(), &redis, &[]), instance(images.path(), &redis, &[]));
    let from_a = tile(&a, TILE);
    assert_eq!(metric(&a, "tessera_decodes_total"), 1.0);
    // The write to Redis happens after the answer: B finds it within moments.
    assert!(within(Duration::from_secs(2), || metric(&a, "tessera_shared_tier_writes_total") >= 1.0));
    let from_b = tile(&b, TILE);
    assert_eq!(from_a, from_b, "the same bytes");
    assert_eq!(metric(&b, "tessera_decodes_total"), 0.0, "B decoded nothing");
    assert_eq!(metric(&b, "tessera_shared_tier_hits_total"), 1.0);
}

/// Unit leases held in `redis` now.
fn unit_leases(redis: &Redis) -> usize {
    let o = Command::new("redis-cli").args(["-p", &redis.port.to_string(), "--scan", "--pattern", "*:ul:*"]).output();
    let o = o.expect("redis-cli (Debian's redis-tools, with redis-server)");
    String::from_utf8_lossy(&o.stdout).lines().filter(|l| !l.is_empty()).count()
}

#[test]
fn a_decode_the_full_pool_refuses_gives_its_unit_lease_back_at_once() {
    let Some(redis) = Redis::start() else { return };
    let d = tempfile::tempdir().unwrap();
    // 4096 × 1024 in codestream tiles of 512²: 16 units at full size.
    let px = tessera::samples::generate::photo_like(4096, 1024, 3);
    std::fs::write(d.path().join("t.jp2"), tiled_jp2(&px, 512)).unwrap();
    let extra = [
        ("TESSERA_SERVER__WORKERS", "1"),
        ("TESSERA_SERVER__QUEUE", "1"),
        ("TESSERA_CACHE__DECODED_AHEAD", "0"),
        // Far longer than the test: a lease still there was not given back.
        ("TESSERA_CACHE__SHARED__LEASE_MS", "60000"),
    ];
    let server = instance(d.path(), &redis, &extra);
    assert_eq!(http_get(server.addr, "/iiif/2/t.jp2/info.json", &[]).unwrap().status, 200);
    // One tile of each unit, all at once: one worker and one queue place.
    let statuses: Vec<u16> = std::thread::scope(|s| {
        let asks: Vec<_> = (0..16u32)
            .map(|i| {
                let path = format!("/iiif/2/t.jp2/{},{},256,256/256,/0/default.jpg", (i % 8) * 512, (i / 8) * 512);
                s.spawn(move || http_get(server.addr, &path, &[]).unwrap().status)
            })
            .collect();
        asks.into_iter().map(|a| a.join().unwrap()).collect()
    });
    assert!(statuses.iter().all(|&s| s == 200 || s == 503), "{statuses:?}");
    assert!(statuses.contains(&503), "the pool refused some decodes: {statuses:?}");
    // The decodes that ran gave theirs back as they ended; the refused ones
    // as they were refused (not a minute later, when they run out).
    assert!(within(Duration::from_secs(5), || unit_leases(&redis) == 0), "{} unit leases left", unit_leases(&redis));
    // And a refused unit is decoded at once when asked again.
    let again = format!("/iiif/2/t.jp2/{},{},256,256/256,/0/default.jpg", 7 * 512, 512);
    let t = Instant::now();
    assert_eq!(http_get(server.addr, &again, &[]).unwrap().status, 200);
    assert!(t.elapsed() < Duration::from_secs(30), "no wait for a lease: {:?}", t.elapsed());
}

#[test]
fn a_purge_on_one_instance_reaches_the_others_within_a_second() {
    let Some(redis) = Redis::start() else { return };
    let images = image_dir();
    let (a, b) = (instance(images.path(), &redis, &[]), instance(images.path(), &redis, &[]));
    tile(&a, TILE);
    assert!(within(Duration::from_secs(2), || metric(&a, "tessera_shared_tier_writes_total") >= 1.0));
    tile(&b, TILE); // now in B's memory too
                    // B subscribes when it starts; give the subscription a moment.
    std::thread::sleep(Duration::from_millis(300));
    let auth = format!("Bearer {TOKEN}");
    let r = http_request(a.addr, "POST", "/admin/purge/photo.jpg", &[("authorization", &auth)]).unwrap();
    assert_eq!(r.status, 200);
    let t = Instant::now();
    assert!(
        within(Duration::from_secs(1), || metric(&b, "tessera_shared_tier_purges_received_total") >= 1.0),
        "B heard of the purge"
    );
    println!("purge reached the other instance in {:?}", t.elapsed());
    // Gone from B's memory and from Redis: B renders it again.
    assert!(within(Duration::from_secs(1), || {
        tile(&b, "/iiif/2/photo.jpg/info.json");
        let before = metric(&b, "tessera_decodes_total");
        tile(&b, TILE);
        metric(&b, "tessera_decodes_total") > before
    }));
}

#[test]
fn two_instances_asked_the_same_tile_at_once_render_it_once_even_past_the_lease_time() {
    let Some(redis) = Redis::start() else { return };
    let d = tempfile::tempdir().unwrap();
    // A large JPEG whose full-size render takes a while.
    let big = tessera::samples::generate::book_page(3000, 4000, 1);
    std::fs::write(d.path().join("big.jpg"), encode::encode(&big, Format::Jpg, 90).unwrap()).unwrap();
    // A lease far shorter than the render: the holder must renew it, or
    // the other instance would stop waiting and render too.
    let short = [("TESSERA_CACHE__SHARED__LEASE_MS", "60")];
    let (a, b) = (instance(d.path(), &redis, &short), instance(d.path(), &redis, &short));
    let path = "/iiif/2/big.jpg/full/1500,/0/default.jpg";
    let (aa, ba) = (a.addr, b.addr);
    let ta = std::thread::spawn(move || http_get(aa, path, &[]).unwrap());
    let tb = std::thread::spawn(move || http_get(ba, path, &[]).unwrap());
    let (ra, rb) = (ta.join().unwrap(), tb.join().unwrap());
    assert_eq!((ra.status, rb.status), (200, 200));
    assert_eq!(ra.body, rb.body);
    let leases =
        metric(&a, "tessera_shared_tier_leases_taken_total") + metric(&b, "tessera_shared_tier_leases_taken_total");
    let served = metric(&a, "tessera_shared_tier_lease_waits_served_total")
        + metric(&b, "tessera_shared_tier_lease_waits_served_total");
    let decodes = metric(&a, "tessera_decodes_total") + metric(&b, "tessera_decodes_total");
    assert_eq!((leases, served), (1.0, 1.0), "one rendered under the lease, the other waited for it");
    assert_eq!(decodes, 1.0, "one decode over both instances");
}

#[test]
fn with_redis_stopped_requests_still_succeed_and_the_breaker_opens() {
    let Some(mut redis) = Redis::start() else { return };
    let images = image_dir();
    let a = instance(images.path(), &redis, &[("TESSERA_CACHE__SHARED__BREAKER_FAILURES", "3")]);
    tile(&a, TILE);
    redis.stop();
    let t = Instant::now();
    for x in 0..6 {
        let r = http_get(a.addr, &format!("/iiif/2/photo.jpg/{},0,128,128/64,/0/default.jpg", x * 128), &[]).unwrap();
        assert_eq!(r.status, 200, "a request while Redis is down");
    }
    assert!(t.elapsed() < Duration::from_secs(5), "bounded by the deadline and the breaker: {:?}", t.elapsed());
    assert_eq!(metric(&a, "tessera_shared_tier_breaker_open"), 1.0);
    assert!(metric(&a, "tessera_shared_tier_errors_total") >= 3.0);
    assert!(metric(&a, "tessera_shared_tier_skipped_total") >= 1.0);
}

/// Every 256² tile of a `w`×`h` image at scale factors 1 to 8, as Mirador
/// asks them, shuffled.
fn all_tiles(id: &str, w: u32, h: u32) -> Vec<String> {
    use rand::seq::SliceRandom;
    use rand::SeedableRng;
    let mut out = Vec::new();
    for sf in [1u32, 2, 4, 8] {
        let side = 256 * sf;
        for y in (0..h).step_by(side as usize) {
            for x in (0..w).step_by(side as usize) {
                let (rw, rh) = (side.min(w - x), side.min(h - y));
                out.push(format!("/iiif/2/{id}/{x},{y},{rw},{rh}/{},/0/default.jpg", rw.div_ceil(sf)));
            }
        }
    }
    out.shuffle(&mut rand::rngs::SmallRng::seed_from_u64(7));
    out
}

/// Three instances sharing `redis` (no disk tier) behind HAProxy; None
/// (SKIPPED) without haproxy.
fn behind_haproxy(images: &Path, redis: &Redis) -> Option<(Vec<Server>, Haproxy)> {
    let url = redis.url();
    let env = [
        ("TESSERA_CACHE__DISK_MAX_BYTES", "0"),
        ("TESSERA_CACHE__SHARED__KIND", "redis"),
        ("TESSERA_CACHE__SHARED__URL", url.as_str()),
    ];
    let instances: Vec<Server> = (0..3).map(|_| Server::start(images, &env)).collect();
    let lb = Haproxy::start(&instances.iter().map(|s| s.addr).collect::<Vec<_>>())?;
    Some((instances, lb))
}

/// A folder holding `p.jpg`, a 2048² photo-like JPEG, and its tiles.
fn photo_jpeg(seed: u64) -> (tempfile::TempDir, Vec<String>) {
    let d = tempfile::tempdir().unwrap();
    let px = tessera::samples::generate::photo_like(2048, 2048, seed);
    std::fs::write(d.path().join("p.jpg"), encode::encode(&px, Format::Jpg, 90).unwrap()).unwrap();
    (d, all_tiles("p.jpg", 2048, 2048))
}

/// An action that kills process `pid` (SIGKILL), for [`pass_counting`].
fn killer(pid: u32) -> Box<dyn FnOnce() + Send> {
    Box::new(move || {
        let _ = Command::new("kill").args(["-KILL", &pid.to_string()]).status();
    })
}

/// Asks every path of `paths` at `addr` with `clients` threads; every
/// answer must be 200.
fn pass(addr: std::net::SocketAddr, paths: &[String], clients: usize) -> Duration {
    let t = Instant::now();
    let failed = pass_counting(addr, paths, clients, None);
    assert!(failed.is_empty(), "failed: {failed:?}");
    t.elapsed()
}

/// Asks every path with `clients` threads; returns the answers that were
/// not 200 (or no answer). `after`: (request count, action) run once when
/// that many requests have been sent.
fn pass_counting(
    addr: std::net::SocketAddr,
    paths: &[String],
    clients: usize,
    after: Option<(usize, Box<dyn FnOnce() + Send>)>,
) -> Vec<String> {
    use std::sync::{Arc, Mutex};
    let next = Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let paths = Arc::new(paths.to_vec());
    let failed = Arc::new(Mutex::new(Vec::new()));
    let (at, action) = match after {
        Some((n, f)) => (n, Some(f)),
        None => (usize::MAX, None),
    };
    let action = Arc::new(Mutex::new(action));
    let threads: Vec<_> = (0..clients)
        .map(|_| {
            let (next, paths, failed, action) = (next.clone(), paths.clone(), failed.clone(), action.clone());
            std::thread::spawn(move || loop {
                let i = next.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                if i == at {
                    if let Some(f) = action.lock().unwrap().take() {
                        f();
                    }
                }
                let Some(p) = paths.get(i) else { break };
                match http_get(addr, p, &[]) {
                    Ok(r) if r.status == 200 => {}
                    Ok(r) => failed.lock().unwrap().push(format!("{p} → {}", r.status)),
                    Err(e) => failed.lock().unwrap().push(format!("{p} → {e}")),
                }
            })
        })
        .collect();
    for th in threads {
        th.join().unwrap();
    }
    let out = failed.lock().unwrap().clone();
    out
}

/// Three instances behind HAProxy share decoded JPEG 2000 units and tiles
/// through Redis: a shuffled pass over every tile of a tiled JP2 through
/// the balancer makes at most 1.1× the decodes one instance alone makes.
#[test]
fn three_instances_behind_haproxy_decode_no_more_than_one_instance_alone() {
    let Some(redis) = Redis::start() else { return };
    let d = tempfile::tempdir().unwrap();
    let (w, h) = (3072, 2048);
    let px = tessera::samples::generate::photo_like(w, h, 3);
    let params = tessera::codec::jp2::EncodeParams {
        tile_size: Some((512, 512)),
        levels: 5,
        lossless: false,
        rate: Some(16.0),
        layers: 4,
        progression: tessera::codec::jp2::Progression::Rpcl,
        precincts: None,
        container: tessera::codec::jp2::Container::Jp2,
    };
    let jp2 = tessera::codec::jp2::encode(&tessera::codec::jp2::EncodeInput::from_pixels(&px), &params).unwrap();
    std::fs::write(d.path().join("photo.jp2"), jp2).unwrap();
    let tiles = all_tiles("photo.jp2", w, h);
    let plain = [("TESSERA_CACHE__DISK_MAX_BYTES", "0")];

    let alone = Server::start(d.path(), &plain);
    let t_alone = pass(alone.addr, &tiles, 3);
    let decodes_alone = metric(&alone, "tessera_decodes_total");
    drop(alone);

    let Some((instances, lb)) = behind_haproxy(d.path(), &redis) else { return };
    let t_three = pass(lb.addr, &tiles, 3);
    let per: Vec<f64> = instances.iter().map(|s| metric(s, "tessera_decodes_total")).collect();
    let shared_units: f64 = instances.iter().map(|s| metric(s, "tessera_shared_tier_units_shared_total")).sum();
    let shared_hits: f64 = instances.iter().map(|s| metric(s, "tessera_shared_tier_hits_total")).sum();
    let total: f64 = per.iter().sum();
    println!(
        "{} tiles: one instance {decodes_alone} decodes in {t_alone:?}; three behind HAProxy {total} decodes ({per:?}) in {t_three:?}, {shared_units} units and {shared_hits} tiles from Redis",
        tiles.len()
    );
    assert!(per.iter().all(|&n| n > 0.0) || total == 0.0, "round robin reached every instance: {per:?}");
    assert!(
        total <= (decodes_alone * 1.1).ceil(),
        "{total} decodes over three instances against {decodes_alone} alone"
    );
}

/// SIGTERM with `server.drain_secs`: /health answers 503 "draining" at once
/// (the balancer takes the instance out) while images are still served;
/// after the drain the server stops by itself.
#[test]
fn sigterm_starts_a_drain_health_says_503_images_still_served_then_it_exits() {
    let images = image_dir();
    let mut s = Server::start(images.path(), &[("TESSERA_SERVER__DRAIN_SECS", "2")]);
    let kill = Command::new("kill").args(["-TERM", &s.child.id().to_string()]).status().unwrap();
    assert!(kill.success());
    assert!(within(Duration::from_secs(1), || http_get(s.addr, "/health", &[])
        .map(|r| r.status == 503)
        .unwrap_or(false)));
    let h = http_get(s.addr, "/health", &[]).unwrap();
    assert_eq!(String::from_utf8_lossy(&h.body).trim(), "draining");
    assert_eq!(http_get(s.addr, TILE, &[]).unwrap().status, 200, "still serving while draining");
    let deadline = Instant::now() + Duration::from_secs(10);
    let status = loop {
        if let Some(st) = s.child.try_wait().unwrap() {
            break st;
        }
        assert!(Instant::now() < deadline, "the server did not stop after its drain");
        std::thread::sleep(Duration::from_millis(50));
    };
    assert!(status.success(), "a clean exit: {status:?}");
}

/// An instance killed (SIGKILL) in the middle of a pass through HAProxy:
/// at most the requests it was answering fail (one per client at most);
/// the balancer's health check takes it out and the others answer the rest.
#[test]
fn killing_one_instance_mid_pass_loses_only_its_requests_in_flight() {
    let Some(redis) = Redis::start() else { return };
    let (d, tiles) = photo_jpeg(5);
    let Some((mut instances, lb)) = behind_haproxy(d.path(), &redis) else { return };
    let victim = instances.remove(1);
    let clients = 3;
    let failed = pass_counting(lb.addr, &tiles, clients, Some((tiles.len() / 3, killer(victim.child.id()))));
    drop(victim);
    println!("{} tiles, {} failed: {failed:?}", tiles.len(), failed.len());
    assert!(failed.len() <= clients, "more failed than were in flight: {failed:?}");
    // The survivors answer everything afterwards.
    assert!(pass_counting(lb.addr, &tiles[..20], clients, None).is_empty());
}

/// Redis killed in the middle of a pass through HAProxy over three
/// instances: no client sees an error (each instance works alone).
#[test]
fn stopping_redis_mid_pass_gives_no_error_to_clients() {
    let Some(redis) = Redis::start() else { return };
    let (d, tiles) = photo_jpeg(9);
    let Some((instances, lb)) = behind_haproxy(d.path(), &redis) else { return };
    let failed = pass_counting(lb.addr, &tiles, 3, Some((tiles.len() / 3, killer(redis.child.id()))));
    assert!(failed.is_empty(), "clients saw errors: {failed:?}");
    let errors: f64 = instances.iter().map(|s| metric(s, "tessera_shared_tier_errors_total")).sum();
    assert!(errors >= 1.0, "the instances noticed Redis was gone");
}
