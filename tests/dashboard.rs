//! The Grafana dashboard (deploy/grafana-dashboard.json, written by
//! deploy/make_dashboard.py) queries only metrics that Tessera exports: every
//! `tessera_*` name in its queries appears in /metrics of a server with the
//! disk and shared tiers on, or of one on the HTTP source.

mod common;

use std::collections::BTreeSet;

use common::*;
use http::StatusCode;

/// The `tessera_*` metric names in every query of the dashboard.
fn queried_metrics() -> BTreeSet<String> {
    let text = std::fs::read_to_string(repo_path("deploy/grafana-dashboard.json")).unwrap();
    let dash: serde_json::Value = serde_json::from_str(&text).unwrap();
    let mut names = BTreeSet::new();
    for panel in dash["panels"].as_array().unwrap() {
        for target in panel["targets"].as_array().unwrap() {
            let expr = target["expr"].as_str().unwrap();
            let mut rest = expr;
            while let Some(i) = rest.find("tessera_") {
                let name: String = rest[i..].chars().take_while(|c| c.is_ascii_alphanumeric() || *c == '_').collect();
                rest = &rest[i + name.len()..];
                names.insert(name);
            }
        }
    }
    names
}

/// The metric names (without labels) in a /metrics answer.
fn exported(text: &str) -> BTreeSet<String> {
    text.lines()
        .filter(|l| !l.starts_with('#') && !l.is_empty())
        .map(|l| l.split(['{', ' ']).next().unwrap_or("").to_string())
        .collect()
}

#[tokio::test]
async fn every_metric_the_dashboard_queries_is_exported() {
    let queried = queried_metrics();
    assert!(queried.len() >= 20, "the dashboard queries {} metrics: {queried:?}", queried.len());

    let images = image_dir();
    let tiles = tempfile::tempdir().unwrap();
    let tiers = format!(
        "[cache]\ndisk_dir = {:?}\n[cache.shared]\nkind = \"redis\"\nurl = \"redis://127.0.0.1:1\"\ntimeout_ms = 20",
        tiles.path().to_str().unwrap()
    );
    let local = app(images.path(), &tiers);
    // One render, so the stage histograms have samples.
    let r = get(&local, "/iiif/2/photo.jpg/0,0,256,256/128,/0/default.jpg").await;
    assert_eq!(r.status(), StatusCode::OK);
    let mut names = exported(&String::from_utf8_lossy(get(&local, "/metrics").await.body()));

    let remote = app(images.path(), "[source]\nkind = \"http\"\n[source.http]\nurl_prefix = \"http://127.0.0.1:9/\"");
    names.extend(exported(&String::from_utf8_lossy(get(&remote, "/metrics").await.body())));

    let missing: Vec<&String> = queried.iter().filter(|n| !names.contains(*n)).collect();
    assert!(missing.is_empty(), "the dashboard queries metrics /metrics does not have: {missing:?}");
}
