//! The real binary on loopback: start-up, sockets, hostile input over the
//! wire, the access log, and the CLI's `info` and `check-config` commands.

mod common;

use std::process::Command;
use std::time::Duration;

use common::*;

#[test]
fn serves_tiles_over_http_and_survives_hostile_requests() {
    let d = image_dir();
    let s = Server::start(d.path(), &[]);
    let ok = http_get(s.addr, "/iiif/2/photo.jpg/0,0,512,512/256,/0/default.jpg", &[]).unwrap();
    assert_eq!(ok.status, 200);
    assert_eq!(ok.header("content-type"), Some("image/jpeg"));
    assert_eq!(decode_any(&ok.body).width(), 256);
    // Each hostile request and the answer it must get. A source that cannot
    // be decoded gets 422 with a generic message (Error::undecodable); a
    // truncated JPEG decodes what it holds (libjpeg-turbo fills the rest),
    // as a flipped one does.
    let hostile = [
        ("/iiif/2/../../../../etc/passwd/info.json", 404),
        ("/iiif/2/%2e%2e%2f%2e%2e%2fetc%2fpasswd/info.json", 404),
        ("/iiif/2/truncated.jpg/full/max/0/default.jpg", 200),
        ("/iiif/2/garbage.jpg/info.json", 422),
        ("/iiif/2/flipped.jpg/full/full/0/default.png", 200),
        ("/iiif/2/huge-header.png/full/max/0/default.jpg", 400),
        ("/iiif/2/photo/full/full/0/default.jpg%00", 400),
        ("/iiif/2/photo/pct:1e308,0,1,1/full/0/default.jpg", 400),
        ("/iiif/2/photo/full/!0,0/0/default.jpg", 400),
        ("//////", 404),
    ];
    for (p, want) in hostile {
        let r = http_get(s.addr, p, &[]).unwrap();
        assert_eq!(r.status, want, "{p}");
        let body = String::from_utf8_lossy(&r.body);
        assert!(!body.contains(d.path().to_str().unwrap()), "{p} leaked a path");
        if want == 422 {
            assert!(body.contains("could not be decoded"), "{p}: a generic public message, got {body}");
        }
    }
    let long = format!("/iiif/2/{}/info.json", "x".repeat(20_000));
    let _ = http_get(s.addr, &long, &[]);
    // Still serving.
    let again = http_get(s.addr, "/iiif/2/photo/full/64,/0/default.png", &[]).unwrap();
    assert_eq!(again.status, 200);
    assert_eq!(http_get(s.addr, "/health", &[]).unwrap().status, 200);
}

#[test]
fn head_over_the_wire_has_headers_and_no_body() {
    let d = image_dir();
    let s = Server::start(d.path(), &[]);
    let r = http_request(s.addr, "HEAD", "/iiif/2/photo/full/100,/0/default.jpg", &[]).unwrap();
    assert_eq!(r.status, 200);
    assert!(r.body.is_empty());
    assert!(r.header("etag").is_some());
}

#[test]
fn invalid_config_stops_the_server_with_a_message_naming_the_key() {
    let d = image_dir();
    let out = Command::new(env!("CARGO_BIN_EXE_tessera"))
        .args(["serve", "--listen", "127.0.0.1:1", "--images"])
        .arg(d.path())
        .env("TESSERA_LIMITS__MAX_UPSCALE", "0.5")
        .output()
        .unwrap();
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("limits.max_upscale"), "{err}");
    let cfg = d.path().join("bad.toml");
    std::fs::write(&cfg, "[server]\nport = \"http\"\n").unwrap();
    let out = Command::new(env!("CARGO_BIN_EXE_tessera")).args(["serve", "--config"]).arg(&cfg).output().unwrap();
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("server.port"));
}

#[test]
fn every_request_is_logged_once_with_its_id_and_the_tier_that_answered() {
    let d = image_dir();
    let logs = tempfile::tempdir().unwrap();
    let file = logs.path().join("access.log");
    let s = Server::start(
        d.path(),
        &[
            ("RUST_LOG", "warn,access=info"),
            ("TESSERA_LOG__FORMAT", "json"),
            ("TESSERA_LOG__FILE", file.to_str().unwrap()),
        ],
    );
    let tile = "/iiif/2/photo/0,0,256,256/128,/0/default.jpg";
    let first = http_get(s.addr, tile, &[("X-Request-Id", "client-id-1")]).unwrap();
    assert_eq!(first.header("x-request-id"), Some("client-id-1"), "a sane id is echoed");
    let second = http_get(s.addr, tile, &[]).unwrap();
    let generated = second.header("x-request-id").expect("an id").to_string();
    assert_eq!(generated.len(), 16);
    let missing = http_get(s.addr, "/iiif/2/nothing/info.json", &[("X-Request-Id", "bad id with spaces")]).unwrap();
    assert_eq!(missing.status, 404);
    assert_ne!(missing.header("x-request-id"), Some("bad id with spaces"));
    // The lines are written as the answers go out; give the writer a moment.
    let mut records: Vec<serde_json::Value> = Vec::new();
    for _ in 0..50 {
        let text = std::fs::read_to_string(&file).unwrap_or_default();
        // The start-up's /health polls are logged too; these are the test's.
        records = text
            .lines()
            .filter_map(|l| serde_json::from_str(l).ok())
            .filter(|r: &serde_json::Value| {
                r["target"] == "access" && r["fields"]["path"].as_str().is_some_and(|p| p.starts_with("/iiif/"))
            })
            .collect();
        if records.len() >= 3 {
            break;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    assert_eq!(records.len(), 3, "{records:?}");
    let f = |i: usize, k: &str| records[i]["fields"][k].clone();
    assert_eq!((f(0, "request_id"), f(0, "tier"), f(0, "status")), ("client-id-1".into(), "render".into(), 200.into()));
    assert_eq!(f(0, "bytes"), serde_json::Value::from(first.body.len()));
    assert_eq!(f(0, "path"), tile);
    assert_eq!(f(0, "method"), "GET");
    assert_eq!(f(0, "client"), "127.0.0.1");
    assert_eq!((f(1, "request_id"), f(1, "tier")), (generated.as_str().into(), "hot".into()));
    assert_eq!((f(2, "status"), f(2, "tier")), (404.into(), "-".into()));
    assert!(f(0, "duration_ms").as_f64().is_some_and(|ms| ms > 0.0));
}

#[test]
fn text_access_lines_are_in_the_combined_log_format_from_their_first_byte() {
    let d = image_dir();
    let logs = tempfile::tempdir().unwrap();
    let file = logs.path().join("access.log");
    let s = Server::start(d.path(), &[("RUST_LOG", "warn,access=info"), ("TESSERA_LOG__FILE", file.to_str().unwrap())]);
    let tile = "/iiif/2/photo/0,0,256,256/128,/0/default.jpg?x=1";
    let r = http_get(s.addr, tile, &[("Referer", "http://viewer.test/"), ("User-Agent", "probe/1.0")]).unwrap();
    assert_eq!(r.status, 200);
    let mut line = String::new();
    for _ in 0..50 {
        let text = std::fs::read_to_string(&file).unwrap_or_default();
        if let Some(l) = text.lines().find(|l| l.contains(tile)) {
            line = l.to_string();
            break;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    // The combined log format from the line's start (as log tools read
    // it), then duration, tier and request id.
    assert!(line.starts_with("127.0.0.1 - - ["), "{line:?}");
    let clf = line.as_str();
    let (time, rest) = clf["127.0.0.1 - - [".len()..].split_once("] ").unwrap();
    assert!(time.len() == 26 && time.ends_with(" +0000") && time.as_bytes()[2] == b'/', "{time:?}");
    let want = format!("\"GET {tile} HTTP/1.1\" 200 {} \"http://viewer.test/\" \"probe/1.0\" ", r.body.len());
    assert!(rest.starts_with(&want), "{rest:?} does not start with {want:?}");
    let tail = &rest[want.len()..];
    let (ms, tail) = tail.split_once("ms tier=").unwrap();
    let (whole, frac) = ms.split_once('.').unwrap();
    assert!(whole.parse::<u64>().is_ok() && frac.len() == 3 && frac.parse::<u64>().is_ok(), "{ms:?}");
    assert_eq!(tail, format!("render id={}", r.header("x-request-id").unwrap()));
}

#[test]
fn check_config_prints_each_effective_value_with_its_source_or_the_first_bad_key() {
    let d = tempfile::tempdir().unwrap();
    let good = d.path().join("good.toml");
    std::fs::write(&good, "[server]\nport = 8300\n").unwrap();
    let out = Command::new(env!("CARGO_BIN_EXE_tessera"))
        .arg("check-config")
        .arg(&good)
        .env("TESSERA_OUTPUT__JPEG_QUALITY", "70")
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let text = String::from_utf8_lossy(&out.stdout);
    let line = |key: &str| text.lines().find(|l| l.starts_with(&format!("{key} = "))).unwrap_or_default().to_string();
    assert!(line("server.port").contains("8300") && line("server.port").contains("# file"), "{text}");
    assert!(line("output.jpeg_quality").contains("# environment TESSERA_OUTPUT__JPEG_QUALITY"), "{text}");
    assert!(line("output.tile_size").ends_with("# default"), "{text}");
    let bad = d.path().join("bad.toml");
    std::fs::write(&bad, "[cache]\nmax_bytes = \"lots\"\n").unwrap();
    let out = Command::new(env!("CARGO_BIN_EXE_tessera")).arg("check-config").arg(&bad).output().unwrap();
    assert_eq!(out.status.code(), Some(1));
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("cache.max_bytes"),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(out.stdout.is_empty());
}

#[test]
fn info_command_prints_the_info_json_for_a_file() {
    let d = image_dir();
    let out = Command::new(env!("CARGO_BIN_EXE_tessera")).arg("info").arg(d.path().join("photo.jpg")).output().unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(v["width"], 1200);
    assert_eq!(v["height"], 800);
    assert_eq!(v["@context"], "http://iiif.io/api/image/2/context.json");
    let bad =
        Command::new(env!("CARGO_BIN_EXE_tessera")).arg("info").arg(d.path().join("garbage.jpg")).output().unwrap();
    assert!(!bad.status.success());
}

#[test]
fn with_json_logs_every_line_the_process_writes_is_json_even_when_the_gpu_is_probed_without_a_desktop() {
    let d = image_dir();
    let tiles = tempfile::tempdir().unwrap();
    let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
    let addr: std::net::SocketAddr = format!("127.0.0.1:{port}").parse().unwrap();
    // As under systemd: no desktop session, so no XDG_RUNTIME_DIR; the GPU
    // is probed at start (backend "auto").
    let child = Command::new(env!("CARGO_BIN_EXE_tessera"))
        .args(["serve", "--listen", &addr.to_string(), "--images"])
        .arg(d.path())
        .env_remove("XDG_RUNTIME_DIR")
        .env_remove("NODEVICE_SELECT")
        .env("RUST_LOG", "info")
        .env("TESSERA_LOG__FORMAT", "json")
        .env("TESSERA_TRANSFORM__BACKEND", "auto")
        .env("TESSERA_CACHE__DISK_DIR", tiles.path())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    while std::time::Instant::now() < deadline && http_get(addr, "/health", &[]).ok().map(|r| r.status) != Some(200) {
        std::thread::sleep(Duration::from_millis(50));
    }
    assert_eq!(http_get(addr, "/iiif/2/photo/info.json", &[]).unwrap().status, 200);
    // A graceful stop, so that the log writer flushes what it holds.
    let _ = Command::new("kill").args(["-TERM", &child.id().to_string()]).status();
    let out = child.wait_with_output().unwrap();
    // The log goes to standard output; a journal or collector reads both.
    let text = format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
    let lines: Vec<&str> = text.lines().filter(|l| !l.trim().is_empty()).collect();
    for l in &lines {
        assert!(serde_json::from_str::<serde_json::Value>(l).is_ok(), "not a JSON line in the output: {l:?}");
    }
    assert!(
        lines.iter().any(|l| l.contains("transform backend")),
        "the start-up lines (the GPU probe's result among them) are there: {lines:?}"
    );
}

#[test]
fn serve_images_dir_takes_its_catalogue_from_dir_items_and_a_plain_folder_warns_of_none() {
    // A folder of plain images: no catalogue, and no warning about one.
    let plain = image_dir();
    let logs = tempfile::tempdir().unwrap();
    let file = logs.path().join("server.log");
    let s = Server::start(
        plain.path(),
        &[("RUST_LOG", "info"), ("TESSERA_LOG__FORMAT", "json"), ("TESSERA_LOG__FILE", file.to_str().unwrap())],
    );
    assert_eq!(http_get(s.addr, "/iiif/collection", &[]).unwrap().status, 200);
    let mut text = String::new();
    for _ in 0..50 {
        text = std::fs::read_to_string(&file).unwrap_or_default();
        if text.contains("no item catalogue") {
            break;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    assert!(text.contains("no item catalogue"), "{text}");
    let warnings: Vec<&str> = text.lines().filter(|l| l.contains("\"WARN\"")).collect();
    assert!(warnings.is_empty(), "{warnings:?}");
    drop(s);

    // A folder with items/: its items are the catalogue.
    let d = image_dir();
    let item = d.path().join("items/a-book");
    std::fs::create_dir_all(&item).unwrap();
    std::fs::copy(d.path().join("photo.jpg"), item.join("page-1.jpg")).unwrap();
    std::fs::write(item.join("item.toml"), "[metadata]\n\"dc.title\" = \"A book\"\n\"dspace.iiif.enabled\" = true\n\n[[bitstreams]]\nfile = \"page-1.jpg\"\n").unwrap();
    let s = Server::start(d.path(), &[]);
    let r = http_get(s.addr, "/iiif/a-book/manifest", &[]).unwrap();
    assert_eq!(r.status, 200, "{}", String::from_utf8_lossy(&r.body));
    let m: serde_json::Value = serde_json::from_slice(&r.body).unwrap();
    assert_eq!(m["label"], "A book");
}
