//! `tessera loadtest` against the real binary on loopback: its own request
//! count agrees with the server's /metrics, non-loopback targets are
//! refused, the open loop sends about rate × duration requests, and views
//! mode times whole views.

mod common;

use std::net::SocketAddr;
use std::path::Path;
use std::process::{Command, Output};

use common::*;

/// The sum of `tessera_http_requests_total{endpoint="image",...}` over all
/// statuses: the server's count of image (tile) requests.
fn image_requests(addr: SocketAddr) -> u64 {
    let r = http_get(addr, "/metrics", &[]).unwrap();
    assert_eq!(r.status, 200);
    String::from_utf8_lossy(&r.body)
        .lines()
        .filter(|l| l.starts_with("tessera_http_requests_total{") && l.contains("endpoint=\"image\""))
        .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
        .sum::<f64>() as u64
}

fn loadtest(args: &[&str], json: &Path) -> Output {
    Command::new(env!("CARGO_BIN_EXE_tessera"))
        .arg("loadtest")
        .args(args)
        .arg("--json")
        .arg(json)
        .arg("--quiet")
        .output()
        .unwrap()
}

fn report(json: &Path) -> serde_json::Value {
    serde_json::from_slice(&std::fs::read(json).unwrap()).unwrap()
}

#[test]
fn request_count_matches_the_servers_metrics() {
    let d = image_dir();
    let s = Server::start(d.path(), &[]);
    let out_dir = tempfile::tempdir().unwrap();
    let json = out_dir.path().join("report.json");
    let v2 = format!("{}/iiif/2/photo/info.json", s.base());
    let v3 = format!("{}/iiif/3/photo/info.json", s.base());
    let before = image_requests(s.addr);
    let out = loadtest(
        &[&v2, &v3, "--requests", "200", "--warmup", "0", "--duration", "60", "-c", "4", "--viewport", "400x300"],
        &json,
    );
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{stderr}");
    let after = image_requests(s.addr);
    let r = report(&json);
    assert_eq!(r["requests"], 200, "{r}");
    assert_eq!(r["sent_total"], 200);
    assert_eq!(r["stopped_by"], "requests");
    assert_eq!(r["errors"], 0, "{}", r["errors_by_kind"]);
    assert_eq!(r["status"]["200"], 200);
    assert_eq!(after - before, 200, "the server counted every request the tool sent, and no other");
    let per_level: u64 = r["levels"].as_array().unwrap().iter().map(|l| l["requests"].as_u64().unwrap()).sum();
    assert_eq!(per_level, 200);
    assert!(r["bytes"].as_u64().unwrap() > 200 * 100, "bodies are read");
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(text.contains("p99.9") && text.contains("per level"), "{text}");

    // A cold sweep asks every tile of every level once, then stops by itself.
    let sweep = out_dir.path().join("sweep.json");
    let before = image_requests(s.addr);
    let out = loadtest(&[&v3, "--mode", "sweep", "-c", "3", "--duration", "60"], &sweep);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let r = report(&sweep);
    assert_eq!(r["stopped_by"], "sweep complete");
    assert_eq!(r["errors"], 0, "{}", r["errors_by_kind"]);
    assert_eq!(image_requests(s.addr) - before, r["sent_total"].as_u64().unwrap());
    let sfs: Vec<u64> = r["levels"].as_array().unwrap().iter().map(|l| l["scale_factor"].as_u64().unwrap()).collect();
    assert_eq!(sfs.last(), Some(&1), "{sfs:?}");
}

#[test]
fn non_loopback_targets_are_refused() {
    let out_dir = tempfile::tempdir().unwrap();
    let json = out_dir.path().join("r.json");
    // 192.0.2.0/24 is TEST-NET-1: nothing is sent, the check comes first.
    for url in ["http://192.0.2.1:8182/iiif/2/x/info.json", "http://example.org/iiif/3/x/info.json"] {
        let out = loadtest(&[url, "--duration", "1"], &json);
        assert!(!out.status.success());
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(err.contains("loopback") && err.contains("--allow-remote"), "{err}");
    }
    assert!(!json.exists());
    let out = loadtest(&["https://127.0.0.1:1/iiif/2/x/info.json"], &json);
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("only http"));
}

#[test]
fn open_loop_sends_about_rate_times_duration() {
    let d = image_dir();
    let s = Server::start(d.path(), &[]);
    let out_dir = tempfile::tempdir().unwrap();
    let json = out_dir.path().join("open.json");
    let url = format!("{}/iiif/2/photo/info.json", s.base());
    let before = image_requests(s.addr);
    let out = loadtest(&[&url, "--rate", "40", "--duration", "2", "--warmup", "0", "-c", "2"], &json);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let r = report(&json);
    let sent = r["sent_total"].as_u64().unwrap();
    assert!((70..=90).contains(&sent), "about 40/s × 2 s: {sent}");
    assert_eq!(r["config"]["loop_kind"], "open");
    assert_eq!(r["errors"], 0, "{}", r["errors_by_kind"]);
    assert_eq!(image_requests(s.addr) - before, sent);
}

/// Views mode with `--sessions 1`: each viewer makes one session (home,
/// zoom-ins, pans), every view is timed, the tiles asked are the server's
/// image requests, and the run ends when the sessions are done.
#[test]
fn views_mode_times_each_view_of_one_session_per_viewer_and_stops_when_they_are_done() {
    let d = image_dir();
    let s = Server::start(d.path(), &[]);
    let out_dir = tempfile::tempdir().unwrap();
    let json = out_dir.path().join("report.json");
    let url = format!("{}/iiif/2/photo/info.json", s.base());
    let before = image_requests(s.addr);
    let args =
        ["--mode", "views", "--sessions", "1", "-c", "2", "--warmup", "0", "--duration", "60", "--viewport", "400x300"];
    let out = loadtest(&[&[url.as_str()][..], &args].concat(), &json);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let r = report(&json);
    assert_eq!(r["stopped_by"], "sessions complete", "{r}");
    assert_eq!(r["config"]["per_viewer"], 6, "a browser's six connections by default");
    let views = &r["views"];
    assert_eq!(views["views_with_errors"], 0, "{views}");
    assert!(views["by_kind"]["home"].is_object(), "{views}");
    assert!(views["views"].as_u64().unwrap() >= 4, "two sessions of a home view and zoom-ins: {views}");
    assert_eq!(views["tiles"], r["requests"], "every tile asked belongs to a view");
    assert_eq!(image_requests(s.addr) - before, r["requests"].as_u64().unwrap());
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(text.contains("views ") && text.contains("p90"), "{text}");
}
