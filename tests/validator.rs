//! The IIIF Image API validator (PyPI `iiif-validator` 1.0.5) against a real
//! `tessera serve` on loopback: level 2 (30 tests) several times — its tests
//! draw random values — plus the optional tests for features we serve.
//!
//! `scripts/test.sh` installs the validator and sets TESSERA_VALIDATOR. Run
//! by hand without it, the test says so and passes as skipped; under CI
//! (CI=true) a missing validator is a failure.

mod common;

use std::process::Command;
use std::time::{Duration, Instant};

use common::*;

const ID: &str = "67352ccc-d1b0-11e1-89ae-279075081939";
const OPTIONAL: &[&str] = &[
    "linkheader_canonical",
    "linkheader_profile",
    "rot_full_non90",
    "rot_region_non90",
    "rot_mirror",
    "rot_mirror_180",
    "size_up",
    "format_gif",
    "format_tif",
];

fn validator() -> Option<String> {
    match std::env::var("TESSERA_VALIDATOR") {
        Ok(v) if !v.is_empty() => Some(v),
        _ => {
            skip_missing(
                "the IIIF validator (TESSERA_VALIDATOR)",
                "scripts/test.sh installs it and sets TESSERA_VALIDATOR",
            );
            None
        }
    }
}

/// Runs the validator; returns (exit code, last lines of its log).
fn run(v: &str, server: &Server, args: &[&str]) -> (i32, String) {
    let host = server.addr.to_string();
    let mut cmd = Command::new(v);
    cmd.args(["-s", &host, "-p", "iiif/2", "-i", ID, "--version=2.0"]).args(args);
    let start = Instant::now();
    let out = cmd.output().expect("run iiif-validate.py");
    assert!(start.elapsed() < Duration::from_secs(300), "validator took too long");
    let log = String::from_utf8_lossy(&out.stderr).to_string() + &String::from_utf8_lossy(&out.stdout);
    let tail: Vec<&str> = log.lines().rev().take(40).collect();
    (out.status.code().unwrap_or(-1), tail.into_iter().rev().collect::<Vec<_>>().join("\n"))
}

fn validator_images() -> tempfile::TempDir {
    let d = tempfile::tempdir().unwrap();
    let png =
        tessera::codec::encode::encode(&tessera::samples::generate::validator_image(), tessera::iiif::Format::Png, 90)
            .unwrap();
    std::fs::write(d.path().join(format!("{ID}.png")), png).unwrap();
    d
}

fn validator_images_jp2() -> tempfile::TempDir {
    use tessera::codec::jp2;
    let d = tempfile::tempdir().unwrap();
    let px = tessera::samples::generate::validator_image();
    let input = jp2::EncodeInput::from_pixels(&px);
    let params = jp2::EncodeParams {
        tile_size: Some((256, 256)),
        levels: 4,
        lossless: true,
        rate: None,
        layers: 1,
        progression: jp2::Progression::Rpcl,
        precincts: None,
        container: jp2::Container::Jp2,
    };
    std::fs::write(d.path().join(format!("{ID}.jp2")), jp2::encode(&input, &params).unwrap()).unwrap();
    d
}

fn level2_three_times_and_optional_tests(env: &[(&str, &str)]) {
    run_on(validator_images(), env)
}

fn run_on(d: tempfile::TempDir, env: &[(&str, &str)]) {
    let Some(v) = validator() else { return };
    let server = Server::start(d.path(), env);
    for round in 1..=3 {
        let (code, log) = run(&v, &server, &["--level", "2", "-v"]);
        assert_eq!(code, 0, "level 2, round {round}:\n{log}");
        assert!(log.contains("Done (30 tests, 0 failures)"), "{log}");
    }
    for t in OPTIONAL {
        let (code, log) = run(&v, &server, &["--test", t, "-v"]);
        assert_eq!(code, 0, "optional test {t}:\n{log}");
    }
}

#[test]
fn validator_level_2_passes_repeatedly_with_the_optional_tests() {
    level2_three_times_and_optional_tests(&[]);
}

#[test]
fn validator_passes_with_the_tile_cache_disabled() {
    // Every request renders: the pipeline itself is validated, not the cache.
    level2_three_times_and_optional_tests(&[("TESSERA_CACHE__MAX_BYTES", "0")]);
}

#[test]
fn validator_passes_on_the_test_image_as_jpeg_2000() {
    run_on(validator_images_jp2(), &[]);
}

#[test]
fn validator_passes_with_the_gpu_transform_backend() {
    // Every transform on the GPU (lavapipe in CI): no size threshold, no cache.
    let env = [
        ("TESSERA_TRANSFORM__BACKEND", "gpu"),
        ("TESSERA_TRANSFORM__GPU_MIN_PIXELS", "0"),
        ("TESSERA_CACHE__MAX_BYTES", "0"),
    ];
    let Some(_) = validator() else { return };
    let d = validator_images();
    let probe = Server::start(d.path(), &env);
    let metrics = http_get(probe.addr, "/metrics", &[]).unwrap();
    let text = String::from_utf8_lossy(&metrics.body).to_string();
    drop(probe);
    if !text.contains("tessera_gpu_backend 1") {
        return skip_missing_unless_set(
            "TESSERA_REQUIRE_GPU",
            "a GPU adapter",
            "install mesa-vulkan-drivers for lavapipe",
        );
    }
    run_on(d, &env);
}

#[test]
fn validator_passes_with_the_images_behind_the_http_source() {
    // The validator image served by nginx; Tessera fetches it over HTTP.
    let Some(v) = validator() else { return };
    let d = validator_images();
    let Some(origin) = Nginx::start(d.path()) else { return };
    let empty = tempfile::tempdir().unwrap();
    let prefix = format!("http://{}/", origin.addr);
    let env = [
        ("TESSERA_SOURCE__KIND", "http"),
        ("TESSERA_SOURCE__HTTP__URL_PREFIX", prefix.as_str()),
        ("TESSERA_SOURCE__HTTP__URL_SUFFIX", ".png"),
    ];
    let server = Server::start(empty.path(), &env);
    let info = http_get(server.addr, &format!("/iiif/2/{ID}/info.json"), &[]).unwrap();
    assert_eq!(info.status, 200, "{}", String::from_utf8_lossy(&info.body));
    for round in 1..=2 {
        let (code, log) = run(&v, &server, &["--level", "2", "-v"]);
        assert_eq!(code, 0, "level 2 over HTTP, round {round}:\n{log}");
    }
    let metrics = http_get(server.addr, "/metrics", &[]).unwrap();
    let text = String::from_utf8_lossy(&metrics.body).to_string();
    assert!(text.contains("tessera_source_downloads_total 1\n"), "fetched once:\n{text}");
}
