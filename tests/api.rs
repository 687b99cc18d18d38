//! The Image API through the service, in process: every route, header and
//! error status the 2.1.1 spec (and our config) defines.

mod common;

use common::*;
use http::{Method, StatusCode};
use serde_json::Value;

fn json(body: &[u8]) -> Value {
    serde_json::from_slice(body).unwrap()
}

#[tokio::test]
async fn info_json_has_the_2_1_fields_and_id_equals_the_request_url() {
    let d = image_dir();
    let app = app(d.path(), "");
    let r = get(&app, "/iiif/2/photo.jpg/info.json").await;
    assert_eq!(r.status(), StatusCode::OK);
    assert_eq!(r.headers()["content-type"], "application/json");
    let v = json(r.body());
    assert_eq!(v["@context"], "http://iiif.io/api/image/2/context.json");
    assert_eq!(v["@id"], "http://127.0.0.1:8182/iiif/2/photo.jpg");
    assert_eq!(v["protocol"], "http://iiif.io/api/image");
    assert_eq!((v["width"].as_u64(), v["height"].as_u64()), (Some(1200), Some(800)));
    assert_eq!(v["profile"][0], "http://iiif.io/api/image/2/level2.json");
    assert_eq!(v["profile"][1]["maxWidth"], 10000);
    assert!(v["tiles"][0]["scaleFactors"].as_array().unwrap().len() >= 2);
    assert!(!v["sizes"].as_array().unwrap().is_empty());
    assert!(r.headers()["link"].to_str().unwrap().contains("rel=\"profile\""));
}

#[tokio::test]
async fn json_ld_is_served_when_asked_for() {
    let d = image_dir();
    let app = app(d.path(), "");
    let r = call(&app, Method::GET, "/iiif/2/photo/info.json", &[("accept", "application/ld+json")]).await;
    assert_eq!(r.headers()["content-type"], "application/ld+json;profile=\"http://iiif.io/api/image/2/context.json\"");
}

#[tokio::test]
async fn id_honours_forwarded_headers_and_the_configured_base() {
    let d = image_dir();
    let app1 = app(d.path(), "");
    let r = call(
        &app1,
        Method::GET,
        "/iiif/2/photo/info.json",
        &[("x-forwarded-proto", "https"), ("x-forwarded-host", "img.example.org"), ("x-forwarded-prefix", "/images")],
    )
    .await;
    assert_eq!(json(r.body())["@id"], "https://img.example.org/images/iiif/2/photo");
    let app2 = app(d.path(), "[server]\npublic_base_url = \"https://iiif.example.edu\"");
    let r = get(&app2, "/iiif/2/photo/info.json").await;
    assert_eq!(json(r.body())["@id"], "https://iiif.example.edu/iiif/2/photo");
}

#[tokio::test]
async fn base_uri_redirects_to_info_json_with_303() {
    let d = image_dir();
    let app = app(d.path(), "");
    let r = get(&app, "/iiif/2/photo.jpg").await;
    assert_eq!(r.status(), StatusCode::SEE_OTHER);
    assert_eq!(r.headers()["location"], "http://127.0.0.1:8182/iiif/2/photo.jpg/info.json");
}

#[tokio::test]
async fn identifiers_resolve_with_and_without_extension_and_with_escaped_slashes() {
    let d = image_dir();
    let app = app(d.path(), "");
    for p in [
        "/iiif/2/photo/info.json",
        "/iiif/2/photo.jpg/info.json",
        "/iiif/2/sub%2Fdir%2Fnested/info.json",
        "/iiif/2/ph%6Fto/info.json",
    ] {
        assert_eq!(get(&app, p).await.status(), StatusCode::OK, "{p}");
    }
}

#[tokio::test]
async fn unknown_unsafe_and_slashed_identifiers_are_404() {
    let d = image_dir();
    let app = app(d.path(), "");
    for p in [
        "/iiif/2/nope/info.json",
        "/iiif/2/sub/dir/nested/info.json",
        "/iiif/2/..%2F..%2Fetc%2Fpasswd/info.json",
        "/iiif/2/%2Fetc%2Fpasswd/info.json",
        "/iiif/2/photo%00/info.json",
        "/iiif/2/0e2c8d2c-6f2b-4b51-9c1f-3d6d6b7f2a11/full/full/0/default.jpg",
        "/iiif/2/a/b/full/full/0/default.jpg",
        "/iiif/9/photo/info.json",
    ] {
        let r = get(&app, p).await;
        assert_eq!(r.status(), StatusCode::NOT_FOUND, "{p}");
        let body = String::from_utf8_lossy(r.body());
        assert!(!body.contains(d.path().to_str().unwrap()), "path leaked in {body}");
    }
}

#[tokio::test]
async fn image_response_carries_type_canonical_and_profile_links_etag_and_cache_headers() {
    let d = image_dir();
    let app = app(d.path(), "");
    let r = get(&app, "/iiif/2/photo/pct:0,0,50,50/300,/0/default.jpg").await;
    assert_eq!(r.status(), StatusCode::OK);
    let h = r.headers();
    assert_eq!(h["content-type"], "image/jpeg");
    let link = h["link"].to_str().unwrap();
    assert!(
        link.contains("<http://127.0.0.1:8182/iiif/2/photo/0,0,600,400/300,/0/default.jpg>;rel=\"canonical\""),
        "{link}"
    );
    assert!(link.contains("<http://iiif.io/api/image/2/level2.json>;rel=\"profile\""), "{link}");
    let etag = h["etag"].to_str().unwrap();
    assert!(etag.starts_with('"') && !etag.starts_with("W/"), "strong etag: {etag}");
    assert!(h.contains_key("last-modified"));
    assert_eq!(h["cache-control"], "public, max-age=2592000");
    assert_eq!(h["access-control-allow-origin"], "*");
    let img = decode_any(r.body());
    assert_eq!((img.width(), img.height()), (300, 200));
}

#[tokio::test]
async fn matching_if_none_match_or_if_modified_since_gives_304() {
    let d = image_dir();
    let app = app(d.path(), "");
    let p = "/iiif/2/photo/full/200,/0/default.jpg";
    let r = get(&app, p).await;
    let etag = r.headers()["etag"].to_str().unwrap().to_string();
    let lm = r.headers()["last-modified"].to_str().unwrap().to_string();
    let r = call(&app, Method::GET, p, &[("if-none-match", &etag)]).await;
    assert_eq!(r.status(), StatusCode::NOT_MODIFIED);
    assert!(r.body().is_empty());
    assert_eq!(r.headers()["etag"], etag.as_str());
    let r = call(&app, Method::GET, p, &[("if-modified-since", &lm)]).await;
    assert_eq!(r.status(), StatusCode::NOT_MODIFIED);
    let r = call(&app, Method::GET, p, &[("if-none-match", "\"other\"")]).await;
    assert_eq!(r.status(), StatusCode::OK);
}

#[tokio::test]
async fn equivalent_requests_share_an_etag_and_different_ones_do_not() {
    let d = image_dir();
    let app = app(d.path(), "");
    let a = get(&app, "/iiif/2/photo/full/full/0/default.jpg").await;
    let b = get(&app, "/iiif/2/photo/0,0,1200,800/1200,/360/default.jpg").await;
    let c = get(&app, "/iiif/2/photo/full/600,/0/default.jpg").await;
    assert_eq!(a.headers()["etag"], b.headers()["etag"]);
    assert_ne!(a.headers()["etag"], c.headers()["etag"]);
}

#[tokio::test]
async fn head_answers_like_get_without_a_body() {
    let d = image_dir();
    let app = app(d.path(), "");
    let g = get(&app, "/iiif/2/photo/full/100,/0/default.png").await;
    let h = call(&app, Method::HEAD, "/iiif/2/photo/full/100,/0/default.png", &[]).await;
    assert_eq!(h.status(), StatusCode::OK);
    assert!(h.body().is_empty());
    assert_eq!(h.headers()["etag"], g.headers()["etag"]);
    assert_eq!(h.headers()["content-type"], "image/png");
}

#[tokio::test]
async fn bad_region_size_rotation_quality_and_format_are_400() {
    let d = image_dir();
    let app = app(d.path(), "");
    for p in [
        "/iiif/2/photo/abc/full/0/default.jpg",
        "/iiif/2/photo/0,0,0,10/full/0/default.jpg",
        "/iiif/2/photo/5000,5000,10,10/full/0/default.jpg",
        "/iiif/2/photo/full/0,/0/default.jpg",
        "/iiif/2/photo/full/abc/0/default.jpg",
        "/iiif/2/photo/full/pct:0/0/default.jpg",
        "/iiif/2/photo/full/full/-90/default.jpg",
        "/iiif/2/photo/full/full/361/default.jpg",
        "/iiif/2/photo/full/full/0/native.jpg",
        "/iiif/2/photo/full/full/0/default.xyz",
        "/iiif/2/photo/full/full/0/default",
        "/iiif/2/photo/full/99999,/0/default.jpg",
    ] {
        let r = get(&app, p).await;
        assert_eq!(r.status(), StatusCode::BAD_REQUEST, "{p}");
        assert!(r.headers()["content-type"].to_str().unwrap().starts_with("text/plain"));
    }
}

#[tokio::test]
async fn a_known_but_unproduced_format_is_415() {
    let d = image_dir();
    let app = app(d.path(), "");
    assert_eq!(get(&app, "/iiif/2/photo/full/full/0/default.jp2").await.status(), StatusCode::UNSUPPORTED_MEDIA_TYPE);
    assert_eq!(get(&app, "/iiif/2/photo/full/full/0/default.pdf").await.status(), StatusCode::UNSUPPORTED_MEDIA_TYPE);
}

#[tokio::test]
async fn every_format_and_quality_is_served() {
    let d = image_dir();
    let app = app(d.path(), "");
    for f in ["jpg", "png", "gif", "tif", "webp"] {
        for q in ["default", "color", "gray", "bitonal"] {
            let r = get(&app, &format!("/iiif/2/photo/full/120,/0/{q}.{f}")).await;
            assert_eq!(r.status(), StatusCode::OK, "{q}.{f}");
            assert!(r.headers()["content-type"].to_str().unwrap().starts_with("image/"));
        }
    }
}

#[tokio::test]
async fn gray_and_bitonal_outputs_have_the_right_pixels() {
    let d = image_dir();
    let app = app(d.path(), "");
    let g = decode_any(get(&app, "/iiif/2/photo/full/200,/0/gray.png").await.body());
    assert!(g.layout().is_gray());
    let b = decode_any(get(&app, "/iiif/2/photo/full/200,/0/bitonal.png").await.body());
    assert!(b.data().iter().all(|&v| v == 0 || v == 255));
}

#[tokio::test]
async fn rotations_and_mirroring_change_the_geometry() {
    let d = image_dir();
    let app = app(d.path(), "");
    let r = decode_any(get(&app, "/iiif/2/photo/full/300,/90/default.png").await.body());
    assert_eq!((r.width(), r.height()), (200, 300));
    let r = decode_any(get(&app, "/iiif/2/photo/full/300,/!180/default.png").await.body());
    assert_eq!((r.width(), r.height()), (300, 200));
    let r = decode_any(get(&app, "/iiif/2/photo/full/300,/30/default.png").await.body());
    assert!(r.layout().has_alpha(), "arbitrary rotation into PNG is transparent");
    let corner = &r.data()[..4];
    assert_eq!(corner[3], 0);
    let j = decode_any(get(&app, "/iiif/2/photo/full/300,/30/default.jpg").await.body());
    assert!(j.data()[..3].iter().all(|&v| v > 240), "white corner in JPEG: {:?}", &j.data()[..3]);
}

#[tokio::test]
async fn region_and_size_match_a_reference_crop_and_resize() {
    let d = image_dir();
    let app = app(d.path(), "");
    // Reference: decode the whole source at full resolution, crop, resize on the CPU path.
    let src = std::fs::read(d.path().join("photo.jpg")).unwrap();
    let full = decode_any(&src);
    for (region, size, (x, y, w, h), (ow, oh)) in [
        ("100,50,400,300", "200,", (100, 50, 400, 300), (200, 150)),
        ("full", "150,", (0, 0, 1200, 800), (150, 100)),
        ("600,400,600,400", "full", (600, 400, 600, 400), (600, 400)),
        ("0,0,1200,800", "!97,97", (0, 0, 1200, 800), (97, 65)),
    ] {
        let r = get(&app, &format!("/iiif/2/photo.jpg/{region}/{size}/0/default.png")).await;
        let got = decode_any(r.body());
        let reference = tessera::transform::resize::resize(full.crop(x, y, w, h), ow, oh);
        assert_eq!((got.width(), got.height()), (ow, oh));
        let db = psnr(got.data(), reference.data());
        assert!(db >= 35.0, "{region}/{size}: PSNR {db:.1} dB");
    }
}

#[tokio::test]
async fn upscaling_is_allowed_up_to_the_limit() {
    let d = image_dir();
    let app = app(d.path(), "");
    let r = get(&app, "/iiif/2/gray/0,0,100,100/300,/0/default.jpg").await;
    assert_eq!(r.status(), StatusCode::OK);
    assert_eq!(decode_any(r.body()).width(), 300);
    assert_eq!(get(&app, "/iiif/2/gray/0,0,100,100/500,/0/default.jpg").await.status(), StatusCode::BAD_REQUEST);
}

#[tokio::test]
async fn max_size_shrinks_to_the_configured_limits() {
    let d = image_dir();
    let app = app(d.path(), "[limits]\nmax_width = 500\nmax_height = 500\nmax_area = 200000");
    let r = get(&app, "/iiif/2/photo/full/max/0/default.jpg").await;
    let img = decode_any(r.body());
    assert!(img.width() <= 500 && img.height() <= 500 && img.width() * img.height() <= 200_000);
    assert_eq!(get(&app, "/iiif/2/photo/full/full/0/default.jpg").await.status(), StatusCode::BAD_REQUEST);
    let v = json(get(&app, "/iiif/2/photo/info.json").await.body());
    assert_eq!(v["profile"][1]["maxWidth"], 500);
    assert_eq!(v["profile"][1]["maxArea"], 200000);
}

#[tokio::test]
async fn hostile_files_get_an_error_status_and_the_server_keeps_serving() {
    let d = image_dir();
    let app = app(d.path(), "");
    for id in [
        "truncated.jpg",
        "header-only.jpg",
        "truncated.png",
        "garbage.jpg",
        "notes.txt",
        "flipped.jpg",
        "huge-header.png",
    ] {
        for p in [
            format!("/iiif/2/{id}/info.json"),
            format!("/iiif/2/{id}/full/max/0/default.jpg"),
            format!("/iiif/2/{id}/0,0,64,64/64,/0/default.png"),
        ] {
            let r = get(&app, &p).await;
            let s = r.status().as_u16();
            // A corrupt body may still decode partially (JPEG is forgiving); what
            // matters is a definite answer, never a crash or a leak.
            assert!(s == 200 || (400..600).contains(&s), "{p}: {s}");
            let body = String::from_utf8_lossy(r.body());
            if s >= 400 {
                assert!(!body.contains('/'), "no paths in errors: {body}");
            }
        }
    }
    assert_eq!(get(&app, "/iiif/2/photo/full/100,/0/default.jpg").await.status(), StatusCode::OK);
}

#[tokio::test]
async fn a_header_claiming_huge_dimensions_is_refused_before_allocation() {
    let d = image_dir();
    let app = app(d.path(), "");
    let r = get(&app, "/iiif/2/huge-header.png/full/100,/0/default.jpg").await;
    assert_eq!(r.status(), StatusCode::BAD_REQUEST, "decode limit applies before decoding");
}

#[tokio::test]
async fn absurd_urls_get_4xx() {
    let d = image_dir();
    let app = app(d.path(), "");
    let long = "a".repeat(5000);
    for p in [
        format!("/iiif/2/{long}/info.json"),
        "/iiif/2/photo/full/full/0/default.jpg/extra".to_string(),
        "/iiif/2/photo/99999999999,0,1,1/full/0/default.jpg".to_string(),
        "/iiif/2/photo/full/pct:99999999999999999999/0/default.jpg".to_string(),
        "/iiif/2/photo/full/4294967295,4294967295/0/default.jpg".to_string(),
        "/iiif/2/%ZZ/info.json".to_string(),
    ] {
        let s = get(&app, &p).await.status();
        assert!(s.is_client_error(), "{p}: {s}");
    }
}

#[tokio::test]
async fn preflight_is_answered_for_any_path_including_authorization() {
    let d = image_dir();
    let app = app(d.path(), "");
    let r = call(
        &app,
        Method::OPTIONS,
        "/iiif/2/photo/info.json",
        &[
            ("origin", "https://viewer.example"),
            ("access-control-request-method", "GET"),
            ("access-control-request-headers", "authorization"),
        ],
    )
    .await;
    assert_eq!(r.status(), StatusCode::NO_CONTENT);
    assert_eq!(r.headers()["access-control-allow-origin"], "*");
    assert!(r.headers()["access-control-allow-headers"].to_str().unwrap().contains("authorization"));
    assert!(r.headers()["access-control-allow-methods"].to_str().unwrap().contains("GET"));
    assert!(r.headers().contains_key("access-control-max-age"));
}

#[tokio::test]
async fn cors_exposes_link_and_etag_and_errors_carry_cors_too() {
    let d = image_dir();
    let app = app(d.path(), "");
    let r = get(&app, "/iiif/2/photo/full/50,/0/default.jpg").await;
    let expose = r.headers()["access-control-expose-headers"].to_str().unwrap();
    assert!(expose.contains("Link") && expose.contains("ETag"));
    let e = get(&app, "/iiif/2/nope/info.json").await;
    assert_eq!(e.headers()["access-control-allow-origin"], "*");
}

#[tokio::test]
async fn cors_policy_follows_the_configured_origins() {
    let d = image_dir();
    // A table: (configured origins, credentials, request origin, expected Allow-Origin, Vary).
    type Case<'a> = (&'a str, bool, Option<&'a str>, Option<&'a str>, bool);
    let cases: &[Case] = &[
        ("[\"*\"]", false, Some("https://a.example"), Some("*"), false),
        ("[\"*\"]", false, None, Some("*"), false),
        ("[\"https://a.example\"]", false, Some("https://a.example"), Some("https://a.example"), true),
        ("[\"https://a.example\"]", false, Some("https://b.example"), None, true),
        ("[\"https://a.example\"]", false, None, None, true),
        (
            "[\"https://a.example\", \"http://localhost:3000\"]",
            true,
            Some("http://localhost:3000"),
            Some("http://localhost:3000"),
            true,
        ),
    ];
    for (origins, creds, origin, expect, vary) in cases {
        let app = app(d.path(), &format!("[cors]\nallowed_origins = {origins}\nallow_credentials = {creds}"));
        let hdrs: Vec<(&str, &str)> = origin.map(|o| vec![("origin", o)]).unwrap_or_default();
        for path in ["/iiif/2/photo/info.json", "/iiif/2/photo/full/50,/0/default.jpg"] {
            let r = call(&app, Method::GET, path, &hdrs).await;
            let got = r.headers().get("access-control-allow-origin").map(|v| v.to_str().unwrap());
            assert_eq!(got, *expect, "{origins} {origin:?} {path}");
            assert_eq!(r.headers().get("vary").map(|v| v.to_str().unwrap().contains("Origin")).unwrap_or(false), *vary);
            let c = r.headers().get("access-control-allow-credentials").is_some();
            assert_eq!(c, *creds && expect.is_some());
        }
    }
}

#[tokio::test]
async fn other_methods_are_405() {
    let d = image_dir();
    let app = app(d.path(), "");
    assert_eq!(call(&app, Method::POST, "/iiif/2/photo/info.json", &[]).await.status(), StatusCode::METHOD_NOT_ALLOWED);
    assert_eq!(call(&app, Method::DELETE, "/iiif/2/photo", &[]).await.status(), StatusCode::METHOD_NOT_ALLOWED);
}

#[tokio::test]
async fn a_full_queue_answers_503_with_retry_after() {
    let d = image_dir();
    let app = app(d.path(), "[server]\nworkers = 1\nqueue = 1\nretry_after = 3\n[cache]\nmax_bytes = 0");
    // Warm the info cache so every request goes straight to rendering.
    assert_eq!(get(&app, "/iiif/2/photo/info.json").await.status(), StatusCode::OK);
    let mut tasks = Vec::new();
    for i in 0..24 {
        let app = app.clone();
        tasks.push(tokio::spawn(async move {
            get(&app, &format!("/iiif/2/photo/full/{},/{}/default.png", 900 + i, i)).await
        }));
    }
    let mut busy = 0;
    for t in tasks {
        let r = t.await.unwrap();
        if r.status() == StatusCode::SERVICE_UNAVAILABLE {
            assert_eq!(r.headers()["retry-after"], "3");
            busy += 1;
        } else {
            assert_eq!(r.status(), StatusCode::OK);
        }
    }
    assert!(busy > 0, "some requests must be refused with one worker and a queue of one");
}

#[tokio::test]
async fn v3_info_and_images_are_served_under_their_prefix() {
    let d = image_dir();
    let app = app(d.path(), "");
    let r = call(&app, Method::GET, "/iiif/3/photo/info.json", &[("accept", "application/ld+json")]).await;
    assert_eq!(r.headers()["content-type"], "application/ld+json;profile=\"http://iiif.io/api/image/3/context.json\"");
    let v = json(r.body());
    assert_eq!(v["id"], "http://127.0.0.1:8182/iiif/3/photo");
    assert_eq!(v["type"], "ImageService3");
    assert_eq!(get(&app, "/iiif/3/photo/full/max/0/default.jpg").await.status(), StatusCode::OK);
    assert_eq!(get(&app, "/iiif/3/photo/full/full/0/default.jpg").await.status(), StatusCode::BAD_REQUEST);
    assert_eq!(get(&app, "/iiif/3/photo/0,0,10,10/^20,/0/default.jpg").await.status(), StatusCode::OK);
    assert_eq!(get(&app, "/iiif/3/photo/0,0,10,10/20,/0/default.jpg").await.status(), StatusCode::BAD_REQUEST);
}

#[tokio::test]
async fn health_and_metrics_answer() {
    let d = image_dir();
    let app = app(d.path(), "");
    assert_eq!(get(&app, "/health").await.status(), StatusCode::OK);
    get(&app, "/iiif/2/photo/full/64,/0/default.jpg").await;
    let m = String::from_utf8(get(&app, "/metrics").await.body().to_vec()).unwrap();
    assert!(m.contains("tessera_http_requests_total{endpoint=\"image\",status=\"200\"} 1"), "{m}");
    assert!(m.contains("tessera_stage_seconds_bucket{stage=\"decode\""));
}
