//! The real binary on loopback: start-up, sockets, hostile input over the
//! wire, and the CLI's `info` command.

mod common;

use std::process::Command;

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
    // be decoded is a fault of the stored file, not of the request: 500 with
    // a generic message (Error::undecodable); a truncated JPEG decodes what
    // it holds (libjpeg-turbo fills the rest), as a flipped one does.
    let hostile = [
        ("/iiif/2/../../../../etc/passwd/info.json", 404),
        ("/iiif/2/%2e%2e%2f%2e%2e%2fetc%2fpasswd/info.json", 404),
        ("/iiif/2/truncated.jpg/full/max/0/default.jpg", 200),
        ("/iiif/2/garbage.jpg/info.json", 500),
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
        if want == 500 {
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
