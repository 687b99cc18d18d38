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
    let hostile = [
        "/iiif/2/../../../../etc/passwd/info.json",
        "/iiif/2/%2e%2e%2f%2e%2e%2fetc%2fpasswd/info.json",
        "/iiif/2/truncated.jpg/full/max/0/default.jpg",
        "/iiif/2/garbage.jpg/info.json",
        "/iiif/2/flipped.jpg/full/full/0/default.png",
        "/iiif/2/huge-header.png/full/max/0/default.jpg",
        "/iiif/2/photo/full/full/0/default.jpg%00",
        "/iiif/2/photo/pct:1e308,0,1,1/full/0/default.jpg",
        "/iiif/2/photo/full/!0,0/0/default.jpg",
        "//////",
    ];
    for p in hostile {
        let r = http_get(s.addr, p, &[]).unwrap();
        assert!(r.status == 200 || (400..600).contains(&r.status), "{p}: {}", r.status);
        let body = String::from_utf8_lossy(&r.body);
        assert!(!body.contains(d.path().to_str().unwrap()), "{p} leaked a path");
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
