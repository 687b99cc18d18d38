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
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use common::*;
use tessera::codec::encode;
use tessera::iiif::Format;

const TOKEN: &str = "shared-tier-admin-token";

/// A `redis-server` on a free loopback port, without persistence; killed
/// on drop.
struct Redis {
    child: Child,
    port: u16,
    _dir: tempfile::TempDir,
}

impl Redis {
    fn start() -> Option<Redis> {
        if Command::new("redis-server").arg("--version").output().map(|o| !o.status.success()).unwrap_or(true) {
            skip_missing("redis-server", "scripts/deps.sh test installs Debian's redis-server");
            return None;
        }
        let dir = tempfile::tempdir().unwrap();
        let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
        let child = Command::new("redis-server")
            .args(["--bind", "127.0.0.1", "--port", &port.to_string(), "--save", "", "--appendonly", "no"])
            .args(["--maxmemory", "256mb", "--maxmemory-policy", "allkeys-lru", "--dir"])
            .arg(dir.path())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        let r = Redis { child, port, _dir: dir };
        let deadline = Instant::now() + Duration::from_secs(10);
        while Instant::now() < deadline {
            if std::net::TcpStream::connect(("127.0.0.1", port)).is_ok() {
                return Some(r);
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        panic!("redis-server did not start");
    }

    fn url(&self) -> String {
        format!("redis://127.0.0.1:{}", self.port)
    }

    fn stop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Drop for Redis {
    fn drop(&mut self) {
        self.stop();
    }
}

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
fn two_instances_asked_the_same_tile_at_once_render_it_once() {
    let Some(redis) = Redis::start() else { return };
    let d = tempfile::tempdir().unwrap();
    // A large JPEG whose full-size render takes a while.
    let big = tessera::samples::generate::book_page(3000, 4000, 1);
    std::fs::write(d.path().join("big.jpg"), encode::encode(&big, Format::Jpg, 90).unwrap()).unwrap();
    let (a, b) = (instance(d.path(), &redis, &[]), instance(d.path(), &redis, &[]));
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
